using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Mm;

/// <summary>
/// migration.c's ports (selftests/migration/) in every era, and migration racing a page-cache fault: the folio lock
/// (handed to the sleeping fault on unlock) and migrate_pages' ten passes keep every interleaving coherent, and a
/// fault preempted while it holds a reference makes move_pages fail after the ten passes, as it can in the kernel.
/// </summary>
public class MigrationSelftestTests
{
    public static TheoryData<string> Ports() => SelftestPorts.Under("selftests/migration/");

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MeetsItsDeclarationInEveryEra(string name)
    {
        Assert.True(SelftestPorts.AssertMeetsDeclaration(name, check: r => Assert.True(r.Kernel.Stats[Stat.PagesMigrated] >= 7)) >= 10); // 8 moves; the THP ports' first one finds the folio on its target node already (status 1, nothing moved); before 4.14 a THP move migrates one page
    }

    [Fact]
    public void Ports_CoverTheUpstreamTestsTheModelCanRun()
    {
        var names = ScenarioLoader.BuiltInNames.Where(n => n.StartsWith("selftests/migration/", StringComparison.Ordinal)).ToHashSet();
        Assert.Equal(new[] { "private-anon", "shared-anon", "private-anon-thp", "shared-anon-thp", "private-anon-htlb", "shared-anon-htlb" }.Select(n => "selftests/migration/" + n).ToHashSet(), names);
        var doc = File.ReadAllText(Path.Combine(MmuSim.Tests.Kvm.RealKvm.RepoRoot(), "docs", "selftests.md"));
        Assert.Contains("| shared_anon_thp | `shared-anon-thp` | yes, 4.13+", doc);
        Assert.Contains("| private_anon_htlb | `private-anon-htlb` | yes, 3.12+", doc);
    }

    const string FaultVsMigrate = """
        name: fault-vs-migrate-file
        era: "6.18"
        numa_nodes: 2
        processes:
          - name: p
            vmas: []
        setup:
          - file.create: { as: f, kind: memfd, size: 4K }
          - mmap: { process: p, addr: 0x10000000, len: 4K, file: f, flags: shared }
          - write: { process: p, addr: 0x10000000, value: 7 }
          - fork: { process: p, child: c }
        threads:
          - name: faulter
            process: c
            ops:
              - read: { addr: 0x10000000 }
              - expect-value: { addr: 0x10000000, value: 7 }
              - signal: { event: faulted }
          - name: migrator
            process: p
            ops:
              - move-pages: { addr: 0x10000000, node: 1, flags: move_all RET }
              - wait: { event: faulted }
              - expect-pagemap: { addr: 0x10000000, present: true, as: now }
              - expect-pagemap: { process: c, addr: 0x10000000, pfn: now }
              - expect-value: { addr: 0x10000000, value: 7 }
        """;

    static ExploreReport Dfs(string yaml) =>
        new Explorer(new ScenarioExplorable(ScenarioLoader.Parse(yaml, "t.yaml"), EraTable.Get("6.18"), []), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = 2, Por = true },
            Iterations = 1_000_000,
        }).Run();

    [Fact]
    public void FaultRacingMigrationOfAPageCacheFolio_EveryInterleavingEndsWithBothMappingTheCachedPage()
    {
        var r = Dfs(FaultVsMigrate.Replace(" RET", ""));
        Assert.Null(r.First);
        Assert.True(r.Exhausted);
        Assert.True(r.Schedules > 100);
    }

    [Fact]
    public void AFaultPreemptedWhileItHoldsAReference_MakesMovePagesFailAfterTenPasses()
    {
        var r = Dfs(FaultVsMigrate.Replace(" RET", ", ret: 0"));
        Assert.NotNull(r.First);
        Assert.Contains("move_pages at 0x10000000 returned 1, expected 0", r.First!.Violation.Message);
    }
}
