using System.CommandLine;
using MmuSim.Scenarios;
using MmuSim.Sched;
using Spectre.Console;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim explore FILE|NAME [--iterations N] [--seed S] [--mutate NAME ...] [--era V]</c>: random schedules until
/// the first violation (exit 1, printed with its replayed last steps) or the budget is spent clean (exit 0).
/// </summary>
public static class ExploreCommand
{
    public static Command Create(CliContext cli)
    {
        var scenario = new Argument<string>("scenario") { Description = "a scenario file (.yaml) or a built-in scenario name (mmusim list)" };
        var era = new Option<string?>("--era") { Description = "kernel era (mmusim eras); default: the scenario's era:, else 6.13" };
        var iterations = new Option<int>("--iterations", "-n") { Description = "number of schedules", DefaultValueFactory = _ => 10_000 };
        var seed = new Option<ulong>("--seed") { Description = "exploration seed (schedule i uses a seed derived from it and i)", DefaultValueFactory = _ => 1UL };
        var mutate = new Option<string[]>("--mutate")
        {
            Description = "turn on a mutation switch (repeatable, or comma-separated): " + Mutations.KnownList,
            AllowMultipleArgumentsPerToken = false,
        };
        var cmd = new Command("explore", "Run random schedules of a scenario; stop at the first violation (exit 1) or finish clean (exit 0)")
        {
            scenario, era, iterations, seed, mutate,
        };
        cmd.SetAction(p =>
        {
            var s = CliContext.LoadScenario(p.GetValue(scenario)!);
            var e = s.EraOrDefault(CliContext.ParseEra(p.GetValue(era)));
            var muts = CliContext.ParseMutations(p.GetValue(mutate));
            int n = p.GetValue(iterations);
            if (n < 1) throw new UsageException("--iterations", $"must be at least 1, got {n}");
            ulong sd = p.GetValue(seed);
            var all = s.Mutations.Concat(muts).Distinct().Select(Mutations.NameOf).ToArray();
            cli.Err.WriteLine($"explore {s.Name}: era {e.Name}, random strategy, seed {sd}, {n} schedules, mutations: {(all.Length == 0 ? "none" : string.Join(", ", all))}");

            ExploreResult res;
            if (cli.InteractiveErr)
            {
                res = null!;
                cli.ErrConsole().Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
                    .Start(ctx =>
                    {
                        var task = ctx.AddTask("schedules", maxValue: n);
                        var start = DateTime.UtcNow;
                        res = ScenarioRunner.Explore(s, e, ScenarioRunner.RandomStrategyFactory, n, sd, muts, done =>
                        {
                            if (done % 256 != 0 && done != n) return;
                            task.Value = done;
                            double secs = (DateTime.UtcNow - start).TotalSeconds;
                            task.Description = secs > 0 ? $"schedules ({done / secs:0}/s)" : "schedules";
                        });
                        task.Value = res.Iterations;
                    });
            }
            else res = ScenarioRunner.Explore(s, e, ScenarioRunner.RandomStrategyFactory, n, sd, muts);

            double avg = res.Iterations > 0 ? (double)res.TotalSteps / res.Iterations : 0;
            cli.Err.WriteLine($"{res.Iterations} schedules in {res.Elapsed.TotalSeconds:0.00} s ({res.SchedulesPerSecond:0} schedules/s), steps min/avg/max {res.MinSteps}/{avg:0}/{res.MaxSteps}");
            if (res.FirstViolation is not { } bad)
            {
                cli.Out.WriteLine($"clean: no violation in {res.Iterations} random schedules of {s.Name} in era {e.Name}");
                return Program.Ok;
            }
            // Replay the counterexample with a step recorder for the report (same decisions, same run).
            var sink = new LastStepsSink();
            var again = ScenarioRunner.Replay(s, e, bad.Decisions, new RunOptions { Seed = sd, Mutations = muts, StepSink = sink });
            var shown = again.Violation?.ToString() == bad.Violation!.ToString() ? again : bad;
            cli.Out.WriteLine($"violation found in schedule {res.Iterations} of {n}");
            ResultPrinter.Print(cli, shown, ReferenceEquals(shown, again) ? sink : null, $"random, seed {sd}, iteration {res.Iterations - 1}");
            return Program.Failed;
        });
        return cmd;
    }
}
