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
    [InlineData("oom-reaper-rt-sleeping-lock", "4.15", null)]
    [InlineData("oom-reaper-rt-sleeping-lock", "4.19", "sleep-in-nonblock")]
    [InlineData("oom-reaper-rt-sleeping-lock", "6.18", "sleep-in-nonblock")]
    [InlineData("oom-reaper-rt-raw-lock-memslot", "6.18", "sleep-in-nonblock")]
    [InlineData("khugepaged-pte-mapped-thp-no-notify", "4.19", null)]
    [InlineData("khugepaged-pte-mapped-thp-no-notify", "5.5", "stale-translation")]
    [InlineData("khugepaged-pte-mapped-thp-no-notify", "5.13", "stale-translation")]
    [InlineData("khugepaged-pte-mapped-thp-no-notify", "6.1", null)]
    [InlineData("khugepaged-pte-mapped-thp-no-notify", "6.18", null)]
    [InlineData("oom-reaper-nonblock-unpaired-end", "4.15", null)]
    [InlineData("oom-reaper-nonblock-unpaired-end", "4.19", "counter-balance")]
    [InlineData("oom-reaper-nonblock-unpaired-end", "5.5", "counter-balance")]
    [InlineData("oom-reaper-nonblock-unpaired-end", "5.13", null)]
    [InlineData("oom-reaper-nonblock-unpaired-end", "6.18", null)]
    [InlineData("gntdev-unmap-blocks", "5.5", "liveness")]
    [InlineData("gntdev-unmap-blocks", "5.13", "liveness")]
    [InlineData("gntdev-unmap-blocks", "6.1", null)]
    [InlineData("gntdev-unmap-blocks", "6.18", null)]
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

    static MmuSim.Scenarios.RunResult RunVariant(string scenario, string era, params (string From, string To)[] edits)
    {
        var text = ScenarioLoader.BuiltInText(scenario)!;
        foreach (var (from, to) in edits)
        {
            Assert.Contains(from, text);
            text = text.Replace(from, to);
        }
        return ScenarioRunner.Run(ScenarioLoader.Parse(text, scenario + ".yaml"), EraTable.Get(era), null);
    }

    /// <summary>Row e5: which lock the OOM reaper's non-blocking KVM callback trips over under PREEMPT_RT, and that
    /// nothing is reported without PREEMPT_RT.</summary>
    [Theory]
    [InlineData("4.19", "spin_lock(vm0->mmu_lock)")]          // before 5.13 KVM's start takes mmu_lock unconditionally
    [InlineData("5.13", "spin_lock(vm0->mn_invalidate_lock)")]
    [InlineData("6.18", "spin_lock(vm0->mn_invalidate_lock)")]
    public void OomReaperUnderRt_TakesAnRtLockInItsNonBlockingCallback(string era, string lockName)
    {
        var rt = RunVariant("oom-reaper-rt-sleeping-lock", era);
        Assert.Equal("sleep-in-nonblock", rt.Violation?.Invariant);
        Assert.StartsWith(lockName + " is an rt_mutex under PREEMPT_RT", rt.Violation!.Message);
        Assert.Null(RunVariant("oom-reaper-rt-sleeping-lock", era, ("preempt_rt: true", "preempt_rt: false")).Violation);
    }

    /// <summary>The proposed raw mn_invalidate_lock is enough when no memslot overlaps the reaped range (5.13+ skips
    /// mmu_lock), not when one does (mmu_lock is an rwlock_t on x86).</summary>
    [Theory]
    [InlineData("5.13")]
    [InlineData("6.18")]
    public void RawMnInvalidateLock_HelpsOnlyWithoutAMemslotOverTheRange(string era)
    {
        Assert.Null(RunVariant("oom-reaper-rt-sleeping-lock", era, ("name: vm0 }", "name: vm0, mn_invalidate_lock: raw }")).Violation);
        var withSlot = RunVariant("oom-reaper-rt-raw-lock-memslot", era);
        Assert.Equal("sleep-in-nonblock", withSlot.Violation?.Invariant);
        Assert.StartsWith("write_lock(vm0->mmu_lock)", withSlot.Violation!.Message);
    }

    [Fact]
    public void PreemptRtIsABooleanInTheScenarioFile()
    {
        Tests.Cli.CliRunner.AssertBadInput("preempt_rt: maybe\n" + Tests.Cli.CliRunner.MinimalScenario, 1, "preempt_rt", "not a boolean");
        Tests.Cli.CliRunner.AssertBadInput(Tests.Cli.CliRunner.MinimalScenario.Replace("read: { addr: 0x100000 }",
            "vm.create: { process: p, name: v, mn_invalidate_lock: mutex }"), 10, "vm.create.mn_invalidate_lock", "unknown lock kind");
    }

    [Fact]
    public void KhugepagedRowNamesTheCollapseOfThePteMappedThp()
    {
        var c = Cell("khugepaged-pte-mapped-thp-no-notify", "5.13");
        Assert.Equal("collapse_pte_mapped_thp", c.Counterexample!.Violation.Function);
        Assert.Equal("khugepaged", c.Counterexample.Violation.ContextName);
        Assert.Contains("vm0 maps 0x401000 (spte)", c.Message);
        Assert.Contains("primary maps nothing", c.Message);
        Assert.Equal(CellStatus.NotApplicable, Cell("khugepaged-pte-mapped-thp-no-notify", "3.19").Status);
    }

    static Scenario E7(Func<string, string> edit) =>
        ScenarioLoader.Parse(edit(ScenarioLoader.BuiltInText("oom-reaper-nonblock-unpaired-end")!), "e7.yaml");

    static MmuSim.Sched.Violation? FirstViolation(Scenario s, string era) =>
        new Explorer(new ScenarioExplorable(s, EraTable.Get(era)), new ExploreOptions { Iterations = 16 }).Run().First?.Violation;

    /// <summary>
    /// Row (e7): the reaper's ten failed attempts leave KVM's count at 10 before c2655835fd8c; the guest's next fault
    /// then retries forever (the "soft lockup in the guest" of the commit), and from 5.12 the same fault maps the page.
    /// </summary>
    [Theory]
    [InlineData("4.19", "mmu_notifier_count is 10")]
    [InlineData("5.5", "mmu_notifier_count is 10")]
    public void UnpairedEndLeavesKvmsCountAtTheReapersTenAttempts(string era, string message)
    {
        var v = FirstViolation(ScenarioLoader.LoadBuiltIn("oom-reaper-nonblock-unpaired-end"), era);
        Assert.NotNull(v);
        Assert.Equal("counter-balance", v!.Invariant);
        Assert.Contains(message, v.Message);
        var withGuest = E7(t => t.Replace("      - oom-reap\n", "      - oom-reap\n      - guest.read: { vm: vm0, gfn: 0x10, expect: 0x11 }\n"));
        var lockup = FirstViolation(withGuest, era);
        Assert.NotNull(lockup);
        Assert.Equal("liveness", lockup!.Invariant);
        Assert.Contains("kvm_mmu_page_fault (RET_PF_RETRY)", lockup.Message);
        Assert.Null(FirstViolation(withGuest, "5.13"));
    }

    /// <summary>The fix also forbids a start that can fail from having an end (WARN_ON(ops->invalidate_range_end));
    /// before it, such a subscription was legal and only KVM's count showed the missing end.</summary>
    [Fact]
    public void AFailingStartWithAnEndWarnsOnlyFrom5_12()
    {
        var s = E7(t => t.Replace("end: false", "end: true"));
        Assert.Equal("counter-balance", FirstViolation(s, "5.5")!.Invariant);
        var v = FirstViolation(s, "5.13");
        Assert.Equal("start-end-pairing", v!.Invariant);
        Assert.Contains("i915-userptr failed start but implements invalidate_range_end", v.Message);
    }

    /// <summary>
    /// Row (e8): some schedule shows the QubesOS cycle itself (gntdev polling the pinned page inside the munmap's
    /// invalidation while i915's next submission sleeps in mmu_interval_read_begin holding that pin); in every
    /// violating schedule the munmap is stuck in gnttab_unmap_refs_sync. From 5.19 the unmap is asynchronous and the
    /// munmap completes with the pin still held.
    /// </summary>
    [Fact]
    public void GntdevWaitsForTheI915PinWhileI915WaitsForTheInvalidation()
    {
        var s = ScenarioLoader.LoadBuiltIn("gntdev-unmap-blocks");
        var r = new Explorer(new ScenarioExplorable(s, EraTable.Get("5.13")), new ExploreOptions { Iterations = 256, All = true }).Run();
        Assert.NotEmpty(r.Counterexamples);
        Assert.All(r.Counterexamples, c => Assert.Contains("CPU1 (munmap) spins in gnttab_unmap_refs_sync", c.Violation.Message));
        Assert.Contains(r.Counterexamples, c => c.Violation.Message.Contains("CPU2 (i915) waits on mm1->notifier_subscriptions->wq in mmu_interval_read_begin"));
        var fixedRun = ScenarioRunner.Run(s, EraTable.Get("6.18"), null);
        Assert.Null(fixedRun.Violation);
        var gntdev = Assert.IsType<Devices.GntdevDriver>(fixedRun.World.Objects["gntdev"]);
        Assert.Equal(1, gntdev.AsyncUnmaps);
        Assert.Equal(0, gntdev.Waits);
        // The plain run is munmap first: it completed with setup's pin still held; i915's next submission then
        // dropped that pin and found nothing to pin in the unmapped range.
        Assert.Equal(0, Assert.IsType<Devices.I915UserptrDriver>(fixedRun.World.Objects["i915"]).Pinned);
        Assert.Equal(2, fixedRun.World.K.Stats[Stat.DeviceFaults]); // two submissions: setup and the thread
    }

    [Fact]
    public void SecondaryDriverFieldNamesABuiltInDriverOrIsAnError()
    {
        const string scen = """
            name: t
            era: 6.18
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 16K, prot: rw }
            setup:
              - secondary: { process: p, addr: 0x100000, len: 16K, driver: DRIVER }
            threads:
              - name: cpu0
                process: p
                ops:
                  - read: { addr: 0x100000 }
            """;
        Tests.Cli.CliRunner.AssertBadInput(scen.Replace("DRIVER", "nvidia"), 8, "secondary.driver", "no built-in driver named 'nvidia' (one of: userptr, gntdev, i915-userptr)");
        Tests.Cli.CliRunner.AssertBadInput(scen.Replace("DRIVER", "gntdev").Replace("era: 6.18", "era: 4.19"), 8, "secondary.driver", "requires IntervalNotifier");
        // A scenario whose devices all name a built-in driver is not one that `explore --secondary DLL` runs a user's driver in.
        Assert.False(ScenarioLoader.LoadBuiltIn("gntdev-unmap-blocks").UsesSecondaryDriver);
        Assert.False(ScenarioLoader.Parse(scen.Replace("DRIVER", "gntdev"), "t.yaml").UsesSecondaryDriver);
        Assert.True(ScenarioLoader.Parse(scen.Replace(", driver: DRIVER", ""), "t.yaml").UsesSecondaryDriver);
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
    [InlineData("khugepaged-pte-mapped-thp-no-notify", "6.1", Mutation.CollapseAndFreePmdNoNotify, "stale-translation")]
    [InlineData("oom-reaper-nonblock-unpaired-end", "6.18", Mutation.NonblockFailureSkipsEnd, "counter-balance")]
    [InlineData("gntdev-unmap-blocks", "6.18", Mutation.GntdevSyncUnmap, "liveness")]
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
