using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Ksm;

public sealed partial class Ksmd
{
    const int EFAULT = -14;

    /// <summary>Is start/end CLEAR placed around write_protect_page / replace_page (3.7+, unless the 2.6.32-placement mutation)?</summary>
    bool Bracketed => _k.Era.Has(Feature.SetPteAtNotifyBracketed) && !_k.Mutated(Mutation.KsmNoNotifierBracket);

    /// <summary>ptep_clear_flush, or ptep_clear_flush_notify (invalidate_range under the PTL) in 3.19-4.14.</summary>
    async ValueTask<Pte> ClearFlush(MmStruct mm, int t, ulong addr) =>
        _k.Era.Has(Feature.KsmClearFlushNotify) ? await Tlb.PtepClearFlushNotify(mm, t, addr) : await Tlb.PtepClearFlush(mm, t, addr);

    /// <summary>
    /// write_protect_page: make the PTE mapping <paramref name="page"/> at <paramref name="addr"/> read-only and clean,
    /// after checking that nobody but its mappings and our reference holds the page (mapcount + 1 == refcount; +2 in
    /// 2.6.32). The PTE is cleared and flushed under the PTL before the check so that no GUP-fast can slip in; on a
    /// failed check it is restored and the merge aborts (-EFAULT). Returns the resulting PTE in <paramref name="origPte"/>.
    /// 2.6.32 triggers on pte_write only and has no start/end; 3.7+ bracket with CLEAR and also trigger on pte_dirty,
    /// transferring dirty to the folio; 4.13+ also when a TLB flush is pending (b3a81d0841a95, race 5(d8): a CPU
    /// may still cache a writable+dirty entry for a PTE that now looks clean and read-only).
    /// </summary>
    async ValueTask<(int Err, Pte OrigPte)> WriteProtectPage(Vma vma, ulong addr, long page)
    {
        var k = _k;
        var mm = vma.Mm;
        using var _ = k.S.Current.Enter("write_protect_page");
        int err = EFAULT;
        Pte orig = Pte.None;
        bool bracket = Bracketed;
        var range = new MmuNotifierRange(mm, addr, addr + PageSize, MmuNotifyEvent.Clear);
        if (bracket) await mm.Notifiers.InvalidateRangeStart(range);
        int t = mm.PteTable(addr);
        if (t != 0)
        {
            await mm.LockPtl(t);
            var pte = await mm.PtepGet(t, addr);
            if (pte.Present && pte.Pfn == page) // page_vma_mapped_walk
            {
                bool trigger = pte.Writable ||
                               (k.Era.Has(Feature.KsmWriteProtectDirty) && pte.Dirty) ||
                               (k.Era.Has(Feature.KsmTlbFlushPending) && !k.Mutated(Mutation.KsmIgnoreTlbFlushPending) &&
                                mm.TlbFlushPending > 0);
                if (trigger)
                {
                    var entry = await ClearFlush(mm, t, addr);
                    await k.S.Point(PointKind.Counter, addr);
                    ref var f = ref k.Mem[page];
                    int swapped = f.Has(PageFlags.Swapcache) ? 1 : 0;
                    int extra = k.Era.Has(Feature.KsmMapcountPlusTwo) ? 2 : 1;
                    if (!k.Mutated(Mutation.KsmSkipRefcountCheck) && f.MapCount + extra + swapped != f.RefCount)
                    {
                        // Someone else (O_DIRECT, a vCPU fault's GUP) holds the page: put the PTE back, retry later.
                        if (k.Era.Has(Feature.KsmRestoreNotify)) await Tlb.SetPteAtNotify(mm, t, addr, entry);
                        else await mm.SetPte(t, addr, entry);
                        k.Stats.Inc(Stat.KsmMergeFailures);
                        goto unlock;
                    }
                    f.Clear(PageFlags.AnonExclusive); // folio_try_share_anon_rmap_pte
                    if (k.Era.Has(Feature.KsmWriteProtectDirty))
                    {
                        if (entry.Dirty) Folio.MarkDirty(k, page);
                        entry = entry.Mkclean();
                    }
                    entry = entry.Wrprotect();
                    await Tlb.SetPteAtNotify(mm, t, addr, entry);
                }
                orig = await mm.PtepGet(t, addr);
                err = 0;
            }
        unlock:
            await mm.UnlockPtl(t);
        }
        if (bracket) await mm.Notifiers.InvalidateRangeEnd(range);
        return (err, orig);
    }

