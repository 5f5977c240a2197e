using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Hmm;

/// <summary>The flag bits of an hmm_pfns word (include/linux/hmm.h, 5.10+ layout): flags in the high bits, pfn below.</summary>
public static class HmmPfn
{
    /// <summary>HMM_PFN_VALID: the pfn is valid and at least readable (input: HMM_PFN_REQ_FAULT).</summary>
    public const ulong Valid = 1UL << 63;
    /// <summary>HMM_PFN_WRITE: writable (input: HMM_PFN_REQ_WRITE, together with REQ_FAULT).</summary>
    public const ulong Write = 1UL << 62;
    /// <summary>HMM_PFN_ERROR: inaccessible (no VMA, no VM_READ, special pfn).</summary>
    public const ulong Error = 1UL << 61;
    /// <summary>HMM_PFN_ORDER_SHIFT: hmm_pfn_to_map_order.</summary>
    public const int OrderShift = 56;
    public const ulong OrderMask = 0x1FUL << OrderShift;
    public const ulong ReqFault = Valid;
    public const ulong ReqWrite = Write;
    const ulong FlagMask = Valid | Write | Error | OrderMask;

    /// <summary>hmm_pfn_to_page (as a pfn).</summary>
    public static long ToPfn(ulong hmmPfn) => (long)(hmmPfn & ~FlagMask);

    /// <summary>hmm_pfn_to_map_order.</summary>
    public static int MapOrder(ulong hmmPfn) => (int)((hmmPfn & OrderMask) >> OrderShift);
}

/// <summary>struct hmm_range: what <see cref="Hmm.RangeFault"/> fills in.</summary>
public sealed class HmmRange(MmuIntervalNotifier notifier, ulong start, ulong end, ulong[] pfns)
{
    public MmuIntervalNotifier Notifier { get; set; } = notifier;
    public ulong NotifierSeq { get; set; }
    public ulong Start { get; set; } = start;
    public ulong End { get; set; } = end;

    /// <summary>hmm_pfns: one word per page of [Start, End); input request flags, output pfn | flags.</summary>
    public ulong[] HmmPfns { get; } = pfns;

    public ulong DefaultFlags { get; set; }
    public ulong PfnFlagsMask { get; set; }

    /// <summary>dev_private_owner: device-private pages of this owner are reported instead of faulted.</summary>
    public object? DevPrivateOwner { get; set; }

    public int Pages => (int)((End - Start) >> MmStruct.PageShift);

    /// <summary>hmm_vma_walk.last: where the walk restarts after -EBUSY from a fault or a migration wait.</summary>
    internal ulong Last;
}

/// <summary>mm/hmm.c: hmm_range_fault, the snapshot-and-fault walk a mirroring driver runs under mmap_lock.</summary>
public static class Hmm
{
    public const int EBUSY = -16, EFAULT = -14, EPERM = -1, EINVAL = -22, ENOENT = -2, ENOMEM = -12;

    const int NeedFault = 1, NeedWriteFault = 2;

    /// <summary>
    /// hmm_range_fault: walk [start, end) of the notifier's mm and fill hmm_pfns; fault what the request flags require
    /// (handle_mm_fault with FAULT_FLAG_REMOTE). Returns 0, -EBUSY (an invalidation ran: start again from read_begin),
    /// -EFAULT or -EPERM. The caller holds mmap_lock for read. Entries before the walk's restart point are final.
    /// </summary>
    public static async ValueTask<int> RangeFault(HmmRange range)
    {
        var mm = range.Notifier.Mm ?? throw new ModelException("hmm_range_fault on a notifier without an mm");
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("hmm_range_fault");
        range.Last = range.Start;
        for (int walks = 0; walks < MaxWalks; walks++)
        {
            await k.S.Point(PointKind.Counter, range.Last);
            if (mm.Notifiers.IntervalCheckRetry(range.Notifier, range.NotifierSeq)) return EBUSY;
            int r = await Walk(mm, range, range.Last);
            if (r != Restart) return r;
        }
        k.S.Fail(Invariants.Liveness, $"hmm_range_fault of [0x{range.Start:x}, 0x{range.End:x}) kept faulting without progress", range.Last);
        return EBUSY;
    }

