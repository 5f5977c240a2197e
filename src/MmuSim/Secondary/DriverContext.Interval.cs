using MmuSim.Notifier;

namespace MmuSim.Secondary;

/// <summary>
/// The interval-notifier route (5.5+, mm/mmu_notifier.c): a thin wrapper over the notifier core's
/// <c>mmu_interval_notifier_*</c> functions. The driver's protocol, as in every in-tree user (amdgpu/xe userptr,
/// nouveau SVM, RDMA ODP, lib/test_hmm.c):
/// <code>
/// again:
///     seq = await ctx.MmuIntervalReadBegin(sub);            // sleeps while an invalidation of sub is running
///     page = await ctx.GetUserPages(addr, write);           // hmm_range_fault / get_user_pages
///     await driverLock.Lock();                               // the lock sub.Invalidate takes too
///     if (await ctx.MmuIntervalReadRetry(sub, seq)) { unlock; put; goto again; }  // an invalidation ran: discard
///     install the translation; await driverLock.Unlock();
/// </code>
/// and in <see cref="MmuIntervalNotifier.Invalidate"/>: take the same lock, call
/// <see cref="MmuIntervalNotifier.SetSeq"/> with <c>curSeq</c>, drop the translations in the range, unlock.
/// </summary>
public sealed partial class DriverContext
{
    /// <summary>
    /// mmu_interval_notifier_insert: subscribe <paramref name="subscription"/> to [<paramref name="start"/>,
    /// +<paramref name="length"/>) of <see cref="Mm"/>. Takes mmap_lock for write on the first insert into an mm.
    /// Only in eras with <see cref="Eras.Feature.IntervalNotifier"/> (5.5+): mark the driver
    /// <c>[RequiresFeature(Feature.IntervalNotifier)]</c>.
    /// </summary>
    public ValueTask MmuIntervalNotifierInsert(MmuIntervalNotifier subscription, ulong start, ulong length) =>
        Mm.Notifiers.IntervalInsert(subscription, start, length);

    /// <summary>mmu_interval_notifier_remove: unsubscribe; sleeps until an invalidation covering it has finished.</summary>
    public ValueTask MmuIntervalNotifierRemove(MmuIntervalNotifier subscription) => Mm.Notifiers.IntervalRemove(subscription);

    /// <summary>mmu_interval_read_begin: the sequence to pass to <see cref="MmuIntervalReadRetry"/>; sleeps while <paramref name="subscription"/> is being invalidated.</summary>
    public ValueTask<ulong> MmuIntervalReadBegin(MmuIntervalNotifier subscription) => Mm.Notifiers.IntervalReadBegin(subscription);

    /// <summary>
    /// mmu_interval_read_retry: true if an invalidation of <paramref name="subscription"/> started since
    /// <paramref name="seq"/> was sampled; the pages just faulted may be stale and must not be installed.
    /// Call it under the driver lock that <see cref="MmuIntervalNotifier.Invalidate"/> takes.
    /// </summary>
    public ValueTask<bool> MmuIntervalReadRetry(MmuIntervalNotifier subscription, ulong seq) => Mm.Notifiers.IntervalReadRetry(subscription, seq);

    /// <summary>mmu_interval_check_retry: the same test without the lock; a false answer is only a hint (use it to bail out early).</summary>
    public bool MmuIntervalCheckRetry(MmuIntervalNotifier subscription, ulong seq) => Mm.Notifiers.IntervalCheckRetry(subscription, seq);
}
