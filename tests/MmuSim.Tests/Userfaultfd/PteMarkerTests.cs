using MmuSim.Devices;
using MmuSim.Hugetlb;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using MmuSim.Userfaultfd;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Userfaultfd;

/// <summary>
/// PTE markers (include/linux/swapops.h, 5.19+) as userfaultfd puts them on anonymous and hugetlb memory:
/// PTE_MARKER_POISONED from UFFDIO_POISON (6.6) and PTE_MARKER_UFFD_WP from UFFDIO_WRITEPROTECT of a none PTE with
/// UFFD_FEATURE_WP_UNPOPULATED (6.4). Neither holds a page, UFFDIO_POISON fires no notifier, and each path that meets
/// a marker (fault, zap, fork, mprotect, pagemap) treats it as the kernel does.
/// </summary>
public class PteMarkerTests
{
    const ulong A = 0x200000;
    const ulong H = MmStruct.PmdSize;
    const ulong P = MmStruct.PageSize;

    static UserfaultfdCtx Open(MmStruct mm, ulong features) => UserfaultfdCtx.Create(mm, "uffd", features)!;

    static VmFault Access(Kernel k, MmStruct mm, ulong addr, bool write)
    {
        var r = new AccessResult();
        Ok(k, async () => r = await Memory.UserAccessResult(mm, addr, write, value: 3));
        return r.Fault;
    }

