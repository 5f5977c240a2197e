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

    [Theory]
    [InlineData("3.7")]
    [InlineData("4.13")]
    public void MigrateThp_BeforeThpMigration_SplitsThePmd_MovesTheWholeFolio(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () =>
        {
            await Write(mm, H, 1);
            await Write(mm, H + 0x3000, 3);
        });
        long old = mm.PeekPmd(H).Pfn;
        var rec = Recorder(k, mm);
        long dst = -1;
        Ok(k, async () => dst = await Migrate.MigrateFolio(k, old));
        Assert.True(k.Mem.IsHuge(dst));
        Assert.True(k.Mem[old].Has(PageFlags.Free));
        Assert.Equal(dst + 3, mm.PeekPte(H + 0x3000).Pfn);
        Assert.Equal(PhysMem.HugePages, k.Mem[dst].RefCount);
        if (k.Era.Has(Eras.Feature.InvalidatePage)) Assert.Equal("IP(200000)", Seq(rec)); // 5(b) shape
        else Assert.Equal(2, rec.Calls.Count(c => c.Kind == Devices.CallbackKind.InvalidateRangeStart));
        Ok(k, async () => Assert.Equal(3UL, await Read(mm, H + 0x3000)));
        Consistent(k);
    }

    /// <summary>
    /// THP migration (4.14+): try_to_migrate_one replaces the huge PMD by a PMD migration entry inside one CLEAR range
    /// over the 2 MiB (no split, no second range), and remove_migration_pmd maps the new folio with a huge PMD again:
    /// writable, dirty, exclusive, one entire mapping and one reference, without a notifier.
    /// </summary>
    [Theory]
    [InlineData("4.15", "S(200000,400000) IR(200000,400000) E(200000,400000)")]
    [InlineData("5.13", "S(200000,400000,Clear) IR(200000,400000) E(200000,400000,Clear)")]
    [InlineData("6.13", "S(200000,400000,Clear) E(200000,400000,Clear)")]
    public void MigrateThp_PmdMigrationEntry_StaysPmdMapped(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () =>
        {
            await Write(mm, H, 1);
            await Write(mm, H + 0x3000, 3);
        });
        long old = mm.PeekPmd(H).Pfn;
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
        Assert.True(k.Mem.IsHuge(dst) && k.Mem[old].Has(PageFlags.Free));
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable && pmd.Dirty);
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
}
