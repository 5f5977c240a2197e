using System.CommandLine;
using MmuSim.Eras;
using Spectre.Console;

namespace MmuSim.Cli.Commands;

/// <summary><c>mmusim eras</c>: the named eras and the feature x era matrix from Eras/EraTable.cs.</summary>
public static class ErasCommand
{
    public static Command Create(CliContext cli)
    {
        var cmd = new Command("eras", "Print the era table: the named kernel eras, and which behaviour each has");
        cmd.SetAction(_ =>
        {
            var eras = new Table().Border(TableBorder.Simple).AddColumn("era").AddColumn("what changed");
            foreach (var e in EraTable.All) eras.AddRow(Markup.Escape(e.Name), Markup.Escape(e.Summary));
            cli.WriteTable(eras);
            cli.Out.WriteLine();

            // One column per era: keep feature names and era names whole; the matrix is as wide as it needs to be.
            var m = new Table().Border(TableBorder.Simple).AddColumn(new TableColumn("feature").NoWrap());
            foreach (var e in EraTable.All) m.AddColumn(new TableColumn(Markup.Escape(e.Name)).Centered().NoWrap());
            m.AddColumn(new TableColumn("since..until").NoWrap());
            foreach (var f in EraTable.Features)
            {
                var row = new List<string> { f.Feature.ToString() };
                foreach (var e in EraTable.All) row.Add(e.Has(f.Feature) ? "x" : ".");
                row.Add(f.Until == KernelVersion.Max ? $"{f.Since}+" : $"{f.Since}..<{f.Until}");
                m.AddRow(row.Select(Markup.Escape).ToArray());
            }
            cli.WriteTable(m, width: 400);
            return Program.Ok;
        });
        return cmd;
    }
}
