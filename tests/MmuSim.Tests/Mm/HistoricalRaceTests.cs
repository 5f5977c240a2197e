using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Sched;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>
/// The historical placements of kernel-facts §5 are reproducible with a real secondary (the dmirror-style
/// <see cref="DeviceMirror"/>, whose translations the checker sees), and gone in the eras that fixed them.
/// </summary>
public class HistoricalRaceTests
{
    const ulong A = 0x10000, H = 0x200000;

    static (Kernel k, MmStruct mm, DeviceMirror dev) Mirrored(string era, ulong start, ulong len, VmFlags flags, ulong touch, bool write)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, start, len, flags);
        var dev = new DeviceMirror(k, mm, "dmirror");
        k.Checker.AddSecondary(dev);
        Ok(k, async () =>
        {
            await mm.Notifiers.Register(dev);
            await Write(mm, start, 1);
            Assert.NotNull(await dev.Access(touch, write, write ? 2UL : 0));
        });
        Assert.Equal(1, dev.Entries);
        return (k, mm, dev);
    }

    [Theory]
    [InlineData("2.6.32", null)]                          // invalidate_page under the PTL: coherent
    [InlineData("4.10", Invariants.StaleTranslation)]     // 5(a): after pte_unmap_unlock the device still maps the page
    [InlineData("4.19", null)]                            // start/end around the walk
    [InlineData("6.13", null)]
    public void Reclaim_5a_InvalidatePageAfterPtl_LeavesAStaleWindow(string era, string? expected)
    {
        var (k, mm, dev) = Mirrored(era, A, 0x1000, VmFlags.None, A, write: false);
        long pfn = mm.PeekPte(A).Pfn;
        var v = Run(k, async _ => await Vmscan.ShrinkFolio(k, pfn), "kswapd");
        Assert.Equal(expected, v?.Invariant);
        if (expected == null)
        {
            Assert.Equal(0, dev.Entries);
            Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        }
    }

    [Theory]
    [InlineData("4.10", Invariants.StaleTranslation)]     // 5(b): invalidate_page(H) only; the device keeps H+4K
    [InlineData("4.19", null)]                            // the whole 2 MiB
    [InlineData("6.13", null)]
    public void ThpReclaim_5b_SingleAddressInvalidation_MissesTheOtherSubpages(string era, string? expected)
    {
        var (k, mm, dev) = Mirrored(era, H, 0x200000, VmFlags.HugePage, H + 0x1000, write: false);
        long head = mm.PeekPmd(H).Pfn;
        var v = Run(k, async _ => await Vmscan.ShrinkFolio(k, head), "kswapd");
        Assert.Equal(expected, v?.Invariant);
        if (v != null) Assert.Equal(H + 0x1000, v.Address);
        else Assert.Equal(0, dev.Entries);
    }

    [Theory]
    [InlineData("4.10", Invariants.WritableWithoutPrimary)] // 5(b) for writeback: the device can still write H+4K
    [InlineData("4.19", null)]
    [InlineData("6.13", null)]
    public void ThpMkclean_5b_LeavesAWritableSubpageMapping(string era, string? expected)
    {
        var (k, mm, dev) = Mirrored(era, H, 0x200000, VmFlags.HugePage, H + 0x1000, write: true);
        long head = mm.PeekPmd(H).Pfn;
        var v = Run(k, async _ => await PageWriteback.FolioClearDirtyForIo(k, head), "writeback");
        Assert.Equal(expected, v?.Invariant);
        if (v == null) Assert.Equal(0, dev.Entries);
    }

    [Theory]
    [InlineData("4.10", Invariants.StaleTranslation)]    // 5(d3): no notifier at all; caught as soon as the PTL is dropped, before the free
    [InlineData("4.15", null)]                           // skips an mm with notifiers (nothing reaped)
    [InlineData("4.19", null)]                           // nonblocking start/end per VMA
    [InlineData("6.13", null)]
    public void OomReaper_5d3_FreesUnderASecondaryBefore4_15(string era, string? expected)
    {
        var (k, mm, dev) = Mirrored(era, A, 0x1000, VmFlags.None, A, write: false);
        var v = Run(k, async _ => await OomKill.OomReapTask(mm), "oom_reaper");
        Assert.Equal(expected, v?.Invariant);
        if (expected == null && k.Era.Has(Eras.Feature.OomReaperNonblock)) Assert.Equal(0, dev.Entries);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void EveryOtherPrimaryPath_KeepsAMirroringDeviceCoherent(string era)
    {
        var (k, mm, dev) = Mirrored(era, A, 0x4000, VmFlags.None, A, write: true);
        Ok(k, async () =>
        {
            await dev.Access(A + 0x1000, write: true, 3);
            var child = await Fork.DupMmap(mm, "c");
            await dev.Access(A + 0x2000, write: false);
            await Write(mm, A + 0x1000, 4);                         // COW after fork
            Assert.Equal(4UL, await dev.Access(A + 0x1000, write: false));
            await Mprotect.DoMprotect(mm, A, 0x1000, Prot.Read);
            Assert.Null(await dev.Access(A, write: true, 5));       // GUP refuses: read-only VMA
            await Mprotect.DoMprotect(mm, A, 0x1000, Prot.ReadWrite);
            await dev.Access(A, write: true, 6);
            await Migrate.MigrateFolio(k, mm.PeekPte(A).Pfn);
            Assert.Equal(6UL, await dev.Access(A, write: false));
            await PageWriteback.FolioClearDirtyForIo(k, mm.PeekPte(A).Pfn);
            await dev.Access(A, write: true, 7);
            await Rmap.FolioReferenced(k, mm.PeekPte(A).Pfn);
            await Madvise.MadviseDontneed(mm, A + 0x2000, 0x1000);
            await Mremap.DoMremap(mm, A + 0x1000, 0x3000, 0x101000); // mprotect split the VMA at A + 0x1000
            Assert.Equal(4UL, await dev.Access(0x101000, write: false));
            Assert.Equal(7UL, await dev.Access(A, write: false));
            await Mmap.ExitMmap(child);
            await Mmap.Munmap(mm, 0x101000, 0x3000);
            await Mmap.Munmap(mm, A, 0x1000);
        });
        Assert.Equal(0, dev.Entries);
    }
}
