namespace MmuSim.Eras;

/// <summary>
/// One behavioural difference between kernel versions. Call sites ask <c>Era.Has(Feature.X)</c>; the version range of
/// every feature lives in one table, <see cref="EraTable.Features"/>. Sources: kernel-facts.md §1.0 timeline, §3, §4.
/// </summary>
public enum Feature
{
    // ---- struct mmu_notifier_ops: which callbacks exist (§1.1)
    Release,
    ClearFlushYoung,
    /// <summary>clear_flush_young(mn, mm, start, end) instead of (address); PMD-sized ranges from aging (57128468080a).</summary>
    ClearFlushYoungRange,
    ClearYoung,
    TestYoung,
    ChangePte,
    InvalidatePage,
    InvalidateRangeStartEnd,
    /// <summary>invalidate_range (IOMMU/ATS) callback, called under the PTL by the *_clear_flush_notify helpers and from end.</summary>
    InvalidateRange,
    /// <summary>arch_invalidate_secondary_tlbs, called from the arch TLB flush.</summary>
    ArchInvalidateSecondaryTlbs,
    /// <summary>mmu_notifier_get/put with alloc_notifier/free_notifier.</summary>
    NotifierGetPut,
    /// <summary>mmu_interval_notifier with invalidate_seq, read_begin/read_retry.</summary>
    IntervalNotifier,

    // ---- core dispatch semantics (§1.3, §2)
    /// <summary>Global SRCU read side: callbacks may sleep. Before: RCU, callbacks run atomic.</summary>
    SrcuReadSide,
    /// <summary>start takes blockable and returns int; invalidate_range_start_nonblock exists.</summary>
    BlockableStart,
    /// <summary>struct mmu_notifier_range with MMU_NOTIFY_* events.</summary>
    RangeEvents,
    /// <summary>On a failed non-blocking start, end is called for every subscription with an invalidate_range_end, and a
    /// subscription whose start can fail may not have one (WARN_ON): c2655835fd8c, 5.12 (catalog e7).</summary>
    NonblockFailureCallsEnd,
    /// <summary>mmu_notifier_invalidate_range_only_end (IR already done under the PTL).</summary>
    OnlyEnd,
    /// <summary>__mmu_notifier_change_pte falls back to invalidate_page when change_pte is not implemented.</summary>
    ChangePteFallbackToInvalidatePage,
    /// <summary>set_pte_at_notify sets the PTE first, then notifies (2.6.32). Later: notify, then set.</summary>
    SetPteThenNotify,
    /// <summary>Every set_pte_at_notify caller (COW, KSM, uprobes) is bracketed by start/end (6bdb913f0a70).</summary>
    SetPteAtNotifyBracketed,
    /// <summary>invalidate_page is called with the PTL held (ptep_clear_flush_notify).</summary>
    InvalidatePageUnderPtl,
    /// <summary>invalidate_page is called after pte_unmap_unlock (2ec74c3ef2d8): race §5(a).</summary>
    InvalidatePageAfterPtl,
    /// <summary>rmap walkers (try_to_unmap_one, page_mkclean_one) notify with start/end sized to the whole mapping (4.13).</summary>
    RmapRangeNotify,
    /// <summary>
    /// try_to_unmap_one asks ptep_clear_flush_young_notify unless TTU_IGNORE_ACCESS (reclaim did not pass it); inside the
    /// 4.13+ start/end scope the secondary's part of that question is dead (§5(d7) part 1). Gone with 013339df116c.
    /// </summary>
    TtuYoungCheck,
    /// <summary>tlb_flush_mmu_tlbonly calls invalidate_range before batched pages are freed.</summary>
    ZapInvalidateRangeOnFlush,

    // ---- primary mm
    /// <summary>Transparent huge pages (anon).</summary>
    Thp,
    /// <summary>mprotect starts its range lazily at the first populated PMD.</summary>
    MprotectLazyStart,
    /// <summary>OOM reaper exists.</summary>
    OomReaper,
    /// <summary>OOM reaper unmaps with no notifier at all (§5(d3)).</summary>
    OomReaperNoNotifier,
    /// <summary>OOM reaper skips mms with blockable notifiers (4.15).</summary>
    OomReaperSkipsNotifierMm,
    /// <summary>OOM reaper uses invalidate_range_start_nonblock per VMA and retries on -EAGAIN.</summary>
    OomReaperNonblock,
    /// <summary>page_mkclean_one calls invalidate_range(cstart, cend) under the PTL for each cleaned entry (4.13-4.14).</summary>
    MkcleanInvalidateRange,
    /// <summary>madvise(MADV_FREE) (4.5).</summary>
    MadvFree,
    /// <summary>uprobes __replace_page (kernel/events/uprobes.c).</summary>
    Uprobes,

