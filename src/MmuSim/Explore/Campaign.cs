namespace MmuSim.Explore;

/// <summary>
/// Shard k of N (1-based) of a campaign: schedule (or cell, or mutant) i belongs to shard (i mod N) + 1. The split is a
/// pure function of i, so N processes on N machines cover the space exactly once, and every schedule keeps the seed it
/// has in the unsharded run (derived from the base seed and i).
/// </summary>
public readonly record struct ShardSpec(int Index, int Count)
{
    /// <summary>The whole space (1/1).</summary>
    public static readonly ShardSpec Whole = new(1, 1);

    public bool Owns(int i) => (uint)i % (uint)Count == (uint)(Index - 1);

    /// <summary>The first index at or after <paramref name="from"/> that this shard owns.</summary>
    public int FirstOwnedFrom(int from)
    {
        int r = (Index - 1 - from % Count + Count) % Count;
        return from + r;
    }

    /// <summary>Parse <c>k/N</c> with 1 &lt;= k &lt;= N; null and a reason when it is not one.</summary>
    public static ShardSpec? TryParse(string text, out string error)
    {
        error = "";
        var parts = text.Trim().Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], System.Globalization.NumberStyles.None, null, out int k)
            || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, null, out int n))
        {
            error = $"'{text}' is not k/N (e.g. 2/8)";
            return null;
        }
        if (n < 1 || k < 1 || k > n)
        {
            error = $"'{text}': need 1 <= k <= N";
            return null;
        }
        return new ShardSpec(k, n);
    }

    public override string ToString() => $"{Index}/{Count}";
}

/// <summary>
/// Every counted run of a (sharded) exploration, in iteration order: what <see cref="ExploreMerge"/> needs to rebuild the
/// unsharded report exactly (totals, distinct schedules, and where the unsharded search would have stopped). About 24
/// bytes per run in memory.
/// </summary>
public sealed class RunRecords
{
    public List<int> Iterations { get; } = [];
    public List<long> Steps { get; } = [];
    public List<int> Decisions { get; } = [];
    public List<ulong> Hashes { get; } = [];
    /// <summary>Iterations whose run violated an invariant.</summary>
    public List<int> Violations { get; } = [];

    public int Count => Iterations.Count;

    public void Add(int iteration, RunOutcome r) => Add(iteration, r.Steps, r.Decisions, r.ScheduleHash, r.Violation != null);

    public void Add(int iteration, long steps, int decisions, ulong hash, bool violated)
    {
        Iterations.Add(iteration);
        Steps.Add(steps);
        Decisions.Add(decisions);
        Hashes.Add(hash);
        if (violated) Violations.Add(iteration);
    }

    public void AddRange(RunRecords other)
    {
        Iterations.AddRange(other.Iterations);
        Steps.AddRange(other.Steps);
        Decisions.AddRange(other.Decisions);
        Hashes.AddRange(other.Hashes);
        Violations.AddRange(other.Violations);
    }
}

/// <summary>
/// The state of an exploration at a round boundary: every counted iteration below <see cref="Next"/> is done and summed
/// here. With the strategy spec and program it came from, it is all an <see cref="Explorer"/> needs to continue exactly
/// (<see cref="ExploreOptions.Resume"/>): strategies derive each iteration's seed from (seed, iteration), and adaptive ones
/// re-learn their step bound from the calibration round.
/// </summary>
public sealed class ExploreCheckpoint
{
    public int Next { get; init; }
    public int Schedules { get; init; }
    public long TotalSteps { get; init; }
    public long StepsMin { get; init; }
    public long StepsMax { get; init; }
    public long MaxDecisions { get; init; }
    public int Violations { get; init; }
    public int? SchedulesToFirstBug { get; init; }
    public TimeSpan Elapsed { get; init; }
    public TimeSpan? TimeToFirstBug { get; init; }
    public required ulong[] Distinct { get; init; }
    public required IReadOnlyList<Counterexample> Counterexamples { get; init; }
    public RunRecords? Records { get; init; }

    internal static ExploreCheckpoint Capture(int next, ExploreReport r, HashSet<ulong> distinct, RunRecords? records)
    {
        var hashes = new ulong[distinct.Count];
        distinct.CopyTo(hashes);
        RunRecords? copy = null;
        if (records != null)
        {
            copy = new RunRecords();
            copy.AddRange(records);
        }
        return new ExploreCheckpoint
        {
            Next = next,
            Schedules = r.Schedules,
            TotalSteps = r.TotalSteps,
            StepsMin = r.StepsMin,
            StepsMax = r.StepsMax,
            MaxDecisions = r.MaxDecisions,
            Violations = r.Violations,
            SchedulesToFirstBug = r.SchedulesToFirstBug,
            Elapsed = r.Elapsed,
            TimeToFirstBug = r.TimeToFirstBug,
            Distinct = hashes,
            Counterexamples = [.. r.Counterexamples],
            Records = copy,
        };
    }

    internal void RestoreInto(ExploreReport r, HashSet<ulong> distinct, RunRecords? records)
    {
        r.Schedules = Schedules;
        r.TotalSteps = TotalSteps;
        r.StepsMin = Schedules == 0 ? long.MaxValue : StepsMin;
        r.StepsMax = StepsMax;
        r.MaxDecisions = MaxDecisions;
        r.Violations = Violations;
        r.SchedulesToFirstBug = SchedulesToFirstBug;
        r.TimeToFirstBug = TimeToFirstBug;
        r.Counterexamples.AddRange(Counterexamples);
        distinct.UnionWith(Distinct);
        r.DistinctSchedules = distinct.Count;
        if (records != null && Records != null) records.AddRange(Records);
    }
}
