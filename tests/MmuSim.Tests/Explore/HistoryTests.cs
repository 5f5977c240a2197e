using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Trace;

namespace MmuSim.Tests.Explore;

public class HistoryTests
{
    [Fact]
    public void InvalidatePageAfterPtl_ViolatesExactlyIn3_6To4_12()
    {
        var s = ScenarioLoader.LoadBuiltIn("invalidate-page-after-ptl");
        var eras = new[] { "2.6.32", "3.6", "4.10", "4.12", "4.13", "6.13" }.Select(EraTable.Get).ToList();
        var report = new HistoryRunner([s], eras, new HistoryOptions { TotalTime = TimeSpan.FromSeconds(30), IterationsPerCell = 300 }).Run();
        Assert.Empty(report.Contradictions);
        foreach (var era in new[] { "3.6", "4.10", "4.12" })
        {
            var c = report.Cell(s.Name, era)!;
            Assert.Equal(("violation", "stale-translation"), (c.Outcome, c.Invariant));
            Assert.StartsWith("violation (stale-translation, ", c.Text);
        }
        foreach (var era in new[] { "2.6.32", "4.13", "6.13" })
        {
            var c = report.Cell(s.Name, era)!;
            Assert.Equal("clean", c.Outcome);
            Assert.Equal(300, c.Schedules);
            Assert.Equal("clean (300 schedules)", c.Text);
        }
        using var doc = System.Text.Json.JsonDocument.Parse(report.ToJson());
        Assert.Equal(6, doc.RootElement.GetProperty("cells").GetArrayLength());
        Assert.Equal(0, doc.RootElement.GetProperty("contradictions").GetInt32());
    }

    [Fact]
    public void TheCatalogIsTheEraDependentBuiltIns()
    {
        var names = HistoryRunner.BuiltInCatalog().Select(s => s.Name).ToList();
        Assert.Contains("invalidate-page-after-ptl", names);
        Assert.DoesNotContain("cow-zero-page", names);
    }

    [Fact]
    public void ShrunkDiagramOf5aIsShort()
    {
        var s = ScenarioLoader.LoadBuiltIn("invalidate-page-after-ptl");
        var p = new ScenarioExplorable(s, EraTable.Get("4.10"));
        var found = new Explorer(p, new ExploreOptions { Iterations = 1000 }).Run().First!;
        var small = new Shrinker(p).Shrink(found);
        var t = new TraceCollector();
        Assert.True(small.Replay(p, t).Reproduced);
        var d = RaceDiagram.Build(t);
        Assert.All(d.Columns, c => Assert.True(d.RowsFor(c.Id) <= 12, d.ToString()));
        Assert.Contains(d.Rows, r => r.Text == "ptep_clear_flush(0x10000)");
        Assert.Contains(d.Rows, r => r.Text == "unlock PTL");
        Assert.Contains("violation: stale-translation", d.ToString());
        Assert.Equal("mmu_notifier_invalidate_page", small.Violation.Function);
    }
}

public class CatalogOpsTests
{
    const string D4 = """
        name: d4
        processes:
          - name: p
            vmas:
              - { start: 0x40000, len: 8K, prot: rw }
        setup:
          - iommu.bind: { process: p, name: iommu0 }
          - read: { process: p, addr: 0x40000 }
          - iommu.dma-read: { iommu: iommu0, addr: 0x40000 }
        threads:
          - name: cpu
            process: p
            ops:
              - write: { addr: 0x40000, value: 42 }
          - name: device
            ops:
              - iommu.dma-read: { iommu: iommu0, addr: 0x40000 }
              - iommu.dma-read: { iommu: iommu0, addr: 0x40000 }
        expect: pass
        """;

    [Theory]
    [InlineData("3.7", true)]   // start/end only: the IOTLB refills from the old PTE inside the range
    [InlineData("4.19", false)] // invalidate_range under the PTL
    public void IommuOpsReproduceTheSharedPageTableCowRace(string era, bool violates)
    {
        var s = ScenarioLoader.Parse(D4, "d4.yaml");
        var r = new Explorer(new ScenarioExplorable(s, EraTable.Get(era)), new ExploreOptions { Iterations = 2000 }).Run();
        Assert.Equal(violates, r.First != null);
        if (violates) Assert.Equal("stale-translation", r.First!.Violation.Invariant);
    }

    [Fact]
    public void ReclaimOfAnUnmappedAddressIsANoOp()
    {
        var s = ScenarioLoader.Parse("""
            name: r
            processes:
              - name: p
                vmas:
                  - { start: 0x10000, len: 8K, prot: rw }
            threads:
              - name: t
                process: p
                ops:
                  - reclaim: { addr: 0x10000 }
                  - migrate: { addr: 0x11000 }
            expect: pass
            """, "r.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        Assert.Equal(0, r.Kernel.Stats.NonZero().Count(x => x.Name.Contains("reclaim", StringComparison.OrdinalIgnoreCase)));
    }
}
