using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.History;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.History;

/// <summary>
/// The historical catalog (kernel-facts §5) and <c>mmusim history</c>: every catalog scenario meets its declared
/// expectation in a buggy and a fixed era, counterexamples replay exactly from trace files, DFS completes race (a)'s
/// fixed era and finds its buggy one.
/// </summary>
public class CatalogTests
{
    static readonly HistoryOptions Bounded = new() { SchedulesPerCell = 400, StatRuns = 4 };

    static HistoryCell Cell(string scenario, string era) =>
        HistoryRunner.RunCell(ScenarioLoader.LoadBuiltIn(scenario), EraTable.Get(era), Bounded, TimeSpan.FromMinutes(5));

    [Theory]
    [InlineData("invalidate-page-after-ptl", "4.10", "lost-write")]
    [InlineData("invalidate-page-after-ptl", "3.6", "lost-write")]
    [InlineData("invalidate-page-after-ptl", "2.6.32", null)]
    [InlineData("invalidate-page-after-ptl", "4.13", null)]
    [InlineData("invalidate-page-sleeping-secondary", "4.13-rc1", "sleep-in-atomic")]
    [InlineData("invalidate-page-sleeping-secondary", "2.6.32", "sleep-in-atomic")]
    [InlineData("invalidate-page-sleeping-secondary", "4.12", null)]
    [InlineData("thp-invalidate-page", "4.12", "dirty-lost")]
    [InlineData("thp-invalidate-page", "4.13", null)]
    [InlineData("change-pte-dead", "2.6.32", null)]
    [InlineData("change-pte-dead", "4.19", null)]
    [InlineData("kvm-retry-barriers", "2.6.32", "stale-translation")]
    [InlineData("kvm-retry-barriers", "3.6", null)]
    [InlineData("e500-no-retry", "3.10", "stale-translation")]
    [InlineData("e500-no-retry", "3.19", null)]
    [InlineData("aging-pmd-vs-4k-spte", "3.19", "unexpected-value")]
    [InlineData("aging-pmd-vs-4k-spte", "4.10", null)]
    [InlineData("aging-in-invalidate-scope", "4.19", "aging")]
    [InlineData("aging-in-invalidate-scope", "5.5", "aging")]
    [InlineData("aging-in-invalidate-scope", "4.13-rc1", null)]
    [InlineData("aging-in-invalidate-scope", "2.6.32", null)]
    [InlineData("aging-in-invalidate-scope", "5.13", null)]
    [InlineData("oom-reaper-no-notifier", "4.10", "stale-translation")]
    [InlineData("oom-reaper-no-notifier", "4.19", null)]
    [InlineData("shared-pt-tlb-order", "3.7", "stale-translation")]
    [InlineData("shared-pt-tlb-order", "3.19", null)]
    [InlineData("shared-pt-tlb-order", "6.13", null)]
    [InlineData("shared-pt-tlb-write-order", "3.6", "write-order")]
    [InlineData("shared-pt-tlb-write-order", "2.6.32", "write-order")]
    [InlineData("shared-pt-tlb-write-order", "2.6.27", null)]
    [InlineData("shared-pt-tlb-write-order", "3.19", null)]
    [InlineData("memslot-between-start-end", "6.8", "counter-balance")]
    [InlineData("kvm-memslot-vs-invalidate", "6.8", null)]
    public void CatalogCellMeetsItsDeclaredExpectation(string scenario, string era, string? invariant)
    {
        var c = Cell(scenario, era);
        Assert.False(c.Contradicts, $"{scenario}@{era}: expected {c.Expected}, got {c.Text}: {c.Message}");
        if (invariant == null)
        {
            Assert.Equal(CellStatus.Clean, c.Status);
            Assert.Equal(400, c.Schedules);
        }
        else
        {
            Assert.Equal(CellStatus.Violation, c.Status);
            Assert.Equal(invariant, c.Invariant);
            Assert.NotNull(c.Counterexample);
        }
    }

    /// <summary>The start/end-only window of (d4-order) needs three ordering constraints: more than 400 schedules.</summary>
    [Fact]
    public void WriteOrderIsFoundInTheStartEndOnlyEra()
    {
        var c = HistoryRunner.RunCell(ScenarioLoader.LoadBuiltIn("shared-pt-tlb-write-order"), EraTable.Get("3.10"),
            Bounded with { SchedulesPerCell = 20000 }, TimeSpan.FromMinutes(5));
        Assert.Equal(CellStatus.Violation, c.Status);
        Assert.Equal("write-order", c.Invariant);
        Assert.Contains("sees the CPU's writes out of order", c.Message);
    }

