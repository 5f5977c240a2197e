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
