using System.Globalization;
using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Ksm;

/// <summary>
/// mm/ksm.c: the KSM subsystem of one <see cref="Kernel"/>: the registered mms (mm_slots), ksmd's scan cursor, the
/// stable and unstable trees, the /sys/kernel/mm/ksm knobs and counters, and the ksmd daemon context.
/// Get it with <see cref="Of"/> (attached to <see cref="Kernel.Subsystems"/>).
/// </summary>
/// <remarks>
/// <para>Locking rules (mm/ksm.c): the trees, the cursor and the counters belong to ksmd and to writers of
/// <c>run</c>, serialised by <see cref="ThreadMutex"/> (ksm_thread_mutex). The slot list is ksm_mmlist_lock's in the
/// kernel; the model changes it only between scheduling points. Page tables are read and written under their PTL,
/// VMAs under mmap_lock (read for scanning and merging, write for madvise). MADV_UNMERGEABLE and break_ksm run on the
/// caller's context without ksm_thread_mutex, as in the kernel.</para>
/// <para>Invariants (checked by <see cref="AssertInvariants"/>): pages_shared = stable nodes with a non-empty hlist;
/// pages_sharing = Σ(hlist length − 1); pages_unshared = items in the current unstable tree; the sum of the slots'
/// rmap_items = ksm_rmap_items.</para>
/// </remarks>
public sealed partial class Ksmd : MmuSim.Scenarios.IRunReport
{
    /// <summary>KSM_RUN_STOP / MERGE / UNMERGE.</summary>
    public const int RunStop = 0, RunMerge = 1, RunUnmerge = 2;

    /// <summary>sizeof(struct ksm_rmap_item) on x86-64 (general_profit subtracts it per rmap_item).</summary>
    public const int RmapItemSize = 64;

    const int EINVAL = -22, EBUSY = -16;

    readonly Kernel _k;
    readonly List<MmSlot> _slots = [];
    readonly Dictionary<KsmTreeKey, RmapItem> _unstable = [];
    readonly Dictionary<KsmTreeKey, StableNode> _stable = [];
    readonly Dictionary<long, StableNode> _nodesById = [];
    readonly WaitQueue _threadWait;
    long _nextNodeId = 1, _nextItemId = 1;
    KContext? _ksmd;

    // ksm_scan: the cursor. _scanSlot == null is &ksm_mm_head.
    MmSlot? _scanSlot;
    ulong _scanAddress;
    int _scanIndex;

    Ksmd(Kernel k)
    {
        _k = k;
        ThreadMutex = new KMutex(k.S, "ksm_thread_mutex");
        _threadWait = new WaitQueue(k.S, "ksm_thread_wait");
        ZeroChecksum = CalcChecksumOf(0);
    }

    /// <summary>The KSM subsystem of <paramref name="k"/> (created on first use).</summary>
    public static Ksmd Of(Kernel k) => k.GetSubsystem(static kk => new Ksmd(kk));

    public Kernel Kernel => _k;

    /// <summary>ksm_thread_mutex.</summary>
    public KMutex ThreadMutex { get; }

    /// <summary>zero_checksum: calc_checksum(ZERO_PAGE(0)).</summary>
    public uint ZeroChecksum { get; }

    /// <summary>The ksmd context, once started.</summary>
    public KContext? Daemon => _ksmd;

    public IReadOnlyList<MmSlot> Slots => _slots;

    // ------------------------------------------------------------------ knobs

    /// <summary>run: 0 stop, 1 merge, 2 unmerge (all merged pages were broken).</summary>
    public int Run { get; private set; } = RunStop;

    public int PagesToScan { get; private set; } = 100;

    public int SleepMillisecs { get; private set; } = 20;

    public bool UseZeroPages { get; private set; }

    /// <summary>max_page_sharing (4.13+); before that a KSM page has no sharing limit.</summary>
    public int MaxPageSharing { get; private set; } = 256;

    /// <summary>merge_across_nodes: 1 (default) merges identical pages of every node into one tree; 0 keeps one stable and
    /// one unstable tree per NUMA node (get_kpfn_nid), so only pages of the same node merge.</summary>
    public int MergeAcrossNodes { get; private set; } = 1;

    /// <summary>smart_scan (6.7+), on by default.</summary>
    public bool SmartScan { get; private set; } = true;

