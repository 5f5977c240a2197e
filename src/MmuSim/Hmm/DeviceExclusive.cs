using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Hmm;

/// <summary>
/// Device-exclusive entries (mm/rmap.c make_device_exclusive, mm/memory.c remove_device_exclusive_entry; 5.14+): a
/// device that needs atomic access takes a page away from the CPU; the next CPU access restores the PTE.
/// </summary>
/// <remarks>
/// Accounting: the exclusive entry keeps the folio's mapcount and the mapping's reference (the 6.14+ rule, "the folio
/// stays mapped"); zap and fork treat it like a device-private entry. The model uses that rule in every era.
/// </remarks>
public static class DeviceExclusive
{
    /// <summary>
    /// make_device_exclusive (make_device_exclusive_range before 6.14) for one page: fault it in writable (GUP
    /// FOLL_WRITE), then under an MMU_NOTIFY_EXCLUSIVE invalidation with <paramref name="owner"/> replace the PTE by a
    /// device-exclusive entry. Returns the page with the GUP reference held, or -1 (-EBUSY: the caller gives up).
    /// Caller holds mmap_lock for read.
    /// </summary>
    public static async ValueTask<long> MakeDeviceExclusive(MmStruct mm, ulong addr, object? owner)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("make_device_exclusive");
        var vma = mm.FindVma(addr);
        if (vma == null || !vma.Writable || vma.Shared) return -1;
        for (int attempt = 0; attempt < 16; attempt++)
        {
            var f = await Memory.HandleMmFault(mm, addr, FaultFlags.Write | FaultFlags.Remote);
            if (f is VmFault.SigSegv or VmFault.Oom) return -1;
            var range = new MmuNotifierRange(mm, addr, addr + MmStruct.PageSize, MmuNotifyEvent.Exclusive, owner);
            await mm.Notifiers.InvalidateRangeStart(range);
            int t = mm.PteTable(addr);
            long page = -1;
            if (t != 0)
            {
                await mm.LockPtl(t);
                var pte = await mm.PtepGet(t, addr);
                if (pte.Present && pte.Writable && !pte.Special && pte.Pfn != PhysMem.ZeroPfn &&
                    DevicePagemaps.Of(k).PgmapOf(pte.Pfn) == null && !k.Mem.IsLarge(k.Mem.FolioOf(pte.Pfn)))
                {
                    page = pte.Pfn;
                    var old = await Tlb.PtepClearFlush(mm, t, addr);
                    if (old.Dirty) Folio.MarkDirty(k, page);
                    await mm.SetPte(t, addr, Pte.SwapEntry(SwapType.DeviceExclusiveWrite, page));
                    Folio.Get(k, page); // the caller's (GUP) reference
                }
                await mm.UnlockPtl(t);
            }
            await mm.Notifiers.InvalidateRangeEnd(range);
            if (page >= 0) return page;
        }
        return -1;
    }

    /// <summary>
    /// remove_device_exclusive_entry (do_swap_page): under an MMU_NOTIFY_EXCLUSIVE invalidation (owner NULL) restore
    /// the original PTE (restore_exclusive_pte), so the device loses its atomic access before the CPU touches the page.
    /// </summary>
    public static async ValueTask<VmFault> RemoveDeviceExclusiveEntry(MmStruct mm, Vma vma, ulong addr, int t, Pte entry)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("remove_device_exclusive_entry");
        var range = new MmuNotifierRange(mm, addr, addr + MmStruct.PageSize, MmuNotifyEvent.Exclusive);
        await mm.Notifiers.InvalidateRangeStart(range);
        await mm.LockPtl(t);
        var cur = await mm.PtepGet(t, addr);
        if (cur == entry)
        {
            // restore_exclusive_pte: mk_pte with the VMA's protection; writable only if the entry was and the page is exclusive.
            bool w = entry.IsWritableEntry && vma.Writable && k.Mem[entry.Pfn].Has(PageFlags.AnonExclusive);
            await mm.SetPte(t, addr, Pte.Make(entry.Pfn, w, dirty: k.Mem[entry.Pfn].Has(PageFlags.Dirty)));
        }
        await mm.UnlockPtl(t);
        await mm.Notifiers.InvalidateRangeEnd(range);
        return VmFault.Retry;
    }
}
