using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>Reclaim of page-cache folios (shrink_folio_list → try_to_unmap → pageout → __remove_mapping).</summary>
public class FileReclaimTests
{
    const ulong S = 0x300000;

    static (Kernel K, MmStruct Mm, AddressSpace F) SharedFile(string era, FileKind kind, VmFlags extra = VmFlags.None)
    {
        var k = Kernel(era);
        var mm = k.CreateMm("task");
        var f = k.NewAddressSpace(kind, "f", 4);
        f.Users++;
        Ok(k, async () => await Mmap.DoMmap(mm, S, 4 << 12, Prot.ReadWrite, VmFlags.Shared | extra, file: f));
        return (k, mm, f);
    }

    [Theory]
    [InlineData(FileKind.Regular, "6.13", "S(300000,301000,Clear) E(300000,301000,Clear)")]
    [InlineData(FileKind.Memfd, "6.13", "S(300000,301000,Clear) E(300000,301000,Clear)")]
    [InlineData(FileKind.Regular, "4.10", "IP(300000)")]
    public void DirtySharedPage_IsUnmappedWrittenOutAndFreed_ThenRefaultsItsContents(FileKind kind, string era, string expected)
    {
        var (k, mm, f) = SharedFile(era, kind);
        Ok(k, async () => await Write(mm, S, 0x77));
        long pfn = f.Pages[0];
        Assert.Equal(2, k.Mem[pfn].RefCount);
        var rec = Recorder(k, mm);
        bool freed = false;
        Ok(k, async () => freed = await Vmscan.ShrinkFolio(k, pfn));
        Assert.True(freed);
        Assert.Equal(expected, Seq(rec));
        Assert.True(mm.PeekPte(S).IsNone);
        Assert.False(f.Pages.ContainsKey(0));
        Assert.Equal(0x77UL, f.Backing[0]);
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
        Assert.Equal(1, k.Stats[Stat.PagesCleaned]);
        Assert.Equal(1, k.Stats[Stat.PagesReclaimed]);
        Assert.Equal(0, mm.RssFile);
        Ok(k, async () => Assert.Equal(0x77UL, await Read(mm, S)));
        Assert.True(f.Pages.ContainsKey(0));
        Assert.False(f.Backing.ContainsKey(0));
        Consistent(k);
    }

    [Fact]
    public void CleanUnmappedPage_IsDroppedWithoutAWrite()
    {
        var (k, mm, f) = SharedFile("6.13", FileKind.Regular);
        Ok(k, async () => await Read(mm, S + 0x1000));
        long pfn = f.Pages[1];
        Ok(k, async () => await Mmap.Munmap(mm, S, 4 << 12));
        Assert.Equal(1, k.Mem[pfn].RefCount); // the page cache's only
        bool freed = false;
        Ok(k, async () => freed = await Vmscan.ShrinkFolio(k, pfn));
        Assert.True(freed);
        Assert.Equal(0, k.Stats[Stat.PagesCleaned]);
        Assert.Equal(0UL, f.Backing[1]);
    }

    [Fact]
    public void PinnedPage_IsUnmappedButStaysInTheCache()
    {
        var (k, mm, f) = SharedFile("6.13", FileKind.Memfd);
        Ok(k, async () => await Write(mm, S, 5));
        long pfn = f.Pages[0];
        Ok(k, async () => Assert.Equal(0, (await Gup.GetUserPages(mm, S, 1, GupFlags.Pin | GupFlags.Longterm, fast: false)).Error));
        bool freed = true;
        Ok(k, async () => freed = await Vmscan.ShrinkFolio(k, pfn));
        Assert.False(freed);
        Assert.True(mm.PeekPte(S).IsNone); // try_to_unmap ran; __remove_mapping's freeze failed
        Assert.Equal(pfn, f.Pages[0]);
        Assert.False(f.Backing.ContainsKey(0));
        Assert.False(k.Mem[pfn].Has(PageFlags.Free));
        Ok(k, async () => Assert.Equal(5UL, await Read(mm, S)));
        Assert.Equal(pfn, mm.PeekPte(S).Pfn); // the refault finds the same cached page
        Assert.Equal(0, k.Stats[Stat.PagesReclaimed]);
    }

    [Theory]
    [InlineData("6.13", true)]
    [InlineData("5.13", false)] // not armed: registering WP on shmem needs 5.19 (vma_can_userfault)
    public void UffdWpShmemPte_LeavesAMarker(string era, bool marker)
    {
        var (k, mm, f) = SharedFile(era, FileKind.Memfd, marker ? VmFlags.UffdWp : VmFlags.None);
        Ok(k, async () => await Write(mm, S, 5));
        long pfn = f.Pages[0];
        if (marker)
        {
            int t = mm.PteTable(S);
            k.PageTables.Entry(t, (int)((S >> 12) & 511)) = mm.PeekPte(S).WithUffdWp(true).Raw; // as UFFDIO_WRITEPROTECT leaves it
        }
        Ok(k, async () => await Vmscan.ShrinkFolio(k, pfn));
        Assert.Equal(marker, mm.PeekPte(S).IsUffdWpMarker);
        Assert.Equal(!marker, mm.PeekPte(S).IsNone);
    }
}
