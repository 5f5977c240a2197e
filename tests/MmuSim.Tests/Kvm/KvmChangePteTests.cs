using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Notifier;

namespace MmuSim.Tests.Kvm;

public class KvmChangePteTests
{
    const ulong G = KvmKit.Gfn0 + 1;
    static readonly ulong H = KvmKit.HvaOf(G);

    /// <summary>
    /// KSM's write_protect_page as each era does it: (3.7+) start/end CLEAR around it; under the PTL ptep_clear_flush,
    /// then set_pte_at_notify with the PTE write-protected and clean (2.6.32: set, then change_pte).
    /// </summary>
    static async ValueTask WriteProtectPage(MmStruct mm, ulong addr)
    {
        var k = mm.Kernel;
        var range = new MmuNotifierRange(mm, addr, addr + MmStruct.PageSize, MmuNotifyEvent.Clear);
        bool bracket = k.Era.Has(Feature.SetPteAtNotifyBracketed);
        if (bracket) await mm.Notifiers.InvalidateRangeStart(range);
        int t = mm.PteTable(addr);
        await mm.LockPtl(t);
        var old = await Tlb.PtepClearFlush(mm, t, addr);
        if (old.Dirty) Folio.MarkDirty(k, old.Pfn);
        await Tlb.SetPteAtNotify(mm, t, addr, old.Wrprotect().Mkclean());
        await mm.UnlockPtl(t);
        if (bracket) await mm.Notifiers.InvalidateRangeEnd(range);
    }

    static RecordingSecondary Recorder(KvmKit t)
    {
        var rec = new RecordingSecondary(t.K);
        t.MustDo(async () => await t.Mm.Notifiers.Register(rec));
        return rec;
    }

    /// <summary>change_pte arrived, and only between an invalidate_range_start and its end.</summary>
    static void AssertChangePteOnlyInsideStartEnd(RecordingSecondary rec)
    {
        int depth = 0, seen = 0;
        foreach (var c in rec.Calls)
        {
            if (c.Kind == CallbackKind.InvalidateRangeStart) depth++;
            else if (c.Kind == CallbackKind.InvalidateRangeEnd) depth--;
            else if (c.Kind == CallbackKind.ChangePte)
            {
                seen++;
                Assert.True(depth > 0, "change_pte outside start/end:\n" + rec.Log);
            }
        }
        Assert.True(seen > 0, "no change_pte:\n" + rec.Log);
    }

    [Theory]
    [InlineData("3.7", KvmArch.X86Tdp)]
    [InlineData("4.10", KvmArch.X86Shadow)]
    [InlineData("4.19", KvmArch.X86Tdp)]
    [InlineData("5.13", KvmArch.X86Tdp)]
    [InlineData("6.8", KvmArch.X86Tdp)]
    [InlineData("6.8", KvmArch.X86Shadow)]
    public void X86_3_7To6_9_ChangePteOnlyInsideStartEnd_NeverFindsAPresentSpte(string era, KvmArch arch)
    {
        var t = new KvmKit(era, arch: arch);
        var rec = Recorder(t);
        // KSM-style write protection of a page the guest mapped writable.
        t.MustDo(async () => await t.GuestWrite(G, 5));
        t.MustDo(async () => await WriteProtectPage(t.Mm, H));
        // COW from the zero page the guest mapped read-only.
        t.MustDo(async () => Assert.Equal(0UL, await t.GuestRead(G + 1)));
        t.MustDo(async () => await Memory.UserAccess(t.Mm, H + MmStruct.PageSize, write: true, value: 6));
        AssertChangePteOnlyInsideStartEnd(rec);
        Assert.Equal(2, t.Stat(Stat.KvmChangePteCalls));
        Assert.Equal(0, t.Stat(Stat.KvmChangePteFoundPresent));
        t.AssertUnmapped(G);
        t.AssertUnmapped(G + 1);
        long exits = t.Stat(Stat.VmExits);
        t.MustDo(async () =>
        {
            Assert.Equal(5UL, await t.GuestRead(G));
            Assert.Equal(6UL, await t.GuestRead(G + 1));
        });
        Assert.Equal(exits + 2, t.Stat(Stat.VmExits)); // the "direct map" optimisation never happens
        Assert.False(t.Vm.PeekSpte(G).Writable);
    }

