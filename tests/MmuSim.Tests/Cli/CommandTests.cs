using MmuSim.Eras;
using MmuSim.Scenarios;
using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Cli;

public class CommandTests
{
    [Fact]
    public void RunExitsZeroWhenThePassExpectationHolds()
    {
        var (code, o, _) = Run("run", "cow-zero-page", "--era", "2.6.32");
        Assert.Equal(0, code);
        Assert.Contains("outcome    pass", o);
        Assert.Contains("expected   pass -> as expected", o);
        Assert.Contains("ChangePte(0x10000, 0x11000", o); // the recorder report
        Assert.Contains("simulated  ", o);
    }

    [Fact]
    public void RunExitsZeroWhenTheDeclaredViolationHappens()
    {
        var (code, o, _) = Run("run", "mutant-skip-start-on-zap");
        Assert.Equal(0, code);
        Assert.Contains("outcome    VIOLATION stale-translation", o);
        Assert.Contains("last steps of each CPU:", o);
    }

    [Fact]
    public void RunExitsOneWhenTheOutcomeContradictsTheExpectation()
    {
        var yaml = ScenarioLoader.BuiltInText("cow-zero-page")!.Replace("expect: pass", "expect: stale-translation");
        var (code, o, _) = Run("run", WriteScenario(yaml));
        Assert.Equal(1, code);
        Assert.Contains("NOT AS EXPECTED", o);

        var mutant = ScenarioLoader.BuiltInText("mutant-skip-start-on-zap")!.Replace("expect: stale-translation", "expect: pass");
        Assert.Equal(1, Run("run", WriteScenario(mutant)).Code);
    }

    [Fact]
    public void RunWithAMutationReportsItAndComparesWithTheExpectation()
    {
        // The device maps the page before the zap (forced by wait/signal). With skip-start-on-zap its translation
        // goes stale, so the outcome no longer matches `expect: pass`: exit 1.
        var path = WriteScenario("""
            name: ordered-dontneed
            processes:
              - name: p
                vmas: [ { start: 0x200000, len: 4K, contents: [0x5a] } ]
            setup:
              - mirror: { process: p, name: dev }
            threads:
              - name: device
                ops:
                  - mirror.read: { mirror: dev, addr: 0x200000 }
                  - signal: { event: mapped }
              - name: cpu0
                process: p
                ops:
                  - wait: { event: mapped }
                  - madvise: { addr: 0x200000, len: 4K, advice: dontneed }
            expect: pass
            """);
        var (code, o, _) = Run("run", path, "--mutate", "skip-start-on-zap");
        Assert.Equal(1, code);
        Assert.Contains("mutations  skip-start-on-zap", o);
        Assert.Contains("outcome    VIOLATION stale-translation", o);
        Assert.Contains("NOT AS EXPECTED", o);
        Assert.Equal(0, Run("run", path).Code);
        Assert.Equal(0, Run("run", path, "--plain").Code);
    }

    [Fact]
    public void RunHonoursPerEraExpectations()
    {
        var yaml = ScenarioLoader.BuiltInText("mutant-skip-start-on-zap")!
            .Replace("expect: stale-translation", "expect:\n  default: stale-translation\n  \"<3.7\": n/a");
        var path = WriteScenario(yaml);
        var (code, o, _) = Run("run", path, "--era", "2.6.32");
        Assert.Equal(0, code);
        Assert.Contains("not applicable", o);
        Assert.Equal(0, Run("run", path, "--era", "4.19").Code);
    }

    [Fact]
    public void ListPrintsOneNamePerLineFirst()
    {
        var (code, o, _) = Run("list");
        Assert.Equal(0, code);
        var lines = o.Split('\n');
        var names = ScenarioLoader.BuiltInNames;
        Assert.True(names.Count >= 4);
        for (int i = 0; i < names.Count; i++) Assert.Equal(names[i], lines[i]);
        Assert.Contains("description", o);
    }

    [Fact]
    public void ErasPrintsEveryEraAndFeature()
    {
        var (code, o, _) = Run("eras");
        Assert.Equal(0, code);
        foreach (var e in EraTable.All) Assert.Contains(e.Name, o);
        foreach (var f in EraTable.Features) Assert.Contains(f.Feature.ToString(), o);
    }

    [Fact]
    public void OpsListsEveryRegisteredOp()
    {
        var (code, o, _) = Run("ops");
        Assert.Equal(0, code);
        foreach (var op in OpRegistry.Default.All) Assert.Contains(op.Name, o);
        Assert.Contains("expect-value", o);
    }

    [Fact]
    public void ExploreCleanScenarioExitsZero()
    {
        var (code, o, err) = Run("explore", "munmap-vs-fault", "-n", "200", "--seed", "3");
        Assert.Equal(0, code);
        Assert.StartsWith("clean: no violation in 200 ", o);
        Assert.DoesNotContain("violation found", o + err);
    }

    [Fact]
    public void ExploreWithAMutationFindsTheViolationAndExitsOne()
    {
        var (code, o, _) = Run("explore", "dontneed-refault", "-n", "2000", "--mutate", "skip-start-on-zap");
        Assert.Equal(1, code);
        Assert.Contains("violation found in schedule", o);
        Assert.Contains("stale-translation", o);
    }
}
