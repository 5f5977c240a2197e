using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Notifier;

/// <summary>
/// mm->notifier_subscriptions and the dispatch of mm/mmu_notifier.c, for the era the kernel runs.
/// </summary>
/// <remarks>
/// <para><b>Read side.</b> Before 3.7 every dispatch runs under rcu_read_lock: the model raises
/// <see cref="KContext.AtomicDepth"/>, so a callback that sleeps is a sleep-in-atomic violation. From 3.7 a global SRCU
/// read side (<see cref="Kernel.SrcuReaders"/>) is held instead and callbacks may sleep; synchronize_srcu waits for it.</para>
/// <para><b>What runs where.</b> Start/end are called without the PTL; change_pte, invalidate_range, the young callbacks
/// and invalidate_page up to 3.5 run under the caller's PTL (the caller holds it; the core does not check). A callback
/// is called only if the era has it (<see cref="Feature"/>) and the subscription lists it in <see cref="MmuNotifier.Ops"/>.</para>
/// <para><b>Interval subscriptions</b> (5.5+, §2.6): <see cref="InvalidateSeq"/> is even when idle and odd while an
/// invalidation overlapping some interval subscription is in flight; <see cref="ActiveInvalidateRanges"/> counts every
/// start..end in flight on this mm. The interval tree does not change while the seq is odd: inserts/removes are deferred
/// and applied by the end that brings the count to zero. Interval subscriptions are processed before the hlist ones.</para>
/// <para><b>Invariants</b> (checked in <see cref="AssertInvariants"/>): ActiveInvalidateRanges ≥ 0; seq odd ⇒
/// ActiveInvalidateRanges &gt; 0; no subscription appears twice.</para>
/// </remarks>
public sealed class MmuNotifierCore
{
    public const int EAGAIN = -11;
    public const int EINVAL = -22;
    public const int EOVERFLOW = -75;

    readonly Kernel _k;
    readonly MmStruct _mm;
    readonly List<MmuNotifier> _list = [];
    readonly List<MmuIntervalNotifier> _itree = [];
    readonly List<MmuIntervalNotifier> _deferred = [];
    readonly WaitQueue _wq;
    // subscriptions->lock. Each interval-notifier critical section is one atomic step behind a Counter point; the lock
    // is only held across a point by mn_itree_inv_end's deferred-list walk (the window of 319561669a59).
    readonly KSpinLock _lock;

    internal MmuNotifierCore(Kernel k, MmStruct mm)
    {
        _k = k;
        _mm = mm;
        _wq = new WaitQueue(k.S, $"mm{mm.Id}->notifier_subscriptions->wq");
        _lock = new KSpinLock(k.S, $"mm{mm.Id}->notifier_subscriptions->lock");
    }

    Scheduler S => _k.S;
    KernelEra Era => _k.Era;

    /// <summary>hlist subscriptions, in call order (hlist_add_head: newest first).</summary>
    public IReadOnlyList<MmuNotifier> Subscriptions => _list;

    public IReadOnlyList<MmuIntervalNotifier> IntervalSubscriptions => _itree;

    /// <summary>mm_has_notifiers(): any hlist or interval subscription.</summary>
    public bool HasNotifiers => _list.Count > 0 || HasItree;

    public bool HasItree { get; private set; }

    /// <summary>subscriptions->invalidate_seq (interval notifiers). Starts at 2.</summary>
    public ulong InvalidateSeq { get; private set; } = 2;

    /// <summary>subscriptions->active_invalidate_ranges.</summary>
    public int ActiveInvalidateRanges { get; private set; }

    // ------------------------------------------------------------------ read side

    async ValueTask ReadLock()
    {
        await S.Point(PointKind.Callback);
        if (Era.Has(Feature.SrcuReadSide)) _k.SrcuReaders++;
        else S.Current.AtomicDepth++;
    }

