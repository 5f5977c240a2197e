using MmuSim.Explore;
using MmuSim.Sched;

namespace MmuSim.Trace;

/// <summary>What a collected trace event is.</summary>
public enum TraceEventKind : byte
{
    /// <summary>A kernel function was entered (<see cref="KContext.Enter"/>).</summary>
    Enter,
    /// <summary>The innermost kernel function returned.</summary>
    Leave,
    /// <summary>A scheduling point was reached (the access it guards runs when the context next resumes).</summary>
    Step,
    /// <summary>A <see cref="Tracer"/> record: tracepoint, slice begin/end, or counter.</summary>
    Record,
    /// <summary>The context's body returned.</summary>
    Exit,
    /// <summary>The run's violation.</summary>
    Violation,
}

/// <summary>One collected event, in the order it happened.</summary>
/// <param name="Name">Function name (Enter/Leave/Step), tracepoint or counter name (Record), invariant (Violation).</param>
/// <param name="Fields">Step: the subject's name (a lock); Record: the tracepoint fields; Violation: the message.</param>
/// <param name="AtomicDepth">Spinlocks/RCU sections held by the context (ftrace's preempt-depth column).</param>
/// <param name="Blocked">Step: the context blocked here (contended lock, wait queue).</param>
public readonly record struct TraceEvent(
    long TimeNs, long Step, int Cpu, TraceEventKind Kind, PointKind Point, ulong Arg,
    string Name, string Fields, long Value, int AtomicDepth, bool Blocked, TracePhase Phase = TracePhase.Event);

/// <summary>A context as it appears in trace outputs.</summary>
/// <param name="Operation">Its outermost kernel function (the first one it entered), or its name.</param>
public sealed record TraceContext(int Id, string Name, int Pid, string Operation)
{
    /// <summary>Diagram column header: <c>CPU0 (kswapd: try_to_unmap_one)</c>.</summary>
    public string Header => Operation == Name ? $"CPU{Id} ({Name})" : $"CPU{Id} ({Name}: {Operation})";
}

/// <summary>
/// Records one run for the trace writers and the race diagram: every step (with the subject lock, function and
/// atomic depth), kernel-function enter/leave, every <see cref="Tracer"/> record (tracing is switched on while
/// attached), context exits and the violation, in one totally ordered list. Attach it to a replay of a counterexample;
/// it is an <see cref="IRunObserver"/>, so <c>counterexample.Replay(program, collector)</c> fills it.
/// </summary>
/// <remarks>Costly by design (one event per step); never attached during fast exploration.</remarks>
public sealed class TraceCollector : IStepSink, IFunctionHook, IRunObserver
{
    readonly List<TraceEvent> _events = [];
    readonly List<TraceContext> _contexts = [];
    readonly List<string?> _operations = [];
    readonly List<bool> _exited = [];
    Scheduler? _s;
    Tracer? _tracer;
    int _pulled;
    int _firstId = -1;

    public IReadOnlyList<TraceEvent> Events => _events;

    public IReadOnlyList<TraceContext> Contexts => _contexts;

    public Violation? Violation { get; private set; }

    /// <summary>Label of the run (scenario and era) for trace headers.</summary>
    public string Title { get; set; } = "mmusim";

    /// <summary>Record the next run of <paramref name="s"/>: installs the step sink (and, at the first step, the function hook).</summary>
    public void Attach(Scheduler s, Kernel? k)
    {
        if (k != null) Bind(k);
        s.StepSink = this;
    }

    /// <summary>
    /// Know the kernel (for its <see cref="Tracer"/>) without installing anything: for runners that install the step
    /// sink themselves at the start of the explored phase (the scenario runner's setup phase is not recorded).
    /// </summary>
    public void Bind(Kernel k) => _tracer = k.Trace;

    /// <summary>Recording starts at the first step: function hook on, tracer on, earlier tracer records skipped.</summary>
    void Start(Scheduler s)
    {
        _s = s;
        _firstId = s.Contexts.Count > 0 ? FirstLive(s) : 0;
        s.FunctionHook = this;
        if (_tracer != null)
        {
            _tracer.On = true;
            _pulled = _tracer.Records.Count;
        }
    }

