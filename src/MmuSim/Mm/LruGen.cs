using MmuSim.Eras;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// The multi-gen LRU of mm/vmscan.c (CONFIG_LRU_GEN, 6.1+), for the one memcg the model has, one lruvec per node:
/// generations numbered by sequence, min_seq[type] .. max_seq, and each folio's generation; the aging that makes a new
/// one (try_to_inc_max_seq: walk_mm over every mm, then inc_max_seq); the rmap side's lru_gen_look_around; and the
/// debugfs file /sys/kernel/debug/lru_gen that reads the generations and runs the aging, as KVM's
/// access_tracking_perf_test does in its lru_gen mode. Switched on by /sys/kernel/mm/lru_gen/enabled (<see cref="Enable"/>).
/// </summary>
/// <remarks>
/// <para>Where the secondary MMUs come in. 6.1..6.11: walk_pte_range and the look-around skip a PTE the primary has not
/// marked young and test-and-clear the primary's Accessed bit only (ptep_test_and_clear_young): a page the guest touches
/// only through KVM's SPTEs looks old and is never promoted; folio_referenced_one still asks the secondaries
/// (ptep_clear_flush_young_notify) after the look-around. 6.12+ (1d4832becdc2): in an mm with notifiers every present
/// PTE and huge PMD is aged through ptep/pmdp_clear_young_notify, so the secondaries' young state promotes the folio, and
/// the look-around replaces folio_referenced_one's clear_flush_young (no TLB flush).</para>
/// <para>State and invariants. The kernel keeps a folio's generation in folio->flags (LRU_GEN_MASK); the model's frame
/// has no spare bits, so it lives here, keyed by head pfn and frame generation as <see cref="PageIdle"/>'s flags are: a
/// freed and reused frame is a new folio. A folio on the LRU that this table does not know yet was added since the last
/// look; it gets what lru_gen_add_folio gives a new folio (lru_gen_folio_seq: max_seq - 1 for a faulted or inactive one,
/// never older than min_seq). max_seq and min_seq change only in the aging, which first takes in every new folio, so
/// that is the generation the folio was given when it was added. Every folio's sequence lies in [min_seq[type],
/// max_seq] and max_seq - min_seq[type] + 1 &lt;= MAX_NR_GENS (<see cref="AssertInvariants"/>).</para>
/// <para>Locking: the kernel's lru_lock; every change here happens between two scheduling points. The walk takes the
/// mmap_lock for read with a trylock (a contended mm is skipped, as walk_mm skips it) and each PTL or PMD lock with a
/// trylock (a contended table is skipped, as walk_pte_range returns false).</para>
/// <para>Eviction (<see cref="RunEviction"/>, the debugfs '-' command): the oldest generation's folios go through
/// shrink_folio_list with folio_referenced; a folio found used there is put back in generation max_seq - 1.</para>
/// <para>Not modelled: tiers, refaults and the PID controller (its choice with no refaults is taken), the Bloom filter and mm_list (the
/// debugfs aging here always has force_scan; every live mm is walked), memcg hierarchy, NONLEAF_YOUNG (non-leaf PMD
/// Accessed bits) and the look-around's Bloom feedback.</para>
/// </remarks>
public sealed class LruGen
{
    /// <summary>MIN_NR_GENS and MAX_NR_GENS (include/linux/mmzone.h).</summary>
    public const int MinNrGens = 2, MaxNrGens = 4;

    /// <summary>Bits of /sys/kernel/mm/lru_gen/enabled: LRU_GEN_CORE, LRU_GEN_MM_WALK, LRU_GEN_NONLEAF_YOUNG.</summary>
    public const int CoreBit = 1, MmWalkBit = 2, NonleafYoungBit = 4;

    /// <summary>MIN_LRU_BATCH (BITS_PER_LONG): how many PTEs lru_gen_look_around looks at around a young one.</summary>
    public const int MinLruBatch = 64;

