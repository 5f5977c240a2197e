using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// mm/huge_memory.c: anonymous THP fault, wp fault, PMD split and zap.
/// </summary>
/// <remarks>
/// <para>A PMD-mapped THP holds one folio reference and one entire_mapcount (kept in the first tail page,
/// <see cref="PhysMem.EntireMapcountHolder"/>). <see cref="SplitHugePmd"/> turns that into 512 PTEs, each holding a
/// per-page mapcount and one folio reference (the kernel's page_ref_add(HPAGE_PMD_NR - 1)); the folio itself stays
/// compound. All PMD changes happen under the PMD lock (pmd_lock).</para>
/// <para>The huge zero page (3.8+) is mapped by read faults only with <see cref="Kernel.ThpUseZeroPage"/> (the kernel's
/// use_zero_page, default 1 there, 0 in the model): a read-only special PMD to <see cref="PhysMem.HugeZeroPfn"/> with no
/// rmap and no reference; writes and unshares split it into PTEs of the 4 KiB zero page.</para>
/// <para>Era simplifications (documented): do_huge_pmd_wp_page follows 6.8 in every era (reuse in place or split and fall back to the 4 KiB
/// COW path; 4.10's whole-THP copy with pmdp_huge_clear_flush_notify is not modelled); PMD swap/migration entries
/// do not exist: reclaim and migration split the PMD first.</para>
/// </remarks>
public static class HugeMemory
{
    /// <summary>thp_vma_allowable_order(PMD_ORDER) for an anon fault: the sysfs knobs allow the PMD order in this VMA
    /// (<see cref="ThpSettings.AllowableOrders"/>: by default only with VM_HUGEPAGE), the VMA covers the whole aligned
    /// 2 MiB, and the era has THP.</summary>
    public static bool ThpEligible(MmStruct mm, Vma vma, ulong addr)
    {
        if (!mm.Kernel.Era.Has(Feature.Thp) || vma.File != null || mm.Kernel.Thp.AllowableOrders(vma, 1 << PhysMem.HugeOrder) == 0) return false;
        ulong h = addr & MmStruct.PmdMask;
        return h >= vma.Start && h + MmStruct.PmdSize <= vma.End;
    }

    /// <summary>
    /// A shmem or memfd VMA (not hugetlbfs, not guest_memfd) that a huge page-cache folio could be mapped into: not
    /// VM_NOHUGEPAGE, and its address and file offset congruent modulo 2 MiB (transhuge_vma_suitable's alignment).
    /// </summary>
    internal static bool ShmemThpVma(Vma vma) =>
        vma.File is { IsShmem: true } f && f.Kind != FileKind.MemfdHugetlb && !vma.IsHugetlb && (vma.Flags & VmFlags.NoHugePage) == 0
        && (((vma.Start >> MmStruct.PageShift) - vma.PgOff) & (PhysMem.HugePages - 1)) == 0;

    /// <summary>
    /// thp_vma_suitable_order(PMD_ORDER) for a page-cache folio plus do_set_pmd's vma_thp_disabled: a
    /// <see cref="ShmemThpVma"/> covering the whole aligned 2 MiB around <paramref name="addr"/>, in an era with huge
    /// page-cache folios (shmem THP, 4.8). VM_HUGEPAGE is not needed: any huge folio in the cache is mapped by a PMD
    /// where one fits.
    /// </summary>
    public static bool FileThpSuitable(Kernel k, Vma vma, ulong addr)
    {
        ulong h = addr & MmStruct.PmdMask;
        return k.Era.Has(Feature.KhugepagedShmemCollapse) && ShmemThpVma(vma) && h >= vma.Start && h + MmStruct.PmdSize <= vma.End;
    }