    void ReadUnlock()
    {
        if (Era.Has(Feature.SrcuReadSide))
        {
            if (--_k.SrcuReaders == 0) _k.SrcuWq.WakeAll();
        }
        else S.Current.AtomicDepth--;
    }

    bool Calls(MmuNotifier mn, NotifierOps op, Feature f) =>
        (mn.PublishSeq == 0 || SeesInitialized(mn)) && (mn.Ops & op) != 0 && Era.Has(f);

    /// <summary>
    /// Under the weak-memory mode, for a subscription registered in the threads phase: hlist_for_each_entry_rcu's
    /// rcu_dereference of the list (modelled as an acquire load; the LKMM orders the dependent load of mn->ops after it,
    /// as MP+onceassign+derefonce shows) decides whether this walk sees the subscription at all; if it does, the walk
    /// reads mn->ops, and reading it uninitialized is the bug 543bdb2d825f fixed.
    /// </summary>
    bool SeesInitialized(MmuNotifier mn)
    {
        var w = _k.Weak;
        if (!w.IsWeak) return true;
        if ((int)w.Load(_listLoc, Lkmm.AccessOrder.AcquireRelease) < mn.PublishSeq) return false; // not yet on the list for us
        if (w.Load(mn.OpsLoc) != 0) return true;
        _k.S.Fail(Invariants.UninitializedNotifier,
            $"mmu notifier walk on mm{_mm.Id} reached {mn} but reads its ->ops uninitialized: the subscription was published " +
            "with hlist_add_head, no release orders the driver's initialization before it (fixed by 543bdb2d825f, hlist_add_head_rcu)");
        return false;
    }

    Lkmm.WeakLoc _listLoc;
    int _published;

    void Charge() => S.Charge(CostKind.NotifierCall);

    // ------------------------------------------------------------------ invalidate_range_start / end

    /// <summary>mmu_notifier_invalidate_range_start: blockable; may sleep.</summary>
    public async ValueTask InvalidateRangeStart(MmuNotifierRange range)
    {
        using var _ = S.Current.Enter("mmu_notifier_invalidate_range_start");
        S.MightSleep("mmu_notifier_invalidate_range_start");
        range.Blockable = true;
        int r = await StartCore(range);
        if (r != 0) S.Fail(Invariants.Pairing, $"blockable invalidate_range_start failed with {r}", range.Start);
    }

    /// <summary>mmu_notifier_invalidate_range_start_nonblock (4.19+): 0, or -EAGAIN after which the caller must not touch the range nor call end.</summary>
    public async ValueTask<int> InvalidateRangeStartNonblock(MmuNotifierRange range)
    {
        using var _ = S.Current.Enter("mmu_notifier_invalidate_range_start_nonblock");
        if (!Era.Has(Feature.BlockableStart)) throw new ModelException("invalidate_range_start_nonblock does not exist before 4.19");
        range.Blockable = false;
        return await StartCore(range);
    }

