using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Userfaultfd;

/// <summary>Why a fault went to userspace: the VM_UFFD_* mode that caught it (uffd_msg.arg.pagefault.flags).</summary>
public enum UffdReason : byte
{
    /// <summary>VM_UFFD_MISSING: a fault on a none PTE (no page yet).</summary>
    Missing,
    /// <summary>VM_UFFD_WP: a write to a uffd-wp PTE (UFFD_PAGEFAULT_FLAG_WP).</summary>
    Wp,
    /// <summary>VM_UFFD_MINOR: a fault on a page that is in the page cache but not mapped (UFFD_PAGEFAULT_FLAG_MINOR).</summary>
    Minor,
}

/// <summary>uffd_msg.event: a page fault, or one of the non-cooperative events (4.11+).</summary>
public enum UffdEvent : byte
{
    /// <summary>UFFD_EVENT_PAGEFAULT.</summary>
    PageFault,
    /// <summary>UFFD_EVENT_FORK: the child's userfaultfd (<see cref="UffdMsg.Child"/>), for UFFD_FEATURE_EVENT_FORK.</summary>
    Fork,
    /// <summary>UFFD_EVENT_REMAP: mremap moved [from, from+len) to <see cref="UffdMsg.To"/>, for UFFD_FEATURE_EVENT_REMAP.</summary>
    Remap,
    /// <summary>UFFD_EVENT_REMOVE: MADV_DONTNEED/MADV_REMOVE drops [start, start+len), for UFFD_FEATURE_EVENT_REMOVE.</summary>
    Remove,
}

/// <summary>
/// A uffd_msg as read(2) returns it: a page fault (Address, Reason, Write) or an event (<see cref="Event"/>; Address is
/// remap.from or remove.start, <see cref="To"/> remap.to, <see cref="Len"/> the length, <see cref="Child"/> the fork's
/// new userfaultfd).
/// </summary>
public readonly record struct UffdMsg(ulong Address, UffdReason Reason, bool Write, UffdEvent Event = UffdEvent.PageFault,
    ulong To = 0, ulong Len = 0, UserfaultfdCtx? Child = null);

/// <summary>
/// fs/userfaultfd.c: struct userfaultfd_ctx, the object behind a userfaultfd file, and the fault side of the protocol
/// (handle_userfault). The ioctls that resolve faults are in <see cref="Mfill"/>.
/// </summary>
/// <remarks>
/// <para>Locking, as in fs/userfaultfd.c: <see cref="Pending"/> (fault_pending_wqh: faults not yet read) and
/// <see cref="Waiting"/> (fault_wqh: read, waiting for UFFDIO_COPY/ZEROPAGE/CONTINUE/WAKE/WRITEPROTECT) are changed
/// under <see cref="WqhLock"/> (fault_pending_wqh.lock, which also guards fault_wqh's moves). A faulting task queues
/// itself before it rechecks the PTE (userfaultfd_must_wait, without the PTL), so a resolution that lands between the
/// recheck and the sleep still finds it on a queue and wakes it: no lost wakeup. The faulting task drops mmap_lock
/// before it sleeps and returns VM_FAULT_RETRY; the model's callers hold mmap_lock across handle_mm_fault, so the
/// model takes it again before returning (what the arch fault handler's retry does).</para>
/// <para>Events (UFFD_EVENT_FORK/REMAP/REMOVE, 4.11+) wait on <see cref="Events"/> (event_wqh) until a read takes
/// them; a read returns pending faults first, then events. <see cref="MmapChanging"/> counts the events raised and not
/// yet completed (the waiter drops it after it wakes), and the mfill ioctls refuse to run while it is non-zero.</para>
/// <para>Invariants (<see cref="AssertInvariants"/>): a waiter is on at most one queue; a woken waiter is on none; an
/// event waiter is never a fault; mmap_changing is at least the number of queued events; no VMA refers to a released
/// context.</para>
/// </remarks>
public sealed class UserfaultfdCtx
{
    internal UserfaultfdCtx(MmStruct mm, string name, bool sigbus)
    {
        Mm = mm;
        Name = name;
        Sigbus = sigbus;
        WqhLock = new KSpinLock(mm.Kernel.S, $"{name}.fault_pending_wqh.lock");
    }

