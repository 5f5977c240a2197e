using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MmuSim.Mm;

/// <summary>Folio/page flags kept in <see cref="Frame"/> (12 bits).</summary>
[Flags]
public enum PageFlags : ushort
{
    None = 0,
    Dirty = 1 << 0,
    Referenced = 1 << 1,
    Anon = 1 << 2,
    Ksm = 1 << 3,
    Lazyfree = 1 << 4,
    AnonExclusive = 1 << 5,
    /// <summary>Head of a compound (large) folio: order 2..9 (16 KiB .. 2 MiB).</summary>
    Head = 1 << 6,
    /// <summary>Tail page of a compound folio; its head is pfn rounded down to the folio's size (<see cref="PhysMem.FolioOf"/>).</summary>
    Tail = 1 << 7,
    /// <summary>On the allocator's free list.</summary>
    Free = 1 << 8,
    /// <summary>Checker bookkeeping: a secondary wrote the page while the folio was clean (invariant 7).</summary>
    SecondaryDirtyPending = 1 << 9,
    /// <summary>The shared zero page.</summary>
    Zero = 1 << 10,
    /// <summary>Under writeback / in the swap cache (reclaim bookkeeping).</summary>
    Swapcache = 1 << 11,
}

/// <summary>
/// Model metadata of one 4 KiB physical frame: 24 bytes, packed.
/// <code>
///   Contents  bits 0..63   the page's bytes, as one value: equal values = equal bytes; the zero page holds 0
///   Counts    bits 0..23   refcount (folio refcount on the head; on the first tail: entire_mapcount of a PMD-mapped THP)
///             bits 24..47  mapcount (PTE mappings of this 4 KiB page)
///             bits 48..63  anon root: id of the anon_vma family (rmap), 0 = none
///   Meta      bits 0..35   index: virtual page number the folio was first mapped at (anon rmap, like page->index)
///             bits 36..51  generation: bumped on every free, so a stale (pfn, gen) is detectable after reuse
///             bits 52..63  <see cref="PageFlags"/>
/// </code>
/// For a free frame, the refcount bits hold the next free pfn (intrusive free list; nothing is allocated per page).
/// A compound (2 MiB) folio keeps two counts in its tail pages' otherwise unused refcount bits, as the kernel keeps them
/// in struct folio's first tail page: entire_mapcount in the first tail (<see cref="PhysMem.EntireMapcountHolder"/>),
/// _pincount (FOLL_PIN pins of a large folio, 5.7+) in the second (<see cref="PhysMem.PincountHolder"/>). A small
/// folio has no pincount: each pin adds GUP_PIN_COUNTING_BIAS (1024) to its refcount (24 bits: up to 16383 pins).
/// The folio order (folio_order, kept by the kernel in the first tail page's flags) is not in the frame: all 64 bits of
/// each word are taken, so <see cref="PhysMem"/> keeps one byte per frame beside the array (<c>_order</c>), set on every
/// frame of a large folio so that a tail finds its head without a search.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct Frame
{
    public ulong Contents;
    ulong _counts;
    ulong _meta;

    const int MapShift = 24, RootShift = 48, GenShift = 36, FlagShift = 52;
    const ulong Mask24 = (1UL << 24) - 1, Mask16 = 0xFFFF, Mask36 = (1UL << 36) - 1, Mask12 = 0xFFF;

    public int RefCount
    {
        readonly get => (int)(_counts & Mask24);
        set => _counts = (_counts & ~Mask24) | ((ulong)value & Mask24);
    }

    public int MapCount
    {
        readonly get => (int)((_counts >> MapShift) & Mask24);
        set => _counts = (_counts & ~(Mask24 << MapShift)) | (((ulong)value & Mask24) << MapShift);
    }

    public int AnonRoot
    {
        readonly get => (int)(_counts >> RootShift);
        set => _counts = (_counts & ~(Mask16 << RootShift)) | (((ulong)value & Mask16) << RootShift);
    }

    public ulong Index
    {
        readonly get => _meta & Mask36;
        set => _meta = (_meta & ~Mask36) | (value & Mask36);
    }

    public ushort Generation
    {
        readonly get => (ushort)((_meta >> GenShift) & Mask16);
        set => _meta = (_meta & ~(Mask16 << GenShift)) | ((ulong)value << GenShift);
    }

    public PageFlags Flags
    {
        readonly get => (PageFlags)((_meta >> FlagShift) & Mask12);
        set => _meta = (_meta & ~(Mask12 << FlagShift)) | (((ulong)value & Mask12) << FlagShift);
    }

    public readonly bool Has(PageFlags f) => (Flags & f) != 0;

    public void Set(PageFlags f) => Flags |= f;

    public void Clear(PageFlags f) => Flags &= ~f;

    internal void ResetForAlloc()
    {
        var gen = Generation;
        Contents = 0;
        _counts = 0;
        _meta = 0;
        Generation = gen;
    }
}

