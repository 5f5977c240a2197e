using MmuSim.Ksm;
using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Sched;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Ksm;

/// <summary>KSM merging guest memory of two VMs: what the SPTEs, the guests and the exit counters see per era.</summary>
public class KsmKvmTests
{
    const ulong Hva = 0x10000, Gfn0 = 0x100, Pages = 4, P = MmStruct.PageSize;

    sealed class TwoVms
    {
        public required Kernel K;
        public required MmStruct MmA, MmB;
        public required MmuSim.Kvm.Kvm VmA, VmB;

        public void Do(Func<ValueTask> body) => Assert.Null(Run(K, async _ => await body(), "t"));

        public long Exits => K.Stats[MmuSim.Stat.VmExits];

        /// <summary>Guest reads of every page of both VMs; returns the exits they cost.</summary>
        public long ReadAll(ulong expectBase = 0x100)
        {
            long before = Exits;
            Do(async () =>
            {
                foreach (var vm in new[] { VmA, VmB })
                    for (ulong i = 0; i < Pages; i++)
                    {
                        var r = await vm.Vcpu(0).GuestRead(Gfn0 + i);
                        Assert.True(r.Ok);
                        Assert.Equal(expectBase + i, r.Value);
                    }
            });
            return Exits - before;
        }
    }

    /// <summary>Two processes, each a VM whose 4 guest pages hold 0x100+i: duplicates across the VMs.</summary>
    static TwoVms Setup(string era, KvmArch arch = KvmArch.X86Tdp)
    {
        var k = Kernel(era);
        var a = MmWithVma(k, Hva, Pages * P);
        var b = MmWithVma(k, Hva, Pages * P);
        MmuSim.Kvm.Kvm? va = null, vb = null;
        Assert.Null(Run(k, async _ =>
        {
            foreach (var mm in new[] { a, b })
            {
                for (ulong i = 0; i < Pages; i++) await Memory.UserAccess(mm, Hva + i * P, write: true, value: 0x100 + i);
                Assert.Equal(0, await Ksmd.Of(k).KsmMadvise(mm, Hva, Pages * P, mergeable: true));
            }
            va = await MmuSim.Kvm.Kvm.CreateVm(a, "vmA", arch);
            vb = await MmuSim.Kvm.Kvm.CreateVm(b, "vmB", arch);
            Assert.Equal(0, await va.SetMemoryRegion(0, Gfn0, Pages, Hva, MemslotFlags.None));
            Assert.Equal(0, await vb.SetMemoryRegion(0, Gfn0, Pages, Hva, MemslotFlags.None));
        }, "vmm"));
        return new TwoVms { K = k, MmA = a, MmB = b, VmA = va!, VmB = vb! };
    }

    static void Merge(TwoVms t)
    {
        t.Do(async () => await Ksmd.Of(t.K).ScanFull(2));
        var ksm = Ksmd.Of(t.K);
        Assert.Equal(4, ksm.PagesShared);
        Assert.Equal(4, ksm.PagesSharing);
    }

    /// <summary>No SPTE maps a KSM page writable; a present SPTE maps what the primary PTE maps.</summary>
    static void AssertNoWritableSpteToKsm(TwoVms t)
    {
        foreach (var (vm, mm) in new[] { (t.VmA, t.MmA), (t.VmB, t.MmB) })
            for (ulong i = 0; i < Pages; i++)
            {
                var s = vm.PeekSpte(Gfn0 + i);
                if (!s.Present) continue;
                var pte = mm.PeekPte(Hva + i * P);
                Assert.Equal(pte.Pfn, s.Pfn);
                if (t.K.Mem[s.Pfn].Has(PageFlags.Ksm)) Assert.False(s.Writable, $"{vm.Name} gfn {Gfn0 + i:x}: writable SPTE to a KSM page");
            }
    }

