using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>MAP_SHARED|MAP_ANONYMOUS is a shmem file: every mm that maps it faults in the same page (mm/shmem.c).</summary>
public class SharedAnonTests
{
    const ulong A = 0x10000, P = 0x1000;

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void UnpopulatedAndReadPages_AreSharedAcrossFork(string era)
    {
        var k = Kernel(era);
        var parent = MmWithVma(k, A, 3 * P, VmFlags.Shared);
        var rec = Recorder(k, parent);
        MmStruct child = null!;
        Ok(k, async () =>
        {
            await Write(parent, A, 0x10);   // populated
            await Read(parent, A + P);       // read before fork: was the zero page, the child's write was then private
            child = await Fork.DupMmap(parent, "child");
            // A + 2P: never touched before fork.
            Assert.Equal(0x11UL, await Write(child, A, 0x11));
            Assert.Equal(0x12UL, await Write(child, A + P, 0x12));
            Assert.Equal(0x13UL, await Write(child, A + 2 * P, 0x13));
            Assert.Equal(0x11UL, await Read(parent, A));
            Assert.Equal(0x12UL, await Read(parent, A + P));
            Assert.Equal(0x13UL, await Read(parent, A + 2 * P));
        });
        Assert.Empty(rec.Calls); // a shared mapping is not COW: no PROTECTION_PAGE at fork, no CLEAR on any write
        for (ulong a = A; a < A + 3 * P; a += P)
        {
            var pp = parent.PeekPte(a);
            var cp = child.PeekPte(a);
            Assert.Equal(pp.Pfn, cp.Pfn);
            Assert.NotEqual(PhysMem.ZeroPfn, pp.Pfn);
            Assert.True(pp.Writable && cp.Writable);
            Assert.Equal(2, k.Mem[pp.Pfn].MapCount);
            Assert.Equal(3, k.Mem[pp.Pfn].RefCount); // the page cache's and one per mapping
            Assert.False(k.Mem[pp.Pfn].Has(PageFlags.Anon));
        }
        Consistent(k);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void ReadFault_MapsAShmemPageNotTheZeroPage(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, P, VmFlags.Shared);
        Ok(k, async () => Assert.Equal(0UL, await Read(mm, A)));
        var pte = mm.PeekPte(A);
        Assert.NotEqual(PhysMem.ZeroPfn, pte.Pfn);
        Assert.True(pte.Writable && !pte.Dirty && !pte.Special); // vm_page_prot of a shared writable VMA
        Assert.Equal(2, k.Mem[pte.Pfn].RefCount);
        Assert.Equal(1, k.Mem[pte.Pfn].MapCount);
    }

    [Theory]
    [InlineData("2.6.32", "S(10000,11000)! E(10000,11000)!")]
    [InlineData("4.13", "S(10000,11000) IR(10000,11000) E(10000,11000) IR(10000,11000)")]
    [InlineData("6.13", "S(10000,11000,Clear) E(10000,11000,Clear)")]
    public void DontneedKeepsTheData_ExitOfTheLastUserFreesIt(string era, string zap)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, P, VmFlags.Shared);
        Ok(k, async () => await Write(mm, A, 0x42));
        long pfn = mm.PeekPte(A).Pfn;
        var rec = Recorder(k, mm);
        MmStruct child = null!;
        Ok(k, async () =>
        {
            child = await Fork.DupMmap(mm, "child");
            await Madvise.MadviseDontneed(mm, A, P);
        });
        Assert.Equal(zap, Seq(rec));
        Assert.True(mm.PeekPte(A).IsNone);
        Assert.True(child.PeekPte(A).IsNone);  // vma_needs_copy: fork does not copy a shared mapping's PTEs
        Assert.Equal(1, k.Mem[pfn].RefCount);  // the page cache's
        rec.Clear();
        Ok(k, async () => Assert.Equal(0x42UL, await Read(mm, A))); // refaults the same page from the page cache
        Assert.Empty(rec.Calls);
        Assert.Equal(pfn, mm.PeekPte(A).Pfn);
        Ok(k, async () => await Mmap.ExitMmap(mm));
        Assert.False(k.Mem[pfn].Has(PageFlags.Free)); // the child still maps the file: the page stays cached
        Assert.Equal(1, k.Mem[pfn].RefCount);
        Ok(k, async () => await Mmap.ExitMmap(child));
        Assert.True(k.Mem[pfn].Has(PageFlags.Free));
    }

    [Fact]
    public void MprotectedBack_WriteReusesTheSharedPage()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, P, VmFlags.Shared);
        MmStruct child = null!;
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            child = await Fork.DupMmap(mm, "child");
            await Mprotect.DoMprotect(mm, A, P, Prot.Read);
            await Mprotect.DoMprotect(mm, A, P, Prot.ReadWrite);
            Assert.Equal(2UL, await Write(mm, A, 2)); // wp_page_shared: in place, not a private copy
            Assert.Equal(2UL, await Read(child, A));
        });
        Assert.Equal(mm.PeekPte(A).Pfn, child.PeekPte(A).Pfn);
    }
}
