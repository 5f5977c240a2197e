using System.Runtime.CompilerServices;

namespace MmuSim.Sched;

/// <summary>
/// The deterministic scheduler. Every kernel context is an async method; all of them run on the caller's OS thread.
/// A context yields only at <see cref="Point"/>s (and when it blocks on a lock, a wait queue or the simulated clock).
/// At a point the <see cref="IStrategy"/> picks who runs next; if it picks the same context the await completes
/// synchronously (the fast path), otherwise the continuation is parked and the driver loop in <see cref="Run"/>
/// resumes the chosen one.
/// </summary>
/// <remarks>
/// <para>Plain simulation has no strategy: points never switch (one compare each), contexts switch only when they
/// block, sleep or finish, or when a sleeping daemon's wake-up time has passed on the simulated clock (a timer tick).</para>
/// <para>Determinism: no wall-clock, no thread pool, no hashing of object identities. Every choice, scheduling or data,
/// goes through the strategy and is appended to <see cref="Decisions"/>; replaying those entries reproduces the run.</para>
/// <para>Invariants: exactly one context is current while the driver runs a continuation; a parked context has a
/// non-null continuation; <see cref="Violation"/> once set never changes and freezes the run at the next point.</para>
/// </remarks>
public sealed class Scheduler
{
    readonly List<KContext> _contexts = [];
    readonly int[] _runnableBuf = new int[64];
    KContext? _current;
    IStrategy? _strategy;
    int _pendingNext = -1;
    long _slowAtStep;
    long _nextWakeNs = long.MaxValue;
    bool _hooks;
    ulong _spinMask; // contexts parked in SpinWait, woken after a step of another context that changed their inputs
    IStepObserver? _observer; // partial-order reduction: sees every step with its footprint
    int _objectIds;
    bool _decideParked; // state caching: decisions are taken in the driver loop, with every context parked
    int _parkedCur = -1;
    PointKind _parkedKind;
    bool _abandoned;
    const int DecideParked = -2;
    static readonly object SpinToken = new SpinWaitToken();

    public Scheduler(IStrategy? strategy = null, CostModel? costs = null)
    {
        _strategy = strategy;
        Costs = costs ?? new CostModel();
        UpdateSlowPath();
    }

    /// <summary>The strategy, or null for plain simulation.</summary>
    public IStrategy? Strategy
    {
        get => _strategy;
        set { _strategy = value; UpdateSlowPath(); }
    }

    public CostModel Costs { get; }

    public IReadOnlyList<KContext> Contexts => _contexts;

