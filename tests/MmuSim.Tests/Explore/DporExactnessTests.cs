using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.History;
using MmuSim.Scenarios;
using Xunit;
using Xunit.Abstractions;

namespace MmuSim.Tests.Explore;

/// <summary>
/// Partial-order reduction stays exact: on every catalog scenario, in a buggy era and a fixed era, the reduced DFS finds a
/// violation iff the unreduced DFS with the same preemption bound does, and explores no more schedules.
/// </summary>
public class DporExactnessTests(ITestOutputHelper output)
{
    /// <summary>Preemption bounds tried, largest first: a cell uses the first at which the unreduced DFS decides it within
    /// <see cref="Budget"/> (ksm-deferred-tlb-flush does not complete with 1 preemption).</summary>
    static readonly int[] Bounds = [1, 0];

    static readonly TimeSpan Budget = TimeSpan.FromSeconds(30);

    public static TheoryData<string, string> Cells()
    {
        var d = new TheoryData<string, string>();
        foreach (var s in HistoryRunner.CatalogScenarios())
        {
            var buggy = Pick(s, ExpectKind.Violation);
            var fixedEra = Pick(s, ExpectKind.Pass);
            if (buggy != null) d.Add(s.Name, buggy);
            if (fixedEra != null && fixedEra != buggy) d.Add(s.Name, fixedEra);
        }
        return d;
    }

    /// <summary>The scenario's own era when it has that outcome there, else the newest era with it.</summary>
    static string? Pick(Scenario s, ExpectKind kind)
    {
        if (s.DefaultEra is { } own && s.ExpectedIn(own).Kind == kind) return own.Name;
        string? r = null;
        foreach (var e in EraTable.All)
            if (s.ExpectedIn(e).Kind == kind) r = e.Name;
        return r;
    }

    static ExploreReport Dfs(Scenario s, KernelEra era, bool por, int bound, TimeSpan? limit) =>
        new Explorer(new ScenarioExplorable(s, era), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = bound, Por = por },
            Iterations = 1_000_000,
            TimeLimit = limit,
        }).Run();

    [Theory]
    [MemberData(nameof(Cells))]
    public void Reduced_dfs_finds_a_violation_iff_unreduced_dfs_does_in_no_more_schedules(string scenario, string era)
    {
        var s = ScenarioLoader.LoadBuiltIn(scenario);
        var e = EraTable.Get(era);
        ExploreReport full = null!;
        int bound = -1;
        foreach (var b in Bounds)
        {
            bound = b;
            full = Dfs(s, e, por: false, b, Budget);
            if (full.First != null || full.Exhausted) break;
        }
        // No time limit: the reduced search must decide the cell by itself.
        var reduced = Dfs(s, e, por: true, bound, null);
        output.WriteLine($"{scenario} {era} (bound {bound}): unreduced {full.Schedules} ({(full.First != null ? full.First.Violation.Invariant : full.Exhausted ? "complete" : "timeout")}), " +
                         $"reduced {reduced.Schedules} ({(reduced.First != null ? reduced.First.Violation.Invariant : reduced.Exhausted ? "complete" : "timeout")})");
        Assert.True(full.First != null || full.Exhausted, "the unreduced search must decide the cell");
        Assert.Equal(full.First != null, reduced.First != null);
        if (full.First != null) Assert.Equal(full.First.Violation.Invariant, reduced.First!.Violation.Invariant);
        else Assert.True(reduced.Exhausted);
        Assert.True(reduced.Schedules <= full.Schedules, $"reduced {reduced.Schedules} > unreduced {full.Schedules}");
    }

    public static TheoryData<string, string, string> MutantCells()
    {
        var d = new TheoryData<string, string, string>();
        foreach (var m in Enum.GetValues<Mutation>())
        {
            d.Add(Mutations.NameOf(m), "kvm-fault-vs-invalidate", "6.13");
            d.Add(Mutations.NameOf(m), "invalidate-page-after-ptl", "6.18");
        }
        return d;
    }

    /// <summary>The mutants too: with one mutation on, reduced DFS kills it iff unreduced DFS (same bound) does.</summary>
    [Theory]
    [MemberData(nameof(MutantCells))]
    public void Reduced_dfs_kills_a_mutant_iff_unreduced_dfs_does(string mutation, string scenario, string era)
    {
        Assert.True(Mutations.TryParse(mutation, out var m));
        var s = ScenarioLoader.LoadBuiltIn(scenario);
        var e = EraTable.Get(era);
        ExploreReport Run(bool por, TimeSpan? limit) =>
            new Explorer(new ScenarioExplorable(s, e, [m]), new ExploreOptions
            {
                Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = 1, Por = por },
                Iterations = 1_000_000,
                TimeLimit = limit,
            }).Run();
        var full = Run(false, Budget);
        var reduced = Run(true, null);
        output.WriteLine($"{mutation} on {scenario} {era}: unreduced {full.Schedules} ({full.First?.Violation.Invariant ?? (full.Exhausted ? "complete" : "timeout")}), " +
                         $"reduced {reduced.Schedules} ({reduced.First?.Violation.Invariant ?? (reduced.Exhausted ? "complete" : "timeout")})");
        Assert.True(full.First != null || full.Exhausted, "the unreduced search must decide the cell");
        Assert.Equal(full.First != null, reduced.First != null);
        Assert.True(reduced.Schedules <= full.Schedules);
    }
}
