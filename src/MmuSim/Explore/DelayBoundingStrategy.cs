using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// Delay bounding (Emmi, Qadeer, Rakamarić, POPL 2011), randomized as in Coyote's <c>DelayBoundingStrategy</c>: a
/// deterministic non-preemptive round-robin scheduler (run the current context until it blocks or finishes, then the
/// next id in cyclic order) that is allowed at most <c>delays</c> deviations. A delay at decision t skips the context
/// the base scheduler would run and moves to the next one in cyclic order. Delay points are drawn uniformly from the
/// first k decisions, k estimated from earlier runs as for <see cref="PctStrategy"/>.
/// Deterministic from (seed, iteration, committed k).
/// </summary>
public sealed class DelayBoundingStrategy : IStrategy, IAdaptiveStrategy, IDescribedStrategy
{
    readonly ulong _seed;
    readonly int _delays;
    Rng _rng;
    int[] _delayPoints = [];
    int _nextDelay;
    int _last;
    long _decisions;
    StepBoundEstimator _bound;

    public DelayBoundingStrategy(ulong seed, int delays = 2, int estimateEvery = Explorer.RoundSize, long initialK = 0)
    {
        if (delays < 0) throw new ArgumentOutOfRangeException(nameof(delays));
        _seed = seed;
        _delays = delays;
        _bound = new StepBoundEstimator(initialK, estimateEvery);
    }

    public string Name => "delay";

    /// <summary>Decisions after which a run continues as a uniform random walk (non-preemptive scheduling is unfair; see <see cref="PctStrategy.FairAfter"/>).</summary>
    public int FairAfter { get; init; } = StrategyMath.DefaultFairAfter;

    public long StepBound => _bound.K;

    public void Observe(long decisions) => _bound.Observe(decisions);

    public void BeginRun(int iteration)
    {
        Observe(_decisions);
        _bound.BeginRun(iteration);
        _rng = new Rng(Rng.Mix(_seed, (ulong)iteration));
        _decisions = 0;
        _nextDelay = 0;
        _last = -1;
        // With replacement: several delays at one decision skip several contexts.
        _delayPoints = StrategyMath.SamplePoints(ref _rng, _bound.K, _delays, distinct: false);
    }

    public int Next(in Decision d)
    {
        _decisions++;
        if (_decisions > FairAfter) return d.Runnable[_rng.Below(d.Runnable.Length)];
        int pick = d.Current >= 0 && d.Runnable.Contains(d.Current) ? d.Current : StrategyMath.NextCyclic(d.Runnable, _last);
        while (_nextDelay < _delayPoints.Length && _delayPoints[_nextDelay] <= _decisions)
        {
            _nextDelay++;
            pick = StrategyMath.NextCyclic(d.Runnable, pick);
        }
        _last = pick;
        return pick;
    }

    public int NextInt(int bound) => _rng.Below(bound);

    public string Describe() => $"delay(seed={_seed},delays={_delays},k={_bound.K})";
}