    const int Anon = 0, File = 1;

    readonly Kernel _k;
    readonly Dictionary<long, (ushort FrameGen, ulong Seq)> _seq = [];
    readonly ulong[] _maxSeq;
    readonly ulong[,] _minSeq;
    readonly Dictionary<(int Nid, ulong Seq), long> _birthNs = [];

    LruGen(Kernel k)
    {
        _k = k;
        int nodes = k.Mem.Nodes;
        _maxSeq = new ulong[nodes];
        _minSeq = new ulong[nodes, 2];
        for (int nid = 0; nid < nodes; nid++)
        {
            // lru_gen_init_lruvec: max_seq = MIN_NR_GENS + 1, min_seq = 0, every timestamp now.
            _maxSeq[nid] = MinNrGens + 1;
            for (ulong s = 0; s <= _maxSeq[nid]; s++) _birthNs[(nid, s)] = k.S.ClockNs;
        }
    }

    /// <summary>This kernel's MGLRU state (created on first use; <see cref="Enabled"/> is false until written).</summary>
    public static LruGen Of(Kernel k) => k.GetSubsystem(static kk => new LruGen(kk));

    /// <summary>The MGLRU state if it exists and is enabled (lru_gen_enabled()), else null. No allocation.</summary>
    internal static LruGen? IfEnabled(Kernel k) =>
        k.Subsystems.TryGetValue(typeof(LruGen), out var o) && ((LruGen)o).Enabled ? (LruGen)o : null;

    /// <summary>The value of /sys/kernel/mm/lru_gen/enabled.</summary>
    public int Features { get; private set; }

    /// <summary>lru_gen_enabled(): LRU_GEN_CORE set.</summary>
    public bool Enabled => (Features & CoreBit) != 0;

    /// <summary>should_walk_mmu(): the aging walks page tables (LRU_GEN_MM_WALK).</summary>
    public bool WalksMmu => (Features & MmWalkBit) != 0;

    /// <summary>The youngest generation of node <paramref name="nid"/>.</summary>
    public ulong MaxSeq(int nid = 0) => _maxSeq[nid];

    /// <summary>The oldest generation of node <paramref name="nid"/> for anon (<paramref name="file"/> false) or file folios.</summary>
    public ulong MinSeq(int nid = 0, bool file = false) => _minSeq[nid, file ? File : Anon];

    /// <summary>
    /// enabled_store (mm/vmscan.c): write /sys/kernel/mm/lru_gen/enabled. Switching the core on moves every LRU folio
    /// into the generations (lru_gen_change_state, fill_evictable); here they are taken in at the next look, with the
    /// same result. Returns 0, or -ENOENT where the era has no MGLRU (no such file), -EINVAL for bits it does not know.
    /// </summary>
    public int Enable(int features)
    {
        if (!_k.Era.Has(Feature.LruGen)) return Errno.ENOENT;
        if ((features & ~(CoreBit | MmWalkBit | NonleafYoungBit)) != 0) return Errno.EINVAL;
        if ((Features & CoreBit) != 0 && (features & CoreBit) == 0) _seq.Clear(); // lru_gen_change_state(false): back to the classic lists
        Features = features;
        return 0;
    }

    static int TypeOf(Kernel k, long head)
    {
        // folio_is_file_lru: !swapbacked. Anon, KSM and shmem folios are swap-backed.
        ref var f = ref k.Mem[head];
        if (f.Has(PageFlags.Anon) || f.Has(PageFlags.Ksm)) return Anon;
        return k.AddressSpaceById(f.AnonRoot).IsShmem ? Anon : File;
    }

