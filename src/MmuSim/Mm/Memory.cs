using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>vm_fault_t results.</summary>
public enum VmFault : byte
{
    Ok,
    /// <summary>VM_FAULT_RETRY / a pte_same check failed: the caller re-walks.</summary>
    Retry,
    /// <summary>VM_FAULT_SIGSEGV: no VMA, or the access is not allowed by its protection.</summary>
    SigSegv,
    Oom,
    /// <summary>VM_FAULT_SIGBUS / VM_FAULT_HWPOISON: the access hits memory that cannot be provided (a poisoned page).</summary>
    SigBus,
}

/// <summary>What a user access ended with: Ok and the value, or the fatal fault (SigSegv, Oom; Retry = livelock).</summary>
public readonly record struct AccessResult(VmFault Fault, ulong Value);

/// <summary>FAULT_FLAG_*.</summary>
[Flags]
public enum FaultFlags : byte
{
    None = 0,
    Write = 1,
    /// <summary>FAULT_FLAG_UNSHARE: break COW without writing (KSM unmerge, GUP pin).</summary>
    Unshare = 2,
    /// <summary>FAULT_FLAG_REMOTE: on behalf of another task (GUP from KVM/KSM).</summary>
    Remote = 4,
    /// <summary>
    /// A GUP fault with FOLL_FORCE: check_vma_flags already allowed a write to a non-writable private mapping, so the
    /// VMA permission check of the user fault path (the arch fault handler's, done by the model in handle_mm_fault) is skipped.
    /// </summary>
    Force = 8,
    /// <summary>
    /// FAULT_FLAG_ALLOW_RETRY: the caller can take VM_FAULT_RETRY with mmap_lock dropped (user faults, GUP with a
    /// <c>locked</c> argument, populate). Without it handle_userfault cannot wait and returns VM_FAULT_SIGBUS
    /// (break_ksm, hmm_range_fault, an IOMMU's page request).
    /// </summary>
    AllowRetry = 16,
}

/// <summary>
/// mm/memory.c: page faults, COW and the user access that triggers them.
/// Callers hold mmap_lock for read around <see cref="HandleMmFault"/> (faults never take it themselves).
/// </summary>
public static partial class Memory
{
    const ulong PageSize = MmStruct.PageSize;

    /// <summary>handle_mm_fault: resolve a fault at <paramref name="addr"/>. Caller holds mmap_lock (read).</summary>
    /// <remarks>
    /// handle_mm_fault, __handle_mm_fault, handle_pte_fault and do_anonymous_page only dispatch until their first
    /// scheduling point, so they are plain methods returning the callee's ValueTask: a fault that never switches runs
    /// through one async state machine (the leaf's), not four. The points themselves are unchanged.
    /// </remarks>
    public static ValueTask<VmFault> HandleMmFault(MmStruct mm, ulong addr, FaultFlags flags)
    {
        var k = mm.Kernel;
        var ctx = k.S.Current;
        ctx.Enter("handle_mm_fault");
        k.S.Charge(CostKind.Fault);
        k.Stats.Inc(Stat.Faults);
        return ctx.LeaveAfter(HandleMmFaultWalk(mm, addr & MmStruct.PageMask, flags));
    }

