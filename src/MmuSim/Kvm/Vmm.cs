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
}