    [Theory]
    [InlineData(KvmArch.X86Tdp)]
    [InlineData(KvmArch.X86Shadow)]
    public void X86_2_6_32_ChangePteRewritesThePresentSpteReadOnly_AndTheNextReadTakesNoExit(KvmArch arch)
    {
        var t = new KvmKit("2.6.32", arch: arch);
        var rec = Recorder(t);
        t.MustDo(async () => await t.GuestWrite(G, 5));
        long pfn = t.Vm.PeekSpte(G).Pfn;
        t.MustDo(async () => await WriteProtectPage(t.Mm, H));
        var c = Assert.Single(rec.Calls);
        Assert.Equal(CallbackKind.ChangePte, c.Kind); // no start/end in 2.6.32
        Assert.Equal(1, t.Stat(Stat.KvmChangePteFoundPresent));
        var s = t.Vm.PeekSpte(G);
        Assert.True(s.Present);
        Assert.False(s.Writable);
        Assert.Equal(pfn, s.Pfn);
        long exits = t.Stat(Stat.VmExits);
        t.MustDo(async () => Assert.Equal(5UL, await t.GuestRead(G)));
        Assert.Equal(exits, t.Stat(Stat.VmExits));
        // A write exits once (write-protect); the page is exclusive, so the primary reuses it in place (no notifier).
        t.MustDo(async () => await t.GuestWrite(G, 6));
        Assert.Equal(exits + 1, t.Stat(Stat.VmExits));
        Assert.Equal(pfn, t.Vm.PeekSpte(G).Pfn);
        Assert.Equal(6UL, t.K.Mem[t.Mm.PeekPte(H).Pfn].Contents);
    }

    [Fact]
    public void X86_2_6_32_CowDropsTheSpteBecauseTheNewPteIsWritable()
    {
        var t = new KvmKit("2.6.32");
        t.MustDo(async () => Assert.Equal(0UL, await t.GuestRead(G)));
        t.MustDo(async () => await Memory.UserAccess(t.Mm, H, write: true, value: 6));
        Assert.Equal(1, t.Stat(Stat.KvmChangePteFoundPresent));
        t.AssertUnmapped(G);
        t.MustDo(async () => Assert.Equal(6UL, await t.GuestRead(G)));
    }

    // ------------------------------------------------------------------ per-arch kvm_set_spte_gfn (5.13-6.9 semantics)