    [Fact]
    public void Poison_PutsAPoisonedMarker_WithoutAnInvalidation_EveryAccessIsSigbus_ForkCopiesIt_DontneedDropsIt()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 4 * P, VmFlags.NoHugePage);
        var ctx = Open(mm, UserfaultfdCtx.FeaturePoison);
        Ok(k, async () =>
        {
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 4 * P, UffdMode.Wp)); // any mode; WP does not trap missing faults
            await Memory.UserAccess(mm, A + P, write: true, value: 5);
        });
        var rec = Recorder(k, mm);
        (long, int) first = default, again = default, present = default;
        Ok(k, async () =>
        {
            first = await Mfill.MfillAtomic(ctx, A, P, MfillMode.Poison, 0, false, false);
            again = await Mfill.MfillAtomic(ctx, A, P, MfillMode.Poison, 0, false, false);
            present = await Mfill.MfillAtomic(ctx, A + P, P, MfillMode.Poison, 0, false, false);
        });
        Assert.Equal((1L, 0), first);
        Assert.Equal((0L, Errno.EEXIST), again);   // "Refuse to overwrite any PTE, even a PTE marker"
        Assert.Equal((0L, Errno.EEXIST), present); // UFFDIO_POISON never unmaps a page
        var pte = mm.PeekPte(A);
        Assert.True(pte.IsMarker && pte.IsPoisonMarker && !pte.IsUffdWpMarker && !pte.Present && !pte.IsNone);
        Assert.Empty(rec.Calls); // "No need to invalidate - it was non-present before"
        Assert.Equal(0, k.Stats[Stat.UffdPagesPlaced]);
        ulong pm = TaskMmu.PagemapEntry(mm, A);
        Assert.Equal((1UL, 0UL, 0UL), (pm >> TaskMmu.PmSwap & 1, pm >> TaskMmu.PmPresent & 1, pm >> TaskMmu.PmUffdWp & 1));

        Assert.Equal(VmFault.SigBus, Access(k, mm, A, write: false));
        Assert.Equal(VmFault.SigBus, Access(k, mm, A, write: true));
        Assert.True(mm.PeekPte(A).IsPoisonMarker); // the fault changes nothing

        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "child"));
        Assert.True(child.PeekPte(A).IsPoisonMarker); // copy_pte_marker: poison is inherited
        Assert.Equal(VmFault.SigBus, Access(k, child, A, write: false));

        Ok(k, async () => await Madvise.MadviseDontneed(mm, A, P));
        Assert.True(mm.PeekPte(A).IsNone); // zap_pte_range: should_zap_cows with no details
        Assert.Equal(VmFault.Ok, Access(k, mm, A, write: false));
        Assert.True(child.PeekPte(A).IsPoisonMarker);
    }

    [Fact]
    public void Poison_IsA66Feature_InUffdioApi_TheIoctl_AndUffdioRegisterIoctls()
    {
        foreach (var (era, has) in new[] { ("6.1", false), ("6.6", true), ("6.18", true) })
        {
            var k = Kernel(era);
            var mm = MmWithVma(k, A, P, VmFlags.NoHugePage);
            Assert.Equal(has, UserfaultfdCtx.EraSupports(k, UserfaultfdCtx.FeaturePoison));
            var api = UserfaultfdCtx.CreateUninitialized(mm, "u")!;
            int apiErr = -1, poisonErr = -1;
            var plain = Open(mm, 0);
            Ok(k, async () =>
            {
                apiErr = await api.Api(UserfaultfdCtx.UffdApi, UserfaultfdCtx.FeaturePoison);
                Assert.Equal(0, await Mfill.UserfaultfdRegister(plain, A, P, UffdMode.Missing));
                poisonErr = (await Mfill.MfillAtomic(plain, A, P, MfillMode.Poison, 0, false, false)).Error;
            });
            Assert.Equal(has ? 0 : Errno.EINVAL, apiErr);
            Assert.Equal(has ? 0 : Errno.EINVAL, poisonErr);
            Assert.Equal(has, (Mfill.RangeIoctls(k, hugetlb: false, UffdMode.Missing) & Mfill.RangeIoctl.Poison) != 0);
            Assert.Equal(has, (Mfill.RangeIoctls(k, hugetlb: true, UffdMode.Missing) & Mfill.RangeIoctl.Poison) != 0);
        }
    }

    [Fact]
    public void Poison_OnHugetlb_MarksTheHugeEntry_LeavesThePool_AndFaultsAreSigbus()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 2 * H, VmFlags.Hugetlb);
        Assert.Equal(0, HugetlbPages.Of(k).SetNrHugepages(2));
        var ctx = Open(mm, UserfaultfdCtx.FeaturePoison);
        var rec = Recorder(k, mm);
        (long, int) unaligned = default, poison = default, again = default;
        Ok(k, async () =>
        {
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 2 * H, UffdMode.Missing));
            unaligned = await Mfill.MfillAtomic(ctx, A, P, MfillMode.Poison, 0, false, false);
            poison = await Mfill.MfillAtomic(ctx, A, H, MfillMode.Poison, 0, false, false);
            again = await Mfill.MfillAtomic(ctx, A, H, MfillMode.Poison, 0, false, false);
        });
        Assert.Equal((0L, Errno.EINVAL), unaligned);
        Assert.Equal((512L, 0), poison);
        Assert.Equal((0L, Errno.EEXIST), again);
        Assert.True(mm.PeekPmd(A).IsPoisonMarker);
        Assert.Equal(2, HugetlbPages.Of(k).FreeHugepages); // no huge page was taken
        Assert.Empty(rec.Calls);
        Assert.Equal(VmFault.SigBus, Access(k, mm, A + 7 * P, write: false)); // VM_FAULT_HWPOISON_LARGE
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "child"));
        Assert.True(child.PeekPmd(A).IsPoisonMarker);
        Ok(k, async () => await Mmap.Munmap(mm, A, 2 * H));
        Assert.True(mm.PeekPmd(A).IsNone); // __unmap_hugepage_range clears the non-present entry
    }

    [Fact]
    public void WpUnpopulated_MarksNonePtes_UnderOneProtectionVma_AndTheMarkerFaultsInWriteProtected()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 4 * P, VmFlags.NoHugePage);
        var ctx = Open(mm, UserfaultfdCtx.FeatureWpUnpopulated | UserfaultfdCtx.FeatureSigbus);
        Ok(k, async () => Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 4 * P, UffdMode.Wp)));
        Assert.Equal(0, mm.PteTable(A)); // nothing populated yet
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 3 * P, enableWp: true, dontWake: false)));
        for (ulong a = A; a < A + 3 * P; a += P) Assert.True(mm.PeekPte(a).IsUffdWpMarker, $"0x{a:x}: {mm.PeekPte(a)}");
        Assert.True(mm.PeekPte(A + 3 * P).IsNone); // outside the range
        var start = Assert.Single(rec.Calls, c => c.Kind == CallbackKind.InvalidateRangeStart);
        Assert.Equal((A, A + 3 * P, MmuNotifyEvent.ProtectionVma), (start.Start, start.End, start.Event));
        ulong pm = TaskMmu.PagemapEntry(mm, A);
        Assert.Equal((1UL, 1UL, 0UL), (pm >> TaskMmu.PmUffdWp & 1, pm >> TaskMmu.PmSwap & 1, pm >> TaskMmu.PmPresent & 1));

        // A read maps the zero page and keeps the bit; a write faults a page in write-protected, and its retry is the
        // uffd-wp fault (SIGBUS here: UFFD_FEATURE_SIGBUS).
        Assert.Equal(VmFault.Ok, Access(k, mm, A, write: false));
        var zero = mm.PeekPte(A);
        Assert.True(zero.Present && zero.Pfn == PhysMem.ZeroPfn && zero.UffdWp && !zero.Writable);
        Assert.Equal(VmFault.SigBus, Access(k, mm, A + P, write: true));
        var page = mm.PeekPte(A + P);
        Assert.True(page.Present && page.UffdWp && !page.Writable && page.Pfn != PhysMem.ZeroPfn);
        Assert.Equal(1, k.Mem[page.Pfn].MapCount);

        // fork without UFFD_FEATURE_EVENT_FORK: the child's VMA is not uffd-wp, so the marker is not copied.
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "child"));
        Assert.True(child.PeekPte(A + 2 * P).IsNone);

        // Unprotecting drops the marker and clears the bits; the write then goes through.
        Ok(k, async () => Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 3 * P, enableWp: false, dontWake: false)));
        Assert.True(mm.PeekPte(A + 2 * P).IsNone);
        Assert.False(mm.PeekPte(A + P).UffdWp);
        Assert.Equal(VmFault.Ok, Access(k, mm, A + P, write: true));
    }

    [Fact]
    public void WpUnpopulated_WithoutTheFeature_LeavesNonePtesNone_AndBefore64TheFeatureIsEinval()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 2 * P, VmFlags.NoHugePage);
        var ctx = Open(mm, 0);
        Ok(k, async () =>
        {
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 2 * P, UffdMode.Wp));
            Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 2 * P, enableWp: true, dontWake: false));
        });
        Assert.True(mm.PeekPte(A).IsNone && mm.PeekPte(A + P).IsNone);
        Assert.False(UserfaultfdCtx.EraSupports(Kernel("6.1"), UserfaultfdCtx.FeatureWpUnpopulated));
        Assert.True(UserfaultfdCtx.EraSupports(Kernel("6.6"), UserfaultfdCtx.FeatureWpUnpopulated));
    }

    [Fact]
    public void UffdWpMarker_LeftOnAVmaNoLongerUffdWp_IsClearedByTheFault_AndDontneedDropsOne()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 2 * P, VmFlags.NoHugePage);
        var ctx = Open(mm, UserfaultfdCtx.FeatureWpUnpopulated);
        Ok(k, async () =>
        {
            Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, 2 * P, UffdMode.Wp));
            Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 2 * P, enableWp: true, dontWake: false));
            await Madvise.MadviseDontneed(mm, A + P, P);
        });
        Assert.True(mm.PeekPte(A + P).IsNone); // an anonymous VMA never keeps a uffd-wp marker over a zap
        Assert.True(mm.PeekPte(A).IsUffdWpMarker);
        Ok(k, async () => Assert.Equal(0, await Mfill.UserfaultfdUnregister(ctx, A, 2 * P)));
        Assert.True(mm.PeekPte(A).IsUffdWpMarker); // unregistering leaves it (the model does not reset the bits)
        Assert.Equal(VmFault.Ok, Access(k, mm, A, write: true)); // pte_marker_clear, then an ordinary fault
        var pte = mm.PeekPte(A);
        Assert.True(pte.Present && pte.Writable && !pte.UffdWp);
    }
}

