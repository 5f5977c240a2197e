using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>
/// kvm->mmu_lock: a spinlock before 5.12, an rwlock from then (<see cref="Feature.KvmMmuRwLock"/>). KVM_MMU_LOCK
/// (notifier paths, zaps, memslot flushes) takes it for write; TDP/arm64 faults take it for read. With the spinlock,
/// read and write are the same lock.
/// </summary>
public sealed class KvmMmuLock
{
    readonly KSpinLock? _spin;
    readonly KRwLock? _rw;

    public KvmMmuLock(Scheduler s, string name, bool rwlock)
    {
        if (rwlock) _rw = new KRwLock(s, name, sleeping: false);
        else _spin = new KSpinLock(s, name);
    }

    public bool IsRwLock => _rw != null;

    /// <summary>See <see cref="LockSet.Guards"/>.</summary>
    public SharedVar? Guards
    {
        get => _rw != null ? _rw.Guards : _spin!.Guards;
        set
        {
            if (_rw != null) _rw.Guards = value;
            else _spin!.Guards = value;
        }
    }

    /// <summary>KVM_MMU_LOCK / write_lock.</summary>
    public ValueTask Lock() => _rw != null ? _rw.WriteLock() : _spin!.Lock();

    public ValueTask Unlock() => _rw != null ? _rw.WriteUnlock() : _spin!.Unlock();

    /// <summary>read_lock (rwlock) or spin_lock.</summary>
    public ValueTask ReadLock() => _rw != null ? _rw.ReadLock() : _spin!.Lock();

    public ValueTask ReadUnlock() => _rw != null ? _rw.ReadUnlock() : _spin!.Unlock();

    public bool IsHeldByCurrent => _rw != null ? _rw.IsLockedByCurrent : _spin!.IsHeldByCurrent;

    public override string ToString() => _rw?.Name ?? _spin!.Name;
}

/// <summary>
/// struct kvm: one virtual machine, created by a process (its VMM). It registers one mmu_notifier subscription on the
/// process's mm (kvm_init_mmu_notifier) and is a secondary MMU of that mm: its SPTEs (in the memslots) and its vCPUs'
/// cached translations are what the checker compares with the primary page tables.
/// </summary>
/// <remarks>
/// <para><b>State and locking</b> (kernel-facts.md §3.1):</para>
/// <list type="bullet">
/// <item><see cref="MmuLock"/> protects SPTEs, <see cref="InvalidateSeq"/>, <see cref="InvalidateInProgress"/> and the
/// range union. Faults read the seq without it (then re-check under it).</item>
/// <item><see cref="MnInvalidateLock"/> protects <see cref="MnActiveInvalidateCount"/> (5.13+); memslot updates sleep on
/// <see cref="MemslotsUpdateWait"/> until it is 0.</item>
/// <item><see cref="SlotsLock"/> (mutex) serialises memslot updates; readers of the slot list hold the VM's SRCU
/// (<see cref="SrcuReaders"/>), and deletion waits for them (synchronize_srcu(&amp;kvm->srcu)).</item>
/// </list>
/// <para><b>Invariants</b> (§7.2, §7.16; <see cref="AssertInvariants"/>): in_progress ≥ 0; mn_active_invalidate_count ≥ 0;
/// seq is monotonic; with no invalidation in flight the range union is reset at the next begin.</para>
/// <para>KVM holds no page reference for an established SPTE (only the fault's transient GUP reference), unless the
/// kvm-hold-page-refs mutation is on.</para>
/// </remarks>
public sealed partial class Kvm : MmuNotifier, ISecondaryMmu
{
    /// <summary>INVALID_GPA / the reset value of the range union.</summary>
    public const ulong InvalidRange = ulong.MaxValue;

    readonly Kernel _k;
    // The memslots, as kvm_memslots keeps them: in publication order (iteration), by id (id_hash) and sorted by base
    // gfn (gfn_tree) for lookups and the overlap check; changed together, only in the publish step of kvm_swap_active_memslots.
    readonly List<Memslot> _slots = [];
    readonly Dictionary<int, Memslot> _slotsById = [];
    readonly List<Memslot> _slotsByGfn = [];
    readonly SlotTotals _slotTotals = new();
    readonly List<KvmVcpu> _vcpus = [];
    readonly string _name;
    int _nextSlotId;

