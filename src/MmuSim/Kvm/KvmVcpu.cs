using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>Result of a guest access: the value read (or written), or the error the VMM got.</summary>
/// <param name="Ok">The access completed (for MMIO: the VMM answered it).</param>
/// <param name="Value">The value read (or written).</param>
/// <param name="Error">Why it did not complete: <see cref="KvmFaultResult.Efault"/> (KVM_RUN fails with -EFAULT) or
/// <see cref="KvmFaultResult.Mmio"/> (KVM_EXIT_MMIO that no VMM handler answered).</param>
/// <param name="Mmio">The access exited to the VMM as KVM_EXIT_MMIO.</param>
public readonly record struct GuestAccessResult(bool Ok, ulong Value, KvmFaultResult Error, bool Mmio = false)
{
    public override string ToString() => Ok ? $"0x{Value:x}" : Error.ToString();
}

/// <summary>
/// struct kvm_vcpu: a virtual CPU running guest code. Guest loads and stores go through its TLB, then the SPTEs (the
/// hardware walk, which sets Accessed/Dirty); a missing or read-only translation is a VM exit into
/// <see cref="Kvm.PageFault"/>.
/// </summary>
/// <remarks>
/// The TLB is direct-mapped (64 entries indexed by gfn): gfn, hva and the cached <see cref="Spte"/> (4 KiB piece, with
/// the W and D state at fill time). An entry survives the zap of its SPTE until <see cref="Kvm.FlushRemoteTlbs"/>;
/// the checker sees the entries (<see cref="CollectTlb"/>), so a flush that comes too late is a violation. A store
/// through an entry whose D bit is clear re-walks (the hardware's dirty-bit assist). Touched only by the scheduler thread.
/// </remarks>
public sealed partial class KvmVcpu : ISpinWaiter
{
    public const int TlbSize = 64;

    /// <summary>Retries of one access before it is reported as a liveness violation (a stuck in_progress).</summary>
    public const int MaxRetries = 2000;

    readonly Kvm _kvm;
    readonly ulong[] _tlbGfn = new ulong[TlbSize];
    readonly ulong[] _tlbHva = new ulong[TlbSize];
    readonly ulong[] _tlbSpte = new ulong[TlbSize];
    // For an entry that maps a private gfn: the guest_memfd and page index it came from (null otherwise).
    readonly GuestMemfd?[] _tlbGmem = new GuestMemfd?[TlbSize];
    readonly ulong[] _tlbGmemIndex = new ulong[TlbSize];
    readonly string _where;

    internal KvmVcpu(Kvm kvm, int index)
    {
        _kvm = kvm;
        Index = index;
        _where = $"{kvm.Name} vcpu{index} tlb";
        Mutex = new KMutex(kvm.Kernel.S, $"{kvm.Name} vcpu{index}->mutex");
    }

    /// <summary>
    /// vcpu->mutex: kvm_vcpu_ioctl holds it for KVM_RUN and KVM_PRE_FAULT_MEMORY, so two VMM threads issuing ioctls on
    /// one vCPU fd run one after the other; the fault path's per-vCPU state (the retry snapshot) is never shared.
    /// </summary>
    /// <remarks>Only vCPU ioctls touch it, so an uncontended acquire and every release fold into the ioctl's first and
    /// last steps (no scheduling point of their own: the same states are reachable, and a scenario with one thread per
    /// vCPU explores exactly as before); a contended acquire blocks at a point until the holder's ioctl returns.</remarks>
    public KMutex Mutex { get; }

    ValueTask LockVcpu()
    {
        if (Mutex.TryLock()) return default;
        return Mutex.Lock();
    }

    public int Index { get; }

    public Kvm Kvm => _kvm;

    /// <summary>vcpu->dirty_ring (KVM_CAP_DIRTY_LOG_RING), or null.</summary>
    public DirtyRing? DirtyRing { get; internal init; }

    /// <summary>KVM_REQ_APIC_PAGE_RELOAD pending.</summary>
    public bool ApicPageReloadRequested { get; set; }

