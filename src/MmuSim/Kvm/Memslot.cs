using MmuSim.Mm;

namespace MmuSim.Kvm;

/// <summary>KVM_MEM_* memslot flags.</summary>
[Flags]
public enum MemslotFlags : byte
{
    None = 0,
    /// <summary>KVM_MEM_LOG_DIRTY_PAGES.</summary>
    LogDirtyPages = 1,
    /// <summary>KVM_MEM_READONLY: guest writes exit to the VMM.</summary>
    ReadOnly = 2,
    /// <summary>KVM_MEMSLOT_INVALID: being deleted or moved; faults on it retry (or exit) instead of mapping.</summary>
    Invalid = 4,
}

/// <summary>State of the last-level SPTE table covering one 2 MiB-aligned block of gfns.</summary>
public enum SpteTable : byte
{
    /// <summary>No last-level table (never populated, or freed by the arch's unmap).</summary>
    None,
    /// <summary>A last-level table exists (it may be empty).</summary>
    Table,
    /// <summary>The block is mapped by one 2 MiB leaf at the level above.</summary>
    HugeLeaf,
}

/// <summary>
/// struct kvm_memory_slot: guest frames [BaseGfn, BaseGfn + NPages) backed by host virtual addresses starting at
/// <see cref="UserspaceAddr"/>. It also owns this slot's part of the secondary page table (the model keeps SPTEs per
/// slot: an hva aliased by two slots has two SPTEs, as in KVM, where each gfn has its own).
/// </summary>
/// <remarks>
/// <para>Storage: <see cref="Sptes"/> is one packed <see cref="Spte"/> (8 bytes) per gfn; per 2 MiB block of gfns
/// (aligned on the gfn, as KVM's levels are) one huge SPTE, one table state byte and one live-count ushort
/// (11 bytes per 512 gfns); the dirty bitmap is one bit per gfn while dirty logging is on.</para>
/// <para>Locking rules: SPTEs change only under kvm->mmu_lock (write; or read for TDP/arm64 faults installing a
/// leaf, which the model does in one step) except the hardware walk setting A/D bits, which is part of the guest
/// access step. The slot list itself changes only in <see cref="Kvm.SetMemoryRegion"/>.</para>
/// </remarks>
public sealed class Memslot
{
    internal Memslot(int id, ulong baseGfn, ulong npages, ulong userspaceAddr, MemslotFlags flags, SlotTotals? totals = null)
    {
        _totals = totals ?? new SlotTotals();
        Id = id;
        BaseGfn = baseGfn;
        NPages = npages;
        UserspaceAddr = userspaceAddr;
        Flags = flags;
        Sptes = new ulong[npages];
        ulong firstBlock = baseGfn >> 9, lastBlock = (baseGfn + npages - 1) >> 9;
        int blocks = (int)(lastBlock - firstBlock + 1);
        HugeSptes = new ulong[blocks];
        Tables = new SpteTable[blocks];
        Live = new ushort[blocks];
        if ((flags & MemslotFlags.LogDirtyPages) != 0) DirtyBitmap = new ulong[(npages + 63) / 64];
    }

    public int Id { get; }
    public ulong BaseGfn { get; }
    public ulong NPages { get; }
    public ulong UserspaceAddr { get; }
    public MemslotFlags Flags { get; internal set; }

    public ulong EndGfn => BaseGfn + NPages;
    public ulong EndHva => UserspaceAddr + (NPages << MmStruct.PageShift);

    public bool ReadOnly => (Flags & MemslotFlags.ReadOnly) != 0;
    public bool LogDirty => (Flags & MemslotFlags.LogDirtyPages) != 0;
    public bool Invalid => (Flags & MemslotFlags.Invalid) != 0;

    /// <summary>slot->gmem.file (KVM_MEM_GUEST_MEMFD): the guest_memfd that backs this slot's private gfns, or null.</summary>
    public GuestMemfd? Gmem { get; internal set; }

    /// <summary>slot->gmem.pgoff: the guest_memfd page index of <see cref="BaseGfn"/>.</summary>
    public ulong GmemPgoff { get; internal set; }

