using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>Outcome of one pass through the KVM fault path (RET_PF_*).</summary>
public enum KvmFaultResult : byte
{
    /// <summary>RET_PF_FIXED: an SPTE was installed (or made writable); re-enter the guest.</summary>
    Fixed,
    /// <summary>RET_PF_RETRY: an invalidation raced with the fault; re-enter the guest and fault again.</summary>
    Retry,
    /// <summary>-EFAULT to the VMM: no VMA / PROT_NONE / write to a read-only VMA or memslot, or the VM is gone.</summary>
    Efault,
    /// <summary>
    /// RET_PF_EMULATE: no memslot covers the gfn (kvm_handle_noslot_fault), or a write hit a read-only memslot
    /// (KVM_PFN_ERR_RO_FAULT): the access is emulated and exits to the VMM as KVM_EXIT_MMIO.
    /// </summary>
    Mmio,
    /// <summary>KVM_EXIT_DIRTY_RING_FULL: the vCPU's dirty ring is soft-full; the VMM must harvest and reset it.</summary>
    DirtyRingFull,
    /// <summary>-EAGAIN, a prefault only (6.18+, <see cref="Eras.Feature.KvmPreFaultInvalidSlotEagain"/>): the gfn's memslot is being deleted or moved.</summary>
    Eagain,
    /// <summary>
    /// KVM_EXIT_INTERNAL_ERROR (KVM_INTERNAL_ERROR_EMULATION), x86: an instruction fetch from a gfn no memslot covers
    /// goes to x86_emulate_instruction, whose fetch of the instruction bytes (kvm_fetch_guest_virt) finds no memslot
    /// either; handle_emulation_failure exits to the VMM.
    /// </summary>
    EmulationFailure,
}

/// <summary>The secondary page table and the fault (retry) protocol: arch/*/kvm/mmu.c and virt/kvm/kvm_main.c.</summary>
public sealed partial class Kvm
{
    bool IsX86 => KvmArchInfo.IsX86(Arch);

    string FaultFunction => Arch switch
    {
        KvmArch.X86Tdp => "kvm_tdp_mmu_page_fault",
        KvmArch.X86Shadow => "direct_page_fault",
        KvmArch.Arm64 => "user_mem_abort",
        KvmArch.Mips => "kvm_mips_map_page",
        KvmArch.RiscV => "kvm_riscv_gstage_map",
        KvmArch.PpcBook3s => "kvmppc_book3s_hv_page_fault",
        KvmArch.PpcE500 => "kvmppc_e500_shadow_map",
        _ => "kvm_map_page",
    };

    // ------------------------------------------------------------------ fault path

    /// <summary>
    /// kvm_mmu_do_page_fault (x86): count the fault in vcpu->stat.pf_taken, run the arch handler, count RET_PF_FIXED in
    /// pf_fixed. Other archs have no such stats; the handler alone runs.
    /// </summary>
    /// <remarks>A <paramref name="prefetch"/> fault (KVM_PRE_FAULT_MEMORY) is not counted in pf_taken, nor as
    /// pf_emulate ("prefetch faults aren't truly spurious"); RET_PF_FIXED still counts in pf_fixed.</remarks>
    public async ValueTask<KvmFaultResult> PageFault(KvmVcpu vcpu, ulong gfn, bool write, bool present, bool prefetch = false)
    {
        if (IsX86 && !prefetch) _k.Stats.Inc(Stat.KvmPfTaken);
        var r = await ArchPageFault(vcpu, gfn, write, present, prefetch);
        if (IsX86 && r == KvmFaultResult.Fixed) _k.Stats.Inc(Stat.KvmPfFixed);
        else if (IsX86 && !prefetch && r == KvmFaultResult.Mmio) _k.Stats.Inc(Stat.KvmPfEmulate);
        return r;
    }

    // ------------------------------------------------------------------ MMIO

    /// <summary>
    /// x86 MMIO SPTEs: gfn → the memslots generation they were created in (make_mmio_spte). Installed under mmu_lock by
    /// <see cref="HandleNoslotFault"/>; a stale generation makes handle_mmio_page_fault return RET_PF_INVALID, so a
    /// memslot created over the gfn is seen by the next access. They translate no host page (the checker does not see
    /// them) and no notifier touches them. Allocated on the first MMIO SPTE only.
    /// </summary>
    Dictionary<ulong, ulong>? _mmioSptes;

    /// <summary>enable_mmio_caching (kvm module parameter mmio_caching): x86 caches MMIO gfns in reserved SPTEs.
    /// Off on this project's 6.18 PVM machine (/sys/module/kvm/parameters/mmio_caching = N).</summary>
    public bool MmioCaching { get; set; }

    /// <summary>MMIO SPTEs of the current memslots generation.</summary>
    public int MmioSptes
    {
        get
        {
            if (_mmioSptes == null) return 0;
            int n = 0;
            foreach (var gen in _mmioSptes.Values) if (gen == MemslotsGeneration) n++;
            return n;
        }
    }

