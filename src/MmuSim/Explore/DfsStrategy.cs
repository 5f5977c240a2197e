using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// Exhaustive depth-first search of schedules under a preemption bound (iterative context bounding, Musuvathi and
/// Qadeer, PLDI 2007), stateless: every run re-executes the program from the start, replaying the current DFS path and
/// extending it with first choices; the next run advances the deepest choice that has an untried alternative.
/// </summary>
/// <remarks>
/// <para>At a scheduling decision the options are: the current context (no preemption) first, then the other runnable
/// contexts in id order, these only while fewer than <c>preemptionBound</c> preemptions have been spent on this path.
/// When the current context blocked or finished every runnable context is an option for free. Data choices
/// (<see cref="Scheduler.ChooseInt"/>) are explored too: every value in [0, bound).</para>
/// <para>The program must be deterministic given its choices; a replayed decision with a different number of options
/// is reported as a <see cref="ModelException"/>. Runs must be started in order (iteration 0, 1, 2...): iteration i is the
/// i-th schedule of the search. Paths longer than <c>maxDecisions</c> (default 2,000) are not branched beyond that depth
/// and continue as a fair pseudo-random walk (the completion message then says the search was depth-bounded).</para>
/// </remarks>
public sealed class DfsStrategy : IStrategy, IExhaustiveStrategy, IDescribedStrategy, IStepObserver, IStateReadingStrategy
{
    struct Frame
    {
        public int Chosen;
        public int Count;
    }

    readonly int _bound;
    readonly int _maxDecisions;
    Frame[] _stack = new Frame[256];
    int _depth;      // frames on the DFS path
    int _pos;        // decisions made in the current run
    int _preemptions;
    bool _started;
    bool _truncated;
    int _runs;
    Rng _tail;
    long _states;
    int _replayDepth;
    Scheduler? _s;
    readonly HashSet<UInt128>? _seen;
    readonly StateDigest? _digest;
    long _pruned;

    /// <param name="stateCache">Remember the digest of every state at a new decision (<see cref="StateDigest"/>) and end a
    /// run that reaches a state already seen: the subtree below it was or is being explored from its first visit.
    /// Explicit-state depth-first search (Holzmann, <i>The Model Checker SPIN</i>, ch. 8) over the stateless replay;
    /// with a preemption bound the key also holds the current context and the preemptions spent, so the same search
    /// subproblem is never pruned for a different one.</param>
    public DfsStrategy(int preemptionBound = 2, int maxDecisions = StrategyMath.DefaultFairAfter, bool stateCache = false)
    {
        if (preemptionBound < 0) throw new ArgumentOutOfRangeException(nameof(preemptionBound));
        _bound = preemptionBound;
        _maxDecisions = maxDecisions;
        if (stateCache)
        {
            _seen = [];
            _digest = new StateDigest();
        }
    }

    bool IStateReadingStrategy.ReadsState => _seen != null;

    /// <summary>Whether this search keeps a state cache.</summary>
    public bool UsesStateCache => _seen != null;

    /// <summary>Distinct states in the cache (0 without <c>stateCache</c>).</summary>
    public long DistinctStates => _seen?.Count ?? 0;

    /// <summary>Runs ended at a state already explored.</summary>
    public long PrunedRuns => _pruned;

    public string Name => "dfs";

    public int PreemptionBound => _bound;

    /// <summary>True when some run hit <c>maxDecisions</c>: the search is complete only up to that depth.</summary>
    public bool DepthBounded => _truncated;

    public bool HasMore
    {
        get
        {
            if (!_started) return true;
            for (int i = _depth - 1; i >= 0; i--)
                if (_stack[i].Chosen + 1 < _stack[i].Count) return true;
            return false;
        }
    }

    public string Completion(int schedules) =>
        _bound == DporStrategy.Unbounded && !_truncated ? $"verified: no violation in any interleaving ({schedules} {(_seen != null ? $"runs, {_seen.Count} distinct states, {_pruned} ended at a state seen before" : $"schedules, {_states} states")})" :
        $"no violation in all {schedules} schedules up to {(_bound == DporStrategy.Unbounded ? "unbounded" : _bound)} preemption{(_bound == 1 ? "" : "s")}" +
        (_truncated ? $" (paths cut at {_maxDecisions} decisions)" : "");

    /// <summary>States visited: steps executed beyond the replayed prefix, summed over the runs (as
    /// <see cref="DporStrategy.States"/>).</summary>
    public long States => _states;

    void IStepObserver.Attach(Scheduler s) => _s = s;

    void IStepObserver.OnStep(int context, in Footprint footprint)
    {
        if (_pos >= _replayDepth) _states++;
    }

    public void BeginRun(int iteration)
    {
        if (_started)
        {
            // Backtrack: drop exhausted frames, advance the deepest frame with an untried alternative.
            while (_depth > 0 && _stack[_depth - 1].Chosen + 1 >= _stack[_depth - 1].Count) _depth--;
            if (_depth > 0) _stack[_depth - 1].Chosen++;
        }
        _started = true;
        _runs++;
        _replayDepth = _depth;
        _pos = 0;
        _preemptions = 0;
    }

    public int Next(in Decision d)
    {
        if (_pos >= _maxDecisions) return d.Runnable[Choose(d.Runnable.Length)]; // fair tail: any runnable context
        bool curRunnable = d.Current >= 0 && d.Runnable.Contains(d.Current);
        if (_seen != null && _pos >= _depth && !Visit(d.Current))
        {
            _pruned++;
            _s!.Abandon();
            return d.Runnable[0];
        }
        int count = !curRunnable ? d.Runnable.Length : _preemptions < _bound ? d.Runnable.Length : 1;
        int choice = Choose(count);
        if (!curRunnable) return d.Runnable[choice];
        if (choice == 0) return d.Current;
        _preemptions++;
        // Options after the current one: the other runnable ids in ascending order.
        int k = 0;
        foreach (var id in d.Runnable)
        {
            if (id == d.Current) continue;
            if (++k == choice) return id;
        }
        throw new ModelException("DFS: option out of range");
    }

    public int NextInt(int bound) => Choose(bound);

    /// <summary>Record the state at a new decision; false if it was seen before.</summary>
    bool Visit(int current)
    {
        var h = _digest!.Compute(_s!);
        if (_bound != DporStrategy.Unbounded) h ^= new UInt128((ulong)(uint)current << 32 | (uint)_preemptions, 0x5bd1e995UL);
        return _seen!.Add(h);
    }

    int Choose(int count)
    {
        int p = _pos++;
        if (p >= _maxDecisions)
        {
            // Past the search depth: a fair pseudo-random tail (deterministic per schedule), so that a context spinning
            // in a retry loop cannot starve the one it waits for.
            _truncated = true;
            if (p == _maxDecisions) _tail = new Rng(Rng.Mix(0xD75, (ulong)_runs));
            return _tail.Below(count);
        }
        if (p < _depth)
        {
            if (_stack[p].Count != count)
                throw new ModelException($"DFS: replayed decision {p} has {count} options, {_stack[p].Count} before: the program is not deterministic");
            return _stack[p].Chosen;
        }
        if (_depth == _stack.Length) Array.Resize(ref _stack, _stack.Length * 2);
        _stack[_depth++] = new Frame { Chosen = 0, Count = count };
        return 0;
    }

    public string Describe() => _bound == DporStrategy.Unbounded ? "dfs(unbounded)" : $"dfs(preemptions={_bound})";
}