    async ValueTask<int> StartCore(MmuNotifierRange range)
    {
        if (!Era.Has(Feature.RangeEvents)) range.Event = MmuNotifyEvent.None;
        range.StartedBy = S.Current.Id;
        _k.Checker.OnRangeStart(range);
        _k.Trace.RangeStart(range);
        if (!HasNotifiers)
        {
            range.Started = true;
            return 0;
        }
        int ret = 0;
        if (HasItree)
        {
            ret = await ItreeInvalidate(range);
            if (ret != 0)
            {
                _k.Checker.OnRangeEnd(range, failed: true);
                return ret;
            }
        }
        bool pairsEnds = Era.Has(Feature.NonblockFailureCallsEnd) && !_k.Mutated(Mutation.NonblockFailureSkipsEnd);
        await ReadLock();
        foreach (var mn in _list)
        {
            if (!mn.Hashed || !Calls(mn, NotifierOps.InvalidateRangeStart, Feature.InvalidateRangeStartEnd)) continue;
            Charge();
            if (!range.Blockable) S.Current.NonBlockDepth++;
            int r = await mn.InvalidateRangeStart(range);
            if (!range.Blockable) S.Current.NonBlockDepth--;
            if (r != 0)
            {
                if (range.Blockable || r != EAGAIN)
                    S.Fail(Invariants.Pairing, $"{mn} start returned {r} (blockable={range.Blockable})", range.Start);
                // WARN_ON(ops->invalidate_range_end) came with the unwind below (5.12); before it the rule was only
                // "if start approves non-blocking behaviour the same applies to end".
                if (pairsEnds && (mn.Ops & NotifierOps.InvalidateRangeEnd) != 0)
                    S.Fail(Invariants.Pairing, $"{mn} failed start but implements invalidate_range_end", range.Start);
                ret = r;
            }
            else _k.Checker.OnSubscriptionStartReturned(mn, range);
        }
        // c2655835fd8c (5.12): "If there are multiple notifiers and one or more failed start, any that succeeded start
        // are expecting their end to be called." Before it, -EAGAIN left KVM's mmu_notifier_count raised (row e7).
        if (ret != 0 && pairsEnds)
        {
            foreach (var mn in _list)
            {
                if (!mn.Hashed || !Calls(mn, NotifierOps.InvalidateRangeEnd, Feature.InvalidateRangeStartEnd)) continue;
                _k.Checker.OnSubscriptionEndEntered(mn, range);
                await mn.InvalidateRangeEnd(range);
            }
        }
        ReadUnlock();
        if (ret != 0)
        {
            if (HasItree) await ItreeInvEnd();
            _k.Checker.OnRangeEnd(range, failed: true);
            return ret;
        }
        range.Started = true;
        return 0;
    }

    /// <summary>mmu_notifier_invalidate_range_end. In 3.19-6.5 this also calls invalidate_range.</summary>
    public ValueTask InvalidateRangeEnd(MmuNotifierRange range) => EndCore(range, onlyEnd: false);

    /// <summary>mmu_notifier_invalidate_range_only_end (4.15-6.5): end without invalidate_range (already done under the PTL).</summary>
    public ValueTask InvalidateRangeOnlyEnd(MmuNotifierRange range) => EndCore(range, onlyEnd: Era.Has(Feature.OnlyEnd));

    async ValueTask EndCore(MmuNotifierRange range, bool onlyEnd)
    {
        using var _ = S.Current.Enter("mmu_notifier_invalidate_range_end");
        if (!range.Started) S.Fail(Invariants.Pairing, $"invalidate_range_end without a successful start {range}", range.Start);
        if (range.Blockable) S.MightSleep("mmu_notifier_invalidate_range_end");
        range.Started = false;
        if (HasNotifiers)
        {
            if (HasItree) await ItreeInvEnd();
            await ReadLock();
            foreach (var mn in _list)
            {
                if (!mn.Hashed) continue;
                if (!onlyEnd && Calls(mn, NotifierOps.InvalidateRange, Feature.InvalidateRange))
                {
                    Charge();
                    await mn.InvalidateRange(_mm, range.Start, range.End);
                }
                if (Calls(mn, NotifierOps.InvalidateRangeEnd, Feature.InvalidateRangeStartEnd))
                {
                    Charge();
                    _k.Checker.OnSubscriptionEndEntered(mn, range);
                    if (!range.Blockable) S.Current.NonBlockDepth++;
                    await mn.InvalidateRangeEnd(range);
                    if (!range.Blockable) S.Current.NonBlockDepth--;
                }
            }
            ReadUnlock();
        }
        _k.Trace.RangeEnd(range);
        _k.Checker.OnRangeEnd(range, failed: false);
    }

    // ------------------------------------------------------------------ under-PTL callbacks