    /// <summary>
    /// handle_mmio_page_fault's test: the vCPU's access hit an MMIO SPTE (EPT misconfig / reserved-bit #PF) whose
    /// generation is current, so the access is emulated without kvm_mmu_do_page_fault (no pf_taken).
    /// </summary>
    internal bool IsCachedMmio(ulong gfn) =>
        _mmioSptes != null && _mmioSptes.TryGetValue(gfn, out var gen) && gen == MemslotsGeneration && GfnToMemslot(gfn) == null;

    /// <summary>
    /// kvm_handle_noslot_fault: cache the gfn as MMIO (vcpu_cache_mmio_info), and with mmio_caching install an MMIO SPTE
    /// under mmu_lock (pf_mmio_spte_created); RET_PF_EMULATE either way. Other archs exit to the VMM (io_mem_abort).
    /// </summary>
    async ValueTask<KvmFaultResult> HandleNoslotFault(ulong gfn)
    {
        using var _ = S.Current.Enter("kvm_handle_noslot_fault");
        if (!IsX86 || !MmioCaching) return KvmFaultResult.Mmio;
        await MmuLock.Lock();
        await S.Point(PointKind.SpteWrite, gfn);
        (_mmioSptes ??= [])[gfn] = MemslotsGeneration;           // mark_mmio_spte
        _k.Stats.Inc(Stat.KvmPfMmioSpteCreated);
        await MmuLock.Unlock();
        return KvmFaultResult.Mmio;
    }

    /// <summary>
    /// The arch page-fault handler (kvm_mmu_page_fault → kvm_tdp_mmu_page_fault / direct_page_fault, user_mem_abort...),
    /// §3.3: sample mmu_invalidate_seq, smp_rmb, (6.8+) lockless early retry, GUP through the primary (faults it in,
    /// breaks COW for writes), (6.8+) second early check, take mmu_lock, retry check, install the SPTE (writable only if
    /// GUP saw a writable primary PTE), release the page reference (after unlock; under the lock with dirty marking from
    /// 6.13). <paramref name="present"/>: the guest saw a present but read-only translation (write-protect exit).
    /// </summary>
    async ValueTask<KvmFaultResult> ArchPageFault(KvmVcpu vcpu, ulong gfn, bool write, bool present, bool prefetch)
    {
        using var _ = S.Current.Enter(FaultFunction);
        _k.S.Charge(CostKind.SecondaryFault);
        if (_k.Trace.On) TracePageFault(vcpu, gfn, write, present);
        await SrcuReadLock();
        try
        {
            var slot = GfnToMemslot(gfn);
            if (slot == null) return await HandleNoslotFault(gfn);
            // kvm_mmu_faultin_pfn: a slot being deleted or moved retries (its SPTEs are zapped before a new MMIO SPTE goes
            // in); from 6.18 a prefault returns -EAGAIN instead, since it holds kvm->srcu and the deletion waits for it.
            if (slot.Invalid)
                return prefetch && Era.Has(Feature.KvmPreFaultInvalidSlotEagain) && !_k.Mutated(Mutation.KvmPrefaultRetriesInvalidSlot)
                    ? KvmFaultResult.Eagain : KvmFaultResult.Retry;
            if (write && slot.ReadOnly) return KvmFaultResult.Mmio;  // KVM_PFN_ERR_RO_FAULT: emulated, exits as MMIO
            if (Released || Destroyed) return KvmFaultResult.Efault;
            ulong hva = slot.GfnToHva(gfn);
            if (write && present && IsX86 && await FastPageFault(vcpu, slot, gfn))
            {
                _k.Stats.Inc(Stat.KvmPfFast);
                return KvmFaultResult.Fixed;
            }

            await S.Point(PointKind.Counter, gfn, InvalidateState.Read);
            ulong mmuSeq = _k.Weak.IsWeak ? _k.Weak.Load(SeqLoc) : InvalidateSeq; // mmu_seq = kvm->mmu_invalidate_seq
            await S.Point(PointKind.Barrier, gfn, InvalidateState.Read);
            if (_k.Weak.IsWeak) _k.Weak.Fence(Lkmm.FenceKind.Rmb); // smp_rmb()
            bool early = Era.Has(Feature.KvmEarlyUnsafeRetry) && KvmArchInfo.UsesRangeRetry(Arch);
            if (early && MmuInvalidateRetryGfnUnsafe(mmuSeq, gfn)) return Retry();

            // kvm_faultin_pfn: a private gfn (6.8+, KVM_MEMORY_ATTRIBUTE_PRIVATE) takes its page from the slot's
            // guest_memfd (kvm_faultin_pfn_private → kvm_gmem_get_pfn), never from the hva; without a guest_memfd (or with
            // the file released) it is KVM_EXIT_MEMORY_FAULT, an -EFAULT exit to the VMM.
            bool priv = SwProtected && IsPrivateGfn(gfn);
            if (priv && (slot.Gmem == null || slot.Gmem.Released)) return KvmFaultResult.Efault;
            var page = priv ? await slot.Gmem!.GetPfn(slot, gfn) : await Gup.GetUserPage(_mm, hva, write);  // hva_to_pfn
            if (!page.Ok) return KvmFaultResult.Efault;
            if (early)
            {
                await S.Point(PointKind.Counter, gfn);
                if (MmuInvalidateRetryGfnUnsafe(mmuSeq, gfn))
                {
                    Folio.Put(_k, page.Pfn);                    // kvm_release_pfn_clean
                    return Retry();
                }
            }

            bool rmapLocked = KvmArchInfo.RetryUnderRmapLock(Arch);
            bool readLock = MmuLock.IsRwLock && KvmArchInfo.FaultTakesReadLock(Arch);
            if (rmapLocked) await RmapLock.Lock();
            else if (readLock) await MmuLock.ReadLock();
            else await MmuLock.Lock();
            var r = KvmFaultResult.Fixed;
            bool keepRef = false;
            if (Released || Destroyed) r = KvmFaultResult.Efault;
            // (e500 before the fix, NoRetryCheck: kvmppc_e500_shadow_map never asked, §5(d2))
            else if (!NoRetryCheck && (rmapLocked ? await MmuNotifierRetryLockless(mmuSeq) : await MmuInvalidateRetry(mmuSeq, gfn, hva))) r = Retry();
            else
            {
                keepRef = await MapPage(vcpu, slot, gfn, hva, page, write, priv);
                if (KvmArchInfo.PrefetchesPtes(Arch)) await DirectPtePrefetch(slot, gfn);
            }
            if (Era.Has(Feature.KvmDirtyAtFault))
            {
                // kvm_release_faultin_page(kvm, page, unused = (r == RET_PF_RETRY), dirty = fault->map_writable)
                if (r == KvmFaultResult.Fixed && page.Writable) Folio.MarkDirty(_k, page.Pfn);
                if (r == KvmFaultResult.Fixed) MarkAccessed(page.Pfn);
                if (!keepRef) Folio.Put(_k, page.Pfn);
            }
            if (rmapLocked) await RmapLock.Unlock();
            else if (readLock) await MmuLock.ReadUnlock();
            else await MmuLock.Unlock();
            if (!Era.Has(Feature.KvmDirtyAtFault) && !keepRef)
            {
                await S.Point(PointKind.Counter, gfn);
                Folio.Put(_k, page.Pfn);                        // kvm_release_pfn_clean, after unlock
            }
            return r;
        }
        finally
        {
            SrcuReadUnlock();
        }
    }

