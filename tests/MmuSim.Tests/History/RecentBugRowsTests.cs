using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.History;
using MmuSim.Scenarios;

namespace MmuSim.Tests.History;

/// <summary>
/// The catalog rows for the notifier bugs found since 2018 (issue 11, rows e*): each is found in a buggy era, clean in
/// a fixed one, with the history's default budget and seed, and its mutant is killed in the scenario's declared era.
/// </summary>
public class RecentBugRowsTests
{
    static readonly HistoryOptions Budget = new() { SchedulesPerCell = 1024, StatRuns = 2 };

    static HistoryCell Cell(string scenario, string era) =>
        HistoryRunner.RunCell(ScenarioLoader.LoadBuiltIn(scenario), EraTable.Get(era), Budget, TimeSpan.FromMinutes(5));

    [Theory]
    [InlineData("interval-remove-deferred", "5.5", "interval-seq")]
    [InlineData("interval-remove-deferred", "5.13", "interval-seq")]
    [InlineData("interval-remove-deferred", "6.1", null)]
    [InlineData("interval-remove-deferred", "6.18", null)]
    [InlineData("kvm-prefault-memslot-delete", "6.10", "liveness")]
    [InlineData("kvm-prefault-memslot-delete", "6.17", "liveness")]
    [InlineData("kvm-prefault-memslot-delete", "6.18", null)]
    [InlineData("device-private-fault-ref", "5.13", "freed-page-reachable")]
    [InlineData("device-private-fault-ref", "6.1", null)]
    [InlineData("device-private-fault-ref", "6.13", null)]
    [InlineData("device-private-fault-ref", "6.18", null)]
    [InlineData("pagemap-scan-unpaired-end", "6.7", "counter-balance")]
    [InlineData("pagemap-scan-unpaired-end", "6.8", null)]
    [InlineData("pagemap-scan-unpaired-end", "6.13", null)]
    [InlineData("pagemap-scan-unpaired-end", "6.18", null)]
    public void RowIsFoundInBuggyErasAndCleanInFixedOnes(string scenario, string era, string? invariant)
    {
        var c = Cell(scenario, era);
        Assert.False(c.Contradicts, $"{scenario}@{era}: expected {c.Expected}, got {c.Text}: {c.Message}");
        if (invariant == null)
        {
            Assert.Equal(CellStatus.Clean, c.Status);
            Assert.Equal(1024, c.Schedules);
        }
        else
        {
            Assert.Equal(CellStatus.Violation, c.Status);
            Assert.Equal(invariant, c.Invariant);
            Assert.NotNull(c.Counterexample);
        }
    }

    [Fact]
    public void IntervalRemoveReturnsBeforeTheDeferredWalkOnlyWithTheUnlockedRead()
    {
        var c = Cell("interval-remove-deferred", "5.13");
        Assert.Contains("after mmu_interval_notifier_remove returned", c.Message);
        Assert.Contains("gpu", c.Message);
    }

    [Fact]
    public void DevicePrivateFaultDereferencesTheFreedPageOnlyWithoutTheReference()
    {
        var c = Cell("device-private-fault-ref", "5.13");
        Assert.Contains("vmf->page->pgmap->ops->migrate_to_ram", c.Message);
        Assert.Contains("freed by a concurrent migration", c.Message);
        // From 6.1 both faults hold a reference: the slower one's migrate_vma_check_page fails and it retries (a spin
        // until the other drops its reference), and the page comes back to system memory once (a second migration back would count 3), with its data.
        var s = ScenarioLoader.LoadBuiltIn("device-private-fault-ref");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        Assert.Equal(2, r.Kernel.Stats[MmuSim.Stat.PagesMigrated]); // to the device in setup, back once
        Assert.Equal(0, MmuSim.Hmm.DevicePagemaps.Of(r.Kernel).Count);
    }

    [Fact]
    public void PagemapScanIsNotApplicableBefore6_7()
    {
        var c = Cell("pagemap-scan-unpaired-end", "6.6");
        Assert.Equal(CellStatus.NotApplicable, c.Status);
    }

    /// <summary>
    /// The 6.7 code (in a fixed era, by the mutant) hands KVM an end without its start. Before d489ec956583 (6.9) KVM's
    /// mn_active_invalidate_count wraps; from 6.9 KVM WARNs and keeps it at 0. Both are the kernel's bug elsewhere.
    /// </summary>
    [Theory]
    [InlineData("6.8", "mn_active_invalidate_count underflow")]
    [InlineData("6.10", "WARN_ON_ONCE(!mn_active_invalidate_count)")]
    [InlineData("6.18", "WARN_ON_ONCE(!mn_active_invalidate_count)")]
    public void KvmSeesTheUnpairedEnd_AndFrom6_9WarnsInsteadOfWrapping(string era, string message)
    {
        var s = ScenarioLoader.LoadBuiltIn("pagemap-scan-unpaired-end");
        var r = new Explorer(new ScenarioExplorable(s, EraTable.Get(era), [Mutation.PagemapScanNotifyOutsideMmapLock]),
            new ExploreOptions { Iterations = 64 }).Run();
        Assert.NotNull(r.First);
        Assert.Equal("counter-balance", r.First!.Violation.Invariant);
        Assert.Contains(message, r.First.Violation.Message);
        Assert.Contains("invalidate_range_end without its start", r.First.Violation.Message);
    }

    [Theory]
    [InlineData("interval-remove-deferred", "6.1", Mutation.IntervalRemoveUnlockedSeq, "interval-seq")]
    [InlineData("kvm-prefault-memslot-delete", "6.18", Mutation.KvmPrefaultRetriesInvalidSlot, "liveness")]
    [InlineData("device-private-fault-ref", "6.1", Mutation.DevicePrivateFaultNoRef, "freed-page-reachable")]
    [InlineData("pagemap-scan-unpaired-end", "6.8", Mutation.PagemapScanNotifyOutsideMmapLock, "counter-balance")]
    public void RowKillsItsMutantInTheDeclaredEra(string scenario, string era, Mutation m, string invariant)
    {
        var s = ScenarioLoader.LoadBuiltIn(scenario);
        Assert.Equal(era, s.EraOrDefault(null).Name);
        var clean = new Explorer(new ScenarioExplorable(s, EraTable.Get(era)), new ExploreOptions { Iterations = 1024 }).Run();
        Assert.Null(clean.First);
        var mutant = new Explorer(new ScenarioExplorable(s, EraTable.Get(era), [m]), new ExploreOptions { Iterations = 1024 }).Run();
        Assert.NotNull(mutant.First);
        Assert.Equal(invariant, mutant.First!.Violation.Invariant);
    }
}
