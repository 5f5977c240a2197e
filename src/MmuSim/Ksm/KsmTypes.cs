using MmuSim.Mm;

namespace MmuSim.Ksm;

/// <summary>Where an <see cref="RmapItem"/> is linked (the kernel's UNSTABLE_FLAG / STABLE_FLAG address bits).</summary>
public enum RmapItemState : byte
{
    /// <summary>In no tree: freshly allocated, volatile (checksum changed), merged with the zero page, or skipped.</summary>
    None,
    /// <summary>A node of the unstable tree of scan <see cref="RmapItem.Seqnr"/>.</summary>
    Unstable,
    /// <summary>Listed in the hlist of the stable node <see cref="RmapItem.Head"/>.</summary>
    Stable,
}

/// <summary>
/// struct ksm_rmap_item: one scanned virtual page of a registered mm. Allocated per scanned page, as in the kernel
/// (KSM's own memory overhead is what general_profit subtracts); kept compact: no per-item collections.
/// </summary>
/// <remarks>Owned by ksmd (ksm_thread_mutex); the rmap walk reads <see cref="Head"/>'s list under the page lock in the
/// kernel, which the model folds into ksmd's steps.</remarks>
public sealed class RmapItem
{
    internal RmapItem(MmSlot slot, ulong address, long id)
    {
        Slot = slot;
        Address = address;
        Id = id;
    }

    public MmSlot Slot { get; }

    public MmStruct Mm => Slot.Mm;

    /// <summary>The virtual address (page aligned; the kernel keeps flags in the low bits).</summary>
    public ulong Address { get; }

    /// <summary>Dense id, used to print a stable fake <c>%p</c> in trace events.</summary>
    public long Id { get; }

    /// <summary>oldchecksum: the checksum of the page at the previous scan (0 for a new item).</summary>
    public uint OldChecksum { get; internal set; }

    public RmapItemState State { get; internal set; }

    /// <summary>Low bits of ksm_scan.seqnr when inserted in the unstable tree.</summary>
    internal byte Seqnr;

    /// <summary>The tree (NUMA node) and contents the item was inserted under in the unstable tree.</summary>
    internal KsmTreeKey TreeKey;

    /// <summary>The stable node whose KSM page this address maps (when <see cref="State"/> is Stable).</summary>
    public StableNode? Head { get; internal set; }

    /// <summary>anon_vma of the VMA when merged (rmap_walk_ksm walks its family for forked mappings).</summary>
    public AnonVma? AnonVma { get; internal set; }

    /// <summary>smart_scan: how many scans this page has failed to merge, and the skips it still has.</summary>
    internal byte Age, RemainingSkips;

    /// <summary>The fake kernel pointer printed for <c>%p</c>.</summary>
    public ulong FakePointer => 0xffff888000000000UL + (ulong)Id * 64;

    public override string ToString() => $"rmap_item({Mm}, 0x{Address:x}, {State})";
}

/// <summary>
/// A position in KSM's trees: the tree (root_stable_tree[nid] / root_unstable_tree[nid]: one per NUMA node when
/// merge_across_nodes is 0, tree 0 otherwise) and the page contents the trees are sorted by.
/// </summary>
internal readonly record struct KsmTreeKey(int Nid, ulong Contents);

/// <summary>
/// struct ksm_stable_node: a KSM page in the stable tree (or, from 4.13, a chain of "dup" nodes with the same contents,
/// each shared by at most max_page_sharing mappings). The node holds no page reference ("keyhole reference"): the
/// KSM frame points back to the node through its <see cref="Frame.Index"/> (the model's page->mapping), and a freed or
/// reused frame makes the node stale (<see cref="Ksmd.GetKsmPage"/>).
/// </summary>
public sealed class StableNode
{
    internal StableNode(long id, ulong key)
    {
        Id = id;
        Key = key;
    }

    /// <summary>Dense id; stored in the KSM frame's index field.</summary>
    public long Id { get; }

    /// <summary>The page contents (the tree is keyed by contents: KSM pages are write-protected, so it is stable).</summary>
    public ulong Key { get; }

    /// <summary>The stable tree the node is in (its KSM page's node when merge_across_nodes is 0, else 0).</summary>
    public int Nid { get; internal init; }

    internal KsmTreeKey TreeKey => new(Nid, Key);

    /// <summary>kpfn: the KSM page (not for a chain).</summary>
    public long Kpfn { get; internal set; } = -1;

    /// <summary>Generation of the KSM frame when the node was created: detects a freed and reused frame.</summary>
    internal ushort KGen;

    /// <summary>hlist of rmap_items mapping this KSM page (rmap_hlist_len = Count). Empty for a chain.</summary>
    public List<RmapItem> Hlist { get; } = [];

    /// <summary>STABLE_NODE_CHAIN: this root entry holds <see cref="Dups"/>, not a page.</summary>
    public bool IsChain { get; internal set; }

    /// <summary>The dups of a chain, best candidate first.</summary>
    public List<StableNode>? Dups { get; internal set; }

    /// <summary>The chain this node is a dup of (is_stable_node_dup), or null.</summary>
    public StableNode? Chain { get; internal set; }

    /// <summary>chain_prune_time, in simulated ns.</summary>
    internal long ChainPruneTimeNs;

    public int RmapHlistLen => Hlist.Count;

    public override string ToString() => IsChain ? $"chain({Dups?.Count} dups)" : $"stable_node {Id} kpfn {Kpfn} ({Hlist.Count} rmap_items)";
}

/// <summary>struct ksm_mm_slot: a registered mm, its rmap_items sorted by address, and its per-process counters.</summary>
public sealed class MmSlot
{
    internal MmSlot(MmStruct mm) => Mm = mm;

    public MmStruct Mm { get; }

    /// <summary>rmap_list: sorted by address; ksmd's cursor walks it in step with the scan address.</summary>
    internal List<RmapItem> RmapList { get; } = [];

    /// <summary>mm->ksm_rmap_items.</summary>
    public long RmapItems { get; internal set; }

    /// <summary>mm->ksm_merging_pages: this mm's rmap_items that are in the stable tree.</summary>
    public long MergingPages { get; internal set; }

    public override string ToString() => $"mm_slot({Mm})";
}
