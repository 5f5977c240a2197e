using MmuSim.Sched;

namespace MmuSim.Tests.Sched;

public class SchedulerTests
{
    /// <summary>Two contexts increment a shared counter non-atomically (read point, write point): some schedule loses an update.</summary>
    static (int Final, DecisionLog Log, Violation? V) LostUpdate(IStrategy strategy, int iteration = 0)
    {
        var s = new Scheduler(strategy);
        int counter = 0;
        for (int c = 0; c < 2; c++)
            s.Spawn($"cpu{c}", async _ =>
            {
                for (int i = 0; i < 3; i++)
                {
                    await s.Point(PointKind.Counter);
                    int v = counter;
                    await s.Point(PointKind.Counter);
                    counter = v + 1;
                }
            });
        var viol = s.Run(iteration);
        return (counter, s.Decisions, viol);
    }

    [Fact]
    public void RandomStrategyFindsInterleavingsAndReplayReproducesThemExactly()
    {
        var finals = new HashSet<int>();
        for (int it = 0; it < 200; it++)
        {
            var (final, log, _) = LostUpdate(new RandomStrategy(42), it);
            finals.Add(final);
            var replay = new ReplayStrategy(log.ToEntries());
            var (again, log2, _) = LostUpdate(replay);
            Assert.Equal(final, again);
            Assert.Equal(log.ToArray(), log2.ToArray());
            Assert.False(replay.Diverged);
        }
        Assert.Contains(6, finals);
        Assert.True(finals.Min() < 6, "random schedules must expose the lost update");
    }

    [Fact]
    public void SameSeedSameDecisions()
    {
        var a = LostUpdate(new RandomStrategy(7), 3);
        var b = LostUpdate(new RandomStrategy(7), 3);
        Assert.Equal(a.Log.ToArray(), b.Log.ToArray());
    }

    [Fact]
    public void PlainSimulationNeverSwitchesAtPoints()
    {
        var (final, log, v) = LostUpdate(strategy: null!);
        Assert.Null(v);
        Assert.Equal(6, final);
        Assert.Equal(0, log.Count);
    }

    [Fact]
    public void LockOrderInversionIsReportedAsDeadlock()
    {
        bool found = false;
        for (int it = 0; it < 100 && !found; it++)
        {
            var s = new Scheduler(new RandomStrategy(1));
            var a = new KSpinLock(s, "A");
            var b = new KSpinLock(s, "B");
            s.Spawn("t0", async _ => { await a.Lock(); await b.Lock(); await b.Unlock(); await a.Unlock(); });
            s.Spawn("t1", async _ => { await b.Lock(); await a.Lock(); await a.Unlock(); await b.Unlock(); });
            var v = s.Run(it);
            if (v != null)
            {
                Assert.Equal(Invariants.Deadlock, v.Invariant);
                found = true;
            }
        }
        Assert.True(found);
    }

    [Fact]
    public void SleepingUnderSpinlockIsAViolation()
    {
        var s = new Scheduler();
        var ptl = new KSpinLock(s, "ptl");
        var m = new KMutex(s, "dev->mutex");
        s.Spawn("t", async _ => { await ptl.Lock(); await m.Lock(); await m.Unlock(); await ptl.Unlock(); });
        var v = s.Run();
        Assert.NotNull(v);
        Assert.Equal(Invariants.SleepInAtomic, v!.Invariant);
    }

    [Fact]
    public void DaemonSleepsOnSimulatedClock()
    {
        var s = new Scheduler();
        s.Costs[CostKind.CopyPage] = 250; // 0.5 ms per iteration below, whatever the calibrated default
        var wakes = new List<long>();
        s.Spawn("ksmd", async _ =>
        {
            while (true)
            {
                wakes.Add(s.ClockNs);
                await s.Sleep(20_000_000);
            }
        }, daemon: true);
        s.Spawn("task", async _ =>
        {
            for (int i = 0; i < 100; i++)
            {
                s.Charge(CostKind.CopyPage, 2000); // 0.5 ms per iteration
                await s.Point(PointKind.Yield);
            }
        });
        Assert.Null(s.Run());
        Assert.Equal(50_000_000, s.ClockNs);
        Assert.Equal([0L, 20_000_000L, 40_000_000L], wakes);
    }
}

public class EraTableTests
{
    [Theory]
    [InlineData("2.6.32", "2.6.32")]
    [InlineData("v4.19", "4.19")]
    [InlineData("6.10+", "6.10")]
    [InlineData("4.13", "4.13")]
    [InlineData("4.13-rc1", "4.13-rc1")]
    public void ParsesEraNames(string input, string name) => Assert.Equal(name, MmuSim.Eras.EraTable.Get(input).Name);

    [Theory]
    [InlineData("2.6.20")]
    [InlineData("banana")]
    [InlineData("5.10")]
    public void RejectsUnknownEras(string input) => Assert.False(MmuSim.Eras.EraTable.TryGet(input, out _));

    [Fact]
    public void FeaturesFollowTheTimeline()
    {
        static bool Has(string era, MmuSim.Eras.Feature f) => MmuSim.Eras.EraTable.Get(era).Has(f);
        Assert.True(Has("2.6.32", MmuSim.Eras.Feature.ChangePte));
        Assert.False(Has("6.10", MmuSim.Eras.Feature.ChangePte));
        Assert.True(Has("3.6", MmuSim.Eras.Feature.InvalidatePageAfterPtl));
        Assert.False(Has("4.13", MmuSim.Eras.Feature.InvalidatePage));
        Assert.True(Has("4.13-rc1", MmuSim.Eras.Feature.InvalidatePageUnderPtl));
        Assert.True(Has("4.13-rc1", MmuSim.Eras.Feature.SrcuReadSide));
        Assert.False(Has("3.6", MmuSim.Eras.Feature.SrcuReadSide));
        Assert.True(Has("6.6", MmuSim.Eras.Feature.ArchInvalidateSecondaryTlbs));
        Assert.False(Has("6.6", MmuSim.Eras.Feature.InvalidateRange));
    }
}
