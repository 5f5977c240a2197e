using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>MADV_POPULATE_READ/WRITE (mm/madvise.c madvise_populate, mm/gup.c faultin_page_range): errnos, PTE bits,
/// references and the notifiers the faults it takes fire (populate itself fires none).</summary>
public class MadvisePopulateTests
{
    const ulong A = 0x200000, P = MmStruct.PageSize;

    static int Populate(Kernel k, MmStruct mm, ulong start, ulong len, bool write)
    {
        int r = 1;
        Ok(k, async () => r = await Madvise.MadvisePopulate(mm, start, start + len, write));
        return r;
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.6")]
    [InlineData("6.13")]
    public void PopulateRead_MapsTheZeroPage_NoNotifier_NoReference(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 4 * P);
        var rec = Recorder(k, mm);
        Assert.Equal(0, Populate(k, mm, A, 4 * P, write: false));
        for (ulong a = A; a < A + 4 * P; a += P)
        {
            var pte = mm.PeekPte(a);
            Assert.True(pte.Present && !pte.Writable && !pte.Dirty && !pte.SoftDirty);
            Assert.Equal(PhysMem.ZeroPfn, pte.Pfn);
        }
        Assert.Empty(rec.Calls);
        Assert.Equal(0, mm.RssAnon);
        Consistent(k);
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.6")]
    [InlineData("6.13")]
    public void PopulateWrite_AllocatesDirtyExclusivePages_TakesNoReference(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 2 * P);
        var rec = Recorder(k, mm);
        Assert.Equal(0, Populate(k, mm, A, 2 * P, write: true));
        for (ulong a = A; a < A + 2 * P; a += P)
        {
            var pte = mm.PeekPte(a);
            Assert.True(pte.Present && pte.Writable && pte.Dirty && pte.SoftDirty);
            ref var f = ref k.Mem[pte.Pfn];
            Assert.Equal((1, 1, 0), (f.RefCount, f.MapCount, Gup.FolioPincount(k, pte.Pfn))); // FOLL_MADV_POPULATE keeps nothing
            Assert.True(f.Has(PageFlags.AnonExclusive));
        }
        Assert.Empty(rec.Calls); // do_anonymous_page: a none PTE is filled without a notifier
        Consistent(k);
    }

    /// <summary>After fork the parent's page is COW-shared: populate_write breaks COW through wp_page_copy, whose
    /// CLEAR start/end over the one page the recorder sees (6.1: invalidate_range under the PTL from
    /// ptep_clear_flush_notify, change_pte until 6.9, end is only_end); over the zero page (after a read) the same.</summary>
    [Theory]
    [InlineData("6.1", "S(200000,201000,Clear) IR(200000,201000)! CP(200000)! E(200000,201000,Clear) S(201000,202000,Clear) IR(201000,202000)! CP(201000)! E(201000,202000,Clear)")]
    [InlineData("6.6", "S(200000,201000,Clear) CP(200000)! E(200000,201000,Clear) S(201000,202000,Clear) CP(201000)! E(201000,202000,Clear)")]
    [InlineData("6.13", "S(200000,201000,Clear) E(200000,201000,Clear) S(201000,202000,Clear) E(201000,202000,Clear)")]
    public void PopulateWrite_BreaksCow_WithWpPageCopysRange(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 2 * P);
        MmStruct? child = null;
        Ok(k, async () =>
        {
            await Write(mm, A, 7);
            await Read(mm, A + P);
            child = await Fork.DupMmap(mm, "child");
        });
        long old = mm.PeekPte(A).Pfn;
        Assert.Equal((2, 2), (k.Mem[old].RefCount, k.Mem[old].MapCount));
        var rec = Recorder(k, mm);
        Assert.Equal(0, Populate(k, mm, A, 2 * P, write: true));
        Assert.Equal(expected, Seq(rec));
        var pte = mm.PeekPte(A);
        Assert.NotEqual(old, pte.Pfn);
        Assert.True(pte.Writable && pte.Dirty && pte.SoftDirty);
        Assert.Equal(7UL, k.Mem[pte.Pfn].Contents);
        Assert.Equal((1, 1), (k.Mem[old].RefCount, k.Mem[old].MapCount)); // the child's mapping only
        Assert.Equal((1, 1), (k.Mem[pte.Pfn].RefCount, k.Mem[pte.Pfn].MapCount));
        Assert.NotEqual(PhysMem.ZeroPfn, mm.PeekPte(A + P).Pfn);
        Assert.Equal(old, child!.PeekPte(A).Pfn);
        Consistent(k);
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void PopulateWrite_OnAHugepageVma_FaultsInAThp(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, MmStruct.PmdSize, VmFlags.HugePage);
        var rec = Recorder(k, mm);
        Assert.Equal(0, Populate(k, mm, A, MmStruct.PmdSize, write: true));
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable && pmd.Dirty);
        Assert.Equal(1, k.Mem[pmd.Pfn].RefCount);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(pmd.Pfn).RefCount);
        Assert.Empty(rec.Calls);
    }

    /// <summary>madv_populate.c's errno cases: PROT_READ + WRITE and PROT_WRITE + READ give EINVAL, holes ENOMEM
    /// (the pages before the hole are populated), PROT_NONE EINVAL; unknown advice (EINVAL) before 5.14.</summary>
    [Theory]
    [InlineData("6.1")]
    [InlineData("6.6")]
    [InlineData("6.13")]
    public void Errnos_AsMadvPopulateSelftestExpects(string era)
    {
        var k = Kernel(era);
        var ro = MmWithVma(k, A, 2 * P, prot: Prot.Read);
        Assert.Equal(0, Populate(k, ro, A, 2 * P, write: false));
        Assert.Equal(Errno.EINVAL, Populate(k, ro, A, 2 * P, write: true));
        Assert.Equal(PhysMem.ZeroPfn, ro.PeekPte(A).Pfn);

        var wo = MmWithVma(k, A, 2 * P, prot: Prot.Write);
        Assert.Equal(Errno.EINVAL, Populate(k, wo, A, 2 * P, write: false));
        Assert.True(wo.PeekPte(A).IsNone);
        Assert.Equal(0, Populate(k, wo, A, 2 * P, write: true));
        Assert.True(wo.PeekPte(A + P).Writable);

        var none = MmWithVma(k, A, P, prot: Prot.None);
        Assert.Equal(Errno.EINVAL, Populate(k, none, A, P, write: false));
        Assert.Equal(Errno.EINVAL, Populate(k, none, A, P, write: true));

        var holes = MmWithVma(k, A, P);
        holes.InsertVma(new Vma(holes, A + 2 * P, A + 4 * P, Prot.ReadWrite, VmFlags.None));
        Assert.Equal(Errno.ENOMEM, Populate(k, holes, A, 4 * P, write: true)); // hole in the middle
        Assert.True(holes.PeekPte(A).Present);                                  // the page before it is populated
        Assert.True(holes.PeekPte(A + 2 * P).IsNone);
        Assert.Equal(Errno.ENOMEM, Populate(k, holes, A + P, P, write: false)); // hole only
        Assert.Equal(Errno.ENOMEM, Populate(k, holes, A + 3 * P, 2 * P, write: false)); // hole at the end
        Consistent(k);

        var old = Kernel("5.13");
        var mm = MmWithVma(old, A, P);
        Assert.Equal(Errno.EINVAL, Populate(old, mm, A, P, write: false));
        Assert.True(mm.PeekPte(A).IsNone);
    }
}
