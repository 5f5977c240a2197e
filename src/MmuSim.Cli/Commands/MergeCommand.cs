using System.CommandLine;
using System.Text.Json;
using MmuSim.Explore;
using MmuSim.History;
using MmuSim.Scenarios;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim merge FILE... [--out FILE]</c>: merge the JSON results of the N shards of an <c>explore</c>, <c>history</c> or
/// <c>mutants</c> campaign (<c>--shard k/N</c>) into the result the unsharded run prints with <c>--json</c> (identical
/// outside its timing members). Exit 0/1 as the unsharded command would; 2 when a shard is missing, duplicated, of
/// another campaign or not a shard file.
/// </summary>
public static class MergeCommand
{
    public static Command Create(CliContext cli)
    {
        var files = new Argument<string[]>("shards") { Description = "the shards' JSON files (any order)", Arity = ArgumentArity.OneOrMore };
        var outFile = new Option<string?>("--out", "-o") { Description = "write the merged JSON here instead of stdout" };
        var cmd = new Command("merge", "Merge the JSON results of a sharded explore, history or mutants campaign (--shard k/N) into the unsharded result")
        {
            files, outFile,
        };
        cmd.SetAction(p =>
        {
            var docs = new List<JsonDocument>();
            try
            {
                var roots = new List<(string File, JsonElement Root)>();
                string? kind = null, kindFile = null;
                foreach (var f in p.GetValue(files)!)
                {
                    if (!File.Exists(f)) throw new UsageException("shards", $"no such file '{f}'");
                    string text;
                    try { text = File.ReadAllText(f); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new UsageException("shards", $"cannot read '{f}': {e.Message}"); }
                    var doc = ExploreJson.Parse(f, text);
                    docs.Add(doc);
                    var root = doc.RootElement;
                    string format = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("format", out var fe) && fe.ValueKind == JsonValueKind.String
                        ? fe.GetString()! : throw new ScenarioException(f, 1, "format", "missing: not the JSON of a shard (run the command with --shard k/N)");
                    if (format is not (ExploreJson.ShardFormat or HistoryFormat.ShardFormat or MutationReport.ShardFormat))
                        throw new ScenarioException(f, 1, "format", $"'{format}' is not a shard result (known: {ExploreJson.ShardFormat}, {HistoryFormat.ShardFormat}, {MutationReport.ShardFormat})");
                    if (kind != null && format != kind) throw new ScenarioException(f, 1, "format", $"'{format}', but {kindFile} is '{kind}'");
                    (kind, kindFile) = (format, f);
                    roots.Add((f, root));
                }
                (string json, bool bad) = kind switch
                {
                    ExploreJson.ShardFormat => ExploreMerge.Merge(roots.Select(r => ExploreMerge.Read(r.File, r.Root)).ToList()),
                    HistoryFormat.ShardFormat => HistoryFormat.MergeShards(roots),
                    _ => MutationReport.MergeShards(roots),
                };
                if (p.GetValue(outFile) is { } path)
                {
                    CliContext.WriteFile("--out", path, w => w.Write(json + "\n"));
                    cli.Err.WriteLine($"merged {roots.Count} shards into {path}");
                }
                else cli.Out.WriteLine(json);
                return bad ? Program.Failed : Program.Ok;
            }
            finally
            {
                foreach (var d in docs) d.Dispose();
            }
        });
        return cmd;
    }
}
