using System.Text.Json;
using MmuSim.Scenarios;

namespace MmuSim.Explore;

/// <summary>
/// <c>mmusim merge</c> for explorations: rebuilds, from the N shards of a campaign, the report the unsharded run would
/// have written. The shards' records are replayed in iteration order through the same accounting as
/// <see cref="Explorer"/> (totals, distinct schedules with the same cap, the stop at the first violation unless
/// <c>--all</c>), and the result is written by <see cref="ExploreJson.Result"/>, so everything outside <c>timing</c> is
/// byte-identical to the unsharded <c>--json</c> output.
/// </summary>
public static class ExploreMerge
{
    /// <summary>One parsed shard file.</summary>
    public sealed record ShardResult(string File, string Config, ShardSpec Shard, bool TimedOut, RunRecords Runs,
        Dictionary<int, JsonElement> Counterexamples, double ElapsedSeconds);

    /// <summary>Read a shard file (format <see cref="ExploreJson.ShardFormat"/>).</summary>
    public static ShardResult Read(string file, JsonElement root)
    {
        var f = new ExploreJson.Fields(file, root);
        f.Format(ExploreJson.ShardFormat);
        var s = new ExploreJson.Fields(file, f.Get("shard"), "shard.");
        var spec = ShardSpec.TryParse($"{s.Int("index")}/{s.Int("count")}", out var err) ?? throw s.Error("index", err);
        var runs = ExploreJson.ReadRecords(new ExploreJson.Fields(file, f.Get("runs"), "runs."));
        var ces = new Dictionary<int, JsonElement>();
        int n = 0;
        foreach (var c in f.Array("counterexamples"))
            ces[new ExploreJson.Fields(file, c, $"counterexamples[{n++}].").Int("iteration")] = c.Clone();
        var timing = new ExploreJson.Fields(file, f.Get("timing"), "timing.");
        return new ShardResult(file, f.Get("config").GetRawText(), spec, f.Bool("timed_out"), runs, ces,
            timing.Double("elapsed_s"));
    }

    /// <summary>Merge the shards (any order) into the unsharded result JSON; bad sets of shards are bad input.</summary>
    public static (string Json, bool Violation) Merge(IReadOnlyList<ShardResult> shards)
    {
        var first = shards[0];
        string config = first.Config;
        int count = first.Shard.Count;
        var byIndex = new ShardResult?[count];
        foreach (var s in shards)
        {
            if (ExploreJson.Normal(s.Config) != ExploreJson.Normal(config))
                throw new ScenarioException(s.File, 1, "config", $"not the configuration of {first.File} ({ExploreJson.FirstDifference(config, s.Config)})");
            if (s.Shard.Count != count)
                throw new ScenarioException(s.File, 1, "shard.count", $"{s.Shard.Count}, but {first.File} is one of {count} shards");
            if (byIndex[s.Shard.Index - 1] is { } dup)
                throw new ScenarioException(s.File, 1, "shard.index", $"shard {s.Shard} is also {dup.File}");
            byIndex[s.Shard.Index - 1] = s;
            for (int i = 0; i < s.Runs.Count; i++)
                if (s.Runs.Iterations[i] != s.Shard.Index - 1 + i * count)
                    throw new ScenarioException(s.File, 1, "runs.iterations", $"run {i} is iteration {s.Runs.Iterations[i]}, shard {s.Shard} runs {s.Shard.Index - 1 + i * count} there");
        }
        var missing = Enumerable.Range(1, count).Where(k => byIndex[k - 1] == null).ToList();
        if (missing.Count > 0)
            throw new ScenarioException(first.File, 1, "shard", $"missing shard{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(k => $"{k}/{count}"))} of this campaign");

        using var cfg = JsonDocument.Parse(config);
        var c = new ExploreJson.Fields(first.File, cfg.RootElement, "config.");
        int iterations = c.Int("iterations"), maxCe = c.Int("max_counterexamples");
        bool all = c.Bool("all");
        var info = new ExplorableInfo(c.Str("scenario"), c.Str("era"), c.Array("mutations").Select(m => m.GetString() ?? "").ToArray());
        var report = new ExploreReport { Info = info, Strategy = c.Str("strategy"), StepsMin = long.MaxValue };
        var distinct = new HashSet<ulong>();
        var ces = new List<JsonElement>();
        var violated = new HashSet<int>(shards.SelectMany(s => s.Runs.Violations));
        for (int i = 0; i < iterations; i++)
        {
            var s = byIndex[i % count]!;
            int at = i / count;
            if (at >= s.Runs.Count)
            {
                // The shard ended before iteration i: by its time limit (the merged run timed out here too), or after a
                // violation of its own, which comes after the first one of the campaign only if that one stopped us.
                if (s.TimedOut) report.TimedOut = true;
                else if (s.Runs.Violations.Count == 0 || all)
                    throw new ScenarioException(s.File, 1, "runs", $"ends at iteration {i} of {iterations} without a violation or time limit");
                break;
            }
            long steps = s.Runs.Steps[at];
            report.Schedules++;
            report.TotalSteps += steps;
            report.StepsMin = Math.Min(report.StepsMin, steps);
            report.StepsMax = Math.Max(report.StepsMax, steps);
            report.MaxDecisions = Math.Max(report.MaxDecisions, s.Runs.Decisions[at]);
            if (distinct.Count < Explorer.MaxDistinctTracked) distinct.Add(s.Runs.Hashes[at]);
            if (violated.Contains(i))
            {
                report.Violations++;
                if (report.Violations == 1) report.SchedulesToFirstBug = report.Schedules;
                if (ces.Count < maxCe)
                    ces.Add(s.Counterexamples.TryGetValue(i, out var ce) ? ce
                        : throw new ScenarioException(s.File, 1, "counterexamples", $"iteration {i} violated but its counterexample is not listed"));
                if (!all) break;
            }
        }
        if (report.Schedules == 0) report.StepsMin = 0;
        report.DistinctSchedules = distinct.Count;
        report.Elapsed = TimeSpan.FromSeconds(shards.Sum(s => s.ElapsedSeconds));
        string json = ExploreJson.Result(config, report);
        // The counterexample summaries come from the shards, written as the unsharded run writes them.
        if (ces.Count > 0)
        {
            using var doc = JsonDocument.Parse(json);
            json = ExploreJson.Document(w =>
            {
                foreach (var p in doc.RootElement.EnumerateObject())
                {
                    if (p.Name != "result") { p.WriteTo(w); continue; }
                    w.WriteStartObject("result");
                    foreach (var q in p.Value.EnumerateObject())
                    {
                        if (q.Name != "counterexamples") { q.WriteTo(w); continue; }
                        w.WriteStartArray("counterexamples");
                        foreach (var ce in ces) ce.WriteTo(w);
                        w.WriteEndArray();
                    }
                    w.WriteEndObject();
                }
            });
        }
        return (json, report.Violations > 0);
    }
}
