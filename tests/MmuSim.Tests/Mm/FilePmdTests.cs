using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>
/// Huge page-cache folios mapped by a PMD: MADV_COLLAPSE of shmem (34488399fa08, 6.1; mapped by a PMD in the caller,
/// 58ac9a8993a1), do_set_pmd at fault time, and what splits, zaps and write-protects a file PMD (mm/huge_memory.c's
/// !vma_is_anonymous branches), with the notifier calls a recording secondary sees.
/// </summary>
public class FilePmdTests
{
    const ulong A = 0x200000, P = MmStruct.PageSize, H = MmStruct.PmdSize;

    /// <summary>A MAP_SHARED|MAP_ANONYMOUS 2 MiB VMA (no MADV_HUGEPAGE: MADV_COLLAPSE does not need it), pages 0 and 1 written.</summary>
    static MmStruct Shmem(Kernel k)
    {
        var mm = MmWithVma(k, A, H, VmFlags.Shared);
        Ok(k, async () =>
        {
            await Write(mm, A, 0x11);
            await Write(mm, A + P, 0x22);
        });
        return mm;
    }

    static int Collapse(Kernel k, MmStruct mm)
    {
        int err = -1;
        Ok(k, async () => err = await Khugepaged.MadviseCollapse(mm, A, A + H));
        return err;
    }