    /// <summary>mmu_notifier_invalidate_range (3.19-6.5): the secondary TLB that shares the page tables. Under the PTL.</summary>
    public async ValueTask InvalidateRange(ulong start, ulong end)
    {
        if (!Era.Has(Feature.InvalidateRange) || _list.Count == 0) return;
        using var _ = S.Current.Enter("mmu_notifier_invalidate_range");
        await ReadLock();
        foreach (var mn in _list)
            if (mn.Hashed && Calls(mn, NotifierOps.InvalidateRange, Feature.InvalidateRange))
            {
                Charge();
                await mn.InvalidateRange(_mm, start, end);
            }
        ReadUnlock();
    }

    /// <summary>mmu_notifier_arch_invalidate_secondary_tlbs (6.6+): from the arch TLB flush (flush_tlb_mm_range).</summary>
    public async ValueTask ArchInvalidateSecondaryTlbs(ulong start, ulong end)
    {
        if (!Era.Has(Feature.ArchInvalidateSecondaryTlbs) || _list.Count == 0) return;
        using var _ = S.Current.Enter("mmu_notifier_arch_invalidate_secondary_tlbs");
        await ReadLock();
        foreach (var mn in _list)
            if (mn.Hashed && Calls(mn, NotifierOps.ArchInvalidateSecondaryTlbs, Feature.ArchInvalidateSecondaryTlbs))
            {
                Charge();
                await mn.ArchInvalidateSecondaryTlbs(_mm, start, end);
            }
        ReadUnlock();
    }

    /// <summary>mmu_notifier_invalidate_page (2.6.27-4.12). Under the PTL until 3.5; after pte_unmap_unlock in 3.6-4.12.</summary>
    public async ValueTask InvalidatePage(ulong address)
    {
        if (!Era.Has(Feature.InvalidatePage) || _list.Count == 0) return;
        using var _ = S.Current.Enter("mmu_notifier_invalidate_page");
        await ReadLock();
        foreach (var mn in _list)
            if (mn.Hashed && Calls(mn, NotifierOps.InvalidatePage, Feature.InvalidatePage))
            {
                Charge();
                _k.Trace.InvalidatePage(address);
                await mn.InvalidatePage(_mm, address);
            }
        ReadUnlock();
    }

    /// <summary>
    /// mmu_notifier_change_pte (2.6.32-6.9). Under the PTL. 2.6.32-3.6: a subscription without change_pte gets
    /// invalidate_page instead (__mmu_notifier_change_pte fallback, removed by 6bdb913f0a70).
    /// </summary>
    public async ValueTask ChangePte(ulong address, Pte pte)
    {
        if (!Era.Has(Feature.ChangePte) || _list.Count == 0) return;
        using var _ = S.Current.Enter("mmu_notifier_change_pte");
        await ReadLock();
        foreach (var mn in _list)
        {
            if (!mn.Hashed) continue;
            if ((mn.Ops & NotifierOps.ChangePte) != 0)
            {
                Charge();
                await mn.ChangePte(_mm, address, pte);
            }
            else if (Era.Has(Feature.ChangePteFallbackToInvalidatePage) && (mn.Ops & NotifierOps.InvalidatePage) != 0)
            {
                Charge();
                await mn.InvalidatePage(_mm, address);
            }
        }
        ReadUnlock();
    }

    /// <summary>mmu_notifier_clear_flush_young: OR of every subscription's answer. Under the PTL. Before 4.0 the range is one page.</summary>
    public async ValueTask<bool> ClearFlushYoung(ulong start, ulong end)
    {
        if (_list.Count == 0) return false;
        using var _ = S.Current.Enter("mmu_notifier_clear_flush_young");
        if (!Era.Has(Feature.ClearFlushYoungRange)) end = start + Mm.MmStruct.PageSize;
        bool young = false;
        await ReadLock();
        foreach (var mn in _list)
            if (mn.Hashed && Calls(mn, NotifierOps.ClearFlushYoung, Feature.ClearFlushYoung))
            {
                Charge();
                _k.Checker.OnAgingCall(mn, _mm, start, end, "clear_flush_young");
                young |= await mn.ClearFlushYoung(_mm, start, end);
            }
        ReadUnlock();
        return young;
    }

