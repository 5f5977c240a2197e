using System.Diagnostics;
using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>Budget of a shrink.</summary>
public sealed record ShrinkOptions
{
    /// <summary>Maximum replays.</summary>
    public int MaxRuns { get; init; } = 3000;

    public TimeSpan TimeLimit { get; init; } = TimeSpan.FromSeconds(20);
}

/// <summary>
/// Shortens a counterexample: fewest preemptions (context switches the schedule chose) first, then fewest steps,
/// keeping the violated invariant the same. Every candidate is a decision list replayed with a non-preemptive
/// fallback (<see cref="NoPreemptStrategy"/>) past its end; an accepted candidate is replaced by the decision list of
/// the run it produced, so the result always replays exactly.
/// </summary>
/// <remarks>
/// First, a preemption-bounded DFS (bounds 0, 1, ... below the counterexample's count, with half the run budget)
/// looks for a schedule with fewer preemptions anywhere; a single-decision edit cannot always get there (a
/// preemption often has to move, not vanish). Then local passes, repeated until nothing improves or the budget is spent:
/// (1) truncation: the shortest prefix that still fails (geometric probe, then binary search);
/// (2) preemption removal: replace one preempting decision by "keep the current context" (keeping the rest of the
/// list, or dropping it), or delete that decision so the later ones shift one earlier; from the last preemption to the
/// first; (3) chunk deletion (halves, quarters, ... of the list) for fewer steps.
/// </remarks>
public sealed class Shrinker(IExplorable program, ShrinkOptions? options = null)
{
    readonly ShrinkOptions _opt = options ?? new ShrinkOptions();
    int _runs;
    Stopwatch _sw = new();

    /// <summary>Replays performed by the last <see cref="Shrink"/>.</summary>
    public int Runs => _runs;

    sealed class Candidate(RunOutcome run, List<int> preemptAt, List<int> currents)
    {
        public RunOutcome Run { get; } = run;
        public (byte Kind, int Value)[] Log => Run.Log!;
        public List<int> PreemptAt { get; } = preemptAt;
        public List<int> Currents { get; } = currents;
        public int Preemptions => PreemptAt.Count;
        public long Steps => Run.Steps;

        public bool BetterThan(Candidate o) => Preemptions < o.Preemptions || (Preemptions == o.Preemptions && Steps < o.Steps);
    }

    /// <summary>Replays a decision list, falls back to no preemption, and records where it preempted.</summary>
    sealed class ProbeStrategy(IReadOnlyList<(byte Kind, int Value)> entries) : IStrategy
    {
        int _pos;
        public readonly List<int> PreemptAt = [];
        public readonly List<int> Currents = [];

        public string Name => "shrink";

        public void BeginRun(int iteration) => _pos = 0;

        public int Next(in Decision d)
        {
            int idx = _pos++;
            bool curRunnable = d.Current >= 0 && d.Runnable.Contains(d.Current);
            int pick = curRunnable ? d.Current : d.Runnable[0];
            if (idx < entries.Count && entries[idx].Kind == DecisionLog.SchedKind && d.Runnable.Contains(entries[idx].Value))
                pick = entries[idx].Value;
            if (curRunnable && pick != d.Current) PreemptAt.Add(idx);
            Currents.Add(d.Current);
            return pick;
        }

        public int NextInt(int bound)
        {
            int idx = _pos++;
            Currents.Add(-1);
            return idx < entries.Count && entries[idx].Kind == DecisionLog.DataKind && entries[idx].Value < bound ? entries[idx].Value : 0;
        }
    }