    /// <summary>The arch's fault path never calls mmu_notifier_retry: PPC e500 before Feature.KvmE500RetryCheck.</summary>
    bool NoRetryCheck => Arch == KvmArch.PpcE500 && !Era.Has(Feature.KvmE500RetryCheck);

    KvmFaultResult Retry()
    {
        _k.Stats.Inc(Stat.KvmFaultRetries);
        return KvmFaultResult.Retry;
    }

    void TracePageFault(KvmVcpu vcpu, ulong gfn, bool write, bool present)
    {
        ulong err = (present ? 1UL : 0) | (write ? 2UL : 0);
        ulong gpa = Spte.GfnToGpa(gfn);
        _k.Trace.Event("kvm_page_fault", Era.Has(Feature.KvmPageFaultTraceVcpu)
            ? $"vcpu {vcpu.Index} rip 0x0 address 0x{gpa:x16} error_code 0x{err:x}"
            : $"address {gpa:x} error_code {err:x}");
    }

    /// <summary>
    /// mmu_invalidate_retry / mmu_notifier_retry_hva (5.13-6.7, x86) / mmu_invalidate_retry_gfn (6.8+, x86), under mmu_lock:
    /// retry if an invalidation is in progress (and, for the range variants, covers this hva/gfn), then smp_rmb, retry if
    /// the seq moved. kvm-no-count-check ignores in_progress; kvm-no-retry-check skips the whole check.
    /// </summary>
    async ValueTask<bool> MmuInvalidateRetry(ulong mmuSeq, ulong gfn, ulong hva)
    {
        bool range = KvmArchInfo.UsesRangeRetry(Arch);
        using var _ = S.Current.Enter(
            Era.Has(Feature.KvmRetryGfnRange) && range ? "mmu_invalidate_retry_gfn" :
            Era.Has(Feature.KvmRetryHvaRange) && range ? "mmu_notifier_retry_hva" :
            Era.Has(Feature.KvmMmuInvalidateNames) ? "mmu_invalidate_retry" : "mmu_notifier_retry");
        if (_k.Mutated(Mutation.KvmNoRetryCheck)) return false;
        if (!_k.Mutated(Mutation.KvmNoCountCheck) && InvalidateInProgress != 0)
        {
            if (!KvmArchInfo.UsesRangeRetry(Arch)) return true;
            if (Era.Has(Feature.KvmRetryGfnRange))
            {
                // WARN_ON_ONCE(range_start == INVALID_GPA): in progress but no range added yet; retry anyway.
                if (RangeStart == InvalidRange) return true;
                if (gfn >= RangeStart && gfn < RangeEnd) return true;
            }
            else if (Era.Has(Feature.KvmRetryHvaRange))
            {
                if (hva >= RangeStart && hva < RangeEnd) return true;
            }
            else return true;
        }
        if (Era.Has(Feature.KvmRetryBarriers)) await S.Point(PointKind.Barrier); // smp_rmb() (Global: a retry puts the page after it)
        return InvalidateSeq != mmuSeq;
    }