    /// <summary>
    /// change_pte delivered directly inside a start/end of another page's range (so in_progress != 0 and the 5.13+
    /// early return does not hide it), to a gfn whose SPTE is absent but whose table may exist.
    /// </summary>
    static (KvmKit T, Spte After) ChangePteOnAbsentSpte(KvmArch arch, bool zapNeighbourFirst)
    {
        var t = new KvmKit("6.8", arch: arch);
        // An install from change_pte inside start/end is exactly what invariant 1 forbids (the checker flags it even
        // when no other invalidation overlaps, §5(c)); here we look at what each arch does, so that check is off.
        t.K.Checker.Disable(MmuSim.Sched.Invariants.StaleTranslation);
        // Two pages of the same 2 MiB block mapped: the table exists. Zap G only (MADV_DONTNEED): arm64 keeps the table
        // while G+1 is mapped; zapping G+1 too frees it (empty).
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 5);
            await t.GuestWrite(G + 1, 6);
            await t.Dontneed(H, MmStruct.PageSize);
            if (zapNeighbourFirst) await t.Dontneed(H + MmStruct.PageSize, MmStruct.PageSize);
        });
        t.AssertUnmapped(G);
        t.MustDo(async () =>
        {
            await Memory.UserAccess(t.Mm, H, write: true, value: 7); // the primary maps a new page at H
            var r = new MmuNotifierRange(t.Mm, H, H + MmStruct.PageSize, MmuNotifyEvent.Clear);
            await t.Mm.Notifiers.InvalidateRangeStart(r);
            int tbl = t.Mm.PteTable(H);
            await t.Mm.LockPtl(tbl);
            await t.Vm.ChangePte(t.Mm, H, t.Mm.PeekPte(H).Wrprotect());
            await t.Mm.UnlockPtl(tbl);
            await t.Mm.Notifiers.InvalidateRangeEnd(r);
        });
        return (t, t.Vm.PeekSpte(G));
    }

    [Theory]
    [InlineData(KvmArch.X86Tdp, false, false)]
    [InlineData(KvmArch.X86Shadow, false, false)]
    [InlineData(KvmArch.Arm64, false, true)]   // last-level table survived: read-only leaf installed
    [InlineData(KvmArch.Arm64, true, false)]   // table freed when it became empty: -ENOMEM, nothing
    [InlineData(KvmArch.RiscV, true, true)]    // G-stage unmap clears leaves only: the table is still there
    [InlineData(KvmArch.Mips, true, true)]     // a 4K flush does not cover the whole table: kept, PTE written
    [InlineData(KvmArch.PpcBook3s, false, false)]
    [InlineData(KvmArch.PpcE500, false, false)]
    [InlineData(KvmArch.LoongArch, false, false)] // old PTE absent: cleared, nothing installed
    public void PerArchChangePteOnAnAbsentSpte(KvmArch arch, bool zapNeighbour, bool installs)
    {
        var (t, s) = ChangePteOnAbsentSpte(arch, zapNeighbour);
        Assert.Equal(installs, s.Present);
        if (installs)
        {
            Assert.False(s.Writable);
            Assert.Equal(t.Mm.PeekPte(H).Pfn, s.Pfn);
        }
        Assert.Equal(0, t.Stat(Stat.KvmChangePteFoundPresent));
    }

    [Theory]
    [InlineData(KvmArch.Mips, true)]
    [InlineData(KvmArch.Arm64, true)]
    [InlineData(KvmArch.X86Tdp, false)]
    public void SpteTablesAfterAFourKZap(KvmArch arch, bool tableSurvivesWhileNeighbourMapped)
    {
        var t = new KvmKit("6.8", arch: arch);
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 5);
            await t.GuestWrite(G + 1, 5);
            await t.Dontneed(H, MmStruct.PageSize);
        });
        Assert.Equal(SpteTable.Table, t.Slot.Tables[t.Slot.Block(G)]);
        _ = tableSurvivesWhileNeighbourMapped;
        t.MustDo(async () => await t.Dontneed(H + MmStruct.PageSize, MmStruct.PageSize));
        var expect = KvmArchInfo.TableFreeingOf(arch) == TableFreeing.WhenEmpty ? SpteTable.None : SpteTable.Table;
        Assert.Equal(expect, t.Slot.Tables[t.Slot.Block(G)]);
    }
}

/// <summary>change_pte on the real KSM paths (write_protect_page, replace_page), per era.</summary>
public class KvmKsmChangePteTests
{
    /// <summary>Two identical pages the guest mapped writable, merged by two full ksmd scans; then two guest reads.</summary>
    static (KvmKit T, long ExitsAfterMerge, long ExitsAfterReads) MergeAndRead(string era)
    {
        var t = new KvmKit(era, pages: 4);
        t.MustDo(async () =>
        {
            await t.GuestWrite(KvmKit.Gfn0, 0xAB);
            await t.GuestWrite(KvmKit.Gfn0 + 1, 0xAB);
            Assert.Equal(0, await MmuSim.Ksm.Ksmd.Of(t.K).KsmMadvise(t.Mm, KvmKit.Hva, 2 * MmStruct.PageSize, mergeable: true));
            await MmuSim.Ksm.Ksmd.Of(t.K).ScanFull(2);
        });
        Assert.True(t.K.Mem[t.Mm.PeekPte(KvmKit.Hva).Pfn].Has(PageFlags.Ksm), "not merged");
        Assert.Equal(t.Mm.PeekPte(KvmKit.Hva).Pfn, t.Mm.PeekPte(KvmKit.Hva + MmStruct.PageSize).Pfn);
        long after = t.Stat(Stat.VmExits);
        t.MustDo(async () =>
        {
            Assert.Equal(0xABUL, await t.GuestRead(KvmKit.Gfn0));
            Assert.Equal(0xABUL, await t.GuestRead(KvmKit.Gfn0 + 1));
        });
        return (t, after, t.Stat(Stat.VmExits));
    }

