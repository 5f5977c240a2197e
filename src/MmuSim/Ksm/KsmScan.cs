using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Ksm;

public sealed partial class Ksmd
{
    const ulong PageSize = MmStruct.PageSize;

    // ------------------------------------------------------------------ scanning

    /// <summary>ksm_do_scan: hand up to <paramref name="scanNpages"/> pages to cmp_and_merge_page. Caller holds ksm_thread_mutex.</summary>
    async ValueTask KsmDoScan(int scanNpages)
    {
        var k = _k;
        using var _ = k.S.Current.Enter("ksm_do_scan");
        while (scanNpages-- > 0)
        {
            var (item, pfn) = await ScanGetNextRmapItem();
            if (item == null) return;
            k.S.Charge(CostKind.KsmdScanPage);
            k.Stats.Inc(Stat.KsmPagesScanned);
            PagesScanned++;
            await CmpAndMergePage(pfn, item);
            await k.S.Point(PointKind.Counter);
            Folio.Put(k, pfn);
        }
    }

    /// <summary>
    /// scan_get_next_rmap_item: advance the cursor to the next anonymous page of a mergeable VMA, taking a reference
    /// (follow_page FOLL_GET); at the head of the list start a new full scan (flush the unstable tree), at the end of
    /// the list count it (seqnr++) and return null. Slots of exited mms or without mergeable VMAs are freed here.
    /// </summary>
    async ValueTask<(RmapItem? Item, long Pfn)> ScanGetNextRmapItem()
    {
        var k = _k;
        using var _ = k.S.Current.Enter("scan_get_next_rmap_item");
        if (_scanSlot == null) AdoptMergeableMms();
        if (_slots.Count == 0) return (null, -1);
        var slot = _scanSlot;
        if (slot == null)
        {
            if (k.Trace.On) k.Trace.Event("ksm_start_scan", $"seq {FullScans} rmap size {RmapItems}");
            _unstable.Clear(); // root_unstable_tree = RB_ROOT
            slot = _slots[0];
            _scanSlot = slot;
            _scanAddress = 0;
            _scanIndex = 0;
        }
        while (true)
        {
            var mm = slot.Mm;
            await mm.MmapLock.ReadLock();
            bool exiting = KsmTestExit(mm);
            if (!exiting)
            {
                var vmas = mm.Vmas;
                for (int vi = FirstVmaEndingAfter(vmas, _scanAddress); vi < vmas.Count; vi++)
                {
                    var vma = vmas[vi];
                    if (!VmaMergeable(vma)) continue;
                    if (_scanAddress < vma.Start) _scanAddress = vma.Start;
                    if (vma.AnonVma == null) _scanAddress = vma.End;
                    while (_scanAddress < vma.End)
                    {
                        if (KsmTestExit(mm)) break;
                        ulong addr = _scanAddress;
                        var r = await Gup.FollowPage(mm, null, addr, GupFlags.Get | GupFlags.FollowProtNone);
                        if (r.Ok)
                        {
                            if (r.Pfn != PhysMem.ZeroPfn && k.Mem[k.Mem.FolioOf(r.Pfn)].Has(PageFlags.Anon))
                            {
                                var item = GetNextRmapItem(slot, addr);
                                _scanAddress += PageSize;
                                if (ShouldSkipRmapItem(r.Pfn, item))
                                {
                                    Folio.Put(k, r.Pfn);
                                    continue;
                                }
                                await mm.MmapLock.ReadUnlock();
                                return (item, r.Pfn);
                            }
                            Folio.Put(k, r.Pfn);
                        }
                        _scanAddress += PageSize;
                    }
                }
            }
            exiting = KsmTestExit(mm);
            if (exiting)
            {
                _scanAddress = 0;
                _scanIndex = 0;
            }
            // Nuke the rmap_items above the cursor: no mergeable VMA has such addresses any more.
            RemoveTrailingRmapItems(slot, _scanIndex);
            int idx = _slots.IndexOf(slot);
            var next = idx + 1 < _slots.Count ? _slots[idx + 1] : null;
            _scanSlot = next;
            await mm.MmapLock.ReadUnlock();
            if (_scanAddress == 0) FreeSlot(slot); // no VM_MERGEABLE left (or exited): as __ksm_exit would
            if (next == null) break;
            slot = next;
            _scanAddress = 0;
            _scanIndex = 0;
        }
        if (k.Trace.On) k.Trace.Event("ksm_stop_scan", $"seq {FullScans} rmap size {RmapItems}");
        FullScans++;
        k.Stats.Inc(Stat.KsmFullScans);
        AssertInvariants();
        return (null, -1);
    }