public class PteMarkerOpsBadInputTests
{
    static string Scen(string op) =>
        Tests.Cli.CliRunner.MinimalScenario.Replace("      - read: { addr: 0x100000 }", "      - uffd.open: {}\n      - " + op);

    [Fact]
    public void PoisonFeaturesAndResolutions_AreChecked_ExitTwoWithTheField()
    {
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.poison: { addr: 0x100001 }"), 11, "uffd.poison.addr", "");
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.poison: { addr: 0x100000, len: 5 }"), 11, "uffd.poison.len", "");
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.handle: { resolve: poison-odd }"), 11, "uffd.handle.resolve", "not a resolution");
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.api: { features: \"poison,wp_async\" }"), 11, "uffd.api.features", "'wp_async' is not a modelled UFFD_FEATURE");
    }

    [Fact]
    public void FeaturePoison_OnAKernelWithoutIt_IsUffdioApiEinval_AndTheScenarioCanSayIt()
    {
        string Yaml(string era, string expect) => $$"""
            name: t
            era: "{{era}}"
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 4K, prot: rw }
            threads:
              - name: main
                process: p
                ops:
                  - uffd.open: { features: "poison,wp_unpopulated"{{expect}} }
            """;
        Assert.Null(ScenarioRunner.Run(ScenarioLoader.Parse(Yaml("6.1", ", expect: einval"), "t.yaml"), MmuSim.Eras.EraTable.Get("6.1"), null).Violation);
        Assert.Null(ScenarioRunner.Run(ScenarioLoader.Parse(Yaml("6.6", ""), "t.yaml"), MmuSim.Eras.EraTable.Get("6.6"), null).Violation);
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(Yaml("6.1", ""), "t.yaml"), MmuSim.Eras.EraTable.Get("6.1"), null);
        Assert.Contains("UFFDIO_API", r.Violation?.Message);
    }
}


