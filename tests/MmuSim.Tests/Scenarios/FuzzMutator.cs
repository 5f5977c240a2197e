using System.Text;

namespace MmuSim.Tests.Scenarios;

/// <summary>
/// Deterministic text mutations of scenario and trace files for the loader fuzz harness: byte flips, line deletions and
/// duplications, type swaps (scalar to list or mapping and back), huge and negative numbers, deep nesting, very long
/// strings and thousands of threads. Its own xorshift generator, so a seed gives the same inputs on every runtime.
/// </summary>
public sealed class FuzzMutator(ulong seed)
{
    ulong _s = seed == 0 ? 0x9E3779B97F4A7C15UL : seed;

    public int Next(int n)
    {
        _s ^= _s << 13; _s ^= _s >> 7; _s ^= _s << 17;
        return (int)(_s % (ulong)n);
    }

    static readonly string[] Numbers =
    [
        "18446744073709551615", "18446744073709551616", "0xffffffffffffffff", "-1", "-9223372036854775808", "0", "0x7fff00000000",
        "9223372036854775807", "4294967296", "1e400", "NaN", "16777216G", "0x1000", "1K", "99999999999999999999999", "0x",
    ];

    static readonly string[] Swaps = ["[]", "{}", "[1, 2]", "{ a: 1 }", "~", "\"\"", "true", "- x", "*a", "&a x", "!!binary AA==", "{", "[", "'", "\""];

    /// <summary>One mutated copy of <paramref name="text"/>; <paramref name="kind"/> names the mutation applied.</summary>
    public string Mutate(string text, out string kind)
    {
        var lines = text.Split('\n').ToList();
        int li = Next(Math.Max(1, lines.Count));
        switch (Next(12))
        {
            case 0:
                {
                    kind = "byte-flip";
                    var b = Encoding.UTF8.GetBytes(text);
                    for (int i = 0, n = 1 + Next(4); i < n && b.Length > 0; i++) b[Next(b.Length)] ^= (byte)(1 << Next(8));
                    return Encoding.UTF8.GetString(b);
                }
            case 1:
                kind = "line-delete";
                for (int i = 0, n = 1 + Next(3); i < n && lines.Count > 1; i++) lines.RemoveAt(Next(lines.Count));
                return string.Join('\n', lines);
            case 2:
                kind = "line-duplicate";
                lines.Insert(li, lines[li]);
                return string.Join('\n', lines);
            case 3:
                kind = "number";
                return ReplaceToken(lines, li, IsNumber, Numbers[Next(Numbers.Length)]);
            case 4:
                kind = "type-swap";
                return ReplaceToken(lines, li, _ => true, Swaps[Next(Swaps.Length)]);
            case 5:
                {
                    kind = "deep-nesting";
                    int depth = 50 + Next(20_000);
                    bool flow = Next(2) == 0;
                    string deep = flow
                        ? new string('[', depth) + new string(']', Next(2) == 0 ? depth : 0)
                        : string.Concat(Enumerable.Range(0, Math.Min(depth, 3000)).Select(i => "\n" + new string(' ', 2 * i + 2) + "- "));
                    return ReplaceToken(lines, li, _ => true, deep);
                }
            case 6:
                kind = "long-string";
                return ReplaceToken(lines, li, _ => true, new string((char)('a' + Next(26)), 1000 + Next(200_000)));
            case 7:
                {
                    kind = "many-threads";
                    var sb = new StringBuilder(text);
                    sb.Append("\nthreads:\n");
                    for (int i = 0, n = 64 + Next(5000); i < n; i++) sb.Append("  - { name: t").Append(i).Append(", ops: [ { read: { process: p, addr: 0x100000 } } ] }\n");
                    return sb.ToString();
                }
            case 8:
                kind = "huge-vma";
                return text.Replace("len: ", Next(2) == 0 ? "len: 0x7fff00000000, contents: 5, x: " : "len: 0x7ff000000000000, q: ");
            case 9:
                kind = "unclosed-flow";
                return ReplaceToken(lines, li, _ => true, Next(2) == 0 ? "{ a: 1, b: [2, 3" : "{ [ { : } ]");
            case 10:
                kind = "truncate";
                return text[..Next(Math.Max(1, text.Length))];
            default:
                kind = "splice";
                int a = Next(lines.Count), b2 = Next(lines.Count);
                (lines[a], lines[b2]) = (lines[b2], lines[a]);
                return string.Join('\n', lines);
        }
    }

    static bool IsNumber(string t) => t.Length > 0 && (char.IsDigit(t[0]) || t.StartsWith("0x", StringComparison.Ordinal));

    /// <summary>Replace one token (a run between spaces, commas, braces and colons) of line <paramref name="li"/> that passes <paramref name="pick"/>.</summary>
    string ReplaceToken(List<string> lines, int li, Func<string, bool> pick, string with)
    {
        for (int tries = 0; tries < lines.Count; tries++, li = (li + 1) % lines.Count)
        {
            var line = lines[li];
            var spans = new List<(int Start, int Len)>();
            for (int i = 0; i < line.Length;)
            {
                while (i < line.Length && " ,{}[]:-\t".Contains(line[i])) i++;
                int st = i;
                while (i < line.Length && !" ,{}[]:\t".Contains(line[i])) i++;
                if (i > st && pick(line[st..i])) spans.Add((st, i - st));
            }
            if (spans.Count == 0) continue;
            var (s, l) = spans[Next(spans.Count)];
            lines[li] = line[..s] + with + line[(s + l)..];
            return string.Join('\n', lines);
        }
        return string.Join('\n', lines) + "\n" + with;
    }
}
