using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class MigrateTests
{
    const ulong A = 0x10000, H = 0x200000;

    [Theory]
    [InlineData("2.6.32", "IP(10000)!", "IP:live")]
    [InlineData("4.13", "S(10000,11000) IR(10000,11000)! IR(10000,11000) E(10000,11000)", "S:live E:live")]
    [InlineData("6.13", "S(10000,11000,Clear) E(10000,11000,Clear)", "S:live E:live")]
    public void MigrateOnePage_MovesContents_RemoveMigrationPtesIsNotNotified(string era, string expected, string probeLog)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 123));
        long old = mm.PeekPte(A).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, old);
        bool sawEntry = false;
        probe.OnEnd = () => sawEntry = mm.PeekPte(A).IsMigration;
        long dst = -1;
        Ok(k, async () => dst = await Migrate.MigrateFolio(k, old));
        Assert.True(dst > 0 && dst != old);
        Assert.Equal(expected, Seq(rec));
        Assert.Equal(probeLog, string.Join(" ", probe.Log));
        if (probe.Log.Contains("E:live")) Assert.True(sawEntry);
        Assert.True(k.Mem[old].Has(PageFlags.Free));
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && pte.Writable);
        Assert.Equal(dst, pte.Pfn);
        Assert.Equal(123UL, k.Mem[dst].Contents);
        Assert.Equal(1, k.Mem[dst].RefCount);
        Assert.Equal(1, k.Mem[dst].MapCount);
        Assert.True(k.Mem[dst].Has(PageFlags.Dirty)); // the PTE's dirty bit went to the folio
        Ok(k, async () => Assert.Equal(123UL, await Read(mm, A)));
        Consistent(k);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void Migrate_FailsAndRestores_WhenAnExtraReferenceIsHeld(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 5));
        long old = mm.PeekPte(A).Pfn;
        Ok(k, async () =>
        {
            var g = await Gup.GetUserPage(mm, A, write: true);
            Assert.Equal(-1, await Migrate.MigrateFolio(k, old));
            Folio.Put(k, g.Pfn);
        });
        Assert.Equal(old, mm.PeekPte(A).Pfn);
        Assert.True(mm.PeekPte(A).Writable);
        Assert.Equal(1, k.Mem[old].RefCount);
        Assert.Equal(1, k.Mem[old].MapCount);
        Consistent(k);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void FaultOnMigrationEntry_WaitsUntilItIsReplaced_ThenRetries(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 9));
        long old = mm.PeekPte(A).Pfn;
        var probe = Probe(k, mm, old);
        probe.SleepInEnd = 1000; // the migrating CPU sleeps in end: the entries are installed, not yet replaced
        ulong? seen = null;
        bool sawEntryOnFault = false;
        k.S.Spawn("migrate", async _ => await Migrate.MigrateFolio(k, old));
        k.S.Spawn("reader", async _ =>
        {
            sawEntryOnFault = mm.PeekPte(A).IsMigration;
            seen = await Read(mm, A);
        });
        Assert.Null(k.Run());
        Assert.True(sawEntryOnFault);
        Assert.Equal(9UL, seen);
        Assert.NotEqual(old, mm.PeekPte(A).Pfn);
        Consistent(k);
    }

    /// <summary>
    /// Before THP migration (2.6.38-4.13) unmap_and_move split an anonymous THP with split_huge_page and migrated only
    /// the page it was given: the other 511 stay where they were, PTE-mapped.
    /// </summary>
    [Theory]
    [InlineData("3.7", "S(200000,400000) E(200000,400000) | IP(203000)")]
    [InlineData("4.13", "S(200000,400000) IR(200000,400000) E(200000,400000) | S(203000,204000) IR(203000,204000)! IR(203000,204000) E(203000,204000)")]
    public void MigrateThp_BeforeThpMigration_SplitsTheThp_MovesOnlyThePage(string era, string expected)
    {
        var (k, mm, old) = WrittenThp(era);
        var rec = Recorder(k, mm);
        long dst = -1;
        Ok(k, async () => dst = await Migrate.MigrateFolio(k, old + 3));
        Assert.False(k.Mem.IsLarge(dst));
        Assert.False(k.Mem.IsLarge(old));
        Assert.True(k.Mem[old + 3].Has(PageFlags.Free));
        Assert.Equal(dst, mm.PeekPte(H + 0x3000).Pfn);
        Assert.Equal(old, mm.PeekPte(H).Pfn); // not moved
        Assert.Equal(1, k.Mem[dst].RefCount);
        Assert.Equal(1, k.Stats[Stat.PagesMigrated]);
        // The split's notifications (its own 2 MiB range; from 4.13 unmap_folio's migration entries too), then the one
        // page's migration: invalidate_page after the PTL (3.6-4.12), or its own 4 KiB range.
        var (split, page) = (expected.Split(" | ")[0], expected.Split(" | ")[1]);
        Assert.StartsWith(split, Seq(rec));
        Assert.EndsWith(page, Seq(rec));
        Ok(k, async () =>
        {
            Assert.Equal(3UL, await Read(mm, H + 0x3000));
            Assert.Equal(1UL, await Read(mm, H));
        });
        Consistent(k);
    }

    /// <summary>
    /// THP migration (4.14+): try_to_migrate_one replaces the huge PMD by a PMD migration entry inside one CLEAR range
    /// over the 2 MiB (no split, no second range), and remove_migration_pmd maps the new folio with a huge PMD again:
    /// writable, exclusive, one entire mapping and one reference, without a notifier; old and clean before 6.1
    /// (pmd_mkold), young and dirty from 6.1 (the entry remembered the A/D bits: 2e3468778dbe).
    /// </summary>
    [Theory]
    [InlineData("4.15", "S(200000,400000) IR(200000,400000) E(200000,400000)")]
    [InlineData("5.13", "S(200000,400000,Clear) IR(200000,400000) E(200000,400000,Clear)")]
    [InlineData("6.13", "S(200000,400000,Clear) E(200000,400000,Clear)")]
    public void MigrateThp_PmdMigrationEntry_StaysPmdMapped(string era, string expected)
    {
        var (k, mm, old) = WrittenThp(era);
        long rss = mm.RssAnon;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, old);
        Pte atStart = default, atEnd = default;
        probe.OnStart = () => atStart = mm.PeekPmd(H);
        probe.OnEnd = () => atEnd = mm.PeekPmd(H);
        long dst = -1;
        Ok(k, async () => dst = await Migrate.MigrateFolio(k, old));
        Assert.Equal(expected, Seq(rec));
        Assert.True(atStart.Present && atStart.Huge && atStart.Pfn == old); // the secondaries are told first
        Assert.True(atEnd.IsMigration && atEnd.Huge && atEnd.Pfn == old && atEnd.SwapKind == SwapType.MigrationWrite);
        bool ad = era == "6.13";
        Assert.Equal(ad, atEnd.IsMigrationYoung && atEnd.IsMigrationDirty);
        Assert.True(k.Mem.IsHuge(dst) && k.Mem[old].Has(PageFlags.Free));
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable);
        Assert.Equal(ad, pmd.Dirty);
        Assert.Equal(ad, pmd.Accessed);
        Assert.True(k.Mem[dst].Has(PageFlags.Dirty)); // the PMD's dirty bit went to the folio either way
        Assert.Equal(dst, pmd.Pfn);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(dst).RefCount);
        Assert.Equal(1, k.Mem[dst].RefCount);
        Assert.Equal(0, k.Mem[dst + 3].MapCount);
        Assert.True(k.Mem[dst].Has(PageFlags.AnonExclusive));
        Assert.Equal(rss, mm.RssAnon);
        Assert.Equal(1, k.Stats[Stat.PagesMigrated] / PhysMem.HugePages);
        Ok(k, async () =>
        {
            Assert.Equal(1UL, await Read(mm, H));
            Assert.Equal(3UL, await Read(mm, H + 0x3000));
            await Write(mm, H + 0x5000, 5); // writable: no fault, no copy
        });
        Assert.Equal(dst + 5, mm.Translate(H + 0x5000).Pfn);
        Consistent(k);
    }

    /// <summary>
    /// change_pte_range on a writable migration entry of an anon page: "a protection check is difficult so just be safe
    /// and disable write", but the entry becomes readable-exclusive, not plain readable, so remove_migration_pte sets
    /// PageAnonExclusive again and a later R/O pin or write needs no unshare.
    /// </summary>
    [Theory]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void MprotectReadOnly_OfAPteMigrationEntry_KeepsAnonExclusive(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 9));
        long pfn = mm.PeekPte(A).Pfn;
        Assert.True(k.Mem[pfn].Has(PageFlags.AnonExclusive));
        Ok(k, async () =>
        {
            Assert.True(Vmscan.IsolateLruFolio(k, pfn));
            Folio.Get(k, pfn); // the isolation reference
            await Rmap.TryToMigrate(k, new TtuState(pfn, 1, migrate: true));
        });
        var e = mm.PeekPte(A);
        Assert.True(e.IsMigration && e.SwapKind == SwapType.MigrationWrite && e.Pfn == pfn);
        Assert.False(k.Mem[pfn].Has(PageFlags.AnonExclusive)); // moved into the entry
        Ok(k, async () => await Mprotect.DoMprotect(mm, A, 0x1000, Prot.Read));
        e = mm.PeekPte(A);
        Assert.True(e.IsMigration && e.SwapKind == SwapType.MigrationRead && e.IsExclusiveMigration);
        Ok(k, async () => await Migrate.RemoveMigrationPtes(k, pfn, pfn));
        Folio.Put(k, pfn);
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && !pte.Writable && pte.Pfn == pfn);
        Assert.True(k.Mem[pfn].Has(PageFlags.AnonExclusive));
        Assert.Equal(1, k.Mem[pfn].RefCount);
        Ok(k, async () => Assert.Equal(9UL, await Read(mm, A)));
        Consistent(k);
    }
}
