using System.Text.RegularExpressions;

namespace MmuSim.Lkmm;

/// <summary>What one litmus statement does.</summary>
public enum LitmusKind : byte
{
    Load,
    Store,
    Fence,
}

/// <summary>
/// One statement of a litmus process: <c>r0 = READ_ONCE(x)</c>, <c>r0 = smp_load_acquire(x)</c>,
/// <c>r0 = rcu_dereference(x)</c>, <c>WRITE_ONCE(x, 1)</c>, <c>smp_store_release(x, r0)</c>,
/// <c>rcu_assign_pointer(x, 1)</c>, <c>smp_mb()</c>, <c>smp_rmb()</c>, <c>smp_wmb()</c>, each optionally under
/// <c>if (r0)</c> (a control dependency).
/// </summary>
public sealed record LitmusStmt(
    LitmusKind Kind,
    string Text,
    string? Location = null,
    string? Register = null,
    AccessOrder Order = AccessOrder.Once,
    ulong Value = 0,
    string? ValueRegister = null,
    FenceKind Fence = FenceKind.Mb,
    string? Guard = null)
{
    /// <summary>Does this statement write <paramref name="reg"/>?</summary>
    public bool Writes(string? reg) => reg != null && Kind == LitmusKind.Load && Register == reg;
}

/// <summary>One term of an <c>exists</c> clause: <c>P:reg=value</c> or <c>location=value</c> (final value).</summary>
public readonly record struct LitmusTerm(int Proc, string Name, ulong Value)
{
    public bool IsRegister => Proc >= 0;

    public override string ToString() => IsRegister ? $"{Proc}:{Name}={Value}" : $"{Name}={Value}";
}

/// <summary>Parsers for litmus statements and <c>exists</c> clauses (the subset of the herd7 C dialect the tests use).</summary>
public static partial class LitmusProgram
{
    [GeneratedRegex(@"^if\s*\(\s*(r\d+)\s*\)\s*(.+)$")]
    private static partial Regex IfRx();

    [GeneratedRegex(@"^(r\d+)\s*=\s*(READ_ONCE|smp_load_acquire|rcu_dereference)\s*\(\s*\*?\s*([A-Za-z_]\w*)\s*\)$")]
    private static partial Regex LoadRx();

    [GeneratedRegex(@"^(WRITE_ONCE|smp_store_release|rcu_assign_pointer)\s*\(\s*\*?\s*([A-Za-z_]\w*)\s*,\s*(\w+)\s*\)$")]
    private static partial Regex StoreRx();

    [GeneratedRegex(@"^(smp_mb|smp_rmb|smp_wmb)\s*\(\s*\)$")]
    private static partial Regex FenceRx();

    [GeneratedRegex(@"^(?:(\d+)\s*:\s*(r\d+)|([A-Za-z_]\w*))\s*=\s*(\d+)$")]
    private static partial Regex TermRx();

