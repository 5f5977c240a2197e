using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Secondary;

/// <summary>
/// What the kernel offers a <see cref="SecondaryDriver"/>: the mirrored process, the buffer the device was given,
/// the era, notifier subscription, get_user_pages, device memory accesses reported to the checker, locks and
/// scheduling points. One context per device instance, created by the scenario's <c>secondary</c> op.
/// Every method that touches shared state is an awaited scheduling point.
/// </summary>
public sealed partial class DriverContext
{
    readonly Kernel _k;

    /// <summary>Create a context for a device on <paramref name="mm"/> that was handed [<paramref name="start"/>, +<paramref name="length"/>).</summary>
    /// <param name="kernel">The simulated machine.</param>
    /// <param name="mm">The process the device mirrors.</param>
    /// <param name="name">The device's name in the scenario.</param>
    /// <param name="start">Start of the user buffer (page aligned).</param>
    /// <param name="length">Length of the user buffer in bytes (a multiple of the page size).</param>
    public DriverContext(Kernel kernel, MmStruct mm, string name, ulong start, ulong length)
    {
        _k = kernel;
        Mm = mm;
        Name = name;
        Start = start;
        Length = length;
    }

    /// <summary>The simulated machine (escape hatch to the whole model; the members below are the supported surface).</summary>
    public Kernel Kernel => _k;

    /// <summary>The process whose address space the device mirrors.</summary>
    public MmStruct Mm { get; }

    /// <summary>The device's name in the scenario (<c>secondary: { name: ... }</c>).</summary>
    public string Name { get; }

    /// <summary>Start of the user buffer handed to the device (a userptr object's start address).</summary>
    public ulong Start { get; }

    /// <summary>Length in bytes of the user buffer handed to the device.</summary>
    public ulong Length { get; }

    /// <summary>End (exclusive) of the user buffer: <see cref="Start"/> + <see cref="Length"/>.</summary>
    public ulong End => Start + Length;

    /// <summary>The page size (4 KiB).</summary>
    public const ulong PageSize = MmStruct.PageSize;

    /// <summary>The kernel era this run models, e.g. <c>6.13</c>.</summary>
    public string EraName => _k.Era.Name;

    /// <summary>Does the era have <paramref name="feature"/>? (Era differences are data: ask, never compare versions.)</summary>
    public bool Has(Feature feature) => _k.Era.Has(feature);

    /// <summary>mmu_notifier_register: subscribe <paramref name="notifier"/> to <see cref="Mm"/>; returns 0 or a negative errno.</summary>
    public ValueTask<int> MmuNotifierRegister(MmuNotifier notifier) => Mm.Notifiers.Register(notifier);

    /// <summary>mmu_notifier_unregister: calls ->release, then waits for callbacks in flight (SRCU); may sleep.</summary>
    public ValueTask MmuNotifierUnregister(MmuNotifier notifier) => Mm.Notifiers.Unregister(notifier);

    /// <summary>
    /// get_user_pages_remote for one page (the fault path of a userptr driver; hmm_range_fault with HMM_PFN_REQ_FAULT
    /// behaves the same for a normal page): fault <paramref name="address"/> in under mmap_lock (read), breaking COW
    /// for <paramref name="write"/>, and take a page reference. Release it with <see cref="PutPage"/> once the
    /// translation is installed (or discarded): the notifier, not the reference, is what keeps the translation coherent.
    /// </summary>
    public async ValueTask<DevicePage> GetUserPages(ulong address, bool write)
    {
        address &= MmStruct.PageMask;
        var g = await Gup.GetUserPage(Mm, address, write);
        return g.Ok ? new DevicePage(address, g.Pfn, g.Generation, g.Writable, 0) : new DevicePage(address, -1, 0, false, g.Error);
    }

    /// <summary>put_page: drop the reference <see cref="GetUserPages"/> took (a freed page is then checked as unreachable).</summary>
    public void PutPage(DevicePage page)
    {
        if (page.Ok) Folio.Put(_k, page.Pfn);
    }

    /// <summary>
    /// A device read (DMA) through <paramref name="translation"/>: a scheduling point, then the checker is told
    /// (a freed or no-longer-mapped page is a violation right here), then the page's contents are returned.
    /// </summary>
    public async ValueTask<ulong> DeviceRead(SecondaryTranslation translation)
    {
        await _k.S.Point(PointKind.GuestAccess, translation.Hva);
        _k.Checker.OnSecondaryAccess(Owner, translation.Hva, translation.Pfn, translation.Generation, write: false);
        return _k.Mem[translation.Pfn].Contents;
    }

