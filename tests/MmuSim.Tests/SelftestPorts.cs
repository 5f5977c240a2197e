using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Tests;

/// <summary>Shared pieces of the tests of the ported upstream selftests (built-in scenarios under selftests/FILE/).</summary>
public static class SelftestPorts
{
    /// <summary>The built-in scenarios whose name starts with <paramref name="prefix"/>, as xunit theory data.</summary>
    public static TheoryData<string> Under(string prefix)
    {
        var d = new TheoryData<string>();
        foreach (var n in ScenarioLoader.BuiltInNames.Where(n => n.StartsWith(prefix, StringComparison.Ordinal))) d.Add(n);
        return d;
    }

    /// <summary>
    /// Run the port in every era it applies to (or in <paramref name="eras"/>) and assert that each outcome is the one
    /// it declares; <paramref name="check"/> then looks at each run. Returns the number of eras run.
    /// </summary>
    public static int AssertMeetsDeclaration(string name, IEnumerable<string>? eras = null, Action<RunResult>? check = null)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        int run = 0;
        foreach (var e in eras?.Select(EraTable.Get) ?? EraTable.All)
        {
            if (s.ExpectedIn(e).Kind == ExpectKind.NotApplicable) continue;
            var r = ScenarioRunner.Run(s, e, null);
            Assert.True(r.MatchesExpectation, $"{name} in {e.Name}: {r.Violation}");
            check?.Invoke(r);
            run++;
        }
        return run;
    }
}
