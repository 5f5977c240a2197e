using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Mm;
using MmuSim.Sched;
using MmuSim.Trace;

namespace MmuSim.Tests.Explore;

/// <summary>The explorer on a real model race: kernel-facts §5(d4), COW against a TLB that shares the primary page tables.</summary>
public class ModelRaceTests
{
    const ulong A = 0x40000;

    /// <summary>Setup runs without a strategy (no decisions, no BeginRun); the explored phase is the CPU's COW write against DMA reads.</summary>
    static IExplorable CowVsDma(string era) => new KernelExplorable(ExplorableInfo.Of("cow-vs-iotlb", era), strategy =>
    {
        var k = new Kernel(EraTable.Get(era));
        var mm = k.CreateMm("task");
        mm.InsertVma(new Vma(mm, A, A + 0x2000, Prot.ReadWrite, VmFlags.None));
        var dev = new SharedPtTlbDevice(k, mm);
        k.S.Spawn("setup", async _ =>
        {
            await dev.Bind();
            await Memory.UserAccess(mm, A, write: false);
            await dev.DmaRead(A);
        });
        if (k.Run() != null) throw new InvalidOperationException("setup failed");
        k.S.Decisions.Clear();
        k.S.Strategy = strategy;
        k.S.Spawn("cpu", async _ => await Memory.UserAccess(mm, A, write: true, value: 42));
        k.S.Spawn("device", async _ =>
        {
            for (int i = 0; i < 3; i++) await dev.DmaRead(A);
        });
        return k;
    });

    [Fact]
    public void FoundShrunkReplayedAndDrawnInTheBuggyEra()
    {
        var p = CowVsDma("3.7");
        var report = new Explorer(p, new ExploreOptions { Iterations = 5000 }).Run();
        var found = report.First;
        Assert.NotNull(found);
        Assert.Equal(Invariants.StaleTranslation, found!.Violation.Invariant);

        var small = new Shrinker(p).Shrink(found);
        Assert.Equal(Invariants.StaleTranslation, small.Violation.Invariant);
        Assert.True(small.Preemptions <= found.Preemptions);
        Assert.True(small.Preemptions <= 2, $"{small.Preemptions} preemptions");

        var t = new TraceCollector();
        var r = small.Replay(p, t);
        Assert.True(r.Reproduced);
        var d = RaceDiagram.Build(t);
        string text = d.ToString();
        Assert.Equal(2, d.Columns.Count);
        Assert.StartsWith("CPU1 (cpu: ", d.Columns[0].Header);
        Assert.StartsWith("CPU2 (device", d.Columns[1].Header);
        Assert.True(d.RowsFor(1) <= 12 && d.RowsFor(2) <= 12, text);
        Assert.Contains(d.Rows, row => row.Cpu == 1 && row.Text == "lock PTL");
        Assert.Contains("violation: stale-translation", text);
    }

    [Fact]
    public void DfsCompletesCleanInTheFixedEra()
    {
        var report = new Explorer(CowVsDma("4.19"), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 1 },
            Iterations = 20_000,
        }).Run();
        Assert.Null(report.First);
        Assert.True(report.Exhausted);
        Assert.Equal($"no violation in all {report.Schedules} schedules up to 1 preemption", report.Completion);
        Assert.True(report.Schedules > 10);
    }

    [Fact]
    public void DfsFindsTheBugInTheBuggyEra()
    {
        var report = new Explorer(CowVsDma("3.7"), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 1 },
            Iterations = 20_000,
        }).Run();
        Assert.NotNull(report.First);
        Assert.Equal(Invariants.StaleTranslation, report.First!.Violation.Invariant);
    }
}
