using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Kvm;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// guest_memfd and private memory (issue 9 item 6): which paths a guest_memfd-backed slot is and is not exposed to.
/// A private gfn maps the guest_memfd's page, never the hva's; the hva's mmu notifier zaps the private SPTE but never
/// reaches the page; the file's own invalidation (punch hole, close) zaps and frees with the seq/in-progress protocol.
/// </summary>
public class GuestMemfdTests
{
    static RunResult Run(string ops, string era = "6.13", string type = "sw-protected", string slot = "gmem: gmem0") =>
        ScenarioRunner.Run(ScenarioLoader.Parse($$"""
        name: t
        processes:
          - name: qemu
            vmas:
              - { start: 0x10000, len: 16K, prot: rw, contents: [0x11, 0x22, 0x33, 0x44] }
        setup:
          - vm.create: { process: qemu, name: vm0, type: {{type}} }
        threads:
          - name: t
            ops:
              - gmem.create: { vm: vm0, name: gmem0, size: 16K }
              - memslot.add: { vm: vm0, slot: 0, gfn: 0x100, pages: 4, hva: 0x10000, {{slot}} }
        {{ops}}
        """, "t.yaml"), EraTable.Get(era), null);

    const string Private2 = "      - vm.set-memory-attributes: { vm: vm0, gpa: 0x100000, size: 8K, private: true }\n";

    static (MmuSim.Kvm.Kvm Vm, GuestMemfd Gmem) Objects(RunResult r) => ((MmuSim.Kvm.Kvm)r.World.Objects["vm0"], (GuestMemfd)r.World.Objects["gmem0"]);

    [Fact]
    public void PrivateGfn_MapsTheGuestMemfdPage_SharedGfn_TheHvasPage()
    {
        var r = Run(Private2 + """
                  - guest.read: { vm: vm0, gfn: 0x100, expect: 0 }
                  - guest.write: { vm: vm0, gfn: 0x100, value: 0x77 }
                  - guest.read: { vm: vm0, gfn: 0x102, expect: 0x33 }
                  - read: { process: qemu, addr: 0x10000 }
            """);
        Assert.Null(r.Violation);
        var (vm, g) = Objects(r);
        var slot = vm.FindSlot(0)!;
        var priv = new Spte(slot.Sptes[0]);
        Assert.True(priv.Present && priv.Private && priv.Writable);
        Assert.Equal(g.PfnAt(0), priv.Pfn);
        Assert.Equal(0x77UL, r.Kernel.Mem[priv.Pfn].Contents);
        var shared = new Spte(slot.Sptes[2]);
        Assert.True(shared.Present && !shared.Private);
        Assert.Equal(r.World.Processes["qemu"].PeekPte(0x12000).Pfn, shared.Pfn);
        Assert.Single(g.File.Pages);                               // only the private page the guest touched
        var hvaPage = r.World.Processes["qemu"].PeekPte(0x10000);
        Assert.NotEqual(priv.Pfn, hvaPage.Pfn);
        Assert.Equal(0x11UL, r.Kernel.Mem[hvaPage.Pfn].Contents);  // the guest's private write never reached the hva
    }

    [Fact]
    public void HvaInvalidation_ZapsThePrivateSpte_ButNeverReachesTheGuestMemfdPage()
    {
        var r = Run(Private2 + """
                  - guest.write: { vm: vm0, gfn: 0x100, value: 0x77 }
                  - madvise: { process: qemu, addr: 0x10000, len: 16K, advice: dontneed }
                  - vm.expect-sptes: { vm: vm0, count: 0 }
                  - guest.read: { vm: vm0, gfn: 0x100, expect: 0x77 }
                  - guest.read: { vm: vm0, gfn: 0x102, expect: 0 }
            """);
        Assert.Null(r.Violation);
        var (_, g) = Objects(r);
        long pfn = g.PfnAt(0);
        Assert.True(pfn >= 0);
        Assert.Equal(1, r.Kernel.Mem[pfn].RefCount);              // the page cache's reference only
    }

