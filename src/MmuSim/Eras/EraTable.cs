namespace MmuSim.Eras;

/// <summary>
/// The era table: every feature's version range, and the named eras a user can pick. This file is the only place that
/// knows which kernel version did what; kernel-facts.md §1.0 is its source. A range is [since, until): the feature
/// exists from <c>since</c> and is gone in <c>until</c>. Where the spec marks a version as recollection, the note says so.
/// </summary>
public static class EraTable
{
    public sealed record FeatureRange(Feature Feature, KernelVersion Since, KernelVersion Until, string Note);

    static KernelVersion V(int a, int b, int c = 0) => new(a, b, c);
    static readonly KernelVersion Forever = KernelVersion.Max;

    /// <summary>Version range of every feature.</summary>
    public static readonly IReadOnlyList<FeatureRange> Features =
    [
        new(Feature.Release, V(2, 6, 27), Forever, "mmu-notifiers core cddb8a5c14aa"),
        new(Feature.ClearFlushYoung, V(2, 6, 27), Forever, "called under PTL from page_referenced_one"),
        new(Feature.ClearFlushYoungRange, V(4, 0), Forever, "57128468080a kvm: Fix page ageing bugs"),
        new(Feature.ClearYoung, V(4, 3), Forever, "recollection: 4.3; present in 4.10"),
        new(Feature.TestYoung, V(2, 6, 38), Forever, "recollection: 2.6.38 (khugepaged); absent 2.6.32, present 3.10"),
        new(Feature.ChangePte, V(2, 6, 32), V(6, 10), "added with KSM; removed by f3b65bbaed7c/531f52002432 (6.10, recollection)"),
        new(Feature.InvalidatePage, V(2, 6, 27), V(4, 13), "killed by 5f32b265400d"),
        new(Feature.InvalidateRangeStartEnd, V(2, 6, 27), Forever, ""),
        new(Feature.InvalidateRange, V(3, 19), V(6, 6), "IOMMU/ATS; renamed arch_invalidate_secondary_tlbs in 6.6"),
        new(Feature.ArchInvalidateSecondaryTlbs, V(6, 6), Forever, "called from the arch TLB flush"),
        new(Feature.NotifierGetPut, V(5, 4), Forever, "recollection 2c7933f53f6b"),
        new(Feature.IntervalNotifier, V(5, 5), Forever, "recollection 99cb252f5e68"),

        new(Feature.SrcuReadSide, V(3, 7), Forever, "global SRCU 21a92735f660 (recollection for id)"),
        new(Feature.BlockableStart, V(4, 19), Forever, "93065ac753e4 (recollection)"),
        new(Feature.RangeEvents, V(5, 2), Forever, "MMU_NOTIFY_* (recollection for version)"),
        new(Feature.NonblockFailureCallsEnd, V(5, 12), Forever, "c2655835fd8c \"mm/mmu_notifiers: ensure range_end() is paired with range_start()\" (Sean Christopherson, 5.12-rc3, Cc stable; Fixes 93065ac753e4, 4.19): on -EAGAIN mn_hlist_invalidate_range_start calls every ->invalidate_range_end, and WARNs on a failing start that has one"),
        new(Feature.OnlyEnd, V(4, 15), V(6, 6), "mmu_notifier_invalidate_range_only_end"),
        new(Feature.ChangePteFallbackToInvalidatePage, V(2, 6, 32), V(3, 7), "removed by 6bdb913f0a70"),
        new(Feature.SetPteThenNotify, V(2, 6, 32), V(3, 7), "2.6.32 set_pte_at then change_pte; reversed by 3.10"),
        new(Feature.SetPteAtNotifyBracketed, V(3, 7), Forever, "6bdb913f0a70 wraps set_pte_at_notify callers in start/end"),
        new(Feature.InvalidatePageUnderPtl, V(2, 6, 27), V(3, 6), "ptep_clear_flush_notify under the PTL"),
        new(Feature.InvalidatePageAfterPtl, V(3, 6), V(4, 13), "2ec74c3ef2d8 (recollection for id/version); race 5(a)"),
        new(Feature.RmapRangeNotify, V(4, 13), Forever, "mm/rmap: update to new mmu_notifier semantic v2"),
        new(Feature.TtuYoungCheck, V(2, 6, 27), V(5, 11),
            "013339df116c 'mm/rmap: always do TTU_IGNORE_ACCESS' (patch and its 5.10-stable backport seen; upstream 5.11): " +
            "since 369ea8242c0f the secondary's access bit is checked after start unmapped it; 5(d7) part 1"),
        new(Feature.ZapInvalidateRangeOnFlush, V(3, 19), V(6, 6), "tlb_flush_mmu_tlbonly -> invalidate_range"),

        new(Feature.Thp, V(2, 6, 38), Forever, "anon THP"),
        new(Feature.TestHmm, V(5, 7), Forever, "b2ef9f5a5cb3 'mm/hmm/test: add selftest driver for HMM' (Ralph Campbell; 5.7, recollection)"),
        new(Feature.MigrateEventOwner, V(5, 9), Forever, "MMU_NOTIFY_MIGRATE + mmu_notifier_range_init_migrate owner (kernel-facts §1.2: 5.9, recollection)"),
        new(Feature.DeviceExclusive, V(5, 14), Forever, "b756a3b5e7ea 'mm: device exclusive memory access' (Alistair Popple; 5.14, kernel-facts §1.2); MMU_NOTIFY_EXCLUSIVE"),
        new(Feature.DeviceCoherent, V(6, 0), Forever, "f25cbb7a95a2 'mm: add zone device coherent type memory support' + test_hmm coherent devices and MIGRATE_TO_SYS (Alex Sierra; 6.0, recollection)"),
        new(Feature.MigrateDeviceRange, V(6, 1), Forever, "'mm/migrate_device.c: add migrate_device_range()' + dmirror RELEASE (Alistair Popple; 6.1, recollection)"),
        new(Feature.DevicePrivateFaultRef, V(6, 1), Forever,
            "16ce101db85d 'mm/memory.c: fix race when faulting a device private page' (Alistair Popple, v6.0-rc3-595, so 6.1; " +
            "patch v2 of 2022-09-28 and the commit list seen): get_page under the PTL after pte_same, migrate_vma.fault_page"),
        new(Feature.DevicePrivateThp, V(6, 19), Forever, "THP migration of zone device pages (Balbir Singh; merged after 6.18, recollection): no named era has it"),
        new(Feature.MprotectTryChangeWritable, V(6, 0), Forever, "64fe24a3e05e 'mm/mprotect: try avoiding write faults for exclusive anonymous pages when changing protection' (David Hildenbrand, 6.0: recollection); measured on 6.18 by bench/realkvm pass 9"),
        new(Feature.MprotectLazyStart, V(4, 0), Forever, "seen in 4.10 (mni_start); 2.6.32 brackets the whole range"),
        new(Feature.OomReaper, V(4, 6), Forever, ""),
        new(Feature.OomReaperNoNotifier, V(4, 6), V(4, 15), "unmap_page_range without notifier; race 5(d3)"),
        new(Feature.OomReaperSkipsNotifierMm, V(4, 15), V(4, 19), "skip mm structs with mmu notifiers (recollection)"),
        new(Feature.OomReaperNonblock, V(4, 19), Forever, "invalidate_range_start_nonblock per VMA"),
        new(Feature.MkcleanInvalidateRange, V(4, 13), V(4, 15), "4.13 rmap rework; dropped by 'avoid double notification when it is useless' (4.15, recollection; 4.19 has the no-IR comment)"),
        new(Feature.MadvFree, V(4, 5), Forever, "MADV_FREE for anonymous memory (4.5); seen 4.10"),
        new(Feature.MadvWipeOnFork, V(4, 14), Forever, "MADV_WIPEONFORK/KEEPONFORK, d2cd9ede6e19 (4.14); private anonymous VMAs only (-EINVAL otherwise)"),
        new(Feature.MadvPopulate, V(5, 14), Forever, "MADV_POPULATE_READ/WRITE, 4ca9b3859dac (5.14); faultin_page_range with FOLL_MADV_POPULATE from 6.9 (631426ba1d45)"),
        new(Feature.MadvCollapse, V(6, 1), Forever, "MADV_COLLAPSE, 7d8faaf15545 (6.1): collapse_huge_page with MMU_NOTIFY_CLEAR over the PMD range"),
        new(Feature.KhugepagedShmemCollapse, V(4, 8), Forever, "f3f0e1d2150b 'khugepaged: add support of collapse for tmpfs/shmem pages' (Kirill Shutemov, 4.8): collapse_shmem + retract_page_tables"),
        new(Feature.CollapsePteMappedThp, V(5, 4), Forever, "27e1f8273113 'khugepaged: enable collapse pmd for pte-mapped THP' (Song Liu, 5.4): khugepaged_add_pte_mapped_thp when retract_page_tables' mmap_write_trylock fails"),
        new(Feature.HugetlbMigration, V(3, 12), Forever, "e632a938d914 'mm: migrate: add hugepage migration code to move_pages()' (Naoya Horiguchi, 3.12); before, isolate_lru_page fails on a hugetlb page and move_pages reports -EBUSY"),
        new(Feature.GntdevAsyncUnmap, V(5, 19), Forever, "dbe97cff7dd9 'xen/gntdev: Avoid blocking in unmap_grant_pages()' (Demi Marie Obenour, 5.19-rc4, Cc stable; Fixes 745282256c75; QubesOS/qubes-issues#7481)"),
        new(Feature.CollapseFileNotifies, V(6, 1), Forever, "f268f6cf875f 'mm/khugepaged: invoke MMU notifiers in shmem/file collapse paths' (Jann Horn, Nov 2022, merged for 6.1; stable 5.10+; CVE-2022-48991)"),
        new(Feature.MadvCollapseFile, V(6, 1), Forever, "34488399fa08 'mm/madvise: add file and shmem support to MADV_COLLAPSE' and 58ac9a8993a1 'mm/khugepaged: attempt to map file/shmem-backed pte-mapped THPs by pmds' (Zach O'Keefe, the file/shmem extension of the MADV_COLLAPSE series, in the 6.1 merge window's log after 7d8faaf15545)"),
        new(Feature.RetractAllMappings, V(6, 6), Forever, "1d65b771bc08 'mm/khugepaged: retract_page_tables() without mmap or vma lock' (Hugh Dickins, 6.6): collapse_file retracts every mapping and MADV_COLLAPSE then calls collapse_pte_mapped_thp(install_pmd) on its own"),
        new(Feature.RetractLockless, V(6, 6), Forever, "Hugh Dickins, 'mm: free retracted page table by RCU' (v2 posted 2023-06-20, read from the list; merged for 6.6): 1d65b771bc08 'mm/khugepaged: retract_page_tables() without mmap or vma lock', 'mm/khugepaged: collapse_pte_mapped_thp() with mmap_read_lock()' (step 1 checks without the notifier, step 2 clears the PTEs inside MMU_NOTIFY_CLEAR), 'mm/khugepaged: delete khugepaged_collapse_pte_mapped_thps()' (SCAN_PTE_MAPPED_HUGEPAGE calls collapse_pte_mapped_thp directly), 'mm: delete mmap_write_trylock() and vma_try_start_write()'"),
        new(Feature.Uprobes, V(3, 5), Forever, "uprobes __replace_page (3.5); start/end from 3.7 (6bdb913f0a70), seen 3.10"),

        new(Feature.KvmMmuRwLock, V(5, 12), Forever, "x86 rwlock 531810caa9f4 (recollection)"),
        new(Feature.KvmRetryBarriers, V(3, 6), Forever, "a355aa54f1d2 (version: recollection)"),
        new(Feature.KvmFlushBeforeUnlock, V(3, 6), Forever, "2.6.32 flushed after unlock; 3.10 before (boundary placed at 3.6)"),
        new(Feature.KvmChangePteSeqBump, V(2, 6, 32), V(5, 13), "seq++ + kvm_set_spte_hva under mmu_lock"),
        new(Feature.KvmChangePteWarnEarlyReturn, V(5, 13), V(6, 10), "c13fda237f08 (recollection)"),
        new(Feature.KvmInvalidateRange, V(4, 19), V(6, 2), "APIC access page reload; present 6.1, gone 6.8"),
        new(Feature.KvmSkipLockWithoutSlot, V(5, 13), Forever, "071064f14d87"),
        new(Feature.KvmMemslotWaitsForInvalidations, V(5, 13), Forever, "52ac8b358b0c (recollection)"),
        new(Feature.KvmActiveInvalidateUnderflowGuard, V(6, 9), Forever,
            "d489ec956583 'KVM: Harden against unpaired kvm_mmu_notifier_invalidate_range_end() calls' (Sean Christopherson, lore " +
            "20240110004239.491290-1; kvm-x86-generic-6.9 pull: 'Harden KVM against underflowing the active mmu_notifier invalidation count'): " +
            "if (!WARN_ON_ONCE(!kvm->mn_active_invalidate_count)) --count; wake = !count. Prompted by PAGEMAP_SCAN (catalog e4)"),
        new(Feature.KvmRetryGfnRange, V(6, 8), Forever, "gfn union + mmu_invalidate_retry_gfn; 5.x used an hva union"),
        new(Feature.KvmEarlyUnsafeRetry, V(6, 8), Forever, "mmu_invalidate_retry_gfn_unsafe before and after GUP"),
        new(Feature.KvmZapMarksDirty, V(2, 6, 27), V(6, 13), "kvm_set_pfn_dirty on zap"),
        new(Feature.KvmDirtyAtFault, V(6, 13), Forever, "kvm_release_faultin_page(dirty = map_writable) under mmu_lock"),
        new(Feature.KvmMmuInvalidateNames, V(6, 1), Forever, "20ec3ebd707c rename (recollection)"),
        new(Feature.KvmRetryHvaRange, V(5, 13), V(6, 8), "mmu_notifier_retry_hva + hva range union (David Stevens; version: recollection); 6.8 uses gfns"),
        new(Feature.KvmPageFaultTraceVcpu, V(6, 0), Forever, "kvm_page_fault gains vcpu_id/guest_rip (Wonhyuk Yang, 2022; version: recollection)"),
        new(Feature.KvmE500RetryCheck, V(3, 13), Forever, "kvm: ppc: booke: check range page invalidation progress on page setup (Bharat Bhushan, 2013; backported to 3.12; version: recollection); race 5(d2)"),
        new(Feature.KvmPrefetchSkipsInvalidation, V(5, 13), Forever, "'Skip prefetch while invalidations are in progress' (David Stevens' v4 'Consider the hva in mmu_notifier retry' series, Feb 2021, with KvmRetryHvaRange); check seen in 6.x direct_pte_prefetch and FNAME(pte_prefetch)"),
        new(Feature.KvmUserMemslots32764, V(5, 12), Forever,
            "4fc096a99e01 'KVM: Raise the maximum number of user memslots' (Vitaly Kuznetsov, Jan 2021 for 5.12; the x86 patch removing " +
            "'#define KVM_USER_MEM_SLOTS 509' seen): KVM_USER_MEM_SLOTS = KVM_MEM_SLOTS_NUM (SHRT_MAX) - KVM_INTERNAL_MEM_SLOTS; 6.18 measured 32764 " +
            "(bench/realkvm/output-memslot-6.18.txt). Before: x86 509 (seen in 4.x-5.11 x86 headers; older x86 eras had fewer, 125 and 32, not modelled), others 512 (arm64 header)"),
        new(Feature.KvmGuestMemfd, V(6, 8), Forever,
            "a7800aa80ea4 'KVM: Add KVM_CREATE_GUEST_MEMFD ioctl() for guest-specific backing memory' (Sean Christopherson; kvm/next for 6.8, " +
            "seen in the 6.8 linux-next merge with 'fs: Rename mapping private members'), with KVM_SET_MEMORY_ATTRIBUTES and KVM_X86_SW_PROTECTED_VM " +
            "in the same series; kvm_gmem_invalidate_begin/end run the mmu_invalidate_begin/range_add/end protocol under mmu_lock"),
        new(Feature.KvmPreFaultMemory, V(6, 10), Forever,
            "'KVM: Add KVM_PRE_FAULT_MEMORY vcpu ioctl to pre-populate guest memory' and 'KVM: x86: Implement kvm_arch_vcpu_pre_fault_memory()' (Isaku Yamahata, " +
            "Paolo Bonzini; kvm/next for 6.10): kvm_vcpu_pre_fault_memory holds kvm->srcu over the whole range; kvm_tdp_map_page loops while RET_PF_RETRY " +
            "and returns -EOPNOTSUPP unless the MMU's page_fault is kvm_tdp_page_fault"),
        new(Feature.KvmPreFaultInvalidSlotEagain, V(6, 18), Forever,
            "3ccbf6f47098 'KVM: x86/mmu: Return -EAGAIN if userspace deletes/moves memslot during prefault' (Sean Christopherson; reported by Reinette Chatre, " +
            "debugged by Yan Zhao, lore 20250519023737.30360-1; in the kvm-x86 pull for 6.18, whose 6.18-rc2 fixes add the pre_fault_memory_test regression case)"),
        new(Feature.KvmAccessTrackNoAd, V(4, 12), Forever,
            "f160c7b7bb32 'kvm: x86: mmu: Lockless access tracking for Intel CPUs without EPT A bits' (Junaid Shahid, 4.12; " +
            "recollection for id and version): kvm_age_rmapp marks the SPTE for access tracking; before it kvm_age_hva called " +
            "kvm_unmap_rmapp when !shadow_accessed_mask (4.4 source, recollection)"),
        new(Feature.KvmLocklessAging, V(6, 15), Forever,
            "'KVM: x86/mmu: Age sptes locklessly' v9 (James Houghton, posted 2025-02-04), applied to kvm-x86 mmu in Feb 2025 for the 6.15 merge window " +
            "(6.14 was released 2025-03-24; version from that date): aa34b811650c 'KVM: Add lockless memslot walk to KVM', b146a9b34aed 'KVM: x86/mmu: Relax locking for " +
            "kvm_test_age_gfn() and kvm_age_gfn()', af3b6a9eba48 'KVM: x86/mmu: Support rmap walks without holding mmu_lock when aging gfns' (kvm-x86 ids from the " +
            "apply mail); CONFIG_KVM_MMU_LOCKLESS_AGING selected by x86 (and s390, not modelled), not by arm64"),
        new(Feature.KvmPfnCache, V(5, 17), Forever, "982ed0de4753 KVM: Reinstate gfn_to_pfn_cache with invalidation support (id confirmed in Fixes: tags; posted Nov 2021 as v4/v5 08/12; 5.17 merge: recollection). Invalidation in invalidate_range_start, retry on any mn_active_invalidate_count (seen in 6.2/6.3-era pfncache.c); the range_end rework (Woodhouse, Aug-Oct 2024, v2/v3) was not found in any release tree: modelled as a per-VM option, not an era; race 5(d6)"),

        new(Feature.KvmManualDirtyLogProtect, V(5, 0), Forever, "2a31b9db1535 'kvm: introduce manual dirty log reprotect' (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT, KVM_CLEAR_DIRTY_LOG; version: recollection); the cap became ..._PROTECT2 in 5.6 with the same args[0] bit 0"),
        new(Feature.KvmDirtyLogInitiallySet, V(5, 7), Forever, "3c9bd4006bfc 'KVM: x86: enable dirty log gradually in small chunks' (KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_CAPS; id and version: recollection)"),
        new(Feature.KvmDirtyRing, V(5, 11), Forever, "fb04a1eddb1a 'KVM: X86: Implement ring-based dirty memory tracking' (Peter Xu; version: recollection); enable checks as in kvm_vm_ioctl_enable_dirty_log_ring (seen); the soft-full exit moved from vcpu_enter_guest to KVM_REQ_DIRTY_RING_SOFT_FULL in 6.1 with the same observable exit"),

        new(Feature.Ksm, V(2, 6, 32), Forever, ""),
        new(Feature.KsmMapcountPlusTwo, V(2, 6, 32), V(3, 7), "+2 in 2.6.32, +1 by 3.10 (boundary placed at 3.7)"),
        new(Feature.KsmWriteProtectDirty, V(3, 7), Forever, "pte_write || pte_dirty (seen 3.10)"),
        new(Feature.KsmTlbFlushPending, V(4, 13), Forever, "b3a81d0841a95 'mm: fix KSM data corruption' (Minchan Kim, series posted Aug 2017 on v4.13-rc2-mmots, so after 4.13-rc1; in 4.13 final: recollection); seen 4.19; race 5(d8)"),
        new(Feature.KsmClearFlushNotify, V(3, 19), V(4, 15), "ptep_clear_flush_notify in 4.10, plain in 4.19"),
        new(Feature.KsmUseZeroPages, V(4, 11), Forever, "use_zero_pages knob"),
        new(Feature.KsmStableNodeChains, V(4, 13), Forever, "max_page_sharing"),
        new(Feature.KsmMergeAny, V(6, 4), Forever, "PR_SET_MEMORY_MERGE"),
        new(Feature.KsmZeroPagesCounter, V(6, 10), Forever, "ksm_zero_pages (recollection)"),
        new(Feature.KsmMergeAnyAcrossExec, V(6, 6), Forever,
            "'mm/ksm: support fork/exec for prctl' (Stefan Roesch, v4 2023-09-22, Fixes: d7597f59d1d3, reported by Carl Klemm): adds " +
            "MMF_VM_MERGE_ANY to MMF_INIT_MASK (patch seen on the list); a 6.6-rc fix (version from the date, commit id not looked up)"),
        new(Feature.KsmExecveEntersMm, V(6, 9), Forever,
            "ksm_execve (include/linux/ksm.h: 'if MMF_VM_MERGE_ANY: return __ksm_enter(mm)', seen in 6.x) from 'mm/ksm: fix ksm exec support for " +
            "prctl' (Jinjiang Tu, 2024: the flag survived exec but no mm_slot was created, so ksmd never scanned the task; version: recollection)"),
        new(Feature.KsmForkResetsCounters, V(6, 18), Forever,
            "'mm/ksm: fix incorrect KSM counter handling in mm_struct during fork' (Donet Tom, merged into mm-stable 2025-09-28, so the 6.18 merge " +
            "window; Cc stable 6.6+; Fixes: 7609385337a4, cb4df4cae4f2, e2942062e01d; patch seen): ksm_fork zeroes ksm_merging_pages and ksm_rmap_items"),
        new(Feature.KsmAllocKpage, V(2, 6, 32), V(2, 6, 33), "2.6.32 try_to_merge_two_pages alloc_page + copy; 2.6.33 'upgrades page to ksm page' (patch seen)"),
        new(Feature.KsmRestoreNotify, V(2, 6, 32), V(3, 7), "2.6.32 restores with set_pte_at_notify, 3.10 with set_pte_at (boundary placed at 3.7)"),
        new(Feature.NotifierHlistAddRcu, V(5, 3), Forever,
            "543bdb2d825f 'mm/mmu_notifier: use hlist_add_head_rcu()' (Jean-Philippe Brucker, 2019-08, Cc stable; the commit text " +
            "names the litmus test MP+onceassign+derefonce; merged for 5.3, version: recollection)"),
        new(Feature.HugeZeroPage, V(3, 8), Forever,
            "79da5407eeadc 'thp: implement huge zero page' series (Kirill Shutemov, 3.8; use_zero_page knob from the same series; " +
            "version: recollection)"),
        new(Feature.AnonMthp, V(6, 8), Forever,
            "19eaf44954df 'mm: thp: support allocation of anonymous multi-size THP' and 3485b88390b0 'mm: thp: introduce multi-size THP " +
            "sysfs interface' (Ryan Roberts, 6.8): alloc_anon_folio, thp_vma_allowable_orders, hugepages-<size>kB/enabled " +
            "(always, inherit, madvise, never; PMD size defaults to inherit, the others to never)"),
        new(Feature.IdlePageTracking, V(4, 3), Forever,
            "33c3fc71c8cf 'mm: introduce idle page tracking' (Vladimir Davydov, 4.3, with mmu_notifier_clear_young from the same series, " +
            "1d7715c676a1; version: recollection, consistent with Feature.ClearYoung)"),
        new(Feature.LruGen, V(6, 1), Forever,
            "ec1c86b25f4b 'mm: multi-gen LRU: groundwork' and bd74fdaea146 'mm: multi-gen LRU: support page table walks' " +
            "(Yu Zhao, merged for 6.1; the Fixes: tag of 1d4832becdc2 names bd74fdaea146)"),
        new(Feature.LruGenYoungNotify, V(6, 12), Forever,
            "1d4832becdc2 'mm: multi-gen LRU: use {ptep,pmdp}_clear_young_notify()' (Yu Zhao, James Houghton; 2024-10-19, merged " +
            "through mm-hotfixes-stable on 2024-11-03 for 6.12, Cc stable; commit text and diff seen: 'memory that is mostly " +
            "accessed by a VM appears younger than it really is': the aging never cleared the secondaries' Accessed bits, so " +
            "folio_referenced_one's clear_flush_young still found them set at eviction; the same walk never promoted a page only " +
            "the secondary touched)"),
        new(Feature.MigrationEntryAd, V(6, 1), Forever,
            "2e3468778dbe 'mm: remember young/dirty bit for page migrations' (Peter Xu, 6.1-rc1; v4 posted 2022-08-11 as " +
            "[PATCH v4 5/7], read from the list): SWP_MIG_YOUNG_BIT/SWP_MIG_DIRTY_BIT above the pfn in the swap offset where " +
            "migration_entry_supports_ad() (x86_64); remove_migration_pte drops pte_mkold unless the entry is young and sets " +
            "pte_mkdirty if the folio and the entry are dirty; remove_migration_pmd and __split_huge_pmd_locked likewise"),
        new(Feature.ThpMigration, V(4, 14), Forever,
            "616b8371539a 'mm: thp: enable thp migration in generic path' and 84c3fc4e9c56 'mm: thp: check pmd migration entry " +
            "in common path' (Zi Yan, 4.14; x86 selects ARCH_ENABLE_THP_MIGRATION in 14c6b2a89e9c, same cycle): try_to_migrate_one " +
            "replaces a PMD mapping of an anonymous THP by a PMD migration entry, remove_migration_pmd restores a huge PMD; " +
            "faults wait in pmd_migration_entry_wait (the versions are recollection)"),
        new(Feature.KsmFolioMigration, V(3, 9), Forever,
            "c8d6553b9580 'ksm: make KSM page migration possible' (Hugh Dickins, the 3.9 KSM NUMA series with merge_across_nodes and " +
            "FOLL_MIGRATION, 5117b3b835f2); before it 62b61f611eb5 'ksm: memory hotremove migration only' (2.6.33) made NUMA migration " +
            "skip PageKsm where it skips PageReserved (commit text seen; the 3.9 version is recollection)"),
        new(Feature.ThpSplitRefcountCheck, V(4, 5), Forever,
            "e9b61f19858a 'thp: reintroduce split_huge_page()' in Kirill Shutemov's THP refcounting rework (4.5): can_split_huge_page " +
            "before unmapping, page_ref_freeze after; before 4.5 __split_huge_page kept the mappings and ignored extra references " +
            "(version: recollection)"),
        new(Feature.KsmSplitSameThp, V(4, 17), Forever,
            "77da2ba0648a 'mm/ksm.c: fix interaction with THP' (Claudio Imbrenda, posted 2018-03-16 as v2 with Kirill Shutemov's " +
            "review; the commit text: a THP filled with one value ends as '1 unshared and the rest volatile'; 4.17: recollection)"),
        new(Feature.Hugetlb, V(2, 6, 32), Forever, "MAP_HUGETLB, 4e52780d41a7 'hugetlb: add MAP_HUGETLB for mmaping pseudo-anonymous huge page regions' (Eric Munson, 2.6.32; recollection)"),
        new(Feature.MapHugeSize, V(3, 8), Forever, "MAP_HUGE_SHIFT / MAP_HUGE_2MB, 42d7395feb56 'mm: support more pagesizes for MAP_HUGETLB/SHM_HUGETLB' (Andi Kleen, 3.8; recollection)"),
        new(Feature.HugetlbForkCopiesPinned, V(5, 12), Forever,
            "4eae4efa2c29 'hugetlb: do early cow when page pinned on src mm' (Peter Xu, after the 5.9 PTE fix 70e806e4e645; 5.12: recollection, " +
            "the 5.5 and 5.13 eras lie on either side of any version from 5.10 to 5.13)"),
        new(Feature.KsmMergeAcrossNodes, V(3, 9), Forever, "sysfs-kernel-mm-ksm: merge_across_nodes, January 2013, 3.9"),
        new(Feature.KsmSmartScan, V(6, 7), Forever, "smart_scan + pages_skipped, Stefan Roesch 2023 (version: recollection)"),
        new(Feature.KsmChecksumBeforeStableSearch, V(6, 11), Forever, "Chengming Zhou 2024 'don't waste time searching stable tree for fast changing page' (version: recollection)"),

        new(Feature.TlbGatherFlushPending, V(4, 13), Forever, "56236a59556c/99baac21e458 (tlb_gather_mmu inc_tlb_flush_pending) + b3a81d0841a95 (clear_refs uses tlb_gather_mmu/tlb_finish_mmu instead of flush_tlb_mm): the same series as the KSM fix, after 4.13-rc1 (patch diffs seen); race 5(d8)"),
        new(Feature.PagemapScan, V(6, 7), Forever,
            "52526ca7fdb9 'fs/proc/task_mmu: implement IOCTL to get and optionally clear info about PTEs' (Muhammad Usama Anjum, 6.7): do_pagemap_scan " +
            "brackets the whole scan with MMU_NOTIFY_PROTECTION_VMA start/end when PM_SCAN_WP_MATCHING is set, and pagemap_scan_test_walk skips a VMA " +
            "that is not uffd-wp async (userfaultfd_wp_async && userfaultfd_wp_use_markers) in that mode; catalog e4"),
        new(Feature.PagemapScanNotifyUnderMmapLock, V(6, 8), Forever,
            "4cccb6221cae 'fs/proc/task_mmu: move mmu notification mechanism inside mm lock' (Muhammad Usama Anjum, Jan 2024; Fixes 52526ca7fdb9; syzbot " +
            "81227d2bd69e9dedb802, lore 000000000000f6d051060c6785bc: 'WARNING ... kvm_mmu_notifier_change_pte'; in the 6.8-rc2 window, stable 6.7.3, " +
            "CVE-2024-26617 'affected >=6.7.0 <6.7.3'): mmap_read_lock_killable, then start(walk_start, end), walk, end, mmap_read_unlock per iteration; catalog e4"),
        new(Feature.ClearRefsSoftDirty, V(3, 11), Forever, "CLEAR_REFS_SOFT_DIRTY, 0f8975ec4db2 'mm: soft-dirty bits for user memory changes tracking' (3.11, recollection); clear_refs_write brackets the walk with start/end (seen pre-4.13 and 4.19 code)"),

        new(Feature.IntervalRemoveSeqLocked, V(5, 18), Forever,
            "319561669a59 'mm/mmu_notifier.c: fix race in mmu_interval_notifier_remove()' (Alistair Popple, lkml 20220420043734.476348-1; " +
            "akpm hotfixes of 2022-04-21, so 5.18-rc4, Cc stable; Fixes 99cb252f5e68; patch and commit text seen)"),

        new(Feature.Userfaultfd, V(4, 3), Forever, "86039bd3b4e6 'userfaultfd: add new syscall to provide memory externalization' (Andrea Arcangeli, 4.3; recollection for id)"),
        new(Feature.UffdShmem, V(4, 11), Forever, "4c27fe4c4c84 'userfaultfd: shmem: add shmem_mcopy_atomic_pte for userfaultfd support' (Mike Rapoport, 4.11; recollection)"),
        new(Feature.UffdHugetlb, V(4, 11), Forever,
            "8fb5debc5fcd 'userfaultfd: hugetlbfs: add hugetlb_mcopy_atomic_pte for userfaultfd support' and 1c9e8def43a3 " +
            "'userfaultfd: hugetlbfs: add UFFDIO_COPY support for shared mappings' (Mike Kravetz, 4.11, with the shmem support; recollection)"),
        new(Feature.UffdDevice, V(6, 1), Forever,
            "2d5de004e009 'userfaultfd: add /dev/userfaultfd for fine grained access control' (Axel Rasmussen, 6.1; recollection)"),
        new(Feature.PagemapUffdWp, V(5, 13), Forever,
            "fb8e37f35a2f 'mm/pagemap: export uffd-wp protection information' (Peter Xu, 5.13; recollection): PM_UFFD_WP, bit 57"),
        new(Feature.UffdMinorHugetlb, V(5, 13), Forever,
            "7677f7fd8be7 'userfaultfd: add minor fault registration mode' (Axel Rasmussen, 5.13: hugetlbfs first, shmem in 5.14 as " +
            "c949b097ef2e says; recollection for the id)"),
        new(Feature.UffdWp, V(5, 7), Forever, "Peter Xu's uffd-wp series for anonymous memory, with 529b930b87d9 'userfaultfd: wp: hook userfault handler to write protection fault' (5.7; the Fixes: tag of 5f5f2ddd189d names it)"),
        new(Feature.UffdMinorShmem, V(5, 14), Forever, "c949b097ef2e 'userfaultfd/shmem: support minor fault registration for shmem' (Axel Rasmussen, 5.14; hugetlbfs had it in 5.13)"),
        new(Feature.UffdWpResolveTryWritable, V(6, 3), Forever, "Peter Xu 'mm/uffd: always wr-protect pte in pte|pmd_mkuffd_wp()' series (Dec 2022 patch seen: uffd_wp_range sets MM_CP_TRY_CHANGE_WRITABLE when vma_wants_manual_pte_write_upgrade); version from the date"),
        new(Feature.HugetlbMremap, V(5, 16), Forever,
            "550a7d60bd5e 'mm, hugepages: add mremap() support for hugepage backed vma' (Mina Almasry, 5.16; recollection): " +
            "move_hugetlb_page_tables under a CLEAR invalidation of the old range; before it vma_to_resize returned -EINVAL"),
        new(Feature.UffdMove, V(6, 8), Forever,
            "adef440691ba 'userfaultfd: UFFDIO_MOVE uABI' (Andrea Arcangeli, Suren Baghdasaryan; 6.8): move_pages, move_pages_pte " +
            "(CLEAR over each source page around ptep_clear_flush), move_pages_huge_pmd (CLEAR over the 2 MiB source); read at a later tree"),
        new(Feature.UffdWpShmem, V(5, 19), Forever,
            "Peter Xu's 'userfaultfd-wp: Support shmem and hugetlbfs' series (PTE markers: 679d10331 'mm: introduce PTE_MARKER swap entry', " +
            "a8ee05df5d64 'mm/uffd: PTE_MARKER_UFFD_WP' read: the marker keeps a zapped file PTE wr-protected; b1f9e876862d " +
            "'mm/uffd: enable write protection for shmem & hugetlbfs' adds UFFD_FEATURE_WP_HUGETLBFS_SHMEM), merged for 5.19 (recollection for the version)"),
        new(Feature.UffdNonCooperativeEvents, V(4, 11), Forever,
            "Pavel Emelyanov and Mike Rapoport's non-cooperative userfaultfd series, 4.11: 893e26e61d04 'userfaultfd: non-cooperative: " +
            "Add fork() event', 72f87654c696 '... add mremap() event', 05ce77249d50 '... add madvise() event for MADV_DONTNEED request' " +
            "(recollection for the ids; fs/userfaultfd.c's dup_userfaultfd, mremap_userfaultfd_complete and userfaultfd_remove read at a recent tree)"),
        new(Feature.UffdWpUnpopulated, V(6, 4), Forever,
            "Peter Xu 'mm/uffd: UFFD_FEATURE_WP_UNPOPULATED' (v4 posted 2023-03-09, lkml 2303.1/03054: change_pte_range installs " +
            "PTE_MARKER_UFFD_WP into none PTEs when userfaultfd_wp_use_markers, do_pte_missing for a marker fault); version from the date"),
        new(Feature.UffdPoison, V(6, 6), Forever,
            "Axel Rasmussen 'mm: userfaultfd: add new UFFDIO_POISON ioctl' (v2 posted 2023-06-29, read: mfill_atomic_pte_poison sets " +
            "make_pte_marker(PTE_MARKER_UFFD_POISON) into a none PTE under the PTL with no invalidation, handle_pte_marker returns " +
            "VM_FAULT_HWPOISON; hugetlb support in the same series); merged for 6.6, from the date"),
        new(Feature.KsmBreakUnshare, V(6, 2), Forever, "5f5f2ddd189d 'mm/ksm: fix KSM COW breaking with userfaultfd-wp via FAULT_FLAG_UNSHARE' (David Hildenbrand, v2 2022-10-21, so the 6.2 merge window; patch seen): before, break_ksm's fake write fault hit handle_userfault without FAULT_FLAG_ALLOW_RETRY, got VM_FAULT_SIGBUS and returned 0 with the page still merged"),

        new(Feature.GupPinCounting, V(5, 7), Forever, "fc1d8e7cca2d 'mm/gup: track FOLL_PIN pages' (GUP_PIN_COUNTING_BIAS) + 47e29d32afba (hpage_pinned_refcount for huge pages), 5.7 (recollection; pin_user_pages itself is 5.6)"),
        new(Feature.CowReuseByRefcount, V(5, 9), Forever, "09854ba94c6a 'mm: do_wp_page() simplification' (Linus, 5.9): page_count != 1 -> copy; 5.8 and earlier reuse_swap_page (mapcount)"),
        new(Feature.ForkCopiesPinnedPages, V(5, 9), Forever, "Peter Xu's series merged by Linus for 5.9: 008cfe4418b3 mm->has_pinned, 70e806e4e645 'mm: Do early cow for pinned pages during fork() for ptes', 7a4830c380f3 'mm/thp: Split huge pmds/puds if they're pinned when fork()' (commit text seen)"),
        new(Feature.PageAnonExclusiveReuse, V(5, 19), Forever, "6c287605fd56 'mm: remember exclusively mapped anonymous pages with PG_anon_exclusive' (David Hildenbrand, 5.19); THP: 3bff7e3f1f16 'mm/huge_memory: streamline COW logic in do_huge_pmd_wp_page()' (5.18 or 5.19: recollection; no era lies between them)"),
        new(Feature.GupUnshareAnon, V(5, 19), Forever, "c89357e27f20 'mm: support GUP-triggered unsharing of anonymous pages' + a7f226604170 'mm/gup: trigger FAULT_FLAG_UNSHARE when R/O-pinning a possibly shared anonymous page' (5.19)"),
        new(Feature.GupUnshareCowNonAnon, V(6, 2), Forever, "84209e87c696 'mm/gup: reliable R/O long-term pinning in COW mappings' with 'mm: extend FAULT_FLAG_UNSHARE support to anything in a COW mapping' (series posted 2022-11-16, lkml 20221116102659.70287-9, commit text seen; so merged for 6.2): gup_must_unshare is true for non-anon pages in COW mappings under FOLL_LONGTERM"),
    ];