    /// <summary>The context currently executing (valid inside kernel code).</summary>
    public KContext Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _current ?? NoCurrent();
    }

    static KContext NoCurrent() => throw new ModelException("no current context: kernel code called outside Scheduler.Run");

    public bool HasCurrent => _current != null;

    /// <summary>Total steps (scheduling points passed) in this run.</summary>
    public long Steps { get; private set; }

    /// <summary>A run that exceeds this many steps is a liveness violation (livelock or stuck retry).</summary>
    public long MaxSteps { get; set; } = 5_000_000;

    /// <summary>Simulated time in nanoseconds, advanced by <see cref="Charge"/> and by sleeping.</summary>
    public long ClockNs { get; private set; }

    public DecisionLog Decisions { get; } = new();

    public Violation? Violation { get; private set; }

    /// <summary>Non-null when the model itself threw (a bug in MmuSim, not in the modelled kernel).</summary>
    public Exception? ModelError { get; private set; }

    /// <summary>Called after every step (at each point, before the decision): the checker's hook.</summary>
    public Action? AfterStep
    {
        get => _afterStep;
        set { _afterStep = value; UpdateSlowPath(); }
    }
    Action? _afterStep;

    /// <summary>Optional per-step recorder (race diagrams, ftrace output); null in fast exploration.</summary>
    public IStepSink? StepSink
    {
        get => _stepSink;
        set { _stepSink = value; UpdateSlowPath(); }
    }
    IStepSink? _stepSink;

    /// <summary>
    /// Optional kernel-function enter/leave recorder (Perfetto slices). Null unless tracing: then
    /// <see cref="KContext.Enter"/> costs one null test.
    /// </summary>
    public IFunctionHook? FunctionHook
    {
        get => _functionHook;
        set
        {
            _functionHook = value;
            foreach (var c in _contexts) c.Hook = value;
        }
    }
    IFunctionHook? _functionHook;

    void UpdateSlowPath()
    {
        _hooks = _afterStep != null || _stepSink != null;
        _slowAtStep = _hooks || _strategy != null || _spinMask != 0 ? 0 : MaxSteps;
    }

    /// <summary>
    /// Make every step dependent on every other for partial-order reduction (<see cref="Footprint.Global"/>): set while a
    /// check depends on the order of steps that touch different objects (the checker's numbering of CPU stores).
    /// </summary>
    public bool AllStepsDependent { get; set; }

    /// <summary>The weak-memory model's state when the run uses <c>--memory lkmm</c> (locks carry views through it); null under SC.</summary>
    public Lkmm.WeakMemory? Weak { get; set; }

    /// <summary>A dense id for a shared object (locks), in creation order: deterministic, unlike object hashes.</summary>
    internal int NewObjectId() => ++_objectIds;

    /// <summary>Create a context. Its body starts at the first decision that picks it.</summary>
    public KContext Spawn(string name, Func<KContext, ValueTask> body, bool daemon = false)
    {
        if (_contexts.Count >= _runnableBuf.Length) throw new ModelException($"at most {_runnableBuf.Length} contexts per run");
        var ctx = new KContext(_contexts.Count, name, body, daemon) { Pid = 100 + _contexts.Count, Hook = _functionHook };
        _contexts.Add(ctx);
        return ctx;
    }

    // ---------------------------------------------------------------- points

    /// <summary>A scheduling point: another CPU may run here. <c>await S.Point(PointKind.PteWrite, addr);</c></summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SchedPoint Point(PointKind kind, ulong arg = 0) => new(this, kind, arg, null);

    /// <summary>A point about <paramref name="subject"/> (a lock): step sinks see it as <see cref="StepSubject"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SchedPoint Point(PointKind kind, ulong arg, object subject) => new(this, kind, arg, subject);

    /// <summary>The object a step is about (the lock of a lock point), valid only inside <see cref="IStepSink.OnStep"/>.</summary>
    public object? StepSubject { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool OnPoint(PointKind kind, ulong arg, object? subject = null)
    {
        if (++Steps < _slowAtStep && ClockNs < _nextWakeNs) return true;
        return OnPointSlow(kind, arg, subject);
    }

    bool OnPointSlow(PointKind kind, ulong arg, object? subject)
    {
        var cur = _current!;
        cur.Steps++;
        if (Violation != null || ModelError != null) return false;
        if (_spinMask != 0) WakeSpinners(cur.Id);
        if (_stepSink != null)
        {
            StepSubject = subject;
            _stepSink.OnStep(this, cur, kind, arg);
            StepSubject = null;
        }
        _afterStep?.Invoke();
        if (Violation != null) return false;
        if (Steps > MaxSteps)
        {
            Fail(Invariants.Liveness, $"no termination within {MaxSteps} steps (livelock or stuck retry)");
            return false;
        }
        bool woke = WakeExpiredSleepers();
        cur.Pending = _observer == null || AllStepsDependent ? Footprint.Global : Footprint.Of(kind, arg, subject);
        if (_strategy == null)
        {
            // Plain simulation: a timer tick lets a daemon whose sleep just expired preempt the current context.
            int daemon = woke ? FirstRunnableDaemonOtherThan(cur.Id) : -1;
            if (daemon < 0) return true;
            _pendingNext = daemon;
            return false;
        }
        int n = CollectRunnable();
        if (n <= 1)
        {
            _observer?.OnStep(cur.Id, cur.Pending);
            return true;
        }
        if (_decideParked)
        {
            // The strategy reads the whole state (StateDigest) at its decisions: park even to continue, so that the
            // current context's position is in its async state machine box, as every other context's is.
            _parkedCur = cur.Id;
            _parkedKind = kind;
            _pendingNext = DecideParked;
            return false;
        }
        int next = _strategy.Next(new Decision(_runnableBuf.AsSpan(0, n), cur.Id, Steps, kind));
        Decisions.AddSchedule(next, preempted: next != cur.Id);
        if (next == cur.Id)
        {
            _observer?.OnStep(cur.Id, cur.Pending);
            return true;
        }
        _pendingNext = next;
        return false;
    }

    /// <summary>
    /// Park after a direct <see cref="OnPoint"/> call returned false (hand-written fast paths such as
    /// <c>MmStruct.PtepGet</c> avoid an async state machine when no switch happens).
    /// </summary>
    internal BlockAwaiter Parked() => new(this);

    internal void Park(Action continuation)
    {
        var cur = _current!;
        if (Violation != null || ModelError != null) return; // frozen: the context is abandoned
        cur.Continuation = continuation;
    }

    // ---------------------------------------------------------------- blocking

    /// <summary>Block the current context on <paramref name="on"/> until someone calls <see cref="Wake"/>.</summary>
    public BlockAwaiter Block(object on, PointKind kind = PointKind.Wait)
    {
        var cur = Current;
        if (_spinMask != 0) WakeSpinners(cur.Id);
        cur.State = ContextState.Blocked;
        cur.BlockedOn = on;
        cur.Pending = Footprint.Global;
        if (_stepSink != null)
        {
            StepSubject = on;
            _stepSink.OnStep(this, cur, kind, 0);
            StepSubject = null;
        }
        return new BlockAwaiter(this);
    }

    /// <summary>Make a blocked context runnable again; it re-checks its condition when resumed.</summary>
    public void Wake(KContext ctx)
    {
        if (ctx.State == ContextState.Blocked)
        {
            ctx.State = ContextState.Runnable;
            ctx.BlockedOn = null;
        }
    }

    /// <summary>Wake every context whose bit is set in <paramref name="mask"/> and clear it (lock and wait-queue waiters).</summary>
    public void WakeMask(ref ulong mask)
    {
        ulong m = mask;
        mask = 0;
        while (m != 0)
        {
            int id = System.Numerics.BitOperations.TrailingZeroCount(m);
            m &= m - 1;
            Wake(_contexts[id]);
        }
    }

    /// <summary>
    /// A spin-loop hint (Loom's <c>hint::spin_loop</c>/<c>yield_now</c>, Coyote's yield) for a retry whose attempt
    /// changed nothing: the caller has checked that every input of its retry decision is as it was when the attempt
    /// began, so the next attempt would repeat this one step for step. The context parks, not runnable and so no choice
    /// for the strategy, until another context completes a step (reaches a point, blocks, sleeps, spins or exits)
    /// after which <see cref="ISpinWaiter.InputsChanged"/> holds. If every live context is parked here or blocked and
    /// no sleeper is left, nothing can ever change those inputs: a liveness violation. Not a sleep (no might_sleep()).
    /// </summary>
    /// <remarks>Exact as long as <see cref="ISpinWaiter.InputsChanged"/> covers every input of the retry decision: the
    /// check runs after each step of every other context, so a write that would end the spin is never missed; only
    /// repetitions of an attempt on unchanged inputs are cut. Checks run only while a context is parked.</remarks>
    public BlockAwaiter SpinWait(ISpinWaiter waiter, string what)
    {
        var cur = Current;
        if (_spinMask != 0) WakeSpinners(cur.Id);
        cur.State = ContextState.Blocked;
        cur.BlockedOn = SpinToken;
        cur.Pending = Footprint.Global;
        cur.SpinningIn = what;
        cur.SpinWaiter = waiter;
        _spinMask |= 1UL << cur.Id;
        UpdateSlowPath();
        _stepSink?.OnStep(this, cur, PointKind.Yield, 0);
        return new BlockAwaiter(this);
    }

    /// <summary>After a step of <paramref name="stepper"/>: wake every other spinner whose retry inputs changed.</summary>
    void WakeSpinners(int stepper)
    {
        ulong m = _spinMask & ~(1UL << stepper);
        bool any = false;
        while (m != 0)
        {
            int id = System.Numerics.BitOperations.TrailingZeroCount(m);
            m &= m - 1;
            var c = _contexts[id];
            if (!c.SpinWaiter!.InputsChanged) continue;
            _spinMask &= ~(1UL << id);
            c.SpinningIn = null;
            c.SpinWaiter = null;
            Wake(c);
            any = true;
        }
        if (any) UpdateSlowPath();
    }

    /// <summary>Sleep on the simulated clock (daemons, schedule_timeout). A sleeping operation: see <see cref="MightSleep"/>.</summary>
    public BlockAwaiter Sleep(long ns)
    {
        MightSleep("schedule_timeout");
        var cur = Current;
        if (_spinMask != 0) WakeSpinners(cur.Id);
        cur.State = ContextState.Sleeping;
        cur.Pending = Footprint.Global;
        cur.WakeAtNs = ClockNs + Math.Max(ns, 1);
        if (cur.WakeAtNs < _nextWakeNs) _nextWakeNs = cur.WakeAtNs;
        _stepSink?.OnStep(this, cur, PointKind.Sleep, (ulong)ns);
        return new BlockAwaiter(this);
    }

    /// <summary>
    /// CONFIG_PREEMPT_RT (scenario <c>preempt_rt: true</c>): spinlock_t and rwlock_t are rt_mutex-based sleeping locks,
    /// raw_spinlock_t still spins (<see cref="LockSet.Raw"/>). Only the acquire's check changes
    /// (<see cref="RtLockMightResched"/>); holding such a lock still counts as atomic for the other checks, which is
    /// stricter than RT (where it only disables migration), never looser.
    /// </summary>
    public bool PreemptRt { get; set; }

    /// <summary>
    /// rtlock_might_resched (kernel/locking/spinlock_rt.c, rt_spin_lock / rt_read_lock / rt_write_lock) →
    /// __might_resched, which also fails while current->non_block_count is raised (non_block_start around a
    /// non-blockable notifier callback): "BUG: sleeping function called from invalid context".
    /// </summary>
    /// <param name="op">spin_lock, read_lock or write_lock.</param><param name="lockName">The lock (the message is built only on failure).</param>
    public void RtLockMightResched(string op, string lockName)
    {
        if (Current.NonBlockDepth > 0)
            Fail(Invariants.SleepInNonBlock, $"{op}({lockName}) is an rt_mutex under PREEMPT_RT and may sleep inside a non-blockable notifier callback");
    }

    /// <summary>might_sleep(): flags sleeping in atomic context or in a non-blockable notifier callback.</summary>
    public void MightSleep(string what)
    {
        var cur = Current;
        if (cur.AtomicDepth > 0)
            Fail(Invariants.SleepInAtomic, $"{what} may sleep while a spinlock or RCU read lock is held (atomic depth {cur.AtomicDepth})");
        else if (cur.NonBlockDepth > 0)
            Fail(Invariants.SleepInNonBlock, $"{what} may sleep inside a non-blockable notifier callback");
    }

    // ---------------------------------------------------------------- time and data

    /// <summary>Advance the simulated clock by the cost of <paramref name="count"/> units of <paramref name="kind"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Charge(CostKind kind, long count = 1)
    {
        long ns = Costs[kind] * count;
        ClockNs += ns;
        if (_current != null) _current.BusyNs += ns;
    }

    /// <summary>A recorded data choice in [0, bound) (workload randomness).</summary>
    public int ChooseInt(int bound)
    {
        if (bound <= 1) return 0;
        int v = _strategy?.NextInt(bound) ?? _plainRng.Below(bound);
        Decisions.AddData(v);
        return v;
    }
    Rng _plainRng = new(1);

    /// <summary>Seed for data choices in plain simulation (no strategy).</summary>
    public void SeedPlain(ulong seed) => _plainRng = new Rng(seed);

    // ---------------------------------------------------------------- violations

    /// <summary>Record a violation; the run freezes at the next point. The first violation wins.</summary>
    public void Fail(string invariant, string message, ulong address = 0, long pfn = -1)
    {
        if (Violation != null) return;
        var cur = _current;
        Violation = new Violation(invariant, message, cur?.Id ?? -1, cur?.Name ?? "-", cur?.CurrentFunction ?? "-", Steps, address, pfn);
        _stepSink?.OnViolation(this, Violation);
    }

    // ---------------------------------------------------------------- driver

    /// <summary>
    /// Run until every non-daemon context is done, a violation is found, or the model throws.
    /// Returns the violation, if any. Model bugs are rethrown.
    /// </summary>
    public Violation? Run()
    {
        _strategy?.BeginRun(0);
        AttachObserver();
        return RunLoop();
    }

    /// <summary>Run as iteration <paramref name="iteration"/> of an exploration (seeds the strategy per iteration).</summary>
    public Violation? Run(int iteration)
    {
        _strategy?.BeginRun(iteration);
        AttachObserver();
        return RunLoop();
    }

    void AttachObserver()
    {
        _observer = _strategy as IStepObserver;
        _decideParked = _strategy is IStateReadingStrategy { ReadsState: true };
        _observer?.Attach(this);
    }

    /// <summary>
    /// Called by a strategy inside <see cref="IStrategy.Next"/>: end this run here, without a verdict (a state cache
    /// found the state already explored). The run's remaining steps and end-of-run checks are not run.
    /// </summary>
    public void Abandon() => _abandoned = true;

    /// <summary>The run was ended by <see cref="Abandon"/>: it is a prefix of a schedule, not a schedule.</summary>
    public bool Abandoned => _abandoned;

    Violation? RunLoop()
    {
        UpdateSlowPath();
        foreach (var c in _contexts)
            if (c.WakeAtNs > 0 && c.State == ContextState.Sleeping && c.WakeAtNs < _nextWakeNs) _nextWakeNs = c.WakeAtNs;
        while (Violation == null && ModelError == null && !_abandoned)
        {
            if (!AnyLiveNonDaemon()) break;
            int next = _pendingNext;
            _pendingNext = -1;
            if (next == DecideParked)
            {
                int n = CollectRunnable();
                next = _strategy!.Next(new Decision(_runnableBuf.AsSpan(0, n), _parkedCur, Steps, _parkedKind));
                if (_abandoned) break;
                Decisions.AddSchedule(next, preempted: next != _parkedCur);
            }
            else if (next < 0 || _contexts[next].State != ContextState.Runnable)
            {
                WakeExpiredSleepers();
                int n = CollectRunnable();
                if (n == 0)
                {
                    if (AdvanceClockToNextSleeper()) continue;
                    _current = null;
                    if (_spinMask != 0)
                        Fail(Invariants.Liveness, "every live context spin-waits or is blocked, and no write can end the spin: " + DescribeBlocked());
                    else
                        Fail(Invariants.Deadlock, "every context is blocked: " + DescribeBlocked());
                    break;
                }
                if (n == 1 || _strategy == null) next = _runnableBuf[0];
                else
                {
                    next = _strategy.Next(new Decision(_runnableBuf.AsSpan(0, n), -1, Steps, PointKind.Wait));
                    if (_abandoned) break;
                    Decisions.AddSchedule(next, preempted: false);
                }
            }
            Resume(_contexts[next]);
        }
        _current = null;
        if (ModelError != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ModelError).Throw();
        return Violation;
    }

    void Resume(KContext ctx)
    {
        _current = ctx;
        _observer?.OnStep(ctx.Id, ctx.Pending);
        if (!ctx.Started)
        {
            ctx.Started = true;
            ctx.Steps++;
            _stepSink?.OnStep(this, ctx, PointKind.Start, 0);
            ValueTask t;
            try { t = ctx.Body(ctx); }
            catch (Exception e) { ModelError = e; return; }
            if (t.IsCompleted) Finish(ctx, t);
            else
            {
                var awaiter = t.GetAwaiter();
                awaiter.UnsafeOnCompleted(() => Finish(ctx, t));
            }
            return;
        }
        var k = ctx.Continuation ?? throw new ModelException($"{ctx} resumed without a continuation");
        ctx.Continuation = null;
        k();
    }

    void Finish(KContext ctx, ValueTask t)
    {
        ctx.State = ContextState.Done;
        if (_spinMask != 0) WakeSpinners(ctx.Id);
        try { t.GetAwaiter().GetResult(); }
        catch (Exception e) { ModelError ??= e; }
    }

    bool AnyLiveNonDaemon()
    {
        foreach (var c in _contexts)
            if (!c.IsDaemon && c.State != ContextState.Done) return true;
        return false;
    }

    int CollectRunnable()
    {
        int n = 0;
        foreach (var c in _contexts)
            if (c.State == ContextState.Runnable) _runnableBuf[n++] = c.Id;
        return n;
    }

    int FirstRunnableDaemonOtherThan(int id)
    {
        foreach (var c in _contexts)
            if (c.Id != id && c.IsDaemon && c.State == ContextState.Runnable) return c.Id;
        return -1;
    }

    bool WakeExpiredSleepers()
    {
        if (ClockNs < _nextWakeNs) return false;
        long next = long.MaxValue;
        bool woke = false;
        foreach (var c in _contexts)
        {
            if (c.State != ContextState.Sleeping) continue;
            if (c.WakeAtNs <= ClockNs)
            {
                c.State = ContextState.Runnable;
                woke = true;
            }
            else if (c.WakeAtNs < next) next = c.WakeAtNs;
        }
        _nextWakeNs = next;
        return woke;
    }

    bool AdvanceClockToNextSleeper()
    {
        long min = long.MaxValue;
        foreach (var c in _contexts)
            if (c.State == ContextState.Sleeping && c.WakeAtNs < min) min = c.WakeAtNs;
        if (min == long.MaxValue) return false;
        ClockNs = Math.Max(ClockNs, min);
        _nextWakeNs = min;
        WakeExpiredSleepers();
        return true;
    }

    string DescribeBlocked()
    {
        var parts = new List<string>();
        foreach (var c in _contexts)
            if (c.State != ContextState.Blocked) continue;
            else if (c.SpinningIn != null) parts.Add($"{c} spins in {c.SpinningIn}");
            else parts.Add($"{c} waits on {c.BlockedOn} in {c.CurrentFunction}");
        return string.Join("; ", parts);
    }
}

