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
        root.Subcommands.Add(ExperimentCommand.Create(cli));
        root.Subcommands.Add(ReportCommand.Create(cli));
        root.Subcommands.Add(MergeCommand.Create(cli));
        root.Subcommands.Add(LitmusCommand.Create(cli));
        root.Subcommands.Add(SelftestsCommand.Create(cli));
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
            stderr.WriteLine($"mmusim: {PlainError(OneLine(parse.Errors[0].Message), args, root)}");
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

    /// <summary>
    /// System.CommandLine's parse error in plain words: "unknown command 'foo' (commands: run, list, ...)", "--iterations:
    /// 'abc' is not a whole number"; an unknown message passes through with a pointer to --help.
    /// </summary>
    public static string PlainError(string message, string[] args, RootCommand root)
    {
        string commands = string.Join(", ", root.Subcommands.Select(c => c.Name));
        string? first = args.FirstOrDefault(a => !a.StartsWith('-'));
        var cmd = first == null ? null : root.Subcommands.FirstOrDefault(c => c.Name == first || c.Aliases.Contains(first));
        string help = cmd != null ? $"see mmusim {cmd.Name} --help" : "see mmusim --help";
        if (message.StartsWith("Required command was not provided", StringComparison.Ordinal))
            return first == null || cmd == null && args.Length == 0
                ? $"no command given (commands: {commands})"
                : $"unknown command '{first}' (commands: {commands})";
        var m = System.Text.RegularExpressions.Regex.Match(message, @"^Cannot parse argument '(.*)' for (?:option|argument) '(.*)' as expected type '([\w.]+)'");
        if (m.Success)
        {
            string what = m.Groups[3].Value switch
            {
                "System.Int32" or "System.Int64" or "System.UInt64" or "System.UInt32" => "a whole number",
                "System.Double" or "System.Single" or "System.Decimal" => "a number",
                "System.Boolean" => "true or false",
                var t => "a " + t[(t.LastIndexOf('.') + 1)..].ToLowerInvariant(),
            };
            return $"{m.Groups[2].Value}: '{m.Groups[1].Value}' is not {what}";
        }
        m = System.Text.RegularExpressions.Regex.Match(message, @"^Unrecognized command or argument '(.*)'");
        if (m.Success)
        {
            if (cmd == null) return $"unknown command '{m.Groups[1].Value}' (commands: {commands})";
            return m.Groups[1].Value.StartsWith('-')
                ? $"{cmd.Name}: unknown option '{m.Groups[1].Value}' ({help})"
                : $"{cmd.Name}: unexpected argument '{m.Groups[1].Value}' ({help})";
        }
        m = System.Text.RegularExpressions.Regex.Match(message, @"^Required argument missing for command: '(.*)'");
        if (m.Success)
        {
            var c = root.Subcommands.FirstOrDefault(x => x.Name == m.Groups[1].Value);
            string names = c == null ? "" : string.Join(" ", c.Arguments.Select(a => a.Name.ToUpperInvariant()));
            return $"{m.Groups[1].Value}: missing argument{(names.Length > 0 ? " " + names : "")} ({help})";
        }
        m = System.Text.RegularExpressions.Regex.Match(message, @"^Required argument missing for option: '(.*)'");
        if (m.Success) return $"{m.Groups[1].Value}: needs a value ({help})";
        return $"{message.TrimEnd('.')} ({help})";
    }

    static string OneLine(string s)
    {
        int nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }
}
