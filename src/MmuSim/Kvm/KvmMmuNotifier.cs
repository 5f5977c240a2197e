using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>What <see cref="Kvm.HandleHvaRange"/> does on each matching memslot (the kvm_hva_range handler/on_lock pair).</summary>
internal enum HvaRangeOp : byte
{
    /// <summary>invalidate_range_start: on_lock = kvm_mmu_invalidate_begin, handler = kvm_mmu_unmap_gfn_range.</summary>
    Unmap,
    /// <summary>invalidate_range_end: on_lock = kvm_mmu_invalidate_end, no handler.</summary>
    InvalidateEnd,
    /// <summary>change_pte: handler = kvm_set_spte_gfn (per arch).</summary>
    ChangePte,
    /// <summary>clear_flush_young: kvm_age_gfn, flush if young.</summary>
    Age,
    /// <summary>clear_young: kvm_age_gfn without flush.</summary>
    AgeNoFlush,
    /// <summary>test_young: kvm_test_age_gfn.</summary>
    TestAge,
}

/// <summary>The mmu_notifier_ops of KVM (virt/kvm/kvm_main.c), per era (kernel-facts.md §3.2, §3.4, §3.5).</summary>
public sealed partial class Kvm
{
    // ------------------------------------------------------------------ invalidate_range_start / end

