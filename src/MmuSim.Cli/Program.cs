using System.CommandLine;
using MmuSim.Cli.Commands;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Cli;

/// <summary>
/// The <c>mmusim</c> command. Exit codes: 0 = expectation met / explored clean; 1 = violation found or expectation
/// contradicted; 2 = bad input or usage (one line on stderr, <c>file:line: field: message</c>, never a stack trace);
/// 3 = an internal model error (a bug in MmuSim itself).
/// </summary>
public static class Program
{
    public const int Ok = 0, Failed = 1, BadInput = 2, InternalError = 3;

    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Run the CLI with the given streams (tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var cli = new CliContext(stdout, stderr);
        var root = new RootCommand("MmuSim: an executable model of Linux MMU notifiers keeping secondary MMUs (KVM, KSM, IOMMU) coherent");
        root.Subcommands.Add(RunCommand.Create(cli));
        root.Subcommands.Add(ListCommand.Create(cli));
        root.Subcommands.Add(ExploreCommand.Create(cli));
        root.Subcommands.Add(ErasCommand.Create(cli));
        root.Subcommands.Add(OpsCommand.Create(cli));
        root.Subcommands.Add(ReplayCommand.Create(cli));
        root.Subcommands.Add(MutantsCommand.Create(cli));
        root.Subcommands.Add(HistoryCommand.Create(cli));
        foreach (var extra in ExtraCommands) root.Subcommands.Add(extra(cli));

        ParseResult parse;
        try { parse = root.Parse(args); }
        catch (Exception e)
        {
            stderr.WriteLine($"mmusim: {OneLine(e.Message)}");
            return BadInput;
        }
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"mmusim: {OneLine(parse.Errors[0].Message)} (see mmusim --help)");
            return BadInput;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (ScenarioException e)
        {
            stderr.WriteLine(OneLine(e.Message));
            return BadInput;
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"mmusim: {e.Field}: {OneLine(e.Message)}");
            return BadInput;
        }
        catch (Exception e) when (Inner<ScenarioException>(e) is { } se)
        {
            // A run-time op error wrapped by the explorer (or a parallel shard): still bad input.
            stderr.WriteLine(OneLine(se.Message));
            return BadInput;
        }
        catch (Exception e)
        {
            // A bug in MmuSim (or an unmodelled path), not bad input: one line, exit 3; MMUSIM_DEBUG=1 shows the trace.
            stderr.WriteLine($"mmusim: internal model error: {e.GetType().Name}: {OneLine(e.Message)}");
            if (Environment.GetEnvironmentVariable("MMUSIM_DEBUG") == "1") stderr.WriteLine(e);
            return InternalError;
        }
    }

    /// <summary>Commands contributed by other parts (history, replay, mutants...): append a factory.</summary>
    public static readonly List<Func<CliContext, Command>> ExtraCommands = [];

    /// <summary>The first <typeparamref name="T"/> in the chain of inner exceptions (and aggregate members).</summary>
    static T? Inner<T>(Exception? e) where T : Exception
    {
        for (int depth = 0; e != null && depth < 16; depth++)
        {
            if (e is T t) return t;
            if (e is AggregateException ae)
                foreach (var x in ae.InnerExceptions)
                    if (Inner<T>(x) is { } found) return found;
            e = e.InnerException;
        }
        return null;
    }

    static string OneLine(string s)
    {
        int nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }
}
