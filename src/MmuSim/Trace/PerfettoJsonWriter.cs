using System.Text.Json;
using MmuSim.Sched;

namespace MmuSim.Trace;

/// <summary>
/// Writes a collected run as Chrome/Perfetto JSON trace events (<c>{"traceEvents":[...]}</c>, traces-style-dotnet.md §1c):
/// one process (pid 1, named after the run), one thread track per context/CPU (tid = the context's pid, named
/// <c>CPU0 kswapd</c>, sorted by CPU), a B/E slice per kernel function (<see cref="KContext.Enter"/>), instants for
/// tracepoints and lock operations, counters (<c>ph:"C"</c>) for seq, in_progress and every other <see cref="Tracer"/>
/// counter, async slices for <see cref="Tracer.Begin"/>/<see cref="Tracer.End"/>, and the violation as a global instant.
/// The time axis is the simulated clock: <c>ts</c> is in microseconds with nanosecond fractions, events at one simulated
/// instant 1 ns apart (see <see cref="TraceTime"/>). Slices left open by contexts frozen at the violation are
/// closed at the end, so B/E strictly nest on every thread.
/// </summary>
public static class PerfettoJsonWriter
{
    public const int Pid = 1;

    public static string Write(TraceCollector c)
    {
        using var ms = new MemoryStream();
        Write(c, ms);
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    public static void Write(TraceCollector c, Stream output)
    {
        using var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = false });
        var ts = TraceTime.AssignNs(c.Events);
        var tid = c.Contexts.ToDictionary(x => x.Id, x => x.Pid);
        var open = new Dictionary<int, int>();
        var asyncIds = new Dictionary<string, Stack<int>>(StringComparer.Ordinal);
        int nextId = 1;
        long lastNs = TraceTime.BaseNs;

        w.WriteStartObject();
        w.WriteString("displayTimeUnit", "ns");
        w.WriteStartArray("traceEvents");

        w.WriteStartObject();
        w.WriteString("ph", "M"); w.WriteNumber("pid", Pid); w.WriteString("name", "process_name");
        w.WriteStartObject("args"); w.WriteString("name", c.Title); w.WriteEndObject();
        w.WriteEndObject();
        foreach (var t in c.Contexts)
        {
            Meta(t.Pid, "thread_name", "name", $"CPU{t.Id} {t.Name}");
            w.WriteStartObject();
            w.WriteString("ph", "M"); w.WriteNumber("pid", Pid); w.WriteNumber("tid", t.Pid); w.WriteString("name", "thread_sort_index");
            w.WriteStartObject("args"); w.WriteNumber("sort_index", t.Id); w.WriteEndObject();
            w.WriteEndObject();
        }

        for (int i = 0; i < c.Events.Count; i++)
        {
            var e = c.Events[i];
            long ns = lastNs = ts[i];
            int thread = tid.GetValueOrDefault(e.Cpu, 100 + e.Cpu);
            switch (e.Kind)
            {
                case TraceEventKind.Enter:
                    open[e.Cpu] = open.GetValueOrDefault(e.Cpu) + 1;
                    Slice("B", thread, ns, e.Name, "kernel");
                    break;
                case TraceEventKind.Leave:
                    if (open.GetValueOrDefault(e.Cpu) == 0) break;
                    open[e.Cpu]--;
                    Slice("E", thread, ns, null, "kernel");
                    break;
                case TraceEventKind.Step when e.Point is PointKind.LockAcquire or PointKind.LockRelease:
                    Instant(thread, ns, (e.Point == PointKind.LockRelease ? "unlock " : e.Blocked ? "contended " : "lock ") + e.Fields, "lock", "t", null);
                    break;
                case TraceEventKind.Record when e.Phase == TracePhase.Event:
                    Instant(thread, ns, Short(e.Name), "tracepoint", "t", e.Fields);
                    break;
                case TraceEventKind.Record when e.Phase == TracePhase.Counter:
                    w.WriteStartObject();
                    w.WriteString("ph", "C"); w.WriteNumber("pid", Pid); w.WriteNumber("ts", ns / 1000.0); w.WriteString("name", Short(e.Name));
                    w.WriteStartObject("args"); w.WriteNumber("value", e.Value); w.WriteEndObject();
                    w.WriteEndObject();
                    break;
                case TraceEventKind.Record when e.Phase == TracePhase.Begin:
                {
                    if (!asyncIds.TryGetValue(e.Name, out var st)) asyncIds[e.Name] = st = new Stack<int>();
                    st.Push(nextId);
                    Async("b", thread, ns, e.Name, nextId++);
                    break;
                }
                case TraceEventKind.Record when e.Phase == TracePhase.End:
                    if (asyncIds.TryGetValue(e.Name, out var s2) && s2.Count > 0) Async("e", thread, ns, e.Name, s2.Pop());
                    break;
                case TraceEventKind.Violation:
                    Instant(thread, ns, "violation: " + e.Name, "violation", "g", e.Fields);
                    break;
            }
        }
        foreach (var (cpu, n) in open.OrderBy(p => p.Key))
            for (int j = 0; j < n; j++) Slice("E", tid.GetValueOrDefault(cpu, 100 + cpu), ++lastNs, null, "kernel");

        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();

        void Meta(int thread, string name, string key, string value)
        {
            w.WriteStartObject();
            w.WriteString("ph", "M"); w.WriteNumber("pid", Pid); w.WriteNumber("tid", thread); w.WriteString("name", name);
            w.WriteStartObject("args"); w.WriteString(key, value); w.WriteEndObject();
            w.WriteEndObject();
        }

        void Slice(string ph, int thread, long ns, string? name, string cat)
        {
            w.WriteStartObject();
            w.WriteString("ph", ph); w.WriteNumber("pid", Pid); w.WriteNumber("tid", thread); w.WriteNumber("ts", ns / 1000.0);
            if (name != null) w.WriteString("name", name);
            w.WriteString("cat", cat);
            w.WriteEndObject();
        }

        void Instant(int thread, long ns, string name, string cat, string scope, string? fields)
        {
            w.WriteStartObject();
            w.WriteString("ph", "i"); w.WriteNumber("pid", Pid); w.WriteNumber("tid", thread); w.WriteNumber("ts", ns / 1000.0);
            w.WriteString("name", name); w.WriteString("cat", cat); w.WriteString("s", scope);
            if (!string.IsNullOrEmpty(fields))
            {
                w.WriteStartObject("args"); w.WriteString("fields", fields); w.WriteEndObject();
            }
            w.WriteEndObject();
        }

        void Async(string ph, int thread, long ns, string name, int id)
        {
            w.WriteStartObject();
            w.WriteString("ph", ph); w.WriteNumber("pid", Pid); w.WriteNumber("tid", thread); w.WriteNumber("ts", ns / 1000.0);
            w.WriteString("name", Short(name)); w.WriteString("cat", "model"); w.WriteNumber("id", id);
            w.WriteEndObject();
        }
    }

    static string Short(string name)
    {
        int i = name.IndexOf(':');
        return i >= 0 ? name[(i + 1)..] : name;
    }
}
