using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>Where a VM invalidates its gfn_to_pfn_caches (per VM: <c>vm.create: { pfncache: start-hook | end-hook }</c>).</summary>
public enum PfnCacheDesign : byte
{
    /// <summary>
    /// Mainline 5.17-6.13 (virt/kvm/pfncache.c): gfn_to_pfn_cache_invalidate_start runs in invalidate_range_start, and
    /// hva_to_pfn_retry retries whenever mn_active_invalidate_count != 0 (any invalidation of the mm) or the seq moved.
    /// </summary>
    StartHook,

    /// <summary>
    /// David Woodhouse's proposal "[PATCH v2] KVM: Move gfn_to_pfn_cache invalidation to invalidate_range_end hook"
    /// (Aug 2024; not found in any release up to 6.13): a needs_invalidation flag, invalidation in range_end, a union of
    /// the in-flight ranges, and hva_to_pfn_retry waits (gpc_invalidate_wq) only while an invalidation covering its uHVA
    /// is pending; it loops only if its own uHVA was invalidated.
    /// </summary>
    EndHook,
}

/// <summary>
/// struct gfn_to_pfn_cache (include/linux/kvm_types.h, virt/kvm/pfncache.c): a kernel-side cached translation
/// gpa → uhva → pfn of one guest page that KVM itself reads and writes (Xen shared_info, pvclock, steal time...). It is a
/// secondary translation of the VMM's mm like an SPTE, but it lives outside mmu_lock and the fault/retry protocol.
/// </summary>
/// <remarks>
/// <para><b>Locking</b> (as in pfncache.c):</para>
/// <list type="bullet">
/// <item><see cref="Lock"/> (gpc->lock, rwlock_t, spinning): protects <see cref="Active"/>, <see cref="Valid"/>,
/// <see cref="NeedsInvalidation"/>, <see cref="Gpa"/>, <see cref="Uhva"/>, <see cref="Pfn"/>. Users hold it for read
/// from kvm_gpc_check until they are done with the mapping; refresh and invalidation hold it for write.</item>
/// <item><see cref="RefreshLock"/> (gpc->refresh_lock, mutex): serialises refresh, unmap and deactivate. Taken
/// before gpc->lock. hva_to_pfn_retry drops gpc->lock (GUP and kmap sleep) but keeps refresh_lock.</item>
/// <item>kvm->gpc_lock (spinlock, <see cref="Kvm.GpcLock"/>): protects the VM's gpc list; the invalidation takes it,
/// then each gpc->lock. Activation adds to the list before setting active (a refresh must not establish a mapping
/// before the cache is reachable by notifier events); deactivation clears active before removing.</item>
/// <item>Start-hook design: mn_active_invalidate_count is raised under mn_invalidate_lock <i>before</i> the gpc
/// invalidation and dropped after the end's seq++, so the refresh reads it without gpc->lock (the comment in
/// mmu_notifier_retry_cache).</item>
/// <item>End-hook design: kvm->mmu_gpc_invalidate_range_start/end and gpc_invalidate_wq are protected by
/// mn_invalidate_lock; the union is reset when mn_active_invalidate_count returns to 0.</item>
/// </list>
/// <para><b>Invariants</b> (<see cref="AssertInvariants"/>): valid ⇒ active, pfn ≠ error and uhva ≠ bad; in the
/// end-hook design valid ⇒ needs_invalidation (the WARN_ON_ONCE in kvm_gpc_check); the cache holds no page reference
/// once valid (kvm_release_pfn_clean right after marking it valid: correctness relies on the notifier alone). A valid
/// cache is a secondary translation (uhva → pfn, "gpc NAME") for the checker: kernel-facts §7 invariants 1 and 3 apply.</para>
/// </remarks>
public sealed class GfnToPfnCache
{
    /// <summary>KVM_PFN_ERR_FAULT.</summary>
    public const long ErrPfn = -1;

    /// <summary>KVM_HVA_ERR_BAD.</summary>
    public const ulong BadHva = ulong.MaxValue;

