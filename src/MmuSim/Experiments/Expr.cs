using System.Globalization;

namespace MmuSim.Experiments;

/// <summary>
/// The arithmetic of experiment files: numbers, parameter names, <c>+ - * / %</c>, parentheses and
/// <c>floor ceil round min max</c>, and the comparisons <c>== != &lt; &lt;= &gt; &gt;=</c> (1 or 0). Used for <c>let:</c> values, <c>per:</c> normalisations and <c>{{expr}}</c> holes in
/// scenario templates. A malformed expression is an <see cref="ExprException"/> (the loader adds file, line and field).
/// </summary>
public static class Expr
{
    /// <summary>Evaluate <paramref name="text"/> with the variables in <paramref name="vars"/>.</summary>
    public static double Eval(string text, IReadOnlyDictionary<string, double> vars)
    {
        var p = new Parser(text, vars);
        double v = p.Compare();
        p.SkipSpace();
        if (p.Pos < text.Length) throw new ExprException($"unexpected '{text[p.Pos]}' at column {p.Pos + 1} of '{text}'");
        return v;
    }

    /// <summary>A value as templates print it: an integer without a decimal point, else the shortest round-trip form.</summary>
    public static string Format(double v) =>
        v == Math.Floor(v) && Math.Abs(v) < 1e18 ? ((long)v).ToString(CultureInfo.InvariantCulture) : v.ToString("R", CultureInfo.InvariantCulture);

    sealed class Parser(string s, IReadOnlyDictionary<string, double> vars)
    {
        public int Pos;

        public void SkipSpace()
        {
            while (Pos < s.Length && char.IsWhiteSpace(s[Pos])) Pos++;
        }

        bool Eat(char c)
        {
            SkipSpace();
            if (Pos < s.Length && s[Pos] == c) { Pos++; return true; }
            return false;
        }

        /// <summary>A sum, or two sums compared (1 if true, else 0).</summary>
        public double Compare()
        {
            double a = Sum();
            SkipSpace();
            if (Pos + 1 < s.Length && s.AsSpan(Pos, 2) is "==" or "!=" or "<=" or ">=")
            {
                string op = s.Substring(Pos, 2);
                Pos += 2;
                double b = Sum();
                return op switch { "==" => a == b, "!=" => a != b, "<=" => a <= b, _ => a >= b } ? 1 : 0;
            }
            if (Pos < s.Length && s[Pos] is '<' or '>')
            {
                char op = s[Pos++];
                double b = Sum();
                return (op == '<' ? a < b : a > b) ? 1 : 0;
            }
            return a;
        }

        public double Sum()
        {
            double v = Product();
            while (true)
            {
                if (Eat('+')) v += Product();
                else if (Eat('-')) v -= Product();
                else return v;
            }
        }

        double Product()
        {
            double v = Unary();
            while (true)
            {
                if (Eat('*')) v *= Unary();
                else if (Eat('/'))
                {
                    double d = Unary();
                    if (d == 0) throw new ExprException($"division by zero in '{s}'");
                    v /= d;
                }
                else if (Eat('%'))
                {
                    double d = Unary();
                    if (d == 0) throw new ExprException($"division by zero in '{s}'");
                    v %= d;
                }
                else return v;
            }
        }

        double Unary() => Eat('-') ? -Unary() : Atom();

        double Atom()
        {
            SkipSpace();
            if (Pos >= s.Length) throw new ExprException($"'{s}' ends where a value is expected");
            char c = s[Pos];
            if (c == '(')
            {
                Pos++;
                double v = Sum();
                if (!Eat(')')) throw new ExprException($"missing ')' in '{s}'");
                return v;
            }
            if (char.IsDigit(c) || c == '.')
            {
                int start = Pos;
                if (c == '0' && Pos + 1 < s.Length && (s[Pos + 1] == 'x' || s[Pos + 1] == 'X'))
                {
                    Pos += 2;
                    while (Pos < s.Length && Uri.IsHexDigit(s[Pos])) Pos++;
                    return ulong.Parse(s.AsSpan(start + 2, Pos - start - 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                }
                while (Pos < s.Length && (char.IsDigit(s[Pos]) || s[Pos] == '.' || s[Pos] == '_')) Pos++;
                var num = s[start..Pos].Replace("_", "");
                if (!double.TryParse(num, NumberStyles.Float, CultureInfo.InvariantCulture, out double d))
                    throw new ExprException($"'{num}' is not a number");
                return d;
            }
            if (char.IsLetter(c) || c == '_')
            {
                int start = Pos;
                while (Pos < s.Length && (char.IsLetterOrDigit(s[Pos]) || s[Pos] == '_')) Pos++;
                var name = s[start..Pos];
                if (Eat('('))
                {
                    var args = new List<double> { Sum() };
                    while (Eat(',')) args.Add(Sum());
                    if (!Eat(')')) throw new ExprException($"missing ')' after the arguments of {name} in '{s}'");
                    return Call(name, args);
                }
                return vars.TryGetValue(name, out double v) ? v
                    : throw new ExprException($"unknown name '{name}' in '{s}' (known: {string.Join(", ", vars.Keys.Order(StringComparer.Ordinal))})");
            }
            throw new ExprException($"unexpected '{c}' at column {Pos + 1} of '{s}'");
        }

        double Call(string name, List<double> a) => (name, a.Count) switch
        {
            ("floor", 1) => Math.Floor(a[0]),
            ("ceil", 1) => Math.Ceiling(a[0]),
            ("round", 1) => Math.Round(a[0], MidpointRounding.AwayFromZero),
            ("min", >= 1) => a.Min(),
            ("max", >= 1) => a.Max(),
            _ => throw new ExprException($"unknown function {name}/{a.Count} in '{s}' (known: floor, ceil, round, min, max)"),
        };
    }
}

/// <summary>A malformed or unevaluable experiment expression.</summary>
public sealed class ExprException(string message) : Exception(message);
