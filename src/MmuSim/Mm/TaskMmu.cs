using MmuSim.Eras;
using MmuSim.Notifier;

namespace MmuSim.Mm;

/// <summary>
/// fs/proc/task_mmu.c: <c>echo 4 &gt; /proc/PID/clear_refs</c> (CLEAR_REFS_SOFT_DIRTY), one of the three paths of race
/// §5(d8). It write-protects every present PTE under its PTL and defers the TLB flush to the end of the walk, so a CPU
/// can keep writing through a writable TLB entry after its PTE became read-only, until that flush.
/// </summary>
/// <remarks>
/// Era differences (kernel code read at several versions): up to 4.13-rc1 the walk is bracketed by
/// invalidate_range_start/end over the whole address space and followed by flush_tlb_mm, and mm_tlb_flush_pending is
/// not raised; from 4.13 (b3a81d0841a95) the walk runs inside tlb_gather_mmu .. tlb_finish_mmu, which raises
/// mm_tlb_flush_pending for its whole duration (<see cref="Feature.TlbGatherFlushPending"/>); 5.2+ name the event
/// MMU_NOTIFY_SOFT_DIRTY. Not modelled: VM_SOFTDIRTY (the first clear_refs after an mmap takes mmap_lock for write to
/// clear it; the model's VMAs behave as if that already happened, so the walk runs under mmap_lock for read as in
/// Nadav Amit's report), soft-dirty swap entries, the 5.10+ skip of pinned pages, types 1-3 and 5.
/// </remarks>
public static class TaskMmu
{
    /// <summary>CLEAR_REFS_SOFT_DIRTY.</summary>
    public const int ClearRefsSoftDirtyType = 4;

    /// <summary>
    /// clear_refs_write with type 4 (CLEAR_REFS_SOFT_DIRTY): under mmap_lock for read, start SOFT_DIRTY over the whole
    /// address space, write-protect and clear soft-dirty on every present PTE/huge PMD, end, then flush every CPU's TLB
    /// for the mm (flush_tlb_mm; tlb_finish_mmu from 4.13). Returns false (-EINVAL) where the era has no soft-dirty.
    /// </summary>
    public static async ValueTask<bool> ClearRefsWrite(MmStruct mm)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("clear_refs_write");
        if (!k.Era.Has(Feature.ClearRefsSoftDirty)) return false;
        await mm.MmapLock.ReadLock();
        try
        {
            // 4.13+: tlb_gather_mmu(&tlb, mm, 0, -1) raises mm_tlb_flush_pending; fullmm, so the finish flushes it all.
            MmuGather? tlb = null;
            if (k.Era.Has(Feature.TlbGatherFlushPending))
            {
                tlb = new MmuGather(mm);
                tlb.TrackRange(0, Tlb.TaskSize);
            }
            var range = new MmuNotifierRange(mm, 0, Tlb.TaskSize, MmuNotifyEvent.SoftDirty);
            await mm.Notifiers.InvalidateRangeStart(range);
            foreach (var vma in mm.Vmas.ToArray())
            {
                vma.Flags &= ~VmFlags.SoftDirty; // clear_soft_dirty's vm_flags_clear(vma, VM_SOFTDIRTY)
                if (vma.IsHugetlb) continue; // clear_refs_walk_ops has no hugetlb_entry
                for (ulong addr = vma.Start; addr < vma.End;)
                {
                    ulong next = mm.PmdAddrEnd(addr, vma.End);
                    var pmd = mm.PeekPmd(addr);
                    if (pmd.IsHugeOrMigrationPmd) await ClearSoftDirtyPmd(mm, addr);
                    else if (mm.PteTable(addr) is var t && t != 0) await ClearRefsPteRange(mm, t, addr, next);
                    addr = next;
                }
            }
            await mm.Notifiers.InvalidateRangeEnd(range);
            if (tlb != null) await tlb.Finish();
            else await Tlb.FlushTlbMm(mm);
            return true;
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
    }