    /// <summary>
    /// mmu_notifier_retry as PPC Book3S HV evaluates it: under the rmap lock, not mmu_lock, so the two loads race with
    /// an end. Program order: read count, smp_rmb (a355aa54f1d2, 3.6+), read seq. The loads go through the weak memory
    /// (<see cref="Lkmm.WeakMemory"/>): under --memory lkmm, without the barriers here and in
    /// <see cref="MmuInvalidateEnd"/> a reader may see end's new count (0) and still the old seq (race 5(d1)); under sc
    /// it never can.
    /// </summary>
    async ValueTask<bool> MmuNotifierRetryLockless(ulong mmuSeq)
    {
        using var _ = S.Current.Enter("mmu_notifier_retry");
        if (_k.Mutated(Mutation.KvmNoRetryCheck)) return false;
        bool barriers = Era.Has(Feature.KvmRetryBarriers);
        await S.Point(PointKind.Counter);
        long count = _k.Weak.IsWeak ? (long)_k.Weak.Load(InProgressLoc) : InvalidateInProgress;
        await S.Point(barriers ? PointKind.Barrier : PointKind.Counter);
        if (barriers && !_k.Mutated(Mutation.KvmRetryNoRmb)) _k.Weak.Fence(Lkmm.FenceKind.Rmb); // smp_rmb()
        ulong seq = _k.Weak.IsWeak ? _k.Weak.Load(SeqLoc) : InvalidateSeq;
        if (!_k.Mutated(Mutation.KvmNoCountCheck) && count != 0) return true;
        return seq != mmuSeq;
    }

    /// <summary>mmu_invalidate_retry_gfn_unsafe (6.8+): the same test without mmu_lock, only to avoid contending it.</summary>
    bool MmuInvalidateRetryGfnUnsafe(ulong mmuSeq, ulong gfn)
    {
        if (_k.Mutated(Mutation.KvmNoRetryCheck)) return false;
        if (!_k.Mutated(Mutation.KvmNoCountCheck) && InvalidateInProgress != 0 &&
            gfn >= RangeStart && gfn < RangeEnd) return true;
        return InvalidateSeq != mmuSeq;
    }

    /// <summary>
    /// fast_page_fault (x86): a write to an SPTE write-protected for dirty logging whose primary mapping was writable is
    /// fixed by a lockless cmpxchg making it writable again, and the gfn is marked in the dirty bitmap. One step.
    /// </summary>
    async ValueTask<bool> FastPageFault(KvmVcpu vcpu, Memslot slot, ulong gfn)
    {
        using var _ = S.Current.Enter("fast_page_fault");
        await S.Point(PointKind.SpteWrite, gfn);
        if (slot.Tables[slot.Block(gfn)] == SpteTable.HugeLeaf) return false;
        ref ulong e = ref slot.SpteRef(gfn);
        var s = new Spte(e);
        if (!s.Present || s.Writable || !s.HostWritable || slot.ReadOnly) return false;
        e = s.With(Spte.WritableBit, true).Raw;
        MarkPageDirtyInSlot(vcpu, slot, gfn);
        return true;
    }

    /// <summary>
    /// kvm_tdp_mmu_map / direct_map / stage2 map: install the leaf for <paramref name="gfn"/> under mmu_lock. A 2 MiB leaf
    /// only if the host maps a THP there now (host_pfn_mapping_level reads the primary PMD under mmu_lock) and the slot
    /// is aligned. Writable only if GUP saw a writable PTE, the slot is writable and (with dirty logging) the fault is a
    /// write. Returns true if the SPTE keeps the GUP reference (kvm-hold-page-refs).
    /// </summary>
    async ValueTask<bool> MapPage(KvmVcpu vcpu, Memslot slot, ulong gfn, ulong hva, GupResult page, bool write, bool priv = false)
    {
        using var _ = S.Current.Enter(IsX86 ? "kvm_tdp_mmu_map" : "kvm_pgtable_stage2_map");
        await S.Point(PointKind.SpteWrite, gfn);
        bool writable = page.Writable && !slot.ReadOnly && (write || !slot.LogDirty);
        bool keepRef = _k.Mutated(Mutation.KvmHoldPageRefs);
        var pmd = _mm.PeekPmd(hva);
        bool huge = page.Huge && pmd.Present && pmd.Huge && slot.HugeCapable(gfn) && !slot.LogDirty;
        int b = slot.Block(gfn);
        if (huge)
        {
            long head = page.Pfn - (long)(gfn & 511);
            DropBlockSptes(slot, b, marksDirty: true);
            var h = Spte.Make(head, _k.Mem[head].Generation, writable, page.Writable, accessed: true, dirty: write, huge: true);
            if (keepRef) h = h.With(Spte.RefBit, true);
            if (!new Spte(slot.HugeSptes[b]).Present) slot.PresentCount++;
            slot.HugeSptes[b] = h.Raw;
            slot.Tables[b] = SpteTable.HugeLeaf;
        }
        else
        {
            if (slot.Tables[b] == SpteTable.HugeLeaf) DropHuge(slot, b, marksDirty: true);
            slot.Tables[b] = SpteTable.Table;
            ref ulong e = ref slot.SpteRef(gfn);
            var old = new Spte(e);
            if (old.Present)
            {
                if (old.HoldsRef) Folio.Put(_k, old.Pfn);
            }
            else
            {
                slot.Live[b]++;
                slot.PresentCount++;
            }
            var s = Spte.Make(page.Pfn, page.Generation, writable, page.Writable, accessed: true, dirty: write);
            if (keepRef) s = s.With(Spte.RefBit, true);
            if (priv) s = s.With(Spte.PrivateBit, true);
            e = s.Raw;
        }
        _k.Stats.Inc(Stat.SptesInstalled);
        if (writable && write) MarkPageDirtyInSlot(vcpu, slot, gfn);
        // arm64 and the other non-x86 archs never propagate dirty on unmap; they mark the page dirty when mapping it
        // writable (user_mem_abort: kvm_set_pfn_dirty + mark_page_dirty_in_slot).
        if (!IsX86 && writable) Folio.MarkDirty(_k, page.Pfn);
        return keepRef;
    }

