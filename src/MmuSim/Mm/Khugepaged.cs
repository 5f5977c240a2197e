using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>enum scan_result of mm/khugepaged.c: why a PMD range was (not) collapsed.</summary>
public enum ScanResult : byte
{
    Succeed,
    /// <summary>SCAN_PMD_NULL: no page table under the PMD (nothing was ever faulted in).</summary>
    PmdNull,
    /// <summary>SCAN_PMD_MAPPED: already a huge PMD (counts as collapsed).</summary>
    PmdMapped,
    ExceedNonePte,
    ExceedSwapPte,
    ExceedSharedPte,
    /// <summary>SCAN_PTE_NON_PRESENT: a migration or device entry.</summary>
    PteNonPresent,
    /// <summary>SCAN_PAGE_RO: no PTE in the range is writable (until 6.18 this refuses the collapse).</summary>
    PageRo,
    LackReferencedPage,
    /// <summary>SCAN_PAGE_NULL: a special mapping without a struct page.</summary>
    PageNull,
    /// <summary>SCAN_PAGE_COUNT: a page has references beyond its mappings (GUP pins, a pipe, swap cache).</summary>
    PageCount,
    /// <summary>SCAN_PAGE_ANON: not an anonymous page (KSM pages are refused here too in the model).</summary>
    PageAnon,
    AllocHugePageFail,
    /// <summary>SCAN_PTE_MAPPED_HUGEPAGE: the range's page-cache folio is already a THP, mapped by PTEs here (or the
    /// table could not be retracted): collapse_pte_mapped_thp maps it by a PMD.</summary>
    PteMappedHugepage,
    /// <summary>SCAN_PTE_UFFD_WP: a VMA registered for uffd-wp keeps its page table (its PTEs carry the markers).</summary>
    PteUffdWp,
    /// <summary>SCAN_PAGE_COMPOUND: a large folio that is not this range's THP.</summary>
    PageCompound,
    /// <summary>SCAN_VMA_CHECK: the VMA no longer covers the range or may not be collapsed.</summary>
    VmaCheck,
    Fail,
}

/// <summary>
/// mm/khugepaged.c: collapse of 512 PTE-mapped anonymous pages into one PMD-mapped THP, for MADV_COLLAPSE (6.1,
/// <see cref="MadviseCollapse"/>) and for khugepaged's scan (<see cref="KhugepagedScanPmd"/>, 2.6.38). The two share
/// hpage_collapse_scan_pmd and collapse_huge_page; khugepaged alone applies the max_ptes_none/swap/shared limits
/// (defaults 511, 64, 256) and wants referenced pages. The only notifier is collapse_huge_page's start/end CLEAR over
/// the 2 MiB range around pmdp_collapse_flush (plain end: 3.19-6.5 it calls invalidate_range; 6.6+ the TLB flush calls
/// arch_invalidate_secondary_tlbs). Shmem collapse (collapse_file, retract_page_tables,
/// collapse_pte_mapped_thp), and MADV_COLLAPSE of a shmem VMA (6.1), are in KhugepagedFile.cs.
/// </summary>
public static partial class Khugepaged
{
    /// <summary>khugepaged_max_ptes_none / max_ptes_swap / max_ptes_shared defaults (HPAGE_PMD_NR - 1, /8, /2).</summary>
    public const int MaxPtesNone = PhysMem.HugePages - 1, MaxPtesSwap = PhysMem.HugePages / 8, MaxPtesShared = PhysMem.HugePages / 2;

    /// <summary>
    /// madvise(MADV_COLLAPSE) → madvise_walk_vmas → madvise_collapse per VMA: every whole, aligned 2 MiB range of the
    /// advice range inside one VMA is collapsed (or already PMD-mapped). Returns 0, or madvise_collapse_errno of the
    /// last failure: -ENOMEM (no huge page), -EAGAIN (a page with extra references), -EINVAL (anything else: not a
    /// THP-capable VMA, an empty PMD, no writable PTE); a hole in the range gives -ENOMEM after the rest is done.
    /// Before 6.1 the advice is unknown (-EINVAL).
    /// </summary>
    public static async ValueTask<int> MadviseCollapse(MmStruct mm, ulong start, ulong end)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("madvise_collapse");
        if (!k.Era.Has(Feature.MadvCollapse)) return Errno.EINVAL;
        // madvise_walk_vmas under mmap_lock (read): the VMAs' clipped ranges, taken before the lock is dropped.
        var ranges = new List<(ulong S, ulong E, bool File)>();
        int unmapped = 0;
        await mm.MmapLock.ReadLock();
        try
        {
            ulong covered = start;
            foreach (var v in mm.Vmas)
            {
                if (v.End <= start || v.Start >= end) continue;
                if (v.Start > covered) unmapped = Errno.ENOMEM;
                if (!CollapseAllowed(k, v, khugepaged: false) && !ShmemMadvCollapseAllowed(k, v)) return Errno.EINVAL; // hugepage_vma_check
                ranges.Add((Math.Max(start, v.Start), Math.Min(end, v.End), v.File != null));
                covered = Math.Min(end, v.End);
            }
            if (covered < end) unmapped = Errno.ENOMEM;
        }
        finally { await mm.MmapLock.ReadUnlock(); }

