using System.Globalization;
using System.Text;
using MmuSim.Sched;

namespace MmuSim.Trace;

/// <summary>
/// Writes a collected run as Linux ftrace text in the <c>/sys/kernel/tracing/trace</c> layout
/// (kernel/trace/trace_output.c <c>trace_print_context</c>: <c>"%16s-%-7d [%03d] flags %5lu.%06lu: event: fields"</c>),
/// with the nop tracer's header (traces-style-dotnet.md §1a).
/// </summary>
/// <remarks>
/// <para>Each context is one CPU (<c>[003]</c> = context id) and one task (its name and pid). Tracepoints keep the names
/// and TP_printk field text the model's <see cref="Tracer"/> recorded (kvm_unmap_hva_range, ksm_merge_one_page, ...;
/// the model's own <c>mmusim:</c> events print without the system, as ftrace prints every event). Lock operations are
/// the lockdep tracepoints <c>lock_acquire</c> / <c>lock_release</c> / <c>lock_contended</c>
/// (<c>"%p %s%s%s"</c>, <c>"%p %s"</c>) with a stable hashed pointer per lock.</para>
/// <para>Perfetto's text importer ignores kvm_*, ksm_* and lock_* lines, so kernel functions become atrace slices
/// (<c>tracing_mark_write: B|pid|name</c> ... <c>E|pid</c>), counters <c>C|1|name|value</c> (one process, tgid 1, owns
/// every counter track), model slices from <see cref="Tracer.Begin"/> async slices <c>S|1|name|cookie</c> /
/// <c>F|1|name|cookie</c>, and the violation an instant <c>I|1|violation ...</c>.</para>
/// <para>The flags column shows the context's spinlock/RCU depth as the preempt-depth digit (<c>...1.</c>).</para>
/// </remarks>
public static class FtraceWriter
{
    public const int CounterTgid = 1;

    public static string Write(TraceCollector c)
    {
        var sw = new StringWriter();
        Write(c, sw);
        return sw.ToString();
    }

    public static void Write(TraceCollector c, TextWriter w)
    {
        var lines = Lines(c);
        w.Write("# tracer: nop\n");
        w.Write("#\n");
        w.Write($"# entries-in-buffer/entries-written: {lines.Count}/{lines.Count}   #P:{Math.Max(1, c.Contexts.Count)}\n");
        w.Write("#\n");
        w.Write("#                                _-----=> irqs-off/BH-disabled\n");
        w.Write("#                               / _----=> need-resched\n");
        w.Write("#                              | / _---=> hardirq/softirq\n");
        w.Write("#                              || / _--=> preempt-depth\n");
        w.Write("#                              ||| / _-=> migrate-disable\n");
        w.Write("#                              |||| /     delay\n");
        w.Write("#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n");
        w.Write("#              | |         |   |||||     |         |\n");
        foreach (var l in lines)
        {
            w.Write(l);
            w.Write('\n');
        }
    }

