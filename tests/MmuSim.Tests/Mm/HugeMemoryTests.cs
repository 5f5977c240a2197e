using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class HugeMemoryTests
{
    const ulong H = 0x200000;

    [Theory]
    [InlineData("3.7")] // oldest named era with THP (2.6.38)
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void AnonFault_MapsOneHugePmd_NoNotifier(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        var rec = Recorder(k, mm);
        Ok(k, async () =>
        {
            await Write(mm, H + 0x5000, 42);
            Assert.Equal(0UL, await Read(mm, H + 0x6000));
        });
        Assert.Empty(rec.Calls);
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable && pmd.Dirty);
        long head = pmd.Pfn;
        Assert.True(k.Mem.IsHuge(head));
        Assert.Equal(1, k.Mem[head].RefCount);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.Equal(0, k.Mem[head].MapCount);
        Assert.Equal(42UL, k.Mem[head + 5].Contents);
        Assert.Equal(1, k.Stats[Stat.ThpFaults]);
        Assert.Equal(PhysMem.HugePages, mm.RssAnon);
        Consistent(k);
    }

    [Fact]
    public void AnonFault_2_6_32_HasNoThp_Uses4K()
    {
        var k = Kernel("2.6.32");
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        Assert.False(mm.PeekPmd(H).Huge);
        Assert.True(mm.PeekPte(H).Present);
        Assert.Equal(0, k.Stats[Stat.ThpFaults]);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void AnonFault_FallsBackTo4K_WhenNoHugeBlockIsFree(string era)
    {
        // 1024 frames: the block holding pfn 0 is split for 4 KiB pages, one whole 2 MiB block is left.
        var k = Kernel(era, options: new KernelOptions { InitialFrames = 1024, MaxFrames = 1024 });
        var mm = MmWithVma(k, H, 0x400000, VmFlags.HugePage);
        Ok(k, async () =>
        {
            await Write(mm, H, 1);
            await Write(mm, H + 0x200000, 2);
        });
        Assert.True(mm.PeekPmd(H).Huge);
        Assert.False(mm.PeekPmd(H + 0x200000).Huge);
        Assert.True(mm.PeekPte(H + 0x200000).Present);
        Consistent(k);
    }

    [Theory]
    [InlineData("3.7", "S(200000,400000) E(200000,400000) S(200000,201000) CP(200000)! E(200000,201000)")]
    [InlineData("4.13", "S(200000,400000) IR(200000,400000) E(200000,400000) S(200000,201000) IR(200000,201000)! CP(200000)! IR(200000,201000) E(200000,201000)")]
    [InlineData("6.13", "S(200000,400000,Clear) E(200000,400000,Clear) S(200000,201000,Clear) E(200000,201000,Clear)")]
    public void WpOnSharedThp_SplitsThenCopiesOnePage(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        long head = mm.PeekPmd(H).Pfn;
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        var rec = Recorder(k, mm);
        Ok(k, async () => await Write(mm, H, 2));
        Assert.Equal(expected, Seq(rec));
        Assert.False(mm.PeekPmd(H).Huge);
        Assert.NotEqual(head, mm.PeekPte(H).Pfn);
        Assert.True(mm.PeekPte(H).Writable);
        Assert.Equal(head + 1, mm.PeekPte(H + 0x1000).Pfn);
        Assert.False(mm.PeekPte(H + 0x1000).Writable);
        Assert.True(child.PeekPmd(H).Huge);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);   // the child's PMD
        Assert.Equal(0, k.Mem[head].MapCount);                        // the parent's PTE to it was replaced
        Assert.Equal(1, k.Mem[head + 1].MapCount);
        Assert.Equal(1 + 511, k.Mem[head].RefCount);                  // child PMD + parent's 511 PTEs
        Ok(k, async () =>
        {
            Assert.Equal(1UL, await Read(child, H));
            Assert.Equal(2UL, await Read(mm, H));
        });
        Consistent(k);
    }

    [Theory]
    [InlineData("3.7")]
    [InlineData("6.13")]
    public void WpOnExclusiveThp_ReusesInPlace(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        long head = mm.PeekPmd(H).Pfn;
        Ok(k, async () => await Mprotect.DoMprotect(mm, H, 0x200000, Prot.Read));
        Ok(k, async () => await Mprotect.DoMprotect(mm, H, 0x200000, Prot.ReadWrite));
        Assert.False(mm.PeekPmd(H).Writable);
        var rec = Recorder(k, mm);
        Ok(k, async () => await Write(mm, H + 0x3000, 5));
        Assert.Empty(rec.Calls);
        Assert.True(mm.PeekPmd(H).Huge && mm.PeekPmd(H).Writable);
        Assert.Equal(head, mm.PeekPmd(H).Pfn);
    }

    [Theory]
    [InlineData("3.7", "S(200000,400000) E(200000,400000)")]
    [InlineData("4.13", "S(200000,400000) IR(200000,400000) E(200000,400000) IR(200000,400000)")]
    [InlineData("6.13", "S(200000,400000,Unmap) E(200000,400000,Unmap)")]
    public void ZapHugePmd_FreesTheThpAfterEnd(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        long head = mm.PeekPmd(H).Pfn;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, head);
        Ok(k, async () => await Mmap.Munmap(mm, H, 0x200000));
        Assert.Equal(expected, Seq(rec));
        Assert.Equal(["S:live", "E:live"], probe.Log);
        Assert.True(k.Mem[head].Has(PageFlags.Free));
        Assert.True(mm.PeekPmd(H).IsNone);
        Assert.Equal(0, mm.RssAnon);
    }

    [Theory]
    [InlineData("3.7")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void PartialMunmapOfThp_SplitsAtTheVmaSplit_ThenUnmapsThePage_KeepsTheRest(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H + 0x1000, 1));
        long head = mm.PeekPmd(H).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mmap.Munmap(mm, H, 0x1000));
        // __split_vma's vma_adjust_trans_huge splits the PMD first, in its own CLEAR over the 2 MiB; then munmap's
        // UNMAP range over the one page.
        var ranges = rec.Calls.Where(c => c.Kind is Devices.CallbackKind.InvalidateRangeStart or Devices.CallbackKind.InvalidateRangeEnd)
            .Select(c => (c.Kind, c.Start, c.End)).ToArray();
        Assert.Equal(new[]
        {
            (Devices.CallbackKind.InvalidateRangeStart, H, 2 * H), (Devices.CallbackKind.InvalidateRangeEnd, H, 2 * H),
            (Devices.CallbackKind.InvalidateRangeStart, H, H + 0x1000), (Devices.CallbackKind.InvalidateRangeEnd, H, H + 0x1000),
        }, ranges);
        Assert.True(mm.PeekPte(H).IsNone);
        Assert.Equal(head + 1, mm.PeekPte(H + 0x1000).Pfn);
        Assert.Equal(0, k.Mem[head].MapCount);
        Assert.Equal(511, k.Mem[head].RefCount);
        Assert.False(k.Mem[head].Has(PageFlags.Free));
        Ok(k, async () => Assert.Equal(1UL, await Read(mm, H + 0x1000)));
        Consistent(k);
    }

    [Theory]
    [InlineData("3.7")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void SplitHugePmd_WithNotify_BracketsTheAligned2M(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, H, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, H, 1));
        var rec = Recorder(k, mm);
        long head = mm.PeekPmd(H).Pfn;
        var probe = Probe(k, mm, head);
        Ok(k, async () => await HugeMemory.SplitHugePmd(mm.Vmas[0], H + 0x7000, notify: true));
        // 4.13-4.14 have no only_end yet: end also calls invalidate_range
        Assert.Equal(k.Era.Has(Eras.Feature.InvalidateRange) && !k.Era.Has(Eras.Feature.OnlyEnd) ? 3 : 2, rec.Calls.Count);
        Assert.All(rec.Calls, c => Assert.Equal((H, H + 0x200000), (c.Start, c.End)));
        Assert.Equal(["S:live", "E:live"], probe.Log);
        Assert.Equal(PhysMem.HugePages, k.Mem[head].RefCount);
        Assert.Equal(0, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.All(Enumerable.Range(0, PhysMem.HugePages), i => Assert.Equal(1, k.Mem[head + i].MapCount));
        for (int i = 0; i < PhysMem.HugePages; i++)
        {
            var pte = mm.PeekPte(H + (ulong)i * 0x1000);
            Assert.True(pte.Present && pte.Writable && pte.Dirty);
        }
        Assert.Equal(1, k.Stats[Stat.ThpSplits]);
        Consistent(k);
    }
}
