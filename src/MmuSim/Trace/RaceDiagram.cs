using System.Text;
using MmuSim.Sched;

namespace MmuSim.Trace;

/// <summary>How much a race diagram is condensed.</summary>
public sealed record DiagramOptions
{
    /// <summary>Collapse each run of consecutive steps on one CPU to its interesting rows (locks, writes, callbacks...).</summary>
    public bool Collapse { get; init; } = true;

    /// <summary>Widest column; longer cells are cut with "...".</summary>
    public int MaxColumnWidth { get; init; } = 64;
}

/// <summary>One row of a race diagram: a step of one CPU.</summary>
/// <param name="Cpu">Context id (column).</param>
/// <param name="Text">What the step did, in kernel function names: <c>lock PTL</c>, <c>ptep_clear_flush(0x10000)</c>.</param>
/// <param name="Rank">0 minor (reads, starts), 1 interesting (locks, writes, callbacks, tracepoints).</param>
public sealed record DiagramRow(int Cpu, string Text, int Rank);

/// <summary>
/// The CPU-column race diagram kernel developers draw: one column per context, headed <c>CPU0 (kswapd: try_to_unmap_one)</c>
/// (context name and its outermost kernel function), one row per step in kernel function names, lock operations,
/// counter values (seq, in_progress...) where they change, and the violated invariant at the bottom.
/// Built from a <see cref="TraceCollector"/> attached to a replay of the counterexample.
/// </summary>
/// <remarks>
/// A step is reported when the context reaches a scheduling point, but the access that point guards happens when the
/// context next resumes; a row is therefore placed when the context reaches its following point (or exits), which is
/// the order in which the accesses really happened. Tracepoints and counters emitted by a context belong to its row.
/// </remarks>
public sealed class RaceDiagram
{
    public required IReadOnlyList<TraceContext> Columns { get; init; }

    public required IReadOnlyList<DiagramRow> Rows { get; init; }

    public Violation? Violation { get; init; }

    public DiagramOptions Options { get; init; } = new();

    /// <summary>Rows in the column of context <paramref name="cpu"/>.</summary>
    public int RowsFor(int cpu) => Rows.Count(r => r.Cpu == cpu);

    public static RaceDiagram Build(TraceCollector c, DiagramOptions? options = null)
    {
        options ??= new DiagramOptions();
        var raw = new List<DiagramRow>();
        var pending = new Dictionary<int, (TraceEvent Step, List<string> Notes, List<DiagramRow> After)>();
        var counters = new Dictionary<string, long>(StringComparer.Ordinal);
        TraceEvent? last = null;

        foreach (var e in c.Events)
        {
            switch (e.Kind)
            {
                case TraceEventKind.Step:
                    if (pending.TryGetValue(e.Cpu, out var p))
                    {
                        bool waits = e.Blocked && p.Step.Point == PointKind.LockAcquire && !p.Step.Blocked;
                        bool repeatWait = e.Blocked && p.Step.Blocked;
                        if (!repeatWait) Commit(p, waits);
                    }
                    pending[e.Cpu] = (e, [], []);
                    break;
                case TraceEventKind.Record:
                    if (e.Phase == TracePhase.Counter)
                    {
                        if (counters.TryGetValue(e.Name, out var old) && old == e.Value) break;
                        counters[e.Name] = e.Value;
                        string note = $"{ShortName(e.Name)}={e.Value}";
                        if (pending.TryGetValue(e.Cpu, out var pc)) pc.Notes.Add(note);
                        else raw.Add(new DiagramRow(e.Cpu, note, 1));
                    }
                    else if (e.Phase is TracePhase.Event or TracePhase.Begin && !e.Name.StartsWith("mmusim:", StringComparison.Ordinal))
                    {
                        // The model's own mmusim: events repeat what the notifier's callback points already show.
                        var row = new DiagramRow(e.Cpu, EventText(e), 1);
                        if (pending.TryGetValue(e.Cpu, out var pe)) pe.After.Add(row);
                        else raw.Add(row);
                    }
                    break;
                case TraceEventKind.Exit:
                    if (pending.Remove(e.Cpu, out var px)) Commit(px, false);
                    break;
                case TraceEventKind.Violation:
                    // A violation raised by kernel code belongs after the context's pending access; one raised by the
                    // checker right at a point comes before that point's access.
                    bool atPoint = last is { Kind: TraceEventKind.Step } l && l.Cpu == e.Cpu && l.Step == e.Step;
                    if (!atPoint && pending.Remove(e.Cpu, out var pv)) Commit(pv, false);
                    break;
            }
            last = e;
        }

        var rows = options.Collapse ? Condense(raw) : raw;
        var used = new HashSet<int>(rows.Select(r => r.Cpu));
        if (c.Violation != null && c.Violation.ContextId >= 0) used.Add(c.Violation.ContextId);
        return new RaceDiagram
        {
            Columns = c.Contexts.Where(x => used.Contains(x.Id)).ToList(),
            Rows = rows,
            Violation = c.Violation,
            Options = options,
        };

        void Commit((TraceEvent Step, List<string> Notes, List<DiagramRow> After) p, bool waits)
        {
            var (text, rank) = StepText(p.Step, waits);
            if (p.Notes.Count > 0)
            {
                text = text.Length == 0 ? string.Join(" ", p.Notes) : $"{text}  [{string.Join(" ", p.Notes)}]";
                rank = 1;
            }
            if (text.Length > 0) raw.Add(new DiagramRow(p.Step.Cpu, text, rank));
            raw.AddRange(p.After);
        }
    }

    static string ShortName(string counter)
    {
        int i = counter.LastIndexOf(':');
        return i >= 0 ? counter[(i + 1)..] : counter;
    }

