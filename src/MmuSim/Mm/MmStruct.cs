using System.Runtime.CompilerServices;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// struct mm_struct: one process address space: its page-table root, VMAs, mmap_lock and notifier subscriptions.
/// </summary>
/// <remarks>
/// <para>Locking rules (include/linux/mm_types.h, mm/memory.c):</para>
/// <list type="bullet">
/// <item>VMAs change under <see cref="MmapLock"/> for write (mmap, munmap, mprotect, mremap, madvise(MADV_MERGEABLE),
/// fork on the parent). Faults, madvise(DONTNEED/FREE) and GUP hold it for read.</item>
/// <item>A PTE changes only under its table's PTL (<see cref="PageTablePool.Locks"/>); a huge PMD under its PMD lock.</item>
/// <item>Upper levels (PGD/PUD/PMD table pointers) are populated within one step of a path holding mmap_lock, so two
/// faults never race to populate (the kernel's pmd_populate under the PMD lock is folded into that step).</item>
/// <item>Frame refcounts/mapcounts change under the PTL of the mapping being changed, or by the holder of a reference.</item>
/// </list>
/// <para>Every access to a PTE goes through <see cref="PtepGet"/>/<see cref="SetPte"/>, each a scheduling point.</para>
/// </remarks>
public sealed class MmStruct
{
    public const int PageShift = 12;
    public const ulong PageSize = 1UL << PageShift;
    public const ulong PageMask = ~(PageSize - 1);
    public const ulong PmdSize = 1UL << 21;
    public const ulong PmdMask = ~(PmdSize - 1);

    readonly Kernel _k;
    readonly List<Vma> _vmas = [];

    internal MmStruct(Kernel k, int id, string name)
    {
        _k = k;
        Id = id;
        Name = name;
        Pgd = k.PageTables.AllocTable();
        MmapLock = new KRwLock(k.S, $"mm{id}->mmap_lock", sleeping: true);
        Notifiers = new MmuNotifierCore(k, this);
        Users = 1;
        Count = 1;
    }

    public Kernel Kernel => _k;
    public int Id { get; }
    public string Name { get; }

    /// <summary>Table id of the PGD.</summary>
    public int Pgd { get; private set; }

    public KRwLock MmapLock { get; }

    /// <summary>mm->notifier_subscriptions.</summary>
    public MmuNotifierCore Notifiers { get; }

    /// <summary>mm_users (address-space users) and mm_count (struct pins, incl. notifiers).</summary>
    public int Users { get; internal set; }
    public int Count { get; internal set; }

    /// <summary>exit_mmap has run; the address space is gone.</summary>
    public bool Exited { get; internal set; }

    /// <summary>
    /// khugepaged's mm_slot->pte_mapped_thp[] (5.4+, at most MAX_PTE_MAPPED_THP = 8): PMD-aligned addresses whose page
    /// table retract_page_tables could not take (mmap_write_trylock failed), for khugepaged_collapse_pte_mapped_thps
    /// on its next pass over this mm. Changed only by khugepaged (khugepaged_mm_lock is folded into its steps).
    /// </summary>
    internal List<ulong>? PteMappedThp { get; set; }

    /// <summary>OOM victim: MMF_OOM_SKIP etc. (reaper bookkeeping).</summary>
    public bool OomReaped { get; internal set; }

    /// <summary>
    /// mm->tlb_flush_pending as the kernel sees it (mm_tlb_flush_pending, §5(d8)): raised by tlb_gather_mmu until
    /// tlb_finish_mmu from 4.13 (<see cref="Eras.Feature.TlbGatherFlushPending"/>); before, mmu_gather did not touch it.
    /// </summary>
    public int TlbFlushPending { get; internal set; }

    /// <summary>
    /// Model bookkeeping, every era: mmu_gathers started and not finished on this mm, i.e. cleared PTEs whose TLB flush
    /// (and page free) may still be outstanding. The checker's allowance for hardware TLBs uses this, not the kernel's
    /// <see cref="TlbFlushPending"/>, because the flush-before-free rule holds in every era.
    /// </summary>
    public int TlbGathersInFlight { get; internal set; }

