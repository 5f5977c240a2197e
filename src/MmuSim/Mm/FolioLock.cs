using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// PG_locked, the folio lock (folio_lock / folio_trylock / folio_unlock, a sleeping bit lock), for the paths that
/// serialize on it in the model: a page-cache fault holds it from the lookup to the PTE (filemap_fault's
/// lock_folio_maybe_drop_mmap, finish_fault, then folio_unlock), and migration holds it from the unmap to
/// remove_migration_ptes (migrate_folio_unmap / migrate_folio_move).
/// </summary>
/// <remarks>
/// As the kernel's folio_wake_bit does for exclusive waiters (5.9+, "mm: rewrite wait_on_page_bit_common() logic"),
/// folio_unlock hands the lock to the first waiter: a migration pass that fails and relocks at once cannot starve the
/// fault that sleeps on the folio. State per locked folio only, keyed by head pfn; every holder unlocks before it drops
/// its reference, so no state outlives a folio. Lock and unlock are scheduling points (LockAcquire/LockRelease).
/// </remarks>
public sealed class FolioLock
{
    readonly Kernel _k;
    readonly Dictionary<long, (int Owner, Queue<KContext>? Waiters)> _locks = [];

    FolioLock(Kernel k) => _k = k;

    static FolioLock Of(Kernel k) => k.GetSubsystem(static kk => new FolioLock(kk));

    /// <summary>folio_lock: sleeps until the folio is unlocked (or handed to us). The caller holds a reference.</summary>
    public static async ValueTask Lock(Kernel k, long head)
    {
        var fl = Of(k);
        await k.S.Point(PointKind.LockAcquire, (ulong)head, fl);
        k.S.MightSleep($"folio_lock(0x{head:x})");
        var me = k.S.Current;
        if (!fl._locks.TryGetValue(head, out var st)) { fl._locks[head] = (me.Id + 1, null); return; }
        if (st.Owner == me.Id + 1) k.S.Fail(Invariants.Deadlock, $"{me} takes folio_lock(0x{head:x}) recursively");
        (st.Waiters ??= new Queue<KContext>()).Enqueue(me);
        fl._locks[head] = st;
        while (fl._locks[head].Owner != me.Id + 1) await k.S.Block(fl, PointKind.LockAcquire);
    }

    /// <summary>folio_trylock: take the lock if it is free, never sleep.</summary>
    public static async ValueTask<bool> TryLock(Kernel k, long head)
    {
        var fl = Of(k);
        await k.S.Point(PointKind.LockAcquire, (ulong)head, fl);
        if (fl._locks.ContainsKey(head)) return false;
        fl._locks[head] = (k.S.Current.Id + 1, null);
        return true;
    }

    /// <summary>
    /// split_huge_page's hand-over: the folio at <paramref name="head"/> became small folios; the lock moves to
    /// <paramref name="page"/> (the page the caller passed stays locked, __split_huge_page unlocks the others), and a
    /// waiter on the old head gets the head's lock as folio_unlock would give it. No scheduling point: the split holds
    /// the folio frozen.
    /// </summary>
    internal static void MoveAfterSplit(Kernel k, long head, long page)
    {
        if (head == page) return;
        var fl = Of(k);
        if (!fl.Release(head)) throw new ModelException($"split of folio 0x{head:x}, which {k.S.Current} has not locked");
        fl._locks[page] = (k.S.Current.Id + 1, null);
    }

    /// <summary>The unlock itself: the current context must own <paramref name="head"/>'s lock; the first waiter, if
    /// any, becomes the owner and is woken (folio_wake_bit's hand-over), else the lock is free. False if not the owner.</summary>
    bool Release(long head)
    {
        if (!_locks.TryGetValue(head, out var st) || st.Owner != _k.S.Current.Id + 1) return false;
        if (st.Waiters is { Count: > 0 } q)
        {
            var next = q.Dequeue();
            _locks[head] = (next.Id + 1, q);
            _k.S.Wake(next);
        }
        else _locks.Remove(head);
        return true;
    }

    /// <summary>folio_trylock of a folio nobody else can see yet (no point: it cannot be contended).</summary>
    public static void TryLockNew(Kernel k, long head)
    {
        var fl = Of(k);
        if (fl._locks.ContainsKey(head)) throw new ModelException($"folio_trylock of the new folio 0x{head:x} failed");
        fl._locks[head] = (k.S.Current.Id + 1, null);
    }

    /// <summary>folio_unlock: the first waiter, if any, becomes the owner and is woken.</summary>
    public static async ValueTask Unlock(Kernel k, long head)
    {
        var fl = Of(k);
        await k.S.Point(PointKind.LockRelease, (ulong)head, fl);
        if (!fl.Release(head)) throw new ModelException($"{k.S.Current} unlocks folio 0x{head:x}, which it does not hold");
    }

    public override string ToString() => "folio_lock";

    /// <summary>folio_test_locked.</summary>
    public static bool IsLocked(Kernel k, long head) =>
        k.Subsystems.TryGetValue(typeof(FolioLock), out var o) && ((FolioLock)o)._locks.ContainsKey(head);
}
