using MmuSim.Eras;
using MmuSim.Kvm;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// mmu_stress_test.c's port (selftests/kvm/mmu_stress_test/): one memfd aliased by four memslots, vCPU passes around
/// mprotect(PROT_READ) and back, slot deletion and munmap under a live VM, cleanup by ->release. Every era meets its
/// declaration, the EFAULT stage really needs the PROTECTION_VMA zap, and nothing is left mapped at the end.
/// </summary>
public class MmuStressTestPortTests
{
    public static TheoryData<string> Ports() => SelftestPorts.Under("selftests/kvm/mmu_stress_test/");

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MeetsItsDeclarationInEveryEra(string name)
    {
        int run = SelftestPorts.AssertMeetsDeclaration(name, check: r =>
        {
            var vm = Assert.IsType<MmuSim.Kvm.Kvm>(r.World.Objects["vm0"]);
            Assert.Equal(0, vm.PresentSptes); // ->release zapped everything the deleted slots and munmap left
        });
        Assert.True(run >= 10);
    }

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_FailsWhenInvalidateRangeStartDoesNotZap(string name)
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn(name), EraTable.Get("6.18"), null,
            new RunOptions { Mutations = [Mutation.KvmNoZapOnStart] });
        Assert.Equal("stale-translation", r.Violation?.Invariant);
    }
}
