using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>
/// What a migration entry (and a swap entry) carries over from the PTE it replaced: the young and dirty bits from 6.1
/// (2e3468778dbe "mm: remember young/dirty bit for page migrations": before it remove_migration_pte mapped the new page
/// pte_mkold and clean), and the soft-dirty bit in every era (pte_swp_mksoft_dirty, restored by remove_migration_pte and
/// do_swap_page, cleared in place by clear_refs 4).
/// </summary>
public class MigrationEntryBitsTests
{
    const ulong A = 0x10000;
    static readonly ulong SoftDirty = 1UL << TaskMmu.PmSoftDirty, Swap = 1UL << TaskMmu.PmSwap;

    /// <summary>A written page whose VMA lost VM_SOFTDIRTY: clear_refs 4, then a second write makes the PTE soft-dirty again.</summary>
    static (Kernel K, MmStruct Mm, long Pfn) SoftDirtyPage(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            Assert.True(await TaskMmu.ClearRefsWrite(mm));
        });
        Assert.Equal(0UL, TaskMmu.PagemapEntry(mm, A) & SoftDirty);
        Ok(k, async () => await Write(mm, A, 2));
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && pte.Writable && pte.Dirty && pte.Accessed && pte.SoftDirty);
        return (k, mm, pte.Pfn);
    }

    static void StartMigration(Kernel k, long pfn) => Ok(k, async () =>
    {
        Assert.True(Vmscan.IsolateLruFolio(k, pfn));
        Folio.Get(k, pfn); // the isolation reference
        await Rmap.TryToMigrate(k, new TtuState(pfn, 1, migrate: true));
    });

    static void UndoMigration(Kernel k, long pfn)
    {
        Ok(k, async () => await Migrate.RemoveMigrationPtes(k, pfn, pfn));
        Folio.Put(k, pfn);
    }

    [Theory]
    [InlineData("5.13", false)]
    [InlineData("6.1", true)]
    [InlineData("6.13", true)]
    public void MigrateAWrittenPage_TheNewPteIsYoungAndDirty_OnlyFrom61(string era, bool remembered)
    {
        var (k, mm, old) = SoftDirtyPage(era);
        StartMigration(k, old);
        var e = mm.PeekPte(A);
        Assert.True(e.IsMigration && e.SwapKind == SwapType.MigrationWrite);
        Assert.Equal(remembered, e.IsMigrationYoung);
        Assert.Equal(remembered, e.IsMigrationDirty);
        Assert.Equal(old, e.Pfn); // the A/D bits do not disturb the pfn (swp_offset_pfn)
        Assert.Equal(Swap | SoftDirty, TaskMmu.PagemapEntry(mm, A) & (Swap | SoftDirty));
        UndoMigration(k, old);
        var back = mm.PeekPte(A);
        Assert.True(back.Present && back.Writable && back.Pfn == old && back.SoftDirty);
        Assert.Equal(remembered, back.Accessed && back.Dirty);
        Consistent(k);

        (k, mm, old) = SoftDirtyPage(era);
        long dst = -1;
        Ok(k, async () => dst = await Migrate.MigrateFolio(k, old));
        Assert.True(dst > 0 && dst != old);
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && pte.Writable && pte.Pfn == dst && pte.SoftDirty);
        Assert.Equal(remembered, pte.Accessed);
        Assert.Equal(remembered, pte.Dirty);
        Assert.True(k.Mem[dst].Has(PageFlags.Dirty)); // the dirty bit went to the folio either way
        Ok(k, async () => Assert.Equal(2UL, await Read(mm, A)));
        Consistent(k);
    }

    /// <summary>
    /// The point of 2e3468778dbe: "not friendly to page reclaim because the moving page can be actively accessed". A
    /// page used just before its migration looks unreferenced afterwards before 6.1, so a reclaim pass that checks
    /// references (folio_referenced) swaps it out; from 6.1 the young PTE keeps it.
    /// </summary>
    [Theory]
    [InlineData("5.13", true)]
    [InlineData("6.13", false)]
    public void AfterMigration_ReclaimSeesTheAccessedBit_OnlyFrom61(string era, bool reclaimed)
    {
        var (k, mm, old) = SoftDirtyPage(era);
        long dst = -1;
        Ok(k, async () => dst = await Migrate.MigrateFolio(k, old));
        Assert.True(dst > 0);
        bool ok = false;
        Ok(k, async () => ok = await Vmscan.ShrinkFolio(k, dst, checkReferences: true));
        Assert.Equal(reclaimed, ok);
        Assert.Equal(reclaimed, mm.PeekPte(A).SwapKind == SwapType.Swap);
        Ok(k, async () => Assert.Equal(2UL, await Read(mm, A)));
        Consistent(k);
    }

    /// <summary>
    /// clear_refs 4 while the page migrates clears the migration entry's soft-dirty bit (pte_swp_clear_soft_dirty), so
    /// the page comes back clean for soft-dirty before 6.1. From 6.1 the entry's dirty bit makes remove_migration_pte call
    /// pte_mkdirty, which on x86 sets _PAGE_SOFT_DIRTY too ("this may contain setting soft-dirty on some archs"): the
    /// page reads soft-dirty again although nothing wrote it.
    /// </summary>
    [Theory]
    [InlineData("5.13", false)]
    [InlineData("6.13", true)]
    public void ClearRefsDuringMigration_ClearsTheEntrysSoftDirty_ThePteMkdirtyOf61SetsItAgain(string era, bool softDirtyAfter)
    {
        var (k, mm, pfn) = SoftDirtyPage(era);
        StartMigration(k, pfn);
        Ok(k, async () => Assert.True(await TaskMmu.ClearRefsWrite(mm)));
        var e = mm.PeekPte(A);
        Assert.True(e.IsMigration && !e.SoftDirty);
        Assert.Equal(Swap, TaskMmu.PagemapEntry(mm, A) & (Swap | SoftDirty));
        UndoMigration(k, pfn);
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && pte.Pfn == pfn);
        Assert.Equal(softDirtyAfter, pte.SoftDirty);
        Assert.Equal(softDirtyAfter ? SoftDirty : 0, TaskMmu.PagemapEntry(mm, A) & SoftDirty);
        Consistent(k);
    }

    /// <summary>
    /// Swap entries keep the soft-dirty bit too: try_to_unmap_one's pte_swp_mksoft_dirty, pagemap's PM_SOFT_DIRTY on
    /// the swap entry, clear_refs 4 clearing it in place, do_swap_page restoring it (pte_swp_soft_dirty).
    /// </summary>
    [Theory]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void SwapEntry_CarriesSoftDirty_ClearRefsClearsIt_SwapInRestoresWhatIsLeft(string era)
    {
        var (k, mm, pfn) = SoftDirtyPage(era);
        Ok(k, async () => Assert.True(await Vmscan.ShrinkFolio(k, pfn)));
        var e = mm.PeekPte(A);
        Assert.True(e.SwapKind == SwapType.Swap && e.SoftDirty);
        Assert.Equal(Swap | SoftDirty, TaskMmu.PagemapEntry(mm, A) & (Swap | SoftDirty));
        Ok(k, async () => Assert.Equal(2UL, await Read(mm, A))); // swap-in keeps the bit
        Assert.True(mm.PeekPte(A).Present && mm.PeekPte(A).SoftDirty);
        Ok(k, async () => Assert.True(await Vmscan.ShrinkFolio(k, mm.PeekPte(A).Pfn)));
        Ok(k, async () => Assert.True(await TaskMmu.ClearRefsWrite(mm)));
        Assert.Equal(Swap, TaskMmu.PagemapEntry(mm, A) & (Swap | SoftDirty));
        Ok(k, async () => Assert.Equal(2UL, await Read(mm, A)));
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && !pte.SoftDirty);
        Assert.Equal(0UL, TaskMmu.PagemapEntry(mm, A) & SoftDirty);
        Consistent(k);
    }
}
