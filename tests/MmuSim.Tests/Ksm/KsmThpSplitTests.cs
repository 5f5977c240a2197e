using MmuSim.Devices;
using MmuSim.Explore;
using MmuSim.Ksm;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Ksm;

/// <summary>
/// KSM merging the pages of a THP (issue 12 item 8): try_to_merge_one_page splits the THP (split_huge_page), and
/// cmp_and_merge_page splits one whose two pages it tried to merge with each other (77da2ba0648a, 4.17).
/// </summary>
public class KsmThpSplitTests
{
    const ulong A = 0x10000000;
    const ulong P = MmStruct.PageSize;
    const ulong Thp = MmStruct.PmdSize;

    /// <summary>A PMD-mapped THP at A filled with one value, made mergeable.</summary>
    static (Kernel K, MmStruct Mm, long Head) ThpOfOneValue(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, Thp, VmFlags.HugePage);
        Ok(k, async () =>
        {
            for (ulong a = A; a < A + Thp; a += P) await Memory.UserAccess(mm, a, write: true, value: 0x2a);
            Assert.Equal(0, await Ksmd.Of(k).KsmMadvise(mm, A, Thp, mergeable: true));
        });
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge);
        Assert.Equal(1, k.Mem[pmd.Pfn].RefCount);
        return (k, mm, pmd.Pfn);
    }

    static void Scan(Kernel k, int fullScans) => Assert.Null(Run(k, async _ => await Ksmd.Of(k).ScanFull(fullScans), "ksmd"));

    // 3.10: the split ignores references (old THP refcounting) and there are no stable-node chains: one KSM page for all.
    // 4.10, 4.15: split_huge_page refuses the folio KSM holds twice (page and tree_page): "1 unshared and the rest
    // volatile", as 77da2ba0648a's commit text says. 4.19+: split after put_page(tree_page), then merge; the page whose
    // merge made the split is volatile (in no tree) until the third scan merges it; max_page_sharing 256 gives two dups.
    [Theory]
    [InlineData("3.10", 1, 511, 0, 0, 1, 511)]
    [InlineData("4.10", 0, 0, 1, 511, 0, 0)]
    [InlineData("4.15", 0, 0, 1, 511, 0, 0)]
    [InlineData("4.19", 2, 509, 0, 1, 2, 510)]
    [InlineData("6.13", 2, 509, 0, 1, 2, 510)]
    public void ThpOfIdenticalPages_MergesPerEra(string era, long shared2, long sharing2, long unshared2, long volatile2, long shared3, long sharing3)
    {
        var (k, mm, head) = ThpOfOneValue(era);
        Scan(k, 2);
        var ksm = Ksmd.Of(k);
        Assert.Equal((shared2, sharing2, unshared2, volatile2), (ksm.PagesShared, ksm.PagesSharing, ksm.PagesUnshared, ksm.PagesVolatile));
        bool split = shared2 > 0;
        Assert.Equal(split ? 1L : 0L, k.Stats[Stat.ThpSplitPages]);
        Assert.Equal(!split, k.Mem.IsHuge(head));
        Assert.Equal(!split, mm.PeekPmd(A).Huge);
        Scan(k, 1);
        Assert.Equal((shared3, sharing3), (ksm.PagesShared, ksm.PagesSharing));
        if (!split) return;
        // Every page maps a KSM page read-only; the old THP's frames that no longer map anything were freed.
        for (ulong a = A; a < A + Thp; a += P)
        {
            var pte = mm.PeekPte(a);
            Assert.True(pte.Present && !pte.Writable, $"0x{a:x}");
            Assert.True(k.Mem[pte.Pfn].Has(PageFlags.Ksm), $"0x{a:x}");
        }
        long kpages = shared3, mapped = 0;
        for (long p = head; p < head + PhysMem.HugePages; p++)
            if (!k.Mem[p].Has(PageFlags.Free)) { mapped++; Assert.Equal(k.Mem[p].MapCount, k.Mem[p].RefCount); }
        Assert.True(mapped <= kpages, $"{mapped} frames of the old THP still in use, {kpages} KSM pages");
        Ok(k, async () => Assert.Equal(0x2aUL, await Memory.UserAccess(mm, A + 7 * P, write: false)));
    }

    // 6.13: the secondary is told about the split twice over the whole 2 MiB (__split_huge_pmd's CLEAR, then
    // try_to_migrate's CLEAR while the pages become migration entries), before any per-page write_protect_page.
    [Fact]
    public void Split_NotifiesWholeThpBeforeTheFirstWriteProtect_613()
    {
        var (k, mm, _) = ThpOfOneValue("6.13");
        var rec = Recorder(k, mm);
        Scan(k, 2);
        var starts = rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRangeStart).ToList();
        int firstPage = starts.FindIndex(c => c.End - c.Start == P);
        Assert.True(firstPage >= 2, string.Join(" ", starts.Select(c => $"{c.Start:x}-{c.End:x}")));
        var big = starts.Take(firstPage).ToList();
        Assert.Equal(2, big.Count);
        Assert.All(big, c =>
        {
            Assert.Equal((A, A + Thp), (c.Start, c.End));
            Assert.Equal(MmuNotifyEvent.Clear, c.Event);
        });
        Assert.Equal(rec.Calls.Count(c => c.Kind == CallbackKind.InvalidateRangeStart), rec.Calls.Count(c => c.Kind == CallbackKind.InvalidateRangeEnd));
    }

    // A long-term pin on one page is a reference split_huge_page cannot account for: no split, no merge, and the THP
    // stays PMD-mapped with the pin in place.
    [Theory]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void PinnedThp_IsNotSplitNorMerged(string era)
    {
        var (k, mm, head) = ThpOfOneValue(era);
        UserPages? pin = null;
        Ok(k, async () => pin = (await Gup.GetUserPages(mm, A + 3 * P, 1, GupFlags.Pin | GupFlags.Longterm, false)).Pages);
        Assert.NotNull(pin);
        Scan(k, 3);
        var ksm = Ksmd.Of(k);
        Assert.Equal((0L, 0L), (ksm.PagesShared, ksm.PagesSharing));
        Assert.Equal(0L, k.Stats[Stat.ThpSplitPages]);
        Assert.True(k.Mem.IsHuge(head) && mm.PeekPmd(A).Huge);
        Assert.Equal(head + 3, pin!.Pfns[0]);
    }

    // A write to the THP while ksmd splits and merges it: in every explored interleaving the data stays and no checker
    // invariant breaks (the write either lands before the split, waits on a migration entry, or breaks a KSM page).
    [Fact]
    public void WriteDuringSplitAndMerge_NoViolationInExploredSchedules()
    {
        var s = ScenarioLoader.Parse("""
            name: ksm-thp-split-vs-write
            era: "6.13"
            processes:
              - name: p
                vmas: []
            setup:
              - mmap: { process: p, addr: 0x10000000, len: 2M, flags: hugepage }
              - memset: { process: p, addr: 0x10000000, len: 2M, value: 0x2a }
              - madvise: { process: p, addr: 0x10000000, len: 2M, advice: mergeable }
              - ksm.run: { value: 1 }
              - ksm.scan: { full_scans: 1 }
            threads:
              - name: ksmd
                process: p
                ops:
                  - ksm.scan: { full_scans: 1 }
              - name: writer
                process: p
                ops:
                  - write: { addr: 0x10001000, value: 0x77 }
                  - expect-value: { addr: 0x10001000, value: 0x77 }
                  - expect-value: { addr: 0x10000000, value: 0x2a }
            """, "ksm-thp-split-vs-write.yaml");
        var plain = ScenarioRunner.Run(s, s.DefaultEra!, null);
        Assert.Null(plain.Violation);
        var r = new Explorer(new ScenarioExplorable(s, s.DefaultEra!, []), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = 1, Por = true },
            Iterations = 300,
        }).Run();
        Assert.Null(r.First);
    }
}

