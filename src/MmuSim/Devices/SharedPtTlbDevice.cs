using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Devices;

/// <summary>
/// A minimal IOMMU-style secondary that shares the primary page tables (SVA/PASID with ATS): device DMA translates
/// through its own IOTLB, refilled at any time by walking the CPU page table; a missing or read-only translation
/// becomes a page request (PRI) that the host resolves with handle_mm_fault. The IOTLB is flushed by whatever the
/// era offers a driver of this kind: invalidate_page and invalidate_range_start/end before 3.19 (amd_iommu_v2-like),
/// invalidate_range under the PTL in 3.19-6.5 (intel-svm-like), arch_invalidate_secondary_tlbs from the TLB flush
/// in 6.6+ (which refuses start/end on the same subscription). A later devices issue grows it.
/// </summary>
/// <remarks>
/// It is a hardware TLB: it keeps no software page table and takes no locks around refills, so invalidate_range_start
/// is "too soon" (the IOTLB refills from the still-present PTE) and end is "too late" (kernel-facts §5(d4)).
/// Locking: the IOTLB is only touched at scheduling points of the device context or inside the flush callbacks.
/// </remarks>
public sealed class SharedPtTlbDevice : MmuNotifier, ISecondaryMmu
{
    readonly Kernel _k;
    readonly MmStruct _mm;
    readonly Entry[] _iotlb;
    int _next;

    struct Entry
    {
        public ulong Hva;
        public long Pfn;
        public ushort Gen;
        public bool Writable;
        public bool Valid;
    }

    public SharedPtTlbDevice(Kernel k, MmStruct mm, string name = "iommu0", int iotlbEntries = 8)
    {
        _k = k;
        _mm = mm;
        Name = name;
        _iotlb = new Entry[iotlbEntries];
        var era = k.Era;
        Ops = era.Has(Feature.ArchInvalidateSecondaryTlbs) ? NotifierOps.ArchInvalidateSecondaryTlbs | NotifierOps.Release
            : era.Has(Feature.InvalidateRange) ? NotifierOps.InvalidateRange | NotifierOps.Release
            : NotifierOps.InvalidatePage | NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd | NotifierOps.Release;
    }

    public override NotifierOps Ops { get; }

    public override string Name { get; }

    public bool UsesStartEnd => false;

    public MmStruct MirroredMm => _mm;

    /// <summary>IOTLB flushes performed.</summary>
    public long Flushes { get; private set; }

    /// <summary>Bind the device to the mm (iommu_sva_bind_device): register the notifier and the checker view.</summary>
    public async ValueTask Bind()
    {
        int r = await _mm.Notifiers.Register(this);
        if (r != 0) throw new ModelException($"{Name}: mmu_notifier_register failed {r}");
        _k.Checker.AddSecondary(this);
    }

    /// <summary>Device DMA read of <paramref name="hva"/> through the IOTLB (ATS translation, PRI on a miss).</summary>
    public ValueTask<ulong?> DmaRead(ulong hva) => Dma(hva, write: false, 0);

    /// <summary>Device DMA write of <paramref name="value"/> to <paramref name="hva"/>.</summary>
    public ValueTask<ulong?> DmaWrite(ulong hva, ulong value) => Dma(hva, write: true, value);

    async ValueTask<ulong?> Dma(ulong hva, bool write, ulong value)
    {
        using var _ = _k.S.Current.Enter(write ? "dma_write" : "dma_read");
        ulong page = hva & MmStruct.PageMask;
        for (int attempt = 0; attempt < 16; attempt++)
        {
            await _k.S.Point(PointKind.GuestAccess, page);
            int i = Lookup(page);
            if (i >= 0 && (!write || _iotlb[i].Writable))
            {
                ref var e = ref _iotlb[i];
                _k.Checker.OnSecondaryAccess(this, page, e.Pfn, e.Gen, write);
                if (_k.S.Violation != null) return null;
                if (write) _k.Mem[e.Pfn].Contents = value;
                return _k.Mem[e.Pfn].Contents;
            }
            // ATS translation request: walk the CPU page table (no lock: hardware walker).
            var (present, pfn, writable, _) = _mm.Translate(page);
            if (present && (!write || writable))
            {
                Fill(page, pfn, writable);
                continue;
            }
            // PRI page request: the host faults the page in.
            using (_k.S.Current.Enter("iommu_sva_handle_iopf"))
            {
                await _mm.MmapLock.ReadLock();
                var r = await Memory.HandleMmFault(_mm, page, write ? FaultFlags.Write | FaultFlags.Remote : FaultFlags.Remote);
                await _mm.MmapLock.ReadUnlock();
                if (r is VmFault.SigSegv or VmFault.Oom) return null;
            }
        }
        _k.S.Fail(Invariants.Liveness, $"{Name}: DMA to 0x{hva:x} kept faulting", hva);
        return null;
    }

    int Lookup(ulong page)
    {
        for (int i = 0; i < _iotlb.Length; i++)
            if (_iotlb[i].Valid && _iotlb[i].Hva == page) return i;
        return -1;
    }

    void Fill(ulong page, long pfn, bool writable)
    {
        int i = Lookup(page);
        if (i < 0)
        {
            i = _next;
            _next = (_next + 1) % _iotlb.Length;
        }
        _iotlb[i] = new Entry { Hva = page, Pfn = pfn, Gen = _k.Mem[pfn].Generation, Writable = writable, Valid = true };
    }

    async ValueTask Flush(ulong start, ulong end)
    {
        using var _ = _k.S.Current.Enter("iommu_flush_iotlb");
        await _k.S.Point(PointKind.TlbFlush, start);
        Flushes++;
        for (int i = 0; i < _iotlb.Length; i++)
            if (_iotlb[i].Valid && _iotlb[i].Hva >= start && _iotlb[i].Hva < end) _iotlb[i].Valid = false;
    }

    public override ValueTask InvalidatePage(MmStruct mm, ulong address) => Flush(address, address + MmStruct.PageSize);

    public override async ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        await Flush(range.Start, range.End);
        return 0;
    }

    public override ValueTask InvalidateRangeEnd(MmuNotifierRange range) => Flush(range.Start, range.End);

    public override ValueTask InvalidateRange(MmStruct mm, ulong start, ulong end) => Flush(start, end);

    public override ValueTask ArchInvalidateSecondaryTlbs(MmStruct mm, ulong start, ulong end) => Flush(start, end);

    public override ValueTask Release(MmStruct mm) => Flush(0, ulong.MaxValue);

    public void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var e in _iotlb)
            if (e.Valid) into.Add(new SecondaryTranslation(e.Hva, e.Pfn, e.Gen, e.Writable, MmStruct.PageSize, $"{Name} iotlb"));
    }
}
