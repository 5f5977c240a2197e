namespace MmuSim.Mm;

/// <summary>VMA protection (vm_flags VM_READ/VM_WRITE/VM_EXEC).</summary>
[Flags]
public enum Prot : byte
{
    None = 0,
    Read = 1,
    Write = 2,
    Exec = 4,
    ReadWrite = Read | Write,
}

/// <summary>vm_flags beyond protection.</summary>
[Flags]
public enum VmFlags : ushort
{
    None = 0,
    /// <summary>MAP_SHARED (not COW on fork).</summary>
    Shared = 1 << 0,
    /// <summary>VM_MERGEABLE (MADV_MERGEABLE).</summary>
    Mergeable = 1 << 1,
    /// <summary>VM_HUGEPAGE (MADV_HUGEPAGE).</summary>
    HugePage = 1 << 2,
    /// <summary>VM_NOHUGEPAGE.</summary>
    NoHugePage = 1 << 3,
    /// <summary>VM_LOCKED (never reclaimed).</summary>
    Locked = 1 << 4,
    /// <summary>VM_DONTCOPY (MADV_DONTFORK).</summary>
    DontCopy = 1 << 5,
    /// <summary>VM_WIPEONFORK (MADV_WIPEONFORK): fork gives the child this VMA empty (inherited by the child).</summary>
    WipeOnFork = 1 << 6,
    /// <summary>
    /// VM_SOFTDIRTY: set on every VMA mmap creates (mmap_region, 3.11+ with soft-dirty), cleared by clear_refs 4. While
    /// set, pagemap reports every page of the VMA soft-dirty, and soft-dirty tracking is off (vma_soft_dirty_enabled):
    /// mprotect may make a clean PTE writable. Ignored when deciding whether VMAs merge.
    /// </summary>
    SoftDirty = 1 << 7,
    /// <summary>VM_UFFD_MISSING: registered with UFFDIO_REGISTER_MODE_MISSING (faults on none PTEs go to userspace).</summary>
    UffdMissing = 1 << 8,
    /// <summary>VM_UFFD_WP: registered with UFFDIO_REGISTER_MODE_WP (writes to uffd-wp PTEs go to userspace).</summary>
    UffdWp = 1 << 9,
    /// <summary>VM_UFFD_MINOR: registered with UFFDIO_REGISTER_MODE_MINOR (faults on page-cache pages not yet mapped).</summary>
    UffdMinor = 1 << 10,
    /// <summary>__VM_UFFD_FLAGS.</summary>
    UffdAny = UffdMissing | UffdWp | UffdMinor,
    /// <summary>VM_HUGETLB (MAP_HUGETLB, 2 MiB pages from the hugetlb pool; mm/hugetlb.c, <see cref="MmuSim.Hugetlb.HugetlbPages"/>).</summary>
    Hugetlb = 1 << 11,
}

/// <summary>
/// struct vm_area_struct: [Start, End) with protection, flags and the anon_vma family used by rmap.
/// <see cref="PgOff"/> is vm_pgoff: the virtual page number the first page had when the anon memory was created,
/// kept across mremap so that a folio's index still finds its address: addr = Start + ((index - PgOff) &lt;&lt; 12).
/// </summary>
public sealed class Vma(MmStruct mm, ulong start, ulong end, Prot prot, VmFlags flags)
{
    public MmStruct Mm { get; } = mm;
    public ulong Start { get; internal set; } = start;
    public ulong End { get; internal set; } = end;
    public Prot Prot { get; internal set; } = prot;
    public VmFlags Flags { get; internal set; } = flags;
    public ulong PgOff { get; internal set; } = start >> MmStruct.PageShift;
    public AnonVma? AnonVma { get; internal set; }
    /// <summary>vm_file's page cache: the file this VMA maps (shared or private), or the shmem file behind a
    /// MAP_SHARED|MAP_ANONYMOUS VMA (shmem_zero_setup); copies and splits share it. Null for anonymous memory.</summary>
    public AddressSpace? File { get; internal set; }

    /// <summary>vma_is_anonymous: no vm_file.</summary>
    public bool IsAnonymous => File == null;
    /// <summary>vm_userfaultfd_ctx: the userfaultfd this VMA is registered with (with VM_UFFD_* in <see cref="Flags"/>), or null.</summary>
    public Userfaultfd.UserfaultfdCtx? Uffd { get; internal set; }
    public string Name { get; init; } = "";