    // ---- KVM (§3)
    /// <summary>mmu_lock is an rwlock: notifiers write, TDP faults read. Before: spinlock.</summary>
    KvmMmuRwLock,
    /// <summary>smp_wmb between seq++ and count-- in end, smp_rmb in the retry check (a355aa54f1d2).</summary>
    KvmRetryBarriers,
    /// <summary>Remote TLB flush before mmu_lock is dropped (2.6.32 flushed after unlock).</summary>
    KvmFlushBeforeUnlock,
    /// <summary>change_pte bumps mmu_notifier_seq and calls kvm_set_spte_hva.</summary>
    KvmChangePteSeqBump,
    /// <summary>change_pte WARNs unless inside start/end and returns early when count is 0 (c13fda237f08).</summary>
    KvmChangePteWarnEarlyReturn,
    /// <summary>KVM implements invalidate_range (APIC access page reload).</summary>
    KvmInvalidateRange,
    /// <summary>__kvm_handle_hva_range takes mmu_lock only when a memslot matches (071064f14d87).</summary>
    KvmSkipLockWithoutSlot,
    /// <summary>Memslot updates wait for mn_active_invalidate_count == 0 (52ac8b358b0c).</summary>
    KvmMemslotWaitsForInvalidations,
    /// <summary>kvm_mmu_notifier_invalidate_range_end WARNs instead of decrementing a zero mn_active_invalidate_count (6.9+).</summary>
    KvmActiveInvalidateUnderflowGuard,
    /// <summary>The in-progress range is a gfn union and the retry check is mmu_invalidate_retry_gfn.</summary>
    KvmRetryGfnRange,
    /// <summary>Lockless mmu_invalidate_retry_gfn_unsafe before and after GUP.</summary>
    KvmEarlyUnsafeRetry,
    /// <summary>Zap transfers SPTE dirty/accessed to the folio (kvm_set_pfn_dirty). Removed in 6.13.</summary>
    KvmZapMarksDirty,
    /// <summary>Folio marked dirty at fault time under mmu_lock; page ref released under the lock (6.13).</summary>
    KvmDirtyAtFault,
    /// <summary>The mmu_notifier_* fields are named mmu_invalidate_* (6.1). Trace and diagram naming only.</summary>
    KvmMmuInvalidateNames,
    /// <summary>The in-progress range is an hva union and x86 faults use mmu_notifier_retry_hva (5.13-6.7).</summary>
    KvmRetryHvaRange,
    /// <summary>The kvm_page_fault tracepoint prints vcpu and rip ("vcpu %u rip 0x%lx address 0x%016llx error_code 0x%llx").</summary>
    KvmPageFaultTraceVcpu,
    /// <summary>PPC e500 (booke) checks mmu_notifier_retry under mmu_lock while mapping (Bharat Bhushan, §5(d2)); before, its fault path never did.</summary>
    KvmE500RetryCheck,
    /// <summary>direct_pte_prefetch / FNAME(pte_prefetch) return early while mmu_invalidate_in_progress (David Stevens, 5.13).</summary>
    KvmPrefetchSkipsInvalidation,
    /// <summary>
    /// x86 (TDP and shadow MMU) ages SPTEs without mmu_lock: kvm_age_hva_range sets range.lockless
    /// (CONFIG_KVM_MMU_LOCKLESS_AGING), so kvm_handle_hva_range never takes the lock and kvm_age_gfn/kvm_test_age_gfn
    /// run under kvm->srcu (and RCU) alone with atomic bit clears (James Houghton's series, 6.15).
    /// </summary>
    KvmLocklessAging,

    /// <summary>Aging without A bits marks SPTEs for access tracking (they stay shadow-present, so a later unmap zaps and
    /// flushes them) instead of unmapping them without a flush (kvm_age_hva's kvm_unmap_rmapp before 4.12).</summary>
    KvmAccessTrackNoAd,