    /// <summary>
    /// The LRU folio at <paramref name="pfn"/> that the generations hold (head), or -1: not on the LRU, isolated
    /// (folio_test_lru clear: lru_gen_del_folio took it off), or unevictable (guest_memfd).
    /// </summary>
    long GenFolioOf(long pfn)
    {
        long head = Vmscan.LruFolioOf(_k, pfn);
        if (head < 0 || Vmscan.IsIsolated(_k, head)) return -1;
        ref var f = ref _k.Mem[head];
        if (!f.Has(PageFlags.Anon) && !f.Has(PageFlags.Ksm) && _k.AddressSpaceById(f.AnonRoot).Kind == FileKind.GuestMemfd) return -1;
        return head;
    }

    /// <summary>
    /// The folio's generation: its sequence; a folio added since the last look gets lru_gen_folio_seq's
    /// max(max_seq - MIN_NR_GENS + 1, min_seq[type]).
    /// </summary>
    ulong SeqOf(long head)
    {
        ushort gen = _k.Mem[head].Generation;
        int nid = _k.Mem.NodeOf(head);
        if (_seq.TryGetValue(head, out var e) && e.FrameGen == gen)
        {
            // A folio that was isolated while eviction retired its generation comes back no older than min_seq.
            ulong min = _minSeq[nid, TypeOf(_k, head)];
            if (e.Seq >= min) return e.Seq;
            _seq[head] = (gen, min);
            return min;
        }
        ulong seq = Math.Max(_maxSeq[nid] - MinNrGens + 1, _minSeq[nid, TypeOf(_k, head)]);
        _seq[head] = (gen, seq);
        return seq;
    }

    /// <summary>Give every folio added since the last look its generation (<see cref="SeqOf"/>), before max_seq moves.</summary>
    void TakeInNewFolios() => ForEachFolio(static (_, _) => { });

    /// <summary>Every LRU folio of the generations, in pfn order (heads); takes in the new ones (<see cref="SeqOf"/>).</summary>
    void ForEachFolio(Action<long, ulong> visit)
    {
        long cap = _k.Mem.Capacity;
        for (long pfn = 1; pfn < cap; pfn++)
        {
            long head = GenFolioOf(pfn);
            if (head != pfn) continue; // tails are counted with their head
            visit(head, SeqOf(head));
        }
    }

    int NrPages(long head) => _k.Mem.FolioNr(head);

    /// <summary>One line of lru_gen_seq_show: a generation's sequence, age, and anon and file pages.</summary>
    public readonly record struct GenStats(int Nid, ulong Seq, long AgeMs, long Anon, long File);

    /// <summary>
    /// lru_gen_seq_show (the non-full format of /sys/kernel/debug/lru_gen) for this memcg: per node, each generation from
    /// min(min_seq) to max_seq with its age in ms and its anon and file pages (0 for a type whose min_seq is past it).
    /// </summary>
    public async ValueTask<List<GenStats>> ReadStats()
    {
        await _k.S.Point(PointKind.Counter, 0, this);
        var pages = new Dictionary<(int, ulong, int), long>();
        ForEachFolio((head, seq) =>
        {
            var key = (_k.Mem.NodeOf(head), seq, TypeOf(_k, head));
            pages[key] = pages.GetValueOrDefault(key) + NrPages(head);
        });
        var lines = new List<GenStats>();
        for (int nid = 0; nid < _maxSeq.Length; nid++)
            for (ulong s = Math.Min(_minSeq[nid, Anon], _minSeq[nid, File]); s <= _maxSeq[nid]; s++)
                lines.Add(new GenStats(nid, s, (_k.S.ClockNs - _birthNs.GetValueOrDefault((nid, s))) / 1_000_000,
                    s < _minSeq[nid, Anon] ? 0 : pages.GetValueOrDefault((nid, s, Anon)),
                    s < _minSeq[nid, File] ? 0 : pages.GetValueOrDefault((nid, s, File))));
        return lines;
    }

