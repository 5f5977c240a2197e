using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// mm/khugepaged.c for shmem (collapse_shmem in 4.8, collapse_file from 5.4): khugepaged_scan_file, collapse_file,
/// retract_page_tables and, from 5.4, collapse_pte_mapped_thp with the mm_slot's pte_mapped_thp[] list.
/// </summary>
/// <remarks>
/// <para><b>The huge page-cache folio.</b> collapse_file replaces the 512 cached small pages of an aligned index range
/// with one compound folio: every index maps to its subpage (head + i), and the page cache holds 512 references on the
/// head, one per index, as the kernel's folio_ref_add(HPAGE_PMD_NR) does. Faults then map subpages with PTEs.</para>
/// <para><b>Where the notifiers are.</b> collapse_file unmaps each old page that is still mapped with
/// unmap_mapping_pages (CLEAR start/end through zap_page_range_single). retract_page_tables and collapse_pte_mapped_thp
/// clear the PMD with pmdp_collapse_flush and free the page table; only from 6.1 (<see cref="Feature.CollapseFileNotifies"/>,
/// f268f6cf875f) is that inside a CLEAR start/end. Before, retract_page_tables only dropped empty tables, but
/// collapse_pte_mapped_thp (5.4, 27e1f8273113) dropped tables whose PTEs mapped the THP's subpages: a secondary MMU
/// kept translations the primary no longer had (CVE-2022-48991, catalog row e6).</para>
/// <para><b>MADV_COLLAPSE</b> of a shmem range (6.1, <see cref="Feature.MadvCollapseFile"/>) runs the same scan and
/// collapse_file without khugepaged's limits, leaves the caller's own range to collapse_pte_mapped_thp with
/// install_pmd, which maps the folio by a PMD there (set_huge_pmd), and retracts the other mappings only from 6.6
/// (<see cref="Feature.RetractAllMappings"/>). A later fault on a none PMD maps the THP by a PMD (do_set_pmd,
/// <see cref="HugeMemory.DoSetPmd"/>); a fault where the table is still there maps the subpage by a PTE.</para>
/// <para><b>6.6</b> (<see cref="Feature.RetractLockless"/>, Hugh Dickins' series): retract_page_tables takes no
/// mmap_lock, collapse_pte_mapped_thp runs under mmap_read_lock and clears the PTEs inside its CLEAR range, and the
/// pte_mapped_thp[] list is gone: khugepaged calls collapse_pte_mapped_thp at once on a PTE-mapped THP. Faults that
/// found a table before sleeping recheck it under its PTL (<see cref="MmStruct.PteOffsetMapLock"/>).</para>
/// <para>Not modelled: shmem_enabled is "advise": khugepaged needs VM_HUGEPAGE. A swapped-out index is read straight into the new
/// folio (the kernel swaps it in first).</para>
/// </remarks>
public static partial class Khugepaged
{
    /// <summary>MAX_PTE_MAPPED_THP: how many ranges an mm_slot remembers for collapse_pte_mapped_thp.</summary>
    public const int MaxPteMappedThp = 8;

    /// <summary>
    /// hugepage_vma_check for a shmem VMA (shmem_huge_enabled with shmem_enabled=advise, transhuge_vma_suitable):
    /// a shmem or memfd file (not hugetlbfs, not guest_memfd), VM_HUGEPAGE and not VM_NOHUGEPAGE, and the VMA's
    /// address and file offset congruent modulo 2 MiB so a PMD can map the folio.
    /// </summary>
    static bool ShmemCollapseAllowed(Kernel k, Vma v) =>
        k.Era.Has(Feature.KhugepagedShmemCollapse) && HugeMemory.ShmemThpVma(v) && (v.Flags & VmFlags.HugePage) != 0;

    /// <summary>
    /// hugepage_vma_check for MADV_COLLAPSE of a shmem VMA (6.1+): shmem_is_huge with shmem_huge_force, so neither
    /// VM_HUGEPAGE nor shmem_enabled matter, only VM_NOHUGEPAGE and transhuge_vma_suitable's alignment.
    /// </summary>
    static bool ShmemMadvCollapseAllowed(Kernel k, Vma v) => k.Era.Has(Feature.MadvCollapseFile) && HugeMemory.ShmemThpVma(v);

