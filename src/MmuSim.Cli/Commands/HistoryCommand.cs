using System.CommandLine;
using MmuSim.Eras;
using MmuSim.Explore;
using Spectre.Console;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim history [--json] [--time-limit T] [--iterations N] [--scenario S ...] [--era V ...]</c>: every catalog
/// scenario under every era, as a table (one row per scenario, one column per era). Exit 1 if any cell contradicts the
/// expectation the scenario declares.
/// </summary>
public static class HistoryCommand
{
    public static Command Create(CliContext cli)
    {
        var json = new Option<bool>("--json") { Description = "one JSON record per cell: scenario, era, expected, outcome, invariant, time_to_bug_ms, schedules, matches" };
        var timeLimit = new Option<string?>("--time-limit", "-t") { Description = "total wall-clock budget, split over the cells (default 60s)" };
        var iterations = new Option<int>("--iterations", "-n") { Description = "schedules per cell at most", DefaultValueFactory = _ => 20_000 };
        var seed = new Option<ulong>("--seed") { Description = "exploration seed", DefaultValueFactory = _ => 1UL };
        var jobs = new Option<int>("--jobs", "-j") { Description = "worker threads per cell", DefaultValueFactory = _ => 1 };
        var scenarios = new Option<string[]>("--scenario") { Description = "scenario files or built-in names (default: the built-in catalog: every built-in scenario whose expect: depends on the era)" };
        var eras = new Option<string[]>("--era") { Description = "eras (default: every named era)" };
        var cmd = new Command("history", "Replay the notifier API's history: every catalog scenario in every era, violation or clean, against what each scenario declares")
        {
            json, timeLimit, iterations, seed, jobs, scenarios, eras,
        };
        cmd.SetAction(p =>
        {
            var list = p.GetValue(scenarios) is { Length: > 0 } given
                ? given.Select(CliContext.LoadScenario).ToList()
                : HistoryRunner.BuiltInCatalog();
            var eraList = p.GetValue(eras) is { Length: > 0 } ge
                ? ge.SelectMany(x => x.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).Select(x => CliContext.ParseEra(x)!).ToList()
                : EraTable.All.ToList();
            var total = ExploreCommand.ParseDuration(p.GetValue(timeLimit)) ?? TimeSpan.FromSeconds(60);
            cli.Err.WriteLine($"history: {list.Count} scenarios x {eraList.Count} eras, {total.TotalSeconds:0.#} s budget");
            var report = new HistoryRunner(list, eraList, new HistoryOptions
            {
                TotalTime = total,
                IterationsPerCell = Math.Max(1, p.GetValue(iterations)),
                Seed = p.GetValue(seed),
                Parallelism = Math.Max(1, p.GetValue(jobs)),
                OnCell = c => { if (!c.Matches) cli.Err.WriteLine($"  {c.Scenario} @ {c.Era}: {c.Text} (expected {c.Expected})"); },
            }).Run();

            if (p.GetValue(json)) cli.Out.WriteLine(report.ToJson());
            else
            {
                var t = new Table().Border(TableBorder.Simple).AddColumn("scenario");
                foreach (var e in report.Eras) t.AddColumn(e);
                foreach (var s in report.Scenarios)
                    t.AddRow(new[] { Markup.Escape(s) }.Concat(report.Eras.Select(e => Markup.Escape(report.Cell(s, e)?.Text ?? ""))).ToArray());
                var console = cli.OutConsole();
                console.Profile.Width = Math.Max(console.Profile.Width, 40 + 24 * report.Eras.Count);
                console.Write(t);
                int bad = report.Contradictions.Count();
                cli.Out.WriteLine(bad == 0
                    ? $"every cell as declared ({report.Cells.Count} cells, {report.Elapsed.TotalSeconds:0.0} s)"
                    : $"{bad} cell(s) contradict the declared expectation (marked !)");
            }
            return report.Contradictions.Any() ? Program.Failed : Program.Ok;
        });
        return cmd;
    }
}
