using System.Runtime.CompilerServices;
using MmuSim.Mm;

namespace MmuSim.Kvm;

/// <summary>
/// A shadow/stage-2 page-table entry (SPTE), packed in 8 bytes. One per gfn in <see cref="Memslot.Sptes"/>, one per
/// 2 MiB block in <see cref="Memslot.HugeSptes"/>.
/// <code>
///   bit 0      P    present
///   bit 1      W    writable (the guest may write through it)
///   bit 2      A    accessed (set by the hardware walk; cleared by aging)
///   bit 3      D    dirty (set by the hardware walk on a write)
///   bit 4      H    huge: a 2 MiB leaf (only in HugeSptes)
///   bit 5      HW   host-writable: the primary PTE was writable when GUP ran (x86 SPTE_HOST_WRITEABLE; lets the
///                   dirty-logging fast path restore W without GUP)
///   bit 6      REF  model bookkeeping for the kvm-hold-page-refs mutation: the SPTE owns a page reference
///   bit 7      PRIV maps a guest_memfd page (a private gfn): the translation does not come from the slot's hva
///   bits 8-47  pfn  (40 bits)
///   bits 48-63 generation of the frame when the SPTE was made (a stale SPTE to a freed-and-reused frame is detectable)
/// </code>
/// Zero is "not present". Nothing else is stored per gfn.
/// </summary>
public readonly record struct Spte(ulong Raw)
{
    public const ulong PresentBit = 1UL << 0, WritableBit = 1UL << 1, AccessedBit = 1UL << 2, DirtyBit = 1UL << 3,
        HugeBit = 1UL << 4, HostWritableBit = 1UL << 5, RefBit = 1UL << 6, PrivateBit = 1UL << 7;
    const int PfnShift = 8, GenShift = 48;
    const ulong PfnMask = ((1UL << 40) - 1) << PfnShift;

    public static readonly Spte None = new(0);

    public bool Present => (Raw & PresentBit) != 0;
    public bool Writable => (Raw & WritableBit) != 0;
    public bool Accessed => (Raw & AccessedBit) != 0;
    public bool Dirty => (Raw & DirtyBit) != 0;
    public bool Huge => (Raw & HugeBit) != 0;
    public bool HostWritable => (Raw & HostWritableBit) != 0;
    public bool HoldsRef => (Raw & RefBit) != 0;
    public bool Private => (Raw & PrivateBit) != 0;
    public long Pfn => (long)((Raw & PfnMask) >> PfnShift);
    public ushort Generation => (ushort)(Raw >> GenShift);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Spte Make(long pfn, ushort gen, bool writable, bool hostWritable, bool accessed, bool dirty, bool huge = false) =>
        new(PresentBit | ((ulong)pfn << PfnShift) | ((ulong)gen << GenShift) | (writable ? WritableBit : 0) |
            (hostWritable ? HostWritableBit : 0) | (accessed ? AccessedBit : 0) | (dirty ? DirtyBit : 0) | (huge ? HugeBit : 0));

    public Spte With(ulong bit, bool on) => new(on ? Raw | bit : Raw & ~bit);

    /// <summary>The 4 KiB piece of a huge SPTE for the page <paramref name="index"/> pages into the block.</summary>
    public long PfnAt(int index) => Pfn + index;

    /// <summary>The same SPTE pointing at <paramref name="pfn"/> (other bits kept).</summary>
    public Spte WithPfn(long pfn) => new((Raw & ~PfnMask) | ((ulong)pfn << PfnShift));

    public override string ToString() =>
        !Present ? "none" : $"pfn 0x{Pfn:x} {(Writable ? "W" : "R")}{(Accessed ? "A" : "")}{(Dirty ? "D" : "")}{(Huge ? "H" : "")}";

    /// <summary>Bytes per SPTE (the issue's budget: at most 8).</summary>
    public const int Size = sizeof(ulong);

    /// <summary>Guest frame number to guest physical address.</summary>
    public static ulong GfnToGpa(ulong gfn) => gfn << MmStruct.PageShift;
}