/// <summary>
/// uffd-wp on shmem (UFFD_FEATURE_WP_HUGETLBFS_SHMEM, 5.19): the page cache cannot hold the protection, so file PTE
/// markers keep it where the PTE is none (UFFDIO_WRITEPROTECT of a none PTE) or was zapped (MADV_DONTNEED), a fault on a
/// marker maps the page write-protected, and fork copies an armed child's page table (vma_needs_copy).
/// </summary>
public class ShmemUffdWpTests
{
    const ulong S = 0x300000;
    const ulong P = MmStruct.PageSize;

    static (Kernel K, MmStruct Mm, AddressSpace F, UserfaultfdCtx Ctx) Setup(string era, ulong features = 0, int expectRegister = 0)
    {
        var k = Kernel(era);
        var mm = k.CreateMm("task");
        var f = k.NewAddressSpace(FileKind.Memfd, "f", 4);
        f.Users++;
        var ctx = UserfaultfdCtx.Create(mm, "uffd", features)!;
        Ok(k, async () =>
        {
            await Mmap.DoMmap(mm, S, 4 * P, Prot.ReadWrite, VmFlags.Shared, file: f);
            Assert.Equal(expectRegister, await Mfill.UserfaultfdRegister(ctx, S, 4 * P, UffdMode.Wp));
        });
        return (k, mm, f, ctx);
    }

    [Fact]
    public void WpOnShmem_Is519()
    {
        Setup("5.13", expectRegister: Errno.EINVAL);
        Setup("6.1");
    }

