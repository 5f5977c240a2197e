namespace MmuSim.Sched;

/// <summary>What kind of shared object a step touches (see <see cref="Footprint"/>).</summary>
public enum ObjectClass : byte
{
    /// <summary>Unknown or many objects: dependent with every step.</summary>
    Global,
    /// <summary>One lock (a <see cref="LockSet"/> slot, a <see cref="KRwLock"/>): key = lock id and slot.</summary>
    Lock,
    /// <summary>The PTE of one page (key = page number; every mm's table at that address, conflated).</summary>
    Pte,
    /// <summary>The PMD entry of one 2 MiB region (key = region number): covers every PTE of the region.</summary>
    Pmd,
    /// <summary>Any SPTE of any VM (the gfn is not used: slot-wide zaps and the slot's counters are shared).</summary>
    Spte,
    /// <summary>One <see cref="SharedVar"/> (key = its object id, plus <see cref="Footprint.SecondaryFlag"/> when it is
    /// secondary-MMU state): a counter group named by its point, or a lock that guards it.</summary>
    Var,
}

/// <summary>
/// The shared object a step (the execution of one context from a scheduling point to its next one) accesses, and
/// whether it writes it: the input of the dependence relation of partial-order reduction
/// (<see cref="MmuSim.Explore.DporStrategy"/>). Two steps of different contexts are dependent when swapping them
/// could change the state or what either of them does.
/// </summary>
/// <remarks>
/// <para>A point is reached *before* its access, so the footprint of the point a context is parked at describes the
/// step it will take when resumed. The mapping from point kinds is deliberately conservative, because a step may do more
/// than its point names (hidden accesses must be covered by the object named, or the step must be Global):</para>
/// <list type="bullet">
/// <item>LockAcquire on a lock object: <see cref="ObjectClass.Lock"/> (read-lock and write-lock alike, both writes);
/// a split page-table lock also depends on every memory step (see below).
/// State read right after the acquire is protected by that lock, so its writers are ordered by the same lock.</item>
/// <item>LockRelease: Global. Work done after a release up to the next point (put_page and the free checks that read
/// every secondary, waking waiters) is not named by the release.</item>
/// <item>PteRead/PteWrite: <see cref="ObjectClass.Pte"/> of the page, always a write: a user access behind a PteRead
/// point also sets the accessed/dirty bits and stores into the frame. Dependent with the Pmd of its region and with
/// every Spte step (the checker compares SPTEs with PTEs, and frees hidden in PTE steps are checked against SPTEs).</item>
/// <item>PmdRead/PmdWrite: <see cref="ObjectClass.Pmd"/>, a write, dependent with every PTE of its 2 MiB region.</item>
/// <item>SpteRead/SpteWrite: <see cref="ObjectClass.Spte"/> (read or write); reads commute with reads.</item>
/// <item>A point whose subject is a <see cref="VarAccess"/> (any kind: a Counter, a Barrier before reads of the group):
/// <see cref="ObjectClass.Var"/>, read or write; dependent with writes of the same variable and, for secondary-MMU
/// state, with every SPTE step. A LockAcquire of a lock whose <see cref="LockSet.Guards"/> (or
/// <see cref="KRwLock.Guards"/>) names a variable is a write of that variable (the holder writes it without a point).</item>
/// <item>Everything else (unnamed counters, callbacks, barriers, frees, allocations, guest and device accesses, TLB flushes,
/// the first step of a context, the step after a context blocked, slept or spin-waited): Global.</item>
/// </list>
/// <para><b>State invariants.</b> The checker scans every secondary translation after every step (CheckMode.Full): a
/// predicate per address over its PTE, its SPTEs, whether its page-table lock is held and whether an invalidation is
/// in flight. Reduction explores only some orders of independent steps, so it is sound for these scans only if two
/// steps that both touch the inputs of one address's predicate are dependent: PTE/PMD steps of the same page or region
/// are, PTE/PMD and SPTE steps always are, acquiring a split PTL is dependent with every memory step, and the in-flight
/// state changes only in Global steps (callbacks and counters). Two independent steps then touch disjoint predicates,
/// and a predicate violated after one of them is still violated after both, in whichever order.
/// The store numbering of the write-order check orders CPU stores to different pages: while it is on
/// (<see cref="Scheduler.AllStepsDependent"/>) every step is Global.</para>
/// <para>Known caveat: a frame mapped at two different virtual addresses and accessed by user loads and stores through
/// both is not seen as one object (the PTE key is the address).</para>
/// </remarks>
public readonly record struct Footprint(ObjectClass Class, ulong Key, bool Write)
{
    public static readonly Footprint Global = new(ObjectClass.Global, 0, true);

    /// <summary>Key bit of a lock of a <see cref="LockSet"/> with several slots: the split page-table locks, whose
    /// holding excuses the checker's scan of the PTEs of their table (so they do not commute with memory steps).</summary>
    public const ulong SplitLockFlag = 1UL << 63;

    /// <summary>
    /// Subject of a vCPU's <see cref="PointKind.GuestAccess"/> point whose step reads the SPTEs and the VM's secondary
    /// state and stores into guest frames: an SPTE write (dependent with every SPTE, PTE and PMD step and with the
    /// VM's secondary-state variables).
    /// </summary>
    public static readonly object GuestMemory = new GuestMemoryToken();

    sealed class GuestMemoryToken
    {
        public override string ToString() => "guest memory";
    }

    /// <summary>Key bit of a <see cref="SharedVar"/> that is secondary-MMU state (dependent with every SPTE step).</summary>
    public const ulong SecondaryFlag = 1UL << 62;

    static Footprint Of(SharedVar v, bool write) =>
        new(ObjectClass.Var, (v.SecondaryState ? SecondaryFlag : 0) | (uint)v.ObjectId, write);

    /// <summary>The footprint of the step that follows a point of <paramref name="kind"/>.</summary>
    public static Footprint Of(PointKind kind, ulong arg, object? subject) => kind switch
    {
        _ when subject is VarAccess va => Of(va.Var, va.IsWrite),
        PointKind.GuestAccess when ReferenceEquals(subject, GuestMemory) => new(ObjectClass.Spte, 0, true),
        PointKind.LockAcquire when subject is LockSet { Guards: { } g } => Of(g, true),
        PointKind.LockAcquire when subject is KRwLock { Guards: { } g } => Of(g, true),
        PointKind.LockAcquire when subject is LockSet { Capacity: > 1 } ls => new(ObjectClass.Lock, SplitLockFlag | ((ulong)(uint)ls.ObjectId << 32) | (uint)arg, true),
        PointKind.LockAcquire when subject is LockSet ls => new(ObjectClass.Lock, ((ulong)(uint)ls.ObjectId << 32) | (uint)arg, true),
        PointKind.LockAcquire when subject is KRwLock rw => new(ObjectClass.Lock, (ulong)(uint)rw.ObjectId << 32, true),
        PointKind.PteRead or PointKind.PteWrite => new(ObjectClass.Pte, arg >> 12, true),
        PointKind.PmdRead or PointKind.PmdWrite => new(ObjectClass.Pmd, arg >> 21, true),
        PointKind.SpteRead => new(ObjectClass.Spte, 0, false),
        PointKind.SpteWrite => new(ObjectClass.Spte, 0, true),
        _ => Global,
    };

    /// <summary>Whether swapping a step with footprint <paramref name="a"/> and one with <paramref name="b"/> (of
    /// different contexts) may change the outcome.</summary>
    public static bool Dependent(in Footprint a, in Footprint b)
    {
        if (a.Class == ObjectClass.Global || b.Class == ObjectClass.Global) return true;
        if (!a.Write && !b.Write) return false;
        if (a.Class == b.Class) return a.Class == ObjectClass.Spte || a.Key == b.Key;
        return (a.Class, b.Class) switch
        {
            (ObjectClass.Pte, ObjectClass.Pmd) => a.Key >> 9 == b.Key,
            (ObjectClass.Pmd, ObjectClass.Pte) => b.Key >> 9 == a.Key,
            (ObjectClass.Spte, ObjectClass.Pte or ObjectClass.Pmd) => true,
            (ObjectClass.Pte or ObjectClass.Pmd, ObjectClass.Spte) => true,
            (ObjectClass.Var, ObjectClass.Spte) => (a.Key & SecondaryFlag) != 0,
            (ObjectClass.Spte, ObjectClass.Var) => (b.Key & SecondaryFlag) != 0,
            (ObjectClass.Var, _) or (_, ObjectClass.Var) => false,
            (ObjectClass.Lock, _) => (a.Key & SplitLockFlag) != 0, // a split PTL and a memory step
            (_, ObjectClass.Lock) => (b.Key & SplitLockFlag) != 0,
            _ => false,
        };
    }

    public override string ToString() => Class switch
    {
        ObjectClass.Global => "global",
        ObjectClass.Lock => $"lock#{(Key & ~SplitLockFlag) >> 32}[{(uint)Key}]",
        ObjectClass.Pte => $"pte 0x{Key << 12:x}",
        ObjectClass.Pmd => $"pmd 0x{Key << 21:x}",
        ObjectClass.Var => $"var#{(uint)Key} {(Write ? "write" : "read")}",
        _ => Write ? "spte write" : "spte read",
    };
}

/// <summary>
/// A strategy that wants to see every step of a run, forced ones included, with its footprint (partial-order reduction).
/// The scheduler calls <see cref="Attach"/> when a run starts and <see cref="OnStep"/> each time a context begins a step.
/// </summary>
public interface IStepObserver
{
    void Attach(Scheduler s);

    void OnStep(int context, in Footprint footprint);
}
