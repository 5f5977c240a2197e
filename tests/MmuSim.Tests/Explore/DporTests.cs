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

    [Fact]
    public void Named_variables_commute_unless_one_step_writes_them()
    {
        var s = new Scheduler();
        var x = new SharedVar(s, "x", secondaryState: false);
        var y = new SharedVar(s, "y", secondaryState: false);
        var kvm = new SharedVar(s, "kvm->mmu_invalidate", secondaryState: true);
        Footprint F(PointKind k, object subject) => Footprint.Of(k, 0, subject);
        var xr = F(PointKind.Counter, x.Read);
        Assert.Equal(ObjectClass.Var, xr.Class);
        Assert.False(xr.Write);
        Assert.False(Footprint.Dependent(xr, xr));
        Assert.True(Footprint.Dependent(xr, F(PointKind.Counter, x.Write)));
        Assert.False(Footprint.Dependent(F(PointKind.Counter, x.Write), F(PointKind.Counter, y.Write)));
        // Any kind of point may name what its step reads (a barrier before reads of the group).
        Assert.Equal(xr, F(PointKind.Barrier, x.Read));
        // Variables are not memory: they commute with PTE, PMD and split-PTL steps ...
        Assert.False(Footprint.Dependent(F(PointKind.Counter, x.Write), Pte(0x1000)));
        Assert.False(Footprint.Dependent(F(PointKind.Counter, kvm.Write), Footprint.Of(PointKind.PmdWrite, 0, null)));
        var ptl = new LockSet(s, "ptl", sleeping: false, capacity: 4);
        Assert.False(Footprint.Dependent(F(PointKind.Counter, kvm.Write), Footprint.Of(PointKind.LockAcquire, 1, ptl)));
        // ... but secondary-MMU state is dependent with SPTE steps (written under the same locks), plain state is not.
        var sw = Footprint.Of(PointKind.SpteWrite, 0, null);
        Assert.True(Footprint.Dependent(F(PointKind.Counter, kvm.Read), sw));
        Assert.True(Footprint.Dependent(sw, F(PointKind.Counter, kvm.Read)));
        Assert.False(Footprint.Dependent(F(PointKind.Counter, x.Write), sw));
        Assert.False(Footprint.Dependent(F(PointKind.Counter, kvm.Read), Footprint.Of(PointKind.SpteRead, 0, null)));
        // A lock that guards a variable: acquiring it is a write of the variable (the holder writes it without a point).
        var mmuLock = new KSpinLock(s, "mmu_lock") { Guards = kvm };
        var rw = new KRwLock(s, "mmu_lock(rw)", sleeping: false) { Guards = kvm };
        var acq = Footprint.Of(PointKind.LockAcquire, 0, l1GetSet(mmuLock));
        Assert.Equal(F(PointKind.Counter, kvm.Write), acq);
        Assert.Equal(acq, Footprint.Of(PointKind.LockAcquire, 0, rw));
        Assert.True(Footprint.Dependent(acq, F(PointKind.Counter, kvm.Read)));
        Assert.True(Footprint.Dependent(acq, acq));
        Assert.Equal(ObjectClass.Global, Footprint.Of(PointKind.LockRelease, 0, l1GetSet(mmuLock)).Class);
        // A vCPU's guest access is an SPTE write: dependent with PTE steps (it stores into the frame) and the VM's state.
        var ga = Footprint.Of(PointKind.GuestAccess, 0x100, Footprint.GuestMemory);
        Assert.Equal(new Footprint(ObjectClass.Spte, 0, true), ga);
        Assert.True(Footprint.Dependent(ga, Pte(0x1000)));
        Assert.True(Footprint.Dependent(ga, F(PointKind.Counter, kvm.Read)));
        Assert.Equal(ObjectClass.Global, Footprint.Of(PointKind.GuestAccess, 0x100, null).Class);
    }

    /// <summary>Context w bumps x once; the others read x at every point and fail on seeing the bump.</summary>
    static IExplorable Readers(int readers, int reads, bool failOnBump) => new SchedulerExplorable(ExplorableInfo.Of("readers"), strategy =>
    {
        var s = new Scheduler(strategy);
        var x = new SharedVar(s, "x", secondaryState: false);
        int value = 0;
        s.Spawn("writer", async _ =>
        {
            await s.Point(PointKind.Counter, 0, x.Write);
            value++;
        });
        for (int r = 0; r < readers; r++)
            s.Spawn($"reader{r}", async _ =>
            {
                for (int i = 0; i < reads; i++)
                {
                    await s.Point(PointKind.Counter, 0, x.Read);
                    if (failOnBump && value != 0) s.Fail("test", "reader saw the bump");
                }
            });
        return s;
    });

    [Fact]
    public void Reads_of_a_named_variable_commute_and_its_write_is_ordered_against_each()
    {
        var full = Explore(Readers(2, 3, failOnBump: false), por: false);
        var reduced = Explore(Readers(2, 3, failOnBump: false), por: true);
        Assert.True(full.Exhausted);
        Assert.True(reduced.Exhausted);
        Assert.True(reduced.Schedules < full.Schedules, $"{reduced.Schedules} traces vs {full.Schedules} schedules");
        // Exact: the violation needs the write before a read; reduced and unreduced both find it, or both do not.
        var fullBug = Explore(Readers(2, 3, failOnBump: true), por: false);
        var reducedBug = Explore(Readers(2, 3, failOnBump: true), por: true);
        Assert.Equal(1, fullBug.Violations);
        Assert.Equal(1, reducedBug.Violations);
        Assert.Equal("test", reducedBug.First!.Violation.Invariant);
    }
}
