using System.CommandLine;
using MmuSim.Experiments;
using MmuSim.Scenarios;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim experiment NAME|FILE [--json] [--out DIR] [--costs FILE] [--seed S] [-j N]</c>: run an experiment's sweep in
/// plain simulation, parallel over cores, and print its table (or JSON); <c>--out</c> also writes NAME.json and an
/// HTML report. Exit 0 when every run ended as its scenario declares, 1 if not, 2 on bad input.
/// </summary>
public static class ExperimentCommand
{
    public static Command Create(CliContext cli)
    {
        var name = new Argument<string?>("experiment") { Description = "a built-in experiment (" + string.Join(", ", ExperimentLoader.BuiltInNames) + ") or an experiment file (.yaml)", Arity = ArgumentArity.ZeroOrOne };
        var json = new Option<bool>("--json") { Description = "machine-readable output (deterministic for a seed and cost file)" };
        var outDir = new Option<string?>("--out") { Description = "write NAME.json and index.html (the HTML report with this experiment's plots) into DIR" };
        var costs = new Option<string?>("--costs") { Description = "cost model file (YAML or JSON: { machine: ..., costs: { vm-exit: NS, ... } }); default: the calibrated defaults" };
        var seed = new Option<ulong>("--seed") { Description = "seed of the runs' data choices", DefaultValueFactory = _ => 1UL };
        var jobs = new Option<int>("--jobs", "-j") { Description = "runs in parallel (default: cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var list = new Option<bool>("--list") { Description = "list the built-in experiments and their questions" };
        var cmd = new Command("experiment", "Answer a design question with numbers: run an experiment's sweep of scenarios over parameters and eras (plain simulation), print counters, simulated time and savings against the baseline era")
        {
            name, json, outDir, costs, seed, jobs, list,
        };
        cmd.SetAction(p =>
        {
            if (p.GetValue(list))
            {
                foreach (var n in ExperimentLoader.BuiltInNames)
                    cli.Out.WriteLine($"{n,-16} {ExperimentLoader.LoadBuiltIn(n).Question.Split('.')[0].Trim()}.");
                return Program.Ok;
            }
            var arg = p.GetValue(name) ?? throw new UsageException("experiment", $"name an experiment ({string.Join(", ", ExperimentLoader.BuiltInNames)}) or a file");
            var x = Load(arg);
            int j = CliContext.ParseJobs(p.GetValue(jobs));
            var cs = p.GetValue(costs) is { } cf
                ? File.Exists(cf) ? CostSet.Load(cf) : throw new UsageException("--costs", $"no such file '{cf}'")
                : CostSet.Defaults;
            string? dir = p.GetValue(outDir);
            if (dir != null) Report.HtmlReport.EnsureDir("--out", dir);
            Action<int, int>? progress = cli.InteractiveErr ? (d, t) => cli.Err.Write($"\rexperiment {x.Name}: {d}/{t} runs") : null;
            var r = ExperimentRunner.Run(x, p.GetValue(seed), cs, j, progress);
            if (progress != null) cli.Err.WriteLine();
            string jsonText = ExperimentRunner.ToJson(r);
            cli.Out.Write(p.GetValue(json) ? jsonText + "\n" : ExperimentRunner.ToText(r));
            if (dir != null)
            {
                CliContext.WriteFile("--out", Path.Combine(dir, x.Name + ".json"), w => w.Write(jsonText + "\n"));
                var page = Report.HtmlReport.Build(new Report.ReportInputs { Experiments = [jsonText] });
                CliContext.WriteFile("--out", Path.Combine(dir, "index.html"), w => w.Write(page));
                if (!p.GetValue(json)) cli.Out.WriteLine($"wrote {Path.Combine(dir, x.Name + ".json")} and {Path.Combine(dir, "index.html")}");
            }
            return r.AllMatch ? Program.Ok : Program.Failed;
        });
        return cmd;
    }

    static Experiment Load(string arg)
    {
        if (File.Exists(arg)) return ExperimentLoader.Load(arg);
        if (ExperimentLoader.BuiltInNames.Contains(arg)) return ExperimentLoader.LoadBuiltIn(arg);
        if (arg.EndsWith(".yaml", StringComparison.Ordinal) || arg.EndsWith(".yml", StringComparison.Ordinal) || arg.Contains('/'))
            throw new UsageException("experiment", $"no such file '{arg}'");
        throw new UsageException("experiment", $"no file or built-in experiment named '{arg}' (known: {string.Join(", ", ExperimentLoader.BuiltInNames)})");
    }
}
