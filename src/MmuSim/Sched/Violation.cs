namespace MmuSim.Sched;

/// <summary>Names of the checked invariants (kernel-facts.md §7), as used in scenario files and reports.</summary>
public static class Invariants
{
    /// <summary>§7.1/§7.4: a secondary translation survives start, or disagrees with the primary PTE outside any invalidation.</summary>
    public const string StaleTranslation = "stale-translation";
    /// <summary>§7.3: a freed (or freed and reused) frame is still reachable through a secondary translation or a secondary access.</summary>
    public const string FreedPageReachable = "freed-page-reachable";
    /// <summary>§7.5: a writable secondary translation without a writable primary PTE.</summary>
    public const string WritableWithoutPrimary = "writable-secondary";
    /// <summary>§7.7: a secondary write the primary never learned about before cleaning/discarding the folio.</summary>
    public const string DirtyLost = "dirty-lost";
    /// <summary>A secondary write landing in a frame the primary no longer maps at that address.</summary>
    public const string LostWrite = "lost-write";
    /// <summary>§7.10: unpaired, mismatched or wrongly nested invalidate_range_start/end.</summary>
    public const string Pairing = "start-end-pairing";
    /// <summary>§7.11/§7.12: sleeping while holding a spinlock (page-table lock, mmu_lock) or in RCU read side.</summary>
    public const string SleepInAtomic = "sleep-in-atomic";
    /// <summary>§7.11: sleeping in a non-blockable notifier callback.</summary>
    public const string SleepInNonBlock = "sleep-in-nonblock";
    /// <summary>§7.14: a translation that survives ->release, or one created after it.</summary>
    public const string Release = "release";
    /// <summary>All contexts blocked, none runnable.</summary>
    public const string Deadlock = "deadlock";
    /// <summary>A context made no progress within the bound (stuck retry loop, livelock).</summary>
    public const string Liveness = "liveness";
    /// <summary>§7.2/§7.16: negative or unbalanced KVM/notifier counters.</summary>
    public const string CounterBalance = "counter-balance";
    /// <summary>§7.15: interval-notifier sequence protocol.</summary>
    public const string IntervalSeq = "interval-seq";
    /// <summary>Primary-side accounting: refcount, mapcount, rmap and PTEs disagree.</summary>
    public const string PrimaryConsistency = "primary-consistency";
    /// <summary>A secondary TLB that shares the primary tables made writes visible out of order (§5(d4)).</summary>
    public const string WriteOrder = "write-order";
    /// <summary>
    /// §7.8, §5(d7) part 1: an aging callback (clear_flush_young, clear_young, test_young) sent to a start/end secondary
    /// for a range the calling CPU's own invalidate_range_start already zapped: the answer cannot include the secondary's
    /// accesses (57128468080a, 013339df116c).
    /// </summary>
    public const string Aging = "aging";
    /// <summary>A guest write to a dirty-logging memslot that no dirty bitmap and no un-reset dirty-ring entry holds: no harvest will report it.</summary>
    public const string DirtyLogLost = "dirty-log-lost";
    /// <summary>A notifier walk reached a subscription whose initialization (its ->ops) the walking CPU cannot see yet:
    /// the subscription was published without a release (hlist_add_head before 543bdb2d825f).</summary>
    public const string UninitializedNotifier = "uninitialized-notifier";

    public static readonly IReadOnlyList<string> All =
    [
        StaleTranslation, FreedPageReachable, WritableWithoutPrimary, DirtyLost, LostWrite, Pairing,
        SleepInAtomic, SleepInNonBlock, Release, Deadlock, Liveness, CounterBalance, IntervalSeq,
        PrimaryConsistency, WriteOrder, Aging, DirtyLogLost, UninitializedNotifier,
    ];
}

/// <summary>An invariant violation: stops the run and becomes a counterexample.</summary>
public sealed record Violation(
    string Invariant,
    string Message,
    int ContextId,
    string ContextName,
    string Function,
    long Step,
    ulong Address = 0,
    long Pfn = -1)
{
    public override string ToString() =>
        $"{Invariant}: {Message} (CPU{ContextId} {ContextName} in {Function}, step {Step}" +
        (Address != 0 ? $", addr 0x{Address:x}" : "") + (Pfn >= 0 ? $", pfn 0x{Pfn:x}" : "") + ")";
}

/// <summary>Thrown by the model for bugs in the model itself or impossible parameters (not a kernel violation).</summary>
public sealed class ModelException(string message) : Exception(message);
