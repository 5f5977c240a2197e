using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Userfaultfd;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Userfaultfd;

/// <summary>
/// UFFDIO_MOVE (mm/userfaultfd.c move_pages, 6.8): the only userfaultfd ioctl that takes pages away from a mapping,
/// so it must invalidate the source for the secondaries: CLEAR per source page (move_pages_pte) or per source huge
/// PMD (move_pages_huge_pmd). The folio itself moves: same pfn, rmap and index rewritten to the destination.
/// </summary>
public class UffdMoveTests
{
    const ulong Dst = 0x200000, Src = 0x600000;
    const ulong P = MmStruct.PageSize, H = MmStruct.PmdSize;

    static (Kernel K, MmStruct Mm, UserfaultfdCtx Ctx) Setup(string era, ulong len = 4 * P, VmFlags flags = VmFlags.NoHugePage)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, Dst, len, flags);
        mm.InsertVma(new Vma(mm, Src, Src + len, Prot.ReadWrite, flags));
        var ctx = UserfaultfdCtx.Create(mm, "uffd", UserfaultfdCtx.FeatureMove)!;
        Ok(k, async () => Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, Dst, len, UffdMode.Missing)));
        return (k, mm, ctx);
    }

    [Fact]
    public void MovingAPage_KeepsThePfn_RewritesTheRmap_AndClearsTheSourceUnderACallbackPerPage()
    {
        var (k, mm, ctx) = Setup("6.13");
        Ok(k, async () =>
        {
            await Memory.UserAccess(mm, Src, write: true, value: 0x11);
            await Memory.UserAccess(mm, Src + P, write: true, value: 0x22);
        });
        long pfn0 = mm.PeekPte(Src).Pfn;
        var rec = Recorder(k, mm);
        (ulong, int) r = default;
        Ok(k, async () => r = await Move.MovePages(ctx, Dst, Src, 2 * P, allowSrcHoles: false));
        Assert.Equal((2 * P, 0), r);
        Assert.True(mm.PeekPte(Src).IsNone && mm.PeekPte(Src + P).IsNone);
        var moved = mm.PeekPte(Dst);
        Assert.True(moved.Present && moved.Writable && moved.Dirty);
        Assert.Equal(pfn0, moved.Pfn); // zero copy
        Assert.Equal(1, k.Mem[pfn0].MapCount);
        Assert.Equal(1, k.Mem[pfn0].RefCount);
        Assert.True(k.Mem[pfn0].Has(PageFlags.AnonExclusive));
        Assert.Equal(mm.FindVma(Dst)!.IndexOf(Dst), k.Mem[pfn0].Index); // folio->index = linear_page_index(dst_vma, dst_addr)
        var starts = rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRangeStart).Select(c => (c.Start, c.End, c.Event)).ToList();
        Assert.Equal([(Src, Src + P, MmuNotifyEvent.Clear), (Src + P, Src + 2 * P, MmuNotifyEvent.Clear)], starts);
        Assert.Equal(2, rec.Calls.Count(c => c.Kind == CallbackKind.InvalidateRangeEnd));
        Assert.Equal(0x22UL, ReadAt(k, mm, Dst + P));
        Assert.Equal(0UL, ReadAt(k, mm, Src)); // the source refaults the zero page
    }

    static ulong ReadAt(Kernel k, MmStruct mm, ulong addr)
    {
        ulong v = 0xdead;
        Ok(k, async () => v = (await Memory.UserAccess(mm, addr, write: false))!.Value);
        return v;
    }

    [Fact]
    public void Refusals_AreTheKernels()
    {
        var (k, mm, ctx) = Setup("6.13");
        Ok(k, async () =>
        {
            await Memory.UserAccess(mm, Src, write: true, value: 1);
            await Mfill.MfillAtomic(ctx, Dst + P, P, MfillMode.Copy, 2, false, false); // a populated destination page
        });
        Ok(k, async () =>
        {
            Assert.Equal((0UL, Errno.EINVAL), await Move.MovePages(ctx, Dst + 1, Src, P, false));  // unaligned
            Assert.Equal((0UL, Errno.EEXIST), await Move.MovePages(ctx, Dst + P, Src, P, false));  // dst not none
            Assert.Equal((0UL, Errno.ENOENT), await Move.MovePages(ctx, Dst, Src + P, P, false));  // a hole in src
            Assert.Equal((P, 0), await Move.MovePages(ctx, Dst + 2 * P, Src + 2 * P, P, true));    // ALLOW_SRC_HOLES: counted as moved
            Assert.Equal((0UL, Errno.EINVAL), await Move.MovePages(ctx, Src, Dst, P, false));      // dst not registered with this ctx
        });
        // A page shared with a child (fork cleared PageAnonExclusive) cannot move.
        Ok(k, async () => await Fork.DupMmap(mm, "child"));
        Ok(k, async () => Assert.Equal((0UL, Errno.EBUSY), await Move.MovePages(ctx, Dst, Src, P, false)));
        Assert.True(mm.PeekPte(Src).Present);
        Assert.Equal((0UL, Errno.EINVAL), RunMove(Kernel("6.6")));
    }

    static (ulong, int) RunMove(Kernel k)
    {
        var mm = MmWithVma(k, Dst, P, VmFlags.NoHugePage);
        var ctx = UserfaultfdCtx.Create(mm, "uffd", 0)!;
        (ulong, int) r = default;
        Ok(k, async () => r = await Move.MovePages(ctx, Dst, Dst, P, false)); // no UFFDIO_MOVE before 6.8
        return r;
    }

    [Fact]
    public void APinnedPage_IsBusy()
    {
        var (k, mm, ctx) = Setup("6.13");
        Ok(k, async () => await Memory.UserAccess(mm, Src, write: true, value: 1));
        Ok(k, async () => Assert.Equal(0, (await Gup.GetUserPages(mm, Src, 1, GupFlags.Pin | GupFlags.Longterm, fast: false)).Error));
        Ok(k, async () => Assert.Equal((0UL, Errno.EBUSY), await Move.MovePages(ctx, Dst, Src, P, false)));
        Assert.True(mm.PeekPte(Src).Present);
    }

    [Fact]
    public void AWholeThp_MovesAsOneHugePmd_UnderOneClear_IntoANoneDestinationPmd()
    {
        var (k, mm, ctx) = Setup("6.13", H, VmFlags.HugePage);
        Ok(k, async () => await Memory.UserAccess(mm, Src, write: true, value: 7));
        var srcPmd = mm.PeekPmd(Src);
        Assert.True(srcPmd.Present && srcPmd.Huge);
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.Equal((H, 0), await Move.MovePages(ctx, Dst, Src, H, false)));
        Assert.True(mm.PeekPmd(Src).IsNone);
        var dstPmd = mm.PeekPmd(Dst);
        Assert.True(dstPmd.Present && dstPmd.Huge && dstPmd.Writable && dstPmd.Pfn == srcPmd.Pfn);
        var start = Assert.Single(rec.Calls, c => c.Kind == CallbackKind.InvalidateRangeStart);
        Assert.Equal((Src, Src + H, MmuNotifyEvent.Clear), (start.Start, start.End, start.Event));
        Assert.Equal(7UL, ReadAt(k, mm, Dst));
    }

    [Fact]
    public void AThpIntoAPopulatedDestinationPmd_IsSplitAndMovedPageByPage()
    {
        var (k, mm, ctx) = Setup("6.13", H, VmFlags.HugePage);
        Ok(k, async () => await Memory.UserAccess(mm, Src, write: true, value: 7));
        mm.PteAlloc(Dst); // the destination PMD holds a page table (a PTE-path fault made it)
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.Equal((H, 0), await Move.MovePages(ctx, Dst, Src, H, false)));
        Assert.True(mm.PeekPte(Dst).Present && !mm.PeekPmd(Dst).Huge);
        Assert.Equal(512, rec.Calls.Count(c => c.Kind == CallbackKind.InvalidateRangeStart && c.End - c.Start == P));
        Assert.Equal(7UL, ReadAt(k, mm, Dst));
        Assert.True(mm.PeekPte(Src + 5 * P).IsNone);
    }

    [Fact]
    public void AMissingFaultOnAThpEligibleVma_IsDeliveredFromTheHugePath_WithThePmdStillNone()
    {
        var (k, mm, ctx) = Setup("6.13", H, VmFlags.HugePage);
        bool pmdNoneAtRead = false;
        UffdMsg? msg = null;
        k.S.Spawn("faulter", async _ => await Memory.UserAccess(mm, Dst + 3 * P, write: false));
        k.S.Spawn("monitor", async _ =>
        {
            msg = await ctx.Read();
            pmdNoneAtRead = mm.PeekPmd(Dst).IsNone; // __do_huge_pmd_anonymous_page hands it over before any page table
            Assert.Equal(0, (await Mfill.MfillAtomic(ctx, Dst + 3 * P, P, MfillMode.Copy, 5, false, false)).Error);
        });
        Assert.Null(k.Run());
        Assert.Equal(Dst + 3 * P, msg!.Value.Address);
        Assert.True(pmdNoneAtRead);
        Assert.Equal(0, k.Stats[Stat.ThpFaults]);
        Assert.Equal(5UL, ReadAt(k, mm, Dst + 3 * P));
    }
}
