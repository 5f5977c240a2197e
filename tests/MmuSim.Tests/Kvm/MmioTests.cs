using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Tests.Cli;
using KvmVm = MmuSim.Kvm.Kvm;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// KVM_EXIT_MMIO (issue 9 item 1): a gfn without memslot, or a write to a read-only memslot, is emulated and exits to
/// the VMM; x86 caches MMIO gfns in MMIO SPTEs (mmio_caching) tagged with the memslots generation.
/// </summary>
public class MmioTests
{
    const ulong Mmio = 0x900;

    static (long Taken, long Emulate, long Created, long Exits, long MmioExits) Stats(KvmKit t) =>
        (t.Stat(Stat.KvmPfTaken), t.Stat(Stat.KvmPfEmulate), t.Stat(Stat.KvmPfMmioSpteCreated), t.Stat(Stat.VmExits), t.Stat(Stat.KvmMmioExits));

    [Theory]
    [InlineData("6.18")]
    [InlineData("6.1")]
    [InlineData("4.19")]
    public void X86_FirstMmioAccessCreatesAnMmioSpte_LaterOnesSkipThePageFault(string era)
    {
        var t = new KvmKit(era);
        t.Vm.Vmm.MmioReadValue = 0xbeef;
        t.MustDo(async () =>
        {
            var r = await t.Vm.Vcpu(0).GuestRead(Mmio);
            Assert.True(r.Ok && r.Mmio);
            Assert.Equal(0xbeefUL, r.Value);
        });
        Assert.Equal((1L, 1L, 1L, 1L, 1L), Stats(t));
        Assert.Equal(1, t.Vm.MmioSptes);
        Assert.Equal(0, t.Vm.PresentSptes); // an MMIO SPTE translates no host page
        t.MustDo(async () => Assert.Equal(0xbeefUL, await t.GuestRead(Mmio)));
        // handle_mmio_page_fault: an exit and an MMIO exit, but no kvm_mmu_do_page_fault (pf_taken, pf_emulate)
        Assert.Equal((1L, 1L, 1L, 2L, 2L), Stats(t));
        t.MustDo(async () =>
        {
            var w = await t.Vm.Vcpu(0).GuestWrite(Mmio, 7);
            Assert.True(w.Ok && w.Mmio);
        });
        Assert.Equal((Mmio, 7UL), t.Vm.Vmm.LastMmioWrite);
        Assert.Equal(3, t.Vm.Vmm.MmioExits);
    }

    [Fact]
    public void X86_AMemslotCreatedOverAnMmioGfn_StalesItsSpte_TheNextAccessFaultsItIn()
    {
        var t = new KvmKit("6.18", pages: 8, prot: Prot.ReadWrite);
        t.Vm.Vmm.MmioReadValue = 0xbeef;
        t.MustDo(async () => Assert.Equal(0xbeefUL, await t.GuestRead(Mmio)));
        t.MustDo(async () =>
        {
            await Mmap.DoMmap(t.Mm, 0x80000, 0x1000, Prot.ReadWrite, VmFlags.None);
            Assert.Equal(0, await t.Vm.SetUserMemoryRegion(1, 0, Mmio << 12, 0x1000, 0x80000));
            Assert.Equal(0, t.Vm.MmioSptes); // generation moved
            Assert.Equal(0UL, await t.GuestRead(Mmio));
        });
        Assert.Equal(2, t.Stat(Stat.KvmPfTaken));
        Assert.Equal(1, t.Stat(Stat.KvmPfFixed));
        Assert.Equal(1, t.Stat(Stat.KvmMmioExits));
        Assert.True(t.Vm.PeekSpte(Mmio).Present);
    }

    [Fact]
    public void X86_WithoutMmioCaching_EveryMmioAccessIsAPageFault()
    {
        var t = new KvmKit("6.18");
        t.Vm.MmioCaching = false;
        t.Vm.Vmm.MmioReadValue = 1;
        t.MustDo(async () => { await t.GuestRead(Mmio); await t.GuestRead(Mmio); });
        Assert.Equal((2L, 2L, 0L, 2L, 2L), Stats(t));
        Assert.Equal(0, t.Vm.MmioSptes);
    }

