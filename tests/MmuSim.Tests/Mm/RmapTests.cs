using MmuSim.Devices;
using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>Aging (folio_referenced_one) and writeback cleaning (page_mkclean_one).</summary>
public class RmapTests
{
    const ulong A = 0x10000, H = 0x200000;

    [Theory]
    [InlineData("2.6.32", "CFY(10000,11000)!")]
    [InlineData("4.13", "CFY(10000,11000)!")]
    [InlineData("6.13", "CFY(10000,11000)!")]
    public void Aging_ClearFlushYoungUnderPtl_OrsPrimaryAndSecondary(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 1));
        long pfn = mm.PeekPte(A).Pfn;
        var rec = Recorder(k, mm);
        int r = -1;
        Ok(k, async () => r = await Rmap.FolioReferenced(k, pfn));
        Assert.Equal(1, r); // the primary PTE was young
        Assert.Equal(expected, Seq(rec));
        Assert.False(mm.PeekPte(A).Accessed);
        Assert.True(mm.PeekPte(A).Present && mm.PeekPte(A).Dirty);
        Assert.Equal(1, k.Mem[pfn].RefCount);
        // Primary now old: only the secondary's answer counts.
        Ok(k, async () => r = await Rmap.FolioReferenced(k, pfn));
        Assert.Equal(0, r);
        rec.Young = true;
        Ok(k, async () => r = await Rmap.FolioReferenced(k, pfn));
        Assert.Equal(1, r);
        Assert.Equal(3, rec.Calls.Count);
    }

    [Theory]
    [InlineData("3.7", "CFY(200000,201000)!")] // before 4.0 the core passes one page
    [InlineData("4.13", "CFY(200000,400000)!")]
    [InlineData("6.13", "CFY(200000,400000)!")]
    public void Aging_HugePmd_NotifiesPmdSize_From4_0(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.Equal(1, await Rmap.FolioReferenced(k, mm.PeekPmd(H).Pfn)));
        Assert.Equal(expected, Seq(rec));
        Assert.False(mm.PeekPmd(H).Accessed);
    }

    [Theory]
    [InlineData("2.6.32", "IP(10000)!")]
    [InlineData("4.10", "IP(10000)")]
    [InlineData("4.13", "S(10000,11000) IR(10000,11000)! IR(10000,11000) E(10000,11000)")]
    [InlineData("4.19", "S(10000,11000) IR(10000,11000) E(10000,11000)")]
    [InlineData("6.13", "S(10000,11000,ProtectionPage) E(10000,11000,ProtectionPage)")]
    public void Mkclean_WriteProtectsAndCleans_ThenClearDirtyForIo(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 1));
        long pfn = mm.PeekPte(A).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, pfn);
        bool dirty = false;
        Ok(k, async () => dirty = await PageWriteback.FolioClearDirtyForIo(k, pfn));
        Assert.True(dirty); // the PTE was dirty: folio_mark_dirty, then test-and-clear
        Assert.Equal(expected, Seq(rec));
        Assert.All(probe.Log, e => Assert.EndsWith("live", e));
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && !pte.Writable && !pte.Dirty);
        Assert.Equal(pfn, pte.Pfn);
        Assert.False(k.Mem[pfn].Has(PageFlags.Dirty));
        Assert.Equal(1, k.Mem[pfn].RefCount);
        Assert.Equal(1, k.Mem[pfn].MapCount);
        Assert.Equal(1, k.Stats[Stat.PagesCleaned]);
        // Clean and read-only: nothing to do the second time, no notification before 4.13.
        rec.Clear();
        Ok(k, async () => dirty = await PageWriteback.FolioClearDirtyForIo(k, pfn));
        Assert.False(dirty);
        if (!k.Era.Has(Eras.Feature.RmapRangeNotify)) Assert.Empty(rec.Calls);
        // The next write faults and reuses the page (no notifier), making it dirty again.
        rec.Clear();
        Ok(k, async () => await Write(mm, A, 2));
        Assert.Empty(rec.Calls);
        Assert.True(mm.PeekPte(A).Writable && mm.PeekPte(A).Dirty);
        Consistent(k);
    }

    [Theory]
    [InlineData("4.10", "IP(200000)")] // 5(b): one address for a PMD-mapped THP
    [InlineData("4.13", "S(200000,400000) IR(200000,400000)! IR(200000,400000) E(200000,400000)")]
    [InlineData("6.13", "S(200000,400000,ProtectionPage) E(200000,400000,ProtectionPage)")]
    public void Mkclean_HugePmd(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        long head = mm.PeekPmd(H).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.True(await PageWriteback.FolioClearDirtyForIo(k, head)));
        Assert.Equal(expected, Seq(rec));
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Huge && !pmd.Writable && !pmd.Dirty);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void RmapWalk_VisitsEveryMemberOfTheFamily(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 1));
        long pfn = mm.PeekPte(A).Pfn;
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        var seen = new List<(MmStruct, ulong)>();
        Ok(k, async () => await Rmap.RmapWalk(k, pfn, (vma, addr, first, count) =>
        {
            seen.Add((vma.Mm, addr));
            return new ValueTask<bool>(true);
        }));
        Assert.Equal([(mm, A), (child, A)], seen);
    }
}