    /// <summary>
    /// run_aging (the debugfs '+ memcg_id node_id seq [swappiness [force_scan]]' command): 0 and nothing done for a
    /// sequence older than max_seq, -EINVAL for a newer one, -ERANGE without force_scan when the generations are full;
    /// else try_to_inc_max_seq. -ENOENT where MGLRU is off (no such file).
    /// </summary>
    public async ValueTask<int> RunAging(int nid, ulong seq, int swappiness, bool forceScan)
    {
        using var _ = _k.S.Current.Enter("run_aging");
        if (!Enabled) return Errno.ENOENT;
        if (nid < 0 || nid >= _maxSeq.Length) return Errno.EINVAL;
        await _k.S.Point(PointKind.Counter, seq, this);
        ulong max = _maxSeq[nid];
        if (seq < max) return 0;
        if (seq > max) return Errno.EINVAL;
        if (!forceScan && _minSeq[nid, swappiness == 0 ? File : Anon] + MaxNrGens - 1 <= max) return Errno.ERANGE;
        await TryToIncMaxSeq(nid, max, canSwap: swappiness != 0);
        return 0;
    }

    /// <summary>MAX_SWAPPINESS: the largest swappiness the debugfs commands take (anon only).</summary>
    public const int MaxSwappiness = 200;

    /// <summary>What <see cref="RunEviction"/> did: 0 or an errno, the folios it scanned and the pages it reclaimed.</summary>
    public readonly record struct EvictionResult(int Errno, int Scanned, long Reclaimed);

    /// <summary>
    /// run_eviction (the debugfs '- memcg_id node_id seq [swappiness [nr_to_reclaim]]' command): -EINVAL unless
    /// seq + MIN_NR_GENS &lt;= max_seq; then evict_folios while min_seq[!swappiness] &lt;= seq and fewer than
    /// <paramref name="nrToReclaim"/> pages were reclaimed. -ENOENT where MGLRU is off. Where every folio left in the
    /// oldest generation refuses reclaim without being found used, the kernel's loop runs until a signal; the model's
    /// command stops there.
    /// </summary>
    public async ValueTask<EvictionResult> RunEviction(int nid, ulong seq, int swappiness, long nrToReclaim)
    {
        using var _ = _k.S.Current.Enter("run_eviction");
        if (!Enabled) return new(Errno.ENOENT, 0, 0);
        if (nid < 0 || nid >= _maxSeq.Length || swappiness < 0 || swappiness > MaxSwappiness) return new(Errno.EINVAL, 0, 0);
        await _k.S.Point(PointKind.Counter, seq, this);
        if (seq + MinNrGens > _maxSeq[nid]) return new(Errno.EINVAL, 0, 0);
        int scanned = 0;
        long reclaimed = 0;
        while (seq >= _minSeq[nid, swappiness == 0 ? File : Anon] && reclaimed < nrToReclaim)
        {
            var (n, r, progress) = await EvictFolios(nid, swappiness);
            scanned += n;
            reclaimed += r;
            if (n == 0 || !progress) break;
        }
        AssertInvariants();
        return new(0, scanned, reclaimed);
    }

    /// <summary>
    /// isolate_folios' choice of type: file without swappiness; anon if its oldest generation is older; swappiness 1
    /// file first and MAX_SWAPPINESS anon first; else get_type_to_scan's PID controller, which with no refaults recorded
    /// (the model keeps no refault history) picks file (positive_ctrl_err).
    /// </summary>
    int TypeToScan(int nid, int swappiness) =>
        swappiness == 0 ? File
        : _minSeq[nid, Anon] < _minSeq[nid, File] ? Anon
        : swappiness == MaxSwappiness ? Anon
        : File;