    /// <summary>
    /// guest_memfd (KVM_CREATE_GUEST_MEMFD) and KVM_SET_MEMORY_ATTRIBUTES: private guest memory in a KVM-owned file that
    /// no host mm maps, bound to memslots through KVM_SET_USER_MEMORY_REGION2; its own invalidation (punch hole, release).
    /// </summary>
    KvmGuestMemfd,

    /// <summary>KVM_PRE_FAULT_MEMORY (x86, TDP only): map a gpa range into the secondary MMU before the guest runs, under kvm->srcu for the whole range.</summary>
    KvmPreFaultMemory,

    /// <summary>kvm_mmu_faultin_pfn: a prefault that hits a KVM_MEMSLOT_INVALID slot returns -EAGAIN instead of RET_PF_RETRY (3ccbf6f47098).</summary>
    KvmPreFaultInvalidSlotEagain,

    /// <summary>KVM_USER_MEM_SLOTS is 32764 (SHRT_MAX - 3 private slots) instead of 509 (x86) / 512: KVM_CAP_NR_MEMSLOTS.</summary>
    KvmUserMemslots32764,

    // ---- KSM (§4.1)
    Ksm,
    /// <summary>write_protect_page checks mapcount + 2 + swapped == refcount (2.6.32); later + 1.</summary>
    KsmMapcountPlusTwo,
    /// <summary>write_protect_page also triggers on pte_dirty (not only pte_write).</summary>
    KsmWriteProtectDirty,
    /// <summary>write_protect_page also triggers when mm_tlb_flush_pending (§5(d8)).</summary>
    KsmTlbFlushPending,
    /// <summary>KSM clears PTEs with ptep_clear_flush_notify (calls invalidate_range under the PTL).</summary>
    KsmClearFlushNotify,
    /// <summary>use_zero_pages knob.</summary>
    KsmUseZeroPages,
    /// <summary>Stable-node chains bounded by max_page_sharing.</summary>
    KsmStableNodeChains,
    /// <summary>PR_SET_MEMORY_MERGE (process-wide merge-any).</summary>
    KsmMergeAny,
    /// <summary>ksm_zero_pages counter and per-process ksm_merging_pages.</summary>
    KsmZeroPagesCounter,
    /// <summary>MMF_VM_MERGE_ANY is in MMF_INIT_MASK: PR_SET_MEMORY_MERGE survives execve (the flag only; no mm_slot yet).</summary>
    KsmMergeAnyAcrossExec,
    /// <summary>ksm_execve: an exec'd mm with MMF_VM_MERGE_ANY is entered into KSM's mm list, so ksmd scans it.</summary>
    KsmExecveEntersMm,
    /// <summary>ksm_fork zeroes the child's ksm_merging_pages and ksm_rmap_items (before: dup_mm's copy of the parent's).</summary>
    KsmForkResetsCounters,
    /// <summary>try_to_merge_two_pages allocates a fresh kpage and replace_page()s both pages into it (2.6.32 only).</summary>
    KsmAllocKpage,
    /// <summary>write_protect_page restores the PTE with set_pte_at_notify when the refcount check fails (later: set_pte_at).</summary>
    KsmRestoreNotify,
    /// <summary>merge_across_nodes knob (NUMA).</summary>
    KsmMergeAcrossNodes,
    /// <summary>smart_scan: rmap_items that repeatedly fail to merge are skipped (pages_skipped).</summary>
    KsmSmartScan,
    /// <summary>cmp_and_merge_page checks the checksum (and zero page) before searching the stable tree.</summary>
    KsmChecksumBeforeStableSearch,

    // ---- KVM gfn_to_pfn_cache (§3.2 [6.8], §5(d6))
    /// <summary>
    /// gfn_to_pfn_cache with invalidation (982ed0de4753, 5.17): kernel-side cached gpa → uhva → pfn mappings, invalidated
    /// from invalidate_range_start before the hva walker; refresh retries while mn_active_invalidate_count != 0.
    /// </summary>
    KvmPfnCache,

