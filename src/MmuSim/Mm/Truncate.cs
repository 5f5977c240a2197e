using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>mm/truncate.c and unmap_mapping_range (mm/memory.c): shrinking a file or punching a hole in it.</summary>
public static class Truncate
{
    /// <summary>
    /// truncate_setsize: i_size_write, then on a shrink truncate_pagecache: unmap_mapping_range of everything beyond
    /// the new size (even COWed private copies: even_cows = 1), truncate_inode_pages_range, and unmap_mapping_range
    /// again for faults that raced in between. Faults beyond the new size are SIGBUS from then on.
    /// </summary>
    public static async ValueTask TruncateSetsize(Kernel k, AddressSpace file, ulong newSizePages)
    {
        using var _ = k.S.Current.Enter("truncate_setsize");
        ulong old = file.SizePages;
        await k.S.Point(PointKind.Counter, newSizePages);
        file.SizePages = newSizePages; // i_size_write
        if (newSizePages >= old) return;
        await TruncatePagecacheRange(k, file, newSizePages, ulong.MaxValue);
    }

    /// <summary>
    /// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) over whole pages [first, first + count): shmem_fallocate /
    /// the filesystem's punch hole, which truncate_pagecache_range: unmap, drop the cached pages and their blocks.
    /// </summary>
    public static ValueTask PunchHole(Kernel k, AddressSpace file, ulong first, ulong count) =>
        TruncatePagecacheRange(k, file, first, first + count);

    /// <summary>truncate_pagecache_range: unmap_mapping_range (even_cows), truncate_inode_pages_range, unmap again.</summary>
    static async ValueTask TruncatePagecacheRange(Kernel k, AddressSpace file, ulong first, ulong end)
    {
        using var _ = k.S.Current.Enter("truncate_pagecache_range");
        await UnmapMappingRange(k, file, first, end);
        await TruncateInodePagesRange(k, file, first, end);
        await UnmapMappingRange(k, file, first, end);
    }

    /// <summary>
    /// unmap_mapping_range with even_cows: for every VMA of i_mmap that maps part of page indexes [first, end),
    /// zap_page_range_single over that part: a CLEAR invalidation per VMA, the PTEs cleared (private COW copies too),
    /// pages freed after end. Runs under i_mmap_rwsem only, not the mms' mmap_lock.
    /// </summary>
    public static async ValueTask UnmapMappingRange(Kernel k, AddressSpace file, ulong first, ulong end)
    {
        using var _ = k.S.Current.Enter("unmap_mapping_range");
        foreach (var vma in file.Mappings.ToArray())
        {
            ulong lo = Math.Max(first, vma.PgOff), hi = Math.Min(end, vma.PgOff + vma.Pages);
            if (lo >= hi) continue;
            ulong start = vma.AddressOf(lo)!.Value;
            // unmap_mapping_folio drops uffd-wp markers of truncated folios (ZAP_FLAG_DROP_MARKER); the model drops
            // them for the whole range, without the first, marker-keeping unmap_mapping_range of a hole punch.
            await Memory.ZapPageRangeSingle(vma, start, start + ((hi - lo) << MmStruct.PageShift), dropMarkers: true);
        }
    }

    /// <summary>
    /// truncate_inode_pages_range (shmem_undo_range for shmem): drop the page cache's pages (and backing blocks) of
    /// [first, end). A large folio that the range covers only in part goes through truncate_inode_partial_folio: its
    /// covered pages are zeroed (folio_zero_range) and, as when split_folio fails on a dirty folio, it stays whole in
    /// the cache: the model does not split page-cache folios, so it always takes that branch (the kernel usually splits
    /// and frees the covered pages).
    /// </summary>
    internal static async ValueTask TruncateInodePagesRange(Kernel k, AddressSpace file, ulong first, ulong end)
    {
        using var _ = k.S.Current.Enter("truncate_inode_pages_range");
        List<ulong>? gone = null;
        foreach (var index in file.Pages.Keys)
            if (index >= first && index < end) (gone ??= []).Add(index);
        if (gone != null)
            foreach (var index in gone)
            {
                await k.S.Point(PointKind.Free, index);
                if (!file.Pages.TryGetValue(index, out long cached)) continue;
                long head = k.Mem.FolioOf(cached);
                if (k.Mem.IsLarge(head) && PartlyCovered(k, head, first, end))
                {
                    k.Mem[cached].Contents = 0; // folio_zero_range
                    Folio.MarkDirty(k, head);   // shmem_undo_range: folio_mark_dirty before the partial truncate
                    continue;
                }
                if (!file.Pages.Remove(index, out long pfn)) continue;
                k.Mem[pfn].AnonRoot = 0; // folio->mapping = NULL: a page still referenced (a GUP pin) is no longer cached
                Folio.Put(k, pfn);
            }
        foreach (var index in file.Backing.Keys.ToArray())
            if (index >= first && index < end) file.Backing.Remove(index);
    }

    /// <summary>Does [first, end) cover only part of the large folio <paramref name="head"/> (its page indexes)?</summary>
    static bool PartlyCovered(Kernel k, long head, ulong first, ulong end)
    {
        ulong lo = k.Mem[head].Index, hi = lo + (ulong)k.Mem.FolioNr(head);
        return lo < first || hi > end;
    }
}
