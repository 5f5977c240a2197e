using System.Diagnostics;
using MmuSim.Checker;
using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>How one run of a scenario is set up.</summary>
public sealed record RunOptions
{
    /// <summary>Seed for data choices made without a strategy (setup, plain simulation).</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Exploration iteration number (passed to <see cref="IStrategy.BeginRun"/>).</summary>
    public int Iteration { get; init; }

    /// <summary>Mutations on top of the scenario's own <c>mutations:</c>.</summary>
    public IReadOnlyList<Mutation> Mutations { get; init; } = [];

    public CheckMode CheckMode { get; init; } = CheckMode.Full;

    /// <summary>Per-step recorder (last steps, race diagrams, ftrace); null for fast exploration.</summary>
    public IStepSink? StepSink { get; init; }

    /// <summary>Called on the fresh kernel before anything runs (tests, trace writers).</summary>
    public Action<Kernel>? Configure { get; init; }

    /// <summary>Called after the setup phase, before the threads start (experiments measure the threads phase only).</summary>
    public Action<Kernel>? AfterSetup { get; init; }
}

/// <summary>The outcome of one run.</summary>
public sealed class RunResult
{
    public required Scenario Scenario { get; init; }
    public required KernelEra Era { get; init; }
    public required string StrategyName { get; init; }
    public required Kernel Kernel { get; init; }
    public required ScenarioWorld World { get; init; }

    /// <summary>The violation that stopped the run, or null.</summary>
    public Violation? Violation { get; init; }

    /// <summary>Every recorded decision of the threads phase (replay with <see cref="ReplayStrategy"/>).</summary>
    public required (byte Kind, int Value)[] Decisions { get; init; }

    public int Preemptions { get; init; }

    public long Steps { get; init; }

    public long SimulatedNs { get; init; }

    public required ExpectedOutcome Expected { get; init; }

    /// <summary>Mutations that were on: the scenario's own plus the run's.</summary>
    public IReadOnlyList<Mutation> Mutations { get; init; } = [];

    /// <summary>Does the outcome match what the scenario declares for this era?</summary>
    public bool MatchesExpectation => Expected.Matches(Violation);

    /// <summary>Non-zero counters.</summary>
    public IReadOnlyList<(string Name, long Value)> Stats => Kernel.Stats.NonZero().ToList();

    /// <summary>Values stored by ops (<c>read ... as: label</c>).</summary>
    public IReadOnlyDictionary<string, ulong> Observed => World.Observed;

    /// <summary>Sections to print after the run: subsystems and world objects implementing <see cref="IRunReport"/>.</summary>
    public IReadOnlyList<IRunReport> Reports
    {
        get
        {
            var list = new List<IRunReport>();
            foreach (var o in Kernel.Subsystems.Values)
                if (o is IRunReport r && !list.Contains(r)) list.Add(r);
            foreach (var o in World.Objects.Values)
                if (o is IRunReport r && !list.Contains(r)) list.Add(r);
            return list;
        }
    }

    /// <summary>A deterministic one-line summary (used by determinism tests and replay checks).</summary>
    public string Summary =>
        $"{Scenario.Name} era={Era.Name} outcome={(Violation == null ? "pass" : Violation.ToString())} steps={Steps} " +
        $"ns={SimulatedNs} decisions={Decisions.Length} preemptions={Preemptions} " +
        string.Join(" ", Stats.Select(s => $"{s.Name}={s.Value}")) + " " +
        string.Join(" ", Observed.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key}=0x{o.Value:x}"));
}

/// <summary>The outcome of an exploration.</summary>
/// <param name="Iterations">Schedules run (including the violating one).</param>
/// <param name="FirstViolation">The first violating run, or null if every schedule was clean.</param>
/// <param name="TotalSteps">Scheduling steps over all schedules.</param>
/// <param name="Elapsed">Wall time.</param>
public sealed record ExploreResult(int Iterations, RunResult? FirstViolation, long TotalSteps, TimeSpan Elapsed, long MinSteps, long MaxSteps)
{
    public double SchedulesPerSecond => Elapsed.TotalSeconds > 0 ? Iterations / Elapsed.TotalSeconds : 0;
}

