namespace MmuSim.Sched;

/// <summary>What a strategy sees when the scheduler asks it which context runs next.</summary>
public readonly ref struct Decision
{
    public Decision(ReadOnlySpan<int> runnable, int current, long step, PointKind kind)
    {
        Runnable = runnable;
        Current = current;
        Step = step;
        Kind = kind;
    }

    /// <summary>Ids of runnable contexts, ascending. Never empty.</summary>
    public ReadOnlySpan<int> Runnable { get; }

    /// <summary>The context at the point, or -1 when it blocked or finished (a switch is forced).</summary>
    public int Current { get; }

    /// <summary>Global step number.</summary>
    public long Step { get; }

    public PointKind Kind { get; }
}

/// <summary>
/// A scheduling strategy. The scheduler consults it only where a choice exists (two or more runnable contexts)
/// and records every answer in its <see cref="DecisionLog"/>, so that any run replays from its decisions alone.
/// </summary>
public interface IStrategy
{
    /// <summary>Short name shown in summaries and trace headers.</summary>
    string Name { get; }

    /// <summary>Called once before each run (iteration) starts.</summary>
    void BeginRun(int iteration);

    /// <summary>Pick the id of the next context to run; must be one of <see cref="Decision.Runnable"/>.</summary>
    int Next(in Decision decision);

    /// <summary>A data choice in [0, bound): workload randomness goes through here so that it replays too.</summary>
    int NextInt(int bound);
}

/// <summary>
/// A strategy that reads the whole state at its decisions (a state cache): while <see cref="ReadsState"/> the scheduler
/// takes every decision in its driver loop with every context parked, so that each context's position is in its async
/// state machine box (<see cref="Explore.StateDigest"/>), and the strategy may end a run with
/// <see cref="Scheduler.Abandon"/>.
/// </summary>
public interface IStateReadingStrategy
{
    bool ReadsState { get; }
}