/// <summary>
/// Physical memory: a flat array of <see cref="Frame"/>s and a free-frame allocator for 4 KiB pages and 2 MiB
/// compound folios, over one or more NUMA nodes. pfn 0 is the shared zero page. The array grows by doubling when
/// memory runs out, so a small exploration scenario costs a few KiB and a 16 GiB workload costs 24 bytes per frame.
/// </summary>
/// <remarks>
/// Locking rules: frame metadata is changed only by model code between scheduling points; every refcount, mapcount
/// or flag update that another CPU could race with is preceded by a <c>Point(Counter)</c> in the caller.
/// Freed 4 KiB frames are not coalesced back into 2 MiB blocks (no buddy merging, no compaction): a THP allocation
/// fails once no whole aligned block is free, and the fault falls back to 4 KiB, as the kernel does without compaction.
/// <para>NUMA: with <see cref="Nodes"/> &gt; 1 the 2 MiB blocks are dealt to the nodes in turn (block b is on node
/// b mod Nodes, <see cref="NodeOf"/>: pfn_to_nid), so memory grows on every node at once, and each node keeps its
/// own free lists (the kernel's per-node zones). A real node is one contiguous pfn range; the interleave is the
/// model's way of growing all of them lazily, and nothing in mm depends on a node's pfns being contiguous. With one
/// node the allocator hands out exactly the pfns, in the order, that it did before nodes existed.</para>
/// </remarks>
public sealed class PhysMem
{
    public const int HugeOrder = 9;
    public const int HugePages = 1 << HugeOrder;
    public const long ZeroPfn = 0;
    /// <summary>MAX_NUMNODES of the model (the scenario's <c>numa_nodes</c> is checked against it).</summary>
    public const int MaxNodes = 8;

    /// <summary>One node's free lists: the intrusive 4 KiB list, the free 2 MiB blocks, and the block being split.</summary>
    struct NodeFree
    {
        public long Free4k;             // head of the intrusive 4 KiB free list (-1 = empty)
        public long Free2m;             // head of the free 2 MiB block list (head pfns)
        public long BumpNext, BumpEnd;  // the block being split: [next, end) not handed out yet, used after the 4 KiB list
        public long[] FreeOrder;        // heads of free large-folio chunks of order 1..8 (index = order), carved from 2 MiB blocks
    }

    Frame[] _frames;
    byte[] _order;           // folio order of every frame of a large folio (0 for a small folio or a free 4 KiB frame)
    readonly NodeFree[] _node;
    long _limit;             // frames beyond this are not yet handed to the allocator

    public PhysMem(long initialFrames = 4096, long maxFrames = 1L << 30, int nodes = 1)
    {
        if (nodes < 1 || nodes > MaxNodes) throw new ArgumentOutOfRangeException(nameof(nodes), $"1..{MaxNodes} NUMA nodes");
        MaxFrames = maxFrames;
        Nodes = nodes;
        _node = new NodeFree[nodes];
        for (int i = 0; i < nodes; i++) _node[i] = new NodeFree { Free4k = -1, Free2m = -1, FreeOrder = NewOrderLists() };
        long n = Math.Max(64, initialFrames);
        _frames = new Frame[n];
        _order = new byte[n];
        _frames[0].Set(PageFlags.Zero);
        _frames[0].RefCount = 1;
        _limit = 1;
        AddFrames(1, n);
    }

    static long[] NewOrderLists()
    {
        var l = new long[HugeOrder];
        Array.Fill(l, -1L);
        return l;
    }

    static long RoundUp(long n) => (n + HugePages - 1) & ~(long)(HugePages - 1);

    /// <summary>Hard ceiling; allocation past it fails with an out-of-memory result.</summary>
    public long MaxFrames { get; }

    /// <summary>NUMA nodes (1 = a UMA machine).</summary>
    public int Nodes { get; }

