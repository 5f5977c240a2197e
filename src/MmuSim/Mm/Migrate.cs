using MmuSim.Eras;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>Waiters for migration entries (folio_wait_bit on the locked folio), one per kernel.</summary>
sealed class MigrationWaiters(Kernel k)
{
    public WaitQueue Wq { get; } = new(k.S, "migration_entry_wait");
}

/// <summary>mm/migrate.c: migration of one folio (anon, page cache, KSM), and move_pages(2).</summary>
public static class Migrate
{
    static WaitQueue Waiters(Kernel k) => k.GetSubsystem(kk => new MigrationWaiters(kk)).Wq;

    /// <summary>
    /// migrate_pages for one folio (migrate_folio_unmap + migrate_folio_move): isolate it, allocate the destination
    /// (on <paramref name="node"/> with __GFP_THISNODE, as alloc_migration_target; anywhere when -1), try_to_migrate
    /// (migration entries; start/end CLEAR from 4.13), check that only the expected references are left
    /// (folio_migrate_mapping: the isolation's, plus the page cache's for a file or shmem folio), move the page-cache
    /// entry or the KSM stable node to the new folio (ksm_migrate_folio), copy contents and flags,
    /// remove_migration_ptes to the new folio, and free the old one. On failure the migration entries are restored to
    /// the old folio. Anon, page-cache (shmem, memfd, regular file) and, where the era has it, KSM folios migrate.
    /// Returns the new head pfn or -1.
    /// </summary>
    public static async ValueTask<long> MigrateFolio(Kernel k, long pfn, int node = -1)
    {
        using var _ = k.S.Current.Enter("migrate_pages");
        await k.S.Point(PointKind.Counter, (ulong)pfn);
        long head = k.Mem.FolioOf(pfn);
        if (SplitsBeforeMigration(k, head))
        {
            // unmap_and_move before THP migration: split_huge_page first, then the page itself moves as a small folio.
            Folio.Get(k, head);
            if (!await SplitForMigration(k, head, pfn)) return -1;
            Folio.Put(k, pfn);
            head = pfn;
        }
        if (!Migratable(k, head) || !Vmscan.IsolateLruFolio(k, head)) return -1;
        Folio.Get(k, head); // the isolation reference
        return await MigrateIsolatedFolio(k, head, node);
    }

    /// <summary>
    /// Is the folio one migrate_pages can move: an anon folio, a page-cache folio still in its file, or (from
    /// <see cref="Feature.KsmFolioMigration"/>) a KSM folio; not the zero page, a free frame or a device page.
    /// </summary>
    static bool Migratable(Kernel k, long head)
    {
        ref var f = ref k.Mem[head];
        if (head == PhysMem.ZeroPfn || f.Has(PageFlags.Free) || f.Has(PageFlags.Zero)) return false;
        if (f.Has(PageFlags.Ksm)) return k.Era.Has(Feature.KsmFolioMigration);
        if (Hugetlb.HugetlbPages.IsHugetlbFolio(k, head)) return f.Has(PageFlags.Anon) && k.Era.Has(Feature.HugetlbMigration);
        if (f.Has(PageFlags.Anon)) return true;
        // A huge page-cache folio moves whole from 4.13 (its PMD mappings are split away first, TTU_SPLIT_HUGE_PMD); the
        // model does not split one into small folios, which is what the kernel did before THP migration.
        return k.AddressSpaceById(f.AnonRoot) is { } file && file.Pages.TryGetValue(f.Index, out long cached) && cached == head
            && (!k.Mem.IsHuge(head) || k.Era.Has(Feature.RmapRangeNotify));
    }

    /// <summary>
    /// Before <see cref="Feature.ThpMigration"/> (2.6.38-4.13) migration never moved a THP whole: unmap_and_move and
    /// do_move_page_to_node_array (FOLL_SPLIT) split an anonymous one with split_huge_page first. Hugetlb and KSM
    /// folios are not THPs; mTHPs do not exist in those eras.
    /// </summary>
    static bool SplitsBeforeMigration(Kernel k, long head) =>
        !k.Era.Has(Feature.ThpMigration) && k.Mem.IsHuge(head) && k.Mem[head].Has(PageFlags.Anon)
        && !k.Mem[head].Has(PageFlags.Ksm) && !Hugetlb.HugetlbPages.IsHugetlbFolio(k, head);

