using MmuSim.Checker;
using MmuSim.Eras;
using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Kvm;

/// <summary>gfn_to_pfn_cache (virt/kvm/pfncache.c) and race 5(d6): refresh/check/invalidate, both designs, the livelock.</summary>
public class PfnCacheTests
{
    const ulong Gpa = KvmKit.Gfn0 << MmStruct.PageShift;

    static GfnToPfnCache Activate(KvmKit kit, PfnCacheDesign design = PfnCacheDesign.StartHook)
    {
        kit.Vm.PfnCache = design;
        var gpc = kit.Vm.GpcInit("shinfo");
        kit.MustDo(async () => Assert.Equal(0, await gpc.Activate(Gpa)));
        return gpc;
    }

    [Fact]
    public void Activate_FaultsThePageInWritable_CachesItsPfn_AndKeepsNoReference()
    {
        var kit = new KvmKit("6.8");
        var gpc = Activate(kit);
        var (present, pfn, writable, _) = kit.Mm.Translate(KvmKit.Hva);
        Assert.True(present && writable);
        Assert.True(gpc.Active && gpc.Valid);
        Assert.Equal(KvmKit.Hva, gpc.Uhva);
        Assert.Equal(pfn, gpc.Pfn);
        Assert.Equal(0, gpc.Retries);
        // kvm_release_pfn_clean right after marking it valid: only the PTE's reference remains.
        Assert.Equal(1, kit.K.Mem[pfn].RefCount);
        Assert.Equal(1, kit.K.Mem.FolioMapCount(pfn));
    }

    [Fact]
    public void Check_FailsAfterAMemslotChange_AndRefreshRecomputesTheUhva()
    {
        var kit = new KvmKit("6.8");
        var gpc = Activate(kit);
        kit.MustDo(async () => Assert.Equal(0, await kit.Vm.SetMemoryRegion(1, 0x200, 1, KvmKit.Hva + 0x4000, MemslotFlags.None)));
        Assert.False(gpc.Check(Gpa)); // slots->generation moved
        kit.MustDo(async () => Assert.Equal(0, await gpc.Refresh(Gpa)));
        Assert.True(gpc.Check(Gpa));
        kit.MustDo(async () => Assert.Equal(GfnToPfnCache.EFAULT, await gpc.Refresh(0x300UL << MmStruct.PageShift)));
        Assert.False(gpc.Valid);
        Assert.Equal(GfnToPfnCache.ErrPfn, gpc.Pfn);
    }

    [Fact]
    public void StartHook_InvalidatesInInvalidateRangeStart_AndAReadRefreshesOntoTheNewPage()
    {
        var kit = new KvmKit("6.8");
        var gpc = Activate(kit);
        kit.MustDo(async () => await kit.Dontneed(KvmKit.Hva, MmStruct.PageSize)); // the checker would flag a cache still valid after start
        Assert.False(gpc.Valid);
        kit.MustDo(async () =>
        {
            var r = await gpc.Access(write: true, 0x42);
            Assert.True(r.Ok);
        });
        var (present, pfn, _, _) = kit.Mm.Translate(KvmKit.Hva);
        Assert.True(present);
        Assert.True(gpc.Valid);
        Assert.Equal(pfn, gpc.Pfn);
        Assert.Equal(0x42UL, kit.K.Mem[pfn].Contents);
    }

    [Fact]
    public void StartHook_WithoutTheInvalidation_TheCheckerSeesTheCacheInsideTheRange()
    {
        var kit = new KvmKit("6.8", options: new KernelOptions { Mutations = new HashSet<Mutation> { Mutation.KvmGpcNoInvalidate } });
        var gpc = Activate(kit);
        var v = kit.Do(async () => await kit.Dontneed(KvmKit.Hva, MmStruct.PageSize));
        Assert.NotNull(v);
        Assert.Equal(Invariants.StaleTranslation, v!.Invariant);
        Assert.Contains("gpc shinfo", v.Message);
    }

