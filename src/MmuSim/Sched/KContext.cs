using System.Runtime.CompilerServices;

namespace MmuSim.Sched;

/// <summary>Scheduling state of one kernel context.</summary>
public enum ContextState : byte { Runnable, Blocked, Sleeping, Done }

/// <summary>
/// One kernel execution context: a CPU running a user task, a vCPU thread, ksmd, kswapd, the OOM reaper...
/// Its body is an ordinary async method that awaits <see cref="Scheduler.Point"/> wherever another CPU
/// could interleave.
/// </summary>
/// <remarks>
/// Locking rules: a context's fields are touched only by the scheduler's single OS thread. <see cref="AtomicDepth"/>
/// counts spinlocks held, RCU read-side sections (pre-3.7 notifier dispatch) and preempt-disabled regions; any sleeping
/// operation while it is non-zero is the "sleep-in-atomic" violation, as might_sleep() would report.
/// <see cref="NonBlockDepth"/> counts non_block_start() regions (non-blockable notifier callbacks, 5.x+).
/// </remarks>
public sealed class KContext
{
    internal KContext(int id, string name, Func<KContext, ValueTask> body, bool daemon)
    {
        Id = id;
        Name = name;
        Body = body;
        IsDaemon = daemon;
    }

    /// <summary>Dense id, also the CPU number shown in traces (<c>[003]</c>).</summary>
    public int Id { get; }

    /// <summary>Task name, e.g. <c>kswapd0</c>, <c>qemu-vcpu0</c>, <c>ksmd</c>, <c>task1</c>.</summary>
    public string Name { get; }

    /// <summary>Daemons (ksmd, kswapd) loop forever; a run ends when every non-daemon context is done.</summary>
    public bool IsDaemon { get; }

    /// <summary>Pid shown in traces.</summary>
    public int Pid { get; set; }

    internal Func<KContext, ValueTask> Body { get; }
    internal Action? Continuation;
    internal ContextState State;
    internal object? BlockedOn;
    internal long WakeAtNs;
    internal bool Started;
    internal string? SpinningIn; // the retry loop parked in Scheduler.SpinWait, for the liveness message
    internal ISpinWaiter? SpinWaiter;
    internal Footprint Pending; // what the step this context takes when next resumed touches (partial-order reduction)

    /// <summary>The footprint of the step this context takes when it next runs (kept only while a
    /// <see cref="IStepObserver"/> strategy is attached; the first step and a step after blocking are Global).</summary>
    public Footprint PendingFootprint => Pending;

    /// <summary>Spinlocks held + RCU read-side sections + preempt-disabled regions.</summary>
    public int AtomicDepth;

    /// <summary>non_block_start() nesting (non-blockable notifier callbacks).</summary>
    public int NonBlockDepth;

    /// <summary>Simulated nanoseconds this context spent working.</summary>
    public long BusyNs;

    /// <summary>Number of steps (scheduling points) this context executed.</summary>
    public long Steps;

    /// <summary>Enter/leave recorder while tracing (see <see cref="Scheduler.FunctionHook"/>), else null.</summary>
    internal IFunctionHook? Hook;

    readonly string[] _funcs = new string[48];
    int _funcDepth;

    /// <summary>Innermost kernel function this context is executing, for traces and race diagrams.</summary>
    public string CurrentFunction => _funcDepth == 0 ? Name : _funcs[_funcDepth - 1];

    /// <summary>Outermost kernel function (the "operation"), for diagram column headers.</summary>
    public string OuterFunction => _funcDepth == 0 ? Name : _funcs[0];

    public int FunctionDepth => _funcDepth;

    /// <summary>Enter a kernel function: <c>using var _ = ctx.Enter("try_to_unmap_one");</c></summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public FuncScope Enter(string kernelFunction)
    {
        if (_funcDepth < _funcs.Length) _funcs[_funcDepth] = kernelFunction;
        _funcDepth++;
        Hook?.OnEnter(this, kernelFunction);
        return new FuncScope(this);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Leave()
    {
        _funcDepth--;
        Hook?.OnLeave(this);
    }

    /// <summary>
    /// Leave the function entered with <see cref="Enter"/> when <paramref name="body"/> completes: at once if it already
    /// did (the plain-simulation fast path, no async state machine), else after it resumes. Lets a kernel function that
    /// only dispatches (handle_mm_fault, do_anonymous_page) be a plain method: <c>ctx.Enter("f"); return ctx.LeaveAfter(Body());</c>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ValueTask<T> LeaveAfter<T>(ValueTask<T> body)
    {
        if (body.IsCompletedSuccessfully)
        {
            Leave();
            return body;
        }
        return LeaveWhenDone(body);
    }

    async ValueTask<T> LeaveWhenDone<T>(ValueTask<T> body)
    {
        try { return await body; }
        finally { Leave(); }
    }

    public string FunctionAt(int depth) => depth < Math.Min(_funcDepth, _funcs.Length) ? _funcs[depth] : "?";

    public override string ToString() => $"CPU{Id} ({Name})";
}

/// <summary>Pops a kernel function name from the context's stack when disposed.</summary>
public readonly struct FuncScope(KContext ctx) : IDisposable
{
    public void Dispose() => ctx.Leave();
}