    /// <summary>
    /// do_set_pmd (finish_fault and filemap_map_pmd with the PMD none): map the huge page-cache folio
    /// <paramref name="head"/> with one PMD: folio_add_file_rmap_pmd (entire_mapcount+1), the file RSS counter by 512,
    /// writable only in a shared writable shmem mapping, dirty on a write. The caller holds the folio lock and a
    /// reference, which becomes the mapping's; false (VM_FAULT_FALLBACK) when the PMD was populated meanwhile, and the
    /// caller goes on at the PTE level. No notifier: the PMD was none.
    /// </summary>
    public static async ValueTask<bool> DoSetPmd(MmStruct mm, Vma vma, ulong addr, long head, bool write)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_set_pmd");
        ulong haddr = addr & MmStruct.PmdMask;
        if (!FileThpSuitable(k, vma, haddr) || !k.Mem.IsHuge(head) || k.Mem[head].Index != vma.IndexOf(haddr)) return false;
        mm.PmdAlloc(haddr);
        await mm.LockPmd(haddr);
        bool none = (await mm.PmdpGet(haddr)).IsNone;
        if (none)
        {
            k.Mem.EntireMapcountHolder(head).RefCount++; // folio_add_file_rmap_pmd
            mm.RssFile += PhysMem.HugePages;
            if (write) Folio.MarkDirty(k, head);
            bool writable = vma.Shared && vma.Writable;
            await mm.SetPmd(haddr, vma.MkPte(head, writable, dirty: write, huge: true));
            k.Stats.Inc(Stat.ThpFileMapped);
        }
        await mm.UnlockPmd(haddr);
        return none;
    }

    /// <summary>
    /// do_huge_pmd_anonymous_page: allocate a 2 MiB folio and map it with one huge PMD. Returns
    /// <see cref="VmFault.Retry"/> when the allocation fails or the PMD was populated meanwhile, so that the caller
    /// falls back to the 4 KiB path (VM_FAULT_FALLBACK).
    /// </summary>
    public static async ValueTask<VmFault> DoHugePmdAnonymousPage(MmStruct mm, Vma vma, ulong addr, bool write)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_huge_pmd_anonymous_page");
        if (!ThpEligible(mm, vma, addr)) return VmFault.Retry;
        ulong haddr = addr & MmStruct.PmdMask;
        mm.AnonVmaPrepare(vma); // vmf_anon_prepare comes before the zero-page choice
        if (!write && k.ThpUseZeroPage && k.Era.Has(Feature.HugeZeroPage) && (vma.Flags & VmFlags.UffdMissing) == 0)
            return await SetHugeZeroFolio(mm, vma, haddr);
        await k.S.Point(PointKind.Alloc, haddr);
        long head = vma.AllocHuge();
        if (head < 0) return VmFault.Retry;
        for (int i = 0; i < PhysMem.HugePages; i++) k.S.Charge(CostKind.ZeroPage);
        mm.PmdAlloc(haddr);
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        if (!pmd.IsNone)
        {
            await mm.UnlockPmd(haddr);
            Folio.Put(k, head);
            return VmFault.Retry;
        }
        Folio.AddNewAnonRmap(k, head, vma, haddr, huge: true);
        await mm.SetPmd(haddr, vma.MkPte(head, writable: vma.Writable, dirty: vma.Writable, huge: true));
        await mm.UnlockPmd(haddr);
        k.Stats.Inc(Stat.ThpFaults);
        return VmFault.Ok;
    }

    /// <summary>
    /// do_huge_pmd_anonymous_page on a VMA registered MISSING: under the PMD lock a PMD still none is delivered to
    /// userland ("Deliver the page fault to userland", handle_userfault) instead of being populated, on the read path
    /// (which never maps the huge zero page there) and the write path alike; the PMD stays none, so UFFDIO_COPY then
    /// fills PTEs and UFFDIO_MOVE can move a whole THP into it. A populated PMD re-walks. The model does not allocate
    /// the folio the kernel allocates and puts back first.
    /// </summary>
    public static async ValueTask<VmFault> DoHugePmdAnonymousPageUserfault(MmStruct mm, Vma vma, ulong addr, FaultFlags flags)
    {
        using var _ = mm.Kernel.S.Current.Enter("do_huge_pmd_anonymous_page");
        ulong haddr = addr & MmStruct.PmdMask;
        mm.AnonVmaPrepare(vma);
        mm.PmdAlloc(haddr);
        await mm.LockPmd(haddr);
        bool none = (await mm.PmdpGet(haddr)).IsNone;
        await mm.UnlockPmd(haddr);
        if (!none) return VmFault.Retry;
        return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, addr, Userfaultfd.UffdReason.Missing, flags);
    }

    /// <summary>
    /// do_huge_pmd_anonymous_page's read path with use_zero_page: map the huge zero folio with a read-only, special
    /// PMD (set_huge_zero_folio: no rmap, no per-mapping reference). No notifier: the PMD was none.
    /// </summary>
    static async ValueTask<VmFault> SetHugeZeroFolio(MmStruct mm, Vma vma, ulong haddr)
    {
        var k = mm.Kernel;
        await k.S.Point(PointKind.Alloc, haddr);
        long zero = k.Mem.GetHugeZeroFolio(); // mm_get_huge_zero_folio
        if (zero < 0) return VmFault.Retry;
        mm.PmdAlloc(haddr);
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        bool none = pmd.IsNone;
        if (none) await mm.SetPmd(haddr, vma.MkPte(zero, writable: false, huge: true, special: true));
        await mm.UnlockPmd(haddr);
        if (none) k.Stats.Inc(Stat.ThpFaults);
        return none ? VmFault.Ok : VmFault.Retry;
    }

    /// <summary>An unshare fault (FAULT_FLAG_UNSHARE without WRITE) where the era has them (5.19+).</summary>
    internal static bool IsUnshare(Kernel k, FaultFlags flags) =>
        (flags & (FaultFlags.Unshare | FaultFlags.Write)) == FaultFlags.Unshare && k.Era.Has(Eras.Feature.GupUnshareAnon);

    /// <summary>
    /// Fault on a present huge PMD: do_huge_pmd_wp_page for a write to a read-only PMD (reuse an exclusive folio in
    /// place, with no notifier; otherwise __split_huge_pmd and fall back to the 4 KiB COW path, as 6.8 does), or
    /// huge_pmd_set_accessed.
    /// </summary>
    public static async ValueTask<VmFault> HugePmdFault(MmStruct mm, Vma vma, ulong addr, Pte pmd, FaultFlags flags)
    {
        var k = mm.Kernel;
        bool write = (flags & (FaultFlags.Write | FaultFlags.Unshare)) != 0;
        ulong haddr = addr & MmStruct.PmdMask;
        if (write && !pmd.Writable)
        {
            using var _ = k.S.Current.Enter("do_huge_pmd_wp_page");
            await mm.LockPmd(haddr);
            var cur = await mm.PmdpGet(haddr);
            if (cur != pmd)
            {
                await mm.UnlockPmd(haddr);
                return VmFault.Retry;
            }
            if (pmd.UffdWp && (vma.Flags & VmFlags.UffdWp) != 0 && !IsUnshare(k, flags))
            {
                await mm.UnlockPmd(haddr); // do_huge_pmd_wp_page: userfaultfd_huge_pmd_wp
                return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, addr, Userfaultfd.UffdReason.Wp, flags);
            }
            if (pmd.Special)
            {
                // is_huge_zero_pmd: goto fallback. Split into PTEs of the 4 KiB zero page; the 4 KiB path COWs (or unshares) one.
                await mm.UnlockPmd(haddr);
                await SplitHugePmd(vma, haddr, notify: true);
                return VmFault.Retry;
            }
            long head = pmd.Pfn;
            ref var f = ref k.Mem[head];
            // 5.19+ (3bff7e3f1f16): PageAnonExclusive, or the only reference; before: reuse_swap_page (total mapcount 1).
            bool reuse = f.Has(PageFlags.Anon) && !f.Has(PageFlags.Ksm) && (k.Era.Has(Eras.Feature.PageAnonExclusiveReuse)
                ? f.Has(PageFlags.AnonExclusive) || f.RefCount == 1
                : k.Mem.FolioMapCount(head) == 1);
            if (reuse)
            {
                f.Set(PageFlags.AnonExclusive);
                if (IsUnshare(k, flags))
                {
                    await mm.UnlockPmd(haddr); // unshare: exclusive now, the PMD stays read-only
                    return VmFault.Ok;
                }
                var pw = pmd.WithAccessed(true).WithWrite(vma.Writable);
                if ((flags & FaultFlags.Write) != 0) pw = pw.WithDirty(true).WithSoftDirty(true); // pmd_mkdirty
                await mm.SetPmd(haddr, pw);
                await mm.UnlockPmd(haddr);
                k.Stats.Inc(Stat.CowReuses);
                return VmFault.Ok;
            }
            await mm.UnlockPmd(haddr);
            await SplitHugePmd(vma, haddr, notify: true);
            return VmFault.Retry; // VM_FAULT_FALLBACK: the 4 KiB path copies the one page
        }
        using (k.S.Current.Enter("huge_pmd_set_accessed"))
        {
            await mm.LockPmd(haddr);
            var cur = await mm.PmdpGet(haddr);
            if (cur == pmd)
            {
                var young = pmd.WithAccessed(true);
                if ((flags & FaultFlags.Write) != 0) young = young.WithDirty(true).WithSoftDirty(true); // touch_pmd: pmd_mkdirty
                if (young != pmd) await mm.SetPmd(haddr, young);
            }
            await mm.UnlockPmd(haddr);
        }
        return VmFault.Ok;
    }

    /// <summary>
    /// __split_huge_pmd: replace the huge PMD covering <paramref name="addr"/> by a PTE table of 512 PTEs to the same
    /// pages (same W/D/A bits), per-page mapcounts, entire_mapcount−1 and 511 more folio references. A page-cache PMD
    /// is only dropped (!vma_is_anonymous), unless <paramref name="keepFilePtes"/>: migration, which the model does
    /// without PMD migration entries, splits a file PMD into PTEs as it does an anonymous one. With
    /// <paramref name="notify"/> it runs inside its own start/end CLEAR over the aligned 2 MiB (nested inside the
    /// caller's range when there is one); end is only_end (4.15-6.5: no invalidate_range, the PTEs still point to the
    /// same pages). Callers that already invalidated the range pass notify=false (zap).
    /// </summary>
    public static async ValueTask SplitHugePmd(Vma vma, ulong addr, bool notify, bool keepFilePtes = false)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("__split_huge_pmd");
        ulong haddr = addr & MmStruct.PmdMask;
        var range = new MmuNotifierRange(mm, haddr, haddr + MmStruct.PmdSize, MmuNotifyEvent.Clear);
        if (notify) await mm.Notifiers.InvalidateRangeStart(range);
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        if (pmd.Present && pmd.Huge) await SplitHugePmdLocked(vma, haddr, pmd, keepFilePtes);
        else if (pmd.IsMigration && !vma.IsHugetlb) await SplitMigrationPmdLocked(vma, haddr, pmd);
        await mm.UnlockPmd(haddr);
        if (notify) await mm.Notifiers.InvalidateRangeOnlyEnd(range);
    }

    /// <summary>
    /// __split_huge_pmd_locked for a PMD migration entry (4.14+): 512 PTE migration entries for the sub-pages, each as
    /// writable, readable-exclusive or readable as the PMD's was, with its uffd-wp bit. The folio's counts do not change
    /// (a migration entry holds no mapping); remove_migration_ptes then restores PTEs, not a PMD.
    /// </summary>
    static async ValueTask SplitMigrationPmdLocked(Vma vma, ulong haddr, Pte pmd)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("__split_huge_pmd_locked");
        int t = k.PageTables.AllocTable();
        bool write = pmd.SwapKind == SwapType.MigrationWrite, exclusive = pmd.IsExclusiveMigration;
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            var e = Pte.SwapEntry(write ? SwapType.MigrationWrite : SwapType.MigrationRead, pmd.Pfn + i)
                .WithMigrationExclusive(exclusive).WithUffdWp(pmd.UffdWp).WithSoftDirty(pmd.SoftDirty)
                .WithMigrationAd(pmd.IsMigrationYoung, pmd.IsMigrationDirty); // 6.1+: is_migration_entry_young/dirty
            k.PageTables.Entry(t, i) = e.Raw;
        }
        await mm.SetPmd(haddr, Pte.Table(t)); // pmd_populate: no flush, nothing was mapped
        k.Stats.Inc(Stat.ThpSplits);
    }

    // ------------------------------------------------------------------ PMD migration entries (4.14+)

    /// <summary>
    /// set_pmd_migration_entry (Feature.ThpMigration, 4.14+): try_to_migrate_one's PMD case, inside its CLEAR range over
    /// the 2 MiB. Under the PMD lock the huge PMD becomes a PMD migration entry (pmdp_invalidate and the TLB flush, then
    /// set_pmd_at of the swap PMD): writable if the PMD was, readable-exclusive if the folio was PageAnonExclusive
    /// (folio_try_share_anon_rmap_pmd moves the flag into the entry), with the PMD's soft-dirty and uffd-wp bits; the dirty
    /// bit goes to the folio, the PMD mapping and its reference are dropped. False: the PMD no longer maps the folio.
    /// </summary>
    internal static async ValueTask<bool> SetPmdMigrationEntry(Vma vma, ulong haddr, long head)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("set_pmd_migration_entry");
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        bool mapped = pmd.Present && pmd.Huge && pmd.Pfn == head;
        if (mapped)
        {
            bool exclusive = k.Mem[head].Has(PageFlags.AnonExclusive);
            var entry = Migrate.MakeMigrationEntry(k, pmd.Writable, head, pmd, exclusive, huge: true);
            await mm.SetPmd(haddr, entry);
            await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize); // pmdp_invalidate's flush_pmd_tlb_range
            if (pmd.Dirty) Folio.MarkDirty(k, head);
            k.Mem[head].Clear(PageFlags.AnonExclusive); // folio_try_share_anon_rmap_pmd
            await k.S.Point(PointKind.Counter, haddr);
            Folio.RemoveRmapPmd(k, head, mm);
            Folio.Put(k, head);
        }
        await mm.UnlockPmd(haddr);
        return mapped;
    }

    /// <summary>
    /// remove_migration_pmd: the PMD migration entry at <paramref name="haddr"/> for <paramref name="src"/> becomes a huge
    /// PMD of <paramref name="dst"/> (mk_pmd with vm_page_prot; writable if the entry was, with its soft-dirty and uffd-wp
    /// bits, dirty if the folio is), folio_add_anon_rmap_pmd (RMAP_EXCLUSIVE unless the entry was a plain readable one)
    /// and a reference. No notifier: "it was non-present before". False: no such entry (zapped or split meanwhile).
    /// </summary>
    internal static async ValueTask<bool> RemoveMigrationPmd(Vma vma, ulong haddr, long src, long dst)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("remove_migration_pmd");
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        bool found = pmd.IsMigration && pmd.Huge && pmd.Pfn == src;
        if (found)
        {
            await mm.SetPmd(haddr, Migrate.RemapEntry(k, vma, pmd, dst, huge: true));
            Folio.Get(k, dst);
            k.Mem.EntireMapcountHolder(dst).RefCount++; // folio_add_anon_rmap_pmd
            mm.RssAnon += PhysMem.HugePages;
            if (pmd.IsExclusiveMigration) k.Mem[dst].Set(PageFlags.AnonExclusive);
        }
        await mm.UnlockPmd(haddr);
        return found;
    }

    /// <summary>
    /// pmd_migration_entry_wait: a fault (or a walker) found a PMD migration entry; sleep on the folio until
    /// remove_migration_pmd replaces it, then retry.
    /// </summary>
    public static ValueTask<VmFault> PmdMigrationEntryWait(MmStruct mm, ulong haddr, Pte entry) =>
        Migrate.WaitWhilePmd(mm, haddr & MmStruct.PmdMask, entry, "pmd_migration_entry_wait");

    /// <summary>__split_huge_pmd_locked: caller holds the PMD lock and saw <paramref name="pmd"/> present and huge.</summary>
    static async ValueTask SplitHugePmdLocked(Vma vma, ulong haddr, Pte pmd, bool keepFilePtes)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("__split_huge_pmd_locked");
        long head = pmd.Pfn;
        if (pmd.Special)
        {
            // __split_huge_zero_page_pmd: 512 PTEs to the 4 KiB zero page; the huge zero folio keeps no count for them.
            int zt = k.PageTables.AllocTable();
            var zero = vma.MkPte(PhysMem.ZeroPfn, writable: false, special: true).WithSoftDirty(pmd.SoftDirty).WithUffdWp(pmd.UffdWp);
            for (int i = 0; i < PhysMem.HugePages; i++) k.PageTables.Entry(zt, i) = (pmd.User ? zero : zero.MkProtNone()).Raw;
            await mm.SetPmd(haddr, Pte.Table(zt));
            await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
            k.Stats.Inc(Stat.ThpSplits);
            return;
        }
        if (vma.File != null && !vma.IsHugetlb && !keepFilePtes)
        {
            // !vma_is_anonymous: a page-cache folio keeps no PTEs. pmdp_huge_clear_flush_notify clears the PMD (with
            // invalidate_range in 3.19-6.5), the dirty and young bits go to the folio, the PMD mapping and its
            // reference are dropped, and the next fault maps PTEs (or a PMD again).
            await mm.SetPmd(haddr, Pte.None);
            await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
            if (k.Era.Has(Feature.InvalidateRange)) await mm.Notifiers.InvalidateRange(haddr, haddr + MmStruct.PmdSize);
            if (pmd.Dirty) Folio.MarkDirty(k, head);
            Folio.RemoveRmapPmd(k, head, mm);
            Folio.Put(k, head);
            k.Stats.Inc(Stat.ThpSplits);
            return;
        }
        // The kernel's pmdp_invalidate leaves a non-present but still "huge" PMD that other walkers wait on (they take
        // the PMD lock); the model installs the populated PTE table in one step and then flushes, which is equivalent.
        int t = k.PageTables.AllocTable();
        var pool = k.PageTables;
        bool exclusive = k.Mem[head].Has(PageFlags.AnonExclusive);
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            var pte = Pte.Make(head + i, pmd.Writable, pmd.Dirty, pmd.Accessed).WithUffdWp(pmd.UffdWp); // uffd-wp is inherited
            pool.Entry(t, i) = (pmd.User ? pte : pte.MkProtNone()).Raw; // a PROT_NONE PMD splits into PROT_NONE PTEs
            ref var p = ref k.Mem[head + i];
            p.MapCount++;
            if (exclusive) p.Set(PageFlags.AnonExclusive);
        }
        k.Mem.EntireMapcountHolder(head).RefCount--;
        k.Mem[head].RefCount += PhysMem.HugePages - 1;
        await mm.SetPmd(haddr, Pte.Table(t));
        await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
        k.Stats.Inc(Stat.ThpSplits);
    }

    /// <summary>
    /// split_huge_page (split_huge_page_to_list_to_order, order 0) of the anonymous THP <paramref name="head"/>: the caller
    /// holds its folio lock and a reference through <paramref name="page"/>, the page it goes on with (and, KSM's
    /// try_to_merge_two_pages, maybe one more through <paramref name="partner"/>, another page of the same folio).
    /// Returns 0, -EAGAIN when a reference beyond the caller's one is held (4.5+: can_split_folio before the unmap,
    /// page_ref_freeze after), or -EBUSY for a folio that is not anonymous. On success every page is a small folio mapped
    /// where it was, and each caller reference sits on its page; <paramref name="page"/> holds the folio lock.
    /// </summary>
    /// <remarks>
    /// 4.13+ (the rmap walkers' start/end eras): unmap_folio replaces every mapping by a migration entry through
    /// try_to_migrate (TTU_SPLIT_HUGE_PMD: a PMD mapping is split first, with its own CLEAR range), the folio is split,
    /// and remap_page puts the entries back without a notifier (the secondaries had nothing left to map). Before 4.13 the
    /// PMDs are split (each with the era's notifier) and the folio is split under its PTEs, which stay mapped, as the
    /// pre-4.5 __split_huge_page_map did; 4.5-4.12's freeze_page (migration entries with invalidate_page) is not
    /// modelled. Before 4.5 the kernel split regardless of references (its tail pins followed the tail pages); the model
    /// cannot tell whose page an unknown reference is on, so it splits only when the caller holds all the extra ones.
    /// The 6.12+ remap of zero-filled pages to the shared zero page (RMP_USE_SHARED_ZEROPAGE) is not modelled.
    /// </remarks>
    public static async ValueTask<int> SplitHugePage(Kernel k, long head, long page, long partner = -1)
    {
        using var _ = k.S.Current.Enter("split_huge_page");
        if (!k.Mem.IsLarge(head) || k.Mem.FolioOf(page) != head || (partner >= 0 && k.Mem.FolioOf(partner) != head))
            throw new ModelException($"split_huge_page(0x{page:x}) of no THP 0x{head:x}");
        if (!FolioLock.IsLocked(k, head)) throw new ModelException($"split_huge_page(0x{head:x}) without the folio lock");
        if (!k.Mem[head].Has(PageFlags.Anon)) return Errno.EBUSY; // no anon_vma to walk (only anon THPs are modelled)
        int callerRefs = k.Era.Has(Feature.ThpSplitRefcountCheck) || partner < 0 ? 1 : 2;
        int nr = k.Mem.FolioNr(head);
        await k.S.Point(PointKind.Counter, (ulong)head);
        // can_split_folio: the mappings and the caller's pin only.
        if (k.Mem[head].RefCount != k.Mem.FolioMapCount(head) + callerRefs) return Errno.EAGAIN;
        if (k.Era.Has(Feature.RmapRangeNotify))
        {
            await Rmap.TryToMigrate(k, new TtuState(head, nr, migrate: true) { SplitHugePmd = true }); // unmap_folio
            await k.S.Point(PointKind.Counter, (ulong)head);
            if (k.Mem.FolioMapCount(head) != 0 || k.Mem[head].RefCount != callerRefs) // folio_ref_freeze(folio, 1 + extra_pins)
            {
                await Migrate.RemoveMigrationPtes(k, head, head); // remap_page of the unsplit folio
                return Errno.EAGAIN;
            }
        }
        else
        {
            await Rmap.RmapWalk(k, head, async (vma, addr, first, count) =>
            {
                if (first == 0 && count == PhysMem.HugePages && (addr & ~MmStruct.PmdMask) == 0) await SplitHugePmd(vma, addr, notify: true);
                return true;
            });
            await k.S.Point(PointKind.Counter, (ulong)head);
            if (k.Mem.EntireMapcountHolder(head).RefCount != 0 || k.Mem[head].RefCount != k.Mem.FolioMapCount(head) + callerRefs)
                return Errno.EAGAIN; // mapped by a PMD again, or referenced meanwhile: the PMD splits stay, the folio does not
        }
        // __split_huge_page: every new folio starts with its mappings' references and one more (page_ref_unfreeze),
        // which the caller's pages keep as the caller's and the others drop; the caller's old references are consumed.
        k.Mem.SplitFolio(head);
        for (long p = head; p < head + nr; p++) k.Mem[p].RefCount = k.Mem[p].MapCount + 1;
        FolioLock.MoveAfterSplit(k, head, page);
        if (k.Era.Has(Feature.RmapRangeNotify))
            for (long p = head; p < head + nr; p++) await Migrate.RemoveMigrationPtes(k, p, p); // remap_page
        long second = callerRefs == 2 ? partner : -1;
        for (long p = head; p < head + nr; p++)
            if (p != page && p != second) Folio.Put(k, p);
        k.Stats.Inc(Stat.ThpSplitPages);
        return 0;
    }

    /// <summary>
    /// zap_huge_pmd: clear a huge PMD inside the caller's invalidation, transfer dirty to the folio, drop the PMD
    /// mapping and queue the folio reference in the mmu_gather (freed after end, at tlb_finish_mmu). Returns false
    /// when the PMD was no longer huge once locked (split meanwhile): the caller zaps the PTE table instead.
    /// </summary>
    /// <summary>make_pte_marker(PTE_MARKER_UFFD_WP) in a hugetlb entry (set_huge_pte_at: the model keeps the huge bit).</summary>
    public static readonly Pte HugetlbUffdWpMarker = new(Pte.Marker(uffdWp: true, poisoned: false).Raw | Pte.HugeBit);

    public static async ValueTask<bool> ZapHugePmd(MmuGather tlb, Vma vma, ulong addr)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("zap_huge_pmd");
        ulong haddr = addr & MmStruct.PmdMask;
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        bool full = false, huge = pmd.Present && pmd.Huge;
        if (pmd.IsMigration && !vma.IsHugetlb)
        {
            // zap_huge_pmd of a PMD migration entry (4.14+): cleared; it holds neither a reference nor a mapping (the
            // migration holds the folio), so only the entry goes (the model took its MM_ANONPAGES when it was made).
            await mm.SetPmd(haddr, Pte.None);
            huge = true;
        }
        else if (huge)
        {
            await mm.SetPmd(haddr, Pte.None);
            // __unmap_hugepage_range (5.19+): a uffd-wp hugetlb entry leaves a PTE_MARKER_UFFD_WP unless the zap drops markers.
            if (vma.IsHugetlb && pmd.UffdWp && (vma.Flags & VmFlags.UffdWp) != 0 && !tlb.DropMarkers)
                await mm.SetPmd(haddr, HugetlbUffdWpMarker);
            tlb.TrackRange(haddr, haddr + MmStruct.PmdSize);
            k.S.Charge(CostKind.Zap);
            k.Stats.Inc(Stat.PagesZapped, PhysMem.HugePages);
            if (pmd.Special) { } // is_huge_zero_pmd: no rmap, no reference to drop
            else
            {
                if (pmd.Dirty) Folio.MarkDirty(k, pmd.Pfn);
                Folio.RemoveRmapPmd(k, pmd.Pfn, mm);
                if (k.Mutated(Mutation.FreeBeforeEnd)) Folio.Put(k, pmd.Pfn);
                else full = tlb.RemovePage(pmd.Pfn);
            }
        }
        await mm.UnlockPmd(haddr);
        if (full) await tlb.FlushMmu();
        return huge;
    }
}
