using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Mm;

/// <summary>
/// File-backed memory (mm/filemap.c, mm/shmem.c, mm/truncate.c): private and shared mappings of a memfd or a regular
/// file share the page cache; a private write copies; a regular file's shared mapping is write-notified and cleaned
/// by writeback through the file rmap; truncation and hole punching unmap every mapping with CLEAR invalidations.
/// </summary>
public class FileMappingTests
{
    const ulong P = 0x100000, S = 0x300000;

    static (Kernel K, MmStruct Mm, AddressSpace F) Setup(string era, FileKind kind, ulong pages = 1)
    {
        var k = Kernel(era);
        var mm = k.CreateMm("task");
        var f = k.NewAddressSpace(kind, "f", pages);
        f.Users++;
        Assert.Null(Run(k, async _ =>
        {
            await Mmap.DoMmap(mm, P, pages << 12, Prot.ReadWrite, VmFlags.None, file: f);
            await Mmap.DoMmap(mm, S, pages << 12, Prot.ReadWrite, VmFlags.Shared, file: f);
        }));
        return (k, mm, f);
    }

    [Theory]
    [InlineData(FileKind.Memfd)]
    [InlineData(FileKind.Regular)]
    public void PrivateRead_MapsTheCachedPageReadOnly_PrivateWriteCopies_SharedSeesTheFile(FileKind kind)
    {
        var (k, mm, f) = Setup("6.13", kind);
        Assert.Null(Run(k, async _ =>
        {
            Assert.Equal(0UL, await Memory.UserAccess(mm, P, write: false));
            Assert.Equal(0UL, await Memory.UserAccess(mm, S, write: false));
        }));
        long cached = f.Pages[0];
        var pp = mm.PeekPte(P);
        var sp = mm.PeekPte(S);
        Assert.Equal(cached, pp.Pfn);
        Assert.Equal(cached, sp.Pfn);
        Assert.False(pp.Writable);
        Assert.Equal(kind == FileKind.Memfd, sp.Writable); // a regular file's shared read fault is write-notified
        Assert.Equal(2, k.Mem[cached].MapCount);
        Assert.Equal(3, k.Mem[cached].RefCount); // page cache + two mappings
        Assert.False(k.Mem[cached].Has(PageFlags.Anon));
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, P, write: true, value: 0xff);
            await Memory.UserAccess(mm, S, write: true, value: 7);
        }));
        var copy = mm.PeekPte(P);
        Assert.NotEqual(cached, copy.Pfn);
        Assert.True(copy.Writable && copy.Dirty && k.Mem[copy.Pfn].Has(PageFlags.Anon | PageFlags.AnonExclusive));
        Assert.Equal(0xffUL, k.Mem[copy.Pfn].Contents);
        Assert.Equal(7UL, k.Mem[cached].Contents);
        Assert.Equal(1, k.Mem[cached].MapCount);
        Assert.True(mm.PeekPte(S).Writable && mm.PeekPte(S).Dirty);
        f.AssertInvariants(k);
    }

    [Fact]
    public void Writeback_CleansOnlyTheSharedMapping_ThroughTheFileRmap_WithAProtectionPageInvalidation()
    {
        var (k, mm, f) = Setup("6.13", FileKind.Regular);
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, P, write: false);
            await Memory.UserAccess(mm, S, write: true, value: 5);
        }));
        var rec = Recorder(k, mm);
        bool dirty = false;
        Assert.Null(Run(k, async _ => dirty = await PageWriteback.FolioClearDirtyForIo(k, f.Pages[0])));
        Assert.True(dirty);
        var sp = mm.PeekPte(S);
        Assert.False(sp.Writable || sp.Dirty);
        var start = Assert.Single(rec.Calls, c => c.Kind == CallbackKind.InvalidateRangeStart);
        Assert.Equal((S, S + 0x1000, MmuNotifyEvent.ProtectionPage), (start.Start, start.End, start.Event));
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, S, write: true, value: 6))); // wp_page_shared
        Assert.True(mm.PeekPte(S).Writable);
        Assert.Equal(6UL, k.Mem[f.Pages[0]].Contents);
    }

    [Fact]
    public void Truncate_UnmapsEveryMappingWithClear_EvenThePrivateCopy_ThenFaultsAreSigbus()
    {
        var (k, mm, f) = Setup("6.13", FileKind.Memfd, pages: 2);
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, S + 0x1000, write: true, value: 3);
            await Memory.UserAccess(mm, P + 0x1000, write: true, value: 4); // private COW copy of page 1
            await Memory.UserAccess(mm, P, write: false);
        }));
        long page1 = f.Pages[1];
        var rec = Recorder(k, mm);
        Assert.Null(Run(k, async _ => await Truncate.TruncateSetsize(k, f, 1)));
        Assert.True(mm.PeekPte(P + 0x1000).IsNone);
        Assert.True(mm.PeekPte(S + 0x1000).IsNone);
        Assert.True(mm.PeekPte(P).Present); // page 0 stays
        Assert.False(f.Pages.ContainsKey(1));
        Assert.True(k.Mem[page1].Has(PageFlags.Free));
        var clears = rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRangeStart).Select(c => (c.Start, c.End, c.Event)).ToList();
        Assert.Contains((P + 0x1000, P + 0x2000, MmuNotifyEvent.Clear), clears);
        Assert.Contains((S + 0x1000, S + 0x2000, MmuNotifyEvent.Clear), clears);
        Assert.Null(Run(k, async _ =>
        {
            Assert.Equal(VmFault.SigBus, (await Memory.UserAccessResult(mm, S + 0x1000, write: false)).Fault);
            Assert.Equal(VmFault.SigBus, (await Memory.UserAccessResult(mm, P + 0x1000, write: true, value: 1)).Fault);
        }));
        f.AssertInvariants(k);
    }

    [Fact]
    public void PunchHole_DropsThePage_TheNextFaultReadsZeroes()
    {
        var (k, mm, f) = Setup("6.13", FileKind.Regular);
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, S, write: true, value: 9)));
        Assert.Null(Run(k, async _ => await Truncate.PunchHole(k, f, 0, 1)));
        Assert.True(mm.PeekPte(S).IsNone);
        Assert.Null(Run(k, async _ => Assert.Equal(0UL, await Memory.UserAccess(mm, S, write: false))));
    }

    [Fact]
    public void Fork_ChildMapsTheSameCachedPage_AndAgingFindsBothMappings()
    {
        var (k, mm, f) = Setup("6.13", FileKind.Memfd);
        MmStruct? child = null;
        int young = 0;
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, S, write: true, value: 2);
            child = await Fork.DupMmap(mm, "child");
            Assert.Equal(2UL, await Memory.UserAccess(child, S, write: false));
            await Memory.UserAccess(child, S, write: true, value: 8);
            Assert.Equal(8UL, await Memory.UserAccess(mm, S, write: false));
            young = await Rmap.FolioReferenced(k, f.Pages[0]);
        }));
        Assert.Equal(4, f.Mappings.Count); // private + shared, in parent and child
        Assert.Equal(2, young);            // the two shared mappings map it (the private ones never faulted)
        Assert.Equal(f.Pages[0], child!.PeekPte(S).Pfn);
        f.AssertInvariants(k);
    }

    [Fact]
    public void BadFileOps_Exit2WithFileLineField()
    {
        Cli.CliRunner.AssertBadInput(Cli.CliRunner.MinimalScenario.Replace("read: { addr: 0x100000 }", "file.create: { as: f, size: 5 }"), 10, "file.create.size", "not a multiple of the page size");
        Cli.CliRunner.AssertBadInput(Cli.CliRunner.MinimalScenario.Replace("read: { addr: 0x100000 }", "file.create: { as: f, size: 4K, kind: ext4 }"), 10, "file.create.kind", "not a file kind");
        Cli.CliRunner.AssertBadInput(Cli.CliRunner.MinimalScenario.Replace("read: { addr: 0x100000 }", "mmap: { addr: 0x400000, len: 4K, file: nope }"), 10, "mmap.file", "no op creates a file named 'nope'");
        Cli.CliRunner.AssertBadInput(Cli.CliRunner.MinimalScenario.Replace("read: { addr: 0x100000 }", "mmap: { addr: 0x400000, len: 4K, offset: 4K }"), 10, "mmap.offset", "needs a file");
    }
}
