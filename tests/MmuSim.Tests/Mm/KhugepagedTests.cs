using MmuSim.Mm;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>MADV_COLLAPSE and khugepaged's anon collapse (mm/khugepaged.c collapse_huge_page): the CLEAR start/end over
/// the 2 MiB range around pmdp_collapse_flush, the new folio's PMD and counts, what happens to the old pages.</summary>
public class KhugepagedTests
{
    const ulong A = 0x200000, P = MmStruct.PageSize, H = MmStruct.PmdSize;

    /// <summary>A PTE-mapped THP (cow.c's mprotect trick splits the PMD) with distinct values in pages 0 and 511.</summary>
    static MmStruct PteMappedThp(Kernel k, VmFlags flags = VmFlags.HugePage)
    {
        var mm = MmWithVma(k, A, H, flags);
        Ok(k, async () =>
        {
            await Write(mm, A, 0x11);
            await Write(mm, A + H - P, 0x22);
            await Mprotect.DoMprotect(mm, A + P, P, Prot.Read);
            await Mprotect.DoMprotect(mm, A + P, P, Prot.ReadWrite);
        });
        Assert.False(mm.PeekPmd(A).Huge);
        return mm;
    }

    static int Collapse(Kernel k, MmStruct mm, ulong start, ulong len)
    {
        int r = 1;
        Ok(k, async () => r = await Khugepaged.MadviseCollapse(mm, start, start + len));
        return r;
    }