    /// <summary>mmu_notifier_clear_young (4.3+): OR of answers, no secondary TLB flush required. Under the PTL.</summary>
    public async ValueTask<bool> ClearYoung(ulong start, ulong end)
    {
        if (_list.Count == 0) return false;
        using var _ = S.Current.Enter("mmu_notifier_clear_young");
        bool young = false;
        await ReadLock();
        foreach (var mn in _list)
            if (mn.Hashed && Calls(mn, NotifierOps.ClearYoung, Feature.ClearYoung))
            {
                Charge();
                _k.Checker.OnAgingCall(mn, _mm, start, end, "clear_young");
                young |= await mn.ClearYoung(_mm, start, end);
            }
        ReadUnlock();
        return young;
    }

    /// <summary>mmu_notifier_test_young (2.6.38+): stops at the first young answer. Under the PTL.</summary>
    public async ValueTask<bool> TestYoung(ulong address)
    {
        if (_list.Count == 0) return false;
        using var _ = S.Current.Enter("mmu_notifier_test_young");
        bool young = false;
        await ReadLock();
        foreach (var mn in _list)
            if (mn.Hashed && Calls(mn, NotifierOps.TestYoung, Feature.TestYoung))
            {
                Charge();
                _k.Checker.OnAgingCall(mn, _mm, address, address + 1, "test_young");
                if (await mn.TestYoung(_mm, address)) { young = true; break; }
            }
        ReadUnlock();
        return young;
    }

    // ------------------------------------------------------------------ release, register, unregister

    /// <summary>
    /// __mmu_notifier_release (exit_mmap, first thing): interval subscriptions get one RELEASE invalidation over
    /// everything (5.5+), every hlist subscription's ->release runs, then all are unhashed and SRCU is synchronized.
    /// </summary>
    public async ValueTask Release()
    {
        using var _ = S.Current.Enter("mmu_notifier_release");
        if (HasItree && _itree.Count > 0)
        {
            var r = new MmuNotifierRange(_mm, 0, ulong.MaxValue & ~(Mm.MmStruct.PageSize - 1), MmuNotifyEvent.Release);
            _k.Checker.OnRangeStart(r);
            int ret = await ItreeInvalidate(r);
            if (ret != 0) S.Fail(Invariants.Pairing, "interval notifier refused the RELEASE invalidation");
            await ItreeInvEnd();
            _k.Checker.OnRangeEnd(r, failed: false);
        }
        await ReadLock();
        foreach (var mn in _list.ToArray())
            if (mn.Hashed && (mn.Ops & NotifierOps.Release) != 0)
            {
                Charge();
                await mn.Release(_mm);
                _k.Checker.OnReleaseReturned(mn, _mm);
            }
        ReadUnlock();
        await S.Point(PointKind.Counter);
        foreach (var mn in _list) mn.Hashed = false;
        _list.Clear();
        await SynchronizeSrcu();
    }

    /// <summary>synchronize_srcu(&amp;srcu) (3.7+) / synchronize_rcu: wait until no notifier read side is active.</summary>
    public async ValueTask SynchronizeSrcu()
    {
        using var _ = S.Current.Enter(Era.Has(Feature.SrcuReadSide) ? "synchronize_srcu" : "synchronize_rcu");
        while (_k.SrcuReaders > 0) await _k.SrcuWq.Wait();
    }

