using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>MADV_WIPEONFORK / MADV_KEEPONFORK (mm/madvise.c, kernel/fork.c dup_mmap).</summary>
public class WipeOnForkTests
{
    const ulong A = 0x200000, P = MmStruct.PageSize;

    static int Advise(Kernel k, MmStruct mm, ulong start, ulong len, bool wipe)
    {
        int r = 1;
        Ok(k, async () => r = await Madvise.MadviseWipeOnFork(mm, start, start + len, wipe));
        return r;
    }

    /// <summary>The wiped VMA is copied empty (no copy_page_range, so no PROTECTION_PAGE range for it on the parent);
    /// the parent's pages keep one reference, one mapping and PageAnonExclusive, and stay writable.</summary>
    [Theory]
    [InlineData("4.15", "S(201000,202000) IR(201000,202000) E(201000,202000)")] // plain end: invalidate_range, then end
    [InlineData("5.5", "S(201000,202000,ProtectionPage) IR(201000,202000) E(201000,202000,ProtectionPage)")]
    [InlineData("6.13", "S(201000,202000,ProtectionPage) E(201000,202000,ProtectionPage)")]
    public void Fork_GivesTheChildAnEmptyVma_AndNotifiesOnlyTheCopiedOne(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 2 * P);
        Ok(k, async () =>
        {
            await Write(mm, A, 0x11);
            await Write(mm, A + P, 0x22);
        });
        Assert.Equal(0, Advise(k, mm, A, P, wipe: true));
        Assert.Equal(2, mm.Vmas.Count);
        Assert.Equal(VmFlags.WipeOnFork, mm.Vmas[0].Flags);
        long wiped = mm.PeekPte(A).Pfn;
        var rec = Recorder(k, mm);
        MmStruct? child = null;
        Ok(k, async () => child = await Fork.DupMmap(mm, "child"));
        Assert.Equal(expected, Seq(rec));
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && pte.Writable);
        Assert.Equal((1, 1), (k.Mem[wiped].RefCount, k.Mem[wiped].MapCount));
        Assert.True(k.Mem[wiped].Has(PageFlags.AnonExclusive));
        Assert.True(child!.PeekPte(A).IsNone);
        Assert.Null(child.Vmas[0].AnonVma);
        Assert.Equal(VmFlags.WipeOnFork, child.Vmas[0].Flags); // inherited
        Ok(k, async () =>
        {
            Assert.Equal(0UL, await Read(child, A));
            Assert.Equal(0x22UL, await Read(child, A + P));
            Assert.Equal(0x11UL, await Read(mm, A));
        });
        Consistent(k);
    }

    [Theory]
    [InlineData("4.15")]
    [InlineData("6.13")]
    public void KeepOnFork_UndoesIt_AndTheVmasMergeAgain(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 2 * P);
        Ok(k, async () => await Write(mm, A, 0x11));
        Assert.Equal(0, Advise(k, mm, A, P, wipe: true));
        Assert.Equal(0, Advise(k, mm, A, P, wipe: false));
        Assert.Single(mm.Vmas);
        MmStruct? child = null;
        Ok(k, async () => child = await Fork.DupMmap(mm, "child"));
        Assert.Equal(mm.PeekPte(A).Pfn, child!.PeekPte(A).Pfn);
        Assert.Equal(2, k.Mem[mm.PeekPte(A).Pfn].MapCount);
    }

    [Fact]
    public void Errnos_SharedEinval_HoleEnomem_NoAdviceBefore414()
    {
        var k = Kernel("6.13");
        var shared = MmWithVma(k, A, P, VmFlags.Shared);
        Assert.Equal(Errno.EINVAL, Advise(k, shared, A, P, wipe: true));
        Assert.Equal(VmFlags.Shared, shared.Vmas[0].Flags);
        Assert.Equal(0, Advise(k, shared, A, P, wipe: false)); // KEEPONFORK has no such check
        var holes = MmWithVma(k, A, P);
        Assert.Equal(Errno.ENOMEM, Advise(k, holes, A, 2 * P, wipe: true));
        Assert.Equal(VmFlags.WipeOnFork, holes.Vmas[0].Flags); // the mapped part is still updated
        var old = Kernel("4.13");
        var mm = MmWithVma(old, A, P);
        Assert.Equal(Errno.EINVAL, Advise(old, mm, A, P, wipe: true));
        Assert.Equal(VmFlags.None, mm.Vmas[0].Flags);
    }
}
