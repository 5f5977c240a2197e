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
    public bool Ok => Error == 0;
}

/// <summary>mm/gup.c: get_user_pages for secondaries (KVM's hva_to_pfn, KSM's follow_page, HMM's fault path).</summary>
public static class Gup
{
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
                var f = await Memory.HandleMmFault(mm, addr, (write ? FaultFlags.Write : FaultFlags.None) | FaultFlags.Remote);
                if (f == VmFault.SigSegv) return new GupResult(-1, false, 0, false, GupResult.EFAULT);
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
    public static async ValueTask<GupResult> FollowPage(MmStruct mm, ulong addr, bool write)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("follow_page");
        var pmd = await mm.PmdpGet(addr);
        if (pmd.Present && pmd.Huge)
        {
            await mm.LockPmd(addr);
            pmd = await mm.PmdpGet(addr);
            GupResult res = new(-1, false, 0, false, GupResult.EFAULT);
            if (pmd.Present && pmd.Huge && pmd.User && (!write || pmd.Writable))
            {
                if (write && !(pmd.Dirty && pmd.Accessed)) await mm.SetPmd(addr, pmd.WithDirty(true).WithAccessed(true)); // touch_pmd
                long pfn = pmd.Pfn + (long)((addr & ~MmStruct.PmdMask) >> MmStruct.PageShift);
                Folio.Get(k, pfn);
                res = new GupResult(pfn, pmd.Writable, k.Mem[pfn].Generation, true, 0);
            }
            await mm.UnlockPmd(addr);
            return res;
        }
        int t = mm.PteTable(addr);
        if (t == 0) return new GupResult(-1, false, 0, false, GupResult.EFAULT);
        await mm.LockPtl(t);
        var pte = await mm.PtepGet(t, addr);
        GupResult r = new(-1, false, 0, false, GupResult.EFAULT);
        if (pte.Accessible && (!write || pte.Writable)) // a pte_protnone entry needs a fault (which fails)
        {
            if (write && !pte.Dirty && !Folio.IsDirty(k, pte.Pfn)) Folio.MarkDirty(k, pte.Pfn); // FOLL_TOUCH
            Folio.Get(k, pte.Pfn);
            r = new GupResult(pte.Pfn, pte.Writable, k.Mem[pte.Pfn].Generation, false, 0);
        }
        await mm.UnlockPtl(t);
        return r;
    }
}
