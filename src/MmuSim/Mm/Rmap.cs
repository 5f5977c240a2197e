using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// State of one try_to_unmap / try_to_migrate over a folio's mappings (the TTU flags and what reclaim prepared).
/// </summary>
public sealed class TtuState(long head, int pages, bool migrate)
{
    public long Head { get; } = head;
    public int Pages { get; } = pages;
    /// <summary>try_to_migrate: install migration entries instead of swap entries.</summary>
    public bool Migrate { get; } = migrate;
    /// <summary>
    /// TTU_SPLIT_HUGE_PMD for a migration: split_huge_page's unmap_folio passes it, migrate_pages does not (from 4.14 a
    /// PMD mapping then becomes a PMD migration entry). Reclaim always splits.
    /// </summary>
    public bool SplitHugePmd { get; init; }
    /// <summary>Swap slot per sub-page, allocated by add_to_swap (null for lazyfree folios and migration).</summary>
    public int[]? SwapSlots { get; init; }
    /// <summary>A mapping could not be removed (a lazyfree folio was redirtied, or a young mapping kept it).</summary>
    public bool Failed { get; internal set; }
    /// <summary>
    /// Reclaim without TTU_IGNORE_ACCESS: try_to_unmap_one keeps a mapping that ptep_clear_flush_young_notify finds
    /// young (until 5.11, <see cref="Eras.Feature.TtuYoungCheck"/>). Migration always ignores access.
    /// </summary>
    public bool CheckAccess { get; init; }
}

/// <summary>
/// mm/rmap.c for anonymous folios: the rmap walk over a folio's anon_vma family and the per-mapping operations of
/// reclaim (try_to_unmap_one), aging (folio_referenced_one), writeback cleaning (page_mkclean_one) and migration
/// (try_to_migrate_one), with the notifier placement of each era (kernel-facts §4.8, §5(a), §5(b)).
/// </summary>
/// <remarks>
/// <para>Walk: a folio records its family (<see cref="Frame.AnonRoot"/>) and index; every member mm's VMAs of that
/// family are visited under the family's lock (anon_vma_lock_read); the part of the folio each VMA covers is found
/// from vm_pgoff (<see cref="Vma.AddressOf"/>); the per-VMA operation checks that the PTE/PMD really maps the folio
/// (page_vma_mapped_walk). KSM folios are walked by KSM's rmap (Ksmd.RmapWalkKsm), as rmap_walk does.</para>
/// <para>Era placement: up to 3.5 the PTE is cleared with ptep_clear_flush_notify (invalidate_page under the PTL);
/// 3.6-4.12 ptep_clear_flush under the PTL and invalidate_page(address) after pte_unmap_unlock (race §5(a)); a
/// PMD-mapped THP before 4.13 is handled in one go with one invalidate_page for its first address only (§5(b)).
/// From 4.13 start/end span the whole part of the folio the VMA maps (2 MiB for a THP) and the PTE clear calls
/// invalidate_range under the PTL (3.19-6.5); a PMD-mapped THP is split first (TTU_SPLIT_HUGE_PMD).</para>
/// </remarks>
public static class Rmap
{
    /// <summary>rmap_one: operate on the folio's sub-pages [first, first+count) mapped from <c>addr</c> in <c>vma</c>; false stops the walk.</summary>
    public delegate ValueTask<bool> RmapOne(Vma vma, ulong addr, int first, int count);