    public void Detach(Scheduler s, Kernel? k)
    {
        if (_s == null) return;
        Pull();
        NoteExits();
        s.StepSink = null;
        s.FunctionHook = null;
        if (_tracer != null) _tracer.On = false;
        _contexts.Clear();
        foreach (var c in s.Contexts)
        {
            Grow(c.Id);
            if (_firstId < 0 || c.Id < _firstId) continue;
            _contexts.Add(new TraceContext(c.Id, c.Name, c.Pid, _operations[c.Id] ?? c.Name));
        }
        Violation ??= s.Violation;
    }

    public void OnStep(Scheduler s, KContext ctx, PointKind kind, ulong arg)
    {
        if (_s == null) Start(s);
        Pull();
        NoteExits();
        string subject = s.StepSubject switch
        {
            null => "",
            string str => str,
            LockSet ls when ls.Capacity > 1 => $"{ls.Name}[{arg}]",
            var o => o.ToString() ?? "",
        };
        _events.Add(new TraceEvent(s.ClockNs, s.Steps, ctx.Id, TraceEventKind.Step, kind, arg, ctx.CurrentFunction, subject, 0,
            ctx.AtomicDepth, ctx.State == ContextState.Blocked));
    }

    public void OnViolation(Scheduler s, Violation v)
    {
        if (_s == null) return;
        Pull();
        Violation = v;
        _events.Add(new TraceEvent(s.ClockNs, s.Steps, Math.Max(v.ContextId, 0), TraceEventKind.Violation, PointKind.Yield, v.Address,
            v.Invariant, v.Message, v.Pfn, 0, false));
    }

    public void OnEnter(KContext ctx, string kernelFunction)
    {
        Pull();
        Grow(ctx.Id);
        if (ctx.FunctionDepth == 1 && _operations[ctx.Id] == null) _operations[ctx.Id] = kernelFunction;
        var s = _s!;
        _events.Add(new TraceEvent(s.ClockNs, s.Steps, ctx.Id, TraceEventKind.Enter, PointKind.Yield, 0, kernelFunction, "", 0, ctx.AtomicDepth, false));
    }

    public void OnLeave(KContext ctx)
    {
        Pull();
        var s = _s!;
        // The writers close the innermost open slice of the context; the returning function's name is not needed.
        _events.Add(new TraceEvent(s.ClockNs, s.Steps, ctx.Id, TraceEventKind.Leave, PointKind.Yield, 0, "", "", 0, ctx.AtomicDepth, false));
    }

    /// <summary>Contexts that finished before recording started (a scenario's setup) are left out of the outputs.</summary>
    static int FirstLive(Scheduler s)
    {
        foreach (var c in s.Contexts)
            if (c.State != ContextState.Done) return c.Id;
        return s.Contexts.Count;
    }

    void Grow(int id)
    {
        while (_operations.Count <= id)
        {
            _operations.Add(null);
            _exited.Add(false);
        }
    }

    void NoteExits()
    {
        var s = _s;
        if (s == null) return;
        foreach (var c in s.Contexts)
        {
            Grow(c.Id);
            if (c.Id < _firstId || c.State != ContextState.Done || _exited[c.Id]) continue;
            _exited[c.Id] = true;
            _events.Add(new TraceEvent(s.ClockNs, s.Steps, c.Id, TraceEventKind.Exit, PointKind.Yield, 0, c.Name, "", 0, 0, false));
        }
    }

    /// <summary>Before recording an event: contexts that finished since, then tracer records made since.</summary>
    void Pull()
    {
        NoteExits();
        var t = _tracer;
        if (t == null) return;
        var recs = t.Records;
        for (; _pulled < recs.Count; _pulled++)
        {
            var r = recs[_pulled];
            int depth = _s != null && r.Cpu < _s.Contexts.Count ? _s.Contexts[r.Cpu].AtomicDepth : 0;
            _events.Add(new TraceEvent(r.TimeNs, r.Step, r.Cpu, TraceEventKind.Record, PointKind.Yield, 0, r.Event, r.Fields, r.Value, depth, false, r.Phase));
        }
    }
}
