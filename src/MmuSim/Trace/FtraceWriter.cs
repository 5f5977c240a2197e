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

    /// <summary>
    /// The data lines, without the header, in global timestamp order. Whenever the model's step moves from one context to
    /// another, a <c>sched_switch</c> pair shows it: the context that stops is switched out to its CPU's idle task
    /// (<c>prev_state=R+</c> when preempted, <c>D</c> when it waits on a contended lock) and the one that runs is switched
    /// in from idle, so that viewers draw each CPU's running slices.
    /// </summary>
    public static List<string> Lines(TraceCollector c)
    {
        var ctx = c.Contexts.ToDictionary(x => x.Id);
        var lines = new List<string>(c.Events.Count);
        var open = new Dictionary<int, int>();            // cpu -> open function slices
        var blocked = new Dictionary<int, bool>();        // cpu -> its last step waits on a lock
        var asyncCookies = new Dictionary<string, Stack<int>>(StringComparer.Ordinal);
        int nextCookie = 1;
        var sb = new StringBuilder(160);
        long lastUs = TraceTime.BaseNs / 1000 - 1;
        int running = -1;

        for (int i = 0; i < c.Events.Count; i++)
        {
            var e = c.Events[i];
            if (e.Cpu != running && ctx.ContainsKey(e.Cpu)) SchedSwitch(running, e.Cpu, e.TimeNs);
            switch (e.Kind)
            {
                case TraceEventKind.Enter:
                    open[e.Cpu] = open.GetValueOrDefault(e.Cpu) + 1;
                    Emit(e, "tracing_mark_write", $"B|{Pid(e.Cpu)}|{e.Name}");
                    break;
                case TraceEventKind.Leave:
                    if (open.GetValueOrDefault(e.Cpu) == 0) break;
                    open[e.Cpu]--;
                    Emit(e, "tracing_mark_write", $"E|{Pid(e.Cpu)}");
                    break;
                case TraceEventKind.Step:
                    blocked[e.Cpu] = e.Blocked;
                    if (e.Point == PointKind.LockAcquire)
                        Emit(e, e.Blocked ? "lock_contended" : "lock_acquire", $"{LockPtr(e)} {LockName(e)}");
                    else if (e.Point == PointKind.LockRelease)
                        Emit(e, "lock_release", $"{LockPtr(e)} {LockName(e)}");
                    break;
                case TraceEventKind.Record:
                    switch (e.Phase)
                    {
                        case TracePhase.Event:
                            Emit(e, EventName(e.Name), e.Fields);
                            break;
                        case TracePhase.Counter:
                            Emit(e, "tracing_mark_write", $"C|{CounterTgid}|{EventName(e.Name)}|{e.Value.ToString(CultureInfo.InvariantCulture)}");
                            break;
                        case TracePhase.Begin:
                        {
                            if (!asyncCookies.TryGetValue(e.Name, out var st)) asyncCookies[e.Name] = st = new Stack<int>();
                            int cookie = nextCookie++;
                            st.Push(cookie);
                            Emit(e, "tracing_mark_write", $"S|{CounterTgid}|{EventName(e.Name)}|{cookie}");
                            break;
                        }
                        case TracePhase.End:
                            if (asyncCookies.TryGetValue(e.Name, out var s2) && s2.Count > 0)
                                Emit(e, "tracing_mark_write", $"F|{CounterTgid}|{EventName(e.Name)}|{s2.Pop()}");
                            break;
                    }
                    break;
                case TraceEventKind.Violation:
                    Emit(e, "tracing_mark_write", $"I|{CounterTgid}|violation {e.Name}: {e.Fields}");
                    break;
            }
        }
        // Close slices left open by contexts frozen at the violation.
        long endNs = c.Events.Count > 0 ? c.Events[^1].TimeNs : 0;
        foreach (var (cpu, n) in open.OrderBy(p => p.Key))
            for (int j = 0; j < n; j++)
                Line(cpu, Comm(cpu), Pid(cpu), 0, endNs, "tracing_mark_write", $"E|{Pid(cpu)}");
        return lines;

        int Pid(int cpu) => ctx.TryGetValue(cpu, out var t) ? t.Pid : 0;

        string Comm(int cpu)
        {
            string comm = ctx.TryGetValue(cpu, out var t) ? t.Name : "<idle>";
            if (comm.Length > 15) comm = comm[..15];
            return comm.Replace(' ', '_');
        }

        // sched_switch's TP_printk (include/trace/events/sched.h): prev_comm prev_pid prev_prio prev_state ==> next_*.
        void SchedSwitch(int from, int to, long timeNs)
        {
            if (from >= 0)
                Line(from, Comm(from), Pid(from), 0, timeNs, "sched_switch",
                    $"prev_comm={Comm(from)} prev_pid={Pid(from)} prev_prio=120 prev_state={(blocked.GetValueOrDefault(from) ? "D" : "R+")} ==> next_comm=swapper/{from} next_pid=0 next_prio=120");
            Line(to, "<idle>", 0, 0, timeNs, "sched_switch",
                $"prev_comm=swapper/{to} prev_pid=0 prev_prio=120 prev_state=R ==> next_comm={Comm(to)} next_pid={Pid(to)} next_prio=120");
            running = to;
        }

        void Emit(TraceEvent e, string ev, string fields) => Line(e.Cpu, Comm(e.Cpu), Pid(e.Cpu), e.AtomicDepth, e.TimeNs, ev, fields);

        void Line(int cpu, string comm, int pid, int atomicDepth, long timeNs, string ev, string fields)
        {
            long us = TraceTime.Next(timeNs, ref lastUs, 1000);
            sb.Clear();
            sb.Append(comm.PadLeft(16)).Append('-').Append(pid.ToString(CultureInfo.InvariantCulture).PadRight(7)).Append(' ');
            sb.Append('[').Append(cpu.ToString("D3", CultureInfo.InvariantCulture)).Append("] ");
            int depth = Math.Min(atomicDepth, 15);
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
