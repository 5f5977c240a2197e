using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>What backs an <see cref="AddressSpace"/>.</summary>
public enum FileKind : byte
{
    /// <summary>shmem_zero_setup's file behind a MAP_SHARED|MAP_ANONYMOUS VMA (no name, no size limit).</summary>
    SharedAnon,
    /// <summary>memfd_create(2): a shmem file with a size (ftruncate).</summary>
    Memfd,
    /// <summary>A regular file on a disk filesystem (cow.c's tmpfile()): page cache with writeback, so shared writable
    /// mappings are write-notified (mapping_can_writeback: vma_wants_writenotify).</summary>
    Regular,
    /// <summary>memfd_create(MFD_HUGETLB): a hugetlbfs file of 2 MiB pages from the hugetlb pool; its mappings are
    /// VM_HUGETLB (<see cref="MmuSim.Hugetlb.HugetlbPages"/>). Cached under the index of each huge page's first 4 KiB page.</summary>
    MemfdHugetlb,
    /// <summary>A guest_memfd inode (virt/kvm/guest_memfd.c): KVM's private guest memory. No VMA maps it; only KVM's
    /// memslots bind it (<see cref="MmuSim.Kvm.GuestMemfd"/>). Its folios are unevictable and unmovable.</summary>
    GuestMemfd,
}

/// <summary>/sys/kernel/mm/transparent_hugepage/shmem_enabled (SHMEM_HUGE_*, mm/shmem.c): the huge= policy of the internal
/// shm mount, which backs MAP_SHARED|MAP_ANONYMOUS memory and memfds.</summary>
public enum ShmemHuge : byte
{
    /// <summary>never (the default): shmem faults allocate small folios.</summary>
    Never,
    /// <summary>always: a huge folio wherever one fits.</summary>
    Always,
    /// <summary>within_size: a huge folio that lies within i_size.</summary>
    WithinSize,
    /// <summary>advise: only in VM_HUGEPAGE (MADV_HUGEPAGE) VMAs.</summary>
    Advise,
    /// <summary>deny (testing): never, overriding every mount.</summary>
    Deny,
    /// <summary>force (testing): always, overriding every mount.</summary>
    Force,
}

/// <summary>
/// struct address_space with its inode's size: a file's page cache (mm/filemap.c, mm/shmem.c). Pages maps a page index
/// to the pfn of the cached page; each entry holds the page cache's reference. Backing holds the contents of pages
/// that are not cached (written back to disk, or swapped out for shmem): a fault reads them back. Mappings is i_mmap,
/// the VMAs that map the file (shared or private), which rmap_walk_file walks.
/// </summary>
/// <remarks>
/// Locking: the page cache (Pages, Backing) changes only after a scheduling point of the path that changes it and
/// under no lock the model names (the xarray lock is not modelled: a page-cache update is one step); a fault holds
/// the folio lock (<see cref="FolioLock"/>) from its lookup to its PTE, as migration does over its unmap and move. Mappings changes under the owning mm's mmap_lock for write (vma_link/unlink_file_vma; i_mmap_rwsem is folded
/// into it). A cached page's frame is not PageAnon; its root is this object's <see cref="Id"/> and its index the file
/// page index (folio->mapping, folio->index).
/// Invariants (<see cref="AssertInvariants"/>): every cached pfn's frame names this file and index and holds a
/// reference (a huge folio from khugepaged's collapse_file: each subpage at its index, one head reference per index);
/// no index is both cached and in Backing; every mapping is a live VMA whose File is this object.
/// </remarks>
public sealed class AddressSpace
{
    internal AddressSpace(int id, FileKind kind, string name, ulong sizePages)
    {
        Id = id;
        Kind = kind;
        Name = name;
        SizePages = sizePages;
    }

    /// <summary>The id page frames carry as their root (16 bits).</summary>
    public int Id { get; }

    public FileKind Kind { get; }

    public string Name { get; }

    /// <summary>i_size in pages; a fault at or beyond it is SIGBUS. <see cref="ulong.MaxValue"/> for shared anon memory.</summary>
    public ulong SizePages { get; internal set; }

    /// <summary>shmem or memfd (swap-backed) rather than a regular file.</summary>
    public bool IsShmem => Kind is not (FileKind.Regular or FileKind.GuestMemfd);

    /// <summary>The page cache: index to pfn. Each entry holds the page cache's reference.</summary>
    public Dictionary<ulong, long> Pages { get; } = [];

    /// <summary>Contents of pages not in the cache (on disk, or in swap for shmem), by index.</summary>
    public Dictionary<ulong, ulong> Backing { get; } = [];