    /// <summary>
    /// madvise_collapse's file branch for the PMD range at <paramref name="haddr"/> (34488399fa08, 6.1): with the file
    /// pinned and mmap_lock dropped, hpage_collapse_scan_file without khugepaged's limits and collapse_file; then, as
    /// for SCAN_PTE_MAPPED_HUGEPAGE (an existing THP, or every collapse from 6.6), collapse_pte_mapped_thp with
    /// install_pmd under mmap_lock, which maps the folio by a PMD here (58ac9a8993a1).
    /// </summary>
    static async ValueTask<ScanResult> MadviseCollapseFile(MmStruct mm, ulong haddr)
    {
        var k = mm.Kernel;
        AddressSpace file;
        ulong start;
        await mm.MmapLock.ReadLock();
        try
        {
            var v = mm.FindVma(haddr); // hugepage_vma_revalidate
            if (v == null || v.Start > haddr || haddr + MmStruct.PmdSize > v.End || !ShmemMadvCollapseAllowed(k, v)) return ScanResult.VmaCheck;
            file = v.File!;
            start = v.IndexOf(haddr);
        }
        finally { await mm.MmapLock.ReadUnlock(); }
        var r = await HpageCollapseScanFile(k, file, start, khugepaged: false, target: (mm, haddr));
        if (r is not (ScanResult.Succeed or ScanResult.PteMappedHugepage)) return r;
        bool read = k.Era.Has(Feature.RetractLockless); // 6.1 takes it for write; 6.6+ for read (its collapse_pte_mapped_thp needs no more)
        if (read) await mm.MmapLock.ReadLock();
        else await mm.MmapLock.WriteLock();
        try
        {
            if (mm.Exited) return ScanResult.Fail;
            // 6.1-6.5: a fresh collapse went through retract_page_tables, where a target with no page table is
            // find_pmd_or_thp_or_none's failure (SCAN_PMD_NULL); 6.6+ always goes on to install the PMD.
            if (r == ScanResult.Succeed && !k.Era.Has(Feature.RetractAllMappings) && (await mm.PmdpGet(haddr)).IsNone) return ScanResult.PmdNull;
            return await CollapsePteMappedThp(mm, haddr, installPmd: true);
        }
        finally
        {
            if (read) await mm.MmapLock.ReadUnlock();
            else await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>
    /// khugepaged_scan_mm_slot's file branch for the PMD range at <paramref name="haddr"/> of a shmem VMA: with the
    /// file pinned, mmap_lock is dropped and khugepaged_scan_file runs on the aligned index range. Null when the VMA
    /// there is not a shmem one (the anonymous path applies).
    /// </summary>
    static async ValueTask<ScanResult?> KhugepagedScanShmem(MmStruct mm, ulong haddr)
    {
        AddressSpace file;
        ulong start;
        await mm.MmapLock.ReadLock();
        try
        {
            var v = mm.FindVma(haddr);
            if (v is not { File.IsShmem: true }) return null;
            if (v.Start > haddr || haddr + MmStruct.PmdSize > v.End || !ShmemCollapseAllowed(mm.Kernel, v)) return ScanResult.VmaCheck;
            file = v.File!;
            start = v.IndexOf(haddr);
        }
        finally { await mm.MmapLock.ReadUnlock(); }
        var r = await HpageCollapseScanFile(mm.Kernel, file, start, khugepaged: true, target: null);
        if (r != ScanResult.PteMappedHugepage) return r;
        // 6.6+: "Call collapse_pte_mapped_thp() directly in this case" (before, the address was noted in the mm_slot).
        await mm.MmapLock.ReadLock();
        try
        {
            if (mm.Exited) return ScanResult.Fail; // hpage_collapse_test_exit
            return await CollapsePteMappedThp(mm, haddr);
        }
        finally { await mm.MmapLock.ReadUnlock(); }
    }

    /// <summary>
    /// hpage_collapse_scan_file (khugepaged_scan_file before 6.1): look at the 512 cache entries without locks. A large
    /// folio already there is, for khugepaged before 6.6, taken as collapsed; otherwise it is SCAN_PTE_MAPPED_HUGEPAGE
    /// when it is this range's THP (SCAN_PAGE_COMPOUND otherwise), which khugepaged hands to collapse_pte_mapped_thp. A page with references beyond the cache's and its
    /// mappings is SCAN_PAGE_COUNT; khugepaged alone refuses too many holes (SCAN_EXCEED_NONE_PTE) or swapped-out pages
    /// (SCAN_EXCEED_SWAP_PTE). Otherwise collapse_file; <paramref name="target"/> is MADV_COLLAPSE's mm.
    /// </summary>
    static async ValueTask<ScanResult> HpageCollapseScanFile(Kernel k, AddressSpace file, ulong start, bool khugepaged, (MmStruct Mm, ulong Addr)? target)
    {
        using var _ = k.S.Current.Enter(khugepaged ? "khugepaged_scan_file" : "hpage_collapse_scan_file");
        int present = 0, swap = 0;
        for (ulong i = start; i < start + PhysMem.HugePages; i++)
        {
            await k.S.Point(PointKind.PteRead, i); // xas_for_each under rcu_read_lock
            if (file.Backing.ContainsKey(i))
            {
                if (++swap > MaxPtesSwap && khugepaged) return ScanResult.ExceedSwapPte;
                continue;
            }
            if (!file.Pages.TryGetValue(i, out long pfn)) continue;
            long head = k.Mem.FolioOf(pfn);
            if (k.Mem.IsHuge(head))
                return khugepaged && !k.Era.Has(Feature.RetractLockless) ? ScanResult.PmdMapped
                    : k.Mem[head].Index == start ? ScanResult.PteMappedHugepage : ScanResult.PageCompound;
            if (k.Mem[head].RefCount != 1 + k.Mem[head].MapCount) return ScanResult.PageCount;
            present++;
        }
        if (khugepaged && present < PhysMem.HugePages - MaxPtesNone) return ScanResult.ExceedNonePte;
        return await CollapseFile(k, file, start, target);
    }

    /// <summary>
    /// collapse_file for shmem: allocate the huge folio and keep it locked throughout; lock and isolate every cached
    /// page of the range (a page locked by someone else is SCAN_PAGE_LOCK), unmap_mapping_pages it if mapped, and
    /// require exactly the cache's reference and ours (else SCAN_PAGE_COUNT); then, in one step, store the subpages in
    /// the cache, copy the old contents (zeroes for holes), free the old pages and mark the folio dirty; then
    /// retract_page_tables while the new folio is still locked, and unlock it. On failure every old page is put back.
    /// </summary>
    static async ValueTask<ScanResult> CollapseFile(Kernel k, AddressSpace file, ulong start, (MmStruct Mm, ulong Addr)? target)
    {
        using var _ = k.S.Current.Enter("collapse_file");
        await k.S.Point(PointKind.Alloc, start);
        long head = k.Mem.AllocHuge();
        if (head < 0) return ScanResult.AllocHugePageFail;
        FolioLock.TryLockNew(k, head); // __folio_set_locked on the new folio
        var old = new long[PhysMem.HugePages];
        Array.Fill(old, -1L);
        var result = ScanResult.Succeed;
        for (int i = 0; i < PhysMem.HugePages && result == ScanResult.Succeed; i++)
        {
            ulong index = start + (ulong)i;
            await k.S.Point(PointKind.PteRead, index); // xas_load
            if (!file.Pages.TryGetValue(index, out long pfn)) continue; // a hole, or swapped out
            if (k.Mem.IsHuge(k.Mem.FolioOf(pfn))) { result = ScanResult.Fail; break; } // SCAN_PAGE_COMPOUND
            if (!await FolioLock.TryLock(k, pfn)) { result = ScanResult.Fail; break; } // SCAN_PAGE_LOCK
            Folio.Get(k, pfn);
            old[i] = pfn;
            if (!file.Pages.TryGetValue(index, out long now) || now != pfn) { result = ScanResult.Fail; break; } // SCAN_TRUNCATED
            if (k.Mem.FolioMapCount(pfn) > 0) await UnmapMappingPage(k, file, index, pfn);
            await k.S.Point(PointKind.Counter, (ulong)pfn); // page_ref_freeze(page, 3): cache + ours (+ LRU isolation)
            if (k.Mem[pfn].RefCount != 2 || k.Mem[pfn].MapCount != 0) result = ScanResult.PageCount;
        }
        if (result != ScanResult.Succeed)
        {
            foreach (long p in old)
            {
                if (p < 0) continue;
                await FolioLock.Unlock(k, p);
                Folio.Put(k, p);
            }
            await FolioLock.Unlock(k, head);
            Folio.Put(k, head);
            return result;
        }

        // The commit: xas_store of the new folio at every index, the copy, and the old pages' release.
        await k.S.Point(PointKind.Free, start);
        file.StoreHugeFolio(k, head, start); // one reference per cache index
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            ulong index = start + (ulong)i;
            ref var sub = ref k.Mem[head + i];
            if (old[i] >= 0)
            {
                sub.Contents = k.Mem[old[i]].Contents;
                k.S.Charge(CostKind.CopyPage);
            }
            else if (file.Backing.Remove(index, out ulong contents))
            {
                sub.Contents = contents;
                k.S.Charge(CostKind.CopyPage);
            }
        }
        Folio.MarkDirty(k, head); // shmem: the folio is dirty (no backing store copy of it yet)
        foreach (long p in old)
        {
            if (p < 0) continue;
            k.Mem[p].AnonRoot = 0; // folio->mapping = NULL
            await FolioLock.Unlock(k, p);
            Folio.Put(k, p); // the cache's reference
            Folio.Put(k, p); // ours
        }
        k.Stats.Inc(Stat.ThpCollapseFile);
        await RetractPageTables(k, file, start, target);
        await FolioLock.Unlock(k, head);
        return ScanResult.Succeed;
    }

    /// <summary>
    /// unmap_mapping_pages(mapping, index, 1, even_cows = false): zap the page in every VMA that maps it (a CLEAR
    /// start/end each). A private mapping whose PTE holds an anonymous copy instead is left alone; the kernel would still
    /// bracket its range with start/end (zap_details.zap_mapping skips the copy), which the model omits.
    /// </summary>
    static async ValueTask UnmapMappingPage(Kernel k, AddressSpace file, ulong index, long pfn)
    {
        using var _ = k.S.Current.Enter("unmap_mapping_pages");
        foreach (var vma in file.Mappings.ToArray())
        {
            if (vma.AddressOf(index) is not { } addr) continue;
            if (!vma.Shared && vma.Mm.PeekPte(addr).Pfn != pfn) continue;
            await Memory.ZapPageRangeSingle(vma, addr, addr + MmStruct.PageSize);
        }
    }

    /// <summary>
    /// retract_page_tables: for every VMA of i_mmap that maps the whole aligned range with a page table under it and
    /// has no anon_vma (a written MAP_PRIVATE mapping is skipped) nor, from 5.19, uffd-wp registration (its table keeps
    /// the markers), free the (empty) table. Before 6.6 that needs the mm's mmap_lock, taken with a trylock (the page
    /// lock is held, and faults take the two the other way round): on success collapse_and_free_pmd, else (5.4+)
    /// remember the range for collapse_pte_mapped_thp; for MADV_COLLAPSE (<paramref name="target"/> set) the caller's
    /// own range is left to collapse_pte_mapped_thp, and before 6.6 so are all the others ("it's not MADV_COLLAPSE's
    /// job to collapse other mappings - let khugepaged take care of them later"). From 6.6
    /// (<see cref="Feature.RetractLockless"/>) no mmap_lock at all: every mapping, the caller's too, inside a CLEAR
    /// range, with the anon_vma and uffd-wp checks repeated under the PMD lock and the table's PTL (a racing
    /// UFFDIO_COPY or COW fault may have set them since).
    /// </summary>
    static async ValueTask RetractPageTables(Kernel k, AddressSpace file, ulong pgoff, (MmStruct Mm, ulong Addr)? target)
    {
        using var _ = k.S.Current.Enter("retract_page_tables");
        bool lockless = k.Era.Has(Feature.RetractLockless);
        if (target != null && !k.Era.Has(Feature.RetractAllMappings)) return;
        foreach (var vma in file.Mappings.ToArray())
        {
            if (vma.AnonVma != null) continue;
            if (UffdWpKeepsTable(k, vma)) continue;
            if (vma.AddressOf(pgoff) is not { } addr || (addr & ~MmStruct.PmdMask) != 0 || vma.End < addr + MmStruct.PmdSize) continue;
            if (!lockless && target is { } t && t.Mm == vma.Mm && t.Addr == addr) continue; // is_target
            var mm = vma.Mm;
            var pmd = await mm.PmdpGet(addr); // mm_find_pmd / find_pmd_or_thp_or_none
            if (!pmd.Present || pmd.Huge) continue;
            if (lockless)
            {
                if (mm.Exited) continue; // hpage_collapse_test_exit
                await CollapseAndFreePmd(vma, addr, expectEmpty: true, recheck: () => vma.AnonVma == null && !UffdWpKeepsTable(k, vma));
            }
            else if (await mm.MmapLock.TryWriteLock())
            {
                if (!mm.Exited) await CollapseAndFreePmd(vma, addr, expectEmpty: true);
                await mm.MmapLock.WriteUnlock();
            }
            else KhugepagedAddPteMappedThp(mm, addr);
        }
    }

    /// <summary>userfaultfd_wp(vma) where shmem has uffd-wp (5.19+): the table may hold PTE markers, so it stays.</summary>
    static bool UffdWpKeepsTable(Kernel k, Vma vma) => (vma.Flags & VmFlags.UffdWp) != 0 && k.Era.Has(Feature.UffdWpShmem);

    /// <summary>khugepaged_add_pte_mapped_thp (5.4+): remember the range for the next pass, if there is room.</summary>
    static void KhugepagedAddPteMappedThp(MmStruct mm, ulong haddr)
    {
        if (!mm.Kernel.Era.Has(Feature.CollapsePteMappedThp)) return; // 4.8-5.3: "try again later" means never
        var list = mm.PteMappedThp ??= new List<ulong>(MaxPteMappedThp);
        if (list.Count < MaxPteMappedThp) list.Add(haddr);
    }

    /// <summary>
    /// collapse_and_free_pmd (the 5.x open-coded step 4 of collapse_pte_mapped_thp and retract_page_tables' body):
    /// pmdp_collapse_flush under the PMD lock (the PMD cleared, the TLB range flushed), then pte_free. From 6.1 inside a
    /// CLEAR start/end over the 2 MiB (<see cref="Feature.CollapseFileNotifies"/>), or inside <paramref name="open"/>,
    /// a range the caller started. Before 6.6 the caller holds mmap_lock for write; from 6.6 (lockless retraction) the
    /// table's PTL is taken too, and <paramref name="recheck"/> runs under both locks: false leaves the table. Returns
    /// whether the PMD was cleared.
    /// </summary>
    static async ValueTask<bool> CollapseAndFreePmd(Vma vma, ulong haddr, bool expectEmpty, Func<bool>? recheck = null, MmuNotifierRange? open = null)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("collapse_and_free_pmd");
        bool notify = open == null && k.Era.Has(Feature.CollapseFileNotifies) && !k.Mutated(Mutation.CollapseAndFreePmdNoNotify);
        var range = open ?? new MmuNotifierRange(mm, haddr, haddr + MmStruct.PmdSize, MmuNotifyEvent.Clear);
        if (notify) await mm.Notifiers.InvalidateRangeStart(range);
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        int ptl = k.Era.Has(Feature.RetractLockless) && pmd.Present && !pmd.Huge ? pmd.TableId : 0;
        if (ptl != 0) await mm.LockPtl(ptl); // spin_lock_nested(ptl, SINGLE_DEPTH_NESTING)
        bool clear = recheck?.Invoke() ?? true;
        if (clear)
        {
            await mm.SetPmd(haddr, Pte.None);
            await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
        }
        if (ptl != 0) await mm.UnlockPtl(ptl);
        await mm.UnlockPmd(haddr);
        if (notify || open != null) await mm.Notifiers.InvalidateRangeEnd(range);
        if (clear && pmd.Present && !pmd.Huge)
        {
            int t = pmd.TableId;
            if (expectEmpty)
                for (int i = 0; i < PhysMem.HugePages; i++)
                    if (k.PageTables.Entry(t, i) != 0)
                        throw new ModelException($"retract_page_tables at 0x{haddr:x} of {mm}: the page table is not empty (PTE {i})");
            k.PageTables.FreeTable(t); // pte_free (mm_dec_nr_ptes); 6.6+ pte_free_defer: PteOffsetMapLock's recheck
        }
        return clear;
    }