    /// <summary>INVALID_GPA.</summary>
    public const ulong InvalidGpa = ulong.MaxValue;

    public const int EINVAL = -22, EFAULT = -14;

    /// <summary>
    /// Retries of hva_to_pfn_retry's loop, each caused by a new invalidation, before the model reports a livelock
    /// (passes that only waited for an invalidation already in flight do not count: the model yields there). The kernel
    /// loop is unbounded. A correct cache retries only when its own page is invalidated, which a finite scenario does a
    /// handful of times, far below 16. The start-hook design retries on every invalidation of the mm; in
    /// pfncache-livelock two balloon threads invalidate unrelated pages 48 times in all, so 16 consecutive retries, each
    /// with a fresh invalidation, mean the refresh only gets out because the load is finite. 16 keeps the time-to-bug
    /// well under a second (history's budget).
    /// </summary>
    public const int MaxRetries = 16;

    readonly Kvm _kvm;
    readonly string _where;

    /// <summary>kvm_gpc_init: rwlock_init, mutex_init, INVALID_GPA, KVM_HVA_ERR_BAD, inactive.</summary>
    internal GfnToPfnCache(Kvm kvm, string name)
    {
        _kvm = kvm;
        Name = name;
        _where = "gpc " + name;
        var s = kvm.Kernel.S;
        Lock = new KRwLock(s, $"{name}->lock", sleeping: false);
        RefreshLock = new KMutex(s, $"{name}->refresh_lock");
    }

    public string Name { get; }

    public Kvm Kvm => _kvm;

    /// <summary>gpc->lock.</summary>
    public KRwLock Lock { get; }

    /// <summary>gpc->refresh_lock.</summary>
    public KMutex RefreshLock { get; }

    public bool Active { get; private set; }

    public bool Valid { get; private set; }

    /// <summary>gpc->needs_invalidation (end-hook design only).</summary>
    public bool NeedsInvalidation { get; private set; }

    public ulong Gpa { get; private set; } = InvalidGpa;

    /// <summary>gpc->uhva: the page-aligned host virtual address behind <see cref="Gpa"/>.</summary>
    public ulong Uhva { get; private set; } = BadHva;

    /// <summary>gpc->pfn, or <see cref="ErrPfn"/>.</summary>
    public long Pfn { get; private set; } = ErrPfn;

    /// <summary>The frame generation of <see cref="Pfn"/> when GUP returned it (the checker's use-after-free test).</summary>
    public ushort PfnGeneration { get; private set; }

    /// <summary>gpc->generation: the memslots generation the uhva was computed in.</summary>
    public ulong MemslotGeneration { get; private set; }

    /// <summary>Passes of hva_to_pfn_retry's loop that ended in a retry (all refreshes).</summary>
    public int Retries { get; private set; }

    // Model bookkeeping for the livelock message (not kernel state): while a refresh is in hva_to_pfn_retry, how many
    // invalidations the mm started, and how many of them covered the cache's uHVA.
    bool _refreshing;
    int _invalidationsSeen, _invalidationsCovering, _seenAtLastPass;

    Kernel K => _kvm.Kernel;
    Scheduler S => _kvm.Kernel.S;
    bool EndHook => _kvm.PfnCache == PfnCacheDesign.EndHook;

    /// <summary>Called by the VM for every invalidate_range_start of its mm (no point: the model's own bookkeeping).</summary>
    internal void NoteInvalidation(ulong start, ulong end)
    {
        if (!_refreshing) return;
        _invalidationsSeen++;
        if (Covers(start, end)) _invalidationsCovering++;
    }

    internal bool Covers(ulong start, ulong end) => Uhva >= start && Uhva < end;

    /// <summary>The invalidation's write under gpc->lock (write): valid = false (and needs_invalidation = false).</summary>
    internal void InvalidateLocked()
    {
        Valid = false;
        NeedsInvalidation = false;
    }

    // ------------------------------------------------------------------ activate / deactivate

