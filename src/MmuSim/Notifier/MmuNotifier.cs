using MmuSim.Mm;

namespace MmuSim.Notifier;

/// <summary>enum mmu_notifier_event (include/linux/mmu_notifier.h). <see cref="None"/> before 5.2, when ranges had no event.</summary>
public enum MmuNotifyEvent : byte
{
    /// <summary>MMU_NOTIFY_UNMAP: the range is being unmapped (munmap, exit); the VMA goes away.</summary>
    Unmap = 0,
    /// <summary>MMU_NOTIFY_CLEAR: the PTEs are cleared (madvise DONTNEED, reclaim, COW, zap); the VMA stays.</summary>
    Clear = 1,
    /// <summary>MMU_NOTIFY_PROTECTION_VMA: the protection of the whole range changes (mprotect).</summary>
    ProtectionVma = 2,
    /// <summary>MMU_NOTIFY_PROTECTION_PAGE: single pages are write-protected (fork's COW setup, writeback, KSM).</summary>
    ProtectionPage = 3,
    /// <summary>MMU_NOTIFY_SOFT_DIRTY: soft-dirty tracking write-protects the range (clear_refs).</summary>
    SoftDirty = 4,
    /// <summary>MMU_NOTIFY_RELEASE: the mm is being torn down (no range callbacks will follow for it).</summary>
    Release = 5,
    /// <summary>MMU_NOTIFY_MIGRATE (5.8+): migration to or from device memory; <see cref="MmuNotifierRange.Owner"/> names the initiating device.</summary>
    Migrate = 6,
    /// <summary>MMU_NOTIFY_EXCLUSIVE (5.14+): make_device_exclusive; <see cref="MmuNotifierRange.Owner"/> names the device.</summary>
    Exclusive = 7,
    /// <summary>No event: eras before 5.2, whose ranges carried none.</summary>
    None = 255,
}

/// <summary>Callbacks a subscription implements (the non-NULL members of its mmu_notifier_ops).</summary>
[Flags]
public enum NotifierOps : ushort
{
    /// <summary>No callbacks.</summary>
    None = 0,
    /// <summary>->release.</summary>
    Release = 1 << 0,
    /// <summary>->clear_flush_young.</summary>
    ClearFlushYoung = 1 << 1,
    /// <summary>->clear_young (4.3+).</summary>
    ClearYoung = 1 << 2,
    /// <summary>->test_young (2.6.38+).</summary>
    TestYoung = 1 << 3,
    /// <summary>->change_pte (2.6.32-6.9).</summary>
    ChangePte = 1 << 4,
    /// <summary>->invalidate_page (2.6.27-4.12).</summary>
    InvalidatePage = 1 << 5,
    /// <summary>->invalidate_range_start.</summary>
    InvalidateRangeStart = 1 << 6,
    /// <summary>->invalidate_range_end.</summary>
    InvalidateRangeEnd = 1 << 7,
    /// <summary>->invalidate_range (3.19-6.5).</summary>
    InvalidateRange = 1 << 8,
    /// <summary>->arch_invalidate_secondary_tlbs (6.6+).</summary>
    ArchInvalidateSecondaryTlbs = 1 << 9,
    /// <summary>->alloc_notifier / ->free_notifier (mmu_notifier_get/put, 5.4+).</summary>
    AllocFree = 1 << 10,
}

/// <summary>
/// struct mmu_notifier_range: what is being invalidated, why, and whether the callback may block.
/// Before 5.0 the kernel passed (mm, start, end[, blockable]) instead; the model always carries the range and lets
/// the era decide what a subscription sees (<see cref="Event"/> is <see cref="MmuNotifyEvent.None"/> before 5.2).
/// </summary>
public sealed class MmuNotifierRange(MmStruct mm, ulong start, ulong end, MmuNotifyEvent ev, object? owner = null)
{
    /// <summary>range->mm: the address space being changed.</summary>
    public MmStruct Mm { get; } = mm;

    /// <summary>range->start: first byte (page aligned).</summary>
    public ulong Start { get; } = start;

    /// <summary>range->end: end, exclusive (page aligned).</summary>
    public ulong End { get; } = end;

    /// <summary>The event as the era reports it to callbacks.</summary>
    public MmuNotifyEvent Event { get; internal set; } = ev;

    /// <summary>The event the calling path meant, whatever the era (for traces and tests).</summary>
    public MmuNotifyEvent Cause { get; } = ev;

    /// <summary>MMU_NOTIFIER_RANGE_BLOCKABLE.</summary>
    public bool Blockable { get; internal set; } = true;

    /// <summary>range->owner (MIGRATE/EXCLUSIVE events: the device that initiated it).</summary>
    public object? Owner { get; } = owner;

    /// <summary>Set by the core when start succeeded for every subscription; end is owed.</summary>
    internal bool Started;

    /// <summary>Context that started it (pairing/nesting checks).</summary>
    internal int StartedBy = -1;

    /// <summary>Does [<paramref name="start"/>, <paramref name="end"/>) intersect the range?</summary>
    public bool Overlaps(ulong start, ulong end) => start < End && Start < end;

    /// <summary>The range, event and blockable flag, for traces.</summary>
    public override string ToString() => $"[0x{Start:x}, 0x{End:x}) {Event}{(Blockable ? "" : " nonblock")}";
}

