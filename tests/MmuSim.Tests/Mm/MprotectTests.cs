using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class MprotectTests
{
    // A VMA straddling a PMD boundary; only the second PMD is populated.
    const ulong V = 0x1fe000, Mid = 0x200000, VEnd = 0x202000;

    [Theory]
    [InlineData("2.6.32", "S(1fe000,202000)! E(1fe000,202000)!")]                            // whole range
    [InlineData("4.13", "S(200000,202000) IR(200000,202000) E(200000,202000)")]              // lazy: first populated PMD
    [InlineData("6.13", "S(200000,202000,ProtectionVma) E(200000,202000,ProtectionVma)")]
    public void Downgrade_WriteProtectsPtes_InsideProtectionVma(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, V, VEnd - V);
        Ok(k, async () =>
        {
            await Write(mm, Mid, 1);
            await Read(mm, Mid + 0x1000);
        });
        long pfn = mm.PeekPte(Mid).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mprotect.DoMprotect(mm, V, VEnd - V, Prot.Read));
        Assert.Equal(expected, Seq(rec));
        var pte = mm.PeekPte(Mid);
        Assert.True(pte.Present && !pte.Writable && pte.Dirty);
        Assert.Equal(pfn, pte.Pfn);
        Assert.Equal(1, k.Mem[pfn].RefCount);
        Assert.Equal(1, k.Mem[pfn].MapCount);
        Assert.False(mm.Vmas[0].Writable);
        Ok(k, async () => Assert.Null(await Write(mm, Mid, 2))); // SIGSEGV now
        // Upgrade: change_protection still runs (and change_pmd_range still brackets the populated part, as the
        // kernel does). Before 6.0 no PTE becomes writable: the next write fault reuses the page in place, unnotified.
        // From 6.0 (MM_CP_TRY_CHANGE_WRITABLE) the exclusive anonymous page is made writable inside the bracket.
        rec.Clear();
        Ok(k, async () => await Mprotect.DoMprotect(mm, V, VEnd - V, Prot.ReadWrite));
        Assert.Equal(expected, Seq(rec));
        Assert.Equal(k.Era.Has(MmuSim.Eras.Feature.MprotectTryChangeWritable), mm.PeekPte(Mid).Writable);
        rec.Clear();
        Ok(k, async () => Assert.Equal(3UL, await Write(mm, Mid, 3)));
        Assert.Empty(rec.Calls);
        Assert.Equal(pfn, mm.PeekPte(Mid).Pfn);
        Assert.True(mm.PeekPte(Mid).Writable);
        Consistent(k);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void PartialRange_SplitsVma(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, 0x10000, 0x4000);
        Ok(k, async () =>
        {
            for (ulong a = 0x10000; a < 0x14000; a += 0x1000) await Write(mm, a, a);
        });
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mprotect.DoMprotect(mm, 0x11000, 0x1000, Prot.Read));
        Assert.Equal(3, mm.Vmas.Count);
        Assert.Equal((0x11000UL, 0x12000UL, Prot.Read), (mm.Vmas[1].Start, mm.Vmas[1].End, mm.Vmas[1].Prot));
        Assert.True(mm.PeekPte(0x10000).Writable);
        Assert.False(mm.PeekPte(0x11000).Writable);
        Assert.True(mm.PeekPte(0x12000).Writable);
        Assert.Equal(2, rec.Calls.Count);
        Assert.Equal((0x11000UL, 0x12000UL), (rec.Calls[0].Start, rec.Calls[0].End));
        Consistent(k);
    }

    [Theory]
    [InlineData("3.7", "S(200000,400000) E(200000,400000) S(200000,201000) E(200000,201000)")]
    [InlineData("4.13", "S(200000,400000) IR(200000,400000) E(200000,400000) S(200000,201000) IR(200000,201000) E(200000,201000)")]
    [InlineData("6.13", "S(200000,400000,Clear) E(200000,400000,Clear) S(200000,201000,ProtectionVma) E(200000,201000,ProtectionVma)")]
    public void PartlyCoveredThp_IsSplitAtTheVmaSplit_InItsOwnClearRange_BeforeMprotectsRange(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, 0x200000, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, 0x200000, 7));
        long head = mm.PeekPmd(0x200000).Pfn;
        Assert.True(mm.PeekPmd(0x200000).Huge);
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mprotect.DoMprotect(mm, 0x200000, 0x1000, Prot.Read));
        Assert.Equal(expected, Seq(rec));
        Assert.False(mm.PeekPmd(0x200000).Huge);
        Assert.False(mm.PeekPte(0x200000).Writable);
        Assert.True(mm.PeekPte(0x201000).Writable);
        Assert.Equal(head + 1, mm.PeekPte(0x201000).Pfn);
        Assert.Equal(0, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.Equal(1, k.Mem[head + 1].MapCount);
        Assert.Equal(PhysMem.HugePages, k.Mem[head].RefCount);
        Consistent(k);
    }

    [Theory]
    [InlineData("3.7")]
    [InlineData("6.13")]
    public void WhollyCoveredThp_IsWriteProtectedWhole(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, 0x200000, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, 0x200000, 7));
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mprotect.DoMprotect(mm, 0x200000, 0x200000, Prot.Read));
        Assert.Equal(2, rec.Calls.Count(c => c.Kind is Devices.CallbackKind.InvalidateRangeStart or Devices.CallbackKind.InvalidateRangeEnd));
        var pmd = mm.PeekPmd(0x200000);
        Assert.True(pmd.Huge && !pmd.Writable);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(pmd.Pfn).RefCount);
    }
}
