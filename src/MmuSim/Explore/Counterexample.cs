using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// A violating run, reproducible from its decision list: the scenario/era/mutations it ran, the strategy configuration
/// and iteration that found it, the violation, and every decision. Save it with <see cref="TraceFile"/>; reproduce it with
/// <see cref="Replay"/>; shorten it with <see cref="Shrinker"/>.
/// </summary>
public sealed class Counterexample
{
    public required ExplorableInfo Info { get; init; }

    /// <summary>Strategy configuration of the finding run, e.g. <c>pct(seed=1,depth=3,k=118)</c>, or <c>shrunk</c>.</summary>
    public required string Strategy { get; init; }

    public ulong Seed { get; init; }

    public int Iteration { get; init; }

    public required Violation Violation { get; init; }

    public required (byte Kind, int Value)[] Decisions { get; init; }

    public long Steps { get; init; }

    public int Preemptions { get; init; }

    /// <summary>Scheduling decisions in <see cref="Decisions"/> (the rest are data choices).</summary>
    public int ScheduleDecisions
    {
        get
        {
            int n = 0;
            foreach (var (kind, _) in Decisions)
                if (kind == DecisionLog.SchedKind) n++;
            return n;
        }
    }

    public static Counterexample From(ExplorableInfo info, string strategy, ulong seed, int iteration, RunOutcome r) => new()
    {
        Info = info,
        Strategy = strategy,
        Seed = seed,
        Iteration = iteration,
        Violation = r.Violation ?? throw new ArgumentException("the run has no violation", nameof(r)),
        Decisions = r.Log ?? throw new ArgumentException("the run kept no decision log", nameof(r)),
        Steps = r.Steps,
        Preemptions = r.Preemptions,
    };

    /// <summary>
    /// Re-run the decisions on <paramref name="program"/> (the same scenario, era and mutations). The decisions are
    /// followed exactly; if the run leaves them (different model version or program) the result says so.
    /// </summary>
    public ReplayResult Replay(IExplorable program, IRunObserver? observer = null) =>
        Explore.Replay.Run(program, Decisions, Violation.Invariant, observer);

    public override string ToString() =>
        $"{Violation} [{Info.Scenario} era {Info.Era}, {Strategy}, iteration {Iteration}, {Steps} steps, {Preemptions} preemptions]";
}

/// <summary>The outcome of replaying a counterexample.</summary>
/// <param name="Run">The replayed run.</param>
/// <param name="Diverged">The program asked for a decision the log could not supply (or supplied one not runnable).</param>
/// <param name="Reproduced">The replay ended in a violation of the expected invariant without diverging.</param>
public sealed record ReplayResult(RunOutcome Run, bool Diverged, bool Reproduced)
{
    public Violation? Violation => Run.Violation;
}

/// <summary>Replays decision lists: from C# (users' own tests), from trace files, and for shrinking.</summary>
public static class Replay
{
    /// <summary>Replay <paramref name="decisions"/> exactly; past their end, no preemption.</summary>
    public static ReplayResult Run(IExplorable program, IReadOnlyList<(byte Kind, int Value)> decisions, string? expectedInvariant = null, IRunObserver? observer = null)
    {
        var replay = new ReplayStrategy(decisions, NoPreemptStrategy.Instance);
        var r = program.RunOnce(replay, 0, observer);
        bool diverged = replay.Diverged || replay.Position < decisions.Count;
        bool reproduced = !diverged && r.Violation != null && (expectedInvariant == null || r.Violation.Invariant == expectedInvariant);
        return new ReplayResult(r, diverged, reproduced);
    }

    /// <summary>Load a trace file and replay it on <paramref name="program"/>.</summary>
    public static ReplayResult File(string path, IExplorable program, IRunObserver? observer = null)
    {
        var t = TraceFile.Load(path);
        return Run(program, t.Decisions, t.Invariant, observer);
    }
}