/// <summary>
/// Runs a <see cref="Scenario"/>: builds a fresh <see cref="Kernel"/> (era, strategy, mutations, costs, checks) and a
/// <see cref="ScenarioWorld"/>, creates the declared processes and VMAs, runs the initial contents and the setup ops on
/// one context with no interleaving, then spawns one context per thread and daemon and runs them under the strategy.
/// </summary>
/// <remarks>
/// The scenario is parsed once; per run only the kernel and world are rebuilt, so exploration can run many thousands
/// of schedules per second. The decision log covers the threads phase only (setup makes no scheduling decisions), so a
/// saved log replays the run exactly with <see cref="ReplayStrategy"/>.
/// </remarks>
public static class ScenarioRunner
{
    /// <summary>Run once. <paramref name="strategy"/> null = plain simulation (no preemption at points).</summary>
    public static RunResult Run(Scenario s, KernelEra era, IStrategy? strategy, RunOptions? options = null)
    {
        options ??= new RunOptions();
        var mutations = new HashSet<Mutation>(s.Mutations);
        foreach (var m in options.Mutations) mutations.Add(m);
        CostModel? costs = null;
        if (s.Costs.Count > 0)
        {
            costs = new CostModel();
            foreach (var (kind, ns) in s.Costs) costs[kind] = ns;
        }
        var k = new Kernel(era, null, new KernelOptions
        {
            InitialFrames = InitialFrames(s),
            InitialPageTables = InitialPageTables(s),
            CheckMode = options.CheckMode,
            Mutations = mutations,
            Costs = costs,
            Seed = options.Seed,
            NumaNodes = s.NumaNodes,
        });
        if (s.MaxSteps is { } max) k.S.MaxSteps = max;
        if (s.PrimaryTlb) k.PrimaryTlb = new CpuTlb(k);
        k.S.PreemptRt = s.PreemptRt;
        if (s.Checks != null) k.Checker.EnableOnly(s.Checks);
        var world = new ScenarioWorld(k) { SecondaryDriver = s.SecondaryDriver };
        options.Configure?.Invoke(k);

        foreach (var p in s.Processes)
        {
            var mm = k.CreateMm(p.Name);
            world.Processes[p.Name] = mm;
            foreach (var v in p.Vmas) mm.InsertVma(new Vma(mm, v.Start, v.End, v.Prot, v.Flags | Mmap.NewVmaFlags(k)));
        }

        // Phase 1: initial contents and setup ops, one context, no strategy (no interleaving, no decisions).
        Violation? violation = null;
        if (s.Setup.Count > 0 || s.Processes.Any(p => p.Vmas.Any(v => v.Contents.Count > 0)))
        {
            k.S.Spawn("setup", ctx => Setup(world, s));
            violation = k.S.Run();
            k.S.Decisions.Clear();
        }

        // Phase 2: threads and daemons under the strategy.
        if (violation == null)
        {
            options.AfterSetup?.Invoke(k);
            k.Weak.Begin(s.Memory);
            k.S.Strategy = strategy;
            k.S.StepSink = options.StepSink;
            foreach (var t in s.Threads) k.S.Spawn(t.Name, ctx => RunOps(world, t.Ops));
            foreach (var d in s.Daemons) k.S.Spawn(d.Name, ctx => Loop(world, d.Ops), daemon: true);
            violation = k.Run(options.Iteration);
        }

        return new RunResult
        {
            Scenario = s,
            Era = era,
            StrategyName = strategy?.Name ?? "plain",
            Kernel = k,
            World = world,
            Violation = violation,
            Decisions = k.S.Decisions.ToEntries(),
            Preemptions = k.S.Decisions.Preemptions,
            Steps = k.S.Steps,
            SimulatedNs = k.S.ClockNs,
            Expected = s.ExpectedIn(era),
            Mutations = mutations.Order().ToArray(),
        };
    }

    /// <summary>Replay a saved decision list.</summary>
    public static RunResult Replay(Scenario s, KernelEra era, IReadOnlyList<(byte Kind, int Value)> decisions, RunOptions? options = null) =>
        Run(s, era, new ReplayStrategy(decisions), options);

