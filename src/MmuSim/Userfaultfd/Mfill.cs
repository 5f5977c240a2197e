using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Userfaultfd;

/// <summary>UFFDIO_REGISTER modes (UFFDIO_REGISTER_MODE_*).</summary>
[Flags]
public enum UffdMode : byte
{
    None = 0,
    Missing = 1,
    Wp = 2,
    Minor = 4,
}

/// <summary>What an mfill ioctl places (mfill_atomic's mode).</summary>
public enum MfillMode : byte
{
    /// <summary>UFFDIO_COPY: a new page with the given contents.</summary>
    Copy,
    /// <summary>UFFDIO_ZEROPAGE: the shared zero page (anon) or a zeroed page-cache page (shmem).</summary>
    Zeropage,
    /// <summary>UFFDIO_CONTINUE: map the page already in the page cache (MINOR faults).</summary>
    Continue,
    /// <summary>UFFDIO_POISON (6.6+): a PTE_MARKER_POISONED marker, no page; later accesses get SIGBUS.</summary>
    Poison,
}

/// <summary>
/// The userfaultfd ioctls: fs/userfaultfd.c (userfaultfd_register/unregister, the wake after each ioctl) and
/// mm/userfaultfd.c (mfill_atomic for COPY/ZEROPAGE/CONTINUE/POISON, mwriteprotect_range). None of them fires an MMU notifier
/// except UFFDIO_WRITEPROTECT, whose change_protection brackets the populated part with MMU_NOTIFY_PROTECTION_VMA:
/// placing a page into a none PTE needs no invalidation, and no secondary can hold a translation of a page that was not
/// there. Each returns 0 or a negative errno, as the ioctl does.
/// </summary>
public static class Mfill
{
    const ulong PageSize = MmStruct.PageSize;

    /// <summary>
    /// userfaultfd_ioctl's check that UFFDIO_API has run (userfaultfd_is_initialized), then validate_range: page-aligned
    /// start and length, non-empty, inside the user address space.
    /// </summary>
    static int ValidateRange(UserfaultfdCtx ctx, ulong start, ulong len) =>
        !ctx.Initialized || (start & ~MmStruct.PageMask) != 0 || (len & ~MmStruct.PageMask) != 0 || len == 0 || start + len > 1UL << 47 || start + len < start
            ? Errno.EINVAL : 0;

    /// <summary>
    /// vma_can_userfault for the modes asked: anonymous private memory takes MISSING (4.3) and WP (5.7), shmem takes
    /// MISSING (4.11), MINOR (5.14) and WP (5.19, with the PTE markers), hugetlb MISSING (4.11), MINOR (5.13) and WP
    /// (5.19, UFFD_FEATURE_WP_HUGETLBFS_SHMEM).
    /// </summary>
    static bool VmaCanUserfault(Kernel k, Vma vma, UffdMode mode)
    {
        if (vma.IsHugetlb)
        {
            // hugetlb (MAP_HUGETLB and hugetlbfs files): MISSING from 4.11, MINOR from 5.13, WP from 5.19 (markers).
            if (!k.Era.Has(Feature.UffdHugetlb) || ((mode & UffdMode.Wp) != 0 && !k.Era.Has(Feature.UffdWpShmem))) return false;
            return (mode & UffdMode.Minor) == 0 || k.Era.Has(Feature.UffdMinorHugetlb);
        }
        if (vma.File is { IsShmem: false }) return false; // a regular file: only shmem and hugetlbfs take userfaultfd
        bool shmem = vma.File != null;
        if ((mode & UffdMode.Missing) != 0 && shmem && !k.Era.Has(Feature.UffdShmem)) return false;
        if ((mode & UffdMode.Wp) != 0 && (shmem ? !k.Era.Has(Feature.UffdWpShmem) : !k.Era.Has(Feature.UffdWp))) return false;
        if ((mode & UffdMode.Minor) != 0 && (!shmem || !k.Era.Has(Feature.UffdMinorShmem))) return false;
        return true;
    }