    /// <summary>
    /// evict_folios: isolate_folios takes the folios of the oldest generation of the chosen type (the other type if it
    /// has none; never a type down to MIN_NR_GENS generations; at most MIN_LRU_BATCH pages: scan_folios), try_to_inc_min_seq moves min_seq past empty
    /// generations, and eviction stops once only MIN_NR_GENS evictable generations are left. shrink_folio_list then
    /// reclaims each folio after folio_referenced, whose look-around (or, for a PTE the primary has not marked young,
    /// the secondaries' clear_flush_young) can find it used: it goes back PG_active, to generation max_seq - 1
    /// (lru_gen_folio_seq, no PG_workingset in the model); a folio kept for another reason goes back as reclaiming, to
    /// max(max_seq - 3, min_seq). Returns the folios scanned plus min_seq moves, the pages reclaimed, and whether
    /// anything changed. Not modelled: tiers and refaults, sort_folio's moving of dirty or writeback file folios.
    /// </summary>
    async ValueTask<(int Scanned, long Reclaimed, bool Progress)> EvictFolios(int nid, int swappiness)
    {
        using var _ = _k.S.Current.Enter("evict_folios");
        await _k.S.Point(PointKind.Counter, (ulong)nid, this); // lru_lock
        TakeInNewFolios();
        var list = new List<(long Head, int Nr)>();
        int type = TypeToScan(nid, swappiness);
        for (int i = swappiness == 0 ? 1 : 0; i < 2 && list.Count == 0; i++, type = 1 - type)
        {
            if (_maxSeq[nid] - _minSeq[nid, type] + 1 == MinNrGens) continue; // scan_folios: get_nr_gens == MIN_NR_GENS
            ulong oldest = _minSeq[nid, type];
            int t = type, isolated = 0;
            ForEachFolio((head, seq) =>
            {
                // scan_folios stops once it has isolated MIN_LRU_BATCH pages: nr_to_reclaim is checked between batches.
                if (isolated >= MinLruBatch || seq != oldest || _k.Mem.NodeOf(head) != nid || TypeOf(_k, head) != t) return;
                list.Add((head, NrPages(head)));
                isolated += NrPages(head);
            });
        }
        int moved = TryToIncMinSeq(nid, swappiness);
        int scanned = list.Count + moved;
        if (EvictableMinSeq(nid, swappiness) + MinNrGens > _maxSeq[nid]) scanned = 0;
        long reclaimed = 0;
        int activated = 0;
        foreach (var (head, nr) in list)
        {
            bool active = false;
            if (await Vmscan.ShrinkFolio(_k, head, checkReferences: true, referenced: _ => active = true)) reclaimed += nr;
            else if (active && GenFolioOf(head) == head)
            {
                int type2 = TypeOf(_k, head);
                _seq[head] = (_k.Mem[head].Generation, Math.Max(_maxSeq[nid] - MinNrGens + 1, _minSeq[nid, type2]));
                activated++;
            }
        }
        AssertInvariants();
        return (scanned, reclaimed, moved > 0 || reclaimed > 0 || activated > 0);
    }

    /// <summary>evictable_min_seq: the older min_seq of the types eviction may take (file only without swappiness).</summary>
    ulong EvictableMinSeq(int nid, int swappiness) =>
        swappiness == 0 ? _minSeq[nid, File] : Math.Min(_minSeq[nid, Anon], _minSeq[nid, File]);

    /// <summary>
    /// try_to_inc_min_seq: for each type eviction may take, move min_seq past empty oldest generations while at least
    /// MIN_NR_GENS remain. Returns how many moves it made. Not modelled: the anon/file min_seq balancing after it.
    /// </summary>
    int TryToIncMinSeq(int nid, int swappiness)
    {
        int moves = 0;
        for (int type = swappiness == 0 ? File : Anon; type <= File; type++)
            while (_minSeq[nid, type] + MinNrGens <= _maxSeq[nid] && GenerationEmpty(nid, type, _minSeq[nid, type]))
            {
                _minSeq[nid, type]++;
                moves++;
            }
        return moves;
    }

    bool GenerationEmpty(int nid, int type, ulong seq)
    {
        foreach (var (head, e) in _seq)
            if (e.Seq == seq && _k.Mem[head].Generation == e.FrameGen && GenFolioOf(head) == head && _k.Mem.NodeOf(head) == nid && TypeOf(_k, head) == type)
                return false;
        return true;
    }