    /// <summary>pfn_to_nid / folio_nid: the node of a frame (its 2 MiB block's turn in the interleave).</summary>
    public int NodeOf(long pfn) => Nodes == 1 ? 0 : (int)((pfn >> HugeOrder) % Nodes);

    public long Capacity => _frames.Length;

    /// <summary>Frames currently allocated (excluding the zero page).</summary>
    public long Allocated { get; private set; }

    public long FreedTotal { get; private set; }

    /// <summary>Bytes of model memory held by frame metadata.</summary>
    public long ModelBytes => (long)_frames.Length * Unsafe.SizeOf<Frame>();

    public ref Frame this[long pfn] => ref _frames[pfn];

    public bool IsValidPfn(long pfn) => pfn >= 0 && pfn < _limit;

    void AddFrames(long from, long to)
    {
        // Whole aligned 2 MiB blocks where they fit; single 4 KiB frames before the first and after the last.
        // The free lists are LIFO: push highest first so that low pfns are handed out first.
        long aligned = Math.Min(RoundUp(from), to);
        long blocksEnd = Math.Max(to & ~(long)(HugePages - 1), aligned);
        for (long p = to - 1; p >= blocksEnd; p--) Push4k(p);
        for (long p = aligned - 1; p >= from; p--) Push4k(p);
        for (long h = blocksEnd - HugePages; h >= aligned; h -= HugePages) Push2m(h);
        _limit = to;
    }

    void Push4k(long pfn)
    {
        ref var f = ref _frames[pfn];
        ref var nf = ref _node[NodeOf(pfn)];
        f.Flags = PageFlags.Free;
        f.Contents = (ulong)nf.Free4k;
        nf.Free4k = pfn;
    }

    void Push2m(long head)
    {
        ref var f = ref _frames[head];
        ref var nf = ref _node[NodeOf(head)];
        f.Flags = PageFlags.Free | PageFlags.Head;
        f.Contents = (ulong)nf.Free2m;
        nf.Free2m = head;
    }

    bool Grow(bool needHuge = false)
    {
        long n = _frames.Length;
        if (n >= MaxFrames) return false;
        long m = Math.Min(Math.Max(n * 2, needHuge ? RoundUp(n) + HugePages : 0), RoundUp(MaxFrames));
        Array.Resize(ref _frames, checked((int)m));
        Array.Resize(ref _order, (int)m);
        AddFrames(n, m);
        return true;
    }

    /// <summary>alloc_page: a zeroed 4 KiB frame with refcount 1, or -1 when memory is exhausted.</summary>
    /// <param name="nid">The preferred node (the task's local node, or the VMA's policy); the others follow in order
    /// (the zonelist's fallback), unless <paramref name="thisNode"/> (__GFP_THISNODE, as alloc_migration_target).</param>
    /// <remarks>
    /// Order on a node: the 4 KiB free list first (LIFO: the most recently freed frame), then the rest of the block
    /// being split, lowest pfn first. A block is split lazily (one frame per call) instead of pushing its 512 frames
    /// onto the list: the same pfns in the same order, without writing every frame twice. Memory grows only when no
    /// allowed node has a free frame.
    /// </remarks>
    public long AllocPage(int nid = 0, bool thisNode = false)
    {
        while (true)
        {
            long pfn = TakePage(nid);
            for (int i = 1; pfn < 0 && !thisNode && i < Nodes; i++) pfn = TakePage((nid + i) % Nodes);
            if (pfn < 0)
            {
                if (!Grow()) return -1;
                continue;
            }
            ref var f = ref _frames[pfn];
            f.ResetForAlloc();
            f.RefCount = 1;
            _order[pfn] = 0;
            Allocated++;
            return pfn;
        }
    }

    /// <summary>A free 4 KiB frame of node <paramref name="nid"/>: its list, its block being split, or a new block split.</summary>
    long TakePage(int nid)
    {
        ref var nf = ref _node[nid];
        if (nf.Free4k >= 0)
        {
            long pfn = nf.Free4k;
            nf.Free4k = (long)_frames[pfn].Contents;
            return pfn;
        }
        if (nf.BumpNext >= nf.BumpEnd)
        {
            if (nf.Free2m < 0) return -1;
            long h = nf.Free2m;
            nf.Free2m = (long)_frames[h].Contents;
            nf.BumpNext = h;
            nf.BumpEnd = h + HugePages;
        }
        return nf.BumpNext++;
    }

