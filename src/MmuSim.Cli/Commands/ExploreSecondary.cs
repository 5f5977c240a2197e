using System.Text;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Secondary;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim explore --secondary MyDriver.dll [--driver NAME ...] [SCENARIO] [--era V]</c>: load a user's driver
/// assembly, and explore every <see cref="SecondaryDriver"/> in it (or the ones named) against every built-in
/// <c>secondary-*</c> scenario (or the one given) in every era (or <c>--era</c>). Eras lacking a feature the driver
/// requires are n/a (<c>-</c>). Stops at the first violation: shrunk and shown as a race diagram, exit 1. All clean:
/// exit 0. A bad assembly, no drivers, or an unknown driver name: one line, exit 2.
/// </summary>
public static class ExploreSecondary
{
    /// <summary>The default schedules per (scenario, era) cell when --iterations is not given.</summary>
    public const int DefaultIterationsPerCell = 1000;

    /// <summary>What <c>explore</c> parsed, for the --secondary route.</summary>
    public sealed record Request(string Assembly, string[] Drivers, string? Scenario, KernelEra? Era, StrategySpec Strategy, int Iterations,
        TimeSpan? TimeLimit, int Jobs, bool NoShrink, TraceFormat Format, string? TraceOut, IReadOnlyList<Mutation> Mutations);

    /// <summary>Run it; returns the exit code.</summary>
    public static int Run(CliContext cli, Request q)
    {
        IReadOnlyList<DriverInfo> found;
        try { found = DriverInfo.FromAssembly(q.Assembly); }
        catch (DriverLoadException e) { throw new UsageException("--secondary", e.Message); }
        var drivers = Select(found, q.Drivers, q.Assembly);

        IReadOnlyList<Scenario> scenarios;
        if (q.Scenario != null)
        {
            var s = CliContext.LoadScenario(q.Scenario);
            if (!s.UsesSecondaryDriver)
                throw new UsageException("scenario", $"'{s.Name}' has no `secondary` op, so it cannot run a user driver (built-in ones: {string.Join(", ", SecondaryScenarioNames)})");
            scenarios = [s];
        }
        else scenarios = SecondaryScenarioNames.Select(n => ScenarioLoader.LoadBuiltIn(n)).ToArray();
        var eras = q.Era is { } one ? [one] : EraTable.All;

        int width = Math.Max(8, scenarios.Max(s => s.Name.Length));
        string header = "scenario".PadRight(width) + " " + string.Join(" ", eras.Select(e => e.Name));
        foreach (var d in drivers)
        {
            cli.Err.WriteLine($"explore --secondary {Path.GetFileName(q.Assembly)}: driver {d.Name} ({d.Description}), {scenarios.Count} scenarios x {eras.Count} eras, " +
                              $"{q.Iterations} schedules per cell, strategy {q.Strategy}");
            cli.Out.WriteLine($"driver {d.Name}{(d.Requires.Count > 0 ? $" (requires {string.Join(", ", d.Requires)})" : "")}");
            cli.Out.WriteLine(header);
            int clean = 0, na = 0;
            long schedules = 0;
            foreach (var s in scenarios)
            {
                var row = new StringBuilder(s.Name.PadRight(width));
                var bound = s.WithSecondaryDriver(d);
                foreach (var era in eras)
                {
                    row.Append(' ');
                    char mark;
                    if (!d.SupportedIn(era)) { mark = '-'; na++; }
                    else
                    {
                        var program = new ScenarioExplorable(bound, era, q.Mutations, q.Strategy.Seed);
                        var started = System.Diagnostics.Stopwatch.StartNew();
                        ExploreReport report;
                        try
                        {
                            report = new Explorer(program, new ExploreOptions
                            {
                                Strategy = q.Strategy, Iterations = q.Iterations, TimeLimit = q.TimeLimit, Parallelism = q.Jobs,
                            }).Run();
                        }
                        catch (ExploreException ex) when (ex.InnerException is DriverLoadException dl) { throw new UsageException("--secondary", dl.Message); }
                        catch (ExploreException ex) when (ThrownBy(ex.InnerException, d))
                        {
                            // A bug in the user's driver (it threw), not in the model: reported like a violation.
                            cli.Out.WriteLine(row.Append('x').ToString());
                            var inner = ex.InnerException!;
                            cli.Out.WriteLine($"violation: driver {d.Name}, scenario {s.Name}, era {era.Name}: the driver threw {inner.GetType().Name}: " +
                                              $"{inner.Message.ReplaceLineEndings(" ")} (schedule {ex.Iteration + 1}; at {inner.TargetSite?.DeclaringType?.FullName}.{inner.TargetSite?.Name})");
                            return Program.Failed;
                        }
                        schedules += report.Schedules;
                        if (report.First is { } found1)
                        {
                            cli.Out.WriteLine(row.Append('x').ToString());
                            return ShowViolation(cli, q, d, program, report, found1, started.Elapsed);
                        }
                        mark = '.';
                        clean++;
                    }
                    row.Append(mark.ToString().PadRight(era.Name.Length));
                }
                cli.Out.WriteLine(row.ToString().TrimEnd());
            }
            cli.Out.WriteLine($"clean: driver {d.Name}: no violation in {clean} scenario x era cells ({schedules} schedules){(na > 0 ? $", {na} n/a" : "")}");
        }
        return Program.Ok;
    }

