using System.Runtime.CompilerServices;

namespace MmuSim.Sched;

/// <summary>
/// A set of exclusive locks addressed by index: the split page-table locks (one per PTE table) and PMD locks live
/// in one of these so that nothing is allocated per table. Slot i is free when its owner is 0, else owner = ctx id + 1.
/// Contended acquirers block (spinning or sleeping is the same to the model: the context cannot progress) and are
/// all woken by the release; they re-check. Spinning locks raise <see cref="KContext.AtomicDepth"/> while held;
/// sleeping locks call <see cref="Scheduler.MightSleep"/> on acquire, as mutex_lock() does.
/// </summary>
public sealed class LockSet
{
    readonly Scheduler _s;
    int[] _owner;
    ulong[] _waiters;

    public LockSet(Scheduler s, string name, bool sleeping, int capacity = 1)
    {
        _s = s;
        ObjectId = s.NewObjectId();
        Name = name;
        Sleeping = sleeping;
        _owner = new int[capacity];
        _waiters = new ulong[capacity];
    }

    public string Name { get; }

    /// <summary>Identity of this lock set for partial-order reduction (<see cref="Footprint"/>).</summary>
    public int ObjectId { get; }

    /// <summary>The variable group this lock protects, if named: an acquire is then a write of it (<see cref="Footprint"/>).</summary>
    public SharedVar? Guards { get; set; }

    /// <summary>True for mutex-like locks (may sleep), false for spinlocks.</summary>
    public bool Sleeping { get; }

    /// <summary>raw_spinlock_t: spins even under PREEMPT_RT (<see cref="Scheduler.PreemptRt"/>), where a plain
    /// spinlock_t is an rt_mutex whose acquire may sleep.</summary>
    public bool Raw { get; set; }

    public int Capacity => _owner.Length;

    /// <summary>Grow to hold at least <paramref name="n"/> locks (page-table pool growth).</summary>
    public void EnsureCapacity(int n)
    {
        if (n <= _owner.Length) return;
        int cap = Math.Max(n, _owner.Length * 2);
        Array.Resize(ref _owner, cap);
        Array.Resize(ref _waiters, cap);
    }

    public bool IsHeld(int i) => _owner[i] != 0;

    public bool IsHeldByCurrent(int i) => _owner[i] == _s.Current.Id + 1;

    public int OwnerId(int i) => _owner[i] - 1;

    /// <summary>spin_lock / mutex_lock.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ValueTask Lock(int i = 0)
    {
        if (_s.PreemptRt && !Sleeping && !Raw) _s.RtLockMightResched("spin_lock", Name);
        // Fast path (no switch, uncontended spinlock): no async state machine.
        bool passed = _s.OnPoint(PointKind.LockAcquire, (ulong)i, this);
        if (passed && !Sleeping && _owner[i] == 0)
        {
            Take(i, _s.Current);
            return default;
        }
        return LockSlow(i, passed);
    }

    async ValueTask LockSlow(int i, bool pointPassed)
    {
        if (!pointPassed) await _s.Parked();
        var me = _s.Current;
        if (Sleeping) _s.MightSleep($"mutex_lock({Name})");
        while (_owner[i] != 0)
        {
            if (_owner[i] == me.Id + 1)
            {
                _s.Fail(Invariants.Deadlock, $"{me} takes {Name}[{i}] recursively");
                await _s.Block(this);
            }
            _waiters[i] |= 1UL << me.Id;
            await _s.Block(LockLabel(i), PointKind.LockAcquire);
        }
        Take(i, me);
    }

    /// <summary>spin_trylock / mutex_trylock: no point, never blocks.</summary>
    public bool TryLock(int i = 0)
    {
        if (_owner[i] != 0) return false;
        Take(i, _s.Current);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    void Take(int i, KContext me)
    {
        _owner[i] = me.Id + 1;
        if (!Sleeping) me.AtomicDepth++;
        _s.Charge(CostKind.Lock);
        _s.Weak?.LockAcquired(this, i);
    }

    /// <summary>spin_unlock / mutex_unlock.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ValueTask Unlock(int i = 0)
    {
        if (_s.OnPoint(PointKind.LockRelease, (ulong)i, this))
        {
            UnlockNoPoint(i);
            return default;
        }
        return UnlockSlow(i);
    }

    async ValueTask UnlockSlow(int i)
    {
        await _s.Parked();
        UnlockNoPoint(i);
    }

    /// <summary>Release without a preceding point (used when the release is part of the same atomic step).</summary>
    public void UnlockNoPoint(int i = 0)
    {
        var me = _s.Current;
        if (_owner[i] != me.Id + 1)
            throw new ModelException($"{me} releases {Name}[{i}] owned by {(_owner[i] == 0 ? "nobody" : "CPU" + (_owner[i] - 1))}");
        _s.Weak?.LockReleased(this, i);
        _owner[i] = 0;
        if (!Sleeping) me.AtomicDepth--;
        if (_waiters[i] != 0) _s.WakeMask(ref _waiters[i]);
    }

    string LockLabel(int i) => Capacity == 1 ? Name : $"{Name}[{i}]";

    public override string ToString() => Name;
}

/// <summary>A single spinlock_t (mmu_lock before 5.12, mn_invalidate_lock, subscriptions->lock).</summary>
public sealed class KSpinLock(Scheduler s, string name)
{
    readonly LockSet _set = new(s, name, sleeping: false);