    // ---- KVM dirty logging modes
    /// <summary>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT(2) and KVM_CLEAR_DIRTY_LOG: KVM_GET_DIRTY_LOG only copies, KVM_CLEAR_DIRTY_LOG clears and write-protects.</summary>
    KvmManualDirtyLogProtect,
    /// <summary>KVM_DIRTY_LOG_INITIALLY_SET: a slot starts logging with every bit set and nothing write-protected.</summary>
    KvmDirtyLogInitiallySet,
    /// <summary>KVM_CAP_DIRTY_LOG_RING: per-vCPU dirty rings, KVM_EXIT_DIRTY_RING_FULL, KVM_RESET_DIRTY_RINGS.</summary>
    KvmDirtyRing,

    // ---- primary TLB batching (§5(d8))
    /// <summary>tlb_gather_mmu raises mm->tlb_flush_pending until tlb_finish_mmu (99baac21e458), and clear_refs batches its
    /// flush with an mmu_gather (b3a81d0841a95); before, only change_protection raised it and clear_refs used flush_tlb_mm.</summary>
    TlbGatherFlushPending,
    /// <summary>/proc/PID/clear_refs accepts 4 (CLEAR_REFS_SOFT_DIRTY): write-protect and clear soft-dirty on every PTE.</summary>
    ClearRefsSoftDirty,
    /// <summary>The PAGEMAP_SCAN ioctl on /proc/PID/pagemap (6.7+), with PM_SCAN_WP_MATCHING bracketed by PROTECTION_VMA start/end.</summary>
    PagemapScan,
    /// <summary>PAGEMAP_SCAN calls start/end under mmap_lock, per walk iteration (6.8+; 6.7.3 stable; CVE-2024-26617, catalog e4).</summary>
    PagemapScanNotifyUnderMmapLock,
    /// <summary>mprotect upgrades make exclusive anonymous PTEs writable at once (MM_CP_TRY_CHANGE_WRITABLE, 64fe24a3e05e).</summary>
    MprotectTryChangeWritable,

    // ---- GUP pins and COW (mm/gup.c, mm/memory.c; selftests/mm/cow.c)
    /// <summary>
    /// FOLL_PIN is counted (pin_user_pages, fc1d8e7cca2d + 47e29d32afba, 5.7): a small folio gains GUP_PIN_COUNTING_BIAS
    /// (1024) references per pin, a large folio one reference and one _pincount. Before, a pin is a plain reference.
    /// </summary>
    GupPinCounting,
    /// <summary>
    /// do_wp_page reuses an anonymous 4 KiB page only when page_count is 1 (09854ba94c6a "mm: do_wp_page() simplification",
    /// 5.9). Before, reuse_swap_page decided by the mapcount alone, so an extra (GUP) reference did not prevent reuse.
    /// </summary>
    CowReuseByRefcount,
    /// <summary>
    /// fork copies a possibly DMA-pinned anonymous page for the child instead of sharing it write-protected (mm->has_pinned
    /// 008cfe4418b3, 70e806e4e645 for PTEs, 7a4830c380f3 splitting pinned huge PMDs; 5.9; page_needs_cow_for_dma later).
    /// </summary>
    ForkCopiesPinnedPages,
    /// <summary>
    /// PG_anon_exclusive decides COW reuse (6c287605fd56, 5.19; THP: 3bff7e3f1f16): a page marked exclusive is reused
    /// whatever its refcount; a shared one only when page_count is 1 (then it is marked exclusive again).
    /// </summary>
    PageAnonExclusiveReuse,
    /// <summary>
    /// FAULT_FLAG_UNSHARE (c89357e27f20) and a R/O FOLL_PIN of a possibly shared anonymous page unshares it first
    /// (gup_must_unshare, a7f226604170; 5.19): the unshare fault reuses or copies and maps the page read-only.
    /// </summary>
    GupUnshareAnon,
    /// <summary>
    /// A R/O FOLL_LONGTERM pin in a private (COW) mapping unshares non-anonymous pages too, the shared zero page
    /// included (84209e87c696 "mm/gup: reliable R/O long-term pinning in COW mappings", 6.2).
    /// </summary>
    GupUnshareCowNonAnon,
    // ---- HMM and ZONE_DEVICE memory (kernel-facts §4.9, §6; lib/test_hmm.c)
    /// <summary>lib/test_hmm.c (the dmirror device) and hmm_range_fault on an mmu_interval_notifier.</summary>
    TestHmm,
    /// <summary>migrate_vma_collect's invalidation is MMU_NOTIFY_MIGRATE with range->owner = pgmap_owner, so the
    /// device that owns the pages can skip it (before: MMU_NOTIFY_CLEAR without owner).</summary>
    MigrateEventOwner,
    /// <summary>make_device_exclusive(_range): device-exclusive entries and MMU_NOTIFY_EXCLUSIVE; dmirror EXCLUSIVE/CHECK_EXCLUSIVE.</summary>
    DeviceExclusive,
    /// <summary>MEMORY_DEVICE_COHERENT pages (CPU-addressable device memory) and dmirror's MIGRATE_TO_SYS.</summary>
    DeviceCoherent,
    /// <summary>migrate_device_range (eviction of device pages by pfn) and dmirror RELEASE.</summary>
    MigrateDeviceRange,
    /// <summary>migrate_vma of device-private THPs (MIGRATE_PFN_COMPOUND) and dmirror FLAGS (FAIL_ALLOC).</summary>
    DevicePrivateThp,
    // ---- madvise advice of issue 12 (mm/madvise.c, mm/khugepaged.c)
    /// <summary>MADV_WIPEONFORK / MADV_KEEPONFORK (d2cd9ede6e19, 4.14): the child of fork gets the VMA empty.</summary>
    MadvWipeOnFork,
    /// <summary>MADV_POPULATE_READ / MADV_POPULATE_WRITE (4ca9b3859dac, 5.14): prefault through GUP without taking pages.</summary>
    MadvPopulate,
    /// <summary>MADV_COLLAPSE (7d8faaf15545, 6.1): synchronous khugepaged collapse of the PMD ranges in the advice range.</summary>
    MadvCollapse,

