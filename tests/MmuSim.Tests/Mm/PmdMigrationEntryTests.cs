using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>
/// What the mm paths do with a PMD migration entry (THP migration, 4.14+: is_pmd_migration_entry in zap_huge_pmd,
/// copy_huge_pmd, change_huge_pmd, move_huge_pmd, __split_huge_pmd_locked, pagemap_pmd_range, __handle_mm_fault). Each
/// test stops a migration half-way (the folio isolated and unmapped by try_to_migrate, as migrate_folio_unmap leaves
/// it), runs the path, then restores the entries with remove_migration_ptes onto the same folio (the -EAGAIN undo).
/// </summary>
public class PmdMigrationEntryTests
{
    const ulong H = 0x200000;
    const ulong P = MmStruct.PageSize;

    static (Kernel K, MmStruct Mm, long Head) ThpUnderMigration(string era)
    {
        var (k, mm, head) = WrittenThp(era);
        Ok(k, async () =>
        {
            Assert.True(Vmscan.IsolateLruFolio(k, head));
            Folio.Get(k, head); // the isolation reference
            await Rmap.TryToMigrate(k, new TtuState(head, PhysMem.HugePages, migrate: true));
        });
        var e = mm.PeekPmd(H);
        Assert.True(e.IsMigration && e.Huge && e.Pfn == head && e.SwapKind == SwapType.MigrationWrite);
        Assert.Equal(0, k.Mem.FolioMapCount(head));
        Assert.Equal(1, k.Mem[head].RefCount); // only the isolation's
        return (k, mm, head);
    }

    static void Restore(Kernel k, long head) => Ok(k, async () => await Migrate.RemoveMigrationPtes(k, head, head));

