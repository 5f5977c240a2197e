using System.Numerics;
using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// Stateless depth-first search with dynamic partial-order reduction: source-set DPOR with sleep sets, Algorithm 1 of
/// Abdulla, Aronis, Jonsson and Sagonas, "Optimal dynamic partial order reduction", POPL 2014 (the source-set
/// algorithm, not the wakeup-tree one). It explores at least one schedule per Mazurkiewicz trace of the dependence
/// relation <see cref="Footprint.Dependent"/>, instead of every interleaving.
/// </summary>
/// <remarks>
/// <para><b>Steps.</b> A step is what one context executes from a scheduling point to its next one (or until it blocks,
/// sleeps, spin-waits or ends). Its footprint is the footprint of the point it was parked at
/// (<see cref="KContext.PendingFootprint"/>), so the footprint of every runnable context's next step is known at a
/// decision, which sleep sets need. The scheduler reports every step, forced ones included (<see cref="IStepObserver"/>).</para>
/// <para><b>Algorithm.</b> Each run replays the current path and extends it with first choices; at a new decision the
/// first option not in the sleep set is taken (the current context first, else the lowest id). After the run (in
/// <see cref="BeginRun"/> or <see cref="HasMore"/>) every race e ⋖ e' of the run (e and e' of different contexts,
/// dependent, e happens-before e' with no step in between on the happens-before chain; computed with vector clocks in
/// one backward scan per step) is reversed as in the paper: with E' = pre(E, e) and v = notdep(e, E).e', if
/// backtrack(E') ∪ sleep(E') holds no initial of v, one initial of v is added to backtrack(E'). The next run advances
/// the deepest decision whose backtrack set has an entry that is neither done nor asleep; the contexts already explored
/// there enter the sleep set of the new branch and leave it at the first step they depend on. A run whose every option
/// is asleep is sleep-set blocked: it is finished without branching and its later steps are not analysed.</para>
/// <para><b>Enabledness the dependence relation does not see.</b> A context blocked on a lock, a wait queue or a
/// spin-wait is woken by a step of another context, and the first step after a wake-up is Global, so the waker is
/// ordered before it: a race whose reversal would need the woken context before it woke is not reversible and is
/// skipped, as the paper requires. A context asleep on the simulated clock is different: the clock is the sum of every
/// step's cost, so a reordering can wake it earlier. When the initials of v are all timed sleepers at E', every option
/// of E' is added (Flanagan and Godefroid's fallback).</para>
/// <para><b>Preemption bound.</b> With a bound the options at a decision are those of <see cref="DfsStrategy"/>; a
/// reversal the bound forbids at E' is moved to the decision that began the block of steps of e's context (there the
/// switch costs no extra preemption), as Coons, Musuvathi and McKinley do ("Bounded partial-order reduction", OOPSLA
/// 2013), and dropped if that is not possible either. Bounded DPOR is therefore not guaranteed to find every violation
/// that the unreduced search with the same bound finds; <see cref="BoundDropped"/> counts the dropped reversals.
/// Without a bound (<see cref="Unbounded"/>) and without a depth cut the search is exhaustive for every trace.</para>
/// <para><b>Data choices</b> (<see cref="Scheduler.ChooseInt"/>) are decisions of their own whose values are all
/// explored. Paths longer than <c>maxDecisions</c> continue as a fair pseudo-random walk, as in DFS, and are not
/// analysed beyond it.</para>
/// </remarks>
public sealed class DporStrategy : IStrategy, IExhaustiveStrategy, IDescribedStrategy, IStepObserver
{
    /// <summary>The preemption bound meaning "none".</summary>
    public const int Unbounded = int.MaxValue;

    struct Frame
    {
        public bool IsData;
        public int Chosen;       // data: value; schedule: context id
        public int Count;        // data: number of values
        public int Current;      // context at the point, or -1
        public ulong Runnable, Allowed, TimedSleepers;
        public ulong Backtrack, Done, SleepIn;
        public int Preemptions;  // spent before this decision
        public int Event;        // index of the step the decision started
    }

    struct Step
    {
        public int Ctx;
        public int Frame;        // decision that chose this step, or -1 when it was forced
        public int Local;        // 1-based index of the step among its context's steps
        public Footprint Fp;
    }

