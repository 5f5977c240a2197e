using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class MmapTests
{
    const ulong A = 0x10000;

    [Theory]
    [InlineData("2.6.32", "R()!")]
    [InlineData("4.13", "R()")]
    [InlineData("6.13", "R()")]
    public void ExitMmap_ReleasesFirst_ThenUnmapsAndFrees(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x2000);
        Ok(k, async () => await Write(mm, A, 1));
        long pfn = mm.PeekPte(A).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, pfn);
        Ok(k, async () => await Mmap.ExitMmap(mm));
        Assert.Equal(expected, Seq(rec)); // unhashed by release: the exit-time UNMAP range reaches no hlist subscription
        Assert.Equal(["R:live"], probe.Log);
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        Assert.True(mm.Exited);
        Assert.Empty(mm.Vmas);
        Assert.Equal(0, mm.RssAnon);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void ExitMmap_OfAForkedChild_LeavesTheParentsPagesMapped(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x2000);
        Ok(k, async () => await Write(mm, A, 1));
        long pfn = mm.PeekPte(A).Pfn;
        MmStruct child = null!;
        Ok(k, async () =>
        {
            child = await Fork.DupMmap(mm, "c");
            await Mmap.ExitMmap(child);
        });
        Assert.Equal(1, k.Mem[pfn].RefCount);
        Assert.Equal(1, k.Mem[pfn].MapCount);
        Assert.DoesNotContain(child, mm.Vmas[0].AnonVma!.Members);
        Ok(k, async () => await Write(mm, A, 2)); // reuse: the only mapping again
        Assert.Equal(pfn, mm.PeekPte(A).Pfn);
        Consistent(k);
    }
}
