using MmuSim.Eras;
using MmuSim.Devices;
using MmuSim.Ksm;
using MmuSim.Mm;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Ksm;

public class KsmTests
{
    const ulong A = 0x100000;
    const ulong P = MmStruct.PageSize;

    /// <summary>mm with a private RW VMA of <paramref name="pages"/> pages, each written with contents[i], then MADV_MERGEABLE.</summary>
    static MmStruct Populate(Kernel k, int pages, Func<int, ulong> contents, string name = "task")
    {
        var mm = k.CreateMm(name);
        mm.InsertVma(new Vma(mm, A, A + (ulong)pages * P, Prot.ReadWrite, VmFlags.None));
        Assert.Null(Run(k, async _ =>
        {
            for (int i = 0; i < pages; i++) await Memory.UserAccess(mm, A + (ulong)i * P, write: true, value: contents(i));
            Assert.Equal(0, await Ksmd.Of(k).KsmMadvise(mm, A, (ulong)pages * P, mergeable: true));
        }, "populate"));
        return mm;
    }

    static void Scan(Kernel k, int fullScans = 1) =>
        Assert.Null(Run(k, async _ => await Ksmd.Of(k).ScanFull(fullScans), "scan"));

    static void Write(Kernel k, MmStruct mm, ulong addr, ulong value) =>
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, addr, write: true, value: value), "write"));

    static ulong Read(Kernel k, MmStruct mm, ulong addr)
    {
        ulong v = 0;
        Assert.Null(Run(k, async _ => v = (await Memory.UserAccess(mm, addr, write: false))!.Value, "read"));
        return v;
    }

    static void AssertConsistent(Kernel k)
    {
        Assert.Null(Ksmd.Of(k).CheckInvariants());
        Assert.Null(k.Checker.CheckPrimaryConsistency());
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("3.10")]
    [InlineData("4.19")]
    [InlineData("6.8")]
    [InlineData("6.13")]
    public void TenIdenticalPages_TwoFullScans_OneSharedNineSharing(string era)
    {
        var k = Kernel(era);
        var mm = Populate(k, 10, _ => 0xAB);
        var ksm = Ksmd.Of(k);

        Scan(k);
        Assert.Equal(0, ksm.PagesShared); // first scan only records checksums
        Assert.Equal(10, ksm.PagesVolatile);

        Scan(k);
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(9, ksm.PagesSharing);
        Assert.Equal(0, ksm.PagesUnshared);
        Assert.Equal(0, ksm.PagesVolatile);
        Assert.Equal(2, ksm.FullScans);
        Assert.Equal(10, ksm.RmapItemsOf(mm));
        Assert.Equal(10, ksm.MergingPagesOf(mm));

        long kpfn = mm.PeekPte(A).Pfn;
        for (int i = 0; i < 10; i++)
        {
            var pte = mm.PeekPte(A + (ulong)i * P);
            Assert.True(pte.Present);
            Assert.False(pte.Writable);
            Assert.False(pte.Dirty);
            Assert.Equal(kpfn, pte.Pfn);
        }
        ref var f = ref k.Mem[kpfn];
        Assert.True(f.Has(PageFlags.Ksm));
        Assert.True(f.Has(PageFlags.Dirty)); // dirty moved to the folio
        Assert.False(f.Has(PageFlags.AnonExclusive));
        Assert.Equal(10, f.MapCount);
        Assert.Equal(10, f.RefCount);
        Assert.Equal(1, k.Mem.Allocated); // the nine others (and 2.6.32's originals) were freed
        AssertConsistent(k);

        var lines = ksm.FormatSysfs().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("pages_shared 1", lines);
        Assert.Contains("pages_sharing 9", lines);
        Assert.Equal(lines.OrderBy(l => l.Split(' ')[0], StringComparer.Ordinal), lines);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void WritingOneUnmergesIt_WritingAllGivesZero(string era)
    {
        var k = Kernel(era);
        var mm = Populate(k, 10, _ => 0xAB);
        var ksm = Ksmd.Of(k);
        Scan(k, 2);
        long kpfn = mm.PeekPte(A).Pfn;

        Write(k, mm, A + 3 * P, 0x1234);
        var pte = mm.PeekPte(A + 3 * P);
        Assert.True(pte.Writable);
        Assert.NotEqual(kpfn, pte.Pfn);
        Assert.Equal(0x1234UL, k.Mem[pte.Pfn].Contents);
        Assert.Equal(9, k.Mem[kpfn].MapCount);
        Assert.Equal(0xABUL, Read(k, mm, A + 4 * P));

        Scan(k);
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(8, ksm.PagesSharing);
        AssertConsistent(k);

        for (int i = 0; i < 10; i++) Write(k, mm, A + (ulong)i * P, 0x1000UL + (ulong)i);
        Assert.True(k.Mem[kpfn].Has(PageFlags.Free) || !k.Mem[kpfn].Has(PageFlags.Ksm));
        Scan(k);
        Assert.Equal(0, ksm.PagesShared);
        Assert.Equal(0, ksm.PagesSharing);
        for (int i = 0; i < 10; i++) Assert.Equal(0x1000UL + (ulong)i, Read(k, mm, A + (ulong)i * P));
        AssertConsistent(k);
    }

    [Fact]
    public void UseZeroPages_CountsKsmZeroPages_NotPagesShared_AndWritesBringItDown()
    {
        var k = Kernel("6.13");
        var ksm = Ksmd.Of(k);
        Assert.Null(Run(k, async _ => Assert.Equal(0, await ksm.Store("use_zero_pages", "1"))));
        var mm = Populate(k, 6, i => i < 4 ? 0UL : 0x77UL); // four zero-filled anonymous pages, two others
        Scan(k, 2);
        Assert.Equal(4, ksm.KsmZeroPages);
        Assert.Equal(4, ksm.KsmZeroPagesOf(mm));
        Assert.Equal(1, ksm.PagesShared); // only the two 0x77 pages form a KSM page
        Assert.Equal(1, ksm.PagesSharing);
        for (int i = 0; i < 4; i++)
        {
            var pte = mm.PeekPte(A + (ulong)i * P);
            Assert.Equal(PhysMem.ZeroPfn, pte.Pfn);
            Assert.True(pte.Special && pte.Dirty && !pte.Writable);
        }
        Assert.Equal("4", ksm.Show("ksm_zero_pages"));
        Assert.Equal(((1 + 4) * 4096L - ksm.RmapItems * 64).ToString(), ksm.Show("general_profit"));

        Write(k, mm, A, 5);
        Write(k, mm, A + P, 6);
        Assert.Equal(2, ksm.KsmZeroPages);
        Assert.Equal(5UL, Read(k, mm, A));
        Assert.Equal(0UL, Read(k, mm, A + 2 * P));
        AssertConsistent(k);
    }

    [Fact]
    public void UseZeroPages_Before6_10_NoCounterAndZeroPteNotMarked()
    {
        var k = Kernel("4.19");
        var ksm = Ksmd.Of(k);
        Assert.Null(Run(k, async _ => Assert.Equal(0, await ksm.Store("use_zero_pages", "1"))));
        var mm = Populate(k, 3, _ => 0UL);
        Scan(k, 2);
        var pte = mm.PeekPte(A);
        Assert.Equal(PhysMem.ZeroPfn, pte.Pfn);
        Assert.False(pte.Dirty);
        Assert.Null(ksm.Show("ksm_zero_pages"));
        Assert.Equal(0, ksm.PagesShared);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void PagesThatKeepChanging_AreNeverMerged_AndShowAsVolatile(string era)
    {
        var k = Kernel(era);
        var mm = Populate(k, 4, _ => 0x55);
        var ksm = Ksmd.Of(k);
        for (int round = 0; round < 4; round++)
        {
            // Two pages change between scans (to equal values, which would merge if they held still).
            Write(k, mm, A, 0x900UL + (ulong)round);
            Write(k, mm, A + P, 0x900UL + (ulong)round);
            Scan(k);
        }
        Assert.True(mm.PeekPte(A).Writable);
        Assert.True(mm.PeekPte(A + P).Writable);
        Assert.NotEqual(mm.PeekPte(A).Pfn, mm.PeekPte(A + P).Pfn);
        Assert.False(k.Mem[mm.PeekPte(A).Pfn].Has(PageFlags.Ksm));
        Assert.Equal(2, ksm.PagesVolatile);
        Assert.Equal(1, ksm.PagesShared); // the two still pages merged
        Assert.Equal(1, ksm.PagesSharing);
        AssertConsistent(k);
    }

    [Fact]
    public void SmartScan_SkipsPagesThatNeverMerge_6_13_Only()
    {
        foreach (var (era, expectSkips) in new[] { ("6.13", true), ("4.19", false) })
        {
            var k = Kernel(era);
            Populate(k, 3, i => 0x100UL + (ulong)i); // all different: never merge
            Scan(k, 8);
            var ksm = Ksmd.Of(k);
            Assert.Equal(expectSkips, ksm.PagesSkipped > 0);
            Assert.Equal(expectSkips, ksm.Show("pages_skipped") != null);
        }
    }

    [Theory]
    [InlineData("3.10")]
    [InlineData("6.13")]
    public void MadvUnmergeable_RestoresPrivateCopies_ContentsIntact(string era)
    {
        var k = Kernel(era);
        var mm = Populate(k, 8, i => i % 2 == 0 ? 0xAAUL : 0xBBUL);
        var ksm = Ksmd.Of(k);
        Scan(k, 2);
        Assert.Equal(2, ksm.PagesShared);
        Assert.Equal(6, ksm.PagesSharing);

        Assert.Null(Run(k, async _ => Assert.Equal(0, await ksm.KsmMadvise(mm, A, 8 * P, mergeable: false))));
        var seen = new HashSet<long>();
        for (int i = 0; i < 8; i++)
        {
            var pte = mm.PeekPte(A + (ulong)i * P);
            // break_ksm faults with FAULT_FLAG_UNSHARE from 5.19 on: wp_page_copy maps the private copy read-only
            // (no maybe_mkwrite for an unshare); before, it was a write fault and the copy is writable.
            Assert.True(pte.Present);
            Assert.Equal(!k.Era.Has(Feature.GupUnshareAnon), pte.Writable);
            Assert.False(k.Mem[pte.Pfn].Has(PageFlags.Ksm));
            Assert.True(k.Mem[pte.Pfn].Has(PageFlags.AnonExclusive));
            Assert.Equal(1, k.Mem[pte.Pfn].MapCount);
            Assert.Equal(i % 2 == 0 ? 0xAAUL : 0xBBUL, k.Mem[pte.Pfn].Contents);
            Assert.True(seen.Add(pte.Pfn));
        }
        Assert.Equal(VmFlags.None, mm.FindVma(A)!.Flags & VmFlags.Mergeable);
        Assert.Equal(8, k.Mem.Allocated);
        Scan(k); // the stale rmap_items and KSM pages go on ksmd's next pass
        Assert.Equal(0, ksm.PagesShared);
        Assert.Equal(0, ksm.PagesSharing);
        Assert.Equal(0, ksm.RmapItems);
        AssertConsistent(k);
    }

    [Fact]
    public void RunTwo_UnmergesEverything()
    {
        var k = Kernel("6.13");
        var mm1 = Populate(k, 5, _ => 0x42, "a");
        var mm2 = Populate(k, 5, _ => 0x42, "b");
        var ksm = Ksmd.Of(k);
        Scan(k, 2);
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(9, ksm.PagesSharing);
        Assert.Null(Run(k, async _ => Assert.Equal(0, await ksm.Store("run", "2"))));
        Assert.Equal(0, ksm.PagesShared);
        Assert.Equal(0, ksm.PagesSharing);
        Assert.Equal(0, ksm.FullScans);
        Assert.Equal("2", ksm.Show("run"));
        foreach (var mm in new[] { mm1, mm2 })
            for (int i = 0; i < 5; i++)
            {
                var pte = mm.PeekPte(A + (ulong)i * P);
                Assert.False(k.Mem[pte.Pfn].Has(PageFlags.Ksm));
                Assert.Equal(0x42UL, k.Mem[pte.Pfn].Contents);
            }
        Assert.Equal(10, k.Mem.Allocated);
        AssertConsistent(k);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void MergeAbortsWhileAnExtraReferenceIsHeld_AndSucceedsLater(string era)
    {
        var k = Kernel(era);
        var mm = Populate(k, 3, _ => 0x99);
        var ksm = Ksmd.Of(k);
        long pinned = mm.PeekPte(A + 2 * P).Pfn;
        Folio.Get(k, pinned); // e.g. a vCPU fault's GUP reference
        Scan(k, 2);
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(1, ksm.PagesSharing);
        var pte = mm.PeekPte(A + 2 * P);
        Assert.Equal(pinned, pte.Pfn);
        Assert.True(pte.Writable); // the PTE was restored
        Assert.False(k.Mem[pinned].Has(PageFlags.Ksm));
        Assert.True(k.Stats[Stat.KsmMergeFailures] > 0);

        Folio.Put(k, pinned);
        Scan(k);
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(2, ksm.PagesSharing);
        Assert.Equal(mm.PeekPte(A).Pfn, mm.PeekPte(A + 2 * P).Pfn);
        AssertConsistent(k);
    }

    [Fact]
    public void SkipRefcountCheckMutation_MergesDespiteTheExtraReference()
    {
        var k = Kernel("6.13", options: new KernelOptions { Mutations = new HashSet<Mutation> { Mutation.KsmSkipRefcountCheck } });
        var mm = Populate(k, 2, _ => 0x99);
        long pinned = mm.PeekPte(A + P).Pfn;
        Folio.Get(k, pinned);
        Scan(k, 2);
        Assert.Equal(1, Ksmd.Of(k).PagesShared);
        Assert.Equal(mm.PeekPte(A).Pfn, mm.PeekPte(A + P).Pfn);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    [InlineData("6.18")]
    public void ForkedChild_SharesKsmPages_WithoutNewKsmPages_AndChildWritesArePrivate(string era)
    {
        var k = Kernel(era);
        var parent = Populate(k, 10, _ => 0xAB, "parent");
        var ksm = Ksmd.Of(k);
        Scan(k, 2);
        long kpfn = parent.PeekPte(A).Pfn;
        MmStruct child = null!;
        Assert.Null(Run(k, async _ => child = await Fork.DupMmap(parent, "child"), "fork"));
        Assert.Equal(20, k.Mem[kpfn].MapCount);
        Assert.Equal(1, ksm.PagesShared); // fork creates no KSM page and changes no counter
        Assert.Equal(9, ksm.PagesSharing);
        // The child has no rmap_items of its own; before 6.18 its counter is dup_mm's copy of the parent's (10).
        Assert.Equal(k.Era.Has(MmuSim.Eras.Feature.KsmForkResetsCounters) ? 0 : 10, ksm.RmapItemsOf(child));

        Scan(k);
        // ksmd finds the child's mappings of the same KSM page ("ksm page forked"): still one KSM page; with the
        // kernel's meaning, pages_sharing counts every additional site mapping it (19 = 20 sites - 1).
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(19, ksm.PagesSharing);
        Assert.Equal(1, k.Mem.Allocated);

        Write(k, child, A + 5 * P, 0xC0FFEE);
        Assert.Equal(0xC0FFEEUL, Read(k, child, A + 5 * P));
        Assert.Equal(0xABUL, Read(k, parent, A + 5 * P));
        Assert.Equal(kpfn, parent.PeekPte(A + 5 * P).Pfn);
        Assert.False(parent.PeekPte(A + 5 * P).Writable);
        Scan(k);
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(18, ksm.PagesSharing);
        AssertConsistent(k);

        // The KSM rmap finds every mapping, the child's included.
        var found = new List<(MmStruct, ulong)>();
        Assert.Null(Run(k, async _ => await Ksmd.RmapWalkKsm(k, kpfn, (vma, addr) =>
        {
            found.Add((vma.Mm, addr));
            return new ValueTask<bool>(true);
        })));
        // Like the kernel, the walk may offer a VMA twice or one that no longer maps the page (the second pass looks
        // for forks in every member of the family); rmap_one checks the PTE, as page_vma_mapped_walk does.
        var mapping = found.Where(f => f.Item1.PeekPte(f.Item2).Pfn == kpfn).Distinct().ToList();
        Assert.Equal(19, mapping.Count);
        Assert.Equal(9, mapping.Count(f => f.Item1 == child));
    }

    [Fact]
    public void MaxPageSharing_BuildsStableNodeChains()
    {
        var k = Kernel("6.13");
        var ksm = Ksmd.Of(k);
        Assert.Null(Run(k, async _ => Assert.Equal(0, await ksm.Store("max_page_sharing", "3"))));
        var mm = Populate(k, 7, _ => 0x31);
        Scan(k, 3);
        // 7 identical pages, at most 3 mappings per KSM page: two KSM pages (dups of one chain) with 3 each; the
        // seventh finds every dup full and waits in the unstable tree for a partner to start a new dup.
        Assert.Equal(1, ksm.StableNodeChains);
        Assert.Equal(2, ksm.StableNodeDups);
        Assert.Equal(2, ksm.PagesShared);
        Assert.Equal(4, ksm.PagesSharing);
        Assert.Equal(1, ksm.PagesUnshared);
        var perPage = Enumerable.Range(0, 7).GroupBy(i => mm.PeekPte(A + (ulong)i * P).Pfn).Select(g => g.Count()).ToList();
        Assert.All(perPage, n => Assert.True(n <= 3));
        AssertConsistent(k);
        Assert.Null(Run(k, async _ => Assert.Equal(-16, await ksm.Store("max_page_sharing", "5")))); // -EBUSY while shared
    }

    [Fact]
    public void PrSetMemoryMerge_MergesWithoutMadvise_6_4Plus()
    {
        var k = Kernel("6.13");
        var mm = k.CreateMm("task");
        mm.InsertVma(new Vma(mm, A, A + 4 * P, Prot.ReadWrite, VmFlags.None));
        var ksm = Ksmd.Of(k);
        Assert.Null(Run(k, async _ =>
        {
            for (int i = 0; i < 4; i++) await Memory.UserAccess(mm, A + (ulong)i * P, write: true, value: 7);
            Assert.Equal(0, await ksm.PrSetMemoryMerge(mm, true));
        }));
        Assert.True(mm.MergeAny);
        Scan(k, 2);
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(3, ksm.PagesSharing);

        var old = Kernel("4.19");
        var mm2 = old.CreateMm("task");
        Assert.Null(Run(old, async _ => Assert.Equal(-22, await Ksmd.Of(old).PrSetMemoryMerge(mm2, true))));
    }

    [Fact]
    public void Ksmd_Daemon_ScansPagesToScanPerWakeup_AndSleeps()
    {
        var k = Kernel("6.13");
        var mm = Populate(k, 10, _ => 0xAB);
        var ksm = Ksmd.Of(k);
        Assert.Null(Run(k, async _ =>
        {
            Assert.Equal(0, await ksm.Store("pages_to_scan", "4"));
            Assert.Equal(0, await ksm.Store("sleep_millisecs", "10"));
            ksm.StartDaemon();
            Assert.Equal(0, await ksm.Store("run", "1"));
            // Let ksmd run for 100 ms of simulated time: 10 pages / 4 per wake-up, 2 full scans need ~6 wake-ups.
            await k.S.Sleep(100_000_000);
        }, "sleeper"));
        Assert.True(ksm.FullScans >= 2, $"full_scans {ksm.FullScans}");
        Assert.Equal(1, ksm.PagesShared);
        Assert.Equal(9, ksm.PagesSharing);
        Assert.True(ksm.PagesScanned <= 4 * 11, "ksmd scanned more than pages_to_scan per wake-up");
        Assert.Equal(mm.PeekPte(A).Pfn, mm.PeekPte(A + 9 * P).Pfn);
    }

    [Fact]
    public void TraceEvents_UseTheKernelFormats()
    {
        var k = Kernel("6.13");
        var mm = Populate(k, 2, _ => 0x1);
        k.Trace.On = true;
        Scan(k, 2);
        var recs = k.Trace.Records;
        var start = recs.First(r => r.Event == "ksm_start_scan");
        Assert.Equal("seq 0 rmap size 0", start.Fields);
        Assert.Contains(recs, r => r.Event == "ksm_stop_scan" && r.Fields == "seq 1 rmap size 2");
        var merges = recs.Where(r => r.Event == "ksm_merge_with_ksm_page").ToList();
        Assert.Equal(2, merges.Count);
        Assert.Matches(@"^pfn \d+ rmap_item [0-9a-f]{16} mm [0-9a-f]{16} error 0$", merges[0].Fields);
        Assert.Matches(@"^ksm pfn \d+ rmap_item [0-9a-f]{16} mm [0-9a-f]{16} error 0$", merges[1].Fields);
        long kpfn = mm.PeekPte(A).Pfn;
        Assert.StartsWith($"ksm pfn {kpfn} ", merges[1].Fields);

        Write(k, mm, A, 9);
        Write(k, mm, A + P, 9);
        Scan(k);
        Assert.Contains(recs, r => r.Event == "ksm_remove_ksm_page" && r.Fields == $"pfn {kpfn}");
    }
}

public class KsmWriteProtectTriggerTests
{
    const ulong A = 0x100000;

    /// <summary>Two identical pages whose PTEs are read-only and clean; returns the TLB flushes the merge made.</summary>
    static long MergeReadOnlyClean(string era, bool flushPending)
    {
        var k = Harness.Kernel(era);
        var mm = k.CreateMm("task");
        mm.InsertVma(new Vma(mm, A, A + 0x2000, Prot.ReadWrite, VmFlags.None));
        Assert.Null(Harness.Run(k, async _ =>
        {
            await Memory.UserAccess(mm, A, write: true, value: 4);
            await Memory.UserAccess(mm, A + 0x1000, write: true, value: 4);
            Assert.Equal(0, await Ksmd.Of(k).KsmMadvise(mm, A, 0x2000, mergeable: true));
        }));
        for (ulong va = A; va < A + 0x2000; va += 0x1000)
        {
            int t = mm.PteTable(va);
            ref ulong e = ref k.PageTables.Entry(t, PageTablePool.PteIndex(va));
            e = new Pte(e).Wrprotect().Mkclean().Raw;
        }
        mm.TlbFlushPending = flushPending ? 1 : 0;
        Assert.Null(Harness.Run(k, async _ => await Ksmd.Of(k).ScanFull(1)));
        long before = k.Stats[Stat.TlbFlushesLocal];
        Assert.Null(Harness.Run(k, async _ => await Ksmd.Of(k).ScanFull(1)));
        Assert.Equal(1, Ksmd.Of(k).PagesSharing);
        return k.Stats[Stat.TlbFlushesLocal] - before;
    }

    [Fact]
    public void PendingTlbFlush_TriggersClearAndFlush_From4_19()
    {
        // A read-only clean PTE needs no write-protection; only replace_page flushes (once).
        Assert.Equal(1, MergeReadOnlyClean("4.10", flushPending: true));
        Assert.Equal(1, MergeReadOnlyClean("4.19", flushPending: false));
        // 4.19+: mm_tlb_flush_pending forces the clear+flush in write_protect_page for both pages (§5(d8)).
        Assert.Equal(3, MergeReadOnlyClean("4.19", flushPending: true));
    }
}