    /// <summary>
    /// userfaultfd_register: under mmap_lock for write, check every VMA in [start, start+len) (EINVAL if none, or one
    /// cannot take the mode; EBUSY if registered with another userfaultfd), split at the edges and set VM_UFFD_* and
    /// the context; then merge alike neighbours.
    /// </summary>
    public static async ValueTask<int> UserfaultfdRegister(UserfaultfdCtx ctx, ulong start, ulong len, UffdMode mode)
    {
        var mm = ctx.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("userfaultfd_register");
        if (mode == UffdMode.None || ValidateRange(ctx, start, len) != 0) return Errno.EINVAL;
        ulong end = start + len;
        await mm.MmapLock.WriteLock();
        try
        {
            bool found = false;
            foreach (var vma in mm.Vmas)
            {
                if (vma.End <= start || vma.Start >= end) continue;
                found = true;
                if (!VmaCanUserfault(k, vma, mode)) return Errno.EINVAL;
                if (vma.Uffd != null && vma.Uffd != ctx) return Errno.EBUSY;
            }
            if (!found) return Errno.EINVAL;
            var flags = ((mode & UffdMode.Missing) != 0 ? VmFlags.UffdMissing : 0) | ((mode & UffdMode.Wp) != 0 ? VmFlags.UffdWp : 0)
                | ((mode & UffdMode.Minor) != 0 ? VmFlags.UffdMinor : 0);
            foreach (var vma in await Mmap.SplitAround(mm, start, end))
            {
                vma.Flags = (vma.Flags & ~VmFlags.UffdAny) | flags;
                vma.Uffd = ctx;
            }
            Mmap.VmaMergeAround(mm, start, end);
            return 0;
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>The range ioctls uffdio_register.ioctls can name, as bits (1 &lt;&lt; _UFFDIO_*).</summary>
    [Flags]
    public enum RangeIoctl : ulong
    {
        None = 0,
        Wake = 1UL << 0x02,
        Copy = 1UL << 0x03,
        Zeropage = 1UL << 0x04,
        Move = 1UL << 0x05,
        Writeprotect = 1UL << 0x06,
        Continue = 1UL << 0x07,
        Poison = 1UL << 0x08,
    }

    /// <summary>
    /// uffdio_register.ioctls after a successful UFFDIO_REGISTER of a range that holds a hugetlb VMA (<paramref
    /// name="hugetlb"/>) or not: UFFD_API_RANGE_IOCTLS, or UFFD_API_RANGE_IOCTLS_BASIC for hugetlb (no ZEROPAGE), without
    /// WRITEPROTECT unless the mode has WP and without CONTINUE unless it has MINOR; each only from the era that has it
    /// (WRITEPROTECT 5.7, CONTINUE 5.13, POISON 6.6 in both sets whatever the mode, MOVE 6.8 outside hugetlb).
    /// </summary>
    public static RangeIoctl RangeIoctls(Kernel k, bool hugetlb, UffdMode mode)
    {
        var r = RangeIoctl.Wake | RangeIoctl.Copy | (hugetlb ? 0 : RangeIoctl.Zeropage) | (k.Era.Has(Feature.UffdPoison) ? RangeIoctl.Poison : 0)
            | (!hugetlb && k.Era.Has(Feature.UffdMove) ? RangeIoctl.Move : 0);
        if ((mode & UffdMode.Wp) != 0 && k.Era.Has(Feature.UffdWp)) r |= RangeIoctl.Writeprotect;
        if ((mode & UffdMode.Minor) != 0 && k.Era.Has(Feature.UffdMinorHugetlb)) r |= RangeIoctl.Continue;
        return r;
    }

    /// <summary>
    /// userfaultfd_unregister: under mmap_lock for write, wake the faults waiting on each registered VMA's part of the
    /// range (a fault that waited on it retries as a plain fault), then clear VM_UFFD_* and the context.
    /// uffd-wp bits stay on the PTEs (ignored once the VMA is not VM_UFFD_WP; 6.x resets them, not modelled).
    /// </summary>
    public static async ValueTask<int> UserfaultfdUnregister(UserfaultfdCtx ctx, ulong start, ulong len)
    {
        var mm = ctx.Mm;
        using var _ = mm.Kernel.S.Current.Enter("userfaultfd_unregister");
        if (ValidateRange(ctx, start, len) != 0) return Errno.EINVAL;
        ulong end = start + len;
        await mm.MmapLock.WriteLock();
        try
        {
            bool any = false;
            foreach (var vma in mm.Vmas)
                if (vma.End > start && vma.Start < end) { any = true; break; }
            if (!any) return Errno.EINVAL;
            foreach (var vma in await Mmap.SplitAround(mm, start, end))
            {
                if (vma.Uffd == null) continue;
                await vma.Uffd.Wake(vma.Start, vma.End - vma.Start);
                UserfaultfdClearVma(vma);
            }
            Mmap.VmaMergeAround(mm, start, end);
            return 0;
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>userfaultfd_clear_vma / userfaultfd_reset_ctx: drop VM_UFFD_* and the context. Caller holds mmap_lock for write.</summary>
    internal static void UserfaultfdClearVma(Vma vma)
    {
        vma.Flags &= ~VmFlags.UffdAny;
        vma.Uffd = null;
    }

    /// <summary>
    /// mfill_atomic (UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_CONTINUE, UFFDIO_POISON): under mmap_lock for read, place a page (POISON: a marker) into each
    /// none PTE of [start, start+len), which must lie in one VMA registered with <paramref name="ctx"/> (ENOENT
    /// otherwise). A present PTE or a huge PMD stops it with EEXIST; CONTINUE of a page not in the page cache with
    /// EFAULT. <paramref name="wp"/> (UFFDIO_COPY_MODE_WP / UFFDIO_CONTINUE_MODE_WP) places the PTE uffd-wp. Then,
    /// unless <paramref name="dontWake"/>, wakes the faults on the pages placed. Returns (pages placed, 0 or the errno).
    /// </summary>
    public static async ValueTask<(long Placed, int Error)> MfillAtomic(UserfaultfdCtx ctx, ulong start, ulong len, MfillMode mode,
        ulong value, bool wp, bool dontWake)
    {
        var mm = ctx.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter(mode switch
        {
            MfillMode.Copy => "mfill_atomic_copy", MfillMode.Zeropage => "mfill_atomic_zeropage", MfillMode.Poison => "mfill_atomic_poison",
            _ => "mfill_atomic_continue",
        });
        if (ValidateRange(ctx, start, len) != 0 || (mode == MfillMode.Poison && !k.Era.Has(Feature.UffdPoison))) return (0, Errno.EINVAL);
        long placed = 0;
        int err = 0;
        await mm.MmapLock.ReadLock();
        try
        {
            // "If memory mappings are changing because of non-cooperative operation (e.g. mremap) running in parallel,
            // bail out and request the user to retry later": an event not yet read.
            if (ctx.MmapChanging > 0) return (0, Errno.EAGAIN);
            var vma = mm.FindVma(start);
            // find_dst_vma: the whole range in one VMA registered with this context.
            if (vma == null || vma.Uffd != ctx || start + len > vma.End) return (0, Errno.ENOENT);
            if (mode == MfillMode.Continue && (vma.File == null || (vma.Flags & VmFlags.UffdMinor) == 0)) return (0, Errno.EINVAL);
            if (wp && (vma.Flags & VmFlags.UffdWp) == 0) return (0, Errno.EINVAL);
            if (vma.IsHugetlb) (placed, err) = await MfillAtomicHugetlb(vma, start, len, mode, value, wp);
            else for (ulong a = start; a < start + len; a += PageSize)
            {
                err = await MfillAtomicPte(vma, a, mode, value, wp);
                if (err != 0) break;
                placed++;
                if (mode != MfillMode.Poison) k.Stats.Inc(Stat.UffdPagesPlaced);
            }
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
        if (placed > 0 && !dontWake) await ctx.Wake(start, (ulong)placed * PageSize);
        return (placed, err);
    }

    /// <summary>
    /// mfill_atomic_hugetlb: the range must be huge-page aligned (EINVAL), UFFDIO_ZEROPAGE is not supported (EINVAL);
    /// hugetlb_mfill_atomic_pte per huge page. Returns (4 KiB pages placed, 0 or the errno).
    /// </summary>
    static async ValueTask<(long Placed, int Error)> MfillAtomicHugetlb(Vma vma, ulong start, ulong len, MfillMode mode, ulong value, bool wp)
    {
        var k = vma.Mm.Kernel;
        using var _ = k.S.Current.Enter("mfill_atomic_hugetlb");
        if (mode == MfillMode.Zeropage || (start & ~MmStruct.PmdMask) != 0 || (len & ~MmStruct.PmdMask) != 0) return (0, Errno.EINVAL);
        long placed = 0;
        for (ulong a = start; a < start + len; a += MmStruct.PmdSize)
        {
            int err = mode == MfillMode.Poison
                ? await Hugetlb.HugetlbPages.HugetlbMfillAtomicPoison(vma, a)
                : await Hugetlb.HugetlbPages.HugetlbMfillAtomicPte(vma, a, mode == MfillMode.Continue, value, wp);
            if (err != 0) return (placed, err);
            placed += PhysMem.HugePages;
            if (mode != MfillMode.Poison) k.Stats.Inc(Stat.UffdPagesPlaced, PhysMem.HugePages);
        }
        return (placed, 0);
    }

    /// <summary>mfill_atomic_pte for one page: allocate (COPY/ZEROPAGE of shmem) or find the page, then install it.</summary>
    static async ValueTask<int> MfillAtomicPte(Vma vma, ulong addr, MfillMode mode, ulong value, bool wp)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        int pmdT = mm.PmdAlloc(addr);
        int t = mm.PteAllocAt(pmdT, addr);
        if (t == 0) return Errno.EEXIST; // pmd_trans_huge: a THP is mapped there
        if (mode == MfillMode.Poison) return await MfillAtomicPtePoison(vma, t, addr);
        // A private mapping gets anonymous pages from COPY/ZEROPAGE (mfill_atomic_pte_copy); a shared shmem one page-cache
        // pages (shmem_mfill_atomic_pte); CONTINUE maps the cached page in either.
        var file = mode == MfillMode.Continue || vma.Shared ? vma.File : null;
        if (file == null && mode == MfillMode.Zeropage) return await MfillAtomicPteZeropage(vma, t, addr, wp);
        long pfn;
        bool newlyAllocated = mode != MfillMode.Continue;
        ulong index = vma.IndexOf(addr);
        if (mode == MfillMode.Continue)
        {
            await k.S.Point(PointKind.Alloc, addr); // shmem_get_folio(SGP_NOALLOC)
            if (!file!.Pages.TryGetValue(index, out pfn)) return Errno.EFAULT;
            Folio.Get(k, pfn);
        }
        else
        {
            mm.AnonVmaPrepare(vma);
            await k.S.Point(PointKind.Alloc, addr);
            pfn = vma.AllocPage();
            if (pfn < 0) return Errno.ENOMEM;
            k.Mem[pfn].Contents = mode == MfillMode.Copy ? value : 0; // copy_from_user, or clear_user_highpage
            k.S.Charge(mode == MfillMode.Copy ? CostKind.CopyPage : CostKind.ZeroPage);
            if (file != null)
            {
                // shmem_mfill_atomic_pte: the new page goes into the page cache first (EEXIST if one is there).
                if (file.Pages.ContainsKey(index))
                {
                    Folio.Put(k, pfn);
                    return Errno.EEXIST;
                }
                ref var f = ref k.Mem[pfn];
                f.AnonRoot = file.Id; // folio->mapping
                f.Index = index;
                file.Pages.Add(index, pfn); // the allocation's reference becomes the page cache's
                Folio.Get(k, pfn);          // and the mapping's
            }
        }
        return await MfillAtomicInstallPte(vma, t, addr, pfn, file, newlyAllocated, wp);
    }

    /// <summary>
    /// mfill_atomic_install_pte: under the PTL, EEXIST unless the PTE is none; else map the page with vm_page_prot,
    /// dirty (pte_mkdirty), writable if the VMA is (a page-cache page only in a shared VMA), uffd-wp (and so
    /// read-only) for MODE_WP, and add its rmap. On EEXIST a new page is dropped again (from the page cache too).
    /// </summary>
    static async ValueTask<int> MfillAtomicInstallPte(Vma vma, int t, ulong addr, long pfn, AddressSpace? cache, bool newlyAllocated, bool wp)
    {
        bool pageInCache = cache != null;
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("mfill_atomic_install_pte");
        bool locked = await mm.PteOffsetMapLock(t, addr); // !dst_pte (the table was retracted meanwhile): -EAGAIN
        var cur = locked ? await mm.PtepGet(t, addr) : default;
        // "We allow to overwrite a pte marker": MISSING|WP may have wr-protected a none PTE before the page came.
        if (!locked || !cur.IsNoneMostly)
        {
            if (locked) await mm.UnlockPtl(t);
            if (pageInCache && newlyAllocated)
            {
                cache!.Pages.Remove(vma.IndexOf(addr)); // the page cache's reference
                Folio.Put(k, pfn);
            }
            Folio.Put(k, pfn);
            return locked ? Errno.EEXIST : Errno.EAGAIN;
        }
        bool writable = vma.Writable && (!pageInCache || vma.Shared);
        if (pageInCache) Folio.AddFileRmap(k, pfn, mm); // folio_add_file_rmap_pte
        else Folio.AddNewAnonRmap(k, pfn, vma, addr);   // folio_add_new_anon_rmap: exclusive
        await mm.SetPte(t, addr, vma.MkPte(pfn, writable, dirty: true).WithUffdWp(wp));
        await mm.UnlockPtl(t);
        return 0;
    }

    /// <summary>
    /// mfill_atomic_pte_poison (6.6+): under the PTL, a none PTE becomes a PTE_MARKER_POISONED marker. Beyond a shmem
    /// file's i_size EFAULT; any other entry, a marker too, EEXIST. "No need to invalidate - it was non-present before."
    /// </summary>
    static async ValueTask<int> MfillAtomicPtePoison(Vma vma, int t, ulong addr)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("mfill_atomic_pte_poison");
        await mm.LockPtl(t);
        int err = 0;
        if (vma.File != null && vma.IndexOf(addr) >= vma.File.SizePages) err = Errno.EFAULT; // mfill_file_over_size
        else if (!(await mm.PtepGet(t, addr)).IsNone) err = Errno.EEXIST;
        else await mm.SetPte(t, addr, Pte.Marker(uffdWp: false, poisoned: true));
        await mm.UnlockPtl(t);
        return err;
    }

    /// <summary>mfill_atomic_pte_zeropage: under the PTL, map the shared zero page read-only (special), EEXIST unless none.</summary>
    static async ValueTask<int> MfillAtomicPteZeropage(Vma vma, int t, ulong addr, bool wp)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("mfill_atomic_pte_zeropage");
        await mm.LockPtl(t);
        var cur = await mm.PtepGet(t, addr);
        int err = 0;
        if (cur.IsNone) await mm.SetPte(t, addr, vma.MkPte(PhysMem.ZeroPfn, writable: false, special: true).WithUffdWp(wp));
        else err = Errno.EEXIST;
        await mm.UnlockPtl(t);
        return err;
    }

    /// <summary>
    /// mwriteprotect_range (UFFDIO_WRITEPROTECT): under mmap_lock for read, every VMA in the range must be registered
    /// with MODE_WP on this context (ENOENT); uffd_wp_range then runs change_protection with MM_CP_UFFD_WP or
    /// MM_CP_UFFD_WP_RESOLVE (+ MM_CP_TRY_CHANGE_WRITABLE from 6.3) inside PROTECTION_VMA start/end, and flushes the
    /// TLB. Removing protection wakes the faults waiting on the range unless <paramref name="dontWake"/>.
    /// </summary>
    public static async ValueTask<int> MwriteprotectRange(UserfaultfdCtx ctx, ulong start, ulong len, bool enableWp, bool dontWake)
    {
        var mm = ctx.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("mwriteprotect_range");
        if (ValidateRange(ctx, start, len) != 0) return Errno.EINVAL;
        ulong end = start + len;
        await mm.MmapLock.ReadLock();
        try
        {
            if (ctx.MmapChanging > 0) return Errno.EAGAIN; // mwriteprotect_range's mmap_changing check
            bool found = false;
            foreach (var vma in mm.Vmas)
            {
                if (vma.End <= start || vma.Start >= end) continue;
                if (vma.Uffd != ctx || (vma.Flags & VmFlags.UffdWp) == 0) return Errno.ENOENT;
                found = true;
            }
            if (!found) return Errno.ENOENT;
            var cp = enableWp ? ChangeProtFlags.UffdWp
                : ChangeProtFlags.UffdWpResolve | (k.Era.Has(Feature.UffdWpResolveTryWritable) ? ChangeProtFlags.TryChangeWritable : 0);
            ulong lo = ulong.MaxValue, hi = 0;
            foreach (var vma in mm.Vmas)
            {
                if (vma.End <= start || vma.Start >= end) continue;
                ulong s = Math.Max(vma.Start, start), e = Math.Min(vma.End, end);
                if (await Mprotect.ChangeProtection(vma, s, e, vma.Prot, cp) > 0)
                {
                    lo = Math.Min(lo, s);
                    hi = Math.Max(hi, e);
                }
            }
            if (hi > lo) await Tlb.FlushTlbRange(mm, lo, hi); // tlb_finish_mmu
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
        if (!enableWp && !dontWake) await ctx.Wake(start, len);
        return 0;
    }
}
