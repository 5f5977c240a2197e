namespace MmuSim.Sched;

/// <summary>
/// A shared variable, or a group of variables always accessed together, that scheduling points can name so that
/// partial-order reduction (<see cref="Footprint"/>) sees which steps touch it: a counter such as KVM's
/// mmu_invalidate_seq / _in_progress / range, its SRCU reader count and memslots (one group per VM). A dense object id,
/// as locks have, keeps the identity deterministic. Pass <see cref="Read"/> or <see cref="Write"/> as the subject of the
/// point before the access: <c>await S.Point(PointKind.Counter, gfn, kvm.InvalidateState.Read)</c>. Locks that protect
/// the group name it in <see cref="LockSet.Guards"/>, so that an acquire (after which the holder writes the group
/// without a point of its own) is a write of the group.
/// </summary>
/// <remarks>A point may name a variable only if the step it begins (up to the next point of the same context) touches
/// nothing shared but that variable, the context's own state and statistics no check reads; with
/// <see cref="SecondaryState"/>, also the secondary MMU's own tables (SPTEs), with which such a variable is then dependent.
/// The checker's scans must not read the variable (the in-flight ranges of the notifier core are read by it: those
/// points stay Global).</remarks>
public sealed class SharedVar
{
    public SharedVar(Scheduler s, string name, bool secondaryState)
    {
        ObjectId = s.NewObjectId();
        Name = name;
        SecondaryState = secondaryState;
        Read = new VarAccess(this, write: false);
        Write = new VarAccess(this, write: true);
    }

    /// <summary>Identity for partial-order reduction, in creation order.</summary>
    public int ObjectId { get; }

    public string Name { get; }

    /// <summary>State of a secondary MMU: steps that name it are dependent with every SPTE step.</summary>
    public bool SecondaryState { get; }

    /// <summary>Subject of a point whose step only reads the variable.</summary>
    public VarAccess Read { get; }

    /// <summary>Subject of a point whose step writes (or reads and writes) the variable.</summary>
    public VarAccess Write { get; }

    public override string ToString() => Name;
}

/// <summary>A read or a write of a <see cref="SharedVar"/>: preallocated, so naming it in a point allocates nothing.</summary>
public sealed class VarAccess
{
    internal VarAccess(SharedVar v, bool write)
    {
        Var = v;
        IsWrite = write;
    }

    public SharedVar Var { get; }

    public bool IsWrite { get; }

    public override string ToString() => $"{(IsWrite ? "write" : "read")} {Var.Name}";
}
