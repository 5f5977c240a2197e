using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// The default strategy: rotates a fixed list of strategies across iterations (iteration i runs member i mod m, with
/// the iteration number i itself, so every member is deterministic from the portfolio seed and i). Different strategies
/// find different bug shapes: random walk (shallow races), PCT depth 2 and 3 (few ordering constraints in long runs),
/// delay bounding (a preemption at one exact place), and a rarely-switching random walk.
/// </summary>
public sealed class PortfolioStrategy : IStrategy, IAdaptiveStrategy, IDescribedStrategy
{
    readonly IStrategy[] _members;
    readonly ulong _seed;
    IStrategy _active;

    public PortfolioStrategy(ulong seed, int depth = 3) : this(seed, DefaultMembers(seed, depth)) { }

    public PortfolioStrategy(ulong seed, IStrategy[] members)
    {
        if (members.Length == 0) throw new ArgumentException("a portfolio needs members", nameof(members));
        _seed = seed;
        _members = members;
        _active = members[0];
    }

    /// <summary>
    /// random, pct(d=2), delay(2), pct(d=max(3, <paramref name="depth"/>)), prob-random(0.05): each with its own seed
    /// derived from the portfolio's. A scenario whose bug needs more ordering constraints declares <c>pct_depth</c>.
    /// </summary>
    public static IStrategy[] DefaultMembers(ulong seed, int depth = 3) =>
    [
        new RandomStrategy(Rng.Mix(seed, 1)),
        new PctStrategy(Rng.Mix(seed, 2), depth: 2),
        new DelayBoundingStrategy(Rng.Mix(seed, 3), delays: 2),
        new PctStrategy(Rng.Mix(seed, 4), depth: Math.Max(3, depth)),
        new ProbabilisticRandomStrategy(Rng.Mix(seed, 5), 0.05),
    ];

    public string Name => "portfolio";

    public IReadOnlyList<IStrategy> Members => _members;

    /// <summary>The member running the current iteration.</summary>
    public IStrategy Active => _active;

    public void BeginRun(int iteration)
    {
        _active = _members[(int)((uint)iteration % (uint)_members.Length)];
        _active.BeginRun(iteration);
    }

    public int Next(in Decision d) => _active.Next(d);

    public int NextInt(int bound) => _active.NextInt(bound);

    public void Observe(long decisions)
    {
        foreach (var m in _members)
            if (m is IAdaptiveStrategy a) a.Observe(decisions);
    }

    public string Describe() => $"portfolio(seed={_seed}):{StrategySpec.Describe(_active)}";
}
