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
/// <para><b>SVA with ATS</b> (<see cref="Ats"/>): the device is bound to the mm under a PASID and keeps its own
/// device TLB (the ATC), filled by ATS translation requests that the IOMMU answers from its IOTLB (walking the CPU
/// page table on an IOTLB miss). A flush must invalidate the IOTLB first and the device TLB second (intel-svm's
/// qi_flush_piotlb then qi_flush_dev_iotlb_pasid, arm-smmu-v3's TLBI then ATC_INV): in the other order the device can
/// refetch, between the two, a stale translation from the not yet invalidated IOTLB and keep it.
/// <see cref="AtsOrder"/> selects the order, so a driver author can check the placement; both invalidations are
/// scheduling points.</para>
/// </remarks>
public sealed class SharedPtTlbDevice : MmuNotifier, ISecondaryMmu
{
    readonly Kernel _k;
    readonly MmStruct _mm;
    readonly Entry[] _iotlb;
    readonly Entry[] _devtlb;
    int _next, _nextDev;
    readonly List<(string Callback, ulong Start, ulong End)> _log = [];

    struct Entry
    {
        public ulong Hva;
        public long Pfn;
        public ushort Gen;
        public bool Writable;
        public bool Valid;
    }

    public SharedPtTlbDevice(Kernel k, MmStruct mm, string name = "iommu0", int iotlbEntries = 8, bool ats = false,
        AtsInvalidationOrder atsOrder = AtsInvalidationOrder.IotlbFirst, int pasid = 1)
    {
        _k = k;
        _mm = mm;
        Name = name;
        _iotlb = new Entry[iotlbEntries];
        _devtlb = new Entry[ats ? iotlbEntries : 0];
        Ats = ats;
        AtsOrder = atsOrder;
        Pasid = pasid;
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

    /// <summary>The device has an ATS device TLB (ATC) in front of the IOMMU's IOTLB.</summary>
    public bool Ats { get; }

    /// <summary>Which cache a flush invalidates first (correct: the IOTLB).</summary>
    public AtsInvalidationOrder AtsOrder { get; }

    /// <summary>The PASID the mm is bound under (iommu_sva_get_pasid); tags every IOTLB/ATC entry and invalidation.</summary>
    public int Pasid { get; }

    /// <summary>The notifier callbacks that flushed, with their ranges, in order.</summary>
    public IReadOnlyList<(string Callback, ulong Start, ulong End)> FlushLog => _log;

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
            var tlb = Ats ? _devtlb : _iotlb;
            int i = Lookup(tlb, page);
            if (i >= 0 && (!write || tlb[i].Writable))
            {
                var e = tlb[i];
                _k.Checker.OnSecondaryAccess(this, page, e.Pfn, e.Gen, write);
                if (_k.S.Violation != null) return null;
                if (write) _k.Mem[e.Pfn].Contents = value;
                return _k.Mem[e.Pfn].Contents;
            }
            if (Ats)
            {
                // ATS translation request for PASID: the IOMMU answers from its IOTLB when it hits.
                await _k.S.Point(PointKind.GuestAccess, page);
                int j = Lookup(_iotlb, page);
                if (j >= 0 && (!write || _iotlb[j].Writable))
                {
                    FillDevTlb(_iotlb[j]);
                    continue;
                }
            }
            // IOTLB miss: the IOMMU walks the CPU page table (no lock: hardware walker).
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

    static int Lookup(Entry[] tlb, ulong page)
    {
        for (int i = 0; i < tlb.Length; i++)
            if (tlb[i].Valid && tlb[i].Hva == page) return i;
        return -1;
    }

    void Fill(ulong page, long pfn, bool writable)
    {
        int i = Lookup(_iotlb, page);
        if (i < 0)
        {
            i = _next;
            _next = (_next + 1) % _iotlb.Length;
        }
        _iotlb[i] = new Entry { Hva = page, Pfn = pfn, Gen = _k.Mem[pfn].Generation, Writable = writable, Valid = true };
    }

    /// <summary>The device caches the ATS translation completion in its ATC.</summary>
    void FillDevTlb(Entry e)
    {
        int i = Lookup(_devtlb, e.Hva);
        if (i < 0)
        {
            i = _nextDev;
            _nextDev = (_nextDev + 1) % _devtlb.Length;
        }
        _devtlb[i] = e;
    }

    static void Invalidate(Entry[] tlb, ulong start, ulong end)
    {
        for (int i = 0; i < tlb.Length; i++)
            if (tlb[i].Valid && tlb[i].Hva >= start && tlb[i].Hva < end) tlb[i].Valid = false;
    }

    /// <summary>
    /// The driver's flush for [start, end) of the PASID: the PASID-based IOTLB invalidation and, with ATS, the device
    /// TLB invalidation (ATS invalidate request, waited for), in <see cref="AtsOrder"/>. Each is a scheduling point.
    /// </summary>
    async ValueTask Flush(string callback, ulong start, ulong end)
    {
        using var _ = _k.S.Current.Enter("iommu_flush_iotlb");
        _log.Add((callback, start, end));
        Flushes++;
        if (!Ats)
        {
            await _k.S.Point(PointKind.TlbFlush, start);
            Invalidate(_iotlb, start, end);
            return;
        }
        var (first, second) = AtsOrder == AtsInvalidationOrder.IotlbFirst ? (_iotlb, _devtlb) : (_devtlb, _iotlb);
        await _k.S.Point(PointKind.TlbFlush, start);
        Invalidate(first, start, end);
        using (_k.S.Current.Enter(AtsOrder == AtsInvalidationOrder.IotlbFirst ? "qi_flush_dev_iotlb_pasid" : "qi_flush_piotlb"))
        {
            await _k.S.Point(PointKind.TlbFlush, start);
            Invalidate(second, start, end);
        }
    }

    public override ValueTask InvalidatePage(MmStruct mm, ulong address) => Flush("invalidate_page", address, address + MmStruct.PageSize);

    public override async ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        await Flush("invalidate_range_start", range.Start, range.End);
        return 0;
    }

    public override ValueTask InvalidateRangeEnd(MmuNotifierRange range) => Flush("invalidate_range_end", range.Start, range.End);

    public override ValueTask InvalidateRange(MmStruct mm, ulong start, ulong end) => Flush("invalidate_range", start, end);

    public override ValueTask ArchInvalidateSecondaryTlbs(MmStruct mm, ulong start, ulong end) => Flush("arch_invalidate_secondary_tlbs", start, end);

    public override ValueTask Release(MmStruct mm) => Flush("release", 0, ulong.MaxValue);

    public void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var e in _iotlb)
            if (e.Valid) into.Add(new SecondaryTranslation(e.Hva, e.Pfn, e.Gen, e.Writable, MmStruct.PageSize, $"{Name} iotlb pasid {Pasid}"));
        foreach (var e in _devtlb)
            if (e.Valid) into.Add(new SecondaryTranslation(e.Hva, e.Pfn, e.Gen, e.Writable, MmStruct.PageSize, $"{Name} devtlb pasid {Pasid}"));
    }
}

/// <summary>The order of the two invalidations of an SVA flush with ATS.</summary>
public enum AtsInvalidationOrder : byte
{
    /// <summary>IOTLB, then device TLB (what the VT-d and SMMUv3 specifications require).</summary>
    IotlbFirst,
    /// <summary>Device TLB, then IOTLB: the device can refetch a stale translation in between.</summary>
    DevTlbFirst,
}