    Kvm(Kernel k, MmStruct mm, string name, KvmArch arch)
    {
        _k = k;
        _mm = mm;
        _name = name;
        Arch = arch;
        Id = k.GetSubsystem(_ => new KvmSubsystem()).NextId++;
        MmuLock = new KvmMmuLock(k.S, $"{name}->mmu_lock", k.Era.Has(Feature.KvmMmuRwLock));
        MnInvalidateLock = new KSpinLock(k.S, $"{name}->mn_invalidate_lock");
        MemslotsUpdateWait = new WaitQueue(k.S, $"{name}->mn_memslots_update_rcuwait");
        SlotsLock = new KMutex(k.S, $"{name}->slots_lock");
        SrcuWait = new WaitQueue(k.S, $"{name}->srcu");
        RmapLock = new KSpinLock(k.S, $"{name}->rmap_lock");
        SeqLoc = k.Weak.NewLocation($"{name}->mmu_invalidate_seq");
        InProgressLoc = k.Weak.NewLocation($"{name}->mmu_invalidate_in_progress");
        InvalidateState = new SharedVar(k.S, $"{name}->mmu_invalidate", secondaryState: true);
        MmuLock.Guards = MnInvalidateLock.Guards = SlotsLock.Guards = RmapLock.Guards = InvalidateState;
        MmioCaching = KvmArchInfo.IsX86(arch);
        var ops = NotifierOps.Release | NotifierOps.ClearFlushYoung | NotifierOps.ClearYoung | NotifierOps.TestYoung |
                  NotifierOps.ChangePte | NotifierOps.InvalidatePage | NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd;
        if (k.Era.Has(Feature.KvmInvalidateRange)) ops |= NotifierOps.InvalidateRange;
        _ops = ops;
    }

    readonly NotifierOps _ops;

    public override NotifierOps Ops => _ops;

    public override string Name => _name;

    public Kernel Kernel => _k;

    public int Id { get; }

    readonly MmStruct _mm;

    /// <summary>kvm->mm: the VMM's address space (mmgrab'ed, not mmget'ed).</summary>
    public MmStruct MirroredMm => _mm;

    public bool UsesStartEnd => true;

    public KvmArch Arch { get; }

    public KvmMmuLock MmuLock { get; }

    /// <summary>
    /// For partial-order reduction: mmu_invalidate_seq, _in_progress and range, mn_active_invalidate_count, the SRCU
    /// reader count, the memslots and the teardown flags, as one variable group written under the VM's locks.
    /// </summary>
    internal SharedVar InvalidateState { get; }

    public KSpinLock MnInvalidateLock { get; }

    public WaitQueue MemslotsUpdateWait { get; }

    public KMutex SlotsLock { get; }

    /// <summary>
    /// PPC Book3S HV's per-page rmap bitlock (lock_rmap), modelled as one lock per VM: the fault checks and installs
    /// under it, and every zap of an SPTE takes it (nested inside mmu_lock).
    /// </summary>
    public KSpinLock RmapLock { get; }

    /// <summary>kvm->srcu readers (memslot lookups by faults and notifier walkers) and synchronize_srcu's queue.</summary>
    public int SrcuReaders { get; private set; }

    public WaitQueue SrcuWait { get; }

    /// <summary>kvm->mmu_invalidate_seq (mmu_notifier_seq before 6.1). Every change is a trace counter sample.</summary>
    public ulong InvalidateSeq
    {
        get => _invalidateSeq;
        private set
        {
            _invalidateSeq = value;
            if (_k.Weak.Records) _k.Weak.Store(SeqLoc, value);
            if (_k.Trace.On) _k.Trace.Counter("mmu_invalidate_seq", (long)value);
        }
    }

    ulong _invalidateSeq;

    /// <summary>kvm->mmu_invalidate_in_progress (mmu_notifier_count before 6.1). Every change is a trace counter sample.</summary>
    public long InvalidateInProgress
    {
        get => _invalidateInProgress;
        private set
        {
            _invalidateInProgress = value;
            if (_k.Weak.Records) _k.Weak.Store(InProgressLoc, (ulong)value);
            if (_k.Trace.On) _k.Trace.Counter("mmu_invalidate_in_progress", value);
        }
    }

    /// <summary>
    /// The two counters as weakly ordered locations (<see cref="Lkmm.WeakMemory"/>): every store to the fields is also a
    /// WRITE_ONCE there; lockless readers (the fault's mmu_seq snapshot, PPC's check under the rmap lock) load through
    /// them and may, under --memory lkmm, see older values as far as the barriers allow. Holders of mmu_lock read the
    /// fields (the newest values: every store is made under mmu_lock). Under sc the fields are read directly.
    /// </summary>
    internal Lkmm.WeakLoc SeqLoc { get; }

