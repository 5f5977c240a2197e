using MmuSim.Eras;
using MmuSim.Scenarios;
using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>Anonymous multi-size THP (6.8+): alloc_anon_folio, the per-size knobs, and the large-folio paths after it.</summary>
public class MthpTests
{
    const ulong A = 0x200000;
    const int Order64K = 4, Nr64K = 16;

    static Kernel MthpKernel(string era = "6.13", int order = Order64K, ThpMode mode = ThpMode.Always)
    {
        var k = Kernel(era);
        k.Thp[order] = mode;
        return k;
    }

    /// <summary>A 64 KiB mTHP faulted in at A (by a write of 1 to its first page) in a 128 KiB VMA, and its head.</summary>
    static (Kernel K, MmStruct Mm, long Head) Faulted64K()
    {
        var k = MthpKernel();
        var mm = MmWithVma(k, A, 0x20000);
        Ok(k, async () => await Write(mm, A, 1));
        return (k, mm, mm.PeekPte(A).Pfn);
    }

    /// <summary>Page i of the 64 KiB at A holds 100 + i.</summary>
    static void FillPattern(Kernel k, MmStruct mm) =>
        Ok(k, async () => { for (int i = 0; i < Nr64K; i++) await Write(mm, A + (ulong)i * 0x1000, 100UL + (ulong)i); });

    static void AssertMappedLargeFolio(Kernel k, MmStruct mm, ulong start, int nr, bool writable = true)
    {
        long head = mm.PeekPte(start).Pfn;
        Assert.Equal(head, k.Mem.FolioOf(head));
        Assert.Equal(nr, k.Mem.FolioNr(head));
        Assert.Equal(0, head % nr); // naturally aligned
        for (int i = 0; i < nr; i++)
        {
            var pte = mm.PeekPte(start + (ulong)i * 0x1000);
            Assert.True(pte.Present);
            Assert.Equal(writable, pte.Writable);
            Assert.Equal(head + i, pte.Pfn);
            Assert.Equal(head, k.Mem.FolioOf(head + i));
            Assert.Equal(1, k.Mem[head + i].MapCount);
            Assert.True(k.Mem[head + i].Has(PageFlags.AnonExclusive));
        }
        Assert.Equal(nr, k.Mem[head].RefCount); // folio_ref_add(nr - 1): one reference per PTE
        Assert.Equal(0, k.Mem.EntireMapcountHolder(head).RefCount);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("6.13")]
    [InlineData("6.18")]
    public void WriteFault_MapsA64KFolioWithPtes_NoNotifier(string era)
    {
        var k = MthpKernel(era);
        var mm = MmWithVma(k, A, 0x20000); // no VM_HUGEPAGE: "always" needs none
        var rec = Recorder(k, mm);
        Ok(k, async () => await Write(mm, A + 0x3000, 7));
        Assert.Empty(rec.Calls); // every PTE was none: nothing for a secondary to drop
        AssertMappedLargeFolio(k, mm, A, Nr64K);
        Assert.False(mm.PeekPte(A + 0x10000).Present); // the folio covers [A, A + 64K) only
        Assert.False(mm.PeekPmd(A).Huge);
        long head = mm.PeekPte(A).Pfn;
        Assert.Equal(7UL, k.Mem[head + 3].Contents);
        Assert.Equal(0UL, k.Mem[head].Contents);
        Assert.Equal(Nr64K, mm.RssAnon);
        Assert.Equal(1, k.Stats[Stat.MthpFaultAlloc]);
        Assert.Equal(1, k.Stats[Stat.AnonWriteFaults]);
        Consistent(k);
    }

    [Fact]
    public void BeforeSixEight_NoMthp_EvenWithTheKnobSet()
    {
        var k = MthpKernel("6.7");
        var mm = MmWithVma(k, A, 0x20000);
        Ok(k, async () => await Write(mm, A, 1));
        Assert.Equal(1, k.Mem.FolioNr(k.Mem.FolioOf(mm.PeekPte(A).Pfn)));
        Assert.False(mm.PeekPte(A + 0x1000).Present);
        Assert.Equal(0, k.Stats[Stat.MthpFaultAlloc]);
    }

