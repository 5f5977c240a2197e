using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// A guest backed by a memfd with shmem_enabled=always (the usual QEMU memory-backend-memfd setup): the first guest
/// write allocates a huge shmem folio, the host maps it by a PMD (do_set_pmd) and KVM by one 2 MiB SPTE
/// (host_pfn_mapping_level); splitting the file PMD (mprotect of one page) invalidates the 2 MiB and KVM drops it.
/// </summary>
public class KvmShmemThpTests
{
    const string Yaml = """
        name: kvm-shmem-thp
        era: "ERA"
        processes:
          - name: qemu
            vmas: []
        setup:
          - thp.set: { knob: shmem_enabled, value: always, expect: KNOB }
          - file.create: { as: guestmem, kind: memfd, size: 2M }
          - mmap: { process: qemu, addr: 0x40000000, len: 2M, prot: rw, file: guestmem, flags: shared }
          - vm.create: { process: qemu, name: vm0 }
          - memslot.add: { vm: vm0, gfn: 0x200, pages: 512, hva: 0x40000000 }
        threads:
          - name: vcpu0
            ops:
              - guest.write: { vm: vm0, gfn: 0x205, value: 0x77 }
              - vm.expect-sptes: { vm: vm0, count: 1 }
              - expect-smaps: { process: qemu, addr: 0x40000000, shmem_pmd_mapped: PMDKB }
              - guest.read: { vm: vm0, gfn: 0x3ff, expect: 0 }
              - vm.expect-sptes: { vm: vm0, count: AFTER }
              - mprotect: { process: qemu, addr: 0x40000000, len: 4K, prot: r }
              - vm.expect-sptes: { vm: vm0, count: ZAPPED }
              - guest.read: { vm: vm0, gfn: 0x205, expect: 0x77 }
        """;

    static RunResult Run(string era, string pmdKb, string after, string zapped) =>
        ScenarioRunner.Run(ScenarioLoader.Parse(Yaml.Replace("ERA", era).Replace("KNOB", era == "3.19" ? "enoent" : "ok").Replace("PMDKB", pmdKb).Replace("AFTER", after).Replace("ZAPPED", zapped), "kvm-shmem-thp.yaml"),
            EraTable.Get(era), null);

    [Theory]
    [InlineData("6.13", "2048", "1", "0")] // one 2 MiB SPTE covers both gfns; the split's CLEAR zaps it
    [InlineData("4.19", "2048", "1", "0")]
    [InlineData("3.19", "0", "2", "2")]    // no shmem THP (nor its knob: ENOENT): 4 KiB folios, two SPTEs, and mprotect(PROT_READ) of another page leaves them
    public void GuestOnShmemThp_OneHugeSpte_ZappedWhenTheFilePmdSplits(string era, string pmdKb, string after, string zapped)
    {
        var r = Run(era, pmdKb, after, zapped);
        Assert.Null(r.Violation);
        Assert.Equal(pmdKb == "0" ? 0 : 1, r.Kernel.Stats[Stat.ThpFileAlloc]);
        // The assertions bite: KVM with 4 KiB SPTEs there would count two.
        Assert.Equal(ScenarioInvariants.UnexpectedValue, Run(era, pmdKb, after == "1" ? "2" : "1", zapped).Violation?.Invariant);
    }
}

/// <summary>kvm-shmem-collapse: MADV_COLLAPSE of a running guest's shmem memory, explored.</summary>
public class KvmShmemCollapseTests
{
    /// <summary>
    /// Clean with the notifiers in 6.1 and 6.13. Without collapse_and_free_pmd's CLEAR the explorer finds the stale SPTE
    /// in 6.1 (a vCPU fault PTE-maps a subpage of the new THP before collapse_pte_mapped_thp drops the table), but not
    /// in 6.13: 6.6's lockless retract_page_tables drops the caller's table too while the new folio is still locked,
    /// so no PTE of the THP exists when a table goes, and the vCPU refaults it by a PMD.
    /// </summary>
    [Theory]
    [InlineData("6.1", "stale-translation")]
    [InlineData("6.13", null)]
    public void CollapseUnderARunningGuest_IsCleanWithTheNotifiers_TheMutantWithoutThemKeepsAStaleSpteBefore66(string eraName, string? mutantFinds)
    {
        var s = ScenarioLoader.LoadBuiltIn("kvm-shmem-collapse");
        var era = EraTable.Get(eraName);
        var clean = new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(s, era), new MmuSim.Explore.ExploreOptions { Iterations = 1024 }).Run();
        Assert.Null(clean.First);
        var mutant = new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(s, era, [Mutation.CollapseAndFreePmdNoNotify]),
            new MmuSim.Explore.ExploreOptions { Iterations = 1024 }).Run();
        Assert.Equal(mutantFinds, mutant.First?.Violation.Invariant);
        var r = ScenarioRunner.Run(s, era, null);
        Assert.Null(r.Violation);
        Assert.Equal(1, r.Kernel.Stats[Stat.ThpCollapseFile]);
    }
}