    /// <summary>Re-walks after faults before the model calls it a livelock (each fault makes progress in the kernel).</summary>
    const int MaxWalks = 4096;

    /// <summary>The walk's own -EBUSY: re-walk from <see cref="HmmRange.Last"/> (not returned to the caller).</summary>
    const int Restart = int.MinValue;

    static async ValueTask<int> Walk(MmStruct mm, HmmRange range, ulong from)
    {
        var k = mm.Kernel;
        ulong addr = from;
        while (addr < range.End)
        {
            var vma = mm.FindVma(addr);
            if (vma == null || addr < vma.Start)
            {
                // hmm_vma_walk_hole without a VMA: -EFAULT if a fault is required, else HMM_PFN_ERROR.
                ulong holeEnd = addr + MmStruct.PageSize; // find_vma finds only a containing VMA: one page at a time
                for (ulong a = addr; a < holeEnd; a += MmStruct.PageSize)
                {
                    int i = Index(range, a);
                    if (NeedFaultFor(range, i, 0) != 0) return EFAULT;
                    range.HmmPfns[i] = HmmPfn.Error;
                }
                addr = holeEnd;
                continue;
            }
            ulong vend = Math.Min(vma.End, range.End);
            if (!vma.Readable)
            {
                // hmm_vma_walk_test: a VMA without VM_READ cannot be mirrored.
                for (ulong a = addr; a < vend; a += MmStruct.PageSize)
                {
                    int i = Index(range, a);
                    if (NeedFaultFor(range, i, 0) != 0) return EFAULT;
                    range.HmmPfns[i] = HmmPfn.Error;
                }
                addr = vend;
                continue;
            }
            while (addr < vend)
            {
                ulong pmdEnd = Math.Min((addr & ~(PhysMem.HugePages * MmStruct.PageSize - 1)) + PhysMem.HugePages * MmStruct.PageSize, vend);
                int r = await WalkPmd(mm, vma, range, addr, pmdEnd);
                if (r != 0) return r;
                addr = pmdEnd;
            }
        }
        return 0;
    }

    static int Index(HmmRange range, ulong addr) => (int)((addr - range.Start) >> MmStruct.PageShift);

    /// <summary>hmm_pte_need_fault: what the request word (masked) asks for, given what the CPU page table grants.</summary>
    static int NeedFaultFor(HmmRange range, int i, ulong cpuFlags)
    {
        ulong req = (range.HmmPfns[i] & range.PfnFlagsMask) | range.DefaultFlags;
        if ((req & HmmPfn.ReqFault) == 0) return 0;
        if ((req & HmmPfn.ReqWrite) != 0 && (cpuFlags & HmmPfn.Write) == 0) return NeedFault | NeedWriteFault;
        if ((cpuFlags & HmmPfn.Valid) == 0) return NeedFault;
        return 0;
    }

