using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using MmuSim.Sched;
using MmuSim.Userfaultfd;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Userfaultfd;

/// <summary>
/// userfaultfd (fs/userfaultfd.c, mm/userfaultfd.c): a fault on a registered range waits in handle_userfault until an
/// ioctl resolves it; the ioctls fire no notifier except UFFDIO_WRITEPROTECT's PROTECTION_VMA; the PTE bits and page
/// counts are the kernel's.
/// </summary>
public class UserfaultfdTests
{
    const ulong A = 0x100000;

    static UserfaultfdCtx Open(Kernel k, MmStruct mm, bool sigbus = false) => UserfaultfdCtx.Create(mm, "uffd", sigbus)!;

    static void MustRun(Kernel k, Func<ValueTask> body) => Assert.Null(Run(k, async _ => await body()));

    [Fact]
    public void MissingFault_WaitsForUffdioCopy_ThenReadsTheCopiedPage_WithoutAnyNotifier()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 0x4000, VmFlags.NoHugePage);
        var ctx = Open(k, mm);
        MustRun(k, async () => Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 0x4000, UffdMode.Missing)));
        var rec = Recorder(k, mm);
        ulong? seen = null;
        UffdMsg? msg = null;
        k.S.Spawn("faulter", async _ => seen = await Memory.UserAccess(mm, A + 0x1000, write: false));
        k.S.Spawn("handler", async _ =>
        {
            msg = await ctx.Read();
            var (placed, err) = await Mfill.MfillAtomic(ctx, msg!.Value.Address, MmStruct.PageSize, MfillMode.Copy, 0x77, wp: false, dontWake: false);
            Assert.Equal((1L, 0), (placed, err));
        });
        Assert.Null(k.Run());
        Assert.Equal(0x77UL, seen);
        Assert.Equal(new UffdMsg(A + 0x1000, UffdReason.Missing, false), msg);
        var pte = mm.PeekPte(A + 0x1000);
        Assert.True(pte.Present && pte.Writable && pte.Dirty && !pte.UffdWp && !pte.Special);
        Assert.Equal(1, k.Mem[pte.Pfn].RefCount);
        Assert.Equal(1, k.Mem[pte.Pfn].MapCount);
        Assert.True(k.Mem[pte.Pfn].Has(PageFlags.AnonExclusive));
        Assert.Empty(rec.Calls); // placing a page into a none PTE needs no invalidation
        Assert.Equal(1, k.Stats[Stat.UffdFaults]);
        Assert.True(mm.PeekPte(A).IsNone);
    }

    [Fact]
    public void MissingFault_WithoutAHandler_WaitsForever()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 0x1000, VmFlags.NoHugePage);
        var ctx = Open(k, mm);
        MustRun(k, async () => Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 0x1000, UffdMode.Missing)));
        var v = Run(k, async _ => await Memory.UserAccess(mm, A, write: true, value: 1));
        Assert.NotNull(v);
        Assert.Equal(Invariants.Deadlock, v!.Invariant);
        Assert.Single(ctx.Pending);
    }

    [Fact]
    public void SigbusFeature_AndAFaultThatCannotRetry_GetSigbus()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 0x2000, VmFlags.NoHugePage);
        var ctx = Open(k, mm, sigbus: true);
        MustRun(k, async () =>
        {
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 0x2000, UffdMode.Missing));
            Assert.Equal(VmFault.SigBus, (await Memory.UserAccessResult(mm, A, write: false)).Fault);
        });
        var k2 = Kernel("6.13");
        var mm2 = MmWithVma(k2, A, 0x2000, VmFlags.NoHugePage);
        var ctx2 = Open(k2, mm2);
        Assert.Null(Run(k2, async _ =>
        {
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx2, A, 0x2000, UffdMode.Missing));
            await mm2.MmapLock.ReadLock();
            Assert.Equal(VmFault.SigBus, await Memory.HandleMmFault(mm2, A, FaultFlags.Remote)); // no FAULT_FLAG_ALLOW_RETRY
            await mm2.MmapLock.ReadUnlock();
        }));
        Assert.Empty(ctx2.Pending);
    }

    [Theory]
    [InlineData("6.13", true)]  // MM_CP_TRY_CHANGE_WRITABLE on resolve (6.3+)
    [InlineData("6.1", false)]  // resolve leaves the PTE read-only; the next write reuses it
    public void WriteProtect_NotifiesProtectionVma_BlocksTheWrite_AndResolveWakesIt(string era, bool writableAfterResolve)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x4000, VmFlags.NoHugePage);
        var ctx = Open(k, mm);
        MustRun(k, async () =>
        {
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 0x4000, UffdMode.Wp));
            await Memory.UserAccess(mm, A, write: true, value: 1);
            await Memory.UserAccess(mm, A + 0x1000, write: true, value: 2);
        });
        var rec = Recorder(k, mm);
        MustRun(k, async () => Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 0x4000, enableWp: true, dontWake: false)));
        var starts = rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRangeStart).ToList();
        var start = Assert.Single(starts);
        Assert.Equal((A, A + 0x4000, MmuNotifyEvent.ProtectionVma), (start.Start, start.End, start.Event));
        Assert.Single(rec.Calls, c => c.Kind == CallbackKind.InvalidateRangeEnd);
        for (ulong a = A; a < A + 0x2000; a += 0x1000)
        {
            var p = mm.PeekPte(a);
            Assert.True(p.Present && p.UffdWp && !p.Writable && p.Dirty);
        }

        UffdMsg? msg = null;
        k.S.Spawn("writer", async _ => Assert.NotNull(await Memory.UserAccess(mm, A + 0x1000, write: true, value: 9)));
        k.S.Spawn("handler", async _ =>
        {
            msg = await ctx.Read();
            if (!writableAfterResolve) Assert.False(mm.PeekPte(A + 0x1000).Writable);
            Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, msg!.Value.Address, 0x1000, enableWp: false, dontWake: false));
            Assert.Equal(writableAfterResolve, mm.PeekPte(A + 0x1000).Writable);
        });
        Assert.Null(k.Run());
        Assert.Equal(new UffdMsg(A + 0x1000, UffdReason.Wp, true), msg);
        var pte = mm.PeekPte(A + 0x1000);
        Assert.True(pte.Writable && !pte.UffdWp);
        Assert.Equal(9UL, k.Mem[pte.Pfn].Contents);
        Assert.True(mm.PeekPte(A).UffdWp); // the other page stays protected
    }

    [Fact]
    public void Errors_AreTheKernels()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 0x4000, VmFlags.NoHugePage);
        mm.InsertVma(new Vma(mm, 0x200000, 0x204000, Prot.ReadWrite, VmFlags.Shared));
        var ctx = Open(k, mm);
        var other = UserfaultfdCtx.Create(mm, "other", false)!;
        MustRun(k, async () =>
        {
            Assert.Equal(Errno.EINVAL, await Mfill.UserfaultfdRegister(ctx, A + 1, 0x1000, UffdMode.Missing));     // unaligned
            Assert.Equal(Errno.EINVAL, await Mfill.UserfaultfdRegister(ctx, 0x900000, 0x1000, UffdMode.Missing));  // no VMA
            Assert.Equal(Errno.EINVAL, await Mfill.UserfaultfdRegister(ctx, A, 0x1000, UffdMode.Minor));           // MINOR on anon
            // WP on shmem is EINVAL before 5.19 only: ShmemUffdWpTests.WpOnShmem_Is519.
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 0x2000, UffdMode.Missing));
            Assert.Equal(Errno.EBUSY, await Mfill.UserfaultfdRegister(other, A, 0x1000, UffdMode.Missing));
            Assert.Equal((0L, Errno.ENOENT), await Mfill.MfillAtomic(ctx, A + 0x2000, 0x1000, MfillMode.Copy, 1, false, false)); // not registered
            Assert.Equal((0L, Errno.EINVAL), await Mfill.MfillAtomic(ctx, A, 0x1000, MfillMode.Copy, 1, wp: true, false));       // no MODE_WP
            Assert.Equal(Errno.ENOENT, await Mfill.MwriteprotectRange(ctx, A, 0x1000, true, false));
            Assert.Equal((1L, 0), await Mfill.MfillAtomic(ctx, A + 0x1000, 0x1000, MfillMode.Zeropage, 0, false, false));
            Assert.Equal((0L, Errno.EEXIST), await Mfill.MfillAtomic(ctx, A + 0x1000, 0x1000, MfillMode.Copy, 1, false, false));
            Assert.Equal((1L, Errno.EEXIST), await Mfill.MfillAtomic(ctx, A, 0x2000, MfillMode.Copy, 1, false, false)); // a partial copy
        });
        Assert.Equal(PhysMem.ZeroPfn, mm.PeekPte(A + 0x1000).Pfn);
        Assert.Equal(1UL, k.Mem[mm.PeekPte(A).Pfn].Contents);
        Assert.Equal(3, mm.Vmas.Count); // [A, A+2 pages) registered, the rest of the anon VMA, the shmem VMA
        var k55 = Kernel("5.5");
        var mm55 = MmWithVma(k55, A, 0x1000);
        var ctx55 = Open(k55, mm55);
        MustRun(k55, async () => Assert.Equal(Errno.EINVAL, await Mfill.UserfaultfdRegister(ctx55, A, 0x1000, UffdMode.Wp))); // uffd-wp is 5.7
        Assert.Null(UserfaultfdCtx.Create(Kernel("3.19").CreateMm("old"), "u", false)); // userfaultfd(2) is 4.3: ENOSYS
    }

    [Fact]
    public void ShmemMinorFault_WaitsForUffdioContinue_WhichMapsThePageCachePage()
    {
        var k = Kernel("6.13");
        var mm = k.CreateMm("task");
        mm.InsertVma(new Vma(mm, A, A + 0x2000, Prot.ReadWrite, VmFlags.Shared));
        var ctx = Open(k, mm);
        long cached = -1;
        MustRun(k, async () =>
        {
            await Memory.UserAccess(mm, A, write: true, value: 5);
            cached = mm.PeekPte(A).Pfn;
            await Madvise.MadviseDontneed(mm, A, 0x1000); // the PTE goes, the page stays in the page cache
            Assert.True(mm.PeekPte(A).IsNone);
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 0x2000, UffdMode.Minor | UffdMode.Missing));
        });
        UffdMsg? msg = null;
        ulong? seen = null;
        k.S.Spawn("faulter", async _ => seen = await Memory.UserAccess(mm, A, write: false));
        k.S.Spawn("handler", async _ =>
        {
            msg = await ctx.Read();
            Assert.Equal((1L, 0), await Mfill.MfillAtomic(ctx, A, 0x1000, MfillMode.Continue, 0, false, false));
        });
        Assert.Null(k.Run());
        Assert.Equal(new UffdMsg(A, UffdReason.Minor, false), msg);
        Assert.Equal(5UL, seen);
        var pte = mm.PeekPte(A);
        Assert.Equal(cached, pte.Pfn);
        Assert.True(pte.Writable && pte.Dirty); // a shared writable VMA maps the cache page writable
        Assert.Equal(2, k.Mem[cached].RefCount); // page cache + mapping
        MustRun(k, async () => Assert.Equal((0L, Errno.EFAULT), await Mfill.MfillAtomic(ctx, A + 0x1000, 0x1000, MfillMode.Continue, 0, false, false)));
    }

    [Fact]
    public void Fork_ChildIsNotRegistered_AndItsPtesLoseUffdWp()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 0x2000, VmFlags.NoHugePage);
        var ctx = Open(k, mm);
        MmStruct? child = null;
        MustRun(k, async () =>
        {
            await Memory.UserAccess(mm, A, write: true, value: 3);
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 0x2000, UffdMode.Wp | UffdMode.Missing));
            Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 0x2000, true, false));
            child = await Fork.DupMmap(mm, "child");
            Assert.Equal(7UL, await Memory.UserAccess(child, A, write: true, value: 7)); // no message: a plain COW
            Assert.Equal(0UL, await Memory.UserAccess(child, A + 0x1000, write: false)); // no MISSING either
        });
        Assert.All(child!.Vmas, v => Assert.Null(v.Uffd));
        Assert.Equal(0, k.Stats[Stat.UffdFaults]);
        Assert.True(mm.PeekPte(A).UffdWp);
        Assert.False(child.PeekPte(A).UffdWp);
    }

    [Fact]
    public void Close_UnregistersAndWakesTheWaiter_WhichRetriesAsAPlainFault()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 0x1000, VmFlags.NoHugePage);
        var ctx = Open(k, mm);
        MustRun(k, async () => Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 0x1000, UffdMode.Missing)));
        ulong? seen = null;
        k.S.Spawn("faulter", async _ => seen = await Memory.UserAccess(mm, A, write: false));
        k.S.Spawn("closer", async _ =>
        {
            Assert.NotNull(await ctx.Read());
            await ctx.Release();
        });
        Assert.Null(k.Run());
        Assert.Equal(0UL, seen);
        Assert.Equal(PhysMem.ZeroPfn, mm.PeekPte(A).Pfn); // do_anonymous_page's zero page, now unregistered
        Assert.Null(mm.FindVma(A)!.Uffd);
        ctx.AssertInvariants();
    }

    /// <summary>Every interleaving with up to 2 preemptions (DPOR; 13,752 traces) of two faulting readers of one page and
    /// a handler daemon that resolves each message: each reader sees the copied value, a second resolution's EEXIST is
    /// followed by a wake, and no fault is left waiting (no lost wakeup: a deadlock would be a violation).</summary>
    [Fact]
    public void TwoFaultersOnePage_EveryInterleaving_BothSeeTheCopy()
    {
        var s = ScenarioLoader.Parse("""
            name: two-faulters
            era: "6.13"
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 4K, flags: nohugepage }
            setup:
              - uffd.open: { process: p }
              - uffd.register: { addr: 0x100000, len: 4K, mode: missing }
            daemons:
              - name: handler
                process: p
                ops:
                  - uffd.handle: { resolve: copy, value: 42, expect-reason: missing }
            threads:
              - name: a
                process: p
                ops:
                  - expect-value: { addr: 0x100000, value: 42 }
              - name: b
                process: p
                ops:
                  - expect-value: { addr: 0x100000, value: 42 }
            """, "two-faulters.yaml");
        var r = new Explorer(new ScenarioExplorable(s, EraTable.Get("6.13")),
            new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = 2, Por = true }, Iterations = 200_000 }).Run();
        Assert.Equal(0, r.Violations);
        Assert.True(r.Exhausted, "the bounded search completes");
        Assert.True(r.Schedules > 1000);
    }
}
