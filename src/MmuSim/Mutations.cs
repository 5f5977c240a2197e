namespace MmuSim;

/// <summary>
/// Mutation switches: each breaks one protocol element so that the checker's power can be shown
/// (<c>mmusim explore --mutate NAME</c>, <c>mmusim mutants</c>). Call sites test <c>K.Mutated(Mutation.X)</c>.
/// </summary>
public enum Mutation
{
    // ---- foundation
    /// <summary>Skip the TLB flush after clearing a PTE (primary).</summary>
    SkipTlbFlush,
    /// <summary>Free zapped pages before invalidate_range_end (and before start's effects are guaranteed).</summary>
    FreeBeforeEnd,
    /// <summary>Skip invalidate_range_start/end on the MADV_DONTNEED path.</summary>
    SkipStartOnZap,

    // ---- KVM
    KvmNoRetryCheck,
    KvmNoCountCheck,
    KvmSeqBumpAfterUnlock,
    KvmNoZapOnStart,
    KvmFlushAfterUnlockBeforeFree,
    KvmHoldPageRefs,
    KvmNoMemslotWait,
    /// <summary>PPC's lockless mmu_notifier_retry loses its smp_rmb (§5(d1); a difference only under --memory lkmm).</summary>
    KvmRetryNoRmb,
    KvmDirtyLogNoReprotect,
    /// <summary>kvm_age_gfn clears the Accessed bits it finds but answers "not young" (aging loses the guest's accesses).</summary>
    KvmAgeLosesYoung,

    // ---- KSM
    KsmSkipRefcountCheck,
    KsmNoNotifierBracket,
    KsmReplaceWithoutPteSame,
    /// <summary>write_protect_page ignores mm_tlb_flush_pending (the pre-4.13 test in a fixed era; §5(d8)).</summary>
    KsmIgnoreTlbFlushPending,

    // ---- KVM gfn_to_pfn_cache
    KvmGpcNoInvalidate,

    // ---- interval notifiers (issue 11)
    /// <summary>mmu_interval_notifier_remove reads invalidate_seq without subscriptions->lock (the pre-5.18 wait).</summary>
    IntervalRemoveUnlockedSeq,

    // ---- KVM prefault (issue 11)
    /// <summary>A prefault on a KVM_MEMSLOT_INVALID slot retries inside kvm_tdp_map_page (the 6.10-6.17 code in a fixed era).</summary>
    KvmPrefaultRetriesInvalidSlot,

    // ---- device-private memory (issue 11)
    /// <summary>do_swap_page calls ->migrate_to_ram on a device-private entry without the PTL recheck and page reference (the pre-6.1 code).</summary>
    DevicePrivateFaultNoRef,

    // ---- PAGEMAP_SCAN (issue 11)
    /// <summary>do_pagemap_scan calls start before mmap_read_lock and end after mmap_read_unlock (the 6.7 code in a fixed era).</summary>
    PagemapScanNotifyOutsideMmapLock,

    // ---- khugepaged shmem collapse (issue 11, row e6)
    /// <summary>collapse_and_free_pmd clears the PMD without its CLEAR start/end (the pre-6.1 code in a fixed era).</summary>
    CollapseAndFreePmdNoNotify,
    /// <summary>pte_offset_map_lock trusts the table a walker found before it slept (the pre-6.5 helper, without its pmd_same recheck, under 6.6's lockless retraction).</summary>
    PteOffsetMapLockNoRecheck,

    // ---- unpaired end after a failed non-blocking start (issue 11, row e7)
    /// <summary>mn_hlist_invalidate_range_start returns -EAGAIN without calling the subscriptions' ends (the pre-5.12 code in a fixed era).</summary>
    NonblockFailureSkipsEnd,

    // ---- Xen gntdev (issue 11, row e8)
    /// <summary>gntdev_invalidate waits in unmap_grant_pages until the grant pages are unused (the pre-5.19 driver in a fixed era).</summary>
    GntdevSyncUnmap,
}

public static class Mutations
{
    /// <summary>Command-line name: <c>KvmNoRetryCheck</c> → <c>kvm-no-retry-check</c>.</summary>
    public static string NameOf(Mutation m)
    {
        var n = m.ToString();
        var sb = new System.Text.StringBuilder(n.Length + 8);
        for (int i = 0; i < n.Length; i++)
        {
            if (char.IsUpper(n[i]) && i > 0) sb.Append('-');
            sb.Append(char.ToLowerInvariant(n[i]));
        }
        return sb.ToString();
    }