    // ---- khugepaged on shmem (mm/khugepaged.c collapse_file; issue 11 row e6)
    /// <summary>khugepaged collapses shmem ranges into a huge page-cache folio (collapse_shmem, later collapse_file) and
    /// retract_page_tables drops the mappings' empty page tables (f3f0e1d2150b, 4.8).</summary>
    KhugepagedShmemCollapse,
    /// <summary>collapse_pte_mapped_thp: khugepaged later retracts the page table of a range that PTE-maps a file THP
    /// (retract_page_tables' mmap_lock trylock failed), removing present PTEs (27e1f8273113, 5.4).</summary>
    CollapsePteMappedThp,
    /// <summary>collapse_and_free_pmd brackets pmdp_collapse_flush with an MMU_NOTIFY_CLEAR start/end (f268f6cf875f,
    /// CVE-2022-48991, 6.1); before, secondaries kept translations of the PTEs collapse_pte_mapped_thp removed.</summary>
    CollapseFileNotifies,
    /// <summary>MADV_COLLAPSE of shmem and file ranges (34488399fa08, 6.1): hpage_collapse_scan_file and collapse_file
    /// without khugepaged's limits, and the result mapped by a PMD in the caller's mm (58ac9a8993a1,
    /// collapse_pte_mapped_thp with install_pmd).</summary>
    MadvCollapseFile,
    /// <summary>retract_page_tables walks every mapping for MADV_COLLAPSE too (1d65b771bc08, 6.6: retraction without
    /// mmap_lock); 6.1-6.5 MADV_COLLAPSE leaves the other mappings to khugepaged.</summary>
    RetractAllMappings,
    /// <summary>Hugh Dickins' "free retracted page table by RCU" series (6.6): retract_page_tables takes no mmap_lock
    /// (1d65b771bc08; the anon_vma and uffd-wp checks are repeated under the PMD and PTE locks, the table is freed with
    /// pte_free_defer and pte_offset_map_lock rechecks the PMD), collapse_pte_mapped_thp runs under mmap_read_lock and
    /// clears the PTEs inside its CLEAR range, and khugepaged_collapse_pte_mapped_thps and its pte_mapped_thp[] list are
    /// gone: khugepaged calls collapse_pte_mapped_thp at once for a PTE-mapped THP it finds.</summary>
    RetractLockless,

    // ---- device drivers (issue 11)
    /// <summary>Xen gntdev's notifier unmaps grants asynchronously instead of waiting for the pages to be unused (dbe97cff7dd9, 5.19; catalog e8).</summary>
    GntdevAsyncUnmap,

