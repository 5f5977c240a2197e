using System.CommandLine;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.History;
using MmuSim.Scenarios;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim history [--wide|--markdown|--json|--format F] [--iterations N] [--time-limit T] [--eras LIST] [--scenarios LIST]</c>:
/// the main job. Runs every catalog scenario (kernel-facts §5) under every era with a schedule budget per cell
/// (deterministic for the seed), prints the matrix (rows: scenarios, columns: eras) and marks the cells that contradict
/// the scenario's declared expectation. Exit 0 when no cell contradicts (inconclusive cells, stopped by the wall-clock
/// limit, never count as contradictions), 1 when one does, 2 on bad options.
/// </summary>
public static class HistoryCommand
{
    /// <summary>The output formats of <c>--format</c>.</summary>
    public static readonly string[] Formats = ["matrix", "wide", "markdown", "json", "tap", "junit"];

    public static Command Create(CliContext cli)
    {
        var json = new Option<bool>("--json") { Description = "machine-readable output: one record per cell (same as --format json)" };
        var wide = new Option<bool>("--wide") { Description = "the wide table: each cell in words (same as --format wide)" };
        var markdown = new Option<bool>("--markdown") { Description = "the wide table as Markdown (same as --format markdown)" };
        var format = new Option<string?>("--format") { Description = "output: " + string.Join("|", Formats) + " (default matrix)" };
        var timeLimit = new Option<string?>("--time-limit", "-t") { Description = "wall-clock limit of the whole table (default 10m; 'none' for no limit); cells it stops are inconclusive, never contradictions" };
        var eras = new Option<string?>("--eras") { Description = "comma-separated eras or era sets (4.10,4.13+, 3.6..4.12); default: every era" };
        var scenarios = new Option<string?>("--scenarios") { Description = "comma-separated scenario names, files or catalog ids (a, b, d4); default: every catalog scenario" };
        var strategy = new Option<string>("--strategy", "-s") { Description = "search strategy (" + StrategySpec.KnownNames + ")", DefaultValueFactory = _ => "portfolio" };
        var iterations = new Option<int>("--iterations", "-n") { Description = $"schedule budget per cell (default {HistoryOptions.DefaultSchedulesPerCell}); with the seed it decides the table", DefaultValueFactory = _ => HistoryOptions.DefaultSchedulesPerCell };
        var jobs = new Option<int>("--jobs", "-j") { Description = "cells run in parallel (default: cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var seed = new Option<ulong>("--seed") { Description = "exploration seed", DefaultValueFactory = _ => 1UL };
        var shardOpt = new Option<string?>("--shard") { Description = "run shard k of N of the cells (cell i, row-major, in shard (i mod N)+1); prints the shard's JSON for mmusim merge" };
        var cmd = new Command("history",
            "Replay the notifier API's history: every catalog scenario (kernel-facts §5) under every era, a schedule budget per cell; matrix of x violation, . clean, - n/a, ? inconclusive, ! contradiction; exit 1 if a cell contradicts its declared expectation")
        {
            json, wide, markdown, format, timeLimit, eras, scenarios, strategy, iterations, jobs, seed, shardOpt,
        };
        cmd.SetAction(p =>
        {
            if (!StrategySpec.TryParseKind(p.GetValue(strategy)!, out var kind))
                throw new UsageException("--strategy", $"unknown strategy '{p.GetValue(strategy)}' (known: {StrategySpec.KnownNames})");
            string fmt = p.GetValue(format) ?? (p.GetValue(json) ? "json" : p.GetValue(markdown) ? "markdown" : p.GetValue(wide) ? "wide" : "matrix");
            if (!Formats.Contains(fmt))
                throw new UsageException("--format", $"unknown format '{fmt}' (known: {string.Join(", ", Formats)})");
            if (p.GetValue(iterations) < 1)
                throw new UsageException("--iterations", $"the schedule budget must be at least 1, not {p.GetValue(iterations)}");
            string? tlText = p.GetValue(timeLimit);
            TimeSpan? limit = tlText is "none" or "0" ? null : ExploreCommand.ParseDuration(tlText) ?? TimeSpan.FromMinutes(10);
            var catalog = HistoryRunner.CatalogScenarios();
            IReadOnlyList<Scenario>? chosen = null;
            if (p.GetValue(scenarios) is { Length: > 0 } list)
                chosen = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(n => catalog.FirstOrDefault(s => s.Catalog == n || s.Name == n) ?? CliContext.LoadScenario(n)).ToList();
            IReadOnlyList<KernelEra>? eraList = null;
            if (p.GetValue(eras) is { Length: > 0 } es)
            {
                var set = EraSet.TryParse(es, out var bad) ?? throw new UsageException("--eras", $"unknown era '{bad}' (known: {EraTable.KnownList})");
                eraList = EraTable.All.Where(set.Contains).ToList();
            }
            int total = (chosen ?? catalog).Count * (eraList ?? EraTable.All).Count, done = 0, perLine = (eraList ?? EraTable.All).Count;
            ShardSpec? shard = null;
            if (p.GetValue(shardOpt) is { } shardText)
            {
                shard = ShardSpec.TryParse(shardText, out var why) ?? throw new UsageException("--shard", why);
                if (p.GetValue(format) is { } f && f != "json") throw new UsageException("--shard", $"a shard prints JSON for mmusim merge, not --format {f}");
                fmt = "json";
            }
            bool progress = fmt is "matrix" or "wide" or "markdown";
            if (progress)
                cli.Err.WriteLine($"history: {total} cells, {p.GetValue(iterations)} schedules each, seed {p.GetValue(seed)}; legend: {HistoryFormat.Legend}");
            var options = new HistoryOptions
            {
                TimeLimit = limit,
                SchedulesPerCell = p.GetValue(iterations),
                Parallelism = CliContext.ParseJobs(p.GetValue(jobs)),
                Strategy = new StrategySpec { Kind = kind, Seed = p.GetValue(seed) },
                Eras = eraList,
                Scenarios = chosen,
                Shard = shard,
                OnCell = !progress ? null : c =>
                {
                    lock (cli)
                    {
                        cli.Err.Write(c.Symbol);
                        if (++done % perLine == 0 || done == total) cli.Err.WriteLine($"  {done}/{total} cells done");
                    }
                },
            };
            var report = HistoryRunner.Run(options);
            if (shard is { } sh)
            {
                cli.Out.Write(HistoryFormat.ToShardJson(report, options.Strategy, sh) + "\n");
                return report.Contradictions.Any() ? Program.Failed : Program.Ok;
            }
            cli.Out.Write(fmt switch
            {
                "json" => HistoryFormat.ToJson(report) + "\n",
                "wide" => HistoryFormat.ToWide(report),
                "markdown" => HistoryFormat.ToWide(report, markdown: true),
                "tap" => HistoryFormat.ToTap(report),
                "junit" => HistoryFormat.ToJUnit(report),
                _ => HistoryFormat.ToText(report),
            });
            return report.Contradictions.Any() ? Program.Failed : Program.Ok;
        });
        return cmd;
    }
}
