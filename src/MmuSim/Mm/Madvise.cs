using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>mm/madvise.c: MADV_DONTNEED, MADV_FREE, MADV_POPULATE_READ/WRITE, MADV_WIPEONFORK/KEEPONFORK (MADV_COLLAPSE: <see cref="Khugepaged"/>).</summary>
public static class Madvise
{
    /// <summary>
    /// madvise(MADV_DONTNEED) → madvise_dontneed_free per VMA → zap_page_range_single (CLEAR start/end; pages
    /// freed at tlb_finish_mmu after end). Holds mmap_lock for read. A VMA whose userfaultfd asked for
    /// UFFD_FEATURE_EVENT_REMOVE is announced first (userfaultfd_remove drops mmap_lock and waits for the monitor to
    /// read UFFD_EVENT_REMOVE); the VMA is then looked up again (vma_lookup: gone is -ENOMEM, the model stops) and its
    /// part of the range zapped.
    /// </summary>
    public static async ValueTask MadviseDontneed(MmStruct mm, ulong start, ulong len)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_dontneed");
        ulong end = start + len;
        await mm.MmapLock.ReadLock();
        try
        {
            for (ulong s = start; s < end;)
            {
                var vma = mm.FindVmaFrom(s);
                if (vma == null || vma.Start >= end) break;
                s = Math.Max(s, vma.Start);
                ulong e = Math.Min(vma.End, end);
                if (!await Userfaultfd.UserfaultfdCtx.UserfaultfdRemove(vma, s, e))
                {
                    await mm.MmapLock.ReadLock();
                    vma = mm.FindVma(s);
                    if (vma == null) return; // -ENOMEM
                    e = Math.Min(vma.End, e);
                }
                await Memory.ZapPageRangeSingle(vma, s, e);
                s = e;
            }
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
    }