    readonly int _bound;
    readonly int _maxDecisions;
    Frame[] _stack = new Frame[256];
    int _depth;
    Step[] _steps = new Step[1024];
    int _nsteps;
    int[] _vc = new int[1024 * 8];  // vector clock per step, _stride entries each
    int _stride = 8;
    int[] _races = new int[64];

    Scheduler? _s;
    int _pos, _preemptions, _pendingFrame = -1, _limit = -1, _replayDepth;
    ulong _sleep;
    bool _started, _analysed = true, _blocked, _truncated, _inTail;
    int _runs, _blockedRuns;
    long _states;
    Rng _tail;

    public DporStrategy(int preemptionBound = Unbounded, int maxDecisions = StrategyMath.DefaultFairAfter)
    {
        if (preemptionBound < 0) throw new ArgumentOutOfRangeException(nameof(preemptionBound));
        _bound = preemptionBound;
        _maxDecisions = maxDecisions;
    }

    public string Name => "dfs";

    public int PreemptionBound => _bound;

    /// <summary>Runs so far.</summary>
    public int Runs => _runs;

    /// <summary>Runs that ended sleep-set blocked (redundant: their trace was explored by an earlier run).</summary>
    public int BlockedRuns => _blockedRuns;

    /// <summary>Traces explored: runs that were not sleep-set blocked.</summary>
    public int Traces => _runs - _blockedRuns;

    /// <summary>States visited: steps executed beyond the replayed prefix, summed over the runs (the nodes of the
    /// explored tree).</summary>
    public long States => _states;

    /// <summary>Race reversals the preemption bound made impossible (bounded DPOR only).</summary>
    public int BoundDropped { get; private set; }

    /// <summary>True when some run hit <c>maxDecisions</c>.</summary>
    public bool DepthBounded => _truncated;

    public bool HasMore
    {
        get
        {
            if (!_started) return true;
            Analyse();
            for (int i = _depth - 1; i >= 0; i--)
                if (HasAlternative(in _stack[i])) return true;
            return false;
        }
    }

    public string Completion(int schedules)
    {
        Analyse();
        string counts = $"{Traces} traces, {_states} states";
        if (_bound == Unbounded && !_truncated) return $"verified: no violation in any interleaving ({counts})";
        var sb = new System.Text.StringBuilder($"no violation in any explored interleaving ({counts}");
        if (_bound != Unbounded)
            sb.Append($", up to {_bound} preemption{(_bound == 1 ? "" : "s")}; bounded partial-order reduction is not exhaustive within the bound");
        if (_truncated) sb.Append($"; paths cut at {_maxDecisions} decisions");
        return sb.Append(')').ToString();
    }

    public string Describe() => _bound == Unbounded ? "dfs(por)" : $"dfs(preemptions={_bound},por)";

    static bool HasAlternative(in Frame f) =>
        f.IsData ? f.Chosen + 1 < f.Count : (f.Backtrack & ~f.Done & ~(1UL << f.Chosen) & ~f.SleepIn) != 0;

    public void BeginRun(int iteration)
    {
        if (_started)
        {
            Analyse();
            while (_depth > 0 && !HasAlternative(in _stack[_depth - 1])) _depth--;
            if (_depth > 0)
            {
                ref var f = ref _stack[_depth - 1];
                if (f.IsData) f.Chosen++;
                else
                {
                    f.Done |= 1UL << f.Chosen;
                    f.Chosen = BitOperations.TrailingZeroCount(f.Backtrack & ~f.Done & ~f.SleepIn);
                }
            }
        }
        _started = true;
        _analysed = false;
        _runs++;
        _pos = 0;
        _preemptions = 0;
        _nsteps = 0;
        _sleep = 0;
        _pendingFrame = -1;
        _limit = -1;
        _blocked = false;
        _inTail = false;
        _replayDepth = _depth;
    }

    public void Attach(Scheduler s) => _s = s;

