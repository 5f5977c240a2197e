using MmuSim.Mm;

namespace MmuSim.Scenarios;

/// <summary>
/// Bad input in a scenario: reported as one line <c>file:line: field: message</c> and exit code 2, never a stack trace.
/// Thrown at load time (validation) or at run time by an op (e.g. a gfn outside every memslot).
/// </summary>
public sealed class ScenarioException(string file, int line, string field, string message)
    : Exception($"{file}:{line}: {field}: {message}")
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public string Field { get; } = field;
    public string Detail { get; } = message;
}

/// <summary>
/// The arguments of one op as written in the scenario, with its source position. Typed getters raise
/// <see cref="ScenarioException"/> naming the file, line and field.
/// </summary>
public sealed class OpArgs
{
    readonly Dictionary<string, (string Value, int Line)> _values;

    public OpArgs(string op, string file, int line, Dictionary<string, (string Value, int Line)> values)
    {
        Op = op;
        File = file;
        Line = line;
        _values = values;
    }

    public string Op { get; }
    public string File { get; }
    public int Line { get; }
    public IEnumerable<string> Keys => _values.Keys;

    public bool Has(string key) => _values.ContainsKey(key);

    public ScenarioException Error(string key, string message) =>
        new(File, _values.TryGetValue(key, out var v) ? v.Line : Line, $"{Op}.{key}", message);

    public string GetString(string key, string? def = null)
    {
        if (_values.TryGetValue(key, out var v)) return v.Value;
        return def ?? throw Error(key, "required field is missing");
    }

    /// <summary>Unsigned integer: decimal, 0x hex, or with a K/M/G suffix (1024-based).</summary>
    public ulong GetULong(string key, ulong? def = null)
    {
        if (!_values.TryGetValue(key, out var v))
            return def ?? throw Error(key, "required field is missing");
        if (TryParseULong(v.Value, out var r)) return r;
        throw Error(key, $"'{v.Value}' is not a number");
    }

    /// <summary>An unsigned integer in [<paramref name="min"/>, <paramref name="max"/>] (the loader's shared bound check).</summary>
    public ulong GetBounded(string key, ulong min, ulong max, ulong? def = null)
    {
        ulong r = GetULong(key, def);
        if (r < min || r > max) throw Error(key, $"{r} is out of range (allowed: {min}..{max})");
        return r;
    }

    public int GetInt(string key, int? def = null)
    {
        ulong r = GetULong(key, def.HasValue ? (ulong)def.Value : null);
        if (r > int.MaxValue) throw Error(key, $"{r} is out of range");
        return (int)r;
    }

    public bool GetBool(string key, bool def = false)
    {
        if (!_values.TryGetValue(key, out var v)) return def;
        return v.Value.ToLowerInvariant() switch
        {
            "true" or "yes" or "1" => true,
            "false" or "no" or "0" => false,
            _ => throw Error(key, $"'{v.Value}' is not a boolean"),
        };
    }

    /// <summary>An expected errno by name (<c>ok</c>, <c>einval</c>, <c>eexist</c>, ...: <see cref="Errno"/>); 0 for <c>ok</c>.</summary>
    public int GetErrno(string key, string def = "ok")
    {
        string v = GetString(key, def);
        return Errno.TryParse(v, out int e) ? e : throw Error(key, $"'{v}' is not an errno ({Errno.KnownList})");
    }

    /// <summary>
    /// Expected errnos as <see cref="GetErrno"/> reads one, or several joined by <c>|</c> (<c>ok|eagain</c>: any of them,
    /// for a result the schedule decides). Returns the accepted values.
    /// </summary>
    public int[] GetErrnoSet(string key, string def = "ok")
    {
        string v = GetString(key, def);
        var names = v.Split('|', StringSplitOptions.TrimEntries);
        var set = new int[names.Length];
        for (int i = 0; i < names.Length; i++)
            if (!Errno.TryParse(names[i], out set[i])) throw Error(key, $"'{names[i]}' is not an errno ({Errno.KnownList})");
        return set;
    }

    /// <summary>A page-aligned address.</summary>
    public ulong GetAddress(string key, ulong? def = null)
    {
        ulong a = GetULong(key, def);
        if ((a & ~MmStruct.PageMask) != 0) throw Error(key, $"0x{a:x} is not page aligned");
        if (a >= 1UL << 47) throw Error(key, $"0x{a:x} is outside the 47-bit user address space");
        return a;
    }

    public static bool TryParseULong(string s, out ulong value)
    {
        s = s.Trim().Replace("_", "");
        ulong mult = 1;
        if (s.Length > 1 && !s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            char c = char.ToUpperInvariant(s[^1]);
            mult = c switch { 'K' => 1UL << 10, 'M' => 1UL << 20, 'G' => 1UL << 30, _ => 1 };
            if (mult != 1) s = s[..^1];
        }
        bool ok = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(s.AsSpan(2), System.Globalization.NumberStyles.HexNumber, null, out value)
            : ulong.TryParse(s, System.Globalization.NumberStyles.None, null, out value);
        if (!ok) return false;
        if (value > ulong.MaxValue / mult) { value = 0; return false; }
        value *= mult;
        return true;
    }
}

/// <summary>
/// The named objects of a running scenario: processes (mms) and subsystem objects such as VMs, by name.
/// Ops look them up through <see cref="Process"/> and <see cref="Get{T}"/>, which raise a file:line error for unknown names.
/// </summary>
public sealed class ScenarioWorld(Kernel k)
{
    public Kernel K { get; } = k;