    /// <summary>
    /// kvm_gpc_activate: if inactive, reset the pfn/uhva, add to kvm->gpc_list under gpc_lock, then set active under
    /// gpc->lock; then kvm_gpc_refresh. Returns 0, -EINVAL or -EFAULT.
    /// </summary>
    public async ValueTask<int> Activate(ulong gpa)
    {
        using var _ = S.Current.Enter("kvm_gpc_activate");
        await S.Point(PointKind.Counter);
        if (!Active)
        {
            Pfn = ErrPfn;
            Uhva = BadHva;
            Valid = false;
            NeedsInvalidation = false;
            await _kvm.GpcListAdd(this);
            await Lock.WriteLock();
            Active = true;
            await Lock.WriteUnlock();
        }
        return await Refresh(gpa);
    }

    /// <summary>
    /// kvm_gpc_deactivate: clear active (and valid, needs_invalidation) under gpc->lock, remove from kvm->gpc_list,
    /// then kvm_gpc_unmap.
    /// </summary>
    public async ValueTask Deactivate()
    {
        using var _ = S.Current.Enter("kvm_gpc_deactivate");
        await S.Point(PointKind.Counter);
        if (!Active) return;
        await Lock.WriteLock();
        Active = false;
        Valid = false;
        NeedsInvalidation = false;
        await Lock.WriteUnlock();
        await _kvm.GpcListRemove(this);
        await Unmap();
    }

    /// <summary>kvm_gpc_unmap: under refresh_lock and gpc->lock, drop valid and the pfn (the gpa → uhva part stays).</summary>
    async ValueTask Unmap()
    {
        using var _ = S.Current.Enter("kvm_gpc_unmap");
        await RefreshLock.Lock();
        await Lock.WriteLock();
        Valid = false;
        Pfn = ErrPfn;
        await Lock.WriteUnlock();
        await RefreshLock.Unlock();
    }

    // ------------------------------------------------------------------ check / refresh

    /// <summary>
    /// kvm_gpc_check: active, same gpa, same memslots generation, a good uhva, and valid. Caller holds gpc->lock (read).
    /// </summary>
    public bool Check(ulong gpa)
    {
        if (!Active) return false;
        if (Gpa != gpa || MemslotGeneration != _kvm.MemslotsGeneration || Uhva == BadHva) return false;
        if (!Valid) return false;
        if (EndHook && !NeedsInvalidation)
            S.Fail(Invariants.Pairing, $"{Name}: valid without needs_invalidation (WARN_ON_ONCE in kvm_gpc_check)", Uhva, Pfn);
        return true;
    }

    /// <summary>
    /// kvm_gpc_refresh (__kvm_gpc_refresh): under refresh_lock and gpc->lock (write), recompute the uhva if the gpa or
    /// the memslots changed; if the cache is invalid or the uhva changed, hva_to_pfn_retry. On failure the cache is
    /// invalid with no pfn. Returns 0, -EINVAL (inactive) or -EFAULT (no memslot, GUP failed).
    /// </summary>
    public async ValueTask<int> Refresh(ulong gpa)
    {
        using var _ = S.Current.Enter("kvm_gpc_refresh");
        await _kvm.SrcuReadLock();
        await RefreshLock.Lock();
        await Lock.WriteLock();
        int ret;
        if (!Active)
            ret = EINVAL;
        else
        {
            ulong oldUhva = Uhva;
            ret = 0;
            ulong generation = _kvm.MemslotsGeneration;
            if (Gpa != gpa || MemslotGeneration != generation || Uhva == BadHva)
            {
                Gpa = gpa;
                MemslotGeneration = generation;
                ulong gfn = gpa >> MmStruct.PageShift;
                var slot = _kvm.GfnToMemslot(gfn);
                Uhva = slot == null || slot.Invalid ? BadHva : slot.GfnToHva(gfn);
                if (Uhva == BadHva) ret = EFAULT;
            }
            if (ret == 0 && (!Valid || oldUhva != Uhva)) ret = await HvaToPfnRetry();
            if (ret != 0)
            {
                Valid = false;
                NeedsInvalidation = false;
                Pfn = ErrPfn;
            }
        }
        AssertInvariants();
        await Lock.WriteUnlock();
        await RefreshLock.Unlock();
        _kvm.SrcuReadUnlock();
        return ret;
    }