    /// <summary>Index of the first VMA whose end is above <paramref name="addr"/> (vma_iter_init + for_each_vma).</summary>
    static int FirstVmaEndingAfter(IReadOnlyList<Vma> vmas, ulong addr)
    {
        int lo = 0, hi = vmas.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (vmas[mid].End <= addr) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// <summary>
    /// get_next_rmap_item: the item for <paramref name="addr"/> at the cursor, freeing stale items below it, or a new
    /// one inserted there (alloc_rmap_item).
    /// </summary>
    RmapItem GetNextRmapItem(MmSlot slot, ulong addr)
    {
        var list = slot.RmapList;
        while (_scanIndex < list.Count)
        {
            var it = list[_scanIndex];
            if (it.Address == addr)
            {
                _scanIndex++;
                return it;
            }
            if (it.Address > addr) break;
            list.RemoveAt(_scanIndex);
            RemoveRmapItemFromTree(it);
            FreeRmapItem(it);
        }
        var item = new RmapItem(slot, addr, _nextItemId++);
        RmapItems++;
        slot.RmapItems++;
        list.Insert(_scanIndex++, item);
        return item;
    }

    void FreeRmapItem(RmapItem item)
    {
        RmapItems--;
        item.Slot.RmapItems--;
    }

    /// <summary>remove_trailing_rmap_items: free the slot's items from <paramref name="from"/> on.</summary>
    void RemoveTrailingRmapItems(MmSlot slot, int from)
    {
        var list = slot.RmapList;
        for (int i = from; i < list.Count; i++)
        {
            RemoveRmapItemFromTree(list[i]);
            FreeRmapItem(list[i]);
        }
        if (from < list.Count) list.RemoveRange(from, list.Count - from);
    }

    /// <summary>skip_age: how many scans to skip a page that failed to merge <paramref name="age"/> times.</summary>
    static byte SkipAge(byte age) => age <= 3 ? (byte)1 : age <= 5 ? (byte)2 : age <= 8 ? (byte)4 : (byte)8;

    /// <summary>should_skip_rmap_item (smart_scan, 6.7+): skip pages that keep failing to merge, never KSM pages.</summary>
    bool ShouldSkipRmapItem(long pfn, RmapItem item)
    {
        if (!_k.Era.Has(Feature.KsmSmartScan) || !SmartScan) return false;
        if (_k.Mem[pfn].Has(PageFlags.Ksm)) return false;
        byte age = item.Age;
        if (age != byte.MaxValue) item.Age++;
        if (age < 3) return false;
        if (item.RemainingSkips == 0)
        {
            item.RemainingSkips = SkipAge(age);
            return false;
        }
        PagesSkipped++;
        item.RemainingSkips--;
        RemoveRmapItemFromTree(item);
        return true;
    }

    /// <summary>remove_rmap_item_from_tree: unlink an item from the stable node's hlist or the unstable tree, fixing the counters.</summary>
    void RemoveRmapItemFromTree(RmapItem item)
    {
        if (item.State == RmapItemState.Stable)
        {
            var node = item.Head!;
            if (GetKsmPage(node) < 0) return; // stale: remove_node_from_stable_tree unlinked every item
            node.Hlist.Remove(item);
            if (node.Hlist.Count > 0) PagesSharing--;
            else PagesShared--;
            item.Slot.MergingPages--;
            item.Head = null;
            item.State = RmapItemState.None;
        }
        else if (item.State == RmapItemState.Unstable)
        {
            byte age = (byte)((byte)FullScans - item.Seqnr);
            if (age > 1) throw new ModelException($"{item}: unstable tree age {age}");
            if (age == 0 && _unstable.TryGetValue(item.TreeKey, out var cur) && ReferenceEquals(cur, item))
                _unstable.Remove(item.TreeKey);
            PagesUnshared--;
            item.State = RmapItemState.None;
        }
    }

    // ------------------------------------------------------------------ page helpers

    /// <summary>calc_checksum of a value: a 32-bit mix (xxhash in the kernel); equal contents give equal checksums.</summary>
    static uint CalcChecksumOf(ulong contents)
    {
        ulong z = contents + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (uint)z ^ (uint)(z >> 32);
    }

    /// <summary>calc_checksum: read the page (a point: a user write may change it) and hash it.</summary>
    async ValueTask<uint> CalcChecksum(long pfn)
    {
        await _k.S.Point(PointKind.Counter, (ulong)pfn);
        return CalcChecksumOf(_k.Mem[pfn].Contents);
    }

    /// <summary>The page's contents as memcmp_pages/pages_identical see it now (a point).</summary>
    async ValueTask<ulong> ReadPage(long pfn)
    {
        await _k.S.Point(PointKind.Counter, (ulong)pfn);
        return _k.Mem[pfn].Contents;
    }

    /// <summary>page_stable_node: the stable node a KSM frame points back to, or null.</summary>
    public StableNode? PageStableNode(long pfn)
    {
        if (pfn < 0 || pfn == PhysMem.ZeroPfn) return null;
        ref var f = ref _k.Mem[pfn];
        if (!f.Has(PageFlags.Ksm) || f.Has(PageFlags.Free) || f.Index == 0) return null;
        return _nodesById.TryGetValue((long)f.Index, out var n) ? n : null;
    }

    /// <summary>
    /// get_ksm_page: is the node's page still its KSM page (not freed, not reused: the keyhole check)? Returns kpfn,
    /// taking a reference when <paramref name="get"/>; a stale node is removed from the stable tree and -1 returned.
    /// </summary>
    internal long GetKsmPage(StableNode node, bool get = false)
    {
        long kpfn = node.Kpfn;
        ref var f = ref _k.Mem[kpfn];
        if (f.Has(PageFlags.Free) || !f.Has(PageFlags.Ksm) || f.Generation != node.KGen || (long)f.Index != node.Id)
        {
            RemoveNodeFromStableTree(node);
            return -1;
        }
        if (get) Folio.Get(_k, kpfn);
        return kpfn;
    }

    /// <summary>remove_node_from_stable_tree: a stale (freed) KSM page: unlink every rmap_item and drop the node.</summary>
    void RemoveNodeFromStableTree(StableNode node)
    {
        int n = node.Hlist.Count;
        foreach (var item in node.Hlist)
        {
            item.Slot.MergingPages--;
            item.Head = null;
            item.State = RmapItemState.None;
        }
        if (n > 0)
        {
            PagesShared--;
            PagesSharing -= n - 1;
        }
        node.Hlist.Clear();
        if (_k.Trace.On) _k.Trace.Event("ksm_remove_ksm_page", $"pfn {node.Kpfn}");
        StableNodeDupDel(node);
        _nodesById.Remove(node.Id);
    }

    /// <summary>stable_node_dup_del: unlink a node from its chain, or from the tree root; an emptied chain is freed.</summary>
    void StableNodeDupDel(StableNode node)
    {
        if (node.Chain is { } chain)
        {
            chain.Dups!.Remove(node);
            node.Chain = null;
            StableNodeDups--;
            if (chain.Dups.Count == 0) FreeStableNodeChain(chain);
        }
        else if (_stable.TryGetValue(node.TreeKey, out var root) && ReferenceEquals(root, node))
            _stable.Remove(node.TreeKey);
    }

    /// <summary>free_stable_node_chain.</summary>
    void FreeStableNodeChain(StableNode chain)
    {
        if (_stable.TryGetValue(chain.TreeKey, out var root) && ReferenceEquals(root, chain)) _stable.Remove(chain.TreeKey);
        StableNodeChains--;
    }

    /// <summary>is_page_sharing_candidate: has a mapping left and room under max_page_sharing (no limit before 4.13).</summary>
    bool IsPageSharingCandidate(StableNode node, int offset = 0) =>
        node.Hlist.Count > 0 && (!_k.Era.Has(Feature.KsmStableNodeChains) || node.Hlist.Count + offset < MaxPageSharing);

    /// <summary>
    /// get_mergeable_page: under the mm's mmap_lock, the anonymous page an rmap_item's address maps, with a reference;
    /// -1 when the VMA is gone or the page is not anonymous.
    /// </summary>
    async ValueTask<long> GetMergeablePage(RmapItem item)
    {
        var mm = item.Mm;
        using var _ = _k.S.Current.Enter("get_mergeable_page");
        await mm.MmapLock.ReadLock();
        long pfn = -1;
        if (FindMergeableVma(mm, item.Address) != null)
        {
            var r = await Gup.FollowPage(mm, null, item.Address, GupFlags.Get | GupFlags.FollowProtNone);
            if (r.Ok)
            {
                if (r.Pfn != PhysMem.ZeroPfn && _k.Mem[_k.Mem.FolioOf(r.Pfn)].Has(PageFlags.Anon)) pfn = r.Pfn;
                else Folio.Put(_k, r.Pfn);
            }
        }
        await mm.MmapLock.ReadUnlock();
        return pfn;
    }

    // ------------------------------------------------------------------ cmp_and_merge_page and the trees

    /// <summary>
    /// cmp_and_merge_page: first see whether the page can join a KSM page of the stable tree; otherwise, if its checksum
    /// did not change since the last scan, try the zero page (use_zero_pages), then look for an identical page in the
    /// unstable tree (merging both into a new KSM page) or insert it there. From 6.11 the checksum is checked first.
    /// </summary>
    async ValueTask CmpAndMergePage(long page, RmapItem item)
    {
        var k = _k;
        using var _ = k.S.Current.Enter("cmp_and_merge_page");
        bool checksumFirst = k.Era.Has(Feature.KsmChecksumBeforeStableSearch);
        bool bypass = false;
        var stableNode = PageStableNode(page);
        if (stableNode != null)
        {
            if (ReferenceEquals(item.Head, stableNode)) return;
            if (!IsPageSharingCandidate(stableNode)) bypass = true; // a KSM fork may exceed max_page_sharing
        }
        else if (checksumFirst)
        {
            RemoveRmapItemFromTree(item);
            uint sum = await CalcChecksum(page);
            if (item.OldChecksum != sum)
            {
                item.OldChecksum = sum;
                return;
            }
            if (await TryToMergeWithZeroPage(item, page) == 0) return;
        }

        long kpage = await StableTreeSearch(page);
        if (kpage == page && ReferenceEquals(item.Head, stableNode))
        {
            Folio.Put(k, kpage);
            return;
        }
        RemoveRmapItemFromTree(item);
        if (kpage >= 0)
        {
            int err = await TryToMergeWithKsmPage(item, page, kpage);
            if (err == 0)
            {
                var node = PageStableNode(kpage);
                if (node != null) StableTreeAppend(item, node, bypass);
            }
            Folio.Put(k, kpage);
            return;
        }

        if (!checksumFirst)
        {
            uint sum = await CalcChecksum(page);
            if (item.OldChecksum != sum)
            {
                item.OldChecksum = sum;
                return;
            }
            if (await TryToMergeWithZeroPage(item, page) == 0) return;
        }

        var (treeItem, treePage) = await UnstableTreeSearchInsert(item, page);
        if (treeItem == null) return;
        var (merged, allocated) = await TryToMergeTwoPages(item, page, treeItem, treePage);
        // Both pages of one THP: our two references made split_huge_page fail. Split it now that one is dropped
        // (trylock only), without merging; the next scan merges the small pages (77da2ba0648a, 4.17).
        long thp = k.Mem.FolioOf(page);
        bool split = k.Mem.IsLarge(thp) && k.Mem.FolioOf(treePage) == thp && k.Era.Has(Feature.KsmSplitSameThp);
        Folio.Put(k, treePage);
        if (merged < 0)
        {
            if (split && await FolioLock.TryLock(k, thp))
                await FolioLock.Unlock(k, await HugeMemory.SplitHugePage(k, thp, page) == 0 ? page : thp);
            return;
        }
        var newNode = await StableTreeInsert(merged);
        if (newNode != null)
        {
            StableTreeAppend(treeItem, newNode, false);
            StableTreeAppend(item, newNode, false);
        }
        if (allocated) Folio.Put(k, merged); // 2.6.32: the kpage allocation's reference
        if (newNode == null)
        {
            await BreakCow(treeItem);
            await BreakCow(item);
        }
    }

    /// <summary>
    /// stable_tree_search: a KSM page with the same contents that can take one more sharer (a forked KSM page finds
    /// itself), with a reference; -1 if none. Stale nodes met on the way are pruned; a chain whose every dup is full
    /// yields none, so the page waits for the unstable tree to make a new dup.
    /// </summary>
    async ValueTask<long> StableTreeSearch(long page)
    {
        var k = _k;
        using var _ = k.S.Current.Enter("stable_tree_search");
        if (PageStableNode(page) != null)
        {
            Folio.Get(k, page); // ksm page forked
            return page;
        }
        var key = new KsmTreeKey(TreeNid(page), await ReadPage(page));
        while (_stable.TryGetValue(key, out var node))
        {
            StableNode? dup;
            if (node.IsChain)
            {
                dup = ChainPrune(node);
                if (node.Dups == null || node.Dups.Count == 0 || !_stable.ContainsKey(key)) continue; // chain freed: again
                if (dup == null) return -1; // every dup is full
            }
            else
            {
                if (GetKsmPage(node) < 0) continue; // stale, removed: again
                if (!IsPageSharingCandidate(node)) return -1;
                dup = node;
            }
            long kpfn = GetKsmPage(dup, get: true);
            if (kpfn < 0) continue;
            if (await ReadPage(kpfn) != await ReadPage(page))
            {
                Folio.Put(k, kpfn);
                return -1;
            }
            return kpfn;
        }
        return -1;
    }

    /// <summary>
    /// chain_prune / stable_node_dup: drop stale dups, pick the dup with the most sharers that is still a candidate
    /// (moved to the head), and collapse a chain left with one dup when the prune interval has passed.
    /// </summary>
    StableNode? ChainPrune(StableNode chain)
    {
        var now = _k.S.ClockNs;
        bool prune = now >= chain.ChainPruneTimeNs + StableNodeChainsPruneMillisecs * 1_000_000L;
        if (prune) chain.ChainPruneTimeNs = now;
        var dups = chain.Dups!;
        StableNode? found = null;
        int nr = 0;
        for (int i = 0; i < dups.Count;)
        {
            var d = dups[i];
            int before = dups.Count;
            if (GetKsmPage(d) < 0)
            {
                if (chain.Dups == null || chain.Dups.Count == 0) return null; // chain freed with its last dup
                if (dups.Count < before) continue;
                i++;
                continue;
            }
            nr++;
            if (IsPageSharingCandidate(d) && (found == null || d.Hlist.Count > found.Hlist.Count))
            {
                found = d;
                if (!prune) break;
            }
            i++;
        }
        if (found == null) return null;
        if (prune && nr == 1 && dups.Count == 1)
        {
            // There is just one dup below the limit: drop the chain, the dup becomes a plain node.
            dups.Clear();
            found.Chain = null;
            _stable[chain.TreeKey] = found;
            StableNodeChains--;
            StableNodeDups--;
        }
        else if (!ReferenceEquals(dups[0], found) && IsPageSharingCandidate(found, 1))
        {
            dups.Remove(found);
            dups.Insert(0, found);
        }
        return found;
    }

    /// <summary>
    /// stable_tree_insert: a new stable node for <paramref name="kpage"/>. If a KSM page with the same contents is
    /// already in the tree (it was full), both become dups of a chain (4.13+); older kernels fail the insert.
    /// </summary>
    async ValueTask<StableNode?> StableTreeInsert(long kpage)
    {
        var k = _k;
        using var _ = k.S.Current.Enter("stable_tree_insert");
        var key = new KsmTreeKey(TreeNid(kpage), await ReadPage(kpage));
        bool needChain = false;
        while (_stable.TryGetValue(key, out var existing))
        {
            if (existing.IsChain)
            {
                if (existing.Dups!.Count == 0) { FreeStableNodeChain(existing); continue; }
                needChain = true;
                break;
            }
            if (GetKsmPage(existing) < 0) continue; // stale: removed, look again
            if (!k.Era.Has(Feature.KsmStableNodeChains)) return null;
            needChain = true;
            break;
        }
        var node = new StableNode(_nextNodeId++, key.Contents) { Nid = key.Nid, Kpfn = kpage, KGen = k.Mem[kpage].Generation };
        _nodesById[node.Id] = node;
        if (!needChain) _stable[key] = node;
        else
        {
            var root = _stable[key];
            if (!root.IsChain) root = AllocStableNodeChain(root);
            StableNodeChainAddDup(node, root);
        }
        ref var f = ref k.Mem[kpage];
        f.Set(PageFlags.Ksm);
        f.Index = (ulong)node.Id; // set_page_stable_node
        return node;
    }

    /// <summary>alloc_stable_node_chain: replace a plain node at the root by a chain holding it as its first dup.</summary>
    StableNode AllocStableNodeChain(StableNode dup)
    {
        var chain = new StableNode(_nextNodeId++, dup.Key) { Nid = dup.Nid, IsChain = true, Dups = [], ChainPruneTimeNs = _k.S.ClockNs };
        StableNodeChains++;
        _stable[dup.TreeKey] = chain;
        StableNodeChainAddDup(dup, chain);
        return chain;
    }

    /// <summary>stable_node_chain_add_dup.</summary>
    void StableNodeChainAddDup(StableNode dup, StableNode chain)
    {
        dup.Chain = chain;
        chain.Dups!.Insert(0, dup);
        StableNodeDups++;
    }

    /// <summary>stable_tree_append: add an rmap_item to a stable node's hlist (pages_shared for the first, pages_sharing after).</summary>
    void StableTreeAppend(RmapItem item, StableNode node, bool maxPageSharingBypass)
    {
        node.Hlist.Add(item);
        item.Head = node;
        item.State = RmapItemState.Stable;
        if (node.Hlist.Count > 1) PagesSharing++;
        else PagesShared++;
        item.Slot.MergingPages++;
        _ = maxPageSharingBypass; // the kernel only skips a WARN for forks over the limit
    }

    /// <summary>get_kpfn_nid: the tree of a page: its NUMA node when merge_across_nodes is 0, else tree 0.</summary>
    int TreeNid(long pfn) => MergeAcrossNodes != 0 ? 0 : _k.Mem.NodeOf(pfn);

    /// <summary>
    /// unstable_tree_search_insert: find an unstable-tree page whose contents equal this page's now (returned with a
    /// reference), or insert the rmap_item keyed by its contents. The tree is keyed by contents at insertion; a tree
    /// page that changed since is not a match (the kernel's rbtree would mis-sort it the same way).
    /// </summary>
    async ValueTask<(RmapItem? Item, long Pfn)> UnstableTreeSearchInsert(RmapItem item, long page)
    {
        var k = _k;
        using var _ = k.S.Current.Enter("unstable_tree_search_insert");
        var key = new KsmTreeKey(TreeNid(page), await ReadPage(page));
        if (_unstable.TryGetValue(key, out var treeItem))
        {
            long treePage = await GetMergeablePage(treeItem);
            if (treePage < 0) return (null, -1);
            if (treePage == page) // don't substitute a ksm page for a forked page
            {
                Folio.Put(k, treePage);
                return (null, -1);
            }
            if (await ReadPage(treePage) == await ReadPage(page)) return (treeItem, treePage);
            Folio.Put(k, treePage);
        }
        item.State = RmapItemState.Unstable;
        item.Seqnr = (byte)FullScans;
        item.TreeKey = key;
        _unstable[key] = item;
        PagesUnshared++;
        return (null, -1);
    }

    // ------------------------------------------------------------------ unmerge everything

    /// <summary>
    /// unmerge_and_remove_all_rmap_items (run = 2): break every KSM page of every registered mm, free all rmap_items
    /// and the stale stable nodes, reset full_scans. Caller holds ksm_thread_mutex.
    /// </summary>
    async ValueTask<int> UnmergeAndRemoveAllRmapItems()
    {
        var k = _k;
        using var _ = k.S.Current.Enter("unmerge_and_remove_all_rmap_items");
        int i = 0;
        while (i < _slots.Count)
        {
            var slot = _slots[i];
            _scanSlot = slot;
            var mm = slot.Mm;
            await mm.MmapLock.ReadLock();
            if (!KsmTestExit(mm))
            {
                foreach (var vma in mm.Vmas.ToArray())
                {
                    if (!VmaMergeable(vma) || vma.AnonVma == null) continue;
                    int err = await UnmergeKsmPages(vma, vma.Start, vma.End);
                    if (err != 0)
                    {
                        await mm.MmapLock.ReadUnlock();
                        _scanSlot = null;
                        return err;
                    }
                }
            }
            RemoveTrailingRmapItems(slot, 0);
            await mm.MmapLock.ReadUnlock();
            if (KsmTestExit(mm)) FreeSlot(slot);
            else i++;
        }
        _scanSlot = null;
        RemoveAllStableNodes();
        FullScans = 0;
        return 0;
    }

    /// <summary>remove_all_stable_nodes: drop every node whose KSM page is no longer mapped; -EBUSY if some still is.</summary>
    int RemoveAllStableNodes()
    {
        int err = 0;
        var roots = new List<StableNode>(_stable.Values);
        foreach (var root in roots)
        {
            var nodes = root.IsChain ? new List<StableNode>(root.Dups!) : [root];
            foreach (var n in nodes)
            {
                long kpfn = GetKsmPage(n);
                if (kpfn < 0) continue; // stale: already removed
                if (_k.Mem[kpfn].MapCount != 0) { err = EBUSY; continue; }
                _k.Mem[kpfn].Index = 0; // set_page_stable_node(page, NULL)
                RemoveNodeFromStableTree(n);
            }
        }
        return err;
    }

    /// <summary>
    /// ksm_migrate_folio (mm/ksm.c): the KSM page moved to <paramref name="newPfn"/>; the stable node follows it (kpfn,
    /// and the generation the keyhole check compares). The new frame already names the node (folio->mapping copied).
    /// </summary>
    internal static void KsmMigrateFolio(Kernel k, long oldPfn, long newPfn)
    {
        if (!k.Subsystems.TryGetValue(typeof(Ksmd), out var o)) return;
        var ksm = (Ksmd)o;
        if (ksm.PageStableNode(oldPfn) is not { } node) return;
        node.Kpfn = newPfn;
        node.KGen = k.Mem[newPfn].Generation;
    }

    // ------------------------------------------------------------------ rmap

    /// <summary>
    /// rmap_walk_ksm: visit every (VMA, address) mapping the KSM page <paramref name="pfn"/>: for each rmap_item of its
    /// stable node, the VMAs of the item's anon_vma family covering the item's address, first in the item's own mm,
    /// then in other mms (children forked since ksmd merged). <paramref name="rmapOne"/> returns false to stop;
    /// <paramref name="done"/> (rwc->done) is asked after each call.
    /// Takes each anon_vma lock for read. The primary's rmap_walk calls this when the folio has PageFlags.Ksm.
    /// As in the kernel, a VMA may be offered more than once, or one that no longer maps the page: rmap_one must check
    /// the PTE (page_vma_mapped_walk) before acting.
    /// </summary>
    public static async ValueTask RmapWalkKsm(Kernel k, long pfn, Func<Vma, ulong, ValueTask<bool>> rmapOne, Func<bool>? done = null)
    {
        using var _ = k.S.Current.Enter("rmap_walk_ksm");
        if (!k.Subsystems.TryGetValue(typeof(Ksmd), out var o)) return;
        var ksm = (Ksmd)o;
        var node = ksm.PageStableNode(pfn);
        if (node == null) return;
        var items = node.Hlist.ToArray(); // the page lock keeps the hlist stable in the kernel
        for (int searchNewForks = 0; searchNewForks < 2; searchNewForks++)
        {
            foreach (var item in items)
            {
                var anon = item.AnonVma;
                if (anon == null) continue;
                await anon.Lock.ReadLock();
                try
                {
                    foreach (var mm in anon.Members.ToArray())
                    {
                        if ((ReferenceEquals(mm, item.Mm) ? 0 : 1) != searchNewForks) continue;
                        var vma = mm.FindVma(item.Address);
                        if (vma == null || !ReferenceEquals(vma.AnonVma, anon)) continue;
                        if (!await rmapOne(vma, item.Address)) return;
                        if (done != null && done()) return;
                    }
                }
                finally
                {
                    await anon.Lock.ReadUnlock();
                }
            }
        }
    }
}
