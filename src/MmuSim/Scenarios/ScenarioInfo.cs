namespace MmuSim.Scenarios;

/// <summary>
/// What the loader knows statically about a scenario while it validates ops (<see cref="OpSpec.Check"/>): the process
/// names (declared, or created by an op through a <c>child</c> field) and the address ranges each process may map
/// (declared VMAs, plus every <c>mmap</c> of it anywhere in the scenario; a fork child inherits its parent's).
/// </summary>
public sealed class ScenarioInfo
{
    readonly Dictionary<string, List<(ulong Start, ulong End)>> _ranges = new(StringComparer.Ordinal);
    readonly Dictionary<string, string> _parentOf = new(StringComparer.Ordinal);
    readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public ScenarioInfo(string file) => File = file;

    public string File { get; }

    public IEnumerable<string> ProcessNames => _ranges.Keys;

    public bool IsProcess(string name) => _ranges.ContainsKey(name);

    internal void AddProcess(string name, string? parent = null)
    {
        _ranges.TryAdd(name, []);
        if (parent != null) _parentOf[name] = parent;
    }

    internal void AddRange(string process, ulong start, ulong end)
    {
        if (_ranges.TryGetValue(process, out var l)) l.Add((start, end));
    }

    /// <summary>A name some op gives to what it creates (its <c>as</c> field: a pin, a pipe, a stored value).</summary>
    internal void AddName(string name) => _names.Add(name);

    /// <summary>Raise a file:line error unless some op of the scenario creates the object the field names (<c>as: NAME</c>).</summary>
    public void RequireNamed(OpArgs a, string key, string what, string? defaultName = null)
    {
        var n = a.GetString(key, defaultName);
        if (!_names.Contains(n)) throw a.Error(key, $"no op creates a {what} named '{n}' (give one `as: {n}`)");
    }

    /// <summary>May <paramref name="process"/> (or the process it was forked from) have <paramref name="addr"/> mapped?</summary>
    public bool MayMap(string process, ulong addr)
    {
        for (int depth = 0; depth < 16 && process != null; depth++)
        {
            if (_ranges.TryGetValue(process, out var l))
                foreach (var (s, e) in l)
                    if (addr >= s && addr < e) return true;
            if (!_parentOf.TryGetValue(process, out process!)) break;
        }
        return false;
    }

    /// <summary>Raise a file:line error unless the address field lies in a range the process may map.</summary>
    public void RequireMapped(OpArgs a, string addrKey = "addr", string processKey = "process")
    {
        if (!a.Has(addrKey) || !a.Has(processKey)) return;
        var p = a.GetString(processKey);
        ulong addr = a.GetULong(addrKey);
        if (!MayMap(p, addr))
            throw a.Error(addrKey, $"0x{addr:x} is outside every VMA of process '{p}'");
    }
}
