namespace MmuSim.Sched;

/// <summary>Kinds of work the simulated clock charges for.</summary>
public enum CostKind : byte
{
    /// <summary>Page-fault entry/exit plus handle_mm_fault bookkeeping.</summary>
    Fault,
    /// <summary>clear_page() of a 4 KiB page.</summary>
    ZeroPage,
    /// <summary>copy_page() of a 4 KiB page (COW, migration, KSM unmerge).</summary>
    CopyPage,
    /// <summary>Clearing one PTE/SPTE during a zap.</summary>
    Zap,
    /// <summary>Local TLB flush (invlpg or full).</summary>
    TlbFlushLocal,
    /// <summary>Remote TLB shootdown, per target CPU, excluding the IPI.</summary>
    TlbFlushRemote,
    /// <summary>Inter-processor interrupt.</summary>
    Ipi,
    /// <summary>One VM exit and re-entry (EPT violation round trip, excluding the fault work).</summary>
    VmExit,
    /// <summary>ksmd: checksum and tree lookup of one scanned page.</summary>
    KsmdScanPage,
    /// <summary>A memory access that hits (guest or user).</summary>
    Access,
    /// <summary>One uncontended lock acquire/release pair.</summary>
    Lock,
    /// <summary>One notifier callback dispatch (SRCU read lock, list walk, indirect call).</summary>
    NotifierCall,
    /// <summary>KVM's fault handler for one guest fault, excluding the exit itself and any host fault: GUP of the page,
    /// shadow/TDP walk, SPTE install (kvm_mmu_page_fault, user_mem_abort).</summary>
    SecondaryFault,
}

/// <summary>One default of the cost model: nanoseconds per unit and where the figure comes from.</summary>
public readonly record struct CostDefault(long Ns, string Source);

/// <summary>
/// The cost model that advances the simulated clock. One entry per kind of work. The defaults are calibrated on this
/// project's machine (an AMD EPYC guest, Linux 6.18, KVM through kvm_pvm's shadow MMU: bench/realkvm, bench/realfault)
/// where a figure was measured, and are order-of-magnitude estimates otherwise; <see cref="Sources"/> says which.
/// A scenario's <c>costs:</c> map and <c>mmusim experiment --costs FILE</c> override them (docs/experiments.md).
/// </summary>
public sealed class CostModel
{
    /// <summary>Every default with its source, indexed by <see cref="CostKind"/>.</summary>
    public static readonly IReadOnlyDictionary<CostKind, CostDefault> Sources = new Dictionary<CostKind, CostDefault>
    {
        [CostKind.Fault] = new(1900, "measured: real anonymous write fault 2,247 ns on this machine (bench/realfault) minus zero-page and locks"),
        [CostKind.ZeroPage] = new(300, "estimate: clear_page of 4 KiB at ~14 GB/s; the rest of the measured 2,247 ns host fault"),
        [CostKind.CopyPage] = new(400, "estimate: copy_page of 4 KiB (read + write); fits the measured 9.5-13.6 us COW-breaking guest write"),
        [CostKind.Zap] = new(20, "estimate: clear one PTE/SPTE, rmap and batch bookkeeping"),
        [CostKind.TlbFlushLocal] = new(100, "estimate: invlpg / CR3 write amortised"),
        [CostKind.TlbFlushRemote] = new(500, "estimate: shootdown handling on the target CPU"),
        [CostKind.Ipi] = new(1500, "estimate: send an IPI and wait for the ack (kvm_flush_remote_tlbs)"),
        [CostKind.VmExit] = new(1500, "split of the measured read fault through the secondary MMU, 3.4-5 us (bench/realkvm pass 3, nested shadow MMU): exit + entry"),
        [CostKind.KsmdScanPage] = new(800, "estimate: checksum/memcmp of 4 KiB + tree walk"),
        [CostKind.Access] = new(6, "measured: guest hit 5-8 ns/page (bench/realkvm re-read passes)"),
        [CostKind.Lock] = new(20, "estimate: uncontended spin_lock/unlock pair"),
        [CostKind.NotifierCall] = new(30, "estimate: srcu_read_lock + list walk + indirect call"),
        [CostKind.SecondaryFault] = new(2700, "split of the measured read fault through the secondary MMU, 3.4-5 us (bench/realkvm pass 3): GUP + walk + SPTE install"),
    };

    /// <summary>Default nanoseconds per unit of work, indexed by <see cref="CostKind"/>.</summary>
    public static readonly IReadOnlyDictionary<CostKind, long> Defaults = Sources.ToDictionary(kv => kv.Key, kv => kv.Value.Ns);

    readonly long[] _ns = new long[Enum.GetValues<CostKind>().Length];

    public CostModel()
    {
        foreach (var (k, v) in Defaults) _ns[(int)k] = v;
    }

    public long this[CostKind kind]
    {
        get => _ns[(int)kind];
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _ns[(int)kind] = value;
        }
    }
}