    /// <summary>
    /// hva_to_pfn_retry: mark the cache invalid, then loop: (start hook) sample mmu_invalidate_seq + smp_rmb, or (end
    /// hook) set needs_invalidation; drop gpc->lock; release the previous attempt's page; hva_to_pfn (GUP, always
    /// writable); (end hook) gpc_wait_for_invalidations; retake gpc->lock; retry while mmu_notifier_retry_cache (start
    /// hook) or while an end invalidated this uHVA (end hook). Then valid = true, the pfn, and kvm_release_pfn_clean:
    /// no reference is kept. Holds refresh_lock and gpc->lock (write) on entry and exit.
    /// </summary>
    async ValueTask<int> HvaToPfnRetry()
    {
        using var _ = S.Current.Enter("hva_to_pfn_retry");
        Valid = false;
        long newPfn = ErrPfn;
        ushort newGen = 0;
        int retries = 0;
        _refreshing = true;
        _invalidationsSeen = _invalidationsCovering = _seenAtLastPass = 0;
        try
        {
            while (true)
            {
                ulong mmuSeq = 0;
                if (EndHook) NeedsInvalidation = true;
                else
                {
                    await S.Point(PointKind.Counter);
                    mmuSeq = _kvm.InvalidateSeq;          // mmu_seq = kvm->mmu_invalidate_seq
                    await S.Point(PointKind.Barrier);     // smp_rmb()
                }
                await Lock.WriteUnlock();
                if (newPfn != ErrPfn)
                {
                    await S.Point(PointKind.Counter);
                    Folio.Put(K, newPfn);                 // kvm_release_pfn_clean of the previous attempt
                    newPfn = ErrPfn;
                }
                var page = await Gup.GetUserPage(_kvm.MirroredMm, Uhva, write: true); // hva_to_pfn(write_fault = true)
                if (!page.Ok)
                {
                    await Lock.WriteLock();
                    return EFAULT;
                }
                newPfn = page.Pfn;
                newGen = page.Generation;
                if (EndHook) await _kvm.GpcWaitForInvalidations(this);
                await Lock.WriteLock();
                bool retry = EndHook ? !NeedsInvalidation : await _kvm.MmuNotifierRetryCache(mmuSeq);
                if (!retry) break;
                Retries++;
                K.Stats.Inc(Stat.KvmGpcRetries);
                // Only a pass during which a new invalidation started counts towards the livelock bound: that is the
                // unbounded stream. A pass that only waited for an invalidation already in flight is a busy-wait; the
                // model yields there (cond_resched: another CPU runs the invalidation to its end) so that a schedule
                // that never runs the invalidator cannot pass for a livelock.
                if (_invalidationsSeen > _seenAtLastPass)
                {
                    _seenAtLastPass = _invalidationsSeen;
                    if (++retries >= MaxRetries)
                    {
                        S.Fail(Invariants.Liveness, LivelockMessage(retries), Uhva);
                        Folio.Put(K, newPfn);
                        return EFAULT;
                    }
                }
                else
                {
                    await Lock.WriteUnlock();
                    await S.Sleep(S.Costs[CostKind.Fault]);
                    await Lock.WriteLock();
                }
            }
            Valid = true;
            Pfn = newPfn;
            PfnGeneration = newGen;
            Folio.Put(K, newPfn);                         // kvm_release_pfn_clean: the cache keeps no reference
            return 0;
        }
        finally
        {
            _refreshing = false;
        }
    }

