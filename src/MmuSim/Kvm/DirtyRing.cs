namespace MmuSim.Kvm;

/// <summary>
/// struct kvm_dirty_ring (include/linux/kvm_dirty_ring.h, virt/kvm/dirty_ring.c): one vCPU's ring of struct
/// kvm_dirty_gfn {flags, slot, offset}, shared with the VMM through mmap. KVM pushes at <see cref="DirtyIndex"/>
/// (flags = KVM_DIRTY_GFN_F_DIRTY); the VMM harvests from its own fetch index and sets KVM_DIRTY_GFN_F_RESET;
/// KVM_RESET_DIRTY_RINGS re-arms dirty tracking for the harvested entries from <see cref="ResetIndex"/> on.
/// </summary>
/// <remarks>Storage: three arrays of <see cref="Size"/> entries, allocated when the vCPU's ring is created
/// (kvm_dirty_ring_alloc), never per push. Touched only under the steps of the kernel paths and the VMM op that own it.</remarks>
public sealed class DirtyRing
{
    /// <summary>KVM_DIRTY_GFN_F_DIRTY / KVM_DIRTY_GFN_F_RESET.</summary>
    public const byte FlagDirty = 1, FlagReset = 2;

    /// <summary>KVM_DIRTY_RING_RSVD_ENTRIES: pushes the ring absorbs after it is soft-full.</summary>
    public const uint RsvdEntries = 64;

    /// <summary>KVM_DIRTY_RING_MAX_ENTRIES.</summary>
    public const uint MaxEntries = 65536;

    /// <summary>sizeof(struct kvm_dirty_gfn).</summary>
    public const uint EntryBytes = 16;

    readonly byte[] _flags;
    readonly int[] _slot;
    readonly ulong[] _offset;

    /// <summary>kvm_dirty_ring_alloc: <paramref name="size"/> entries (a power of 2), soft limit size - reserved entries.</summary>
    internal DirtyRing(uint size)
    {
        Size = size;
        SoftLimit = size - RsvdEntries;     // kvm_dirty_ring_get_rsvd_entries: no PML in the model (kvm_cpu_dirty_log_size 0)
        _flags = new byte[size];
        _slot = new int[size];
        _offset = new ulong[size];
    }

    public uint Size { get; }
    public uint SoftLimit { get; }

    /// <summary>Free-running index of the next entry KVM pushes.</summary>
    public uint DirtyIndex { get; private set; }

    /// <summary>Free-running index of the next entry KVM_RESET_DIRTY_RINGS re-arms.</summary>
    public uint ResetIndex { get; private set; }

    /// <summary>The VMM's fetch index (dirty_log_test's dirty_ring_vcpu... fetch_index; userspace state in the model).</summary>
    public uint FetchIndex { get; private set; }

    /// <summary>kvm_dirty_ring_used.</summary>
    public uint Used => DirtyIndex - ResetIndex;

    /// <summary>kvm_dirty_ring_soft_full.</summary>
    public bool SoftFull => Used >= SoftLimit;

    /// <summary>Pushes that found the ring completely full (the kernel WARNs; the entry is overwritten).</summary>
    public int Overflows { get; private set; }

    /// <summary>kvm_dirty_ring_push: fill the next entry with (slot, offset), then publish it with KVM_DIRTY_GFN_F_DIRTY.</summary>
    internal void Push(int slot, ulong offset)
    {
        if (Used >= Size) Overflows++;      // WARN_ON_ONCE(kvm_dirty_ring_full(ring))
        uint i = DirtyIndex & (Size - 1);
        _slot[i] = slot;
        _offset[i] = offset;
        _flags[i] = FlagDirty;              // kvm_dirty_gfn_set_dirtied, after smp_wmb
        DirtyIndex++;
    }

    /// <summary>
    /// The VMM's harvest (dirty_ring_collect_one in dirty_log_test): from its fetch index, every entry with
    /// KVM_DIRTY_GFN_F_DIRTY is read and flagged KVM_DIRTY_GFN_F_RESET; stops at the first entry not yet published.
    /// </summary>
    public int Harvest(Action<int, ulong> onEntry)
    {
        int n = 0;
        while (true)
        {
            uint i = FetchIndex & (Size - 1);
            if (_flags[i] != FlagDirty) break;
            onEntry(_slot[i], _offset[i]);
            _flags[i] = FlagReset;          // kvm_dirty_gfn_set_collected
            FetchIndex++;
            n++;
        }
        return n;
    }

    /// <summary>
    /// The entries kvm_dirty_ring_reset re-arms: from <see cref="ResetIndex"/> while the VMM flagged them
    /// KVM_DIRTY_GFN_F_RESET (kvm_dirty_gfn_harvested), each set invalid again (kvm_dirty_gfn_set_invalid).
    /// </summary>
    internal bool TryTakeHarvested(out int slot, out ulong offset)
    {
        uint i = ResetIndex & (Size - 1);
        slot = _slot[i];
        offset = _offset[i];
        if (_flags[i] != FlagReset) return false;
        _flags[i] = 0;
        ResetIndex++;
        return true;
    }

    /// <summary>The offsets of <paramref name="slot"/> pushed and not yet re-armed (model check: those writes are still reported).</summary>
    public void CollectPending(int slot, HashSet<ulong> into)
    {
        for (uint x = ResetIndex; x != DirtyIndex; x++)
        {
            uint i = x & (Size - 1);
            if (_slot[i] == slot) into.Add(_offset[i]);
        }
    }

    public override string ToString() => $"dirty ring {Size} entries: dirty_index {DirtyIndex}, reset_index {ResetIndex}, fetch {FetchIndex}";
}