    /// <summary>alloc_pages(order 9): a zeroed 2 MiB compound folio (head refcount 1), or -1 if no whole block is free.</summary>
    /// <param name="nid">Preferred node, with the others as fallback unless <paramref name="thisNode"/>.</param>
    public long AllocHuge(int nid = 0, bool thisNode = false) => AllocLarge(HugeOrder, nid, thisNode);

    /// <summary>prep_compound_page: frames [head, head + 2^order) become one zeroed folio with head refcount 1.</summary>
    void MakeCompound(long h, int order)
    {
        long n = 1L << order;
        for (long p = h; p < h + n; p++)
        {
            _frames[p].ResetForAlloc();
            _frames[p].Flags = p == h ? PageFlags.Head : PageFlags.Tail;
            _order[p] = (byte)order;
        }
        _frames[h].RefCount = 1;
        Allocated += n;
    }

    /// <summary>
    /// folio_alloc(order) for 2 &lt;= order &lt;= 9 (an mTHP of 16 KiB .. 1 MiB, the anon orders, or a 2 MiB THP; order 1
    /// has no _pincount in the model): a zeroed compound folio aligned to its size, head refcount 1, or -1. A 2 MiB folio
    /// is a whole free block; smaller chunks of one order are carved from a whole block (the rest of the block goes on
    /// that order's free list) and return to that list when freed; nothing is merged back, as elsewhere in this allocator.
    /// </summary>
    /// <param name="nid">Preferred node, with the others as fallback unless <paramref name="thisNode"/>.</param>
    public long AllocLarge(int order, int nid = 0, bool thisNode = false)
    {
        if (order < 2 || order > HugeOrder) throw new ArgumentOutOfRangeException(nameof(order));
        while (true)
        {
            for (int i = 0; i < (thisNode ? 1 : Nodes); i++)
            {
                long h = TakeChunk(ref _node[(nid + i) % Nodes], order);
                if (h < 0) continue;
                MakeCompound(h, order);
                return h;
            }
            if (!Grow(needHuge: true)) return -1;
            if (Nodes == 1 && _node[0].Free2m < 0) return -1;
        }
    }

    /// <summary>A free chunk of <paramref name="order"/> on one node: from its order's list, else carved from a free 2 MiB block; -1 if neither.</summary>
    long TakeChunk(ref NodeFree nf, int order)
    {
        long h = order < HugeOrder ? nf.FreeOrder[order] : -1;
        if (h >= 0)
        {
            nf.FreeOrder[order] = (long)_frames[h].Contents;
            return h;
        }
        if (nf.Free2m < 0) return -1;
        h = nf.Free2m;
        nf.Free2m = (long)_frames[h].Contents;
        long n = 1L << order;
        for (long c = h + HugePages - n; c > h; c -= n) PushOrder(c, order); // none for order 9
        return h;
    }

    void PushOrder(long head, int order)
    {
        ref var nf = ref _node[NodeOf(head)];
        long n = 1L << order;
        for (long p = head; p < head + n; p++)
        {
            _frames[p].Flags = PageFlags.Free | (p == head ? PageFlags.Head : PageFlags.Tail);
            _order[p] = (byte)order;
        }
        _frames[head].Contents = (ulong)nf.FreeOrder[order];
        nf.FreeOrder[order] = head;
    }

    /// <summary>Head pfn of the huge zero folio, or -1 until the first <see cref="GetHugeZeroFolio"/>.</summary>
    public long HugeZeroPfn { get; private set; } = -1;

    /// <summary>
    /// mm_get_huge_zero_folio: the shared zero-filled 2 MiB folio (allocated on first use, flagged Zero on its head,
    /// never freed: the kernel's shrinker that frees an unused one is not modelled), or -1 if no 2 MiB block is free.
    /// </summary>
    public long GetHugeZeroFolio()
    {
        if (HugeZeroPfn >= 0) return HugeZeroPfn;
        long h = AllocHuge();
        if (h < 0) return -1;
        _frames[h].Set(PageFlags.Zero);
        HugeZeroPfn = h;
        return h;
    }

    /// <summary>is_huge_zero_pfn / is_huge_zero_folio: does <paramref name="pfn"/> lie in the huge zero folio?</summary>
    public bool IsHugeZero(long pfn) => HugeZeroPfn >= 0 && pfn >= HugeZeroPfn && pfn < HugeZeroPfn + HugePages;

