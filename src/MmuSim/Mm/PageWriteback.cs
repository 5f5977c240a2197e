namespace MmuSim.Mm;

/// <summary>mm/page-writeback.c: cleaning a folio for writeback.</summary>
public static class PageWriteback
{
    /// <summary>
    /// folio_clear_dirty_for_io followed by the write: folio_mkclean write-protects and cleans every mapping (with the
    /// era's notifications); if any mapping was writable or dirty the folio is marked dirty; then the dirty flag is
    /// test-and-cleared and, if it was set, the folio is "written out" (counted). Returns whether it was dirty.
    /// </summary>
    public static async ValueTask<bool> FolioClearDirtyForIo(Kernel k, long pfn)
    {
        using var _ = k.S.Current.Enter("folio_clear_dirty_for_io");
        long head = k.Mem.FolioOf(pfn);
        if (head == PhysMem.ZeroPfn || k.Mem[head].Has(PageFlags.Free)) return false;
        Folio.Get(k, head); // the writeback path holds the folio
        if (await Rmap.FolioMkclean(k, head) > 0) Folio.MarkDirty(k, head);
        bool dirty = Folio.TestClearDirty(k, head, "folio_clear_dirty_for_io");
        if (dirty) k.Stats.Inc(Stat.PagesCleaned, k.Mem.FolioNr(head));
        Folio.Put(k, head);
        return dirty;
    }
}
