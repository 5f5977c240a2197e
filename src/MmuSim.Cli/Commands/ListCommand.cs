using System.CommandLine;
using MmuSim.Scenarios;
using Spectre.Console;

namespace MmuSim.Cli.Commands;

/// <summary><c>mmusim list</c>: built-in scenario names, one per line, then a table with details.</summary>
public static class ListCommand
{
    /// <summary>The folder part of a built-in name (<c>selftests/cow</c> for <c>selftests/cow/iouring-fork-base</c>), or "".</summary>
    static string GroupOf(string name)
    {
        int slash = name.LastIndexOf('/');
        return slash < 0 ? "" : name[..slash];
    }

    public static Command Create(CliContext cli)
    {
        var namesOnly = new Option<bool>("--names") { Description = "print only the names" };
        var cmd = new Command("list", "List the built-in scenarios: one name per line, then details") { namesOnly };
        cmd.SetAction(p =>
        {
            foreach (var n in ScenarioLoader.BuiltInNames) cli.Out.WriteLine(n);
            if (p.GetValue(namesOnly)) return Program.Ok;
            cli.Out.WriteLine();
            // Grouped by path prefix (selftests/cow/...): one table per group, the scenarios at the top level first.
            foreach (var group in ScenarioLoader.BuiltInNames.GroupBy(GroupOf).OrderBy(g => g.Key.Length == 0 ? "" : "~" + g.Key, StringComparer.Ordinal))
            {
                if (group.Key.Length > 0) cli.Out.WriteLine($"{group.Key}/ ({group.Count()} scenarios)");
                var t = new Table().Border(TableBorder.Simple)
                    .AddColumn("scenario").AddColumn("era").AddColumn("threads").AddColumn("expect").AddColumn("description");
                foreach (var n in group)
                {
                    var s = ScenarioLoader.LoadBuiltIn(n);
                    var desc = s.Description.Trim();
                    int dot = desc.IndexOf(". ", StringComparison.Ordinal);
                    if (dot > 0) desc = desc[..(dot + 1)];
                    t.AddRow(Markup.Escape(group.Key.Length > 0 ? n[(group.Key.Length + 1)..] : n), s.DefaultEra?.Name ?? "-",
                        $"{s.Threads.Count}+{s.Daemons.Count}d", Markup.Escape(s.Expect.ToString()), Markup.Escape(desc));
                }
                cli.WriteTable(t);
            }
            return Program.Ok;
        });
        return cmd;
    }
}