    /// <summary>ctx->mm: the mm whose VMAs this userfaultfd may be registered with.</summary>
    public MmStruct Mm { get; }

    public string Name { get; }

    /// <summary>UFFD_FEATURE_SIGBUS: faults raise SIGBUS instead of waiting for a handler.</summary>
    public bool Sigbus { get; private set; }

    /// <summary>ctx->features: the UFFD_FEATURE_* bits UFFDIO_API enabled.</summary>
    public ulong Features { get; private set; }

    /// <summary>UFFD_FEATURE_EVENT_FORK (bit 1): a fork gives the child's VMAs a new userfaultfd, announced by UFFD_EVENT_FORK.</summary>
    public const ulong FeatureEventFork = 1UL << 1;

    /// <summary>UFFD_FEATURE_EVENT_REMAP (bit 2): mremap keeps the registration and reports UFFD_EVENT_REMAP.</summary>
    public const ulong FeatureEventRemap = 1UL << 2;

    /// <summary>UFFD_FEATURE_EVENT_REMOVE (bit 3): MADV_DONTNEED / MADV_REMOVE report UFFD_EVENT_REMOVE before they zap.</summary>
    public const ulong FeatureEventRemove = 1UL << 3;

    /// <summary>UFFD_FEATURE_MOVE (bit 16, 6.8+): UFFDIO_MOVE is available.</summary>
    public const ulong FeatureMove = 1UL << 16;

    /// <summary>UFFD_FEATURE_WP_UNPOPULATED (bit 13, 6.4+): write-protecting anonymous memory also marks none PTEs.</summary>
    public const ulong FeatureWpUnpopulated = 1UL << 13;

    /// <summary>UFFD_FEATURE_POISON (bit 14, 6.6+): UFFDIO_POISON is available.</summary>
    public const ulong FeaturePoison = 1UL << 14;

    /// <summary>
    /// The part of UFFD_API_FEATURES that depends on the era: a request for WP_UNPOPULATED before 6.4 or POISON before
    /// 6.6 is a feature the kernel does not define, so UFFDIO_API fails with EINVAL.
    /// </summary>
    public static bool EraSupports(Kernel k, ulong features) =>
        ((features & (FeatureEventFork | FeatureEventRemap | FeatureEventRemove)) == 0 || k.Era.Has(Feature.UffdNonCooperativeEvents))
        && ((features & FeatureWpUnpopulated) == 0 || k.Era.Has(Feature.UffdWpUnpopulated))
        && ((features & FeaturePoison) == 0 || k.Era.Has(Feature.UffdPoison))
        && ((features & FeatureMove) == 0 || k.Era.Has(Feature.UffdMove));

    /// <summary>userfaultfd_wp_unpopulated: the VMA's context asked for UFFD_FEATURE_WP_UNPOPULATED.</summary>
    public static bool WpUnpopulated(Vma vma) => vma.Uffd is { } c && (c.Features & FeatureWpUnpopulated) != 0;

    /// <summary>
    /// userfaultfd_wp_use_markers: UFFDIO_WRITEPROTECT of a none PTE installs a PTE_MARKER_UFFD_WP on a VM_UFFD_WP VMA
    /// that is file-backed (shmem, 5.19+: the page cache may hold the page) or whose context has WP_UNPOPULATED (6.4+).
    /// </summary>
    public static bool UseMarkers(Vma vma) => (vma.Flags & VmFlags.UffdWp) != 0 && (vma.File != null || vma.IsHugetlb || WpUnpopulated(vma));

    /// <summary>userfaultfd_is_initialized: UFFDIO_API succeeded (ctx->state RUNNING); every other ioctl is -EINVAL before.</summary>
    public bool Initialized { get; private set; } = true;

    /// <summary>UFFD_API.</summary>
    public const ulong UffdApi = 0xAA;

    /// <summary>UFFD_FEATURE_SIGBUS (bit 7).</summary>
    public const ulong FeatureSigbus = 1UL << 7;

    /// <summary>The UFFD_FEATURE_* bits any modelled era defines (bits 0..16, PAGEFAULT_FLAG_WP .. MOVE); others are unknown.</summary>
    public const ulong KnownFeatures = (1UL << 17) - 1;

