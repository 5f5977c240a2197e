using MmuSim.Eras;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// mm/page_idle.c: idle page tracking (4.3+), /sys/kernel/mm/page_idle/bitmap. Writing a pfn's bit walks the folio's
/// rmap and clears the Accessed bits of every mapping, the secondaries' through mmu_notifier_clear_young (no TLB
/// flush), then sets PG_idle; a mapping found young first moves to PG_young. Reading the bit walks again (a young
/// mapping clears PG_idle) and reports PG_idle. KVM's access_tracking_perf_test drives the clear_young notifier
/// this way.
/// </summary>
/// <remarks>
/// On 64-bit kernels PG_idle and PG_young are page flags; the model's frame has no spare flag bits, so they live here,
/// beside the frames (as page_ext keeps them on 32-bit), keyed by head pfn and the frame's generation: a freed and
/// reused frame reads neither, as the page allocator's flag reset gives. Only folios on the LRU are tracked
/// (page_idle_get_folio): anon, page-cache and KSM folios, not the zero page, free or device frames.
/// Locking: the flags change between scheduling points only; the walks take the locks rmap_walk takes (the anon_vma
/// lock, i_mmap), and each mapping's PTL (or PMD lock) around the test-and-clear.
/// </remarks>
public sealed class PageIdle
{
    readonly Kernel _k;
    readonly Dictionary<long, (ushort Gen, bool Idle, bool Young)> _flags = [];

    PageIdle(Kernel k) => _k = k;

    public static PageIdle Of(Kernel k) => k.GetSubsystem(static kk => new PageIdle(kk));

    (bool Idle, bool Young) Get(long head) =>
        _flags.TryGetValue(head, out var f) && f.Gen == _k.Mem[head].Generation ? (f.Idle, f.Young) : (false, false);

    void Set(long head, bool idle, bool young)
    {
        if (!idle && !young) _flags.Remove(head);
        else _flags[head] = (_k.Mem[head].Generation, idle, young);
    }

    /// <summary>folio_test_idle.</summary>
    public bool TestIdle(long head) => Get(head).Idle;

    /// <summary>folio_test_young.</summary>
    public bool TestYoung(long head) => Get(head).Young;

    /// <summary>
    /// folio_referenced_one's part (4.3+): a referenced folio is no longer idle, and a PG_young left by idle tracking
    /// counts as one more reference, consumed (folio_test_clear_young). Only where idle tracking was used.
    /// </summary>
    internal static int OnReferenced(Kernel k, long head, int referenced)
    {
        if (!k.Subsystems.TryGetValue(typeof(PageIdle), out var o)) return referenced;
        var pi = (PageIdle)o;
        var (idle, young) = pi.Get(head);
        if (referenced > 0) idle = false;
        if (young) referenced++;
        pi.Set(head, idle, false);
        return referenced;
    }

    /// <summary>page_idle_get_folio: the LRU folio at <paramref name="pfn"/> (head), or -1.</summary>
    long PageIdleGetFolio(long pfn) => Vmscan.LruFolioOf(_k, pfn);

    /// <summary>
    /// page_idle_clear_pte_refs: walk every mapping of the folio with ptep_clear_young_notify (page_idle_clear_pte_refs_one);
    /// if any was young, clear PG_idle and set PG_young (so that reclaim still sees the reference).
    /// </summary>
    async ValueTask PageIdleClearPteRefs(long head)
    {
        using var _ = _k.S.Current.Enter("page_idle_clear_pte_refs");
        if (_k.Mem.FolioMapCount(head) == 0) return;
        bool referenced = false;
        await Rmap.RmapWalk(_k, head, async (vma, addr, first, count) =>
        {
            referenced |= await PageIdleClearPteRefsOne(vma, addr, head, first, count);
            return true;
        });
        if (referenced) Set(head, idle: false, young: true);
    }

    /// <summary>page_idle_clear_pte_refs_one: ptep_clear_young_notify per PTE, pmdp_clear_young_notify for a huge PMD.</summary>
    static async ValueTask<bool> PageIdleClearPteRefsOne(Vma vma, ulong addr, long head, int first, int count)
    {
        using var _ = vma.Mm.Kernel.S.Current.Enter("page_idle_clear_pte_refs_one");
        return await Rmap.ClearYoungOne(vma, addr, head, first, count, flush: false) > 0;
    }

    /// <summary>
    /// page_idle_bitmap_write for one set bit: clear the folio's young state through its mappings and mark it idle.
    /// A pfn of no LRU folio is skipped, as the kernel skips it; a THP's pages share the folio's flags. -ENXIO past max_pfn.
    /// </summary>
    public async ValueTask<int> BitmapWrite(long pfn)
    {
        using var _ = _k.S.Current.Enter("page_idle_bitmap_write");
        if (!_k.Era.Has(Feature.IdlePageTracking)) return Errno.ENOENT; // no such sysfs file
        await _k.S.Point(PointKind.Counter, (ulong)pfn);
        if (!_k.Mem.IsValidPfn(pfn)) return Errno.ENXIO;
        long head = PageIdleGetFolio(pfn);
        if (head < 0) return 0;
        await PageIdleClearPteRefs(head);
        Set(head, idle: true, young: Get(head).Young);
        return 0;
    }

    /// <summary>page_idle_bitmap_read for one pfn: re-walk an idle folio's mappings, then report PG_idle.</summary>
    public async ValueTask<bool> BitmapRead(long pfn)
    {
        using var _ = _k.S.Current.Enter("page_idle_bitmap_read");
        await _k.S.Point(PointKind.Counter, (ulong)pfn);
        long head = PageIdleGetFolio(pfn);
        if (head < 0) return false;
        if (TestIdle(head)) await PageIdleClearPteRefs(head);
        return TestIdle(head);
    }
}