    /// <summary>Valid TLB entries.</summary>
    public int TlbEntries { get; private set; }

    /// <summary>The cached translation of <paramref name="gfn"/>, if any (tests).</summary>
    public Spte TlbLookup(ulong gfn)
    {
        int i = (int)(gfn & (TlbSize - 1));
        return _tlbGfn[i] == gfn ? new Spte(_tlbSpte[i]) : Spte.None;
    }

    /// <summary>KVM_REQ_TLB_FLUSH pending: serviced (stat tlb_flush) at the next guest entry.</summary>
    public bool TlbFlushRequested { get; private set; }

    /// <summary>kvm_make_request(KVM_REQ_TLB_FLUSH) with the flush itself done at once (see <see cref="Kvm.FlushRemoteTlbs"/>).</summary>
    internal void FlushTlb()
    {
        TlbFlushRequested = true;
        if (TlbEntries == 0) return;
        // Every array, not only the SPTEs: a flushed TLB holds nothing, so that equal TLBs are equal state (StateDigest).
        Array.Clear(_tlbSpte);
        Array.Clear(_tlbGfn);
        Array.Clear(_tlbHva);
        Array.Clear(_tlbGmem);
        Array.Clear(_tlbGmemIndex);
        TlbEntries = 0;
    }

    internal void CollectTlb(List<SecondaryTranslation> into)
    {
        if (TlbEntries == 0) return;
        for (int i = 0; i < TlbSize; i++)
        {
            var s = new Spte(_tlbSpte[i]);
            if (!s.Present) continue;
            into.Add(s.Private
                ? new SecondaryTranslation(_tlbHva[i], s.Pfn, s.Generation, s.Writable, MmStruct.PageSize, _where, _tlbGmem[i], _tlbGmemIndex[i])
                : new SecondaryTranslation(_tlbHva[i], s.Pfn, s.Generation, s.Writable, MmStruct.PageSize, _where));
        }
    }

    /// <summary>Guest load from <paramref name="gfn"/>.</summary>
    public ValueTask<GuestAccessResult> GuestRead(ulong gfn) => GuestAccess(gfn, write: false, 0);

    /// <summary>Guest store of <paramref name="value"/> to <paramref name="gfn"/>.</summary>
    public ValueTask<GuestAccessResult> GuestWrite(ulong gfn, ulong value) => GuestAccess(gfn, write: true, value);

    /// <summary>
    /// vcpu_enter_guest + the guest's access: hit the TLB or the SPTE when it permits, else VM exit (counted by cause)
    /// into the fault path and re-enter; a retry re-enters after the exit cost; errors go back to the VMM.
    /// </summary>
    public async ValueTask<GuestAccessResult> GuestAccess(ulong gfn, bool write, ulong value) => await GuestAccess(gfn, write, value, fetch: false);

    /// <summary>
    /// An instruction fetch from <paramref name="gfn"/> (x86): a load through the same TLB, SPTE and fault path, except
    /// that where a load would be emulated as MMIO the fetch cannot be (<see cref="KvmFaultResult.EmulationFailure"/>).
    /// </summary>
    public ValueTask<GuestAccessResult> GuestFetch(ulong gfn) => GuestAccess(gfn, write: false, 0, fetch: true);

    async ValueTask<GuestAccessResult> GuestAccess(ulong gfn, bool write, ulong value, bool fetch)
    {
        await LockVcpu();                                      // kvm_vcpu_ioctl: mutex_lock_killable(&vcpu->mutex)
        try { return await RunGuestAccess(gfn, write, value, fetch); }
        finally { Mutex.UnlockNoPoint(); }
    }

