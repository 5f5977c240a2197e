using System.CommandLine;
using MmuSim.Scenarios;
using Spectre.Console;

namespace MmuSim.Cli.Commands;

/// <summary><c>mmusim list</c>: built-in scenario names, one per line, then a table with details.</summary>
public static class ListCommand
{
    public static Command Create(CliContext cli)
    {
        var namesOnly = new Option<bool>("--names") { Description = "print only the names" };
        var cmd = new Command("list", "List the built-in scenarios: one name per line, then details") { namesOnly };
        cmd.SetAction(p =>
        {
            foreach (var n in ScenarioLoader.BuiltInNames) cli.Out.WriteLine(n);
            if (p.GetValue(namesOnly)) return Program.Ok;
            // Details, one table per group: the top level, then each folder (selftests/hmm/... : ported upstream selftests).
            foreach (var group in ScenarioLoader.BuiltInNames.GroupBy(GroupOf, StringComparer.Ordinal))
            {
                var names = group.ToList();
                cli.Out.WriteLine();
                cli.Out.WriteLine(group.Key.Length == 0 ? $"built-in scenarios ({names.Count})" : $"{group.Key}/ ({names.Count})");
                var t = new Table().Border(TableBorder.Simple)
                    .AddColumn("scenario").AddColumn("era").AddColumn("threads").AddColumn("expect").AddColumn("description");
                foreach (var n in names)
                {
                    var s = ScenarioLoader.LoadBuiltIn(n);
                    var desc = s.Description.Trim();
                    int dot = desc.IndexOf(". ", StringComparison.Ordinal);
                    if (dot > 0) desc = desc[..(dot + 1)];
                    t.AddRow(Markup.Escape(group.Key.Length == 0 ? n : n[(group.Key.Length + 1)..]), s.DefaultEra?.Name ?? "-", $"{s.Threads.Count}+{s.Daemons.Count}d",
                        Markup.Escape(s.Expect.ToString()), Markup.Escape(desc));
                }
                cli.WriteTable(t);
            }
            return Program.Ok;
        });
        return cmd;
    }

    /// <summary>The folder part of a built-in name ("" for the top level).</summary>
    static string GroupOf(string name) => name.LastIndexOf('/') is > 0 and var i ? name[..i] : "";
}