        foreach (var (s, e, isFile) in ranges)
        {
            ulong hstart = (s + MmStruct.PmdSize - 1) & MmStruct.PmdMask, hend = e & MmStruct.PmdMask;
            int thps = 0, wanted = 0;
            var lastFail = ScanResult.Succeed;
            for (ulong addr = hstart; addr < hend; addr += MmStruct.PmdSize)
            {
                wanted++;
                var r = isFile ? await MadviseCollapseFile(mm, addr) : await CollapseOne(mm, addr, khugepaged: false);
                if (r is ScanResult.Succeed or ScanResult.PmdMapped) { thps++; continue; }
                lastFail = r;
                // madvise_collapse continues past the whitelisted results and stops at any other.
                if (r is not (ScanResult.PmdNull or ScanResult.PteNonPresent or ScanResult.PageRo or ScanResult.LackReferencedPage
                    or ScanResult.PageNull or ScanResult.PageCount or ScanResult.PteUffdWp or ScanResult.PageCompound)) break;
            }
            if (thps != wanted) return CollapseErrno(lastFail);
        }
        return unmapped;
    }

    /// <summary>
    /// khugepaged_scan_mm_slot for the one PMD range at <paramref name="haddr"/> (khugepaged's own limits, VM_HUGEPAGE
    /// required as with enabled=madvise). True when the range is PMD-mapped afterwards.
    /// </summary>
    public static async ValueTask<ScanResult> KhugepagedScanPmd(MmStruct mm, ulong haddr)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("khugepaged_scan_mm_slot");
        if (!k.Era.Has(Feature.Thp)) return ScanResult.VmaCheck;
        await KhugepagedCollapsePteMappedThps(mm);
        haddr &= MmStruct.PmdMask;
        // Which branch of khugepaged_scan_mm_slot: read without a point (both revalidate under mmap_lock), so that
        // the anonymous path's interleavings are those it always had.
        if (mm.FindVma(haddr) is { File.IsShmem: true } && await KhugepagedScanShmem(mm, haddr) is { } shmem) return shmem;
        return await CollapseOne(mm, haddr, khugepaged: true);
    }

    /// <summary>madvise_collapse_errno.</summary>
    static int CollapseErrno(ScanResult r) => r switch
    {
        ScanResult.AllocHugePageFail => Errno.ENOMEM,
        ScanResult.ExceedNonePte => Errno.EBUSY,
        ScanResult.PageCount => Errno.EAGAIN,
        _ => Errno.EINVAL,
    };

    /// <summary>
    /// hugepage_vma_check for an anonymous VMA: an era with THP, not VM_NOHUGEPAGE, private anonymous (shmem is
    /// collapse_file's, KhugepagedFile.cs); khugepaged also wants VM_HUGEPAGE (the model's THP policy is enabled=madvise).
    /// </summary>
    static bool CollapseAllowed(Kernel k, Vma v, bool khugepaged) =>
        k.Era.Has(Feature.Thp) && (v.Flags & VmFlags.NoHugePage) == 0 && !v.Shared && v.File == null &&
        (!khugepaged || (v.Flags & VmFlags.HugePage) != 0);

    /// <summary>hugepage_vma_revalidate: the VMA at <paramref name="haddr"/> covers the whole 2 MiB and may be collapsed.</summary>
    static Vma? Revalidate(MmStruct mm, ulong haddr, bool khugepaged)
    {
        var v = mm.FindVma(haddr);
        return v != null && v.Start <= haddr && haddr + MmStruct.PmdSize <= v.End && CollapseAllowed(mm.Kernel, v, khugepaged) ? v : null;
    }

    /// <summary>One PMD range: scan under mmap_lock (read), then collapse_huge_page (which takes it for write).</summary>
    static async ValueTask<ScanResult> CollapseOne(MmStruct mm, ulong haddr, bool khugepaged)
    {
        ScanResult r;
        int unmapped;
        await mm.MmapLock.ReadLock();
        try
        {
            var vma = Revalidate(mm, haddr, khugepaged);
            if (vma == null) return ScanResult.VmaCheck;
            (r, unmapped) = await HpageCollapseScanPmd(vma, haddr, khugepaged, isolate: false);
        }
        finally { await mm.MmapLock.ReadUnlock(); }
        return r == ScanResult.Succeed ? await CollapseHugePage(mm, haddr, khugepaged, unmapped) : r;
    }

    /// <summary>
    /// hpage_collapse_scan_pmd (and, with <paramref name="isolate"/>, __collapse_huge_page_isolate's checks on the
    /// detached table): walk the 512 PTEs under the PTL. None or zero-page PTEs and swap entries are allowed (within
    /// khugepaged's limits); any other non-present entry, a special mapping, a non-anon or KSM page, or a page whose
    /// refcount is not exactly its mapcount (is_refcount_suitable: a GUP pin, a pipe reference) refuses; at least one
    /// PTE must be writable. Returns the result and how many swap entries need swapping in.
    /// </summary>
    static async ValueTask<(ScanResult, int)> HpageCollapseScanPmd(Vma vma, ulong haddr, bool khugepaged, bool isolate, int table = 0)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter(isolate ? "__collapse_huge_page_isolate" : "hpage_collapse_scan_pmd");
        int t = table;
        if (!isolate)
        {
            var pmd = await mm.PmdpGet(haddr); // find_pmd_or_thp_or_none
            if (pmd.IsNone || !pmd.Present) return (ScanResult.PmdNull, 0);
            if (pmd.Huge) return (ScanResult.PmdMapped, 0);
            t = pmd.TableId;
            await mm.LockPtl(t);
        }
        int noneOrZero = 0, unmapped = 0, shared = 0, referenced = 0;
        bool writable = false;
        var result = ScanResult.Succeed;
        for (ulong a = haddr; a < haddr + MmStruct.PmdSize; a += MmStruct.PageSize)
        {
            var pte = await mm.PtepGet(t, a);
            if (pte.IsNone || (pte.Present && pte.Pfn == PhysMem.ZeroPfn))
            {
                if (!khugepaged || ++noneOrZero <= MaxPtesNone) continue;
                result = ScanResult.ExceedNonePte;
                break;
            }
            if (!pte.Present)
            {
                if (pte.SwapKind == SwapType.Swap && !isolate)
                {
                    if (++unmapped <= MaxPtesSwap || !khugepaged) continue;
                    result = ScanResult.ExceedSwapPte;
                    break;
                }
                result = ScanResult.PteNonPresent;
                break;
            }
            if (pte.Writable) writable = true;
            if (pte.Special) { result = ScanResult.PageNull; break; }
            long head = k.Mem.FolioOf(pte.Pfn);
            ref var f = ref k.Mem[head];
            if (!f.Has(PageFlags.Anon) || f.Has(PageFlags.Ksm)) { result = ScanResult.PageAnon; break; }
            int maps = k.Mem[pte.Pfn].MapCount + (k.Mem.IsLarge(head) ? k.Mem.EntireMapcountHolder(head).RefCount : 0);
            if (maps > 1 && ++shared > MaxPtesShared && khugepaged) { result = ScanResult.ExceedSharedPte; break; }
            if (!IsRefcountSuitable(k, head)) { result = ScanResult.PageCount; break; }
            if (pte.Accessed) referenced++;
        }
        if (!isolate) await mm.UnlockPtl(t);
        if (result != ScanResult.Succeed) return (result, unmapped);
        if (!writable) return (ScanResult.PageRo, unmapped);
        if (khugepaged && (referenced == 0 || (unmapped > 0 && referenced < PhysMem.HugePages / 2))) return (ScanResult.LackReferencedPage, unmapped);
        return (ScanResult.Succeed, unmapped);
    }

    /// <summary>is_refcount_suitable: page_count == total mapcount (+ the swap cache's references).</summary>
    static bool IsRefcountSuitable(Kernel k, long head)
    {
        ref var f = ref k.Mem[head];
        int expected = k.Mem.FolioMapCount(head);
        if (f.Has(PageFlags.Swapcache)) expected += k.Mem.FolioNr(head);
        return f.RefCount == expected;
    }

    /// <summary>
    /// collapse_huge_page: allocate the THP, take mmap_lock for write and revalidate, swap in what the scan found
    /// swapped out (__collapse_huge_page_swapin), then with the anon_vma locked for write: start CLEAR over the
    /// 2 MiB, pmdp_collapse_flush under the PMD lock (the PMD is cleared, the TLB range flushed), end, and
    /// __collapse_huge_page_isolate under the PTL of the detached table. On failure the table is put back
    /// (pmd_populate). Otherwise __collapse_huge_page_copy copies every page (none/zero PTEs give zeroes), clears
    /// the old PTEs and drops their mappings and references (a page still mapped by a fork child lives on), and
    /// set_pmd_at maps the new exclusive folio dirty, writable as the VMA allows.
    /// </summary>
    static async ValueTask<ScanResult> CollapseHugePage(MmStruct mm, ulong haddr, bool khugepaged, int unmapped)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("collapse_huge_page");
        await k.S.Point(PointKind.Alloc, haddr);
        long head = k.Mem.AllocHuge();
        if (head < 0) return ScanResult.AllocHugePageFail;
        await mm.MmapLock.WriteLock();
        try
        {
            var vma = Revalidate(mm, haddr, khugepaged);
            if (vma == null) { Folio.Put(k, head); return ScanResult.VmaCheck; }
            if (unmapped > 0 && !await SwapinRange(vma, haddr)) { Folio.Put(k, head); return ScanResult.Fail; }
            var peek = mm.PeekPmd(haddr);
            if (!peek.Present || peek.Huge) { Folio.Put(k, head); return peek.Huge ? ScanResult.PmdMapped : ScanResult.PmdNull; }

            var anon = mm.AnonVmaPrepare(vma);
            await anon.Lock.WriteLock();
            var range = new MmuNotifierRange(mm, haddr, haddr + MmStruct.PmdSize, MmuNotifyEvent.Clear);
            await mm.Notifiers.InvalidateRangeStart(range);
            await mm.LockPmd(haddr);
            var pmd = await mm.PmdpGet(haddr);
            await mm.SetPmd(haddr, Pte.None); // pmdp_collapse_flush: pmdp_huge_get_and_clear + flush_tlb_range
            await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
            await mm.UnlockPmd(haddr);
            await mm.Notifiers.InvalidateRangeEnd(range);

            int t = pmd.TableId;
            await mm.LockPtl(t);
            var (r, _) = await HpageCollapseScanPmd(vma, haddr, khugepaged, isolate: true, table: t);
            await mm.UnlockPtl(t);
            if (r != ScanResult.Succeed)
            {
                await mm.LockPmd(haddr);
                await mm.SetPmd(haddr, pmd); // pmd_populate: the page table goes back
                await mm.UnlockPmd(haddr);
                await anon.Lock.WriteUnlock();
                Folio.Put(k, head);
                return r;
            }
            await anon.Lock.WriteUnlock();
            await CollapseHugePageCopy(vma, t, haddr, head);
            k.PageTables.FreeTable(t); // the detached table (the kernel deposits it for a later split)

            Folio.AddNewAnonRmap(k, head, vma, haddr, huge: true);
            await mm.LockPmd(haddr);
            await mm.SetPmd(haddr, Pte.Make(head, writable: vma.Writable, dirty: true, huge: true));
            await mm.UnlockPmd(haddr);
            return ScanResult.Succeed;
        }
        finally { await mm.MmapLock.WriteUnlock(); }
    }

    /// <summary>__collapse_huge_page_swapin: do_swap_page for every swap entry of the range. Caller holds mmap_lock.</summary>
    static async ValueTask<bool> SwapinRange(Vma vma, ulong haddr)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("__collapse_huge_page_swapin");
        for (ulong a = haddr; a < haddr + MmStruct.PmdSize; a += MmStruct.PageSize)
        {
            var p = mm.PeekPte(a);
            if (p.Present || p.IsNone || p.SwapKind != SwapType.Swap) continue;
            if (await Memory.HandleMmFault(mm, a, FaultFlags.None) is VmFault.Oom or VmFault.SigSegv or VmFault.SigBus) return false;
        }
        return true;
    }

    /// <summary>
    /// __collapse_huge_page_copy: copy each page into the new folio (zeroes for none and zero-page PTEs), then, under
    /// the PTL, clear the old PTEs and drop each page's mapping and the PTE's reference (release_pte_folio / free_page_and_swap_cache).
    /// </summary>
    static async ValueTask CollapseHugePageCopy(Vma vma, int t, ulong haddr, long head)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("__collapse_huge_page_copy");
        await mm.LockPtl(t);
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            ulong a = haddr + ((ulong)i << MmStruct.PageShift);
            var pte = await mm.PtepGetAndClear(t, a);
            bool page = pte.Present && !pte.Special && pte.Pfn != PhysMem.ZeroPfn;
            k.Mem[head + i].Contents = page ? k.Mem[pte.Pfn].Contents : 0;
            k.S.Charge(page ? CostKind.CopyPage : CostKind.ZeroPage);
            if (!page) continue;
            Folio.RemoveRmap(k, pte.Pfn, mm);
            Folio.Put(k, pte.Pfn);
        }
        await mm.UnlockPtl(t);
    }
}
