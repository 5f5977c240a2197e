using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// PCT, probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte, ASPLOS 2010), structured as
/// Coyote's <c>PrioritizationStrategy</c>: every context gets a random priority when it first becomes runnable
/// (inserted at a random position of the priority list); the highest-priority runnable context always runs; at
/// d−1 change points, drawn uniformly from the first k decisions, the context that would run is demoted below every
/// other. A bug of depth d (d ordering constraints) is found in one run with probability at least
/// <c>1/(n·k^(d−1))</c>, n = contexts, k = scheduling decisions per run.
/// </summary>
/// <remarks>
/// k is not known in advance: as Coyote and Shuttle do, it is estimated as the largest decision count of earlier runs
/// (the first round runs with k = 0, i.e. random priorities without change points). Estimates are committed every
/// <c>estimateEvery</c> iterations so that exploration stays deterministic on any number of cores
/// (see <see cref="IAdaptiveStrategy"/>). Deterministic from (seed, iteration, committed k). After
/// <see cref="FairAfter"/> decisions a run continues as a fair random walk.
/// </remarks>
public sealed class PctStrategy : IStrategy, IAdaptiveStrategy, IDescribedStrategy
{
    readonly ulong _seed;
    readonly int _depth;
    readonly List<int> _prio = [];   // context ids, highest priority first
    ulong _known;
    Rng _rng;
    int[] _changePoints = [];
    int _nextChange;
    long _decisions;
    StepBoundEstimator _bound;

    /// <param name="seed">Base seed; each iteration derives its own.</param>
    /// <param name="depth">Bug depth d ≥ 1 (d−1 priority change points per run).</param>
    /// <param name="estimateEvery">Commit the k estimate every this many iterations (the explorer's round size).</param>
    /// <param name="initialK">Starting estimate of k (0: learn it from the first round).</param>
    public PctStrategy(ulong seed, int depth = 3, int estimateEvery = Explorer.RoundSize, long initialK = 0)
    {
        if (depth < 1) throw new ArgumentOutOfRangeException(nameof(depth), "PCT depth must be at least 1");
        _seed = seed;
        _depth = depth;
        _bound = new StepBoundEstimator(initialK, estimateEvery);
    }

    public const string GuaranteeText =
        "PCT finds a bug of depth d (d ordering constraints between contexts) in one run with probability at least " +
        "1/(n*k^(d-1)), n = contexts, k = scheduling decisions per run (estimated from earlier runs).";

    public string Name => "pct";

    /// <summary>
    /// Decisions after which a run continues as a uniform random walk (default <see cref="StrategyMath.DefaultFairAfter"/>):
    /// priorities are unfair, and a high-priority context spinning in a retry loop would otherwise starve the context it
    /// waits for and end in a spurious liveness violation (Coyote's MaxUnfairSchedulingSteps).
    /// </summary>
    public int FairAfter { get; init; } = StrategyMath.DefaultFairAfter;

    public int Depth => _depth;

    /// <summary>The step bound k used by the current run.</summary>
    public long StepBound => _bound.K;

    /// <summary>Decisions made in the current run so far.</summary>
    public long Decisions => _decisions;

    public void Observe(long decisions) => _bound.Observe(decisions);

    public void BeginRun(int iteration)
    {
        Observe(_decisions);
        _bound.BeginRun(iteration);
        _rng = new Rng(Rng.Mix(_seed, (ulong)iteration));
        _prio.Clear();
        _known = 0;
        _decisions = 0;
        _nextChange = 0;
        _changePoints = StrategyMath.SamplePoints(ref _rng, _bound.K, _depth - 1, distinct: true);
    }

    public int Next(in Decision d)
    {
        _decisions++;
        if (_decisions > FairAfter) return d.Runnable[_rng.Below(d.Runnable.Length)];
        foreach (var id in d.Runnable)
        {
            if ((_known & (1UL << id)) != 0) continue;
            _known |= 1UL << id;
            _prio.Insert(_rng.Below(_prio.Count + 1), id);
        }
        ulong mask = StrategyMath.Mask(d.Runnable);
        int best = Highest(mask);
        while (_nextChange < _changePoints.Length && _changePoints[_nextChange] <= _decisions)
        {
            _nextChange++;
            _prio.Remove(best);
            _prio.Add(best);
            best = Highest(mask);
        }
        return best;
    }

    int Highest(ulong mask)
    {
        foreach (var id in _prio)
            if ((mask & (1UL << id)) != 0) return id;
        throw new ModelException("PCT: no runnable context in the priority list");
    }

    public int NextInt(int bound) => _rng.Below(bound);

    public string Describe() => $"pct(seed={_seed},depth={_depth},k={_bound.K})";
}
