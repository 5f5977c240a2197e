using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Userfaultfd;

/// <summary>
/// UFFDIO_MOVE (6.8, mm/userfaultfd.c move_pages): remap exclusive anonymous pages from one address to another of the
/// same mm, zero copy. Unlike the other userfaultfd ioctls it takes pages away from a mapping, so it fires MMU
/// notifiers: a CLEAR invalidation of the source, per page (move_pages_pte) or per huge PMD (move_pages_huge_pmd),
/// around the clear-and-flush of the source entry. The destination must be none (EEXIST), the source present
/// (ENOENT, unless UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES), its folio PageAnonExclusive and not maybe-pinned (EBUSY).
/// </summary>
/// <remarks>
/// Locking as in the kernel (the mmap_lock variant, without per-VMA locks): mmap_lock for read over the whole call,
/// the folio lock and the anon_vma lock of the source folio, then both page-table locks (double_pt_lock: one lock when
/// both entries share a table, else in table order). A page of a large folio is moved after split_folio; a huge PMD
/// whose move would split it (unaligned, short or a populated destination PMD) is split first.
/// </remarks>
public static class Move
{
    const ulong PageSize = MmStruct.PageSize;

    /// <summary>
    /// move_pages: move [<paramref name="src"/>, +<paramref name="len"/>) to <paramref name="dst"/>. Returns the bytes
    /// moved and, when it stopped short (or moved nothing), the errno that stopped it; a partial move reports both.
    /// </summary>
    public static async ValueTask<(ulong Moved, int Error)> MovePages(UserfaultfdCtx ctx, ulong dst, ulong src, ulong len, bool allowSrcHoles)
    {
        var mm = ctx.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("move_pages");
        if (!ctx.Initialized || !k.Era.Has(Feature.UffdMove)) return (0, Errno.EINVAL); // no _UFFDIO_MOVE before 6.8
        if (((dst | src | len) & ~MmStruct.PageMask) != 0 || len == 0 || src + len <= src || dst + len <= dst
            || Math.Max(src, dst) + len > 1UL << 47) return (0, Errno.EINVAL);
        await mm.MmapLock.ReadLock();
        try
        {
            if (ctx.MmapChanging > 0) return (0, Errno.EAGAIN);
            var dstVma = mm.FindVma(dst);
            if (dstVma == null) return (0, Errno.ENOENT);
            if (dstVma.File == null && !dstVma.IsHugetlb) mm.AnonVmaPrepare(dstVma); // find_vma_and_prepare_anon
            var srcVma = mm.FindVma(src);
            if (srcVma == null) return (0, Errno.ENOENT);
            if (srcVma.Shared || src + len > srcVma.End || dstVma.Shared || dst + len > dstVma.End) return (0, Errno.EINVAL);
            int bad = ValidateMoveAreas(ctx, srcVma, dstVma);
            if (bad != 0) return (0, bad);
            ulong moved = 0;
            int err = 0;
            for (ulong s = src, d = dst; s < src + len;)
            {
                var srcPmd = mm.PeekPmd(s);
                if (srcPmd.IsNone && !allowSrcHoles) { err = Errno.ENOENT; break; }
                mm.PmdAlloc(d);
                var dstPmd = mm.PeekPmd(d);
                if (dstPmd.Present && dstPmd.Huge) { err = Errno.EEXIST; break; } // "don't override it and just be strict"
                if (srcPmd.IsMigration || dstPmd.IsMigration)
                {
                    // move_pages_huge_pmd: is_pmd_migration_entry -> pmd_migration_entry_wait, -EAGAIN (the PTE path's
                    // table lookup fails the same way for a destination migration entry).
                    if (srcPmd.IsMigration) await HugeMemory.PmdMigrationEntryWait(mm, s, srcPmd);
                    err = Errno.EAGAIN;
                    break;
                }
                ulong step;
                if (srcPmd.Present && srcPmd.Huge)
                {
                    bool splits = (s & ~MmStruct.PmdMask) != 0 || (d & ~MmStruct.PmdMask) != 0 || src + len - s < MmStruct.PmdSize;
                    if (splits || !dstPmd.IsNone)
                    {
                        bool zero = srcPmd.Pfn == k.Mem.HugeZeroPfn;
                        if (!zero && !k.Mem[srcPmd.Pfn].Has(PageFlags.AnonExclusive)) { err = Errno.EBUSY; break; }
                        await HugeMemory.SplitHugePmd(srcVma, s, notify: true); // "The folio will be split by move_pages_pte()"
                        continue;
                    }
                    err = await MovePagesHugePmd(srcVma, dstVma, d, s);
                    step = MmStruct.PmdSize;
                }
                else
                {
                    if (srcPmd.IsNone) mm.PteAlloc(s); // a hole, with ALLOW_SRC_HOLES: __pte_alloc
                    mm.PteAlloc(d);
                    err = await MovePagesPte(srcVma, dstVma, d, s, allowSrcHoles);
                    step = PageSize;
                }
                if (err == Errno.EAGAIN) { err = 0; continue; }
                if (err != 0) break;
                s += step;
                d += step;
                moved += step;
            }
            return (moved, moved > 0 && err == 0 ? 0 : err);
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
    }

    /// <summary>validate_move_areas: same access bits and mlock state, writable, anonymous, not hugetlb, dst registered here.</summary>
    static int ValidateMoveAreas(UserfaultfdCtx ctx, Vma src, Vma dst)
    {
        if (src.Prot != dst.Prot) return Errno.EINVAL;
        if ((src.Flags & VmFlags.Locked) != (dst.Flags & VmFlags.Locked)) return Errno.EINVAL;
        if (!src.Writable) return Errno.EINVAL; // "For now, we keep it simple and only move between writable VMAs."
        if (src.IsHugetlb || dst.IsHugetlb) return Errno.EINVAL; // vma_move_compatible
        if (dst.Uffd != ctx) return Errno.EINVAL;
        if (src.File != null || dst.File != null) return Errno.EINVAL; // "Only allow moving across anonymous vmas"
        return 0;
    }

    /// <summary>double_pt_lock: one lock when both tables are the same, else both in table order.</summary>
    static async ValueTask DoublePtLock(MmStruct mm, int a, int b)
    {
        if (a > b) (a, b) = (b, a);
        await mm.LockPtl(a);
        if (a != b) await mm.LockPtl(b);
    }

    static async ValueTask DoublePtUnlock(MmStruct mm, int a, int b)
    {
        await mm.UnlockPtl(a);
        if (a != b) await mm.UnlockPtl(b);
    }

    /// <summary>folio_move_anon_rmap + the index update: the folio now belongs to the destination VMA's anon_vma.</summary>
    static void FolioMoveAnonRmap(Kernel k, long head, Vma dstVma, ulong dstAddr, int pages)
    {
        var anon = dstVma.Mm.AnonVmaPrepare(dstVma);
        ulong index = dstVma.IndexOf(dstAddr);
        for (int i = 0; i < pages; i++)
        {
            ref var f = ref k.Mem[head + i];
            if (i == 0) f.AnonRoot = anon.Id; // folio->mapping
            f.Index = index + (ulong)i;
        }
    }

    /// <summary>
    /// move_pages_pte: CLEAR [src, src+4K) start; the destination PTE must be none, the source present (zero page,
    /// anonymous exclusive page: pinned, locked, its anon_vma locked), a swap entry (moved as is) or a migration entry
    /// (wait, EAGAIN); then move_present_pte / move_zeropage_pte / move_swap_pte under both PTLs; end.
    /// </summary>
    static async ValueTask<int> MovePagesPte(Vma srcVma, Vma dstVma, ulong dst, ulong src, bool allowSrcHoles)
    {
        var mm = srcVma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("move_pages_pte");
        var range = new MmuNotifierRange(mm, src, src + PageSize, MmuNotifyEvent.Clear);
        await mm.Notifiers.InvalidateRangeStart(range);
        long folio = -1;
        AnonVma? anonVma = null;
        int err;
        try
        {
            while (true)
            {
                int dt = mm.PteTable(dst), st = mm.PteTable(src);
                if (dt == 0 || st == 0) return Errno.EAGAIN; // a huge PMD materialized meanwhile
                await mm.LockPtl(dt);
                var dstPte = await mm.PtepGet(dt, dst);
                await mm.UnlockPtl(dt);
                if (!dstPte.IsNone) return Errno.EEXIST;
                await mm.LockPtl(st);
                var srcPte = await mm.PtepGet(st, src);
                await mm.UnlockPtl(st);
                if (srcPte.IsNone) return allowSrcHoles ? 0 : Errno.ENOENT;
                if (!srcPte.Present)
                {
                    if (srcPte.IsMigration)
                    {
                        await Migrate.MigrationEntryWait(mm, st, src, srcPte);
                        return Errno.EAGAIN;
                    }
                    if (srcPte.SwapKind != SwapType.Swap) return Errno.EFAULT;
                    return await MoveSwapPte(mm, dt, st, dst, src, dstPte, srcPte);
                }
                if (srcPte.Special || srcPte.Pfn == PhysMem.ZeroPfn) return await MoveZeropagePte(srcVma, dstVma, dt, st, dst, src, dstPte, srcPte);
                if (folio < 0)
                {
                    await mm.LockPtl(st);
                    bool same = await mm.PtepGet(st, src) == srcPte;
                    long pfn = srcPte.Pfn;
                    if (same && (!k.Mem[k.Mem.FolioOf(pfn)].Has(PageFlags.Anon) || !k.Mem[pfn].Has(PageFlags.AnonExclusive)))
                    {
                        await mm.UnlockPtl(st);
                        return Errno.EBUSY;
                    }
                    if (same) Folio.Get(k, pfn);
                    await mm.UnlockPtl(st);
                    if (!same) return Errno.EAGAIN;
                    folio = pfn;
                    await FolioLock.Lock(k, k.Mem.FolioOf(folio));
                }
                if (k.Mem.IsLarge(k.Mem.FolioOf(folio)))
                {
                    // "split_folio() can block": split, then reacquire the (now small) folio.
                    err = await HugeMemory.SplitHugePage(k, k.Mem.FolioOf(folio), folio);
                    await FolioLock.Unlock(k, k.Mem.FolioOf(folio)); // on success the lock went with folio's page
                    Folio.Put(k, folio);
                    folio = -1;
                    if (err != 0) return err;
                    continue;
                }
                if (anonVma == null)
                {
                    // folio_referenced walks the anon_vma chain without the folio lock: serialize with its lock.
                    anonVma = srcVma.AnonVma;
                    if (anonVma == null) return Errno.EAGAIN;
                    await anonVma.Lock.WriteLock();
                }
                return await MovePresentPte(srcVma, dstVma, dt, st, dst, src, dstPte, srcPte, folio);
            }
        }
        finally
        {
            if (anonVma != null) await anonVma.Lock.WriteUnlock();
            if (folio >= 0)
            {
                await FolioLock.Unlock(k, k.Mem.FolioOf(folio));
                Folio.Put(k, folio);
            }
            await mm.Notifiers.InvalidateRangeEnd(range);
        }
    }

    /// <summary>
    /// move_present_pte: under both PTLs, recheck both entries (EAGAIN), refuse a large, maybe-pinned or shared folio
    /// (EBUSY), ptep_clear_flush the source (the page is put back if it got pinned meanwhile), move the rmap, and map it
    /// at the destination writable and dirty ("Follow mremap() behavior").
    /// </summary>
    static async ValueTask<int> MovePresentPte(Vma srcVma, Vma dstVma, int dt, int st, ulong dst, ulong src, Pte origDst, Pte origSrc, long pfn)
    {
        var mm = srcVma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("move_present_pte");
        await DoublePtLock(mm, dt, st);
        try
        {
            if (await mm.PtepGet(st, src) != origSrc || await mm.PtepGet(dt, dst) != origDst) return Errno.EAGAIN;
            if (k.Mem.IsLarge(k.Mem.FolioOf(pfn)) || Gup.FolioMaybeDmaPinned(k, pfn) || !k.Mem[pfn].Has(PageFlags.AnonExclusive)) return Errno.EBUSY;
            var old = await Tlb.PtepClearFlush(mm, st, src);
            if (Gup.FolioMaybeDmaPinned(k, pfn))
            {
                await mm.SetPte(st, src, old); // "Folio got pinned from under us. Put it back and fail the move."
                return Errno.EBUSY;
            }
            FolioMoveAnonRmap(k, pfn, dstVma, dst, 1);
            await mm.SetPte(dt, dst, dstVma.MkPte(pfn, writable: dstVma.Writable, dirty: true));
            k.Stats.Inc(Stat.UffdPagesMoved);
            return 0;
        }
        finally
        {
            await DoublePtUnlock(mm, dt, st);
        }
    }

    /// <summary>move_zeropage_pte: the destination gets its own zero-page PTE, the source entry is cleared and flushed.</summary>
    static async ValueTask<int> MoveZeropagePte(Vma srcVma, Vma dstVma, int dt, int st, ulong dst, ulong src, Pte origDst, Pte origSrc)
    {
        var mm = srcVma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("move_zeropage_pte");
        await DoublePtLock(mm, dt, st);
        try
        {
            if (await mm.PtepGet(st, src) != origSrc || await mm.PtepGet(dt, dst) != origDst) return Errno.EAGAIN;
            await Tlb.PtepClearFlush(mm, st, src);
            await mm.SetPte(dt, dst, dstVma.MkPte(PhysMem.ZeroPfn, writable: false, special: true));
            return 0;
        }
        finally
        {
            await DoublePtUnlock(mm, dt, st);
        }
    }

    /// <summary>move_swap_pte: under both PTLs, the swap entry moves as it is (the model's swap entries are exclusive).</summary>
    static async ValueTask<int> MoveSwapPte(MmStruct mm, int dt, int st, ulong dst, ulong src, Pte origDst, Pte origSrc)
    {
        using var _ = mm.Kernel.S.Current.Enter("move_swap_pte");
        await DoublePtLock(mm, dt, st);
        try
        {
            if (await mm.PtepGet(st, src) != origSrc || await mm.PtepGet(dt, dst) != origDst) return Errno.EAGAIN;
            var e = await mm.PtepGetAndClear(st, src);
            await mm.SetPte(dt, dst, e);
            return 0;
        }
        finally
        {
            await DoublePtUnlock(mm, dt, st);
        }
    }

    /// <summary>
    /// move_pages_huge_pmd: the source THP (or huge zero page) moves whole into a none destination PMD, inside CLEAR
    /// [src, src+2M): folio lock and anon_vma lock, both PMD locks, recheck (EAGAIN), EBUSY if pinned or shared,
    /// pmdp_huge_clear_flush of the source, then the destination PMD writable and dirty.
    /// </summary>
    static async ValueTask<int> MovePagesHugePmd(Vma srcVma, Vma dstVma, ulong dst, ulong src)
    {
        var mm = srcVma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("move_pages_huge_pmd");
        await mm.LockPmd(src);
        var srcPmd = await mm.PmdpGet(src);
        await mm.UnlockPmd(src);
        if (!(srcPmd.Present && srcPmd.Huge)) return Errno.EAGAIN;
        long head = srcPmd.Pfn;
        bool zero = head == k.Mem.HugeZeroPfn;
        if (!zero)
        {
            if (!k.Mem[head].Has(PageFlags.AnonExclusive)) return Errno.EBUSY;
            Folio.Get(k, head);
        }
        var range = new MmuNotifierRange(mm, src, src + MmStruct.PmdSize, MmuNotifyEvent.Clear);
        await mm.Notifiers.InvalidateRangeStart(range);
        AnonVma? anonVma = null;
        try
        {
            if (!zero)
            {
                await FolioLock.Lock(k, head);
                anonVma = srcVma.AnonVma;
                if (anonVma == null) return Errno.EAGAIN;
                await anonVma.Lock.WriteLock();
            }
            int sp = mm.PmdTable(src), dp = mm.PmdTable(dst);
            await DoublePtLock(mm, sp, dp);
            try
            {
                if (await mm.PmdpGet(src) != srcPmd || !(await mm.PmdpGet(dst)).IsNone) return Errno.EAGAIN;
                if (!zero && (Gup.FolioMaybeDmaPinned(k, head) || !k.Mem[head].Has(PageFlags.AnonExclusive))) return Errno.EBUSY;
                await mm.SetPmd(src, Pte.None); // pmdp_huge_clear_flush
                await Tlb.FlushTlbRange(mm, src, src + MmStruct.PmdSize);
                Pte moved;
                if (zero) moved = dstVma.MkPte(head, writable: false, huge: true, special: true);
                else
                {
                    FolioMoveAnonRmap(k, head, dstVma, dst, PhysMem.HugePages);
                    moved = dstVma.MkPte(head, writable: dstVma.Writable, dirty: true, huge: true);
                    k.Stats.Inc(Stat.UffdPagesMoved, PhysMem.HugePages);
                }
                await mm.SetPmd(dst, moved);
                return 0;
            }
            finally
            {
                await DoublePtUnlock(mm, sp, dp);
            }
        }
        finally
        {
            if (anonVma != null) await anonVma.Lock.WriteUnlock();
            if (!zero)
            {
                if (FolioLock.IsLocked(k, head)) await FolioLock.Unlock(k, head);
                Folio.Put(k, head);
            }
            await mm.Notifiers.InvalidateRangeEnd(range);
        }
    }
}