    /// <summary>i_mmap: every VMA that maps this file.</summary>
    public List<Vma> Mappings { get; } = [];

    /// <summary>References: open file descriptors and VMAs (vm_file).</summary>
    public int Users { get; internal set; }

    public override string ToString() => Name;

    /// <summary>
    /// xas_store of a huge folio at the 512 indexes from <paramref name="first"/> (collapse_file,
    /// shmem_alloc_and_add_folio, folio_migrate_mapping): each subpage names this file and its index, and the head gains
    /// a reference per index beyond the one the caller hands to the cache.
    /// </summary>
    internal void StoreHugeFolio(Kernel k, long head, ulong first)
    {
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            ref var sub = ref k.Mem[head + i];
            sub.AnonRoot = Id; // folio->mapping, folio->index
            sub.Index = first + (ulong)i;
            Pages[first + (ulong)i] = head + i;
        }
        k.Mem[head].RefCount += PhysMem.HugePages - 1;
    }

    /// <summary>fput of the last reference: evict the inode, dropping the page cache's references.</summary>
    internal void Put(Kernel k)
    {
        if (--Users > 0) return;
        foreach (var pfn in Pages.Values) Folio.Put(k, pfn);
        Pages.Clear();
        Backing.Clear();
    }

    /// <summary>Debug-only checks of the page cache invariants.</summary>
    [System.Diagnostics.Conditional("DEBUG")]
    public void AssertInvariants(Kernel k)
    {
        foreach (var (index, pfn) in Pages)
        {
            var f = k.Mem[pfn];
            var head = k.Mem[k.Mem.FolioOf(pfn)]; // a huge folio's subpages share the head's references (one per index)
            if (head.Has(PageFlags.Anon) || f.AnonRoot != Id || f.Index != index || head.RefCount < 1)
                throw new ModelException($"{Name}: cached page 0x{pfn:x} at index {index} has root {f.AnonRoot}, index {f.Index}, refcount {head.RefCount}");
            if (Backing.ContainsKey(index)) throw new ModelException($"{Name}: index {index} is both cached and on the backing store");
        }
        foreach (var v in Mappings)
            if (v.File != this || !v.Mm.Vmas.Contains(v)) throw new ModelException($"{Name}: i_mmap holds {v}, which does not map it");
    }
}

/// <summary>mm/filemap.c and the file side of mm/memory.c's do_fault: faults on VMAs that map a file.</summary>
public static class Filemap
{
    /// <summary>
    /// filemap_get_folio / shmem_get_folio for a fault: the cached page at <paramref name="index"/>, or a new one read
    /// from the backing store (zero-filled for a hole). A scheduling point (the lookup). -1 on OOM.
    /// </summary>
    internal static async ValueTask<long> FilemapGetFolio(Kernel k, AddressSpace file, ulong index, ulong addr, Vma? hugeVma = null)
    {
        await k.S.Point(PointKind.Alloc, addr);
        if (file.Pages.TryGetValue(index, out long pfn)) return pfn;
        if (hugeVma != null && ShmemHugeAllowed(k, hugeVma, file, index) && ShmemAllocAndAddHugeFolio(k, file, index) is >= 0 and var sub) return sub;
        pfn = k.Mem.AllocPage();
        if (pfn < 0) return -1;
        ref var f = ref k.Mem[pfn]; // not PageAnon: a page-cache page
        if (file.Backing.Remove(index, out ulong contents))
        {
            f.Contents = contents; // read from disk / swap-in (shmem_swapin_folio)
            k.S.Charge(CostKind.CopyPage);
        }
        else k.S.Charge(CostKind.ZeroPage);
        f.AnonRoot = file.Id;
        f.Index = index;
        file.Pages.Add(index, pfn); // the allocation's reference becomes the page cache's
        return pfn;
    }

    /// <summary>
    /// shmem_huge_global_enabled (shmem_is_huge before 6.11) for a fault of <paramref name="vma"/> at
    /// <paramref name="index"/>: shmem_enabled force allows and deny refuses; then never, always, within_size (the huge
    /// folio ends within i_size) or advise (VM_HUGEPAGE). The caller found the VMA fit for a PMD there, shmem and not
    /// VM_NOHUGEPAGE (<see cref="HugeMemory.FileThpSuitable"/>); the model also wants the huge folio within i_size for always.
    /// </summary>
    static bool ShmemHugeAllowed(Kernel k, Vma vma, AddressSpace file, ulong index)
    {
        ulong first = index & ~(ulong)(PhysMem.HugePages - 1);
        if (first + PhysMem.HugePages > file.SizePages) return false;
        return k.ShmemEnabled switch
        {
            ShmemHuge.Always or ShmemHuge.WithinSize or ShmemHuge.Force => true,
            ShmemHuge.Advise => (vma.Flags & VmFlags.HugePage) != 0,
            _ => false,
        };
    }

