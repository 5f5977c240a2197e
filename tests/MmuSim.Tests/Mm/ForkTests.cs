using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

public class ForkTests
{
    const ulong A = 0x10000;

    [Theory]
    [InlineData("2.6.32", "S(10000,14000)! E(10000,14000)!")] // 2.6.32: RCU read side, callbacks run atomic
    [InlineData("4.13", "S(10000,14000) IR(10000,14000) E(10000,14000)")]
    [InlineData("6.13", "S(10000,14000,ProtectionPage) E(10000,14000,ProtectionPage)")]
    public void Fork_WriteProtectsBothSides_NotifiesProtectionPageOnParentOnly(string era, string expected)
    {
        var k = Kernel(era);
        var parent = MmWithVma(k, A, 0x4000);
        MmStruct child = null!;
        long p0 = -1, p1 = -1;
        Ok(k, async () =>
        {
            await Write(parent, A, 10);
            await Write(parent, A + 0x1000, 11);
            await Read(parent, A + 0x2000);
        });
        p0 = parent.PeekPte(A).Pfn;
        p1 = parent.PeekPte(A + 0x1000).Pfn;
        var rec = Recorder(k, parent);
        Ok(k, async () => child = await Fork.DupMmap(parent, "child"));
        Assert.Equal(expected, Seq(rec));

        foreach (var (a, pfn) in new[] { (A, p0), (A + 0x1000, p1) })
        {
            var pp = parent.PeekPte(a);
            var cp = child.PeekPte(a);
            Assert.True(pp.Present && !pp.Writable && pp.Dirty);
            Assert.True(cp.Present && !cp.Writable && !cp.Accessed);
            Assert.Equal(pfn, pp.Pfn);
            Assert.Equal(pfn, cp.Pfn);
            Assert.Equal(2, k.Mem[pfn].RefCount);
            Assert.Equal(2, k.Mem[pfn].MapCount);
            Assert.False(k.Mem[pfn].Has(PageFlags.AnonExclusive));
        }
        Assert.Equal(PhysMem.ZeroPfn, child.PeekPte(A + 0x2000).Pfn);
        Assert.Same(parent.Vmas[0].AnonVma, child.Vmas[0].AnonVma);
        Assert.Contains(child, parent.Vmas[0].AnonVma!.Members);
        Consistent(k);

        // The child breaks COW (its mm has no subscription: the parent's recorder sees nothing).
        rec.Clear();
        Ok(k, async () => await Write(child, A, 20));
        Assert.Empty(rec.Calls);
        Assert.NotEqual(p0, child.PeekPte(A).Pfn);
        Assert.Equal(1, k.Mem[p0].RefCount);
        Assert.Equal(1, k.Mem[p0].MapCount);
        // The parent is now the only user of p0: reuse in place, no notifier; p1 is still shared: copy, notified.
        Ok(k, async () => await Write(parent, A, 30));
        Assert.Empty(rec.Calls);
        Assert.Equal(p0, parent.PeekPte(A).Pfn);
        Assert.True(parent.PeekPte(A).Writable);
        Ok(k, async () => await Write(parent, A + 0x1000, 31));
        Assert.NotEmpty(rec.Calls);
        Assert.NotEqual(p1, parent.PeekPte(A + 0x1000).Pfn);
        Ok(k, async () =>
        {
            Assert.Equal(30UL, await Read(parent, A));
            Assert.Equal(20UL, await Read(child, A));
            Assert.Equal(31UL, await Read(parent, A + 0x1000));
            Assert.Equal(11UL, await Read(child, A + 0x1000));
        });
        Consistent(k);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void Fork_SkipsDontCopyVmas_AndSharedMappingsAreNotNotified(string era)
    {
        var k = Kernel(era);
        var mm = k.CreateMm("p");
        mm.InsertVma(new Vma(mm, A, A + 0x1000, Prot.ReadWrite, VmFlags.DontCopy));
        mm.InsertVma(new Vma(mm, A + 0x1000, A + 0x2000, Prot.ReadWrite, VmFlags.Shared));
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await Write(mm, A + 0x1000, 2);
        });
        var rec = Recorder(k, mm);
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        Assert.Empty(rec.Calls); // a shared mapping is not a COW mapping
        Assert.Single(child.Vmas);
        var pte = mm.PeekPte(A + 0x1000);
        Assert.True(pte.Writable);
        // vma_needs_copy: a shared mapping without anon_vma is not copied; the child's fault fills it from the page cache.
        Assert.True(child.PeekPte(A + 0x1000).IsNone);
        Assert.Equal(1, k.Mem[pte.Pfn].MapCount);
        Ok(k, async () => Assert.Equal(2UL, await Read(child, A + 0x1000)));
        Assert.True(child.PeekPte(A + 0x1000).Writable);
        Assert.Equal(pte.Pfn, child.PeekPte(A + 0x1000).Pfn);
        Assert.False(child.PeekPte(A + 0x1000).Dirty);
        Assert.Equal(2, k.Mem[pte.Pfn].MapCount);
    }

    [Theory]
    [InlineData("3.7", "S(200000,400000) E(200000,400000)")]
    [InlineData("4.13", "S(200000,400000) IR(200000,400000) E(200000,400000)")]
    [InlineData("6.13", "S(200000,400000,ProtectionPage) E(200000,400000,ProtectionPage)")]
    public void Fork_Thp_CopiesHugePmdWriteProtected_EraWithThp(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, 0x200000, 0x200000, VmFlags.HugePage);
        Ok(k, async () => await Write(mm, 0x200000, 5));
        var pmd = mm.PeekPmd(0x200000);
        Assert.True(pmd.Huge && pmd.Writable);
        long head = pmd.Pfn;
        var rec = Recorder(k, mm);
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "c"));
        Assert.Equal(expected, Seq(rec));
        var cp = child.PeekPmd(0x200000);
        Assert.True(cp.Huge && !cp.Writable);
        Assert.False(mm.PeekPmd(0x200000).Writable);
        Assert.Equal(head, cp.Pfn);
        Assert.Equal(2, k.Mem[head].RefCount);
        Assert.Equal(2, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.False(k.Mem[head].Has(PageFlags.AnonExclusive));
        Consistent(k);
    }
}
