using MmuSim.Eras;
using MmuSim.Scenarios;
using Spectre.Console;

namespace MmuSim.Cli;

/// <summary>Bad command-line input: printed as <c>mmusim: FIELD: message</c>, exit 2.</summary>
public sealed class UsageException(string field, string message) : Exception(message)
{
    public string Field { get; } = field;
}

/// <summary>The streams a command writes to, and helpers shared by the commands.</summary>
public sealed class CliContext(TextWriter stdout, TextWriter stderr)
{
    public TextWriter Out { get; } = stdout;

    public TextWriter Err { get; } = stderr;

    /// <summary>stderr is a terminal: show live progress there.</summary>
    public bool InteractiveErr => ReferenceEquals(Err, Console.Error) && !Console.IsErrorRedirected;

    bool OutIsTerminal => ReferenceEquals(Out, Console.Out) && !Console.IsOutputRedirected;

    /// <summary>A Spectre console over stdout: plain text (no colour, fixed width) unless stdout is a terminal.</summary>
    public IAnsiConsole OutConsole()
    {
        if (OutIsTerminal) return AnsiConsole.Console;
        var c = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(Out),
        });
        c.Profile.Width = 200;
        return c;
    }

    /// <summary>
    /// Write a table to stdout. On a terminal Spectre renders it; redirected, it is rendered as plain ASCII with no
    /// trailing padding and no blank lines around it, so that the output diffs and greps well.
    /// </summary>
    public void WriteTable(Table table, int width = 200)
    {
        if (OutIsTerminal)
        {
            AnsiConsole.Console.Write(table);
            return;
        }
        var sw = new StringWriter();
        var c = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(sw),
        });
        c.Profile.Width = width;
        c.Write(table);
        var lines = sw.ToString().ReplaceLineEndings("\n").Split('\n').Select(l => l.TrimEnd()).ToList();
        while (lines.Count > 0 && lines[0].Length == 0) lines.RemoveAt(0);
        while (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        foreach (var l in lines) Out.WriteLine((l.StartsWith("  ", StringComparison.Ordinal) ? l[2..] : l).Replace('─', '-'));
    }

    /// <summary>A Spectre console over stderr, for progress bars (only when <see cref="InteractiveErr"/>).</summary>
    public IAnsiConsole ErrConsole() => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Ansi = AnsiSupport.Detect,
        ColorSystem = ColorSystemSupport.Detect,
        Interactive = InteractionSupport.Detect,
        Out = new AnsiConsoleOutput(Err),
    });

    /// <summary>A scenario file, or a built-in scenario by name.</summary>
    public static Scenario LoadScenario(string fileOrName)
    {
        if (File.Exists(fileOrName)) return ScenarioLoader.Load(fileOrName);
        if (ScenarioLoader.IsBuiltIn(fileOrName)) return ScenarioLoader.LoadBuiltIn(fileOrName);
        if (fileOrName.EndsWith(".yaml", StringComparison.Ordinal) || fileOrName.EndsWith(".yml", StringComparison.Ordinal) || fileOrName.Contains('/'))
            throw new UsageException("scenario", $"no such file '{fileOrName}'");
        throw new UsageException("scenario", $"no file or built-in scenario named '{fileOrName}' (see mmusim list)");
    }

    /// <summary>
    /// Write the file named by option <paramref name="option"/> (--out, --trace-out): a missing directory, a full disk or
    /// no permission is bad input, <c>mmusim: --out: cannot write 'PATH': reason</c>, exit 2.
    /// </summary>
    public static void WriteFile(string option, string path, Action<TextWriter> write)
    {
        try
        {
            using var w = new StreamWriter(path, false, new System.Text.UTF8Encoding(false), 1 << 16);
            write(w);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new UsageException(option, $"cannot write '{path}': {e.Message}");
        }
    }

    /// <summary>The --jobs value: at least 1.</summary>
    public static int ParseJobs(int jobs) =>
        jobs >= 1 ? jobs : throw new UsageException("--jobs", $"must be at least 1, got {jobs}");

    /// <summary>The --era value, or null when not given.</summary>
    public static KernelEra? ParseEra(string? name)
    {
        if (name == null) return null;
        return EraTable.TryGet(name, out var e) ? e : throw new UsageException("--era", $"unknown era '{name}' (known: {EraTable.KnownList})");
    }

    /// <summary>The --memory value (sc, lkmm), or null when not given (the scenario's own <c>memory:</c>).</summary>
    public static Lkmm.MemoryModel? ParseMemory(string? name)
    {
        if (name == null) return null;
        return Lkmm.MemoryModels.TryParse(name, out var m) ? m
            : throw new UsageException("--memory", $"unknown memory model '{name}' (known: {Lkmm.MemoryModels.KnownList})");
    }

    public static IReadOnlyList<Mutation> ParseMutations(IEnumerable<string>? names)
    {
        var list = new List<Mutation>();
        foreach (var raw in names ?? [])
            foreach (var n in raw.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                list.Add(Mutations.TryParse(n, out var m) ? m
                    : throw new UsageException("--mutate", $"unknown mutation '{n}' (known: {Mutations.KnownList})"));
        return list;
    }

    public static string FormatNs(long ns) => ns switch
    {
        < 10_000 => $"{ns} ns",
        < 10_000_000 => $"{ns / 1e3:0.###} us ({ns} ns)",
        < 10_000_000_000 => $"{ns / 1e6:0.###} ms ({ns} ns)",
        _ => $"{ns / 1e9:0.###} s ({ns} ns)",
    };
}
