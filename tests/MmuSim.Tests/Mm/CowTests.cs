using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Notifier;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Mm;

public class CowTests
{
    const ulong A = 0x10000;

    [Fact]
    public void ReadFaultMapsZeroPageThenWriteCopies_2_6_32_NotifiesChangePteWithoutStartEnd()
    {
        var k = Kernel("2.6.32");
        var mm = MmWithVma(k, A, 0x4000);
        var rec = Recorder(k, mm);
        Assert.Null(Run(k, async _ =>
        {
            Assert.Equal(0UL, await Memory.UserAccess(mm, A, write: false));
            Assert.Equal(PhysMem.ZeroPfn, mm.PeekPte(A).Pfn);
            Assert.False(mm.PeekPte(A).Writable);
            await Memory.UserAccess(mm, A, write: true, value: 7);
        }));
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && pte.Writable && pte.Dirty);
        Assert.NotEqual(PhysMem.ZeroPfn, pte.Pfn);
        Assert.Equal(7UL, k.Mem[pte.Pfn].Contents);
        Assert.Equal(1, k.Mem[pte.Pfn].RefCount);
        Assert.Equal(1, k.Mem[pte.Pfn].MapCount);
        var c = Assert.Single(rec.Calls);
        Assert.Equal(CallbackKind.ChangePte, c.Kind);
        Assert.Equal(A, c.Start);
        Assert.True(c.Atomic); // under the PTL (and RCU)
        Assert.Equal(pte.Pfn, c.Pte.Pfn);
    }

    [Theory]
    [InlineData("3.7", "InvalidateRangeStart,ChangePte,InvalidateRangeEnd")]
    [InlineData("4.13", "InvalidateRangeStart,InvalidateRange,ChangePte,InvalidateRange,InvalidateRangeEnd")] // no only_end yet
    [InlineData("4.19", "InvalidateRangeStart,InvalidateRange,ChangePte,InvalidateRangeEnd")]
    [InlineData("6.13", "InvalidateRangeStart,InvalidateRangeEnd")]
    public void CowFromZeroPage_IsBracketedByStartEnd(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x4000);
        var rec = Recorder(k, mm);
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, A, write: false);
            await Memory.UserAccess(mm, A, write: true, value: 9);
        }));
        Assert.Equal(expected, string.Join(",", rec.Calls.Select(c => c.Kind)));
        Assert.All(rec.Calls.Where(c => c.Kind is CallbackKind.InvalidateRangeStart or CallbackKind.InvalidateRangeEnd),
            c => { Assert.Equal(A, c.Start); Assert.Equal(A + 0x1000, c.End); Assert.False(c.Atomic); });
        var ev = k.Era.Has(Eras.Feature.RangeEvents) ? MmuNotifyEvent.Clear : MmuNotifyEvent.None;
        Assert.Equal(ev, rec.Calls[0].Event);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void MunmapZapsInsideUnmapRange_AndFreesAfterEnd(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x4000);
        var rec = Recorder(k, mm);
        long pfn = -1;
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, A + 0x1000, write: true, value: 3);
            pfn = mm.PeekPte(A + 0x1000).Pfn;
            await Mmap.Munmap(mm, A, 0x4000);
        }));
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        Assert.Empty(mm.Vmas);
        var se = rec.Calls.Where(c => c.Kind is CallbackKind.InvalidateRangeStart or CallbackKind.InvalidateRangeEnd).ToList();
        Assert.Equal(2, se.Count);
        Assert.Equal((A, A + 0x4000), (se[0].Start, se[0].End));
        if (k.Era.Has(Eras.Feature.RangeEvents)) Assert.Equal(MmuNotifyEvent.Unmap, se[0].Event);
    }
}
