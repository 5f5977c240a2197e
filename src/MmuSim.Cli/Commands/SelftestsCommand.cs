using System.CommandLine;
using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim selftests [PREFIX|DIR ...] [--eras LIST] [--format text|tap|junit|json] [--mutate M] [--jobs N]</c>: run the
/// ported upstream selftests (built-in scenarios under <c>selftests/</c>, a prefix of them, or every scenario file of a
/// folder) in 6.13 and in the oldest era each applies to, one plain simulation per case, each compared with the era's
/// declared outcome. Exit 0 when every case meets it, 1 when one does not, 3 when the model threw.
/// </summary>
public static class SelftestsCommand
{
    public static readonly string[] Formats = ["text", "tap", "junit", "json"];

    public static Command Create(CliContext cli)
    {
        var what = new Argument<string[]>("suite")
        {
            Description = "built-in name prefixes (selftests/cow, selftests/kvm/dirty_log_test) or folders of scenario files; default: selftests/",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var eras = new Option<string?>("--eras") { Description = "comma-separated eras or era sets (6.13,5.5, 4.13+, all); default: 6.13 and each case's oldest applicable era" };
        var format = new Option<string?>("--format") { Description = "output: " + string.Join("|", Formats) + " (default text)" };
        var jobs = new Option<int>("--jobs", "-j") { Description = "cases run in parallel (default: cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var mutate = new Option<string[]>("--mutate") { Description = "turn on a mutation switch in every case (repeatable): " + Mutations.KnownList };
        var cmd = new Command("selftests", "Run the ported kernel selftests (selftests/...) as a suite in 6.13 and each case's oldest era; text, TAP or JUnit for CI; exit 1 if a case fails")
        {
            what, eras, format, jobs, mutate,
        };
        cmd.SetAction(p =>
        {
            string fmt = p.GetValue(format) ?? "text";
            if (!Formats.Contains(fmt)) throw new UsageException("--format", $"unknown format '{fmt}' (known: {string.Join(", ", Formats)})");
            int parallel = CliContext.ParseJobs(p.GetValue(jobs));
            IReadOnlyList<KernelEra>? eraList = null;
            if (p.GetValue(eras) is { Length: > 0 } es)
            {
                if (es == "all") eraList = EraTable.All;
                else
                {
                    var set = EraSet.TryParse(es, out var bad) ?? throw new UsageException("--eras", $"unknown era '{bad}' (known: {EraTable.KnownList})");
                    eraList = EraTable.All.Where(set.Contains).ToList();
                }
            }
            var scenarios = Select(p.GetValue(what) ?? []);
            var report = SelftestSuite.Run(scenarios, eraList, parallel, CliContext.ParseMutations(p.GetValue(mutate)));
            cli.Out.Write(fmt switch
            {
                "tap" => SelftestSuite.ToTap(report),
                "junit" => SelftestSuite.ToJUnit(report),
                "json" => SelftestSuite.ToJson(report) + "\n",
                _ => SelftestSuite.ToText(report),
            });
            if (report.Count(SelftestStatus.Error) > 0) return Program.InternalError;
            return report.Count(SelftestStatus.Fail) > 0 ? Program.Failed : Program.Ok;
        });
        return cmd;
    }

    /// <summary>The scenarios named by the arguments: built-in prefixes, folders (every .yaml, sorted) or files.</summary>
    static List<Scenario> Select(string[] args)
    {
        if (args.Length == 0) args = ["selftests/"];
        var list = new List<Scenario>();
        foreach (var a in args)
        {
            if (Directory.Exists(a))
            {
                var files = Directory.GetFiles(a, "*.yaml", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
                if (files.Count == 0) throw new UsageException("suite", $"no .yaml scenario files in '{a}'");
                list.AddRange(files.Select(f => ScenarioLoader.Load(f)));
                continue;
            }
            if (File.Exists(a)) { list.Add(ScenarioLoader.Load(a)); continue; }
            var names = ScenarioLoader.BuiltInNames.Where(n => n.StartsWith(a, StringComparison.Ordinal)).ToList();
            if (names.Count == 0)
                throw new UsageException("suite", $"no built-in scenario starts with '{a}' and no such folder (see mmusim list; e.g. selftests/cow)");
            list.AddRange(names.Select(n => ScenarioLoader.LoadBuiltIn(n)));
        }
        return list;
    }
}