    [Theory]
    [InlineData("4.15")]
    [InlineData("5.13")]
    [InlineData("6.13")]
    public void Fork_CopiesTheEntryReadable_BothRemapShared(string era)
    {
        var (k, mm, head) = ThpUnderMigration(era);
        var rec = Recorder(k, mm);
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "child"));
        var pe = mm.PeekPmd(H);
        var ce = child.PeekPmd(H);
        Assert.True(pe.IsMigration && pe.SwapKind == SwapType.MigrationRead && !pe.IsExclusiveMigration);
        Assert.Equal(pe, ce);
        Restore(k, head);
        foreach (var m in new[] { mm, child })
        {
            var pmd = m.PeekPmd(H);
            Assert.True(pmd.Present && pmd.Huge && !pmd.Writable);
            Assert.Equal(head, pmd.Pfn);
        }
        Assert.Equal(2, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.Equal(3, k.Mem[head].RefCount); // two PMD mappings + the isolation reference
        Assert.False(k.Mem[head].Has(PageFlags.AnonExclusive));
        Folio.Put(k, head);
        Ok(k, async () =>
        {
            await Write(child, H + 0x3000, 33); // COW of the shared THP
            Assert.Equal(3UL, await Read(mm, H + 0x3000));
            Assert.Equal(33UL, await Read(child, H + 0x3000));
            Assert.Equal(1UL, await Read(child, H));
        });
        Consistent(k);
    }

    [Theory]
    [InlineData("4.15", "S(200000,400000) IR(200000,400000) E(200000,400000)")]
    [InlineData("6.13", "S(200000,400000,Unmap) E(200000,400000,Unmap)")]
    public void MunmapWhole_ClearsTheEntry_NothingComesBack(string era, string expected)
    {
        var (k, mm, head) = ThpUnderMigration(era);
        long rss = mm.RssAnon;
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mmap.Munmap(mm, H, MmStruct.PmdSize));
        Assert.True(mm.PeekPmd(H).IsNone);
        Assert.Equal(expected, Seq(rec));
        Assert.Equal(rss, mm.RssAnon); // the entry held no MM_ANONPAGES in the model (taken when it was made)
        Restore(k, head);
        Assert.Equal(0, k.Mem.FolioMapCount(head));
        Assert.Equal(1, k.Mem[head].RefCount);
        Consistent(k);
    }

    [Theory]
    [InlineData("4.15")]
    [InlineData("6.13")]
    public void MunmapHalf_SplitsIntoPteMigrationEntries_TheRestRemapsAsPtes(string era)
    {
        var (k, mm, head) = ThpUnderMigration(era);
        Ok(k, async () => await Mmap.Munmap(mm, H, MmStruct.PmdSize / 2));
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Present && !pmd.Huge); // a PTE table now
        var upper = mm.PeekPte(H + MmStruct.PmdSize / 2 + 5 * P);
        Assert.True(upper.IsMigration && upper.SwapKind == SwapType.MigrationWrite);
        Assert.Equal(head + 256 + 5, upper.Pfn);
        Assert.True(mm.PeekPte(H + 3 * P).IsNone);
        Restore(k, head);
        Assert.Equal(head + 256 + 5, mm.PeekPte(H + MmStruct.PmdSize / 2 + 5 * P).Pfn);
        Assert.Equal(256, k.Mem.FolioMapCount(head));
        Assert.Equal(0, k.Mem.EntireMapcountHolder(head).RefCount);
        Consistent(k);
    }

    [Theory]
    [InlineData("4.15")]
    [InlineData("6.13")]
    public void MprotectReadOnly_MakesTheEntryReadableExclusive_ReuseAfterwards(string era)
    {
        var (k, mm, head) = ThpUnderMigration(era);
        Ok(k, async () => await Mprotect.DoMprotect(mm, H, MmStruct.PmdSize, Prot.Read));
        var e = mm.PeekPmd(H);
        Assert.True(e.IsMigration && e.SwapKind == SwapType.MigrationRead && e.IsExclusiveMigration);
        Restore(k, head);
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Present && pmd.Huge && !pmd.Writable && pmd.Pfn == head);
        Assert.True(k.Mem[head].Has(PageFlags.AnonExclusive));
        Folio.Put(k, head);
        Ok(k, async () =>
        {
            await Mprotect.DoMprotect(mm, H, MmStruct.PmdSize, Prot.ReadWrite);
            await Write(mm, H + 0x3000, 4); // exclusive: reused in place, no copy
        });
        Assert.Equal(head, mm.PeekPmd(H).Pfn);
        Assert.Equal(4UL, k.Mem[head + 3].Contents);
        Consistent(k);
    }

    [Theory]
    [InlineData("4.15")]
    [InlineData("6.13")]
    public void Mremap_MovesTheEntry_TheFolioRemapsAtTheNewAddress(string era)
    {
        var (k, mm, head) = ThpUnderMigration(era);
        const ulong N = 0x800000;
        Ok(k, async () => await Mremap.DoMremap(mm, H, MmStruct.PmdSize, N));
        Assert.True(mm.PeekPmd(H).IsNone);
        Assert.True(mm.PeekPmd(N) is { IsMigration: true, Huge: true } e && e.Pfn == head);
        Restore(k, head);
        Assert.True(mm.PeekPmd(N) is { Present: true, Huge: true } p && p.Pfn == head);
        Folio.Put(k, head);
        Ok(k, async () => Assert.Equal(3UL, await Read(mm, N + 0x3000)));
        Consistent(k);
    }

    [Fact]
    public void Pagemap_ReportsSwapWithTheSubPageOffset()
    {
        var (k, mm, head) = ThpUnderMigration("6.13");
        ulong e = TaskMmu.PagemapEntry(mm, H + 3 * P);
        Assert.Equal(0UL, e & (1UL << TaskMmu.PmPresent));
        Assert.NotEqual(0UL, e & (1UL << TaskMmu.PmSwap));
        Assert.Equal((ulong)(head + 3), (e & TaskMmu.PmPfnMask) >> 5); // swp_offset + the page's offset
        Assert.Equal((ulong)SwapType.MigrationWrite, e & 0x1f);
        Restore(k, head);
        Assert.NotEqual(0UL, TaskMmu.PagemapEntry(mm, H + 3 * P) & (1UL << TaskMmu.PmPresent));
    }

    /// <summary>
    /// clear_refs 4 on a PMD migration entry clears its soft-dirty bit (pagemap then reports it clean); the remap of a
    /// dirty folio sets it again, as remove_migration_pmd's pmd_mkdirty does on x86 ("this may contain setting
    /// soft-dirty on some archs").
    /// </summary>
    [Fact]
    public void ClearRefsSoftDirty_ClearsTheEntrysBit_TheDirtyRemapSetsItAgain()
    {
        var (k, mm, head) = ThpUnderMigration("6.13");
        Assert.True(mm.PeekPmd(H).SoftDirty); // written: the PMD was soft-dirty, the entry kept it
        Assert.NotEqual(0UL, TaskMmu.PagemapEntry(mm, H) & (1UL << TaskMmu.PmSoftDirty));
        Ok(k, async () => Assert.True(await TaskMmu.ClearRefsWrite(mm)));
        Assert.True(mm.PeekPmd(H) is { IsMigration: true, SoftDirty: false });
        Assert.Equal(0UL, TaskMmu.PagemapEntry(mm, H) & (1UL << TaskMmu.PmSoftDirty));
        Restore(k, head);
        Assert.True(mm.PeekPmd(H) is { Present: true, Huge: true, Dirty: true, SoftDirty: true });
    }

    /// <summary>
    /// A fault on the entry sleeps in pmd_migration_entry_wait and maps nothing until remove_migration_pmd wakes it:
    /// the write then lands in the remapped folio (without the wait it would populate a PTE table over the entry and
    /// write a fresh page, losing the THP's contents).
    /// </summary>
    [Fact]
    public void FaultOnTheEntry_WaitsForTheRemap()
    {
        var (k, mm, head) = ThpUnderMigration("6.13");
        bool wrote = false;
        k.S.Spawn("writer", async _ =>
        {
            await Write(mm, H + 0x7000, 7);
            wrote = true;
        });
        k.S.Spawn("migrate", async _ =>
        {
            await k.S.Sleep(10_000);
            Assert.False(wrote); // still asleep on the entry
            Assert.True(mm.PeekPmd(H).IsMigration);
            await Migrate.RemoveMigrationPtes(k, head, head);
        });
        Assert.Null(k.Run());
        Assert.True(wrote);
        Assert.Equal(7UL, k.Mem[head + 7].Contents);
        Assert.Equal(1UL, k.Mem[head].Contents);
        Assert.Equal(head, mm.PeekPmd(H).Pfn);
    }

    const string ForkAndMprotectVsMigration = """
        name: thp-migrate-vs-mm
        description: fork and mprotect racing two migrations of a THP
        processes:
          - name: p
            vmas:
              - { start: 0x200000, len: 2M, prot: rw, flags: hugepage }
        setup:
          - memset: { process: p, addr: 0x200000, len: 2M, value: 0x5 }
        threads:
          - name: forker
            process: p
            ops:
              - fork: { process: p, child: c }
              - expect-value: { process: c, addr: 0x203000, value: 0x5 }
              - expect-value: { process: p, addr: 0x203000, value: 0x5 }
          - name: prot
            process: p
            ops:
              - mprotect: { process: p, addr: 0x200000, len: 2M, prot: r }
              - expect-value: { process: p, addr: 0x201000, value: 0x5 }
              - mprotect: { process: p, addr: 0x200000, len: 2M, prot: rw }
              - write: { process: p, addr: 0x201000, value: 0x7 }
          - name: kcompactd
            process: p
            ops:
              - migrate: { addr: 0x200000, expect: any }
              - migrate: { addr: 0x200000, expect: any }
        expect:
          default: pass
        """;

    /// <summary>
    /// fork and mprotect racing two migrations of the THP, through every explored interleaving: whatever state the
    /// PMD is in when fork or mprotect reaches it (huge, a migration entry, back to huge), the child sees the parent's
    /// data and the checker finds nothing. Without copy_huge_pmd's migration-entry case the child reads 0 (checked by
    /// hand); before 4.14 the THP is split instead.
    /// </summary>
    [Theory]
    [InlineData("3.7")]
    [InlineData("4.15")]
    [InlineData("6.13")]
    public void ForkAndMprotect_RacingMigration_AreCoherent(string era)
    {
        var s = MmuSim.Scenarios.ScenarioLoader.Parse(ForkAndMprotectVsMigration, "thp-migrate-vs-mm.yaml");
        var report = new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(s, Eras.EraTable.Get(era), []),
            new MmuSim.Explore.ExploreOptions { Iterations = 2000 }).Run();
        Assert.Null(report.First);
    }
}