    string LivelockMessage(int retries)
    {
        string cause = _invalidationsCovering == 0
            ? $"every retry was caused by a new invalidation of an unrelated range: none of the {_invalidationsSeen} invalidations that started meanwhile covered the uHVA"
            : $"{_invalidationsCovering} of the {_invalidationsSeen} invalidations that started meanwhile covered the uHVA";
        string why = EndHook ? "its uHVA was invalidated again on every pass" : $"mn_active_invalidate_count is {_kvm.MnActiveInvalidateCount}, seq {_kvm.InvalidateSeq}";
        return $"{_kvm.Name}: hva_to_pfn_retry(uhva 0x{Uhva:x}) of {Name} retried {retries} times; {cause} ({why})";
    }

    // ------------------------------------------------------------------ users

    /// <summary>
    /// A kernel user of the cache (kvm_xen_set_evtchn_fast, kvm_setup_guest_pvclock...): read_lock(gpc->lock); while
    /// !kvm_gpc_check: unlock, kvm_gpc_refresh, lock; access the page through khva; read_unlock. The access is reported
    /// to the checker. Returns false with the refresh's error.
    /// </summary>
    public async ValueTask<(bool Ok, ulong Value, int Error)> Access(bool write, ulong value)
    {
        using var _ = S.Current.Enter(write ? "kvm_gpc_write" : "kvm_gpc_read");
        ulong gpa = Gpa;
        int attempts = 0;
        await Lock.ReadLock();
        while (!Check(gpa))
        {
            await Lock.ReadUnlock();
            int r = await Refresh(gpa);
            if (r != 0) return (false, 0, r);
            if (++attempts >= MaxRetries)
            {
                S.Fail(Invariants.Liveness, $"{_kvm.Name}: {Name} invalidated after each of {attempts} successful refreshes", Uhva);
                return (false, 0, EFAULT);
            }
            await Lock.ReadLock();
        }
        K.Checker.OnSecondaryAccess(_kvm, Uhva, Pfn, PfnGeneration, write);
        K.S.Charge(CostKind.Access);
        if (write) K.Mem[Pfn].Contents = value;
        ulong result = K.Mem[Pfn].Contents;
        await Lock.ReadUnlock();
        return (true, result, 0);
    }

    // ------------------------------------------------------------------ checker

    /// <summary>A valid cache is one translation uhva → pfn (writable: hva_to_pfn always asks for write).</summary>
    internal void Collect(List<SecondaryTranslation> into)
    {
        if (Valid && Pfn != ErrPfn) into.Add(new SecondaryTranslation(Uhva, Pfn, PfnGeneration, true, MmStruct.PageSize, _where));
    }

    [System.Diagnostics.Conditional("DEBUG")]
    public void AssertInvariants()
    {
        if (!Valid) return;
        System.Diagnostics.Debug.Assert(Active, $"{Name}: valid but not active");
        System.Diagnostics.Debug.Assert(Pfn != ErrPfn && Uhva != BadHva, $"{Name}: valid without a pfn or uhva");
        System.Diagnostics.Debug.Assert(!EndHook || NeedsInvalidation, $"{Name}: valid without needs_invalidation");
    }

    public override string ToString() =>
        $"{Name}: gpa 0x{Gpa:x} uhva {(Uhva == BadHva ? "bad" : "0x" + Uhva.ToString("x"))} pfn {(Pfn == ErrPfn ? "err" : "0x" + Pfn.ToString("x"))}" +
        $"{(Active ? "" : " inactive")}{(Valid ? " valid" : "")}{(NeedsInvalidation ? " needs_invalidation" : "")}";
}

/// <summary>The VM's side of the pfn caches: kvm->gpc_list, the notifier hooks, the retry and wait helpers.</summary>
public sealed partial class Kvm
{
    readonly List<GfnToPfnCache> _gpcs = [];
    readonly Dictionary<string, GfnToPfnCache> _gpcByName = new(StringComparer.Ordinal);
    KSpinLock? _gpcLock;
    WaitQueue? _gpcInvalidateWq;

