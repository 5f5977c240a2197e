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
}

/// <summary>
/// The cost model that advances the simulated clock. One entry per kind of work; defaults are order-of-magnitude
/// figures for a 2020s x86-64 server (documented in docs/scenarios.md) and a scenario's <c>costs:</c> map overrides them.
/// </summary>
public sealed class CostModel
{
    /// <summary>Default nanoseconds per unit of work, indexed by <see cref="CostKind"/>.</summary>
    public static readonly IReadOnlyDictionary<CostKind, long> Defaults = new Dictionary<CostKind, long>
    {
        [CostKind.Fault] = 250,          // #PF entry, handle_mm_fault, iret
        [CostKind.ZeroPage] = 150,       // clear_page with rep stosb, 4 KiB
        [CostKind.CopyPage] = 250,       // copy_page, 4 KiB, cache-warm
        [CostKind.Zap] = 20,             // per PTE: clear, rmap, batch
        [CostKind.TlbFlushLocal] = 100,  // invlpg / CR3 write amortised
        [CostKind.TlbFlushRemote] = 500, // shootdown handling on the target
        [CostKind.Ipi] = 1500,           // send + wait for ack
        [CostKind.VmExit] = 1000,        // EPT violation exit + entry
        [CostKind.KsmdScanPage] = 800,   // memcmp/xxhash of 4 KiB + tree walk
        [CostKind.Access] = 1,           // a TLB-hit load/store
        [CostKind.Lock] = 20,            // uncontended spin_lock/unlock pair
        [CostKind.NotifierCall] = 30,    // srcu_read_lock + indirect call
    };

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