    [Fact]
    public void Dontneed_LeavesAUffdWpMarker_MunmapAndTruncationDropIt()
    {
        var (k, mm, f, ctx) = Setup("6.13");
        Ok(k, async () =>
        {
            for (ulong a = S; a < S + 3 * P; a += P) await Memory.UserAccess(mm, a, write: true, value: 9);
            Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, S, 3 * P, enableWp: true, dontWake: false));
            await Madvise.MadviseDontneed(mm, S, 2 * P);
        });
        Assert.True(mm.PeekPte(S).IsUffdWpMarker && mm.PeekPte(S + P).IsUffdWpMarker); // zap_install_uffd_wp_if_needed
        Assert.True(f.Pages.ContainsKey(0)); // the page stays in the page cache
        Ok(k, async () => await Madvise.MadviseDontneed(mm, S, P));
        Assert.True(mm.PeekPte(S).IsUffdWpMarker); // a later zap keeps the marker too
        Ok(k, async () => await Truncate.PunchHole(k, f, 1, 1));
        Assert.True(mm.PeekPte(S + P).IsNone); // truncation drops it (unmap_mapping_folio: ZAP_FLAG_DROP_MARKER)
        Ok(k, async () => await Mmap.Munmap(mm, S + 2 * P, P));
        Ok(k, async () => await Mmap.DoMmap(mm, S + 2 * P, P, Prot.ReadWrite, VmFlags.Shared, file: f, pgoff: 2));
        Assert.True(mm.PeekPte(S + 2 * P).IsNone); // munmap dropped the uffd-wp PTE without a marker
    }

    [Fact]
    public void AFaultOnAMarker_MapsTheCachedPageWriteProtected_AndTheWriteIsAUffdWpFault()
    {
        var (k, mm, f, ctx) = Setup("6.13", UserfaultfdCtx.FeatureSigbus);
        Ok(k, async () =>
        {
            await Memory.UserAccess(mm, S, write: true, value: 4);
            await Madvise.MadviseDontneed(mm, S, P);
            Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, S, 2 * P, enableWp: true, dontWake: false)); // S+P: none -> marker
        });
        // userfaultfd_wp_use_markers: a file VMA always uses them, for the zapped page (still cached) and the unused one.
        Assert.True(mm.PeekPte(S).IsUffdWpMarker && mm.PeekPte(S + P).IsUffdWpMarker);
        var r = new AccessResult();
        Ok(k, async () => r = await Memory.UserAccessResult(mm, S + P, write: false));
        Assert.Equal((VmFault.Ok, 0UL), (r.Fault, r.Value));
        var pte = mm.PeekPte(S + P);
        Assert.True(pte.Present && pte.UffdWp && !pte.Writable);
        Ok(k, async () => r = await Memory.UserAccessResult(mm, S + P, write: true, value: 1));
        Assert.Equal(VmFault.SigBus, r.Fault); // the uffd-wp fault, SIGBUS with UFFD_FEATURE_SIGBUS
        Ok(k, async () => Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, S + P, P, enableWp: false, dontWake: false)));
        Ok(k, async () => r = await Memory.UserAccessResult(mm, S + P, write: true, value: 1));
        Assert.Equal(VmFault.Ok, r.Fault);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Fork_CopiesTheSharedVmasPageTable_OnlyWhenTheChildIsArmed(bool eventFork)
    {
        var (k, mm, f, ctx) = Setup("6.13", eventFork ? UserfaultfdCtx.FeatureEventFork : 0);
        Ok(k, async () =>
        {
            await Memory.UserAccess(mm, S, write: true, value: 4);
            Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, S, 2 * P, enableWp: true, dontWake: false));
        });
        MmStruct? child = null;
        k.S.Spawn("forker", async _ => child = await Fork.DupMmap(mm, "child"));
        if (eventFork) k.S.Spawn("consumer", async _ => Assert.Equal(UffdEvent.Fork, (await ctx.Read())!.Value.Event));
        Assert.Null(k.Run());
        if (eventFork)
        {
            var p = child!.PeekPte(S);
            Assert.True(p.Present && p.UffdWp && !p.Writable);
            Assert.True(child.PeekPte(S + P).IsUffdWpMarker);
            Assert.Equal(2, k.Mem[p.Pfn].MapCount);
        }
        else
        {
            Assert.True(child!.PeekPte(S).IsNone && child.PeekPte(S + P).IsNone); // refaults from the page cache
        }
    }
}