    /// <summary>userfaultfd(2) or open(/dev/userfaultfd) + USERFAULTFD_IOC_NEW without UFFDIO_API yet; null without userfaultfd.</summary>
    public static UserfaultfdCtx? CreateUninitialized(MmStruct mm, string name)
    {
        var ctx = Create(mm, name, sigbus: false);
        if (ctx != null) ctx.Initialized = false;
        return ctx;
    }

    /// <summary>
    /// userfaultfd_api (UFFDIO_API): -EINVAL for an api other than UFFD_API, a feature bit no kernel defines, or a context
    /// already initialized (a second UFFDIO_API); else the features take effect and the context is initialized. A
    /// failed call leaves the context waiting for UFFDIO_API.
    /// </summary>
    public async ValueTask<int> Api(ulong api, ulong features)
    {
        await Mm.Kernel.S.Point(PointKind.Counter, api, this); // copy_from_user, the state cmpxchg
        if (Initialized || api != UffdApi || (features & ~KnownFeatures) != 0 || !EraSupports(Mm.Kernel, features)) return Errno.EINVAL;
        Sigbus = (features & FeatureSigbus) != 0;
        Features = features;
        Initialized = true;
        return 0;
    }

    /// <summary>ctx->released: the file was closed (userfaultfd_release); faults no longer wait.</summary>
    public bool Released { get; private set; }

    /// <summary>fault_pending_wqh.lock.</summary>
    public KSpinLock WqhLock { get; }

    /// <summary>fault_pending_wqh: faulting tasks whose message no read has returned yet, oldest first.</summary>
    internal List<UffdWaiter> Pending { get; } = [];

    /// <summary>fault_wqh: faulting tasks whose message was read, waiting to be woken.</summary>
    internal List<UffdWaiter> Waiting { get; } = [];

    /// <summary>event_wqh: tasks (fork, mremap, madvise) waiting until their event message is read. Under <see cref="WqhLock"/>
    /// (event_wqh.lock in the kernel, a lock of its own; the model's single queue lock orders the same steps).</summary>
    internal List<UffdWaiter> Events { get; } = [];

    /// <summary>
    /// ctx->mmap_changing: events announced and not yet read (dup_userfaultfd, mremap_userfaultfd_prep,
    /// userfaultfd_remove raise it, userfaultfd_event_wait_completion drops it). While it is non-zero the mfill ioctls and
    /// UFFDIO_WRITEPROTECT fail with EAGAIN: the monitor must read the event first, since the layout it knows is stale.
    /// </summary>
    public int MmapChanging { get; internal set; }

    /// <summary>fd_wqh: tasks blocked in read(2) waiting for a message.</summary>
    readonly List<KContext> _readers = [];

    /// <summary>Messages delivered to userspace so far (every read).</summary>
    public int MessagesRead { get; private set; }

    public override string ToString() => Name;

    /// <summary>userfaultfd(2) + UFFDIO_API: a new context on <paramref name="mm"/>; null when the era has no userfaultfd (ENOSYS).</summary>
    public static UserfaultfdCtx? Create(MmStruct mm, string name, bool sigbus) => Create(mm, name, sigbus ? FeatureSigbus : 0);

    /// <summary>userfaultfd(2) + UFFDIO_API with <paramref name="features"/>, which the era must support (<see cref="EraSupports"/>).</summary>
    public static UserfaultfdCtx? Create(MmStruct mm, string name, ulong features)
    {
        if (!mm.Kernel.Era.Has(Feature.Userfaultfd)) return null;
        return new UserfaultfdCtx(mm, name, (features & FeatureSigbus) != 0) { Features = features };
    }

