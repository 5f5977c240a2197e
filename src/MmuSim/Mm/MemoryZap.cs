using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// struct mmu_gather (mm/mmu_gather.c): pages whose PTEs were cleared wait here until the TLB is flushed, then are
/// freed. The batch flushes early when full (still after invalidate_range_start); normally at tlb_finish_mmu, after end.
/// </summary>
public sealed class MmuGather
{
    readonly MmStruct mm;
    readonly List<long> _pages = [];
    readonly bool _raised;

    /// <summary>
    /// tlb_gather_mmu: start gathering; from 4.13 (99baac21e458) raises mm_tlb_flush_pending until <see cref="Finish"/>.
    /// </summary>
    public MmuGather(MmStruct mm)
    {
        this.mm = mm;
        mm.TlbGathersInFlight++;
        _raised = mm.Kernel.Era.Has(Feature.TlbGatherFlushPending);
        if (_raised) mm.TlbFlushPending++; // inc_tlb_flush_pending
    }

    ulong _start = ulong.MaxValue, _end;

    /// <summary>
    /// ZAP_FLAG_DROP_MARKER (5.19+): this zap removes the mapping for good (unmap_vmas: munmap, exit; truncation), so a
    /// uffd-wp PTE of a file VMA is not replaced by a PTE_MARKER_UFFD_WP marker and existing markers go too.
    /// </summary>
    public bool DropMarkers { get; set; }

    /// <summary>Pages per batch before an early tlb_flush_mmu (MAX_GATHER_BATCH-like). Scenarios may lower it.</summary>
    public static int DefaultBatch { get; set; } = 512;

    public int Batch { get; init; } = DefaultBatch;

    public MmStruct Mm => mm;

    public int Pending => _pages.Count;

    /// <summary>Record a flushed range (tlb_flush_pte_range).</summary>
    public void TrackRange(ulong start, ulong end)
    {
        if (start < _start) _start = start;
        if (end > _end) _end = end;
    }

    /// <summary>__tlb_remove_page: queue the mapping's reference; returns true when the batch is full.</summary>
    public bool RemovePage(long pfn)
    {
        _pages.Add(pfn);
        return _pages.Count >= Batch;
    }

    /// <summary>tlb_flush_mmu: flush the TLB for the gathered range (3.19-6.5: + invalidate_range), then free the batch.</summary>
    public async ValueTask FlushMmu()
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("tlb_flush_mmu");
        if (_end > _start)
        {
            await Tlb.FlushTlbRange(mm, _start, _end);
            if (k.Era.Has(Feature.ZapInvalidateRangeOnFlush)) await mm.Notifiers.InvalidateRange(_start, _end);
            _start = ulong.MaxValue;
            _end = 0;
        }
        if (_pages.Count == 0) return;
        await k.S.Point(PointKind.Free);
        foreach (var pfn in _pages) Folio.Put(k, pfn);
        _pages.Clear();
    }

    /// <summary>tlb_finish_mmu: flush and free what is left, then drop mm_tlb_flush_pending (4.13+).</summary>
    public async ValueTask Finish()
    {
        await FlushMmu();
        mm.TlbGathersInFlight--;
        if (_raised) mm.TlbFlushPending--; // dec_tlb_flush_pending
    }
}

