using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>mprotect(PROT_NONE) and back (mm/mprotect.c change_protection with a PAGE_NONE vm_page_prot).</summary>
public class ProtNoneTests
{
    const ulong V = 0x1fe000, Mid = 0x200000, VEnd = 0x202000;

    [Theory]
    [InlineData("2.6.32", "S(1fe000,202000)! E(1fe000,202000)!")]
    [InlineData("4.13", "S(200000,202000) IR(200000,202000) E(200000,202000)")]
    [InlineData("6.13", "S(200000,202000,ProtectionVma) E(200000,202000,ProtectionVma)")]
    public void ProtNone_MakesPtesInaccessible_AndBackRestores(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, V, VEnd - V);
        Ok(k, async () =>
        {
            await Write(mm, Mid, 1);
            await Read(mm, Mid + 0x1000); // the zero page
        });
        long pfn = mm.PeekPte(Mid).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mprotect.DoMprotect(mm, V, VEnd - V, Prot.None));
        Assert.Equal(expected, Seq(rec));
        var pte = mm.PeekPte(Mid);
        Assert.True(pte.Present && pte.ProtNone && !pte.Accessible && !pte.Writable && pte.Dirty);
        Assert.Equal(pfn, pte.Pfn);
        Assert.True(mm.PeekPte(Mid + 0x1000).ProtNone);
        Assert.Equal(PhysMem.ZeroPfn, mm.PeekPte(Mid + 0x1000).Pfn);
        Assert.Equal(1, k.Mem[pfn].RefCount); // still mapped: pte_present
        Assert.Equal(1, k.Mem[pfn].MapCount);
        rec.Clear();
        Ok(k, async () =>
        {
            Assert.Null(await Read(mm, Mid));      // SIGSEGV
            Assert.Null(await Write(mm, Mid, 2));  // SIGSEGV
            var g = await Gup.GetUserPage(mm, Mid, write: false);
            Assert.Equal(GupResult.EFAULT, g.Error);
        });
        Assert.Empty(rec.Calls);
        Assert.Equal(1, k.Mem[pfn].RefCount);
        Assert.Equal(1UL, k.Mem[pfn].Contents);

        Ok(k, async () => await Mprotect.DoMprotect(mm, V, VEnd - V, Prot.ReadWrite));
        Assert.Equal(expected, Seq(rec));
        pte = mm.PeekPte(Mid);
        Assert.True(pte.Accessible && !pte.Writable && pte.Pfn == pfn);
        rec.Clear();
        Ok(k, async () =>
        {
            Assert.Equal(1UL, await Read(mm, Mid));
            Assert.Equal(3UL, await Write(mm, Mid, 3)); // wp_page_reuse: no notifier
        });
        Assert.Empty(rec.Calls);
        Assert.Equal(pfn, mm.PeekPte(Mid).Pfn);
        Assert.Equal(1, k.Mem[pfn].MapCount);
        Consistent(k);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void ProtNone_EmptyVma_FaultIsSigsegv(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, 0x10000, 0x2000, prot: Prot.None);
        Ok(k, async () =>
        {
            Assert.Null(await Read(mm, 0x10000));
            Assert.Null(await Write(mm, 0x10000, 1));
        });
        Assert.True(mm.PeekPte(0x10000).IsNone);
    }
}
