using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Hugetlb;

/// <summary>
/// mm/hugetlb.c for one huge page size, 2 MiB, mapped at the PMD level as x86 maps it: the pool
/// (/proc/sys/vm/nr_hugepages), the fault (hugetlb_fault, hugetlb_no_page), copy-on-write and unshare (hugetlb_wp)
/// and fork's copy (copy_hugetlb_page_range). Zap and mprotect use the huge-PMD paths of THP (zap_huge_pmd,
/// change_huge_pmd), which do for a hugetlb entry what __unmap_hugepage_range and hugetlb_change_protection do.
/// </summary>
/// <remarks>
/// <para>State: the pool size and the heads of the hugetlb folios in use, keyed by head pfn and the frame's generation
/// (a freed and reused frame is no hugetlb folio, as free_huge_folio's return to the pool gives). A hugetlb folio is
/// accounted like a PMD-mapped THP: one reference and one entire_mapcount per mapping; the frames' flags are the THP's
/// (Head/Tail, Anon, AnonExclusive on the head). Nothing per page is allocated.</para>
/// <para>Locking: every change of a hugetlb entry happens under the PMD lock (huge_pte_lock); hugetlb_wp drops it to
/// allocate and copy, and rechecks the entry (pte_same) after taking it again, inside its CLEAR range. The kernel's
/// hugetlb_fault_mutex (one per mapping and index) is not modelled: the recheck under the PMD lock gives the same
/// outcome for the paths modelled (two faults on one none entry: the second backs out).</para>
/// <para>Era rules (Eras/EraTable.cs): hugetlb_wp reuses an anon page when its mapcount is 1, in every era (never by
/// refcount, so that fork+exit users do not run out of huge pages: hence cow.c's vmsplice XFAILs); from 5.19 it
/// also serves FAULT_FLAG_UNSHARE (R/O pins on a shared page). fork shares every page write-protected, except a
/// possibly pinned anon page, which the child gets a copy of from 5.12 (<see cref="Feature.HugetlbForkCopiesPinned"/>).</para>
/// <para>Not modelled: reservations (mmap never fails for want of pages; a fault that finds the pool empty gets
/// SIGBUS, and the owner's COW does not unmap the child's mapping, unmap_ref_private), surplus pages, other sizes,
/// PMD sharing, MAP_SHARED|MAP_HUGETLB as a hugetlbfs file (it is shared anonymous memory here: the page is shared with fork
/// children through their copied entries), uffd-wp on hugetlb (userfaultfd MISSING and MINOR are modelled), and KVM faults on hugetlb memory beyond what
/// GUP gives them.</para>
/// </remarks>
public sealed class HugetlbPages
{
    readonly Kernel _k;
    readonly Dictionary<long, ushort> _inUse = [];

    HugetlbPages(Kernel k) => _k = k;

    public static HugetlbPages Of(Kernel k) => k.GetSubsystem(static kk => new HugetlbPages(kk));

    /// <summary>/proc/sys/vm/nr_hugepages: the pool's size (0 by default, as on a fresh kernel).</summary>
    public int NrHugepages { get; private set; }

    /// <summary>Largest pool the model accepts (1 GiB of huge pages).</summary>
    public const int MaxNrHugepages = 512;

    /// <summary>Huge pages in use (allocated from the pool and not yet freed).</summary>
    public int InUse
    {
        get
        {
            int n = 0;
            foreach (var (head, gen) in _inUse) if (Live(head, gen)) n++;
            return n;
        }
    }

    /// <summary>free_hugepages.</summary>
    public int FreeHugepages => Math.Max(0, NrHugepages - InUse);

    bool Live(long head, ushort gen) => _k.Mem[head].Generation == gen && !_k.Mem[head].Has(PageFlags.Free);

