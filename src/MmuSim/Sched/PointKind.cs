namespace MmuSim.Sched;

/// <summary>Why a context reached a scheduling point. Recorded in traces and race diagrams.</summary>
public enum PointKind : byte
{
    Start,
    LockAcquire,
    LockRelease,
    PteRead,
    PteWrite,
    PmdRead,
    PmdWrite,
    SpteRead,
    SpteWrite,
    Counter,
    Callback,
    Free,
    Alloc,
    GuestAccess,
    TlbFlush,
    Yield,
    Wait,
    Sleep,
    Barrier,
}
