namespace MmuSim.Eras;

/// <summary>A kernel version, compared numerically (2.6.32 &lt; 3.6 &lt; 4.19 &lt; 6.13).</summary>
public readonly record struct KernelVersion(int Major, int Minor, int Patch = 0) : IComparable<KernelVersion>
{
    public int CompareTo(KernelVersion o) =>
        Major != o.Major ? Major.CompareTo(o.Major) : Minor != o.Minor ? Minor.CompareTo(o.Minor) : Patch.CompareTo(o.Patch);

    public static bool operator <(KernelVersion a, KernelVersion b) => a.CompareTo(b) < 0;
    public static bool operator >(KernelVersion a, KernelVersion b) => a.CompareTo(b) > 0;
    public static bool operator <=(KernelVersion a, KernelVersion b) => a.CompareTo(b) <= 0;
    public static bool operator >=(KernelVersion a, KernelVersion b) => a.CompareTo(b) >= 0;

    public static readonly KernelVersion Max = new(99, 0);

    public static bool TryParse(string s, out KernelVersion v)
    {
        v = default;
        var t = s.Trim().TrimStart('v').TrimEnd('+');
        var parts = t.Split('.');
        if (parts.Length is < 2 or > 3) return false;
        var n = new int[3];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, null, out n[i])) return false;
        v = new KernelVersion(n[0], n[1], n[2]);
        return true;
    }

    /// <summary>2.6.x versions keep their three parts; from 3.0 on, two.</summary>
    public override string ToString() => Major == 2 ? $"{Major}.{Minor}.{Patch}" : $"{Major}.{Minor}";
}

/// <summary>
/// A kernel era: a version and the set of <see cref="Feature"/>s it has. Immutable; <see cref="Has"/> is one bit test.
/// </summary>
public sealed class KernelEra
{
    readonly ulong[] _bits;

    internal KernelEra(string name, KernelVersion version, string summary, ulong[] bits)
    {
        Name = name;
        Version = version;
        Summary = summary;
        _bits = bits;
    }

    /// <summary>Name as typed on the command line, e.g. <c>2.6.32</c>, <c>6.10</c>.</summary>
    public string Name { get; }

    public KernelVersion Version { get; }

    /// <summary>One-line description of what changed in this era.</summary>
    public string Summary { get; }

    public bool Has(Feature f) => (_bits[(int)f >> 6] & (1UL << ((int)f & 63))) != 0;

    public bool AtLeast(int major, int minor, int patch = 0) => Version >= new KernelVersion(major, minor, patch);

    /// <summary>The same era with some features switched on or off (mutation switches, what-if experiments).</summary>
    public KernelEra With(Feature f, bool on)
    {
        var bits = (ulong[])_bits.Clone();
        if (on) bits[(int)f >> 6] |= 1UL << ((int)f & 63);
        else bits[(int)f >> 6] &= ~(1UL << ((int)f & 63));
        return new KernelEra(Name, Version, Summary, bits);
    }

    public override string ToString() => Name;
}