    /// <summary>
    /// replace_page: point the PTE at <paramref name="addr"/> from <paramref name="page"/> to the KSM page
    /// <paramref name="kpage"/> (read-only), or to the zero page (special, marked dirty where ksm_zero_pages is counted),
    /// if it still equals <paramref name="origPte"/> (pte_same). Clear+flush, set_pte_at_notify (plain set_pte_at from
    /// 6.10), move the rmap and drop the old page's mapping reference; start/end CLEAR from 3.7.
    /// </summary>
    async ValueTask<int> ReplacePage(Vma vma, ulong addr, long page, long kpage, Pte origPte)
    {
        var k = _k;
        var mm = vma.Mm;
        using var _ = k.S.Current.Enter("replace_page");
        var pmd = mm.PeekPmd(addr);
        if (!pmd.Present || pmd.Huge) return EFAULT;
        int err = EFAULT;
        bool bracket = Bracketed;
        var range = new MmuNotifierRange(mm, addr, addr + PageSize, MmuNotifyEvent.Clear);
        if (bracket) await mm.Notifiers.InvalidateRangeStart(range);
        int t = mm.PteTable(addr);
        if (t != 0)
        {
            await mm.LockPtl(t);
            var cur = await mm.PtepGet(t, addr);
            bool same = cur == origPte;
            if (!same && k.Mutated(Mutation.KsmReplaceWithoutPteSame) && cur.Present) same = true;
            if (same)
            {
                long oldPfn = cur.Pfn; // == page unless the pte_same check was skipped
                bool oldIsPage = oldPfn != PhysMem.ZeroPfn && !cur.Special;
                Pte newPte;
                if (kpage != PhysMem.ZeroPfn)
                {
                    Folio.Get(k, kpage);
                    Folio.AddAnonRmap(k, kpage, mm);
                    newPte = Pte.Make(kpage, writable: false, dirty: false, accessed: true);
                }
                else
                {
                    newPte = Pte.Make(PhysMem.ZeroPfn, writable: false, dirty: k.Era.Has(Feature.KsmZeroPagesCounter), special: true);
                }
                await ClearFlush(mm, t, addr);
                if (oldIsPage) k.Checker.OnKsmReplacePage(mm, addr, oldPfn, kpage);
                await Tlb.SetPteAtNotify(mm, t, addr, newPte);
                if (oldIsPage)
                {
                    Folio.RemoveRmap(k, oldPfn, mm); // page_remove_rmap (dec_mm_counter for the zero page included)
                    Folio.Put(k, oldPfn);
                }
                k.Stats.Inc(Stat.KsmMerges);
                err = 0;
            }
            await mm.UnlockPtl(t);
        }
        if (bracket) await mm.Notifiers.InvalidateRangeEnd(range);
        return err;
    }

    /// <summary>
    /// try_to_merge_one_page: write-protect <paramref name="page"/> and then either make it a KSM page
    /// (<paramref name="kpage"/> = -1: set_page_stable_node(page, NULL), mark dirty) or, if the contents are identical,
    /// replace it by <paramref name="kpage"/>. 2.6.32 takes its own reference on both pages (hence its +2 check).
    /// A page of a THP is split out of it first (split_huge_page under folio_trylock; 2.6.38+): when the split fails
    /// (another reference, or the folio lock is taken) the merge fails and the scan comes back to the page later.
    /// </summary>
    async ValueTask<int> TryToMergeOnePage(Vma vma, ulong addr, long page, long kpage)
    {
        var k = _k;
        using var _ = k.S.Current.Enter("try_to_merge_one_page");
        if (page == kpage) return 0; // ksm page forked
        long head = k.Mem.FolioOf(page);
        if (!k.Mem[head].Has(PageFlags.Anon)) return EFAULT;
        if (k.Mem.IsLarge(head))
        {
            if (!await FolioLock.TryLock(k, head)) return EFAULT;
            long partner = _splitPartner >= 0 && k.Mem.FolioOf(_splitPartner) == head ? _splitPartner : -1;
            if (await HugeMemory.SplitHugePage(k, head, page, partner) != 0)
            {
                await FolioLock.Unlock(k, head);
                return EFAULT;
            }
            int e = await TryToMergeSmallPage(vma, addr, page, kpage);
            await FolioLock.Unlock(k, page); // split_huge_page left the page we go on with locked
            return e;
        }
        return await TryToMergeSmallPage(vma, addr, page, kpage);
    }

    /// <summary>
    /// The page passed to try_to_merge_one_page (the caller's reference, set by try_to_merge_two_pages, when both pages of a
    /// merge belong to one THP: see <see cref="Mm.HugeMemory.SplitHugePage"/>'s partner).
    /// </summary>
    long _splitPartner = -1;

