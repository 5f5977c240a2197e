using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>The exploration strategies the explorer and the CLI know by name.</summary>
public enum StrategyKind { Random, Pct, Delay, Dfs, Portfolio, ProbRandom }

/// <summary>
/// A strategy configuration: kind, seed and parameters. <see cref="Create"/> makes a fresh instance (one per worker
/// when exploring in parallel); every instance with the same spec makes the same decisions for the same iteration.
/// </summary>
public sealed record StrategySpec
{
    public StrategyKind Kind { get; init; } = StrategyKind.Portfolio;

    public ulong Seed { get; init; } = 1;

    /// <summary>PCT bug depth d (pct; the portfolio's deeper PCT member uses max(3, d)).</summary>
    public int Depth { get; init; } = 3;

    /// <summary>Delay bound (delay bounding) and preemption bound (DFS).</summary>
    public int Preemptions { get; init; } = 2;

    /// <summary>DFS with partial-order reduction (<see cref="DporStrategy"/>, the default) or the plain enumeration of
    /// every schedule (<see cref="DfsStrategy"/>).</summary>
    public bool Por { get; init; } = true;

    /// <summary>DFS with a state cache (<see cref="DfsStrategy"/> over <see cref="StateDigest"/>): explicit-state search,
    /// without partial-order reduction.</summary>
    public bool StateCache { get; init; }

    /// <summary>Switch probability of the rarely-switching random walk.</summary>
    public double SwitchProbability { get; init; } = 0.05;

    /// <summary>True for strategies whose iterations must run in order on one instance (DFS).</summary>
    public bool Sequential => Kind == StrategyKind.Dfs;

    public IStrategy Create() => Kind switch
    {
        StrategyKind.Random => new RandomStrategy(Seed),
        StrategyKind.Pct => new PctStrategy(Seed, Depth),
        StrategyKind.Delay => new DelayBoundingStrategy(Seed, Preemptions),
        StrategyKind.Dfs => StateCache ? new DfsStrategy(Preemptions, stateCache: true) : Por ? new DporStrategy(Preemptions) : new DfsStrategy(Preemptions),
        StrategyKind.Portfolio => new PortfolioStrategy(Seed, Depth),
        StrategyKind.ProbRandom => new ProbabilisticRandomStrategy(Seed, SwitchProbability),
        _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
    };

    /// <summary>Command-line names: random, pct, delay, dfs, portfolio, prob-random.</summary>
    public static string NameOf(StrategyKind k) => k switch
    {
        StrategyKind.ProbRandom => "prob-random",
        _ => k.ToString().ToLowerInvariant(),
    };

    public static bool TryParseKind(string name, out StrategyKind kind)
    {
        foreach (var k in Enum.GetValues<StrategyKind>())
            if (NameOf(k) == name.Trim().ToLowerInvariant()) { kind = k; return true; }
        kind = default;
        return false;
    }

    public const string KnownNames = "random, pct, delay, dfs, portfolio, prob-random";

    /// <summary>Describe the configuration an instance uses for its current run (for summaries and trace headers).</summary>
    public static string Describe(IStrategy s) => s switch
    {
        IDescribedStrategy d => d.Describe(),
        _ => s.Name,
    };

    public override string ToString() => Kind switch
    {
        StrategyKind.Pct => $"pct(seed={Seed},depth={Depth})",
        StrategyKind.Delay => $"delay(seed={Seed},delays={Preemptions})",
        StrategyKind.Dfs => $"dfs({(Preemptions == DporStrategy.Unbounded ? "unbounded" : $"preemptions={Preemptions}")}{(StateCache ? ",state-cache" : Por ? ",por" : "")})",
        StrategyKind.ProbRandom => $"prob-random(seed={Seed},p={SwitchProbability})",
        _ => $"{NameOf(Kind)}(seed={Seed})",
    };
}