    /// <summary>
    /// split_huge_page of <paramref name="head"/> under its folio lock, the caller holding one reference through the
    /// folio; on success the reference sits on <paramref name="page"/>. On failure (an extra reference) the caller's
    /// reference is dropped and false returned: the page is not migrated (-EBUSY for move_pages).
    /// </summary>
    static async ValueTask<bool> SplitForMigration(Kernel k, long head, long page)
    {
        await FolioLock.Lock(k, head);
        bool ok = await HugeMemory.SplitHugePage(k, head, page) == 0;
        await FolioLock.Unlock(k, ok ? page : head); // split_huge_page left the page we go on with locked
        if (!ok) Folio.Put(k, head);
        return ok;
    }

    /// <summary>NR_MAX_MIGRATE_PAGES_RETRY: the passes migrate_pages_batch makes over a folio that answers -EAGAIN.</summary>
    public const int MaxMigratePagesRetry = 10;

    /// <summary>
    /// migrate_pages_batch for one folio the caller isolated (holding the isolation reference): up to
    /// <see cref="MaxMigratePagesRetry"/> passes of folio_lock, try_to_migrate and the reference check; a pass that
    /// finds extra references (-EAGAIN: a fault, a GUP or a pin holds the folio) restores the mappings, unlocks and tries
    /// again, so a fault sleeping on the folio lock finishes in between. The destination stays locked until its
    /// mappings are in place, so a fault that finds it in the page cache waits for them.
    /// </summary>
    /// <remarks>A hugetlb folio (3.12+, unmap_and_move_huge_page) takes the same passes with its own target allocation
    /// and its own unmap and remap of the huge entries (<see cref="Hugetlb.HugetlbMigration"/>).</remarks>
    static async ValueTask<long> MigrateIsolatedFolio(Kernel k, long head, int node)
    {
        ref var f = ref k.Mem[head];
        bool ksm = f.Has(PageFlags.Ksm);
        var file = f.Has(PageFlags.Anon) || ksm ? null : k.AddressSpaceById(f.AnonRoot);
        bool hugetlb = Hugetlb.HugetlbPages.IsHugetlbFolio(k, head);
        int order = k.Mem.FolioOrder(head), n = 1 << order;
        bool huge = order > 0;
        await k.S.Point(PointKind.Alloc, (ulong)head);
        long dst = hugetlb ? Hugetlb.HugetlbPages.Of(k).AllocMigrationTarget(node)
            : node < 0 ? (huge ? k.Mem.AllocLarge(order) : k.Mem.AllocPage())
            : huge ? k.Mem.AllocLarge(order, node, thisNode: true) : k.Mem.AllocPage(node, thisNode: true);
        if (dst < 0)
        {
            Vmscan.PutbackLru(k, head);
            Folio.Put(k, head);
            return -1;
        }
        int expected = file != null ? 1 + n : 1; // folio_expected_refs: + the page cache's references (one per index)
        for (int pass = 1; ; pass++)
        {
            await FolioLock.Lock(k, head); // migrate_folio_unmap: folio_trylock, else folio_lock (MIGRATE_SYNC)
            if (hugetlb) await Hugetlb.HugetlbMigration.TryToMigrate(k, head);
            else await Rmap.TryToMigrate(k, new TtuState(head, n, migrate: true));
            await k.S.Point(PointKind.Counter, (ulong)head);
            if (k.Mem.FolioMapCount(head) == 0 && k.Mem[head].RefCount == expected) break;
            await Remap(k, hugetlb, head, head); // -EAGAIN: migrate_folio_undo_src
            await FolioLock.Unlock(k, head);
            if (pass < MaxMigratePagesRetry) continue;
            Folio.Put(k, dst);
            Vmscan.PutbackLru(k, head);
            Folio.Put(k, head);
            return -1;
        }
        FolioLock.TryLockNew(k, dst); // the new folio is locked (folio_trylock of a fresh folio cannot fail)
        // folio_migrate_mapping (the page cache now points at dst) + folio_migrate_copy + folio_migrate_flags
        const PageFlags keep = PageFlags.Dirty | PageFlags.Anon | PageFlags.Ksm | PageFlags.Lazyfree | PageFlags.AnonExclusive | PageFlags.Referenced;
        for (int i = 0; i < n; i++)
        {
            ref var s = ref k.Mem[head + i];
            ref var d = ref k.Mem[dst + i];
            d.Contents = s.Contents;
            d.Flags = (d.Flags & (PageFlags.Head | PageFlags.Tail)) | (s.Flags & keep);
            d.Index = s.Index;
            k.S.Charge(CostKind.CopyPage);
        }
        k.Mem[dst].AnonRoot = k.Mem[head].AnonRoot;
        // xas_store: the allocation's reference becomes the cache's (a huge folio's head gets one per index).
        if (file != null && n > 1) file.StoreHugeFolio(k, dst, k.Mem[head].Index);
        else if (file != null) file.Pages[k.Mem[head].Index] = dst;
        if (ksm) Ksm.Ksmd.KsmMigrateFolio(k, head, dst);
        await Remap(k, hugetlb, head, dst);
        await FolioLock.Unlock(k, dst);
        await FolioLock.Unlock(k, head);
        if (file == null) Folio.Put(k, dst);  // the allocation reference: the new folio is now held by its mappings
        else for (int i = 0; i < n; i++) Folio.Put(k, head); // the page cache's references to the old folio
        await k.S.Point(PointKind.Free, (ulong)head);
        Vmscan.PutbackLru(k, head);
        Folio.Put(k, head); // the isolation reference: frees the old folio
        k.Stats.Inc(Stat.PagesMigrated, n);
        return dst;
    }