    /// <summary>__handle_mm_fault: walk (allocating) to the PMD once, then pick the huge or the PTE path.</summary>
    static ValueTask<VmFault> HandleMmFaultWalk(MmStruct mm, ulong addr, FaultFlags flags)
    {
        bool write = (flags & (FaultFlags.Write | FaultFlags.Unshare)) != 0;
        var vma = mm.FindVma(addr);
        // access_error (x86): a read needs vma_is_accessible (any of r/w/x), a write VM_WRITE (or FOLL_FORCE). It belongs
        // to the user fault (do_user_addr_fault): a GUP fault with FOLL_FORCE or a remote one (break_ksm's unshare) comes
        // through check_vma_flags instead, so it may fault a PROT_NONE VMA.
        if (vma == null || (vma.Prot == Prot.None && (flags & (FaultFlags.Force | FaultFlags.Remote)) == 0)
            || ((flags & FaultFlags.Write) != 0 && !vma.Writable && (flags & FaultFlags.Force) == 0))
            return new(VmFault.SigSegv);
        if (vma.IsHugetlb) return Hugetlb.HugetlbPages.HugetlbFault(mm, vma, addr, flags);
        int pmdT = mm.PmdAlloc(addr);
        var pmd = new Pte(mm.Kernel.PageTables.Entry(pmdT, PageTablePool.PmdIndex(addr)));
        if (pmd.Present && pmd.Huge)
            return HugeMemory.HugePmdFault(mm, vma, addr, pmd, flags);
        if (pmd.IsMigration) return HugeMemory.PmdMigrationEntryWait(mm, addr, pmd); // is_pmd_migration_entry (4.14+)
        if (pmd.IsNone && vma.File != null && HugeMemory.FileThpSuitable(mm.Kernel, vma, addr))
            return Filemap.DoFault(mm, vma, addr, 0, flags, default, pmdT); // do_fault with vmf->pte NULL: maybe do_set_pmd
        if (!pmd.Present && HugeMemory.ThpEligible(mm, vma, addr))
            return (vma.Flags & VmFlags.UffdMissing) != 0
                ? HugeMemory.DoHugePmdAnonymousPageUserfault(mm, vma, addr, flags) // the PMD stays none
                : CreateHugePmdOrPte(mm, vma, addr, pmdT, flags, write);
        return PteFault(mm, vma, addr, pmdT, flags, write);
    }

    /// <summary>__handle_mm_fault's create_huge_pmd, falling back to the PTE path when it asks for a retry.</summary>
    static async ValueTask<VmFault> CreateHugePmdOrPte(MmStruct mm, Vma vma, ulong addr, int pmdT, FaultFlags flags, bool write)
    {
        var r = await HugeMemory.DoHugePmdAnonymousPage(mm, vma, addr, write);
        if (r != VmFault.Retry) return r;
        return await PteFault(mm, vma, addr, pmdT, flags, write);
    }

    /// <summary>__handle_mm_fault's PTE level: allocate the PTE table, read the PTE and hand it to handle_pte_fault.</summary>
    static ValueTask<VmFault> PteFault(MmStruct mm, Vma vma, ulong addr, int pmdT, FaultFlags flags, bool write)
    {
        int t = mm.PteAllocAt(pmdT, addr);
        if (t == 0) return new(VmFault.Retry); // a huge PMD appeared meanwhile
        var read = mm.PtepGet(t, addr);
        return read.IsCompletedSuccessfully
            ? HandlePteFault(mm, vma, addr, t, read.Result, flags, write)
            : HandlePteFaultAfterRead(mm, vma, addr, t, read, flags, write);
    }

    static async ValueTask<VmFault> HandlePteFaultAfterRead(MmStruct mm, Vma vma, ulong addr, int t, ValueTask<Pte> read, FaultFlags flags, bool write) =>
        await HandlePteFault(mm, vma, addr, t, await read, flags, write);

    /// <summary>handle_pte_fault: dispatch on the PTE read without the PTL.</summary>
    static ValueTask<VmFault> HandlePteFault(MmStruct mm, Vma vma, ulong addr, int t, Pte pte, FaultFlags flags, bool write)
    {
        if (pte.IsNone) return vma.File == null ? DoAnonymousPage(mm, vma, addr, t, flags) : Filemap.DoFault(mm, vma, addr, t, flags);
        if (pte.IsMarker) return HandlePteMarker(mm, vma, addr, t, pte, flags);
        if (pte.IsSwapEntry)
        {
            if (pte.IsMigration) return Migrate.MigrationEntryWait(mm, t, addr, pte);
            if (pte.IsDevicePrivate) return Hmm.DeviceFault.DoSwapPageDevicePrivate(mm, vma, addr, t, pte);
            if (pte.IsDeviceExclusive) return Hmm.DeviceExclusive.RemoveDeviceExclusiveEntry(mm, vma, addr, t, pte);
            return DoSwapPage(mm, vma, addr, t, pte);
        }
        return HandlePresentPteFault(mm, vma, addr, t, pte, flags, write);
    }