    /// <summary>hmm_vma_walk_pmd: one PMD's worth of [addr, end), locklessly (pte_offset_map, no PTL).</summary>
    static async ValueTask<int> WalkPmd(MmStruct mm, Vma vma, HmmRange range, ulong addr, ulong end)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("hmm_vma_walk_pmd");
        var pmd = await mm.PmdpGet(addr);
        if (pmd.Present && pmd.Huge)
        {
            // hmm_vma_handle_pmd: report every sub-page with map order 9, or fault the whole sub-range.
            ulong cpu = HmmPfn.Valid | (pmd.Writable ? HmmPfn.Write : 0);
            for (ulong a = addr; a < end; a += MmStruct.PageSize)
                if (NeedFaultFor(range, Index(range, a), cpu) != 0) return await VmaFault(mm, vma, range, addr, end, NeedFaultFor(range, Index(range, a), cpu));
            for (ulong a = addr; a < end; a += MmStruct.PageSize)
            {
                long pfn = pmd.Pfn + (long)((a & (PhysMem.HugePages * MmStruct.PageSize - 1)) >> MmStruct.PageShift);
                range.HmmPfns[Index(range, a)] = (ulong)pfn | cpu | ((ulong)PhysMem.HugeOrder << HmmPfn.OrderShift);
            }
            return 0;
        }
        if (pmd.IsSwapEntry && pmd.IsMigration)
        {
            // pmd_migration_entry_wait, then -EBUSY to re-walk.
            if (NeedFaultFor(range, Index(range, addr), 0) == 0)
            {
                for (ulong a = addr; a < end; a += MmStruct.PageSize) range.HmmPfns[Index(range, a)] = 0;
                return 0;
            }
            await Mm.HugeMemory.PmdMigrationEntryWait(mm, addr, pmd);
            return Busy(range, addr);
        }
        for (ulong a = addr; a < end; a += MmStruct.PageSize)
        {
            int i = Index(range, a);
            int t = mm.PteTable(a);
            var pte = t == 0 ? Pte.None : await mm.PtepGet(t, a);
            if (mm.PteTable(a) != t) return Busy(range, a); // the table changed under the lockless walk
            int r = await HandlePte(mm, vma, range, a, end, t, pte, i);
            if (r != 0) return r;
        }
        return 0;
    }

    static int Busy(HmmRange range, ulong restart)
    {
        range.Last = restart;
        return Restart;
    }

    /// <summary>hmm_vma_handle_pte.</summary>
    static async ValueTask<int> HandlePte(MmStruct mm, Vma vma, HmmRange range, ulong addr, ulong end, int t, Pte pte, int i)
    {
        var k = mm.Kernel;
        if (pte.IsNone)
        {
            int need = NeedFaultFor(range, i, 0);
            if (need != 0) return await VmaFault(mm, vma, range, addr, end, need);
            range.HmmPfns[i] = 0;
            return 0;
        }
        if (!pte.Present)
        {
            if (pte.IsDevicePrivate && DevicePagemaps.Of(k).PgmapOf(pte.Pfn) is { } pgmap &&
                range.DevPrivateOwner != null && ReferenceEquals(pgmap.Owner, range.DevPrivateOwner))
            {
                // A device-private page of the caller's own device: report it, never fault it back.
                range.HmmPfns[i] = (ulong)pte.Pfn | HmmPfn.Valid | (pte.IsWritableEntry ? HmmPfn.Write : 0);
                return 0;
            }
            int need = NeedFaultFor(range, i, 0);
            if (need == 0)
            {
                range.HmmPfns[i] = 0;
                return 0;
            }
            // pte_none_mostly: a PTE marker is faulted like a none PTE (a poisoned one then fails with -EFAULT).
            if (pte.SwapKind == SwapType.Swap || pte.IsDeviceEntry || pte.IsMarker) return await VmaFault(mm, vma, range, addr, end, need);
            if (pte.IsMigration)
            {
                await Migrate.MigrationEntryWait(mm, t, addr, pte);
                return Busy(range, addr);
            }
            return EFAULT;
        }
        ulong cpu = pte.ProtNone ? 0 : HmmPfn.Valid | (pte.Writable ? HmmPfn.Write : 0);
        int req = NeedFaultFor(range, i, cpu);
        if (req != 0) return await VmaFault(mm, vma, range, addr, end, req);
        if (pte.Special && pte.Pfn != PhysMem.ZeroPfn)
        {
            range.HmmPfns[i] = HmmPfn.Error;
            return 0;
        }
        range.HmmPfns[i] = cpu == 0 ? 0 : (ulong)pte.Pfn | cpu;
        return 0;
    }

    /// <summary>
    /// hmm_vma_fault: handle_mm_fault(FAULT_FLAG_REMOTE [| WRITE]) for every page of [addr, end), then -EBUSY so that
    /// the walk restarts at addr. A write fault in a VMA without VM_WRITE is -EPERM.
    /// </summary>
    static async ValueTask<int> VmaFault(MmStruct mm, Vma vma, HmmRange range, ulong addr, ulong end, int need)
    {
        using var _ = mm.Kernel.S.Current.Enter("hmm_vma_fault");
        var flags = FaultFlags.Remote;
        if ((need & NeedWriteFault) != 0)
        {
            if (!vma.Writable) return EPERM;
            flags |= FaultFlags.Write;
        }
        for (ulong a = addr; a < end; a += MmStruct.PageSize)
        {
            var r = await Memory.HandleMmFault(mm, a, flags);
            if (r is VmFault.SigSegv or VmFault.Oom) return EFAULT;
        }
        return Busy(range, addr);
    }
}