    public Counterexample Shrink(Counterexample c)
    {
        _runs = 0;
        _sw = Stopwatch.StartNew();
        string invariant = c.Violation.Invariant;
        var best = Try(c.Decisions, invariant)
            ?? throw new InvalidOperationException($"the counterexample does not reproduce ({invariant}); cannot shrink");

        // Fewest preemptions first: a preemption-bounded DFS finds a schedule with b preemptions if one exists.
        int dfsBudget = _runs + _opt.MaxRuns / 2;
        for (int b = 0; b < best.Preemptions && _runs < dfsBudget && Budget(); b++)
        {
            var dfs = new DfsStrategy(b);
            Candidate? hit = null;
            for (int it = 0; dfs.HasMore && _runs < dfsBudget && Budget(); it++)
            {
                _runs++;
                var r = program.RunOnce(dfs, it);
                if (r.Violation?.Invariant == invariant && r.Log != null)
                {
                    hit = Try(r.Log, invariant);
                    break;
                }
            }
            if (hit != null && hit.BetterThan(best))
            {
                best = hit;
                break;
            }
        }

        bool improved = true;
        while (improved && Budget())
        {
            improved = false;
            var t = Truncate(best, invariant);
            if (t != null) { best = t; improved = true; }
            for (int p = best.PreemptAt.Count - 1; p >= 0 && Budget(); p--)
            {
                if (p >= best.PreemptAt.Count) continue;
                int i = best.PreemptAt[p];
                var log = best.Log;
                var keep = (byte)DecisionLog.SchedKind;
                // (a) keep the current context here, rest unchanged; (b) same, then no preemption at all;
                // (c) drop the decision, shifting the rest one earlier (moves every later preemption one point earlier
                // in the other context's run, which is how a preemption "moves" to where it matters).
                var a = log.ToArray();
                a[i] = (keep, best.Currents[i]);
                var b = log.AsSpan(0, i + 1).ToArray();
                b[i] = (keep, best.Currents[i]);
                var cDrop = Remove(log, i, 1);
                var cand = Best(Try(a, invariant), Try(b, invariant), Try(cDrop, invariant));
                if (cand != null && cand.BetterThan(best))
                {
                    best = cand;
                    improved = true;
                }
            }
            // Fewer steps: drop chunks of decisions (halves, quarters, ...), keeping what still fails no worse.
            for (int size = best.Log.Length / 2; size >= 1 && Budget(); size /= 2)
            {
                for (int at = 0; at + size <= best.Log.Length && Budget(); at += size)
                {
                    var cand = Try(Remove(best.Log, at, size), invariant);
                    if (cand != null && cand.BetterThan(best))
                    {
                        best = cand;
                        improved = true;
                    }
                }
            }
        }

        return new Counterexample
        {
            Info = c.Info,
            Strategy = c.Strategy.EndsWith(" shrunk", StringComparison.Ordinal) ? c.Strategy : c.Strategy + " shrunk",
            Seed = c.Seed,
            Iteration = c.Iteration,
            Violation = best.Run.Violation!,
            Decisions = best.Log,
            Steps = best.Steps,
            Preemptions = best.Preemptions,
        };
    }

    static (byte Kind, int Value)[] Remove((byte Kind, int Value)[] log, int at, int count)
    {
        var r = new (byte Kind, int Value)[log.Length - count];
        Array.Copy(log, 0, r, 0, at);
        Array.Copy(log, at + count, r, at, log.Length - at - count);
        return r;
    }

    static Candidate? Best(params Candidate?[] cs)
    {
        Candidate? best = null;
        foreach (var c in cs)
            if (c != null && (best == null || c.BetterThan(best))) best = c;
        return best;
    }

    bool Budget() => _runs < _opt.MaxRuns && _sw.Elapsed < _opt.TimeLimit;

    /// <summary>Shortest failing prefix of <paramref name="best"/>'s list, if shorter and better.</summary>
    Candidate? Truncate(Candidate best, string invariant)
    {
        int n = best.Log.Length;
        Candidate? found = null;
        int hi = -1;
        for (int len = 0; len < n && Budget(); len = len == 0 ? 1 : len * 2)
        {
            var c = Try(best.Log.AsSpan(0, len).ToArray(), invariant);
            if (c != null) { found = c; hi = len; break; }
        }
        if (found == null) return null;
        int lo = hi / 2 + 1;
        while (lo < hi && Budget())
        {
            int mid = (lo + hi) / 2;
            var c = Try(best.Log.AsSpan(0, mid).ToArray(), invariant);
            if (c != null) { hi = mid; if (c.BetterThan(found) || c.Preemptions == found.Preemptions) found = c; }
            else lo = mid + 1;
        }
        return found.BetterThan(best) ? found : null;
    }

    Candidate? Try((byte Kind, int Value)[] entries, string invariant)
    {
        _runs++;
        var probe = new ProbeStrategy(entries);
        var r = program.RunOnce(probe, 0);
        if (r.Violation == null || r.Violation.Invariant != invariant || r.Log == null) return null;
        return new Candidate(r, probe.PreemptAt, probe.Currents);
    }
}