    /// <summary>rmap_walk_anon: call <paramref name="one"/> for every VMA of the folio's family that covers part of it.</summary>
    public static async ValueTask RmapWalk(Kernel k, long head, RmapOne one, Func<bool>? done = null)
    {
        using var _ = k.S.Current.Enter("rmap_walk_anon");
        if (head == PhysMem.ZeroPfn) return;
        var f = k.Mem[head];
        if (f.Has(PageFlags.Ksm) && !f.Has(PageFlags.Free))
        {
            // rmap_walk -> rmap_walk_ksm: KSM pages are found through their stable node's rmap_items.
            await Ksm.Ksmd.RmapWalkKsm(k, head, (vma, addr) => one(vma, addr, 0, 1), done);
            return;
        }
        if (f.AnonRoot == 0 || f.Has(PageFlags.Free)) return;
        if (!f.Has(PageFlags.Anon))
        {
            await RmapWalkFile(k, k.AddressSpaceById(f.AnonRoot), f.Index, (ulong)k.Mem.FolioNr(head), one, done);
            return;
        }
        var av = k.AnonVmaById(f.AnonRoot);
        ulong index = f.Index;
        ulong n = (ulong)k.Mem.FolioNr(head);
        await av.Lock.ReadLock();
        try
        {
            for (int m = 0; m < av.Members.Count; m++)
            {
                var mm = av.Members[m];
                for (int i = 0; i < mm.Vmas.Count; i++)
                {
                    var vma = mm.Vmas[i];
                    if (vma.AnonVma != av) continue;
                    ulong lo = Math.Max(index, vma.PgOff), hi = Math.Min(index + n, vma.PgOff + vma.Pages);
                    if (lo >= hi) continue;
                    if (!await one(vma, vma.AddressOf(lo)!.Value, (int)(lo - index), (int)(hi - lo))) return;
                    if (done != null && done()) return;
                }
            }
        }
        finally
        {
            await av.Lock.ReadUnlock();
        }
    }

    /// <summary>
    /// rmap_walk_file: every VMA of the file's i_mmap whose pgoff range covers [index, index + n), shared and private
    /// mappings alike (a private mapping maps the cached page until it is COWed). i_mmap_rwsem is folded into the mms'
    /// mmap_lock; the walk reads the list after one scheduling point.
    /// </summary>
    static async ValueTask RmapWalkFile(Kernel k, AddressSpace file, ulong index, ulong n, RmapOne one, Func<bool>? done)
    {
        using var _ = k.S.Current.Enter("rmap_walk_file");
        await k.S.Point(PointKind.LockAcquire, index);
        for (int i = 0; i < file.Mappings.Count; i++)
        {
            var vma = file.Mappings[i];
            ulong lo = Math.Max(index, vma.PgOff), hi = Math.Min(index + n, vma.PgOff + vma.Pages);
            if (lo >= hi) continue;
            if (!await one(vma, vma.AddressOf(lo)!.Value, (int)(lo - index), (int)(hi - lo))) return;
            if (done != null && done()) return;
        }
    }

    static bool MapsHuge(MmStruct mm, ulong addr, long head, int first, int count)
    {
        if (first != 0 || count != PhysMem.HugePages || (addr & ~MmStruct.PmdMask) != 0) return false;
        var pmd = mm.PeekPmd(addr);
        return pmd.Present && pmd.Huge && pmd.Pfn == head;
    }

    // ------------------------------------------------------------------ reclaim and migration

    /// <summary>try_to_unmap: remove every mapping of the folio (reclaim). Stops once the folio is unmapped or a mapping failed.</summary>
    public static ValueTask TryToUnmap(Kernel k, TtuState st) =>
        RmapWalk(k, st.Head, (vma, addr, first, count) => TryToUnmapOne(vma, addr, first, count, st),
            () => st.Failed || k.Mem.FolioMapCount(st.Head) == 0);

    /// <summary>try_to_migrate: replace every mapping of the folio by a migration entry.</summary>
    public static ValueTask TryToMigrate(Kernel k, TtuState st) =>
        RmapWalk(k, st.Head, (vma, addr, first, count) => TryToMigrateOne(vma, addr, first, count, st),
            () => k.Mem.FolioMapCount(st.Head) == 0);

    /// <summary>
    /// try_to_unmap_one: unmap the folio's sub-pages this VMA maps, installing swap entries (or discarding a clean
    /// lazyfree folio with no extra references; a redirtied one is remapped and the walk fails). Notifies per era.
    /// </summary>
    public static ValueTask<bool> TryToUnmapOne(Vma vma, ulong addr, int first, int count, TtuState st) =>
        UnmapOne(vma, addr, first, count, st, "try_to_unmap_one");

    /// <summary>try_to_migrate_one: like try_to_unmap_one with migration entries (start/end CLEAR from 4.13).</summary>
    public static ValueTask<bool> TryToMigrateOne(Vma vma, ulong addr, int first, int count, TtuState st) =>
        UnmapOne(vma, addr, first, count, st, "try_to_migrate_one");

