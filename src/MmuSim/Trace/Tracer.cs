using MmuSim.Notifier;

namespace MmuSim.Trace;

/// <summary>What a trace record is: a tracepoint, a slice begin/end, or a counter sample.</summary>
public enum TracePhase : byte { Event, Begin, End, Counter }

/// <summary>One trace record, in simulated time. <see cref="Event"/> is a real tracepoint name where one exists.</summary>
public readonly record struct TraceRecord(long TimeNs, long Step, int Cpu, string Task, int Pid, TracePhase Phase, string Event, string Fields, long Value = 0);

/// <summary>
/// Collects tracepoint records while <see cref="On"/>. Call sites test <see cref="On"/> before formatting, so a run
/// without tracing formats nothing. Field strings follow the kernel's TP_printk formats (traces-style-dotnet.md §1b);
/// events with no mainline tracepoint use the <c>mmusim:</c> system.
/// </summary>
public sealed class Tracer(Kernel k)
{
    readonly List<TraceRecord> _records = [];

    public bool On { get; set; }

    public IReadOnlyList<TraceRecord> Records => _records;

    public void Clear() => _records.Clear();

    /// <summary>Emit a tracepoint (<c>kvm_unmap_hva_range</c>, <c>ksm_merge_one_page</c>, ...) on the current context.</summary>
    public void Event(string name, string fields) => Add(TracePhase.Event, name, fields, 0);

    /// <summary>Begin a slice (kernel function) on the current context.</summary>
    public void Begin(string name, string fields = "") => Add(TracePhase.Begin, name, fields, 0);

    public void End(string name) => Add(TracePhase.End, name, "", 0);

    /// <summary>A counter sample (mmu_invalidate_seq, in_progress, ...).</summary>
    public void Counter(string name, long value) => Add(TracePhase.Counter, name, "", value);

    void Add(TracePhase phase, string name, string fields, long value)
    {
        if (!On) return;
        var s = k.S;
        var cur = s.HasCurrent ? s.Current : null;
        _records.Add(new TraceRecord(s.ClockNs, s.Steps, cur?.Id ?? 0, cur?.Name ?? "<idle>", cur?.Pid ?? 0, phase, name, fields, value));
    }

    internal void RangeStart(MmuNotifierRange r)
    {
        k.Stats.Inc(Stat.NotifierStarts);
        if (On) Event("mmusim:mn_invalidate_start", $"mm {r.Mm.Id} start=0x{r.Start:x} end=0x{r.End:x} event={r.Cause} blockable={(r.Blockable ? 1 : 0)}");
    }

    internal void RangeEnd(MmuNotifierRange r)
    {
        k.Stats.Inc(Stat.NotifierEnds);
        if (On) Event("mmusim:mn_invalidate_end", $"mm {r.Mm.Id} start=0x{r.Start:x} end=0x{r.End:x} event={r.Cause}");
    }

    internal void InvalidatePage(ulong address)
    {
        k.Stats.Inc(Stat.NotifierInvalidatePage);
        if (On) Event("mmusim:mn_invalidate_page", $"address=0x{address:x}");
    }
}
