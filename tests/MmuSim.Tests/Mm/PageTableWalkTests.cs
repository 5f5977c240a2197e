using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>
/// The walks step over unpopulated PGD/PUD entries as walk_pgd_range does (<see cref="MmStruct.PmdAddrEnd"/>), so a
/// sparse VMA of 128 TiB is walked by what is populated in it. Found by the loader fuzzer: a mutated mmap len of
/// 0x7fff00000000 under ksm_tests' zero-page merge took 643 s in a 2,000-step run, all in a per-page ksm_zero_pages count.
/// </summary>
public class PageTableWalkTests
{
    const ulong A = 0x10000000;
    const ulong Huge = 0x7fff00000000; // 128 TiB - 4 GiB

    [Fact]
    public void PmdAddrEnd_SkipsAWholeUnpopulatedPgdOrPudEntry_AndStopsAtEveryPmdOfAPopulatedOne()
    {
        var k = Kernel("6.18");
        var mm = MmWithVma(k, A, Huge);
        Assert.Equal(1UL << 39, mm.PmdAddrEnd(A, ulong.MaxValue));             // pgd_none: pgd_addr_end
        Assert.Equal(A + 0x1000, mm.PmdAddrEnd(A, A + 0x1000));                // capped at end
        Ok(k, async () => await Write(mm, A, 1));
        Assert.Equal(A + MmStruct.PmdSize, mm.PmdAddrEnd(A, ulong.MaxValue));  // populated: pmd_addr_end
        Assert.Equal(A + MmStruct.PmdSize, mm.PmdAddrEnd(A + 0x5000, ulong.MaxValue));
        Assert.Equal(1UL << 30 << 1, mm.PmdAddrEnd(1UL << 30, ulong.MaxValue)); // same PGD, pud_none: pud_addr_end
        Assert.Equal(A, mm.SkipPmdHole(A, ulong.MaxValue));
        Assert.Equal(1UL << 39, mm.SkipPmdHole(A + MmStruct.PmdSize, 1UL << 39)); // no PMD populated after the first
        Assert.Equal(ulong.MaxValue, mm.PmdAddrEnd(ulong.MaxValue - 5, ulong.MaxValue)); // no overflow at the top
    }

    [Fact]
    public void ASparse128TiBVma_IsCheckedForkedAndUnmapped_ByItsPopulatedPages()
    {
        var k = Kernel("6.18");
        var mm = MmWithVma(k, A, Huge);
        Ok(k, async () => { await Write(mm, A, 1); await Write(mm, A + Huge - 0x1000, 2); });
        Assert.Null(new MmuSim.Checker.CoherenceChecker(k).CheckPrimaryConsistency());
        long pfn = mm.PeekPte(A + Huge - 0x1000).Pfn;
        MmStruct? child = null;
        Ok(k, async () => child = await Fork.DupMmap(mm, "child"));
        Assert.Equal(pfn, child!.PeekPte(A + Huge - 0x1000).Pfn);
        Assert.Equal(2, k.Mem[pfn].MapCount);
        Ok(k, async () => await Mmap.Munmap(mm, A, Huge));
        Assert.Equal(1, k.Mem[pfn].MapCount);
        Assert.Equal(0, mm.RssAnon);
        Assert.Null(new MmuSim.Checker.CoherenceChecker(k).CheckPrimaryConsistency());
    }
}