/// <summary>
/// uffd-wp on hugetlb (5.19): the uffd-wp bit of a huge entry, hugetlb_change_protection's markers for none entries,
/// hugetlb_fault's userfault-wp check before hugetlb_wp, and __unmap_hugepage_range's markers for zapped entries.
/// </summary>
public class HugetlbUffdWpTests
{
    const ulong A = 0x400000;
    const ulong H = MmStruct.PmdSize;

    static (Kernel K, MmStruct Mm, UserfaultfdCtx Ctx) Setup(string era, ulong features = 0, int expectRegister = 0, VmFlags extra = VmFlags.None)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 2 * H, VmFlags.Hugetlb | extra);
        Assert.Equal(0, HugetlbPages.Of(k).SetNrHugepages(4));
        var ctx = UserfaultfdCtx.Create(mm, "uffd", features)!;
        Ok(k, async () => Assert.Equal(expectRegister, await Mfill.UserfaultfdRegister(ctx, A, 2 * H, UffdMode.Wp)));
        return (k, mm, ctx);
    }

    [Fact]
    public void WpOnHugetlb_Is519() { Setup("5.13", expectRegister: Errno.EINVAL); Setup("6.1"); }

    [Fact]
    public void ProtectingNoneHugeEntries_InstallsMarkers_AFaultKeepsTheBit_AndTheWriteIsAUffdWpFault()
    {
        var (k, mm, ctx) = Setup("6.13", UserfaultfdCtx.FeatureSigbus);
        var rec = Recorder(k, mm);
        Ok(k, async () => Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 2 * H, enableWp: true, dontWake: false)));
        Assert.Equal(HugeMemory.HugetlbUffdWpMarker, mm.PeekPmd(A));
        Assert.Equal(HugeMemory.HugetlbUffdWpMarker, mm.PeekPmd(A + H));
        var start = Assert.Single(rec.Calls, c => c.Kind == CallbackKind.InvalidateRangeStart);
        Assert.Equal((A, A + 2 * H, MmuNotifyEvent.ProtectionVma), (start.Start, start.End, start.Event));
        ulong pm = TaskMmu.PagemapEntry(mm, A);
        Assert.Equal((1UL, 0UL, 0UL), (pm >> TaskMmu.PmUffdWp & 1, pm >> TaskMmu.PmSwap & 1, pm >> TaskMmu.PmPresent & 1));
        var r = new AccessResult();
        Ok(k, async () => r = await Memory.UserAccessResult(mm, A + 8, write: false));
        Assert.Equal(VmFault.Ok, r.Fault);
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.UffdWp && !pmd.Writable); // hugetlb_no_page kept the marker's bit
        Ok(k, async () => r = await Memory.UserAccessResult(mm, A + 8, write: true, value: 1));
        Assert.Equal(VmFault.SigBus, r.Fault); // "Handle userfault-wp first": SIGBUS with UFFD_FEATURE_SIGBUS
        Ok(k, async () => Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 2 * H, enableWp: false, dontWake: false)));
        Assert.True(mm.PeekPmd(A + H).IsNone); // the resolve drops the marker
        Ok(k, async () => r = await Memory.UserAccessResult(mm, A + 8, write: true, value: 1));
        Assert.Equal(VmFault.Ok, r.Fault);
    }

    [Fact]
    public void ZappingAUffdWpHugeEntry_LeavesAMarker_ButMunmapDropsIt()
    {
        var (k, mm, ctx) = Setup("6.13");
        Ok(k, async () =>
        {
            await Memory.UserAccess(mm, A, write: true, value: 3);
            await Memory.UserAccess(mm, A + H, write: true, value: 3);
            Assert.Equal(0, await Mfill.MwriteprotectRange(ctx, A, 2 * H, enableWp: true, dontWake: false));
            await Madvise.MadviseDontneed(mm, A, H);
        });
        Assert.Equal(HugeMemory.HugetlbUffdWpMarker, mm.PeekPmd(A));
        Assert.Equal(3, HugetlbPages.Of(k).FreeHugepages); // of 4: one still mapped, the zapped one went back
        Ok(k, async () => await Mmap.Munmap(mm, A, 2 * H));
        Assert.True(mm.PeekPmd(A).IsNone && mm.PeekPmd(A + H).IsNone);
    }
}