    /// <summary>Which invalidation design this VM's pfn caches use (default: mainline's start hook).</summary>
    public PfnCacheDesign PfnCache { get; set; } = PfnCacheDesign.StartHook;

    /// <summary>kvm->gpc_lock: protects the gpc list.</summary>
    public KSpinLock GpcLock => _gpcLock ??= new KSpinLock(S, $"{_name}->gpc_lock");

    /// <summary>kvm->gpc_invalidate_wq (end-hook design).</summary>
    public WaitQueue GpcInvalidateWq => _gpcInvalidateWq ??= new WaitQueue(S, $"{_name}->gpc_invalidate_wq");

    /// <summary>kvm->mmu_gpc_invalidate_range_start/end (end-hook design): union of the in-flight ranges, or <see cref="GfnToPfnCache.BadHva"/>.</summary>
    public ulong GpcRangeStart { get; private set; } = GfnToPfnCache.BadHva;

    public ulong GpcRangeEnd { get; private set; } = GfnToPfnCache.BadHva;

    /// <summary>The VM's caches, active or not (tests).</summary>
    public IReadOnlyCollection<GfnToPfnCache> PfnCaches => _gpcByName.Values;

    bool HasPfnCaches => _gpcs.Count != 0;

    /// <summary>kvm_gpc_init for a new named cache, or the existing one.</summary>
    public GfnToPfnCache GpcInit(string name)
    {
        if (!Era.Has(Feature.KvmPfnCache)) throw new ModelException($"gfn_to_pfn_cache needs a 5.17+ era (this is {Era.Name})");
        if (!_gpcByName.TryGetValue(name, out var gpc)) _gpcByName[name] = gpc = new GfnToPfnCache(this, name);
        return gpc;
    }

    internal async ValueTask GpcListAdd(GfnToPfnCache gpc)
    {
        await GpcLock.Lock();
        _gpcs.Add(gpc);
        await GpcLock.Unlock();
    }

    internal async ValueTask GpcListRemove(GfnToPfnCache gpc)
    {
        await GpcLock.Lock();
        _gpcs.Remove(gpc);
        await GpcLock.Unlock();
    }

    /// <summary>
    /// gfn_to_pfn_cache_invalidate_start (start-hook design), from invalidate_range_start after
    /// mn_active_invalidate_count++ and before the hva walker: under gpc_lock, for each cache, under its lock (write),
    /// mark it invalid if it is valid and its uhva is in [start, end). A VM that never activated a cache walks an empty
    /// list: the model skips the uncontended gpc_lock there (no other state is touched), so VMs without caches keep
    /// their schedules. kvm-gpc-no-invalidate skips the whole hook.
    /// </summary>
    internal async ValueTask GfnToPfnCacheInvalidateStart(ulong start, ulong end)
    {
        if (!HasPfnCaches) return;
        using var _ = S.Current.Enter("gfn_to_pfn_cache_invalidate_start");
        foreach (var g in _gpcs) g.NoteInvalidation(start, end);
        if (_k.Mutated(Mutation.KvmGpcNoInvalidate)) return;
        await GpcLock.Lock();
        for (int i = 0; i < _gpcs.Count; i++)
        {
            var g = _gpcs[i];
            await g.Lock.WriteLock();
            if (g.Valid && g.Pfn != GfnToPfnCache.ErrPfn && g.Covers(start, end)) g.InvalidateLocked();
            await g.Lock.WriteUnlock();
        }
        await GpcLock.Unlock();
    }

    /// <summary>
    /// The end-hook design's part of invalidate_range_start, under mn_invalidate_lock after the count++: set (first) or
    /// extend the union mmu_gpc_invalidate_range_start/end.
    /// </summary>
    void GpcInvalidateRangeAdd(ulong start, ulong end)
    {
        foreach (var g in _gpcs) g.NoteInvalidation(start, end);
        if (MnActiveInvalidateCount == 1)
        {
            GpcRangeStart = start;
            GpcRangeEnd = end;
        }
        else
        {
            GpcRangeStart = Math.Min(GpcRangeStart, start);
            GpcRangeEnd = Math.Max(GpcRangeEnd, end);
        }
    }

