using MmuSim.Mm;
using MmuSim.Sched;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>
/// khugepaged on shmem (mm/khugepaged.c collapse_file, retract_page_tables, collapse_pte_mapped_thp): the huge
/// page-cache folio, the CLEAR unmaps of the old pages, and the page-table retraction that notified secondaries only
/// from 6.1 (f268f6cf875f, CVE-2022-48991).
/// </summary>
public class KhugepagedFileTests
{
    const ulong A = 0x200000, P = MmStruct.PageSize, H = MmStruct.PmdSize;

    /// <summary>A MAP_SHARED|MAP_ANONYMOUS VMA with MADV_HUGEPAGE (shmem_enabled=advise), pages 0 and 1 written.</summary>
    static MmStruct ShmemWithTwoPages(Kernel k)
    {
        var mm = MmWithVma(k, A, H, VmFlags.Shared | VmFlags.HugePage);
        Ok(k, async () =>
        {
            await Write(mm, A, 0x11);
            await Write(mm, A + P, 0x22);
        });
        return mm;
    }

    [Theory]
    [InlineData("5.13", "S(200000,201000,Clear) IR(200000,201000) E(200000,201000,Clear) IR(200000,201000) S(201000,202000,Clear) IR(201000,202000) E(201000,202000,Clear) IR(201000,202000)")] // end, then tlb_finish_mmu, call invalidate_range (3.19-6.5)
    [InlineData("6.18", "S(200000,201000,Clear) E(200000,201000,Clear) S(201000,202000,Clear) E(201000,202000,Clear) S(200000,400000,Clear) E(200000,400000,Clear)")]
    public void CollapseFile_OneHugeFolioInTheCache_OldPagesUnmappedWithClear_EmptyTableRetracted(string era, string expected)
    {
        var k = Kernel(era);
        var mm = ShmemWithTwoPages(k);
        var vma = mm.FindVma(A)!;
        var file = vma.File!;
        ulong i0 = vma.IndexOf(A);
        long old0 = file.Pages[i0], old1 = file.Pages[i0 + 1];
        int tables = k.PageTables.TablesInUse;
        var rec = Recorder(k, mm);
        var r = ScanResult.Fail;
        Ok(k, async () => r = await Khugepaged.KhugepagedScanPmd(mm, A));
        Assert.Equal(ScanResult.Succeed, r);
        // 5.13: retract_page_tables drops the (empty) table with no notifier; 6.1+: inside a CLEAR over the 2 MiB.
        Assert.Equal(expected, Seq(rec));
        long head = file.Pages[i0];
        Assert.True(k.Mem.IsHuge(head));
        for (ulong i = 0; i < PhysMem.HugePages; i++) Assert.Equal(head + (long)i, file.Pages[i0 + i]);
        Assert.Equal(PhysMem.HugePages, k.Mem[head].RefCount); // one reference per cache index
        Assert.Equal(0, k.Mem.FolioMapCount(head));
        Assert.True(k.Mem[old0].Has(PageFlags.Free) && k.Mem[old1].Has(PageFlags.Free));
        Assert.True(mm.PeekPmd(A).IsNone);
        Assert.Equal(tables - 1, k.PageTables.TablesInUse);
        Assert.Equal(1, k.Stats[Stat.ThpCollapseFile]);
        Ok(k, async () =>
        {
            Assert.Equal(0x11UL, await Read(mm, A));
            Assert.Equal(0x22UL, await Read(mm, A + P));
            Assert.Equal(0UL, await Read(mm, A + 2 * P)); // a hole became a zeroed subpage
        });
        // The table was retracted, so the first fault maps the whole folio with one PMD (do_set_pmd), with no notifier.
        Assert.Equal(expected, Seq(rec));
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable && !pmd.Dirty);
        Assert.Equal(head, pmd.Pfn);
        Assert.Equal(PhysMem.HugePages + 1, k.Mem[head].RefCount);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.Equal(0, k.Mem[head + 1].MapCount);
        Assert.Equal(1, k.Stats[Stat.ThpFileMapped]);
        // A second pass sees the large folio (SCAN_PAGE_COMPOUND) and leaves it.
        Ok(k, async () => r = await Khugepaged.KhugepagedScanPmd(mm, A));
        Assert.Equal(ScanResult.PmdMapped, r);
        Consistent(k);
    }

    [Fact]
    public void CollapseFile_PageWithAnExtraReference_IsRefused_AndTheCacheIsUntouched()
    {
        var k = Kernel("6.18");
        var mm = ShmemWithTwoPages(k);
        var vma = mm.FindVma(A)!;
        var file = vma.File!;
        ulong i0 = vma.IndexOf(A);
        long old1 = file.Pages[i0 + 1];
        Folio.Get(k, old1); // a GUP reference
        var r = ScanResult.Succeed;
        Ok(k, async () => r = await Khugepaged.KhugepagedScanPmd(mm, A));
        Assert.Equal(ScanResult.PageCount, r);
        Assert.Equal(old1, file.Pages[i0 + 1]);
        Assert.False(k.Mem.IsHuge(k.Mem.FolioOf(file.Pages[i0])));
        Assert.Equal(0, k.Stats[Stat.ThpCollapseFile]);
        Folio.Put(k, old1);
        Consistent(k);
    }

    /// <summary>
    /// A fault holds mmap_lock (read) while khugepaged's first pass collapses the range; then the fault maps page 1 and
    /// khugepaged's second pass must find the range PMD-mapped. Returns the notifier calls of the first pass; the
    /// recorder then holds only the second's.
    /// </summary>
    static string FaultHoldingMmapLockAcrossTwoPasses(Kernel k, MmStruct mm, MmuSim.Devices.RecordingSecondary rec)
    {
        var wq = new WaitQueue(k.S, "test");
        bool held = false, retracted = false, mapped = false;
        string firstPass = "";
        k.S.Spawn("fault", async _ =>
        {
            await mm.MmapLock.ReadLock();
            held = true;
            wq.WakeAll();
            while (!retracted) await wq.Wait();
            Assert.Equal(VmFault.Ok, await Memory.HandleMmFault(mm, A + P, FaultFlags.None));
            await mm.MmapLock.ReadUnlock();
            mapped = true;
            wq.WakeAll();
        });
        k.S.Spawn("khugepaged", async _ =>
        {
            while (!held) await wq.Wait();
            Assert.Equal(ScanResult.Succeed, await Khugepaged.KhugepagedScanPmd(mm, A));
            firstPass = Seq(rec);
            rec.Clear();
            retracted = true;
            wq.WakeAll();
            while (!mapped) await wq.Wait();
            Assert.Equal(ScanResult.PmdMapped, await Khugepaged.KhugepagedScanPmd(mm, A));
        });
        Assert.Null(k.Run());
        Assert.Null(k.S.ModelError);
        return firstPass;
    }

    /// <summary>
    /// The CVE-2022-48991 sequence, forced: a fault holds mmap_lock while collapse_file retracts, so the trylock fails
    /// and the range is remembered (5.4+); the fault then PTE-maps a subpage of the new THP; khugepaged's next pass
    /// runs collapse_pte_mapped_thp, which removes that PTE with the page table. Before 6.1 no secondary hears of it.
    /// </summary>
    [Theory]
    [InlineData("4.19", 0, "")] // no collapse_pte_mapped_thp: the failed trylock is forgotten, the PTE stays
    [InlineData("5.13", 1, "")]
    [InlineData("6.1", 1, "S(200000,400000,Clear) IR(200000,400000) E(200000,400000,Clear)")]
    public void CollapsePteMappedThp_RemovesTheSubpagePte_NotifyingOnlyFrom61(string era, int collapsed, string secondPass)
    {
        var k = Kernel(era);
        var mm = ShmemWithTwoPages(k);
        var vma = mm.FindVma(A)!;
        var file = vma.File!;
        ulong i0 = vma.IndexOf(A);
        var rec = Recorder(k, mm);
        string firstPass = FaultHoldingMmapLockAcrossTwoPasses(k, mm, rec);
        Assert.DoesNotContain("200000,400000", firstPass); // the trylock failed: nothing retracted in pass 1
        long head = file.Pages[i0];
        Assert.Equal(collapsed, k.Stats[Stat.ThpPteMappedCollapsed]);
        Assert.Equal(secondPass, Seq(rec));
        if (collapsed == 1)
        {
            Assert.True(mm.PeekPmd(A).IsNone); // the table (and the PTE of head + 1) is gone
            Assert.Equal(0, k.Mem[head + 1].MapCount);
            Assert.Equal(PhysMem.HugePages, k.Mem[head].RefCount); // page_ref_sub(count): only the cache's
            Assert.Equal(0, mm.RssFile);
        }
        else
        {
            Assert.Equal(head + 1, mm.PeekPte(A + P).Pfn);
            Assert.Equal(PhysMem.HugePages + 1, k.Mem[head].RefCount);
        }
        Consistent(k);
    }

    /// <summary>
    /// The same sequence from 6.6 (1d65b771bc08, retract_page_tables without mmap or vma lock): the fault's mmap_lock
    /// no longer stops the retraction, which runs at once inside a CLEAR range while the new folio is locked; the
    /// fault then finds the PMD none and maps the THP by a PMD (do_set_pmd), so nothing is left for
    /// collapse_pte_mapped_thp and khugepaged's next pass, now calling it directly, finds the range PMD-mapped.
    /// </summary>
    [Theory]
    [InlineData("6.6")]
    [InlineData("6.18")]
    public void LocklessRetract_IgnoresTheHeldMmapLock_TheFaultMapsThePmd(string era)
    {
        var k = Kernel(era);
        var mm = ShmemWithTwoPages(k);
        var file = mm.FindVma(A)!.File!;
        var rec = Recorder(k, mm);
        string firstPass = FaultHoldingMmapLockAcrossTwoPasses(k, mm, rec);
        Assert.EndsWith("S(200000,400000,Clear) E(200000,400000,Clear)", firstPass); // retracted in pass 1, notified
        Assert.Null(mm.PteMappedThp); // nothing remembered for a later pass
        long head = file.Pages[mm.FindVma(A)!.IndexOf(A)];
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.Pfn == head);
        Assert.Equal(0, k.Stats[Stat.ThpPteMappedCollapsed]);
        Assert.Equal(0x22UL, k.Mem[head + 1].Contents);
        Consistent(k);
    }
}