    internal Lkmm.WeakLoc InProgressLoc { get; }

    long _invalidateInProgress;

    /// <summary>mmu_invalidate_range_start/end: the in-progress range union: hva-based in 5.13-6.7, gfn-based from 6.8 (<see cref="InvalidRange"/> when reset).</summary>
    public ulong RangeStart { get; private set; } = InvalidRange;

    public ulong RangeEnd { get; private set; } = InvalidRange;

    /// <summary>slots->generation: bumped by every memslot publication (pfn caches recompute their uhva when it moves).</summary>
    public ulong MemslotsGeneration { get; private set; }

    /// <summary>kvm->mn_active_invalidate_count (5.13+). Every change is a trace counter sample.</summary>
    public long MnActiveInvalidateCount
    {
        get => _mnActiveInvalidateCount;
        private set { _mnActiveInvalidateCount = value; if (_k.Trace.On) _k.Trace.Counter("mn_active_invalidate_count", value); }
    }

    long _mnActiveInvalidateCount;

    /// <summary>
    /// Emulate Accessed by zapping (EPT without A/D bits; 4.x x86 <c>!shadow_accessed_mask</c>): aging unmaps SPTEs
    /// instead of clearing an A bit.
    /// </summary>
    public bool NoAccessedBit { get; set; }

    /// <summary>hva of the APIC-access page (x86), if any: invalidate_range (4.19-6.1) requests an APIC page reload.</summary>
    public ulong? ApicAccessHva { get; set; }

    /// <summary>->release ran (or the VM was destroyed): no SPTE may be created any more.</summary>
    public bool Released { get; private set; }

    public bool Destroyed { get; private set; }

    public IReadOnlyList<Memslot> Memslots => _slots;

    /// <summary>The VMM's KVM_RUN loop: how it answers KVM_EXIT_MMIO.</summary>
    public Vmm Vmm { get; } = new();

    public IReadOnlyList<KvmVcpu> Vcpus => _vcpus;

    Scheduler S => _k.S;
    KernelEra Era => _k.Era;

    // ------------------------------------------------------------------ creation and destruction