    [Theory]
    [InlineData(ThpMode.Never, ThpMode.Madvise, VmFlags.HugePage, 1)]
    [InlineData(ThpMode.Madvise, ThpMode.Madvise, VmFlags.None, 1)]     // madvise without MADV_HUGEPAGE
    [InlineData(ThpMode.Madvise, ThpMode.Madvise, VmFlags.HugePage, Nr64K)]
    [InlineData(ThpMode.Inherit, ThpMode.Madvise, VmFlags.None, 1)]     // inherit: the top level is madvise
    [InlineData(ThpMode.Inherit, ThpMode.Madvise, VmFlags.HugePage, Nr64K)]
    [InlineData(ThpMode.Inherit, ThpMode.Always, VmFlags.None, Nr64K)]
    [InlineData(ThpMode.Inherit, ThpMode.Never, VmFlags.HugePage, 1)]
    [InlineData(ThpMode.Always, ThpMode.Never, VmFlags.NoHugePage, 1)]  // VM_NOHUGEPAGE allows no order
    public void Knobs_DecideTheOrder(ThpMode perSize, ThpMode top, VmFlags flags, int nr)
    {
        var k = MthpKernel(mode: perSize);
        k.Thp.Enabled = top;
        var mm = MmWithVma(k, A, 0x20000, flags);
        Ok(k, async () => await Write(mm, A, 1));
        Assert.Equal(nr, k.Mem.FolioNr(k.Mem.FolioOf(mm.PeekPte(A).Pfn)));
        Assert.Equal(nr, mm.RssAnon);
    }

