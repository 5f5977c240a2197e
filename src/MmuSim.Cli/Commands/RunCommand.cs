using System.CommandLine;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Cli.Commands;

/// <summary><c>mmusim run FILE|NAME [--era V] [--seed S]</c>: one schedule; exit 0 iff the outcome is the declared one.</summary>
public static class RunCommand
{
    public static Command Create(CliContext cli)
    {
        var scenario = new Argument<string>("scenario") { Description = "a scenario file (.yaml) or a built-in scenario name (mmusim list)" };
        var era = new Option<string?>("--era") { Description = "kernel era (mmusim eras); default: the scenario's era:, else 6.13" };
        var seed = new Option<ulong>("--seed") { Description = "seed of the random schedule", DefaultValueFactory = _ => 1UL };
        var plain = new Option<bool>("--plain") { Description = "plain simulation: no preemption at scheduling points (contexts switch only when they block or sleep)" };
        var mutate = new Option<string[]>("--mutate")
        {
            Description = "turn on a mutation switch on top of the scenario's own (repeatable, or comma-separated): " + Mutations.KnownList,
        };
        var json = new Option<bool>("--json") { Description = "print the run as JSON on stdout (schema in docs/campaigns.md)" };
        var cmd = new Command("run", "Run one schedule of a scenario and compare the outcome with its declared expectation (exit 0 if it matches, 1 if not, 2 on bad input)")
        {
            scenario, era, seed, plain, mutate, json,
        };
        cmd.SetAction(p =>
        {
            var s = CliContext.LoadScenario(p.GetValue(scenario)!);
            var e = s.EraOrDefault(CliContext.ParseEra(p.GetValue(era)));
            var muts = CliContext.ParseMutations(p.GetValue(mutate));
            var expected = s.ExpectedIn(e);
            if (expected.Kind == ExpectKind.NotApplicable)
            {
                if (p.GetValue(json))
                {
                    cli.Out.WriteLine(Explore.ExploreJson.Document(w =>
                    {
                        w.WriteString("format", ResultPrinter.RunFormat);
                        w.WriteNumber("version", Explore.ExploreJson.Version);
                        w.WriteString("scenario", s.Name);
                        w.WriteString("file", s.File);
                        w.WriteString("era", e.Name);
                        w.WriteString("outcome", "n/a");
                        w.WriteString("expected", expected.ToString());
                        w.WriteBoolean("matches_expectation", true);
                    }));
                    return Program.Ok;
                }
                cli.Out.WriteLine($"scenario   {s.Name}: not applicable in era {e.Name} (expect: n/a)");
                return Program.Ok;
            }
            ulong sd = p.GetValue(seed);
            var sink = new LastStepsSink();
            IStrategy? strategy = p.GetValue(plain) ? null : new RandomStrategy(sd);
            var r = ScenarioRunner.Run(s, e, strategy, new RunOptions { Seed = sd, StepSink = sink, Mutations = muts });
            string how = strategy == null ? $"plain simulation, seed {sd}" : $"random, seed {sd}";
            if (p.GetValue(json)) cli.Out.WriteLine(ResultPrinter.ToJson(ResultPrinter.RunFormat, r, how, w => w.WriteNumber("seed", sd)));
            else ResultPrinter.Print(cli, r, sink, how);
            return r.MatchesExpectation ? Program.Ok : Program.Failed;
        });
        return cmd;
    }
}