    [Theory]
    [InlineData("3.7")]
    [InlineData("4.10")]
    [InlineData("4.19")]
    [InlineData("5.13")]
    [InlineData("6.8")]
    public void X86_3_7To6_9_KsmChangePteFindsNoSpte_TheGuestRefaults(string era)
    {
        var (t, before, after) = MergeAndRead(era);
        Assert.True(t.Stat(Stat.KvmChangePteCalls) > 0);
        Assert.Equal(0, t.Stat(Stat.KvmChangePteFoundPresent));
        Assert.Equal(before + 2, after);
        var ksm = t.Mm.PeekPte(KvmKit.Hva).Pfn;
        Assert.Equal(ksm, t.Vm.PeekSpte(KvmKit.Gfn0).Pfn);
        Assert.False(t.Vm.PeekSpte(KvmKit.Gfn0).Writable);
    }

    [Fact]
    public void X86_2_6_32_KsmChangePteRewritesTheSptesToTheKsmPage_AndTheGuestReadsWithoutAnExit()
    {
        var (t, before, after) = MergeAndRead("2.6.32");
        Assert.True(t.Stat(Stat.KvmChangePteFoundPresent) >= 2);
        Assert.Equal(before, after);
        var ksm = t.Mm.PeekPte(KvmKit.Hva).Pfn;
        Assert.Equal(ksm, t.Vm.PeekSpte(KvmKit.Gfn0).Pfn);
        Assert.Equal(ksm, t.Vm.PeekSpte(KvmKit.Gfn0 + 1).Pfn);
        Assert.False(t.Vm.PeekSpte(KvmKit.Gfn0).Writable);
    }

    [Theory]
    [InlineData("2.6.32", false)]
    [InlineData("6.8", true)]
    public void HoldingPageRefsDefeatsKsmWhenWriteProtectPageHasNoStartEnd(string era, bool mergesAnyway)
    {
        var t = new KvmKit(era, pages: 4, options: new KernelOptions { Mutations = new HashSet<Mutation> { Mutation.KvmHoldPageRefs } });
        t.MustDo(async () =>
        {
            await t.GuestWrite(KvmKit.Gfn0, 0xAB);
            await t.GuestWrite(KvmKit.Gfn0 + 1, 0xAB);
            await MmuSim.Ksm.Ksmd.Of(t.K).KsmMadvise(t.Mm, KvmKit.Hva, 2 * MmStruct.PageSize, mergeable: true);
            await MmuSim.Ksm.Ksmd.Of(t.K).ScanFull(2);
        });
        // 3.7+: write_protect_page's start zaps the SPTE, which drops the held reference before the refcount check.
        Assert.Equal(mergesAnyway, t.K.Mem[t.Mm.PeekPte(KvmKit.Hva).Pfn].Has(PageFlags.Ksm));
    }
}

public class KvmChangePteWarnTests
{
    /// <summary>
    /// From 5.13 KVM WARNs when change_pte arrives with no invalidation in flight (c13fda237f08): a KSM that calls
    /// set_pte_at_notify without start/end (the ksm-no-notifier-bracket mutation) trips it. Before 5.13 it is silent.
    /// </summary>
    [Theory]
    [InlineData("6.8", true)]
    [InlineData("5.13", true)]
    [InlineData("4.19", false)]
    public void ChangePteOutsideStartEndTripsTheWarnFrom5_13(string era, bool warns)
    {
        var t = new KvmKit(era, pages: 4, options: new KernelOptions { Mutations = new HashSet<Mutation> { Mutation.KsmNoNotifierBracket } });
        var v = t.Do(async () =>
        {
            await t.GuestWrite(KvmKit.Gfn0, 0xAB);
            await t.GuestWrite(KvmKit.Gfn0 + 1, 0xAB);
            await MmuSim.Ksm.Ksmd.Of(t.K).KsmMadvise(t.Mm, KvmKit.Hva, 2 * MmStruct.PageSize, mergeable: true);
            await MmuSim.Ksm.Ksmd.Of(t.K).ScanFull(2);
        });
        if (warns)
        {
            Assert.NotNull(v);
            Assert.Equal(MmuSim.Sched.Invariants.Pairing, v!.Invariant);
            Assert.Equal("kvm_mmu_notifier_change_pte", v.Function);
        }
        else Assert.True(v == null || v.Function != "kvm_mmu_notifier_change_pte", v?.ToString());
    }
}
