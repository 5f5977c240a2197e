using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Scenarios;

public class RunnerTests
{
    static RunResult Run(string name, ulong seed, string? era = null)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        var st = new RandomStrategy(seed);
        return ScenarioRunner.Run(s, s.EraOrDefault(era == null ? null : EraTable.Get(era)), st, new RunOptions { Seed = seed });
    }

    [Fact]
    public void SameScenarioAndSeedGiveIdenticalDecisionsAndResult()
    {
        var distinct = new HashSet<string>();
        for (ulong seed = 1; seed <= 20; seed++)
        {
            var a = Run("munmap-vs-fault", seed);
            var b = Run("munmap-vs-fault", seed);
            Assert.Equal(a.Decisions, b.Decisions);
            Assert.Equal(a.Summary, b.Summary);
            distinct.Add(string.Join(",", a.Decisions.Select(d => d.Value)));
        }
        Assert.True(distinct.Count > 10, "different seeds should give different schedules");
    }

    [Fact]
    public void SavedDecisionListReplaysToTheSameResult()
    {
        var s = ScenarioLoader.LoadBuiltIn("munmap-vs-fault");
        var era = s.EraOrDefault(null);
        for (ulong seed = 1; seed <= 10; seed++)
        {
            var original = ScenarioRunner.Run(s, era, new RandomStrategy(seed), new RunOptions { Seed = seed });
            // Save as text and parse back, as a trace file would.
            var saved = string.Join("\n", original.Decisions.Select(d => $"{d.Kind} {d.Value}"));
            var loaded = saved.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(l => l.Split(' ')).Select(p => (byte.Parse(p[0]), int.Parse(p[1]))).ToArray();
            var replay = new ReplayStrategy(loaded);
            var again = ScenarioRunner.Run(s, era, replay, new RunOptions { Seed = seed });
            Assert.False(replay.Diverged);
            Assert.Equal(original.Summary, again.Summary);
            Assert.Equal(original.Decisions, again.Decisions);
        }
    }

    [Fact]
    public void ViolatingExplorationReplaysToTheSameViolation()
    {
        var s = ScenarioLoader.LoadBuiltIn("dontneed-refault");
        var era = s.EraOrDefault(null);
        var res = ScenarioRunner.Explore(s, era, ScenarioRunner.RandomStrategyFactory, 2000, 7, [Mutation.SkipStartOnZap]);
        var bad = res.FirstViolation;
        Assert.NotNull(bad);
        var again = ScenarioRunner.Replay(s, era, bad.Decisions, new RunOptions { Seed = 7, Mutations = [Mutation.SkipStartOnZap] });
        Assert.NotNull(again.Violation);
        Assert.Equal(bad.Violation!.ToString(), again.Violation.ToString());
        Assert.Equal(bad.Summary, again.Summary);
    }

    [Fact]
    public void UnmutatedScenarioIsCleanOverTheSameBudget()
    {
        var s = ScenarioLoader.LoadBuiltIn("dontneed-refault");
        var res = ScenarioRunner.Explore(s, s.EraOrDefault(null), ScenarioRunner.RandomStrategyFactory, 1000, 7);
        Assert.Null(res.FirstViolation);
        Assert.Equal(1000, res.Iterations);
    }

    [Theory]
    [InlineData("cow-zero-page")]
    [InlineData("munmap-vs-fault")]
    [InlineData("dontneed-refault")]
    [InlineData("mutant-skip-start-on-zap")]
    public void BuiltInMeetsItsExpectation(string name)
    {
        var r = Run(name, 1);
        Assert.True(r.MatchesExpectation, $"{name}: expected {r.Expected}, got {r.Violation?.ToString() ?? "pass"}");
    }

    [Theory]
    [InlineData("2.6.32", "ChangePte")]
    [InlineData("3.7", "InvalidateRangeStart,ChangePte,InvalidateRangeEnd")]
    [InlineData("6.13", "InvalidateRangeStart,InvalidateRangeEnd")]
    public void RecorderOpSeesTheEraCallbacks(string era, string calls)
    {
        var r = Run("cow-zero-page", 1, era);
        Assert.Null(r.Violation);
        var rec = (RecordingSecondary)r.World.Objects["rec"];
        Assert.Equal(calls, string.Join(",", rec.Calls.Select(c => c.Kind)));
        Assert.Contains(r.Reports, x => x.ReportTitle.StartsWith("recorder rec"));
    }

    [Fact]
    public void InitialContentsSetupAndObservedValues()
    {
        var r = Run("dontneed-refault", 3);
        Assert.Null(r.Violation);
        Assert.Equal(0UL, r.Observed["after-dontneed"]);
        Assert.True(r.Observed["device-first"] is 0x5a or 0);
        var mm = r.World.Processes["p"];
        Assert.Equal(PhysMem.ZeroPfn, mm.PeekPte(0x201000).Pfn);
    }

    [Fact]
    public void ExpectValueMismatchIsAViolationNamingTheLine()
    {
        var yaml = ScenarioLoader.BuiltInText("dontneed-refault")!.Replace("{ addr: 0x200000, value: 0x5a }", "{ addr: 0x200000, value: 0x5b }");
        var s = ScenarioLoader.Parse(yaml, "x.yaml");
        var r = ScenarioRunner.Run(s, s.EraOrDefault(null), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.Contains("x.yaml:16:", r.Violation!.Message);
        Assert.Contains("0x5a", r.Violation.Message);
    }

    [Fact]
    public void ChecksListDisablesOtherInvariants()
    {
        var yaml = ScenarioLoader.BuiltInText("mutant-skip-start-on-zap")!.Replace("expect: stale-translation", "checks: [lost-write]\nexpect: pass");
        var s = ScenarioLoader.Parse(yaml, "x.yaml");
        var r = ScenarioRunner.Run(s, s.EraOrDefault(null), new RandomStrategy(1));
        Assert.Null(r.Violation);
        Assert.True(r.MatchesExpectation);
    }

    [Fact]
    public void CostOverridesChangeSimulatedTime()
    {
        var text = ScenarioLoader.BuiltInText("cow-zero-page")!;
        var a = ScenarioLoader.Parse(text, "a.yaml");
        var b = ScenarioLoader.Parse(text + "\ncosts: { fault: 10250 }", "b.yaml");
        var ra = ScenarioRunner.Run(a, EraTable.Default, null);
        var rb = ScenarioRunner.Run(b, EraTable.Default, null);
        Assert.Equal(2, ra.Kernel.Stats[Stat.Faults]);
        Assert.Equal(ra.SimulatedNs + 2 * (10250 - CostModel.Defaults[CostKind.Fault]), rb.SimulatedNs);
    }

    [Fact]
    public void SignalAndWaitOrderThreads()
    {
        var yaml = """
            name: ordered
            processes:
              - name: p
                vmas: [ { start: 0x100000, len: 4K, contents: [1] } ]
            threads:
              - name: reader
                process: p
                ops:
                  - wait: { event: written }
                  - expect-value: { addr: 0x100000, value: 2 }
              - name: writer
                process: p
                ops:
                  - write: { addr: 0x100000, value: 2 }
                  - signal: { event: written }
            """;
        var s = ScenarioLoader.Parse(yaml, "o.yaml");
        var res = ScenarioRunner.Explore(s, EraTable.Default, ScenarioRunner.RandomStrategyFactory, 300, 1);
        Assert.Null(res.FirstViolation);
        // Without the wait, some schedule reads the old value.
        var racy = ScenarioLoader.Parse(yaml.Replace("      - wait: { event: written }\n", ""), "o.yaml");
        var bad = ScenarioRunner.Explore(racy, EraTable.Default, ScenarioRunner.RandomStrategyFactory, 300, 1);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, bad.FirstViolation?.Violation?.Invariant);
    }

    [Fact]
    public void DaemonsLoopOnTheSimulatedClockUntilThreadsFinish()
    {
        var yaml = """
            name: tick
            processes:
              - name: p
                vmas: [ { start: 0x100000, len: 4K } ]
            threads:
              - name: cpu0
                process: p
                ops:
                  - sleep: { ns: 10000 }
                  - write: { addr: 0x100000, value: 1 }
            daemons:
              - name: ticker
                process: p
                ops:
                  - read: { addr: 0x100000 }
                  - sleep: { ns: 1000 }
            """;
        var s = ScenarioLoader.Parse(yaml, "t.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Default, null);
        Assert.Null(r.Violation);
        Assert.True(r.SimulatedNs >= 10000);
        Assert.Equal("ticker", r.Kernel.S.Contexts[1].Name);
        Assert.True(r.Kernel.S.Contexts[1].Steps > 10, "the daemon loops (read, sleep 1 us) while cpu0 sleeps 10 us");
        Assert.Equal(1UL, r.Kernel.Mem[r.World.Processes["p"].PeekPte(0x100000).Pfn].Contents);
    }

    sealed class FakeSubsystem : IRunReport
    {
        public string ReportTitle => "/sys/kernel/mm/fake";

        public void Report(TextWriter w) => w.WriteLine("pages_shared 1");
    }

    [Fact]
    public void SubsystemsImplementingIRunReportAreReportedFirst()
    {
        var s = ScenarioLoader.LoadBuiltIn("cow-zero-page");
        var r = ScenarioRunner.Run(s, EraTable.Default, null, new RunOptions { Configure = k => k.GetSubsystem(_ => new FakeSubsystem()) });
        Assert.Equal(["/sys/kernel/mm/fake", "recorder rec: 2 callback(s)"], r.Reports.Select(x => x.ReportTitle));
        var w = new StringWriter();
        r.Reports[1].Report(w);
        Assert.Equal("CPU0 InvalidateRangeStart(0x10000, 0x11000, Clear)\nCPU0 InvalidateRangeEnd(0x10000, 0x11000, Clear)\n",
            w.ToString().ReplaceLineEndings("\n"));
    }

    public static IEnumerable<object[]> AllEras() => EraTable.All.Select(e => new object[] { e.Name });

    [Theory]
    [MemberData(nameof(AllEras))]
    public void PerEraExpectationHoldsInEveryEra(string era)
    {
        // mirror-reclaim declares stale-translation for 3.6..4.12 (invalidate_page after the PTL) and pass elsewhere.
        var s = ScenarioLoader.LoadBuiltIn("mirror-reclaim");
        var e = EraTable.Get(era);
        bool buggy = e.Has(Feature.InvalidatePageAfterPtl);
        Assert.Equal(buggy ? Invariants.StaleTranslation : "pass", s.ExpectedIn(e).ToString());
        var r = ScenarioRunner.Run(s, e, new RandomStrategy(11));
        Assert.True(r.MatchesExpectation, $"{era}: expected {r.Expected}, got {r.Violation?.ToString() ?? "pass"}");
        if (buggy) Assert.Equal("dev", r.Violation!.Message.Split(' ')[0]);
    }
}