    /// <summary>handle_pte_fault's tail for a present PTE: under the PTL, recheck, then do_wp_page or mark young/dirty.</summary>
    static async ValueTask<VmFault> HandlePresentPteFault(MmStruct mm, Vma vma, ulong addr, int t, Pte pte, FaultFlags flags, bool write)
    {
        if (!await mm.PteOffsetMapLock(t, addr)) return VmFault.Retry;
        var cur = await mm.PtepGet(t, addr);
        if (cur != pte)
        {
            await mm.UnlockPtl(t);
            return VmFault.Retry;
        }
        if (write && !pte.Writable) return await DoWpPage(mm, vma, addr, t, pte, flags); // drops the PTL
        // Spurious or access-bit fault: mark young (and dirty for writes).
        var young = pte.WithAccessed(true);
        if ((flags & FaultFlags.Write) != 0) young = young.WithDirty(true).WithSoftDirty(true); // pte_mkdirty
        if (young != pte) await mm.SetPte(t, addr, young);
        await mm.UnlockPtl(t);
        return VmFault.Ok;
    }

    /// <summary>
    /// handle_pte_marker (do_swap_page's marker case, 5.19+): a PTE_MARKER_POISONED entry is VM_FAULT_HWPOISON (SIGBUS
    /// for the task); a PTE_MARKER_UFFD_WP one is faulted in as a none PTE (do_pte_missing) that keeps the bit, or, on a
    /// VMA no longer VM_UFFD_WP, just cleared (pte_marker_clear).
    /// </summary>
    static ValueTask<VmFault> HandlePteMarker(MmStruct mm, Vma vma, ulong addr, int t, Pte marker, FaultFlags flags)
    {
        if (marker.IsPoisonMarker) return new(VmFault.SigBus); // "Poison emulation explicitly requested for this PTE."
        if ((vma.Flags & VmFlags.UffdWp) == 0) return PteMarkerClear(mm, t, addr, marker);
        return vma.File == null ? DoAnonymousPage(mm, vma, addr, t, flags, marker) : Filemap.DoFault(mm, vma, addr, t, flags, marker);
    }

    /// <summary>pte_marker_clear: under the PTL, a marker still there becomes none; the access then faults as usual.</summary>
    static async ValueTask<VmFault> PteMarkerClear(MmStruct mm, int t, ulong addr, Pte marker)
    {
        await mm.LockPtl(t);
        if (await mm.PtepGet(t, addr) == marker) await mm.SetPte(t, addr, Pte.None);
        await mm.UnlockPtl(t);
        return VmFault.Ok;
    }

    /// <summary>
    /// do_anonymous_page: map the zero page for a read, a fresh zeroed page for a write. <paramref name="orig"/> is the
    /// entry the fault found (vmf->orig_pte): none, or a uffd-wp marker (FAULT_FLAG_ORIG_PTE_VALID, 6.4+), whose bit the
    /// new PTE keeps (vmf_orig_pte_uffd_wp), so that the next write is a uffd-wp fault.
    /// </summary>
    public static ValueTask<VmFault> DoAnonymousPage(MmStruct mm, Vma vma, ulong addr, int t, FaultFlags flags, Pte orig = default)
    {
        var ctx = mm.Kernel.S.Current;
        ctx.Enter("do_anonymous_page");
        bool write = (flags & (FaultFlags.Write | FaultFlags.Unshare)) != 0;
        return ctx.LeaveAfter(write ? DoAnonymousWrite(mm, vma, addr, t, flags, orig) : DoAnonymousZeroPage(mm, vma, addr, t, flags, orig));
    }