    [Theory]
    [InlineData("6.1", "S(200000,201000,Clear) IR(200000,201000) E(200000,201000,Clear) IR(200000,201000) S(201000,202000,Clear) IR(201000,202000) E(201000,202000,Clear) IR(201000,202000) S(200000,400000,Clear) IR(200000,400000) E(200000,400000,Clear)")]
    [InlineData("6.13", "S(200000,201000,Clear) E(200000,201000,Clear) S(201000,202000,Clear) E(201000,202000,Clear) S(200000,400000,Clear) E(200000,400000,Clear)")]
    public void MadvCollapse_Shmem_OneFolioMappedByAPmd_AfterTheOldPagesAndTheTableWereInvalidated(string era, string expected)
    {
        var k = Kernel(era);
        var mm = Shmem(k);
        var file = mm.FindVma(A)!.File!;
        ulong i0 = mm.FindVma(A)!.IndexOf(A);
        long old0 = file.Pages[i0];
        var rec = Recorder(k, mm);
        Assert.Equal(0, Collapse(k, mm));
        // unmap_mapping_pages of each mapped old page (CLEAR per page), then collapse_and_free_pmd's CLEAR over the 2 MiB;
        // set_huge_pmd installs the PMD over a none entry, without a notifier.
        Assert.Equal(expected, Seq(rec));
        long head = file.Pages[i0];
        Assert.NotEqual(old0, head);
        Assert.True(k.Mem.IsHuge(head));
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable && !pmd.Dirty); // vm_page_prot of a shared writable shmem VMA
        Assert.Equal(head, pmd.Pfn);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.Equal(PhysMem.HugePages + 1, k.Mem[head].RefCount); // the cache's 512 and the PMD's
        Assert.Equal(PhysMem.HugePages, mm.RssFile);
        var smaps = TaskMmu.Smaps(mm, mm.FindVma(A)!);
        Assert.Equal((2048UL, 0UL, 2048UL, 0UL), (smaps.Rss, smaps.AnonHugePages, smaps.ShmemPmdMapped, smaps.FilePmdMapped));
        long faults = k.Stats[Stat.Faults];
        Ok(k, async () =>
        {
            Assert.Equal(0x11UL, await Read(mm, A));
            Assert.Equal(0x22UL, await Read(mm, A + P));
            Assert.Equal(0UL, await Read(mm, A + (H - P))); // a hole became a zeroed subpage
        });
        Assert.Equal(faults, k.Stats[Stat.Faults]); // mapped: no fault
        Assert.Equal(head + 1, (long)(TaskMmu.PagemapEntry(mm, A + P) & TaskMmu.PmPfnMask));
        // Again: the folio is already this range's THP, mapped here (SCAN_PMD_MAPPED): success, no notifier.
        int calls = rec.Calls.Count;
        Assert.Equal(0, Collapse(k, mm));
        Assert.Equal(calls, rec.Calls.Count);
        Consistent(k);
    }

    [Fact]
    public void MadvCollapse_Shmem_Before61_IsEinval_AndTheCacheKeepsItsSmallPages()
    {
        var k = Kernel("5.13");
        var mm = Shmem(k);
        var file = mm.FindVma(A)!.File!;
        ulong i0 = mm.FindVma(A)!.IndexOf(A);
        long old0 = file.Pages[i0];
        var rec = Recorder(k, mm);
        Assert.Equal(Errno.EINVAL, Collapse(k, mm));
        Assert.Empty(rec.Calls);
        Assert.Equal(old0, file.Pages[i0]);
        Assert.False(k.Mem.IsHuge(old0));
    }

    static long Head(MmStruct mm) => mm.FindVma(A)!.File!.Pages[mm.FindVma(A)!.IndexOf(A)];

    const string TwoProcesses = """
        name: file-pmd-two-processes
        era: "6.13"
        processes:
          - name: p
            vmas: []
          - name: q
            vmas: []
        setup:
          - file.create: { as: f, kind: memfd, size: 2M }
          - mmap: { process: p, addr: 0x40000000, len: 2M, prot: rw, file: f, flags: shared }
          - mmap: { process: q, addr: 0x80000000, len: 2M, prot: rw, file: f, flags: shared }
          - write: { process: p, addr: 0x40000000, value: 5, step: 1, len: 2M }
          - expect-value: { process: q, addr: 0x80000000, value: 5, step: 1, len: 8K }
        threads:
          - name: main
            process: p
            ops:
              - madvise: { process: p, addr: 0x40000000, len: 2M, advice: collapse }
              - expect-smaps: { process: p, addr: 0x40000000, rss: 2048, shmem_pmd_mapped: 2048 }
              - expect-smaps: { process: q, addr: 0x80000000, rss: 0, shmem_pmd_mapped: 0 }
              - expect-value: { process: q, addr: 0x80000000, value: 5, step: 1, len: 2M }
              - expect-smaps: { process: q, addr: 0x80000000, rss: RSS, shmem_pmd_mapped: PMD }
        """;

    [Theory]
    [InlineData("6.1", "2048", "0")] // "it's not MADV_COLLAPSE's job to collapse other mappings": q keeps its (empty) table, refaults by PTEs
    [InlineData("6.6", "2048", "2048")] // 1d65b771bc08: retract_page_tables takes q's table too, and q's next fault is do_set_pmd
    [InlineData("6.18", "2048", "2048")]
    public void MadvCollapse_TheOtherProcessMapping_IsRetractedFrom66_AndThenFaultsInByPmd(string era, string rss, string pmd)
    {
        var yaml = TwoProcesses.Replace("RSS", rss).Replace("PMD", pmd);
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(yaml, "two.yaml"), EraTable.Get(era), null);
        Assert.Null(r.Violation);
        var q = r.Kernel.Mms.Single(m => m.ToString().Contains("(q)"));
        Assert.Equal(pmd == "0", q.PeekPmd(0x80000000).Present && !q.PeekPmd(0x80000000).Huge); // 6.1: the PTE table is still there
        var wrong = TwoProcesses.Replace("RSS", rss).Replace("PMD", pmd == "0" ? "2048" : "0");
        Assert.Equal(ScenarioInvariants.UnexpectedValue, ScenarioRunner.Run(ScenarioLoader.Parse(wrong, "two.yaml"), EraTable.Get(era), null).Violation?.Invariant);
    }

    [Theory]
    [InlineData("6.1", "S(200000,400000,Clear) IR(200000,400000)! E(200000,400000,Clear)")] // pmdp_huge_clear_flush_notify under the PMD lock (3.19-6.5), only_end
    [InlineData("6.13", "S(200000,400000,Clear) E(200000,400000,Clear)")]
    public void SplitOfAFilePmd_DropsTheMapping_AndTheNextFaultMapsAPte(string era, string split)
    {
        var k = Kernel(era);
        var mm = Shmem(k);
        Assert.Equal(0, Collapse(k, mm));
        long head = Head(mm);
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mprotect.DoMprotect(mm, A, P, Prot.Read)); // the VMA splits: no PMD fits any more
        Assert.StartsWith(split, Seq(rec)); // at __split_vma (vma_adjust_trans_huge), before mprotect's PROTECTION_VMA
        Assert.True(mm.PeekPmd(A).IsNone); // __split_huge_pmd_locked, !vma_is_anonymous: no PTEs are left behind
        Assert.Equal(0, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.Equal(PhysMem.HugePages, k.Mem[head].RefCount);
        Assert.Equal(0, mm.RssFile);
        Ok(k, async () => Assert.Equal(0x22UL, await Read(mm, A + P)));
        var pte = mm.PeekPte(A + P);
        Assert.True(pte.Present && !pte.Huge && pte.Writable);
        Assert.Equal(head + 1, pte.Pfn);
        Ok(k, async () => Assert.Equal(0x11UL, await Read(mm, A)));
        Assert.False(mm.PeekPte(A).Writable);
        Consistent(k);
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.18")]
    public void DontneedOfTheWholePmd_ZapsIt_AndTheCacheKeepsTheFolio(string era)
    {
        var k = Kernel(era);
        var mm = Shmem(k);
        Assert.Equal(0, Collapse(k, mm));
        long head = Head(mm);
        var rec = Recorder(k, mm);
        Ok(k, async () => await Madvise.MadviseDontneed(mm, A, H));
        Assert.StartsWith("S(200000,400000,Clear)", Seq(rec));
        Assert.True(mm.PeekPmd(A).IsNone);
        Assert.Equal(0, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.Equal(PhysMem.HugePages, k.Mem[head].RefCount);
        Assert.False(k.Mem[head].Has(PageFlags.Free));
        Ok(k, async () => Assert.Equal(0x22UL, await Read(mm, A + P))); // refaults by PMD: the VMA still fits one
        Assert.Equal(head, mm.PeekPmd(A).Pfn);
        Ok(k, async () => await Mmap.Munmap(mm, A, H));
        Assert.True(k.Mem[head].Has(PageFlags.Free)); // the last mapping of shmem_zero_setup's file: the inode and its cache go
        Consistent(k);
    }

    const string PrivateAndWp = """
        name: file-pmd-private-and-wp
        era: "6.13"
        processes:
          - name: p
            vmas: []
        setup:
          - file.create: { as: f, kind: memfd, size: 2M }
          - mmap: { process: p, addr: 0x40000000, len: 2M, prot: rw, file: f, flags: shared }
          - write: { process: p, addr: 0x40000000, value: 7, step: 1, len: 2M }
          - madvise: { process: p, addr: 0x40000000, len: 2M, advice: collapse }
          - mmap: { process: p, addr: 0x40400000, len: 2M, prot: rw, file: f }
        threads:
          - name: main
            process: p
            ops:
              - expect-value: { addr: 0x40400000, value: 7, step: 1, len: 2M }
              - expect-smaps: { process: p, addr: 0x40400000, rss: 2048, shmem_pmd_mapped: 2048 }
              - expect-page: { process: p, addr: 0x40401000, writable: false }
              - write: { process: p, addr: 0x40401000, value: 99 }
              - expect-smaps: { process: p, addr: 0x40400000, rss: 4, shmem_pmd_mapped: 0 }
              - expect-pagemap: { process: p, addr: 0x40401000, present: true, file: false, exclusive: true }
              - expect-pagemap: { process: p, addr: 0x40402000, present: false }
              - expect-value: { addr: 0x40000000, value: 7, step: 1, len: 2M }
              - uffd.open: { process: p }
              - uffd.register: { addr: 0x40000000, len: 2M, mode: wp }
              - uffd.writeprotect: { addr: 0x40000000, len: 2M }
              - expect-smaps: { process: p, addr: 0x40000000, rss: 0, shmem_pmd_mapped: 0 }
              - expect-pagemap: { process: p, addr: 0x40000000, present: false, uffd_wp: true }
              - expect-pagemap: { process: p, addr: 0x401ff000, present: false, uffd_wp: true }
        """;

    [Fact]
    public void PrivateReadMapsThePmdReadOnly_AWriteSplitsAndCopiesOnePage_AndUffdWpSplitsIntoMarkers()
    {
        // do_set_pmd in a MAP_PRIVATE mapping (vm_page_prot read-only); the write is wp_huge_pmd's "COW or
        // write-notify handled on pte level: split pmd" and do_cow_fault of the one page; UFFDIO_WRITEPROTECT of the
        // shared PMD is change_pmd_range's pgtable_split_needed, then markers in the new table (change_pmd_prepare).
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(PrivateAndWp, "file-pmd.yaml"), EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        // Each assertion can fail: the shared mapping left PMD-mapped would read 2048 kB.
        var wrong = PrivateAndWp.Replace("{ process: p, addr: 0x40000000, rss: 0, shmem_pmd_mapped: 0 }", "{ process: p, addr: 0x40000000, shmem_pmd_mapped: 2048 }");
        var w = ScenarioRunner.Run(ScenarioLoader.Parse(wrong, "file-pmd.yaml"), EraTable.Get("6.13"), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, w.Violation?.Invariant);
        Assert.Contains("shmem_pmd_mapped is 0 kB, expected 2048 kB", w.Violation?.Message);
    }
}

/// <summary>expect-smaps and the per-page write/expect-value fields: bad input is a one-line error naming the field, exit 2.</summary>
public class SmapsAndStepBadInputTests
{
    static string Scen(string op) => Tests.Cli.CliRunner.MinimalScenario.Replace("      - read: { addr: 0x100000 }", "      - " + op);

    [Fact]
    public void ExpectSmapsAndSteps_AreChecked_ExitTwoWithTheField()
    {
        Tests.Cli.CliRunner.AssertBadInput(Scen("expect-smaps: { addr: 0x100000 }"), 10, "expect-smaps.addr", "give at least one field");
        Tests.Cli.CliRunner.AssertBadInput(Scen("expect-smaps: { addr: 0x100000, shmem_pmd_mapped: lots }"), 10, "expect-smaps.shmem_pmd_mapped", "not a number");
        Tests.Cli.CliRunner.AssertBadInput(Scen("expect-smaps: { addr: 0x100000, huge: 2048 }"), 10, "expect-smaps.huge", "");
        Tests.Cli.CliRunner.AssertBadInput(Scen("write: { addr: 0x100000, value: 1, step: x }"), 10, "write.step", "not a number");
        Tests.Cli.CliRunner.AssertBadInput(Scen("write: { addr: 0x100000, value: 1, len: 99999999999 }"), 10, "write.len", "multiple of the page size");
        Tests.Cli.CliRunner.AssertBadInput(Scen("expect-value: { addr: 0x100000, value: 1, step: -1 }"), 10, "expect-value.step", "not a number");
        Tests.Cli.CliRunner.AssertBadInput(Scen("madvise: { addr: 0x100000, len: 4K, advice: collapse, expect: \"ok|nope\" }"), 10, "madvise.expect", "'nope' is not an errno");
        Tests.Cli.CliRunner.AssertBadInput(Scen("thp.set: { knob: shmem_enabled, value: sometimes }"), 10, "thp.set.value", "not a shmem_enabled setting");
        Tests.Cli.CliRunner.AssertBadInput(Scen("thp.set: { knob: defrag, value: 1 }"), 10, "thp.set.knob", "not a modelled THP knob");
        Tests.Cli.CliRunner.AssertBadInput(Scen("thp.set: { knob: use_zero_page, value: 1, expect: maybe }"), 10, "thp.set.expect", "'maybe' is not an errno");
    }
}

/// <summary>
/// shmem_enabled (4.8+): a shmem fault on a none PMD allocates a huge folio where the policy allows it and the aligned
/// range is empty (shmem_alloc_and_add_folio), maps it by a PMD without a notifier; such a folio migrates whole.
/// </summary>
public class ShmemHugeFaultTests
{
    const ulong A = 0x200000, P = MmStruct.PageSize, H = MmStruct.PmdSize;

    [Theory]
    [InlineData("6.13", ShmemHuge.Never, VmFlags.None, false)]
    [InlineData("6.13", ShmemHuge.Always, VmFlags.None, true)]
    [InlineData("6.13", ShmemHuge.Advise, VmFlags.None, false)]
    [InlineData("6.13", ShmemHuge.Advise, VmFlags.HugePage, true)]
    [InlineData("6.13", ShmemHuge.Always, VmFlags.NoHugePage, false)]
    [InlineData("6.13", ShmemHuge.Deny, VmFlags.HugePage, false)]
    [InlineData("6.13", ShmemHuge.Force, VmFlags.None, true)]
    [InlineData("4.10", ShmemHuge.Always, VmFlags.None, true)]
    [InlineData("3.19", ShmemHuge.Always, VmFlags.HugePage, false)] // no shmem THP before 4.8
    public void ShmemFault_AllocatesAHugeFolioAsTheKnobSays_AndMapsItByAPmd_WithoutANotifier(string era, ShmemHuge knob, VmFlags flags, bool huge)
    {
        var k = Kernel(era);
        k.ShmemEnabled = knob;
        var mm = MmWithVma(k, A, H, VmFlags.Shared | flags);
        var rec = Recorder(k, mm);
        Ok(k, async () => await Write(mm, A + P, 0x33));
        Assert.Empty(rec.Calls);
        var vma = mm.FindVma(A)!;
        long pfn = vma.File!.Pages[vma.IndexOf(A + P)];
        long head = k.Mem.FolioOf(pfn);
        Assert.Equal(huge, k.Mem.IsHuge(head));
        var pmd = mm.PeekPmd(A);
        Assert.Equal(huge, pmd.Present && pmd.Huge && pmd.Dirty && pmd.Writable && pmd.Pfn == head);
        Assert.Equal(huge ? 1 : 0, k.Stats[Stat.ThpFileAlloc]);
        Assert.Equal(huge ? PhysMem.HugePages + 1 : 2, k.Mem[head].RefCount);
        Assert.Equal(huge ? PhysMem.HugePages : 1, mm.RssFile);
        Assert.Equal(huge ? 512 : 1, vma.File.Pages.Count);
        Ok(k, async () => Assert.Equal(0x33UL, await Read(mm, A + P)));
        Consistent(k);
    }

    [Fact]
    public void ShmemFault_FallsBackToASmallFolio_WhenTheRangeIsPartlyCached()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, H, VmFlags.Shared);
        Ok(k, async () => await Write(mm, A + P, 1)); // cached while the knob says never
        Ok(k, async () => await Madvise.MadviseDontneed(mm, A, H)); // the PMD is none again, the page stays cached
        k.ShmemEnabled = ShmemHuge.Always;
        Ok(k, async () => await Write(mm, A + 2 * P, 2));
        Assert.Equal(0, k.Stats[Stat.ThpFileAlloc]);
        Assert.False(mm.PeekPmd(A).Huge);
        Assert.False(k.Mem.IsHuge(k.Mem.FolioOf(mm.PeekPte(A + 2 * P).Pfn)));
    }

    [Theory]
    [InlineData("6.18", "S(200000,400000,Clear) E(200000,400000,Clear) S(200000,400000,Clear) E(200000,400000,Clear)")]
    [InlineData("6.1", "S(200000,400000,Clear) E(200000,400000,Clear) S(200000,400000,Clear) IR(200000,201000)! IR(201000,202000)!")]
    public void AHugeShmemFolio_MigratesWhole_ItsPmdSplitIntoPtesForTheMigrationEntries(string era, string calls)
    {
        var k = Kernel(era, options: new KernelOptions { NumaNodes = 2 });
        k.ShmemEnabled = ShmemHuge.Always;
        var mm = MmWithVma(k, A, H, VmFlags.Shared);
        Ok(k, async () => await Write(mm, A + P, 0x44));
        var vma = mm.FindVma(A)!;
        var file = vma.File!;
        long head = mm.PeekPmd(A).Pfn;
        int from = k.Mem.NodeOf(head);
        var rec = Recorder(k, mm);
        long dst = -1;
        Ok(k, async () => dst = await Migrate.MigrateFolio(k, head, 1 - from));
        Assert.True(dst >= 0 && k.Mem.IsHuge(dst) && k.Mem.NodeOf(dst) == 1 - from);
        // The split's own CLEAR, then try_to_migrate_one's over the 512 PTEs (invalidate_range per PTE under the PTL in
        // 3.19-6.5); the kernel has one range, around a PMD migration entry.
        Assert.StartsWith(calls, Seq(rec));
        for (ulong i = 0; i < PhysMem.HugePages; i++) Assert.Equal(dst + (long)i, file.Pages[vma.IndexOf(A) + i]);
        Assert.True(k.Mem[head].Has(PageFlags.Free));
        var pte = mm.PeekPte(A + P);
        Assert.True(pte.Present && !pte.Huge);
        Assert.Equal(dst + 1, pte.Pfn);
        Assert.Equal(2 * PhysMem.HugePages, k.Mem[dst].RefCount); // the cache's 512 and the 512 PTEs'
        Ok(k, async () => Assert.Equal(0x44UL, await Read(mm, A + P)));
        Consistent(k);
    }
}

