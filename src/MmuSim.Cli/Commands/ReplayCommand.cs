using System.CommandLine;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim replay FILE [--scenario FILE] [--trace-format F] [--trace-out PATH]</c>: re-run a saved counterexample
/// exactly (same scenario, era, mutations and decisions) and show it. Exit 1 when the run ends in a violation (the
/// saved one, reproduced), 0 when it ends clean (the model changed), 2 on a bad file.
/// </summary>
public static class ReplayCommand
{
    public static Command Create(CliContext cli)
    {
        var file = new Argument<string>("trace") { Description = "a trace file written by mmusim explore --out" };
        var scenarioOpt = new Option<string?>("--scenario") { Description = "the scenario file, when the trace names a scenario that is not built in" };
        var format = CounterexampleOutput.FormatOption();
        var traceOut = CounterexampleOutput.TraceOutOption();
        var json = new Option<bool>("--json") { Description = "print the replayed run as JSON on stdout (schema in docs/campaigns.md); no race diagram" };
        var cmd = new Command("replay", "Replay a saved counterexample exactly and show it (race diagram, ftrace or Perfetto JSON)")
        {
            file, scenarioOpt, format, traceOut, json,
        };
        cmd.SetAction(p =>
        {
            string path = p.GetValue(file)!;
            if (!File.Exists(path)) throw new UsageException("trace", $"no such file '{path}'");
            TraceFile t;
            try { t = TraceFile.Load(path); }
            catch (TraceFileException ex) { throw new ScenarioException(ex.File, ex.Line, ex.Field, ex.Detail); }
            var fmt = CounterexampleOutput.ParseFormat(p.GetValue(format));
            // The --scenario file, else the built-in scenario of that name, else the file it was explored from.
            string which = p.GetValue(scenarioOpt)
                ?? (ScenarioLoader.IsBuiltIn(t.Scenario) || t.Source == null || !File.Exists(t.Source) ? t.Scenario : t.Source);
            var s = CliContext.LoadScenario(which);
            var e = t.Era != "-" && EraTable.TryGet(t.Era, out var te) ? te : s.EraOrDefault(null);
            var muts = CliContext.ParseMutations(t.Mutations);
            if (t.Model != TraceFile.ModelVersion)
                cli.Err.WriteLine($"warning: trace written by model {t.Model}, this is {TraceFile.ModelVersion}; the replay may diverge");
            var program = new ScenarioExplorable(s, e, muts, t.Seed);
            string how = $"replay of {path} ({t.Strategy}, iteration {t.Iteration})";
            ReplayResult r;
            if (p.GetValue(json))
            {
                r = Replay.Run(program, t.Decisions, t.Invariant, new KeepRun());
                if (ScenarioExplorable.LastRun is not { } run) throw new InvalidOperationException("replay: the run left no result");
                cli.Out.WriteLine(ResultPrinter.ToJson(ResultPrinter.ReplayFormat, run, how, w =>
                {
                    w.WriteString("trace", path);
                    w.WriteString("trace_strategy", t.Strategy);
                    w.WriteNumber("trace_iteration", t.Iteration);
                    if (t.Invariant != null) w.WriteString("trace_invariant", t.Invariant); else w.WriteNull("trace_invariant");
                    w.WriteNumber("trace_decisions", t.Decisions.Length);
                    w.WriteBoolean("reproduced", r.Reproduced);
                    w.WriteBoolean("diverged", r.Diverged);
                }));
            }
            else r = CounterexampleOutput.Show(cli, program, t.Decisions, t.Invariant, how, fmt, p.GetValue(traceOut));
            if (r.Reproduced) cli.Err.WriteLine($"reproduced: {t.Invariant} after {r.Run.Steps} steps, {t.Decisions.Length} decisions");
            else if (r.Diverged) cli.Err.WriteLine("DIVERGED: the run left the recorded decisions (different model or scenario)");
            else cli.Err.WriteLine($"NOT reproduced: expected {t.Invariant ?? "a violation"}, got {r.Violation?.Invariant ?? "a clean run"}");
            return r.Violation != null ? Program.Failed : Program.Ok;
        });
        return cmd;
    }

    /// <summary>An observer that observes nothing: it only asks the explorable to keep the run's result.</summary>
    sealed class KeepRun : IRunObserver
    {
        public void Attach(Sched.Scheduler s, Kernel? k) { }

        public void Detach(Sched.Scheduler s, Kernel? k) { }
    }
}
