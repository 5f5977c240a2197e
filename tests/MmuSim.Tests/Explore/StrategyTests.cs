using MmuSim.Explore;
using MmuSim.Sched;

namespace MmuSim.Tests.Explore;

public class StrategyTests
{
    public static TheoryData<StrategyKind> Kinds => new(Enum.GetValues<StrategyKind>());

    [Theory]
    [MemberData(nameof(Kinds))]
    public void SameSeedGivesTheSameDecisionLists(StrategyKind kind)
    {
        var spec = new StrategySpec { Kind = kind, Seed = 11, Depth = 2, Preemptions = 2 };
        var p = Programs.WithData(4);
        var a = Programs.Decisions(p, spec, 80);
        var b = Programs.Decisions(p, spec, 80);
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++) Assert.Equal(a[i], b[i]);
        // And the schedules are not all the same (the strategy explores).
        Assert.True(a.Select(l => RunOutcome.Hash(l)).Distinct().Count() > 5, $"{kind} produced too few distinct schedules");
    }

    [Fact]
    public void DifferentSeedsGiveDifferentSchedules()
    {
        var p = Programs.WithData(4);
        var a = Programs.Decisions(p, new StrategySpec { Kind = StrategyKind.Pct, Seed = 1 }, 40);
        var b = Programs.Decisions(p, new StrategySpec { Kind = StrategyKind.Pct, Seed = 2 }, 40);
        Assert.NotEqual(a.Select(l => RunOutcome.Hash(l)), b.Select(l => RunOutcome.Hash(l)));
    }

    /// <summary>Schedules of two contexts with <paramref name="x"/>/<paramref name="y"/> atomic segments left, the first running, p preemptions left.</summary>
    static long Expected(int x, int y, int p)
    {
        if (y == 0) return 1;
        long keep = x - 1 == 0 ? 1 : Expected(x - 1, y, p);
        long swap = p == 0 ? 0 : y - 1 == 0 ? 1 : Expected(y - 1, x, p - 1);
        return keep + swap;
    }

    [Theory]
    [InlineData(2, 0)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    [InlineData(2, 10)]
    [InlineData(3, 2)]
    public void DfsEnumeratesExactlyTheSchedulesWithinThePreemptionBound(int m, int bound)
    {
        // m points per context = m+1 atomic segments; the first decision (who starts) is free.
        long expected = 2 * Expected(m, m + 1, bound);
        var report = new Explorer(Programs.Independent(m), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = bound },
            Iterations = 100_000,
        }).Run();
        Assert.True(report.Exhausted);
        Assert.Equal(expected, report.Schedules);
        Assert.Equal(expected, report.DistinctSchedules);
        Assert.Equal($"no violation in all {expected} schedules up to {bound} preemption{(bound == 1 ? "" : "s")}", report.Completion);
        if (bound >= 2 * m + 1) Assert.Equal(Binomial(2 * (m + 1), m + 1), expected);
    }

    static long Binomial(int n, int k)
    {
        long r = 1;
        for (int i = 1; i <= k; i++) r = r * (n - k + i) / i;
        return r;
    }

    [Fact]
    public void DfsFindsThePlantedLostUpdateWithOnePreemptionButNotWithNone()
    {
        var none = new Explorer(Programs.LostUpdate(2), new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 0 }, Iterations = 10_000 }).Run();
        Assert.Equal(0, none.Violations);
        Assert.True(none.Exhausted);
        Assert.Equal(2, none.Schedules);

        var one = new Explorer(Programs.LostUpdate(2), new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 1 }, Iterations = 10_000 }).Run();
        Assert.NotNull(one.First);
        Assert.Equal(Programs.LostUpdateInvariant, one.First!.Violation.Invariant);
        Assert.Equal(1, one.First.Preemptions);
        Assert.True(Replay.Run(Programs.LostUpdate(2), one.First.Decisions, Programs.LostUpdateInvariant).Reproduced);
    }

    [Fact]
    public void DfsDataChoicesAreEnumerated()
    {
        // Three contexts choose 1..2 points each (2^3 data combinations), no preemption: schedules = 8 * 3! starts.
        var r = new Explorer(Programs.WithData(2), new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 0 }, Iterations = 10_000 }).Run();
        Assert.True(r.Exhausted);
        Assert.Equal(8 * 6, r.Schedules);
        Assert.Equal(r.Schedules, r.DistinctSchedules);
    }

    [Fact]
    public void PctFindsADepth2BugThatRandomWalkMisses()
    {
        var pct = new Explorer(Programs.Depth2(), new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Pct, Depth = 2, Seed = 3 }, Iterations = 3000 }).Run();
        Assert.NotNull(pct.First);
        Assert.Equal("test-depth2", pct.First!.Violation.Invariant);
        Assert.StartsWith("pct(seed=3,depth=2,k=", pct.First.Strategy);
        Assert.True(pct.SchedulesToFirstBug > Explorer.RoundSize, "the first round has no step-bound estimate, hence no change point");

        var random = new Explorer(Programs.Depth2(), new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 3 }, Iterations = 3000 }).Run();
        Assert.Null(random.First);
    }

    [Fact]
    public void PctDepth1NeverChangesPriorities()
    {
        // Without change points the highest-priority context runs until it finishes: no preemption ever.
        foreach (var log in Programs.Decisions(Programs.LostUpdate(3), new StrategySpec { Kind = StrategyKind.Pct, Depth = 1, Seed = 5 }, 100))
        {
            int switches = 0;
            for (int i = 2; i < log.Length; i++) if (log[i].Item2 != log[i - 1].Item2) switches++;
            Assert.Equal(0, switches);
        }
    }

    [Fact]
    public void PctEstimatesTheStepBoundFromEarlierRounds()
    {
        var pct = new PctStrategy(1, depth: 3);
        var p = Programs.Independent(10);
        for (int i = 0; i < Explorer.RoundSize; i++)
        {
            p.RunOnce(pct, i);
            Assert.Equal(0, pct.StepBound);
        }
        p.RunOnce(pct, Explorer.RoundSize);
        Assert.True(pct.StepBound >= 10, $"k = {pct.StepBound}");
    }

    [Fact]
    public void DelayBoundingWithZeroDelaysIsNonPreemptiveRoundRobin()
    {
        var lists = Programs.Decisions(Programs.LostUpdate(3), new StrategySpec { Kind = StrategyKind.Delay, Preemptions = 0, Seed = 9 }, 10);
        // Always the same schedule: context 0 starts and runs to completion.
        Assert.All(lists, l => Assert.Equal(lists[0], l));
        Assert.All(lists[0], d => Assert.Equal(0, d.Item2));
    }

    [Fact]
    public void PortfolioRotatesItsMembers()
    {
        var portfolio = new PortfolioStrategy(7);
        var names = new List<string>();
        var p = Programs.Independent(2);
        for (int i = 0; i < 10; i++)
        {
            p.RunOnce(portfolio, i);
            names.Add(portfolio.Active.Name);
        }
        Assert.Equal(["random", "pct", "delay", "pct", "prob-random", "random", "pct", "delay", "pct", "prob-random"], names);
        Assert.StartsWith("portfolio(seed=7):prob-random", portfolio.Describe());
    }

    [Theory]
    [InlineData(1, 3)]
    [InlineData(3, 3)]
    [InlineData(5, 5)]
    public void PortfolioDeeperPctMemberFollowsTheSpecDepth(int depth, int expected)
    {
        var p = (PortfolioStrategy)new StrategySpec { Kind = StrategyKind.Portfolio, Depth = depth }.Create();
        var pcts = p.Members.OfType<PctStrategy>().Select(m => m.Depth).ToArray();
        Assert.Equal([2, expected], pcts);
    }

    [Fact]
    public void StrategyNamesParse()
    {
        foreach (var k in Enum.GetValues<StrategyKind>())
        {
            Assert.True(StrategySpec.TryParseKind(StrategySpec.NameOf(k), out var back));
            Assert.Equal(k, back);
            Assert.Contains(StrategySpec.NameOf(k), StrategySpec.KnownNames);
        }
        Assert.False(StrategySpec.TryParseKind("bfs", out _));
    }

    /// <summary>A spins until B sets a flag, giving up (a liveness violation) after 5,000 spins; B needs a few steps.</summary>
    static IExplorable SpinWait() => new SchedulerExplorable(ExplorableInfo.Of("spin-wait"), strategy =>
    {
        var s = new Scheduler(strategy);
        bool flag = false;
        s.Spawn("A", async _ =>
        {
            for (int spins = 0; !flag; spins++)
            {
                if (spins == 5000) s.Fail(Invariants.Liveness, "A kept spinning");
                await s.Point(PointKind.Yield);
            }
        });
        s.Spawn("B", async _ =>
        {
            for (int i = 0; i < 3; i++) await s.Point(PointKind.Yield);
            flag = true;
        });
        return s;
    });

    [Theory]
    [InlineData(StrategyKind.Pct)]
    [InlineData(StrategyKind.Delay)]
    [InlineData(StrategyKind.Dfs)]
    [InlineData(StrategyKind.Portfolio)]
    public void UnfairStrategiesTurnFairSoSpinningCannotStarveTheOtherContext(StrategyKind kind)
    {
        var r = new Explorer(SpinWait(), new ExploreOptions { Strategy = new StrategySpec { Kind = kind, Preemptions = 0, Seed = 2 }, Iterations = 100 }).Run();
        Assert.Null(r.First);
        Assert.True(r.StepsMax > StrategyMath.DefaultFairAfter || kind == StrategyKind.Portfolio, "some schedule starved B until the fair tail");
        Assert.True(r.StepsMax < 5000);
    }
}