    /// <summary>The end-hook design's reset when mn_active_invalidate_count drops to 0 (under mn_invalidate_lock).</summary>
    void GpcInvalidateRangeReset()
    {
        GpcRangeStart = GfnToPfnCache.BadHva;
        GpcRangeEnd = GfnToPfnCache.BadHva;
    }

    /// <summary>
    /// gfn_to_pfn_cache_invalidate (end-hook design), from invalidate_range_end after the walker: under gpc_lock, for each
    /// cache whose needs_invalidation is set, whose pfn is not an error and whose uhva is in [start, end): re-check
    /// under its lock (write), clear needs_invalidation and valid (the patch's <c>!is_error_noslot_pfn(gpc->pfn)</c>
    /// test is kept as written: during a cache's first refresh gpc->pfn is still KVM_PFN_ERR_FAULT).
    /// </summary>
    internal async ValueTask GfnToPfnCacheInvalidate(ulong start, ulong end)
    {
        if (!HasPfnCaches) return;
        using var _ = S.Current.Enter("gfn_to_pfn_cache_invalidate");
        if (_k.Mutated(Mutation.KvmGpcNoInvalidate)) return;
        await GpcLock.Lock();
        for (int i = 0; i < _gpcs.Count; i++)
        {
            var g = _gpcs[i];
            await g.Lock.ReadLock();
            bool hit = Hit(g);
            await g.Lock.ReadUnlock();
            if (!hit) continue;
            await g.Lock.WriteLock();
            if (Hit(g)) g.InvalidateLocked();
            await g.Lock.WriteUnlock();
        }
        await GpcLock.Unlock();

        bool Hit(GfnToPfnCache g) => g.NeedsInvalidation && g.Pfn != GfnToPfnCache.ErrPfn && g.Covers(start, end);
    }

    /// <summary>
    /// mmu_notifier_retry_cache (start-hook design): retry if mn_active_invalidate_count != 0 (any invalidation of the
    /// mm, whatever its range: it is raised before the gpc invalidation, unlike mmu_invalidate_in_progress), else
    /// smp_rmb and retry if mmu_invalidate_seq moved.
    /// </summary>
    internal async ValueTask<bool> MmuNotifierRetryCache(ulong mmuSeq)
    {
        using var _ = S.Current.Enter("mmu_notifier_retry_cache");
        await S.Point(PointKind.Counter);
        if (MnActiveInvalidateCount != 0) return true;
        await S.Point(PointKind.Barrier); // smp_rmb()
        return InvalidateSeq != mmuSeq;
    }

    /// <summary>gpc_invalidations_pending (end-hook design): an invalidation is in flight and the union covers the uhva. Under mn_invalidate_lock.</summary>
    bool GpcInvalidationsPending(GfnToPfnCache gpc) =>
        MnActiveInvalidateCount != 0 && GpcRangeStart <= gpc.Uhva && GpcRangeEnd > gpc.Uhva;

    /// <summary>
    /// gpc_wait_for_invalidations (end-hook design): under mn_invalidate_lock, while gpc_invalidations_pending, sleep on
    /// gpc_invalidate_wq (woken when mn_active_invalidate_count returns to 0).
    /// </summary>
    internal async ValueTask GpcWaitForInvalidations(GfnToPfnCache gpc)
    {
        using var _ = S.Current.Enter("gpc_wait_for_invalidations");
        await MnInvalidateLock.Lock();
        while (GpcInvalidationsPending(gpc))
        {
            await MnInvalidateLock.Unlock();
            await GpcInvalidateWq.Wait();
            await MnInvalidateLock.Lock();
        }
        await MnInvalidateLock.Unlock();
    }

    void CollectGpcTranslations(List<SecondaryTranslation> into)
    {
        foreach (var g in _gpcs) g.Collect(into);
    }
}
