using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Mm;

/// <summary>
/// The huge zero page (mm/huge_memory.c, 3.8+, transparent_hugepage/use_zero_page): a read fault on a THP-eligible
/// range maps one shared zero-filled 2 MiB folio with a read-only special PMD and no rmap or reference; a write or an
/// unshare splits it into PTEs of the 4 KiB zero page under a CLEAR invalidation and COWs one page; zap, fork and
/// MADV_FREE leave the folio alone.
/// </summary>
public class HugeZeroPageTests
{
    const ulong H = 0x200000;

    static (Kernel K, MmStruct Mm) Setup(string era = "6.13", bool useZeroPage = true)
    {
        var k = Kernel(era);
        k.ThpUseZeroPage = useZeroPage;
        return (k, MmWithVma(k, H, 0x200000, VmFlags.HugePage));
    }

    [Fact]
    public void ReadFault_MapsTheHugeZeroPage_SharedByFork_WithNoRmapAndNoReference()
    {
        var (k, mm) = Setup();
        MmStruct? child = null;
        Assert.Null(Run(k, async _ =>
        {
            Assert.Equal(0UL, await Memory.UserAccess(mm, H + 0x1000, write: false));
            child = await Fork.DupMmap(mm, "child");
        }));
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Present && pmd.Huge && pmd.Special && !pmd.Writable);
        Assert.Equal(k.Mem.HugeZeroPfn, pmd.Pfn);
        Assert.Equal(pmd.Pfn, child!.PeekPmd(H).Pfn);
        Assert.Equal(1, k.Mem[pmd.Pfn].RefCount);
        Assert.Equal(0, k.Mem.EntireMapcountHolder(pmd.Pfn).RefCount);
        Assert.Null(k.Checker.CheckPrimaryConsistency());
        ulong e = TaskMmu.PagemapEntry(mm, H + 0x1000);
        Assert.Equal((ulong)pmd.Pfn + 1, e & TaskMmu.PmPfnMask);
        Assert.Equal(0UL, e >> TaskMmu.PmMmapExclusive & 1);
    }

    [Fact]
    public void Write_SplitsIntoZeroPagePtes_WithAClearOverThe2MiB_AndCopiesOnePage()
    {
        var (k, mm) = Setup();
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, H, write: false)));
        var rec = Recorder(k, mm);
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, H + 0x5000, write: true, value: 7)));
        Assert.False(mm.PeekPmd(H).Huge);
        var written = mm.PeekPte(H + 0x5000);
        Assert.True(written.Writable && !written.Special && k.Mem[written.Pfn].Has(PageFlags.Anon));
        Assert.Equal(7UL, k.Mem[written.Pfn].Contents);
        for (ulong a = H; a < H + 0x200000; a += 0x1000)
            if (a != H + 0x5000) Assert.True(mm.PeekPte(a) is { Present: true, Special: true, Pfn: PhysMem.ZeroPfn, Writable: false });
        Assert.Contains(rec.Calls, c => c.Kind == CallbackKind.InvalidateRangeStart && c.Start == H && c.End == H + 0x200000 && c.Event == MmuNotifyEvent.Clear);
        Assert.Null(k.Checker.CheckPrimaryConsistency());
    }

    [Fact]
    public void Dontneed_ClearsThePmd_TheHugeZeroFolioStays()
    {
        var (k, mm) = Setup();
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, H, write: false);
            await Madvise.MadviseDontneed(mm, H, 0x200000);
        }));
        Assert.True(mm.PeekPmd(H).IsNone);
        Assert.False(k.Mem[k.Mem.HugeZeroPfn].Has(PageFlags.Free));
        Assert.Null(k.Checker.CheckPrimaryConsistency());
    }

    [Theory]
    [InlineData("6.13", false)] // the knob off (the model's default): a THP
    [InlineData("3.7", true)]   // no huge zero page before 3.8: a THP
    public void WithoutTheHugeZeroPage_AReadFaultAllocatesATHP(string era, bool knob)
    {
        var (k, mm) = Setup(era, knob);
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, H, write: false)));
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Huge && !pmd.Special);
        Assert.True(k.Mem[pmd.Pfn].Has(PageFlags.Anon));
        Assert.Equal(-1, k.Mem.HugeZeroPfn);
    }

    [Theory]
    [InlineData("thp.set: { knob: khugepaged/defrag, value: 1 }", "thp.set.knob", "not a modelled THP knob")]
    [InlineData("thp.set: { knob: enabled, value: 1 }", "thp.set.value", "not a transparent_hugepage/enabled setting")]
    [InlineData("thp.set: { knob: enabled, value: inherit }", "thp.set.value", "not a transparent_hugepage/enabled setting")]
    [InlineData("thp.set: { knob: hugepages-48kB/enabled, value: always }", "thp.set.knob", "not a modelled THP knob")]
    [InlineData("thp.set: { knob: hugepages-8kB/enabled, value: always }", "thp.set.knob", "not a modelled THP knob")]
    [InlineData("thp.set: { knob: hugepages-064kB/enabled, value: always }", "thp.set.knob", "not a modelled THP knob")]
    [InlineData("thp.set: { knob: hugepages-4096kB/enabled, value: always }", "thp.set.knob", "not a modelled THP knob")]
    [InlineData("thp.set: { knob: hugepages-64kB/enabled, value: sometimes }", "thp.set.value", "not a hugepages-64kB/enabled setting")]
    [InlineData("thp.set: { knob: use_zero_page, value: 2 }", "thp.set.value", "out of range")]
    public void BadThpKnob_IsALineError(string op, string field, string part) =>
        CliRunner.AssertBadInput("name: t\nprocesses:\n  - name: p\n    vmas: []\nthreads:\n  - name: m\n    process: p\n    ops:\n      - " + op + "\n",
            9, field, part);
}
