using MmuSim.Ksm;
using MmuSim.Mm;
using MmuSim.Sched;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Ksm;

/// <summary>rmap_walk reaches KSM pages through rmap_walk_ksm: reclaim and migration of a merged page unmap every sharer.</summary>
public class KsmRmapTests
{
    const ulong A = 0x200000;

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void ReclaimOfAKsmPage_UnmapsEverySharer_AndEachRefaultsItsContents(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 4 * MmStruct.PageSize, VmFlags.Mergeable);
        var ksmd = Ksmd.Of(k);
        long kpage = -1;
        Assert.Null(Run(k, async _ =>
        {
            for (int i = 0; i < 4; i++) await Memory.UserAccess(mm, A + (ulong)i * MmStruct.PageSize, write: true, value: 0x77);
            await ksmd.ScanFull(2);
            kpage = mm.PeekPte(A).Pfn;
            for (int i = 1; i < 4; i++) Assert.Equal(kpage, mm.PeekPte(A + (ulong)i * MmStruct.PageSize).Pfn);
            Assert.True(k.Mem[kpage].Has(PageFlags.Ksm));
            await Vmscan.ShrinkFolio(k, kpage);
        }));
        for (int i = 0; i < 4; i++)
        {
            var pte = mm.PeekPte(A + (ulong)i * MmStruct.PageSize);
            Assert.True(pte.IsSwapEntry, $"page {i} still mapped after reclaim: {pte}");
        }
        Assert.True(k.Mem[kpage].Has(PageFlags.Free));
        Assert.Null(Run(k, async _ =>
        {
            for (int i = 0; i < 4; i++) Assert.Equal(0x77UL, await Memory.UserAccess(mm, A + (ulong)i * MmStruct.PageSize, write: false));
        }));
    }
}
