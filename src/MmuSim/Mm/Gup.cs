using MmuSim.Eras;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>Outcome of get_user_pages for one page.</summary>
/// <param name="Pfn">The page (4 KiB granularity), or -1 on error.</param>
/// <param name="Writable">GUP saw a writable primary PTE (a writable secondary mapping may be created).</param>
/// <param name="Generation">The frame's generation when the reference was taken.</param>
/// <param name="Huge">The primary maps it with a huge PMD (a 2 MiB secondary mapping is possible).</param>
/// <param name="Error">0, or -EFAULT (-14) / -ENOMEM (-12).</param>
public readonly record struct GupResult(long Pfn, bool Writable, ushort Generation, bool Huge, int Error)
{
    public const int EFAULT = -14, ENOMEM = -12;

    /// <summary>follow_page_pte's answer when gup_must_unshare: fault with FAULT_FLAG_UNSHARE, then look again.</summary>
    public const int EMLINK = -31;
    public bool Ok => Error == 0;
}

/// <summary>FOLL_* flags of get_user_pages / pin_user_pages.</summary>
[Flags]
public enum GupFlags : byte
{
    None = 0,
    /// <summary>FOLL_WRITE: the caller writes to the pages (breaks COW first).</summary>
    Write = 1,
    /// <summary>FOLL_GET: take a plain page reference (get_user_pages; vmsplice).</summary>
    Get = 2,
    /// <summary>FOLL_PIN: pin_user_pages (DMA pins counted with GUP_PIN_COUNTING_BIAS from 5.7).</summary>
    Pin = 4,
    /// <summary>FOLL_LONGTERM: the pin is held indefinitely (io_uring fixed buffers, RDMA, vfio, gup_test PIN_LONGTERM).</summary>
    Longterm = 8,
    /// <summary>FOLL_FORCE: write to a non-writable private mapping (ptrace, /proc/PID/mem).</summary>
    Force = 16,
    /// <summary>FOLL_MADV_POPULATE (6.9; pages == NULL before): MADV_POPULATE_* faults pages in and takes no reference.</summary>
    Populate = 32,
    /// <summary>
    /// The lookup does not honor NUMA hinting (follow_page() as KSM calls it: no FOLL_HONOR_NUMA_FAULT, FOLL_NUMA before
    /// 6.6): a pte_protnone entry of a PROT_NONE VMA is followed like a present one (gup_can_follow_protnone).
    /// </summary>
    FollowProtNone = 64,
}

/// <summary>
/// The pages one get_user_pages/pin_user_pages call returned, held by its caller (gup_test, a pipe, an io_uring fixed
/// buffer) until released with <see cref="Gup.Release"/>: <c>struct page **pages</c> plus the flags they were taken with.
/// </summary>
public sealed class UserPages(MmStruct mm, ulong start, long[] pfns, GupFlags flags)
{
    public MmStruct Mm { get; } = mm;
    public ulong Start { get; } = start;
    public long[] Pfns { get; } = pfns;
    public GupFlags Flags { get; } = flags;

    /// <summary>Released (unpinned / put) already.</summary>
    public bool Released { get; internal set; }
}

/// <summary>mm/gup.c: get_user_pages for secondaries (KVM's hva_to_pfn, KSM's follow_page, HMM's fault path) and
/// pin_user_pages for pins that outlive the call.</summary>
public static class Gup
{
    /// <summary>GUP_PIN_COUNTING_BIAS: what one FOLL_PIN adds to a small folio's refcount.</summary>
    public const int PinCountingBias = 1024;

