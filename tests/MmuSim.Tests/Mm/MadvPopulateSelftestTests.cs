using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Mm;

/// <summary>The madv_populate.c ports (selftests/madv_populate/) meet their declared outcome in 6.13, 6.1 and (n/a) 5.13.</summary>
public class MadvPopulateSelftestTests
{
    public static TheoryData<string> Ports() => SelftestPorts.Under("selftests/madv_populate/");

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MatchesItsExpectationPerEra(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        Assert.Equal(ExpectKind.Pass, s.ExpectedIn(EraTable.Get("6.13")).Kind);
        Assert.Equal(ExpectKind.NotApplicable, s.ExpectedIn(EraTable.Get("5.13")).Kind);
        foreach (var era in new[] { "6.13", "6.6", "6.1" })
        {
            var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
            Assert.True(r.MatchesExpectation, $"{name} in {era}: {r.Violation}");
        }
    }

    [Fact]
    public void EveryUpstreamFunctionIsPorted()
    {
        var names = ScenarioLoader.BuiltInNames.ToHashSet();
        foreach (var f in new[] { "sense-support", "prot-read", "prot-write", "holes", "populate-read", "populate-write", "softdirty" })
            Assert.Contains($"selftests/madv_populate/{f}", names);
        foreach (var f in new[] { "unshared", "fully-shared", "lower-shared", "upper-shared" })
            Assert.Contains($"selftests/cow/anon-thp-collapse-{f}", names);
    }

    /// <summary>A port that cannot fail is a defect: the populate-write port fails when populate does nothing.</summary>
    [Fact]
    public void SoftdirtyPort_FailsWhenTheWriteIsMissing()
    {
        var yaml = ScenarioLoader.BuiltInText("selftests/madv_populate/softdirty")!.Replace("advice: populate_write", "advice: populate_read");
        var broken = ScenarioLoader.Parse(yaml, "broken.yaml");
        var r = ScenarioRunner.Run(broken, EraTable.Get("6.13"), null);
        Assert.False(r.MatchesExpectation);
    }
}
