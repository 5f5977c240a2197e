using System.Globalization;
using System.Reflection;
using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// The saved form of a counterexample: a versioned, line-oriented text file. Header lines are <c>key value</c>
/// (format version first, then model version, scenario, era, mutations, seed, strategy, iteration and the violation),
/// a line <c>--</c>, then one decision per line: a bare context id for a scheduling decision, <c>d VALUE</c> for a data
/// choice, and <c>end</c>. Lines starting with <c>#</c> are comments.
/// </summary>
/// <example>
/// <code>
/// mmusim-trace 1
/// model 1.0.0+4f3c2a1
/// scenario invalidate-page-after-ptl
/// source builtin/invalidate-page-after-ptl.yaml
/// era 4.10
/// mutations -
/// seed 42
/// strategy pct(seed=42,depth=3,k=118)
/// iteration 17
/// violation stale-translation
/// message secondary maps pfn 0x12 at 0x10000 but the primary PTE is none
/// steps 1234
/// preemptions 1
/// decisions 3
/// --
/// 0
/// 1
/// d 2
/// end
/// </code>
/// </example>
public sealed class TraceFile
{
    /// <summary>Version of this file layout; readers reject newer versions.</summary>
    public const int FormatVersion = 1;

    public const string Magic = "mmusim-trace";

    /// <summary>Version of the model that wrote a trace (the MmuSim.Model assembly's informational version).</summary>
    public static string ModelVersion { get; } =
        typeof(Kernel).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(Kernel).Assembly.GetName().Version?.ToString() ?? "0";

    public int Format { get; init; } = FormatVersion;
    public string Model { get; init; } = ModelVersion;
    public required string Scenario { get; init; }

    /// <summary>Where the scenario came from (a file path or <c>builtin/NAME.yaml</c>), when known.</summary>
    public string? Source { get; init; }
    public string Era { get; init; } = "-";
    public IReadOnlyList<string> Mutations { get; init; } = [];
    public ulong Seed { get; init; }
    public string Strategy { get; init; } = "-";
    public int Iteration { get; init; }
    public string? Invariant { get; init; }
    public string? Message { get; init; }
    public long Steps { get; init; }
    public int Preemptions { get; init; }
    public required (byte Kind, int Value)[] Decisions { get; init; }

    public ExplorableInfo Info => new(Scenario, Era, Mutations);

    public static TraceFile From(Counterexample c, string? source = null) => new()
    {
        Scenario = c.Info.Scenario,
        Source = source,
        Era = c.Info.Era,
        Mutations = c.Info.Mutations,
        Seed = c.Seed,
        Strategy = c.Strategy,
        Iteration = c.Iteration,
        Invariant = c.Violation.Invariant,
        Message = c.Violation.Message,
        Steps = c.Steps,
        Preemptions = c.Preemptions,
        Decisions = c.Decisions,
    };

    public void Save(string path)
    {
        using var w = new StreamWriter(path, false, new System.Text.UTF8Encoding(false), 1 << 16);
        Write(w);
    }

    public void Write(TextWriter w)
    {
        w.Write(Magic); w.Write(' '); w.WriteLine(Format.ToString(CultureInfo.InvariantCulture));
        Line("model", Model);
        Line("scenario", Scenario);
        if (Source != null) Line("source", Source);
        Line("era", Era);
        Line("mutations", Mutations.Count == 0 ? "-" : string.Join(",", Mutations));
        Line("seed", Seed.ToString(CultureInfo.InvariantCulture));
        Line("strategy", Strategy);
        Line("iteration", Iteration.ToString(CultureInfo.InvariantCulture));
        if (Invariant != null) Line("violation", Invariant);
        if (Message != null) Line("message", Message);
        Line("steps", Steps.ToString(CultureInfo.InvariantCulture));
        Line("preemptions", Preemptions.ToString(CultureInfo.InvariantCulture));
        Line("decisions", Decisions.Length.ToString(CultureInfo.InvariantCulture));
        w.WriteLine("--");
        Span<char> buf = stackalloc char[16];
        foreach (var (kind, value) in Decisions)
        {
            if (kind == DecisionLog.DataKind) w.Write("d ");
            value.TryFormat(buf, out int n, default, CultureInfo.InvariantCulture);
            w.Write(buf[..n]);
            w.Write('\n');
        }
        w.WriteLine("end");

        void Line(string key, string value)
        {
            w.Write(key);
            w.Write(' ');
            w.WriteLine(value.Replace("\r", "").Replace("\n", "\\n"));
        }
    }

    public override string ToString()
    {
        var sw = new StringWriter();
        Write(sw);
        return sw.ToString();
    }

    public static TraceFile Load(string path)
    {
        return Read(new StringReader(Scenarios.ScenarioLoader.ReadText(path, "trace")), path);
    }

    public static TraceFile Parse(string text, string name = "<string>") => Read(new StringReader(text), name);