    // ------------------------------------------------------------------ prefetch (x86 shadow MMU)

    readonly long[] _prefetchPfns = new long[KvmArchInfo.PtePrefetchNum];

    /// <summary>
    /// direct_pte_prefetch, under mmu_lock after the fault's 4 KiB SPTE: nothing without A bits (sp_ad_disabled), for a
    /// huge leaf, or (5.13+) while an invalidation is in progress; else __direct_pte_prefetch over the aligned block of
    /// PTE_PREFETCH_NUM around <paramref name="gfn"/>: each run of not-present SPTEs goes to direct_pte_prefetch_many,
    /// and the first run that maps nothing ends the prefetch. gfns outside the fault's memslot end a run (the model
    /// does not look them up in other slots).
    /// </summary>
    async ValueTask DirectPtePrefetch(Memslot slot, ulong gfn)
    {
        if (NoAccessedBit || slot.Tables[slot.Block(gfn)] != SpteTable.Table) return;
        if (Era.Has(Feature.KvmPrefetchSkipsInvalidation) && InvalidateInProgress != 0) return;
        using var _ = S.Current.Enter("direct_pte_prefetch");
        ulong first = gfn & ~(ulong)(KvmArchInfo.PtePrefetchNum - 1);
        ulong start = ulong.MaxValue;
        for (ulong g = first; g < first + KvmArchInfo.PtePrefetchNum; g++)
        {
            await S.Point(PointKind.SpteRead, g);
            bool present = g == gfn || (g >= slot.BaseGfn && g < slot.EndGfn && new Spte(slot.SpteRef(g)).Present);
            if (present)
            {
                if (start == ulong.MaxValue) continue;
                if (!await DirectPtePrefetchMany(slot, start, g)) return;
                start = ulong.MaxValue;
            }
            else if (start == ulong.MaxValue) start = g;
        }
        if (start != ulong.MaxValue) await DirectPtePrefetchMany(slot, start, first + KvmArchInfo.PtePrefetchNum);
    }

    /// <summary>
    /// direct_pte_prefetch_many over [start, end): no slot for write (gfn_to_memslot_dirty_bitmap: dirty logging, or a
    /// read-only slot through gfn_to_hva_many) or a run past the slot's end fails; kvm_prefetch_pages takes the pages
    /// with get_user_pages_fast_only(FOLL_WRITE), which stops at the first page not present and writable in the
    /// primary; each page got is mapped by mmu_set_spte as a prefetch (writable, Accessed clear) and released clean.
    /// Returns false (-1) if nothing was mapped.
    /// </summary>
    async ValueTask<bool> DirectPtePrefetchMany(Memslot slot, ulong start, ulong end)
    {
        using var _ = S.Current.Enter("direct_pte_prefetch_many");
        if (start < slot.BaseGfn || end > slot.EndGfn || slot.LogDirty || slot.ReadOnly) return false;
        int n = 0;
        for (ulong g = start; g < end; g++, n++)
        {
            var p = await Gup.GetUserPageFastOnly(_mm, slot.GfnToHva(g), write: true);
            if (!p.Ok) break;
            _prefetchPfns[n] = p.Pfn;
        }
        if (n == 0) return false;
        int b = slot.Block(start);
        for (int i = 0; i < n; i++)
        {
            ulong g = start + (ulong)i;
            long pfn = _prefetchPfns[i];
            await S.Point(PointKind.SpteWrite, g);               // mmu_set_spte(prefetch)
            ref ulong e = ref slot.SpteRef(g);
            if (!new Spte(e).Present) { slot.Live[b]++; slot.PresentCount++; }
            e = Spte.Make(pfn, _k.Mem[pfn].Generation, writable: true, hostWritable: true, accessed: false, dirty: false).Raw;
            _k.Stats.Inc(Stat.SptesInstalled);
            _k.Stats.Inc(Stat.KvmSptesPrefetched);
            Folio.Put(_k, pfn);                                  // kvm_release_page_clean
        }
        return true;
    }

    // ------------------------------------------------------------------ zap