    /// <summary>The guest_memfd page index of <paramref name="gfn"/> (kvm_gmem_get_index).</summary>
    public ulong GmemIndex(ulong gfn) => GmemPgoff + (gfn - BaseGfn);

    /// <summary>One packed SPTE per gfn (index gfn - BaseGfn).</summary>
    public ulong[] Sptes { get; }

    /// <summary>One huge (2 MiB) SPTE per gfn block (index (gfn &gt;&gt; 9) - (BaseGfn &gt;&gt; 9)).</summary>
    public ulong[] HugeSptes { get; }

    /// <summary>Whether the last-level table of each block exists (decides what arm64/MIPS change_pte can do).</summary>
    public SpteTable[] Tables { get; }

    /// <summary>Present 4 KiB SPTEs per block (a table becomes "empty" at 0).</summary>
    public ushort[] Live { get; }

    readonly SlotTotals _totals;

    /// <summary>Present SPTEs in the slot (4 KiB and huge), so that scans skip empty slots; kept in the VM's total too.</summary>
    public int PresentCount
    {
        get => _present;
        internal set
        {
            _totals.Present += value - _present;
            _present = value;
        }
    }

    int _present;

    /// <summary>The dirty bitmap (dirty logging on), else null.</summary>
    public ulong[]? DirtyBitmap { get; internal set; }

    public bool ContainsGfn(ulong gfn) => gfn >= BaseGfn && gfn < EndGfn;

    /// <summary>__gfn_to_hva_memslot.</summary>
    public ulong GfnToHva(ulong gfn) => UserspaceAddr + ((gfn - BaseGfn) << MmStruct.PageShift);

    /// <summary>hva_to_gfn_memslot.</summary>
    public ulong HvaToGfn(ulong hva) => BaseGfn + ((hva - UserspaceAddr) >> MmStruct.PageShift);

    public int Block(ulong gfn) => (int)((gfn >> 9) - (BaseGfn >> 9));

    public ref ulong SpteRef(ulong gfn) => ref Sptes[gfn - BaseGfn];

    /// <summary>
    /// Can the block holding <paramref name="gfn"/> be mapped by one 2 MiB SPTE: the whole aligned gfn block lies in
    /// the slot and gfn and hva are equally aligned (kvm_mmu_hugepage_adjust / fault_supports_stage2_huge_mapping).
    /// </summary>
    public bool HugeCapable(ulong gfn)
    {
        ulong blockGfn = gfn & ~511UL;
        if (blockGfn < BaseGfn || blockGfn + 512 > EndGfn) return false;
        return ((UserspaceAddr - (BaseGfn << MmStruct.PageShift)) & (MmStruct.PmdSize - 1)) == 0;
    }

    /// <summary>set_bit_le(rel_gfn, memslot->dirty_bitmap) (the bitmap half of mark_page_dirty_in_slot).</summary>
    internal void SetDirtyBit(ulong gfn)
    {
        if (DirtyBitmap == null) return;
        ulong rel = gfn - BaseGfn;
        DirtyBitmap[rel >> 6] |= 1UL << (int)(rel & 63);
    }

    /// <summary>Whether the gfn's bit is set in the dirty bitmap.</summary>
    public bool TestDirtyBit(ulong gfn)
    {
        if (DirtyBitmap == null) return false;
        ulong rel = gfn - BaseGfn;
        return (DirtyBitmap[rel >> 6] & (1UL << (int)(rel & 63))) != 0;
    }

    /// <summary>
    /// Model bookkeeping for the dirty-log-lost check (no kernel state): one bit per gfn the guest wrote while dirty
    /// logging was on, cleared when KVM re-arms tracking of the gfn for a harvest that reported it. Allocated with
    /// logging on, null otherwise.
    /// </summary>
    internal ulong[]? GuestWritten { get; set; }

    public override string ToString() =>
        $"slot{Id} gfn [0x{BaseGfn:x}, 0x{EndGfn:x}) hva 0x{UserspaceAddr:x}{(ReadOnly ? " ro" : "")}{(LogDirty ? " log-dirty" : "")}{(Invalid ? " invalid" : "")}";
}

/// <summary>Model bookkeeping shared by a VM's memslots: the present SPTEs of all of them (O(1) for the checker).</summary>
internal sealed class SlotTotals
{
    public int Present;
}