    /// <summary>
    /// madvise(MADV_REMOVE) → madvise_remove: for a shared file mapping (EACCES if not shared and writable, EINVAL
    /// without a file or for VM_LOCKED), announce the range to a userfaultfd with UFFD_FEATURE_EVENT_REMOVE
    /// (userfaultfd_remove), drop mmap_lock and punch the hole in the file (vfs_fallocate(PUNCH_HOLE | KEEP_SIZE):
    /// every mapping of those pages is zapped and the pages leave the page cache). Returns 0 or the errno.
    /// </summary>
    public static async ValueTask<int> MadviseRemove(MmStruct mm, ulong start, ulong len)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_remove");
        ulong end = start + len;
        await mm.MmapLock.ReadLock();
        var vma = mm.FindVma(start);
        if (vma == null || vma.Start > start || end > vma.End)
        {
            await mm.MmapLock.ReadUnlock();
            return Errno.ENOMEM;
        }
        if (vma.File is not { } file || (vma.Flags & VmFlags.Locked) != 0)
        {
            await mm.MmapLock.ReadUnlock();
            return Errno.EINVAL;
        }
        if (!vma.Shared || !vma.Writable)
        {
            await mm.MmapLock.ReadUnlock();
            return Errno.EACCES;
        }
        ulong first = vma.IndexOf(start), count = len >> MmStruct.PageShift;
        if (await Userfaultfd.UserfaultfdCtx.UserfaultfdRemove(vma, start, end)) await mm.MmapLock.ReadUnlock();
        await Truncate.PunchHole(k, file, first, count);
        return 0;
    }

    /// <summary>
    /// madvise(MADV_FREE): madvise_free_single_vma on every anonymous private VMA in the range. Holds mmap_lock for
    /// read. Returns false (-EINVAL) in eras before 4.5.
    /// </summary>
    public static async ValueTask<bool> MadviseFree(MmStruct mm, ulong start, ulong len)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_free");
        if (!k.Era.Has(Eras.Feature.MadvFree)) return false;
        ulong end = start + len;
        await mm.MmapLock.ReadLock();
        try
        {
            foreach (var vma in mm.Vmas.ToArray())
            {
                ulong s = Math.Max(vma.Start, start), e = Math.Min(vma.End, end);
                if (s < e && !vma.Shared) await MadviseFreeSingleVma(vma, s, e);
            }
            return true;
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
    }

    /// <summary>
    /// madvise_free_single_vma: start CLEAR, walk the range (madvise_free_pte_range / madvise_free_huge_pmd), end,
    /// tlb_finish_mmu. A swap entry is dropped (its contents are discarded); a present exclusive folio that is dirty
    /// gets folio_clear_dirty; young/dirty PTEs become old and clean; the folio is marked lazyfree. A dirty (or
    /// swap-cache) folio mapped more than once is left alone, as the kernel does. A large folio mapped by PTEs is
    /// skipped (the kernel splits it first; not modelled). Reclaim later discards a lazyfree folio only if it is still
    /// clean and has no extra references (<see cref="Rmap.TryToUnmapOne"/>).
    /// </summary>
    public static async ValueTask MadviseFreeSingleVma(Vma vma, ulong start, ulong end)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_free_single_vma");
        var tlb = new MmuGather(mm);
        var range = new MmuNotifierRange(mm, start, end, MmuNotifyEvent.Clear);
        await mm.Notifiers.InvalidateRangeStart(range);
        for (ulong addr = start; addr < end;)
        {
            ulong next = mm.PmdAddrEnd(addr, end);
            var pmd = mm.PeekPmd(addr);
            if (pmd.Present && pmd.Huge)
            {
                if ((addr & ~MmStruct.PmdMask) == 0 && next - addr == MmStruct.PmdSize)
                {
                    if (await MadviseFreeHugePmd(tlb, vma, addr))
                    {
                        addr = next;
                        continue;
                    }
                }
                else await HugeMemory.SplitHugePmd(vma, addr, notify: false);
            }
            int t = mm.PteTable(addr);
            if (t != 0) await MadviseFreePteRange(tlb, vma, t, addr, next);
            addr = next;
        }
        await mm.Notifiers.InvalidateRangeEnd(range);
        await tlb.Finish();
    }

    /// <summary>madvise_free_pte_range: one PTE table under its PTL.</summary>
    static async ValueTask MadviseFreePteRange(MmuGather tlb, Vma vma, int t, ulong start, ulong end)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_free_pte_range");
        await mm.LockPtl(t);
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            if (mm.PeekPte(a).IsNone) continue;
            var pte = await mm.PtepGet(t, a);
            if (pte.SwapKind == SwapType.Swap)
            {
                // free_swap_and_cache + pte_clear_not_present_full
                k.Swap.Free((int)pte.Pfn);
                await mm.SetPte(t, a, Pte.None);
                continue;
            }
            if (!pte.Present || pte.Special || pte.Pfn == PhysMem.ZeroPfn) continue;
            long head = k.Mem.FolioOf(pte.Pfn);
            if (k.Mem.IsHuge(head)) continue;
            var f = k.Mem[head];
            if (f.Has(PageFlags.Swapcache) || f.Has(PageFlags.Dirty))
            {
                if (f.MapCount != 1) continue; // shared: must not clear the folio's dirty flag
                Folio.TestClearDirty(k, head, "MADV_FREE folio_clear_dirty");
            }
            if (pte.Accessed || pte.Dirty)
            {
                var old = await mm.PtepGetAndClear(t, a);
                await mm.SetPte(t, a, old.Mkold().Mkclean());
                tlb.TrackRange(a, a + MmStruct.PageSize);
            }
            // folio_mark_lazyfree
            if (f.Has(PageFlags.Anon) && !f.Has(PageFlags.Swapcache) && !f.Has(PageFlags.Ksm)) k.Mem[head].Set(PageFlags.Lazyfree);
        }
        await mm.UnlockPtl(t);
    }

    /// <summary>madvise_free_huge_pmd: a whole, exclusively mapped THP is cleaned and marked lazyfree under the PMD lock.</summary>
    static async ValueTask<bool> MadviseFreeHugePmd(MmuGather tlb, Vma vma, ulong haddr)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_free_huge_pmd");
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        bool huge = pmd.Present && pmd.Huge;
        if (huge && pmd.Special) { } // madvise_free_huge_pmd: is_huge_zero_pmd, nothing to free
        else if (huge && k.Mem.FolioMapCount(pmd.Pfn) == 1)
        {
            long head = pmd.Pfn;
            if (k.Mem[head].Has(PageFlags.Dirty)) Folio.TestClearDirty(k, head, "MADV_FREE folio_clear_dirty");
            if (pmd.Accessed || pmd.Dirty)
            {
                await mm.SetPmd(haddr, pmd.Mkold().Mkclean());
                tlb.TrackRange(haddr, haddr + MmStruct.PmdSize);
            }
            k.Mem[head].Set(PageFlags.Lazyfree);
        }
        await mm.UnlockPmd(haddr);
        return huge;
    }
    /// <summary>
    /// madvise(MADV_POPULATE_READ / MADV_POPULATE_WRITE) → madvise_populate: prefault the range through
    /// <see cref="Gup.FaultinPageRange"/> under mmap_lock (read), as a read or a write fault would (zero page for a
    /// read of an empty anon page, COW for a write to a shared or zero page: those faults fire their own notifiers;
    /// populate adds none). Returns 0, -EINVAL (before 5.14: unknown advice; a VMA check_vma_flags refuses),
    /// -ENOMEM (a hole: the pages before it are populated; out of memory) or -EFAULT.
    /// </summary>
    public static async ValueTask<int> MadvisePopulate(MmStruct mm, ulong start, ulong end, bool write)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_populate");
        if (!k.Era.Has(Eras.Feature.MadvPopulate)) return Errno.EINVAL;
        await mm.MmapLock.ReadLock();
        try { return await Gup.FaultinPageRange(mm, start, end, write); }
        finally { await mm.MmapLock.ReadUnlock(); }
    }

    /// <summary>
    /// madvise(MADV_WIPEONFORK / MADV_KEEPONFORK) → madvise_vma_behavior → madvise_update_vma: set or clear
    /// VM_WIPEONFORK on the VMAs in the range (split at the edges) under mmap_lock (write). WIPEONFORK is refused with
    /// -EINVAL on a file or shared VMA (shmem included), stopping the walk there; a hole gives -ENOMEM after the
    /// mapped parts are updated (madvise_walk_vmas); alike neighbours merge again (vma_merge). Before 4.14 both are unknown advice (-EINVAL). No notifier.
    /// </summary>
    public static async ValueTask<int> MadviseWipeOnFork(MmStruct mm, ulong start, ulong end, bool wipe)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_update_vma");
        if (!k.Era.Has(Eras.Feature.MadvWipeOnFork)) return Errno.EINVAL;
        await mm.MmapLock.WriteLock();
        try
        {
            ulong covered = start;
            int err = 0;
            foreach (var v in mm.Vmas.ToArray())
            {
                if (v.End <= start || v.Start >= end) continue;
                if (v.Start > covered) err = Errno.ENOMEM;
                if (wipe && (v.Shared || v.File != null)) return Errno.EINVAL;
                foreach (var part in await Mmap.SplitAround(mm, Math.Max(start, v.Start), Math.Min(end, v.End)))
                    part.Flags = wipe ? part.Flags | VmFlags.WipeOnFork : part.Flags & ~VmFlags.WipeOnFork;
                covered = Math.Min(end, v.End);
            }
            Mmap.VmaMergeAround(mm, start, end);
            return covered < end ? Errno.ENOMEM : err;
        }
        finally { await mm.MmapLock.WriteUnlock(); }
    }
}