public static partial class Memory
{
    /// <summary>
    /// zap_pte_range / zap_pmd_range for [start, end) of one VMA: clear PTEs under their PTL, transfer dirty to the
    /// folio, drop rmap, queue the pages in <paramref name="tlb"/>. Huge PMDs are zapped whole (zap_huge_pmd).
    /// Runs inside the caller's invalidate_range_start/end.
    /// </summary>
    public static async ValueTask UnmapPageRange(MmuGather tlb, Vma vma, ulong start, ulong end)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("unmap_page_range");
        ulong addr = start;
        while (addr < end)
        {
            ulong pmdEnd = mm.PmdAddrEnd(addr, end);
            var pmd = mm.PeekPmd(addr);
            if ((pmd.IsMigration || pmd.IsMarker) && vma.IsHugetlb)
            {
                // __unmap_hugepage_range: a non-present entry (a hugetlb migration entry, a marker) is cleared
                // (huge_pte_clear; a migrating folio's reference went with try_to_migrate_one), or, uffd-wp on a
                // VM_UFFD_WP VMA without ZAP_FLAG_DROP_MARKER, becomes (or stays) a uffd-wp marker.
                await mm.LockPmd(addr);
                var cur = await mm.PmdpGet(addr);
                if (cur.IsMigration || cur.IsMarker)
                    await mm.SetPmd(addr, cur.UffdWp && (vma.Flags & VmFlags.UffdWp) != 0 && !tlb.DropMarkers ? HugeMemory.HugetlbUffdWpMarker : Pte.None);
                await mm.UnlockPmd(addr);
                addr = pmdEnd;
                continue;
            }
            if (pmd.IsHugeOrMigrationPmd) // zap_pmd_range
            {
                if ((addr & ~MmStruct.PmdMask) != 0 || pmdEnd - addr != MmStruct.PmdSize)
                    await HugeMemory.SplitHugePmd(vma, addr, notify: false);
                else if (await HugeMemory.ZapHugePmd(tlb, vma, addr))
                {
                    addr = pmdEnd;
                    continue;
                }
            }
            int t = mm.PteTable(addr);
            if (t != 0) await ZapPteRange(tlb, vma, t, addr, pmdEnd);
            addr = pmdEnd;
        }
    }

    /// <summary>zap_pte_range: one PTE table's part of the range, under its PTL.</summary>
    public static async ValueTask ZapPteRange(MmuGather tlb, Vma vma, int t, ulong start, ulong end)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("zap_pte_range");
        bool full = false;
        await mm.LockPtl(t);
        // zap_install_uffd_wp_if_needed: a file VMA armed for uffd-wp keeps its protection across a zap as a marker.
        bool keepWp = vma.FileUffdWpArmed && !tlb.DropMarkers;
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            var peek = mm.PeekPte(a);
            if (peek.IsNone || (keepWp && peek.IsUffdWpMarker)) continue; // "only drop the marker if explicitly requested"
            var old = await mm.PtepGetAndClear(t, a);
            if (keepWp && old.UffdWp) await mm.SetPte(t, a, Pte.Marker(uffdWp: true, poisoned: false)); // pte_install_uffd_wp_if_needed
            if (old.Present)
            {
                k.S.Charge(CostKind.Zap);
                k.Stats.Inc(Stat.PagesZapped);
                tlb.TrackRange(a, a + MmStruct.PageSize);
                if (old.Special || old.Pfn == PhysMem.ZeroPfn) continue;
                if (old.Dirty) Folio.MarkDirty(k, old.Pfn);
                Folio.RemoveRmap(k, old.Pfn, mm);
                if (k.Mutated(Mutation.FreeBeforeEnd)) Folio.Put(k, old.Pfn);
                else full |= tlb.RemovePage(old.Pfn);
            }
            else if (old.SwapKind == SwapType.Swap) k.Swap.Free((int)old.Pfn);
            // A PTE marker holds nothing: pte_clear_not_present_full is all (an anonymous VMA always drops a uffd-wp
            // marker; should_zap_cows keeps a poisoned one only for unmap_mapping_range without even_cows, which the
            // model does not distinguish: it drops it too).
            else if (old.IsDeviceEntry)
            {
                // zap_nonpresent_ptes: a device-private (or device-exclusive) entry still maps its page: drop it now.
                Folio.RemoveRmap(k, old.Pfn, mm);
                Folio.Put(k, old.Pfn);
            }
        }
        await mm.UnlockPtl(t);
        if (full) await tlb.FlushMmu();
    }

    /// <summary>
    /// unmap_vmas: zap every VMA overlapping [start, end) inside one invalidate_range_start/end (UNMAP). Pages are
    /// freed by the caller's tlb_finish_mmu, after end.
    /// </summary>
    public static async ValueTask UnmapVmas(MmuGather tlb, MmStruct mm, ulong start, ulong end)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("unmap_vmas");
        var range = new MmuNotifierRange(mm, start, end, MmuNotifyEvent.Unmap);
        await mm.Notifiers.InvalidateRangeStart(range);
        tlb.DropMarkers = true; // unmap_vmas' zap_details: ZAP_FLAG_DROP_MARKER
        foreach (var vma in mm.Vmas.ToArray())
        {
            ulong s = Math.Max(vma.Start, start), e = Math.Min(vma.End, end);
            if (s < e) await UnmapPageRange(tlb, vma, s, e);
        }
        await mm.Notifiers.InvalidateRangeEnd(range);
    }

    /// <summary>
    /// zap_page_range_single (MADV_DONTNEED and friends): CLEAR invalidation around the zap of one VMA's range;
    /// tlb_finish_mmu after end frees the pages. <paramref name="dropMarkers"/>: ZAP_FLAG_DROP_MARKER (truncation).
    /// </summary>
    public static async ValueTask ZapPageRangeSingle(Vma vma, ulong start, ulong end, bool dropMarkers = false)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("zap_page_range_single");
        var tlb = new MmuGather(mm) { DropMarkers = dropMarkers };
        var range = new MmuNotifierRange(mm, start, end, MmuNotifyEvent.Clear);
        bool notify = !k.Mutated(Mutation.SkipStartOnZap);
        if (notify) await mm.Notifiers.InvalidateRangeStart(range);
        await UnmapPageRange(tlb, vma, start, end);
        if (notify) await mm.Notifiers.InvalidateRangeEnd(range);
        await tlb.Finish();
    }
}