    // ---- hugetlb (issue 12)
    /// <summary>move_pages/migrate_pages migrate hugetlb folios (e632a938d914, 3.12): unmap_and_move_huge_page with hugetlb migration entries.</summary>
    HugetlbMigration,
    /// <summary>THP migration (CONFIG_ARCH_ENABLE_THP_MIGRATION, 616b8371539a + 84c3fc4e9c56, 4.14): migrate_pages moves a
    /// PMD-mapped anonymous THP whole through a PMD migration entry (set_pmd_migration_entry / remove_migration_pmd);
    /// before, migration split the THP first (FOLL_SPLIT in move_pages, split_huge_page in unmap_and_move).</summary>
    ThpMigration,
    /// <summary>Migration entries remember the A/D bits (2e3468778dbe, 6.1): try_to_migrate_one, set_pmd_migration_entry and
    /// migrate_vma_collect_pmd store the old entry's young and dirty bits (SWP_MIG_YOUNG/DIRTY), remove_migration_pte/pmd
    /// restore them (dirty only if the folio still is); before, the new mapping was always old and clean.</summary>
    MigrationEntryAd,

    // ---- notifier bugs found since 2018 (issue 11)
    /// <summary>mmu_interval_notifier_remove waits for the deferred list under subscriptions->lock (mmu_interval_seq_released,
    /// 319561669a59, 5.18); before, an unlocked read of invalidate_seq let it return while mn_itree_inv_end still walked it.</summary>
    IntervalRemoveSeqLocked,
    /// <summary>do_swap_page takes a reference on a device-private page under the PTL (after pte_same) before
    /// ->migrate_to_ram, and passes it to migrate_vma as fault_page (16ce101db85d, 6.1); before, the page could be freed under the callback.</summary>
    DevicePrivateFaultRef,

    // ---- userfaultfd (issue 12 item 7, issue 9 item 4; fs/userfaultfd.c, mm/userfaultfd.c)
    /// <summary>userfaultfd(2) with UFFDIO_REGISTER_MODE_MISSING on anonymous memory, UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE.</summary>
    Userfaultfd,
    /// <summary>userfaultfd MISSING on shmem (shmem_mfill_atomic_pte).</summary>
    UffdShmem,
    /// <summary>UFFDIO_REGISTER_MODE_WP and UFFDIO_WRITEPROTECT on anonymous memory (the uffd-wp PTE bit).</summary>
    UffdWp,
    /// <summary>UFFDIO_REGISTER_MODE_MINOR and UFFDIO_CONTINUE on shmem.</summary>
    UffdMinorShmem,
    /// <summary>userfaultfd MISSING on hugetlb memory: hugetlb_no_page hands the fault to userspace, UFFDIO_COPY places
    /// whole huge pages (hugetlb_mfill_atomic_pte).</summary>
    UffdHugetlb,
    /// <summary>/dev/userfaultfd (USERFAULTFD_IOC_NEW), access control without vm.unprivileged_userfaultfd.</summary>
    UffdDevice,
    /// <summary>/proc/PID/pagemap reports uffd-wp (PM_UFFD_WP, bit 57) for PTEs and swap entries.</summary>
    PagemapUffdWp,
    /// <summary>UFFDIO_REGISTER_MODE_MINOR and UFFDIO_CONTINUE on hugetlb (hugetlbfs page cache).</summary>
    UffdMinorHugetlb,
    /// <summary>uffd_wp_range passes MM_CP_TRY_CHANGE_WRITABLE on resolve: an exclusive anon page is writable right away.</summary>
    UffdWpResolveTryWritable,
    /// <summary>mremap of hugetlb VMAs (move_hugetlb_page_tables); EINVAL before.</summary>
    HugetlbMremap,
    /// <summary>UFFDIO_MOVE and UFFD_FEATURE_MOVE: move exclusive anonymous pages between addresses (zero copy).</summary>
    UffdMove,
    /// <summary>UFFD_FEATURE_WP_HUGETLBFS_SHMEM: UFFDIO_REGISTER_MODE_WP on shmem (file PTE markers keep the protection of
    /// none and zapped PTEs) and on hugetlb (the huge entry's bit and hugetlb markers).</summary>
    UffdWpShmem,
    /// <summary>The non-cooperative userfaultfd events: UFFD_FEATURE_EVENT_FORK, EVENT_REMAP, EVENT_REMOVE.</summary>
    UffdNonCooperativeEvents,
    /// <summary>UFFD_FEATURE_WP_UNPOPULATED: UFFDIO_WRITEPROTECT on anonymous memory also protects none PTEs, with a
    /// PTE_MARKER_UFFD_WP marker (the first PTE markers on anonymous memory).</summary>
    UffdWpUnpopulated,
    /// <summary>UFFDIO_POISON and UFFD_FEATURE_POISON: install PTE_MARKER_POISONED into none PTEs; an access is VM_FAULT_HWPOISON.</summary>
    UffdPoison,
    /// <summary>mmu_notifier_register publishes the subscription with hlist_add_head_rcu (a store-release), 543bdb2d825f.</summary>
    NotifierHlistAddRcu,