    [Fact]
    public void EndHook_InvalidatesOnlyInInvalidateRangeEnd_AndResetsTheRangeUnion()
    {
        // Checker off: the end-hook design keeps the cache valid between start and end, which invariant 1 forbids
        // (see EndHook_ValidCacheBetweenStartAndEnd_IsReported); here only the mechanics are under test.
        var kit = new KvmKit("6.8", options: new KernelOptions { CheckMode = CheckMode.Off });
        var gpc = Activate(kit, PfnCacheDesign.EndHook);
        Assert.True(gpc.Valid && gpc.NeedsInvalidation);
        var rec = Harness.Recorder(kit.K, kit.Mm);
        bool validAfterStart = false;
        kit.MustDo(async () =>
        {
            await kit.Mm.MmapLock.ReadLock();
            var range = new MmuSim.Notifier.MmuNotifierRange(kit.Mm, KvmKit.Hva, KvmKit.Hva + MmStruct.PageSize, MmuSim.Notifier.MmuNotifyEvent.Clear);
            await kit.Mm.Notifiers.InvalidateRangeStart(range);
            validAfterStart = gpc.Valid;
            Assert.Equal(KvmKit.Hva, kit.Vm.GpcRangeStart);
            Assert.Equal(KvmKit.Hva + MmStruct.PageSize, kit.Vm.GpcRangeEnd);
            await kit.Mm.Notifiers.InvalidateRangeEnd(range);
            await kit.Mm.MmapLock.ReadUnlock();
        });
        Assert.True(validAfterStart);
        Assert.False(gpc.Valid || gpc.NeedsInvalidation);
        Assert.Equal(0, kit.Vm.MnActiveInvalidateCount);
        Assert.Equal(GfnToPfnCache.BadHva, kit.Vm.GpcRangeStart);
        Assert.Equal(2, rec.Calls.Count);
    }

    [Fact]
    public void EndHook_ValidCacheBetweenStartAndEnd_IsReported()
    {
        var kit = new KvmKit("6.8");
        Activate(kit, PfnCacheDesign.EndHook);
        var v = kit.Do(async () => await kit.Dontneed(KvmKit.Hva, MmStruct.PageSize));
        Assert.NotNull(v);
        Assert.Equal(Invariants.StaleTranslation, v!.Invariant);
        Assert.Contains("after its invalidate_range_start returned", v.Message);
    }

    [Fact]
    public void PfnCachesAreRefusedBefore517()
    {
        var kit = new KvmKit("5.13");
        Assert.Throws<ModelException>(() => kit.Vm.GpcInit("shinfo"));
    }

    // ------------------------------------------------------------------ scenarios (race 5(d6))

    static ExploreResult Explore(Scenario s, string era, int iterations, params Mutation[] mutations) =>
        ScenarioRunner.Explore(s, EraTable.Get(era), seed => new RandomStrategy(seed), iterations, 3, mutations);

    static string BuiltInText(string name) => ScenarioLoader.BuiltInText(name) ?? throw new InvalidOperationException(name);

    [Theory]
    [InlineData("6.8")]
    [InlineData("6.1")]
    public void StartHook_UnrelatedInvalidationsLivelockTheRefresh(string era)
    {
        var r = Explore(ScenarioLoader.LoadBuiltIn("pfncache-livelock"), era, 200);
        Assert.NotNull(r.FirstViolation);
        var v = r.FirstViolation!.Violation!;
        Assert.Equal(Invariants.Liveness, v.Invariant);
        Assert.Contains($"retried {GfnToPfnCache.MaxRetries} times", v.Message);
        Assert.Contains("none of the", v.Message);
        Assert.True(r.FirstViolation.MatchesExpectation);
    }

    [Fact]
    public void EndHook_SameLoad_TheRefreshCompletes()
    {
        var r = Explore(ScenarioLoader.LoadBuiltIn("pfncache-end-hook"), "6.8", 150);
        Assert.Null(r.FirstViolation?.Violation);
        Assert.Equal(150, r.Iterations);
    }

    [Fact]
    public void VcpuFaultOnTheSamePageUnderTheSameLoad_MakesProgress()
    {
        var text = BuiltInText("pfncache-livelock")
            .Replace("name: pfncache-livelock", "name: vcpu-contrast")
            .Replace("catalog: d6\n", "")
            .Replace("      - gpc.activate: { vm: vm0, name: shinfo, gpa: 0x100000 }\n      - gpc.read: { gpc: shinfo, expect: 0x11 }\n",
                     "      - guest.read: { vm: vm0, gfn: 0x100, expect: 0x11 }\n")
            .Replace("  default: liveness", "  default: pass");
        Assert.Contains("guest.read", text);
        var s = ScenarioLoader.Parse(text, "vcpu-contrast.yaml");
        var r = Explore(s, "6.8", 150);
        Assert.Null(r.FirstViolation?.Violation);
        Assert.Equal(150, r.Iterations);
    }