    [Fact]
    public void PunchHole_ZapsAndFreesThePage_TheGuestThenReadsZero()
    {
        var r = Run(Private2 + """
                  - guest.write: { vm: vm0, gfn: 0x101, value: 0x77 }
                  - gmem.punch-hole: { gmem: gmem0, offset: 4K, len: 4K }
                  - vm.expect-sptes: { vm: vm0, count: 0 }
                  - guest.read: { vm: vm0, gfn: 0x101, expect: 0 }
            """);
        Assert.Null(r.Violation);
        var (vm, _) = Objects(r);
        Assert.Equal(2UL, vm.InvalidateSeq);                       // punch hole's begin/end + the attribute change's
        Assert.Equal(0, vm.InvalidateInProgress);
    }

    [Fact]
    public void SettingAttributesBack_ZapsThePrivateSpte_AndTheGuestSeesTheHvaAgain()
    {
        var r = Run(Private2 + """
                  - guest.write: { vm: vm0, gfn: 0x100, value: 0x77 }
                  - vm.set-memory-attributes: { vm: vm0, gpa: 0x100000, size: 8K, private: false }
                  - vm.expect-sptes: { vm: vm0, count: 0 }
                  - guest.read: { vm: vm0, gfn: 0x100, expect: 0x11 }
            """);
        Assert.Null(r.Violation);
    }

    [Fact]
    public void Close_InvalidatesTheBindings_ThenPrivateFaultsAreEfault()
    {
        var r = Run(Private2 + """
                  - guest.write: { vm: vm0, gfn: 0x100, value: 0x77 }
                  - gmem.close: { gmem: gmem0 }
                  - vm.expect-sptes: { vm: vm0, count: 0 }
                  - guest.read: { vm: vm0, gfn: 0x100, error: efault }
                  - guest.read: { vm: vm0, gfn: 0x102, expect: 0x33 }
            """);
        Assert.Null(r.Violation);
        Assert.Empty(Objects(r).Gmem.File.Pages);
    }

    [Fact]
    public void PrivateGfn_InASlotWithoutGuestMemfd_IsAMemoryFaultExit()
    {
        var r = Run(Private2 + "      - guest.read: { vm: vm0, gfn: 0x100, error: efault }\n", slot: "flags: \"\"");
        Assert.Null(r.Violation);
    }

    [Theory]
    [InlineData("6.6", "sw-protected", "      - gmem.create: { vm: vm0, name: g1, size: 4K, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - gmem.create: { vm: vm0, name: g1, size: 0, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - gmem.create: { vm: vm0, name: g1, size: 0x1800, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - gmem.create: { vm: vm0, name: g1, size: 4K, flags: 1, expect: einval }")]
    [InlineData("6.13", "default", "      - vm.set-memory-attributes: { vm: vm0, gpa: 0x100000, size: 4K, private: true, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - vm.set-memory-attributes: { vm: vm0, gpa: 0x100800, size: 4K, private: true, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - vm.set-memory-attributes: { vm: vm0, gpa: 0x100000, size: 0, private: true, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - memslot.add: { vm: vm0, slot: 1, gfn: 0x200, pages: 4, hva: 0x10000, gmem: gmem0, expect: eexist }")] // pages 0-3 are bound
    [InlineData("6.13", "sw-protected", "      - memslot.add: { vm: vm0, slot: 1, gfn: 0x200, pages: 1, hva: 0x10000, gmem: gmem0, gmem_offset: 16K, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - memslot.add: { vm: vm0, slot: 1, gfn: 0x200, pages: 1, hva: 0x10000, gmem: gmem0, gmem_offset: 0x800, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - memslot.move: { vm: vm0, slot: 0, gfn: 0x300, expect: einval }")]
    [InlineData("6.13", "sw-protected", "      - gmem.punch-hole: { gmem: gmem0, offset: 0x800, len: 4K, expect: einval }")]
    public void Ioctls_ReturnTheKernelsErrnos(string era, string type, string op)
    {
        var r = era == "6.6"
            ? ScenarioRunner.Run(ScenarioLoader.Parse($$"""
                name: t
                processes:
                  - { name: qemu, vmas: [ { start: 0x10000, len: 16K, prot: rw } ] }
                threads:
                  - name: t
                    ops:
                      - vm.create: { process: qemu, name: vm0 }
                {{op}}
                """, "t.yaml"), EraTable.Get(era), null)
            : Run(op, era, type, slot: type == "default" ? "flags: \"\"" : "gmem: gmem0");
        Assert.Null(r.Violation);
    }