    /// <summary>KVM_RUN (kvm_arch_vcpu_ioctl_run → vcpu_run) until the guest's access completes or exits to the VMM.</summary>
    async ValueTask<GuestAccessResult> RunGuestAccess(ulong gfn, bool write, ulong value, bool fetch)
    {
        var k = _kvm.Kernel;
        using var _ = k.S.Current.Enter(write ? "guest_write" : "guest_read");
        k.Stats.Inc(write ? Stat.GuestWrites : Stat.GuestReads);
        int retries = 0;
        while (true)
        {
            await k.S.Point(PointKind.GuestAccess, gfn, Footprint.GuestMemory);
            if (TlbFlushRequested)
            {
                TlbFlushRequested = false;                     // vcpu_enter_guest: kvm_vcpu_flush_tlb_all
                k.Stats.Inc(Stat.KvmVcpuTlbFlushes);
            }
            if (DirtyRing is { SoftFull: true })
            {
                // kvm_dirty_ring_check_request (vcpu_enter_guest before 6.1): KVM_EXIT_DIRTY_RING_FULL instead of entering
                k.Stats.Inc(Stat.KvmDirtyRingFullExits);
                if (!_kvm.Vmm.CollectsDirtyRing) return new GuestAccessResult(false, 0, KvmFaultResult.DirtyRingFull);
                await _kvm.Vmm.OnDirtyRingFull(_kvm, this);
                continue;
            }
            _attempt = _kvm.FaultRetryInputsOf(gfn);
            _attemptGfn = gfn;
            if (_kvm.Destroyed) return new GuestAccessResult(false, 0, KvmFaultResult.Efault);
            if (TryAccess(gfn, write, value, out ulong result, out bool present)) return new GuestAccessResult(true, result, default);
            k.Stats.Inc(Stat.VmExits);
            k.S.Charge(CostKind.VmExit);
            if (_kvm.IsCachedMmio(gfn)) return fetch ? EmulationFailed() : EmulateMmio(gfn, write, value); // handle_mmio_page_fault: no pf_taken
            k.Stats.Inc(present ? Stat.VmExitsWriteProtect : Stat.VmExitsEptViolation);
            var r = await _kvm.PageFault(this, gfn, write, present);
            if (r == KvmFaultResult.Fixed) continue;
            if (r == KvmFaultResult.Mmio) return fetch ? EmulationFailed() : EmulateMmio(gfn, write, value);
            if (r is KvmFaultResult.Efault)
            {
                k.Stats.Inc(Stat.KvmEfaults);
                return new GuestAccessResult(false, 0, r);
            }
            if (++retries > MaxRetries)
            {
                k.S.Fail(Invariants.Liveness,
                    $"{_kvm.Name} vcpu{Index}: fault on gfn 0x{gfn:x} retried {MaxRetries} times (in_progress {_kvm.InvalidateInProgress}, seq {_kvm.InvalidateSeq})",
                    0);
                return new GuestAccessResult(false, 0, KvmFaultResult.Retry);
            }
            // RET_PF_RETRY: back into the guest, which faults again. If nothing the retry decision reads changed during
            // this attempt, the next fault retries identically until another CPU ends the invalidation or bumps the seq:
            // a spin, not progress, so it waits for that write (Scheduler.SpinWait) instead of being unrolled.
            // Under --memory lkmm a retry may come from a stale view of the counters (unchanged fields), and the next
            // attempt's loads see newer stores: a timed retry, never a spin-wait.
            if (InputsChanged || k.Weak.IsWeak) await k.S.Sleep(k.S.Costs[CostKind.VmExit]);
            else
            {
                k.S.Charge(CostKind.VmExit);
                await k.S.SpinWait(this, "kvm_mmu_page_fault (RET_PF_RETRY)");
            }
        }
    }

    /// <summary>
    /// x86_emulate_instruction → KVM_EXIT_MMIO (mmio_exits): the VMM's MMIO handler (<see cref="Kvm.Vmm"/>) answers a
    /// load with its value and takes a store, and KVM_RUN resumes; without a handler the exit is the access's result.
    /// </summary>
    GuestAccessResult EmulateMmio(ulong gfn, bool write, ulong value)
    {
        var k = _kvm.Kernel;
        k.Stats.Inc(Stat.KvmMmioExits);
        var vmm = _kvm.Vmm;
        if (!vmm.AnswersMmio) return new GuestAccessResult(false, 0, KvmFaultResult.Mmio, Mmio: true);
        ulong v = vmm.OnMmio(gfn, write, value);
        return new GuestAccessResult(true, v, default, Mmio: true);
    }