    public Dictionary<string, MmStruct> Processes { get; } = [];

    /// <summary>Subsystem objects by name (VMs, devices...).</summary>
    public Dictionary<string, object> Objects { get; } = [];

    /// <summary>The driver the <c>secondary</c> op creates (<c>mmusim explore --secondary</c>); null = the reference driver.</summary>
    public Secondary.DriverInfo? SecondaryDriver { get; set; }

    /// <summary>Values read by ops, by label (for <c>expect:</c> checks on contents).</summary>
    public Dictionary<string, ulong> Observed { get; } = [];

    /// <summary>Some process maps hugetlb memory (the pool exists): ops are checked against it (<see cref="OpSpec.OnHugetlb"/>).</summary>
    public bool HasHugetlb => K.Subsystems.ContainsKey(typeof(Hugetlb.HugetlbPages));

    public MmStruct Process(OpArgs a, string key = "process")
    {
        var name = a.GetString(key);
        return Processes.TryGetValue(name, out var mm) ? mm : throw a.Error(key, $"unknown process '{name}'");
    }

    /// <summary>Compare a syscall's or ioctl's result with the op's <c>expect:</c> errno (default ok); a different one is an unexpected-value violation.</summary>
    public void ExpectErrno(OpArgs a, int got, string what)
    {
        int want = a.GetErrno("expect");
        if (got != want)
            K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {what} returned {Errno.NameOf(got)}, expected {Errno.NameOf(want)}");
    }

    public T Get<T>(OpArgs a, string key) where T : class
    {
        var name = a.GetString(key);
        if (Objects.TryGetValue(name, out var o) && o is T t) return t;
        throw a.Error(key, $"unknown {typeof(T).Name} '{name}'");
    }
}

/// <summary>Runs one op on the current context.</summary>
public delegate ValueTask OpHandler(ScenarioWorld world, OpArgs args);

/// <summary>An op a scenario thread (or a setup step) can perform.</summary>
/// <param name="Name">As written in YAML, e.g. <c>write</c>, <c>munmap</c>, <c>guest.write</c>, <c>ksm.scan</c>.</param>
/// <param name="Summary">One line for docs and <c>mmusim ops</c>.</param>
/// <param name="Required">Fields that must be present.</param>
/// <param name="Optional">Fields that may be present (anything else is an "unknown field" error).</param>
/// <param name="Run">The operation.</param>
public sealed record OpSpec(string Name, string Summary, string[] Required, string[] Optional, OpHandler Run)
{
    /// <summary>
    /// Optional load-time validation beyond required/unknown fields (e.g. the address lies in a VMA of the process):
    /// throw <see cref="OpArgs.Error"/>. Runs once per op when the scenario is loaded, never per run.
    /// </summary>
    public Action<OpArgs, ScenarioInfo>? Check { get; init; }

    /// <summary>The name the op gives what it creates when the scenario writes no <c>as:</c> (e.g. <c>uffd</c>).</summary>
    public string? DefaultAs { get; init; }
}

/// <summary>
/// Every op, by name. Subsystems contribute through <see cref="Providers"/>: one static <c>Register(OpRegistry)</c>
/// method each (primary mm, KVM, KSM, devices...).
/// </summary>
public sealed class OpRegistry
{
    readonly Dictionary<string, OpSpec> _ops = new(StringComparer.Ordinal);

    /// <summary>Subsystem registration functions. Append one line per subsystem.</summary>
    public static readonly List<Action<OpRegistry>> Providers =
    [
        CoreOps.Register,
        Kvm.KvmOps.Register,
        Ksm.KsmOps.Register,
        History.HistoryOps.Register,
        Devices.IommuOps.Register,
        Devices.SlowSecondary.Register,
        Hmm.HmmOps.Register,
        PrimaryTlbOps.Register,
        Secondary.SecondaryOps.Register,
        Lkmm.LitmusOps.Register,
        Userfaultfd.UffdOps.Register,
        Hugetlb.HugetlbOps.Register,
    ];

    static readonly Lazy<OpRegistry> _default = new(() =>
    {
        var r = new OpRegistry();
        foreach (var p in Providers) p(r);
        return r;
    });

    /// <summary>The registry with every provider's ops.</summary>
    public static OpRegistry Default => _default.Value;

    public void Register(OpSpec spec)
    {
        if (!_ops.TryAdd(spec.Name, spec)) throw new InvalidOperationException($"op '{spec.Name}' registered twice");
    }

    public bool TryGet(string name, out OpSpec spec) => _ops.TryGetValue(name, out spec!);

    public IEnumerable<OpSpec> All => _ops.Values.OrderBy(o => o.Name, StringComparer.Ordinal);

    /// <summary>Check an op's fields against its spec; raise a file:line error for missing or unknown fields.</summary>
    public OpSpec Validate(OpArgs a)
    {
        if (!TryGet(a.Op, out var spec))
            throw new ScenarioException(a.File, a.Line, "op", $"unknown op '{a.Op}'");
        foreach (var r in spec.Required)
            if (!a.Has(r)) throw new ScenarioException(a.File, a.Line, $"{a.Op}.{r}", "required field is missing");
        foreach (var key in a.Keys)
            if (Array.IndexOf(spec.Required, key) < 0 && Array.IndexOf(spec.Optional, key) < 0)
                throw a.Error(key, $"unknown field (allowed: {string.Join(", ", spec.Required.Concat(spec.Optional))})");
        return spec;
    }
}
