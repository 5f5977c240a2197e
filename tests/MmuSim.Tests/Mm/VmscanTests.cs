using MmuSim.Devices;
using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class VmscanTests
{
    const ulong A = 0x10000, H = 0x200000;

    [Theory]
    [InlineData("2.6.32", "IP(10000)!", "IP:live")]                                      // under the PTL
    [InlineData("4.10", "IP(10000)", "IP:live")]                                         // after pte_unmap_unlock (5(a))
    [InlineData("4.13", "S(10000,11000) IR(10000,11000)! IR(10000,11000) E(10000,11000)", "S:live E:live")]
    [InlineData("6.13", "S(10000,11000,Clear) E(10000,11000,Clear)", "S:live E:live")]
    public void ReclaimOnePage_SwapsOut_NotifiesPerEra_FreesAfterwards(string era, string expected, string probeLog)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x2000);
        Ok(k, async () => await Write(mm, A, 77));
        long pfn = mm.PeekPte(A).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, pfn);
        bool ok = false;
        Ok(k, async () => ok = await Vmscan.ShrinkFolio(k, pfn));
        Assert.True(ok);
        Assert.Equal(expected, Seq(rec));
        Assert.Equal(probeLog, string.Join(" ", probe.Log));
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        var pte = mm.PeekPte(A);
        Assert.Equal(SwapType.Swap, pte.SwapKind);
        Assert.Equal(1, k.Swap.RefCount((int)pte.Pfn));
        Assert.Equal(77UL, k.Swap.Load((int)pte.Pfn));
        Assert.Equal(0, mm.RssAnon);
        Assert.Equal(1, k.Stats[Stat.PagesReclaimed]);
        Ok(k, async () => Assert.Equal(77UL, await Read(mm, A)));
        Assert.Equal(0, k.Swap.InUse);
        Consistent(k);
    }

    [Fact]
    public void Reclaim_3_6_to_4_12_InvalidatePageComesAfterThePtlWasDropped()
    {
        // 3.7+: SRCU read side, so an invalidate_page outside the PTL is not atomic; in 2.6.32 it is (under PTL + RCU).
        foreach (var (era, atomic) in new[] { ("3.7", false), ("4.10", false), ("4.12", false), ("2.6.32", true) })
        {
            var k = Kernel(era);
            var mm = MmWithVma(k, A, 0x1000);
            Ok(k, async () => await Write(mm, A, 1));
            long pfn = mm.PeekPte(A).Pfn;
            var rec = Recorder(k, mm);
            Ok(k, async () => await Vmscan.ShrinkFolio(k, pfn));
            var c = Assert.Single(rec.Calls);
            Assert.Equal(CallbackKind.InvalidatePage, c.Kind);
            Assert.Equal(atomic, c.Atomic);
        }
    }

    [Fact]
    public void ThpReclaim_4_19_NotifiesTheWhole2M()
    {
        var k = Kernel("4.19");
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () =>
        {
            await Write(mm, H, 1);
            await Write(mm, H + 0x1ff000, 2);
        });
        long head = mm.PeekPmd(H).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, head);
        Ok(k, async () => Assert.True(await Vmscan.ShrinkFolio(k, head)));
        var se = rec.Calls.Where(c => c.Kind is CallbackKind.InvalidateRangeStart or CallbackKind.InvalidateRangeEnd).Select(Fmt);
        // __split_huge_pmd's own CLEAR range, then try_to_unmap_one's range over the whole folio
        Assert.Equal(["S(200000,400000)", "E(200000,400000)", "S(200000,400000)", "E(200000,400000)"], se);
        var irs = rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRange).ToList();
        Assert.Equal(PhysMem.HugePages + 1, irs.Count); // one per PTE under the PTL + the one from end
        Assert.All(irs.Take(PhysMem.HugePages), c => Assert.True(c.Atomic && c.End - c.Start == 0x1000));
        Assert.Equal(["S:live", "E:live", "S:live", "E:live"], probe.Log);
        Assert.True(k.Mem[head].Has(PageFlags.Free));
        for (int i = 0; i < PhysMem.HugePages; i++) Assert.Equal(SwapType.Swap, mm.PeekPte(H + (ulong)i * 0x1000).SwapKind);
        Assert.Equal(PhysMem.HugePages, k.Swap.InUse);
        Ok(k, async () =>
        {
            Assert.Equal(1UL, await Read(mm, H));
            Assert.Equal(2UL, await Read(mm, H + 0x1ff000));
            Assert.Equal(0UL, await Read(mm, H + 0x5000));
        });
        Consistent(k);
    }

    [Theory]
    [InlineData("6.13", "S(200000,400000,Clear) E(200000,400000,Clear) S(200000,400000,Clear) E(200000,400000,Clear)")]
    [InlineData("4.13", null)]
    public void ThpReclaim_From4_13_NotifiesTheWhole2M(string era, string? expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        long head = mm.PeekPmd(H).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.True(await Vmscan.ShrinkFolio(k, head)));
        var starts = rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRangeStart).ToList();
        Assert.Equal(2, starts.Count);
        Assert.All(starts, c => Assert.Equal((H, H + 0x200000), (c.Start, c.End)));
        if (expected != null) Assert.Equal(expected, Seq(rec));
        Assert.True(k.Mem[head].Has(PageFlags.Free));
    }

    [Theory]
    [InlineData("3.7")]
    [InlineData("4.10")]
    public void ThpReclaim_Before4_13_SendsOneInvalidatePageForTheFirstAddressOnly(string era)
    {
        // Historical bug 5(b): invalidate_page takes one address; a secondary mapping the THP with 4 KiB entries
        // keeps the other 511.
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        long head = mm.PeekPmd(H).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, head);
        Ok(k, async () => Assert.True(await Vmscan.ShrinkFolio(k, head)));
        Assert.Equal("IP(200000)", Seq(rec));
        Assert.Equal(["IP:live"], probe.Log);
        Assert.True(k.Mem[head].Has(PageFlags.Free));
        Assert.Equal(SwapType.Swap, mm.PeekPte(H + 0x123000).SwapKind);
        Ok(k, async () => Assert.Equal(1UL, await Read(mm, H)));
        Consistent(k);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void ReclaimSharedPage_UnmapsEveryMappingThroughRmap(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x2000);
        Ok(k, async () => await Write(mm, A, 5));
        long pfn = mm.PeekPte(A).Pfn;
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        Assert.Equal(2, k.Mem[pfn].MapCount);
        Ok(k, async () => Assert.True(await Vmscan.ShrinkFolio(k, pfn)));
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        int s1 = (int)mm.PeekPte(A).Pfn, s2 = (int)child.PeekPte(A).Pfn;
        Assert.Equal(s1, s2);
        Assert.Equal(2, k.Swap.RefCount(s1));
        Ok(k, async () =>
        {
            Assert.Equal(5UL, await Read(child, A));
            await Write(mm, A, 6);
            Assert.Equal(5UL, await Read(child, A));
        });
        Assert.Equal(0, k.Swap.InUse);
        Consistent(k);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void Reclaim_WithAnExtraReference_StillUnmapsButDoesNotFree(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 5));
        long pfn = mm.PeekPte(A).Pfn;
        Ok(k, async () =>
        {
            var g = await Gup.GetUserPage(mm, A, write: false);
            Assert.True(await Vmscan.ShrinkFolio(k, pfn));
            Assert.False(k.Mem[pfn].Has(PageFlags.Free));
            Assert.Equal(1, k.Mem[pfn].RefCount);
            Folio.Put(k, g.Pfn);
        });
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        Ok(k, async () => Assert.Equal(5UL, await Read(mm, A)));
    }
}