    /// <summary>
    /// kvm_unmap_gfn_range / kvm_tdp_mmu_zap_leafs / kvm_zap_rmap / stage2 unmap: clear every SPTE of
    /// <paramref name="slot"/> in [gs, ge) in one step under mmu_lock (write). Before 6.13, x86 transfers the SPTE's
    /// dirty/accessed bits to the folio (kvm_set_pfn_dirty/accessed). Frees last-level tables as the arch does.
    /// Returns true if something was zapped (a remote TLB flush is needed).
    /// </summary>
    internal async ValueTask<bool> ZapGfnRange(Memslot slot, ulong gs, ulong ge, bool marksDirty)
    {
        gs = Math.Max(gs, slot.BaseGfn);
        ge = Math.Min(ge, slot.EndGfn);
        if (gs >= ge) return false;
        using var _ = S.Current.Enter("kvm_unmap_gfn_range");
        bool rmap = KvmArchInfo.RetryUnderRmapLock(Arch);
        if (rmap) await RmapLock.Lock();
        try { return await ZapGfnRangeLocked(slot, gs, ge, marksDirty); }
        finally { if (rmap) await RmapLock.Unlock(); }
    }

    async ValueTask<bool> ZapGfnRangeLocked(Memslot slot, ulong gs, ulong ge, bool marksDirty)
    {
        await S.Point(PointKind.SpteWrite, gs);
        bool flush = _accessTracked.Count > 0 && AccessTrackedIn(slot, gs, ge); // still shadow-present in the kernel
        if (slot.PresentCount == 0) return flush;
        var freeing = KvmArchInfo.TableFreeingOf(Arch);
        for (int b = slot.Block(gs), last = slot.Block(ge - 1); b <= last; b++)
        {
            if (slot.Tables[b] == SpteTable.HugeLeaf)
            {
                flush |= DropHuge(slot, b, marksDirty);
                continue;
            }
            if (slot.Tables[b] == SpteTable.None) continue;
            ulong blockFirst = ((slot.BaseGfn >> 9) + (ulong)b) << 9;
            ulong from = Math.Max(gs, blockFirst), to = Math.Min(ge, blockFirst + 512);
            if (slot.Live[b] != 0)
                for (ulong g = from; g < to; g++) flush |= DropSpte(slot, g, b, marksDirty);
            if ((freeing == TableFreeing.WhenEmpty && slot.Live[b] == 0) ||
                (freeing == TableFreeing.WhenRangeCoversTable && from == blockFirst && to == blockFirst + 512 && slot.Live[b] == 0))
                slot.Tables[b] = SpteTable.None;
        }
        return flush;
    }

    /// <summary>mmu_spte_clear_track_bits for one 4 KiB SPTE. No scheduling point (caller's step).</summary>
    bool DropSpte(Memslot slot, ulong gfn, int block, bool marksDirty)
    {
        ref ulong e = ref slot.SpteRef(gfn);
        var s = new Spte(e);
        if (!s.Present) return false;
        e = 0;
        slot.Live[block]--;
        slot.PresentCount--;
        TrackBits(s, marksDirty);
        return true;
    }

    bool DropHuge(Memslot slot, int block, bool marksDirty)
    {
        var h = new Spte(slot.HugeSptes[block]);
        slot.HugeSptes[block] = 0;
        slot.Tables[block] = SpteTable.None;
        if (!h.Present) return false;
        slot.PresentCount--;
        TrackBits(h, marksDirty);
        return true;
    }

    /// <summary>Remove every 4 KiB SPTE of a block (before a huge leaf replaces its table).</summary>
    void DropBlockSptes(Memslot slot, int block, bool marksDirty)
    {
        if (slot.Live[block] == 0) return;
        ulong blockFirst = ((slot.BaseGfn >> 9) + (ulong)block) << 9;
        for (ulong g = Math.Max(blockFirst, slot.BaseGfn); g < Math.Min(blockFirst + 512, slot.EndGfn); g++)
            DropSpte(slot, g, block, marksDirty);
    }

    /// <summary>
    /// The A/D propagation of a zapped SPTE: x86 before 6.13 calls kvm_set_pfn_accessed/kvm_set_pfn_dirty (dirty = the D
    /// bit, or W when the SPTE has no A/D bits); kvm-hold-page-refs drops the SPTE's page reference here.
    /// </summary>
    void TrackBits(Spte s, bool marksDirty)
    {
        _k.Stats.Inc(Stat.SptesZapped);
        _k.S.Charge(CostKind.Zap);
        if (marksDirty && IsX86 && Era.Has(Feature.KvmZapMarksDirty) && s.Pfn != PhysMem.ZeroPfn)
        {
            if (s.Dirty || (NoAccessedBit && s.Writable)) Folio.MarkDirty(_k, s.Pfn);
            if (s.Accessed) MarkAccessed(s.Pfn);
        }
        if (s.HoldsRef) Folio.Put(_k, s.Pfn);
    }

    void MarkAccessed(long pfn)
    {
        if (pfn == PhysMem.ZeroPfn) return;
        _k.Mem[_k.Mem.FolioOf(pfn)].Set(PageFlags.Referenced);
    }

