using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Sched;

namespace MmuSim.Tests.Explore;

/// <summary>Small hand-written programs (contexts on a scheduler) with known schedule spaces and planted bugs.</summary>
public static class Programs
{
    public const string LostUpdateInvariant = "test-lost-update";

    /// <summary>
    /// Two contexts each do <paramref name="m"/> non-atomic increments (read at one point, write at the next);
    /// the context that finishes last checks the total. One preemption between a read and its write loses an update.
    /// </summary>
    public static IExplorable LostUpdate(int m) => new SchedulerExplorable(ExplorableInfo.Of("lost-update"), strategy =>
    {
        var s = new Scheduler(strategy);
        int counter = 0, done = 0;
        for (int c = 0; c < 2; c++)
            s.Spawn($"cpu{c}", async _ =>
            {
                for (int i = 0; i < m; i++)
                {
                    await s.Point(PointKind.Counter);
                    int v = counter;
                    await s.Point(PointKind.Counter);
                    counter = v + 1;
                }
                if (++done == 2 && counter != 2 * m) s.Fail(LostUpdateInvariant, $"counter {counter}, expected {2 * m}");
            });
        return s;
    });

    /// <summary>Two contexts with <paramref name="m"/> points each and nothing shared: every schedule is clean.</summary>
    public static IExplorable Independent(int m) => new SchedulerExplorable(ExplorableInfo.Of("independent"), strategy =>
    {
        var s = new Scheduler(strategy);
        for (int c = 0; c < 2; c++)
            s.Spawn($"cpu{c}", async _ =>
            {
                for (int i = 0; i < m; i++) await s.Point(PointKind.Yield);
            });
        return s;
    });

    /// <summary>
    /// A depth-2 bug: A sets a flag and clears it one step later; B checks it after <paramref name="bSteps"/> steps.
    /// The bug needs A's set before B's check and B's check before A's clear: a random walk must keep A still for
    /// <paramref name="bSteps"/> consecutive decisions, PCT needs one well-placed priority change.
    /// </summary>
    public static IExplorable Depth2(int bSteps = 20, int aTail = 20) => new SchedulerExplorable(ExplorableInfo.Of("depth2"), strategy =>
    {
        var s = new Scheduler(strategy);
        bool flag = false;
        s.Spawn("A", async _ =>
        {
            await s.Point(PointKind.Yield);
            flag = true;
            await s.Point(PointKind.Yield);
            flag = false;
            for (int i = 0; i < aTail; i++) await s.Point(PointKind.Yield);
        });
        s.Spawn("B", async _ =>
        {
            for (int i = 0; i < bSteps; i++) await s.Point(PointKind.Yield);
            if (flag) s.Fail("test-depth2", "B saw A's transient flag");
        });
        return s;
    });

    /// <summary>Data choices and scheduling mixed: each context picks how many points to take.</summary>
    public static IExplorable WithData(int m) => new SchedulerExplorable(ExplorableInfo.Of("with-data"), strategy =>
    {
        var s = new Scheduler(strategy);
        for (int c = 0; c < 3; c++)
            s.Spawn($"cpu{c}", async _ =>
            {
                int n = 1 + s.ChooseInt(m);
                for (int i = 0; i < n; i++) await s.Point(PointKind.Yield);
            });
        return s;
    });

    /// <summary>
    /// The shape of spec 5(a) in miniature: reclaim clears the PTE under the PTL and notifies after dropping it; a vCPU
    /// fault reads the PTE and installs a secondary translation. If the fault read the old PTE and installs after the
    /// late invalidate_page, the secondary keeps a stale translation. Uses a real Kernel so the tracer records counters
    /// and a tracepoint.
    /// </summary>
    public static IExplorable LateInvalidate() => new KernelExplorable(ExplorableInfo.Of("late-invalidate", "4.10"), strategy =>
    {
        var k = new Kernel(EraTable.Get("4.10"), strategy, new KernelOptions { CheckMode = MmuSim.Checker.CheckMode.Off });
        var s = k.S;
        var ptl = new KSpinLock(s, "ptl");
        const ulong H = 0x10000;
        bool pte = true, spte = false;
        long seq = 0;
        int done = 0;
        s.Spawn("kswapd", async ctx =>
        {
            using var _ = ctx.Enter("try_to_unmap_one");
            await ptl.Lock();
            using (ctx.Enter("ptep_clear_flush"))
            {
                await s.Point(PointKind.PteWrite, H);
                pte = false;
            }
            await ptl.Unlock();
            using (ctx.Enter("mmu_notifier_invalidate_page"))
            {
                await s.Point(PointKind.Callback, H);
                k.Trace.Event("kvm_unmap_hva_range", $"mmu notifier unmap range: 0x{H:x14} -- 0x{H + 0x1000:x14}");
                spte = false;
                k.Trace.Counter("mmu_invalidate_seq", ++seq);
            }
            if (++done == 2 && spte && !pte) s.Fail(Invariants.StaleTranslation, $"secondary maps 0x{H:x} but the primary PTE is none", H);
        });
        s.Spawn("vcpu0", async ctx =>
        {
            using var _ = ctx.Enter("kvm_mmu_page_fault");
            bool present;
            using (ctx.Enter("hva_to_pfn"))
            {
                await s.Point(PointKind.PteRead, H);
                present = pte;
            }
            if (present)
                using (ctx.Enter("kvm_mmu_set_spte"))
                {
                    await s.Point(PointKind.SpteWrite, H);
                    spte = true;
                }
            if (++done == 2 && spte && !pte) s.Fail(Invariants.StaleTranslation, $"secondary maps 0x{H:x} but the primary PTE is none", H);
        });
        return k;
    });

    /// <summary>Run every schedule (or <paramref name="n"/>) of <paramref name="spec"/> and return each run's decision list.</summary>
    public static List<(byte, int)[]> Decisions(IExplorable p, StrategySpec spec, int n)
    {
        var strategy = spec.Create();
        var lists = new List<(byte, int)[]>();
        var collector = new NullObserver();
        for (int i = 0; i < n; i++)
        {
            if (strategy is IExhaustiveStrategy e && !e.HasMore) break;
            var r = p.RunOnce(strategy, i, collector);
            lists.Add(r.Log!);
        }
        return lists;
    }

    /// <summary>An observer that only makes the run keep its decision log.</summary>
    public sealed class NullObserver : IRunObserver
    {
        public void Attach(Scheduler s, Kernel? k) { }

        public void Detach(Scheduler s, Kernel? k) { }
    }
}