    /// <summary>page_folio: head pfn of the folio containing <paramref name="pfn"/>.</summary>
    public long FolioOf(long pfn) => _frames[pfn].Has(PageFlags.Tail) ? pfn & ~((1L << _order[pfn]) - 1) : pfn;

    /// <summary>folio_test_large: a compound folio of any order (an mTHP or a 2 MiB THP).</summary>
    public bool IsLarge(long headPfn) => _frames[headPfn].Has(PageFlags.Head) && !_frames[headPfn].Has(PageFlags.Free);

    /// <summary>A PMD-sized (order 9, 2 MiB) compound folio: the only size a PMD maps.</summary>
    public bool IsHuge(long headPfn) => IsLarge(headPfn) && _order[headPfn] == HugeOrder;

    /// <summary>folio_order.</summary>
    public int FolioOrder(long headPfn) => IsLarge(headPfn) ? _order[headPfn] : 0;

    /// <summary>folio_nr_pages.</summary>
    public int FolioNr(long headPfn) => 1 << FolioOrder(headPfn);

    /// <summary>entire_mapcount of a PMD-mapped THP, kept in the first tail page as the kernel does.</summary>
    public ref Frame EntireMapcountHolder(long headPfn) => ref _frames[headPfn + 1];

    /// <summary>folio->_pincount of a large folio (FOLL_PIN pins), kept in the second tail page's refcount bits.</summary>
    public ref Frame PincountHolder(long headPfn) => ref _frames[headPfn + 2];

    /// <summary>folio_mapcount: PTE mappings of every page plus PMD mappings.</summary>
    public int FolioMapCount(long headPfn)
    {
        if (!IsLarge(headPfn)) return _frames[headPfn].MapCount;
        int n = _frames[headPfn + 1].RefCount;
        for (long p = headPfn, end = headPfn + FolioNr(headPfn); p < end; p++) n += _frames[p].MapCount;
        return n;
    }

    /// <summary>
    /// Release a folio whose refcount reached zero: bump generations, return frames to the allocator.
    /// Callers (folio_put) have already checked refcount == 0.
    /// </summary>
    public void FreeFolio(long headPfn)
    {
        if (headPfn == ZeroPfn) throw new Sched.ModelException("freeing the zero page");
        if (IsLarge(headPfn))
        {
            int order = _order[headPfn], n = 1 << order;
            for (long p = headPfn; p < headPfn + n; p++) _frames[p].Generation++;
            if (order == HugeOrder)
            {
                Push2m(headPfn);
                for (long p = headPfn + 1; p < headPfn + n; p++) _frames[p].Flags = PageFlags.Free | PageFlags.Tail;
            }
            else PushOrder(headPfn, order);
            Allocated -= n;
            FreedTotal += n;
            return;
        }
        _frames[headPfn].Generation++;
        Push4k(headPfn);
        Allocated--;
        FreedTotal++;
    }

    /// <summary>Turn a compound folio into independent 4 KiB folios (split_huge_page to order 0), sharing the refcount out.</summary>
    /// <remarks>The folio must not be PMD-mapped (entire_mapcount 0); each tail page keeps one reference per PTE
    /// mapping, the head keeps the rest (the caller's pins included).</remarks>
    public void SplitFolio(long headPfn)
    {
        if (!IsLarge(headPfn)) throw new Sched.ModelException($"split_huge_page of non-THP pfn 0x{headPfn:x}");
        int nr = FolioNr(headPfn);
        if (_frames[headPfn + 1].RefCount != 0) throw new Sched.ModelException($"split_huge_page of PMD-mapped THP 0x{headPfn:x}");
        int refs = _frames[headPfn].RefCount;
        var flags = _frames[headPfn].Flags & ~(PageFlags.Head | PageFlags.Tail);
        int root = _frames[headPfn].AnonRoot;
        ulong index = _frames[headPfn].Index;
        int others = SumOtherMaps(headPfn, nr);
        _frames[headPfn + 1].RefCount = 0;
        for (long p = headPfn; p < headPfn + nr; p++)
        {
            ref var f = ref _frames[p];
            _order[p] = 0;
            f.Flags = flags;
            f.AnonRoot = root;
            f.Index = index + (ulong)(p - headPfn);
            f.RefCount = Math.Max(f.MapCount, p == headPfn ? refs - others : 0);
        }
    }

    int SumOtherMaps(long headPfn, int nr)
    {
        int n = 0;
        for (long p = headPfn + 1; p < headPfn + nr; p++) n += _frames[p].MapCount;
        return n;
    }
}