    /// <summary>
    /// kvm_flush_remote_tlbs: make every vCPU drop its cached translations (KVM_REQ_TLB_FLUSH + IPI). Until this returns,
    /// a vCPU may still use a zapped SPTE from its TLB.
    /// </summary>
    /// <summary>
    /// kvm_flush_remote_tlbs: every vCPU's cached translations go (the model drops them at once, so the checker sees
    /// the flush where it happens) and each vCPU gets KVM_REQ_TLB_FLUSH, serviced (vcpu stat tlb_flush) at its next
    /// guest entry. remote_tlb_flush counts the calls (remote_tlb_flush_requests from 5.16).
    /// </summary>
    internal async ValueTask FlushRemoteTlbs()
    {
        using var _ = S.Current.Enter("kvm_flush_remote_tlbs");
        await S.Point(PointKind.TlbFlush);
        foreach (var v in _vcpus) v.FlushTlb();               // and kvm_make_all_cpus_request(KVM_REQ_TLB_FLUSH)
        _accessTracked.Clear();
        _k.Stats.Inc(Stat.KvmRemoteTlbFlushes);
        _k.S.Charge(CostKind.Ipi);
    }

    bool AnyTlbEntry()
    {
        foreach (var v in _vcpus)
            if (v.TlbEntries > 0) return true;
        return false;
    }

    // ------------------------------------------------------------------ aging

    /// <summary>
    /// kvm_age_gfn (<paramref name="clear"/>) / kvm_test_age_gfn over [gs, ge): young if an SPTE has its Accessed bit;
    /// aging clears it. A VM without A bits (<see cref="NoAccessedBit"/>) emulates Accessed by presence and ages by
    /// zapping (dirty propagated first, §5(d7)). Runs under mmu_lock (write).
    /// </summary>
    async ValueTask<bool> AgeGfn(Memslot slot, ulong gs, ulong ge, bool clear)
    {
        gs = Math.Max(gs, slot.BaseGfn);
        ge = Math.Min(ge, slot.EndGfn);
        if (gs >= ge) return false;
        using var _ = S.Current.Enter(clear ? "kvm_age_gfn" : "kvm_test_age_gfn");
        await S.Point(clear ? PointKind.SpteWrite : PointKind.SpteRead, gs);
        bool young = false;
        for (int b = slot.Block(gs), last = slot.Block(ge - 1); b <= last; b++)
        {
            if (slot.Tables[b] == SpteTable.HugeLeaf)
            {
                var h = new Spte(slot.HugeSptes[b]);
                if (!h.Present) continue;
                if (NoAccessedBit) { young = true; if (clear && DropHuge(slot, b, marksDirty: true)) NoteAccessTracked(slot, b); }
                else if (h.Accessed) { young = true; if (clear) slot.HugeSptes[b] = h.With(Spte.AccessedBit, false).Raw; }
                continue;
            }
            if (slot.Live[b] == 0) continue;
            ulong blockFirst = ((slot.BaseGfn >> 9) + (ulong)b) << 9;
            for (ulong g = Math.Max(gs, blockFirst), to = Math.Min(ge, blockFirst + 512); g < to; g++)
            {
                ref ulong e = ref slot.SpteRef(g);
                var s = new Spte(e);
                if (!s.Present) continue;
                if (NoAccessedBit)
                {
                    young = true;
                    if (clear && DropSpte(slot, g, b, marksDirty: true)) NoteAccessTracked(slot, g, g + 1);
                }
                else if (s.Accessed)
                {
                    young = true;
                    if (clear) e = s.With(Spte.AccessedBit, false).Raw;
                }
            }
        }
        return young && !(clear && _k.Mutated(Mutation.KvmAgeLosesYoung));
    }

    /// <summary>
    /// The gfn ranges whose SPTEs aging without A bits zapped and no TLB flush has covered since. From 4.12
    /// (<see cref="Feature.KvmAccessTrackNoAd"/>) the kernel does not zap them: mark_spte_for_access_track leaves the
    /// SPTE shadow-present with its permissions saved, so a later kvm_unmap_gfn_range still finds it and flushes. The
    /// model zaps instead and remembers the range here, so that the unmap flushes as the kernel's would. Before 4.12
    /// kvm_age_hva unmapped them (kvm_unmap_rmapp) without a flush and a later unmap found nothing to flush: the model
    /// keeps that. Cleared by every remote TLB flush. Locking: mmu_lock, as the SPTEs.
    /// </summary>
    readonly List<(Memslot Slot, ulong Start, ulong End)> _accessTracked = [];

    void NoteAccessTracked(Memslot slot, ulong gs, ulong ge)
    {
        if (!Era.Has(Feature.KvmAccessTrackNoAd)) return;
        if (_accessTracked.Count > 0 && _accessTracked[^1] is var (ls, lo, hi) && ls == slot && hi == gs) _accessTracked[^1] = (slot, lo, ge);
        else _accessTracked.Add((slot, gs, ge));
    }

    void NoteAccessTracked(Memslot slot, int block)
    {
        ulong first = ((slot.BaseGfn >> 9) + (ulong)block) << 9;
        NoteAccessTracked(slot, Math.Max(first, slot.BaseGfn), Math.Min(first + 512, slot.EndGfn));
    }

