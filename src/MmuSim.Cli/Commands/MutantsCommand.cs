using System.CommandLine;
using MmuSim.Explore;
using MmuSim.Scenarios;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim mutants [--json | --format tap|junit] [--iterations N] [--time-limit T] [--scenario NAME ...] [--mutant NAME ...]</c>: run every
/// mutation switch against the built-in scenarios (each in its default era, where it is expected to pass) and report which
/// mutants were killed and by what. Exit 0 when every mutant is killed, 1 otherwise.
/// </summary>
public static class MutantsCommand
{
    public static Command Create(CliContext cli)
    {
        var json = new Option<bool>("--json") { Description = "one JSON record per mutant: name, killed, scenario, invariant, time (s), schedules" };
        var format = new Option<string?>("--format") { Description = "output: text|json|tap|junit (default text)" };
        var iterations = new Option<int>("--iterations", "-n") { Description = "schedules per scenario and mutant", DefaultValueFactory = _ => 2000 };
        var timeLimit = new Option<string?>("--time-limit", "-t") { Description = "wall-clock limit per scenario and mutant (e.g. 2s)" };
        var seed = new Option<ulong>("--seed") { Description = "exploration seed", DefaultValueFactory = _ => 1UL };
        var scenarios = new Option<string[]>("--scenario") { Description = "scenario files or built-in names to use (default: every built-in scenario)" };
        var only = new Option<string[]>("--mutant") { Description = "only these mutations (default: all): " + Mutations.KnownList };
        var shardOpt = new Option<string?>("--shard") { Description = "judge shard k of N of the mutants (mutant i of the list in shard (i mod N)+1); prints the shard's JSON for mmusim merge" };
        var cmd = new Command("mutants", "Mutation score: run every mutation switch against the scenarios and report which mutants were killed and by what")
        {
            json, format, iterations, timeLimit, seed, scenarios, only, shardOpt,
        };
        cmd.SetAction(p =>
        {
            string fmt = p.GetValue(format) ?? (p.GetValue(json) ? "json" : "text");
            if (fmt is not ("text" or "json" or "tap" or "junit"))
                throw new UsageException("--format", $"unknown format '{fmt}' (known: text, json, tap, junit)");
            ShardSpec? shard = null;
            if (p.GetValue(shardOpt) is { } shardText)
            {
                shard = ShardSpec.TryParse(shardText, out var why) ?? throw new UsageException("--shard", why);
                if (p.GetValue(format) is { } f && f != "json") throw new UsageException("--shard", $"a shard prints JSON for mmusim merge, not --format {f}");
            }
            var names = p.GetValue(scenarios) is { Length: > 0 } given ? given : ScenarioLoader.BuiltInNames.ToArray();
            var targets = new List<MutationTarget>();
            foreach (var name in names)
            {
                // The litmus tests (docs/memory-model.md) check the memory model, not the notifier: no mutation touches them.
                if (p.GetValue(scenarios) is not { Length: > 0 } && name.StartsWith(Lkmm.LitmusRunner.Prefix, StringComparison.Ordinal)) continue;
                var s = CliContext.LoadScenario(name);
                var era = s.EraOrDefault(null);
                if (s.ExpectedIn(era).Kind != ExpectKind.Pass) continue; // only scenarios that must be clean can kill a mutant
                targets.Add(new MutationTarget($"{s.Name}@{era.Name}", muts => new ScenarioExplorable(s, era, [.. muts], p.GetValue(seed))));
            }
            var mutations = CliContext.ParseMutations(p.GetValue(only)) is { Count: > 0 } chosen ? chosen : Enum.GetValues<Mutation>();
            var budget = new ExploreOptions
            {
                Strategy = new StrategySpec { Kind = StrategyKind.Portfolio, Seed = p.GetValue(seed) },
                Iterations = Math.Max(1, p.GetValue(iterations)),
                TimeLimit = ExploreCommand.ParseDuration(p.GetValue(timeLimit)),
            };
            cli.Err.WriteLine($"mutants: {mutations.Count} mutations x {targets.Count} scenarios, up to {budget.Iterations} schedules each");
            var runner = new MutantRunner(targets, budget)
            {
                Shard = shard,
                OnMutant = m => cli.Err.WriteLine(m.Killed ? $"  {m.Name}: killed by {m.Scenario} ({m.Invariant})" : $"  {m.Name}: survived"),
            };
            var report = runner.Run(mutations);
            bool ok = report.KilledCount == report.Mutants.Count && report.BaselineFailures.Count == 0;
            if (shard is { } sh)
            {
                cli.Out.Write(report.ToShardJson(runner.Config(mutations), sh) + "\n");
                return ok ? Program.Ok : Program.Failed;
            }
            cli.Out.Write(fmt switch
            {
                "json" => report.ToJson() + "\n",
                "tap" => report.ToTap(),
                "junit" => report.ToJUnit(),
                _ => report.ToText(),
            });
            return report.KilledCount == report.Mutants.Count && report.BaselineFailures.Count == 0 ? Program.Ok : Program.Failed;
        });
        return cmd;
    }
}