    /// <summary>
    /// get_user_pages_remote for one page: fault it in (breaking COW for writes) and take a page reference the
    /// caller must drop with <see cref="Folio.Put"/>. Takes mmap_lock for read unless <paramref name="mmapLocked"/>.
    /// </summary>
    public static async ValueTask<GupResult> GetUserPage(MmStruct mm, ulong addr, bool write, bool mmapLocked = false)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("get_user_pages");
        addr &= MmStruct.PageMask;
        if (mm.Exited) return new GupResult(-1, false, 0, false, GupResult.EFAULT);
        if (!mmapLocked) await mm.MmapLock.ReadLock();
        try
        {
            for (int attempt = 0; attempt < 64; attempt++)
            {
                var r = await FollowPage(mm, addr, write);
                if (r.Ok) return r;
                var vma = mm.FindVma(addr);
                if (vma == null || !vma.Readable || (write && !vma.Writable))
                    return new GupResult(-1, false, 0, false, GupResult.EFAULT);
                // Taking mmap_lock here is get_user_pages_unlocked (KVM's hva_to_pfn): FAULT_FLAG_ALLOW_RETRY, so a
                // userfaultfd may make the fault wait; a caller that holds the lock cannot drop it.
                var ff = (write ? FaultFlags.Write : FaultFlags.None) | FaultFlags.Remote | (mmapLocked ? FaultFlags.None : FaultFlags.AllowRetry);
                var f = await Memory.HandleMmFault(mm, addr, ff);
                if (f is VmFault.SigSegv or VmFault.SigBus) return new GupResult(-1, false, 0, false, GupResult.EFAULT);
                if (f == VmFault.Oom) return new GupResult(-1, false, 0, false, GupResult.ENOMEM);
            }
            k.S.Fail(Invariants.Liveness, $"get_user_pages(0x{addr:x}) kept faulting", addr);
            return new GupResult(-1, false, 0, false, GupResult.EFAULT);
        }
        finally
        {
            if (!mmapLocked) await mm.MmapLock.ReadUnlock();
        }
    }

    /// <summary>
    /// get_user_pages_fast_only for one page: the lockless walk (no mmap_lock, no PTL, never faults): a reference if the
    /// primary maps a normal page there (writable when <paramref name="write"/>, FOLL_WRITE); Error = -EFAULT otherwise.
    /// </summary>
    public static async ValueTask<GupResult> GetUserPageFastOnly(MmStruct mm, ulong addr, bool write)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("get_user_pages_fast_only");
        addr &= MmStruct.PageMask;
        var fail = new GupResult(-1, false, 0, false, GupResult.EFAULT);
        if (mm.Exited) return fail;
        var pmd = await mm.PmdpGet(addr);
        if (!pmd.Present) return fail;
        if (pmd.Huge)
        {
            if (write && !pmd.Writable) return fail;
            long hp = pmd.Pfn + (long)((addr & ~MmStruct.PmdMask) >> MmStruct.PageShift);
            Folio.Get(k, hp);
            return new GupResult(hp, pmd.Writable, k.Mem[hp].Generation, true, 0);
        }
        var pte = await mm.PtepGet(pmd.TableId, addr);
        if (!pte.Present || pte.Special || pte.Pfn == PhysMem.ZeroPfn || (write && !pte.Writable)) return fail;
        Folio.Get(k, pte.Pfn);
        return new GupResult(pte.Pfn, pte.Writable, k.Mem[pte.Pfn].Generation, false, 0);
    }

    /// <summary>
    /// follow_page: under the PTL (or PMD lock), if the page is present (and writable when asked), take a reference.
    /// FOLL_TOUCH (always set by get_user_pages): a write lookup marks the page dirty unless the PTE or the folio
    /// already is (follow_page_pte), or makes a huge PMD young and dirty (touch_pmd), so that a secondary writing
    /// through the page it got is accounted for. Returns Error = -EFAULT when a fault is needed.
    /// </summary>
    public static ValueTask<GupResult> FollowPage(MmStruct mm, ulong addr, bool write) =>
        FollowPage(mm, null, addr, write ? GupFlags.Write | GupFlags.Get : GupFlags.Get);

    /// <summary>
    /// follow_page_mask with FOLL_* flags: <see cref="FollowPage(MmStruct, ulong, bool)"/> plus FOLL_PIN (try_grab_folio
    /// counts a pin), FOLL_FORCE (can_follow_write_pte: a dirty exclusive anon page in a non-writable private mapping)
    /// and gup_must_unshare (Error = -EMLINK: the caller faults with FAULT_FLAG_UNSHARE and looks again).
    /// </summary>
    public static async ValueTask<GupResult> FollowPage(MmStruct mm, Vma? vma, ulong addr, GupFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("follow_page");
        bool write = (flags & GupFlags.Write) != 0;
        var pmd = await mm.PmdpGet(addr);
        if (pmd.Present && pmd.Huge)
        {
            await mm.LockPmd(addr);
            pmd = await mm.PmdpGet(addr);
            GupResult res = new(-1, false, 0, false, GupResult.EFAULT);
            if (pmd.Present && pmd.Huge && pmd.User && (!write || pmd.Writable || CanFollowWriteForced(k, vma, flags, pmd)))
            {
                long pfn = pmd.Pfn + (long)((addr & ~MmStruct.PmdMask) >> MmStruct.PageShift);
                // A PMD-mapped THP keeps PageAnonExclusive on its head page.
                if (vma != null && MustUnshare(k, vma, flags, pmd.Pfn, special: pmd.Special))
                    res = new GupResult(-1, false, 0, true, GupResult.EMLINK);
                else
                {
                    if (write && !(pmd.Dirty && pmd.Accessed)) await mm.SetPmd(addr, pmd.WithDirty(true).WithAccessed(true)); // touch_pmd
                    TryGrabFolio(mm, pfn, flags);
                    res = new GupResult(pfn, pmd.Writable, k.Mem[pfn].Generation, true, 0);
                }
            }
            await mm.UnlockPmd(addr);
            return res;
        }
        int t = mm.PteTable(addr);
        if (t == 0) return new GupResult(-1, false, 0, false, GupResult.EFAULT);
        await mm.LockPtl(t);
        var pte = await mm.PtepGet(t, addr);
        GupResult r = new(-1, false, 0, false, GupResult.EFAULT);
        // A pte_protnone entry (PROT_NONE VMA) is followed by follow_page() and by FOLL_FORCE (gup_can_follow_protnone:
        // NUMA hinting never applies to an inaccessible VMA); any other lookup needs a fault, which fails.
        bool followable = pte.Accessible || (pte.ProtNone && (flags & (GupFlags.FollowProtNone | GupFlags.Force)) != 0);
        if (followable && (!write || pte.Writable || CanFollowWriteForced(k, vma, flags, pte)))
        {
            if (vma != null && MustUnshare(k, vma, flags, pte.Pfn, pte.Special || pte.Pfn == PhysMem.ZeroPfn))
                r = new GupResult(-1, false, 0, false, GupResult.EMLINK);
            else
            {
                if (write && !pte.Dirty && !Folio.IsDirty(k, pte.Pfn)) Folio.MarkDirty(k, pte.Pfn); // FOLL_TOUCH
                TryGrabFolio(mm, pte.Pfn, flags);
                r = new GupResult(pte.Pfn, pte.Writable, k.Mem[pte.Pfn].Generation, false, 0);
            }
        }
        await mm.UnlockPtl(t);
        return r;
    }

    /// <summary>
    /// can_follow_write_pte for FOLL_FORCE: a write to a non-writable private mapping may follow a read-only entry once
    /// the forced write fault has made it a dirty, exclusive anonymous page (FOLL_COW before 6.0: the same condition).
    /// </summary>
    static bool CanFollowWriteForced(Kernel k, Vma? vma, GupFlags flags, Pte pte)
    {
        if ((flags & GupFlags.Force) == 0 || vma == null || vma.Shared || !pte.Dirty || pte.Special) return false;
        ref var page = ref k.Mem[pte.Pfn]; // for a huge PMD, Pfn is the head: where a PMD-mapped THP keeps the flag
        return k.Mem[k.Mem.FolioOf(pte.Pfn)].Has(PageFlags.Anon) && page.Has(PageFlags.AnonExclusive);
    }

    /// <summary>
    /// gup_must_unshare: a R/O FOLL_PIN of an anonymous page that is not PageAnonExclusive must unshare it first (5.19);
    /// from 6.2 a R/O FOLL_LONGTERM pin in a private mapping unshares non-anonymous pages (the zero page) too.
    /// </summary>
    static bool MustUnshare(Kernel k, Vma vma, GupFlags flags, long pfn, bool special)
    {
        if ((flags & (GupFlags.Write | GupFlags.Pin)) != GupFlags.Pin || !k.Era.Has(Feature.GupUnshareAnon)) return false;
        bool anon = !special && k.Mem[k.Mem.FolioOf(pfn)].Has(PageFlags.Anon);
        if (!anon)
            return (flags & GupFlags.Longterm) != 0 && k.Era.Has(Feature.GupUnshareCowNonAnon) && !vma.Shared;
        return !k.Mem[pfn].Has(PageFlags.AnonExclusive);
    }

    /// <summary>
    /// try_grab_folio: FOLL_GET takes one reference; FOLL_PIN (5.7+) adds <see cref="PinCountingBias"/> to a small folio,
    /// or one reference and one _pincount to a large folio (<see cref="PhysMem.PincountHolder"/>), and sets the mm's
    /// MMF_HAS_PINNED (mm->has_pinned). Before 5.7 a pin is a plain reference. The zero page takes no reference.
    /// </summary>
    public static void TryGrabFolio(MmStruct mm, long pfn, GupFlags flags)
    {
        var k = mm.Kernel;
        if ((flags & GupFlags.Populate) != 0) return; // no struct page **pages: nothing is taken
        long head = k.Mem.FolioOf(pfn);
        if ((flags & GupFlags.Pin) == 0 || !k.Era.Has(Feature.GupPinCounting) || head == PhysMem.ZeroPfn)
        {
            Folio.Get(k, pfn);
            if ((flags & GupFlags.Pin) != 0) mm.HasPinned = true;
            return;
        }
        mm.HasPinned = true;
        if (k.Mem.IsLarge(head))
        {
            Folio.Get(k, head);
            k.Mem.PincountHolder(head).RefCount++;
            return;
        }
        Folio.Get(k, head);
        k.Mem[head].RefCount += PinCountingBias - 1;
    }

    /// <summary>unpin_user_page (gup_put_folio with FOLL_PIN) or put_page (FOLL_GET): undo <see cref="TryGrabFolio"/>.</summary>
    public static void UnpinUserPage(Kernel k, long pfn, GupFlags flags)
    {
        long head = k.Mem.FolioOf(pfn);
        if (head == PhysMem.ZeroPfn) return;
        if ((flags & GupFlags.Pin) != 0 && k.Era.Has(Feature.GupPinCounting))
        {
            if (k.Mem.IsLarge(head))
            {
                ref var pc = ref k.Mem.PincountHolder(head);
                if (pc.RefCount <= 0) throw new ModelException($"unpin_user_page on 0x{head:x} with _pincount {pc.RefCount}");
                pc.RefCount--;
            }
            else
            {
                ref var f = ref k.Mem[head];
                if (f.RefCount <= PinCountingBias) throw new ModelException($"unpin_user_page on 0x{head:x} with refcount {f.RefCount}");
                f.RefCount -= PinCountingBias - 1;
            }
        }
        Folio.Put(k, head);
    }

    /// <summary>
    /// folio_maybe_dma_pinned: a large folio with a _pincount, or a small one whose refcount reaches
    /// GUP_PIN_COUNTING_BIAS (false positives possible, as in the kernel). False before 5.7 (no pin accounting).
    /// </summary>
    public static bool FolioMaybeDmaPinned(Kernel k, long pfn)
    {
        if (!k.Era.Has(Feature.GupPinCounting)) return false;
        long head = k.Mem.FolioOf(pfn);
        if (head == PhysMem.ZeroPfn) return false;
        return k.Mem.IsLarge(head) ? k.Mem.PincountHolder(head).RefCount > 0 : k.Mem[head].RefCount >= PinCountingBias;
    }

    /// <summary>folio_maybe_dma_pinned's count as a number: _pincount of a large folio, refcount / bias for a small one.</summary>
    public static int FolioPincount(Kernel k, long pfn)
    {
        long head = k.Mem.FolioOf(pfn);
        if (head == PhysMem.ZeroPfn || !k.Era.Has(Feature.GupPinCounting)) return 0;
        return k.Mem.IsLarge(head) ? k.Mem.PincountHolder(head).RefCount : k.Mem[head].RefCount / PinCountingBias;
    }

    /// <summary>
    /// __get_user_pages / pin_user_pages(_fast) over [<paramref name="start"/>, +<paramref name="nrPages"/> pages):
    /// check_vma_flags, then per page follow_page_mask and faultin_page (FAULT_FLAG_WRITE for FOLL_WRITE,
    /// FAULT_FLAG_UNSHARE when gup_must_unshare) until the page can be taken. <paramref name="fast"/> first tries the
    /// lockless GUP-fast walk, which never unshares and never follows a read-only entry for a write: a page it cannot
    /// take falls back to the slow path, as get_user_pages_fast does. On an error the pages taken so far are released
    /// and the (negative) error is returned; otherwise the pages are in the result.
    /// </summary>
    public static async ValueTask<(UserPages? Pages, int Error)> GetUserPages(MmStruct mm, ulong start, int nrPages, GupFlags flags, bool fast)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter((flags & GupFlags.Pin) != 0 ? (fast ? "pin_user_pages_fast" : "pin_user_pages") : (fast ? "get_user_pages_fast" : "get_user_pages"));
        start &= MmStruct.PageMask;
        var pfns = new long[nrPages]; // the caller's struct page *pages[], once per call
        int got = 0;
        if (mm.Exited) return (null, GupResult.EFAULT);
        if (fast)
            for (; got < nrPages; got++)
            {
                var r = await GupFastOne(mm, start + (ulong)got * MmStruct.PageSize, flags);
                if (!r.Ok) break;
                pfns[got] = r.Pfn;
            }
        if (got < nrPages)
        {
            await mm.MmapLock.ReadLock();
            try
            {
                for (; got < nrPages; got++)
                {
                    var r = await GetUserPageSlow(mm, start + (ulong)got * MmStruct.PageSize, flags);
                    if (!r.Ok)
                    {
                        for (int i = 0; i < got; i++) UnpinUserPage(k, pfns[i], flags);
                        return (null, r.Error);
                    }
                    pfns[got] = r.Pfn;
                }
            }
            finally { await mm.MmapLock.ReadUnlock(); }
        }
        return (new UserPages(mm, start, pfns, flags), 0);
    }

    /// <summary>Release what <see cref="GetUserPages"/> took: unpin_user_pages(_dirty_lock) for pins, put_page for FOLL_GET.
    /// A writable pin marks the pages dirty first (set_page_dirty_lock), as DMA into them may have happened.</summary>
    public static async ValueTask Release(Kernel k, UserPages pages)
    {
        using var _ = k.S.Current.Enter((pages.Flags & GupFlags.Pin) != 0 ? "unpin_user_pages" : "put_page");
        if (pages.Released) throw new ModelException($"user pages at 0x{pages.Start:x} released twice");
        pages.Released = true;
        foreach (var pfn in pages.Pfns)
        {
            await k.S.Point(PointKind.Counter, pages.Start);
            if ((pages.Flags & GupFlags.Write) != 0) Folio.MarkDirty(k, pfn);
            UnpinUserPage(k, pfn, pages.Flags);
        }
    }

    /// <summary>One page of __get_user_pages: check_vma_flags, follow_page_mask, faultin_page. Caller holds mmap_lock (read).</summary>
    static async ValueTask<GupResult> GetUserPageSlow(MmStruct mm, ulong addr, GupFlags flags)
    {
        var k = mm.Kernel;
        var fail = new GupResult(-1, false, 0, false, GupResult.EFAULT);
        bool write = (flags & GupFlags.Write) != 0;
        for (int attempt = 0; attempt < 64; attempt++)
        {
            var vma = mm.FindVma(addr);
            // check_vma_flags: FOLL_FORCE may read a VMA without VM_READ (PROT_NONE; VM_MAYREAD is always set for anon
            // and the modelled files) and write only to a private (COW) mapping.
            if (vma == null || (!write && !vma.Readable && (flags & GupFlags.Force) == 0)) return fail;
            if (write && !vma.Writable && ((flags & GupFlags.Force) == 0 || vma.Shared)) return fail;
            var r = await FollowPage(mm, vma, addr, flags);
            if (r.Ok) return r;
            var ff = r.Error == GupResult.EMLINK ? FaultFlags.Unshare : write ? FaultFlags.Write : FaultFlags.None;
            if ((flags & GupFlags.Force) != 0) ff |= FaultFlags.Force;
            var f = await Memory.HandleMmFault(mm, addr, ff | FaultFlags.AllowRetry); // __get_user_pages_locked: locked != NULL
            if (f == VmFault.SigSegv || f == VmFault.SigBus) return fail;
            if (f == VmFault.Oom) return new GupResult(-1, false, 0, false, GupResult.ENOMEM);
        }
        k.S.Fail(Invariants.Liveness, $"get_user_pages(0x{addr:x}) kept faulting", addr);
        return fail;
    }

    /// <summary>
    /// gup_fast_pte_range for one page (no mmap_lock, no PTL): take the page if the entry allows it; a special entry,
    /// a read-only entry for FOLL_WRITE, or a page gup_must_unshare refuses ends the fast walk (-EFAULT: fall back).
    /// </summary>
    static async ValueTask<GupResult> GupFastOne(MmStruct mm, ulong addr, GupFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("gup_fast");
        var fail = new GupResult(-1, false, 0, false, GupResult.EFAULT);
        bool write = (flags & GupFlags.Write) != 0;
        var pmd = await mm.PmdpGet(addr);
        if (!pmd.Present) return fail;
        long pfn;
        bool huge = pmd.Huge, writable;
        if (huge)
        {
            if (write && !pmd.Writable) return fail;
            pfn = pmd.Pfn + (long)((addr & ~MmStruct.PmdMask) >> MmStruct.PageShift);
            writable = pmd.Writable;
            var hv = mm.FindVma(addr);
            if (hv == null || MustUnshare(k, hv, flags, pmd.Pfn, special: false)) return fail; // exclusivity lives in the head
            TryGrabFolio(mm, pfn, flags);
            return new GupResult(pfn, writable, k.Mem[pfn].Generation, huge, 0);
        }
        else
        {
            var pte = await mm.PtepGet(pmd.TableId, addr);
            if (!pte.Accessible || pte.Special || pte.Pfn == PhysMem.ZeroPfn || (write && !pte.Writable)) return fail;
            pfn = pte.Pfn;
            writable = pte.Writable;
        }
        var vma = mm.FindVma(addr); // gup_fast has no VMA: the model asks it only for gup_must_unshare's anon test
        if (vma == null || MustUnshare(k, vma, flags, pfn, special: false)) return fail;
        TryGrabFolio(mm, pfn, flags);
        return new GupResult(pfn, writable, k.Mem[pfn].Generation, huge, 0);
    }
    /// <summary>
    /// faultin_page_range (6.9, FOLL_MADV_POPULATE; faultin_vma_page_range per VMA from 5.14): fault every page of
    /// [<paramref name="start"/>, <paramref name="end"/>) in readable (or writable) the way __get_user_pages does
    /// (follow_page_mask with FOLL_TOUCH, faultin_page on a miss), taking no page. Caller holds mmap_lock (read).
    /// Returns 0 or madvise_populate's errno: -ENOMEM for an address without a VMA (the pages before it stay
    /// populated) or an OOM fault; -EINVAL when check_vma_flags refuses the VMA (a write to a non-writable or a read
    /// of a non-readable VMA, PROT_NONE; no FOLL_FORCE); -EFAULT for a VM_FAULT_SIGSEGV/SIGBUS fault; -EHWPOISON
    /// for a poisoned page (VM_FAULT_HWPOISON; no modelled path poisons a page yet).
    /// </summary>
    public static async ValueTask<int> FaultinPageRange(MmStruct mm, ulong start, ulong end, bool write)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("faultin_page_range");
        var flags = GupFlags.Populate | (write ? GupFlags.Write : GupFlags.None);
        for (ulong addr = start & MmStruct.PageMask; addr < end; addr += MmStruct.PageSize)
        {
            var vma = mm.FindVma(addr); // vma_lookup
            if (vma == null) return Errno.ENOMEM;
            if (write ? !vma.Writable : !vma.Readable) return Errno.EINVAL; // check_vma_flags without FOLL_FORCE
            for (int attempt = 0; ; attempt++)
            {
                if (attempt == 64)
                {
                    k.S.Fail(Invariants.Liveness, $"faultin_page_range(0x{addr:x}) kept faulting", addr);
                    return Errno.EFAULT;
                }
                if ((await FollowPage(mm, vma, addr, flags)).Ok) break;
                var f = await Memory.HandleMmFault(mm, addr, (write ? FaultFlags.Write : FaultFlags.None) | FaultFlags.AllowRetry); // faultin_page
                if (f == VmFault.Oom) return Errno.ENOMEM;
                if (f == VmFault.SigSegv || f == VmFault.SigBus) return Errno.EFAULT;
            }
        }
        return 0;
    }
}
