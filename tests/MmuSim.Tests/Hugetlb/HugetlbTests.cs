using MmuSim.Devices;
using MmuSim.Hugetlb;
using MmuSim.Ksm;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Tests.Cli;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Hugetlb;

/// <summary>
/// hugetlb (issue 12 item 5): the pool, hugetlb_no_page, hugetlb_wp's reuse/copy/unshare, fork's copy, mprotect and
/// zap, with the PMD bits, refcounts, mapcounts and the notifier calls a recording secondary sees, per era.
/// </summary>
public class HugetlbTests
{
    const ulong A = 0x200000;
    const ulong H = MmStruct.PmdSize;

    static (Kernel K, MmStruct Mm) Mapped(string era, int pool = 2, Prot prot = Prot.ReadWrite)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, H, VmFlags.Hugetlb, prot);
        Assert.Equal(0, HugetlbPages.Of(k).SetNrHugepages(pool));
        return (k, mm);
    }

    static long Head(MmStruct mm) => mm.PeekPmd(A).Pfn;

    static string Log(RecordingSecondary rec) => string.Join(" ", rec.Calls.Select(c =>
        $"{c.Kind switch { CallbackKind.InvalidateRangeStart => "S", CallbackKind.InvalidateRangeEnd => "E", CallbackKind.InvalidateRange => "IR", _ => c.Kind.ToString() }}" +
        $"[{(c.Start - A) / MmStruct.PageSize},{(c.End - A) / MmStruct.PageSize})"));

    [Theory]
    [InlineData("3.10")]
    [InlineData("5.13")]
    [InlineData("6.13")]
    public void ReadFault_MapsReadOnlyExclusive_WriteReusesInPlace_NoNotifier(string era)
    {
        var (k, mm) = Mapped(era);
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.Equal(0UL, await Memory.UserAccess(mm, A + 5 * MmStruct.PageSize, write: false)));
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && !pmd.Writable);
        long head = pmd.Pfn;
        Assert.True(HugetlbPages.IsHugetlbFolio(k, head));
        Assert.Equal(1, k.Mem[head].RefCount);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.True(k.Mem[head].Has(PageFlags.Anon | PageFlags.AnonExclusive));
        Assert.Equal(1, HugetlbPages.Of(k).FreeHugepages);
        Ok(k, async () => await Memory.UserAccess(mm, A + 7 * MmStruct.PageSize, write: true, value: 9));
        pmd = mm.PeekPmd(A);
        Assert.True(pmd.Writable && pmd.Dirty);
        Assert.Equal(head, pmd.Pfn);
        Assert.Equal(9UL, k.Mem[head + 7].Contents);
        Assert.Empty(rec.Calls); // faults on none entries and upgrades are never notified
    }

    [Fact]
    public void EmptyPool_FaultIsSigbus()
    {
        var (k, mm) = Mapped("6.13", pool: 0);
        AccessResult r = default;
        Ok(k, async () => r = await Memory.UserAccessResult(mm, A, write: true, value: 1));
        Assert.Equal(VmFault.SigBus, r.Fault);
        Assert.True(mm.PeekPmd(A).IsNone);
    }

    // COW after fork: the copy is one 2 MiB page inside CLEAR over the huge page; 3.19-6.5 also invalidate_range it
    // after huge_ptep_clear_flush, and the plain end invalidates it again. fork itself brackets the parent's VMA with
    // CLEAR (copy_hugetlb_page_range), whose end in 3.19-6.5 calls invalidate_range too.
    [Theory]
    [InlineData("3.10", "S[0,512) E[0,512) S[0,512) E[0,512)")]
    [InlineData("4.19", "S[0,512) IR[0,512) E[0,512) S[0,512) IR[0,512) IR[0,512) E[0,512)")]
    [InlineData("6.1", "S[0,512) IR[0,512) E[0,512) S[0,512) IR[0,512) IR[0,512) E[0,512)")]
    [InlineData("6.13", "S[0,512) E[0,512) S[0,512) E[0,512)")]
    public void ForkThenWrite_CopiesTheHugePageInsideClear(string era, string expected)
    {
        var (k, mm) = Mapped(era);
        Ok(k, async () => await Memory.UserAccess(mm, A, write: true, value: 1));
        long old = Head(mm);
        var rec = Recorder(k, mm);
        MmStruct? child = null;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        Assert.False(mm.PeekPmd(A).Writable);
        Assert.False(child!.PeekPmd(A).Writable);
        Assert.Equal(old, child.PeekPmd(A).Pfn);
        Assert.Equal(2, k.Mem[old].RefCount);
        Assert.Equal(2, k.Mem.EntireMapcountHolder(old).RefCount);
        Assert.False(k.Mem[old].Has(PageFlags.AnonExclusive));
        Ok(k, async () => await Memory.UserAccess(mm, A + MmStruct.PageSize, write: true, value: 0xff));
        Assert.Equal(expected, Log(rec));
        if (k.Era.Has(Eras.Feature.RangeEvents))
            Assert.All(rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRangeStart), c => Assert.Equal(MmuNotifyEvent.Clear, c.Event));
        long nw = Head(mm);
        Assert.NotEqual(old, nw);
        Assert.True(mm.PeekPmd(A).Writable);
        Assert.Equal((1, 1), (k.Mem[old].RefCount, k.Mem.EntireMapcountHolder(old).RefCount));
        Assert.Equal(1UL, k.Mem[old].Contents);
        Assert.Equal((1UL, 0xffUL), (k.Mem[nw].Contents, k.Mem[nw + 1].Contents));
        Assert.Equal(0, HugetlbPages.Of(k).FreeHugepages);
    }

    // fork of a pinned page: 5.5 shares it (the parent's next write copies away from the pin); from 5.12 the child gets
    // its own copy and the parent keeps the pinned page writable.
    [Theory]
    [InlineData("5.5", false)]
    [InlineData("5.13", true)]
    [InlineData("6.13", true)]
    public void ForkOfPinnedPage_CopiesForTheChildFrom512(string era, bool copies)
    {
        var (k, mm) = Mapped(era);
        Ok(k, async () => await Memory.UserAccess(mm, A, write: true, value: 1));
        long head = Head(mm);
        Ok(k, async () => Assert.Equal(0, (await Gup.GetUserPages(mm, A, 1, GupFlags.Pin | GupFlags.Write | GupFlags.Longterm, false)).Error));
        MmStruct? child = null;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        Assert.Equal(copies, child!.PeekPmd(A).Pfn != head);
        Assert.Equal(copies, mm.PeekPmd(A).Writable);
        if (copies) Assert.Equal(1UL, k.Mem[child.PeekPmd(A).Pfn].Contents);
    }

    // A R/O pin on a shared page unshares it from 5.19 (a read-only exclusive copy); before, the pin holds the shared page.
    [Theory]
    [InlineData("5.13", false)]
    [InlineData("6.13", true)]
    public void ReadOnlyPinOnSharedPage_UnsharesFrom519(string era, bool unshares)
    {
        var (k, mm) = Mapped(era);
        Ok(k, async () => await Memory.UserAccess(mm, A, write: true, value: 1));
        long old = Head(mm);
        Ok(k, async () => await Fork.DupMmap(mm, "c"));
        UserPages? pin = null;
        Ok(k, async () => pin = (await Gup.GetUserPages(mm, A, 1, GupFlags.Pin | GupFlags.Longterm, false)).Pages);
        var pmd = mm.PeekPmd(A);
        Assert.Equal(unshares, pmd.Pfn != old);
        Assert.False(pmd.Writable);
        Assert.Equal(pmd.Pfn, pin!.Pfns[0]);
        if (unshares) Assert.True(k.Mem[pmd.Pfn].Has(PageFlags.AnonExclusive));
    }

    // hugetlb_change_protection brackets the whole range eagerly (even with nothing mapped), unlike change_protection's
    // lazy start; 4.19 also invalidates the range (IR) once the entries are write-protected.
    [Theory]
    [InlineData("4.19", true, "S[0,512) IR[0,512) E[0,512)")]
    [InlineData("6.13", true, "S[0,512) E[0,512)")]
    [InlineData("6.13", false, "S[0,512) E[0,512)")]
    public void Mprotect_BracketsTheWholeRange(string era, bool populated, string expected)
    {
        var (k, mm) = Mapped(era);
        if (populated) Ok(k, async () => await Memory.UserAccess(mm, A, write: true, value: 1));
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mprotect.DoMprotect(mm, A, H, Prot.Read));
        Assert.Equal(expected, Log(rec));
        if (k.Era.Has(Eras.Feature.RangeEvents)) Assert.Equal(MmuNotifyEvent.ProtectionVma, rec.Calls[0].Event);
        if (populated) Assert.False(mm.PeekPmd(A).Writable);
    }

    [Fact]
    public void Munmap_ReturnsThePageToThePool_UnderUnmap()
    {
        var (k, mm) = Mapped("6.13");
        Ok(k, async () => await Memory.UserAccess(mm, A, write: true, value: 1));
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mmap.Munmap(mm, A, H));
        Assert.Contains(rec.Calls, c => c.Kind == CallbackKind.InvalidateRangeStart && c.Start == A && c.End == A + H && c.Event == MmuNotifyEvent.Unmap);
        Assert.Equal(2, HugetlbPages.Of(k).FreeHugepages);
    }

    [Fact]
    public void Ksm_IgnoresHugetlb()
    {
        var (k, mm) = Mapped("6.13");
        Ok(k, async () => await Memory.UserAccess(mm, A, write: true, value: 1));
        Ok(k, async () => Assert.Equal(0, await Ksmd.Of(k).KsmMadvise(mm, A, H, mergeable: true)));
        Assert.Equal(VmFlags.None, mm.FindVma(A)!.Flags & VmFlags.Mergeable);
        Ok(k, async () => await Ksmd.Of(k).ScanFull(2));
        Assert.Equal(0, Ksmd.Of(k).PagesShared);
        Assert.True(mm.PeekPmd(A).Writable);
    }

    const string Header = """
        name: h
        era: "6.13"
        processes:
          - name: p
            vmas: []
        threads:
          - name: main
            process: p
            ops:
              - hugetlb.set: { knob: nr_hugepages, value: 2 }
              - mmap: { addr: 0x200000, len: 2M, flags: hugetlb }

        """;

    [Theory]
    [InlineData("      - munmap: { addr: 0x201000, len: 4K }", 12, "munmap.addr", "not on 2 MiB boundaries")]
    [InlineData("      - mprotect: { addr: 0x200000, len: 4K, prot: r }", 12, "mprotect.len", "not on 2 MiB boundaries")]
    [InlineData("      - reclaim: { addr: 0x200000 }", 12, "reclaim.addr", "reclaim on hugetlb memory")]
    [InlineData("      - madvise: { addr: 0x200000, len: 2M, advice: free }", 12, "madvise.addr", "madvise free on hugetlb memory")]
    [InlineData("      - mmap: { addr: 0x600000, len: 4K, flags: hugetlb }", 12, "mmap.len", "MAP_HUGETLB")]
    [InlineData("      - hugetlb.set: { knob: overcommit, value: 1 }", 12, "hugetlb.set.knob", "nr_hugepages")]
    public void BadInput_IsOneLineExit2(string op, int line, string field, string part) =>
        CliRunner.AssertBadInput(Header + op + "\n", line, field, part);

    // memfd(MFD_HUGETLB): the page cache holds the huge page (one pool page) until the file and its mappings are gone;
    // a private write copies it into an anon page (a second pool page), which munmap returns.
    [Theory]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void MemfdHugetlb_PageCacheAndPrivateCopy_ReturnToThePool(string era)
    {
        var s = MmuSim.Scenarios.ScenarioLoader.Parse($$"""
            name: memfd-hugetlb-pool
            era: "{{era}}"
            processes:
              - name: p
                vmas: []
            threads:
              - name: main
                process: p
                ops:
                  - hugetlb.set: { knob: nr_hugepages, value: 2 }
                  - file.create: { as: f, kind: memfd-hugetlb, size: 2M }
                  - mmap: { addr: 0x200000, len: 2M, prot: rw, file: f }
                  - mmap: { addr: 0x600000, len: 2M, prot: rw, file: f, flags: shared }
                  - write: { addr: 0x600000, value: 0x5 }
                  - hugetlb.expect: { counter: free_hugepages, value: 1 }
                  - expect-value: { addr: 0x200000, value: 0x5 }
                  - expect-page: { addr: 0x200000, writable: false, refcount: 3 }
                  - write: { addr: 0x201000, value: 0x7 }
                  - hugetlb.expect: { counter: free_hugepages, value: 0 }
                  - expect-pagemap: { addr: 0x200000, present: true, file: false, exclusive: true }
                  - expect-value: { addr: 0x200000, value: 0x5 }
                  - expect-value: { addr: 0x601000, value: 0x0 }
                  - file.expect: { file: f, offset: 0, value: 0x5 }
                  - munmap: { addr: 0x200000, len: 2M }
                  - hugetlb.expect: { counter: free_hugepages, value: 1 }
                  - file.close: { file: f }
                  - munmap: { addr: 0x600000, len: 2M }
                  - hugetlb.expect: { counter: free_hugepages, value: 2 }
            """, "memfd-hugetlb-pool.yaml");
        var r = MmuSim.Scenarios.ScenarioRunner.Run(s, s.DefaultEra!, null);
        Assert.Null(r.Violation);
    }

    [Fact]
    public void MemfdHugetlb_Truncate_IsRefused() =>
        CliRunner.AssertBadInput(Header.Replace("      - mmap: { addr: 0x200000, len: 2M, flags: hugetlb }\n", "") +
            "      - file.create: { as: f, kind: memfd-hugetlb, size: 2M }\n      - file.truncate: { file: f, size: 0 }\n", 12, "file.truncate.file", "hugetlbfs");

    [Fact]
    public void PoolSizeOutOfRange_IsEinval()
    {
        var (code, output, _) = CliRunner.Run("run", CliRunner.WriteScenario(Header.Replace("value: 2", "value: 100000")));
        Assert.Equal(1, code);
        Assert.Contains("nr_hugepages returned einval", output);
    }
}