    /// <summary>handle_emulation_failure: KVM_EXIT_INTERNAL_ERROR, suberror KVM_INTERNAL_ERROR_EMULATION; no MMIO exit.</summary>
    static GuestAccessResult EmulationFailed() => new(false, 0, KvmFaultResult.EmulationFailure);

    // Model bookkeeping (no kernel state): the retry inputs when the current fault attempt began.
    Kvm.FaultRetryInputs _attempt;
    ulong _attemptGfn;

    /// <summary>Model hook for <see cref="Scheduler.SpinWait"/>: an input of the fault's retry decision moved since the attempt began.</summary>
    bool ISpinWaiter.InputsChanged => InputsChanged;

    bool InputsChanged => _kvm.FaultRetryInputsOf(_attemptGfn) != _attempt;

    /// <summary>
    /// The hardware part: TLB lookup, else SPTE walk (sets A, and D for a store, fills the TLB); report the access to
    /// the checker before it takes effect; move the data. No scheduling point (part of the caller's step).
    /// </summary>
    bool TryAccess(ulong gfn, bool write, ulong value, out ulong result, out bool present)
    {
        var k = _kvm.Kernel;
        result = 0;
        present = false;
        int i = (int)(gfn & (TlbSize - 1));
        long pfn;
        ushort gen;
        ulong hva;
        var t = new Spte(_tlbSpte[i]);
        if (_tlbGfn[i] == gfn && t.Present && (!write || (t.Writable && t.Dirty)))
        {
            pfn = t.Pfn;
            gen = t.Generation;
            hva = _tlbHva[i];
            k.Stats.Inc(Stat.GuestTlbHits);
        }
        else
        {
            var slot = _kvm.GfnToMemslot(gfn);
            if (slot == null) return false;
            int b = slot.Block(gfn);
            Spte s;
            if (slot.Tables[b] == SpteTable.HugeLeaf)
            {
                ref ulong h = ref slot.HugeSptes[b];
                s = new Spte(h);
                if (!s.Present) return false;
                present = true;
                if (write && !s.Writable) return false;
                if (!_kvm.NoAccessedBit) h = s.With(Spte.AccessedBit, true).With(Spte.DirtyBit, s.Dirty || write).Raw;
                pfn = s.PfnAt((int)(gfn & 511));
            }
            else
            {
                ref ulong e = ref slot.SpteRef(gfn);
                s = new Spte(e);
                if (!s.Present) return false;
                present = true;
                if (write && !s.Writable) return false;
                if (!_kvm.NoAccessedBit) e = s.With(Spte.AccessedBit, true).With(Spte.DirtyBit, s.Dirty || write).Raw;
                pfn = s.Pfn;
            }
            gen = s.Generation; // a huge SPTE records its head's generation; a 2 MiB block is allocated and freed whole
            hva = slot.GfnToHva(gfn);
            var cached = Spte.Make(pfn, gen, s.Writable, s.HostWritable, accessed: true, dirty: s.Dirty || write).With(Spte.PrivateBit, s.Private);
            _tlbGmem[i] = s.Private ? slot.Gmem : null;
            _tlbGmemIndex[i] = s.Private ? slot.GmemIndex(gfn) : 0;
            if (!new Spte(_tlbSpte[i]).Present) TlbEntries++;
            _tlbGfn[i] = gfn;
            _tlbHva[i] = hva;
            _tlbSpte[i] = cached.Raw;
        }
        if (new Spte(_tlbSpte[i]).Private) k.Checker.OnPrivateAccess(_kvm, _tlbGmem[i]!, _tlbGmemIndex[i], pfn, gen, write);
        else k.Checker.OnSecondaryAccess(_kvm, hva, pfn, gen, write);
        k.S.Charge(CostKind.Access);
        if (write)
        {
            k.Mem[pfn].Contents = value;
            _kvm.NoteGuestWrite(gfn);
        }
        result = k.Mem[pfn].Contents;
        return true;
    }

    public override string ToString() => $"{_kvm.Name} vcpu{Index}";
}
