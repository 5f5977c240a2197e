using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class UprobesTests
{
    const ulong A = 0x10000;

    [Theory]
    // oldest named era with uprobes (3.5): no start/end yet; the probe has no change_pte, so it gets the
    // change_pte -> invalidate_page fallback (removed in 3.7)
    [InlineData("3.6", "CP(10000)!", "IP:live")]
    [InlineData("3.7", "S(10000,11000) CP(10000)! E(10000,11000)", "S:live E:live")]
    [InlineData("4.13", "S(10000,11000) IR(10000,11000)! CP(10000)! IR(10000,11000) E(10000,11000)", "S:live E:live")]
    [InlineData("6.13", "S(10000,11000,Clear) E(10000,11000,Clear)", "S:live E:live")]
    public void ReplacePage_SwapsInANewAnonPage_OldFreedAfterEnd(string era, string expected, string probeLog)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 0x90));
        long old = mm.PeekPte(A).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, old);
        Ok(k, async () => Assert.True(await Uprobes.UprobeWriteOpcode(mm, A, 0xcc)));
        Assert.Equal(expected, Seq(rec));
        Assert.Equal(probeLog, string.Join(" ", probe.Log));
        Assert.True(k.Mem[old].Has(PageFlags.Free));
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && !pte.Writable);
        Assert.NotEqual(old, pte.Pfn);
        Assert.Equal(0xccUL, k.Mem[pte.Pfn].Contents);
        Assert.Equal(1, k.Mem[pte.Pfn].RefCount);
        Assert.Equal(1, k.Mem[pte.Pfn].MapCount);
        Consistent(k);
    }

    [Fact]
    public void Uprobes_DoNotExistIn_2_6_32()
    {
        var k = Kernel("2.6.32");
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 1));
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.False(await Uprobes.UprobeWriteOpcode(mm, A, 0xcc)));
        Assert.Empty(rec.Calls);
    }
}
