using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Tests.Kvm;

public class KvmAgingDirtyTests
{
    /// <summary>clear_flush_young page by page over the slot's hva range; the pages reported young.</summary>
    static async ValueTask<List<ulong>> AgeAll(KvmKit t, int pages, bool flush = true)
    {
        var young = new List<ulong>();
        for (int i = 0; i < pages; i++)
        {
            ulong va = KvmKit.Hva + (ulong)i * MmStruct.PageSize;
            bool y = flush ? await t.Mm.Notifiers.ClearFlushYoung(va, va + MmStruct.PageSize)
                           : await t.Mm.Notifiers.ClearYoung(va, va + MmStruct.PageSize);
            if (y) young.Add(KvmKit.Gfn0 + (ulong)i);
        }
        return young;
    }

    [Theory]
    [InlineData("6.8", false)]
    [InlineData("4.10", false)]
    [InlineData("2.6.32", false)]
    [InlineData("6.8", true)]
    [InlineData("4.10", true)]
    public void ClearFlushYoungReportsExactlyTheTouchedPages_ThenNone(string era, bool noAccessedBit)
    {
        var t = new KvmKit(era, pages: 8);
        t.Vm.NoAccessedBit = noAccessedBit;
        ulong[] touched = [KvmKit.Gfn0 + 1, KvmKit.Gfn0 + 4, KvmKit.Gfn0 + 6];
        t.MustDo(async () =>
        {
            for (ulong g = KvmKit.Gfn0; g < KvmKit.Gfn0 + 8; g++) await t.GuestRead(g);
            await AgeAll(t, 8);                                     // everything was touched: reset
            Assert.Empty(await AgeAll(t, 8));
            foreach (var g in touched) await t.GuestRead(g);
            Assert.Equal(touched, await AgeAll(t, 8));
            Assert.Empty(await AgeAll(t, 8));
        });
        if (noAccessedBit)
        {
            // Accessed emulated by zapping: the aged pages have no SPTE any more; the guest re-faults on next touch.
            Assert.Equal(0, t.Vm.PresentSptes);
        }
        else Assert.Equal(8, t.Vm.PresentSptes);
    }

    [Fact]
    public void TestYoungDoesNotClear()
    {
        var t = new KvmKit("6.8");
        t.MustDo(async () =>
        {
            await t.GuestRead(KvmKit.Gfn0);
            Assert.True(await t.Mm.Notifiers.TestYoung(KvmKit.Hva));
            Assert.True(await t.Mm.Notifiers.TestYoung(KvmKit.Hva));
            Assert.False(await t.Mm.Notifiers.TestYoung(KvmKit.Hva + MmStruct.PageSize));
        });
        Assert.True(t.Vm.PeekSpte(KvmKit.Gfn0).Accessed);
    }

    [Fact]
    public void ClearYoungWithoutFlush_LeavesTheTlbEntry_SoAnAccessThroughItIsNotSeen()
    {
        var t = new KvmKit("6.8");
        t.MustDo(async () =>
        {
            await t.GuestRead(KvmKit.Gfn0);
            Assert.Equal([KvmKit.Gfn0], await AgeAll(t, 1, flush: false));
            await t.GuestRead(KvmKit.Gfn0); // TLB hit: the walk that sets A does not happen
            Assert.Empty(await AgeAll(t, 1, flush: false));
        });
    }