    /// <summary>Parse a trace; errors name the file and line (<see cref="TraceFileException"/>).</summary>
    public static TraceFile Read(TextReader r, string name)
    {
        int lineNo = 0;
        string? line = NextLine();
        if (line == null || !line.StartsWith(Magic + " ", StringComparison.Ordinal))
            throw new TraceFileException(name, lineNo, $"not an MmuSim trace (expected '{Magic} {FormatVersion}')");
        if (!int.TryParse(line.AsSpan(Magic.Length + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int format))
            throw new TraceFileException(name, lineNo, "bad format version");
        if (format > FormatVersion)
            throw new TraceFileException(name, lineNo, $"trace format {format} is newer than this mmusim ({FormatVersion})");

        var header = new Dictionary<string, string>(StringComparer.Ordinal);
        while ((line = NextLine()) != null && line != "--")
        {
            int sp = line.IndexOf(' ');
            if (sp <= 0) throw new TraceFileException(name, lineNo, $"expected 'key value', got '{(line.Length > 80 ? line[..80] + "..." : line)}'");
            var key = line[..sp];
            header[key] = line[(sp + 1)..].Replace("\\n", "\n");
            // The era and mutations are checked here, so that a bad one names this file and line (not --era or --mutate).
            if (key == "era" && header[key] != "-" && !Eras.EraTable.TryGet(header[key], out _))
                throw new TraceFileException(name, lineNo, $"unknown era '{header[key]}' (known: {Eras.EraTable.KnownList})", "era");
            if (key == "mutations" && header[key] is not ("-" or ""))
                foreach (var m in header[key].Split(','))
                    if (!MmuSim.Mutations.TryParse(m, out _))
                        throw new TraceFileException(name, lineNo, $"unknown mutation '{m}' (known: {MmuSim.Mutations.KnownList})", "mutations");
        }
        if (line == null) throw new TraceFileException(name, lineNo, "missing '--' before the decisions");
        if (!header.TryGetValue("scenario", out var scenario)) throw new TraceFileException(name, lineNo, "header has no 'scenario'");

        int expected = header.TryGetValue("decisions", out var dn) && int.TryParse(dn, NumberStyles.None, CultureInfo.InvariantCulture, out var e) ? e : -1;
        var decisions = new List<(byte, int)>(expected > 0 ? Math.Min(expected, 1 << 16) : 256);
        bool ended = false;
        while ((line = NextLine()) != null)
        {
            if (line == "end") { ended = true; break; }
            var span = line.AsSpan();
            byte kind = DecisionLog.SchedKind;
            if (span.StartsWith("d "))
            {
                kind = DecisionLog.DataKind;
                span = span[2..];
            }
            if (!int.TryParse(span, NumberStyles.None, CultureInfo.InvariantCulture, out int v))
                throw new TraceFileException(name, lineNo, $"bad decision '{line}' (expected a context id or 'd VALUE')");
            decisions.Add((kind, v));
        }
        if (!ended) throw new TraceFileException(name, lineNo, "truncated trace: no 'end' line");
        if (expected >= 0 && expected != decisions.Count)
            throw new TraceFileException(name, lineNo, $"header says {expected} decisions, file has {decisions.Count}");

        return new TraceFile
        {
            Format = format,
            Model = header.GetValueOrDefault("model", "?"),
            Scenario = scenario,
            Source = header.GetValueOrDefault("source"),
            Era = header.GetValueOrDefault("era", "-"),
            Mutations = header.GetValueOrDefault("mutations", "-") is "-" or "" ? [] : header["mutations"].Split(','),
            Seed = ulong.TryParse(header.GetValueOrDefault("seed", "0"), NumberStyles.None, CultureInfo.InvariantCulture, out var seed) ? seed : 0,
            Strategy = header.GetValueOrDefault("strategy", "-"),
            Iteration = int.TryParse(header.GetValueOrDefault("iteration", "0"), NumberStyles.None, CultureInfo.InvariantCulture, out var it) ? it : 0,
            Invariant = header.GetValueOrDefault("violation"),
            Message = header.GetValueOrDefault("message"),
            Steps = long.TryParse(header.GetValueOrDefault("steps", "0"), NumberStyles.None, CultureInfo.InvariantCulture, out var st) ? st : 0,
            Preemptions = int.TryParse(header.GetValueOrDefault("preemptions", "0"), NumberStyles.None, CultureInfo.InvariantCulture, out var pr) ? pr : 0,
            Decisions = [.. decisions],
        };

        string? NextLine()
        {
            string? l;
            do
            {
                l = r.ReadLine();
                lineNo++;
            }
            while (l != null && (l.Length == 0 || l[0] == '#'));
            return l;
        }
    }
}

/// <summary>A malformed trace file: <c>file:line: message</c>.</summary>
public sealed class TraceFileException(string file, int line, string message, string field = "trace")
    : FormatException($"{file}:{line}: {field}: {message}")
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public string Field { get; } = field;
    public string Detail { get; } = message;
}