/// <summary>
/// A secondary MMU's subscription to one mm: <c>struct mmu_notifier</c> with its <c>mmu_notifier_ops</c>.
/// Override the callbacks your secondary implements and list them in <see cref="Ops"/>; the notifier core calls only
/// the ones that both exist in the era and are listed, exactly where that era's kernel calls them.
/// Every callback is an async method: it may take locks and touch shared state through scheduling points.
/// Callbacks documented "under the PTL" run with a page-table spinlock held and must not sleep.
/// </summary>
public abstract class MmuNotifier
{
    /// <summary>The callbacks this subscription implements.</summary>
    public abstract NotifierOps Ops { get; }

    /// <summary>Name in traces and reports.</summary>
    public virtual string Name => GetType().Name;

    /// <summary>The mm this subscription is registered on (set by register).</summary>
    public MmStruct? Mm { get; internal set; }

    /// <summary>mmu_notifier.users (get/put, 5.4+).</summary>
    public int Users { get; internal set; }

    internal bool Hashed;

    /// <summary>Under the weak-memory mode: the publication number of this subscription on its mm's list (0: published
    /// before the threads phase, visible to all) and the weak location of its ->ops pointer (1 once initialized).</summary>
    internal int PublishSeq;
    internal Lkmm.WeakLoc OpsLoc;

    /// <summary>->release(mn, mm): the mm is going away (exit_mmap) or this subscription is unregistered. Tear everything down.</summary>
    public virtual ValueTask Release(MmStruct mm) => default;

    /// <summary>->clear_flush_young: test and clear Accessed in [start, end), flushing the secondary TLB. Under the PTL.</summary>
    public virtual ValueTask<bool> ClearFlushYoung(MmStruct mm, ulong start, ulong end) => new(false);

    /// <summary>->clear_young: like clear_flush_young, the secondary TLB flush may be skipped. Under the PTL.</summary>
    public virtual ValueTask<bool> ClearYoung(MmStruct mm, ulong start, ulong end) => new(false);

    /// <summary>->test_young: report Accessed without clearing. Under the PTL.</summary>
    public virtual ValueTask<bool> TestYoung(MmStruct mm, ulong address) => new(false);

    /// <summary>->change_pte (2.6.32-6.9): the primary PTE at address now is <paramref name="pte"/>. Under the PTL.</summary>
    public virtual ValueTask ChangePte(MmStruct mm, ulong address, Pte pte) => default;

    /// <summary>->invalidate_page (2.6.27-4.12): one page at address was unmapped. Under the PTL until 3.5, after it until 4.12.</summary>
    public virtual ValueTask InvalidatePage(MmStruct mm, ulong address) => default;

    /// <summary>
    /// ->invalidate_range_start: drop every translation in the range before returning. Return 0, or -EAGAIN
    /// (<see cref="MmuNotifierCore.EAGAIN"/>) only when <see cref="MmuNotifierRange.Blockable"/> is false and you would have to sleep.
    /// </summary>
    public virtual ValueTask<int> InvalidateRangeStart(MmuNotifierRange range) => new(0);

    /// <summary>->invalidate_range_end: the primary PTEs in the range are updated; translations may be re-established.</summary>
    public virtual ValueTask InvalidateRangeEnd(MmuNotifierRange range) => default;

    /// <summary>->invalidate_range (3.19-6.5): flush a TLB that shares the primary page tables. Under the PTL.</summary>
    public virtual ValueTask InvalidateRange(MmStruct mm, ulong start, ulong end) => default;

    /// <summary>->arch_invalidate_secondary_tlbs (6.6+): called from the arch TLB flush.</summary>
    public virtual ValueTask ArchInvalidateSecondaryTlbs(MmStruct mm, ulong start, ulong end) => default;

    /// <summary>->free_notifier (5.4+): the last put's SRCU callback. Must not sleep.</summary>
    public virtual void FreeNotifier() { }

    /// <summary>The subscription's <see cref="Name"/>.</summary>
    public override string ToString() => Name;
}

/// <summary>
/// struct mmu_interval_notifier (5.5+): a subscription to an address interval, with a collision-retry sequence.
/// Override <see cref="Invalidate"/>; inside it, take your user lock, call <see cref="SetSeq"/>, drop translations.
/// </summary>
public abstract class MmuIntervalNotifier
{
    /// <summary>Start of the subscribed interval (set by mmu_interval_notifier_insert).</summary>
    public ulong Start { get; internal set; }

    /// <summary>End (exclusive) of the subscribed interval.</summary>
    public ulong End { get; internal set; }

    /// <summary>The mm it is inserted in (set by insert).</summary>
    public MmStruct? Mm { get; internal set; }

    /// <summary>mmu_interval_notifier.invalidate_seq.</summary>
    public ulong InvalidateSeq { get; internal set; }

    internal bool InTree;
    internal bool DeferredInsert, DeferredRemove;
    // mmu_interval_notifier_remove returned: from then on the caller may free the subscription.
    internal bool RemoveReturned;

    /// <summary>Name in traces and reports.</summary>
    public virtual string Name => GetType().Name;

    /// <summary>ops->invalidate: return false only when the range is non-blockable and you would sleep.</summary>
    public abstract ValueTask<bool> Invalidate(MmuNotifierRange range, ulong curSeq);

    /// <summary>mmu_interval_set_seq: call under the user lock from <see cref="Invalidate"/>.</summary>
    public void SetSeq(ulong curSeq) => InvalidateSeq = curSeq;
}
