using System.Diagnostics;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.History;

/// <summary>What one (scenario, era) cell of the history table found.</summary>
public enum CellStatus { NotApplicable, Clean, Violation, Inconclusive }

/// <summary>
/// One cell of the history table: the scenario explored in one era until its first violation or until its schedule
/// budget was spent. <see cref="Contradicts"/> is set when the outcome differs from what the scenario declares for the
/// era. A cell ended early by the wall-clock limit is <see cref="CellStatus.Inconclusive"/> and never contradicts.
/// </summary>
public sealed record HistoryCell
{
    public required string Scenario { get; init; }
    public required string Era { get; init; }
    public required CellStatus Status { get; init; }
    public required ExpectedOutcome Expected { get; init; }
    /// <summary>The violated invariant (Violation cells).</summary>
    public string? Invariant { get; init; }
    public string? Message { get; init; }
    /// <summary>Schedules run (to the first violation, or all of them when clean).</summary>
    public int Schedules { get; init; }
    public TimeSpan Elapsed { get; init; }
    /// <summary>Wall-clock time to the first violation.</summary>
    public TimeSpan? TimeToBug { get; init; }
    /// <summary>The counterexample (Violation cells); replays exactly.</summary>
    public Counterexample? Counterexample { get; init; }
    /// <summary>The scenario's <c>history_stats</c> counters: (name, schedules in which it was non-zero, total over them).</summary>
    public IReadOnlyList<(string Name, int Runs, long Total)> Stats { get; init; } = [];
    /// <summary>Schedules the counters were sampled from.</summary>
    public int StatRuns { get; init; }

    /// <summary>The outcome contradicts the scenario's declared expectation for this era.</summary>
    public bool Contradicts => Status != CellStatus.Inconclusive && Expected.Kind switch
    {
        ExpectKind.NotApplicable => Status != CellStatus.NotApplicable,
        ExpectKind.Pass => Status != CellStatus.Clean,
        _ => Status != CellStatus.Violation || (Expected.Invariant != null && Expected.Invariant != Invariant),
    };

    /// <summary>The cell as the wide table prints it: "violation (invariant, 3 ms)", "clean (N schedules)", "inconclusive (N schedules)" or "n/a".</summary>
    public string Text
    {
        get
        {
            string s = Status switch
            {
                CellStatus.NotApplicable => "n/a",
                CellStatus.Clean => $"clean ({Schedules} schedules)",
                CellStatus.Inconclusive => $"inconclusive ({Schedules} schedules)",
                _ => $"violation ({Invariant}, {FormatTime(TimeToBug ?? Elapsed)})",
            };
            if (Stats.Count > 0)
                s += " " + string.Join(", ", Stats.Select(st => $"{st.Name.Replace("kvm_", "")} {st.Runs}/{StatRuns}"));
            return s;
        }
    }

    /// <summary>The cell's one-character symbol in the compact matrix (see <see cref="HistoryFormat.Legend"/>).</summary>
    public char Symbol => Contradicts ? '!' : Status switch
    {
        CellStatus.Violation => 'x',
        CellStatus.Clean => '.',
        CellStatus.Inconclusive => '?',
        _ => '-',
    };

    public static string FormatTime(TimeSpan t) =>
        t.TotalMilliseconds < 1 ? $"{t.TotalMicroseconds:0} us" : t.TotalSeconds < 1 ? $"{t.TotalMilliseconds:0.#} ms" : $"{t.TotalSeconds:0.##} s";
}