/// <summary>thp.set writes a sysfs file that exists only from its feature's era.</summary>
public class ThpKnobEraTests
{
    static string Yaml(string era, string knob, string value, string expect) => $$"""
        name: t
        era: "{{era}}"
        processes:
          - name: p
            vmas:
              - { start: 0x200000, len: 2M, prot: rw, flags: shared }
        threads:
          - name: main
            process: p
            ops:
              - thp.set: { knob: {{knob}}, value: {{value}}, expect: {{expect}} }
              - write: { addr: 0x200000, value: 1 }
        """;

    [Theory]
    [InlineData("3.19", "shmem_enabled", "always", "enoent", 0)] // before 4.8: no shmem THP, no knob
    [InlineData("4.10", "shmem_enabled", "always", "ok", 1)]
    [InlineData("3.7", "use_zero_page", "1", "enoent", 0)]      // before 3.8: no huge zero page
    [InlineData("3.10", "use_zero_page", "1", "ok", 0)]
    public void TheKnobExistsFromItsEra(string era, string knob, string value, string expect, long hugeShmemFolios)
    {
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(Yaml(era, knob, value, expect), "t.yaml"), EraTable.Get(era), null);
        Assert.Null(r.Violation);
        Assert.Equal(hugeShmemFolios, r.Kernel.Stats[Stat.ThpFileAlloc]);
        var wrong = ScenarioRunner.Run(ScenarioLoader.Parse(Yaml(era, knob, value, expect == "ok" ? "enoent" : "ok"), "t.yaml"), EraTable.Get(era), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, wrong.Violation?.Invariant);
    }

    const string PunchPartOfAShmemThp = """
        name: punch-part-of-a-shmem-thp
        era: "6.13"
        processes:
          - name: p
            vmas: []
        setup:
          - thp.set: { knob: shmem_enabled, value: always }
          - file.create: { as: f, kind: memfd, size: 2M }
          - mmap: { process: p, addr: 0x200000, len: 2M, file: f, flags: shared }
          - memset: { process: p, addr: 0x200000, len: 2M, value: 0x5 }
          - expect-smaps: { process: p, addr: 0x200000, shmem_pmd_mapped: 2048 }
          - file.punch-hole: { file: f, offset: 0x3000, len: 0x1000 }
          - expect-value: { process: p, addr: 0x204000, value: 0x5 }
          - expect-smaps: { process: p, addr: 0x200000, shmem_pmd_mapped: 2048 }
          - expect-value: { process: p, addr: 0x203000, value: 0 }
          - expect-value: { process: p, addr: 0x202000, value: 0x5 }
        threads: []
        expect:
          default: pass
        """;

    /// <summary>
    /// A hole punch of one page of a PMD-mapped shmem THP: unmap_mapping_range drops the PMD, and
    /// truncate_inode_partial_folio zeroes the page and keeps the folio whole (the split-failure branch, which the model
    /// always takes), so the next fault maps the same huge folio by a PMD again and the punched page reads 0. Before the
    /// partial-folio rule the index left the cache while the folio stayed PMD-mappable, and the refault exposed the old
    /// data (unexpected-value at the 0x203000 read).
    /// </summary>
    [Theory]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void PunchHoleInsideAShmemThp_ZeroesThePage_TheRefaultMapsTheFolioAgain(string era)
    {
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(PunchPartOfAShmemThp, "punch.yaml"), EraTable.Get(era), null);
        Assert.Null(r.Violation);
        var file = r.Kernel.AddressSpaceById(1)!;
        Assert.Equal(PhysMem.HugePages, file.Pages.Count); // still one huge folio, every index cached
        long head = r.Kernel.Mem.FolioOf(file.Pages[3]);
        Assert.True(r.Kernel.Mem.IsHuge(head));
        Assert.Equal(0UL, r.Kernel.Mem[head + 3].Contents);
        Assert.Equal(5UL, r.Kernel.Mem[head + 4].Contents);
    }
}
