using System.Text.Json;
using MmuSim.Explore;
using MmuSim.Sched;

namespace MmuSim.Tests.Explore;

public class MutantRunnerTests
{
    /// <summary>
    /// A program whose mutations plant bugs: skip-tlb-flush makes the lost-update race possible, free-before-end
    /// fails outright but only in the "strict" scenario; every other mutation changes nothing.
    /// </summary>
    static MutationTarget Target(string name, bool strict) => new(name, muts => new SchedulerExplorable(ExplorableInfo.Of(name), strategy =>
    {
        var s = new Scheduler(strategy);
        int counter = 0, done = 0;
        bool racy = muts.Contains(Mutation.SkipTlbFlush);
        for (int c = 0; c < 2; c++)
            s.Spawn($"cpu{c}", async _ =>
            {
                for (int i = 0; i < 2; i++)
                {
                    await s.Point(PointKind.Counter);
                    int v = counter;
                    if (racy) await s.Point(PointKind.Counter);
                    counter = v + 1;
                }
                if (strict && muts.Contains(Mutation.FreeBeforeEnd)) s.Fail(Invariants.FreedPageReachable, "planted");
                if (++done == 2 && counter != 4) s.Fail(Invariants.LostWrite, $"counter {counter}");
            });
        return s;
    }));

    [Fact]
    public void ReportsWhichMutantsAreKilledAndByWhat()
    {
        var runner = new MutantRunner([Target("loose", false), Target("strict", true)], new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 1 },
            Iterations = 200,
        });
        var report = runner.Run([Mutation.SkipTlbFlush, Mutation.FreeBeforeEnd, Mutation.KvmNoRetryCheck]);

        Assert.Empty(report.BaselineFailures);
        Assert.Equal(3, report.Mutants.Count);
        var skip = report.Mutants[0];
        Assert.Equal(("skip-tlb-flush", true, "loose", Invariants.LostWrite), (skip.Name, skip.Killed, skip.Scenario, skip.Invariant));
        var free = report.Mutants[1];
        Assert.Equal(("free-before-end", true, "strict", Invariants.FreedPageReachable), (free.Name, free.Killed, free.Scenario, free.Invariant));
        Assert.Equal(201, free.Schedules); // the loose scenario's budget, then the first strict schedule
        var survivor = report.Mutants[2];
        Assert.False(survivor.Killed);
        Assert.Null(survivor.Scenario);
        Assert.Equal(400, survivor.Schedules);
        Assert.Equal(2, report.KilledCount);
        Assert.Contains("kvm-no-retry-check", report.ToText());
        Assert.Contains("SURVIVED", report.ToText());

        var tap = report.ToTap().TrimEnd('\n').Split('\n');
        Assert.Equal(["TAP version 13", "1..3"], tap[..2]);
        Assert.StartsWith("ok 1 - skip-tlb-flush: killed by loose (", tap[2]);
        Assert.StartsWith("ok 2 - free-before-end: killed by strict (", tap[3]);
        Assert.Equal("not ok 3 - kvm-no-retry-check: survived (400 schedules)", tap[4]);
        var junit = System.Xml.Linq.XDocument.Parse(report.ToJUnit());
        var suite = junit.Root!.Element("testsuite")!;
        Assert.Equal(("3", "1"), (suite.Attribute("tests")!.Value, suite.Attribute("failures")!.Value));
        var failed = suite.Elements("testcase").Single(t => t.Element("failure") != null);
        Assert.Equal("kvm-no-retry-check", failed.Attribute("name")!.Value);

        using var doc = JsonDocument.Parse(report.ToJson());
        var recs = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(3, recs.Count);
        Assert.Equal("skip-tlb-flush", recs[0].GetProperty("name").GetString());
        Assert.True(recs[0].GetProperty("killed").GetBoolean());
        Assert.Equal("loose", recs[0].GetProperty("scenario").GetString());
        Assert.True(recs[0].GetProperty("time").GetDouble() >= 0);
        Assert.Equal(JsonValueKind.Null, recs[2].GetProperty("scenario").ValueKind);
    }

    [Fact]
    public void AScenarioThatFailsUnmutatedIsReportedAndNotUsed()
    {
        var broken = new MutationTarget("broken", _ => Programs.LostUpdate(2));
        var report = new MutantRunner([broken], new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random }, Iterations = 200 })
            .Run([Mutation.SkipTlbFlush]);
        Assert.Single(report.BaselineFailures);
        Assert.StartsWith("broken: test-lost-update", report.BaselineFailures[0]);
        Assert.False(report.Mutants[0].Killed);
    }
}