    /// <summary>remove_migration_ptes for a small or THP folio, or its hugetlb form for the huge entries.</summary>
    static ValueTask Remap(Kernel k, bool hugetlb, long src, long dst) =>
        hugetlb ? Hugetlb.HugetlbMigration.RemoveMigrationPtes(k, src, dst) : RemoveMigrationPtes(k, src, dst);

    /// <summary>MPOL_MF_MOVE / MPOL_MF_MOVE_ALL of move_pages(2) and mbind(2).</summary>
    public enum MoveFlags { Move, MoveAll }

    /// <summary>
    /// add_folio_for_migration for one address: -EFAULT (no VMA), -ENOENT (nothing mapped, or the zero page: FOLL_DUMP;
    /// a KSM page before <see cref="Feature.KsmFolioMigration"/>, skipped as PageReserved is), 0 (already on
    /// <paramref name="node"/>), -EACCES (mapped by more than one process without MPOL_MF_MOVE_ALL), -EBUSY (cannot be
    /// isolated), or 1 with the folio isolated (the isolation reference held) for the batch.
    /// </summary>
    static async ValueTask<(int Err, long Head)> AddFolioForMigration(MmStruct mm, ulong addr, int node, MoveFlags flags)
    {
        var k = mm.Kernel;
        var vma = mm.FindVma(addr);
        if (vma == null) return (Errno.EFAULT, -1);
        var r = await Gup.FollowPage(mm, vma, addr, GupFlags.Get | GupFlags.FollowProtNone); // FOLL_GET | FOLL_DUMP
        if (r.Pfn < 0) return (Errno.ENOENT, -1);
        long head = k.Mem.FolioOf(r.Pfn);
        if (SplitsBeforeMigration(k, head))
        {
            // FOLL_SPLIT (before 4.14): follow_page splits the THP and returns the small page.
            if (!await SplitForMigration(k, head, r.Pfn)) return (Errno.EBUSY, -1);
            head = r.Pfn;
        }
        int err = head == PhysMem.ZeroPfn ? Errno.ENOENT
            : k.Mem[head].Has(PageFlags.Ksm) && !k.Era.Has(Feature.KsmFolioMigration) ? Errno.ENOENT
            : k.Mem.NodeOf(head) == node ? 0
            : k.Mem.FolioMapCount(head) > 1 && flags != MoveFlags.MoveAll ? Errno.EACCES // folio_likely_mapped_shared
            : !Migratable(k, head) || !Vmscan.IsolateLruFolio(k, head) ? Errno.EBUSY
            : 1;
        if (err == 1) Folio.Get(k, head); // the isolation reference
        Folio.Put(k, r.Pfn);              // follow_page's
        return (err, head);
    }