    /// <summary>Did aging access-track an SPTE of [gs, ge) that no flush has covered? (The unmap flushes then.)</summary>
    bool AccessTrackedIn(Memslot slot, ulong gs, ulong ge)
    {
        foreach (var (s, lo, hi) in _accessTracked)
            if (s == slot && lo < ge && gs < hi) return true;
        return false;
    }

    // ------------------------------------------------------------------ change_pte per arch

    /// <summary>
    /// kvm_set_spte_gfn for the VM's arch (§3.4): what a change_pte to <paramref name="pte"/> does to the SPTE of
    /// <paramref name="gfn"/>. Counts calls that found a present SPTE. Returns whether a remote flush is needed.
    /// </summary>
    async ValueTask<bool> SetSpteGfn(Memslot slot, ulong gfn, Pte pte)
    {
        using var _ = S.Current.Enter("kvm_set_spte_gfn");
        await S.Point(PointKind.SpteWrite, gfn);
        int b = slot.Block(gfn);
        ref ulong e = ref slot.SpteRef(gfn);
        var old = new Spte(e);
        bool hugePresent = slot.Tables[b] == SpteTable.HugeLeaf && new Spte(slot.HugeSptes[b]).Present;
        if (old.Present || hugePresent) _k.Stats.Inc(Stat.KvmChangePteFoundPresent);
        long pfn = pte.Pfn;
        ushort gen = pte.Present ? _k.Mem[pfn].Generation : (ushort)0;
        switch (Arch)
        {
            case KvmArch.X86Tdp:
            case KvmArch.X86Shadow:
                // kvm_set_pte_rmap / TDP set_spte_gfn: only an existing 4K leaf is touched: dropped if the new PTE is
                // writable, else rewritten read-only to the new pfn (old dirtiness transferred).
                if (hugePresent) return DropHuge(slot, b, marksDirty: true);
                if (!old.Present) return false;
                if (pte.Writable || !pte.Present) return DropSpte(slot, gfn, b, marksDirty: true);
                TrackBits(old, marksDirty: true);
                _k.Stats.Inc(Stat.SptesInstalled);
                e = Spte.Make(pfn, gen, writable: false, hostWritable: false, accessed: false, dirty: false).Raw;
                return true;
            case KvmArch.Mips:
            {
                // kvm_mips_pte_for_gpa(kvm, NULL, gpa): no table, nothing; else write the host PTE unconditionally.
                if (slot.Tables[b] != SpteTable.Table) return false;
                var hostPte = pte;
                if (slot.LogDirty && !old.Dirty) hostPte = hostPte.Mkclean();
                else if (slot.ReadOnly) hostPte = hostPte.Wrprotect();
                if (!hostPte.Present)
                {
                    if (old.Present) DropSpte(slot, gfn, b, marksDirty: false);
                }
                else
                {
                    // MIPS hardware writes only through a PTE with _PAGE_DIRTY (its write-enable bit).
                    if (!old.Present) { slot.Live[b]++; slot.PresentCount++; }
                    e = Spte.Make(pfn, gen, writable: hostPte.Writable && hostPte.Dirty, hostWritable: hostPte.Writable,
                        accessed: hostPte.Accessed, dirty: hostPte.Dirty).Raw;
                    _k.Stats.Inc(Stat.SptesInstalled);
                }
                if (!old.Present || !old.Accessed) return false;
                return !hostPte.Present || !hostPte.Accessed || old.Pfn != pfn || (old.Dirty && !hostPte.Dirty);
            }
            case KvmArch.Arm64:
            case KvmArch.RiscV:
                // kvm_pgtable_stage2_map / gstage_map_page with a NULL memory cache: a read-only leaf iff the last-level
                // table exists (allocating one fails with -ENOMEM, ignored). Replacing a valid leaf is break-before-make.
                if (slot.Tables[b] != SpteTable.Table || !pte.Present) return false;
                if (!old.Present) { slot.Live[b]++; slot.PresentCount++; }
                else TrackBits(old, marksDirty: false);
                e = Spte.Make(pfn, gen, writable: false, hostWritable: false, accessed: true, dirty: false).Raw;
                _k.Stats.Inc(Stat.SptesInstalled);
                return old.Present;
            case KvmArch.PpcBook3s:
            case KvmArch.PpcE500:
                // kvm_set_spte_gfn_hv / _pr / e500: unmap; the next guest access faults the new page in.
                if (hugePresent) return DropHuge(slot, b, marksDirty: true);
                return await ZapGfnRange(slot, gfn, gfn + 1, marksDirty: true);
            case KvmArch.LoongArch:
            default:
            {
                // kvm_set_spte_gfn (loongarch): lookup without cache; absent or old -> clear, no flush; else install the
                // new pfn, writable only if both old and new were writable.
                if (slot.Tables[b] != SpteTable.Table) return false;
                if (!old.Present || !old.Accessed)
                {
                    if (old.Present) DropSpte(slot, gfn, b, marksDirty: false);
                    return false;
                }
                if (!pte.Present) return DropSpte(slot, gfn, b, marksDirty: false);
                e = Spte.Make(pfn, gen, writable: old.Writable && pte.Writable, hostWritable: pte.Writable, accessed: true, dirty: old.Dirty).Raw;
                _k.Stats.Inc(Stat.SptesInstalled);
                return true;
            }
        }
    }
}