    /// <summary>folio_test_hugetlb.</summary>
    public static bool IsHugetlbFolio(Kernel k, long head) =>
        k.Subsystems.TryGetValue(typeof(HugetlbPages), out var o) && ((HugetlbPages)o)._inUse.TryGetValue(head, out var g) && ((HugetlbPages)o).Live(head, g);

    /// <summary>Write nr_hugepages: -EINVAL outside 0..<see cref="MaxNrHugepages"/>. Shrinking below the pages in use
    /// keeps them (the kernel makes them surplus pages, freed when unmapped); the model only stops new allocations.</summary>
    public int SetNrHugepages(long n)
    {
        if (n < 0 || n > MaxNrHugepages) return Errno.EINVAL;
        NrHugepages = (int)n;
        return 0;
    }

    /// <summary>alloc_hugetlb_folio: a zeroed huge folio from the pool, or -1 (-ENOSPC, the fault's VM_FAULT_SIGBUS).</summary>
    long AllocHugetlbFolio(Vma vma)
    {
        if (FreeHugepages == 0) return -1;
        long head = vma.AllocHuge();
        if (head < 0) return -1;
        Track(head);
        for (int i = 0; i < PhysMem.HugePages; i++) _k.S.Charge(CostKind.ZeroPage); // clear_huge_page
        return head;
    }

    /// <summary>
    /// alloc_hugetlb_folio_nodemask for a migration target on <paramref name="node"/> (__GFP_THISNODE; anywhere when
    /// -1): a free huge page there or, with the pool used up, a temporary surplus page (alloc_migrate_hugetlb_folio),
    /// which the old page's return to the pool balances. -1 when the node has no free 2 MiB block.
    /// </summary>
    internal long AllocMigrationTarget(int node)
    {
        long head = node < 0 ? _k.Mem.AllocHuge() : _k.Mem.AllocHuge(node, thisNode: true);
        if (head >= 0) Track(head);
        return head;
    }

    /// <summary>Record <paramref name="head"/> as a hugetlb folio in use, dropping entries of freed folios now and then.</summary>
    void Track(long head)
    {
        if (_inUse.Count > 2 * NrHugepages + 8)
            foreach (var (h, g) in _inUse.ToArray()) if (!Live(h, g)) _inUse.Remove(h);
        _inUse[head] = _k.Mem[head].Generation;
    }