    [Theory]
    [InlineData("thp-invalidate-page", "2.6.32")]
    [InlineData("invalidate-page-sleeping-secondary", "4.19")]
    [InlineData("oom-reaper-no-notifier", "3.19")]
    [InlineData("memslot-between-start-end", "5.5")]
    public void MechanismAbsent_IsNotApplicableAndNotRun(string scenario, string era)
    {
        var c = Cell(scenario, era);
        Assert.Equal(CellStatus.NotApplicable, c.Status);
        Assert.Equal(0, c.Schedules);
        Assert.False(c.Contradicts);
    }

    [Fact]
    public void ChangePte_FindsAPresentSpteIn2632_AndNeverFrom37()
    {
        var live = Cell("change-pte-dead", "2.6.32");
        var dead = Cell("change-pte-dead", "4.19");
        var gone = Cell("change-pte-dead", "6.13");
        var (name, runs, total) = Assert.Single(live.Stats);
        Assert.Equal("kvm_change_pte_found_present", name);
        Assert.Equal(live.StatRuns, runs);
        Assert.True(total >= live.StatRuns);
        Assert.Equal(0, dead.Stats[0].Runs);
        Assert.Equal(CellStatus.NotApplicable, gone.Status); // removed in 6.10: nothing to count
        Assert.Contains("change_pte_found_present 4/4", live.Text);
    }

    [Fact]
    public void EveryCatalogScenarioDeclaresABuggyOrCountedEraAndAFixedOne()
    {
        var all = HistoryRunner.CatalogScenarios();
        Assert.Contains(all, s => s.Catalog == "a" && s.Name == "invalidate-page-after-ptl");
        Assert.Contains(all, s => s.Catalog == "b");
        Assert.Contains(all, s => s.Catalog == "d4");
        foreach (var s in all)
        {
            var outcomes = EraTable.All.Select(s.ExpectedIn).ToList();
            // d5 is the 5.13 merge-window state (a mutation); its fixed code is row d5-fixed. d6 is not fixed in any
            // release up to 6.13; its proposed fix is the per-VM option of row d6-fixed, whose own window is d6-end-hook.
            if (s.Catalog is not ("d5" or "d6" or "d6-end-hook"))
                Assert.Contains(outcomes, o => o.Kind == ExpectKind.Pass);
            if (s.HistoryStats.Count == 0 && s.Catalog is not ("d5-fixed" or "d6-fixed"))
                Assert.Contains(outcomes, o => o.Kind == ExpectKind.Violation);
        }
    }

    [Fact]
    public void Dfs2Preemptions_CompletesTheFixedEra_AndFindsTheBuggyOne()
    {
        var s = ScenarioLoader.LoadBuiltIn("invalidate-page-after-ptl");
        var dfs = new StrategySpec { Kind = StrategyKind.Dfs, Por = false, Preemptions = 2 };
        var clean = new Explorer(new ScenarioExplorable(s, EraTable.Get("4.19")), new ExploreOptions { Strategy = dfs, Iterations = 200_000 }).Run();
        Assert.Null(clean.First);
        Assert.True(clean.Exhausted);
        Assert.Equal($"no violation in all {clean.Schedules} schedules up to 2 preemptions", clean.Completion);
        Assert.True(clean.Schedules > 100, $"{clean.Schedules} schedules");

        var buggy = new Explorer(new ScenarioExplorable(s, EraTable.Get("4.10")), new ExploreOptions { Strategy = dfs, Iterations = 200_000 }).Run();
        Assert.NotNull(buggy.First);
        Assert.Equal("lost-write", buggy.First!.Violation.Invariant);
    }

    [Theory]
    [InlineData("invalidate-page-after-ptl", "4.10")]
    [InlineData("invalidate-page-sleeping-secondary", "4.13-rc1")]
    [InlineData("thp-invalidate-page", "4.10")]
    [InlineData("oom-reaper-no-notifier", "4.10")]
    [InlineData("shared-pt-tlb-order", "3.10")]
    [InlineData("memslot-between-start-end", "5.13")]
    [InlineData("shared-pt-tlb-write-order", "3.6")]
    [InlineData("pfncache-livelock", "6.8")]
    [InlineData("aging-in-invalidate-scope", "4.19")]
    [InlineData("ksm-deferred-tlb-flush", "4.12")]
    public void CounterexampleShrinksAndReplaysExactlyThroughATraceFile(string scenario, string era)
    {
        var c = Cell(scenario, era);
        Assert.NotNull(c.Counterexample);
        var s = ScenarioLoader.LoadBuiltIn(scenario);
        var program = new ScenarioExplorable(s, EraTable.Get(era));
        var small = new Shrinker(program).Shrink(c.Counterexample!);
        Assert.Equal(c.Invariant, small.Violation.Invariant);
        // Fewest context switches first, then fewest steps: fewer preemptions may take more steps (d8: 66 -> 22, 919 -> 1072).
        var big = c.Counterexample!;
        Assert.True(small.Preemptions < big.Preemptions || (small.Preemptions == big.Preemptions && small.Steps <= big.Steps),
            $"({big.Preemptions}, {big.Steps}) -> ({small.Preemptions}, {small.Steps})");

        string path = Path.Combine(Directory.CreateTempSubdirectory("mmusim-history-").FullName, scenario + ".trace");
        TraceFile.From(small).Save(path);
        var r = MmuSim.Explore.Replay.File(path, program);
        Assert.True(r.Reproduced);
        Assert.False(r.Diverged);

        var (code, _, err) = CliRunner.Run("replay", path);
        Assert.Equal(1, code);
        Assert.Contains($"reproduced: {c.Invariant}", err);
    }