    /// <summary>
    /// handle_userfault: deliver a fault on <paramref name="addr"/> of <paramref name="vma"/> to userspace and wait until
    /// it is resolved. Called from the fault paths with mmap_lock held for read and the PTL already dropped. Returns
    /// <see cref="VmFault.Retry"/> (the caller re-walks; mmap_lock is held again) or <see cref="VmFault.SigBus"/>
    /// when the fault cannot wait: no FAULT_FLAG_ALLOW_RETRY (break_ksm's fake write fault before 6.2, hmm_range_fault),
    /// UFFD_FEATURE_SIGBUS, or a VMA no longer registered.
    /// </summary>
    public static async ValueTask<VmFault> HandleUserfault(MmStruct mm, Vma vma, ulong addr, UffdReason reason, FaultFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("handle_userfault");
        var ctx = vma.Uffd;
        if (ctx == null) return VmFault.SigBus;
        if ((flags & FaultFlags.AllowRetry) == 0)
        {
            // "FAULT_FLAG_ALLOW_RETRY missing": the caller cannot drop mmap_lock, so the fault cannot wait.
            if (k.Trace.On) k.Trace.Event("uffd_no_retry", $"addr 0x{addr:x} {reason}");
            return VmFault.SigBus;
        }
        if (ctx.Sigbus) return VmFault.SigBus;
        if (ctx.Released) return VmFault.Retry; // the registration is being torn down: retry as a plain fault
        var w = new UffdWaiter(k.S.Current, new UffdMsg(addr & MmStruct.PageMask, reason, (flags & FaultFlags.Write) != 0));
        await ctx.WqhLock.Lock();
        ctx.Pending.Add(w);
        await ctx.WqhLock.Unlock();
        k.Stats.Inc(Stat.UffdFaults);
        bool mustWait = await UserfaultfdMustWait(mm, addr, reason);
        bool dropLock = mm.MmapLock.IsReadLockedByCurrent;
        if (dropLock) await mm.MmapLock.ReadUnlock(); // release_fault_lock
        if (mustWait && !ctx.Released)
        {
            ctx.WakeReaders(); // wake_up_poll(&ctx->fd_wqh, EPOLLIN)
            while (!w.Woken) await k.S.Block(w);
        }
        if (!w.Woken)
        {
            await ctx.WqhLock.Lock(); // the fault resolved itself: take the message back (list_del of uwq.wq)
            ctx.Pending.Remove(w);
            ctx.Waiting.Remove(w);
            await ctx.WqhLock.Unlock();
        }
        if (dropLock) await mm.MmapLock.ReadLock(); // the retry takes mmap_lock again
        return VmFault.Retry;
    }

    /// <summary>
    /// userfaultfd_must_wait: recheck the PTE without the PTL after queueing. MISSING and MINOR wait while the PTE is
    /// none or a marker; WP waits while the PTE is uffd-wp and read-only. Anything else means the fault was resolved meanwhile.
    /// </summary>
    static async ValueTask<bool> UserfaultfdMustWait(MmStruct mm, ulong addr, UffdReason reason)
    {
        await mm.Kernel.S.Point(PointKind.PteRead, addr);
        var pmd = mm.PeekPmd(addr);
        if (pmd.IsNone) return true;
        if (pmd.Present && pmd.Huge) return reason == UffdReason.Wp && pmd.UffdWp && !pmd.Writable;
        if (pmd.IsMarker) return true; // userfaultfd_huge_must_wait: huge_pte_none_mostly
        if (pmd.IsMigration) return false; // !pmd_present: a PMD migration entry, the fault retries (and waits there)
        var pte = mm.PeekPte(addr);
        if (pte.IsNoneMostly) return true; // pte_none_mostly: a PTE marker still waits
        return reason == UffdReason.Wp && pte.UffdWp && !pte.Writable;
    }

    /// <summary>
    /// userfaultfd_read in blocking mode (userfaultfd_ctx_read): wait for a pending fault, move it to fault_wqh and
    /// return its message. Null when the context is released (read returns 0 at EOF... the model's handler stops).
    /// </summary>
    public async ValueTask<UffdMsg?> Read()
    {
        var s = Mm.Kernel.S;
        using var _ = s.Current.Enter("userfaultfd_read");
        while (true)
        {
            await WqhLock.Lock();
            if (Pending.Count > 0)
            {
                var w = Pending[0]; // find_userfault: the oldest pending fault
                Pending.RemoveAt(0);
                Waiting.Add(w);
                await WqhLock.Unlock();
                MessagesRead++;
                return w.Msg;
            }
            if (Events.Count > 0)
            {
                // find_userfault_evt + userfaultfd_event_complete (for a fork: after resolve_userfault_fork made the fd).
                var e = Events[0];
                Events.RemoveAt(0);
                e.Woken = true;
                s.Wake(e.Task);
                await WqhLock.Unlock();
                MessagesRead++;
                return e.Msg;
            }
            await WqhLock.Unlock();
            if (Released) return null;
            _readers.Add(s.Current);
            await s.Block(this);
        }
    }

