using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// The LRU isolation state (PageLRU cleared by isolate_lru_folio): a folio is isolated by at most one of reclaim or
/// migration at a time; the other backs off, as the kernel's isolation does.
/// </summary>
sealed class LruIsolation
{
    readonly HashSet<long> _isolated = [];

    public bool TryIsolate(long head) => _isolated.Add(head);

    public void Putback(long head) => _isolated.Remove(head);

    public bool IsIsolated(long head) => _isolated.Contains(head);
}

/// <summary>mm/vmscan.c: reclaim of one folio.</summary>
public static class Vmscan
{
    /// <summary>
    /// The folio on an LRU list that <paramref name="pfn"/> belongs to (its head), or -1: anon, KSM and page-cache folios;
    /// not the zero page, free or device frames, hugetlb folios (never on the LRU) or a page-cache folio no longer in its
    /// file. Unevictable folios (guest_memfd's) are on the LRU too, on its unevictable list. Isolation
    /// (<see cref="IsIsolated"/>) is the caller's to check: folio_test_lru where the kernel tests it.
    /// </summary>
    internal static long LruFolioOf(Kernel k, long pfn)
    {
        if (!k.Mem.IsValidPfn(pfn) || pfn == PhysMem.ZeroPfn) return -1;
        long head = k.Mem.FolioOf(pfn);
        ref var f = ref k.Mem[head];
        if (f.Has(PageFlags.Free) || f.Has(PageFlags.Zero) || f.RefCount == 0) return -1;
        if (Hugetlb.HugetlbPages.IsHugetlbFolio(k, head)) return -1;
        if (f.Has(PageFlags.Anon) || f.Has(PageFlags.Ksm)) return head;
        return k.AddressSpaceById(f.AnonRoot) is { } file && file.Pages.TryGetValue(f.Index, out long c) && c == head ? head : -1;
    }

    /// <summary>!folio_test_lru: reclaim or migration holds the folio isolated.</summary>
    internal static bool IsIsolated(Kernel k, long head) =>
        k.Subsystems.TryGetValue(typeof(LruIsolation), out var o) && ((LruIsolation)o).IsIsolated(head);

    /// <summary>isolate_lru_folio: take the folio off the LRU (false if reclaim or migration already holds it).</summary>
    internal static bool IsolateLruFolio(Kernel k, long head) => k.GetSubsystem(_ => new LruIsolation()).TryIsolate(head);

    /// <summary>folio_putback_lru (or the end of the isolation when the folio is freed).</summary>
    internal static void PutbackLru(Kernel k, long head) => k.GetSubsystem(_ => new LruIsolation()).Putback(head);

    /// <summary>
    /// shrink_folio_list for one anonymous folio: isolate it (a reference), add_to_swap (one slot per sub-page, the
    /// folio marked dirty) unless it is lazyfree, try_to_unmap through rmap, then pageout (folio_clear_dirty_for_io and
    /// write the contents to the slots), drop the swap cache and the isolation reference: the folio is freed after
    /// try_to_unmap's invalidations ended. A lazyfree folio is discarded only if every mapping was still clean.
    /// Returns false (folio kept) if some mapping could not be removed. KSM folios are not reclaimed here; page-cache
    /// folios go to <see cref="ShrinkFileFolio"/>.
    /// By default the folio is taken as already found cold (folio_check_references passed on an earlier LRU pass) and
    /// try_to_unmap ignores access; with <paramref name="checkReferences"/> the whole path runs: folio_referenced first
    /// (a referenced folio is kept, and <paramref name="referenced"/> hears of it: the multi-gen LRU puts it back as
    /// PG_active), then try_to_unmap without TTU_IGNORE_ACCESS where the era has the young check.
    /// </summary>
    public static async ValueTask<bool> ShrinkFolio(Kernel k, long pfn, bool checkReferences = false, Action<long>? referenced = null)
    {
        using var _ = k.S.Current.Enter("shrink_folio_list");
        await k.S.Point(PointKind.Counter, (ulong)pfn);
        long head = k.Mem.FolioOf(pfn);
        var f = k.Mem[head];
        if (head == PhysMem.ZeroPfn || f.Has(PageFlags.Free)) return false;
        if (!f.Has(PageFlags.Anon) && !f.Has(PageFlags.Ksm))
            return LruFolioOf(k, head) == head && k.AddressSpaceById(f.AnonRoot) is { } file && await ShrinkFileFolio(k, head, file, checkReferences, referenced);
        int n = k.Mem.FolioNr(head);
        if (!await IsolateForReclaim(k, head, checkReferences, referenced)) return false;
        bool lazy = k.Mem[head].Has(PageFlags.Lazyfree);
        int[]? slots = null;
        if (!lazy)
        {
            // add_to_swap
            slots = new int[n];
            for (int i = 0; i < n; i++) slots[i] = k.Swap.Store(k.Mem[head + i].Contents);
            k.Mem[head].Set(PageFlags.Swapcache);
            Folio.MarkDirty(k, head);
        }
        var st = new TtuState(head, n, migrate: false) { SwapSlots = slots, CheckAccess = checkReferences };
        await Rmap.TryToUnmap(k, st);
        bool unmapped = !st.Failed && k.Mem.FolioMapCount(head) == 0;
        if (unmapped && !lazy)
        {
            // pageout: folio_clear_dirty_for_io (nothing is mapped any more), then swap_writepage.
            if (Folio.TestClearDirty(k, head, "pageout"))
                for (int i = 0; i < n; i++) k.Swap.Write(slots![i], k.Mem[head + i].Contents);
        }
        if (slots != null)
        {
            // __remove_mapping / delete_from_swap_cache: the swap cache's use of each slot goes away.
            foreach (var s in slots) k.Swap.Free(s);
            k.Mem[head].Clear(PageFlags.Swapcache);
        }
        await k.S.Point(PointKind.Free, (ulong)head);
        PutbackLru(k, head);
        Folio.Put(k, head);
        if (unmapped) k.Stats.Inc(Stat.PagesReclaimed, n);
        return unmapped;
    }