    /// <summary>The built-in scenarios a user driver runs in (those with a <c>secondary</c> op).</summary>
    public static IReadOnlyList<string> SecondaryScenarioNames { get; } =
        ScenarioLoader.BuiltInNames.Where(n => ScenarioLoader.LoadBuiltIn(n).UsesSecondaryDriver).ToArray();

    /// <summary>Was <paramref name="e"/> thrown from the driver's own assembly?</summary>
    static bool ThrownBy(Exception? e, DriverInfo d)
    {
        for (; e != null; e = e.InnerException)
            if (e.TargetSite?.DeclaringType?.Assembly == d.Type.Assembly) return true;
        return false;
    }

    static IReadOnlyList<DriverInfo> Select(IReadOnlyList<DriverInfo> found, string[] names, string assembly)
    {
        if (names.Length == 0)
        {
            var implicitOnes = found.Where(d => !d.ExplicitOnly).ToArray();
            return implicitOnes.Length > 0 ? implicitOnes : found;
        }
        var chosen = new List<DriverInfo>();
        foreach (var n in names.SelectMany(n => n.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            var d = found.FirstOrDefault(d => d.Name == n || d.Type.Name == n || d.Type.FullName == n)
                ?? throw new UsageException("--driver", $"no driver named '{n}' in '{assembly}' (found: {string.Join(", ", found.Select(f => f.Name))})");
            if (!chosen.Contains(d)) chosen.Add(d);
        }
        return chosen;
    }

    static int ShowViolation(CliContext cli, Request q, DriverInfo d, ScenarioExplorable program, ExploreReport report, Counterexample found, TimeSpan elapsed)
    {
        cli.Err.Write(report.Summary());
        var shown = found;
        if (!q.NoShrink)
        {
            var shrinker = new Shrinker(program, ExploreCommand.ShrinkBudget(q.TimeLimit, elapsed));
            shown = shrinker.Shrink(found);
            cli.Err.WriteLine($"shrunk: {found.Preemptions} -> {shown.Preemptions} preemptions, {found.Steps} -> {shown.Steps} steps ({shrinker.Runs} replays)");
        }
        cli.Out.WriteLine($"violation: driver {d.Name}, scenario {program.Info.Scenario}, era {program.Info.Era}: {shown.Violation.Invariant} " +
                          $"in schedule {found.Iteration + 1} ({report.Violations} violating of {report.Schedules})");
        CounterexampleOutput.Show(cli, program, shown.Decisions, shown.Violation.Invariant,
            $"{shown.Strategy}, iteration {shown.Iteration}, {shown.Preemptions} preemptions", q.Format, q.TraceOut);
        return Program.Failed;
    }
}