    /// <summary>
    /// userfaultfd_event_wait_completion: queue <paramref name="msg"/> on event_wqh, wake the readers and sleep until a
    /// read takes it (or the context is released: a fork's new context is then released too, userfaultfd_release_new).
    /// Then drop <see cref="MmapChanging"/>. The caller holds no mmap_lock.
    /// </summary>
    internal async ValueTask EventWaitCompletion(UffdMsg msg)
    {
        var s = Mm.Kernel.S;
        using var _ = s.Current.Enter("userfaultfd_event_wait_completion");
        var ew = new UffdWaiter(s.Current, msg);
        await WqhLock.Lock();
        Events.Add(ew);
        await WqhLock.Unlock();
        while (!ew.Woken && !Released)
        {
            WakeReaders(); // wake_up_poll(&ctx->fd_wqh, EPOLLIN)
            await s.Block(ew);
        }
        if (!ew.Woken)
        {
            await WqhLock.Lock();
            Events.Remove(ew);
            await WqhLock.Unlock();
            if (msg.Child is { } nctx) await nctx.ReleaseNew();
        }
        MmapChanging--;
    }

    /// <summary>userfaultfd_release_new: a fork's context whose event nobody read: unregister the child's VMAs from it.</summary>
    async ValueTask ReleaseNew()
    {
        Released = true;
        await Mm.MmapLock.WriteLock();
        foreach (var vma in Mm.Vmas)
            if (vma.Uffd == this) Mfill.UserfaultfdClearVma(vma);
        await Mm.MmapLock.WriteUnlock();
    }

    /// <summary>
    /// dup_userfaultfd for one VMA being copied into <paramref name="child"/>: with UFFD_FEATURE_EVENT_FORK the copy is
    /// registered with a new context (one per parent context, kept in <paramref name="forks"/>; the parent's
    /// mmap_changing raised until the event is read), else it is not registered (userfaultfd_reset_ctx). Returns the
    /// copy's context or null.
    /// </summary>
    public static UserfaultfdCtx? DupUserfaultfd(Vma src, MmStruct child, List<(UserfaultfdCtx Orig, UserfaultfdCtx New)> forks)
    {
        if (src.Uffd is not { } octx || (octx.Features & FeatureEventFork) == 0) return null;
        foreach (var (o, n) in forks) if (o == octx) return n;
        var ctx = new UserfaultfdCtx(child, $"{octx.Name}@{child.Name}", octx.Sigbus) { Features = octx.Features };
        octx.MmapChanging++;
        forks.Add((octx, ctx));
        return ctx;
    }

    /// <summary>dup_userfaultfd_complete: after dup_mmap dropped mmap_lock, post UFFD_EVENT_FORK on each parent context and wait.</summary>
    public static async ValueTask DupUserfaultfdComplete(List<(UserfaultfdCtx Orig, UserfaultfdCtx New)> forks)
    {
        foreach (var (o, n) in forks) await o.EventWaitCompletion(new UffdMsg(0, default, false, UffdEvent.Fork, Child: n));
    }

    /// <summary>
    /// mremap_userfaultfd_prep: a VMA registered with a context that has UFFD_FEATURE_EVENT_REMAP keeps it across the move
    /// (mmap_changing raised); otherwise the moved VMA is not registered. Returns the context to announce the move on, or null.
    /// </summary>
    public static UserfaultfdCtx? MremapUserfaultfdPrep(Vma vma)
    {
        if (vma.Uffd is not { } ctx || (ctx.Features & FeatureEventRemap) == 0) return null;
        ctx.MmapChanging++;
        return ctx;
    }

    /// <summary>mremap_userfaultfd_complete: after mremap dropped mmap_lock, post UFFD_EVENT_REMAP and wait.</summary>
    public static ValueTask MremapUserfaultfdComplete(UserfaultfdCtx? ctx, ulong from, ulong to, ulong len) =>
        ctx == null ? default : ctx.EventWaitCompletion(new UffdMsg(from, default, false, UffdEvent.Remap, To: to, Len: len));