    [Fact]
    public void CoveringInvalidations_StartHookIsClean_AndTheNoInvalidateMutantIsKilled()
    {
        var s = ScenarioLoader.LoadBuiltIn("pfncache-covered");
        var good = Explore(s, "6.8", 500);
        Assert.Null(good.FirstViolation?.Violation);
        var bad = Explore(s, "6.8", 2_000, Mutation.KvmGpcNoInvalidate);
        Assert.NotNull(bad.FirstViolation);
        Assert.Contains(bad.FirstViolation!.Violation!.Invariant, new[] { Invariants.StaleTranslation, Invariants.FreedPageReachable, Invariants.LostWrite });
    }

    [Fact]
    public void EndHookWindow_WithTheStrictCheckOff_AWriteLandsInTheZappedPage()
    {
        var text = BuiltInText("pfncache-end-hook-window")
            .Replace("era: 6.8\n", "era: 6.8\nchecks: [freed-page-reachable, lost-write, dirty-lost, writable-secondary]\n")
            .Replace("  default: stale-translation", "  default: lost-write");
        var r = Explore(ScenarioLoader.Parse(text, "window.yaml"), "6.8", 20_000);
        Assert.NotNull(r.FirstViolation);
        Assert.Equal(Invariants.LostWrite, r.FirstViolation!.Violation!.Invariant);
    }

    /// <summary>
    /// The end-hook patch tests <c>!is_error_noslot_pfn(gpc->pfn)</c> before clearing needs_invalidation; during a
    /// cache's first refresh gpc->pfn is still KVM_PFN_ERR_FAULT, so an invalidation that starts after the refresh's
    /// wait check and ends before it retakes gpc->lock is missed: the cache becomes valid on the zapped page, which is
    /// then freed. Mainline's start hook retries (seq moved) in the same schedules.
    /// </summary>
    [Fact]
    public void EndHook_FirstRefresh_MissesAnInvalidationAndMapsAFreedPage_StartHookDoesNot()
    {
        const string Text = """
            name: first-refresh
            era: 6.8
            checks: [freed-page-reachable]
            processes:
              - name: qemu
                vmas:
                  - { start: 0x100000, len: 64K, prot: rw, contents: { value: 0x11, pages: 1 } }
            setup:
              - vm.create: { process: qemu, name: vm0, pfncache: DESIGN }
              - memslot.add: { vm: vm0, slot: 0, gfn: 0x100, pages: 16, hva: 0x100000 }
            threads:
              - name: vcpu0
                ops:
                  - gpc.activate: { vm: vm0, name: shinfo, gpa: 0x100000 }
                  - gpc.write: { gpc: shinfo, value: 0x33 }
              - name: vmm
                process: qemu
                ops:
                  - madvise: { addr: 0x100000, len: 4K, advice: dontneed }
                  - write: { addr: 0x100000, value: 0x22 }
            """;
        var end = Explore(ScenarioLoader.Parse(Text.Replace("DESIGN", "end-hook"), "first.yaml"), "6.8", 20_000);
        Assert.NotNull(end.FirstViolation);
        Assert.Equal(Invariants.FreedPageReachable, end.FirstViolation!.Violation!.Invariant);
        var start = Explore(ScenarioLoader.Parse(Text.Replace("DESIGN", "start-hook"), "first.yaml"), "6.8", 1_000);
        Assert.Null(start.FirstViolation?.Violation);
    }

    [Fact]
    public void Loader_RejectsAnUnknownDesign_WithTheFieldAndLine()
    {
        const string Text = """
            name: bad
            processes:
              - name: q
                vmas:
                  - { start: 0x100000, len: 4K }
            setup:
              - vm.create: { process: q, name: vm0, pfncache: end-hoook }
            """;
        var e = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(Text, "bad.yaml"));
        Assert.Equal("bad.yaml:7: vm.create.pfncache: unknown pfn cache design 'end-hoook' (known: start-hook, end-hook)", e.Message);
    }
}
