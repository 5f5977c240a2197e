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
/// <para>Not modelled: 6.6's retract_page_tables without mmap_lock (Hugh Dickins' series): every era takes the
/// trylock. shmem_enabled is "advise": khugepaged needs VM_HUGEPAGE. A swapped-out index is read straight into the new
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
        await mm.MmapLock.WriteLock(); // 6.1 takes it for write; 6.6+ for read (its collapse_pte_mapped_thp needs no more)
        try
        {
            if (mm.Exited) return ScanResult.Fail;
            // 6.1-6.5: a fresh collapse went through retract_page_tables, where a target with no page table is
            // find_pmd_or_thp_or_none's failure (SCAN_PMD_NULL); 6.6+ always goes on to install the PMD.
            if (r == ScanResult.Succeed && !k.Era.Has(Feature.RetractAllMappings) && (await mm.PmdpGet(haddr)).IsNone) return ScanResult.PmdNull;
            return await CollapsePteMappedThp(mm, haddr, installPmd: true);
        }
        finally { await mm.MmapLock.WriteUnlock(); }
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
        return await HpageCollapseScanFile(mm.Kernel, file, start, khugepaged: true, target: null);
    }

    /// <summary>
    /// hpage_collapse_scan_file (khugepaged_scan_file before 6.1): look at the 512 cache entries without locks. A large
    /// folio already there is, for khugepaged, taken as collapsed; for MADV_COLLAPSE it is SCAN_PTE_MAPPED_HUGEPAGE
    /// when it is this range's THP (SCAN_PAGE_COMPOUND otherwise). A page with references beyond the cache's and its
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
                return khugepaged ? ScanResult.PmdMapped : k.Mem[head].Index == start ? ScanResult.PteMappedHugepage : ScanResult.PageCompound;
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
    /// the markers), take the mm's mmap_lock with a trylock (the page lock is held, and faults take the two the other
    /// way round); on success collapse_and_free_pmd the (empty) table, else (5.4+) remember the range for
    /// collapse_pte_mapped_thp. For MADV_COLLAPSE (<paramref name="target"/> set) the caller's own range is left to
    /// collapse_pte_mapped_thp, and before 6.6 so are all the others ("it's not MADV_COLLAPSE's job to collapse other
    /// mappings - let khugepaged take care of them later").
    /// </summary>
    static async ValueTask RetractPageTables(Kernel k, AddressSpace file, ulong pgoff, (MmStruct Mm, ulong Addr)? target)
    {
        using var _ = k.S.Current.Enter("retract_page_tables");
        if (target != null && !k.Era.Has(Feature.RetractAllMappings)) return;
        foreach (var vma in file.Mappings.ToArray())
        {
            if (vma.AnonVma != null) continue;
            if ((vma.Flags & VmFlags.UffdWp) != 0 && k.Era.Has(Feature.UffdWpShmem)) continue;
            if (vma.AddressOf(pgoff) is not { } addr || (addr & ~MmStruct.PmdMask) != 0 || vma.End < addr + MmStruct.PmdSize) continue;
            if (target is { } t && t.Mm == vma.Mm && t.Addr == addr) continue; // is_target
            var mm = vma.Mm;
            var pmd = await mm.PmdpGet(addr); // mm_find_pmd
            if (!pmd.Present || pmd.Huge) continue;
            if (await mm.MmapLock.TryWriteLock())
            {
                if (!mm.Exited) await CollapseAndFreePmd(vma, addr, expectEmpty: true);
                await mm.MmapLock.WriteUnlock();
            }
            else KhugepagedAddPteMappedThp(mm, addr);
        }
    }

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
    /// CLEAR start/end over the 2 MiB (<see cref="Feature.CollapseFileNotifies"/>). Caller holds mmap_lock for write.
    /// </summary>
    static async ValueTask CollapseAndFreePmd(Vma vma, ulong haddr, bool expectEmpty)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("collapse_and_free_pmd");
        bool notify = k.Era.Has(Feature.CollapseFileNotifies) && !k.Mutated(Mutation.CollapseAndFreePmdNoNotify);
        var range = new MmuNotifierRange(mm, haddr, haddr + MmStruct.PmdSize, MmuNotifyEvent.Clear);
        if (notify) await mm.Notifiers.InvalidateRangeStart(range);
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        await mm.SetPmd(haddr, Pte.None);
        await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
        await mm.UnlockPmd(haddr);
        if (notify) await mm.Notifiers.InvalidateRangeEnd(range);
        if (pmd.Present && !pmd.Huge)
        {
            int t = pmd.TableId;
            if (expectEmpty)
                for (int i = 0; i < PhysMem.HugePages; i++)
                    if (k.PageTables.Entry(t, i) != 0)
                        throw new ModelException($"retract_page_tables at 0x{haddr:x} of {mm}: the page table is not empty (PTE {i})");
            k.PageTables.FreeTable(t); // pte_free (mm_dec_nr_ptes)
        }
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
    /// lock it; under the PTL check that every present PTE maps the matching subpage (a non-present one or another page
    /// aborts), remove those mappings from the rmap and drop their references, then collapse_and_free_pmd. The PTEs go
    /// with the table: before 6.1 no secondary hears of it. With <paramref name="installPmd"/> (MADV_COLLAPSE, 6.1+:
    /// 58ac9a8993a1) the folio is then mapped by a PMD (set_huge_pmd), also where the PMD was already none
    /// ("maybe_install_pmd"); a VMA registered for uffd-wp keeps its table (SCAN_PTE_UFFD_WP, 5.19+). Caller holds
    /// mmap_lock for write.
    /// </summary>
    static async ValueTask<ScanResult> CollapsePteMappedThp(MmStruct mm, ulong haddr, bool installPmd = false)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("collapse_pte_mapped_thp");
        var vma = mm.FindVma(haddr);
        if (vma == null || vma.File == null || vma.Start > haddr || vma.End < haddr + MmStruct.PmdSize) return ScanResult.VmaCheck;
        if (!k.Era.Has(Feature.KhugepagedShmemCollapse) || !vma.File.IsShmem || (vma.Flags & VmFlags.NoHugePage) != 0) return ScanResult.VmaCheck; // hugepage_vma_check(| VM_HUGEPAGE)
        if ((vma.Flags & VmFlags.UffdWp) != 0 && k.Era.Has(Feature.UffdWpShmem)) return ScanResult.PteUffdWp; // "Keep pmd pgtable for uffd-wp"
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
                int t = pmd.TableId;
                await mm.LockPtl(t);
                int count = 0;
                for (int i = 0; i < PhysMem.HugePages; i++)
                {
                    var pte = await mm.PtepGet(t, haddr + ((ulong)i << MmStruct.PageShift));
                    if (pte.IsNone) continue;
                    if (!pte.Present || pte.Pfn != hpage + i) { await mm.UnlockPtl(t); return ScanResult.Fail; } // abort
                    count++;
                }
                for (int i = 0; i < PhysMem.HugePages; i++)
                {
                    var pte = new Pte(k.PageTables.Entry(t, i));
                    if (!pte.IsNone) Folio.RemoveRmap(k, pte.Pfn, mm); // page_remove_rmap; the PTE itself stays until the table goes
                }
                await mm.UnlockPtl(t);
                await k.S.Point(PointKind.Counter, (ulong)hpage); // page_ref_sub(hpage, count)
                for (int i = 0; i < count; i++) Folio.Put(k, hpage);
                await CollapseAndFreePmd(vma, haddr, expectEmpty: false);
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
}
