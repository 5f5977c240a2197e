using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Mm;

/// <summary>
/// The multi-gen LRU (mm/vmscan.c): a new folio's generation, the aging's walk and inc_max_seq/inc_min_seq, the debugfs
/// command's checks, and where the secondaries are asked: the walk and lru_gen_look_around through clear_young from 6.12
/// (1d4832becdc2), the primary's Accessed bit only before; and access_tracking_perf_test's lru_gen ports.
/// </summary>
public class LruGenTests
{
    const ulong A = 0x10000000;

    static (Kernel K, MmStruct Mm, LruGen Lg) Faulted(string era, int pages, int features = 7)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, (ulong)pages * 0x1000);
        var lg = LruGen.Of(k);
        Assert.Equal(0, lg.Enable(features));
        Assert.Null(Run(k, async _ =>
        {
            for (int i = 0; i < pages; i++) await Memory.UserAccess(mm, A + (ulong)i * 0x1000, write: true, value: (ulong)i + 1);
        }));
        return (k, mm, lg);
    }

    static Dictionary<ulong, long> AnonPerGen(Kernel k, LruGen lg)
    {
        List<LruGen.GenStats> stats = [];
        Assert.Null(Run(k, async _ => stats = await lg.ReadStats()));
        Assert.All(stats, g => Assert.Equal(0, g.File));
        return stats.ToDictionary(g => g.Seq, g => g.Anon);
    }

    static void Age(Kernel k, LruGen lg, int expectRc = 0)
    {
        int rc = 1;
        Assert.Null(Run(k, async _ => rc = await lg.RunAging(0, lg.MaxSeq(), swappiness: 1, forceScan: true)));
        Assert.Equal(expectRc, rc);
    }

    [Fact]
    public void NewFolios_AreInTheSecondYoungestGeneration_AndTheAgingPromotesOnlyTheYoungOnes()
    {
        var (k, mm, lg) = Faulted("6.18", 3);
        Assert.Equal((3UL, 0UL), (lg.MaxSeq(), lg.MinSeq()));
        Assert.Equal(new Dictionary<ulong, long> { [0] = 0, [1] = 0, [2] = 3, [3] = 0 }, AnonPerGen(k, lg));

        Age(k, lg); // every PTE young from its fault: all three to generation 3; four generations in use, so min_seq moves first
        Assert.Equal((4UL, 1UL), (lg.MaxSeq(), lg.MinSeq()));
        Assert.Equal(new Dictionary<ulong, long> { [1] = 0, [2] = 0, [3] = 3, [4] = 0 }, AnonPerGen(k, lg));
        for (int i = 0; i < 3; i++) Assert.False(mm.PeekPte(A + (ulong)i * 0x1000).Accessed);

        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, A + 0x1000, write: false)));
        Assert.True(mm.PeekPte(A + 0x1000).Accessed);
        Age(k, lg);
        Assert.Equal((5UL, 2UL), (lg.MaxSeq(), lg.MinSeq()));
        Assert.Equal(new Dictionary<ulong, long> { [2] = 0, [3] = 2, [4] = 1, [5] = 0 }, AnonPerGen(k, lg));
        Assert.Null(lg.CheckInvariants());
    }

    [Fact]
    public void WithoutMmWalk_TheAgingOnlyMakesGenerations_AndIncMinSeqCarriesTheOldestFoliosForward()
    {
        var (k, _, lg) = Faulted("6.18", 2, features: LruGen.CoreBit);
        Age(k, lg); // min 1, max 4
        Age(k, lg); // min 2, max 5: the folios, in 2, are now the oldest
        Assert.Equal(new Dictionary<ulong, long> { [2] = 2, [3] = 0, [4] = 0, [5] = 0 }, AnonPerGen(k, lg));
        Age(k, lg); // inc_min_seq: generation 2's folios move to 3
        Assert.Equal((6UL, 3UL), (lg.MaxSeq(), lg.MinSeq()));
        Assert.Equal(new Dictionary<ulong, long> { [3] = 2, [4] = 0, [5] = 0, [6] = 0 }, AnonPerGen(k, lg));
    }

    [Fact]
    public void TheDebugfsCommand_ChecksItsSequence_AndTheSysfsFileItsEraAndBits()
    {
        var (k, _, lg) = Faulted("6.18", 1);
        int stale = 1, ahead = 1, full = 1;
        Assert.Null(Run(k, async _ =>
        {
            stale = await lg.RunAging(0, 2, 1, forceScan: true);  // older than max_seq: nothing to do
            ahead = await lg.RunAging(0, 4, 1, forceScan: true);  // newer than max_seq
            full = await lg.RunAging(0, 3, 1, forceScan: false); // four generations in use and no force_scan
        }));
        Assert.Equal((0, Errno.EINVAL, Errno.ERANGE), (stale, ahead, full));
        Assert.Equal(3UL, lg.MaxSeq());
        Assert.Equal(Errno.EINVAL, lg.Enable(8));
        Assert.Equal(Errno.ENOENT, LruGen.Of(Kernel("5.13")).Enable(7));
    }

    [Theory]
    [InlineData("6.10", false)]
    [InlineData("6.13", true)]
    public void TheWalk_AsksTheSecondaryAboutOldPtesFrom612_AndPromotesWhatItSaysIsYoung(string era, bool asks)
    {
        var (k, mm, lg) = Faulted(era, 4);
        Age(k, lg); // takes the primary's young bits: all in 3, every PTE old
        var rec = Recorder(k, mm);
        rec.Young = true; // the secondary saw accesses the primary did not
        Age(k, lg);
        var cy = rec.Calls.Where(c => c.Kind == CallbackKind.ClearYoung).Select(c => (c.Start, c.End)).ToList();
        if (asks)
        {
            Assert.Equal(Enumerable.Range(0, 4).Select(i => (A + (ulong)i * 0x1000, A + (ulong)(i + 1) * 0x1000)), cy);
            Assert.Equal(new Dictionary<ulong, long> { [2] = 0, [3] = 0, [4] = 4, [5] = 0 }, AnonPerGen(k, lg));
        }
        else
        {
            Assert.Empty(cy);
            Assert.Equal(new Dictionary<ulong, long> { [2] = 0, [3] = 4, [4] = 0, [5] = 0 }, AnonPerGen(k, lg));
        }
        Assert.DoesNotContain(rec.Calls, c => c.Kind == CallbackKind.ClearFlushYoung);
    }

    [Theory]
    [InlineData("6.10")]
    [InlineData("6.13")]
    public void FolioReferenced_LooksAroundTheYoungPte_AndFrom612AsksNoClearFlushYoung(string era)
    {
        var (k, mm, lg) = Faulted(era, 4);
        var rec = Recorder(k, mm);
        long pfn = mm.PeekPte(A).Pfn;
        bool reclaimed = true;
        Assert.Null(Run(k, async _ => reclaimed = await Vmscan.ShrinkFolio(k, pfn, checkReferences: true)));
        Assert.False(reclaimed); // referenced: kept
        // The look-around aged the three neighbours (their faults made them young) and promoted them to max_seq; the
        // folio under reclaim was isolated and keeps its generation.
        Assert.Equal(new Dictionary<ulong, long> { [0] = 0, [1] = 0, [2] = 1, [3] = 3 }, AnonPerGen(k, lg));
        for (int i = 0; i < 4; i++) Assert.False(mm.PeekPte(A + (ulong)i * 0x1000).Accessed);
        var calls = rec.Calls.Where(c => c.Kind is CallbackKind.ClearYoung or CallbackKind.ClearFlushYoung).Select(c => (c.Kind, c.Start)).ToList();
        if (era == "6.13")
            Assert.Equal(Enumerable.Range(0, 4).Select(i => (CallbackKind.ClearYoung, A + (ulong)i * 0x1000)), calls);
        else
            Assert.Equal([(CallbackKind.ClearFlushYoung, A)], calls); // the neighbours through the primary's bit alone
    }

    [Theory]
    [InlineData("6.10", false)]
    [InlineData("6.13", true)]
    public void AHugePmd_IsAgedWhole_ThroughPmdpClearYoungNotifyFrom612(string era, bool asks)
    {
        var k = Kernel(era);
        const ulong H = 0x200000;
        var mm = MmWithVma(k, H, H, VmFlags.HugePage);
        var lg = LruGen.Of(k);
        Assert.Equal(0, lg.Enable(7));
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, H, write: true, value: 1)));
        var pmd = mm.PeekPmd(H);
        Assert.True(pmd.Present && pmd.Huge && pmd.Accessed);
        Assert.Equal(512, AnonPerGen(k, lg)[2]);
        Age(k, lg); // walk_pmd_range_locked: the young PMD promotes all 512 pages
        Assert.Equal(512, AnonPerGen(k, lg)[3]);
        Assert.False(mm.PeekPmd(H).Accessed);
        var rec = Recorder(k, mm);
        rec.Young = true;
        Age(k, lg);
        var cy = rec.Calls.Where(c => c.Kind == CallbackKind.ClearYoung).Select(c => (c.Start, c.End)).ToList();
        if (asks) Assert.Equal([(H, H + H)], cy); // one pmdp_clear_young_notify over PMD_SIZE
        else Assert.Empty(cy);
        Assert.Equal(512, AnonPerGen(k, lg)[asks ? 4UL : 3UL]);
    }

    public static TheoryData<string> Ports() => new(ScenarioLoader.BuiltInNames.Where(n =>
        n.StartsWith("selftests/kvm/access_tracking_perf_test/lru-gen", StringComparison.Ordinal) && !n.EndsWith("-benchmark", StringComparison.Ordinal)));

    [Fact]
    public void BenchmarkPort_MeetsItsDeclaration_AndExploresClean()
    {
        const string name = "selftests/kvm/access_tracking_perf_test/lru-gen-benchmark";
        Assert.Equal(11, SelftestPorts.AssertMeetsDeclaration(name, check: r => Assert.Null(r.Violation)));
        var s = ScenarioLoader.LoadBuiltIn(name);
        foreach (var era in new[] { "6.10", "6.18" })
            Assert.Null(ScenarioRunner.Explore(s, EraTable.Get(era), seed => new MmuSim.Sched.RandomStrategy(seed), 30, 1).FirstViolation?.Violation);
    }

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MeetsItsDeclarationInEveryEra_AndEndsTwoGenerationsYounger(string name)
    {
        int run = SelftestPorts.AssertMeetsDeclaration(name, check: r =>
        {
            if (r.Violation != null) return; // 6.1..6.10, declared
            Assert.Equal(5UL, r.Observed["last_gen"]); // found in 3, then 4 and 5 after each mark_memory_idle
            Assert.True(r.Kernel.Stats[Stat.NotifierClearYoung] >= 3 * 128);
        });
        Assert.Equal(11, run);
    }

    [Fact]
    public void Port_BeforeTheFix_FailsAtTheFirstMarkIdle_AsUpstreamWouldReport()
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn("selftests/kvm/access_tracking_perf_test/lru-gen"), EraTable.Get("6.10"), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.Contains("lru-gen.yaml:37: Too many pages still idle (128 out of 128): generation 3, not newer than last_gen (3)", r.Violation?.Message);
        Assert.Equal(0, r.Kernel.Stats[Stat.NotifierClearYoung]);
    }

    [Fact]
    public void BadInput_ExitsTwo_WithTheFieldNamed()
    {
        var scen = Tests.Cli.CliRunner.MinimalScenario.Replace("      - read: { addr: 0x100000 }", "      - OP");
        Tests.Cli.CliRunner.AssertBadInput(scen.Replace("OP", "lru-gen.enable: { features: 0x9 }"), 10, "lru-gen.enable.features", "has bits other than 0x7");
        Tests.Cli.CliRunner.AssertBadInput(scen.Replace("OP", "lru-gen.find-generation: { as: g }"), 10, "lru-gen.find-generation.pages", "required field is missing");
        Tests.Cli.CliRunner.AssertBadInput(scen.Replace("OP", "lru-gen.age: { tracked_at_least: lots }"), 10, "lru-gen.age.tracked_at_least", "");
    }
}
