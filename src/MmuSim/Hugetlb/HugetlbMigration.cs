using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Hugetlb;

/// <summary>
/// Migration of a hugetlb folio (mm/migrate.c unmap_and_move_huge_page, from 3.12: e632a938d914 "mm: migrate: add
/// hugepage migration code to move_pages()"): allocate the target on the node (alloc_hugetlb_folio_nodemask: a free
/// huge page there, or a temporary surplus one, alloc_migrate_hugetlb_folio), replace every mapping's huge entry by a
/// hugetlb migration entry (try_to_migrate_one's hugetlb branch: huge_ptep_clear_flush, set_huge_pte_at of the swap
/// entry), copy the 2 MiB, and restore the entries to the new folio (remove_migration_pte: set_huge_pte_at,
/// hugetlb_add_anon_rmap). A fault on the entry sleeps in migration_entry_wait_huge.
/// </summary>
/// <remarks>
/// <para>Notifier placement per era, as for the other rmap walkers (Mm/Rmap.cs): from 4.13 a CLEAR start/end over the
/// huge page around the clear (adjust_range_if_pmd_sharing_possible widens it only for shared PMDs, which the model
/// does not have), with invalidate_range in 3.19-6.5; before 4.13 one invalidate_page for the huge page's first
/// address after the PMD lock is dropped (3.6-4.12; under it before 3.6): a secondary that maps the page with 4 KiB
/// entries keeps the other 511, the hugetlb sibling of §5(b).</para>
/// <para>Locking: the folio lock across the unmap, copy and remap; each entry changes under its PMD lock. Only
/// anonymous hugetlb folios migrate here (MAP_HUGETLB, private or shared); a hugetlbfs page-cache folio (memfd
/// MFD_HUGETLB) is refused as not migratable (-EBUSY), since moving its page-cache entry is not modelled.</para>
/// </remarks>
public static class HugetlbMigration
{
    /// <summary>
    /// try_to_migrate for a hugetlb folio (the unmap pass of unmap_and_move_huge_page; the passes, the reference check
    /// and the copy are Migrate.MigrateIsolatedFolio's): every mapping's huge entry becomes a migration entry.
    /// </summary>
    public static ValueTask TryToMigrate(Kernel k, long head) =>
        Rmap.RmapWalk(k, head, (vma, addr, first, count) => TryToMigrateOne(vma, addr, head), () => k.Mem.FolioMapCount(head) == 0);

    /// <summary>
    /// try_to_migrate_one's hugetlb branch for the mapping at <paramref name="haddr"/>: under the PMD lock, clear the
    /// huge entry (huge_ptep_clear_flush) and install a migration entry (writable if the entry was), remove the rmap
    /// and the mapping's reference; notified per era (see the class remarks).
    /// </summary>
    static async ValueTask<bool> TryToMigrateOne(Vma vma, ulong haddr, long head)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("try_to_migrate_one");
        bool rangeNotify = k.Era.Has(Feature.RmapRangeNotify);
        MmuNotifierRange? range = null;
        if (rangeNotify)
        {
            range = new MmuNotifierRange(mm, haddr, haddr + MmStruct.PmdSize, MmuNotifyEvent.Clear);
            await mm.Notifiers.InvalidateRangeStart(range);
        }
        bool unmapped = false;
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        if (pmd.Present && pmd.Huge && pmd.Pfn == head)
        {
            await mm.SetPmd(haddr, Pte.None); // huge_ptep_clear_flush
            await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
            if (rangeNotify && k.Era.Has(Feature.InvalidateRange)) await mm.Notifiers.InvalidateRange(haddr, haddr + MmStruct.PmdSize);
            else if (!rangeNotify && k.Era.Has(Feature.InvalidatePageUnderPtl)) await mm.Notifiers.InvalidatePage(haddr);
            if (pmd.Dirty) k.Mem[head].Set(PageFlags.Dirty);
            await mm.SetPmd(haddr, Migrate.MakeMigrationEntry(k, pmd.Writable, head, pmd, exclusive: false, huge: true));
            await k.S.Point(PointKind.Counter, haddr);
            Folio.RemoveRmapPmd(k, head, mm); // hugetlb_remove_rmap
            Folio.Put(k, head);
            unmapped = true;
        }
        await mm.UnlockPmd(haddr);
        if (unmapped && !rangeNotify && k.Era.Has(Feature.InvalidatePageAfterPtl)) await mm.Notifiers.InvalidatePage(haddr);
        if (range != null) await mm.Notifiers.InvalidateRangeEnd(range);
        return true;
    }

    /// <summary>
    /// remove_migration_ptes for a hugetlb folio: every mapping's migration entry for <paramref name="src"/> becomes a
    /// huge entry of <paramref name="dst"/> (writable if the entry was and the VMA is), with hugetlb_add_anon_rmap and
    /// a reference; no notifier (the secondaries had nothing mapped). Then the waiting faults are woken.
    /// </summary>
    internal static async ValueTask RemoveMigrationPtes(Kernel k, long src, long dst)
    {
        using var _ = k.S.Current.Enter("remove_migration_ptes");
        await Rmap.RmapWalk(k, dst, async (vma, haddr, first, count) =>
        {
            var mm = vma.Mm;
            await mm.LockPmd(haddr);
            var pmd = await mm.PmdpGet(haddr);
            if (pmd.IsMigration && pmd.Pfn == src)
            {
                await mm.SetPmd(haddr, Migrate.RemapEntry(k, vma, pmd, dst, huge: true));
                Folio.Get(k, dst);
                k.Mem.EntireMapcountHolder(dst).RefCount++; // hugetlb_add_anon_rmap
                mm.RssAnon += PhysMem.HugePages;
            }
            await mm.UnlockPmd(haddr);
            return true;
        });
        Migrate.WakeMigrationWaiters(k);
    }

    /// <summary>
    /// migration_entry_wait_huge: hugetlb_fault found a migration entry at <paramref name="haddr"/>; sleep until it is
    /// replaced, then let the fault retry.
    /// </summary>
    public static ValueTask<VmFault> MigrationEntryWaitHuge(MmStruct mm, ulong haddr, Pte entry) =>
        Migrate.WaitWhilePmd(mm, haddr, entry, "migration_entry_wait_huge");
}