    /// <summary>clear_refs_pte_range (CLEAR_REFS_SOFT_DIRTY): <see cref="ClearSoftDirty"/> on each PTE of one table, under its PTL.</summary>
    static async ValueTask ClearRefsPteRange(MmStruct mm, int t, ulong start, ulong end)
    {
        using var _ = mm.Kernel.S.Current.Enter("clear_refs_pte_range");
        await mm.LockPtl(t);
        for (ulong a = start; a < end; a += MmStruct.PageSize)
            if (mm.PeekPte(a) is var p && (p.Present || (p.IsSwapEntry && p.SoftDirty))) await ClearSoftDirty(mm, t, a);
        await mm.UnlockPtl(t);
    }

    /// <summary>
    /// clear_soft_dirty: a present PTE goes through ptep_modify_prot_start (get-and-clear), pte_wrprotect,
    /// pte_clear_soft_dirty, ptep_modify_prot_commit; a swap or migration entry only loses its soft-dirty bit
    /// (is_swap_pte: pte_swp_clear_soft_dirty). No TLB flush here: the caller flushes once at the end. Caller holds the PTL.
    /// </summary>
    public static async ValueTask ClearSoftDirty(MmStruct mm, int t, ulong addr)
    {
        using var _ = mm.Kernel.S.Current.Enter("clear_soft_dirty");
        var cur = await mm.PtepGet(t, addr);
        if (cur.Present)
        {
            var old = await mm.PtepGetAndClear(t, addr);
            await mm.SetPte(t, addr, old.Wrprotect().ClearSoftDirty());
        }
        else if (cur.IsSwapEntry && cur.SoftDirty) await mm.SetPte(t, addr, cur.ClearSoftDirty());
    }

    /// <summary>clear_soft_dirty_pmd: the same for a huge PMD, under the PMD lock (pmdp_invalidate; no flush here); a PMD
    /// migration entry only loses its soft-dirty bit (pmd_swp_clear_soft_dirty).</summary>
    static async ValueTask ClearSoftDirtyPmd(MmStruct mm, ulong addr)
    {
        using var _ = mm.Kernel.S.Current.Enter("clear_soft_dirty_pmd");
        ulong haddr = addr & MmStruct.PmdMask;
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        if (pmd.Present && pmd.Huge) await mm.SetPmd(haddr, pmd.Wrprotect().ClearSoftDirty());
        else if (pmd.IsMigration && pmd.SoftDirty) await mm.SetPmd(haddr, pmd.ClearSoftDirty());
        await mm.UnlockPmd(haddr);
    }

    /// <summary>PAGEMAP_SCAN's PM_SCAN_WP_MATCHING: write-protect the matching pages (uffd-wp async VMAs only).</summary>
    public const ulong PmScanWpMatching = 1;
    /// <summary>PM_SCAN_CHECK_WPASYNC: fail with -EPERM on a VMA that is not uffd-wp async.</summary>
    public const ulong PmScanCheckWpAsync = 2;