    /// <summary>try_to_merge_one_page from write_protect_page on, for a page that is its own folio.</summary>
    async ValueTask<int> TryToMergeSmallPage(Vma vma, ulong addr, long page, long kpage)
    {
        var k = _k;
        bool ownRefs = k.Era.Has(Feature.KsmMapcountPlusTwo);
        if (ownRefs)
        {
            Folio.Get(k, page);
            if (kpage > 0) Folio.Get(k, kpage);
        }
        int err = EFAULT;
        var (wp, orig) = await WriteProtectPage(vma, addr, page);
        if (wp == 0)
        {
            if (kpage < 0)
            {
                ref var pf = ref k.Mem[page];
                pf.Set(PageFlags.Ksm); // PageAnon + PageKsm, stable node filled in by stable_tree_insert
                pf.Index = 0;
                pf.Clear(PageFlags.AnonExclusive);
                if (!pf.Has(PageFlags.Dirty)) Folio.MarkDirty(k, page);
                err = 0;
            }
            else if (await ReadPage(page) == await ReadPage(kpage))
                err = await ReplacePage(vma, addr, page, kpage, orig);
        }
        if (ownRefs)
        {
            Folio.Put(k, page);
            if (kpage > 0) Folio.Put(k, kpage);
        }
        return err;
    }

    /// <summary>
    /// try_to_merge_with_ksm_page: under the item's mmap_lock, merge its page into <paramref name="kpage"/> (or make it
    /// the KSM page when -1); on success take it out of the unstable tree and remember the anon_vma for rmap.
    /// </summary>
    async ValueTask<int> TryToMergeWithKsmPage(RmapItem item, long page, long kpage)
    {
        var k = _k;
        var mm = item.Mm;
        using var _ = k.S.Current.Enter("try_to_merge_with_ksm_page");
        int err = EFAULT;
        await mm.MmapLock.ReadLock();
        var vma = FindMergeableVma(mm, item.Address);
        if (vma != null)
        {
            err = await TryToMergeOnePage(vma, item.Address, page, kpage);
            if (err == 0)
            {
                RemoveRmapItemFromTree(item);
                item.AnonVma = vma.AnonVma;
            }
        }
        await mm.MmapLock.ReadUnlock();
        if (k.Trace.On)
            k.Trace.Event("ksm_merge_with_ksm_page",
                $"{(kpage >= 0 ? "ksm " : "")}pfn {(kpage >= 0 ? kpage : page)} rmap_item {item.FakePointer:x16} mm {FakeMmPointer(mm):x16} error {err}");
        return err;
    }

    /// <summary>
    /// try_to_merge_with_zero_page: with use_zero_pages, a page whose checksum is the zero page's is replaced by the
    /// shared zero page. 0 when merged (or the VMA is gone), -EFAULT otherwise.
    /// </summary>
    async ValueTask<int> TryToMergeWithZeroPage(RmapItem item, long page)
    {
        var k = _k;
        if (!UseZeroPages || !k.Era.Has(Feature.KsmUseZeroPages) || item.OldChecksum != ZeroChecksum) return EFAULT;
        using var _ = k.S.Current.Enter("try_to_merge_with_zero_page");
        var mm = item.Mm;
        int err = 0;
        await mm.MmapLock.ReadLock();
        var vma = FindMergeableVma(mm, item.Address);
        if (vma != null)
        {
            err = await TryToMergeOnePage(vma, item.Address, page, PhysMem.ZeroPfn);
            if (k.Trace.On)
                k.Trace.Event("ksm_merge_one_page",
                    $"ksm pfn {PhysMem.ZeroPfn} rmap_item {item.FakePointer:x16} mm {FakeMmPointer(mm):x16} error {err}");
        }
        await mm.MmapLock.ReadUnlock();
        return err;
    }