    public int StableNodeChainsPruneMillisecs { get; private set; } = 2000;

    // ------------------------------------------------------------------ counters (kernel meanings)

    /// <summary>ksm_pages_shared: stable-tree KSM pages in use (nodes with at least one rmap_item).</summary>
    public long PagesShared { get; private set; }

    /// <summary>ksm_pages_sharing: how many more sites share them, i.e. how much is saved.</summary>
    public long PagesSharing { get; private set; }

    /// <summary>ksm_pages_unshared: pages unique but repeatedly checked for merging (unstable-tree nodes).</summary>
    public long PagesUnshared { get; private set; }

    /// <summary>ksm_rmap_items: rmap_items in use.</summary>
    public long RmapItems { get; private set; }

    /// <summary>pages_volatile: rmap_items in no tree (changing too fast), as sysfs computes it.</summary>
    public long PagesVolatile => Math.Max(0, RmapItems - PagesShared - PagesSharing - PagesUnshared);

    /// <summary>ksm_pages_skipped: pages smart scanning skipped (cumulative).</summary>
    public long PagesSkipped { get; private set; }

    /// <summary>ksm_pages_scanned: pages handed to cmp_and_merge_page (cumulative).</summary>
    public long PagesScanned { get; private set; }

    /// <summary>full_scans: ksm_scan.seqnr.</summary>
    public long FullScans { get; private set; }

    public long StableNodeChains { get; private set; }

    public long StableNodeDups { get; private set; }

    /// <summary>
    /// ksm_zero_pages: PTEs KSM pointed at the shared zero page (marked dirty+special, as is_ksm_zero_pte tests) and that
    /// are still mapped. The kernel keeps this count eagerly (++ in replace_page, -- in ksm_might_unmap_zero_page from
    /// zap_pte_range and wp_page_copy); the model counts the marked PTEs of registered mms when read, which gives the
    /// same value without a hook in the primary's zap/COW paths.
    /// </summary>
    public long KsmZeroPages
    {
        get
        {
            long n = 0;
            foreach (var s in _slots) n += KsmZeroPagesOf(s.Mm);
            return n;
        }
    }

    /// <summary>general_profit: (pages_sharing + ksm_zero_pages) * PAGE_SIZE - ksm_rmap_items * sizeof(ksm_rmap_item).</summary>
    public long GeneralProfit => (PagesSharing + KsmZeroPages) * (long)MmStruct.PageSize - RmapItems * RmapItemSize;

    /// <summary>mm->ksm_zero_pages, counted from the mm's KSM zero-page PTEs.</summary>
    public long KsmZeroPagesOf(MmStruct mm)
    {
        if (mm.Exited || !_k.Era.Has(Feature.KsmZeroPagesCounter)) return 0;
        long n = 0;
        foreach (var vma in mm.Vmas)
            for (ulong va = mm.SkipPmdHole(vma.Start, vma.End); va < vma.End; va = mm.SkipPmdHole(va + MmStruct.PageSize, vma.End))
                if (IsKsmZeroPte(mm.PeekPte(va))) n++;
        return n;
    }

    /// <summary>/proc/PID/ksm_stat ksm_merging_pages.</summary>
    public long MergingPagesOf(MmStruct mm) => (mm.KsmSlot as MmSlot)?.MergingPages ?? 0;

    /// <summary>/proc/PID/ksm_stat ksm_rmap_items.</summary>
    public long RmapItemsOf(MmStruct mm) => (mm.KsmSlot as MmSlot)?.RmapItems ?? 0;

    /// <summary>is_ksm_zero_pte: the zero page mapped by KSM (replace_page marks it dirty; do_anonymous_page never does).</summary>
    public bool IsKsmZeroPte(Pte pte) =>
        pte.Present && pte.Pfn == PhysMem.ZeroPfn && pte.Special && pte.Dirty && _k.Era.Has(Feature.KsmZeroPagesCounter);

    // ------------------------------------------------------------------ sysfs