    /// <summary>A device write (DMA) of <paramref name="value"/> through <paramref name="translation"/>; checked like <see cref="DeviceRead"/>.</summary>
    public async ValueTask DeviceWrite(SecondaryTranslation translation, ulong value)
    {
        await _k.S.Point(PointKind.GuestAccess, translation.Hva);
        _k.Checker.OnSecondaryAccess(Owner, translation.Hva, translation.Pfn, translation.Generation, write: true);
        _k.Mem[translation.Pfn].Contents = value;
    }

    /// <summary>A lock for the driver's own state: a spinlock (<paramref name="sleeping"/> false; callers must not sleep while holding it) or a mutex.</summary>
    public DeviceLock CreateLock(string name, bool sleeping) => new(_k, Name + "->" + name, sleeping);

    /// <summary>
    /// An explicit scheduling point: call it before touching state that another context may touch and that no lock
    /// or other <see cref="DriverContext"/> call guards (an atomic counter, a lockless flag). The explorer may switch here.
    /// </summary>
    public async ValueTask SchedulingPoint(ulong address = 0) => await _k.S.Point(PointKind.Counter, address);

    /// <summary>Name the driver function now running, for traces and race diagrams: <c>using var _ = Context.Enter("my_gpu_fault");</c></summary>
    public FuncScope Enter(string function) => _k.S.Current.Enter(function);

    /// <summary>Count one device fault (shown in the run's counters as device_faults).</summary>
    public void CountFault() => _k.Stats.Inc(Stat.DeviceFaults);

    /// <summary>Count one invalidation the device handled (shown as device_invalidations).</summary>
    public void CountInvalidation() => _k.Stats.Inc(Stat.DeviceInvalidations);

    /// <summary>The driver this context belongs to (set by the <c>secondary</c> op when it creates the driver).</summary>
    internal ISecondaryMmu Owner { get; set; } = null!;
}

/// <summary>A page <see cref="DriverContext.GetUserPages"/> returned: what to install in the device page table.</summary>
/// <param name="Address">The page-aligned user address.</param>
/// <param name="Pfn">The frame, or -1 on error.</param>
/// <param name="Generation">The frame's generation (put it in the <see cref="SecondaryTranslation"/>).</param>
/// <param name="Writable">Whether the primary maps it writable (a write fault always returns it writable).</param>
/// <param name="Error">0, or -EFAULT (-14) / -ENOMEM (-12).</param>
public readonly record struct DevicePage(ulong Address, long Pfn, ushort Generation, bool Writable, int Error)
{
    /// <summary>The fault succeeded.</summary>
    public bool Ok => Error == 0;

    /// <summary>The translation to install for this page (label <paramref name="where"/> in reports).</summary>
    public SecondaryTranslation ToTranslation(string where) => new(Address, Pfn, Generation, Writable, MmStruct.PageSize, where);
}

/// <summary>A driver lock (spinlock or mutex): acquiring and releasing are scheduling points; deadlocks and sleeping under a spinlock are reported.</summary>
public sealed class DeviceLock
{
    readonly KSpinLock? _spin;
    readonly KMutex? _mutex;

    internal DeviceLock(Kernel k, string name, bool sleeping)
    {
        if (sleeping) _mutex = new KMutex(k.S, name);
        else _spin = new KSpinLock(k.S, name);
        Name = name;
        Sleeping = sleeping;
    }

    /// <summary>The lock's name in traces.</summary>
    public string Name { get; }

    /// <summary>True for a mutex (may sleep: not allowed in a non-blockable invalidation), false for a spinlock.</summary>
    public bool Sleeping { get; }

    /// <summary>spin_lock / mutex_lock.</summary>
    public ValueTask Lock() => _mutex != null ? _mutex.Lock() : _spin!.Lock();

    /// <summary>spin_unlock / mutex_unlock.</summary>
    public ValueTask Unlock() => _mutex != null ? _mutex.Unlock() : _spin!.Unlock();

    /// <summary>spin_trylock / mutex_trylock: true if acquired (no scheduling point).</summary>
    public bool TryLock() => _mutex != null ? _mutex.TryLock() : _spin!.TryLock();

    /// <summary>Whether the calling context holds it.</summary>
    public bool IsHeldByCurrent => _mutex != null ? _mutex.IsHeldByCurrent : _spin!.IsHeldByCurrent;

    /// <summary>The lock's name.</summary>
    public override string ToString() => Name;
}