    [Fact]
    public void Arm64_ExitsToTheVmm_WithoutX86Stats()
    {
        var t = new KvmKit("6.18", arch: KvmArch.Arm64);
        t.MustDo(async () =>
        {
            var r = await t.Vm.Vcpu(0).GuestRead(Mmio);
            Assert.False(r.Ok);
            Assert.Equal(KvmFaultResult.Mmio, r.Error);
        });
        Assert.Equal((0L, 0L, 0L, 1L, 1L), Stats(t));
        Assert.Equal(0, t.Vm.MmioSptes);
    }

    [Theory]
    [InlineData("6.18", KvmArch.X86Tdp)]
    [InlineData("5.13", KvmArch.X86Shadow)]
    [InlineData("4.19", KvmArch.Arm64)]
    public void ReadOnlyMemslot_ReadsMap_WritesExitAsMmio_AndChangeNoPage(string era, KvmArch arch)
    {
        var t = new KvmKit(era, arch: arch, flags: MemslotFlags.ReadOnly);
        var rec = Harness.Recorder(t.K, t.Mm);
        t.MustDo(async () =>
        {
            Assert.Equal(0UL, await t.GuestRead(KvmKit.Gfn0));
            var w = await t.Vm.Vcpu(0).GuestWrite(KvmKit.Gfn0, 9);
            Assert.Equal(KvmFaultResult.Mmio, w.Error);
            Assert.Equal(0UL, await t.GuestRead(KvmKit.Gfn0));
        });
        Assert.False(t.Vm.PeekSpte(KvmKit.Gfn0).Writable);
        Assert.True(t.Vm.PeekSpte(KvmKit.Gfn0).Present);
        Assert.Empty(rec.Calls); // no notifier: the primary never changed
        Assert.Equal(1, t.Stat(Stat.KvmMmioExits));
        Assert.Equal(0, t.Stat(Stat.KvmEfaults));
    }

    const string Scenario = """
        name: mmio
        processes:
          - name: qemu
            vmas:
              - { start: 0x10000, len: 16K, prot: rw }
        threads:
          - name: vmm
            process: qemu
            ops:
              - vm.create: { process: qemu, name: vm0 }
              - memslot.add: { vm: vm0, gfn: 0x100, pages: 4, hva: 0x10000 }
        """;

    [Fact]
    public void Scenario_UnansweredMmio_IsAnErrorTheScenarioCanExpect_OrAViolation()
    {
        var ok = CliRunner.WriteScenario(Scenario + """

                  - guest.read: { vm: vm0, gfn: 0x900, error: mmio }
                  - vmm.mmio-handler: { vm: vm0, value: 0xbeef }
                  - guest.read: { vm: vm0, gfn: 0x900, expect: 0xbeef }
                  - vm.expect-stats: { vm: vm0, pf_taken: 1, pf_emulate: 1, pf_mmio_spte_created: 1, exits: 2, mmio_exits: 2 }
            """);
        var (code, o, e) = CliRunner.Run("run", ok, "--era", "6.18");
        Assert.True(code == 0, o + e);
        var bad = CliRunner.WriteScenario(Scenario + "\n      - guest.read: { vm: vm0, gfn: 0x900 }\n");
        var (bcode, bout, _) = CliRunner.Run("run", bad, "--era", "6.18");
        Assert.Equal(1, bcode);
        Assert.Contains($"{bad}:12: vm0 access to gfn 0x900 exited to the VMM with KVM_EXIT_MMIO", bout);
    }

    [Theory]
    [InlineData("      - guest.read: { vm: vm0, gfn: 0x900, error: sigbus }", "guest.read.error", "'sigbus' is not an expected error (efault, mmio, ring-full, internal-error, none, any)")]
    [InlineData("      - vmm.mmio-handler: { vm: vm0, value: lots }", "vmm.mmio-handler.value", "'lots' is not a number")]
    [InlineData("      - vm.create: { process: qemu, name: vm1, mmio_caching: maybe }", "vm.create.mmio_caching", "'maybe' is not a boolean")]
    public void BadFields_ExitTwo(string op, string field, string message) =>
        CliRunner.AssertBadInput(Scenario + "\n" + op + "\n", 12, field, message);
}
