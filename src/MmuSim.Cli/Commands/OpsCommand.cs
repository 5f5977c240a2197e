using System.CommandLine;
using MmuSim.Scenarios;
using Spectre.Console;

namespace MmuSim.Cli.Commands;

/// <summary><c>mmusim ops</c>: every scenario op with its fields, from the op registry.</summary>
public static class OpsCommand
{
    public static Command Create(CliContext cli)
    {
        var cmd = new Command("ops", "List every scenario op (core, KVM, KSM, devices...) with its required and optional fields");
        cmd.SetAction(_ =>
        {
            var t = new Table().Border(TableBorder.Simple).AddColumn("op").AddColumn("required").AddColumn("optional").AddColumn("what it does");
            foreach (var op in OpRegistry.Default.All)
                t.AddRow(Markup.Escape(op.Name), Markup.Escape(string.Join(", ", op.Required)),
                    Markup.Escape(string.Join(", ", op.Optional)), Markup.Escape(op.Summary));
            cli.WriteTable(t);
            return Program.Ok;
        });
        return cmd;
    }
}