    /// <summary>hugetlb_fault: a none entry takes hugetlb_no_page, a write (or unshare) to a read-only one hugetlb_wp.</summary>
    public static async ValueTask<VmFault> HugetlbFault(MmStruct mm, Vma vma, ulong addr, FaultFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("hugetlb_fault");
        ulong haddr = addr & MmStruct.PmdMask;
        bool write = (flags & (FaultFlags.Write | FaultFlags.Unshare)) != 0;
        mm.PmdAlloc(haddr); // huge_pte_alloc
        var entry = await mm.PmdpGet(haddr);
        if (entry.IsNone || entry.IsUffdWpMarker) return await HugetlbNoPage(mm, vma, haddr, flags, entry); // huge_pte_none_mostly
        if (entry.IsPoisonMarker) return VmFault.SigBus; // huge_pte_none_mostly + PTE_MARKER_POISONED: VM_FAULT_HWPOISON_LARGE (6.6+)
        if (entry.IsMigration) return await HugetlbMigration.MigrationEntryWaitHuge(mm, haddr, entry); // 3.12+
        await mm.LockPmd(haddr);
        var cur = await mm.PmdpGet(haddr);
        if (cur != entry)
        {
            await mm.UnlockPmd(haddr);
            return VmFault.Retry;
        }
        if ((flags & FaultFlags.Write) != 0 && !entry.Writable && entry.UffdWp && (vma.Flags & VmFlags.UffdWp) != 0)
        {
            // "Handle userfault-wp first, before trying to lock more pages" (5.19+: uffd-wp on hugetlb).
            await mm.UnlockPmd(haddr);
            return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, haddr, Userfaultfd.UffdReason.Wp, flags);
        }
        if (write && !entry.Writable)
        {
            // FAULT_FLAG_UNSHARE before 5.19 stands for the write fault GUP took instead.
            if ((flags & FaultFlags.Write) == 0 && !HugeMemory.IsUnshare(k, flags)) flags |= FaultFlags.Write;
            return await HugetlbWp(mm, vma, haddr, entry, flags); // drops the PMD lock
        }
        var young = entry.WithAccessed(true);
        if ((flags & FaultFlags.Write) != 0) young = young.WithDirty(true); // huge_ptep_set_access_flags
        if (young != entry) await mm.SetPmd(haddr, young);
        await mm.UnlockPmd(haddr);
        return VmFault.Ok;
    }

    /// <summary>
    /// hugetlb_no_page: allocate a zeroed huge page and map it (anon: hugetlb_add_new_anon_rmap, exclusive). A private
    /// mapping gets it read-only unless this is a write, which hugetlb_wp would reuse at once ("do the COW without a
    /// second fault"); a shared one writable when the VMA is. No notifier: the entry was none. <paramref name="orig"/>
    /// is the entry found: none or a uffd-wp marker (5.19+), whose protection the new entry keeps on a VM_UFFD_WP VMA
    /// (huge_pte_mkuffd_wp, which write-protects it).
    /// </summary>
    static async ValueTask<VmFault> HugetlbNoPage(MmStruct mm, Vma vma, ulong haddr, FaultFlags flags, Pte orig)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("hugetlb_no_page");
        bool write = (flags & FaultFlags.Write) != 0;
        if (vma.File is { } file) return await HugetlbNoPageFile(mm, vma, file, haddr, flags, orig);
        if ((vma.Flags & VmFlags.UffdMissing) != 0) // userfaultfd_missing: hugetlb_handle_userfault
            return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, haddr, Userfaultfd.UffdReason.Missing, flags);
        mm.AnonVmaPrepare(vma); // vmf_anon_prepare
        await k.S.Point(PointKind.Alloc, haddr);
        long head = Of(k).AllocHugetlbFolio(vma);
        if (head < 0) return await HugetlbPteStable(mm, haddr) ? VmFault.SigBus : VmFault.Retry;
        await mm.LockPmd(haddr);
        var cur = await mm.PmdpGet(haddr);
        if (cur != orig)
        {
            await mm.UnlockPmd(haddr); // backout: another fault mapped it
            Folio.Put(k, head);
            return VmFault.Retry;
        }
        Folio.AddNewAnonRmap(k, head, vma, haddr, huge: true);
        bool w = vma.Writable && (vma.Shared || write);
        await mm.SetPmd(haddr, vma.MkPte(head, writable: w, dirty: w, huge: true).WithUffdWp(KeepsUffdWp(vma, orig)));
        await mm.UnlockPmd(haddr);
        k.Stats.Inc(Stat.HugetlbFaults);
        return VmFault.Ok;
    }

    /// <summary>hugetlb_no_page's uffd_wp: the fault found a uffd-wp marker and the VMA is still VM_UFFD_WP.</summary>
    static bool KeepsUffdWp(Vma vma, Pte orig) => orig.IsUffdWpMarker && (vma.Flags & VmFlags.UffdWp) != 0;

    /// <summary>
    /// hugetlb_pte_stable before a SIGBUS for want of a page: "Page migration does not take the fault mutex, but does a
    /// clear then write of pte's under page table lock"; under the PMD lock, is the entry still none? If not, the fault
    /// raced migration (or another fault) and retries instead of failing.
    /// </summary>
    static async ValueTask<bool> HugetlbPteStable(MmStruct mm, ulong haddr)
    {
        await mm.LockPmd(haddr);
        bool none = (await mm.PmdpGet(haddr)).IsNone;
        await mm.UnlockPmd(haddr);
        return none;
    }

    /// <summary>
    /// hugetlb_no_page for a hugetlbfs file (memfd MFD_HUGETLB): the cached huge page (filemap_lock_hugetlb_folio), or a
    /// new zeroed one added to the page cache (hugetlb_add_to_page_cache: the cache holds a reference); mapped with
    /// hugetlb_add_file_rmap, writable only in a writable shared mapping. A write to a private mapping comes back as a
    /// write fault on the read-only entry, which hugetlb_wp turns into a private anon copy. SIGBUS beyond i_size or with
    /// the pool empty.
    /// </summary>
    static async ValueTask<VmFault> HugetlbNoPageFile(MmStruct mm, Vma vma, AddressSpace file, ulong haddr, FaultFlags flags, Pte orig)
    {
        var k = mm.Kernel;
        bool write = (flags & FaultFlags.Write) != 0;
        ulong index = vma.IndexOf(haddr);
        if (index >= file.SizePages) return VmFault.SigBus;
        await k.S.Point(PointKind.Alloc, haddr);
        bool cached = file.Pages.TryGetValue(index, out long head);
        // userfaultfd_missing for a page not in the cache, userfaultfd_minor (5.13+) for one that is: hugetlb_handle_userfault.
        if (!cached && (vma.Flags & VmFlags.UffdMissing) != 0)
            return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, haddr, Userfaultfd.UffdReason.Missing, flags);
        if (cached && (vma.Flags & VmFlags.UffdMinor) != 0)
            return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, haddr, Userfaultfd.UffdReason.Minor, flags);
        if (!cached)
        {
            head = Of(k).AllocHugetlbFolio(vma);
            if (head < 0) return VmFault.SigBus;
            HugetlbAddToPageCache(k, file, index, head);
        }
        await mm.LockPmd(haddr);
        var cur = await mm.PmdpGet(haddr);
        if (cur != orig)
        {
            await mm.UnlockPmd(haddr);
            return VmFault.Retry;
        }
        Folio.Get(k, head);
        HugetlbAddFileRmap(k, mm, head);
        bool w = vma.Shared && vma.Writable;
        await mm.SetPmd(haddr, vma.MkPte(head, writable: w, dirty: w, huge: true).WithUffdWp(KeepsUffdWp(vma, orig)));
        await mm.UnlockPmd(haddr);
        k.Stats.Inc(Stat.HugetlbFaults);
        return write && !vma.Shared ? VmFault.Retry : VmFault.Ok; // the COW takes the next fault (hugetlb_wp)
    }

    /// <summary>hugetlb_add_file_rmap (with the mm's file RSS): one more mapping of a page-cache huge page. The caller holds
    /// the mapping's reference.</summary>
    static void HugetlbAddFileRmap(Kernel k, MmStruct mm, long head)
    {
        k.Mem.EntireMapcountHolder(head).RefCount++;
        mm.RssFile += PhysMem.HugePages;
    }

    /// <summary>hugetlb_add_to_page_cache: the folio's pages point at the file; the allocation's reference becomes the cache's.</summary>
    static void HugetlbAddToPageCache(Kernel k, AddressSpace file, ulong index, long head)
    {
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            ref var f = ref k.Mem[head + i];
            f.AnonRoot = file.Id;
            f.Index = index + (ulong)i;
        }
        file.Pages.Add(index, head);
    }

    /// <summary>
    /// hugetlb_mfill_atomic_pte (hugetlb_mcopy_atomic_pte before 6.6) for the huge page at <paramref name="haddr"/>:
    /// UFFDIO_CONTINUE maps the page already in the hugetlbfs page cache (-EFAULT if none); UFFDIO_COPY allocates a page
    /// from the pool (-ENOMEM if empty), copies into it and, in a shared file mapping, adds it to the page cache first
    /// (-EEXIST if one is there). Then, under the PMD lock, -EEXIST unless the entry is none (a page this call added to the
    /// page cache stays there, as the kernel's folio_in_pagecache leaves it); else the page is mapped
    /// dirty and young, writable if the VMA is, except a CONTINUE in a private mapping (read-only: the next write takes
    /// hugetlb_wp). No notifier: the entry was none.
    /// </summary>
    /// <summary>
    /// hugetlb_mfill_atomic_pte's MFILL_ATOMIC_POISON case (6.6+): under the huge PTE lock, a none entry becomes a
    /// poisoned marker ("Don't overwrite any existing PTEs (even markers)": EEXIST). No invalidation: nothing was mapped.
    /// </summary>
    internal static async ValueTask<int> HugetlbMfillAtomicPoison(Vma vma, ulong haddr)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("hugetlb_mfill_atomic_pte");
        mm.PmdAlloc(haddr); // huge_pte_alloc
        await mm.LockPmd(haddr);
        int err = 0;
        if ((await mm.PmdpGet(haddr)).IsNone) await mm.SetPmd(haddr, new Pte(Pte.Marker(uffdWp: false, poisoned: true).Raw | Pte.HugeBit));
        else err = Errno.EEXIST;
        await mm.UnlockPmd(haddr);
        return err;
    }

    internal static async ValueTask<int> HugetlbMfillAtomicPte(Vma vma, ulong haddr, bool isContinue, ulong value, bool wp = false)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("hugetlb_mfill_atomic_pte");
        mm.PmdAlloc(haddr); // huge_pte_alloc
        var file = vma.File;
        bool shared = vma.Shared && file != null;
        ulong index = vma.IndexOf(haddr);
        long head;
        bool inCache;
        await k.S.Point(PointKind.Alloc, haddr);
        if (isContinue)
        {
            if (file == null || !file.Pages.TryGetValue(index, out head)) return Errno.EFAULT; // filemap_lock_hugetlb_folio
            Folio.Get(k, head);
            inCache = true;
        }
        else
        {
            if (file != null && index >= file.SizePages) return Errno.EFAULT; // beyond i_size
            head = Of(k).AllocHugetlbFolio(vma);
            if (head < 0) return Errno.ENOMEM;
            for (int i = 0; i < PhysMem.HugePages; i++) k.Mem[head + i].Contents = value; // copy_folio_from_user
            inCache = shared;
            if (shared)
            {
                if (file!.Pages.ContainsKey(index))
                {
                    Folio.Put(k, head);
                    return Errno.EEXIST;
                }
                HugetlbAddToPageCache(k, file, index, head);
                Folio.Get(k, head); // the mapping's
            }
            else mm.AnonVmaPrepare(vma);
        }
        await mm.LockPmd(haddr);
        if (!(await mm.PmdpGet(haddr)).IsNoneMostly) // huge_pte_none_mostly: a uffd-wp marker may be overwritten
        {
            await mm.UnlockPmd(haddr);
            Folio.Put(k, head); // out_release_unlock: a page already added stays in the page cache (folio_in_pagecache)
            return Errno.EEXIST;
        }
        if (inCache) HugetlbAddFileRmap(k, mm, head);
        else Folio.AddNewAnonRmap(k, head, vma, haddr, huge: true); // hugetlb_add_new_anon_rmap
        bool writable = vma.Writable && !(isContinue && !vma.Shared);
        await mm.SetPmd(haddr, vma.MkPte(head, writable: writable, dirty: true, huge: true).WithUffdWp(wp)); // MFILL_ATOMIC_WP
        await mm.UnlockPmd(haddr);
        return 0;
    }

    /// <summary>
    /// hugetlb_wp: called with the PMD lock held on a read-only entry; drops it. A shared mapping is made writable; an
    /// anon page mapped once is reused in place (PageAnonExclusive set; an unshare leaves it read-only), with no notifier;
    /// otherwise the page is copied into a new one from the pool inside a CLEAR range over the huge page:
    /// huge_ptep_clear_flush (and invalidate_range in 3.19-6.5), the new entry writable (read-only for an unshare).
    /// An empty pool is SIGBUS.
    /// </summary>
    static async ValueTask<VmFault> HugetlbWp(MmStruct mm, Vma vma, ulong haddr, Pte entry, FaultFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("hugetlb_wp");
        bool unshare = HugeMemory.IsUnshare(k, flags);
        if (vma.Shared)
        {
            if (!unshare) await mm.SetPmd(haddr, entry.WithWrite(vma.Writable).WithDirty(true).WithAccessed(true)); // set_huge_ptep_writable
            await mm.UnlockPmd(haddr);
            return VmFault.Ok;
        }
        long old = entry.Pfn;
        ref var f = ref k.Mem[old];
        if (k.Mem.FolioMapCount(old) == 1 && f.Has(PageFlags.Anon))
        {
            f.Set(PageFlags.AnonExclusive); // folio_move_anon_rmap + SetPageAnonExclusive
            if (!unshare) await mm.SetPmd(haddr, entry.WithWrite(vma.Writable).WithDirty(true).WithAccessed(true)); // set_huge_ptep_maybe_writable
            await mm.UnlockPmd(haddr);
            k.Stats.Inc(Stat.CowReuses);
            return VmFault.Ok;
        }
        Folio.Get(k, old); // folio_get(old_folio) before dropping the lock
        await mm.UnlockPmd(haddr);
        await k.S.Point(PointKind.Alloc, haddr);
        long nw = Of(k).AllocHugetlbFolio(vma);
        if (nw < 0)
        {
            Folio.Put(k, old);
            return VmFault.SigBus;
        }
        CopyUserLargeFolio(k, nw, old);
        var range = new MmuNotifierRange(mm, haddr, haddr + MmStruct.PmdSize, MmuNotifyEvent.Clear);
        await mm.Notifiers.InvalidateRangeStart(range);
        bool copied = false;
        await mm.LockPmd(haddr);
        var cur = await mm.PmdpGet(haddr);
        if (cur == entry)
        {
            await mm.SetPmd(haddr, Pte.None); // huge_ptep_clear_flush
            await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
            if (k.Era.Has(Feature.InvalidateRange)) await mm.Notifiers.InvalidateRange(haddr, haddr + MmStruct.PmdSize);
            Folio.RemoveRmapPmd(k, old, mm); // hugetlb_remove_rmap
            Folio.AddNewAnonRmap(k, nw, vma, haddr, huge: true);
            bool w = !unshare && vma.Writable;
            await mm.SetPmd(haddr, vma.MkPte(nw, writable: w, dirty: w, huge: true).WithUffdWp(entry.UffdWp));
            copied = true;
            k.Stats.Inc(Stat.CowCopies);
        }
        await mm.UnlockPmd(haddr);
        await mm.Notifiers.InvalidateRangeEnd(range);
        await k.S.Point(PointKind.Free, haddr);
        Folio.Put(k, copied ? old : nw); // the old entry's reference, or the unused copy
        Folio.Put(k, old);               // ours
        return copied ? VmFault.Ok : VmFault.Retry;
    }

    /// <summary>
    /// copy_hugetlb_page_range's part for one entry, under both PMD locks: an anon page that fork must not share
    /// (possibly pinned, from 5.12; from 5.19 only an exclusive one: hugetlb_try_dup_anon_rmap) is copied into a new
    /// page for the child (hugetlb_install_folio), the parent's entry left as it is; any other is shared (folio_get,
    /// entire_mapcount+1, PageAnonExclusive cleared), write-protected in both for a private mapping. False when the pool
    /// has no page for the copy (the kernel fails fork with -ENOMEM; the model reports it as a liveness failure).
    /// </summary>
    internal static async ValueTask<bool> CopyHugetlbEntry(Vma dst, Vma src, ulong haddr, bool cow)
    {
        var parent = src.Mm;
        var child = dst.Mm;
        var k = parent.Kernel;
        using var _ = k.S.Current.Enter("copy_hugetlb_page_range");
        child.PmdAlloc(haddr);
        await child.LockPmd(haddr);
        await parent.LockPmd(haddr);
        var entry = await parent.PmdpGet(haddr);
        bool ok = true;
        if (entry.IsMarker)
        {
            // copy_pte_marker: a poisoned marker always goes to the child, a uffd-wp one when the child is uffd-wp armed.
            if (entry.IsPoisonMarker || (entry.IsUffdWpMarker && (dst.Flags & VmFlags.UffdWp) != 0)) await child.SetPmd(haddr, entry);
        }
        else if (entry.IsMigration)
        {
            // is_hugetlb_entry_migration: a writable entry becomes readable in both for a COW mapping (the page will be
            // shared write-protected once remapped); the child gets the entry and remove_migration_ptes finds it.
            if (cow && entry.SwapKind == SwapType.MigrationWrite)
            {
                entry = entry.ReadOnlyEntry();
                await parent.SetPmd(haddr, entry);
            }
            await child.SetPmd(haddr, entry.WithUffdWp(entry.UffdWp && dst.Uffd != null));
        }
        else if (entry.Present && entry.Huge)
        {
            long head = entry.Pfn;
            bool anon = k.Mem[head].Has(PageFlags.Anon);
            if (cow && Memory.NeedsCowForDma(src, head, Feature.HugetlbForkCopiesPinned))
            {
                await k.S.Point(PointKind.Alloc, haddr);
                long nw = Of(k).AllocHugetlbFolio(dst);
                if (nw < 0) ok = false;
                else
                {
                    CopyUserLargeFolio(k, nw, head);
                    Folio.AddNewAnonRmap(k, nw, dst, haddr, huge: true);
                    // hugetlb_install_folio: userfaultfd_pte_wp(dst_vma, old) keeps the protection in the child's copy.
                    await child.SetPmd(haddr, dst.MkPte(nw, writable: dst.Writable, dirty: true, huge: true)
                        .WithUffdWp(entry.UffdWp && (dst.Flags & VmFlags.UffdWp) != 0));
                    k.Stats.Inc(Stat.ForkCopiedPtes);
                }
            }
            else
            {
                Folio.Get(k, head);
                k.Mem.EntireMapcountHolder(head).RefCount++; // hugetlb_try_dup_anon_rmap / hugetlb_add_file_rmap
                if (anon) child.RssAnon += PhysMem.HugePages;
                else child.RssFile += PhysMem.HugePages;
                k.Mem[head].Clear(PageFlags.AnonExclusive);
                if (cow && entry.Writable)
                {
                    await parent.SetPmd(haddr, entry.Wrprotect()); // huge_ptep_set_wrprotect: a downgrade, no notifier of its own
                    entry = entry.Wrprotect();
                }
                await child.SetPmd(haddr, entry.WithUffdWp(entry.UffdWp && dst.Uffd != null));
                k.Stats.Inc(Stat.ForkCopiedPtes);
            }
        }
        await parent.UnlockPmd(haddr);
        await child.UnlockPmd(haddr);
        return ok;
    }

    /// <summary>copy_user_large_folio: the 512 pages' contents of huge folio <paramref name="src"/> into <paramref name="dst"/>.</summary>
    static void CopyUserLargeFolio(Kernel k, long dst, long src)
    {
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            k.Mem[dst + i].Contents = k.Mem[src + i].Contents;
            k.S.Charge(CostKind.CopyPage);
        }
    }

    /// <summary>Whether [addr, addr+len) starts and ends on huge page boundaries (hugetlb_vm_op_split refuses others: -EINVAL).</summary>
    public static bool Aligned(ulong addr, ulong len) => (addr & ~MmStruct.PmdMask) == 0 && (len & ~MmStruct.PmdMask) == 0;
}