    /// <summary>
    /// isolate_lru_folio (taking the isolation reference), then, with <paramref name="checkReferences"/>,
    /// folio_check_references: a referenced folio goes back to the LRU (FOLIOREF_ACTIVATE / KEEP). True: reclaim goes on.
    /// </summary>
    static async ValueTask<bool> IsolateForReclaim(Kernel k, long head, bool checkReferences, Action<long>? referenced = null)
    {
        if (!IsolateLruFolio(k, head)) return false;
        Folio.Get(k, head); // the isolation reference
        if (!checkReferences || await Rmap.FolioReferenced(k, head) == 0) return true;
        PutbackLru(k, head);
        Folio.Put(k, head);
        referenced?.Invoke(head);
        return false;
    }

    /// <summary>
    /// shrink_folio_list for a small page-cache folio: isolate it, folio_referenced when asked (a referenced folio is
    /// kept), try_to_unmap (each PTE becomes none, or a uffd-wp marker), pageout of a dirty folio (folio_clear_dirty_for_io,
    /// then writepage to the file, or shmem_writeout to swap: both are the backing store here), then __remove_mapping:
    /// with only the isolation's and the page cache's references left (folio_ref_freeze(folio, 1 + nr)) the index
    /// leaves the page cache, its contents go to the backing store, and the folio is freed after try_to_unmap's
    /// invalidations ended; a later fault reads the contents back (<see cref="Filemap.FilemapGetFolio"/>). A pin or any
    /// other reference keeps the folio in the cache, unmapped.
    /// </summary>
    /// <remarks>Simplifications: writeback completes at once, so the folio is freed in the same pass (the kernel frees a
    /// folio it just started writing on a later pass); a large page-cache folio (a shmem THP) is not reclaimed (the kernel
    /// splits it in shmem_writeout); guest_memfd folios are unevictable.</remarks>
    static async ValueTask<bool> ShrinkFileFolio(Kernel k, long head, AddressSpace file, bool checkReferences, Action<long>? referenced)
    {
        if (k.Mem.IsLarge(head) || file.Kind == FileKind.GuestMemfd) return false;
        if (!await IsolateForReclaim(k, head, checkReferences, referenced)) return false;
        var st = new TtuState(head, 1, migrate: false) { CheckAccess = checkReferences };
        await Rmap.TryToUnmap(k, st);
        bool freed = false;
        if (!st.Failed && k.Mem.FolioMapCount(head) == 0)
        {
            if (Folio.TestClearDirty(k, head, "pageout")) k.Stats.Inc(Stat.PagesCleaned); // pageout: the write to disk or swap
            await k.S.Point(PointKind.Counter, (ulong)head); // __remove_mapping: folio_ref_freeze under the mapping's lock
            ulong index = k.Mem[head].Index;
            if (k.Mem[head].RefCount == 2 && file.Pages.TryGetValue(index, out long cached) && cached == head)
            {
                file.Pages.Remove(index);
                file.Backing[index] = k.Mem[head].Contents;
                Folio.Put(k, head); // the page cache's reference
                freed = true;
            }
        }
        await k.S.Point(PointKind.Free, (ulong)head);
        PutbackLru(k, head);
        Folio.Put(k, head);
        if (freed) k.Stats.Inc(Stat.PagesReclaimed);
        return freed;
    }
}
