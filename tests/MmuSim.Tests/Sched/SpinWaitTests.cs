using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Sched;

/// <summary>Scheduler.SpinWait: a retry whose inputs did not change is not re-run until another context changes them.</summary>
public class SpinWaitTests
{
    sealed class FlagWaiter(Func<int> read, int seen) : ISpinWaiter
    {
        public int Seen = seen;
        public bool InputsChanged => read() != Seen;
    }

    /// <summary>
    /// A spinner retries until <c>flag</c> is 1; a writer passes <paramref name="reads"/> read points, then sets it.
    /// Returns the spinner's failed attempts and the violation. <paramref name="hint"/>: spin with SpinWait, else with
    /// a plain yield point.
    /// </summary>
    static IExplorable SpinProgram(bool hint, int reads, bool writerSets, Action<int>? attempts = null) =>
        new SchedulerExplorable(ExplorableInfo.Of(hint ? "spin-hint" : "spin-yield"), strategy =>
        {
            var s = new Scheduler(strategy);
            int flag = 0;
            s.Spawn("spinner", async _ =>
            {
                int failed = 0;
                var w = new FlagWaiter(() => flag, 0);
                while (true)
                {
                    await s.Point(PointKind.Counter);
                    w.Seen = flag;
                    if (w.Seen == 1) break;
                    if (++failed > 1000) { s.Fail(Invariants.Liveness, "spinner retried 1000 times"); break; }
                    if (hint && !w.InputsChanged) await s.SpinWait(w, "test_spin");
                    else await s.Point(PointKind.Yield);
                }
                attempts?.Invoke(failed);
            });
            s.Spawn("writer", async _ =>
            {
                for (int i = 0; i < reads; i++) await s.Point(PointKind.PteRead);
                if (!writerSets) return;
                await s.Point(PointKind.Counter);
                flag = 1;
            });
            return s;
        });

    [Fact]
    public void SpinnerIsNotRechosenUntilAnotherContextChangesItsInput()
    {
        int maxWithHint = 0, maxWithout = 0;
        var withHint = new Explorer(SpinProgram(true, 20, true, a => maxWithHint = Math.Max(maxWithHint, a)),
            new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 3 }, Iterations = 300 }).Run();
        var without = new Explorer(SpinProgram(false, 20, true, a => maxWithout = Math.Max(maxWithout, a)),
            new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 3 }, Iterations = 300 }).Run();
        Assert.Null(withHint.First);
        Assert.Null(without.First);
        // With the hint one failed attempt parks the spinner until the write: it never fails twice.
        Assert.Equal(1, maxWithHint);
        // Without it a random schedule re-runs the identical attempt many times while the writer only reads.
        Assert.True(maxWithout > 3, $"without the hint at most {maxWithout} failed attempts");
    }

    [Fact]
    public void AllSpinningIsReportedAsLiveness()
    {
        var r = new Explorer(SpinProgram(true, 3, writerSets: false),
            new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 2 }, Iterations = 1000 }).Run();
        Assert.NotNull(r.First);
        Assert.Equal(Invariants.Liveness, r.First!.Violation.Invariant);
        Assert.Contains("CPU0 (spinner) spins in test_spin", r.First.Violation.Message);
    }

    [Fact]
    public void AllSpinningIsLivenessInPlainSimulationToo()
    {
        var s = new Scheduler();
        int flag = 0;
        s.Spawn("spinner", async _ =>
        {
            var w = new FlagWaiter(() => flag, 0);
            while (flag == 0) await s.SpinWait(w, "test_spin");
        });
        var v = s.Run();
        Assert.NotNull(v);
        Assert.Equal(Invariants.Liveness, v!.Invariant);
        Assert.StartsWith("every live context spin-waits or is blocked", v.Message);
    }

    [Fact]
    public void DfsDoesNotUnrollTheSpin()
    {
        var dfs = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 1 };
        var withHint = new Explorer(SpinProgram(true, 30, true), new ExploreOptions { Strategy = dfs, Iterations = 100_000 }).Run();
        var without = new Explorer(SpinProgram(false, 30, true), new ExploreOptions { Strategy = dfs, Iterations = 100_000 }).Run();
        Assert.True(withHint.Exhausted);
        Assert.Null(withHint.First);
        // Without the hint the spinner keeps the CPU (no preemption) and spins into the 1000-retry liveness cap,
        // or is preempted at any of its identical iterations; with it a failed attempt hands the CPU over.
        Assert.NotNull(without.First);
        Assert.Equal("spinner retried 1000 times", without.First!.Violation.Message);
        Assert.Equal(1, without.SchedulesToFirstBug);
        Assert.True(withHint.StepsMax < 100, $"max path {withHint.StepsMax} steps");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ReducedDfsAgreesWithUnreducedDfsOnTheSpin(bool writerSets)
    {
        ExploreReport Dfs(bool por) => new Explorer(SpinProgram(true, 4, writerSets), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = por, Preemptions = DporStrategy.Unbounded },
            Iterations = 100_000,
        }).Run();
        var full = Dfs(por: false);
        var reduced = Dfs(por: true);
        // Without the write the spin can never end: both report the all-spinning liveness violation; with it, both
        // verify every interleaving, the reduced search in no more schedules.
        Assert.Equal(full.First?.Violation.Invariant, reduced.First?.Violation.Invariant);
        if (writerSets)
        {
            Assert.True(full.Exhausted && reduced.Exhausted);
            Assert.StartsWith("verified: no violation in any interleaving (", reduced.Completion);
            Assert.True(reduced.Schedules <= full.Schedules, $"{reduced.Schedules} traces vs {full.Schedules} schedules");
        }
        else Assert.Equal(Invariants.Liveness, reduced.First!.Violation.Invariant);
    }

    [Fact]
    public void KvmFaultVsInvalidate_DfsOnePreemption_CompletesWellUnderTheDecisionCut()
    {
        var s = ScenarioLoader.LoadBuiltIn("kvm-fault-vs-invalidate");
        var r = new Explorer(new ScenarioExplorable(s, EraTable.Get("6.13")), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 1 },
            Iterations = 5000,
        }).Run();
        Assert.Null(r.First);
        Assert.True(r.Exhausted);
        Assert.Equal($"no violation in all {r.Schedules} schedules up to 1 preemption", r.Completion); // not "paths cut"
        Assert.InRange(r.Schedules, 600, 800);
        Assert.True(r.StepsMax < 250, $"max path {r.StepsMax} steps");
    }
}