    /// <summary>
    /// kvm_mmu_notifier_invalidate_range_start: (5.13+) mn_active_invalidate_count++ under mn_invalidate_lock (end-hook
    /// pfn caches: and the gpc range union), (5.17+, start-hook pfn caches) gfn_to_pfn_cache_invalidate_start, then the
    /// hva walker: on the first matching slot take mmu_lock, in_progress++ and update the range; zap each slot's gfns;
    /// flush remote TLBs before unlocking (2.6.32: after). Before 5.13 mmu_lock and count++ are unconditional.
    /// Always returns 0: KVM never fails a non-blocking start (it only avoids yielding).
    /// </summary>
    public override async ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_invalidate_range_start");
        if (_k.Trace.On) _k.Trace.Event("kvm_unmap_hva_range", $"mmu notifier unmap range: {Hex016(range.Start)} -- {Hex016(range.End)}");
        bool gpc = Era.Has(Feature.KvmPfnCache);
        if (Era.Has(Feature.KvmMemslotWaitsForInvalidations))
        {
            await MnInvalidateLock.Lock();
            MnActiveInvalidateCount++;
            if (gpc && PfnCache == PfnCacheDesign.EndHook) GpcInvalidateRangeAdd(range.Start, range.End);
            await MnInvalidateLock.Unlock();
        }
        // 5.17+: invalidate the pfn caches before the walker, i.e. before taking mmu_lock ([6.8] comment); they
        // therefore use mn_active_invalidate_count, not mmu_invalidate_in_progress.
        if (gpc && PfnCache == PfnCacheDesign.StartHook) await GfnToPfnCacheInvalidateStart(range.Start, range.End);
        await HandleHvaRange(range.Start, range.End, HvaRangeOp.Unmap, default);
        return 0;
    }

    /// <summary>
    /// kvm_mmu_notifier_invalidate_range_end: the walker with on_lock = kvm_mmu_invalidate_end (seq++, smp_wmb,
    /// in_progress--), (end-hook pfn caches) gfn_to_pfn_cache_invalidate, then (5.13+) mn_active_invalidate_count-- and
    /// wake a waiting memslot update (and, end hook, reset the gpc range and wake gpc_invalidate_wq) when it reaches 0.
    /// </summary>
    public override async ValueTask InvalidateRangeEnd(MmuNotifierRange range)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_invalidate_range_end");
        await HandleHvaRange(range.Start, range.End, HvaRangeOp.InvalidateEnd, default);
        bool endHook = Era.Has(Feature.KvmPfnCache) && PfnCache == PfnCacheDesign.EndHook;
        if (endHook) await GfnToPfnCacheInvalidate(range.Start, range.End);
        if (Era.Has(Feature.KvmMemslotWaitsForInvalidations))
        {
            await MnInvalidateLock.Lock();
            // An end without its start (a caller outside mmap_lock racing mmu_notifier_register, catalog e4) finds the
            // count at 0. Before 6.9 it wraps (unsigned long), and kvm_swap_active_memslots then waits for 0 forever;
            // from 6.9 it WARNs and stays at 0. Either way the kernel has a bug elsewhere: a counter-balance violation.
            if (MnActiveInvalidateCount == 0 && Era.Has(Feature.KvmActiveInvalidateUnderflowGuard))
                S.Fail(Invariants.CounterBalance, $"{Name}: WARN_ON_ONCE(!mn_active_invalidate_count): invalidate_range_end without its start", range.Start);
            else
            {
                MnActiveInvalidateCount--;
                if (MnActiveInvalidateCount < 0)
                    S.Fail(Invariants.CounterBalance, $"{Name}: mn_active_invalidate_count underflow (invalidate_range_end without its start; memslot updates now wait forever)", range.Start);
            }
            bool wake = MnActiveInvalidateCount == 0;
            if (wake && endHook) GpcInvalidateRangeReset();
            await MnInvalidateLock.Unlock();
            if (wake)
            {
                if (endHook) GpcInvalidateWq.WakeAll();
                MemslotsUpdateWait.WakeAll();
            }
        }
    }

    /// <summary>
    /// kvm_mmu_invalidate_begin (kvm_inc_notifier_count before 6.1): in_progress++; 6.8+: reset the gfn range when this is
    /// the first; 5.13-6.7: the hva range union is set/extended here. Under mmu_lock (write).
    /// </summary>
    void MmuInvalidateBegin(ulong hvaStart, ulong hvaEnd)
    {
        InvalidateInProgress++;
        if (Era.Has(Feature.KvmRetryGfnRange))
        {
            if (InvalidateInProgress == 1) RangeStart = RangeEnd = InvalidRange;
        }
        else if (Era.Has(Feature.KvmRetryHvaRange))
        {
            if (InvalidateInProgress == 1) { RangeStart = hvaStart; RangeEnd = hvaEnd; }
            else
            {
                RangeStart = Math.Min(RangeStart, hvaStart);
                RangeEnd = Math.Max(RangeEnd, hvaEnd);
            }
        }
    }

    /// <summary>kvm_mmu_invalidate_range_add (6.8+): extend the gfn union. Under mmu_lock (write).</summary>
    void MmuInvalidateRangeAdd(ulong gfnStart, ulong gfnEnd)
    {
        if (!Era.Has(Feature.KvmRetryGfnRange)) return;
        if (RangeStart == InvalidRange) { RangeStart = gfnStart; RangeEnd = gfnEnd; }
        else
        {
            RangeStart = Math.Min(RangeStart, gfnStart);
            RangeEnd = Math.Max(RangeEnd, gfnEnd);
        }
    }

    /// <summary>
    /// kvm_mmu_invalidate_end (kvm_dec_notifier_count): seq++, smp_wmb (3.6+), in_progress--,
    /// KVM_BUG_ON(in_progress &lt; 0). Where a reader checks outside mmu_lock (PPC Book3S HV) the two stores are separate
    /// steps, and without the smp_wmb the weak memory (--memory lkmm) lets a reader see them out of order. The
    /// kvm-seq-bump-after-unlock mutation defers the seq++ past the unlock.
    /// </summary>
    async ValueTask MmuInvalidateEnd()
    {
        bool seqHere = !_k.Mutated(Mutation.KvmSeqBumpAfterUnlock);
        bool barriers = Era.Has(Feature.KvmRetryBarriers);
        if (seqHere) InvalidateSeq++;
        if (barriers || KvmArchInfo.RetryUnderRmapLock(Arch))
        {
            await S.Point(barriers ? PointKind.Barrier : PointKind.Counter);
            if (barriers) _k.Weak.Fence(Lkmm.FenceKind.Wmb); // smp_wmb()
        }
        InvalidateInProgress--;
        if (InvalidateInProgress < 0)
            S.Fail(Invariants.CounterBalance, $"{Name}: mmu_invalidate_in_progress underflow (KVM_BUG_ON)");
    }

    // ------------------------------------------------------------------ the hva walker

    /// <summary>
    /// __kvm_handle_hva_range: under kvm->srcu, for each memslot whose hva span overlaps [start, end) clip and convert
    /// to gfns (any page touching the range); take mmu_lock (write) and run on_lock at the first match (5.13+,
    /// 071064f14d87; before, the per-callback code locked and counted unconditionally); run the handler; flush before
    /// unlocking if asked and needed. Returns the handlers' OR. A lockless range (6.15+ x86 aging,
    /// <see cref="AgesLocklessly"/>) never takes mmu_lock: the handler runs under kvm->srcu alone and the flush, if any,
    /// is issued with no lock held.
    /// </summary>
    internal async ValueTask<bool> HandleHvaRange(ulong start, ulong end, HvaRangeOp op, Pte pte)
    {
        using var _ = S.Current.Enter("__kvm_handle_hva_range");
        bool flushOnRet = op is HvaRangeOp.Unmap or HvaRangeOp.Age or HvaRangeOp.ChangePte;
        bool lockless = (op is HvaRangeOp.Age or HvaRangeOp.AgeNoFlush or HvaRangeOp.TestAge) && AgesLocklessly;
        bool locked = false, ret = false;
        bool afterUnlockSeq = false;
        await SrcuReadLock();
        if (lockless)
        {
            for (int i = 0; i < _slots.Count; i++)
            {
                var slot = _slots[i];
                ulong hs = Math.Max(start, slot.UserspaceAddr), he = Math.Min(end, slot.EndHva);
                if (hs >= he) continue;
                ret |= await Handler(op, slot, slot.HvaToGfn(hs), slot.HvaToGfn(he + MmStruct.PageSize - 1), pte);
            }
            if (flushOnRet && ret) await FlushRemoteTlbs();
            SrcuReadUnlock();
            return ret;
        }
        if (!Era.Has(Feature.KvmSkipLockWithoutSlot))
        {
            await MmuLock.Lock();
            locked = true;
            afterUnlockSeq = await OnLock(op, start, end);
        }
        for (int i = 0; i < _slots.Count; i++)
        {
            var slot = _slots[i];
            ulong hs = Math.Max(start, slot.UserspaceAddr), he = Math.Min(end, slot.EndHva);
            if (hs >= he) continue;
            if (op == HvaRangeOp.ChangePte && slot.Invalid && Era.Has(Feature.KvmChangePteWarnEarlyReturn)) continue;
            ulong gs = slot.HvaToGfn(hs), ge = slot.HvaToGfn(he + MmStruct.PageSize - 1);
            if (!locked)
            {
                await MmuLock.Lock();
                locked = true;
                afterUnlockSeq = await OnLock(op, start, end);
            }
            ret |= await Handler(op, slot, gs, ge, pte);
        }
        if (locked)
        {
            // 2.6.32 flushed after spin_unlock in start and clear_flush_young; its change_pte handler
            // (kvm_set_pte_rmapp) flushed by itself under mmu_lock.
            bool late = (!Era.Has(Feature.KvmFlushBeforeUnlock) && op != HvaRangeOp.ChangePte) ||
                        (op == HvaRangeOp.Unmap && _k.Mutated(Mutation.KvmFlushAfterUnlockBeforeFree));
            if (flushOnRet && ret && !late) await FlushRemoteTlbs();
            await MmuLock.Unlock();
            if (flushOnRet && ret && late) await FlushRemoteTlbs();
            if (afterUnlockSeq)
            {
                await S.Point(PointKind.Counter);
                InvalidateSeq++;
            }
        }
        SrcuReadUnlock();
        return ret;
    }

    /// <summary>
    /// kvm_age_hva_range's range.lockless = IS_ENABLED(CONFIG_KVM_MMU_LOCKLESS_AGING): x86 from 6.15 (TDP and shadow MMU).
    /// A VM without A bits keeps the lock here: the model ages it by zapping, where 6.15 marks the SPTE for access
    /// tracking with a cmpxchg instead (docs/eras.md).
    /// </summary>
    bool AgesLocklessly => Era.Has(Feature.KvmLocklessAging) && KvmArchInfo.IsX86(Arch) && !NoAccessedBit;

    /// <summary>on_lock per op. Returns true when the seq bump must follow the unlock (kvm-seq-bump-after-unlock).</summary>
    async ValueTask<bool> OnLock(HvaRangeOp op, ulong start, ulong end)
    {
        switch (op)
        {
            case HvaRangeOp.Unmap:
                MmuInvalidateBegin(start, end);
                return false;
            case HvaRangeOp.InvalidateEnd:
                await MmuInvalidateEnd();
                return _k.Mutated(Mutation.KvmSeqBumpAfterUnlock);
            case HvaRangeOp.ChangePte when Era.Has(Feature.KvmChangePteSeqBump):
                InvalidateSeq++;
                return false;
            default:
                return false;
        }
    }

    async ValueTask<bool> Handler(HvaRangeOp op, Memslot slot, ulong gs, ulong ge, Pte pte)
    {
        switch (op)
        {
            case HvaRangeOp.Unmap:
                MmuInvalidateRangeAdd(gs, ge);
                return await UnmapGfnRange(slot, gs, ge);
            case HvaRangeOp.ChangePte:
                return await SetSpteGfn(slot, gs, pte);
            case HvaRangeOp.Age:
            case HvaRangeOp.AgeNoFlush:
                return await AgeGfn(slot, gs, ge, clear: true);
            case HvaRangeOp.TestAge:
                return await AgeGfn(slot, gs, ge, clear: false);
            default:
                return false;
        }
    }

    /// <summary>kvm_mmu_unmap_gfn_range / kvm_unmap_gfn_range: zap the slot's SPTEs in [gs, ge) (not with kvm-no-zap-on-start).</summary>
    async ValueTask<bool> UnmapGfnRange(Memslot slot, ulong gs, ulong ge)
    {
        if (_k.Mutated(Mutation.KvmNoZapOnStart)) return false;
        return await ZapGfnRange(slot, gs, ge, marksDirty: true);
    }

    // ------------------------------------------------------------------ invalidate_page (2.6.27-4.12)

    /// <summary>
    /// kvm_mmu_notifier_invalidate_page: lock; seq++ (the bump must be visible at unlock, 2.6.32's comment); zap the
    /// gfns of <paramref name="address"/>; flush (before unlock from 3.6); unlock. No in_progress change.
    /// </summary>
    public override async ValueTask InvalidatePage(MmStruct mm, ulong address)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_invalidate_page");
        await SrcuReadLock();
        await MmuLock.Lock();
        bool seqLate = _k.Mutated(Mutation.KvmSeqBumpAfterUnlock);
        if (!seqLate) InvalidateSeq++;
        bool flush = false;
        for (int i = 0; i < _slots.Count; i++)
        {
            var slot = _slots[i];
            if (address < slot.UserspaceAddr || address >= slot.EndHva) continue;
            ulong g = slot.HvaToGfn(address);
            flush |= await ZapGfnRange(slot, g, g + 1, marksDirty: true);
        }
        bool late = !Era.Has(Feature.KvmFlushBeforeUnlock) || _k.Mutated(Mutation.KvmFlushAfterUnlockBeforeFree);
        if (flush && !late) await FlushRemoteTlbs();
        await MmuLock.Unlock();
        if (flush && late) await FlushRemoteTlbs();
        if (seqLate)
        {
            await S.Point(PointKind.Counter);
            InvalidateSeq++;
        }
        SrcuReadUnlock();
    }

    // ------------------------------------------------------------------ change_pte (2.6.32-6.9)

    /// <summary>
    /// kvm_mmu_notifier_change_pte: until 5.12 lock, seq++, kvm_set_spte_hva (per-arch kvm_set_spte_gfn), unlock.
    /// From 5.13: WARN_ON_ONCE(!mn_active_invalidate_count) (a change_pte outside start/end), and return early unless an
    /// in-flight start found a memslot (in_progress != 0); then the walker with kvm_set_spte_gfn. Under the PTL.
    /// </summary>
    public override async ValueTask ChangePte(MmStruct mm, ulong address, Pte pte)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_change_pte");
        if (_k.Trace.On) _k.Trace.Event("kvm_set_spte_hva", $"mmu notifier set pte hva: {Hex016(address)}");
        _k.Stats.Inc(Stat.KvmChangePteCalls);
        if (Era.Has(Feature.KvmChangePteWarnEarlyReturn))
        {
            await S.Point(PointKind.Counter);
            if (MnActiveInvalidateCount == 0)
                S.Fail(Invariants.Pairing, $"{Name}: change_pte(0x{address:x}) outside invalidate_range_start/end (WARN_ON_ONCE(!kvm->mn_active_invalidate_count))", address);
            if (InvalidateInProgress == 0) return;
        }
        await HandleHvaRange(address, address + 1, HvaRangeOp.ChangePte, pte);
    }

    // ------------------------------------------------------------------ aging

    /// <summary>kvm_mmu_notifier_clear_flush_young: kvm_age_gfn over [start, end), flush remote TLBs if young.</summary>
    public override async ValueTask<bool> ClearFlushYoung(MmStruct mm, ulong start, ulong end)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_clear_flush_young");
        if (_k.Trace.On) _k.Trace.Event("kvm_age_hva", $"mmu notifier age hva: {Hex016(start)} -- {Hex016(end)}");
        _k.Stats.Inc(Stat.KvmAgeCalls);
        return await HandleHvaRange(start, end, HvaRangeOp.Age, default);
    }

    /// <summary>kvm_mmu_notifier_clear_young: kvm_age_gfn without the TLB flush (a cached translation may hide later accesses).</summary>
    public override async ValueTask<bool> ClearYoung(MmStruct mm, ulong start, ulong end)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_clear_young");
        if (_k.Trace.On) _k.Trace.Event("kvm_age_hva", $"mmu notifier age hva: {Hex016(start)} -- {Hex016(end)}");
        _k.Stats.Inc(Stat.KvmAgeCalls);
        return await HandleHvaRange(start, end, HvaRangeOp.AgeNoFlush, default);
    }

    /// <summary>kvm_mmu_notifier_test_young: kvm_test_age_gfn on [address, address + 1); clears nothing.</summary>
    public override async ValueTask<bool> TestYoung(MmStruct mm, ulong address)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_test_young");
        if (_k.Trace.On) _k.Trace.Event("kvm_test_age_hva", $"mmu notifier test age hva: {Hex016(address)}");
        return await HandleHvaRange(address, address + 1, HvaRangeOp.TestAge, default);
    }

    // ------------------------------------------------------------------ release, invalidate_range

    /// <summary>kvm_mmu_notifier_release: kvm_flush_shadow_all under kvm->srcu (zap everything, flush).</summary>
    public override async ValueTask Release(MmStruct mm)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_release");
        await SrcuReadLock();
        await FlushShadowAll();
        SrcuReadUnlock();
    }

    /// <summary>kvm_flush_shadow_all / kvm_arch_flush_shadow_all: zap every SPTE of every slot, flush; no SPTE afterwards.</summary>
    async ValueTask FlushShadowAll()
    {
        using var _ = S.Current.Enter("kvm_flush_shadow_all");
        await MmuLock.Lock();
        Released = true;
        bool flush = false;
        for (int i = 0; i < _slots.Count; i++) flush |= await ZapGfnRange(_slots[i], _slots[i].BaseGfn, _slots[i].EndGfn, marksDirty: true);
        if (flush || AnyTlbEntry()) await FlushRemoteTlbs();
        await MmuLock.Unlock();
    }

    /// <summary>Number of KVM_REQ_APIC_PAGE_RELOAD requests made by invalidate_range.</summary>
    public int ApicPageReloads { get; private set; }

    /// <summary>
    /// kvm_mmu_notifier_invalidate_range -> kvm_arch_mmu_notifier_invalidate_range (x86, 4.19-6.1): if the APIC-access
    /// page's hva is in [start, end), request KVM_REQ_APIC_PAGE_RELOAD on every vCPU. Under the PTL.
    /// </summary>
    public override async ValueTask InvalidateRange(MmStruct mm, ulong start, ulong end)
    {
        using var _ = S.Current.Enter("kvm_mmu_notifier_invalidate_range");
        await S.Point(PointKind.Callback, start);
        if (ApicAccessHva is ulong a && a >= start && a < end)
        {
            ApicPageReloads++;
            foreach (var v in _vcpus) v.ApicPageReloadRequested = true;
        }
    }

    /// <summary>%#016lx: the whole field 16 wide including the 0x prefix.</summary>
    internal static string Hex016(ulong v) => v == 0 ? "0000000000000000" : "0x" + v.ToString("x").PadLeft(14, '0');
}