    /// <summary>
    /// mmu_notifier_register: mmap_lock for write, then mm_take_all_locks (modelled by holding the mmap_lock write
    /// side and every anon_vma lock of the mm), publish, add at the head of the hlist.
    /// </summary>
    public async ValueTask<int> Register(MmuNotifier mn)
    {
        using var _ = S.Current.Enter("mmu_notifier_register");
        if (_mm.Users <= 0) throw new ModelException($"mmu_notifier_register on mm{_mm.Id} with mm_users == 0");
        if (Era.Has(Feature.ArchInvalidateSecondaryTlbs) && (mn.Ops & NotifierOps.ArchInvalidateSecondaryTlbs) != 0 &&
            (mn.Ops & (NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd)) != 0)
            return EINVAL; // 6.6+: WARN and refuse a subscription with both schemes
        await _mm.MmapLock.WriteLock();
        await _mm.TakeAllLocks();
        mn.Mm = _mm;
        mn.Users = 1;
        mn.Hashed = true;
        if (_k.Weak.IsWeak)
        {
            // The driver initialized mn->ops before calling register (a plain store); the list head is then
            // published with hlist_add_head (a plain store) or, from 5.3, hlist_add_head_rcu (a store-release).
            if (_published == 0) _listLoc = _k.Weak.NewLocation($"mm{_mm.Id}->notifier_subscriptions->list");
            mn.OpsLoc = _k.Weak.NewLocation($"{mn}->ops");
            _k.Weak.Store(mn.OpsLoc, 1);
            mn.PublishSeq = ++_published;
            _k.Weak.Store(_listLoc, (ulong)mn.PublishSeq,
                Era.Has(Feature.NotifierHlistAddRcu) ? Lkmm.AccessOrder.AcquireRelease : Lkmm.AccessOrder.Once);
        }
        _list.Insert(0, mn);
        _mm.Count++;
        _mm.DropAllLocks();
        await _mm.MmapLock.WriteUnlock();
        _k.Checker.OnRegister(mn, _mm);
        return 0;
    }

    /// <summary>
    /// mmu_notifier_unregister: if still hashed, run -&gt;release under the read side, unhash; then synchronize_srcu.
    /// After return no callback of <paramref name="mn"/> runs. 2.6.32 unhashed first, then ran release.
    /// </summary>
    public async ValueTask Unregister(MmuNotifier mn)
    {
        using var _ = S.Current.Enter("mmu_notifier_unregister");
        if (mn.Hashed)
        {
            if (!Era.Has(Feature.SrcuReadSide)) { mn.Hashed = false; _list.Remove(mn); }
            await ReadLock();
            if ((mn.Ops & NotifierOps.Release) != 0)
            {
                Charge();
                await mn.Release(_mm);
                _k.Checker.OnReleaseReturned(mn, _mm);
            }
            ReadUnlock();
            mn.Hashed = false;
            _list.Remove(mn);
        }
        await SynchronizeSrcu();
        _mm.Count--;
        _k.Checker.OnUnregister(mn, _mm);
    }

    /// <summary>mmu_notifier_get_locked (5.4+): reuse a subscription of the same type (ops), or create and register one.</summary>
    public async ValueTask<T> Get<T>(Func<T> alloc) where T : MmuNotifier
    {
        if (!Era.Has(Feature.NotifierGetPut)) throw new ModelException("mmu_notifier_get does not exist before 5.4");
        foreach (var mn in _list)
            if (mn is T t && mn.Hashed)
            {
                if (t.Users == int.MaxValue) throw new ModelException("mmu_notifier_get: -EOVERFLOW");
                t.Users++;
                return t;
            }
        var created = alloc();
        int r = await Register(created);
        if (r != 0) throw new ModelException($"mmu_notifier_get: register failed {r}");
        return created;
    }

    /// <summary>mmu_notifier_put: drop a user; the last one unhashes and frees from an SRCU callback (no ->release).</summary>
    public async ValueTask Put(MmuNotifier mn)
    {
        await S.Point(PointKind.Counter);
        if (--mn.Users > 0) return;
        mn.Hashed = false;
        _list.Remove(mn);
        await SynchronizeSrcu();
        mn.FreeNotifier();
        _mm.Count--;
        _k.Checker.OnUnregister(mn, _mm);
    }

    // ------------------------------------------------------------------ interval notifiers (5.5+)