    [Theory]
    [InlineData("2.6.32", 0)] // change_pte rewrites the present SPTEs to the KSM page in place: no exit
    [InlineData("4.19", 8)]   // start zaps the SPTEs; change_pte inside start/end finds nothing: one exit per page
    [InlineData("6.13", 8)]   // no change_pte at all: one exit per page
    public void MergedGuestMemory_ReadExitsPerEra_NoWritableSpteToKsmPage(string era, long expectedExits)
    {
        var t = Setup(era);
        Assert.Equal(8, t.ReadAll()); // first touch of every page faults in
        Merge(t);
        AssertNoWritableSpteToKsm(t);
        long kpfn0 = t.MmA.PeekPte(Hva).Pfn;
        Assert.Equal(kpfn0, t.MmB.PeekPte(Hva).Pfn);
        Assert.True(t.K.Mem[kpfn0].Has(PageFlags.Ksm));

        Assert.Equal(expectedExits, t.ReadAll());
        AssertNoWritableSpteToKsm(t);
        Assert.Equal(kpfn0, t.VmA.PeekSpte(Gfn0).Pfn);
        Assert.Equal(kpfn0, t.VmB.PeekSpte(Gfn0).Pfn);
        Assert.Null(t.K.Checker.CheckPrimaryConsistency());
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void GuestWriteToMergedPage_RefaultsBreaksCow_LandsPrivately_OtherVmReadsOld(string era)
    {
        var t = Setup(era);
        t.ReadAll();
        Merge(t);
        long kpfn = t.MmA.PeekPte(Hva + P).Pfn;
        long before = t.Exits;
        t.Do(async () =>
        {
            var w = await t.VmA.Vcpu(0).GuestWrite(Gfn0 + 1, 0xBEEF);
            Assert.True(w.Ok);
        });
        Assert.True(t.Exits - before >= 1, "the write to a read-only KSM mapping must exit");
        var pte = t.MmA.PeekPte(Hva + P);
        Assert.NotEqual(kpfn, pte.Pfn);
        Assert.True(pte.Writable);
        Assert.False(t.K.Mem[pte.Pfn].Has(PageFlags.Ksm));
        Assert.Equal(0xBEEFUL, t.K.Mem[pte.Pfn].Contents);
        var s = t.VmA.PeekSpte(Gfn0 + 1);
        Assert.True(s.Present && s.Writable);
        Assert.Equal(pte.Pfn, s.Pfn);
        Assert.Equal(1, t.K.Mem[kpfn].MapCount); // only vmB's process maps the KSM page now

        t.Do(async () =>
        {
            Assert.Equal(0xBEEFUL, (await t.VmA.Vcpu(0).GuestRead(Gfn0 + 1)).Value);
            Assert.Equal(0x101UL, (await t.VmB.Vcpu(0).GuestRead(Gfn0 + 1)).Value);
            Assert.Equal(0x101UL, await Memory.UserAccess(t.MmB, Hva + P, write: false));
        });
        AssertNoWritableSpteToKsm(t);
        Assert.Null(t.K.Checker.CheckPrimaryConsistency());
    }

    [Fact]
    public void VcpuFaultHoldingAGupReference_AbortsTheMerge_RetriedLater()
    {
        var t = Setup("6.13");
        long pfn = t.MmA.PeekPte(Hva).Pfn;
        Folio.Get(t.K, pfn); // a fault between hva_to_pfn and kvm_release_pfn holds this
        t.Do(async () => await Ksmd.Of(t.K).ScanFull(2));
        Assert.Equal(pfn, t.MmA.PeekPte(Hva).Pfn);
        Assert.False(t.K.Mem[pfn].Has(PageFlags.Ksm));
        Assert.Equal(3, Ksmd.Of(t.K).PagesShared); // vmB's copy of page 0 waits in the unstable tree
        Assert.Equal(3, Ksmd.Of(t.K).PagesSharing);
        Assert.True(t.K.Stats[MmuSim.Stat.KsmMergeFailures] > 0);
        Folio.Put(t.K, pfn);
        t.Do(async () => await Ksmd.Of(t.K).ScanFull(1));
        Assert.Equal(4, Ksmd.Of(t.K).PagesShared);
        Assert.Equal(4, Ksmd.Of(t.K).PagesSharing);
        Assert.Equal(t.MmA.PeekPte(Hva).Pfn, t.MmB.PeekPte(Hva).Pfn);
    }
}

public class KsmKvmExplorationTests
{
    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void VmWriteRace_IsCleanUnderExploration(string era)
    {
        var s = MmuSim.Scenarios.ScenarioLoader.LoadBuiltIn("ksm-vm-write-race");
        var r = MmuSim.Scenarios.ScenarioRunner.Explore(s, MmuSim.Eras.EraTable.Get(era),
            MmuSim.Scenarios.ScenarioRunner.RandomStrategyFactory, 100, 1);
        Assert.Null(r.FirstViolation?.Violation);
    }

    [Fact]
    public void VmWriteRace_NoNotifierBracketIn6_13_LeavesAWritableSpteToTheOldPage()
    {
        var s = MmuSim.Scenarios.ScenarioLoader.LoadBuiltIn("ksm-vm-write-race");
        var r = MmuSim.Scenarios.ScenarioRunner.Explore(s, MmuSim.Eras.EraTable.Get("6.13"),
            MmuSim.Scenarios.ScenarioRunner.RandomStrategyFactory, 2000, 1, [Mutation.KsmNoNotifierBracket]);
        Assert.NotNull(r.FirstViolation);
        Assert.Contains(r.FirstViolation!.Violation!.Invariant,
            new[] { Invariants.WritableWithoutPrimary, Invariants.StaleTranslation, Invariants.FreedPageReachable, Invariants.LostWrite });
    }

    /// <summary>
    /// Regression: vcpu0 and vcpu1 (two VMM threads) both run vmB's vCPU 0. Before vcpu->mutex was modelled the two
    /// KVM_RUNs interleaved on one vCPU and one overwrote the other's retry snapshot, so a retry on a moved seq looked
    /// like a spin on unchanged inputs: a false liveness violation at portfolio schedule 263 of this scenario in 6.13.
    /// </summary>
    [Fact]
    public void VmWriteRace_IsCleanUnderThePortfolioExplorer()
    {
        var s = MmuSim.Scenarios.ScenarioLoader.LoadBuiltIn("ksm-vm-write-race");
        var r = new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(s, MmuSim.Eras.EraTable.Get("6.13")),
            new MmuSim.Explore.ExploreOptions { Iterations = 600 }).Run();
        Assert.Null(r.First);
    }
}