/// <summary>KSM on an anonymous mTHP (6.8+): try_to_merge_one_page splits the large folio first, as it does a THP.</summary>
public class KsmMthpTests
{
    const ulong A = 0x10000000;
    const ulong P = MmStruct.PageSize;

    [Fact]
    public void MthpOfIdenticalPages_IsSplitAndMergedIntoOneKsmPage()
    {
        var k = Kernel("6.13");
        k.Thp[4] = ThpMode.Always; // 64 KiB
        var mm = MmWithVma(k, A, 16 * P);
        Ok(k, async () =>
        {
            for (ulong a = A; a < A + 16 * P; a += P) await Memory.UserAccess(mm, a, write: true, value: 0x2a);
            Assert.Equal(0, await Ksmd.Of(k).KsmMadvise(mm, A, 16 * P, mergeable: true));
        });
        long head = mm.PeekPte(A).Pfn;
        Assert.Equal(16, k.Mem.FolioNr(head));
        Assert.Null(Run(k, async _ => await Ksmd.Of(k).ScanFull(3), "ksmd"));
        var ksm = Ksmd.Of(k);
        Assert.Equal(1L, k.Stats[Stat.ThpSplitPages]);
        Assert.Equal((1L, 15L), (ksm.PagesShared, ksm.PagesSharing));
        long kpage = mm.PeekPte(A).Pfn;
        for (ulong a = A; a < A + 16 * P; a += P)
        {
            var pte = mm.PeekPte(a);
            Assert.True(pte.Present && !pte.Writable, $"0x{a:x}");
            Assert.Equal(kpage, pte.Pfn);
        }
        Assert.True(k.Mem[kpage].Has(PageFlags.Ksm));
        Assert.Equal(1, k.Mem.FolioNr(kpage));
        Consistent(k);
    }
}