/// <summary>A context retrying a loop (see <see cref="Scheduler.SpinWait"/>).</summary>
public interface ISpinWaiter
{
    /// <summary>Whether any input of the retry decision differs from its value when the failed attempt began.</summary>
    bool InputsChanged { get; }
}

/// <summary>What a context parked in <see cref="Scheduler.SpinWait"/> is blocked on.</summary>
sealed class SpinWaitToken
{
    public override string ToString() => "spin-wait";
}

/// <summary>Awaiter for <see cref="Scheduler.Point"/>: completes synchronously unless the strategy switches.</summary>
public readonly struct SchedPoint : ICriticalNotifyCompletion
{
    readonly Scheduler _s;
    readonly object? _subject;
    readonly ulong _arg;
    readonly PointKind _kind;

    internal SchedPoint(Scheduler s, PointKind kind, ulong arg, object? subject)
    {
        _s = s;
        _kind = kind;
        _arg = arg;
        _subject = subject;
    }

    public SchedPoint GetAwaiter() => this;

    public bool IsCompleted
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _s.OnPoint(_kind, _arg, _subject);
    }

    public void GetResult() { }

    public void OnCompleted(Action continuation) => _s.Park(continuation);

    public void UnsafeOnCompleted(Action continuation) => _s.Park(continuation);
}

/// <summary>Awaiter for a blocked or sleeping context: never completes synchronously.</summary>
public readonly struct BlockAwaiter : ICriticalNotifyCompletion
{
    readonly Scheduler _s;

    internal BlockAwaiter(Scheduler s) => _s = s;

    public BlockAwaiter GetAwaiter() => this;

    public bool IsCompleted => false;

    public void GetResult() { }

    public void OnCompleted(Action continuation) => _s.Park(continuation);

    public void UnsafeOnCompleted(Action continuation) => _s.Park(continuation);
}

/// <summary>Receives every step when tracing: race diagrams, ftrace and Perfetto writers implement it.</summary>
public interface IStepSink
{
    void OnStep(Scheduler s, KContext ctx, PointKind kind, ulong arg);

    void OnViolation(Scheduler s, Violation v);
}

/// <summary>Receives kernel-function enter/leave events of every context when tracing (Perfetto/ftrace slices).</summary>
public interface IFunctionHook
{
    void OnEnter(KContext ctx, string kernelFunction);

    void OnLeave(KContext ctx);
}