    [Theory]
    [InlineData("6.1", "S(200000,400000,Clear) IR(200000,400000) E(200000,400000,Clear)")] // plain end calls invalidate_range (3.19-6.5)
    [InlineData("6.6", "S(200000,400000,Clear) E(200000,400000,Clear)")] // invalidate_range is gone; the recorder has no arch_invalidate_secondary_tlbs
    [InlineData("6.13", "S(200000,400000,Clear) E(200000,400000,Clear)")]
    public void MadviseCollapse_PteMappedThp_OneClearRangeOverThePmd_NewExclusiveFolio(string era, string expected)
    {
        var k = Kernel(era);
        var mm = PteMappedThp(k);
        long oldHead = k.Mem.FolioOf(mm.PeekPte(A).Pfn);
        int tables = k.PageTables.TablesInUse;
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm, oldHead);
        Assert.Equal(0, Collapse(k, mm, A, H));
        Assert.Equal(expected, Seq(rec));
        Assert.Equal(["S:live", "E:live"], probe.Log); // the old pages go only after end (at the copy)
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable && pmd.Dirty && pmd.Accessed && pmd.SoftDirty);
        long head = pmd.Pfn;
        Assert.NotEqual(oldHead, head);
        Assert.Equal(1, k.Mem[head].RefCount);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.Equal(1, k.Mem.FolioMapCount(head));
        Assert.True(k.Mem[head].Has(PageFlags.AnonExclusive));
        Assert.Equal(0, Gup.FolioPincount(k, head));
        Assert.True(k.Mem[oldHead].Has(PageFlags.Free));
        Assert.Equal(tables - 1, k.PageTables.TablesInUse); // the detached PTE table is gone
        Assert.Equal(PhysMem.HugePages, mm.RssAnon);
        Ok(k, async () =>
        {
            Assert.Equal(0x11UL, await Read(mm, A));
            Assert.Equal(0x22UL, await Read(mm, A + H - P));
            Assert.Equal(0UL, await Read(mm, A + 2 * P));
        });
        Consistent(k);
    }

    /// <summary>6.6+: pmdp_collapse_flush's flush_tlb_range reaches a secondary that subscribes to
    /// arch_invalidate_secondary_tlbs (an IOMMU sharing the tables) once, for the 2 MiB.</summary>
    [Fact]
    public void MadviseCollapse_613_FlushCallsArchInvalidateSecondaryTlbs()
    {
        var k = Kernel("6.13");
        var mm = PteMappedThp(k);
        var rec = Recorder(k, mm);
        var iommu = Recorder(k, mm, MmuSim.Notifier.NotifierOps.ArchInvalidateSecondaryTlbs); // 6.6+: no start/end with it
        Assert.Equal(0, Collapse(k, mm, A, H));
        Assert.Equal("S(200000,400000,Clear) E(200000,400000,Clear)", Seq(rec));
        Assert.Equal("AIST(200000,400000)!", Seq(iommu)); // under the PMD lock
    }

    /// <summary>Collapsing a THP whose lower half is COW-shared with a child (cow.c's lower-shared case): the parent
    /// gets a private copy, the child keeps the old pages with its own mappings and references.</summary>
    [Theory]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void MadviseCollapse_PartlySharedWithAChild_CopiesAndLeavesTheChildsPages(string era)
    {
        var k = Kernel(era);
        var mm = PteMappedThp(k);
        MmStruct? child = null;
        Ok(k, async () =>
        {
            await CoreMadvise(mm, A + H / 2, H / 2, dontfork: true);
            child = await Fork.DupMmap(mm, "child");
            await CoreMadvise(mm, A + H / 2, H / 2, dontfork: false);
        });
        Assert.Single(mm.Vmas); // MADV_DOFORK merged the VMAs again
        long oldPage0 = mm.PeekPte(A).Pfn, oldHead = k.Mem.FolioOf(oldPage0);
        Assert.Equal(2, k.Mem[oldPage0].MapCount);
        Assert.Equal(PhysMem.HugePages + PhysMem.HugePages / 2, k.Mem[oldHead].RefCount); // one per PTE, the child maps the lower half
        Assert.Equal(0, Collapse(k, mm, A, H)); // the upper half is still writable: SCAN_PAGE_RO does not apply
        Assert.True(mm.PeekPmd(A).Huge);
        Assert.Equal(oldPage0, child!.PeekPte(A).Pfn);
        Assert.Equal(1, k.Mem[oldPage0].MapCount);
        Assert.Equal(PhysMem.HugePages / 2, k.Mem[oldHead].RefCount);
        Assert.Equal(0, k.Mem[oldHead + PhysMem.HugePages - 1].MapCount);
        Ok(k, async () =>
        {
            await Write(mm, A, 0xff);
            Assert.Equal(0x11UL, await Read(child, A));
            Assert.Equal(0xffUL, await Read(mm, A));
        });
        Consistent(k);
    }

    static async ValueTask CoreMadvise(MmStruct mm, ulong s, ulong len, bool dontfork)
    {
        await mm.MmapLock.WriteLock();
        try
        {
            foreach (var v in await Mmap.SplitAround(mm, s, s + len))
                v.Flags = dontfork ? v.Flags | VmFlags.DontCopy : v.Flags & ~VmFlags.DontCopy;
            Mmap.VmaMergeAround(mm, s, s + len);
        }
        finally { await mm.MmapLock.WriteUnlock(); }
    }

    /// <summary>The refusals and their errnos (madvise_collapse_errno), each leaving the PTEs and counts untouched and
    /// firing no notifier: all PTEs read-only (SCAN_PAGE_RO, fully shared after fork), a pinned page (SCAN_PAGE_COUNT:
    /// EAGAIN), no page table (SCAN_PMD_NULL), a shared VMA, and no MADV_COLLAPSE before 6.1.</summary>
    [Theory]
    [InlineData("6.1")]
    [InlineData("6.6")]
    [InlineData("6.13")]
    public void MadviseCollapse_Refusals(string era)
    {
        var k = Kernel(era);
        var mm = PteMappedThp(k);
        Ok(k, async () => await Fork.DupMmap(mm, "child"));
        var rec = Recorder(k, mm);
        Assert.Equal(Errno.EINVAL, Collapse(k, mm, A, H)); // every PTE write-protected by fork
        Assert.Empty(rec.Calls);
        Assert.False(mm.PeekPmd(A).Huge);

        var k2 = Kernel(era);
        var pinned = PteMappedThp(k2);
        UserPages? pin = null;
        Ok(k2, async () => pin = (await Gup.GetUserPages(pinned, A, 1, GupFlags.Pin | GupFlags.Write, false)).Pages);
        var rec2 = Recorder(k2, pinned);
        Assert.Equal(Errno.EAGAIN, Collapse(k2, pinned, A, H));
        Assert.Empty(rec2.Calls);
        Assert.Equal(1, Gup.FolioPincount(k2, pinned.PeekPte(A).Pfn));
        Ok(k2, async () => await Gup.Release(k2, pin!));
        Assert.Equal(0, Collapse(k2, pinned, A, H)); // unpinned: collapses

        var k3 = Kernel(era);
        var empty = MmWithVma(k3, A, H);
        Assert.Equal(Errno.EINVAL, Collapse(k3, empty, A, H)); // SCAN_PMD_NULL
        Assert.Equal(0, Collapse(k3, empty, A, H / 2));          // no whole PMD range: nothing to do
        // An untouched shmem range collapses into a zeroed huge folio (collapse_file fills the holes); 6.1-6.5 then
        // fail the target, which has no page table (SCAN_PMD_NULL), 6.6+ map it by a PMD (FilePmdTests).
        var shared = MmWithVma(k3, 0x400000, H, VmFlags.Shared);
        Assert.Equal(era == "6.1" ? Errno.EINVAL : 0, Collapse(k3, shared, 0x400000, H));
        Assert.Equal(era != "6.1", shared.PeekPmd(0x400000) is { Present: true, Huge: true });
        var nohuge = MmWithVma(k3, 0x800000, H, VmFlags.NoHugePage);
        Assert.Equal(Errno.EINVAL, Collapse(k3, nohuge, 0x800000, H));
        Assert.Equal(Errno.ENOMEM, Collapse(k3, empty, A + H / 2, H)); // the range runs past the VMA

        var old = Kernel("5.13");
        var mm5 = PteMappedThp(old);
        Assert.Equal(Errno.EINVAL, Collapse(old, mm5, A, H));
        Assert.False(mm5.PeekPmd(A).Huge);
    }

    /// <summary>khugepaged (2.6.38+, every era with THP) collapses a range with one written page, one zero page and
    /// 510 empty PTEs (max_ptes_none 511); with no page at all left it refuses (SCAN_EXCEED_NONE_PTE), and it ignores a
    /// VMA without VM_HUGEPAGE. MADV_COLLAPSE has no such limits but is 6.1+.</summary>
    [Theory]
    [InlineData("4.13", "S(200000,400000) IR(200000,400000) E(200000,400000)")]
    [InlineData("5.5", "S(200000,400000,Clear) IR(200000,400000) E(200000,400000,Clear)")]
    [InlineData("6.13", "S(200000,400000,Clear) E(200000,400000,Clear)")]
    public void Khugepaged_CollapsesWithinItsLimits(string era, string expected)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, H); // no VM_HUGEPAGE at fault time: 4 KiB pages
        Ok(k, async () =>
        {
            await Write(mm, A, 5);
            await Read(mm, A + P); // the zero page
        });
        long small = mm.PeekPte(A).Pfn;
        ScanResult r = ScanResult.Fail;
        Ok(k, async () => r = await Khugepaged.KhugepagedScanPmd(mm, A));
        Assert.Equal(ScanResult.VmaCheck, r);
        Ok(k, async () => await MmuSim.Scenarios.CoreOps.MadviseHandlers["hugepage"](mm, A, A + H));
        var rec = Recorder(k, mm);
        Ok(k, async () => r = await Khugepaged.KhugepagedScanPmd(mm, A));
        Assert.Equal(ScanResult.Succeed, r);
        Assert.Equal(expected, Seq(rec));
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Huge && pmd.Writable && pmd.Dirty);
        Assert.Equal(5UL, k.Mem[pmd.Pfn].Contents);
        Assert.Equal(0UL, k.Mem[pmd.Pfn + 1].Contents);
        Assert.True(k.Mem[small].Has(PageFlags.Free));
        Assert.Equal((1, 1), (k.Mem[pmd.Pfn].RefCount, k.Mem.EntireMapcountHolder(pmd.Pfn).RefCount));
        Consistent(k);

        var k2 = Kernel(era);
        var mm2 = MmWithVma(k2, A, H);
        Ok(k2, async () =>
        {
            await Write(mm2, A, 5);
            await Madvise.MadviseDontneed(mm2, A, P);
            await MmuSim.Scenarios.CoreOps.MadviseHandlers["hugepage"](mm2, A, A + H);
        });
        Ok(k2, async () => r = await Khugepaged.KhugepagedScanPmd(mm2, A));
        Assert.Equal(ScanResult.ExceedNonePte, r);
        Assert.False(mm2.PeekPmd(A).Huge);
    }
}