    /// <summary>try_to_inc_max_seq: walk every mm (when MM_WALK is on), promoting young folios to max_seq, then inc_max_seq.</summary>
    async ValueTask TryToIncMaxSeq(int nid, ulong seq, bool canSwap)
    {
        using var _ = _k.S.Current.Enter("try_to_inc_max_seq");
        TakeInNewFolios();
        if (WalksMmu)
        {
            var mms = _k.Mms;
            for (int i = 0; i < mms.Count; i++)
                if (!mms[i].Exited) await WalkMm(mms[i], nid, seq, canSwap);
        }
        await _k.S.Point(PointKind.Counter, seq, this);
        if (seq == _maxSeq[nid]) IncMaxSeq(nid, canSwap);
        AssertInvariants();
    }

    /// <summary>inc_max_seq: make room (inc_min_seq of a type whose generations are all in use), then a new youngest generation.</summary>
    void IncMaxSeq(int nid, bool canSwap)
    {
        for (int type = File; type >= Anon; type--)
            if (_maxSeq[nid] - _minSeq[nid, type] + 1 == MaxNrGens) IncMinSeq(nid, type, canSwap);
        _maxSeq[nid]++;
        _birthNs[(nid, _maxSeq[nid])] = _k.S.ClockNs;
    }

    /// <summary>inc_min_seq: the oldest generation's folios move to the next one (folio_inc_gen); anon only if it can swap.</summary>
    void IncMinSeq(int nid, int type, bool canSwap)
    {
        ulong oldest = _minSeq[nid, type];
        if (type == File || canSwap)
            foreach (var (head, e) in _seq)
                if (e.Seq == oldest && _k.Mem[head].Generation == e.FrameGen && _k.Mem.NodeOf(head) == nid && TypeOf(_k, head) == type)
                    _seq[head] = (e.FrameGen, oldest + 1);
        _minSeq[nid, type] = oldest + 1;
    }

    /// <summary>
    /// folio_update_gen / walk_update_folio: a folio found young moves to the generation being made (never back to an
    /// older one); a dirty PTE of a file folio dirties it. Callers pass only folios <see cref="GenFolioOf"/> found.
    /// </summary>
    void UpdateGen(long head, ulong seq, bool dirty)
    {
        ulong old = SeqOf(head);
        if (old < seq) _seq[head] = (_k.Mem[head].Generation, seq);
        if (dirty && TypeOf(_k, head) == File && !_k.Mem[head].Has(PageFlags.Dirty)) Folio.MarkDirty(_k, head);
    }

    /// <summary>should_skip_vma: hugetlb and VM_LOCKED VMAs, and anon or shmem ones when the aging cannot swap.</summary>
    static bool ShouldSkipVma(Vma vma, bool canSwap)
    {
        if (vma.IsHugetlb || (vma.Flags & VmFlags.Locked) != 0) return true;
        if (vma.IsAnonymous || vma.File!.IsShmem) return !canSwap;
        return false;
    }