    [Theory]
    [InlineData("invalidate-page-after-ptl", 2, "ptep_clear_flush(0x10000)", "guest_write(0x100)")]
    [InlineData("thp-invalidate-page", 3, "page_mkclean_one(0x400000)", "kvm_unmap_gfn_range(0x1001)")]
    public void ShrunkDiagramsOfAAndB_AreShortAndShowTheOtherCpu(string scenario, int cpus, string row1, string row2)
    {
        var p = new ScenarioExplorable(ScenarioLoader.LoadBuiltIn(scenario), EraTable.Get("4.10"));
        var found = new Explorer(p, new ExploreOptions { Iterations = 5000 }).Run().First!;
        var small = new Shrinker(p).Shrink(found);
        var t = new MmuSim.Trace.TraceCollector();
        Assert.True(small.Replay(p, t).Reproduced);
        var d = MmuSim.Trace.RaceDiagram.Build(t);
        Assert.Equal(cpus, d.Columns.Count);
        Assert.All(d.Columns, c => Assert.True(d.RowsFor(c.Id) <= 12, d.ToString()));
        Assert.Contains(d.Rows, r => r.Text == row1);
        Assert.Contains(d.Rows, r => r.Text == row2);
        Assert.Contains(d.Rows, r => r.Text.StartsWith("guest_write(", StringComparison.Ordinal));
    }

    [Fact]
    public void HistoryTable_MatchesEveryDeclaredExpectation_AndRendersJson()
    {
        var report = HistoryRunner.Run(new HistoryOptions
        {
            Scenarios = [ScenarioLoader.LoadBuiltIn("invalidate-page-after-ptl"), ScenarioLoader.LoadBuiltIn("thp-invalidate-page")],
            Eras = [EraTable.Get("2.6.27"), EraTable.Get("4.12"), EraTable.Get("6.13")],
            SchedulesPerCell = 200,
            TimeLimit = TimeSpan.FromMinutes(5),
            Parallelism = 2,
        });
        Assert.Empty(report.Contradictions);
        Assert.Equal(CellStatus.Violation, report[0, 1].Status);
        Assert.Equal(CellStatus.NotApplicable, report[1, 0].Status);
        Assert.Equal(CellStatus.Clean, report[1, 2].Status);
        string text = HistoryFormat.ToWide(report);
        Assert.Contains("(a) invalidate-page-after-ptl", text);
        Assert.Contains("violation (lost-write, ", text);
        Assert.Contains("clean (200 schedules)", text);
        Assert.DoesNotContain("!!", text);
        using var doc = System.Text.Json.JsonDocument.Parse(HistoryFormat.ToJson(report));
        Assert.Equal(6, doc.RootElement.GetProperty("cells").GetArrayLength());
        Assert.Equal(0, doc.RootElement.GetProperty("contradictions").GetInt32());
    }

    [Fact]
    public void HistoryCli_ExitsOneWhenACellContradictsItsExpectation()
    {
        string path = HistoryOutputTests.WrongHistory();
        var (code, stdout, _) = CliRunner.Run("history", "--scenarios", path, "--eras", "4.15..4.19", "-n", "20");
        Assert.Equal(1, code);
        Assert.Contains("!! wrong-history @ 4.19: expected unexpected-value, got clean (20 schedules)", stdout);
        var (ok, _, _) = CliRunner.Run("history", "--scenarios", path, "--eras", "4.15", "-n", "20", "--json");
        Assert.Equal(0, ok);
    }

    [Fact]
    public void Loader_RejectsUnknownHistoryStats()
    {
        var e = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse("""
            name: x
            catalog: q
            history_stats: [no_such_counter]
            threads:
              - name: t
                ops:
                  - sleep: { ns: 1 }
            """, "x.yaml"));
        Assert.Contains("history_stats", e.Message);
    }

    [Fact]
    public void CatalogFieldsSurviveTheWriter()
    {
        var s = ScenarioLoader.LoadBuiltIn("change-pte-dead");
        var again = ScenarioLoader.Parse(ScenarioWriter.ToYaml(s), "w.yaml");
        Assert.Equal("c", again.Catalog);
        Assert.Equal([Stat.KvmChangePteFoundPresent], again.HistoryStats);
    }
}