/// <summary>Settings of a history run.</summary>
public sealed record HistoryOptions
{
    /// <summary>
    /// Wall-clock limit of the whole table (null: none). It is a safety net, not the budget: a cell still running when it
    /// passes stops and is <see cref="CellStatus.Inconclusive"/>; cells not started by then are inconclusive with 0 schedules.
    /// </summary>
    public TimeSpan? TimeLimit { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>
    /// Schedule budget per cell: a cell is clean when this many schedules (deterministic for the seed) found nothing. It,
    /// not the host's speed, decides the verdict. 1024 keeps the default table near 60 s on 2 cores; the deepest catalog
    /// bug at seed 1 needs 509 schedules (d4-order at 3.7).
    /// </summary>
    public int SchedulesPerCell { get; init; } = DefaultSchedulesPerCell;
    public const int DefaultSchedulesPerCell = 1024;
    /// <summary>Cells explored at once (one kernel per run, one explorer per cell).</summary>
    public int Parallelism { get; init; } = Math.Max(1, Environment.ProcessorCount);
    /// <summary>Exploration strategy (default: the portfolio).</summary>
    public StrategySpec Strategy { get; init; } = new();
    /// <summary>Eras to run (default: every named era).</summary>
    public IReadOnlyList<KernelEra>? Eras { get; init; }
    /// <summary>Scenarios to run (default: every built-in scenario with a <c>catalog:</c> entry).</summary>
    public IReadOnlyList<Scenario>? Scenarios { get; init; }
    /// <summary>Schedules run to sample the <c>history_stats</c> counters of a cell.</summary>
    public int StatRuns { get; init; } = 8;
    /// <summary>Called after each cell completes (progress).</summary>
    public Action<HistoryCell>? OnCell { get; init; }
    /// <summary>Run only this shard's cells: row-major index i (scenario * eras + era) with i mod N = k-1; the others stay null.</summary>
    public ShardSpec? Shard { get; init; }
}

/// <summary>The table: rows = scenarios (catalog order), columns = eras (oldest first).</summary>
public sealed class HistoryReport
{
    public required IReadOnlyList<Scenario> Scenarios { get; init; }
    public required IReadOnlyList<KernelEra> Eras { get; init; }
    /// <summary>Cells, row-major: [scenario * Eras.Count + era]; null for the cells of other shards in a sharded run.</summary>
    public required HistoryCell[] Cells { get; init; }
    public TimeSpan Elapsed { get; init; }
    /// <summary>The schedule budget each cell had.</summary>
    public int SchedulesPerCell { get; init; }
    /// <summary>The exploration seed.</summary>
    public ulong Seed { get; init; }

    public HistoryCell this[int scenario, int era] => Cells[scenario * Eras.Count + era];

    /// <summary>Cells whose outcome contradicts the declared expectation.</summary>
    public IEnumerable<HistoryCell> Contradictions => Cells.Where(c => c != null && c.Contradicts);
}

/// <summary>
/// <c>mmusim history</c>: runs every catalog scenario (kernel-facts §5) under every era and compares each cell with the
/// scenario's declared expectation. Cells are independent and run in parallel (each owns its explorer and builds one
/// kernel per schedule); a cell stops at its first violation. Cells the scenario declares <c>n/a</c> are not run.
/// </summary>
public static class HistoryRunner
{
    /// <summary>Built-in scenarios with a <c>catalog:</c> entry, sorted by it (a, a-rc, b, c, d1, ...).</summary>
    public static IReadOnlyList<Scenario> CatalogScenarios() =>
        ScenarioLoader.BuiltInNames.Select(n => ScenarioLoader.LoadBuiltIn(n))
            .Where(s => s.Catalog != null)
            .OrderBy(s => s.Catalog, StringComparer.Ordinal)
            .ToList();