    [Fact]
    public void GuestMemfdSlot_OnADefaultVm_OrWithDirtyLogging_IsEinval()
    {
        Assert.Equal("unexpected-value", Run("", type: "default").Violation?.Invariant);     // the memslot.add of the head fails
        Assert.Null(Run("", type: "default", slot: "gmem: gmem0, expect: einval").Violation);
        Assert.Null(Run("", slot: "gmem: gmem0, flags: log-dirty, expect: einval").Violation);
    }

    [Fact]
    public void DeletingTheSlot_UnbindsIt_SoTheRangeCanBeBoundAgain()
    {
        var r = Run(Private2 + """
                  - guest.write: { vm: vm0, gfn: 0x100, value: 0x77 }
                  - memslot.delete: { vm: vm0, slot: 0 }
                  - memslot.add: { vm: vm0, slot: 1, gfn: 0x200, pages: 4, hva: 0x10000, gmem: gmem0 }
                  - vm.set-memory-attributes: { vm: vm0, gpa: 0x200000, size: 4K, private: true }
                  - guest.read: { vm: vm0, gfn: 0x200, expect: 0x77 }
            """);
        Assert.Null(r.Violation);
        Assert.Single(Objects(r).Gmem.Bindings);
    }

    const string Race = "kvm-gmem-punch-hole-vs-fault";

    [Fact]
    public void FaultRacingPunchHole_RetriesInEverySchedule()
    {
        var r = new Explorer(new ScenarioExplorable(ScenarioLoader.LoadBuiltIn(Race), EraTable.Get("6.13"), []),
            new ExploreOptions { Iterations = 2000 }).Run();
        Assert.Null(r.First);
    }

    [Fact]
    public void FaultRacingPunchHole_WithoutTheRetryCheck_MapsTheTruncatedPage()
    {
        var r = new Explorer(new ScenarioExplorable(ScenarioLoader.LoadBuiltIn(Race), EraTable.Get("6.13"), [Mutation.KvmNoRetryCheck]),
            new ExploreOptions { Iterations = 2000 }).Run();
        Assert.Equal("freed-page-reachable", r.First?.Violation.Invariant);
    }

    [Fact]
    public void RaceScenario_PassesFrom68_AndIsNotApplicableBefore()
    {
        Assert.Equal(2, SelftestPorts.AssertMeetsDeclaration(Race, ["6.8", "6.18"]));
        Assert.Equal(ExpectKind.NotApplicable, ScenarioLoader.LoadBuiltIn(Race).ExpectedIn(EraTable.Get("6.6")).Kind);
    }

    const string BadHead = """
        name: gmem-bad
        processes:
          - name: qemu
            vmas:
              - { start: 0x10000, len: 16K, prot: rw }
        threads:
          - name: vmm
            ops:
        """;

    [Theory]
    [InlineData("      - vm.create: { process: qemu, name: vm0, type: tdx }", "vm.create.type", "unknown VM type 'tdx'")]
    [InlineData("      - vm.create: { process: qemu, name: vm0, type: sw-protected, arch: x86-shadow }", "vm.create.type", "needs arch x86-tdp")]
    [InlineData("      - memslot.add: { vm: vm0, gfn: 0x100, pages: 1, hva: 0x10000, gmem_offset: 0 }", "memslot.add.gmem_offset", "gmem_offset without gmem")]
    [InlineData("      - gmem.create: { vm: vm0, name: g, size: big }", "gmem.create.size", "")]
    public void BadFields_ExitTwo(string op, string field, string message) =>
        CliRunner.AssertBadInput(BadHead + "\n" + op + "\n", 9, field, message);
}
