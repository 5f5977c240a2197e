using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// Folio reference and state helpers (include/linux/mm.h, mm/swap.c, mm/page-writeback.c). Every update is one step
/// behind a <c>Point(Counter)</c> by the caller where another CPU could race with it; these helpers themselves do not yield.
/// </summary>
public static class Folio
{
    /// <summary>folio_get.</summary>
    public static void Get(Kernel k, long pfn)
    {
        long head = k.Mem.FolioOf(pfn);
        if (head == PhysMem.ZeroPfn) return;
        ref var f = ref k.Mem[head];
        if (f.Has(PageFlags.Free)) throw new ModelException($"folio_get on free pfn 0x{head:x}");
        f.RefCount++;
    }

    /// <summary>folio_put: drop a reference; the last one frees the folio (the checker verifies no secondary reaches it).</summary>
    public static void Put(Kernel k, long pfn)
    {
        long head = k.Mem.FolioOf(pfn);
        if (head == PhysMem.ZeroPfn) return;
        ref var f = ref k.Mem[head];
        if (f.RefCount <= 0) throw new ModelException($"folio_put on pfn 0x{head:x} with refcount {f.RefCount}");
        if (--f.RefCount > 0) return;
        int pages = k.Mem.FolioNr(head);
        if (f.MapCount != 0) throw new ModelException($"freeing pfn 0x{head:x} with mapcount {f.MapCount}");
        k.Checker.OnFree(head, pages);
        if (k.HasZoneDevice) Hmm.DevicePagemaps.Of(k).FreeZoneDeviceFolio(head); // free_zone_device_folio -> pgmap->ops->page_free
        k.Mem.FreeFolio(head);
        k.Stats.Inc(Stat.PagesFreed, pages);
    }

    /// <summary>folio_mark_dirty / set_page_dirty.</summary>
    public static void MarkDirty(Kernel k, long pfn)
    {
        long head = k.Mem.FolioOf(pfn);
        if (head == PhysMem.ZeroPfn) return;
        k.Mem[head].Set(PageFlags.Dirty);
        k.Checker.OnFolioDirtied(head, k.Mem.FolioNr(head));
    }

    /// <summary>folio_test_clear_dirty (writeback's clear_page_dirty_for_io, MADV_FREE's folio_clear_dirty).</summary>
    public static bool TestClearDirty(Kernel k, long pfn, string why)
    {
        long head = k.Mem.FolioOf(pfn);
        ref var f = ref k.Mem[head];
        int pages = k.Mem.FolioNr(head);
        k.Checker.OnFolioCleaned(head, pages, why);
        bool was = f.Has(PageFlags.Dirty);
        f.Clear(PageFlags.Dirty);
        return was;
    }

    public static bool IsDirty(Kernel k, long pfn) => k.Mem[k.Mem.FolioOf(pfn)].Has(PageFlags.Dirty);

    /// <summary>
    /// folio_add_new_anon_rmap: first mapping of a fresh anon folio at <paramref name="addr"/> (exclusive): by a PMD
    /// (<paramref name="huge"/>: entire_mapcount 1), or by <paramref name="nr"/> PTEs (a small folio, or an mTHP whose
    /// every page gets mapcount 1, its index and PageAnonExclusive).
    /// </summary>
    public static void AddNewAnonRmap(Kernel k, long pfn, Vma vma, ulong addr, bool huge = false, int nr = 1)
    {
        var anon = vma.Mm.AnonVmaPrepare(vma);
        ref var f = ref k.Mem[pfn];
        f.Set(PageFlags.Anon | PageFlags.AnonExclusive);
        f.AnonRoot = anon.Id;
        f.Index = vma.IndexOf(addr);
        int pages = huge ? PhysMem.HugePages : nr;
        for (long p = pfn + 1; p < pfn + pages; p++)
        {
            ref var tail = ref k.Mem[p];
            tail.Index = f.Index + (ulong)(p - pfn);
            if (!huge) tail.Set(PageFlags.AnonExclusive); // PTE-mapped: exclusivity is per page (a PMD keeps it on the head)
        }
        if (huge) k.Mem.EntireMapcountHolder(pfn).RefCount = 1;
        else
            for (long p = pfn; p < pfn + nr; p++) k.Mem[p].MapCount = 1;
        vma.Mm.RssAnon += pages;
    }

    /// <summary>folio_add_anon_rmap_pte (an existing anon page gains a mapping: fork, swap-in of a shared page).</summary>
    public static void AddAnonRmap(Kernel k, long pfn, MmStruct mm)
    {
        k.Mem[pfn].MapCount++;
        if (k.Mem[k.Mem.FolioOf(pfn)].Has(PageFlags.Anon) || k.Mem[pfn].Has(PageFlags.Ksm)) mm.RssAnon++;
        else mm.RssFile++; // fork's copy of a page-cache mapping (folio_try_dup_file_rmap)
    }

    /// <summary>folio_add_file_rmap_pte: a page-cache page gains a PTE mapping.</summary>
    public static void AddFileRmap(Kernel k, long pfn, MmStruct mm)
    {
        k.Mem[pfn].MapCount++;
        mm.RssFile++;
    }

    /// <summary>folio_remove_rmap_pte / page_remove_rmap.</summary>
    public static void RemoveRmap(Kernel k, long pfn, MmStruct mm)
    {
        if (pfn == PhysMem.ZeroPfn) return;
        ref var f = ref k.Mem[pfn];
        if (f.MapCount <= 0) throw new ModelException($"page_remove_rmap on pfn 0x{pfn:x} with mapcount {f.MapCount}");
        f.MapCount--;
        if (k.Mem[k.Mem.FolioOf(pfn)].Has(PageFlags.Anon) || f.Has(PageFlags.Ksm)) mm.RssAnon--;
        else mm.RssFile--;
        if (f.MapCount == 0 && !f.Has(PageFlags.Tail)) f.Clear(PageFlags.AnonExclusive);
    }

    /// <summary>folio_remove_rmap_pmd: a PMD mapping of a THP goes away.</summary>
    public static void RemoveRmapPmd(Kernel k, long head, MmStruct mm)
    {
        ref var e = ref k.Mem.EntireMapcountHolder(head);
        if (e.RefCount <= 0) throw new ModelException($"folio_remove_rmap_pmd on 0x{head:x} with entire_mapcount {e.RefCount}");
        e.RefCount--;
        if (k.Mem[head].Has(PageFlags.Anon)) mm.RssAnon -= PhysMem.HugePages;
        else mm.RssFile -= PhysMem.HugePages; // a hugetlbfs page
    }
}