    static async ValueTask<bool> UnmapOne(Vma vma, ulong addr, int first, int count, TtuState st, string fn)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter(fn);
        bool rangeNotify = k.Era.Has(Feature.RmapRangeNotify);
        if (MapsHuge(mm, addr, st.Head, first, count))
        {
            if (!rangeNotify)
            {
                var r = await UnmapHugePmdLegacy(vma, addr, st);
                if (r.HasValue) return r.Value; // else split meanwhile: handle the PTEs below
            }
            else if (st.Migrate && !st.SplitHugePmd && k.Era.Has(Feature.ThpMigration) && k.Mem[st.Head].Has(PageFlags.Anon))
            {
                // try_to_migrate_one's PMD case: CLEAR over the folio, set_pmd_migration_entry inside it.
                var pmdRange = new MmuNotifierRange(mm, addr, addr + MmStruct.PmdSize, MmuNotifyEvent.Clear);
                await mm.Notifiers.InvalidateRangeStart(pmdRange);
                bool done = await HugeMemory.SetPmdMigrationEntry(vma, addr, st.Head);
                await mm.Notifiers.InvalidateRangeEnd(pmdRange);
                if (done) return true;
            }
            else await HugeMemory.SplitHugePmd(vma, addr, notify: true, keepFilePtes: st.Migrate); // TTU_SPLIT_HUGE_PMD; a file PMD migrates as PTEs (no file PMD migration entries in the model)
        }
        MmuNotifierRange? range = null;
        if (rangeNotify)
        {
            range = new MmuNotifierRange(mm, addr, addr + (ulong)count * MmStruct.PageSize, MmuNotifyEvent.Clear);
            await mm.Notifiers.InvalidateRangeStart(range);
        }
        bool ok = true;
        for (int i = 0; i < count; i++)
        {
            ulong a = addr + (ulong)i * MmStruct.PageSize;
            long pfn = st.Head + first + i;
            var peek = mm.PeekPte(a);
            if (!peek.Present || peek.Pfn != pfn) continue;
            int t = mm.PteTable(a);
            await mm.LockPtl(t);
            var pte = await mm.PtepGet(t, a);
            if (!pte.Present || pte.Pfn != pfn)
            {
                await mm.UnlockPtl(t);
                continue;
            }
            // !(flags & TTU_IGNORE_ACCESS): a mapping used since folio_referenced looked keeps the folio (SWAP_FAIL).
            // From 4.13 this runs inside the start/end above, after the secondaries zapped theirs (§5(d7) part 1).
            if (st.CheckAccess && !st.Migrate && k.Era.Has(Feature.TtuYoungCheck) && await Tlb.PtepClearFlushYoungNotify(mm, t, a))
            {
                await mm.UnlockPtl(t);
                st.Failed = true;
                ok = false;
                break;
            }
            // Nuke the page table entry (era placement of the notification: see the class remarks).
            var old = rangeNotify ? await Tlb.PtepClearFlushNotify(mm, t, a)
                : k.Era.Has(Feature.InvalidatePageUnderPtl) ? await Tlb.PtepClearFlushInvalidatePage(mm, t, a)
                : await Tlb.PtepClearFlush(mm, t, a);
            if (old.Dirty) Folio.MarkDirty(k, pfn);
            Pte entry;
            var h = k.Mem[st.Head];
            if (st.Migrate)
            {
                // folio_try_share_anon_rmap_pte: an exclusive anon page's exclusivity moves into the entry (restored by
                // remove_migration_pte); the RemoveRmap below clears the flag with the last mapping.
                bool exclusive = k.Mem[pfn].Has(PageFlags.AnonExclusive) && k.Mem[st.Head].Has(PageFlags.Anon);
                entry = Migrate.MakeMigrationEntry(k, old.Writable, pfn, old, exclusive);
            }
            else if (h.Has(PageFlags.Lazyfree))
            {
                // MADV_FREE: discard only if still clean and nobody but the mappings and reclaim holds it.
                if (h.RefCount == 1 + k.Mem.FolioMapCount(st.Head) && !h.Has(PageFlags.Dirty))
                {
                    k.Checker.OnFolioCleaned(pfn, 1, "lazyfree discard");
                    k.Stats.Inc(Stat.LazyfreeDiscarded);
                    entry = Pte.None;
                }
                else
                {
                    await mm.SetPte(t, a, old); // redirtied: remap, folio_set_swapbacked, fail
                    k.Mem[st.Head].Clear(PageFlags.Lazyfree);
                    st.Failed = true;
                    ok = false;
                    await mm.UnlockPtl(t);
                    break;
                }
            }
            else if (!h.Has(PageFlags.Anon))
            {
                // A page-cache page leaves no entry; a uffd-wp one in a VMA armed for it leaves a marker (5.19+:
                // pte_install_uffd_wp_if_needed, "so we don't lose the tracking info").
                entry = old.UffdWp && vma.FileUffdWpArmed ? Pte.Marker(uffdWp: true, poisoned: false) : Pte.None;
            }
            else
            {
                int slot = st.SwapSlots![first + i];
                k.Swap.Dup(slot);
                k.Swap.Write(slot, k.Mem[pfn].Contents);
                entry = Pte.SwapEntry(SwapType.Swap, slot).WithUffdWp(old.UffdWp).WithSoftDirty(old.SoftDirty); // pte_swp_mkuffd_wp, pte_swp_mksoft_dirty
            }
            if (!entry.IsNone) await mm.SetPte(t, a, entry);
            await k.S.Point(PointKind.Counter, a);
            Folio.RemoveRmap(k, pfn, mm);
            Folio.Put(k, pfn);
            await mm.UnlockPtl(t);
            if (k.Era.Has(Feature.InvalidatePageAfterPtl)) await mm.Notifiers.InvalidatePage(a);
        }
        if (range != null) await mm.Notifiers.InvalidateRangeEnd(range);
        return ok;
    }

    /// <summary>
    /// Before 4.13, a PMD-mapped THP: under the PMD lock the huge PMD is replaced by a PTE table of swap/migration
    /// entries in one step, and invalidate_page is sent for the first address only, after the lock (§5(b): a
    /// secondary that mapped the THP with 4 KiB entries keeps the other 511). Null: the PMD was split meanwhile.
    /// </summary>
    static async ValueTask<bool?> UnmapHugePmdLegacy(Vma vma, ulong haddr, TtuState st)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("try_to_unmap_one(pmd)");
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        if (!(pmd.Present && pmd.Huge && pmd.Pfn == st.Head))
        {
            await mm.UnlockPmd(haddr);
            return null;
        }
        if (pmd.Dirty) Folio.MarkDirty(k, st.Head);
        var h = k.Mem[st.Head];
        bool discard = false;
        if (!st.Migrate && h.Has(PageFlags.Lazyfree))
        {
            if (h.RefCount == 1 + k.Mem.FolioMapCount(st.Head) && !h.Has(PageFlags.Dirty))
            {
                k.Checker.OnFolioCleaned(st.Head, PhysMem.HugePages, "lazyfree discard");
                k.Stats.Inc(Stat.LazyfreeDiscarded, PhysMem.HugePages);
                discard = true;
            }
            else
            {
                k.Mem[st.Head].Clear(PageFlags.Lazyfree);
                st.Failed = true;
                await mm.UnlockPmd(haddr);
                return false;
            }
        }
        int t = k.PageTables.AllocTable();
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            long pfn = st.Head + i;
            Pte e;
            if (discard) e = Pte.None;
            else if (st.Migrate) e = Migrate.MakeMigrationEntry(k, pmd.Writable, pfn, pmd, exclusive: false);
            else
            {
                int slot = st.SwapSlots![i];
                k.Swap.Dup(slot);
                k.Swap.Write(slot, k.Mem[pfn].Contents);
                e = Pte.SwapEntry(SwapType.Swap, slot).WithUffdWp(pmd.UffdWp).WithSoftDirty(pmd.SoftDirty);
            }
            k.PageTables.Entry(t, i) = e.Raw;
        }
        await mm.SetPmd(haddr, Pte.Table(t)); // pmdp_huge_clear_flush + the entries, one step under the PMD lock
        await Tlb.FlushTlbRange(mm, haddr, haddr + MmStruct.PmdSize);
        await k.S.Point(PointKind.Counter, haddr);
        Folio.RemoveRmapPmd(k, st.Head, mm);
        Folio.Put(k, st.Head);
        await mm.UnlockPmd(haddr);
        if (k.Era.Has(Feature.InvalidatePageAfterPtl)) await mm.Notifiers.InvalidatePage(haddr);
        return true;
    }

    // ------------------------------------------------------------------ aging

    /// <summary>folio_referenced: how many mappings (primary or secondary) saw an access since the last aging.</summary>
    public static async ValueTask<int> FolioReferenced(Kernel k, long pfn)
    {
        long head = k.Mem.FolioOf(pfn);
        int referenced = 0;
        await RmapWalk(k, head, async (vma, addr, first, count) =>
        {
            referenced += await FolioReferencedOne(vma, addr, head, first, count);
            return true;
        });
        referenced = PageIdle.OnReferenced(k, head, referenced); // folio_clear_idle, folio_test_clear_young
        if (referenced > 0) k.Mem[head].Set(PageFlags.Referenced);
        return referenced;
    }

    /// <summary>
    /// folio_referenced_one: for each mapping, ptep/pmdp_clear_flush_young_notify under the PTL (PMD lock for a huge
    /// PMD, whose range is PMD_SIZE; before 4.0 the core passes one page).
    /// </summary>
    public static async ValueTask<int> FolioReferencedOne(Vma vma, ulong addr, long head, int first, int count)
    {
        using var _ = vma.Mm.Kernel.S.Current.Enter("folio_referenced_one");
        return await ClearYoungOne(vma, addr, head, first, count, flush: true);
    }

    /// <summary>
    /// The walk folio_referenced_one and page_idle_clear_pte_refs_one share: the huge PMD (PMD lock) or each PTE (PTL)
    /// still mapping the folio's pages is aged through ptep/pmdp_clear_flush_young_notify (<paramref name="flush"/>)
    /// or ptep/pmdp_clear_young_notify; returns how many mappings were young.
    /// </summary>
    internal static async ValueTask<int> ClearYoungOne(Vma vma, ulong addr, long head, int first, int count, bool flush)
    {
        var mm = vma.Mm;
        int referenced = 0;
        if (MapsHuge(mm, addr, head, first, count))
        {
            await mm.LockPmd(addr);
            var pmd = mm.PeekPmd(addr);
            bool huge = pmd.Present && pmd.Huge && pmd.Pfn == head;
            if (huge && await ClearYoung(mm, 0, addr, MmStruct.PmdSize, flush)) referenced++;
            await mm.UnlockPmd(addr);
            if (huge) return referenced; // else split meanwhile: age the PTEs
        }
        var lruGen = flush ? LruGen.IfEnabled(mm.Kernel) : null; // folio_referenced_one's lru_gen_enabled()
        for (int i = 0; i < count; i++)
        {
            ulong a = addr + (ulong)i * MmStruct.PageSize;
            var peek = mm.PeekPte(a);
            if (!peek.Present || peek.Pfn != head + first + i) continue;
            int t = mm.PteTable(a);
            await mm.LockPtl(t);
            var pte = await mm.PtepGet(t, a);
            if (pte.Present && pte.Pfn == head + first + i)
            {
                if (lruGen != null) referenced += await LruGenReferencedOne(lruGen, vma, t, a, pte);
                else if (await ClearYoung(mm, t, a, MmStruct.PageSize, flush)) referenced++;
            }
            await mm.UnlockPtl(t);
        }
        return referenced;
    }

    /// <summary>
    /// folio_referenced_one's PTE case with MGLRU on: 6.12+ lru_gen_look_around alone (its ptep_clear_young_notify, no
    /// flush); 6.1..6.11 the look-around for a PTE the primary marked young, then ptep_clear_flush_young_notify as without
    /// MGLRU (each counts a reference).
    /// </summary>
    static async ValueTask<int> LruGenReferencedOne(LruGen lruGen, Vma vma, int table, ulong addr, Pte pte)
    {
        var mm = vma.Mm;
        if (mm.Kernel.Era.Has(Feature.LruGenYoungNotify)) return await lruGen.LookAround(vma, table, addr) ? 1 : 0;
        int referenced = 0;
        if (pte.Accessed && await lruGen.LookAround(vma, table, addr)) referenced++;
        if (await ClearYoung(mm, table, addr, MmStruct.PageSize, flush: true)) referenced++;
        return referenced;
    }

    static ValueTask<bool> ClearYoung(MmStruct mm, int table, ulong addr, ulong size, bool flush) =>
        flush ? Tlb.PtepClearFlushYoungNotify(mm, table, addr, size) : Tlb.PtepClearYoungNotify(mm, table, addr, size);

    // ------------------------------------------------------------------ writeback cleaning

    /// <summary>folio_mkclean: write-protect and clean every mapping; returns how many were writable or dirty.</summary>
    public static async ValueTask<int> FolioMkclean(Kernel k, long pfn)
    {
        long head = k.Mem.FolioOf(pfn);
        int cleaned = 0;
        bool file = !k.Mem[head].Has(PageFlags.Anon);
        await RmapWalk(k, head, async (vma, addr, first, count) =>
        {
            // invalid_mkclean_vma: a page-cache page is cleaned in its shared mappings only (private ones map it read-only).
            if (!file || vma.Shared) cleaned += await PageMkcleanOne(vma, addr, head, first, count);
            return true;
        });
        return cleaned;
    }

    /// <summary>
    /// page_mkclean_one (page_vma_mkclean_one): write-protect and clean the PTEs (or the huge PMD) mapping the folio.
    /// Up to 4.12: invalidate_page(address) per cleaned PTE, under the PTL up to 3.5 and after it from 3.6 (only the
    /// first address for a huge PMD: §5(b)); 4.13+: start/end PROTECTION_PAGE over the whole part of the folio, and in
    /// 4.13-4.14 also invalidate_range under the PTL for each cleaned entry (later dropped: a downgrade needs none).
    /// </summary>
    public static async ValueTask<int> PageMkcleanOne(Vma vma, ulong addr, long head, int first, int count)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("page_mkclean_one");
        bool rangeNotify = k.Era.Has(Feature.RmapRangeNotify);
        bool ipUnder = k.Era.Has(Feature.InvalidatePageUnderPtl), ipAfter = k.Era.Has(Feature.InvalidatePageAfterPtl);
        bool irUnder = k.Era.Has(Feature.MkcleanInvalidateRange);
        MmuNotifierRange? range = null;
        if (rangeNotify)
        {
            range = new MmuNotifierRange(mm, addr, addr + (ulong)count * MmStruct.PageSize, MmuNotifyEvent.ProtectionPage);
            await mm.Notifiers.InvalidateRangeStart(range);
        }
        int cleaned = 0;
        bool huge = false;
        if (MapsHuge(mm, addr, head, first, count))
        {
            await mm.LockPmd(addr);
            var pmd = await mm.PmdpGet(addr);
            bool did = false;
            huge = pmd.Present && pmd.Huge && pmd.Pfn == head;
            if (huge && (pmd.Writable || pmd.Dirty))
            {
                // pmdp_invalidate + set_pmd_at in one step under the PMD lock, then the flush
                await mm.SetPmd(addr, pmd.Wrprotect().Mkclean());
                await Tlb.FlushTlbRange(mm, addr, addr + MmStruct.PmdSize);
                if (ipUnder) await mm.Notifiers.InvalidatePage(addr);
                if (irUnder) await mm.Notifiers.InvalidateRange(addr, addr + MmStruct.PmdSize);
                cleaned++;
                did = true;
            }
            await mm.UnlockPmd(addr);
            if (did && ipAfter) await mm.Notifiers.InvalidatePage(addr);
        }
        if (!huge)
        {
            for (int i = 0; i < count; i++)
            {
                ulong a = addr + (ulong)i * MmStruct.PageSize;
                long pfn = head + first + i;
                var peek = mm.PeekPte(a);
                if (!peek.Present || peek.Pfn != pfn || !(peek.Writable || peek.Dirty)) continue;
                int t = mm.PteTable(a);
                await mm.LockPtl(t);
                var pte = await mm.PtepGet(t, a);
                bool did = false;
                if (pte.Present && pte.Pfn == pfn && (pte.Writable || pte.Dirty))
                {
                    var old = ipUnder ? await Tlb.PtepClearFlushInvalidatePage(mm, t, a) : await Tlb.PtepClearFlush(mm, t, a);
                    await mm.SetPte(t, a, old.Wrprotect().Mkclean());
                    if (irUnder) await mm.Notifiers.InvalidateRange(a, a + MmStruct.PageSize);
                    cleaned++;
                    did = true;
                }
                await mm.UnlockPtl(t);
                if (did && ipAfter) await mm.Notifiers.InvalidatePage(a);
            }
        }
        if (range != null) await mm.Notifiers.InvalidateRangeEnd(range);
        return cleaned;
    }
}