    /// <summary>
    /// A release candidate whose behaviour differs from its release: (feature, on/off) applied over the version's
    /// feature set. 4.13-rc1 carried c7ab0d2fdc84, which moved invalidate_page back under the PTL while callbacks had
    /// been sleepable since 3.6 (the over-correction of §5(a)); 4.13 final killed invalidate_page.
    /// </summary>
    static readonly Dictionary<string, (Feature Feature, bool On)[]> Overrides = new()
    {
        ["4.13-rc1"] =
        [
            (Feature.InvalidatePage, true),
            (Feature.InvalidatePageUnderPtl, true),
            (Feature.InvalidatePageAfterPtl, false),
            (Feature.RmapRangeNotify, false),
            // §5(d8): the KSM/TLB-batching fix series was posted on v4.13-rc2, so 4.13-rc1 is still buggy.
            (Feature.KsmTlbFlushPending, false),
            (Feature.TlbGatherFlushPending, false),
        ],
    };

    static readonly (string Name, KernelVersion Version, string Summary)[] EraList =
    [
        ("2.6.27", V(2, 6, 27), "MMU notifiers introduced: release, clear_flush_young, invalidate_page (under PTL), start/end; RCU read side"),
        ("2.6.32", V(2, 6, 32), "KSM, change_pte + set_pte_at_notify (set, then notify; no start/end); change_pte falls back to invalidate_page"),
        ("3.6", V(3, 6), "invalidate_page moved after the PTL is dropped (race 5(a)); KVM retry barriers"),
        ("3.7", V(3, 7), "global SRCU (callbacks may sleep); set_pte_at_notify bracketed by start/end: change_pte becomes dead for KVM"),
        ("3.10", V(3, 10), "(reference tree) same notifier semantics as 3.7"),
        ("3.19", V(3, 19), "invalidate_range for IOMMU/ATS; *_clear_flush_notify call it under the PTL"),
        ("4.10", V(4, 10), "OOM reaper unmaps without notifiers (5(d3)); clear_flush_young takes a range since 4.0"),
        ("4.12", V(4, 12), "last era with invalidate_page (single address, after the PTL)"),
        ("4.13-rc1", V(4, 13), "c7ab0d2fdc84: invalidate_page back under the PTL, but callers may sleep since 3.6 (over-correction)"),
        ("4.13", V(4, 13), "invalidate_page killed; rmap walkers use start/end over the whole mapping + invalidate_range under PTL"),
        ("4.15", V(4, 15), "only_end; OOM reaper skips mms with blockable notifiers"),
        ("4.19", V(4, 19), "blockable start returning int; OOM reaper uses nonblock start per VMA"),
        ("5.5", V(5, 5), "mmu_notifier_range with events; get/put; mmu_interval_notifier"),
        ("5.13", V(5, 13), "KVM rwlock mmu_lock; generic hva walker skips mmu_lock without a slot; change_pte WARNs; memslots wait"),
        ("6.1", V(6, 1), "KVM mmu_invalidate_* rename; last era with KVM invalidate_range"),
        ("6.6", V(6, 6), "invalidate_range -> arch_invalidate_secondary_tlbs from the TLB flush; only_end gone"),
        ("6.7", V(6, 7), "PAGEMAP_SCAN ioctl, whose write-protect start/end runs outside mmap_lock (CVE-2024-26617, catalog e4; fixed in 6.8, 6.7.3)"),
        ("6.8", V(6, 8), "KVM gfn-range retry, early unsafe retry checks (reference tree)"),
        ("6.10", V(6, 10), "change_pte and set_pte_at_notify removed"),
        ("6.13", V(6, 13), "KVM x86 marks folios dirty/accessed at fault time under mmu_lock, not on zap"),
        ("6.14", V(6, 14), "(reference) no modelled change to the notifier or KVM's handling of it since 6.13 (docs/eras.md)"),
        ("6.15", V(6, 15), "KVM x86 ages SPTEs locklessly: aging callbacks never take mmu_lock (TDP and shadow MMU)"),
        ("6.16", V(6, 16), "(reference) same modelled semantics as 6.15 (docs/eras.md)"),
        ("6.17", V(6, 17), "(reference) same modelled semantics as 6.15 (docs/eras.md)"),
        ("6.18", V(6, 18), "(this machine's kernel) as 6.15, and ksm_fork resets the child's KSM counters (docs/eras.md)"),
    ];

