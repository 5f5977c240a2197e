using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>What a counterexample needs to name the program it came from: scenario, era and mutation switches.</summary>
public sealed record ExplorableInfo(string Scenario, string Era, IReadOnlyList<string> Mutations)
{
    public static ExplorableInfo Of(string scenario, string era = "-", params string[] mutations) => new(scenario, era, mutations);
}

/// <summary>
/// A program the explorer can run again and again: each call builds a fresh world (one Kernel or Scheduler per run),
/// runs it under <paramref name="strategy"/> as iteration <paramref name="iteration"/>, and reports the outcome.
/// The scenario runner adapts YAML scenarios to this; tests use small hand-written programs.
/// </summary>
public interface IExplorable
{
    ExplorableInfo Info { get; }

    /// <param name="observer">Attached before the run (trace sinks, race diagrams) and detached after it.</param>
    RunOutcome RunOnce(IStrategy strategy, int iteration, IRunObserver? observer = null);
}

/// <summary>Observes one run: attach step sinks and function hooks before it starts, collect after it ends.</summary>
public interface IRunObserver
{
    void Attach(Scheduler s, Kernel? k);

    void Detach(Scheduler s, Kernel? k);
}

/// <summary>The outcome of one run.</summary>
public sealed class RunOutcome
{
    public Violation? Violation { get; init; }

    /// <summary>Scheduling points passed.</summary>
    public long Steps { get; init; }

    /// <summary>Entries in the decision log (scheduling decisions with a choice, plus data choices).</summary>
    public int Decisions { get; init; }

    public int Preemptions { get; init; }

    /// <summary>Hash of the decision list: equal schedules have equal hashes (distinct-schedule counting).</summary>
    public ulong ScheduleHash { get; init; }

    /// <summary>The decision list; kept when the run violated an invariant or was observed.</summary>
    public (byte Kind, int Value)[]? Log { get; init; }

    /// <summary>Simulated nanoseconds at the end of the run.</summary>
    public long ClockNs { get; init; }

    /// <summary>Build the result of a finished run from its scheduler.</summary>
    public static RunOutcome Capture(Scheduler s, Violation? v, bool keepLog)
    {
        var log = s.Decisions;
        return new RunOutcome
        {
            Violation = v,
            Steps = s.Steps,
            Decisions = log.Count,
            Preemptions = log.Preemptions,
            ScheduleHash = Hash(log),
            Log = keepLog || v != null ? log.ToEntries() : null,
            ClockNs = s.ClockNs,
        };
    }

    /// <summary>FNV-1a over (kind, value) pairs.</summary>
    public static ulong Hash(IReadOnlyList<(byte Kind, int Value)> log)
    {
        ulong h = 0xcbf29ce484222325UL;
        for (int i = 0; i < log.Count; i++)
        {
            h = (h ^ (ulong)(uint)log[i].Value) * 0x100000001b3UL;
            h = (h ^ log[i].Kind) * 0x100000001b3UL;
        }
        return h;
    }

    /// <summary>FNV-1a over (kind, value) pairs (equal to the list overload for the same entries).</summary>
    public static ulong Hash(DecisionLog log)
    {
        ulong h = 0xcbf29ce484222325UL;
        for (int i = 0; i < log.Count; i++)
        {
            h = (h ^ (ulong)(uint)log[i]) * 0x100000001b3UL;
            h = (h ^ log.KindAt(i)) * 0x100000001b3UL;
        }
        return h;
    }
}

/// <summary>An explorable whose runs build a <see cref="Kernel"/> (scenarios, catalog programs).</summary>
/// <param name="build">Build the kernel with the given strategy and spawn its contexts; do not run it.</param>
public sealed class KernelExplorable(ExplorableInfo info, Func<IStrategy, Kernel> build) : IExplorable
{
    public ExplorableInfo Info => info;

    public RunOutcome RunOnce(IStrategy strategy, int iteration, IRunObserver? observer = null)
    {
        var k = build(strategy);
        observer?.Attach(k.S, k);
        Violation? v;
        try { v = k.Run(iteration); }
        finally { observer?.Detach(k.S, k); }
        return RunOutcome.Capture(k.S, v, keepLog: observer != null);
    }
}

/// <summary>An explorable made of contexts on a bare <see cref="Scheduler"/> (small hand-written programs in tests).</summary>
/// <param name="build">Create the scheduler with the given strategy and spawn its contexts; do not run it.</param>
public sealed class SchedulerExplorable(ExplorableInfo info, Func<IStrategy, Scheduler> build) : IExplorable
{
    public ExplorableInfo Info => info;

    public RunOutcome RunOnce(IStrategy strategy, int iteration, IRunObserver? observer = null)
    {
        var s = build(strategy);
        observer?.Attach(s, null);
        Violation? v;
        try { v = s.Run(iteration); }
        finally { observer?.Detach(s, null); }
        return RunOutcome.Capture(s, v, keepLog: observer != null);
    }
}