    [Theory]
    [InlineData("6.8", true)]
    [InlineData("2.6.32", true)]
    [InlineData("6.13", false)]
    public void ZapCarriesTheSpteDirtyBitToTheFolio_Until6_13(string era, bool zapMarksDirty)
    {
        var t = new KvmKit(era);
        long pfn = -1;
        t.MustDo(async () =>
        {
            await Memory.UserAccess(t.Mm, KvmKit.Hva, write: true, value: 1);
            pfn = t.Mm.PeekPte(KvmKit.Hva).Pfn;
            Folio.TestClearDirty(t.K, pfn, "test: writeback");
            // A guest read maps it writable (GUP saw a writable PTE) but clean.
            await t.GuestRead(KvmKit.Gfn0);
        });
        Assert.True(t.Vm.PeekSpte(KvmKit.Gfn0).Writable);
        Assert.Equal(!zapMarksDirty, Folio.IsDirty(t.K, pfn)); // 6.13: dirty at fault time (map_writable)
        Folio.TestClearDirty(t.K, pfn, "test: writeback");
        t.MustDo(async () =>
        {
            await t.GuestWrite(KvmKit.Gfn0, 2);                 // sets the SPTE D bit through the walk
            var r = new MmuSim.Notifier.MmuNotifierRange(t.Mm, KvmKit.Hva, KvmKit.Hva + MmStruct.PageSize, MmuSim.Notifier.MmuNotifyEvent.Clear);
            await t.Mm.Notifiers.InvalidateRangeStart(r);
            Assert.Equal(zapMarksDirty, Folio.IsDirty(t.K, pfn));
            await t.Mm.Notifiers.InvalidateRangeEnd(r);
        });
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.10")]
    [InlineData("2.6.32")]
    public void DirtyLogReturnsExactlyTheWrittenGfns(string era)
    {
        var t = new KvmKit(era, pages: 16);
        var slot = t.Slot;
        t.MustDo(async () =>
        {
            for (ulong g = KvmKit.Gfn0; g < KvmKit.Gfn0 + 16; g++) await t.GuestWrite(g, g);
            Assert.Equal(0, await t.Vm.SetMemoryRegion(0, KvmKit.Gfn0, 16, KvmKit.Hva, MemslotFlags.LogDirtyPages));
            Assert.All(Enumerable.Range(0, 16), i => Assert.False(t.Vm.PeekSpte(KvmKit.Gfn0 + (ulong)i).Writable));
            Assert.Empty(await t.GetDirtyLog(slot));
            ulong[] written = [KvmKit.Gfn0 + 2, KvmKit.Gfn0 + 3, KvmKit.Gfn0 + 11];
            foreach (var g in written) await t.GuestWrite(g, 100);
            await t.GuestWrite(KvmKit.Gfn0 + 3, 101);
            await t.GuestRead(KvmKit.Gfn0 + 5);
            Assert.Equal(written, await t.GetDirtyLog(slot));
            Assert.Empty(await t.GetDirtyLog(slot));
            Assert.False(t.Vm.PeekSpte(KvmKit.Gfn0 + 3).Writable);
            await t.GuestWrite(KvmKit.Gfn0 + 3, 102);
            Assert.Equal([KvmKit.Gfn0 + 3], await t.GetDirtyLog(slot));
        });
        Assert.Equal(102UL, t.K.Mem[t.Mm.PeekPte(KvmKit.HvaOf(KvmKit.Gfn0 + 3)).Pfn].Contents);
    }

    [Fact]
    public void TraceEventsUseTheKernelFormats()
    {
        var t = new KvmKit("6.8");
        t.K.Trace.On = true;
        t.MustDo(async () =>
        {
            await t.GuestWrite(KvmKit.Gfn0, 1);
            await t.Mm.Notifiers.ClearFlushYoung(KvmKit.Hva, KvmKit.Hva + MmStruct.PageSize);
            await t.Mm.Notifiers.TestYoung(KvmKit.Hva);
            await t.Dontneed(KvmKit.Hva, MmStruct.PageSize);
        });
        var ev = t.K.Trace.Records.Where(r => r.Event.StartsWith("kvm_")).Select(r => $"{r.Event}: {r.Fields}").ToList();
        Assert.Contains("kvm_page_fault: vcpu 0 rip 0x0 address 0x0000000000100000 error_code 0x2", ev);
        Assert.Contains("kvm_age_hva: mmu notifier age hva: 0x00000000010000 -- 0x00000000011000", ev);
        Assert.Contains("kvm_test_age_hva: mmu notifier test age hva: 0x00000000010000", ev);
        Assert.Contains("kvm_unmap_hva_range: mmu notifier unmap range: 0x00000000010000 -- 0x00000000011000", ev);
    }

    [Fact]
    public void TraceEventsOldFormats()
    {
        var t = new KvmKit("4.10");
        t.K.Trace.On = true;
        t.MustDo(async () =>
        {
            await t.GuestRead(KvmKit.Gfn0);
            await Memory.UserAccess(t.Mm, KvmKit.Hva, write: true, value: 3); // COW: start/end + change_pte
        });
        var ev = t.K.Trace.Records.Where(r => r.Event.StartsWith("kvm_")).Select(r => $"{r.Event}: {r.Fields}").ToList();
        Assert.Contains("kvm_page_fault: address 100000 error_code 0", ev);
        Assert.Contains("kvm_set_spte_hva: mmu notifier set pte hva: 0x00000000010000", ev);
    }
}

/// <summary>§5(d7) part 1: try_to_unmap_one's young check and where it runs relative to its own start/end.</summary>
public class TtuYoungCheckTests
{
    /// <summary>Reclaim the cold page at Hva with the whole shrink_folio_list path (folio_referenced first).</summary>
    static (Violation? V, bool Reclaimed, long AgeCalls) ReclaimCold(string era)
    {
        var t = new KvmKit(era, pages: 2);
        bool reclaimed = false;
        long calls = 0;
        var v = t.Do(async () =>
        {
            await t.GuestWrite(KvmKit.Gfn0, 0x11);               // an anon page (a read would map the zero page)
            long pfn = t.Mm.Translate(KvmKit.Hva).Pfn;
            Assert.Equal(1, await Rmap.FolioReferenced(t.K, pfn)); // primary and SPTE young; both cleared now
            calls = t.Stat(MmuSim.Stat.KvmAgeCalls);
            reclaimed = await Vmscan.ShrinkFolio(t.K, pfn, checkReferences: true);
            calls = t.Stat(MmuSim.Stat.KvmAgeCalls) - calls;
        });
        return (v, reclaimed, calls);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("4.19")]
    [InlineData("5.5")]
    public void From413To510_TheYoungCheckAsksKvmInsideItsOwnStart(string era)
    {
        var (v, _, _) = ReclaimCold(era);
        Assert.NotNull(v);
        Assert.Equal(Invariants.Aging, v!.Invariant);
        Assert.Contains("inside this CPU's own invalidate_range_start", v.Message);
        Assert.Contains("sent to vm0", v.Message);
        Assert.Equal("mmu_notifier_clear_flush_young", v.Function);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13-rc1")]
    public void BeforeTheScope_KvmIsAskedWhileItsSpteStillExists(string era)
    {
        var (v, reclaimed, calls) = ReclaimCold(era);
        Assert.Null(v);
        Assert.True(reclaimed);
        Assert.Equal(2, calls); // folio_referenced's and try_to_unmap_one's
    }

    [Theory]
    [InlineData("5.13")]
    [InlineData("6.13")]
    public void From511_ReclaimNoLongerAsks(string era)
    {
        var (v, reclaimed, calls) = ReclaimCold(era);
        Assert.Null(v);
        Assert.True(reclaimed);
        Assert.Equal(1, calls); // folio_referenced's only
    }

    [Fact]
    public void AYoungMappingKeepsTheFolio_WhereTheCheckExists()
    {
        // 2.6.32: the check exists and runs under the PTL before the PTE is cleared (3.6-4.12 would stop on race 5(a)).
        var t = new KvmKit("2.6.32", pages: 2);
        bool reclaimed = true;
        Assert.Null(t.Do(async () =>
        {
            await t.GuestWrite(KvmKit.Gfn0, 0x11);
            long pfn = t.Mm.Translate(KvmKit.Hva).Pfn;
            await Rmap.FolioReferenced(t.K, pfn);
            await t.GuestRead(KvmKit.Gfn0);              // the guest uses it again after the LRU pass
            reclaimed = await Vmscan.ShrinkFolio(t.K, pfn, checkReferences: false);
        }));
        Assert.True(reclaimed); // default: the folio is already cold, access ignored

        var u = new KvmKit("2.6.32", pages: 2);
        Assert.Null(u.Do(async () =>
        {
            await u.GuestWrite(KvmKit.Gfn0, 0x11);
            long pfn = u.Mm.Translate(KvmKit.Hva).Pfn;
            reclaimed = await Vmscan.ShrinkFolio(u.K, pfn, checkReferences: true);
        }));
        Assert.False(reclaimed); // folio_referenced saw the SPTE's Accessed bit: kept
        Assert.True(u.Mm.Translate(KvmKit.Hva).Present);
    }

    /// <summary>
    /// EPT without A bits: clear_young zaps the SPTEs (no flush) and the vCPU's TLB keeps the translation. From 4.12 the
    /// kernel's SPTE stays shadow-present (access tracking), so the next unmap of the range flushes; before, kvm_age_hva
    /// unmapped without a flush and the unmap found nothing to flush: the stale translation outlives invalidate_range_start.
    /// </summary>
    [Theory]
    [InlineData("4.10", true)]
    [InlineData("4.13", false)]
    [InlineData("6.18", false)]
    public void NoAdAgingThenUnmap_FlushesFrom412(string era, bool stale)
    {
        var s = MmuSim.Scenarios.ScenarioLoader.Parse("""
            name: no-ad-aging-then-unmap
            processes:
              - name: vmm
                vmas:
                  - { start: 0x10000000, len: 16K, prot: rw, flags: nohugepage }
            setup:
              - vm.create: { process: vmm, name: vm0, arch: x86-tdp, no_accessed_bit: true }
              - memslot.add: { vm: vm0, slot: 1, gfn: 0x100, pages: 4, hva: 0x10000000 }
            threads:
              - name: main
                process: vmm
                ops:
                  - guest.write: { vm: vm0, vcpu: 0, gfn: 0x100, pages: 4, value: 1 }
                  - page-idle.mark: { addr: 0x10000000, len: 16K }
                  - madvise: { addr: 0x10000000, len: 16K, advice: dontneed }
            """, "t.yaml");
        var r = MmuSim.Scenarios.ScenarioRunner.Run(s, MmuSim.Eras.EraTable.Get(era), null);
        if (stale)
        {
            Assert.Equal(Invariants.StaleTranslation, r.Violation?.Invariant);
            Assert.Contains("vm0 still maps 0x10000000 -> pfn 0x1 (vm0 vcpu0 tlb)", r.Violation?.Message);
        }
        else
        {
            Assert.Null(r.Violation);
            Assert.True(r.Kernel.Stats[Stat.KvmRemoteTlbFlushes] >= 1); // the unmap's flush, though no SPTE was left
        }
    }
}