    /// <summary>walk_mm: walk_page_range over every VMA of the mm, under mmap_read_trylock (a contended mm is skipped).</summary>
    async ValueTask WalkMm(MmStruct mm, int nid, ulong seq, bool canSwap)
    {
        using var _ = _k.S.Current.Enter("walk_mm");
        if (!await mm.MmapLock.TryReadLock()) return;
        try
        {
            var vmas = mm.Vmas;
            for (int i = 0; i < vmas.Count; i++)
            {
                var vma = vmas[i];
                if (ShouldSkipVma(vma, canSwap)) continue;
                for (ulong addr = mm.SkipPmdHole(vma.Start, vma.End); addr < vma.End; addr = mm.SkipPmdHole(addr, vma.End))
                {
                    ulong next = mm.PmdAddrEnd(addr, vma.End);
                    var pmd = mm.PeekPmd(addr);
                    if (pmd.Present && pmd.Huge) await WalkPmdRangeLocked(mm, addr & MmStruct.PmdMask, nid, seq);
                    else if (pmd.Present) await WalkPteRange(vma, addr, next, nid, seq);
                    addr = next;
                }
            }
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
    }

    /// <summary>
    /// get_pte_pfn / get_pmd_pfn's test: a present entry of a real page (not the zero page, not special) that is young,
    /// or (6.12+) belongs to an mm with notifiers, whose secondaries may have seen an access the primary did not.
    /// </summary>
    bool WorthAging(MmStruct mm, Pte e) =>
        e.Present && !e.Special && e.Pfn != PhysMem.ZeroPfn && !_k.Mem.IsHugeZero(e.Pfn)
        && (e.Accessed || (_k.Era.Has(Feature.LruGenYoungNotify) && mm.Notifiers.HasNotifiers));

    /// <summary>walk_pte_range: under a trylock of the PTL, age each PTE of [addr, end) mapping a folio of this node.</summary>
    async ValueTask WalkPteRange(Vma vma, ulong addr, ulong end, int nid, ulong seq)
    {
        var mm = vma.Mm;
        using var _ = _k.S.Current.Enter("walk_pte_range");
        int t = mm.PteTable(addr);
        if (t == 0) return;
        if (!await mm.TryLockPtl(t)) return;
        for (ulong a = addr; a < end; a += MmStruct.PageSize)
        {
            var pte = await mm.PtepGet(t, a);
            if (!WorthAging(mm, pte)) continue;
            long head = GenFolioOf(pte.Pfn);
            if (head < 0 || _k.Mem.NodeOf(head) != nid) continue; // get_pfn_folio
            if (!await AgeEntry(mm, t, a, MmStruct.PageSize)) continue;
            UpdateGen(head, seq, pte.Dirty);
        }
        await mm.UnlockPtl(t);
    }

    /// <summary>walk_pmd_range_locked: under a trylock of the PMD lock, age a huge PMD mapping a folio of this node.</summary>
    async ValueTask WalkPmdRangeLocked(MmStruct mm, ulong haddr, int nid, ulong seq)
    {
        using var _ = _k.S.Current.Enter("walk_pmd_range_locked");
        if (!await mm.TryLockPmd(haddr)) return;
        var pmd = await mm.PmdpGet(haddr);
        if (pmd.Huge && WorthAging(mm, pmd))
        {
            long head = GenFolioOf(pmd.Pfn);
            if (head >= 0 && _k.Mem.NodeOf(head) == nid && await AgeEntry(mm, 0, haddr, MmStruct.PmdSize))
                UpdateGen(head, seq, pmd.Dirty);
        }
        await mm.UnlockPmd(haddr);
    }

    /// <summary>
    /// The test-and-clear the walk and the look-around apply: ptep/pmdp_clear_young_notify (6.12+), else the primary's
    /// ptep/pmdp_test_and_clear_young alone. Caller holds the PTL or PMD lock.
    /// </summary>
    async ValueTask<bool> AgeEntry(MmStruct mm, int table, ulong addr, ulong size)
    {
        if (_k.Era.Has(Feature.LruGenYoungNotify)) return await Tlb.PtepClearYoungNotify(mm, table, addr, size);
        if (size == MmStruct.PmdSize)
        {
            var pmd = await mm.PmdpGet(addr);
            if (!pmd.Accessed) return false;
            await mm.SetPmd(addr, pmd.Mkold());
            return true;
        }
        var pte = await mm.PtepGet(table, addr);
        if (!pte.Present || !pte.Accessed) return false;
        await mm.SetPte(table, addr, pte.Mkold());
        return true;
    }

    /// <summary>
    /// lru_gen_look_around, from folio_referenced_one with the PTL held. 6.12+: the PTE itself is aged first through
    /// ptep_clear_young_notify (old: false, not referenced); a VMA of one page ends there. Before, the caller comes here
    /// only for a PTE the primary marked young. Then up to MIN_LRU_BATCH PTEs around it, within its PMD and VMA, are
    /// aged the same way (the PTE itself too before 6.12) and their young folios promoted to max_seq; the folio under
    /// reclaim is isolated and keeps its generation. Returns true (referenced). VM_SPECIAL VMAs: none in the model.
    /// </summary>
    internal async ValueTask<bool> LookAround(Vma vma, int table, ulong addr)
    {
        var mm = vma.Mm;
        using var _ = _k.S.Current.Enter("lru_gen_look_around");
        bool notify = _k.Era.Has(Feature.LruGenYoungNotify);
        if (notify && !await Tlb.PtepClearYoungNotify(mm, table, addr)) return false;
        ulong start = Math.Max(addr & MmStruct.PmdMask, vma.Start);
        ulong end = Math.Min(addr | ~MmStruct.PmdMask, vma.End - 1) + 1;
        if (notify && end - start == MmStruct.PageSize) return true;
        const ulong Batch = MinLruBatch * MmStruct.PageSize;
        if (end - start > Batch)
        {
            if (addr - start < Batch / 2) end = start + Batch;
            else if (end - addr < Batch / 2) start = end - Batch;
            else { start = addr - Batch / 2; end = addr + Batch / 2; }
        }
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            var pte = await mm.PtepGet(table, a);
            bool agedAbove = notify && a == addr;
            if (!agedAbove && !WorthAging(mm, pte)) continue;
            long head = pte.Present ? GenFolioOf(pte.Pfn) : -1;
            if (head < 0 || (!agedAbove && !await AgeEntry(mm, table, a, MmStruct.PageSize))) continue;
            UpdateGen(head, _maxSeq[_k.Mem.NodeOf(head)], pte.Dirty);
        }
        return true;
    }