    /// <summary>
    /// try_to_merge_two_pages: merge the scanned page and the unstable-tree page into one KSM page. From 2.6.33 the
    /// scanned page itself becomes the KSM page; 2.6.32 allocates a new kpage, copies, and replaces both pages by it
    /// (<c>Allocated</c>: the caller drops the allocation's reference). If the second merge fails the first is broken.
    /// Returns the KSM page, or -1.
    /// </summary>
    async ValueTask<(long KPage, bool Allocated)> TryToMergeTwoPages(RmapItem item, long page, RmapItem treeItem, long treePage)
    {
        var k = _k;
        using var _ = k.S.Current.Enter("try_to_merge_two_pages");
        if (k.Era.Has(Feature.KsmAllocKpage))
        {
            await k.S.Point(PointKind.Alloc);
            long kpage = k.Mem.AllocPage();
            if (kpage < 0) return (-1, false);
            ref var kf = ref k.Mem[kpage];
            kf.Contents = k.Mem[page].Contents;
            kf.Set(PageFlags.Anon | PageFlags.Ksm | PageFlags.Dirty); // set_page_stable_node(kpage, NULL)
            k.S.Charge(CostKind.CopyPage);
            int e1 = await TryToMergeWithKsmPage(item, page, kpage);
            if (e1 == 0)
            {
                int e2 = await TryToMergeWithKsmPage(treeItem, treePage, kpage);
                if (e2 == 0) return (kpage, true);
                await BreakCow(item);
            }
            Folio.Put(k, kpage);
            return (-1, false);
        }
        _splitPartner = treePage;
        int err = await TryToMergeWithKsmPage(item, page, -1);
        _splitPartner = -1;
        if (err == 0)
        {
            err = await TryToMergeWithKsmPage(treeItem, treePage, page);
            if (err != 0) await BreakCow(item); // a KSM page with only one PTE: break it
        }
        return (err == 0 ? page : -1, false);
    }

    // ------------------------------------------------------------------ unmerge

    /// <summary>break_cow: undo a merge at an rmap_item's address (break_ksm under mmap_lock for read).</summary>
    async ValueTask BreakCow(RmapItem item)
    {
        var mm = item.Mm;
        using var _ = _k.S.Current.Enter("break_cow");
        item.AnonVma = null; // put_anon_vma
        await mm.MmapLock.ReadLock();
        var vma = FindMergeableVma(mm, item.Address);
        if (vma != null) await BreakKsm(vma, item.Address);
        await mm.MmapLock.ReadUnlock();
    }

    /// <summary>
    /// break_ksm: while <paramref name="addr"/> maps a KSM page (or a KSM-placed zero page), fault it with
    /// FAULT_FLAG_UNSHARE|FAULT_FLAG_REMOTE: the COW path (wp_page_copy) gives the mm a private copy and fires the
    /// notifiers. Caller holds mmap_lock. 0, or -ENOMEM.
    /// </summary>
    public async ValueTask<int> BreakKsm(Vma vma, ulong addr)
    {
        var k = _k;
        var mm = vma.Mm;
        using var _ = k.S.Current.Enter("break_ksm");
        for (int attempt = 0; attempt < 64; attempt++)
        {
            var r = await Gup.FollowPage(mm, null, addr, GupFlags.Get | GupFlags.FollowProtNone);
            if (!r.Ok) return 0;
            bool ksm;
            if (r.Pfn == PhysMem.ZeroPfn)
            {
                int t = mm.PteTable(addr);
                ksm = t != 0 && IsKsmZeroPte(await mm.PtepGet(t, addr));
            }
            else ksm = k.Mem[r.Pfn].Has(PageFlags.Ksm);
            if (!ksm)
            {
                Folio.Put(k, r.Pfn);
                return 0;
            }
            // 6.2+ FAULT_FLAG_UNSHARE; before, a fake FAULT_FLAG_WRITE fault (handle_mm_fault checks no VMA permission,
            // hence Force in the model). Neither has FAULT_FLAG_ALLOW_RETRY: a uffd-wp page makes the fake write fault
            // SIGBUS and the page stays merged (5f5f2ddd189d).
            var ff = k.Era.Has(Eras.Feature.KsmBreakUnshare) ? FaultFlags.Unshare : FaultFlags.Write | FaultFlags.Force;
            var f = await Memory.HandleMmFault(mm, addr, ff | FaultFlags.Remote);
            Folio.Put(k, r.Pfn);
            if (f == VmFault.Oom) return -12;
            if (f is VmFault.SigSegv or VmFault.SigBus) return 0;
            if (f == VmFault.Ok) k.Stats.Inc(Stat.KsmUnmerges);
        }
        k.S.Fail(Invariants.Liveness, $"break_ksm(0x{addr:x}) kept finding a KSM page", addr);
        return 0;
    }

    /// <summary>unmerge_ksm_pages: break_ksm every page of [start, end) of <paramref name="vma"/>. Caller holds mmap_lock.</summary>
    public async ValueTask<int> UnmergeKsmPages(Vma vma, ulong start, ulong end)
    {
        using var _ = _k.S.Current.Enter("unmerge_ksm_pages");
        for (ulong addr = start; addr < end; addr += PageSize)
        {
            if (KsmTestExit(vma.Mm)) break;
            int err = await BreakKsm(vma, addr);
            if (err != 0) return err;
        }
        return 0;
    }

    /// <summary>The fake kernel pointer printed for an mm in trace events.</summary>
    static ulong FakeMmPointer(MmStruct mm) => 0xffff888100000000UL + (ulong)mm.Id * 0x400;
}