    /// <summary>
    /// Run up to <paramref name="iterations"/> schedules, each <c>Run(iteration)</c> of one strategy made by
    /// <paramref name="strategyFactory"/> from <paramref name="seed"/>; stop at the first violation.
    /// </summary>
    public static ExploreResult Explore(Scenario s, KernelEra era, Func<ulong, IStrategy> strategyFactory, int iterations, ulong seed,
        IReadOnlyList<Mutation>? mutations = null, Action<int>? progress = null, CancellationToken ct = default)
    {
        var strategy = strategyFactory(seed);
        var sw = Stopwatch.StartNew();
        long total = 0, min = long.MaxValue, max = 0;
        int i = 0;
        for (; i < iterations && !ct.IsCancellationRequested; i++)
        {
            var r = Run(s, era, strategy, new RunOptions { Iteration = i, Seed = seed, Mutations = mutations ?? [] });
            total += r.Steps;
            min = Math.Min(min, r.Steps);
            max = Math.Max(max, r.Steps);
            progress?.Invoke(i + 1);
            if (r.Violation != null)
                return new ExploreResult(i + 1, r, total, sw.Elapsed, min, max);
        }
        return new ExploreResult(i, null, total, sw.Elapsed, i == 0 ? 0 : min, max);
    }

    /// <summary>The random strategy, as <see cref="Explore"/> and <c>mmusim run</c> use it.</summary>
    public static IStrategy RandomStrategyFactory(ulong seed) => new RandomStrategy(seed);

    /// <summary>Enough frames for twice the declared memory (COW copies); the array grows on demand.</summary>
    static long InitialFrames(Scenario s)
    {
        ulong pages = 0;
        foreach (var p in s.Processes)
            foreach (var v in p.Vmas) pages += v.Len >> MmStruct.PageShift;
        return (long)Math.Clamp(pages * 2 + 16, 32, 4096);
    }

    /// <summary>A PGD per process and a PUD/PMD/PTE table per declared VMA (fork doubles it; the pool grows on demand).</summary>
    static int InitialPageTables(Scenario s)
    {
        int n = 0;
        foreach (var p in s.Processes) n += 1 + 3 * Math.Max(1, p.Vmas.Count);
        return Math.Clamp(n, 4, 64);
    }

    static async ValueTask Setup(ScenarioWorld world, Scenario s)
    {
        foreach (var p in s.Processes)
        {
            var mm = world.Processes[p.Name];
            foreach (var v in p.Vmas)
                for (int i = 0; i < v.Contents.Count; i++)
                    if (v.Contents[i] is { } value)
                    {
                        ulong addr = v.Start + ((ulong)i << MmStruct.PageShift);
                        if (await Memory.UserAccess(mm, addr, write: true, value) == null)
                            throw new ScenarioException(s.File, v.Line, $"processes[{p.Name}].contents", $"writing the initial contents at 0x{addr:x} failed");
                    }
        }
        await RunOps(world, s.Setup);
    }

    static async ValueTask RunOps(ScenarioWorld world, IReadOnlyList<OpCall> ops)
    {
        var k = world.K;
        foreach (var op in ops)
        {
            if (k.S.Violation != null) return;
            if (world.HasHugetlb) Hugetlb.HugetlbOps.CheckOp(world, op.Spec.Name, op.Args);
            await op.Spec.Run(world, op.Args);
        }
    }

    static async ValueTask Loop(ScenarioWorld world, IReadOnlyList<OpCall> ops)
    {
        var k = world.K;
        while (k.S.Violation == null)
        {
            // stepsMark/clockMark: the state digest hashes them relative to the scheduler's counters (StateDigest).
            long stepsMark = k.S.Steps;
            long clockMark = k.S.ClockNs;
            await RunOps(world, ops);
            // A daemon pass that neither took a step nor slept would spin forever without yielding.
            if (k.S.Steps == stepsMark && k.S.ClockNs == clockMark)
                await k.S.Sleep(1_000_000);
        }
    }
}
