using MmuSim.Explore;
using MmuSim.Sched;
using Xunit;

namespace MmuSim.Tests.Explore;

/// <summary>Source-set DPOR (<see cref="DporStrategy"/>) and its dependence relation (<see cref="Footprint"/>).</summary>
public class DporTests
{
    static Footprint Pte(ulong va) => Footprint.Of(PointKind.PteRead, va, null);

    [Fact]
    public void Dependence_follows_the_objects_steps_name()
    {
        var s = new Scheduler();
        var l1 = new KSpinLock(s, "a");
        var l2 = new KSpinLock(s, "b");
        var set = new LockSet(s, "ptl", sleeping: false, capacity: 4);
        var acq1 = Footprint.Of(PointKind.LockAcquire, 0, l1GetSet(l1));
        // Locks: the same lock (and slot) conflicts, other locks and other slots do not.
        Assert.True(Footprint.Dependent(Footprint.Of(PointKind.LockAcquire, 1, set), Footprint.Of(PointKind.LockAcquire, 1, set)));
        Assert.False(Footprint.Dependent(Footprint.Of(PointKind.LockAcquire, 1, set), Footprint.Of(PointKind.LockAcquire, 2, set)));
        Assert.Equal(ObjectClass.Lock, acq1.Class);
        // A release does work its point does not name: dependent with everything.
        Assert.Equal(ObjectClass.Global, Footprint.Of(PointKind.LockRelease, 1, set).Class);
        Assert.True(Footprint.Dependent(Footprint.Of(PointKind.LockRelease, 1, set), Pte(0x1000)));
        // PTEs: same page conflicts (a PteRead step may set A/D bits and store), other pages do not.
        Assert.True(Footprint.Dependent(Pte(0x1000), Pte(0x1fff)));
        Assert.False(Footprint.Dependent(Pte(0x1000), Pte(0x2000)));
        Assert.True(Pte(0x1000).Write);
        // A PMD covers its 2 MiB region.
        var pmd = Footprint.Of(PointKind.PmdWrite, 0x200000, null);
        Assert.True(Footprint.Dependent(pmd, Pte(0x3ff000)));
        Assert.False(Footprint.Dependent(pmd, Pte(0x400000)));
        Assert.True(Footprint.Dependent(Pte(0x400000), Footprint.Of(PointKind.PmdRead, 0x5ff000, null)));
        // SPTEs: reads commute, a write conflicts with every SPTE step and every PTE/PMD step.
        var sr = Footprint.Of(PointKind.SpteRead, 1, null);
        var sw = Footprint.Of(PointKind.SpteWrite, 2, null);
        Assert.False(Footprint.Dependent(sr, sr));
        Assert.True(Footprint.Dependent(sr, sw));
        Assert.True(Footprint.Dependent(sw, Pte(0x1000)));
        // Memory and a single lock commute; a split page-table lock (a LockSet with several slots) does not, since
        // holding it excuses the checker's scan of its table's PTEs.
        Assert.False(Footprint.Dependent(Pte(0x1000), acq1));
        Assert.False(Footprint.Dependent(sw, acq1));
        Assert.True(Footprint.Dependent(Pte(0x1000), Footprint.Of(PointKind.LockAcquire, 0, set)));
        Assert.True(Footprint.Dependent(Footprint.Of(PointKind.LockAcquire, 3, set), sr));
        // Counters, callbacks, frees and guest accesses are Global.
        foreach (var k in new[] { PointKind.Counter, PointKind.Callback, PointKind.Free, PointKind.Alloc, PointKind.GuestAccess, PointKind.Barrier, PointKind.Start })
        {
            Assert.Equal(ObjectClass.Global, Footprint.Of(k, 0x1000, null).Class);
            Assert.True(Footprint.Dependent(Footprint.Of(k, 0x1000, null), Footprint.Of(PointKind.LockAcquire, 0, set)));
        }
        _ = l2;
    }

    static object l1GetSet(KSpinLock l) => typeof(KSpinLock).GetField("_set", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(l)!;

    /// <summary>Two contexts writing PTEs of <paramref name="m"/> pages each, disjoint or (shared) the same pages.</summary>
    static IExplorable PtePrograms(int m, bool shared, int contexts = 2) => new SchedulerExplorable(ExplorableInfo.Of("ptes"), strategy =>
    {
        var s = new Scheduler(strategy);
        for (int c = 0; c < contexts; c++)
        {
            ulong baseVa = shared ? 0 : (ulong)c << 30;
            s.Spawn($"cpu{c}", async _ =>
            {
                for (int i = 0; i < m; i++) await s.Point(PointKind.PteWrite, baseVa + ((ulong)i << 12));
            });
        }
        return s;
    });

    static ExploreReport Explore(IExplorable p, bool por, int bound = DporStrategy.Unbounded, int n = 1_000_000) =>
        new Explorer(p, new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = bound, Por = por }, Iterations = n }).Run();

    [Fact]
    public void Independent_steps_are_explored_in_one_trace_per_order_of_the_dependent_ones()
    {
        var full = Explore(PtePrograms(3, shared: false), por: false);
        var reduced = Explore(PtePrograms(3, shared: false), por: true);
        Assert.True(full.Exhausted);
        Assert.True(reduced.Exhausted);
        Assert.Equal(70, full.Schedules); // C(8,4): a start and 3 points per context
        // The first step of a context is Global: A's start is ordered against B's steps and B's against A's. The traces
        // are: which start comes first (2) x where the other start falls among the first one's 4 steps (4) = 8.
        Assert.Equal(8, reduced.Schedules);
        Assert.StartsWith("verified: no violation in any interleaving (8 traces, ", reduced.Completion);
        Assert.StartsWith("verified: no violation in any interleaving (70 schedules, ", full.Completion);
    }

    [Fact]
    public void Fully_dependent_steps_are_not_reduced()
    {
        // Every step writes the PTE of page 0: no two steps of different contexts commute, every schedule is its own trace.
        var full = Explore(SamePage(3), por: false);
        var reduced = Explore(SamePage(3), por: true);
        Assert.Equal(70, full.Schedules);
        Assert.Equal(70, reduced.Schedules);
    }

    static IExplorable SamePage(int m) => new SchedulerExplorable(ExplorableInfo.Of("same-page"), strategy =>
    {
        var s = new Scheduler(strategy);
        for (int c = 0; c < 2; c++)
            s.Spawn($"cpu{c}", async _ =>
            {
                for (int i = 0; i < m; i++) await s.Point(PointKind.PteWrite, 0);
            });
        return s;
    });
}