    /// <summary>vma->vm_policy reduced to one node: MPOL_BIND to <see cref="PolicyNode"/> (mbind), or -1 for the
    /// default policy (the local node, node 0 in the model: the scenario's CPUs all sit on node 0).</summary>
    public int PolicyNode { get; internal set; } = -1;

    /// <summary>alloc_page_vma / vma_alloc_folio: a page on the VMA's policy node (bound: no fallback), else local.</summary>
    internal long AllocPage() => Mm.Kernel.Mem.AllocPage(Math.Max(PolicyNode, 0), thisNode: PolicyNode >= 0);

    /// <summary>vma_alloc_folio of a PMD-sized THP under the VMA's policy.</summary>
    internal long AllocHuge() => Mm.Kernel.Mem.AllocHuge(Math.Max(PolicyNode, 0), thisNode: PolicyNode >= 0);

    /// <summary>vma_alloc_folio of an order-<paramref name="order"/> mTHP under the VMA's policy.</summary>
    internal long AllocLarge(int order) => Mm.Kernel.Mem.AllocLarge(order, Math.Max(PolicyNode, 0), thisNode: PolicyNode >= 0);

    public bool Readable => (Prot & Prot.Read) != 0;
    public bool Writable => (Prot & Prot.Write) != 0;
    public bool Shared => (Flags & VmFlags.Shared) != 0;

    /// <summary>
    /// !vma_is_anonymous and userfaultfd_wp: a file VMA armed for uffd-wp, where a cleared PTE that was uffd-wp must leave
    /// a PTE_MARKER_UFFD_WP (pte_install_uffd_wp_if_needed). Registration allows it only from 5.19 (UffdWpShmem).
    /// </summary>
    internal bool FileUffdWpArmed => File != null && (Flags & VmFlags.UffdWp) != 0;

    /// <summary>is_vm_hugetlb_page.</summary>
    public bool IsHugetlb => (Flags & VmFlags.Hugetlb) != 0;

    /// <summary>is_cow_mapping(): private and may be written.</summary>
    public bool IsCowMapping => !Shared && (Prot & Prot.Write) != 0;

    public bool Contains(ulong addr) => addr >= Start && addr < End;

    /// <summary>
    /// mk_pte(page, vma->vm_page_prot): a present entry for <paramref name="pfn"/>, pte_protnone in a PROT_NONE VMA
    /// (which only FOLL_FORCE and break_ksm's remote unshare can fault), user-accessible otherwise.
    /// </summary>
    public Pte MkPte(long pfn, bool writable, bool dirty = false, bool huge = false, bool special = false, bool accessed = true)
    {
        var pte = Pte.Make(pfn, writable, dirty, accessed, huge, special);
        return Prot == Prot.None ? pte.MkProtNone() : pte;
    }

    public ulong Pages => (End - Start) >> MmStruct.PageShift;

    /// <summary>vma_address(): where a folio with <paramref name="index"/> would be mapped in this VMA, or null.</summary>
    public ulong? AddressOf(ulong index)
    {
        if (index < PgOff) return null;
        ulong addr = Start + ((index - PgOff) << MmStruct.PageShift);
        return addr < End ? addr : null;
    }

    /// <summary>linear_page_index(): the folio index for <paramref name="addr"/>.</summary>
    public ulong IndexOf(ulong addr) => PgOff + ((addr - Start) >> MmStruct.PageShift);

    public override string ToString() => $"{Start:x}-{End:x} {(Readable ? 'r' : '-')}{(Writable ? 'w' : '-')}{(Shared ? 's' : 'p')} {Flags}";
}

/// <summary>
/// An anon_vma family: the mms that may map anonymous folios created in one process (it and its fork descendants).
/// Folios record the family id (<see cref="Frame.AnonRoot"/>) and their index; rmap walks visit every member's VMAs
/// of this family. Its lock is anon_vma->root->rwsem (anon_vma_lock_read for rmap walks, write for fork).
/// </summary>
public sealed class AnonVma
{
    internal AnonVma(int id, Sched.Scheduler s)
    {
        Id = id;
        Lock = new Sched.KRwLock(s, $"anon_vma{id}", sleeping: true);
    }

    public int Id { get; }

    public List<MmStruct> Members { get; } = [];

    public Sched.KRwLock Lock { get; }
}
