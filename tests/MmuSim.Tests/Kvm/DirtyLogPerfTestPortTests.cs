using MmuSim.Eras;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// selftests/kvm/dirty_log_perf_test/*: each variant meets its declaration in every era, explores clean, and is caught
/// by a harvest that does not re-protect (the second iteration's writes go unreported).
/// </summary>
public class DirtyLogPerfTestPortTests
{
    public static TheoryData<string> Ports() => SelftestPorts.Under("selftests/kvm/dirty_log_perf_test/");

    [Theory]
    [MemberData(nameof(Ports))]
    public void Variant_MeetsItsDeclaration_ExploresClean_AndCatchesALostWrite(string name)
    {
        int run = SelftestPorts.AssertMeetsDeclaration(name, check: r => Assert.Null(r.Violation));
        Assert.True(run >= 12);
        var s = ScenarioLoader.LoadBuiltIn(name);
        var e = EraTable.Get("6.18");
        Assert.Null(ScenarioRunner.Explore(s, e, seed => new RandomStrategy(seed), 20, 1).FirstViolation?.Violation);
        Assert.True(Mutations.TryParse("kvm-dirty-log-no-reprotect", out var m));
        var bad = ScenarioRunner.Explore(s, e, seed => new RandomStrategy(seed), 5, 1, [m]).FirstViolation?.Violation;
        Assert.NotNull(bad);
        Assert.Contains(bad!.Invariant, new[] { Invariants.DirtyLogLost, ScenarioInvariants.UnexpectedValue });
    }
}
