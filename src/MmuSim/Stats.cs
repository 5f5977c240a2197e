using System.Runtime.CompilerServices;

namespace MmuSim;

/// <summary>
/// Workload counters. One enum for every subsystem so that a run reports them in one table; names print in snake_case.
/// Add new counters at the end of their subsystem's block.
/// </summary>
public enum Stat
{
    // ---- primary mm
    Faults,
    AnonReadFaults,
    AnonWriteFaults,
    ZeroPageMaps,
    CowCopies,
    CowReuses,
    ThpFaults,
    /// <summary>mTHP anon_fault_alloc: an anon write fault allocated and mapped a large folio smaller than a PMD (6.8+).</summary>
    MthpFaultAlloc,
    /// <summary>THP_FILE_MAPPED: a huge page-cache folio mapped by a PMD (do_set_pmd, set_huge_pmd).</summary>
    ThpFileMapped,
    /// <summary>THP_FILE_ALLOC: a shmem fault allocated a huge folio (shmem_enabled).</summary>
    ThpFileAlloc,
    ThpSplits,
    PagesZapped,
    PagesFreed,
    TlbFlushesLocal,
    TlbFlushesRemote,
    PagesReclaimed,
    PagesMigrated,
    PagesCleaned,
    LazyfreeDiscarded,
    OomReapRetries,
    ForkCopiedPtes,
    /// <summary>thp_split_page: folios split by split_huge_page (not PMD splits, which <see cref="ThpSplits"/> counts).</summary>
    ThpSplitPages,
    /// <summary>hugetlb_no_page: huge pages faulted in from the hugetlb pool.</summary>
    HugetlbFaults,
    /// <summary>khugepaged's pages_collapsed for shmem: huge page-cache folios collapse_file made.</summary>
    ThpCollapseFile,
    /// <summary>collapse_pte_mapped_thp: page tables of PTE-mapped file THPs retracted.</summary>
    ThpPteMappedCollapsed,
    /// <summary>pte_offset_map_lock found the PMD no longer pointing at the table its caller found before it slept (6.6+ lockless retraction): the fault retried.</summary>
    PteTableRetracted,

    // ---- notifier core
    NotifierStarts,
    NotifierEnds,
    NotifierInvalidatePage,
    NotifierChangePte,
    NotifierInvalidateRange,
    NotifierClearFlushYoung,
    NotifierClearYoung,

    // ---- KVM
    VmExits,
    VmExitsEptViolation,
    VmExitsWriteProtect,
    GuestReads,
    GuestWrites,
    GuestTlbHits,
    SptesInstalled,
    SptesZapped,
    KvmRemoteTlbFlushes,
    KvmFaultRetries,
    KvmChangePteFoundPresent,
    KvmChangePteCalls,
    KvmAgeCalls,
    KvmEfaults,
    /// <summary>KVM binary stat pf_taken: faults handled by kvm_mmu_do_page_fault (not prefetch).</summary>
    KvmPfTaken,
    /// <summary>KVM binary stat pf_fixed: faults that returned RET_PF_FIXED.</summary>
    KvmPfFixed,
    /// <summary>SPTEs installed by direct_pte_prefetch (no fault of their own).</summary>
    KvmSptesPrefetched,
    /// <summary>KVM binary stat pf_fast: write-protect faults fixed by fast_page_fault (also counted in pf_fixed).</summary>
    KvmPfFast,
    /// <summary>KVM binary stat pf_emulate: faults that returned RET_PF_EMULATE (MMIO, a write to a read-only memslot).</summary>
    KvmPfEmulate,
    /// <summary>KVM binary stat pf_mmio_spte_created: MMIO SPTEs installed by kvm_handle_noslot_fault (x86, mmio_caching).</summary>
    KvmPfMmioSpteCreated,
    /// <summary>KVM binary stat mmio_exits: KVM_EXIT_MMIO exits to the VMM.</summary>
    KvmMmioExits,
    /// <summary>KVM_EXIT_DIRTY_RING_FULL exits (the vCPU's dirty ring reached its soft limit).</summary>
    KvmDirtyRingFullExits,
    /// <summary>KVM binary stat tlb_flush (vCPU): KVM_REQ_TLB_FLUSH requests serviced at guest entry.</summary>
    KvmVcpuTlbFlushes,

    // ---- KSM
    KsmPagesScanned,
    KsmMerges,
    KsmMergeFailures,
    KsmUnmerges,
    KsmFullScans,

    // ---- devices
    DeviceFaults,
    DeviceInvalidations,

    // ---- KVM gfn_to_pfn_cache
    KvmGpcRetries,

    // ---- userfaultfd
    /// <summary>Faults queued to a userfaultfd by handle_userfault.</summary>
    UffdFaults,
    /// <summary>Pages placed by UFFDIO_COPY, UFFDIO_ZEROPAGE and UFFDIO_CONTINUE.</summary>
    UffdPagesPlaced,
    /// <summary>Pages UFFDIO_MOVE remapped (a THP counts 512).</summary>
    UffdPagesMoved,
}

/// <summary>Counter storage: a flat array indexed by <see cref="Stat"/>.</summary>
public sealed class Stats
{
    readonly long[] _v = new long[Enum.GetValues<Stat>().Length];

    public long this[Stat s] => _v[(int)s];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Inc(Stat s, long n = 1) => _v[(int)s] += n;

    public void Reset() => Array.Clear(_v);

    /// <summary>snake_case name: <c>VmExitsEptViolation</c> → <c>vm_exits_ept_violation</c>.</summary>
    public static string NameOf(Stat s)
    {
        var n = s.ToString();
        var sb = new System.Text.StringBuilder(n.Length + 8);
        for (int i = 0; i < n.Length; i++)
        {
            if (char.IsUpper(n[i]) && i > 0) sb.Append('_');
            sb.Append(char.ToLowerInvariant(n[i]));
        }
        return sb.ToString();
    }

    /// <summary>Non-zero counters in declaration order.</summary>
    public IEnumerable<(string Name, long Value)> NonZero()
    {
        foreach (var s in Enum.GetValues<Stat>())
            if (_v[(int)s] != 0) yield return (NameOf(s), _v[(int)s]);
    }
}