    public void OnStep(int context, in Footprint footprint)
    {
        if (_limit >= 0) return; // past a sleep-set block or the depth cut: not analysed
        var fp = footprint;
        if (_nsteps == _steps.Length) Array.Resize(ref _steps, _steps.Length * 2);
        int frame = _pendingFrame;
        _pendingFrame = -1;
        _steps[_nsteps++] = new Step { Ctx = context, Frame = frame, Fp = fp };
        if (frame >= 0) _stack[frame].Event = _nsteps - 1;
        if (_pos >= _replayDepth) _states++; // beyond the replayed prefix: a state not visited by this path before
        // Sleep set: the context that runs leaves it, and so does every sleeper whose next step depends on this one.
        ulong sl = _sleep & ~(1UL << context);
        ulong m = sl;
        while (m != 0)
        {
            int r = BitOperations.TrailingZeroCount(m);
            m &= m - 1;
            if (Footprint.Dependent(_s!.Contexts[r].PendingFootprint, fp)) sl &= ~(1UL << r);
        }
        _sleep = sl;
    }

    public int Next(in Decision d)
    {
        if (_pos >= _maxDecisions) return d.Runnable[Tail(d.Runnable.Length)];
        bool curRunnable = d.Current >= 0 && d.Runnable.Contains(d.Current);
        if (_blocked) return curRunnable ? d.Current : d.Runnable[0];
        ulong runnable = StrategyMath.Mask(d.Runnable);
        ulong allowed = curRunnable && _preemptions >= _bound ? 1UL << d.Current : runnable;
        int p = _pos;
        int chosen;
        if (p < _depth)
        {
            ref var f = ref _stack[p];
            if (f.IsData || f.Runnable != runnable)
                throw new ModelException($"DFS: replayed decision {p} has other options than before: the program is not deterministic");
            chosen = f.Chosen;
            _sleep = f.SleepIn | f.Done;
        }
        else
        {
            ulong sleep = _sleep & runnable;
            ulong free = allowed & ~sleep;
            if (free == 0)
            {
                // Sleep-set blocked: every option was explored from an equivalent state already.
                _blocked = true;
                _blockedRuns++;
                _limit = _nsteps;
                return curRunnable ? d.Current : d.Runnable[0];
            }
            chosen = curRunnable && (free & (1UL << d.Current)) != 0 ? d.Current : BitOperations.TrailingZeroCount(free);
            if (_depth == _stack.Length) Array.Resize(ref _stack, _stack.Length * 2);
            ulong timed = 0;
            var ctxs = _s!.Contexts;
            for (int i = 0; i < ctxs.Count; i++)
                if (ctxs[i].State == ContextState.Sleeping) timed |= 1UL << i;
            _stack[_depth++] = new Frame
            {
                Chosen = chosen, Current = curRunnable ? d.Current : -1, Runnable = runnable, Allowed = allowed,
                TimedSleepers = timed, Backtrack = 1UL << chosen, SleepIn = sleep, Preemptions = _preemptions, Event = -1,
            };
        }
        _pos++;
        _pendingFrame = p;
        if (curRunnable && chosen != d.Current) _preemptions++;
        return chosen;
    }

    public int NextInt(int bound)
    {
        if (_pos >= _maxDecisions) return Tail(bound);
        if (_blocked) return 0;
        int p = _pos++;
        if (p < _depth)
        {
            ref var f = ref _stack[p];
            if (!f.IsData || f.Count != bound)
                throw new ModelException($"DFS: replayed decision {p} has other options than before: the program is not deterministic");
            return f.Chosen;
        }
        if (_depth == _stack.Length) Array.Resize(ref _stack, _stack.Length * 2);
        _stack[_depth++] = new Frame { IsData = true, Chosen = 0, Count = bound, Event = -1 };
        return 0;
    }

    int Tail(int count)
    {
        if (!_inTail)
        {
            _inTail = true;
            _truncated = true;
            if (_limit < 0) _limit = _nsteps;
            _tail = new Rng(Rng.Mix(0xD75, (ulong)_runs));
        }
        return _tail.Below(count);
    }

    // ------------------------------------------------------------------ race analysis