    /// <summary>
    /// The files of /sys/kernel/mm/ksm that the era has, sorted by name as <c>grep . /sys/kernel/mm/ksm/*</c> lists them,
    /// each with its value.
    /// </summary>
    public List<(string Name, string Value)> SysfsFiles()
    {
        var era = _k.Era;
        var list = new List<(string, string)>
        {
            ("full_scans", FullScans.ToString(CultureInfo.InvariantCulture)),
            ("pages_shared", PagesShared.ToString(CultureInfo.InvariantCulture)),
            ("pages_sharing", PagesSharing.ToString(CultureInfo.InvariantCulture)),
            ("pages_to_scan", PagesToScan.ToString(CultureInfo.InvariantCulture)),
            ("pages_unshared", PagesUnshared.ToString(CultureInfo.InvariantCulture)),
            ("pages_volatile", PagesVolatile.ToString(CultureInfo.InvariantCulture)),
            ("run", Run.ToString(CultureInfo.InvariantCulture)),
            ("sleep_millisecs", SleepMillisecs.ToString(CultureInfo.InvariantCulture)),
        };
        if (era.Has(Feature.KsmMergeAcrossNodes)) list.Add(("merge_across_nodes", MergeAcrossNodes.ToString(CultureInfo.InvariantCulture)));
        if (era.Has(Feature.KsmUseZeroPages)) list.Add(("use_zero_pages", UseZeroPages ? "1" : "0"));
        if (era.Has(Feature.KsmStableNodeChains))
        {
            list.Add(("max_page_sharing", MaxPageSharing.ToString(CultureInfo.InvariantCulture)));
            list.Add(("stable_node_chains", StableNodeChains.ToString(CultureInfo.InvariantCulture)));
            list.Add(("stable_node_chains_prune_millisecs", StableNodeChainsPruneMillisecs.ToString(CultureInfo.InvariantCulture)));
            list.Add(("stable_node_dups", StableNodeDups.ToString(CultureInfo.InvariantCulture)));
        }
        if (era.Has(Feature.KsmMergeAny)) list.Add(("general_profit", GeneralProfit.ToString(CultureInfo.InvariantCulture)));
        if (era.Has(Feature.KsmZeroPagesCounter)) list.Add(("ksm_zero_pages", KsmZeroPages.ToString(CultureInfo.InvariantCulture)));
        if (era.Has(Feature.KsmSmartScan))
        {
            list.Add(("pages_scanned", PagesScanned.ToString(CultureInfo.InvariantCulture)));
            list.Add(("pages_skipped", PagesSkipped.ToString(CultureInfo.InvariantCulture)));
            list.Add(("smart_scan", SmartScan ? "1" : "0"));
        }
        list.Sort(static (a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return list;
    }

    /// <summary>Read one sysfs file by name, or null if the era has no such file.</summary>
    public string? Show(string name)
    {
        foreach (var (n, v) in SysfsFiles())
            if (n == name) return v;
        return null;
    }

    /// <summary>One <c>name value</c> line per /sys/kernel/mm/ksm file, sorted by file name.</summary>
    public string FormatSysfs()
    {
        var sb = new System.Text.StringBuilder();
        foreach (var (n, v) in SysfsFiles()) sb.Append(n).Append(' ').Append(v).Append('\n');
        return sb.ToString();
    }

    /// <summary>IRunReport: the section heading printed after a run.</summary>
    public string ReportTitle => "/sys/kernel/mm/ksm";

    /// <summary>IRunReport: the counters, one <c>name value</c> line per /sys/kernel/mm/ksm file (<see cref="FormatSysfs"/>).</summary>
    public void Report(TextWriter w) => w.Write(FormatSysfs());

    /// <summary>
    /// Register mms whose VMAs are VM_MERGEABLE but that never went through ksm_madvise (VMAs declared mergeable in a
    /// scenario, or flagged by another path): the model's stand-in for the __ksm_enter that madvise would have done.
    /// </summary>
    void AdoptMergeableMms()
    {
        foreach (var mm in _k.Mms)
        {
            if (mm.KsmSlot != null || KsmTestExit(mm)) continue;
            foreach (var vma in mm.Vmas)
                if ((vma.Flags & VmFlags.Mergeable) != 0)
                {
                    KsmEnter(mm);
                    break;
                }
        }
    }

    /// <summary>
    /// A sysfs store (<c>echo VALUE &gt; /sys/kernel/mm/ksm/NAME</c>): 0, or -EINVAL / -EBUSY as the kernel returns.
    /// Writing run takes ksm_thread_mutex; run=2 unmerges everything on the caller's context.
    /// </summary>
    public async ValueTask<int> Store(string name, string value)
    {
        var era = _k.Era;
        if (!era.Has(Feature.Ksm)) return EINVAL;
        if (!ulong.TryParse(value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var v)) return EINVAL;
        switch (name)
        {
            case "run":
                return await RunStore((int)Math.Min(v, int.MaxValue));
            case "pages_to_scan":
                if (v > int.MaxValue) return EINVAL;
                PagesToScan = (int)v;
                return 0;
            case "sleep_millisecs":
                if (v > int.MaxValue) return EINVAL;
                SleepMillisecs = (int)v;
                return 0;
            case "use_zero_pages" when era.Has(Feature.KsmUseZeroPages):
                if (v > 1) return EINVAL;
                UseZeroPages = v == 1;
                return 0;
            case "max_page_sharing" when era.Has(Feature.KsmStableNodeChains):
                if (v < 2 || v > int.MaxValue) return EINVAL;
                if ((int)v == MaxPageSharing) return 0;
                if (PagesShared != 0) return EBUSY; // remove_all_stable_nodes() fails while KSM pages are mapped
                MaxPageSharing = (int)v;
                return 0;
            case "merge_across_nodes" when era.Has(Feature.KsmMergeAcrossNodes):
                if (v > 1) return EINVAL;
                if ((int)v != MergeAcrossNodes && PagesShared != 0) return EBUSY;
                MergeAcrossNodes = (int)v;
                return 0;
            case "smart_scan" when era.Has(Feature.KsmSmartScan):
                if (v > 1) return EINVAL;
                SmartScan = v == 1;
                return 0;
            case "stable_node_chains_prune_millisecs" when era.Has(Feature.KsmStableNodeChains):
                if (v > int.MaxValue) return EINVAL;
                StableNodeChainsPruneMillisecs = (int)v;
                return 0;
            default:
                return EINVAL;
        }
    }

    /// <summary>run_store: set ksm_run under ksm_thread_mutex; 2 = unmerge_and_remove_all_rmap_items; wake ksmd.</summary>
    async ValueTask<int> RunStore(int flags)
    {
        using var _ = _k.S.Current.Enter("run_store");
        if (flags > RunUnmerge) return EINVAL;
        int err = 0;
        await ThreadMutex.Lock();
        try
        {
            if (Run != flags)
            {
                Run = flags;
                if (flags == RunUnmerge)
                {
                    err = await UnmergeAndRemoveAllRmapItems();
                    if (err != 0) Run = RunStop;
                }
            }
        }
        finally
        {
            await ThreadMutex.Unlock();
        }
        if (flags == RunMerge) _threadWait.WakeAll();
        return err;
    }

    // ------------------------------------------------------------------ registration

    /// <summary>ksm_madvise (MADV_MERGEABLE / MADV_UNMERGEABLE) over [start, start+len). Takes mmap_lock for write.</summary>
    public async ValueTask<int> KsmMadvise(MmStruct mm, ulong start, ulong len, bool mergeable)
    {
        var k = _k;
        using var _ = k.S.Current.Enter("ksm_madvise");
        if (!k.Era.Has(Feature.Ksm)) return EINVAL;
        await mm.MmapLock.WriteLock();
        try
        {
            foreach (var vma in await Mmap.SplitAround(mm, start, start + len))
            {
                if (mergeable)
                {
                    if ((vma.Flags & (VmFlags.Mergeable | VmFlags.Shared | VmFlags.Hugetlb)) != 0) continue; // just ignore the advice
                    if (mm.KsmSlot == null) KsmEnter(mm);
                    vma.Flags |= VmFlags.Mergeable;
                }
                else
                {
                    if ((vma.Flags & VmFlags.Mergeable) == 0) continue;
                    if (vma.AnonVma != null)
                    {
                        int err = await UnmergeKsmPages(vma, vma.Start, vma.End);
                        if (err != 0) return err;
                    }
                    vma.Flags &= ~VmFlags.Mergeable;
                }
            }
            return 0;
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>
    /// prctl(PR_SET_MEMORY_MERGE): ksm_enable_merge_any / ksm_disable_merge_any. Enabling registers the mm and marks
    /// every compatible VMA VM_MERGEABLE; VMAs created later count as mergeable at scan time (the kernel flags them in
    /// mmap via ksm_add_vma). Disabling unmerges and clears the flags.
    /// </summary>
    public async ValueTask<int> PrSetMemoryMerge(MmStruct mm, bool enable)
    {
        var k = _k;
        using var _ = k.S.Current.Enter(enable ? "ksm_enable_merge_any" : "ksm_disable_merge_any");
        if (!k.Era.Has(Feature.KsmMergeAny)) return EINVAL;
        if (mm.MergeAny == enable) return 0;
        await mm.MmapLock.WriteLock();
        try
        {
            if (enable)
            {
                if (mm.KsmSlot == null) KsmEnter(mm);
                mm.MergeAny = true;
                foreach (var vma in mm.Vmas)
                    if (!vma.Shared && !vma.IsHugetlb) vma.Flags |= VmFlags.Mergeable; // ksm_add_vmas
                return 0;
            }
            foreach (var vma in mm.Vmas) // ksm_del_vmas
            {
                if ((vma.Flags & VmFlags.Mergeable) == 0) continue;
                if (vma.AnonVma != null)
                {
                    int err = await UnmergeKsmPages(vma, vma.Start, vma.End);
                    if (err != 0) return err;
                }
                vma.Flags &= ~VmFlags.Mergeable;
            }
            mm.MergeAny = false;
            return 0;
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>
    /// __ksm_enter: allocate the mm_slot and insert it just behind the scan cursor (at the tail when run is UNMERGE),
    /// so a new mm settles before ksmd reaches it; wake ksmd if the list was empty.
    /// </summary>
    public MmSlot KsmEnter(MmStruct mm)
    {
        if (mm.KsmSlot is MmSlot existing) return existing;
        bool needsWakeup = _slots.Count == 0;
        var slot = new MmSlot(mm);
        if (_scanSlot == null || (Run & RunUnmerge) != 0) _slots.Add(slot);
        else _slots.Insert(_slots.IndexOf(_scanSlot), slot);
        mm.KsmSlot = slot;
        mm.Count++; // mmgrab
        if (needsWakeup) _threadWait.WakeAll();
        return slot;
    }

    /// <summary>ksm_fork: a child of a registered mm is registered too (call from fork).</summary>
    public void KsmFork(MmStruct parent, MmStruct child)
    {
        if (parent.KsmSlot is MmSlot p)
        {
            var slot = KsmEnter(child);
            if (!_k.Era.Has(Feature.KsmForkResetsCounters))
            {
                // dup_mm's memcpy copied the parent's counters, but not its rmap_items: the child's stay stale (6.1..6.17).
                slot.MergingPages = p.MergingPages;
                slot.RmapItems = p.RmapItems;
            }
        }
        if (parent.MergeAny) child.MergeAny = true;
    }

    /// <summary>
    /// The KSM part of execve (mm_init's mmf_init_flags, then ksm_execve in __bprm_mm_init): the new mm keeps
    /// MMF_VM_MERGE_ANY from 6.6 (MMF_INIT_MASK), and is entered into the mm list, so that ksmd scans it, from 6.9.
    /// </summary>
    public void KsmExecve(MmStruct old, MmStruct mm)
    {
        if (!old.MergeAny || !_k.Era.Has(Feature.KsmMergeAnyAcrossExec)) return;
        mm.MergeAny = true;
        if (_k.Era.Has(Feature.KsmExecveEntersMm)) KsmEnter(mm);
    }

    void FreeSlot(MmSlot slot)
    {
        int i = _slots.IndexOf(slot);
        _slots.RemoveAt(i);
        slot.Mm.KsmSlot = null;
        slot.Mm.MergeAny = false;
        slot.Mm.Count--; // mmdrop
    }

    /// <summary>vma_ksm_compatible + VM_MERGEABLE: may ksmd merge pages of this VMA?</summary>
    public static bool VmaMergeable(Vma vma) =>
        !vma.Shared && !vma.IsHugetlb && ((vma.Flags & VmFlags.Mergeable) != 0 || vma.Mm.MergeAny);

    /// <summary>ksm_test_exit: the mm has no users left.</summary>
    static bool KsmTestExit(MmStruct mm) => mm.Exited || mm.Users == 0;

    /// <summary>find_mergeable_vma: the mergeable VMA with an anon_vma containing <paramref name="addr"/>.</summary>
    static Vma? FindMergeableVma(MmStruct mm, ulong addr)
    {
        if (KsmTestExit(mm)) return null;
        var vma = mm.FindVma(addr);
        if (vma == null || !VmaMergeable(vma) || vma.AnonVma == null) return null;
        return vma;
    }

    // ------------------------------------------------------------------ ksmd

    /// <summary>kthread_run(ksm_scan_thread, "ksmd"): spawn the daemon context (once).</summary>
    public KContext StartDaemon()
    {
        _ksmd ??= _k.S.Spawn("ksmd", KsmScanThread, daemon: true);
        return _ksmd;
    }

    /// <summary>ksmd_should_run: run has MERGE and some mm is registered.</summary>
    bool KsmdShouldRun() => (Run & RunMerge) != 0 && _slots.Count > 0;

    /// <summary>
    /// ksm_scan_thread: each wake-up scans pages_to_scan pages under ksm_thread_mutex, then sleeps sleep_millisecs of
    /// simulated time; while there is nothing to do it waits on ksm_thread_wait.
    /// </summary>
    async ValueTask KsmScanThread(KContext ctx)
    {
        using var _ = ctx.Enter("ksm_scan_thread");
        while (true)
        {
            await ThreadMutex.Lock();
            AdoptMergeableMms();
            if (KsmdShouldRun()) await KsmDoScan(PagesToScan);
            await ThreadMutex.Unlock();
            if (KsmdShouldRun()) await _k.S.Sleep(SleepMillisecs * 1_000_000L);
            else await _threadWait.Wait();
        }
    }

    /// <summary>
    /// Test/scenario helper (no kernel counterpart): run ksm_do_scan on the current context until
    /// <paramref name="fullScans"/> more full scans have completed (or no mm is registered). Ignores <c>run</c>.
    /// </summary>
    public async ValueTask ScanFull(int fullScans = 1)
    {
        using var _ = _k.S.Current.Enter("ksm_do_scan");
        await ThreadMutex.Lock();
        try
        {
            AdoptMergeableMms();
            long target = FullScans + fullScans;
            while (FullScans < target && _slots.Count > 0)
                await KsmDoScan(Math.Max(PagesToScan, 1));
        }
        finally
        {
            await ThreadMutex.Unlock();
        }
    }

    /// <summary>Check the counter invariants (debug builds and tests).</summary>
    [System.Diagnostics.Conditional("DEBUG")]
    public void AssertInvariants()
    {
        var err = CheckInvariants();
        if (err != null) throw new ModelException("ksm: " + err);
    }

    /// <summary>Recompute the counters from the trees and slots; null when they agree.</summary>
    public string? CheckInvariants()
    {
        long shared = 0, sharing = 0, chains = 0, dups = 0, items = 0;
        foreach (var root in _stable.Values)
        {
            if (root.IsChain)
            {
                chains++;
                foreach (var d in root.Dups!)
                {
                    dups++;
                    if (d.Hlist.Count > 0) { shared++; sharing += d.Hlist.Count - 1; }
                }
            }
            else if (root.Hlist.Count > 0) { shared++; sharing += root.Hlist.Count - 1; }
        }
        bool exactPerMm = _k.Era.Has(Feature.KsmForkResetsCounters);
        foreach (var s in _slots)
        {
            items += s.RmapList.Count;
            // Before 6.18 a fork child starts from a copy of its parent's counter: stale, so never lower than its list.
            if (exactPerMm ? s.RmapItems != s.RmapList.Count : s.RmapItems < s.RmapList.Count)
                return $"{s.Mm} ksm_rmap_items {s.RmapItems}, its rmap_list holds {s.RmapList.Count}";
        }
        if (shared != PagesShared) return $"pages_shared {PagesShared}, trees say {shared}";
        if (sharing != PagesSharing) return $"pages_sharing {PagesSharing}, trees say {sharing}";
        if (chains != StableNodeChains) return $"stable_node_chains {StableNodeChains}, trees say {chains}";
        if (dups != StableNodeDups) return $"stable_node_dups {StableNodeDups}, trees say {dups}";
        if (items != RmapItems) return $"ksm_rmap_items {RmapItems}, slots say {items}";
        if (_unstable.Count > PagesUnshared) return $"pages_unshared {PagesUnshared} < unstable tree size {_unstable.Count}";
        return null;
    }
}
