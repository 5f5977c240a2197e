using System.Runtime.CompilerServices;

namespace MmuSim.Mm;

/// <summary>
/// A page-table entry at any level, packed in 64 bits with the x86-64 layout:
/// <code>
///   bit 0      P   present
///   bit 1      RW  writable
///   bit 2      US  user; clear in a present entry = PROT_NONE (pte_protnone: pte_present() is still true for the
///              kernel, every user access faults. x86 clears P and sets _PAGE_PROTNONE; the model keeps P as pte_present)
///   bit 5      A   accessed
///   bit 6      D   dirty
///   bit 7      PS  huge (2 MiB leaf in a PMD)
///   bit 9      special (software: zero page / no struct page, vm_normal_page() == NULL)
///   bit 10     uffd-wp (software, _PAGE_UFFD_WP = _PAGE_SOFTW2: userfaultfd write-protected; set with RW clear)
///   bit 11     soft-dirty (software, _PAGE_SOFT_DIRTY: set with D by pte_mkdirty in faults, cleared by clear_refs 4)
///   bits 12-51 pfn, or the table id for a non-leaf entry
/// non-present entries (bit 0 clear, value != 0) are swap-style entries:
///   bits 1-4   type: 1 swap, 2 migration (read), 3 migration (write), 4/5 device-private (read/write),
///              6/7 device-exclusive (read/write), 8 PTE marker (SWP_PTE_MARKER, 5.19+)
///   bit 9      in a migration entry: readable-exclusive (the page was PageAnonExclusive)
///   bit 10     uffd-wp (_PAGE_SWP_UFFD_WP: carried by swap and migration entries, restored on swap-in/remap);
///              in a PTE marker: PTE_MARKER_UFFD_WP
///   bit 11     soft-dirty (_PAGE_SWP_SOFT_DIRTY: carried by swap and migration entries)
///   bits 12-51 swap slot, or the pfn of the migration source / device-private page / exclusively held page;
///              in a PTE marker bit 12 is PTE_MARKER_POISONED (UFFDIO_POISON), and no page is named
///   bit 52     in a migration entry: young (SWP_MIG_YOUNG_BIT, the first offset bit above the pfn; 6.1+)
///   bit 53     in a migration entry: dirty (SWP_MIG_DIRTY_BIT; 6.1+)
/// </code>
/// </summary>
public readonly record struct Pte(ulong Raw)
{
    public const ulong PresentBit = 1UL << 0, WriteBit = 1UL << 1, UserBit = 1UL << 2, AccessedBit = 1UL << 5,
        DirtyBit = 1UL << 6, HugeBit = 1UL << 7, SpecialBit = 1UL << 9, UffdWpBit = 1UL << 10, SoftDirtyBit = 1UL << 11;
    const int PfnShift = 12;
    const ulong PfnMask = ((1UL << 40) - 1) << PfnShift;
    const int TypeShift = 1;
    const ulong TypeMask = 0xFUL << TypeShift;

    const ulong MigYoungBit = 1UL << 52, MigDirtyBit = 1UL << 53;

    public static readonly Pte None = new(0);

    public bool IsNone => Raw == 0;
    public bool Present => (Raw & PresentBit) != 0;
    public bool Writable => (Raw & WriteBit) != 0;
    public bool User => (Raw & UserBit) != 0;
    public bool Accessed => (Raw & AccessedBit) != 0;
    public bool Dirty => (Raw & DirtyBit) != 0;
    public bool Huge => (Raw & HugeBit) != 0;
    public bool Special => (Raw & SpecialBit) != 0;
    public bool SoftDirty => (Raw & SoftDirtyBit) != 0;
    /// <summary>pte_uffd_wp / pte_swp_uffd_wp: write-protected by userfaultfd (UFFDIO_WRITEPROTECT or UFFDIO_COPY_MODE_WP).</summary>
    public bool UffdWp => (Raw & UffdWpBit) != 0;
    /// <summary>pte_protnone: mapped (pte_present) but inaccessible to user space (a PROT_NONE VMA).</summary>
    public bool ProtNone => (Raw & (PresentBit | UserBit)) == PresentBit;
    /// <summary>Present and accessible to a user access (what the hardware walker needs besides RW for a store).</summary>
    public bool Accessible => (Raw & (PresentBit | UserBit)) == (PresentBit | UserBit);
    public long Pfn => (long)((Raw & PfnMask) >> PfnShift);

    /// <summary>Non-present, non-none: a swap or migration entry.</summary>
    public bool IsSwapEntry => !Present && Raw != 0;
    public SwapType SwapKind => IsSwapEntry ? (SwapType)((Raw & TypeMask) >> TypeShift) : SwapType.None;
    public bool IsMigration => SwapKind is SwapType.MigrationRead or SwapType.MigrationWrite;
    /// <summary>is_device_private_entry: the page lives in device-private memory (ZONE_DEVICE, MEMORY_DEVICE_PRIVATE).</summary>
    public bool IsDevicePrivate => SwapKind is SwapType.DevicePrivateRead or SwapType.DevicePrivateWrite;
    /// <summary>is_device_exclusive_entry (5.14+): a device holds the page for atomic access; a CPU access restores it.</summary>
    public bool IsDeviceExclusive => SwapKind is SwapType.DeviceExclusiveRead or SwapType.DeviceExclusiveWrite;
    /// <summary>is_writable_device_private_entry / is_writable_device_exclusive_entry / is_writable_migration_entry.</summary>
    public bool IsWritableEntry => SwapKind is SwapType.MigrationWrite or SwapType.DevicePrivateWrite or SwapType.DeviceExclusiveWrite;
    /// <summary>
    /// is_readable_exclusive_migration_entry / is_writable_migration_entry: the migrating anonymous page was
    /// PageAnonExclusive, which remove_migration_pte restores (RMAP_EXCLUSIVE). Bit 9 of a migration entry.
    /// </summary>
    public bool IsExclusiveMigration => IsMigration && ((Raw & SpecialBit) != 0 || SwapKind == SwapType.MigrationWrite);

    /// <summary>make_readable_exclusive_migration_entry when <paramref name="exclusive"/> (a migration entry only).</summary>
    public Pte WithMigrationExclusive(bool exclusive) => exclusive && IsMigration ? new(Raw | SpecialBit) : this;

    /// <summary>is_migration_entry_young (6.1+): the PTE the entry replaced was young.</summary>
    public bool IsMigrationYoung => IsMigration && (Raw & MigYoungBit) != 0;
    /// <summary>is_migration_entry_dirty (6.1+): the PTE the entry replaced was dirty.</summary>
    public bool IsMigrationDirty => IsMigration && (Raw & MigDirtyBit) != 0;

    /// <summary>make_migration_entry_young / make_migration_entry_dirty (a migration entry only).</summary>
    public Pte WithMigrationAd(bool young, bool dirty) =>
        IsMigration ? new(Raw | (young ? MigYoungBit : 0) | (dirty ? MigDirtyBit : 0)) : this;

    /// <summary>is_pte_marker: a non-present entry that holds no page, only marker bits (uffd-wp, poisoned).</summary>
    public bool IsMarker => SwapKind == SwapType.Marker;
    /// <summary>pte_marker_entry_uffd_wp: a marker that keeps a none PTE write-protected (UFFD_FEATURE_WP_UNPOPULATED).</summary>
    public bool IsUffdWpMarker => IsMarker && UffdWp;
    /// <summary>is_poisoned_swp_entry: PTE_MARKER_POISONED (UFFDIO_POISON, 6.6): any access is VM_FAULT_HWPOISON.</summary>
    public bool IsPoisonMarker => IsMarker && (Raw & MarkerPoisonedBit) != 0;
    /// <summary>pte_none_mostly: none, or a PTE marker (nothing is mapped either way).</summary>
    public bool IsNoneMostly => IsNone || IsMarker;
    const ulong MarkerPoisonedBit = 1UL << PfnShift;

    /// <summary>make_pte_marker(PTE_MARKER_UFFD_WP) and/or make_pte_marker(PTE_MARKER_POISONED).</summary>
    public static Pte Marker(bool uffdWp, bool poisoned) =>
        new(((ulong)SwapType.Marker << TypeShift) | (uffdWp ? UffdWpBit : 0) | (poisoned ? MarkerPoisonedBit : 0));

    /// <summary>A non-present entry that still designates a mapped page (device-private or device-exclusive: it holds a reference and a mapcount).</summary>
    public bool IsDeviceEntry => IsDevicePrivate || IsDeviceExclusive;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Pte Make(long pfn, bool writable, bool dirty = false, bool accessed = true, bool huge = false, bool special = false) =>
        new(PresentBit | UserBit | ((ulong)pfn << PfnShift) | (writable ? WriteBit : 0) | (dirty ? DirtyBit | SoftDirtyBit : 0) |
            (accessed ? AccessedBit : 0) | (huge ? HugeBit : 0) | (special ? SpecialBit : 0));

    /// <summary>A non-leaf entry pointing at page-table <paramref name="tableId"/>.</summary>
    public static Pte Table(int tableId) => new(PresentBit | WriteBit | UserBit | ((ulong)tableId << PfnShift));

    public static Pte SwapEntry(SwapType type, long slotOrPfn) =>
        new(((ulong)type << TypeShift) | ((ulong)slotOrPfn << PfnShift));

    /// <summary>
    /// A PMD-level migration entry (swp_entry_to_pmd of a migration entry, or set_huge_pte_at of one for hugetlb): the PS
    /// bit marks the 2 MiB entry; the pfn is the head of the migrating folio.
    /// </summary>
    public static Pte HugeMigrationEntry(bool writable, long head, bool uffdWp) =>
        new(SwapEntry(writable ? SwapType.MigrationWrite : SwapType.MigrationRead, head).WithUffdWp(uffdWp).Raw | HugeBit);

    public int TableId => (int)Pfn;

    /// <summary>
    /// make_readable_migration_entry / make_readable_device_private_entry / make_readable_exclusive_entry, keeping what
    /// the callers carry over from the old entry (pte_swp_mksoft_dirty, pte_swp_mkuffd_wp, and the PS bit of a PMD-level
    /// entry), and a migration entry's young and dirty bits (they live in swp_offset, which the callers pass on); its
    /// exclusivity is not kept (plain readable).
    /// </summary>
    public Pte ReadOnlyEntry() => SwapKind switch
    {
        SwapType.MigrationWrite => SwapEntry(SwapType.MigrationRead, Pfn).Keeping(this),
        SwapType.DevicePrivateWrite => SwapEntry(SwapType.DevicePrivateRead, Pfn).Keeping(this),
        SwapType.DeviceExclusiveWrite => SwapEntry(SwapType.DeviceExclusiveRead, Pfn).Keeping(this),
        _ => this,
    };

    Pte Keeping(Pte old) => new(Raw | (old.Raw & (UffdWpBit | SoftDirtyBit | HugeBit | MigYoungBit | MigDirtyBit)));

    /// <summary>
    /// pmd_trans_huge || is_pmd_migration_entry (is_swap_pmd): a PMD that stands for a whole 2 MiB folio, mapped or
    /// migrating, which the PMD-level walkers (zap, fork, mprotect, mremap, split) handle before any PTE table.
    /// </summary>
    public bool IsHugeOrMigrationPmd => (Present && Huge) || IsMigration;

    public Pte WithWrite(bool w) => new(w ? Raw | WriteBit : Raw & ~WriteBit);
    public Pte WithDirty(bool d) => new(d ? Raw | DirtyBit : Raw & ~DirtyBit);
    public Pte WithAccessed(bool a) => new(a ? Raw | AccessedBit : Raw & ~AccessedBit);
    public Pte Mkclean() => new(Raw & ~DirtyBit);
    public Pte Mkold() => new(Raw & ~AccessedBit);
    public Pte Wrprotect() => new(Raw & ~WriteBit);
    /// <summary>pte_modify(pte, PAGE_NONE): keep pfn, A/D and soft-dirty; not writable, not user-accessible.</summary>
    public Pte MkProtNone() => new(Raw & ~(UserBit | WriteBit));
    /// <summary>pte_modify(pte, vm_page_prot) from PROT_NONE back to an accessible (still read-only) protection.</summary>
    public Pte MkAccessible() => new(Raw | UserBit);
    public Pte WithSoftDirty(bool d) => new(d ? Raw | SoftDirtyBit : Raw & ~SoftDirtyBit);
    /// <summary>pte_mkuffd_wp (which write-protects too, as x86's does since 6.3) or pte_clear_uffd_wp; the swp_ forms for swap entries.</summary>
    public Pte WithUffdWp(bool wp) => wp ? new((Present ? Raw & ~WriteBit : Raw) | UffdWpBit) : new(Raw & ~UffdWpBit);
    /// <summary>pte_clear_soft_dirty.</summary>
    public Pte ClearSoftDirty() => new(Raw & ~SoftDirtyBit);

    public override string ToString()
    {
        if (Raw == 0) return "none";
        if (IsMarker) return $"marker{(UffdWp ? " uffd-wp" : "")}{(IsPoisonMarker ? " poisoned" : "")}";
        if (!Present) return $"{SwapKind}:0x{Pfn:x}";
        return $"pfn 0x{Pfn:x} {(ProtNone ? "N" : Writable ? "W" : "R")}{(Dirty ? "D" : "")}{(Accessed ? "A" : "")}{(Huge ? "H" : "")}{(Special ? "S" : "")}{(UffdWp ? "U" : "")}";
    }
}

public enum SwapType : byte
{
    None = 0,
    Swap = 1,
    MigrationRead = 2,
    MigrationWrite = 3,
    /// <summary>SWP_DEVICE_READ (4.14+).</summary>
    DevicePrivateRead = 4,
    /// <summary>SWP_DEVICE_WRITE (4.14+).</summary>
    DevicePrivateWrite = 5,
    /// <summary>SWP_DEVICE_EXCLUSIVE_READ (5.14-6.14; one type from 6.15).</summary>
    DeviceExclusiveRead = 6,
    /// <summary>SWP_DEVICE_EXCLUSIVE_WRITE (5.14-6.14).</summary>
    DeviceExclusiveWrite = 7,
    /// <summary>SWP_PTE_MARKER (5.19+): no page, only PTE_MARKER_* bits.</summary>
    Marker = 8,
}