/// <summary>mremap (5.16, move_hugetlb_page_tables) and MADV_REMOVE (hugetlbfs_punch_hole) of hugetlb memory.</summary>
public class HugetlbMremapRemoveTests
{
    const ulong A = 0x400000, B = 0x1000000;
    const ulong H = MmStruct.PmdSize;

    [Fact]
    public void Mremap_MovesTheHugeEntries_UnderOneClearOfTheOldRange()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 2 * H, VmFlags.Hugetlb);
        Assert.Equal(0, HugetlbPages.Of(k).SetNrHugepages(2));
        Ok(k, async () => await Memory.UserAccess(mm, A + H, write: true, value: 9));
        long head = mm.PeekPmd(A + H).Pfn;
        var rec = Recorder(k, mm);
        Ok(k, async () => await Mremap.DoMremap(mm, A, 2 * H, B));
        Assert.True(mm.PeekPmd(A + H).IsNone);
        Assert.Equal(head, mm.PeekPmd(B + H).Pfn);
        var start = rec.Calls.First(c => c.Kind == CallbackKind.InvalidateRangeStart);
        Assert.Equal((A, A + 2 * H, MmuNotifyEvent.Clear), (start.Start, start.End, start.Event));
        ulong v = 0;
        Ok(k, async () => v = (await Memory.UserAccess(mm, B + H + 0x10, write: false))!.Value);
        Assert.Equal(9UL, v);
    }

    [Fact]
    public void MremapOfHugetlb_Before516_IsEinval_AndRemovePunchesWholeHugePages()
    {
        string Yaml(string era) => $$"""
            name: t
            era: "{{era}}"
            processes:
              - name: p
                vmas: []
            threads:
              - name: main
                process: p
                ops:
                  - hugetlb.set: { knob: nr_hugepages, value: 2 }
                  - file.create: { as: f, kind: memfd-hugetlb, size: 4M }
                  - mmap: { addr: 0x400000, len: 4M, prot: rw, file: f, flags: shared }
                  - write: { addr: 0x400000, value: 5 }
                  - write: { addr: 0x600000, value: 6 }
                  - madvise: { addr: 0x400000, len: 2M, advice: remove }
                  - expect-value: { addr: 0x400000, value: 0 }
                  - expect-value: { addr: 0x600000, value: 6 }
                  - mremap: { addr: 0x400000, len: 4M, new_addr: 0x1000000 }
                  - expect-value: { addr: 0x1200000, value: 6 }
            """;
        Assert.Null(ScenarioRunner.Run(ScenarioLoader.Parse(Yaml("6.1"), "t.yaml"), MmuSim.Eras.EraTable.Get("6.1"), null).Violation);
        var old = ScenarioRunner.Run(ScenarioLoader.Parse(Yaml("5.13"), "t.yaml"), MmuSim.Eras.EraTable.Get("5.13"), null);
        Assert.Contains("mremap of hugetlb memory", old.Violation?.Message);
    }
}