    /// <summary>Reverse every race of the finished run (once per run).</summary>
    void Analyse()
    {
        if (_analysed) return;
        _analysed = true;
        int n = _limit >= 0 ? _limit : _nsteps;
        if (n == 0) return;
        bool allDependent = _s?.AllStepsDependent == true;
        int nctx = 1;
        for (int i = 0; i < n; i++) nctx = Math.Max(nctx, _steps[i].Ctx + 1);
        _stride = nctx;
        if (_vc.Length < n * nctx) _vc = new int[Math.Max(n * nctx, _vc.Length * 2)];
        Span<int> count = stackalloc int[nctx];
        Span<int> last = stackalloc int[nctx];   // last step index of each context so far
        Span<int> acc = stackalloc int[nctx];
        count.Clear();
        last.Fill(-1);
        for (int j = 0; j < n; j++)
        {
            ref var sj = ref _steps[j];
            int pj = sj.Ctx;
            sj.Local = ++count[pj];
            // acc := happens-before past of j, built backwards: program order first, then the dependent steps not yet covered.
            if (last[pj] >= 0) _vc.AsSpan(last[pj] * nctx, nctx).CopyTo(acc);
            else acc.Clear();
            int nraces = 0;
            for (int i = j - 1; i >= 0; i--)
            {
                ref var si = ref _steps[i];
                int pi = si.Ctx;
                if (pi == pj || acc[pi] >= si.Local) continue;
                if (!allDependent && !Footprint.Dependent(si.Fp, sj.Fp)) continue;
                // i ⋖ j: an immediate race, reversed once j's clock is complete.
                if (_races.Length == nraces) Array.Resize(ref _races, nraces * 2);
                _races[nraces++] = i;
                var vi = _vc.AsSpan(i * nctx, nctx);
                for (int r = 0; r < nctx; r++) if (vi[r] > acc[r]) acc[r] = vi[r];
            }
            acc[pj] = sj.Local;
            acc.CopyTo(_vc.AsSpan(j * nctx, nctx));
            last[pj] = j;
            for (int r = 0; r < nraces; r++) Reverse(_races[r], j, nctx);
        }
    }

    /// <summary>Source-set reversal of the race <paramref name="i"/> ⋖ <paramref name="j"/> (Algorithm 1, lines 5-9).</summary>
    void Reverse(int i, int j, int nctx)
    {
        int fi = _steps[i].Frame;
        if (fi < 0) return; // forced: no other context could run there
        ref var f = ref _stack[fi];
        int pi = _steps[i].Ctx, li = _steps[i].Local;
        // Initials of v = notdep(i, E).j: the first step of each context in v that no earlier step of v happens before.
        Span<int> first = stackalloc int[nctx];
        first.Fill(-1);
        ulong initials = 0;
        for (int k = i + 1; k <= j; k++)
        {
            ref var sk = ref _steps[k];
            if (k < j && _vc[k * nctx + pi] >= li) continue; // happens after i: not in v
            if (first[sk.Ctx] >= 0) continue;
            first[sk.Ctx] = k;
            bool initial = true;
            for (int r = 0; r < nctx && initial; r++)
            {
                int fr = first[r];
                if (r == sk.Ctx || fr < 0 || fr >= k) continue;
                if (_vc[k * nctx + r] >= _steps[fr].Local) initial = false;
            }
            if (initial) initials |= 1UL << sk.Ctx;
        }
        if ((initials & (f.Backtrack | f.Done | f.SleepIn)) != 0) return;
        ulong cand = initials & f.Allowed;
        if (cand != 0)
        {
            f.Backtrack |= LowestPreferring(cand, _steps[j].Ctx);
            return;
        }
        if ((initials & f.Runnable) != 0)
        {
            // Forbidden by the preemption bound here: try where the block of i's context began.
            int b = i;
            while (b > 0 && _steps[b - 1].Ctx == pi) b--;
            int fb = _steps[b].Frame;
            if (fb >= 0 && fb != fi)
            {
                ref var g = ref _stack[fb];
                if ((initials & (g.Backtrack | g.Done | g.SleepIn)) != 0) return;
                ulong c2 = initials & g.Allowed;
                if (c2 != 0)
                {
                    g.Backtrack |= LowestPreferring(c2, _steps[j].Ctx);
                    return;
                }
            }
            BoundDropped++;
            return;
        }
        if ((initials & f.TimedSleepers) != 0) f.Backtrack |= f.Allowed & ~f.SleepIn; // the clock may wake them earlier
        // Otherwise the race is not reversible: the initial was blocked and woken by a step ordered before it.
    }

    static ulong LowestPreferring(ulong cand, int preferred) =>
        (cand & (1UL << preferred)) != 0 ? 1UL << preferred : cand & (~cand + 1);
}
