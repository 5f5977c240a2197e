using System.CommandLine;
using MmuSim.Lkmm;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim litmus</c>: the LKMM litmus tests ported as scenarios (litmus/NAME), each explored exhaustively; prints
/// test, documented result, MmuSim's result, agreement (docs/memory-model.md). Exit 0 iff every row agrees.
/// </summary>
public static class LitmusCommand
{
    public static Command Create(CliContext cli)
    {
        var tests = new Argument<string[]>("tests") { Description = "litmus tests (default: all built-in litmus/ scenarios)", Arity = ArgumentArity.ZeroOrMore };
        var memory = new Option<string?>("--memory") { Description = "memory model (sc, lkmm); default: each test's own (lkmm)" };
        var timeLimit = new Option<string?>("--time-limit", "-t") { Description = "wall-clock limit per test, e.g. 30s (default none)" };
        var cmd = new Command("litmus", "Run the LKMM litmus tests exhaustively and compare with their documented results") { tests, memory, timeLimit };
        cmd.SetAction(p =>
        {
            var model = CliContext.ParseMemory(p.GetValue(memory));
            var limit = ExploreCommand.ParseDuration(p.GetValue(timeLimit));
            var names = p.GetValue(tests) is { Length: > 0 } given
                ? given.Select(n => n.StartsWith(LitmusRunner.Prefix, StringComparison.Ordinal) ? n : LitmusRunner.Prefix + n).ToArray()
                : LitmusRunner.Names.ToArray();
            var rows = new List<LitmusRow>();
            foreach (var n in names)
            {
                if (!LitmusRunner.Names.Contains(n))
                    throw new UsageException("tests", $"no litmus test '{n[LitmusRunner.Prefix.Length..]}' (known: {string.Join(", ", LitmusRunner.Names.Select(x => x[LitmusRunner.Prefix.Length..]))})");
                rows.Add(LitmusRunner.Run(CliContext.LoadScenario(n), model, limit: limit));
            }
            int w = Math.Max(4, rows.Max(r => r.Test.Length));
            cli.Out.WriteLine($"{"test".PadRight(w)}  documented  mmusim     agree  schedules");
            foreach (var r in rows)
                cli.Out.WriteLine($"{r.Test.PadRight(w)}  {r.Documented,-10}  {r.Found,-9}  {(r.Agrees ? "yes" : "NO"),-5}  {r.Schedules}");
            int agree = rows.Count(r => r.Agrees);
            cli.Out.WriteLine($"{agree}/{rows.Count} agree (memory {(model is { } m ? MemoryModels.NameOf(m) : "lkmm")}, exhaustive dfs)");
            return agree == rows.Count ? Program.Ok : Program.Failed;
        });
        return cmd;
    }
}