    /// <summary>
    /// kvm_create_vm: a VM owned by <paramref name="mm"/>'s process; kvm_init_mmu_notifier registers its subscription
    /// (mmu_notifier_register: mmap_lock for write + mm_take_all_locks). Registers with the checker.
    /// </summary>
    public static async ValueTask<Kvm> CreateVm(MmStruct mm, string name, KvmArch arch = KvmArch.X86Tdp)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("kvm_create_vm");
        if (mm.Exited || mm.Users <= 0) throw new ModelException($"kvm_create_vm on {mm}, which has exited");
        var kvm = new Kvm(k, mm, name, arch);
        await kvm.InitMmuNotifier();
        k.GetSubsystem(_ => new KvmSubsystem()).Vms.Add(kvm);
        k.Checker.AddSecondary(kvm);
        return kvm;
    }

    /// <summary>kvm_init_mmu_notifier: mmu_notifier_register(&amp;kvm->mmu_notifier, current->mm).</summary>
    async ValueTask InitMmuNotifier()
    {
        using var _ = S.Current.Enter("kvm_init_mmu_notifier");
        int r = await _mm.Notifiers.Register(this);
        if (r != 0) throw new ModelException($"mmu_notifier_register failed: {r}");
    }

    /// <summary>
    /// kvm_destroy_vm: mmu_notifier_unregister (runs ->release, which zaps everything, then synchronize_srcu); the
    /// unbalanced mn_active_invalidate_count of starts that never saw their end is forcibly reset (§5(d10)).
    /// </summary>
    public async ValueTask DestroyVm()
    {
        using var _ = S.Current.Enter("kvm_destroy_vm");
        if (Destroyed) return;
        Destroyed = true;
        if (!_mm.Exited) await _mm.Notifiers.Unregister(this);
        else await FlushShadowAll();
        await S.Point(PointKind.Counter);
        if (MnActiveInvalidateCount != 0)
        {
            MnActiveInvalidateCount = 0;
            if (PfnCache == PfnCacheDesign.EndHook) GpcInvalidateWq.WakeAll();
        }
        else if (InvalidateInProgress != 0)
            S.Fail(Invariants.CounterBalance, $"{Name}: mmu_invalidate_in_progress is {InvalidateInProgress} at kvm_destroy_vm");
        _k.Checker.RemoveSecondary(this);
    }

    /// <summary>kvm_vm_ioctl_create_vcpu (lazily, by index).</summary>
    public KvmVcpu Vcpu(int index)
    {
        if (index < 0 || index > 255) throw new ArgumentOutOfRangeException(nameof(index), "vCPU index must be 0..255");
        while (_vcpus.Count <= index) _vcpus.Add(new KvmVcpu(this, _vcpus.Count) { DirtyRing = NewDirtyRing() });
        return _vcpus[index];
    }

    // ------------------------------------------------------------------ kvm->srcu

    /// <summary>srcu_read_lock(&amp;kvm->srcu): memslot readers.</summary>
    internal async ValueTask SrcuReadLock()
    {
        await S.Point(PointKind.Counter, 0, InvalidateState.Write);
        SrcuReaders++;
    }

    internal void SrcuReadUnlock()
    {
        if (--SrcuReaders == 0) SrcuWait.WakeAll();
    }

    /// <summary>synchronize_srcu(&amp;kvm->srcu): wait until no reader still sees the old memslots.</summary>
    async ValueTask SynchronizeSrcu()
    {
        using var _ = S.Current.Enter("synchronize_srcu_expedited");
        while (SrcuReaders > 0) await SrcuWait.Wait();
    }

    // ------------------------------------------------------------------ memslots

    /// <summary>
    /// Model bookkeeping, not kernel state: every input of the fault path's RET_PF_RETRY decision for
    /// <paramref name="gfn"/> (its memslot's validity, mmu_invalidate_seq, _in_progress and range, the memslot
    /// generation, VM teardown). Equal values before and after a failed attempt mean the next attempt fails alike.
    /// </summary>
    internal FaultRetryInputs FaultRetryInputsOf(ulong gfn) =>
        new(InvalidateSeq, InvalidateInProgress, RangeStart, RangeEnd, MemslotsGeneration,
            GfnToMemslot(gfn) is { } slot ? (slot.Invalid ? 2 : 1) : 0, Released || Destroyed);

    internal readonly record struct FaultRetryInputs(ulong Seq, long InProgress, ulong RangeStart, ulong RangeEnd,
        ulong MemslotsGeneration, int Slot, bool Dead);

    /// <summary>__gfn_to_memslot: the slot containing <paramref name="gfn"/> (address space 0), or null.</summary>
    public Memslot? GfnToMemslot(ulong gfn)
    {
        if (_slotsByGfn.Count == 1) return _slotsByGfn[0].ContainsGfn(gfn) ? _slotsByGfn[0] : null;
        int i = LastBaseBelow(gfn + 1);
        return i >= 0 && _slotsByGfn[i].ContainsGfn(gfn) ? _slotsByGfn[i] : null;
    }

    /// <summary>
    /// The slot overlapping [gfn, gfn + npages) other than <paramref name="except"/>, or null (kvm_check_memslot_overlap).
    /// Slots never overlap, so sorted by base their ends are sorted too: only the last slot starting below the range's
    /// end (or the one before it, when that is <paramref name="except"/>) can reach into the range.
    /// </summary>
    public Memslot? OverlappingSlot(ulong gfn, ulong npages, Memslot? except = null)
    {
        int i = LastBaseBelow(gfn + npages);
        for (int n = 0; i >= 0 && n < 2; i--, n++)
        {
            var s = _slotsByGfn[i];
            if (s == except) continue;
            return s.EndGfn > gfn ? s : null;
        }
        return null;
    }

    /// <summary>Index in <see cref="_slotsByGfn"/> of the last slot whose base gfn is below <paramref name="limit"/>, or -1.</summary>
    int LastBaseBelow(ulong limit)
    {
        int lo = 0, hi = _slotsByGfn.Count - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_slotsByGfn[mid].BaseGfn < limit) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return found;
    }

    void AddSlot(Memslot s)
    {
        _slots.Add(s);
        _slotsById[s.Id] = s;
        int i = LastBaseBelow(s.BaseGfn) + 1;
        _slotsByGfn.Insert(i, s);
    }

    void RemoveSlot(Memslot s)
    {
        _slots.Remove(s);
        _slotsById.Remove(s.Id);
        _slotsByGfn.Remove(s);
        System.Diagnostics.Debug.Assert(s.PresentCount == 0, $"{s} unpublished with {s.PresentCount} SPTEs (kvm_invalidate_memslot zaps them first)");
    }

    /// <summary>Errnos of <see cref="SetUserMemoryRegion"/> (negative, as the ioctl returns them).</summary>
    public const int EINVAL = Errno.EINVAL, EEXIST = Errno.EEXIST;

    /// <summary>uapi KVM_MEM_* bits of struct kvm_userspace_memory_region(2).flags.</summary>
    public const uint KvmMemLogDirtyPages = 1u << 0, KvmMemReadonly = 1u << 1, KvmMemGuestMemfd = 1u << 2;

    /// <summary>TASK_SIZE_MAX on x86-64 with 4-level paging: access_ok's limit for userspace_addr + memory_size.</summary>
    public const ulong TaskSizeMax = (1UL << 47) - MmStruct.PageSize;

    /// <summary>KVM_MEM_MAX_NR_PAGES: ((1UL &lt;&lt; 31) - 1), the most pages one memslot may have.</summary>
    public const ulong MaxNrPages = (1UL << 31) - 1;

    /// <summary>
    /// KVM_CAP_NR_MEMSLOTS (KVM_USER_MEM_SLOTS): slot ids 0..N-1 per address space. 32764 (SHRT_MAX minus the 3 private
    /// slots) from 5.12 on every arch using the generic default (measured on 6.18: bench/realkvm/output-memslot-6.18.txt);
    /// before that x86 had 509 and the others 512.
    /// </summary>
    public int UserMemSlots => Era.Has(Feature.KvmUserMemslots32764) ? 32764 : KvmArchInfo.IsX86(Arch) ? 509 : 512;

    /// <summary>
    /// KVM_SET_USER_MEMORY_REGION (v1, or v2 when <paramref name="v2"/>): kvm_vm_ioctl_set_memory_region then
    /// __kvm_set_memory_region, with their checks in the kernel's order (6.x virt/kvm/kvm_main.c); returns 0 or -errno.
    /// <list type="number">
    /// <item>check_memory_region_flags: only LOG_DIRTY_PAGES and READONLY, and (6.8+) KVM_MEM_GUEST_MEMFD with v2 on a
    /// VM with private memory (<see cref="SwProtected"/>), where LOG_DIRTY_PAGES is refused ("dirty logging private
    /// memory is not currently supported") and so is READONLY (set_memory_region_test: "read-only GUEST_MEMFD memslots
    /// are unsupported") → -EINVAL;</item>
    /// <item>memory_size, guest_phys_addr or userspace_addr not page aligned, or !access_ok(userspace_addr, size) → -EINVAL;</item>
    /// <item>address space id (slot &gt;&gt; 16) other than 0, or slot id ≥ KVM_USER_MEM_SLOTS → -EINVAL;</item>
    /// <item>guest_phys_addr + memory_size wraps, or more than KVM_MEM_MAX_NR_PAGES → -EINVAL;</item>
    /// <item>size 0 deletes: no such slot → -EINVAL;</item>
    /// <item>an existing slot may change only its base gfn (MOVE) or its flags other than READONLY (FLAGS_ONLY):
    /// another size or userspace_addr, or a READONLY change → -EINVAL; no change at all → 0;</item>
    /// <item>CREATE or MOVE over another slot's gfns → -EEXIST (one hva may back several slots);</item>
    /// <item>KVM_MEM_GUEST_MEMFD on an existing slot → -EINVAL ("private memslots are immutable, they can only be
    /// deleted"); on CREATE kvm_gmem_bind's checks: not a guest_memfd or another VM's, an unaligned offset or a range
    /// past i_size → -EINVAL, pages already bound to another slot → -EEXIST.</item>
    /// </list>
    /// </summary>
    public async ValueTask<int> SetUserMemoryRegion(uint slot, uint flags, ulong guestPhysAddr, ulong memorySize, ulong userspaceAddr, bool v2 = false,
        GuestMemfd? gmem = null, ulong gmemOffset = 0)
    {
        using var _ = S.Current.Enter("kvm_vm_ioctl_set_memory_region");
        uint valid = KvmMemLogDirtyPages | KvmMemReadonly;
        if (v2 && SwProtected && Era.Has(Feature.KvmGuestMemfd)) valid |= KvmMemGuestMemfd;
        if ((flags & KvmMemGuestMemfd) != 0) valid &= ~(KvmMemLogDirtyPages | KvmMemReadonly); // no dirty logging, no read-only private memory
        if ((flags & ~valid) != 0) return EINVAL;                       // check_memory_region_flags
        const ulong pageOffset = MmStruct.PageSize - 1;
        if ((memorySize & pageOffset) != 0 || (guestPhysAddr & pageOffset) != 0) return EINVAL;
        if ((userspaceAddr & pageOffset) != 0 || userspaceAddr > TaskSizeMax || memorySize > TaskSizeMax - userspaceAddr) return EINVAL;
        if ((slot >> 16) != 0 || (slot & 0xffff) >= (uint)UserMemSlots) return EINVAL;
        if (guestPhysAddr + memorySize < guestPhysAddr) return EINVAL;
        ulong npages = memorySize >> MmStruct.PageShift;
        if (npages > MaxNrPages) return EINVAL;
        var f = ((flags & KvmMemLogDirtyPages) != 0 ? MemslotFlags.LogDirtyPages : 0) | ((flags & KvmMemReadonly) != 0 ? MemslotFlags.ReadOnly : 0);
        bool guestMemfd = (flags & KvmMemGuestMemfd) != 0;
        return await SetMemoryRegion((int)(slot & 0xffff), guestPhysAddr >> MmStruct.PageShift, npages, userspaceAddr, f,
            guestMemfd ? gmem : null, gmemOffset, guestMemfd);
    }

    /// <summary>
    /// kvm_set_memory_region / kvm_set_memslot, after the argument checks of <see cref="SetUserMemoryRegion"/>: create
    /// (<paramref name="npages"/> &gt; 0, no slot <paramref name="id"/>), move or change flags (slot exists), or delete
    /// (<paramref name="npages"/> == 0). Delete and move first mark the slot invalid, wait for SRCU readers, zap its SPTEs
    /// (kvm_arch_flush_shadow_memslot), then publish the new slot list. Every publication (kvm_swap_active_memslots)
    /// waits for mn_active_invalidate_count == 0 from 5.13 (§3.2, §5(d5)). <paramref name="guestMemfd"/> is
    /// KVM_MEM_GUEST_MEMFD in the flags (default: <paramref name="gmem"/> given): a delete ignores it, a change of an
    /// existing slot is -EINVAL, a create binds <paramref name="gmem"/> after the overlap check (kvm_gmem_bind: -EINVAL
    /// if it is not this VM's guest_memfd).
    /// </summary>
    public async ValueTask<int> SetMemoryRegion(int id, ulong baseGfn, ulong npages, ulong userspaceAddr, MemslotFlags flags,
        GuestMemfd? gmem = null, ulong gmemOffset = 0, bool? guestMemfd = null)
    {
        bool wantsGmem = guestMemfd ?? gmem != null;
        using var _ = S.Current.Enter("kvm_set_memory_region");
        if ((userspaceAddr & ~MmStruct.PageMask) != 0) return EINVAL;
        await SlotsLock.Lock();
        try
        {
            var old = FindSlot(id);
            if (npages == 0)
            {
                if (old == null) return EINVAL;
                await InvalidateMemslot(old);
                await SwapActiveMemslots(() => RemoveSlot(old));
                TrackGuestWrites(old, false);
                if (old.Gmem != null) await old.Gmem.Unbind(old);     // kvm_free_memslot
                return 0;
            }
            bool move = false;
            if (old != null)
            {
                if (wantsGmem || old.Gmem != null) return EINVAL; // private memslots are immutable, they can only be deleted

                if (old.UserspaceAddr != userspaceAddr || old.NPages != npages || ((old.Flags ^ flags) & MemslotFlags.ReadOnly) != 0)
                    return EINVAL;
                move = old.BaseGfn != baseGfn;
                if (!move && (old.Flags & ~MemslotFlags.Invalid) == flags) return 0; // nothing to change
            }
            if ((old == null || move) && OverlappingSlot(baseGfn, npages, old) != null) return EEXIST;
            var created = new Memslot(id, baseGfn, npages, userspaceAddr, flags & ~MemslotFlags.Invalid, _slotTotals);
            PrepareDirtyBitmap(created, old);
            if (wantsGmem && (gmem == null || gmem.Kvm != this)) return EINVAL; // kvm_gmem_bind: not this VM's guest_memfd
            if (wantsGmem && await gmem!.Bind(created, gmemOffset) is var bound and not 0) return bound;
            if (old == null)
            {
                await SwapActiveMemslots(() => AddSlot(created));
                if (created.LogDirty) await ApplyDirtyLogFlags(created, wasLogging: false);
                return 0;
            }
            if (move)
            {
                await InvalidateMemslot(old);
                await SwapActiveMemslots(() => { RemoveSlot(old); AddSlot(created); });
                TrackGuestWrites(old, false);
                TrackGuestWrites(created, created.LogDirty);
                return 0;
            }
            // KVM_MR_FLAGS_ONLY: dirty logging on/off keeps the SPTEs.
            await CommitFlagsOnly(old, flags);
            return 0;
        }
        finally
        {
            await SlotsLock.Unlock();
        }
    }

    /// <summary>id_to_memslot: the slot with this id (address space 0), or null.</summary>
    public Memslot? FindSlot(int id) => _slotsById.GetValueOrDefault(id);

    /// <summary>Next unused slot id (scenario convenience).</summary>
    public int NextSlotId()
    {
        while (FindSlot(_nextSlotId) != null) _nextSlotId++;
        return _nextSlotId;
    }

    /// <summary>
    /// kvm_invalidate_memslot: publish the slot as KVM_MEMSLOT_INVALID (faults on it stop mapping), wait for SRCU
    /// readers, then kvm_arch_flush_shadow_memslot zaps its SPTEs under mmu_lock and flushes.
    /// </summary>
    async ValueTask InvalidateMemslot(Memslot slot)
    {
        using var _ = S.Current.Enter("kvm_invalidate_memslot");
        await SwapActiveMemslots(() => slot.Flags |= MemslotFlags.Invalid);
        await SynchronizeSrcu();
        using var __ = S.Current.Enter("kvm_arch_flush_shadow_memslot");
        await MmuLock.Lock();
        bool flush = await ZapGfnRange(slot, slot.BaseGfn, slot.EndGfn, marksDirty: true);
        if (flush) await FlushRemoteTlbs();
        await MmuLock.Unlock();
    }

    /// <summary>
    /// kvm_swap_active_memslots: under mn_invalidate_lock, sleep until mn_active_invalidate_count is 0 (5.13+; skipped by
    /// kvm-no-memslot-wait), then publish (one step).
    /// </summary>
    async ValueTask SwapActiveMemslots(Action publish)
    {
        using var _ = S.Current.Enter("kvm_swap_active_memslots");
        bool wait = Era.Has(Feature.KvmMemslotWaitsForInvalidations) && !_k.Mutated(Mutation.KvmNoMemslotWait);
        await MnInvalidateLock.Lock();
        while (wait && MnActiveInvalidateCount != 0)
        {
            // rcuwait_wait_event: drop the lock, sleep, retake
            await MnInvalidateLock.Unlock();
            await MemslotsUpdateWait.Wait();
            await MnInvalidateLock.Lock();
        }
        publish();
        MemslotsGeneration++;
        await MnInvalidateLock.Unlock();
    }

    /// <summary>kvm_commit_memory_region for KVM_MR_FLAGS_ONLY: toggling dirty logging (kvm_mmu_slot_apply_flags).</summary>
    async ValueTask CommitFlagsOnly(Memslot slot, MemslotFlags flags)
    {
        bool wasLogging = slot.LogDirty;
        await SwapActiveMemslots(() =>
        {
            slot.Flags = (slot.Flags & MemslotFlags.Invalid) | (flags & ~MemslotFlags.Invalid);
            if (!wasLogging) PrepareDirtyBitmap(slot, null);
            else if (!slot.LogDirty) slot.DirtyBitmap = null;
        });
        if (wasLogging != slot.LogDirty) await ApplyDirtyLogFlags(slot, wasLogging);
    }

    // ------------------------------------------------------------------ ISecondaryMmu

    const string WhereSpte = "spte", WhereHuge = "spte 2M";

    /// <summary>
    /// At the end of a run with no invalidation of the mm in flight, kvm->mmu_invalidate_in_progress (mmu_notifier_count
    /// before 6.1) and (5.13+) mn_active_invalidate_count must be back at 0: a start whose end never came leaves every
    /// later fault retrying (a soft lockup in the guest) and, from 5.13, memslot updates waiting forever (catalog e7).
    /// A destroyed VM is exempt (kvm_destroy_vm resets the active count).
    /// </summary>
    public string? ImbalanceAtRest()
    {
        if (Destroyed || (InvalidateInProgress == 0 && MnActiveInvalidateCount == 0)) return null;
        return Era.Has(Feature.KvmMemslotWaitsForInvalidations)
            ? $"mmu_invalidate_in_progress is {InvalidateInProgress} and mn_active_invalidate_count is {MnActiveInvalidateCount} with no invalidation in flight (a start without its end: faults retry forever, memslot updates wait forever)"
            : $"mmu_notifier_count is {InvalidateInProgress} with no invalidation in flight (a start without its end: every later fault retries forever)";
    }

    /// <summary>Every present SPTE (4 KiB and 2 MiB), every vCPU TLB entry and every valid pfn cache. Allocation-free apart from the list.</summary>
    public void CollectTranslations(List<SecondaryTranslation> into)
    {
        for (int i = 0; i < _slots.Count && _slotTotals.Present > 0; i++)
        {
            var slot = _slots[i];
            if (slot.PresentCount == 0) continue;
            for (int b = 0; b < slot.Tables.Length; b++)
            {
                if (slot.Tables[b] == SpteTable.HugeLeaf)
                {
                    var h = new Spte(slot.HugeSptes[b]);
                    if (h.Present)
                    {
                        ulong gfn = ((slot.BaseGfn >> 9) + (ulong)b) << 9;
                        into.Add(new SecondaryTranslation(slot.GfnToHva(gfn), h.Pfn, h.Generation, h.Writable, MmStruct.PmdSize, WhereHuge));
                    }
                    continue;
                }
                if (slot.Live[b] == 0) continue;
                ulong first = Math.Max(slot.BaseGfn, ((slot.BaseGfn >> 9) + (ulong)b) << 9);
                ulong last = Math.Min(slot.EndGfn, first + 512 - (first & 511));
                for (ulong g = first; g < last; g++)
                {
                    var s = new Spte(slot.Sptes[g - slot.BaseGfn]);
                    if (!s.Present) continue;
                    into.Add(s.Private
                        ? new SecondaryTranslation(slot.GfnToHva(g), s.Pfn, s.Generation, s.Writable, MmStruct.PageSize, WhereSpte, slot.Gmem, slot.GmemIndex(g))
                        : new SecondaryTranslation(slot.GfnToHva(g), s.Pfn, s.Generation, s.Writable, MmStruct.PageSize, WhereSpte));
                }
            }
        }
        foreach (var v in _vcpus) v.CollectTlb(into);
        CollectGpcTranslations(into);
    }

    /// <summary>Present SPTEs in all slots (tests, stats).</summary>
    public int PresentSptes
    {
        get => _slotTotals.Present;
    }

    /// <summary>The 4 KiB-granular translation of <paramref name="gfn"/> (a huge SPTE's sub-page), or none. No point.</summary>
    public Spte PeekSpte(ulong gfn)
    {
        var slot = GfnToMemslot(gfn);
        if (slot == null) return Spte.None;
        int b = slot.Block(gfn);
        if (slot.Tables[b] == SpteTable.HugeLeaf)
        {
            var h = new Spte(slot.HugeSptes[b]);
            return h.Present ? h.WithPfn(h.PfnAt((int)(gfn & 511))) : Spte.None;
        }
        return new Spte(slot.SpteRef(gfn));
    }

    [System.Diagnostics.Conditional("DEBUG")]
    public void AssertInvariants()
    {
        System.Diagnostics.Debug.Assert(InvalidateInProgress >= 0, "mmu_invalidate_in_progress < 0");
        System.Diagnostics.Debug.Assert(MnActiveInvalidateCount >= 0, "mn_active_invalidate_count < 0");
        foreach (var g in PfnCaches) g.AssertInvariants();
        foreach (var s in _slots)
        {
            int present = 0;
            for (int b = 0; b < s.Tables.Length; b++)
            {
                if (new Spte(s.HugeSptes[b]).Present) present++;
                int live = 0;
                ulong first = Math.Max(s.BaseGfn, ((s.BaseGfn >> 9) + (ulong)b) << 9);
                ulong last = Math.Min(s.EndGfn, first + 512 - (first & 511));
                for (ulong g = first; g < last; g++)
                    if (new Spte(s.Sptes[g - s.BaseGfn]).Present) live++;
                System.Diagnostics.Debug.Assert(live == s.Live[b], $"{s}: block {b} live count {s.Live[b]} != {live}");
                present += live;
            }
            System.Diagnostics.Debug.Assert(present == s.PresentCount, $"{s}: present count {s.PresentCount} != {present}");
        }
    }

    public override string ToString() => $"{Name} ({KvmArchInfo.NameOf(Arch)} on {_mm})";
}

/// <summary>The VMs of one kernel (<c>Kernel.GetSubsystem&lt;KvmSubsystem&gt;</c>).</summary>
public sealed class KvmSubsystem
{
    public List<Kvm> Vms { get; } = [];

    internal int NextId;
}
