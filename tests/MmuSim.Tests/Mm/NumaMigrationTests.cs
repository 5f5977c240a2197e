using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Ksm;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Mm;

/// <summary>
/// NUMA nodes (PhysMem's per-node free lists), move_pages(2) with its per-page status and return value, mbind(MPOL_BIND)
/// with MPOL_MF_MOVE/MOVE_ALL/STRICT, migration of page-cache (shmem, regular file) and KSM folios, and the rmap.c
/// ports (selftests/rmap/) in every era against their declarations.
/// </summary>
public class NumaMigrationTests
{
    const ulong A = 0x10000000;

    static RunResult RunYaml(string ops, string era = "6.13", int nodes = 2)
    {
        var yaml = $"""
            name: t
            era: "{era}"
            numa_nodes: {nodes}
            processes:
              - name: p
                vmas: []
            threads:
              - name: main
                process: p
                ops:
            {ops}
            """;
        return ScenarioRunner.Run(ScenarioLoader.Parse(yaml, "t.yaml"), EraTable.Get(era), null);
    }

    [Fact]
    public void TwoNodes_DealTheBlocksInTurn_AndABoundAllocationStaysOnItsNode()
    {
        var mem = new PhysMem(256, nodes: 2);
        long a = mem.AllocPage();
        long b = mem.AllocPage(1, thisNode: true);
        long h = mem.AllocHuge(1, thisNode: true);
        Assert.Equal(0, mem.NodeOf(a));
        Assert.Equal(1, mem.NodeOf(b));
        Assert.Equal(1, mem.NodeOf(h));
        Assert.Equal(1, mem.NodeOf(h + PhysMem.HugePages - 1)); // a THP never straddles nodes
        Assert.Equal(1, (b >> PhysMem.HugeOrder) & 1);
        // With one node the allocator hands out the pfns it always did: lowest first after the zero page.
        var uma = new PhysMem(256);
        Assert.Equal(1, uma.AllocPage());
        Assert.Equal(2, uma.AllocPage());
        Assert.Equal(0, uma.NodeOf(uma.AllocHuge()));
    }