    static string EventText(TraceEvent e)
    {
        string name = ShortName(e.Name);
        // Long TP_printk texts (kvm_unmap_hva_range's range) would widen the column: the name says enough there.
        return e.Fields.Length == 0 || e.Fields.Length > 40 ? name : $"{name}: {e.Fields}";
    }

    static string LockName(string subject)
    {
        if (subject.Length == 0) return "lock";
        int b = subject.IndexOf('[');
        string n = b > 0 ? subject[..b] : subject;
        return n == "ptl" ? "PTL" : n;
    }

    static string Addr(ulong a) => $"0x{a:x}";

    /// <summary>Text and rank of the access a step guards.</summary>
    static (string Text, int Rank) StepText(TraceEvent s, bool waits)
    {
        string fn = s.Name;
        return s.Point switch
        {
            PointKind.LockAcquire when waits => ($"lock {LockName(s.Fields)}: contended, waits", 1),
            PointKind.LockAcquire => ($"lock {LockName(s.Fields)}", 1),
            PointKind.LockRelease => ($"unlock {LockName(s.Fields)}", 1),
            PointKind.PteRead => ($"{fn}: read pte {Addr(s.Arg)}", 0),
            PointKind.PmdRead => ($"{fn}: read pmd {Addr(s.Arg)}", 0),
            PointKind.SpteRead => ($"{fn}: read spte {Addr(s.Arg)}", 0),
            PointKind.Start or PointKind.Yield or PointKind.Barrier => (s.Arg != 0 ? $"{fn}({Addr(s.Arg)})" : fn, 0),
            PointKind.Wait => (s.Blocked ? $"{fn}: waits on {s.Fields}" : fn, s.Blocked ? 1 : 0),
            PointKind.Sleep => ($"{fn}: sleeps", 0),
            PointKind.Alloc => ($"{fn}: alloc", 0),
            _ => (s.Arg != 0 ? $"{fn}({Addr(s.Arg)})" : fn, 1),
        };
    }

    /// <summary>
    /// Per run of consecutive rows on one CPU: keep the interesting rows and the last minor row (what the context saw
    /// before the other CPU interleaved), or one summary row when nothing interesting happened; merge repeats.
    /// </summary>
    static List<DiagramRow> Condense(List<DiagramRow> raw)
    {
        var outRows = new List<DiagramRow>();
        int i = 0;
        while (i < raw.Count)
        {
            int j = i;
            while (j < raw.Count && raw[j].Cpu == raw[i].Cpu) j++;
            int lastMinor = -1;
            bool anyInteresting = false;
            for (int t = i; t < j; t++)
            {
                if (raw[t].Rank == 0) lastMinor = t;
                else anyInteresting = true;
            }
            // A trailing minor row matters only when it is the segment's last action (the read the race depends on).
            int keepMinor = lastMinor == j - 1 || !anyInteresting ? lastMinor : -1;
            // Kept rows of this segment, with "lock X" directly followed by "unlock X" folded into one row.
            var kept = new List<DiagramRow>();
            for (int t = i; t < j; t++)
            {
                if (raw[t].Rank == 0 && t != keepMinor) continue;
                if (kept.Count > 0 && kept[^1].Text.StartsWith("lock ", StringComparison.Ordinal) && raw[t].Text == "un" + kept[^1].Text)
                    kept[^1] = kept[^1] with { Text = $"{kept[^1].Text}; {raw[t].Text}" };
                else kept.Add(raw[t]);
            }
            // Identical consecutive rows: one row with a count.
            for (int t = 0; t < kept.Count; t++)
            {
                int n = 1;
                while (t + n < kept.Count && kept[t + n].Text == kept[t].Text) n++;
                outRows.Add(n == 1 ? kept[t] : kept[t] with { Text = $"{kept[t].Text} (x{n})" });
                t += n - 1;
            }
            i = j;
        }
        return outRows;
    }

    public override string ToString()
    {
        int w = Options.MaxColumnWidth;
        var cols = Columns;
        var index = new Dictionary<int, int>();
        var widths = new int[cols.Count];
        for (int i = 0; i < cols.Count; i++)
        {
            index[cols[i].Id] = i;
            widths[i] = Math.Min(w, cols[i].Header.Length);
        }
        foreach (var r in Rows)
            if (index.TryGetValue(r.Cpu, out int ci)) widths[ci] = Math.Min(w, Math.Max(widths[ci], r.Text.Length));

        var sb = new StringBuilder();
        Line(i => cols[i].Header);
        Line(i => new string('-', widths[i]));
        foreach (var r in Rows)
        {
            if (!index.TryGetValue(r.Cpu, out int ci)) continue;
            Line(i => i == ci ? r.Text : "");
        }
        if (Violation is { } v)
        {
            sb.Append('\n');
            sb.Append("violation: ").Append(v.Invariant).Append(": ").Append(v.Message);
            sb.Append(" (CPU").Append(v.ContextId).Append(' ').Append(v.ContextName).Append(" in ").Append(v.Function);
            if (v.Address != 0) sb.Append(", addr 0x").Append(v.Address.ToString("x"));
            if (v.Pfn >= 0) sb.Append(", pfn 0x").Append(v.Pfn.ToString("x"));
            sb.Append(")\n");
        }
        return sb.ToString();

        void Line(Func<int, string> cell)
        {
            int start = sb.Length;
            for (int i = 0; i < cols.Count; i++)
            {
                string t = cell(i);
                if (t.Length > widths[i]) t = t[..Math.Max(0, widths[i] - 3)] + "...";
                sb.Append(t);
                if (i < cols.Count - 1) sb.Append(' ', widths[i] - t.Length + 3);
            }
            while (sb.Length > start && sb[^1] == ' ') sb.Length--;
            sb.Append('\n');
        }
    }
}