    [Fact]
    public void PmdOrderNever_StopsThe2MFault_AndTheLargestAllowedMthpIsTaken()
    {
        var k = Kernel("6.13");
        k.Thp[9] = ThpMode.Never;
        k.Thp[4] = ThpMode.Always;
        k.Thp[6] = ThpMode.Always; // 256 KiB
        var mm = MmWithVma(k, A, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, A + 0x41000, 1));
        Assert.False(mm.PeekPmd(A).Huge);
        AssertMappedLargeFolio(k, mm, A + 0x40000, 64);
        Assert.Equal(0, k.Stats[Stat.ThpFaults]);
    }

    [Fact]
    public void PteRangeNotNone_FallsBackToASmallerOrder()
    {
        var k = MthpKernel();
        k.Thp[2] = ThpMode.Always; // 16 KiB
        var mm = MmWithVma(k, A, 0x20000);
        k.Thp[Order64K] = ThpMode.Never;
        Ok(k, async () => await Write(mm, A + 0x5000, 1)); // a 16 KiB folio at [A+16K, A+32K)
        k.Thp[Order64K] = ThpMode.Always;
        Ok(k, async () => await Write(mm, A, 2)); // the 64 KiB range holds PTEs: 16 KiB at [A, A+16K)
        AssertMappedLargeFolio(k, mm, A, 4);
        AssertMappedLargeFolio(k, mm, A + 0x4000, 4);
        Assert.False(mm.PeekPte(A + 0x8000).Present);
        Consistent(k);
    }

    [Fact]
    public void VmaTooSmallForTheAlignedRange_GetsASmallFolio()
    {
        var k = MthpKernel();
        var mm = MmWithVma(k, A, 0x8000); // 32 KiB: no aligned 64 KiB inside
        Ok(k, async () => await Write(mm, A, 1));
        Assert.Equal(1, k.Mem.FolioNr(k.Mem.FolioOf(mm.PeekPte(A).Pfn)));
    }

    [Fact]
    public void UffdArmedVma_KeepsPerPageFaults()
    {
        var k = MthpKernel();
        var mm = MmWithVma(k, A, 0x20000, VmFlags.UffdWp);
        Ok(k, async () => await Write(mm, A, 1));
        Assert.Equal(1, k.Mem.FolioNr(k.Mem.FolioOf(mm.PeekPte(A).Pfn)));
        Assert.False(mm.PeekPte(A + 0x1000).Present);
    }

    [Fact]
    public void ForkThenWrite_CopiesOnePage_NotifiesOnePage_FolioStaysLargeAndShared()
    {
        var (k, mm, head) = Faulted64K();
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        for (int i = 0; i < Nr64K; i++)
        {
            Assert.Equal(2, k.Mem[head + i].MapCount);
            Assert.False(k.Mem[head + i].Has(PageFlags.AnonExclusive));
            Assert.False(mm.PeekPte(A + (ulong)i * 0x1000).Writable);
        }
        Assert.Equal(2 * Nr64K, k.Mem[head].RefCount);
        var rec = Recorder(k, mm);
        Ok(k, async () => await Write(mm, A + 0x2000, 9));
        Assert.Equal("S(202000,203000,Clear) E(202000,203000,Clear)", Seq(rec));
        var pte = mm.PeekPte(A + 0x2000);
        Assert.True(pte.Writable);
        Assert.NotEqual(head + 2, pte.Pfn);
        Assert.Equal(1, k.Mem.FolioNr(k.Mem.FolioOf(pte.Pfn)));
        Assert.Equal(1, k.Mem[head + 2].MapCount);
        Assert.Equal(2 * Nr64K - 1, k.Mem[head].RefCount);
        Assert.Equal(head + 2, child.PeekPte(A + 0x2000).Pfn); // the child keeps the old page
        Assert.Equal(9UL, k.Mem[pte.Pfn].Contents);
        Assert.Equal(0UL, k.Mem[head + 2].Contents);
        Ok(k, async () => Assert.Equal(0UL, await Read(child, A + 0x2000)));
        Consistent(k);
    }

    [Fact]
    public void Munmap_FreesTheWholeFolio_AndTheChunkIsReused()
    {
        var (k, mm, head) = Faulted64K();
        long freed = k.Stats[Stat.PagesFreed];
        Ok(k, async () => await Mmap.Munmap(mm, A, 0x10000));
        Assert.Equal(freed + Nr64K, k.Stats[Stat.PagesFreed]);
        for (int i = 0; i < Nr64K; i++) Assert.True(k.Mem[head + i].Has(PageFlags.Free));
        Assert.Equal(head, k.Mem.AllocLarge(Order64K)); // the order's free list hands the chunk out again
    }

    [Fact]
    public void PartialDontneed_LeavesTheFolioLarge_WithOnePageMapped()
    {
        var (k, mm, head) = Faulted64K();
        var rec = Recorder(k, mm);
        Ok(k, async () => await Madvise.MadviseDontneed(mm, A + 0x1000, 0xf000));
        Assert.Equal("S(201000,210000,Clear) E(201000,210000,Clear)", Seq(rec));
        Assert.Equal(Nr64K, k.Mem.FolioNr(head));
        Assert.Equal(1, k.Mem.FolioMapCount(head));
        Assert.Equal(1, k.Mem[head].RefCount);
        Assert.Equal(1, mm.RssAnon);
        Consistent(k);
    }

    [Fact]
    public void Migrate_MovesTheFolioWhole_KeepingItsOrder()
    {
        var k = Kernel("6.13", options: new KernelOptions { NumaNodes = 2 });
        k.Thp[Order64K] = ThpMode.Always;
        var mm = MmWithVma(k, A, 0x20000);
        FillPattern(k, mm);
        long head = mm.PeekPte(A).Pfn;
        int node = k.Mem.NodeOf(head);
        long dst = -1;
        Ok(k, async () => dst = await Migrate.MigrateFolio(k, head + 5, 1 - node));
        Assert.True(dst >= 0);
        Assert.Equal(1 - node, k.Mem.NodeOf(dst));
        AssertMappedLargeFolio(k, mm, A, Nr64K);
        Assert.Equal(dst, mm.PeekPte(A).Pfn);
        for (int i = 0; i < Nr64K; i++) Assert.Equal(100UL + (ulong)i, k.Mem[dst + i].Contents);
        Assert.True(k.Mem[head].Has(PageFlags.Free));
        Consistent(k);
    }

    [Fact]
    public void Reclaim_SwapsOutEveryPage_AndSwapInRestoresContents()
    {
        var k = MthpKernel();
        var mm = MmWithVma(k, A, 0x20000);
        FillPattern(k, mm);
        long head = mm.PeekPte(A).Pfn;
        bool ok = false;
        Ok(k, async () => ok = await Vmscan.ShrinkFolio(k, head));
        Assert.True(ok);
        for (int i = 0; i < Nr64K; i++) Assert.True(mm.PeekPte(A + (ulong)i * 0x1000).IsSwapEntry && !mm.PeekPte(A + (ulong)i * 0x1000).IsMigration);
        Assert.True(k.Mem[head].Has(PageFlags.Free));
        Ok(k, async () => { for (int i = 0; i < Nr64K; i++) Assert.Equal(100UL + (ulong)i, await Read(mm, A + (ulong)i * 0x1000)); });
        Consistent(k);
    }
}

public class MthpCollapseTests
{
    const ulong H = 0x200000;