    /// <summary>The data lines, without the header, in global timestamp order.</summary>
    public static List<string> Lines(TraceCollector c)
    {
        var ctx = c.Contexts.ToDictionary(x => x.Id);
        var ts = TraceTime.Assign(c.Events);
        var lines = new List<string>(c.Events.Count);
        var open = new Dictionary<int, int>();            // cpu -> open function slices
        var asyncCookies = new Dictionary<string, Stack<int>>(StringComparer.Ordinal);
        int nextCookie = 1;
        var sb = new StringBuilder(160);
        long lastUs = TraceTime.BaseUs;

        for (int i = 0; i < c.Events.Count; i++)
        {
            var e = c.Events[i];
            lastUs = ts[i];
            switch (e.Kind)
            {
                case TraceEventKind.Enter:
                    open[e.Cpu] = open.GetValueOrDefault(e.Cpu) + 1;
                    Emit(e, "tracing_mark_write", $"B|{Pid(e.Cpu)}|{e.Name}", ts[i]);
                    break;
                case TraceEventKind.Leave:
                    if (open.GetValueOrDefault(e.Cpu) == 0) break;
                    open[e.Cpu]--;
                    Emit(e, "tracing_mark_write", $"E|{Pid(e.Cpu)}", ts[i]);
                    break;
                case TraceEventKind.Step:
                    if (e.Point == PointKind.LockAcquire)
                        Emit(e, e.Blocked ? "lock_contended" : "lock_acquire", $"{LockPtr(e)} {LockName(e)}", ts[i]);
                    else if (e.Point == PointKind.LockRelease)
                        Emit(e, "lock_release", $"{LockPtr(e)} {LockName(e)}", ts[i]);
                    break;
                case TraceEventKind.Record:
                    switch (e.Phase)
                    {
                        case TracePhase.Event:
                            Emit(e, EventName(e.Name), e.Fields, ts[i]);
                            break;
                        case TracePhase.Counter:
                            Emit(e, "tracing_mark_write", $"C|{CounterTgid}|{EventName(e.Name)}|{e.Value.ToString(CultureInfo.InvariantCulture)}", ts[i]);
                            break;
                        case TracePhase.Begin:
                        {
                            if (!asyncCookies.TryGetValue(e.Name, out var st)) asyncCookies[e.Name] = st = new Stack<int>();
                            int cookie = nextCookie++;
                            st.Push(cookie);
                            Emit(e, "tracing_mark_write", $"S|{CounterTgid}|{EventName(e.Name)}|{cookie}", ts[i]);
                            break;
                        }
                        case TracePhase.End:
                            if (asyncCookies.TryGetValue(e.Name, out var s2) && s2.Count > 0)
                                Emit(e, "tracing_mark_write", $"F|{CounterTgid}|{EventName(e.Name)}|{s2.Pop()}", ts[i]);
                            break;
                    }
                    break;
                case TraceEventKind.Violation:
                    Emit(e, "tracing_mark_write", $"I|{CounterTgid}|violation {e.Name}: {e.Fields}", ts[i]);
                    break;
            }
        }
        // Close slices left open by contexts frozen at the violation.
        foreach (var (cpu, n) in open.OrderBy(p => p.Key))
            for (int j = 0; j < n; j++)
                Emit(new TraceEvent(0, 0, cpu, TraceEventKind.Leave, PointKind.Yield, 0, "", "", 0, 0, false), "tracing_mark_write", $"E|{Pid(cpu)}", ++lastUs);
        return lines;

        int Pid(int cpu) => ctx.TryGetValue(cpu, out var t) ? t.Pid : 0;

        void Emit(TraceEvent e, string ev, string fields, long us)
        {
            sb.Clear();
            string comm = ctx.TryGetValue(e.Cpu, out var t) ? t.Name : "<idle>";
            if (comm.Length > 15) comm = comm[..15];
            comm = comm.Replace(' ', '_');
            sb.Append(comm.PadLeft(16)).Append('-').Append(Pid(e.Cpu).ToString(CultureInfo.InvariantCulture).PadRight(7)).Append(' ');
            sb.Append('[').Append(e.Cpu.ToString("D3", CultureInfo.InvariantCulture)).Append("] ");
            int depth = Math.Min(e.AtomicDepth, 15);
            sb.Append("...").Append(depth == 0 ? '.' : "0123456789abcdef"[depth]).Append('.');
            sb.Append(' ').Append((us / 1_000_000).ToString(CultureInfo.InvariantCulture).PadLeft(5)).Append('.')
              .Append((us % 1_000_000).ToString("D6", CultureInfo.InvariantCulture));
            sb.Append(": ").Append(ev).Append(": ").Append(fields);
            lines.Add(sb.ToString());
        }
    }

    static string EventName(string name)
    {
        int i = name.IndexOf(':');
        return i >= 0 ? name[(i + 1)..] : name;
    }

    static string LockName(TraceEvent e) => e.Fields.Length == 0 ? "lock" : e.Fields;

    /// <summary>A stable stand-in for the hashed <c>%p</c> of the lock's lockdep map: 16 hex digits.</summary>
    static string LockPtr(TraceEvent e)
    {
        ulong h = 0xcbf29ce484222325UL;
        foreach (char ch in e.Fields) h = (h ^ ch) * 0x100000001b3UL;
        return (0xffff000000000000UL | (h & 0x0000ffffffffffc0UL)).ToString("x16", CultureInfo.InvariantCulture);
    }
}