    public static bool TryParse(string name, out Mutation m)
    {
        foreach (var v in Enum.GetValues<Mutation>())
            if (NameOf(v) == name.Trim().ToLowerInvariant()) { m = v; return true; }
        m = default;
        return false;
    }

    public static string KnownList => string.Join(", ", Enum.GetValues<Mutation>().Select(NameOf));

    public static readonly IReadOnlyDictionary<Mutation, string> Descriptions = new Dictionary<Mutation, string>
    {
        [Mutation.SkipTlbFlush] = "primary: skip the TLB flush after clearing a PTE",
        [Mutation.FreeBeforeEnd] = "primary: free zapped pages before invalidate_range_end",
        [Mutation.SkipStartOnZap] = "primary: MADV_DONTNEED zaps without invalidate_range_start/end",
        [Mutation.KvmNoRetryCheck] = "KVM fault installs the SPTE without mmu_invalidate_retry",
        [Mutation.KvmNoCountCheck] = "KVM retry check compares seq only, ignores in_progress",
        [Mutation.KvmSeqBumpAfterUnlock] = "KVM bumps mmu_invalidate_seq after dropping mmu_lock (2.6.32 comment)",
        [Mutation.KvmNoZapOnStart] = "KVM invalidate_range_start does not zap SPTEs",
        [Mutation.KvmFlushAfterUnlockBeforeFree] = "KVM flushes remote TLBs after dropping mmu_lock in start",
        [Mutation.KvmHoldPageRefs] = "KVM keeps a page reference for every SPTE (breaks KSM's refcount test)",
        [Mutation.KvmNoMemslotWait] = "memslot updates do not wait for mn_active_invalidate_count == 0",
        [Mutation.KvmRetryNoRmb] = "PPC Book3S HV's lockless retry check drops the smp_rmb between its count and seq loads (visible under --memory lkmm)",
        [Mutation.KvmDirtyLogNoReprotect] = "KVM's dirty-log harvests (GET/CLEAR_DIRTY_LOG, RESET_DIRTY_RINGS) clear the log without write-protecting the reported pages",
        [Mutation.KvmAgeLosesYoung] = "KVM aging (clear_young, clear_flush_young) clears SPTE Accessed bits but reports not young",
        [Mutation.KvmGpcNoInvalidate] = "KVM never invalidates its gfn_to_pfn_caches (skips gfn_to_pfn_cache_invalidate_start / _invalidate)",
        [Mutation.KsmSkipRefcountCheck] = "write_protect_page skips the mapcount/refcount check",
        [Mutation.KsmNoNotifierBracket] = "KSM uses 2.6.32 call placement (no start/end) in a 3.7+ era",
        [Mutation.KsmReplaceWithoutPteSame] = "replace_page skips its pte_same check",
        [Mutation.IntervalRemoveUnlockedSeq] = "mmu_interval_notifier_remove waits on READ_ONCE(invalidate_seq) without subscriptions->lock (returns while mn_itree_inv_end still walks the deferred list)",
        [Mutation.KvmPrefaultRetriesInvalidSlot] = "KVM_PRE_FAULT_MEMORY retries RET_PF_RETRY on a memslot being deleted while it holds kvm->srcu, instead of returning -EAGAIN",
        [Mutation.DevicePrivateFaultNoRef] = "do_swap_page hands a device-private page to ->migrate_to_ram without taking a reference under the PTL (a concurrent migration can free it first)",
        [Mutation.PagemapScanNotifyOutsideMmapLock] = "PAGEMAP_SCAN's write-protect start/end run outside mmap_lock (a notifier registered in between gets an end without its start)",
        [Mutation.GntdevSyncUnmap] = "Xen gntdev's invalidate waits for the grant pages to be unused (gnttab_unmap_refs_sync) instead of unmapping asynchronously: deadlock against a pin holder that waits for the invalidation",
        [Mutation.NonblockFailureSkipsEnd] = "a failed non-blocking invalidate_range_start returns -EAGAIN without calling the other subscriptions' invalidate_range_end (KVM's counts stay raised)",
        [Mutation.PteOffsetMapLockNoRecheck] = "pte_offset_map_lock does not recheck the PMD under the PTL: a fault that slept maps into a page table retract_page_tables freed without mmap_lock (6.6+)",
        [Mutation.CollapseAndFreePmdNoNotify] = "collapse_and_free_pmd retracts a page table without MMU_NOTIFY_CLEAR start/end (collapse_pte_mapped_thp's PTEs vanish behind the secondaries' backs)",
        [Mutation.KsmIgnoreTlbFlushPending] = "write_protect_page ignores mm_tlb_flush_pending (a CPU's stale writable TLB entry survives the merge)",
    };
}