    /// <summary>
    /// The generation (sequence) of the LRU folio holding <paramref name="pfn"/>, or null when no folio of the
    /// generations holds it (not on the LRU, isolated, unevictable). A folio not seen before is taken in.
    /// </summary>
    public ulong? GenerationOf(long pfn)
    {
        long head = GenFolioOf(pfn);
        return head < 0 ? null : SeqOf(head);
    }

    /// <summary>
    /// The invariants, for tests and <see cref="AssertInvariants"/>: every known live folio's sequence lies in its
    /// node's [min_seq[type], max_seq], and no node holds more than MAX_NR_GENS generations. Null when they hold.
    /// </summary>
    public string? CheckInvariants()
    {
        for (int nid = 0; nid < _maxSeq.Length; nid++)
            for (int type = Anon; type <= File; type++)
                if (_maxSeq[nid] - _minSeq[nid, type] + 1 > MaxNrGens)
                    return $"lru_gen node {nid}: {_maxSeq[nid] - _minSeq[nid, type] + 1} generations of type {type}";
        foreach (var (head, e) in _seq)
        {
            if (_k.Mem[head].Generation != e.FrameGen || GenFolioOf(head) != head) continue;
            int nid = _k.Mem.NodeOf(head);
            if (e.Seq > _maxSeq[nid] || e.Seq < _minSeq[nid, TypeOf(_k, head)])
                return $"lru_gen: folio 0x{head:x} in generation {e.Seq}, outside [{_minSeq[nid, TypeOf(_k, head)]}, {_maxSeq[nid]}]";
        }
        return null;
    }

    /// <summary>Debug-only: <see cref="CheckInvariants"/>, thrown as a model error.</summary>
    [System.Diagnostics.Conditional("DEBUG")]
    public void AssertInvariants()
    {
        if (CheckInvariants() is { } err) throw new ModelException(err);
    }
}