    /// <summary>spin_lock(&amp;subscriptions->lock) for a critical section that is one atomic step: waits only while
    /// mn_itree_inv_end holds the lock across its deferred-list walk.</summary>
    async ValueTask SubscriptionsLock()
    {
        await S.Point(PointKind.Counter);
        if (_lock.IsHeld)
        {
            await _lock.Lock();
            _lock.UnlockNoPoint();
        }
    }

    async ValueTask<int> ItreeInvalidate(MmuNotifierRange range)
    {
        using var _ = S.Current.Enter("mn_itree_invalidate");
        // mn_itree_inv_start_range, under subscriptions->lock
        await SubscriptionsLock();
        ActiveInvalidateRanges++;
        bool any = false;
        foreach (var sub in _itree)
            if (sub.Start < range.End && range.Start < sub.End) { any = true; break; }
        if (any) InvalidateSeq |= 1;
        ulong curSeq = InvalidateSeq;
        if (!any) return 0;
        foreach (var sub in _itree.ToArray())
        {
            if (!(sub.Start < range.End && range.Start < sub.End)) continue;
            Charge();
            if (!range.Blockable) S.Current.NonBlockDepth++;
            bool ok = await sub.Invalidate(range, curSeq);
            if (!range.Blockable) S.Current.NonBlockDepth--;
            if (!ok)
            {
                if (range.Blockable) S.Fail(Invariants.IntervalSeq, $"{sub.Name} returned false from a blockable invalidate");
                else
                {
                    await ItreeInvEnd();
                    return EAGAIN;
                }
            }
        }
        return 0;
    }

    /// <summary>mn_itree_inv_end: the last range out makes the seq even, applies deferred inserts/removes and wakes readers.</summary>
    async ValueTask ItreeInvEnd()
    {
        await SubscriptionsLock();
        ActiveInvalidateRanges--;
        if (ActiveInvalidateRanges < 0) S.Fail(Invariants.CounterBalance, "active_invalidate_ranges < 0");
        if (ActiveInvalidateRanges != 0 || (InvalidateSeq & 1) == 0) return;
        InvalidateSeq++;
        if (_deferred.Count > 0)
        {
            // Still under subscriptions->lock: the seq is already even while the deferred list is walked. A remover
            // that reads the seq without the lock (before 319561669a59) returns here, and its caller frees the
            // subscription that the walk below still unlinks.
            _lock.TryLock();
            await S.Point(PointKind.Counter);
            foreach (var sub in _deferred)
            {
                if (sub.RemoveReturned)
                    S.Fail(Invariants.IntervalSeq,
                        $"mn_itree_inv_end unlinks {sub.Name} from the deferred list after mmu_interval_notifier_remove returned: its caller may have freed it (use-after-free, 319561669a59)");
                if (sub.DeferredRemove) { _itree.Remove(sub); sub.InTree = false; }
                else if (sub.DeferredInsert) { _itree.Add(sub); sub.InTree = true; }
                sub.DeferredInsert = sub.DeferredRemove = false;
            }
            _deferred.Clear();
            _lock.UnlockNoPoint();
        }
        _wq.WakeAll();
    }

    /// <summary>mmu_interval_notifier_insert: defer while an invalidation is in flight (§2.6).</summary>
    public async ValueTask IntervalInsert(MmuIntervalNotifier sub, ulong start, ulong length)
    {
        using var _ = S.Current.Enter("mmu_interval_notifier_insert");
        if (!Era.Has(Feature.IntervalNotifier)) throw new ModelException("mmu_interval_notifier does not exist before 5.5");
        if (!HasItree)
        {
            // mmu_notifier_register(NULL, mm): publish subscriptions with has_itree
            await _mm.MmapLock.WriteLock();
            HasItree = true;
            await _mm.MmapLock.WriteUnlock();
        }
        sub.Start = start;
        sub.End = start + length;
        sub.Mm = _mm;
        sub.RemoveReturned = false;
        _mm.Count++;
        await SubscriptionsLock();
        if (ActiveInvalidateRanges != 0)
        {
            if ((InvalidateSeq & 1) != 0)
            {
                sub.DeferredInsert = true;
                _deferred.Add(sub);
            }
            else
            {
                InvalidateSeq |= 1;
                _itree.Add(sub);
                sub.InTree = true;
            }
            sub.InvalidateSeq = InvalidateSeq;
        }
        else
        {
            sub.InvalidateSeq = InvalidateSeq - 1;
            _itree.Add(sub);
            sub.InTree = true;
        }
    }

