using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class MadviseTests
{
    const ulong A = 0x10000;

    [Theory]
    [InlineData("2.6.32", "S(11000,13000)! E(11000,13000)!")]
    [InlineData("4.13", "S(11000,13000) IR(11000,13000) E(11000,13000) IR(11000,13000)")] // end, then the gather flush (zero-page PTE included)
    [InlineData("6.13", "S(11000,13000,Clear) E(11000,13000,Clear)")]
    public void Dontneed_ZapsInsideClear_FreesAfterEnd(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x4000);
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await Write(mm, A + 0x1000, 2);
            await Read(mm, A + 0x2000);
        });
        long keep = mm.PeekPte(A).Pfn, gone = mm.PeekPte(A + 0x1000).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, gone);
        Ok(k, async () => await Madvise.MadviseDontneed(mm, A + 0x1000, 0x2000));
        Assert.Equal(expected, Seq(rec));
        Assert.Equal(["S:live", "E:live"], probe.Log);
        Assert.True(k.Mem[gone].Has(PageFlags.Free));
        Assert.True(mm.PeekPte(A + 0x1000).IsNone);
        Assert.True(mm.PeekPte(A + 0x2000).IsNone);
        Assert.True(mm.PeekPte(A).Present);
        Assert.Equal(1, k.Mem[keep].RefCount);
        Assert.Single(mm.Vmas); // madvise keeps the VMA
        Ok(k, async () => Assert.Equal(0UL, await Read(mm, A + 0x1000)));
        Consistent(k);
    }

    [Theory]
    [InlineData("4.10", "S(10000,12000) IR(10000,12000) E(10000,12000) IR(10000,12000)")] // oldest named era with MADV_FREE (4.5)
    [InlineData("4.13", "S(10000,12000) IR(10000,12000) E(10000,12000) IR(10000,12000)")]
    [InlineData("6.13", "S(10000,12000,Clear) E(10000,12000,Clear)")]
    public void Free_CleansAndAgesPtes_MarksLazyfree_ReclaimDiscardsOnlyClean(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x4000);
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await Write(mm, A + 0x1000, 2);
        });
        long p0 = mm.PeekPte(A).Pfn, p1 = mm.PeekPte(A + 0x1000).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.True(await Madvise.MadviseFree(mm, A, 0x2000)));
        Assert.Equal(expected, Seq(rec));
        foreach (var (a, p) in new[] { (A, p0), (A + 0x1000, p1) })
        {
            var pte = mm.PeekPte(a);
            Assert.True(pte.Present && pte.Writable && !pte.Dirty && !pte.Accessed);
            Assert.True(k.Mem[p].Has(PageFlags.Lazyfree));
            Assert.False(k.Mem[p].Has(PageFlags.Dirty));
            Assert.Equal(1, k.Mem[p].RefCount);
            Assert.Equal(1, k.Mem[p].MapCount);
        }
        // The task writes p1 again: its PTE is dirty, so reclaim must keep it; p0 is still clean and is discarded.
        Ok(k, async () => await Write(mm, A + 0x1000, 3));
        bool r0 = false, r1 = true;
        Ok(k, async () =>
        {
            r0 = await Vmscan.ShrinkFolio(k, p0);
            r1 = await Vmscan.ShrinkFolio(k, p1);
        });
        Assert.True(r0);
        Assert.False(r1);
        Assert.True(k.Mem[p0].Has(PageFlags.Free));
        Assert.True(mm.PeekPte(A).IsNone);
        Assert.False(k.Mem[p1].Has(PageFlags.Free));
        Assert.False(k.Mem[p1].Has(PageFlags.Lazyfree)); // folio_set_swapbacked
        Assert.True(k.Mem[p1].Has(PageFlags.Dirty));
        Assert.Equal(p1, mm.PeekPte(A + 0x1000).Pfn);
        Assert.Equal(1, k.Mem[p1].RefCount);
        Ok(k, async () =>
        {
            Assert.Equal(0UL, await Read(mm, A));
            Assert.Equal(3UL, await Read(mm, A + 0x1000));
        });
        Assert.Equal(1, k.Stats[Stat.LazyfreeDiscarded]);
        Consistent(k);
    }

    [Fact]
    public void Free_DoesNotExistIn_2_6_32()
    {
        var k = Kernel("2.6.32");
        var mm = MmWithVma(k, A, 0x1000);
        Ok(k, async () => await Write(mm, A, 1));
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.False(await Madvise.MadviseFree(mm, A, 0x1000)));
        Assert.Empty(rec.Calls);
        Assert.True(mm.PeekPte(A).Dirty);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void Free_DropsSwapEntries_AndLeavesDirtySharedFoliosAlone(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x4000);
        MmStruct child = null!;
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await Write(mm, A + 0x1000, 2);
            Assert.True(await Vmscan.ShrinkFolio(k, mm.PeekPte(A).Pfn)); // A is now a swap entry
            await Read(mm, A + 0x2000);
        });
        Assert.Equal(SwapType.Swap, mm.PeekPte(A).SwapKind);
        int slot = (int)mm.PeekPte(A).Pfn;
        Assert.Equal(1, k.Swap.RefCount(slot));
        long shared = mm.PeekPte(A + 0x1000).Pfn;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        Assert.Equal(2, k.Swap.RefCount(slot));
        k.Mem[shared].Set(PageFlags.Dirty); // e.g. after a zap transferred dirty: a dirty folio mapped twice
        Ok(k, async () => await Madvise.MadviseFree(mm, A, 0x4000));
        Assert.True(mm.PeekPte(A).IsNone);
        Assert.Equal(1, k.Swap.RefCount(slot)); // the child's swap entry still holds it
        Assert.False(k.Mem[shared].Has(PageFlags.Lazyfree));
        Assert.True(k.Mem[shared].Has(PageFlags.Dirty));
        Ok(k, async () =>
        {
            Assert.Equal(0UL, await Read(mm, A));
            Assert.Equal(1UL, await Read(child, A));
            Assert.Equal(2UL, await Read(child, A + 0x1000));
        });
        Consistent(k);
    }
}
