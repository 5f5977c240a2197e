using MmuSim.Mm;
using MmuSim.Notifier;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>A subscription whose non-blocking start fails with -EAGAIN the first <see cref="Failures"/> times.</summary>
sealed class BusySecondary : MmuNotifier
{
    public int Failures { get; set; }
    public int Attempts { get; private set; }
    public override NotifierOps Ops => NotifierOps.InvalidateRangeStart;

    public override ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        if (range.Blockable) return new(0);
        Attempts++;
        return new(Attempts <= Failures ? MmuNotifierCore.EAGAIN : 0);
    }
}

public class OomKillTests
{
    const ulong A = 0x10000;

    static (Kernel, MmStruct, long) Victim(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 0x2000);
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await Write(mm, A + 0x1000, 2);
        });
        return (k, mm, mm.PeekPte(A).Pfn);
    }

    [Fact]
    public void Reaper_2_6_32_DoesNotExist()
    {
        var (k, mm, pfn) = Victim("2.6.32");
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.False(await OomKill.OomReapTask(mm)));
        Assert.Empty(rec.Calls);
        Assert.False(k.Mem[pfn].Has(PageFlags.Free));
    }

    [Fact]
    public void Reaper_4_10_UnmapsWithNoNotifierAtAll()
    {
        var (k, mm, pfn) = Victim("4.10");
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.True(await OomKill.OomReapTask(mm)));
        // tlb_flush_mmu's invalidate_range is the only callback a secondary gets; start/end never come (5(d3)).
        Assert.Equal("IR(10000,12000)", Seq(rec));
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        Assert.True(mm.PeekPte(A).IsNone);
        Assert.True(mm.OomReaped);
    }

    [Fact]
    public void Reaper_4_15_SkipsAnMmWithNotifiers()
    {
        var (k, mm, pfn) = Victim("4.15");
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.True(await OomKill.OomReapTask(mm)));
        Assert.Empty(rec.Calls);
        Assert.False(k.Mem[pfn].Has(PageFlags.Free));
        Assert.True(mm.PeekPte(A).Present);
    }

    [Theory]
    [InlineData("4.13", "IR(10000,12000)")] // 4.13 has no nonblock start yet: unmapped without start/end
    [InlineData("4.19", "S(10000,12000,nb) IR(10000,12000) E(10000,12000,nb) IR(10000,12000)")]
    [InlineData("6.13", "S(10000,12000,Unmap,nb) E(10000,12000,Unmap,nb)")]
    public void Reaper_UnmapsEachVmaInsideANonblockingRange(string era, string expected)
    {
        var (k, mm, pfn) = Victim(era);
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, pfn);
        Ok(k, async () => Assert.True(await OomKill.OomReapTask(mm)));
        Assert.Equal(expected, Seq(rec));
        if (k.Era.Has(Eras.Feature.OomReaperNonblock)) Assert.Equal(["S:live", "E:live"], probe.Log);
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        Assert.True(mm.PeekPte(A).IsNone);
        Assert.Equal(0, k.Stats[Stat.OomReapRetries]);
    }

    [Theory]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void Reaper_OnEagain_SkipsTheVmaWithoutEnd_AndRetriesAfter100ms(string era)
    {
        var (k, mm, pfn) = Victim(era);
        var busy = new BusySecondary { Failures = 3 };
        Ok(k, async () => await mm.Notifiers.Register(busy));
        var rec = Recorder(k, mm);
        long t0 = k.S.ClockNs;
        Ok(k, async () => Assert.True(await OomKill.OomReapTask(mm)));
        Assert.Equal(4, busy.Attempts);
        Assert.Equal(3, k.Stats[Stat.OomReapRetries]);
        Assert.True(k.S.ClockNs - t0 >= 3 * OomKill.RetryDelayNs);
        // The recorder (newest subscription) is called first: every attempt starts it; the failed attempts never
        // unmap; from 5.5 the core ends the subscriptions whose start succeeded, before 5.5 nobody does.
        var kinds = rec.Calls.Where(c => c.Kind is Devices.CallbackKind.InvalidateRangeStart or Devices.CallbackKind.InvalidateRangeEnd)
            .Select(c => c.Kind == Devices.CallbackKind.InvalidateRangeStart ? "S" : "E");
        Assert.Equal(k.Era.Has(Eras.Feature.NonblockFailureCallsEnd) ? "S E S E S E S E" : "S S S S E", string.Join(" ", kinds));
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
    }

    [Theory]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void Reaper_GivesUpAfterTenAttempts_LeavingThePtes(string era)
    {
        var (k, mm, pfn) = Victim(era);
        var busy = new BusySecondary { Failures = 100 };
        Ok(k, async () => await mm.Notifiers.Register(busy));
        Ok(k, async () => Assert.False(await OomKill.OomReapTask(mm)));
        Assert.Equal(OomKill.MaxOomReapRetries, busy.Attempts);
        Assert.True(mm.PeekPte(A).Present);
        Assert.False(k.Mem[pfn].Has(PageFlags.Free));
        Assert.True(mm.OomReaped);
    }
}
