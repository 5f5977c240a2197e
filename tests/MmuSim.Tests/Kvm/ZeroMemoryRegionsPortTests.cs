using MmuSim.Eras;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// set_memory_region_test.c's test_zero_memory_regions and the op it needs, guest.fetch: an instruction fetch from a
/// gfn without memslot is KVM_EXIT_INTERNAL_ERROR on x86, where a load from it is KVM_EXIT_MMIO.
/// </summary>
public class ZeroMemoryRegionsPortTests
{
    [Fact]
    public void Port_MeetsItsDeclarationInEveryEra() =>
        Assert.Equal(EraTable.All.Count, SelftestPorts.AssertMeetsDeclaration("selftests/kvm/set_memory_region_test/zero_memory_regions"));

    static RunResult Run(string ops, string arch = "x86-tdp") => ScenarioRunner.Run(ScenarioLoader.Parse($$"""
        name: t
        processes:
          - name: vmm
            vmas:
              - { start: 0x10000, len: 4K, prot: rw, contents: [0x77] }
        setup:
          - vm.create: { process: vmm, name: vm0, arch: {{arch}} }
          - memslot.add: { vm: vm0, slot: 0, gfn: 0x100, pages: 1, hva: 0x10000 }
        threads:
          - name: t
            ops:
        {{ops}}
        """, "t.yaml"), EraTable.Get("6.18"), null);

    [Theory]
    [InlineData("      - guest.fetch: { vm: vm0, gfn: 0x200, error: internal-error }", null)]
    [InlineData("      - guest.read: { vm: vm0, gfn: 0x200, error: mmio }", null)]                        // a load from it is MMIO
    [InlineData("      - guest.fetch: { vm: vm0, gfn: 0x200, error: mmio }", "unexpected-value")]          // a fetch never is
    [InlineData("      - guest.fetch: { vm: vm0, gfn: 0x100 }\n      - vm.expect-sptes: { vm: vm0, count: 1 }", null)] // a slot's page maps
    [InlineData("      - guest.fetch: { vm: vm0, gfn: 0x100, error: internal-error }", "unexpected-value")]
    public void Fetch_FromNoMemslot_IsAnInternalError_NotMmio(string ops, string? invariant) =>
        Assert.Equal(invariant, Run(ops).Violation?.Invariant);

    [Fact]
    public void Fetch_TwiceFromACachedMmioGfn_IsAnInternalErrorBothTimes()
    {
        var r = Run("      - guest.fetch: { vm: vm0, gfn: 0x200, error: internal-error }\n      - guest.fetch: { vm: vm0, gfn: 0x200, error: internal-error }\n" +
                    "      - vm.expect-stats: { vm: vm0, exits: 2, pf_taken: 1, pf_mmio_spte_created: 1, mmio_exits: 0 }");
        Assert.Null(r.Violation);
    }

    [Fact]
    public void Fetch_OnArm64_IsBadInput() =>
        CliRunner.AssertBadInput("""
            name: t
            processes:
              - name: vmm
            setup:
              - vm.create: { process: vmm, name: vm0, arch: arm64 }
            threads:
              - name: t
                ops:
                  - guest.fetch: { vm: vm0, gfn: 0x200 }
            """, 9, "guest.fetch.vm", "x86");
}