    /// <summary>
    /// move_pages(2) (kernel_move_pages: do_pages_move, or do_pages_stat when <paramref name="nodes"/> is null) on
    /// <paramref name="mm"/>. Status per page: the node it is on after the call, or a negative errno. The return value
    /// is 0, the number of pages that could not be migrated (migrate_pages failed: the kernel returns at once, leaving
    /// the later statuses unwritten, here int.MinValue), or -ENODEV for a node that has no memory. The pages are taken
    /// one batch per run of equal target nodes, as do_pages_move groups them; mmap_lock is held for read per page.
    /// </summary>
    public static async ValueTask<(int Ret, int[] Status)> MovePages(MmStruct mm, ulong[] pages, int[]? nodes, MoveFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter(nodes == null ? "do_pages_stat" : "do_pages_move");
        var status = new int[pages.Length];
        Array.Fill(status, int.MinValue);
        if (nodes == null)
        {
            for (int i = 0; i < pages.Length; i++)
            {
                await mm.MmapLock.ReadLock();
                await k.S.Point(PointKind.PteRead, pages[i]);
                var vma = mm.FindVma(pages[i]);
                long pfn = -1;
                if (vma != null && (await Gup.FollowPage(mm, vma, pages[i], GupFlags.Get | GupFlags.FollowProtNone)).Pfn is >= 0 and var p)
                {
                    pfn = p;
                    Folio.Put(k, p);
                }
                status[i] = vma == null ? Errno.EFAULT : pfn <= 0 ? Errno.ENOENT : k.Mem.NodeOf(pfn);
                await mm.MmapLock.ReadUnlock();
            }
            return (0, status);
        }
        var batch = new List<(int Index, long Head)>();
        int batchNode = -1;
        for (int i = 0; i <= pages.Length; i++)
        {
            if (i == pages.Length || nodes[i] != batchNode)
            {
                // move_pages_and_store_status for the run that just ended
                int failed = 0;
                foreach (var (idx, h) in batch)
                    if (await MigrateIsolatedFolio(k, h, batchNode) < 0) failed++;
                    else status[idx] = batchNode;
                batch.Clear();
                if (failed > 0) return (failed + pages.Length - i, status);
                if (i == pages.Length) break;
                batchNode = nodes[i];
                if (batchNode < 0 || batchNode >= k.Mem.Nodes) return (Errno.ENODEV, status);
            }
            await mm.MmapLock.ReadLock();
            await k.S.Point(PointKind.PteRead, pages[i]);
            var (err, head) = await AddFolioForMigration(mm, pages[i], batchNode, flags);
            if (err == 1) batch.Add((i, head));
            else status[i] = err == 0 || (err == Errno.EBUSY && batch.Exists(b => b.Head == head)) ? batchNode : err; // a folio already queued
            await mm.MmapLock.ReadUnlock();
        }
        return (0, status);
    }

    /// <summary>
    /// The migration entry try_to_migrate_one, set_pmd_migration_entry and migrate_vma_collect_pmd put in place of
    /// <paramref name="old"/>: writable if <paramref name="write"/>, else readable-exclusive if <paramref name="exclusive"/>
    /// (the page was PageAnonExclusive), else readable; with the old entry's soft-dirty and uffd-wp bits, and from 6.1
    /// the young and dirty bits of a present one (make_migration_entry_young/dirty). <paramref name="huge"/>: a PMD-level
    /// entry (swp_entry_to_pmd, or set_huge_pte_at for hugetlb).
    /// </summary>
    internal static Pte MakeMigrationEntry(Kernel k, bool write, long pfn, Pte old, bool exclusive, bool huge = false)
    {
        var e = huge ? Pte.HugeMigrationEntry(write, pfn, old.UffdWp)
            : Pte.SwapEntry(write ? SwapType.MigrationWrite : SwapType.MigrationRead, pfn).WithUffdWp(old.UffdWp);
        e = e.WithMigrationExclusive(exclusive).WithSoftDirty(old.SoftDirty);
        return old.Present && k.Era.Has(Feature.MigrationEntryAd) ? e.WithMigrationAd(old.Accessed, old.Dirty) : e;
    }

    /// <summary>
    /// The entry remove_migration_pte (or remove_migration_pmd, <paramref name="huge"/>) maps <paramref name="dst"/> with
    /// in place of migration <paramref name="entry"/>: mk_pte with vm_page_prot, writable if the entry was and the VMA is,
    /// the entry's soft-dirty and uffd-wp bits; old and clean before 6.1 (pte_mkold); from 6.1 young if the entry is and
    /// dirty if the entry and the folio are (pte_mkdirty, which on x86 sets soft-dirty too).
    /// </summary>
    internal static Pte RemapEntry(Kernel k, Vma vma, Pte entry, long dst, bool huge = false)
    {
        bool ad = k.Era.Has(Feature.MigrationEntryAd);
        bool w = entry.SwapKind == SwapType.MigrationWrite && vma.Writable;
        bool dirty = ad && entry.IsMigrationDirty && Folio.IsDirty(k, dst);
        var pte = vma.MkPte(dst, w, dirty, huge, accessed: ad && entry.IsMigrationYoung).WithUffdWp(entry.UffdWp);
        return entry.SoftDirty ? pte.WithSoftDirty(true) : pte;
    }

