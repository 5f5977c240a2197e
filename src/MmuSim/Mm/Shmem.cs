using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// mm/shmem.c, as far as MAP_SHARED|MAP_ANONYMOUS needs it: the shmem file shmem_zero_setup puts behind such a VMA.
/// Its page cache (page index, the VMA's vm_pgoff-based index, to pfn) holds one reference on each page; every mm that
/// maps the object (the original, its fork children, the parts of a split) faults the same page in. The file lives
/// while a VMA refers to it (get_file on each VMA copy, fput on removal) and its pages are dropped with it.
/// The model's rmap for these pages is the VMAs' anon_vma family (the only way to share such a mapping is fork).
/// </summary>
public sealed class ShmemObject
{
    /// <summary>The page cache: index to pfn. Each entry holds the page cache's reference.</summary>
    public Dictionary<ulong, long> Pages { get; } = [];

    /// <summary>VMAs that refer to the file (vm_file references).</summary>
    public int Users { get; internal set; }

    /// <summary>fput of the last VMA: shmem_evict_inode truncates the page cache, dropping its references.</summary>
    internal void Put(Kernel k)
    {
        if (--Users > 0) return;
        foreach (var pfn in Pages.Values) Folio.Put(k, pfn);
        Pages.Clear();
    }
}

/// <summary>mm/shmem.c fault path.</summary>
public static class Shmem
{
    /// <summary>
    /// shmem_fault + finish_fault for a none PTE of a shared anonymous VMA: find the page at the VMA's index in the
    /// page cache or allocate a zeroed one there (shmem_get_folio), then map it with vm_page_prot (writable for a
    /// writable VMA, dirty for a write: do_shared_fault), taking a mapping and a reference. No zero page, no notifier.
    /// </summary>
    public static async ValueTask<VmFault> ShmemFault(MmStruct mm, Vma vma, ulong addr, int t, FaultFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("shmem_fault");
        bool write = (flags & (FaultFlags.Write | FaultFlags.Unshare)) != 0;
        var file = vma.Shmem!;
        ulong index = vma.IndexOf(addr);
        await k.S.Point(PointKind.Alloc, addr); // the page cache lookup (and allocation)
        bool cached = file.Pages.TryGetValue(index, out long pfn);
        // shmem_get_folio_gfp: a cached page in a MINOR-registered VMA, or a missing one in a MISSING-registered VMA,
        // goes to userspace (UFFDIO_CONTINUE / UFFDIO_COPY resolve it).
        if (cached && (vma.Flags & VmFlags.UffdMinor) != 0)
            return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, addr, Userfaultfd.UffdReason.Minor, flags);
        if (!cached && (vma.Flags & VmFlags.UffdMissing) != 0)
            return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, addr, Userfaultfd.UffdReason.Missing, flags);
        if (!cached)
        {
            pfn = k.Mem.AllocPage();
            if (pfn < 0) return VmFault.Oom;
            k.S.Charge(CostKind.ZeroPage);
            ref var f = ref k.Mem[pfn]; // not PageAnon: a page cache page
            f.AnonRoot = mm.AnonVmaPrepare(vma).Id;
            f.Index = index;
            file.Pages.Add(index, pfn); // the allocation's reference becomes the page cache's
        }
        Folio.Get(k, pfn); // filemap's reference for the mapping
        await mm.LockPtl(t);
        var cur = await mm.PtepGet(t, addr);
        if (!cur.IsNone)
        {
            await mm.UnlockPtl(t);
            Folio.Put(k, pfn);
            return VmFault.Retry;
        }
        Folio.AddAnonRmap(k, pfn, mm); // folio_add_file_rmap_pte
        await mm.SetPte(t, addr, vma.MkPte(pfn, writable: vma.Writable, dirty: write));
        await mm.UnlockPtl(t);
        return VmFault.Ok;
    }
}
