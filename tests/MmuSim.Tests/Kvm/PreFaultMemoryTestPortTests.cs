using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// pre_fault_memory_test.c's port (selftests/kvm/pre_fault_memory_test/default) and KVM_PRE_FAULT_MEMORY's ABI:
/// the port meets its declaration in every era (a hang before 6.18, n/a before 6.10); the ioctl's errors and stats.
/// </summary>
public class PreFaultMemoryTestPortTests
{
    const string Port = "selftests/kvm/pre_fault_memory_test/default";

    [Fact]
    public void Port_PassesFrom618() => Assert.Equal(1, SelftestPorts.AssertMeetsDeclaration(Port, ["6.18"]));

    // The hang needs the deletion to land inside the prefault: the explorer finds it, a plain run need not.
    [Theory]
    [InlineData("6.10", "liveness")]
    [InlineData("6.17", "liveness")]
    [InlineData("6.18", null)]
    public void Port_HangsBefore618_InSomeSchedule(string era, string? invariant)
    {
        var r = new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(ScenarioLoader.LoadBuiltIn(Port), EraTable.Get(era), []),
            new MmuSim.Explore.ExploreOptions { Iterations = 300 }).Run();
        Assert.Equal(invariant, r.First?.Violation.Invariant);
    }

    static RunResult Run(string ops, string era = "6.18", string arch = "x86-tdp") => ScenarioRunner.Run(ScenarioLoader.Parse($$"""
        name: t
        processes:
          - name: vmm
            vmas:
              - { start: 0x10000, len: 16K, prot: rw }
        setup:
          - vm.create: { process: vmm, name: vm0, arch: {{arch}} }
          - memslot.add: { vm: vm0, slot: 0, gfn: 0x100, pages: 4, hva: 0x10000 }
        threads:
          - name: t
            ops:
        {{ops}}
        """, "t.yaml"), EraTable.Get(era), null);

    [Theory]
    [InlineData("      - vcpu.pre-fault: { vm: vm0, gpa: 0x100000, size: 16K, remaining: 0 }")]
    [InlineData("      - vcpu.pre-fault: { vm: vm0, gpa: 0x102000, size: 16K, remaining: 0x2000 }")] // 2 pages mapped, then no slot: ok
    [InlineData("      - vcpu.pre-fault: { vm: vm0, gpa: 0x104000, size: 4K, expect: enoent, remaining: 0x1000 }")]
    [InlineData("      - vcpu.pre-fault: { vm: vm0, gpa: 0x100000, size: 4K, flags: 1, expect: einval }")]
    [InlineData("      - vcpu.pre-fault: { vm: vm0, gpa: 0x100800, size: 4K, expect: einval }")]
    [InlineData("      - vcpu.pre-fault: { vm: vm0, gpa: 0xfffffffffffff000, size: 8K, expect: einval }")]
    public void PreFault_ReturnsWhatKvmVcpuPreFaultMemoryReturns(string op) => Assert.Null(Run(op).Violation);

    [Fact]
    public void PreFault_IsEopnotsuppOnTheShadowMmu_AndEinvalBefore610() {
        Assert.Null(Run("      - vcpu.pre-fault: { vm: vm0, gpa: 0x100000, size: 4K, expect: eopnotsupp }", arch: "x86-shadow").Violation);
        Assert.Null(Run("      - vcpu.pre-fault: { vm: vm0, gpa: 0x100000, size: 4K, expect: einval }", era: "6.8").Violation);
        Assert.Equal("unexpected-value", Run("      - vcpu.pre-fault: { vm: vm0, gpa: 0x100000, size: 4K }", era: "6.8").Violation?.Invariant);
    }

    [Fact]
    public void PreFault_MapsSptes_CountsPfFixedButNotPfTaken()
    {
        var r = Run("      - vcpu.pre-fault: { vm: vm0, gpa: 0x100000, size: 16K }\n      - vm.expect-sptes: { vm: vm0, count: 4 }\n      - vm.expect-stats: { vm: vm0, pf_taken: 0, pf_fixed: 4 }");
        Assert.Null(r.Violation);
    }

    const string PrivatePort = "selftests/kvm/pre_fault_memory_test/private";

    /// <summary>
    /// test_pre_fault_memory(KVM_X86_SW_PROTECTED_VM, true): the same hang before 6.18 in a plain run, and in 6.18 every
    /// SPTE is private and maps the last guest_memfd's page, while the process's own page tables never fault.
    /// </summary>
    [Fact]
    public void PrivatePort_HangsBefore618_AndFrom618MapsOnlyGuestMemfdPages()
    {
        Assert.Equal(EraTable.All.Count(e => e.AtLeast(6, 10)), SelftestPorts.AssertMeetsDeclaration(PrivatePort));
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn(PrivatePort), EraTable.Get("6.18"), null);
        Assert.Null(r.Violation);
        var vm = (MmuSim.Kvm.Kvm)r.World.Objects["vm0"];
        var gmem = (MmuSim.Kvm.GuestMemfd)r.World.Objects["gmem3"];
        Assert.Same(gmem, vm.FindSlot(10)!.Gmem);
        for (ulong i = 0; i < 513; i++)
        {
            var spte = vm.PeekSpte(0x40000 + i);
            Assert.True(spte.Present && spte.Private, $"gfn 0x{0x40000 + i:x}");
            Assert.Equal(gmem.PfnAt(i), (long)spte.Pfn);
        }
        Assert.Equal(0, r.World.Processes["vmm"].RssAnon + r.World.Processes["vmm"].RssFile);
        Assert.Equal(0, r.Kernel.Stats[Stat.Faults]);
    }

    /// <summary>test_pre_fault_memory(KVM_X86_SW_PROTECTED_VM, false): shared memory of a sw-protected VM takes the host's pages.</summary>
    [Fact]
    public void SwProtectedSharedPort_HangsBefore618_AndFrom618MapsTheHostsPages()
    {
        const string name = "selftests/kvm/pre_fault_memory_test/sw-protected-shared";
        Assert.Equal(EraTable.All.Count(e => e.AtLeast(6, 10)), SelftestPorts.AssertMeetsDeclaration(name));
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn(name), EraTable.Get("6.18"), null);
        var vm = (MmuSim.Kvm.Kvm)r.World.Objects["vm0"];
        for (ulong i = 0; i < 513; i++) Assert.False(vm.PeekSpte(0x40000 + i).Private);
        Assert.Equal(513, r.Kernel.Stats[Stat.Faults]);
    }
}
