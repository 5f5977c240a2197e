using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>mm/madvise.c: MADV_DONTNEED and MADV_FREE.</summary>
public static class Madvise
{
    /// <summary>
    /// madvise(MADV_DONTNEED) → madvise_dontneed_single_vma per VMA → zap_page_range_single (CLEAR start/end; pages
    /// freed at tlb_finish_mmu after end). Holds mmap_lock for read.
    /// </summary>
    public static async ValueTask MadviseDontneed(MmStruct mm, ulong start, ulong len)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_dontneed");
        ulong end = start + len;
        await mm.MmapLock.ReadLock();
        try
        {
            foreach (var vma in mm.Vmas.ToArray())
            {
                ulong s = Math.Max(vma.Start, start), e = Math.Min(vma.End, end);
                if (s < e) await Memory.ZapPageRangeSingle(vma, s, e);
            }
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
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
            ulong next = Math.Min((addr & MmStruct.PmdMask) + MmStruct.PmdSize, end);
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
        if (huge && k.Mem.FolioMapCount(pmd.Pfn) == 1)
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
}
