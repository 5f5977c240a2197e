using MmuSim.Kvm;
using MmuSim.Mm;

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
            Assert.Empty(await t.Vm.GetDirtyLog(slot));
            ulong[] written = [KvmKit.Gfn0 + 2, KvmKit.Gfn0 + 3, KvmKit.Gfn0 + 11];
            foreach (var g in written) await t.GuestWrite(g, 100);
            await t.GuestWrite(KvmKit.Gfn0 + 3, 101);
            await t.GuestRead(KvmKit.Gfn0 + 5);
            Assert.Equal(written, await t.Vm.GetDirtyLog(slot));
            Assert.Empty(await t.Vm.GetDirtyLog(slot));
            Assert.False(t.Vm.PeekSpte(KvmKit.Gfn0 + 3).Writable);
            await t.GuestWrite(KvmKit.Gfn0 + 3, 102);
            Assert.Equal([KvmKit.Gfn0 + 3], await t.Vm.GetDirtyLog(slot));
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
