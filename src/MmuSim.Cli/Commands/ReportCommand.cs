using System.CommandLine;
using MmuSim.Cli.Report;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim report --out DIR [--history FILE] [--experiment FILE ...] [--mutants FILE] [--bench FILE ...]</c>: one
/// self-contained HTML page (DIR/index.html) from the JSON the other commands print (history --json, experiment --json,
/// mutants --json) and benchmark text files. The page needs no network: the charting libraries are embedded.
/// </summary>
public static class ReportCommand
{
    public static Command Create(CliContext cli)
    {
        var outDir = new Option<string?>("--out") { Description = "directory to write index.html into (created if missing)" };
        var history = new Option<string?>("--history") { Description = "output of mmusim history --json" };
        var experiments = new Option<string[]>("--experiment") { Description = "output of mmusim experiment NAME --json (repeatable)" };
        var mutants = new Option<string?>("--mutants") { Description = "output of mmusim mutants --json" };
        var bench = new Option<string[]>("--bench") { Description = "a benchmark text file to show (repeatable; e.g. bench/realkvm/output-6.18.txt)" };
        var cmd = new Command("report", "Write one self-contained HTML page with the history matrix, experiment plots, mutation score and benchmark figures")
        {
            outDir, history, experiments, mutants, bench,
        };
        cmd.SetAction(p =>
        {
            var dir = p.GetValue(outDir) ?? throw new UsageException("--out", "give the directory to write the report into");
            var inputs = new ReportInputs
            {
                History = p.GetValue(history) is { } h ? HtmlReport.ReadJson(h, "--history") : null,
                Experiments = (p.GetValue(experiments) ?? []).Select(e => HtmlReport.ReadJson(e, "--experiment")).ToList(),
                Mutants = p.GetValue(mutants) is { } m ? HtmlReport.ReadJson(m, "--mutants") : null,
                Bench = (p.GetValue(bench) ?? []).Select(b => File.Exists(b)
                    ? (Path.GetFileName(b), Scenarios.ScenarioLoader.ReadText(b, "--bench"))
                    : throw new UsageException("--bench", $"no such file '{b}'")).ToList(),
            };
            if (inputs.History == null && inputs.Experiments.Count == 0 && inputs.Mutants == null && inputs.Bench.Count == 0)
                throw new UsageException("report", "nothing to report: give --history, --experiment, --mutants or --bench");
            var page = HtmlReport.Build(inputs);
            HtmlReport.EnsureDir("--out", dir);
            string path = Path.Combine(dir, "index.html");
            CliContext.WriteFile("--out", path, w => w.Write(page));
            cli.Out.WriteLine($"wrote {path} ({page.Length / 1024} KiB)");
            return Program.Ok;
        });
        return cmd;
    }
}