    /// <summary>The huge zero page: a read fault on a THP-eligible anonymous range maps one shared, zero-filled 2 MiB folio
    /// with a read-only PMD (transparent_hugepage/use_zero_page).</summary>
    HugeZeroPage,

    /// <summary>Multi-size THP for anonymous memory: an anon write fault may allocate a 16 KiB .. 1 MiB folio and map it
    /// with PTEs (alloc_anon_folio), controlled per size by /sys/kernel/mm/transparent_hugepage/hugepages-&lt;size&gt;kB/enabled.</summary>
    AnonMthp,

    // ---- idle page tracking (issue 9 item 5; mm/page_idle.c)
    /// <summary>/sys/kernel/mm/page_idle/bitmap: PG_idle/PG_young, aged through ptep_clear_young_notify (clear_young, no flush).</summary>
    IdlePageTracking,

    // ---- the multi-gen LRU (issue 9 item 5; mm/vmscan.c, Mm/LruGen.cs)
    /// <summary>CONFIG_LRU_GEN: generations per lruvec, the aging's page-table walk (walk_mm), lru_gen_look_around from
    /// folio_referenced_one, /sys/kernel/mm/lru_gen/enabled and /sys/kernel/debug/lru_gen.</summary>
    LruGen,

    /// <summary>MGLRU's walk and look-around age through ptep/pmdp_clear_young_notify and visit old entries of an mm with
    /// notifiers, so the secondaries' Accessed state promotes folios; before, only the primary's young bit counted.</summary>
    LruGenYoungNotify,

    // ---- NUMA and migration (issue 12 item 6; mm/migrate.c, mm/mempolicy.c, mm/ksm.c)
    /// <summary>KSM folios migrate like anon ones (ksm_migrate_folio moves the stable node's kpfn); before, NUMA migration
    /// skipped PageKsm (move_pages status -ENOENT) and only memory hot-remove moved them.</summary>
    KsmFolioMigration,

    /// <summary>break_ksm faults with FAULT_FLAG_UNSHARE (not a fake FAULT_FLAG_WRITE), so a uffd-wp KSM page is unshared.</summary>
    KsmBreakUnshare,

    // ---- splitting a THP (issue 12 item 8: KSM splits a THP in order to merge it)
    /// <summary>split_huge_page fails (-EAGAIN) while anyone but the mappings and the caller holds a reference (the 4.5 THP
    /// refcounting rework, which also unmaps the folio into migration entries during the split, 4.13+ in the model).
    /// Before, a split always succeeded and kept the PTEs mapped.</summary>
    ThpSplitRefcountCheck,
    /// <summary>cmp_and_merge_page splits a THP whose two pages it failed to merge because both belong to it (its own two
    /// references made split_huge_page fail): "1 unshared and the rest volatile" before.</summary>
    KsmSplitSameThp,

    // ---- hugetlb (issue 12 item 5; mm/hugetlb.c)
    /// <summary>MAP_HUGETLB mappings of the hugetlb pool (2 MiB pages, mapped at the PMD level on x86).</summary>
    Hugetlb,
    /// <summary>MAP_HUGE_SHIFT: mmap's flags name the huge page size (MAP_HUGE_2MB), as cow.c asks for it.</summary>
    MapHugeSize,
    /// <summary>fork copies a possibly pinned anon hugetlb page for the child instead of sharing it (early COW).</summary>
    HugetlbForkCopiesPinned,
}