    public string Name => name;

    public bool IsHeld => _set.IsHeld(0);

    public bool IsHeldByCurrent => _set.IsHeldByCurrent(0);

    /// <summary>See <see cref="LockSet.Guards"/>.</summary>
    public SharedVar? Guards { get => _set.Guards; set => _set.Guards = value; }

    /// <summary>raw_spinlock_t rather than spinlock_t (matters only under PREEMPT_RT, <see cref="LockSet.Raw"/>).</summary>
    public bool Raw { get => _set.Raw; set => _set.Raw = value; }

    public ValueTask Lock() => _set.Lock();

    public ValueTask Unlock() => _set.Unlock();

    /// <summary>Release as part of the current atomic step (no point).</summary>
    public void UnlockNoPoint() => _set.UnlockNoPoint();

    public bool TryLock() => _set.TryLock();

    public override string ToString() => name;
}

/// <summary>A struct mutex (sleeping). mutex_lock in atomic context is a violation.</summary>
public sealed class KMutex(Scheduler s, string name)
{
    readonly LockSet _set = new(s, name, sleeping: true);

    public string Name => name;

    public bool IsHeld => _set.IsHeld(0);

    public bool IsHeldByCurrent => _set.IsHeldByCurrent(0);

    /// <summary>See <see cref="LockSet.Guards"/>.</summary>
    public SharedVar? Guards { get => _set.Guards; set => _set.Guards = value; }

    public ValueTask Lock() => _set.Lock();

    public ValueTask Unlock() => _set.Unlock();

    /// <summary>Release as part of the current atomic step (no point).</summary>
    public void UnlockNoPoint() => _set.UnlockNoPoint();

    public bool TryLock() => _set.TryLock();

    public override string ToString() => name;
}

/// <summary>
/// Reader/writer lock: <c>rw_semaphore</c> (mmap_lock; sleeping) or <c>rwlock_t</c> (KVM mmu_lock from 5.12; spinning).
/// Writers exclude everyone; readers share. Waiting writers do not block new readers (the model keeps it simple;
/// the kernel's rwsem is writer-preferring, which only narrows interleavings).
/// </summary>
public sealed class KRwLock(Scheduler s, string name, bool sleeping)
{
    int _writer;         // ctx id + 1, or 0
    ulong _readers;      // bit per reading ctx
    ulong _waiters;

    public string Name => name;

    /// <summary>Identity of this lock for partial-order reduction (<see cref="Footprint"/>).</summary>
    public int ObjectId { get; } = s.NewObjectId();

    /// <summary>See <see cref="LockSet.Guards"/>.</summary>
    public SharedVar? Guards { get; set; }

    public bool Sleeping => sleeping;

    public bool IsWriteLocked => _writer != 0;

    /// <summary>Some context holds it for read.</summary>
    public bool IsReadLocked => _readers != 0;

    public bool IsReadLockedByCurrent => (_readers & (1UL << s.Current.Id)) != 0;

    public bool IsWriteLockedByCurrent => _writer == s.Current.Id + 1;

    public bool IsLockedByCurrent => IsReadLockedByCurrent || IsWriteLockedByCurrent;

    /// <summary>down_read / read_lock.</summary>
    public async ValueTask ReadLock()
    {
        await s.Point(PointKind.LockAcquire, 0, this);
        var me = s.Current;
        if (sleeping) s.MightSleep($"down_read({name})");
        else if (s.PreemptRt) s.RtLockMightResched("read_lock", name);
        while (_writer != 0)
        {
            if (_writer == me.Id + 1) s.Fail(Invariants.Deadlock, $"{me} read-locks {name} while write-holding it");
            _waiters |= 1UL << me.Id;
            await s.Block(this, PointKind.LockAcquire);
        }
        _readers |= 1UL << me.Id;
        if (!sleeping) me.AtomicDepth++;
        s.Charge(CostKind.Lock);
        s.Weak?.LockAcquired(this, 0);
    }

