using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>Waiters for migration entries (folio_wait_bit on the locked folio), one per kernel.</summary>
sealed class MigrationWaiters(Kernel k)
{
    public WaitQueue Wq { get; } = new(k.S, "migration_entry_wait");
}

/// <summary>mm/migrate.c: migration of one anonymous folio.</summary>
public static class Migrate
{
    static WaitQueue Waiters(Kernel k) => k.GetSubsystem(kk => new MigrationWaiters(kk)).Wq;

    /// <summary>
    /// migrate_pages for one folio (unmap_and_move / migrate_folio_unmap + migrate_folio_move): isolate it, allocate
    /// the destination, try_to_migrate (migration entries; start/end CLEAR from 4.13), check that only the isolation
    /// reference is left (folio_migrate_mapping), copy contents and flags, remove_migration_ptes to the new folio, and
    /// free the old one. On failure the migration entries are restored to the old folio. Returns the new head pfn or -1.
    /// </summary>
    public static async ValueTask<long> MigrateFolio(Kernel k, long pfn)
    {
        using var _ = k.S.Current.Enter("migrate_pages");
        await k.S.Point(PointKind.Counter, (ulong)pfn);
        long head = k.Mem.FolioOf(pfn);
        ref var f = ref k.Mem[head];
        if (head == PhysMem.ZeroPfn || f.Has(PageFlags.Free) || !f.Has(PageFlags.Anon) || f.Has(PageFlags.Ksm)) return -1;
        bool huge = k.Mem.IsHuge(head);
        int n = huge ? PhysMem.HugePages : 1;
        if (!Vmscan.IsolateLruFolio(k, head)) return -1;
        Folio.Get(k, head); // the isolation reference
        await k.S.Point(PointKind.Alloc, (ulong)head);
        long dst = huge ? k.Mem.AllocHuge() : k.Mem.AllocPage();
        if (dst < 0)
        {
            Vmscan.PutbackLru(k, head);
            Folio.Put(k, head);
            return -1;
        }
        await Rmap.TryToMigrate(k, new TtuState(head, n, migrate: true));
        await k.S.Point(PointKind.Counter, (ulong)head);
        if (k.Mem.FolioMapCount(head) != 0 || k.Mem[head].RefCount != 1)
        {
            await RemoveMigrationPtes(k, head, head);
            Folio.Put(k, dst);
            Vmscan.PutbackLru(k, head);
            Folio.Put(k, head);
            return -1;
        }
        // folio_migrate_copy + folio_migrate_flags
        const PageFlags keep = PageFlags.Dirty | PageFlags.Anon | PageFlags.Lazyfree | PageFlags.AnonExclusive | PageFlags.Referenced;
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
        await RemoveMigrationPtes(k, head, dst);
        Folio.Put(k, dst);  // the allocation reference: the new folio is now held by its mappings
        await k.S.Point(PointKind.Free, (ulong)head);
        Vmscan.PutbackLru(k, head);
        Folio.Put(k, head); // the isolation reference: frees the old folio
        k.Stats.Inc(Stat.PagesMigrated, n);
        return dst;
    }

    /// <summary>
    /// remove_migration_ptes: walk the folio's rmap and replace every migration entry for <paramref name="src"/> by a
    /// PTE to the same sub-page of <paramref name="dst"/> (plain set_pte_at, no notifier: the secondaries had nothing
    /// mapped), then wake the faults waiting on the entries. <paramref name="dst"/> == <paramref name="src"/> restores.
    /// </summary>
    public static async ValueTask RemoveMigrationPtes(Kernel k, long src, long dst)
    {
        using var _ = k.S.Current.Enter("remove_migration_ptes");
        bool dirty = k.Mem[dst].Has(PageFlags.Dirty);
        await Rmap.RmapWalk(k, dst, async (vma, addr, first, count) =>
        {
            var mm = vma.Mm;
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
                    bool w = pte.SwapKind == SwapType.MigrationWrite && vma.Writable;
                    var np = Pte.Make(to, w, dirty: dirty).WithUffdWp(pte.UffdWp); // remove_migration_pte: pte_swp_uffd_wp
                    await mm.SetPte(t, a, vma.Readable ? np : np.MkProtNone()); // mk_pte(vma->vm_page_prot)
                    Folio.Get(k, to);
                    Folio.AddAnonRmap(k, to, mm);
                }
                await mm.UnlockPtl(t);
            }
            return true;
        });
        Waiters(k).WakeAll();
    }

    /// <summary>Wake the faults sleeping in migration_entry_wait (folio_unlock of a migrated folio).</summary>
    public static void WakeMigrationWaiters(Kernel k) => Waiters(k).WakeAll();

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