    /// <summary>mmu_interval_notifier_remove: may sleep until the current invalidation that covers it is finished.</summary>
    public async ValueTask IntervalRemove(MmuIntervalNotifier sub)
    {
        using var _ = S.Current.Enter("mmu_interval_notifier_remove");
        S.MightSleep("mmu_interval_notifier_remove");
        await SubscriptionsLock();
        ulong seq = 0;
        if ((InvalidateSeq & 1) != 0 && ActiveInvalidateRanges != 0)
        {
            if (sub.DeferredInsert && !sub.InTree)
            {
                _deferred.Remove(sub);
                sub.DeferredInsert = false;
            }
            else
            {
                sub.DeferredRemove = true;
                _deferred.Add(sub);
                seq = InvalidateSeq;
            }
        }
        else
        {
            _itree.Remove(sub);
            sub.InTree = false;
        }
        if (seq != 0)
            while (!await IntervalSeqReleased(seq)) await _wq.Wait();
        _mm.Count--;
        sub.RemoveReturned = true;
    }

    /// <summary>
    /// mmu_interval_seq_released: remove's wait condition. From 5.18 (319561669a59) it reads invalidate_seq under
    /// subscriptions->lock; before, READ_ONCE(subscriptions->invalidate_seq) != seq, which is true as soon as
    /// mn_itree_inv_end bumped the seq, before it walked the deferred list.
    /// </summary>
    async ValueTask<bool> IntervalSeqReleased(ulong seq)
    {
        if (Era.Has(Feature.IntervalRemoveSeqLocked) && !_k.Mutated(Mutation.IntervalRemoveUnlockedSeq))
            await SubscriptionsLock();
        else
            await S.Point(PointKind.Counter);
        return InvalidateSeq != seq;
    }

    /// <summary>mmu_interval_read_begin: sample the subscription's seq; sleep while it is being invalidated.</summary>
    public async ValueTask<ulong> IntervalReadBegin(MmuIntervalNotifier sub)
    {
        using var _ = S.Current.Enter("mmu_interval_read_begin");
        while (true)
        {
            await SubscriptionsLock();
            ulong seq = sub.InvalidateSeq;
            if (seq != InvalidateSeq) return seq;
            S.MightSleep("mmu_interval_read_begin");
            await _wq.Wait();
        }
    }

    /// <summary>mmu_interval_read_retry: true if an invalidation ran since <paramref name="seq"/>. Call under the user lock.</summary>
    public async ValueTask<bool> IntervalReadRetry(MmuIntervalNotifier sub, ulong seq)
    {
        await S.Point(PointKind.Counter);
        return sub.InvalidateSeq != seq;
    }

    /// <summary>mmu_interval_check_retry: lockless hint (a false answer is unreliable).</summary>
    public bool IntervalCheckRetry(MmuIntervalNotifier sub, ulong seq) => sub.InvalidateSeq != seq;

    [System.Diagnostics.Conditional("DEBUG")]
    public void AssertInvariants()
    {
        System.Diagnostics.Debug.Assert(ActiveInvalidateRanges >= 0, "active_invalidate_ranges < 0");
        System.Diagnostics.Debug.Assert((InvalidateSeq & 1) == 0 || ActiveInvalidateRanges > 0, "odd seq with no active range");
        System.Diagnostics.Debug.Assert(_list.Distinct().Count() == _list.Count, "subscription listed twice");
    }
}