    [Fact]
    public void MovePages_MovesAnAnonPage_StatusIsTheNode_PteAndContentsFollow_WithAClearInvalidation()
    {
        var k = Kernel("6.13", options: new KernelOptions { NumaNodes = 2 });
        var mm = MmWithVma(k, A, 0x2000);
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, A, write: true, value: 0xcf)));
        long old = mm.PeekPte(A).Pfn;
        Assert.Equal(0, k.Mem.NodeOf(old));
        var rec = Recorder(k, mm);
        (int Ret, int[] Status) r = (0, []), q = (0, []);
        Assert.Null(Run(k, async _ =>
        {
            r = await Migrate.MovePages(mm, [A, A + 0x1000, A + 0x5000], [1, 1, 1], Migrate.MoveFlags.Move);
            q = await Migrate.MovePages(mm, [A], null, Migrate.MoveFlags.Move);
        }));
        Assert.Equal(0, r.Ret);
        Assert.Equal([1, Errno.ENOENT, Errno.EFAULT], r.Status); // migrated, nothing mapped, no VMA
        Assert.Equal([1], q.Status);
        var pte = mm.PeekPte(A);
        Assert.NotEqual(old, pte.Pfn);
        Assert.Equal(1, k.Mem.NodeOf(pte.Pfn));
        Assert.True(pte.Writable && pte.Dirty);
        Assert.Equal(0xcfUL, k.Mem[pte.Pfn].Contents);
        Assert.True(k.Mem[old].Has(PageFlags.Free));
        Assert.Equal((1, 1), (k.Mem[pte.Pfn].RefCount, k.Mem[pte.Pfn].MapCount));
        var start = Assert.Single(rec.Calls, c => c.Kind == CallbackKind.InvalidateRangeStart);
        Assert.Equal((A, A + 0x1000, MmuNotifyEvent.Clear), (start.Start, start.End, start.Event));
    }

    [Fact]
    public void MovePages_SharedPageNeedsMoveAll_ZeroPageIsEnoent_NodeWithoutMemoryIsEnodev()
    {
        var r = RunYaml("""
                  - mmap: { addr: 0x10000000, len: 8K }
                  - write: { addr: 0x10000000, value: 1 }
                  - read: { addr: 0x10001000 }
                  - fork: { child: c }
                  - read: { process: c, addr: 0x10000000 }
                  - move-pages: { addr: 0x10000000, pages: 2, node: 1, status: "eacces,enoent", ret: 0 }
                  - move-pages: { addr: 0x10000000, node: 2, ret: enodev }
                  - move-pages: { addr: 0x10000000, node: 1, flags: move_all, status: "1", ret: 0 }
                  - expect-pagemap: { addr: 0x10000000, present: true, as: moved }
                  - expect-pagemap: { process: c, addr: 0x10000000, pfn: moved }
                  - expect-value: { process: c, addr: 0x10000000, value: 1 }
            """);
        Assert.Null(r.Violation);
    }

    [Fact]
    public void MovePages_StatusMismatch_IsAnUnexpectedValueNamingTheLine()
    {
        var r = RunYaml("""
                  - mmap: { addr: 0x10000000, len: 4K }
                  - write: { addr: 0x10000000, value: 1 }
                  - move-pages: { addr: 0x10000000, node: 1, status: "0" }
            """);
        Assert.NotNull(r.Violation);
        Assert.Contains("t.yaml:13: move_pages status of 0x10000000 is 1, expected 0", r.Violation!.Message);
    }

    [Theory]
    [InlineData("memfd")]
    [InlineData("tmpfile")]
    public void PageCacheFolio_Migrates_TheCacheEntryMoves_EveryMappingFollows_OldFolioFreed(string kind)
    {
        var r = RunYaml($$"""
                  - file.create: { as: f, kind: {{kind}}, size: 4K }
                  - mmap: { addr: 0x10000000, len: 4K, file: f, flags: shared }
                  - mmap: { addr: 0x20000000, len: 4K, file: f }
                  - write: { addr: 0x10000000, value: 0xcf }
                  - read: { addr: 0x20000000 }
                  - expect-pagemap: { addr: 0x10000000, as: old }
                  - move-pages: { addr: 0x10000000, node: 1, flags: move_all, status: "1", ret: 0 }
                  - expect-pagemap: { addr: 0x10000000, pfn_not: old, as: new }
                  - expect-pagemap: { addr: 0x20000000, pfn: new, file: true }
                  - file.expect: { file: f, offset: 0, value: 0xcf }
            """);
        Assert.Null(r.Violation);
        var k = r.Kernel;
        var f = k.AddressSpaceById(k.Mem[(long)r.Observed["new"]].AnonRoot)!;
        long cached = f.Pages[0];
        Assert.Equal((long)r.Observed["new"], cached);
        Assert.Equal(1, k.Mem.NodeOf(cached));
        Assert.Equal(3, k.Mem[cached].RefCount); // the page cache and two mappings
        Assert.True(k.Mem[cached].Has(PageFlags.Dirty));
        Assert.True(k.Mem[(long)r.Observed["old"]].Has(PageFlags.Free));
        f.AssertInvariants(k);
    }

    [Fact]
    public void KsmFolio_Migrates_TheStableNodeFollows_AndANewCopyMergesIntoTheMovedPage()
    {
        var r = RunYaml("""
                  - mmap: { addr: 0x10000000, len: 8K }
                  - madvise: { addr: 0x10000000, len: 8K, advice: nohugepage }
                  - memset: { addr: 0x10000000, len: 8K, value: 0xcf }
                  - madvise: { addr: 0x10000000, len: 8K, advice: mergeable }
                  - ksm.run: { value: 1 }
                  - ksm.scan: { full_scans: 2 }
                  - expect-pagemap: { addr: 0x10000000, as: kpage }
                  - move-pages: { addr: 0x10000000, node: 1, status: "eacces" }
                  - move-pages: { addr: 0x10000000, node: 1, flags: move_all, status: "1", ret: 0 }
                  - expect-pagemap: { addr: 0x10000000, pfn_not: kpage, as: moved }
                  - expect-pagemap: { addr: 0x10001000, pfn: moved }
                  - mmap: { addr: 0x20000000, len: 4K }
                  - madvise: { addr: 0x20000000, len: 4K, advice: nohugepage }
                  - write: { addr: 0x20000000, value: 0xcf }
                  - madvise: { addr: 0x20000000, len: 4K, advice: mergeable }
                  - ksm.scan: { full_scans: 2 }
                  - expect-pagemap: { addr: 0x20000000, pfn: moved }
                  - ksm.expect: { counter: pages_shared, value: 1 }
                  - ksm.expect: { counter: pages_sharing, value: 2 }
            """);
        Assert.Null(r.Violation);
        var node = Ksmd.Of(r.Kernel).PageStableNode((long)r.Observed["moved"]);
        Assert.NotNull(node);
        Assert.Equal((long)r.Observed["moved"], node!.Kpfn);
        Assert.Null(Ksmd.Of(r.Kernel).CheckInvariants());
    }

    [Theory]
    [InlineData(1, 1, 1)]   // merge_across_nodes=1: the node-0 and node-1 copies merge into one KSM page
    [InlineData(0, 0, 0)]   // 0: one tree per node, the two pages never meet
    public void MergeAcrossNodes_DecidesWhetherPagesOfTwoNodesMerge(int across, int shared, int sharing)
    {
        var r = RunYaml($$"""
                  - ksm.set: { knob: merge_across_nodes, value: {{across}} }
                  - mmap: { addr: 0x10000000, len: 4K }
                  - mmap: { addr: 0x20000000, len: 4K }
                  - mbind: { addr: 0x20000000, len: 4K, node: 1 }
                  - write: { addr: 0x10000000, value: 0xcf }
                  - write: { addr: 0x20000000, value: 0xcf }
                  - move-pages: { addr: 0x10000000, status: "0" }
                  - move-pages: { addr: 0x20000000, status: "1" }
                  - madvise: { addr: 0x10000000, len: 4K, advice: mergeable }
                  - madvise: { addr: 0x20000000, len: 4K, advice: mergeable }
                  - ksm.run: { value: 1 }
                  - ksm.scan: { full_scans: 3 }
                  - ksm.expect: { counter: pages_shared, value: {{shared}} }
                  - ksm.expect: { counter: pages_sharing, value: {{sharing}} }
            """);
        Assert.Null(r.Violation);
        Assert.Null(Ksmd.Of(r.Kernel).CheckInvariants());
    }

    [Fact]
    public void MergeAcrossNodes_SameNodePagesStillMerge_AndTheKnobIsBusyWhileKsmPagesExist()
    {
        var r = RunYaml("""
                  - ksm.set: { knob: merge_across_nodes, value: 0 }
                  - mmap: { addr: 0x10000000, len: 8K }
                  - memset: { addr: 0x10000000, len: 8K, value: 0xcf }
                  - madvise: { addr: 0x10000000, len: 8K, advice: mergeable }
                  - ksm.run: { value: 1 }
                  - ksm.scan: { full_scans: 2 }
                  - ksm.expect: { counter: pages_sharing, value: 1 }
                  - ksm.set: { knob: merge_across_nodes, value: 1, expect: ebusy }
            """);
        Assert.Null(r.Violation);
    }

    [Fact]
    public void KsmFolio_BeforeKsmMigration_IsSkippedWithEnoent()
    {
        var r = RunYaml("""
                  - mmap: { addr: 0x10000000, len: 8K }
                  - memset: { addr: 0x10000000, len: 8K, value: 0xcf }
                  - madvise: { addr: 0x10000000, len: 8K, advice: mergeable }
                  - ksm.run: { value: 1 }
                  - ksm.scan: { full_scans: 2 }
                  - move-pages: { addr: 0x10000000, node: 1, flags: move_all, status: "enoent", ret: 0 }
            """, era: "3.7");
        Assert.Null(r.Violation);
        Assert.False(EraTable.Get("3.7").Has(Feature.KsmFolioMigration));
        Assert.True(EraTable.Get("3.10").Has(Feature.KsmFolioMigration));
    }

    [Fact]
    public void Mbind_BindsLaterFaults_MovesWhatIsMapped_AndStrictReportsAPageLeftBehind()
    {
        var r = RunYaml("""
                  - mmap: { addr: 0x10000000, len: 12K }
                  - write: { addr: 0x10000000, value: 1 }
                  - fork: { child: c }
                  - write: { addr: 0x10001000, value: 2 }
                  - mbind: { addr: 0x10001000, len: 8K, node: 1, flags: move }
                  - move-pages: { addr: 0x10001000, status: "1" }
                  - write: { addr: 0x10002000, value: 3 }
                  - move-pages: { addr: 0x10002000, status: "1" }
                  - move-pages: { addr: 0x10000000, status: "0" }
                  - mbind: { addr: 0x10000000, len: 4K, node: 1, flags: "strict,move", expect: eio }
                  - move-pages: { addr: 0x10000000, status: "0" }
                  - mbind: { addr: 0x10000000, len: 4K, node: 1, flags: "strict,move_all" }
                  - move-pages: { addr: 0x10000000, status: "1" }
                  - mbind: { addr: 0x10002000, len: 8K, node: 1, expect: efault }
                  - mbind: { addr: 0x10000000, len: 4K, node: 3, expect: einval }
            """);
        Assert.Null(r.Violation);
        var mm = r.Kernel.Mms.Single(m => m.Name == "p");
        Assert.Equal(1, mm.FindVma(0x10001000)!.PolicyNode);
        var child = r.Kernel.Mms.Single(m => m.Name == "c");
        Assert.Equal(-1, child.FindVma(0x10001000)!.PolicyNode); // forked before the mbind
    }

    [Theory]
    [InlineData("numa_nodes: 9\n", 2, "numa_nodes", "out of range")]
    [InlineData("numa_nodes: two\n", 2, "numa_nodes", "not a number")]
    public void BadNumaNodes_IsALineError(string line, int lineNo, string field, string part) =>
        CliRunner.AssertBadInput("name: t\n" + line + "processes:\n  - name: p\n    vmas:\n      - { start: 0x1000, len: 8K }\nthreads:\n  - name: m\n    process: p\n    ops:\n      - read: { addr: 0x1000 }\n",
            lineNo, field, part);

    [Theory]
    [InlineData("move-pages: { addr: 0x1000, pages: 2, node: 1, status: \"1,1,1\" }", "move-pages.status", "3 values for 2 pages")]
    [InlineData("move-pages: { addr: 0x1000, status: \"x\" }", "move-pages.status", "neither a node")]
    [InlineData("move-pages: { addr: 0x1000, flags: move_all }", "move-pages.flags", "a query (no node) takes no flags")]
    [InlineData("move-pages: { addr: 0x1000, node: 8 }", "move-pages.node", "out of range")]
    [InlineData("move-pages: { addr: 0x1000, node: 1, ret: lots }", "move-pages.ret", "neither a page count")]
    [InlineData("mbind: { addr: 0x1000, len: 4K, node: 1, flags: sometimes }", "mbind.flags", "not an mbind flag set")]
    [InlineData("mbind: { addr: 0x1000, len: 100, node: 1 }", "mbind.len", "not a positive multiple")]
    [InlineData("expect-pagemap: { addr: 0x1000, pfn: never }", "expect-pagemap.pfn", "no op creates a recorded pfn named 'never'")]
    public void BadNumaOps_AreLineErrors(string op, string field, string part) =>
        CliRunner.AssertBadInput("name: t\nnuma_nodes: 2\nprocesses:\n  - name: p\n    vmas:\n      - { start: 0x1000, len: 8K }\nthreads:\n  - name: m\n    process: p\n    ops:\n      - " + op + "\n",
            11, field, part);

    public static TheoryData<string> RmapPorts() => SelftestPorts.Under("selftests/rmap/");

    [Theory]
    [MemberData(nameof(RmapPorts))]
    public void RmapPort_MeetsItsDeclarationInEveryEra(string name)
    {
        Assert.Equal(ExpectKind.Pass, ScenarioLoader.LoadBuiltIn(name).ExpectedIn(EraTable.Get("6.18")).Kind);
        Assert.True(SelftestPorts.AssertMeetsDeclaration(name) >= 2);
    }

    [Fact]
    public void RmapPorts_CoverEveryUpstreamTest()
    {
        string[] upstream = ["migrate-anon", "migrate-shm", "migrate-file", "migrate-ksm", "migrate-ksm-and-mremap"];
        var names = ScenarioLoader.BuiltInNames.Where(n => n.StartsWith("selftests/rmap/", StringComparison.Ordinal)).ToHashSet();
        Assert.Equal(upstream.Select(u => "selftests/rmap/" + u).ToHashSet(), names);
    }
}
