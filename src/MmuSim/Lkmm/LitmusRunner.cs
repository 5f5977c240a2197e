using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;

namespace MmuSim.Lkmm;

/// <summary>One row of the litmus table: a test, the result its file documents, what MmuSim found.</summary>
public sealed record LitmusRow(string Test, string Documented, string Found, int Schedules, bool Complete, TimeSpan Elapsed)
{
    public bool Agrees => Complete && Documented == Found;
}

/// <summary>
/// Runs the built-in litmus scenarios (<c>litmus/NAME</c>) under an exhaustive search: DFS over every interleaving
/// and every weak-memory choice, no preemption bound, no reduction. "Sometimes" = a run where the exists clause holds
/// was found; "Never" = the search completed without one.
/// </summary>
public static class LitmusRunner
{
    public const string Prefix = "litmus/";

    public static IReadOnlyList<string> Names =>
        ScenarioLoader.BuiltInNames.Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).ToArray();

    /// <summary>"Sometimes" for a scenario that expects litmus-exists, else "Never".</summary>
    public static string DocumentedResult(Scenario s) =>
        s.Expect.Default.Kind == ExpectKind.Violation ? "Sometimes" : "Never";

    /// <summary>Explore one litmus scenario exhaustively under <paramref name="model"/> (its own <c>memory:</c> if null).</summary>
    public static LitmusRow Run(Scenario s, MemoryModel? model = null, int maxSchedules = 1_000_000, TimeSpan? limit = null)
    {
        if (model is { } m) s = s.WithMemory(m);
        var report = new Explorer(new ScenarioExplorable(s, s.EraOrDefault(null)), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = DporStrategy.Unbounded, Por = false },
            Iterations = maxSchedules,
            TimeLimit = limit,
        }).Run();
        string name = s.Name.StartsWith(Prefix, StringComparison.Ordinal) ? s.Name[Prefix.Length..] : s.Name;
        bool found = report.First?.Violation.Invariant == ScenarioInvariants.LitmusExists;
        if (report.First != null && !found)
            throw new Sched.ModelException($"{s.Name}: {report.First.Violation}");
        return new LitmusRow(name, DocumentedResult(s), found ? "Sometimes" : report.Exhausted ? "Never" : "undecided",
            report.Schedules, found || report.Exhausted, report.Elapsed);
    }
}
