using System.CommandLine;
using MmuSim.Explore;
using MmuSim.Trace;

namespace MmuSim.Cli.Commands;

/// <summary>The ways a counterexample is shown: a race diagram, Linux ftrace text, or Perfetto/Chrome JSON.</summary>
public enum TraceFormat { Diagram, Ftrace, Perfetto }

/// <summary>Options and printing shared by <c>explore</c> and <c>replay</c>: replay a counterexample with a trace collector and render it.</summary>
public static class CounterexampleOutput
{
    public static Option<string> FormatOption() => new("--trace-format")
    {
        Description = "how to show the counterexample: diagram (CPU-column race diagram, stdout), ftrace " +
                      "(/sys/kernel/tracing/trace text with tracing_mark_write slices, opens in Perfetto), perfetto (Chrome JSON trace events)",
        DefaultValueFactory = _ => "diagram",
    };

    public static Option<string?> TraceOutOption() => new("--trace-out")
    {
        Description = "write the ftrace/perfetto output to this file instead of stdout",
    };

    public static TraceFormat ParseFormat(string? s) => s?.Trim().ToLowerInvariant() switch
    {
        null or "diagram" => TraceFormat.Diagram,
        "ftrace" => TraceFormat.Ftrace,
        "perfetto" or "json" => TraceFormat.Perfetto,
        _ => throw new UsageException("--trace-format", $"unknown format '{s}' (known: diagram, ftrace, perfetto)"),
    };

    /// <summary>Replay <paramref name="decisions"/> with a collector; print the run's report and the chosen rendering.</summary>
    public static ReplayResult Show(CliContext cli, ScenarioExplorable program, IReadOnlyList<(byte Kind, int Value)> decisions,
        string? invariant, string how, TraceFormat format, string? traceOut)
    {
        var collector = new TraceCollector { Title = $"{program.Info.Scenario} (era {program.Info.Era})" };
        var r = Replay.Run(program, decisions, invariant, collector);
        if (ScenarioExplorable.LastRun is { } run) ResultPrinter.Print(cli, run, null, how);
        switch (format)
        {
            case TraceFormat.Diagram:
                var d = RaceDiagram.Build(collector);
                cli.Out.WriteLine();
                cli.Out.WriteLine("race diagram (shrunk counterexample, one column per CPU):");
                cli.Out.Write(d.ToString());
                break;
            case TraceFormat.Ftrace:
                Write(cli, traceOut, w => FtraceWriter.Write(collector, w));
                break;
            case TraceFormat.Perfetto:
                Write(cli, traceOut, w => w.Write(PerfettoJsonWriter.Write(collector)));
                break;
        }
        return r;
    }

    static void Write(CliContext cli, string? path, Action<TextWriter> write)
    {
        if (path == null)
        {
            write(cli.Out);
            return;
        }
        CliContext.WriteFile("--trace-out", path, write);
        cli.Err.WriteLine($"trace written to {path}");
    }
}