/// <summary>
/// 6.6's lockless retract_page_tables frees the table under a vCPU fault that found it before it slept on the new
/// folio's lock; only pte_offset_map_lock's recheck of the PMD under the PTL stops the fault from mapping into the freed
/// table. Without it (mutant pte-offset-map-lock-no-recheck) the explorer finds that store (primary-consistency).
/// </summary>
public class PteOffsetMapLockRecheckTests
{
    [Fact]
    public void LocklessRetractUnderAFault_IsCleanWithTheRecheck_AndTheMutantStoresIntoTheFreedTable()
    {
        var s = ScenarioLoader.LoadBuiltIn("kvm-shmem-collapse");
        var era = EraTable.Get("6.13");
        var opts = new MmuSim.Explore.ExploreOptions { Iterations = 1024 };
        Assert.Null(new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(s, era), opts).Run().First);
        var mutant = new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(s, era, [Mutation.PteOffsetMapLockNoRecheck]), opts).Run();
        Assert.Equal("primary-consistency", mutant.First?.Violation.Invariant);
        Assert.Contains("after it was freed", mutant.First!.Violation.Message);
        // Before 6.6 retraction holds mmap_lock for write: the fault's table cannot go, and the mutant is harmless.
        Assert.Null(new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(s, EraTable.Get("6.1"), [Mutation.PteOffsetMapLockNoRecheck]), opts).Run().First);
    }

    /// <summary>The clean runs do reach the recheck: some schedules count pte_table_retracted (the fault retried), none in 6.1.</summary>
    [Theory]
    [InlineData("6.13", true)]
    [InlineData("6.1", false)]
    public void TheExplorerReachesTheRecheck_OnlyWithLocklessRetraction(string era, bool reached)
    {
        var counting = new CountingExplorable(new MmuSim.Explore.ScenarioExplorable(ScenarioLoader.LoadBuiltIn("kvm-shmem-collapse"), EraTable.Get(era)));
        Assert.Null(new MmuSim.Explore.Explorer(counting, new MmuSim.Explore.ExploreOptions { Iterations = 512 }).Run().First);
        Assert.Equal(reached, counting.Retracted > 0);
    }

    /// <summary>Sums pte_table_retracted over the runs (a run observer that reads the kernel's stats when it detaches).</summary>
    sealed class CountingExplorable(MmuSim.Explore.ScenarioExplorable inner) : MmuSim.Explore.IExplorable, MmuSim.Explore.IRunObserver
    {
        public long Retracted;
        public MmuSim.Explore.ExplorableInfo Info => inner.Info;
        public MmuSim.Explore.RunOutcome RunOnce(MmuSim.Sched.IStrategy strategy, int iteration, MmuSim.Explore.IRunObserver? observer = null) =>
            inner.RunOnce(strategy, iteration, observer ?? this);
        public void Attach(MmuSim.Sched.Scheduler s, Kernel? k) { }
        public void Detach(MmuSim.Sched.Scheduler s, Kernel? k) => Retracted += k?.Stats[Stat.PteTableRetracted] ?? 0;
    }
}

/// <summary>kvm-shmem-reclaim: reclaim of a guest's shmem page-cache page under a running vCPU, per era.</summary>
public class KvmShmemReclaimTests
{
    static MmuSim.Explore.ExploreReport Explore(string era, params Mutation[] m) =>
        new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(ScenarioLoader.LoadBuiltIn("kvm-shmem-reclaim"), EraTable.Get(era), m),
            new MmuSim.Explore.ExploreOptions { Iterations = 1024 }).Run();

    [Theory]
    [InlineData("2.6.32", null)]
    [InlineData("3.6", "stale-translation")]   // invalidate_page after pte_unmap_unlock (race 5(a), page cache)
    [InlineData("4.10", "stale-translation")]
    [InlineData("4.13", null)]
    [InlineData("6.13", null)]
    public void ReclaimOfAGuestShmemPage_PerEra(string era, string? invariant) =>
        Assert.Equal(invariant, Explore(era).First?.Violation.Invariant);

    [Theory]
    [InlineData(Mutation.KvmNoRetryCheck)]
    [InlineData(Mutation.KvmNoZapOnStart)]
    public void Mutants_AreKilled(Mutation m) => Assert.Equal("stale-translation", Explore("6.13", m).First?.Violation.Invariant);

    [Fact]
    public void OneRun_ReclaimsThePage_AndTheGuestReadsItBack()
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn("kvm-shmem-reclaim"), EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        Assert.Equal(1, r.Kernel.Stats[Stat.PagesReclaimed]);
    }
}