    /// <summary>
    /// khugepaged_collapse_pte_mapped_thps (5.4+), at the start of each pass over an mm: with mmap_lock taken by trylock
    /// (kept for a later pass otherwise), collapse_pte_mapped_thp every remembered range, then forget them.
    /// </summary>
    static async ValueTask KhugepagedCollapsePteMappedThps(MmStruct mm)
    {
        if (mm.PteMappedThp is not { Count: > 0 } list) return;
        using var _ = mm.Kernel.S.Current.Enter("khugepaged_collapse_pte_mapped_thps");
        if (!await mm.MmapLock.TryWriteLock()) return;
        try
        {
            if (!mm.Exited)
                foreach (var haddr in list) await CollapsePteMappedThp(mm, haddr);
            list.Clear();
        }
        finally { await mm.MmapLock.WriteUnlock(); }
    }

    /// <summary>
    /// collapse_pte_mapped_thp: if the VMA still covers the range and the file's folio at its first index is a THP head,
    /// lock it; step 1, under the PTL, check that every present PTE maps the matching subpage (a non-present one or
    /// another page aborts); step 2 removes those mappings from the rmap, step 3 drops their references, step 4
    /// collapse_and_free_pmd. Before 6.6 (mmap_lock held for write) step 2 runs under the same PTL and the PTEs go with
    /// the table: before 6.1 no secondary hears of it. From 6.6 (<see cref="Feature.RetractLockless"/>, mmap_lock held
    /// for read) the PTL is dropped for the CLEAR start after step 1, and step 2 rechecks and clears each PTE (pte_clear:
    /// "or a racing truncate may re-remove it"); a PTE gone non-present or replaced meanwhile aborts
    /// (SCAN_PTE_NON_PRESENT / SCAN_FAIL: flush_tlb_mm and the references of the PTEs already cleared are dropped).
    /// With <paramref name="installPmd"/> (MADV_COLLAPSE, 6.1+: 58ac9a8993a1) the folio is then mapped by a PMD
    /// (set_huge_pmd), also where the PMD was already none ("maybe_install_pmd"); a VMA registered for uffd-wp keeps its
    /// table (SCAN_PTE_UFFD_WP, 5.19+).
    /// </summary>
    static async ValueTask<ScanResult> CollapsePteMappedThp(MmStruct mm, ulong haddr, bool installPmd = false)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("collapse_pte_mapped_thp");
        var vma = mm.FindVma(haddr);
        if (vma == null || vma.File == null || vma.Start > haddr || vma.End < haddr + MmStruct.PmdSize) return ScanResult.VmaCheck;
        if (!k.Era.Has(Feature.KhugepagedShmemCollapse) || !vma.File.IsShmem || (vma.Flags & VmFlags.NoHugePage) != 0) return ScanResult.VmaCheck; // hugepage_vma_check(| VM_HUGEPAGE)
        if (UffdWpKeepsTable(k, vma)) return ScanResult.PteUffdWp; // "Keep pmd pgtable for uffd-wp"
        var file = vma.File;
        await k.S.Point(PointKind.PteRead, haddr); // find_lock_page
        if (!file.Pages.TryGetValue(vma.IndexOf(haddr), out long hpage)) return ScanResult.Fail;
        Folio.Get(k, hpage);
        await FolioLock.Lock(k, k.Mem.FolioOf(hpage));
        try
        {
            if (!k.Mem.IsHuge(hpage) || k.Mem.FolioOf(hpage) != hpage) return ScanResult.PageCompound; // !PageHead
            var pmd = await mm.PmdpGet(haddr); // find_pmd_or_thp_or_none
            if (pmd.Present && pmd.Huge) return ScanResult.PmdMapped;
            if (pmd.Present)
            {
                var r = await CollapsePteTable(vma, haddr, pmd.TableId, hpage);
                if (r != ScanResult.Succeed) return r;
                k.Stats.Inc(Stat.ThpPteMappedCollapsed);
            }
            else if (!installPmd) return ScanResult.PmdNull;
            if (!installPmd) return ScanResult.Succeed;
            // set_huge_pmd: folio_get, folio_add_file_rmap_pmd, set_pmd_at(vm_page_prot): no notifier, the PMD was none.
            Folio.Get(k, hpage);
            if (await HugeMemory.DoSetPmd(mm, vma, haddr, hpage, write: false)) return ScanResult.Succeed;
            Folio.Put(k, hpage);
            return ScanResult.Fail;
        }
        finally
        {
            await FolioLock.Unlock(k, k.Mem.FolioOf(hpage));
            Folio.Put(k, hpage);
        }
    }

    /// <summary>collapse_pte_mapped_thp's steps 1-4 on the PTE table <paramref name="t"/> that maps (part of) <paramref name="hpage"/>.</summary>
    static async ValueTask<ScanResult> CollapsePteTable(Vma vma, ulong haddr, int t, long hpage)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        bool lockless = k.Era.Has(Feature.RetractLockless);
        // step 1: check all mapped PTEs are to the right huge page
        await mm.LockPtl(t);
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            var pte = await mm.PtepGet(t, haddr + ((ulong)i << MmStruct.PageShift));
            if (pte.IsNone) continue;
            if (!pte.Present || pte.Pfn != hpage + i) { await mm.UnlockPtl(t); return ScanResult.Fail; } // abort
        }
        MmuNotifierRange? range = null;
        if (lockless)
        {
            // 6.6: "Do the step 1 checking loop without mmu_notifier"; drop the PTL to start the CLEAR range.
            await mm.UnlockPtl(t);
            if (!k.Mutated(Mutation.CollapseAndFreePmdNoNotify))
            {
                range = new MmuNotifierRange(mm, haddr, haddr + MmStruct.PmdSize, MmuNotifyEvent.Clear);
                await mm.Notifiers.InvalidateRangeStart(range);
            }
            if (!await mm.PteOffsetMapLock(t, haddr))
            {
                if (range != null) await mm.Notifiers.InvalidateRangeEnd(range);
                return ScanResult.Fail;
            }
        }
        // step 2: (6.6: clear the page table and) adjust rmap
        int count = 0;
        ScanResult abort = ScanResult.Succeed;
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            ulong a = haddr + ((ulong)i << MmStruct.PageShift);
            var pte = lockless ? await mm.PtepGet(t, a) : new Pte(k.PageTables.Entry(t, i));
            if (pte.IsNone) continue;
            if (!pte.Present) { abort = ScanResult.PteNonPresent; break; }
            if (pte.Pfn != hpage + i) { abort = ScanResult.Fail; break; }
            if (lockless) await mm.SetPte(t, a, Pte.None); // pte_clear; the TLB flush waits for pmdp_collapse_flush
            Folio.RemoveRmap(k, pte.Pfn, mm); // page_remove_rmap; before 6.6 the PTE itself stays until the table goes
            count++;
        }
        await mm.UnlockPtl(t);
        // step 3: set proper refcount
        await k.S.Point(PointKind.Counter, (ulong)hpage); // page_ref_sub(hpage, count)
        for (int i = 0; i < count; i++) Folio.Put(k, hpage);
        if (abort != ScanResult.Succeed)
        {
            if (count > 0) await Tlb.FlushTlbMm(mm);
            if (range != null) await mm.Notifiers.InvalidateRangeEnd(range);
            return abort;
        }
        // step 4: remove page table
        await CollapseAndFreePmd(vma, haddr, expectEmpty: lockless, open: range);
        return ScanResult.Succeed;
    }
}
