using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Lkmm;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Lkmm;

/// <summary>
/// Race 5(d1) for real: PPC Book3S HV's lockless mmu_notifier_retry, program order in every era, reordered only by the
/// weak memory. Before the barriers (the model's 2.6.x columns) lkmm finds the stale translation; sc cannot; with the
/// barriers lkmm finds nothing; dropping only the reader's smp_rmb (kvm-retry-no-rmb) brings the bug back.
/// </summary>
public class RetryBarrierTests
{
    static ExploreReport Explore(Scenario s, string era, IReadOnlyList<Mutation>? muts = null, StrategySpec? spec = null, int n = 5000) =>
        new Explorer(new ScenarioExplorable(s, EraTable.Get(era), muts), new ExploreOptions
        {
            Strategy = spec ?? new StrategySpec { Kind = StrategyKind.Random, Seed = 1 },
            Iterations = n,
        }).Run();

    static Scenario D1 => ScenarioLoader.LoadBuiltIn("kvm-retry-barriers");

    [Fact]
    public void The_catalog_row_declares_the_weak_mode()
    {
        Assert.Equal(MemoryModel.Lkmm, D1.Memory);
        Assert.Equal("d1", D1.Catalog);
    }

    [Fact]
    public void Without_the_barriers_lkmm_lets_the_fault_see_the_new_count_and_the_old_seq()
    {
        var r = Explore(D1, "2.6.32");
        Assert.NotNull(r.First);
        Assert.Equal(Invariants.StaleTranslation, r.First!.Violation.Invariant);
        // The counterexample replays: the loads' choices are data decisions in the log.
        var replay = ScenarioRunner.Replay(D1, EraTable.Get("2.6.32"), r.First.Decisions);
        Assert.Equal(Invariants.StaleTranslation, replay.Violation?.Invariant);
        var vm = (MmuSim.Kvm.Kvm)replay.World.Objects["vm0"];
        Assert.Equal(1UL, vm.InvalidateSeq);        // the invalidation completed: seq bumped, count back to 0 ...
        Assert.Equal(0L, vm.InvalidateInProgress);  // ... yet the fault installed the page it removed
    }

    [Fact]
    public void Without_the_barriers_sc_cannot_show_the_bug()
    {
        var r = Explore(D1.WithMemory(MemoryModel.Sc), "2.6.32",
            spec: new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = 2, Por = true }, n: 200_000);
        Assert.Null(r.First);
        Assert.True(r.Exhausted);
    }

    [Theory]
    [InlineData("3.6")]
    [InlineData("6.13")]
    public void With_the_barriers_lkmm_finds_no_stale_translation(string era)
    {
        var r = Explore(D1, era, n: 3000);
        Assert.Null(r.First);
        var dfs = Explore(D1, era, spec: new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = 1, Por = false }, n: 200_000);
        Assert.Null(dfs.First);
        Assert.True(dfs.Exhausted);
    }

    [Fact]
    public void Dropping_the_reader_s_smp_rmb_alone_brings_the_bug_back()
    {
        var r = Explore(D1, "6.13", [Mutation.KvmRetryNoRmb]);
        Assert.NotNull(r.First);
        Assert.Equal(Invariants.StaleTranslation, r.First!.Violation.Invariant);
        Assert.Null(Explore(D1.WithMemory(MemoryModel.Sc), "6.13", [Mutation.KvmRetryNoRmb], n: 3000).First);
    }
}