    public static HistoryReport Run(HistoryOptions options)
    {
        var scenarios = options.Scenarios ?? CatalogScenarios();
        var eras = options.Eras ?? EraTable.All;
        var cells = new HistoryCell[scenarios.Count * eras.Count];
        var work = new List<int>();
        for (int s = 0; s < scenarios.Count; s++)
            for (int e = 0; e < eras.Count; e++)
            {
                int i = s * eras.Count + e;
                if (options.Shard is { } shard && !shard.Owns(i)) continue;
                var expected = scenarios[s].ExpectedIn(eras[e]);
                if (expected.Kind == ExpectKind.NotApplicable)
                {
                    cells[i] = new HistoryCell { Scenario = scenarios[s].Name, Era = eras[e].Name, Status = CellStatus.NotApplicable, Expected = expected };
                    options.OnCell?.Invoke(cells[i]);
                }
                else work.Add(i);
            }

        int par = Math.Max(1, options.Parallelism);
        var sw = Stopwatch.StartNew();
        Parallel.ForEach(work, new ParallelOptions { MaxDegreeOfParallelism = par }, i =>
        {
            var sc = scenarios[i / eras.Count];
            var era = eras[i % eras.Count];
            // What is left of the table's wall-clock limit bounds this cell (zero left: inconclusive, 0 schedules).
            TimeSpan? left = options.TimeLimit is { } tl ? (tl > sw.Elapsed ? tl - sw.Elapsed : TimeSpan.Zero) : null;
            cells[i] = RunCell(sc, era, options, left);
            options.OnCell?.Invoke(cells[i]);
        });
        return new HistoryReport { Scenarios = scenarios, Eras = eras, Cells = cells, Elapsed = sw.Elapsed,
            SchedulesPerCell = options.SchedulesPerCell, Seed = options.Strategy.Seed };
    }

    /// <summary>Explore one scenario in one era: until the first violation, the schedule budget or the wall-clock limit.</summary>
    public static HistoryCell RunCell(Scenario scenario, KernelEra era, HistoryOptions options, TimeSpan? timeLimit)
    {
        var expected = scenario.ExpectedIn(era);
        if (expected.Kind == ExpectKind.NotApplicable)
            return new HistoryCell { Scenario = scenario.Name, Era = era.Name, Status = CellStatus.NotApplicable, Expected = expected };
        var program = new ScenarioExplorable(scenario, era);
        var report = new Explorer(program, new ExploreOptions
        {
            Strategy = scenario.PctDepth is int pd && pd > options.Strategy.Depth ? options.Strategy with { Depth = pd } : options.Strategy,
            Iterations = Math.Max(1, options.SchedulesPerCell),
            TimeLimit = timeLimit,
            Parallelism = 1,
            MaxCounterexamples = 1,
        }).Run();
        var ce = report.First;
        // Ended by the clock before its budget and without a violation: says nothing either way.
        bool inconclusive = ce == null && report.TimedOut && report.Schedules < options.SchedulesPerCell;
        var (stats, statRuns) = inconclusive ? ([], 0) : SampleStats(scenario, era, options.StatRuns);
        return new HistoryCell
        {
            Scenario = scenario.Name,
            Era = era.Name,
            Status = ce != null ? CellStatus.Violation : inconclusive ? CellStatus.Inconclusive : CellStatus.Clean,
            Expected = expected,
            Invariant = ce?.Violation.Invariant,
            Message = ce?.Violation.Message,
            Schedules = ce == null ? report.Schedules : report.SchedulesToFirstBug ?? report.Schedules,
            Elapsed = report.Elapsed,
            TimeToBug = report.TimeToFirstBug,
            Counterexample = ce,
            Stats = stats,
            StatRuns = statRuns,
        };
    }

    /// <summary>Run a few random schedules and count, per <c>history_stats</c> counter, the runs where it was non-zero.</summary>
    static (IReadOnlyList<(string, int, long)>, int) SampleStats(Scenario scenario, KernelEra era, int runs)
    {
        if (scenario.HistoryStats.Count == 0 || runs <= 0) return ([], 0);
        var hits = new int[scenario.HistoryStats.Count];
        var totals = new long[scenario.HistoryStats.Count];
        for (int r = 0; r < runs; r++)
        {
            var res = ScenarioRunner.Run(scenario, era, new RandomStrategy((ulong)r + 1), new RunOptions { Seed = (ulong)r + 1, Iteration = r });
            for (int i = 0; i < hits.Length; i++)
            {
                long v = res.Kernel.Stats[scenario.HistoryStats[i]];
                if (v > 0) hits[i]++;
                totals[i] += v;
            }
        }
        var list = new List<(string, int, long)>();
        for (int i = 0; i < hits.Length; i++) list.Add((Snake(scenario.HistoryStats[i]), hits[i], totals[i]));
        return (list, runs);
    }

    static string Snake(Stat s) =>
        string.Concat(s.ToString().Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
}
