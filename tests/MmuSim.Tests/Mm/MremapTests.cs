using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class MremapTests
{
    const ulong A = 0x10000, B = 0x100000;

    [Theory]
    // move_page_tables' UNMAP on the old range, then do_vmi_munmap of the (now empty) old range
    [InlineData("2.6.32", "S(10000,14000)! E(10000,14000)! S(10000,14000)! E(10000,14000)!")]
    [InlineData("4.13", "S(10000,14000) IR(10000,14000) E(10000,14000) S(10000,14000) IR(10000,14000) E(10000,14000)")]
    [InlineData("6.13", "S(10000,14000,Unmap) E(10000,14000,Unmap) S(10000,14000,Unmap) E(10000,14000,Unmap)")]
    public void Move_NotifiesOldRangeOnly_KeepsRmap(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x4000);
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await Write(mm, A + 0x1000, 2);
            await Read(mm, A + 0x2000);
        });
        long p0 = mm.PeekPte(A).Pfn, p1 = mm.PeekPte(A + 0x1000).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mremap.DoMremap(mm, A, 0x4000, B));
        Assert.Equal(expected, Seq(rec));
        Assert.Single(mm.Vmas);
        Assert.Equal(B, mm.Vmas[0].Start);
        Assert.True(mm.PeekPte(A).IsNone);
        Assert.Equal(p0, mm.PeekPte(B).Pfn);
        Assert.Equal(p1, mm.PeekPte(B + 0x1000).Pfn);
        Assert.True(mm.PeekPte(B).Writable && mm.PeekPte(B).Dirty);
        Assert.Equal(PhysMem.ZeroPfn, mm.PeekPte(B + 0x2000).Pfn);
        Assert.Equal(1, k.Mem[p0].RefCount);
        Assert.Equal(1, k.Mem[p0].MapCount);
        Assert.Equal(B, mm.Vmas[0].AddressOf(k.Mem[p0].Index));
        Consistent(k);
        // rmap still finds the moved page: reclaim it and read it back.
        Ok(k, async () =>
        {
            Assert.True(await Vmscan.ShrinkFolio(k, p1));
            Assert.Equal(2UL, await Read(mm, B + 0x1000));
            Assert.Equal(1UL, await Read(mm, B));
        });
        Consistent(k);
    }

    [Theory]
    [InlineData("3.7")]
    [InlineData("6.13")]
    public void Move_AlignedThp_MovesTheHugePmd_EraWithThp(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, 0x200000, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, 0x200000, 9));
        long head = mm.PeekPmd(0x200000).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mremap.DoMremap(mm, 0x200000, 0x200000, 0x600000));
        Assert.Equal(4, rec.Calls.Count(c => c.Kind is Devices.CallbackKind.InvalidateRangeStart or Devices.CallbackKind.InvalidateRangeEnd));
        Assert.All(rec.Calls, c => Assert.Equal(0x200000UL, c.Start));
        var pmd = mm.PeekPmd(0x600000);
        Assert.True(pmd.Huge);
        Assert.Equal(head, pmd.Pfn);
        Assert.True(mm.PeekPmd(0x200000).IsNone);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);
        Consistent(k);
    }
}
