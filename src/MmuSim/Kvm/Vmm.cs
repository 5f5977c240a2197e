namespace MmuSim.Kvm;

/// <summary>
/// The VMM's side of KVM_RUN as a selftest's vcpu_worker writes it: what it answers when KVM_RUN returns with
/// KVM_EXIT_MMIO (run->mmio.data for a load), and what it saw. Model bookkeeping, touched only by the vCPU's context
/// in the access step that exited; no kernel state.
/// </summary>
public sealed class Vmm
{
    /// <summary>The value copied into run->mmio.data for every MMIO load, or null: no handler, the exit is reported.</summary>
    public ulong? MmioReadValue { get; set; }

    /// <summary>Whether an MMIO exit is answered and the vCPU re-entered.</summary>
    public bool AnswersMmio => MmioReadValue.HasValue;

    /// <summary>MMIO exits seen (loads and stores).</summary>
    public long MmioExits { get; private set; }

    /// <summary>The last MMIO store: gfn and value (run->mmio.phys_addr, run->mmio.data), if any.</summary>
    public (ulong Gfn, ulong Value)? LastMmioWrite { get; private set; }

    /// <summary>Handle one KVM_EXIT_MMIO: returns the value the guest gets (the store's own value for a store).</summary>
    public ulong OnMmio(ulong gfn, bool write, ulong value)
    {
        MmioExits++;
        if (!write) return MmioReadValue ?? 0;
        LastMmioWrite = (gfn, value);
        return value;
    }

    /// <summary>
    /// The VMM answers KVM_EXIT_DIRTY_RING_FULL by harvesting the vCPU's ring and calling KVM_RESET_DIRTY_RINGS before
    /// re-entering (dirty_log_test's vcpu thread, with the main thread collecting); otherwise the exit is the access's error.
    /// </summary>
    public bool CollectsDirtyRing { get; set; }

    /// <summary>KVM_EXIT_DIRTY_RING_FULL exits answered.</summary>
    public long DirtyRingFullExits { get; private set; }

    /// <summary>(slot id, gfn) pairs harvested from the dirty rings and not yet handed to a dirty-ring.collect op.</summary>
    public List<(int Slot, ulong Gfn)> Harvested { get; } = [];

    /// <summary>Harvest every entry of every vCPU ring of <paramref name="vm"/> into <see cref="Harvested"/> (userspace, one step).</summary>
    public int HarvestRings(Kvm vm)
    {
        int n = 0;
        foreach (var v in vm.Vcpus) n += HarvestRing(vm, v);
        return n;
    }

    int HarvestRing(Kvm vm, KvmVcpu v) => v.DirtyRing?.Harvest((slot, offset) =>
        Harvested.Add((slot, (vm.FindSlot(slot)?.BaseGfn ?? 0) + offset))) ?? 0;

    /// <summary>KVM_RUN returned KVM_EXIT_DIRTY_RING_FULL: harvest the vCPU's ring, KVM_RESET_DIRTY_RINGS, re-enter.</summary>
    internal async ValueTask OnDirtyRingFull(Kvm vm, KvmVcpu v)
    {
        DirtyRingFullExits++;
        HarvestRing(vm, v);
        await vm.ResetDirtyRings();
    }
}