    /// <summary>
    /// userfaultfd_remove (MADV_DONTNEED, MADV_FREE, MADV_REMOVE): with UFFD_FEATURE_EVENT_REMOVE drop mmap_lock (held for
    /// read), post UFFD_EVENT_REMOVE for [start, end) and wait, and return false: the caller must take mmap_lock again
    /// and look the VMA up anew. True (lock still held) otherwise.
    /// </summary>
    public static async ValueTask<bool> UserfaultfdRemove(Vma vma, ulong start, ulong end)
    {
        if (vma.Uffd is not { } ctx || (ctx.Features & FeatureEventRemove) == 0) return true;
        ctx.MmapChanging++;
        await vma.Mm.MmapLock.ReadUnlock();
        await ctx.EventWaitCompletion(new UffdMsg(start, default, false, UffdEvent.Remove, Len: end - start));
        return false;
    }

    void WakeReaders()
    {
        var s = Mm.Kernel.S;
        foreach (var r in _readers) s.Wake(r);
        _readers.Clear();
    }

    /// <summary>
    /// wake_userfault / __wake_userfault: wake every faulting task, read or not, whose address lies in
    /// [<paramref name="start"/>, <paramref name="start"/> + <paramref name="len"/>); <paramref name="len"/> 0 wakes all.
    /// </summary>
    public async ValueTask Wake(ulong start, ulong len)
    {
        var s = Mm.Kernel.S;
        using var _ = s.Current.Enter("wake_userfault");
        await WqhLock.Lock();
        WakeIn(Pending, start, len);
        WakeIn(Waiting, start, len);
        await WqhLock.Unlock();
    }

    void WakeIn(List<UffdWaiter> q, ulong start, ulong len)
    {
        var s = Mm.Kernel.S;
        for (int i = q.Count - 1; i >= 0; i--)
        {
            var w = q[i];
            if (len != 0 && (w.Msg.Address < start || w.Msg.Address >= start + len)) continue;
            w.Woken = true; // userfaultfd_wake_function: WRITE_ONCE(uwq->waken, true), then list_del_init
            q.RemoveAt(i);
            s.Wake(w.Task);
        }
    }

    /// <summary>
    /// userfaultfd_release (close of the last file reference): mark released, unregister every VMA of the mm that uses
    /// this context (under mmap_lock for write), then wake every faulting task and every reader.
    /// </summary>
    public async ValueTask Release()
    {
        var mm = Mm;
        using var _ = mm.Kernel.S.Current.Enter("userfaultfd_release");
        Released = true;
        await mm.MmapLock.WriteLock();
        try
        {
            var ranges = new List<(ulong Start, ulong End)>();
            foreach (var vma in mm.Vmas)
            {
                if (vma.Uffd != this) continue;
                ranges.Add((vma.Start, vma.End));
                Mfill.UserfaultfdClearVma(vma);
            }
            foreach (var (s, e) in ranges) Mmap.VmaMergeAround(mm, s, e); // vma_merge of each unregistered VMA
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
        await Wake(0, 0);
        WakeReaders();
        foreach (var e in Events) mm.Kernel.S.Wake(e.Task); // "Flush pending events that may still wait on event_wqh"
    }

    /// <summary>Debug-only checks of the queue invariants.</summary>
    [System.Diagnostics.Conditional("DEBUG")]
    public void AssertInvariants()
    {
        foreach (var w in Pending)
            if (w.Woken || Waiting.Contains(w)) throw new ModelException($"{Name}: waiter at 0x{w.Msg.Address:x} is woken or on both queues");
        foreach (var w in Waiting)
            if (w.Woken) throw new ModelException($"{Name}: woken waiter at 0x{w.Msg.Address:x} still on fault_wqh");
        foreach (var e in Events)
            if (e.Woken || e.Msg.Event == UffdEvent.PageFault) throw new ModelException($"{Name}: {e.Msg.Event} on event_wqh is a fault or already read");
        if (MmapChanging < Events.Count) throw new ModelException($"{Name}: mmap_changing {MmapChanging} below the {Events.Count} events queued");
        if (Released)
            foreach (var vma in Mm.Vmas)
                if (vma.Uffd == this) throw new ModelException($"{Name}: released but {vma} still refers to it");
    }
}

/// <summary>struct userfaultfd_wait_queue: one faulting task and its message.</summary>
internal sealed class UffdWaiter(KContext task, UffdMsg msg)
{
    public KContext Task { get; } = task;
    public UffdMsg Msg { get; } = msg;
    /// <summary>uwq->waken.</summary>
    public bool Woken { get; set; }
}
