using System.Diagnostics;
using System.Text.Json;
using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Explore;

/// <summary>Budget of a history run.</summary>
public sealed record HistoryOptions
{
    /// <summary>Wall-clock budget for the whole table; split evenly over the cells that run.</summary>
    public TimeSpan TotalTime { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Schedules per cell at most.</summary>
    public int IterationsPerCell { get; init; } = 20_000;

    public ulong Seed { get; init; } = 1;

    public int Parallelism { get; init; } = 1;

    /// <summary>Called after each cell.</summary>
    public Action<HistoryCell>? OnCell { get; init; }
}

/// <summary>One scenario in one era: what it declares and what exploration found.</summary>
/// <param name="Outcome">"violation", "clean" or "n/a".</param>
/// <param name="Matches">The outcome is the one the scenario declares for this era.</param>
public sealed record HistoryCell(string Scenario, string Era, string Expected, string Outcome, string? Invariant,
    double? TimeToBugMs, int Schedules, bool Matches)
{
    /// <summary>"violation (stale-translation, 3 ms)", "clean (20000 schedules)", "n/a"; "!" marks an unexpected cell.</summary>
    public string Text => (Matches ? "" : "! ") + Outcome switch
    {
        "violation" => $"violation ({Invariant}, {TimeToBugMs:0.#} ms)",
        "clean" => $"clean ({Schedules} schedules)",
        "error" => $"error ({Invariant})",
        _ => "n/a",
    };
}

/// <summary>The history table: one row per catalog scenario, one column per era.</summary>
public sealed record HistoryReport(IReadOnlyList<string> Scenarios, IReadOnlyList<string> Eras, IReadOnlyList<HistoryCell> Cells, TimeSpan Elapsed)
{
    public IEnumerable<HistoryCell> Contradictions => Cells.Where(c => !c.Matches);

    public HistoryCell? Cell(string scenario, string era) => Cells.FirstOrDefault(c => c.Scenario == scenario && c.Era == era);

    /// <summary>One record per cell: scenario, era, expected, outcome, invariant, time_to_bug_ms, schedules, matches.</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("elapsed_s", Math.Round(Elapsed.TotalSeconds, 3));
            w.WriteNumber("contradictions", Contradictions.Count());
            w.WriteStartArray("cells");
            foreach (var c in Cells)
            {
                w.WriteStartObject();
                w.WriteString("scenario", c.Scenario);
                w.WriteString("era", c.Era);
                w.WriteString("expected", c.Expected);
                w.WriteString("outcome", c.Outcome);
                if (c.Invariant != null) w.WriteString("invariant", c.Invariant); else w.WriteNull("invariant");
                if (c.TimeToBugMs is { } t) w.WriteNumber("time_to_bug_ms", Math.Round(t, 3)); else w.WriteNull("time_to_bug_ms");
                w.WriteNumber("schedules", c.Schedules);
                w.WriteBoolean("matches", c.Matches);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }
}

/// <summary>
/// <c>mmusim history</c>: every catalog scenario under every era. A cell explores the scenario (portfolio strategy) until
/// the first violation or its share of the time budget, and is compared with the outcome the scenario declares for that
/// era (<c>expect:</c>); eras where the scenario declares <c>n/a</c> are not run.
/// </summary>
public sealed class HistoryRunner(IReadOnlyList<Scenario> scenarios, IReadOnlyList<KernelEra> eras, HistoryOptions? options = null)
{
    readonly HistoryOptions _opt = options ?? new HistoryOptions();

    /// <summary>The catalog: built-in scenarios whose expectation depends on the era.</summary>
    public static IReadOnlyList<Scenario> BuiltInCatalog() =>
        ScenarioLoader.BuiltInNames.Select(n => ScenarioLoader.LoadBuiltIn(n)).Where(s => s.Expect.Rules.Count > 0).ToList();

    public HistoryReport Run()
    {
        var sw = Stopwatch.StartNew();
        var cells = new List<HistoryCell>();
        int runnable = 0;
        foreach (var s in scenarios)
            foreach (var e in eras)
                if (s.ExpectedIn(e).Kind != ExpectKind.NotApplicable) runnable++;
        var perCell = runnable == 0 ? TimeSpan.Zero : _opt.TotalTime / runnable;

        foreach (var s in scenarios)
            foreach (var e in eras)
            {
                var expected = s.ExpectedIn(e);
                HistoryCell cell;
                if (expected.Kind == ExpectKind.NotApplicable)
                    cell = new HistoryCell(s.Name, e.Name, expected.ToString(), "n/a", null, null, 0, true);
                else
                {
                    ExploreReport r;
                    try
                    {
                        r = new Explorer(new ScenarioExplorable(s, e, null, _opt.Seed), new ExploreOptions
                    {
                        Strategy = new StrategySpec { Kind = StrategyKind.Portfolio, Seed = _opt.Seed },
                        Iterations = _opt.IterationsPerCell,
                        TimeLimit = perCell,
                        Parallelism = _opt.Parallelism,
                    }).Run();
                    }
                    catch (ScenarioException ex)
                    {
                        // The scenario cannot run in this era (e.g. a knob the era does not have): a contradiction to report.
                        cell = new HistoryCell(s.Name, e.Name, expected.ToString(), "error", ex.Detail, null, 0, false);
                        cells.Add(cell);
                        _opt.OnCell?.Invoke(cell);
                        continue;
                    }
                    var v = r.First?.Violation;
                    cell = new HistoryCell(s.Name, e.Name, expected.ToString(), v == null ? "clean" : "violation", v?.Invariant,
                        r.TimeToBugMs(), r.Schedules, expected.Matches(v));
                }
                cells.Add(cell);
                _opt.OnCell?.Invoke(cell);
            }
        return new HistoryReport(scenarios.Select(s => s.Name).ToList(), eras.Select(e => e.Name).ToList(), cells, sw.Elapsed);
    }
}

internal static class ExploreReportExtensions
{
    public static double? TimeToBugMs(this ExploreReport r) => r.TimeToFirstBug?.TotalMilliseconds;
}