    /// <summary>
    /// remove_migration_ptes: walk the folio's rmap and replace every migration entry for <paramref name="src"/> by a
    /// PTE to the same sub-page of <paramref name="dst"/> (plain set_pte_at, no notifier: the secondaries had nothing
    /// mapped), then wake the faults waiting on the entries. <paramref name="dst"/> == <paramref name="src"/> restores.
    /// </summary>
    public static async ValueTask RemoveMigrationPtes(Kernel k, long src, long dst)
    {
        using var _ = k.S.Current.Enter("remove_migration_ptes");
        await Rmap.RmapWalk(k, dst, async (vma, addr, first, count) =>
        {
            var mm = vma.Mm;
            // page_vma_mapped_walk finds a PMD migration entry first: remove_migration_pmd (4.14+).
            if (first == 0 && count == PhysMem.HugePages && (addr & ~MmStruct.PmdMask) == 0 && mm.PeekPmd(addr) is { IsMigration: true, Huge: true } pm
                && pm.Pfn == src && await HugeMemory.RemoveMigrationPmd(vma, addr, src, dst))
                return true;
            for (int i = 0; i < count; i++)
            {
                ulong a = addr + (ulong)i * MmStruct.PageSize;
                long from = src + first + i, to = dst + first + i;
                var peek = mm.PeekPte(a);
                if (!peek.IsMigration || peek.Pfn != from) continue;
                int t = mm.PteTable(a);
                await mm.LockPtl(t);
                var pte = await mm.PtepGet(t, a);
                if (pte.IsMigration && pte.Pfn == from)
                {
                    await mm.SetPte(t, a, RemapEntry(k, vma, pte, to));
                    Folio.Get(k, to);
                    Folio.AddAnonRmap(k, to, mm);
                    // RMAP_EXCLUSIVE for a writable or readable-exclusive entry of an anonymous page.
                    if (pte.IsExclusiveMigration && k.Mem[k.Mem.FolioOf(to)].Has(PageFlags.Anon)) k.Mem[to].Set(PageFlags.AnonExclusive);
                }
                await mm.UnlockPtl(t);
            }
            return true;
        });
        Waiters(k).WakeAll();
    }

    /// <summary>The queue migration_entry_wait and migration_entry_wait_huge sleep on.</summary>
    internal static WaitQueue MigrationWaitQueue(Kernel k) => Waiters(k);

    /// <summary>Wake the faults sleeping in migration_entry_wait (folio_unlock of a migrated folio).</summary>
    public static void WakeMigrationWaiters(Kernel k) => Waiters(k).WakeAll();

    /// <summary>
    /// The sleep of pmd_migration_entry_wait and migration_entry_wait_huge (<paramref name="fn"/>): while the PMD at
    /// <paramref name="haddr"/> still holds <paramref name="entry"/>, sleep until a remove_migration_ptes wakes us; then
    /// the fault retries.
    /// </summary>
    internal static async ValueTask<VmFault> WaitWhilePmd(MmStruct mm, ulong haddr, Pte entry, string fn)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter(fn);
        while (true)
        {
            await k.S.Point(PointKind.PmdRead, haddr);
            if (mm.PeekPmd(haddr) != entry) return VmFault.Retry;
            await Waiters(k).Wait();
        }
    }

    /// <summary>
    /// migration_entry_wait: the fault found a migration entry; sleep until it is replaced (remove_migration_ptes wakes
    /// us), then let the fault retry.
    /// </summary>
    public static async ValueTask<VmFault> MigrationEntryWait(MmStruct mm, int t, ulong addr, Pte entry)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("migration_entry_wait");
        var wq = Waiters(k);
        while (true)
        {
            await k.S.Point(PointKind.PteRead, addr);
            if (mm.PteTable(addr) != t || mm.PeekPte(addr) != entry) return VmFault.Retry;
            await wq.Wait();
        }
    }
}
