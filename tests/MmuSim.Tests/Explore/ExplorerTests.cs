using MmuSim.Explore;

namespace MmuSim.Tests.Explore;

public class ExplorerTests
{
    [Fact]
    public void StopsAtTheFirstViolationAndSummarises()
    {
        var r = new Explorer(Programs.LostUpdate(3), new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 4 }, Iterations = 1000 }).Run();
        Assert.Equal(1, r.Violations);
        Assert.Equal(r.Schedules, r.SchedulesToFirstBug);
        Assert.Equal(r.Schedules - 1, r.First!.Iteration);
        Assert.NotNull(r.TimeToFirstBug);
        Assert.True(r.StepsMin <= r.StepsAvg && r.StepsAvg <= r.StepsMax);
        Assert.InRange(r.DistinctSchedules, 1, r.Schedules);
        Assert.Contains("violations: 1", r.Summary());
        Assert.Equal(Programs.LostUpdateInvariant, r.First.Violation.Invariant);
        Assert.StartsWith("random", r.First.Strategy);
    }

    [Fact]
    public void AllCollectsEveryViolationAndSpendsTheBudget()
    {
        var r = new Explorer(Programs.LostUpdate(2), new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 4 }, Iterations = 200, All = true }).Run();
        Assert.Equal(200, r.Schedules);
        Assert.True(r.Violations > 1);
        Assert.Equal(Math.Min(r.Violations, 100), r.Counterexamples.Count);
        Assert.True(r.Counterexamples.Select(c => c.Iteration).SequenceEqual(r.Counterexamples.Select(c => c.Iteration).Order()));
    }

    [Fact]
    public void CleanProgramSpendsTheBudget()
    {
        var r = new Explorer(Programs.Independent(4), new ExploreOptions { Iterations = 300 }).Run();
        Assert.Equal(300, r.Schedules);
        Assert.Null(r.First);
        Assert.Null(r.Completion); // not exhaustive
        Assert.Contains("no violation in 300 schedules", r.Summary());
    }

    [Theory]
    [InlineData(StrategyKind.Random)]
    [InlineData(StrategyKind.Pct)]
    [InlineData(StrategyKind.Portfolio)]
    public void ParallelReportsTheSameLowestFailingIterationAsSequential(StrategyKind kind)
    {
        var spec = new StrategySpec { Kind = kind, Seed = 21, Depth = 2 };
        var seq = new Explorer(Programs.Depth2(8, 8), new ExploreOptions { Strategy = spec, Iterations = 5000 }).Run();
        var par = new Explorer(Programs.Depth2(8, 8), new ExploreOptions { Strategy = spec, Iterations = 5000, Parallelism = 2 }).Run();
        Assert.NotNull(seq.First);
        Assert.NotNull(par.First);
        Assert.Equal(seq.First!.Iteration, par.First!.Iteration);
        Assert.Equal(seq.First.Decisions, par.First.Decisions);
        Assert.Equal(seq.First.Strategy, par.First.Strategy);
    }

    [Fact]
    public void ProgressIsReportedPerRound()
    {
        var seen = new List<int>();
        new Explorer(Programs.Independent(2), new ExploreOptions { Iterations = 100, Progress = p => seen.Add(p.Schedules) }).Run();
        Assert.Equal([32, 64, 96, 100], seen);
    }

    [Fact]
    public void ModelErrorsNameTheIteration()
    {
        var p = new SchedulerExplorable(ExplorableInfo.Of("throws"), strategy =>
        {
            var s = new MmuSim.Sched.Scheduler(strategy);
            s.Spawn("t", async _ =>
            {
                await s.Point(MmuSim.Sched.PointKind.Yield);
                throw new MmuSim.Sched.ModelException("boom");
            });
            return s;
        });
        var e = Assert.Throws<ExploreException>(() => new Explorer(p, new ExploreOptions { Iterations = 5 }).Run());
        Assert.Equal(0, e.Iteration);
        Assert.Contains("boom", e.Message);
    }
}