    /// <summary>down_write / write_lock.</summary>
    public async ValueTask WriteLock()
    {
        await s.Point(PointKind.LockAcquire, 0, this);
        var me = s.Current;
        if (sleeping) s.MightSleep($"down_write({name})");
        else if (s.PreemptRt) s.RtLockMightResched("write_lock", name);
        while (_writer != 0 || _readers != 0)
        {
            if (_writer == me.Id + 1 || (_readers & (1UL << me.Id)) != 0)
                s.Fail(Invariants.Deadlock, $"{me} write-locks {name} while holding it");
            _waiters |= 1UL << me.Id;
            await s.Block(this, PointKind.LockAcquire);
        }
        _writer = me.Id + 1;
        if (!sleeping) me.AtomicDepth++;
        s.Charge(CostKind.Lock);
        s.Weak?.LockAcquired(this, 0);
    }

    /// <summary>down_read_trylock / read_trylock: take it for read unless a writer holds it (a scheduling point, never blocks).</summary>
    public async ValueTask<bool> TryReadLock()
    {
        await s.Point(PointKind.LockAcquire, 0, this);
        if (_writer != 0) return false;
        _readers |= 1UL << s.Current.Id;
        if (!sleeping) s.Current.AtomicDepth++;
        s.Charge(CostKind.Lock);
        s.Weak?.LockAcquired(this, 0);
        return true;
    }

    /// <summary>down_write_trylock / write_trylock: take it for write if nobody holds it (a scheduling point, never blocks).</summary>
    public async ValueTask<bool> TryWriteLock()
    {
        await s.Point(PointKind.LockAcquire, 0, this);
        if (_writer != 0 || _readers != 0) return false;
        _writer = s.Current.Id + 1;
        if (!sleeping) s.Current.AtomicDepth++;
        s.Charge(CostKind.Lock);
        s.Weak?.LockAcquired(this, 0);
        return true;
    }

    public async ValueTask ReadUnlock()
    {
        await s.Point(PointKind.LockRelease, 0, this);
        var me = s.Current;
        ulong bit = 1UL << me.Id;
        if ((_readers & bit) == 0) throw new ModelException($"{me} read-unlocks {name} it does not hold");
        s.Weak?.LockReleased(this, 0);
        _readers &= ~bit;
        if (!sleeping) me.AtomicDepth--;
        WakeAll();
    }

    public async ValueTask WriteUnlock()
    {
        await s.Point(PointKind.LockRelease, 0, this);
        var me = s.Current;
        if (_writer != me.Id + 1) throw new ModelException($"{me} write-unlocks {name} it does not hold");
        s.Weak?.LockReleased(this, 0);
        _writer = 0;
        if (!sleeping) me.AtomicDepth--;
        WakeAll();
    }

    /// <summary>write_unlock without a scheduling point (releases folded into the same step, e.g. mm_drop_all_locks).</summary>
    public void ForceWriteUnlock()
    {
        var me = s.Current;
        if (_writer != me.Id + 1) throw new ModelException($"{me} write-unlocks {name} it does not hold");
        s.Weak?.LockReleased(this, 0);
        _writer = 0;
        if (!sleeping) me.AtomicDepth--;
        WakeAll();
    }

    /// <summary>Release whichever side the current context holds (mmap_lock users that may hold either).</summary>
    public ValueTask Unlock() => IsWriteLockedByCurrent ? WriteUnlock() : ReadUnlock();

    void WakeAll() => s.WakeMask(ref _waiters);

    public override string ToString() => name;
}

/// <summary>
/// A wait queue: <c>while (!cond) await wq.Wait();</c> sleeps until <see cref="WakeAll"/>. Used for
/// mmu_interval_read_begin, memslot updates waiting for mn_active_invalidate_count, synchronize_srcu.
/// </summary>
public sealed class WaitQueue(Scheduler s, string name)
{
    ulong _waiters;

    public string Name => name;

    /// <summary>Sleep until woken (a sleeping operation). The caller re-checks its condition.</summary>
    public BlockAwaiter Wait()
    {
        s.MightSleep($"wait_event({name})");
        _waiters |= 1UL << s.Current.Id;
        return s.Block(this);
    }

    public void WakeAll() => s.WakeMask(ref _waiters);

    public override string ToString() => name;
}