    static readonly Lazy<IReadOnlyList<KernelEra>> _eras = new(BuildAll);

    /// <summary>Every named era, oldest first.</summary>
    public static IReadOnlyList<KernelEra> All => _eras.Value;

    /// <summary>The era used when a scenario or command names none.</summary>
    public static KernelEra Default => Get("6.13");

    static IReadOnlyList<KernelEra> BuildAll()
    {
        int words = (Enum.GetValues<Feature>().Length + 63) / 64;
        var list = new List<KernelEra>();
        foreach (var (name, v, summary) in EraList)
        {
            var bits = new ulong[words];
            foreach (var r in Features)
                if (v >= r.Since && v < r.Until) bits[(int)r.Feature >> 6] |= 1UL << ((int)r.Feature & 63);
            var era = new KernelEra(name, v, summary, bits);
            if (Overrides.TryGetValue(name, out var changes))
                foreach (var (f, on) in changes) era = era.With(f, on);
            list.Add(era);
        }
        return list;
    }

    /// <summary>Look up a named era. Accepts <c>6.10+</c>, <c>v4.19</c> and <c>latest</c>.</summary>
    public static bool TryGet(string name, out KernelEra era)
    {
        var t = name.Trim();
        if (t.Equals("latest", StringComparison.OrdinalIgnoreCase)) t = All[^1].Name;
        foreach (var e in All)
            if (e.Name.Equals(t, StringComparison.OrdinalIgnoreCase)) { era = e; return true; }
        if (KernelVersion.TryParse(t, out var v))
            foreach (var e in All)
                if (e.Version == v && !Overrides.ContainsKey(e.Name)) { era = e; return true; }
        era = null!;
        return false;
    }

    public static KernelEra Get(string name) =>
        TryGet(name, out var e) ? e : throw new ArgumentException($"unknown era '{name}' (known: {KnownList})");

    public static string KnownList => string.Join(", ", EraList.Select(e => e.Name));
}