    /// <summary>
    /// do_pagemap_scan (the PAGEMAP_SCAN ioctl on /proc/PID/pagemap, 6.7+): count the present pages of [start, end)
    /// (category PAGE_IS_PRESENT), or a negative errno. With <see cref="PmScanWpMatching"/> the scan is a protection
    /// change: MMU_NOTIFY_PROTECTION_VMA start/end bracket it. In 6.7 the start runs before mmap_read_lock_killable and
    /// the end after mmap_read_unlock, so a notifier registered in between (mmu_notifier_register takes mmap_lock for
    /// write) receives an end without its start: catalog e4, CVE-2024-26617. From 6.8 (and 6.7.3) both run under the
    /// lock (<see cref="Feature.PagemapScanNotifyUnderMmapLock"/>).
    /// </summary>
    /// <remarks>Not modelled: UFFD_FEATURE_WP_ASYNC, so no VMA is uffd-wp async and a WP_MATCHING scan skips every VMA
    /// (pagemap_scan_test_walk returns 1: neither reported nor protected), exactly as the kernel does for such VMAs;
    /// the output vector, category masks other than present, max_pages and the walk_end restart (one iteration).</remarks>
    public static async ValueTask<long> DoPagemapScan(MmStruct mm, ulong start, ulong end, ulong flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_pagemap_scan");
        if (!k.Era.Has(Feature.PagemapScan)) return Errno.ENOTTY;   // no such ioctl: pagemap has no unlocked_ioctl
        // pagemap_scan_get_args
        if ((flags & ~(PmScanWpMatching | PmScanCheckWpAsync)) != 0) return Errno.EINVAL;
        if ((start & ~MmStruct.PageMask) != 0 || end < start) return Errno.EINVAL;
        end = (end + MmStruct.PageSize - 1) & MmStruct.PageMask;
        bool wp = (flags & PmScanWpMatching) != 0;
        bool underLock = k.Era.Has(Feature.PagemapScanNotifyUnderMmapLock) && !k.Mutated(Mutation.PagemapScanNotifyOutsideMmapLock);
        var range = new MmuNotifierRange(mm, start, end, MmuNotifyEvent.ProtectionVma);
        if (wp && !underLock) await mm.Notifiers.InvalidateRangeStart(range);
        long found;
        await mm.MmapLock.ReadLock();                               // mmap_read_lock_killable
        try
        {
            if (wp && underLock) await mm.Notifiers.InvalidateRangeStart(range);
            found = await PagemapScanWalk(mm, start, end, flags);
            if (wp && underLock) await mm.Notifiers.InvalidateRangeEnd(range);
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
        if (wp && !underLock) await mm.Notifiers.InvalidateRangeEnd(range);
        return found;
    }

    /// <summary>walk_page_range with pagemap_scan_ops: pagemap_scan_test_walk per VMA, then the present PTEs and huge PMDs.</summary>
    static async ValueTask<long> PagemapScanWalk(MmStruct mm, ulong start, ulong end, ulong flags)
    {
        long found = 0;
        foreach (var vma in mm.Vmas)
        {
            if (vma.End <= start || vma.Start >= end) continue;
            // pagemap_scan_test_walk: wp_allowed = userfaultfd_wp_async(vma) && userfaultfd_wp_use_markers(vma), never here
            if ((flags & PmScanCheckWpAsync) != 0) return Errno.EPERM;
            if ((flags & PmScanWpMatching) != 0) continue;
            ulong e = Math.Min(vma.End, end);
            for (ulong addr = Math.Max(vma.Start, start); addr < e; addr += MmStruct.PageSize)
            {
                await mm.Kernel.S.Point(Sched.PointKind.PteRead, addr);
                if (PagemapEntry(mm, addr) >> PmPresent != 0) found++;
            }
        }
        return found;
    }

    public const int PmSoftDirty = 55, PmMmapExclusive = 56, PmUffdWp = 57, PmFile = 61, PmSwap = 62, PmPresent = 63;
    /// <summary>PM_PFRAME_MASK: bits 0-54 of a present entry hold the pfn.</summary>
    public const ulong PmPfnMask = (1UL << 55) - 1;

    /// <summary>The /proc/PID/smaps fields of one VMA that the selftests read (kB).</summary>
    public readonly record struct SmapsFields(ulong Rss, ulong AnonHugePages, ulong ShmemPmdMapped, ulong FilePmdMapped);

    /// <summary>
    /// show_smap's page walk over <paramref name="vma"/> (smaps_pte_entry, smaps_pmd_entry): Rss counts present pages
    /// (a huge PMD as 2 MiB); a PMD-mapped folio adds to AnonHugePages if anonymous, to ShmemPmdMapped if shmem
    /// (PageSwapBacked), to FilePmdMapped otherwise. The huge zero page has no struct page here (not counted), nor does
    /// the 4 KiB zero page count in Rss (vm_normal_page NULL); a hugetlb VMA reports none of them. No scheduling point: the caller took one.
    /// </summary>
    public static SmapsFields Smaps(MmStruct mm, Vma vma)
    {
        var k = mm.Kernel;
        ulong rss = 0, anon = 0, shmem = 0, file = 0;
        if (vma.IsHugetlb) return default; // smaps_hugetlb_range: Shared/Private_Hugetlb, not Rss
        const ulong HugeKb = MmStruct.PmdSize >> 10, PageKb = MmStruct.PageSize >> 10;
        for (ulong va = mm.SkipPmdHole(vma.Start, vma.End); va < vma.End;)
        {
            var pmd = mm.PeekPmd(va);
            if (pmd.Present && pmd.Huge)
            {
                if (!pmd.Special)
                {
                    rss += HugeKb;
                    var head = k.Mem[pmd.Pfn];
                    if (head.Has(PageFlags.Anon)) anon += HugeKb;
                    else if (vma.File is { IsShmem: true }) shmem += HugeKb;
                    else file += HugeKb;
                }
                va = mm.SkipPmdHole((va & MmStruct.PmdMask) + MmStruct.PmdSize, vma.End);
                continue;
            }
            var pte = mm.PeekPte(va);
            if (pte.Present && !pte.Special && pte.Pfn != PhysMem.ZeroPfn) rss += PageKb;
            va = mm.SkipPmdHole(va + MmStruct.PageSize, vma.End);
        }
        return new SmapsFields(rss, anon, shmem, file);
    }

    /// <summary>
    /// pte_to_pagemap_entry (fs/proc/task_mmu.c): the 64-bit /proc/PID/pagemap entry of one 4 KiB page: bits 0-54 pfn
    /// (present) or swap type/offset, 55 soft-dirty, 56 exclusively mapped (mapcount 1), 57 uffd-wp (PM_UFFD_WP, 5.13+:
    /// the PTE's or swap entry's uffd-wp bit), 61 file page or shared-anon,
    /// 62 swapped, 63 present. The zero page has no struct page (vm_normal_page NULL): neither file nor exclusive.
    /// A none PTE reads 0, or only bit 55 in a VM_SOFTDIRTY VMA (pagemap_pte_hole, pte_to_pagemap_entry: a VMA that
    /// is VM_SOFTDIRTY makes every entry soft-dirty). No scheduling point: the caller took one.
    /// </summary>
    public static ulong PagemapEntry(MmStruct mm, ulong addr)
    {
        var k = mm.Kernel;
        var pmd = mm.PeekPmd(addr);
        bool huge = pmd.Present && pmd.Huge;
        var vma = mm.FindVma(addr);
        ulong vmSoftDirty = vma != null && (vma.Flags & VmFlags.SoftDirty) != 0 ? 1UL << PmSoftDirty : 0;
        if (vma is { IsHugetlb: true } && !pmd.Present && !pmd.IsNone)
        {
            // pagemap_hugetlb_range: a non-present huge entry (migration entry, marker) reports only its uffd-wp
            // (pte_swp_uffd_wp_any), no PM_SWAP.
            return vmSoftDirty | (pmd.UffdWp && k.Era.Has(Eras.Feature.PagemapUffdWp) ? 1UL << PmUffdWp : 0);
        }
        huge |= pmd.IsMigration; // pagemap_pmd_range's is_swap_pmd case: a PMD migration entry (4.14+)
        Pte pte = huge ? pmd : mm.PeekPte(addr);
        if (pte.IsNone) return vmSoftDirty;
        long sub = huge ? (long)((addr & ~MmStruct.PmdMask) >> MmStruct.PageShift) : 0;
        long pfn = pte.Pfn + sub;
        ulong e = (pte.SoftDirty ? 1UL << PmSoftDirty : 0) | vmSoftDirty
            | (pte.UffdWp && k.Era.Has(Eras.Feature.PagemapUffdWp) ? 1UL << PmUffdWp : 0);
        long page;
        if (pte.Present)
        {
            e |= 1UL << PmPresent | (ulong)pfn;
            page = pfn == PhysMem.ZeroPfn || pte.Special ? -1 : pfn;
        }
        else
        {
            e |= 1UL << PmSwap | ((ulong)pte.SwapKind & 0x1f) | ((ulong)pfn << 5); // swp_offset + the page's offset in the PMD
            page = pte.IsMigration ? pfn : -1;
        }
        if (page >= 0)
        {
            ref var f = ref k.Mem[k.Mem.FolioOf(page)];
            if (!f.Has(PageFlags.Anon)) e |= 1UL << PmFile;
            if (k.Mem[page].MapCount + (huge ? k.Mem.EntireMapcountHolder(k.Mem.FolioOf(page)).RefCount : 0) == 1)
                e |= 1UL << PmMmapExclusive;
        }
        return e;
    }
}
