using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Kvm;

/// <summary>selftests/kvm/dirty_log_test/{dirty-log,clear-log,dirty-ring}: pass, explore clean, and a harvest that does not re-protect is caught.</summary>
public class DirtyLogTestPortTests
{
    [Theory]
    [InlineData("selftests/kvm/dirty_log_test/dirty-log")]
    [InlineData("selftests/kvm/dirty_log_test/clear-log")]
    [InlineData("selftests/kvm/dirty_log_test/dirty-ring")]
    public void Mode_PassesUnderRandomSchedules_AndLosesWritesWithoutReprotect(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        var e = EraTable.Get("6.18");
        int n = name.EndsWith("dirty-ring") ? 8 : 30;
        var good = ScenarioRunner.Explore(s, e, seed => new RandomStrategy(seed), n, 1);
        Assert.Null(good.FirstViolation?.Violation);
        Assert.True(Mutations.TryParse("kvm-dirty-log-no-reprotect", out var m));
        var bad = ScenarioRunner.Explore(s, e, seed => new RandomStrategy(seed), n, 1, [m]);
        Assert.NotNull(bad.FirstViolation);
        Assert.Equal(Invariants.DirtyLogLost, bad.FirstViolation!.Violation!.Invariant);
    }
}
