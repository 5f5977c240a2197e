using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Trace;

namespace MmuSim.Tests.Explore;

public class ScenarioExplorableTests
{
    [Fact]
    public void BuiltInScenarioExploresCleanAndRecordsOnlyTheThreadsPhase()
    {
        var s = ScenarioLoader.LoadBuiltIn("cow-zero-page");
        var p = new ScenarioExplorable(s, EraTable.Get("6.13"));
        Assert.Equal(("cow-zero-page", "6.13"), (p.Info.Scenario, p.Info.Era));
        var r = new Explorer(p, new ExploreOptions { Iterations = 50 }).Run();
        Assert.Equal(50, r.Schedules);
        Assert.Null(r.First);
        Assert.True(r.StepsMin > 0);

        var t = new TraceCollector();
        p.RunOnce(new MmuSim.Sched.RoundRobinStrategy(4), 0, t);
        Assert.Equal(["cpu0"], t.Contexts.Select(c => c.Name)); // the setup context is not recorded
        Assert.Contains(t.Events, e => e.Kind == TraceEventKind.Enter);
        Assert.Contains(t.Events, e => e.Kind == TraceEventKind.Record && e.Name == "mmusim:mn_invalidate_start");
        var ftrace = FtraceWriter.Lines(t);
        var mn = ftrace.Where(l => l.Contains(": mn_invalidate_start: ")).ToList();
        Assert.True(mn.Count > 0 && mn[0].Contains(": mn_invalidate_start: mm 1 start=0x10000"), string.Join("\n", mn));
    }
}