    /// <summary>Parse a process body: statements separated by <c>;</c> or newlines. Returns null and an error on bad text.</summary>
    public static IReadOnlyList<LitmusStmt>? Parse(string code, out string error)
    {
        var list = new List<LitmusStmt>();
        error = "";
        foreach (var raw in code.Split([';', '\n'], StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var st = ParseStmt(raw, null, out error);
            if (st == null) return null;
            list.Add(st);
        }
        if (list.Count == 0) { error = "no statements"; return null; }
        return list;
    }

    static LitmusStmt? ParseStmt(string text, string? guard, out string error)
    {
        error = "";
        Match m;
        if ((m = IfRx().Match(text)).Success)
        {
            if (guard != null) { error = $"'{text}': nested if is not supported"; return null; }
            return ParseStmt(m.Groups[2].Value.Trim(), m.Groups[1].Value, out error) is { } inner
                ? inner with { Guard = m.Groups[1].Value, Text = text } : null;
        }
        if ((m = LoadRx().Match(text)).Success)
            return new LitmusStmt(LitmusKind.Load, text, Location: m.Groups[3].Value, Register: m.Groups[1].Value,
                Order: m.Groups[2].Value == "READ_ONCE" ? AccessOrder.Once : AccessOrder.AcquireRelease, Guard: guard);
        if ((m = StoreRx().Match(text)).Success)
        {
            string v = m.Groups[3].Value;
            var order = m.Groups[1].Value == "WRITE_ONCE" ? AccessOrder.Once : AccessOrder.AcquireRelease;
            if (v.Length > 1 && v[0] == 'r' && v[1..].All(char.IsAsciiDigit))
                return new LitmusStmt(LitmusKind.Store, text, Location: m.Groups[2].Value, Order: order, ValueRegister: v, Guard: guard);
            if (!ulong.TryParse(v, out ulong value)) { error = $"'{text}': '{v}' is neither a number nor a register rN"; return null; }
            return new LitmusStmt(LitmusKind.Store, text, Location: m.Groups[2].Value, Order: order, Value: value, Guard: guard);
        }
        if ((m = FenceRx().Match(text)).Success)
            return new LitmusStmt(LitmusKind.Fence, text, Guard: guard, Fence: m.Groups[1].Value switch
            {
                "smp_rmb" => FenceKind.Rmb,
                "smp_wmb" => FenceKind.Wmb,
                _ => FenceKind.Mb,
            });
        error = $"'{text}' is not a litmus statement (rN = READ_ONCE(x) | smp_load_acquire(x) | rcu_dereference(x); " +
                "WRITE_ONCE(x, v) | smp_store_release(x, v) | rcu_assign_pointer(x, v); smp_mb() | smp_rmb() | smp_wmb(); if (rN) statement)";
        return null;
    }

    /// <summary>Parse an <c>exists</c> clause: terms joined by <c>/\</c>, optionally in parentheses.</summary>
    public static IReadOnlyList<LitmusTerm>? ParseExists(string text, out string error)
    {
        error = "";
        var t = text.Trim();
        if (t.StartsWith("exists")) t = t[6..].Trim();
        if (t.StartsWith('(') && t.EndsWith(')')) t = t[1..^1];
        var terms = new List<LitmusTerm>();
        foreach (var part in t.Split("/\\", StringSplitOptions.TrimEntries))
        {
            var m = TermRx().Match(part);
            if (!m.Success) { error = $"'{part}' is not a term (P:rN=value or location=value, joined by /\\)"; return null; }
            if (!ulong.TryParse(m.Groups[4].Value, out ulong v)) { error = $"'{part}': value out of range"; return null; }
            int proc = -1;
            if (m.Groups[1].Success && (!int.TryParse(m.Groups[1].Value, out proc) || proc > 7)) { error = $"'{part}': process out of range (0..7)"; return null; }
            terms.Add(new LitmusTerm(proc, m.Groups[1].Success ? m.Groups[2].Value : m.Groups[3].Value, v));
        }
        return terms;
    }

    /// <summary>
    /// May <paramref name="j"/> run before the not yet executed statements <c>pending[from..j)</c>? Only a WRITE_ONCE
    /// whose value and guard depend on none of them, to a location none of them accesses, past no smp_mb/smp_wmb and no
    /// acquire load: the po-later independent store LKMM lets go first (load buffering, 2+2W, S).
    /// </summary>
    public static bool MayHoist(IReadOnlyList<LitmusStmt> code, ReadOnlySpan<bool> done, int j)
    {
        var s = code[j];
        if (s.Kind != LitmusKind.Store || s.Order != AccessOrder.Once) return false;
        for (int i = 0; i < j; i++)
        {
            if (done[i]) continue;
            var p = code[i];
            if (p.Kind == LitmusKind.Fence && p.Fence != FenceKind.Rmb) return false;
            if (p.Kind == LitmusKind.Load && p.Order == AccessOrder.AcquireRelease) return false;
            if (p.Location != null && p.Location == s.Location) return false;
            if (p.Writes(s.Guard) || p.Writes(s.ValueRegister)) return false;
        }
        return true;
    }
}
