using MmuSim.Eras;
using MmuSim.Ksm;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Ksm;

public class KsmScenarioTests
{
    public static TheoryData<string> KsmScenarios() => SelftestPorts.Under("ksm-");

    [Theory]
    [MemberData(nameof(KsmScenarios))]
    public void BuiltIn_MatchesItsExpectation_InDeclaredEraAnd4_19(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        foreach (var era in new[] { s.EraOrDefault(null), EraTable.Get("4.19") })
        {
            var r = ScenarioRunner.Run(s, era, null);
            Assert.True(r.MatchesExpectation, $"{name} in {era.Name}: {r.Violation}");
            Assert.Null(Ksmd.Of(r.Kernel).CheckInvariants());
        }
    }

    [Fact]
    public void TenIdentical_ReportPrintsSharedOneSharingNine()
    {
        var s = ScenarioLoader.LoadBuiltIn("ksm-ten-identical");
        var r = ScenarioRunner.Run(s, s.EraOrDefault(null), null);
        Assert.Null(r.Violation);
        var report = Assert.Single(r.Reports.OfType<Ksmd>());
        Assert.Equal("/sys/kernel/mm/ksm", report.ReportTitle);
        var w = new StringWriter();
        report.Report(w);
        var lines = w.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("pages_shared 1", lines);
        Assert.Contains("pages_sharing 9", lines);
        Assert.Contains("full_scans 2", lines);
        Assert.All(lines, l => Assert.Matches(@"^[a-z_]+ -?\d+$", l));
    }

    [Fact]
    public void KsmExpect_MismatchIsAnUnexpectedValueViolation()
    {
        var s = ScenarioLoader.Parse("""
            name: t
            era: 6.13
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 8K, prot: rw, contents: { value: 1 } }
            setup:
              - madvise: { process: p, addr: 0x100000, len: 8K, advice: mergeable }
            threads:
              - name: cpu0
                ops:
                  - ksm.scan: { full_scans: 2 }
                  - ksm.expect: { counter: pages_sharing, value: 5 }
            """, "t.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.Contains("pages_sharing is 1, expected 5", r.Violation!.Message);
    }
}

public class KsmExplorationTests
{
    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void WriteRace_UnmodifiedCodeStaysClean(string era)
    {
        var s = ScenarioLoader.LoadBuiltIn("ksm-write-race");
        var r = ScenarioRunner.Explore(s, EraTable.Get(era), ScenarioRunner.RandomStrategyFactory, 400, 1);
        Assert.Null(r.FirstViolation?.Violation);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void PinnedWrite_RefcountCheckProtectsIt_SkippingItLosesTheWrite(string era)
    {
        var s = ScenarioLoader.LoadBuiltIn("ksm-pinned-write");
        var clean = ScenarioRunner.Explore(s, EraTable.Get(era), ScenarioRunner.RandomStrategyFactory, 300, 1);
        Assert.Null(clean.FirstViolation?.Violation);
        var bad = ScenarioRunner.Explore(s, EraTable.Get(era), ScenarioRunner.RandomStrategyFactory, 10_000, 1,
            [Mutation.KsmSkipRefcountCheck]);
        Assert.NotNull(bad.FirstViolation);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, bad.FirstViolation!.Violation!.Invariant);
        Assert.Contains("expected 0x77", bad.FirstViolation.Violation.Message);
    }

    [Fact]
    public void WriteRace_ReplaceWithoutPteSame_LosesTheWrite()
    {
        var s = ScenarioLoader.LoadBuiltIn("ksm-write-race");
        var r = ScenarioRunner.Explore(s, EraTable.Get("6.13"), ScenarioRunner.RandomStrategyFactory, 2000, 1,
            [Mutation.KsmReplaceWithoutPteSame]);
        Assert.NotNull(r.FirstViolation);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.FirstViolation!.Violation!.Invariant);
        Assert.Contains("expected 0x77", r.FirstViolation.Violation.Message);
    }
}

public class KsmOpsTests
{
    [Fact]
    public void KsmOps_MadviseReadRunMergeAny_ThroughYaml()
    {
        var s = ScenarioLoader.Parse("""
            name: ops
            era: 6.13
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 16K, prot: rw, contents: { value: 3 } }
              - name: q
                vmas:
                  - { start: 0x100000, len: 8K, prot: rw, contents: { value: 3 } }
            threads:
              - name: t
                process: p
                ops:
                  - ksm.madvise: { start: 0x100000, len: 16K, advice: mergeable }
                  - ksm.merge_any: { process: q }
                  - ksm.set: { knob: pages_to_scan, value: 1000 }
                  - ksm.scan: { full_scans: 2 }
                  - ksm.read: { counter: pages_sharing, as: sharing }
                  - ksm.read: { counter: ksm_merging_pages, of: q, as: q_merging }
                  - ksm.run: { value: 2 }
                  - ksm.expect: { counter: pages_shared, value: 0 }
                  - ksm.expect: { counter: run, value: 2 }
                  - expect-value: { addr: 0x103000, value: 3 }
            """, "ops.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        Assert.Equal(5UL, r.Observed["sharing"]);
        Assert.Equal(2UL, r.Observed["q_merging"]);
    }

    [Fact]
    public void KsmOps_BadAdviceAndUnknownCounter_AreFileLineErrors()
    {
        var ex = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse("""
            name: bad
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 8K }
            threads:
              - name: t
                process: p
                ops:
                  - ksm.madvise: { start: 0x100000, len: 8K, advice: sometimes }
            """, "bad.yaml"));
        Assert.Equal("bad.yaml", ex.File);
        Assert.Equal("ksm.madvise.advice", ex.Field);
        Assert.Equal(10, ex.Line);
    }
}