    [Fact]
    public void MadvCollapse_Of32MthpFolios_GivesOnePmdThp_FreesTheOldFolios_WithOneClearRange()
    {
        var k = Kernel("6.13");
        k.Thp[4] = ThpMode.Always;
        var mm = MmWithVma(k, H, 0x200000);
        Ok(k, async () => { for (int i = 0; i < 512; i++) await Write(mm, H + (ulong)i * 0x1000, 1000UL + (ulong)i); });
        Assert.Equal(32, k.Stats[Stat.MthpFaultAlloc]);
        long first = mm.PeekPte(H).Pfn;
        Assert.Equal(16, k.Mem.FolioNr(first));
        var rec = Recorder(k, mm);
        int err = -1;
        Ok(k, async () => err = await Khugepaged.MadviseCollapse(mm, H, H + 0x200000));
        Assert.Equal(0, err);
        Assert.Equal("S(200000,400000,Clear) E(200000,400000,Clear)", Seq(rec));
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Present && pmd.Huge);
        Assert.True(k.Mem.IsHuge(pmd.Pfn));
        for (int i = 0; i < 512; i += 37) Assert.Equal(1000UL + (ulong)i, k.Mem[pmd.Pfn + i].Contents);
        Assert.True(k.Mem[first].Has(PageFlags.Free));
        Assert.Equal(512, mm.RssAnon);
        Consistent(k);
    }
}

public class PhysMemLargeFolioTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(8)]
    public void AllocLarge_IsAlignedCompound_TailsFindTheirHead(int order)
    {
        var mem = new PhysMem();
        long h = mem.AllocLarge(order);
        int nr = 1 << order;
        Assert.Equal(0, h % nr);
        Assert.True(mem.IsLarge(h));
        Assert.False(mem.IsHuge(h));
        Assert.Equal(order, mem.FolioOrder(h));
        for (long p = h; p < h + nr; p++) Assert.Equal(h, mem.FolioOf(p));
        Assert.Equal(1, mem[h].RefCount);
        long next = mem.AllocLarge(order); // carved from the same 2 MiB block
        Assert.Equal(h + nr, next);
        long small = mem.AllocPage();
        Assert.Equal(small, mem.FolioOf(small));
        Assert.Equal(1, mem.FolioNr(small));
    }

    [Fact]
    public void SplitFolio_LeavesSmallFoliosThatFreeOneByOne()
    {
        var mem = new PhysMem();
        long h = mem.AllocLarge(3);
        mem[h].RefCount = 8;
        for (long p = h; p < h + 8; p++) mem[p].MapCount = 1;
        mem.SplitFolio(h);
        for (long p = h; p < h + 8; p++)
        {
            Assert.Equal(p, mem.FolioOf(p));
            Assert.Equal(1, mem.FolioNr(p));
            Assert.Equal(1, mem[p].RefCount);
        }
    }
}

/// <summary>The thp.set op on the per-size knobs: the write's errno per era, and what the next fault does.</summary>
public class MthpKnobOpTests
{
    static string Scenario(string era, string knob, string value, string expect, int pagesExpected) => $$"""
        name: t
        era: {{era}}
        processes:
          - name: p
            vmas:
              - { start: 0x200000, len: 128K, prot: rw }
        threads:
          - name: m
            process: p
            ops:
              - thp.set: { knob: {{knob}}, value: {{value}}, expect: {{expect}} }
              - write: { addr: 0x200000, value: 0x1 }
              - expect-pagemap: { addr: 0x201000, present: {{(pagesExpected > 1 ? "true" : "false")}} }
        """;

    [Theory]
    [InlineData("6.13", "hugepages-16kB/enabled", "always", "ok", 4)]
    [InlineData("6.8", "hugepages-1024kB/enabled", "always", "ok", 1)] // a 128 KiB VMA holds no aligned 1 MiB
    [InlineData("6.13", "hugepages-64kB/enabled", "madvise", "ok", 1)] // no MADV_HUGEPAGE here
    [InlineData("6.13", "enabled", "always", "ok", 1)]                 // smaller orders default to never
    [InlineData("6.7", "hugepages-16kB/enabled", "always", "enoent", 1)]
    [InlineData("2.6.32", "enabled", "always", "enoent", 1)]
    public void PerSizeKnob_PerEra(string era, string knob, string value, string expect, int pages)
    {
        var s = ScenarioLoader.Parse(Scenario(era, knob, value, expect, pages), "t.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
        Assert.Null(r.Violation);
    }

    [Fact]
    public void WrongExpectedErrno_IsAViolation()
    {
        var s = ScenarioLoader.Parse(Scenario("6.7", "hugepages-16kB/enabled", "always", "ok", 1), "t.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.7"), null);
        Assert.NotNull(r.Violation);
        Assert.Contains("enoent", r.Violation!.ToString());
    }
}
