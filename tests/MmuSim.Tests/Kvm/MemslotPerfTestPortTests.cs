using MmuSim.Eras;
using MmuSim.Kvm;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// memslot_perf_test.c's port (selftests/kvm/memslot_perf_test/): map, unmap, unmap chunked, move active and inactive
/// area, RW. Every case meets its declaration in every era; the unmapping cases fail when KVM does not zap on
/// invalidate_range_start; the inactive move never exits to MMIO, the active one only in the moving half.
/// </summary>
public class MemslotPerfTestPortTests
{
    const string Prefix = "selftests/kvm/memslot_perf_test/";

    public static TheoryData<string> Ports() => SelftestPorts.Under(Prefix);

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MeetsItsDeclarationInEveryEra(string name) =>
        Assert.True(SelftestPorts.AssertMeetsDeclaration(name) >= 20);

    [Fact]
    public void Ports_CoverEveryUpstreamTest()
    {
        string[] upstream = ["map", "unmap", "unmap-chunked", "move-active-area", "move-inactive-area", "rw"];
        var names = ScenarioLoader.BuiltInNames.Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).ToHashSet();
        Assert.Equal(upstream.Select(u => Prefix + u).ToHashSet(), names);
    }

    [Theory]
    [InlineData("map")]
    [InlineData("unmap")]
    [InlineData("unmap-chunked")]
    public void Unmapping_FailsWhenInvalidateRangeStartDoesNotZap(string name)
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn(Prefix + name), EraTable.Get("6.18"), null,
            new RunOptions { Mutations = [Mutation.KvmNoZapOnStart] });
        Assert.Equal("stale-translation", r.Violation?.Invariant);
    }

    // A write to the moving slot may exit only while the slot is away: the writes below it must never exit. Taking the
    // `error: any` off the moving half makes the guest's write fail where the move was in flight, in some schedule.
    [Fact]
    public void MoveActiveArea_ExitsOnlyInTheMovingHalf()
    {
        var yaml = File.ReadAllText(Path.Combine(RealKvm.RepoRoot(), "src", "MmuSim", "Scenarios", "BuiltIn", "selftests", "kvm", "memslot_perf_test", "move-active-area.yaml"));
        Assert.Equal(4, yaml.Split("error: any").Length - 1); // the moving half (2 pages), two rounds
        var strict = ScenarioLoader.Parse(yaml.Replace(", error: any", ""), "move-active-area.yaml");
        var r = new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(strict, EraTable.Get("6.18"), []),
            new MmuSim.Explore.ExploreOptions { Strategy = new MmuSim.Explore.StrategySpec { Kind = MmuSim.Explore.StrategyKind.Dfs, Preemptions = 1 }, Iterations = 5000 }).Run();
        Assert.NotNull(r.First);
    }
}