    /// <summary>RSS counters (MM_ANONPAGES).</summary>
    public long RssAnon { get; internal set; }
    /// <summary>MM_FILEPAGES + MM_SHMEMPAGES: PTE mappings of page-cache pages.</summary>
    public long RssFile { get; internal set; }

    /// <summary>MMF_HAS_PINNED (mm->has_pinned, 5.9): some FOLL_PIN was ever taken on this mm; fork looks for pinned pages only then.</summary>
    public bool HasPinned { get; internal set; }

    /// <summary>KSM: MMF_VM_MERGE_ANY (PR_SET_MEMORY_MERGE).</summary>
    public bool MergeAny { get; internal set; }

    /// <summary>Opaque per-mm KSM state (mm_slot), owned by the Ksm subsystem.</summary>
    public object? KsmSlot { get; set; }

    public IReadOnlyList<Vma> Vmas => _vmas;

    /// <summary>invalidate_range_start..end regions in flight on this mm (checker bookkeeping; nested and concurrent).</summary>
    public List<MmuNotifierRange> ActiveRanges { get; } = [];

    Scheduler S => _k.S;
    PageTablePool Pool => _k.PageTables;

    // ------------------------------------------------------------------ VMAs

    /// <summary>find_vma proper: the first VMA ending above <paramref name="addr"/> (it may start above it), or null.</summary>
    public Vma? FindVmaFrom(ulong addr)
    {
        int lo = 0, hi = _vmas.Count - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (_vmas[mid].End > addr) { found = mid; hi = mid - 1; }
            else lo = mid + 1;
        }
        return found < 0 ? null : _vmas[found];
    }

    /// <summary>find_vma: the VMA containing <paramref name="addr"/>, or null. Binary search, no allocation.</summary>
    public Vma? FindVma(ulong addr)
    {
        int lo = 0, hi = _vmas.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            var v = _vmas[mid];
            if (addr < v.Start) hi = mid - 1;
            else if (addr >= v.End) lo = mid + 1;
            else return v;
        }
        return null;
    }

    /// <summary>Insert a VMA (caller holds mmap_lock for write or is setting up). Fails on overlap.</summary>
    public Vma InsertVma(Vma vma)
    {
        if (vma.Start >= vma.End || (vma.Start & ~PageMask) != 0 || (vma.End & ~PageMask) != 0)
            throw new ArgumentException($"VMA [0x{vma.Start:x}, 0x{vma.End:x}) is empty or not page aligned");
        int i = 0;
        while (i < _vmas.Count && _vmas[i].Start < vma.Start) i++;
        if ((i > 0 && _vmas[i - 1].End > vma.Start) || (i < _vmas.Count && _vmas[i].Start < vma.End))
            throw new ArgumentException($"VMA [0x{vma.Start:x}, 0x{vma.End:x}) overlaps an existing mapping");
        _vmas.Insert(i, vma);
        if (vma.File?.Kind == FileKind.MemfdHugetlb) vma.Flags |= VmFlags.Hugetlb; // a hugetlbfs mapping is VM_HUGETLB
        if (vma.IsHugetlb) Hugetlb.HugetlbPages.Of(Kernel); // the pool exists once hugetlb memory is mapped
        if (vma.Shared && vma.File == null && !vma.IsHugetlb) vma.File = Kernel.NewAddressSpace(FileKind.SharedAnon, "dev/zero", ulong.MaxValue); // shmem_zero_setup
        if (vma.File != null)
        {
            vma.File.Users++;            // get_file
            vma.File.Mappings.Add(vma);  // vma_link_file: i_mmap
        }
        return vma;
    }

    internal void RemoveVma(Vma vma)
    {
        _vmas.Remove(vma);
        if (vma.File == null) return;
        vma.File.Mappings.Remove(vma); // unlink_file_vma
        vma.File.Put(Kernel);          // fput
    }

    /// <summary>__split_vma: split at <paramref name="addr"/>, returning the upper part.</summary>
    internal Vma SplitVma(Vma vma, ulong addr)
    {
        var upper = new Vma(this, addr, vma.End, vma.Prot, vma.Flags)
        {
            AnonVma = vma.AnonVma,
            File = vma.File,
            Uffd = vma.Uffd,
            PolicyNode = vma.PolicyNode,
            PgOff = vma.PgOff + ((addr - vma.Start) >> PageShift),
            Name = vma.Name,
        };
        vma.End = addr;
        _vmas.Insert(_vmas.IndexOf(vma) + 1, upper);
        if (upper.File != null)
        {
            upper.File.Users++;
            upper.File.Mappings.Add(upper);
        }
        return upper;
    }

    /// <summary>anon_vma_prepare: the VMA's anon_vma family (created on first anonymous fault).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal AnonVma AnonVmaPrepare(Vma vma) => vma.AnonVma ??= _k.NewAnonVma(this);

    // ------------------------------------------------------------------ page-table walk

    /// <summary>Table id of the PMD table for <paramref name="va"/>, or 0 when not populated.</summary>
    public int PmdTable(ulong va)
    {
        var pgd = new Pte(Pool.Entry(Pgd, PageTablePool.PgdIndex(va)));
        if (!pgd.Present) return 0;
        var pud = new Pte(Pool.Entry(pgd.TableId, PageTablePool.PudIndex(va)));
        return pud.Present ? pud.TableId : 0;
    }

    /// <summary>Raw PMD entry for <paramref name="va"/> (none when not populated). No scheduling point.</summary>
    public Pte PeekPmd(ulong va)
    {
        int pmdt = PmdTable(va);
        return pmdt == 0 ? Pte.None : new Pte(Pool.Entry(pmdt, PageTablePool.PmdIndex(va)));
    }

    /// <summary>
    /// pmd_addr_end as a page-table walk uses it (walk_pgd_range, unmap_page_range, change_protection): the end of the
    /// PMD region holding <paramref name="addr"/>, or, when its PGD or PUD entry is none, the end of that whole
    /// unpopulated entry (pgd_addr_end/pud_addr_end), capped at <paramref name="end"/>. A walk that does nothing on
    /// pmd_none steps with this, so an empty 128 TiB VMA costs 256 steps, not 2^26. No scheduling point.
    /// </summary>
    public ulong PmdAddrEnd(ulong addr, ulong end)
    {
        const ulong PudSize = 1UL << 30, PgdSize = 1UL << 39;
        ulong size = PmdSize;
        var pgd = new Pte(Pool.Entry(Pgd, PageTablePool.PgdIndex(addr)));
        if (!pgd.Present) size = PgdSize;
        else if (!new Pte(Pool.Entry(pgd.TableId, PageTablePool.PudIndex(addr))).Present) size = PudSize;
        ulong boundary = (addr & ~(size - 1)) + size;
        return boundary - 1 < end - 1 ? boundary : end;
    }

    /// <summary>
    /// For a per-page loop over [<paramref name="va"/>, <paramref name="end"/>): <paramref name="va"/> itself when its PMD
    /// is populated, else the first address past the hole (<see cref="PmdAddrEnd"/>). No scheduling point.
    /// </summary>
    public ulong SkipPmdHole(ulong va, ulong end)
    {
        while (va < end && PeekPmd(va).IsNone) va = PmdAddrEnd(va, end);
        return va;
    }

    /// <summary>Table id of the PTE table for <paramref name="va"/>, or 0 when none (or when the PMD is huge).</summary>
    public int PteTable(ulong va)
    {
        var pmd = PeekPmd(va);
        return pmd.Present && !pmd.Huge ? pmd.TableId : 0;
    }

    /// <summary>The PTE for <paramref name="va"/> without a scheduling point (checker, tests, debugging).</summary>
    public Pte PeekPte(ulong va)
    {
        int t = PteTable(va);
        return t == 0 ? Pte.None : new Pte(Pool.Entry(t, PageTablePool.PteIndex(va)));
    }

    /// <summary>
    /// What the primary maps at <paramref name="va"/>, at 4 KiB granularity: for a huge PMD the sub-page pfn.
    /// (present, pfn, writable, dirty); no scheduling point.
    /// </summary>
    public (bool Present, long Pfn, bool Writable, bool Dirty) Translate(ulong va)
    {
        var pmd = PeekPmd(va);
        if (pmd.Present && pmd.Huge)
            return (true, pmd.Pfn + (long)((va & ~PmdMask) >> PageShift), pmd.Writable, pmd.Dirty);
        if (!pmd.Present) return (false, -1, false, false);
        var pte = new Pte(Pool.Entry(pmd.TableId, PageTablePool.PteIndex(va)));
        return pte.Present ? (true, pte.Pfn, pte.Writable, pte.Dirty) : (false, -1, false, false);
    }

    /// <summary>__pmd_alloc: populate PGD/PUD levels so that a PMD table exists for <paramref name="va"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int PmdAlloc(ulong va)
    {
        // Fast path: both upper levels populated (every fault after the first in a 1 GiB region).
        var pgd = new Pte(Pool.Entry(Pgd, PageTablePool.PgdIndex(va)));
        if (pgd.Present)
        {
            var pud = new Pte(Pool.Entry(pgd.TableId, PageTablePool.PudIndex(va)));
            if (pud.Present) return pud.TableId;
        }
        return PmdAllocSlow(va);
    }

    int PmdAllocSlow(ulong va)
    {
        // AllocTable may grow the pool's array: allocate first, then take the ref (a ref taken before would write
        // into the old array and the entry would be lost).
        if (!new Pte(Pool.Entry(Pgd, PageTablePool.PgdIndex(va))).Present)
        {
            int t = Pool.AllocTable();
            Pool.Entry(Pgd, PageTablePool.PgdIndex(va)) = Pte.Table(t).Raw;
        }
        int pudT = new Pte(Pool.Entry(Pgd, PageTablePool.PgdIndex(va))).TableId;
        if (!new Pte(Pool.Entry(pudT, PageTablePool.PudIndex(va))).Present)
        {
            int t = Pool.AllocTable();
            Pool.Entry(pudT, PageTablePool.PudIndex(va)) = Pte.Table(t).Raw;
        }
        return new Pte(Pool.Entry(pudT, PageTablePool.PudIndex(va))).TableId;
    }

    /// <summary>__pte_alloc: make sure a PTE table exists for <paramref name="va"/>; 0 if the PMD is huge or a migration entry.</summary>
    public int PteAlloc(ulong va) => PteAllocAt(PmdAlloc(va), va);

    /// <summary>__pte_alloc given the PMD table already walked to.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int PteAllocAt(int pmdT, ulong va)
    {
        var pmd = new Pte(Pool.Entry(pmdT, PageTablePool.PmdIndex(va)));
        if (pmd.Present) return pmd.Huge ? 0 : pmd.TableId;
        if (!pmd.IsNone) return 0; // a PMD migration entry: not a table, and not to be overwritten
        int t = Pool.AllocTable(); // may grow the pool: write the entry through a fresh ref
        Pool.Entry(pmdT, PageTablePool.PmdIndex(va)) = Pte.Table(t).Raw;
        return t;
    }

    /// <summary>The PTL protecting the PTE table <paramref name="table"/> (pte_lockptr).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ValueTask LockPtl(int table) => Pool.Locks.Lock(table);

    public ValueTask UnlockPtl(int table) => Pool.Locks.Unlock(table);

    /// <summary>
    /// pte_offset_map_lock for a table an earlier walk found: take its PTL, then recheck that the PMD still points at
    /// it (__pte_offset_map_lock's pmd_same, 6.5+, which the lockless retract_page_tables of 6.6 relies on: it clears
    /// the PMD holding the PMD lock and this PTL, and frees the table by RCU). False: the table was retracted
    /// meanwhile; no lock is held and the caller retries (VM_FAULT_NOPAGE). The recheck needs no scheduling point of
    /// its own: under the PTL nobody can change this PMD. In eras where only mmap_lock holders free tables it always holds.
    /// </summary>
    public async ValueTask<bool> PteOffsetMapLock(int t, ulong va)
    {
        await LockPtl(t);
        if (PteTable(va) == t || Kernel.Mutated(Mutation.PteOffsetMapLockNoRecheck)) return true;
        Kernel.Stats.Inc(Stat.PteTableRetracted);
        await UnlockPtl(t);
        return false;
    }

    /// <summary>pmd_lock: the PMD table's lock.</summary>
    public ValueTask LockPmd(ulong va) => Pool.Locks.Lock(PmdTable(va));

    /// <summary>spin_trylock of a PTL (walk_pte_range): a scheduling point, then the lock if it is free; never blocks.</summary>
    public async ValueTask<bool> TryLockPtl(int table)
    {
        await Kernel.S.Point(PointKind.LockAcquire, (ulong)table, Pool.Locks);
        return Pool.Locks.TryLock(table);
    }

    /// <summary>spin_trylock of the PMD lock for <paramref name="va"/> (walk_pmd_range_locked); never blocks.</summary>
    public ValueTask<bool> TryLockPmd(ulong va) => TryLockPtl(PmdTable(va));

    public ValueTask UnlockPmd(ulong va) => Pool.Locks.Unlock(PmdTable(va));

    /// <summary>ptep_get: read a PTE (a scheduling point).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ValueTask<Pte> PtepGet(int table, ulong va)
    {
        if (S.OnPoint(PointKind.PteRead, va)) return new(new Pte(Pool.Entry(table, PageTablePool.PteIndex(va))));
        return PtepGetSlow(table, va);
    }

    async ValueTask<Pte> PtepGetSlow(int table, ulong va)
    {
        await S.Parked();
        return new Pte(Pool.Entry(table, PageTablePool.PteIndex(va)));
    }

    /// <summary>set_pte_at: write a PTE (a scheduling point before the store).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ValueTask SetPte(int table, ulong va, Pte pte)
    {
        Pool.CheckNotFreed(table, va);
        if (S.OnPoint(PointKind.PteWrite, va))
        {
            Pool.Entry(table, PageTablePool.PteIndex(va)) = pte.Raw;
            return default;
        }
        return SetPteSlow(table, va, pte);
    }

    async ValueTask SetPteSlow(int table, ulong va, Pte pte)
    {
        await S.Parked();
        Pool.CheckNotFreed(table, va);
        Pool.Entry(table, PageTablePool.PteIndex(va)) = pte.Raw;
    }

    /// <summary>ptep_get_and_clear: read and clear atomically (one step).</summary>
    public async ValueTask<Pte> PtepGetAndClear(int table, ulong va)
    {
        await S.Point(PointKind.PteWrite, va);
        ref ulong e = ref Pool.Entry(table, PageTablePool.PteIndex(va));
        var old = new Pte(e);
        e = 0;
        return old;
    }

    /// <summary>pmdp_get / set_pmd_at on the PMD entry for <paramref name="va"/> (scheduling points).</summary>
    public async ValueTask<Pte> PmdpGet(ulong va)
    {
        await S.Point(PointKind.PmdRead, va);
        return PeekPmd(va);
    }

    public async ValueTask SetPmd(ulong va, Pte pmd)
    {
        await S.Point(PointKind.PmdWrite, va);
        int t = PmdTable(va);
        if (t == 0) t = PmdAlloc(va);
        Pool.Entry(t, PageTablePool.PmdIndex(va)) = pmd.Raw;
    }

    // ------------------------------------------------------------------ mm_take_all_locks

    /// <summary>mm_take_all_locks (model): every anon_vma lock of this mm, for write. Caller holds mmap_lock for write.</summary>
    internal async ValueTask TakeAllLocks()
    {
        foreach (var v in _vmas)
            if (v.AnonVma != null && !v.AnonVma.Lock.IsWriteLockedByCurrent) await v.AnonVma.Lock.WriteLock();
    }

    internal void DropAllLocks()
    {
        // Released without extra points: mm_drop_all_locks is one step in the model.
        foreach (var v in _vmas)
            if (v.AnonVma != null && v.AnonVma.Lock.IsWriteLockedByCurrent) v.AnonVma.Lock.ForceWriteUnlock();
    }

    internal void FreeAllTables()
    {
        FreeLevel(Pgd, 3);
        Pgd = 0;
    }

    void FreeLevel(int table, int level)
    {
        if (level > 0)
            foreach (var raw in Pool.Table(table))
            {
                var e = new Pte(raw);
                if (e.Present && !e.Huge) FreeLevel(e.TableId, level - 1);
            }
        Pool.FreeTable(table);
    }

    public override string ToString() => $"mm{Id}({Name})";
}