    /// <summary>do_anonymous_page's "deliver the page fault to userland, check inside PT lock": called with the PTL held on a none PTE.</summary>
    static async ValueTask<VmFault> DoAnonymousUserfault(MmStruct mm, Vma vma, ulong addr, int t, FaultFlags flags)
    {
        await mm.UnlockPtl(t);
        return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, addr, Userfaultfd.UffdReason.Missing, flags);
    }

    /// <summary>do_anonymous_page for a read: map the shared zero page read-only (a special PTE).</summary>
    static async ValueTask<VmFault> DoAnonymousZeroPage(MmStruct mm, Vma vma, ulong addr, int t, FaultFlags flags, Pte orig)
    {
        var k = mm.Kernel;
        k.Stats.Inc(Stat.AnonReadFaults);
        await mm.LockPtl(t);
        var p = await mm.PtepGet(t, addr);
        if (p == orig && (vma.Flags & VmFlags.UffdMissing) != 0) return await DoAnonymousUserfault(mm, vma, addr, t, flags);
        if (p == orig) // !vmf_pte_changed
        {
            await mm.SetPte(t, addr, vma.MkPte(PhysMem.ZeroPfn, writable: false, special: true).WithUffdWp(orig.IsUffdWpMarker));
            k.Stats.Inc(Stat.ZeroPageMaps);
        }
        await mm.UnlockPtl(t);
        return VmFault.Ok;
    }

    /// <summary>
    /// do_anonymous_page for a write: allocate a zeroed folio (<see cref="AllocAnonFolio"/>: an mTHP where the knobs allow
    /// one, 6.8+), recheck under the PTL, map it writable and dirty: one PTE, or set_ptes over the whole large folio with
    /// one reference and one mapcount per page, every page PageAnonExclusive. No notifier: every PTE was none.
    /// </summary>
    static async ValueTask<VmFault> DoAnonymousWrite(MmStruct mm, Vma vma, ulong addr, int t, FaultFlags flags, Pte orig)
    {
        var k = mm.Kernel;
        k.Stats.Inc(Stat.AnonWriteFaults);
        mm.AnonVmaPrepare(vma);
        var (pfn, order) = await AllocAnonFolio(mm, vma, addr, t, orig);
        if (pfn < 0) return VmFault.Oom;
        if (order > 0) return await MapAnonLargeFolio(mm, vma, addr, t, pfn, order);
        k.S.Charge(CostKind.ZeroPage);
        await mm.LockPtl(t);
        var cur = await mm.PtepGet(t, addr);
        if (cur != orig) // vmf_pte_changed
        {
            await mm.UnlockPtl(t);
            Folio.Put(k, pfn);
            return VmFault.Retry;
        }
        if ((vma.Flags & VmFlags.UffdMissing) != 0)
        {
            Folio.Put(k, pfn); // folio_put before handle_userfault
            return await DoAnonymousUserfault(mm, vma, addr, t, flags);
        }
        Folio.AddNewAnonRmap(k, pfn, vma, addr);
        // setpte: pte_mkuffd_wp for a fault on a uffd-wp marker (which also write-protects: the write retries as a WP fault).
        await mm.SetPte(t, addr, vma.MkPte(pfn, writable: vma.Writable, dirty: true).WithUffdWp(orig.IsUffdWpMarker));
        await mm.UnlockPtl(t);
        return VmFault.Ok;
    }

    /// <summary>
    /// alloc_anon_folio (6.8+): the largest order the knobs allow (<see cref="ThpSettings.AllowableOrders"/>, orders
    /// 2..8) whose aligned range lies in the VMA (thp_vma_suitable_orders) and whose PTEs are all none (pte_range_none,
    /// read without the PTL), trying smaller orders when an allocation fails; else one zeroed page. A uffd-armed VMA
    /// (any mode) keeps per-page fault fidelity and gets a small folio; so does a fault on a uffd-wp marker (its PTE
    /// is not none). Returns the folio and its order.
    /// </summary>
    static async ValueTask<(long Pfn, int Order)> AllocAnonFolio(MmStruct mm, Vma vma, ulong addr, int t, Pte orig)
    {
        var k = mm.Kernel;
        int orders = 0;
        if (k.Era.Has(Feature.AnonMthp) && (vma.Flags & VmFlags.UffdAny) == 0 && orig.IsNone)
            orders = k.Thp.AllowableOrders(vma, (1 << PhysMem.HugeOrder) - 1);
        for (int order = PhysMem.HugeOrder - 1; order >= ThpSettings.MinAnonOrder && orders != 0; order--)
        {
            if ((orders & (1 << order)) == 0) continue;
            ulong size = MmStruct.PageSize << order, start = addr & ~(size - 1);
            if (start < vma.Start || start + size > vma.End || !await PteRangeNone(mm, t, start, 1 << order)) continue;
            await k.S.Point(PointKind.Alloc, start);
            long folio = vma.AllocLarge(order);
            if (folio >= 0) return (folio, order); // else next_order: the next smaller allowed size
        }
        await k.S.Point(PointKind.Alloc, addr);
        return (vma.AllocPage(), 0);
    }

    /// <summary>pte_range_none: every one of the <paramref name="nr"/> PTEs from <paramref name="start"/> is none.</summary>
    static async ValueTask<bool> PteRangeNone(MmStruct mm, int t, ulong start, int nr)
    {
        for (int i = 0; i < nr; i++)
            if (!(await mm.PtepGet(t, start + ((ulong)i << MmStruct.PageShift))).IsNone) return false;
        return true;
    }

    /// <summary>
    /// do_anonymous_page's tail for a large folio: under the PTL the range must still be none (else the folio is released
    /// and the access retries); then folio_ref_add(nr - 1), MM_ANONPAGES += nr, folio_add_new_anon_rmap (every page
    /// exclusive, mapcount 1), set_ptes, writable and dirty in a writable VMA.
    /// </summary>
    static async ValueTask<VmFault> MapAnonLargeFolio(MmStruct mm, Vma vma, ulong addr, int t, long head, int order)
    {
        var k = mm.Kernel;
        int nr = 1 << order;
        ulong start = addr & ~((MmStruct.PageSize << order) - 1);
        for (int i = 0; i < nr; i++) k.S.Charge(CostKind.ZeroPage);
        await mm.LockPtl(t);
        if (!await PteRangeNone(mm, t, start, nr))
        {
            await mm.UnlockPtl(t);
            Folio.Put(k, head);
            return VmFault.Retry;
        }
        if ((vma.Flags & VmFlags.UffdMissing) != 0)
        {
            Folio.Put(k, head);
            return await DoAnonymousUserfault(mm, vma, addr, t, FaultFlags.Write);
        }
        k.Mem[head].RefCount += nr - 1;
        Folio.AddNewAnonRmap(k, head, vma, start, nr: nr);
        for (int i = 0; i < nr; i++)
            await mm.SetPte(t, start + ((ulong)i << MmStruct.PageShift), vma.MkPte(head + i, writable: vma.Writable, dirty: true));
        await mm.UnlockPtl(t);
        k.Stats.Inc(Stat.MthpFaultAlloc);
        return VmFault.Ok;
    }

    /// <summary>
    /// do_wp_page: write (or unshare) fault on a present read-only PTE. Called with the PTL held; drops it.
    /// Reuses an anon page in place when <see cref="WpCanReuseAnonPage"/> says so (no notifier: upgrades are never
    /// notified), or copies. From 5.19 an unshare fault (FAULT_FLAG_UNSHARE without WRITE) that can reuse only marks the
    /// page exclusive and leaves the PTE read-only; before 5.19 the flag stands for the FAULT_FLAG_WRITE fault that
    /// break_ksm and GUP took instead.
    /// </summary>
    public static async ValueTask<VmFault> DoWpPage(MmStruct mm, Vma vma, ulong addr, int t, Pte orig, FaultFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_wp_page");
        long pfn = orig.Pfn;
        bool unshare = HugeMemory.IsUnshare(k, flags);
        if (!unshare && orig.UffdWp && (vma.Flags & VmFlags.UffdWp) != 0)
        {
            await mm.UnlockPtl(t); // userfaultfd_pte_wp: the write goes to the uffd-wp handler
            return await Userfaultfd.UserfaultfdCtx.HandleUserfault(mm, vma, addr, Userfaultfd.UffdReason.Wp, flags);
        }
        if (vma.Shared && vma.Writable && !orig.Special && pfn != PhysMem.ZeroPfn)
        {
            await WpPageReuse(mm, vma, addr, t, orig, flags); // wp_page_shared: the shared page is written in place
            return VmFault.Ok;
        }
        if (!orig.Special && pfn != PhysMem.ZeroPfn && WpCanReuseAnonPage(k, pfn))
        {
            if (unshare)
            {
                k.Mem[pfn].Set(PageFlags.AnonExclusive);
                await mm.UnlockPtl(t);
                return VmFault.Ok;
            }
            await WpPageReuse(mm, vma, addr, t, orig, flags);
            return VmFault.Ok;
        }
        if (!orig.Special && pfn != PhysMem.ZeroPfn) Folio.Get(k, pfn); // the fault's reference to the old page
        await mm.UnlockPtl(t);
        return await WpPageCopy(mm, vma, addr, t, orig, flags);
    }

    /// <summary>
    /// The COW reuse rule per era for an anon page mapped read-only in a private mapping (never a KSM page):
    /// 5.19+ (wp_can_reuse_anon_folio): PageAnonExclusive, or a small folio with page_count 1; 5.9-5.18
    /// (09854ba94c6a): page_count 1, so any GUP reference forces a copy; before 5.9 (reuse_swap_page): mapcount 1,
    /// whatever other references exist (CVE-2020-29374), for a PTE-mapped THP the subpage's. From 5.9 a page of a
    /// large folio is copied unless it is exclusive (5.19+): its folio's refcount is never 1.
    /// </summary>
    public static bool WpCanReuseAnonPage(Kernel k, long pfn)
    {
        long head = k.Mem.FolioOf(pfn);
        ref var folio = ref k.Mem[head];
        if (!folio.Has(PageFlags.Anon) || folio.Has(PageFlags.Ksm)) return false;
        if (k.Era.Has(Feature.PageAnonExclusiveReuse) && k.Mem[pfn].Has(PageFlags.AnonExclusive)) return true;
        if (k.Era.Has(Feature.CowReuseByRefcount)) return !k.Mem.IsLarge(head) && folio.RefCount == 1;
        // reuse_swap_page: page_mapcount of this (sub)page, which for a THP includes the PMD mappings (entire_mapcount).
        int maps = k.Mem[pfn].MapCount + (k.Mem.IsLarge(head) ? k.Mem.EntireMapcountHolder(head).RefCount : 0);
        return maps == 1;
    }

    /// <summary>wp_page_reuse: make the PTE writable (and dirty for a write) in place. No notifier. Drops the PTL.</summary>
    public static async ValueTask WpPageReuse(MmStruct mm, Vma vma, ulong addr, int t, Pte orig, FaultFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("wp_page_reuse");
        k.Stats.Inc(Stat.CowReuses);
        if (!vma.Shared) k.Mem[orig.Pfn].Set(PageFlags.AnonExclusive);
        var pte = orig.WithAccessed(true);
        if ((flags & FaultFlags.Write) != 0 || vma.Writable) pte = pte.WithWrite(vma.Writable);
        if ((flags & FaultFlags.Write) != 0) pte = pte.WithDirty(true).WithSoftDirty(true); // pte_mkdirty
        await mm.SetPte(t, addr, pte);
        await mm.UnlockPtl(t);
    }

    /// <summary>
    /// wp_page_copy: copy the old page (or zero-fill for the zero page) into a new one and switch the PTE.
    /// 2.6.32: ptep_clear_flush + set_pte_at_notify with no start/end. 3.7+: start/end CLEAR around it; 3.19-6.5
    /// the clear calls invalidate_range under the PTL and end is only_end from 4.15. The old folio is put after end.
    /// The fault's reference on the old page was taken by <see cref="DoWpPage"/>; the PTL is not held on entry.
    /// </summary>
    public static async ValueTask<VmFault> WpPageCopy(MmStruct mm, Vma vma, ulong addr, int t, Pte orig, FaultFlags flags)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("wp_page_copy");
        long oldPfn = orig.Pfn;
        bool oldIsZero = orig.Special || oldPfn == PhysMem.ZeroPfn;
        mm.AnonVmaPrepare(vma);
        await k.S.Point(PointKind.Alloc, addr);
        long newPfn = vma.AllocPage();
        if (newPfn < 0)
        {
            if (!oldIsZero) Folio.Put(k, oldPfn);
            return VmFault.Oom;
        }
        if (oldIsZero) k.S.Charge(CostKind.ZeroPage);
        else
        {
            k.Mem[newPfn].Contents = k.Mem[oldPfn].Contents;
            k.S.Charge(CostKind.CopyPage);
        }

        bool bracket = k.Era.Has(Feature.SetPteAtNotifyBracketed);
        var range = new MmuNotifierRange(mm, addr, addr + PageSize, MmuNotifyEvent.Clear);
        if (bracket) await mm.Notifiers.InvalidateRangeStart(range);

        bool copied = false;
        bool locked = await mm.PteOffsetMapLock(t, addr);
        var cur = locked ? await mm.PtepGet(t, addr) : default;
        if (locked && cur == orig)
        {
            // 2.6.32 and 3.7-3.18 clear with plain ptep_clear_flush (set_pte_at_notify does the notifying);
            // 3.19-6.5 use ptep_clear_flush_notify (invalidate_range under the PTL); 2.6.27, before change_pte,
            // used ptep_clear_flush_notify too (invalidate_page under the PTL) and then a plain set_pte_at.
            if (k.Era.Has(Feature.InvalidateRange) || !k.Era.Has(Feature.ChangePte)) await Tlb.PtepClearFlushNotify(mm, t, addr);
            else await Tlb.PtepClearFlush(mm, t, addr);
            Folio.AddNewAnonRmap(k, newPfn, vma, addr);
            bool w = (flags & FaultFlags.Write) != 0;
            // An unshare fault (5.19+) maps the copy read-only: the next write finds it PageAnonExclusive and reuses it.
            bool ro = (flags & (FaultFlags.Unshare | FaultFlags.Write)) == FaultFlags.Unshare && k.Era.Has(Feature.GupUnshareAnon);
            // An unshare copy keeps the old PTE's uffd-wp bit (wp_page_copy: pte_mkuffd_wp if unshare && pte_uffd_wp).
            await Tlb.SetPteAtNotify(mm, t, addr, vma.MkPte(newPfn, writable: vma.Writable && !ro, dirty: w).WithUffdWp(ro && orig.UffdWp));
            if (!oldIsZero) Folio.RemoveRmap(k, oldPfn, mm);
            copied = true;
            k.Stats.Inc(Stat.CowCopies);
        }
        if (locked) await mm.UnlockPtl(t);
        if (bracket) await mm.Notifiers.InvalidateRangeOnlyEnd(range);

        await k.S.Point(PointKind.Free, addr);
        if (!copied) Folio.Put(k, newPfn);
        if (!oldIsZero)
        {
            if (copied) Folio.Put(k, oldPfn); // the old PTE's reference
            Folio.Put(k, oldPfn);             // the fault's reference
        }
        return copied ? VmFault.Ok : VmFault.Retry;
    }

    /// <summary>do_swap_page: bring a swapped-out page back into a new frame (no swap cache in the model).</summary>
    public static async ValueTask<VmFault> DoSwapPage(MmStruct mm, Vma vma, ulong addr, int t, Pte orig)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_swap_page");
        await k.S.Point(PointKind.Alloc, addr);
        long pfn = vma.AllocPage();
        if (pfn < 0) return VmFault.Oom;
        int slot = (int)orig.Pfn;
        k.Mem[pfn].Contents = k.Swap.Load(slot);
        k.S.Charge(CostKind.CopyPage);
        await mm.LockPtl(t);
        var cur = await mm.PtepGet(t, addr);
        if (cur != orig)
        {
            await mm.UnlockPtl(t);
            Folio.Put(k, pfn);
            return VmFault.Retry;
        }
        Folio.AddNewAnonRmap(k, pfn, vma, addr);
        k.Mem[pfn].Set(PageFlags.Dirty); // only copy is in memory now
        var pte = vma.MkPte(pfn, writable: vma.Writable, dirty: false).WithUffdWp(orig.UffdWp); // pte_swp_uffd_wp
        await mm.SetPte(t, addr, orig.SoftDirty ? pte.WithSoftDirty(true) : pte); // pte_swp_soft_dirty
        k.Swap.Free(slot);
        await mm.UnlockPtl(t);
        return VmFault.Ok;
    }

    /// <summary>
    /// A user-space load or store at <paramref name="addr"/> by a task of <paramref name="mm"/>: one atomic step that
    /// walks the primary tables, sets Accessed/Dirty as the hardware walker does and moves the data; a missing or
    /// read-only translation faults and retries. Returns the value read (or written), or null on SIGSEGV/OOM.
    /// </summary>
    public static async ValueTask<ulong?> UserAccess(MmStruct mm, ulong addr, bool write, ulong value = 0)
    {
        var r = await UserAccessResult(mm, addr, write, value);
        return r.Fault == VmFault.Ok ? r.Value : null;
    }

    /// <summary>
    /// <see cref="UserAccess"/> with the outcome the task sees: <see cref="VmFault.Ok"/> and the value, or the fatal
    /// fault (<see cref="VmFault.SigSegv"/>: the signal the kernel's do_user_addr_fault / bad_area sends; Oom).
    /// </summary>
    public static async ValueTask<AccessResult> UserAccessResult(MmStruct mm, ulong addr, bool write, ulong value = 0)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter(write ? "user_write" : "user_read");
        if (k.PrimaryTlb is { } tlb && await TlbLookup(tlb, mm, addr, write, value) is { } hit) return new(VmFault.Ok, hit);
        await mm.MmapLock.ReadLock();
        try
        {
            for (int attempt = 0; attempt < 64; attempt++)
            {
                await k.S.Point(PointKind.PteRead, addr);
                if (TryTouch(mm, addr, write, value, out var result)) return new(VmFault.Ok, result);
                var r = await HandleMmFault(mm, addr, (write ? FaultFlags.Write : FaultFlags.None) | FaultFlags.AllowRetry);
                if (r is VmFault.SigSegv or VmFault.Oom or VmFault.SigBus) return new(r, 0);
            }
            k.S.Fail(Invariants.Liveness, $"user access to 0x{addr:x} kept faulting", addr);
            return new(VmFault.Retry, 0);
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
    }

    /// <summary>The CPU's TLB lookup (opt-in <see cref="CpuTlb"/>): a scheduling point; on a hit the data moves without a walk.</summary>
    static async ValueTask<ulong?> TlbLookup(CpuTlb tlb, MmStruct mm, ulong addr, bool write, ulong value)
    {
        using var _ = mm.Kernel.S.Current.Enter("tlb_lookup");
        await mm.Kernel.S.Point(PointKind.PteRead, addr);
        return tlb.TryHit(mm, addr, write, value, out var result) ? result : null;
    }

    /// <summary>The hardware part of an access: walk, check permission, set A/D, move data, fill the CPU's TLB when
    /// modelled. No scheduling point.</summary>
    static bool TryTouch(MmStruct mm, ulong addr, bool write, ulong value, out ulong result)
    {
        var k = mm.Kernel;
        var pool = k.PageTables;
        result = 0;
        ulong va = addr & MmStruct.PageMask;
        int pmdT = mm.PmdTable(va);
        if (pmdT == 0) return false;
        ref ulong pmdE = ref pool.Entry(pmdT, PageTablePool.PmdIndex(va));
        var pmd = new Pte(pmdE);
        long pfn;
        if (pmd.Present && pmd.Huge)
        {
            if (!pmd.User || (write && !pmd.Writable)) return false;
            pmdE = pmd.WithAccessed(true).WithDirty(pmd.Dirty || write).Raw;
            pfn = pmd.Pfn + (long)((va & ~MmStruct.PmdMask) >> MmStruct.PageShift);
            k.PrimaryTlb?.Fill(mm, va, pfn, pmd.Writable, pmd.Dirty || write);
        }
        else
        {
            if (!pmd.Present) return false;
            ref ulong e = ref pool.Entry(pmd.TableId, PageTablePool.PteIndex(va));
            var pte = new Pte(e);
            if (!pte.Accessible || (write && !pte.Writable)) return false;
            e = pte.WithAccessed(true).WithDirty(pte.Dirty || write).Raw;
            pfn = pte.Pfn;
            k.PrimaryTlb?.Fill(mm, va, pfn, pte.Writable, pte.Dirty || write);
        }
        k.S.Charge(CostKind.Access);
        if (write)
        {
            k.Mem[pfn].Contents = value;
            if (k.Checker.TrackUserWrites) k.Checker.OnUserWrite(mm, va, pfn, value);
            if (k.Trace.On) k.Trace.Event("user_store", $"addr 0x{va:x} pfn 0x{pfn:x} value 0x{value:x}");
        }
        result = k.Mem[pfn].Contents;
        return true;
    }
}
