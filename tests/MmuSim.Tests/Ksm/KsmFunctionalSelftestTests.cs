using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Ksm;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.Ksm;

/// <summary>
/// The ksm_functional_tests.c ports (selftests/ksm_functional_tests/) in every era against their declarations, and the
/// model pieces they need: prctl PR_GET_MEMORY_MERGE, inheritance over fork and exec per era, ksm_fork's counters,
/// KSM on PROT_NONE (follow_page follows pte_protnone, FOLL_FORCE writes, break_ksm unshares), memset and the
/// duplicate-pfn check.
/// </summary>
public class KsmFunctionalSelftestTests
{
    const string Prefix = "selftests/ksm_functional_tests/";

    public static TheoryData<string> Ports() => SelftestPorts.Under(Prefix);

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MeetsItsDeclarationInEveryEra(string name)
    {
        Assert.Equal(ExpectKind.Pass, ScenarioLoader.LoadBuiltIn(name).ExpectedIn(EraTable.Get("6.18")).Kind);
        int run = SelftestPorts.AssertMeetsDeclaration(name, check: r => Assert.Null(Ksmd.Of(r.Kernel).CheckInvariants()));
        Assert.True(run >= 2, $"{name} runs in at least two eras");
    }

    [Fact]
    public void Ports_CoverEveryUpstreamTest()
    {
        string[] upstream = ["unmerge", "unmerge-zero-pages", "unmerge-discarded", "unmerge-uffd-wp", "prot-none", "prctl", "prctl-fork",
            "prctl-fork-exec", "prctl-unmerge", "fork-ksm-merging-page-count"];
        var names = ScenarioLoader.BuiltInNames.Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).ToHashSet();
        foreach (var f in upstream) Assert.Contains(Prefix + f, names);
        Assert.Equal(upstream.Length, names.Count);
        var doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "selftests.md"));
        Assert.Contains("test_unmerge_uffd_wp", doc);
    }

    /// <summary>
    /// test_unmerge_uffd_wp's bug: before 6.2 break_ksm's fake write fault on a uffd-wp KSM page gets VM_FAULT_SIGBUS
    /// (no FAULT_FLAG_ALLOW_RETRY), so MADV_UNMERGEABLE leaves the page merged; 6.2+ unshares it, and the copy keeps the
    /// uffd-wp bit (read-only), with no userfaultfd message in either era.
    /// </summary>
    [Theory]
    [InlineData("6.1", true)]
    [InlineData("6.6", false)]
    public void UffdWpKsmPage_StaysMergedBefore62(string era, bool stillMerged)
    {
        var s = ScenarioLoader.LoadBuiltIn(Prefix + "unmerge-uffd-wp");
        var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
        Assert.Equal(stillMerged, r.Violation != null);
        if (stillMerged) Assert.Contains("maps duplicates", r.Violation!.Message);
        var mm = r.Kernel.Mms.Single(m => m.Vmas.Count > 0);
        var pte = mm.PeekPte(0x1000f000);
        Assert.True(pte.Present && pte.UffdWp && !pte.Writable);
        Assert.Equal(stillMerged, r.Kernel.Mem[pte.Pfn].Has(PageFlags.Ksm));
        Assert.Equal(0, r.Kernel.Stats[Stat.UffdFaults]);
    }

    static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d != null && !File.Exists(Path.Combine(d.FullName, "MmuSim.sln"))) d = d.Parent;
        return d!.FullName;
    }

    static RunResult Run(string era, string ops, string vmas = "      - { start: 0x100000, len: 40K, prot: rw, contents: { value: 0xAB } }")
    {
        var yaml = $$"""
            name: t
            processes:
              - name: p
                vmas:
            {{vmas}}
            threads:
              - name: main
                process: p
                ops:
            {{ops}}
            """;
        return ScenarioRunner.Run(ScenarioLoader.Parse(yaml, "t.yaml"), EraTable.Get(era), null);
    }

    /// <summary>ksm_fork: the child's ksm_merging_pages/ksm_rmap_items are dup_mm's copy of the parent's until 6.18.</summary>
    [Theory]
    [InlineData("6.1", 10)]
    [InlineData("6.13", 10)]
    [InlineData("6.17", 10)]
    [InlineData("6.18", 0)]
    public void Fork_ChildKsmCounters_AreTheParentsCopyBefore618(string era, long inherited)
    {
        var r = Run(era, """
                  - madvise: { addr: 0x100000, len: 40K, advice: mergeable }
                  - ksm.scan: { full_scans: 2 }
                  - fork: { child: c }
            """);
        Assert.Null(r.Violation);
        var ksm = Ksmd.Of(r.Kernel);
        var parent = r.World.Processes["p"];
        var child = r.World.Processes["c"];
        Assert.Equal(10, ksm.MergingPagesOf(parent));
        Assert.Equal(10, ksm.RmapItemsOf(parent));
        Assert.Equal(inherited, ksm.MergingPagesOf(child));
        Assert.Equal(inherited, ksm.RmapItemsOf(child));
        Assert.NotNull(child.KsmSlot);                       // __ksm_enter in every era
        Assert.Equal(10, ksm.RmapItems);                     // the global count is right either way
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(9, ksm.PagesSharing);
    }

    /// <summary>execve: the merge-any flag is lost before 6.6, kept without an mm_slot in 6.6..6.8, kept and scanned from 6.9.</summary>
    [Theory]
    [InlineData("6.6", 1, false)]
    [InlineData("6.8", 1, false)]
    [InlineData("6.10", 1, true)]
    [InlineData("6.18", 1, true)]
    public void Exec_KeepsMergeAnyAndEntersTheMm_PerEra(string era, ulong flag, bool slot)
    {
        var r = Run(era, $$"""
                  - record: { name: rec }
                  - ksm.merge_any: { enable: true }
                  - exec: {}
                  - ksm.expect: { counter: memory_merge, of: p, value: {{flag}} }
            """);
        Assert.Null(r.Violation);
        var mm = r.World.Processes["p"];
        var old = r.Kernel.Mms[0];
        Assert.NotSame(old, mm);
        Assert.True(old.Exited);
        Assert.Empty(mm.Vmas);
        Assert.Equal(0, mm.PeekPte(0x100000).Raw == 0 ? 0 : 1);
        Assert.Equal(slot, mm.KsmSlot != null);
        Assert.True(mm.MergeAny);
        // The old mm went through exit_mmap: ->release first, then nothing else (the notifier is gone with the mm).
        var rec = Assert.IsType<RecordingSecondary>(r.World.Objects["rec"]);
        Assert.Equal(CallbackKind.Release, rec.Calls[0].Kind);
    }

    [Fact]
    public void Exec_Before64_HasNoPrctl_AndLosesNothing()
    {
        var r = Run("6.1", """
                  - exec: {}
                  - ksm.expect: { counter: memory_merge, of: p, value: 0 }
            """);
        Assert.NotNull(r.Violation); // PR_GET_MEMORY_MERGE is EINVAL: "absent in era 6.1"
        Assert.Contains("absent in era 6.1", r.Violation!.Message);
        Assert.Empty(r.World.Processes["p"].Vmas);
    }

    /// <summary>KSM merges PROT_NONE pages (follow_page follows pte_protnone), FOLL_FORCE COWs one off, break_ksm unshares the rest.</summary>
    [Theory]
    [InlineData("4.19")]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void ProtNone_MergeForceWriteAndUnshare(string era)
    {
        var r = Run(era, """
                  - mprotect: { addr: 0x100000, len: 40K, prot: none }
                  - madvise: { addr: 0x100000, len: 40K, advice: mergeable }
                  - ksm.scan: { full_scans: 2 }
                  - ksm.expect: { counter: pages_shared, value: 1 }
                  - ksm.expect: { counter: pages_sharing, value: 9 }
                  - proc-mem-write: { addr: 0x100000, value: 0x55 }
                  - read: { addr: 0x100000, expect: sigsegv }
                  - write: { addr: 0x105000, value: 1, expect: sigsegv }
                  - madvise: { addr: 0x105000, len: 20K, advice: unmergeable }
                  - expect-no-duplicates: { addr: 0x105000, len: 20K }
            """);
        Assert.Null(r.Violation);
        var k = r.Kernel;
        var mm = r.World.Processes["p"];
        var forced = mm.PeekPte(0x100000);
        Assert.True(forced.ProtNone);                      // still PROT_NONE after the forced COW
        Assert.False(k.Mem[forced.Pfn].Has(PageFlags.Ksm));
        Assert.Equal(0x55UL, k.Mem[forced.Pfn].Contents);
        for (ulong a = 0x105000; a < 0x10a000; a += 0x1000)
        {
            var pte = mm.PeekPte(a);
            Assert.True(pte.ProtNone, $"0x{a:x}: {pte}");
            Assert.False(pte.Writable);
            Assert.False(k.Mem[pte.Pfn].Has(PageFlags.Ksm));
            Assert.Equal(0xABUL, k.Mem[pte.Pfn].Contents);
            Assert.Equal(1, k.Mem[pte.Pfn].MapCount);
        }
        var ksmPage = mm.PeekPte(0x101000).Pfn;             // pages 1..4 still share the KSM page
        Assert.True(k.Mem[ksmPage].Has(PageFlags.Ksm));
        Assert.Equal(4, k.Mem[ksmPage].MapCount);
    }

    /// <summary>A GUP without FOLL_FORCE still cannot read a PROT_NONE VMA (check_vma_flags), as KVM's hva_to_pfn sees it.</summary>
    [Fact]
    public void ProtNone_PlainGupFails_ForceReadSucceeds()
    {
        var k = Harness.Kernel("6.13");
        var mm = Harness.MmWithVma(k, 0x100000, 0x4000, prot: Prot.None);
        Assert.Null(Harness.Run(k, async _ =>
        {
            await mm.MmapLock.ReadLock();
            var r = await Gup.GetUserPage(mm, 0x100000, write: false, mmapLocked: true);
            await mm.MmapLock.ReadUnlock();
            Assert.Equal(GupResult.EFAULT, r.Error);
        }));
    }

    [Fact]
    public void ExpectNoDuplicates_FindsMergedPages()
    {
        var r = Run("6.13", """
                  - madvise: { addr: 0x100000, len: 40K, advice: mergeable }
                  - ksm.scan: { full_scans: 2 }
                  - expect-no-duplicates: { addr: 0x100000, len: 40K }
            """);
        Assert.NotNull(r.Violation);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation!.Invariant);
        Assert.Contains("at 0x100000 and at 0x101000: the range maps duplicates", r.Violation.Message);
    }

    [Fact]
    public void Memset_StoresEveryPage_AndFaultsFatallyOnReadOnly()
    {
        var r = Run("6.13", """
                  - memset: { addr: 0x100000, len: 16K, value: 9 }
                  - expect-value: { addr: 0x103000, value: 9 }
                  - expect-value: { addr: 0x104000, value: 0xAB }
            """);
        Assert.Null(r.Violation);
        var ro = Run("6.13", "      - memset: { addr: 0x100000, len: 8K, value: 9 }", "      - { start: 0x100000, len: 8K, prot: r }");
        Assert.Equal(ScenarioInvariants.UnexpectedFault, ro.Violation!.Invariant);
        Assert.Contains("memset: the store at 0x100000", ro.Violation.Message);
    }

    [Theory]
    [InlineData("      - memset: { process: p, addr: 0x100000, len: 5000, value: 1 }", 10, "memset.len", "not a positive multiple of the page size")]
    [InlineData("      - memset: { process: p, addr: 0x100000, len: 64K, value: 1 }", 10, "memset.len", "runs past every VMA")]
    [InlineData("      - expect-no-duplicates: { process: p, addr: 0x900000, len: 4K }", 10, "expect-no-duplicates.addr", "outside every VMA")]
    [InlineData("      - memset: { process: p, addr: 0x100000, len: 0, value: 1 }", 10, "memset.len", "")]
    [InlineData("      - ksm.expect: { counter: memory_merge, value: 1 }", 10, "ksm.expect.counter", "give of: PROCESS")]
    public void BadFields_AreOneLineExitTwo(string op, int line, string field, string message)
    {
        CliRunner.AssertBadInput($$"""
            name: t
            era: "6.13"
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 16K, prot: rw }
            threads:
              - name: main
                ops:
            {{op}}
            """, line, field, message);
    }
}
