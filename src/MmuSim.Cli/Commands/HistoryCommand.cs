using System.CommandLine;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.History;
using MmuSim.Scenarios;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim history [--json] [--time-limit T] [--eras LIST] [--scenarios LIST]</c>: the main job. Runs every catalog
/// scenario (kernel-facts §5) under every era, prints the table (rows: scenarios, columns: eras) and marks the cells
/// that contradict the scenario's declared expectation. Exit 0 when every cell matches, 1 otherwise.
/// </summary>
public static class HistoryCommand
{
    public static Command Create(CliContext cli)
    {
        var json = new Option<bool>("--json") { Description = "machine-readable output: one record per cell" };
        var timeLimit = new Option<string?>("--time-limit", "-t") { Description = "wall-clock budget of the whole table (default 60s), shared equally by the cells" };
        var eras = new Option<string?>("--eras") { Description = "comma-separated eras or era sets (4.10,4.13+, 3.6..4.12); default: every era" };
        var scenarios = new Option<string?>("--scenarios") { Description = "comma-separated scenario names, files or catalog ids (a, b, d4); default: every catalog scenario" };
        var strategy = new Option<string>("--strategy", "-s") { Description = "search strategy (" + StrategySpec.KnownNames + ")", DefaultValueFactory = _ => "portfolio" };
        var iterations = new Option<int>("--iterations", "-n") { Description = "schedule cap per cell", DefaultValueFactory = _ => 20_000 };
        var jobs = new Option<int>("--jobs", "-j") { Description = "cells run in parallel (default: cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var seed = new Option<ulong>("--seed") { Description = "exploration seed", DefaultValueFactory = _ => 1UL };
        var cmd = new Command("history",
            "Replay the notifier API's history: every catalog scenario (kernel-facts §5) under every era; cells 'violation (invariant, time-to-bug)', 'clean (N schedules)' or 'n/a'; exit 1 if a cell contradicts its declared expectation")
        {
            json, timeLimit, eras, scenarios, strategy, iterations, jobs, seed,
        };
        cmd.SetAction(p =>
        {
            if (!StrategySpec.TryParseKind(p.GetValue(strategy)!, out var kind))
                throw new UsageException("--strategy", $"unknown strategy '{p.GetValue(strategy)}' (known: {StrategySpec.KnownNames})");
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
            var options = new HistoryOptions
            {
                TimeLimit = ExploreCommand.ParseDuration(p.GetValue(timeLimit)) ?? TimeSpan.FromSeconds(60),
                IterationsPerCell = Math.Max(1, p.GetValue(iterations)),
                Parallelism = CliContext.ParseJobs(p.GetValue(jobs)),
                Strategy = new StrategySpec { Kind = kind, Seed = p.GetValue(seed) },
                Eras = eraList,
                Scenarios = chosen,
                OnCell = p.GetValue(json) ? null : c =>
                {
                    lock (cli) cli.Err.Write(c.Contradicts ? "!" : c.Status == CellStatus.Violation ? "x" : c.Status == CellStatus.Clean ? "." : "_");
                },
            };
            var report = HistoryRunner.Run(options);
            if (!p.GetValue(json)) cli.Err.WriteLine();
            cli.Out.Write(p.GetValue(json) ? HistoryFormat.ToJson(report) + "\n" : HistoryFormat.ToText(report));
            return report.Contradictions.Any() ? Program.Failed : Program.Ok;
        });
        return cmd;
    }
}
