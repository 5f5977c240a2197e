using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// A strategy whose schedule depends on the length of earlier runs (PCT and delay bounding estimate the step bound k
/// from them, as Coyote and Shuttle do). The explorer feeds the decision counts of every finished run; the estimate is
/// taken from the first round (<see cref="Explorer.RoundSize"/> iterations) and committed when the second begins, so
/// iteration i's schedule depends on (seed, i, the first round's runs) and not on how many cores, shards or resumed
/// sessions explored them (see <see cref="StepBoundEstimator"/>).
/// </summary>
public interface IAdaptiveStrategy
{
    /// <summary>Report a finished run's number of scheduling decisions (the strategy also counts its own runs).</summary>
    void Observe(long decisions);
}

/// <summary>A strategy that enumerates a finite set of schedules (DFS) and knows when it has tried them all.</summary>
public interface IExhaustiveStrategy
{
    /// <summary>True while at least one schedule has not been run yet.</summary>
    bool HasMore { get; }

    /// <summary>The completion statement, e.g. "no violation in all 20 schedules up to 2 preemptions".</summary>
    string Completion(int schedules);
}

/// <summary>A strategy that can describe the configuration of the current run (for summaries and trace headers).</summary>
public interface IDescribedStrategy
{
    /// <summary>e.g. <c>pct(seed=42,depth=3,k=118)</c>. Valid after <see cref="IStrategy.BeginRun"/>.</summary>
    string Describe();
}

/// <summary>
/// The non-preemptive default used after a replayed prefix while shrinking: keep running the current context, else the
/// lowest runnable id; data choices take 0.
/// </summary>
public sealed class NoPreemptStrategy : IStrategy
{
    public static readonly NoPreemptStrategy Instance = new();

    public string Name => "no-preempt";

    public void BeginRun(int iteration) { }

    public int Next(in Decision d) => d.Current >= 0 && d.Runnable.Contains(d.Current) ? d.Current : d.Runnable[0];

    public int NextInt(int bound) => 0;
}

/// <summary>Small helpers shared by the strategies.</summary>
public static class StrategyMath
{
    /// <summary>
    /// Decisions per run after which the unfair strategies (PCT, delay bounding, DFS) schedule fairly, so that spinning
    /// retry loops cannot starve the context they wait for (a spurious liveness violation).
    /// </summary>
    public const int DefaultFairAfter = 2000;

    /// <summary>Bit mask of the runnable ids (contexts are at most 64 per run).</summary>
    public static ulong Mask(ReadOnlySpan<int> runnable)
    {
        ulong m = 0;
        foreach (var id in runnable) m |= 1UL << id;
        return m;
    }

    /// <summary>The first runnable id after <paramref name="after"/> in cyclic id order.</summary>
    public static int NextCyclic(ReadOnlySpan<int> runnable, int after)
    {
        foreach (var id in runnable)
            if (id > after) return id;
        return runnable[0];
    }

    /// <summary><paramref name="count"/> values drawn uniformly from [1, k], sorted; distinct when requested and possible.</summary>
    public static int[] SamplePoints(ref Rng rng, long k, int count, bool distinct)
    {
        if (k <= 0 || count <= 0) return [];
        if (distinct && count >= k)
        {
            var all = new int[k];
            for (int i = 0; i < k; i++) all[i] = i + 1;
            return all;
        }
        var r = new int[count];
        for (int i = 0; i < count; i++)
        {
            int v;
            do v = 1 + (int)(rng.NextULong() % (ulong)k);
            while (distinct && Array.IndexOf(r, v, 0, i) >= 0);
            r[i] = v;
        }
        Array.Sort(r);
        return r;
    }
}

/// <summary>
/// The step bound k of PCT and delay bounding, estimated from earlier runs as Coyote and Shuttle do: the largest
/// decision count of the first round (the calibration round, iterations 0 .. <c>estimateEvery</c>-1), adopted when the
/// second round begins and kept from then on. Iteration i's schedule is therefore a function of (seed, i, the
/// calibration round) only: it does not depend on how many workers explore in parallel, on which shard of a sharded
/// campaign runs it (every shard runs the calibration round), or on whether the search was resumed from a checkpoint.
/// </summary>
public struct StepBoundEstimator(long initialK, int estimateEvery)
{
    readonly int _every = Math.Max(1, estimateEvery);
    long _pendingMax;
    long _round = -1;

    /// <summary>The bound the current run uses.</summary>
    public long K { get; private set; } = initialK;

    /// <summary>Record a run's decision count.</summary>
    public void Observe(long decisions) => _pendingMax = Math.Max(_pendingMax, decisions);

    /// <summary>At the start of <paramref name="iteration"/>: adopt the calibration round's maximum when a later round begins.</summary>
    public void BeginRun(int iteration)
    {
        long round = iteration / _every;
        if (round == _round) return;
        if (round >= 1 && !_frozen)
        {
            K = Math.Max(K, _pendingMax);
            _frozen = true;
        }
        _round = round;
    }

    bool _frozen;
}