    /// <summary>
    /// shmem_alloc_and_add_folio for a PMD-sized folio: only if no index of the aligned range is cached or swapped out
    /// (the kernel's xa_find ... XA_PRESENT, else it falls back to a small folio); the 512 zeroed subpages go into the
    /// cache, one head reference per index. Returns the subpage at <paramref name="index"/>, or -1 to fall back.
    /// </summary>
    static long ShmemAllocAndAddHugeFolio(Kernel k, AddressSpace file, ulong index)
    {
        ulong first = index & ~(ulong)(PhysMem.HugePages - 1);
        for (ulong i = first; i < first + PhysMem.HugePages; i++)
            if (file.Pages.ContainsKey(i) || file.Backing.ContainsKey(i)) return -1;
        long head = k.Mem.AllocHuge();
        if (head < 0) return -1; // THP_FILE_FALLBACK
        file.StoreHugeFolio(k, head, first); // the allocation's reference and 511 more: one per index
        for (int i = 0; i < PhysMem.HugePages; i++) k.S.Charge(CostKind.ZeroPage);
        k.Stats.Inc(Stat.ThpFileAlloc);
        return head + (long)(index - first);
    }

    /// <summary>
    /// do_fault for a none PTE of a file VMA: SIGBUS beyond i_size; a shmem VMA registered with userfaultfd sends
    /// MISSING (not cached) or MINOR (cached) faults to userspace (shmem_get_folio_gfp); then do_read_fault,
    /// do_cow_fault (a write or unshare to a private mapping) or do_shared_fault. <paramref name="orig"/> is the entry
    /// found: none, or a uffd-wp marker (5.19+), whose bit the new PTE keeps (set_pte_range's vmf_orig_pte_uffd_wp).
    /// With <paramref name="t"/> 0 the PMD was none and there is no PTE table yet (a VMA where a PMD fits,
    /// <see cref="HugeMemory.FileThpSuitable"/>): finish_fault maps a huge folio with do_set_pmd, else allocates the
    /// table in the PMD table <paramref name="pmdT"/>.
    /// </summary>
    public static async ValueTask<VmFault> DoFault(MmStruct mm, Vma vma, ulong addr, int t, FaultFlags flags, Pte orig = default, int pmdT = 0)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_fault");
        bool write = (flags & FaultFlags.Write) != 0; // an unshare fault on a none PTE is a read fault here
        var file = vma.File!;
        ulong index = vma.IndexOf(addr);
        if (index >= file.SizePages) return VmFault.SigBus; // filemap_fault / shmem_fault beyond EOF
        if (file.IsShmem && (vma.Flags & (VmFlags.UffdMinor | VmFlags.UffdMissing)) != 0)
        {
            await k.S.Point(PointKind.Alloc, addr);
            bool cached = file.Pages.ContainsKey(index);
            if (cached && (vma.Flags & VmFlags.UffdMinor) != 0)
                return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, addr, Userfaultfd.UffdReason.Minor, flags);
            if (!cached && (vma.Flags & VmFlags.UffdMissing) != 0)
                return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, addr, Userfaultfd.UffdReason.Missing, flags);
        }
        if (write && !vma.Shared)
        {
            if (t == 0 && (t = mm.PteAllocAt(pmdT, addr)) == 0) return VmFault.Retry; // a huge PMD appeared meanwhile
            return await DoCowFault(mm, vma, addr, t, index, orig);
        }
        return await FinishFault(mm, vma, addr, t, pmdT, index, write, orig);
    }

    /// <summary>
    /// do_read_fault / do_shared_fault + finish_fault: map the cached page with vm_page_prot: read-only in a private
    /// mapping; in a shared writable one writable, except that a regular file's read fault maps it read-only so that
    /// the first write is notified (writenotify: do_wp_page -> wp_page_shared marks it dirty). A write marks the page
    /// dirty (folio_mark_dirty in fault_dirty_shared_page). No notifier: the PTE was none.
    /// </summary>
    static async ValueTask<VmFault> FinishFault(MmStruct mm, Vma vma, ulong addr, int t, int pmdT, ulong index, bool write, Pte orig)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter(write ? "do_shared_fault" : "do_read_fault");
        var file = vma.File!;
        long pfn = await LockCachedFolio(k, file, index, addr, t == 0 ? vma : null); // shmem_get_folio_gfp may allocate a THP where the PMD is none
        if (pfn < 0) return pfn == -2 ? VmFault.Retry : VmFault.Oom;
        if (t == 0)
        {
            // finish_fault with pmd_none: a PMD-mappable folio goes in with do_set_pmd, anything else needs the table.
            long head = k.Mem.FolioOf(pfn);
            if (k.Mem.IsHuge(head) && await HugeMemory.DoSetPmd(mm, vma, addr, head, write))
            {
                await FolioLock.Unlock(k, head);
                return VmFault.Ok;
            }
            if ((t = mm.PteAllocAt(pmdT, addr)) == 0)
            {
                await FolioLock.Unlock(k, head);
                Folio.Put(k, pfn);
                return VmFault.Retry;
            }
        }
        if (!await mm.PteOffsetMapLock(t, addr))
        {
            await FolioLock.Unlock(k, k.Mem.FolioOf(pfn));
            Folio.Put(k, pfn);
            return VmFault.Retry; // finish_fault: the table was retracted meanwhile (VM_FAULT_NOPAGE)
        }
        var cur = await mm.PtepGet(t, addr);
        if (cur != orig) // vmf_pte_changed
        {
            await mm.UnlockPtl(t);
            await FolioLock.Unlock(k, k.Mem.FolioOf(pfn));
            Folio.Put(k, pfn);
            return VmFault.Retry;
        }
        Folio.AddFileRmap(k, pfn, mm);
        bool writable = vma.Shared && vma.Writable && (write || file.IsShmem);
        if (write) Folio.MarkDirty(k, pfn);
        // pte_mkuffd_wp for a fault on a uffd-wp marker (write-protecting: a write retries as the uffd-wp fault).
        await mm.SetPte(t, addr, vma.MkPte(pfn, writable, dirty: write).WithUffdWp(orig.IsUffdWpMarker));
        await mm.UnlockPtl(t);
        await FolioLock.Unlock(k, k.Mem.FolioOf(pfn)); // the lookup's reference is now the mapping's
        return VmFault.Ok;
    }

    /// <summary>
    /// __do_fault's locked lookup (filemap_fault: filemap_get_folio takes a reference, lock_folio_maybe_drop_mmap
    /// sleeps on the folio lock): the cached folio, locked and referenced; -2 (VM_FAULT_RETRY) if it left the page
    /// cache while the fault slept (migrated or truncated: folio->mapping changed), -1 on OOM.
    /// </summary>
    static async ValueTask<long> LockCachedFolio(Kernel k, AddressSpace file, ulong index, ulong addr, Vma? hugeVma = null)
    {
        long pfn = await FilemapGetFolio(k, file, index, addr, hugeVma);
        if (pfn < 0) return -1;
        Folio.Get(k, pfn);
        await FolioLock.Lock(k, k.Mem.FolioOf(pfn));
        if (file.Pages.TryGetValue(index, out long now) && now == pfn) return pfn;
        await FolioLock.Unlock(k, k.Mem.FolioOf(pfn));
        Folio.Put(k, pfn);
        return -2;
    }

    /// <summary>
    /// do_cow_fault: a write fault on a none PTE of a private file mapping: copy the cached page into a new exclusive
    /// anonymous page and map that writable and dirty.
    /// </summary>
    static async ValueTask<VmFault> DoCowFault(MmStruct mm, Vma vma, ulong addr, int t, ulong index, Pte orig)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_cow_fault");
        long src = await LockCachedFolio(k, vma.File!, index, addr);
        if (src < 0) return src == -2 ? VmFault.Retry : VmFault.Oom;
        mm.AnonVmaPrepare(vma);
        await k.S.Point(PointKind.Alloc, addr);
        long pfn = vma.AllocPage();
        if (pfn >= 0)
        {
            k.Mem[pfn].Contents = k.Mem[src].Contents; // copy_user_highpage
            k.S.Charge(CostKind.CopyPage);
        }
        await FolioLock.Unlock(k, k.Mem.FolioOf(src));
        Folio.Put(k, src);
        if (pfn < 0) return VmFault.Oom;
        if (!await mm.PteOffsetMapLock(t, addr))
        {
            Folio.Put(k, pfn);
            return VmFault.Retry;
        }
        var cur = await mm.PtepGet(t, addr);
        if (cur != orig)
        {
            await mm.UnlockPtl(t);
            Folio.Put(k, pfn);
            return VmFault.Retry;
        }
        Folio.AddNewAnonRmap(k, pfn, vma, addr);
        await mm.SetPte(t, addr, vma.MkPte(pfn, writable: vma.Writable, dirty: true).WithUffdWp(orig.IsUffdWpMarker));
        await mm.UnlockPtl(t);
        k.Stats.Inc(Stat.CowCopies);
        return VmFault.Ok;
    }
}
