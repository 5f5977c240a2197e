using System.Diagnostics;
using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>Budget and behaviour of one exploration.</summary>
public sealed record ExploreOptions
{
    public StrategySpec Strategy { get; init; } = new();

    /// <summary>Maximum number of schedules (runs).</summary>
    public int Iterations { get; init; } = 10_000;

    /// <summary>Wall-clock limit, checked between rounds (null: none).</summary>
    public TimeSpan? TimeLimit { get; init; }

    /// <summary>Collect every violating schedule instead of stopping at the first.</summary>
    public bool All { get; init; }

    /// <summary>Worker threads (1: sequential on the caller's thread). DFS always runs sequentially.</summary>
    public int Parallelism { get; init; } = 1;

    /// <summary>Called on the caller's thread after every round with the totals so far.</summary>
    public Action<ExploreProgress>? Progress { get; init; }

    public CancellationToken Cancel { get; init; }

    /// <summary>Called with the first counterexample as soon as it is found (before the search ends and before shrinking).</summary>
    public Action<Counterexample>? FirstViolation { get; init; }

    /// <summary>Counterexamples kept with <see cref="All"/> (the count of violations is always exact).</summary>
    public int MaxCounterexamples { get; init; } = 100;

    /// <summary>Run only this shard's iterations (i mod N = k-1); null: all of them.</summary>
    public ShardSpec? Shard { get; init; }

    /// <summary>Keep a record of every counted run (steps, decisions, schedule hash) for <see cref="ExploreMerge"/>.</summary>
    public bool RecordRuns { get; init; }

    /// <summary>Continue from this checkpoint instead of from iteration 0.</summary>
    public ExploreCheckpoint? Resume { get; init; }

    /// <summary>Called at a round boundary with the state to save, when a checkpoint is due (see the two intervals).</summary>
    public Action<ExploreCheckpoint>? Checkpoint { get; init; }

    /// <summary>A checkpoint is due after this many counted schedules since the last one...</summary>
    public int CheckpointEverySchedules { get; init; } = int.MaxValue;

    /// <summary>...or after this much wall time since the last one.</summary>
    public TimeSpan CheckpointInterval { get; init; } = TimeSpan.MaxValue;
}

/// <summary>Progress of a running exploration.</summary>
public readonly record struct ExploreProgress(int Schedules, int Budget, long Steps, int Violations, TimeSpan Elapsed)
{
    public double SchedulesPerSecond => Elapsed.TotalSeconds > 0 ? Schedules / Elapsed.TotalSeconds : 0;
}

/// <summary>What an exploration found and how much it searched.</summary>
public sealed class ExploreReport
{
    public required ExplorableInfo Info { get; init; }
    public required string Strategy { get; init; }
    public int Schedules { get; internal set; }
    public long TotalSteps { get; internal set; }
    public long StepsMin { get; internal set; }
    public long StepsMax { get; internal set; }
    public double StepsAvg => Schedules == 0 ? 0 : (double)TotalSteps / Schedules;
    public long MaxDecisions { get; internal set; }

    /// <summary>Distinct decision lists among the schedules run (schedule coverage; a lower bound past <see cref="Explorer.MaxDistinctTracked"/>).</summary>
    public int DistinctSchedules { get; internal set; }

    public int Violations { get; internal set; }

    /// <summary>Counterexamples in iteration order (the first is the lowest failing iteration).</summary>
    public List<Counterexample> Counterexamples { get; } = [];

    public Counterexample? First => Counterexamples.Count > 0 ? Counterexamples[0] : null;

    public TimeSpan Elapsed { get; internal set; }

    /// <summary>Wall time until the first violating schedule finished.</summary>
    public TimeSpan? TimeToFirstBug { get; internal set; }

    /// <summary>Schedules run up to and including the first violating one.</summary>
    public int? SchedulesToFirstBug { get; internal set; }

    public double SchedulesPerSecond => Elapsed.TotalSeconds > 0 ? Schedules / Elapsed.TotalSeconds : 0;

    public double StepsPerSecond => Elapsed.TotalSeconds > 0 ? TotalSteps / Elapsed.TotalSeconds : 0;

    /// <summary>An exhaustive strategy tried every schedule within its bound.</summary>
    public bool Exhausted { get; internal set; }

    /// <summary>For exhaustive searches that completed clean: "no violation in all N schedules up to bound k".</summary>
    public string? Completion { get; internal set; }

    /// <summary>With <c>--state-cache on</c>: distinct states stored and runs ended at a state seen before.</summary>
    public (long Distinct, long Pruned)? StateCache { get; internal set; }

    /// <summary>Stopped by the time limit or cancellation before the iteration budget was spent.</summary>
    public bool TimedOut { get; internal set; }

    /// <summary>Every counted run, when <see cref="ExploreOptions.RecordRuns"/> was set (shards).</summary>
    public RunRecords? Records { get; internal set; }

    public string Summary()
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"scenario {Info.Scenario}, era {Info.Era}" + (Info.Mutations.Count > 0 ? $", mutations {string.Join(",", Info.Mutations)}" : "") + $", strategy {Strategy}");
        sb.AppendLine($"schedules: {Schedules} ({DistinctSchedules} distinct), {SchedulesPerSecond:F0} schedules/s, {StepsPerSecond:F0} steps/s, {Elapsed.TotalSeconds:F2} s");
        sb.AppendLine($"steps per schedule: min {StepsMin}, avg {StepsAvg:F1}, max {StepsMax}");
        if (StateCache is { } sc) sb.AppendLine($"state cache: {sc.Distinct} distinct states, {sc.Pruned} runs ended at a state seen before");
        if (Violations > 0)
        {
            sb.AppendLine($"violations: {Violations}; first after {SchedulesToFirstBug} schedules, {TimeToFirstBug?.TotalMilliseconds:F1} ms");
            sb.AppendLine($"first: {First}");
        }
        else if (Completion != null) sb.AppendLine(Completion);
        else sb.AppendLine($"no violation in {Schedules} schedules" + (TimedOut ? " (time limit)" : ""));
        return sb.ToString();
    }
}

/// <summary>
/// Runs a program under a strategy for a number of schedules or a time limit, stops at the first violation (or collects
/// all), and summarises. Iterations run in rounds of <see cref="RoundSize"/>; in parallel mode each worker has its own
/// strategy instance and builds its own Kernel per run, and the results of a round are processed in iteration order (a
/// result after the first violation is discarded), so the report is the same whatever the number of cores.
/// </summary>
/// <remarks>
/// A sharded run (<see cref="ExploreOptions.Shard"/> k/N) counts only the iterations i with i mod N = k-1; adaptive
/// strategies still run the whole calibration round (iterations 0..<see cref="RoundSize"/>-1) for their step-bound
/// estimate, so every iteration has the schedule it has in the unsharded run. A resumed run
/// (<see cref="ExploreOptions.Resume"/>) restores the totals of its checkpoint and re-runs the calibration round the same
/// way. Shards record every counted run (<see cref="ExploreOptions.RecordRuns"/>) so that <see cref="ExploreMerge"/>
/// can rebuild the unsharded report exactly, including where the unsharded search would have stopped.
/// </remarks>
public sealed class Explorer(IExplorable program, ExploreOptions options)
{
    /// <summary>Iterations per round; adaptive strategies commit their step-bound estimates at round boundaries.</summary>
    public const int RoundSize = 32;

    /// <summary>Distinct schedule hashes kept (8 bytes each); beyond it the distinct count is a lower bound.</summary>
    public const int MaxDistinctTracked = 1 << 22;

    public ExploreReport Run()
    {
        var spec = options.Strategy;
        var shard = options.Shard ?? ShardSpec.Whole;
        var resume = options.Resume;
        var report = new ExploreReport { Info = program.Info, Strategy = spec.ToString(), StepsMin = long.MaxValue };
        var distinct = new HashSet<ulong>();
        var records = options.RecordRuns ? new RunRecords() : null;
        TimeSpan before = TimeSpan.Zero;
        if (resume != null)
        {
            before = resume.Elapsed;
            resume.RestoreInto(report, distinct, records);
        }
        var sw = Stopwatch.StartNew();
        int workers = spec.Sequential ? 1 : Math.Max(1, options.Parallelism);
        var instances = new IStrategy[workers];
        for (int w = 0; w < workers; w++) instances[w] = spec.Create();
        var exhaustive = instances[0] as IExhaustiveStrategy;
        bool adaptive = instances[0] is IAdaptiveStrategy;
        if ((options.Shard != null || resume != null) && spec.Sequential)
            throw new ArgumentException($"{spec}: a sequential (exhaustive) search cannot be sharded or resumed");
        var batch = new int[RoundSize];
        var counted = new bool[RoundSize];
        var results = new RunOutcome[RoundSize];
        var descriptions = new string[RoundSize];
        var finishedAt = new TimeSpan[RoundSize];
        bool stop = false;
        int next = resume?.Next ?? 0;
        // The calibration round: adaptive strategies learn their step bound from all of iterations 0..RoundSize-1.
        bool calibrate = adaptive;
        int sinceCheckpoint = 0;
        var lastCheckpoint = sw.Elapsed;

        while (!stop && next < options.Iterations)
        {
            if (options.Cancel.IsCancellationRequested || (options.TimeLimit is { } tl && before + sw.Elapsed >= tl))
            {
                report.TimedOut = true;
                break;
            }
            int count = 0;
            if (calibrate)
            {
                calibrate = false;
                int end = Math.Min(RoundSize, options.Iterations);
                for (int i = 0; i < end; i++)
                {
                    batch[count] = i;
                    counted[count++] = i >= next && shard.Owns(i);
                }
                next = Math.Max(next, end);
            }
            else
            {
                for (int i = shard.FirstOwnedFrom(next); i < options.Iterations && count < RoundSize; i += shard.Count)
                {
                    batch[count] = i;
                    counted[count++] = true;
                }
                next = count == RoundSize ? batch[count - 1] + 1 : options.Iterations;
            }
            if (workers == 1)
            {
                // Sequential: stop inside the round at the first counted violation or when DFS is exhausted.
                int done = 0;
                for (int j = 0; j < count; j++)
                {
                    if (exhaustive != null && !exhaustive.HasMore) break;
                    RunOne(instances[0], batch[j], j);
                    done++;
                    if (counted[j] && results[j].Violation != null && !options.All) break;
                }
                count = done;
            }
            else
            {
                int claimed = -1, n = count;
                Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
                {
                    int j;
                    while ((j = Interlocked.Increment(ref claimed)) < n) RunOne(instances[w], batch[j], j);
                });
            }
            for (int j = 0; j < count && !stop; j++)
            {
                var r = results[j];
                // Only the calibration round feeds the step-bound estimate: an instance (or portfolio member) that has not
                // run a later iteration yet must not learn from later rounds, or its k would depend on the worker count.
                if (batch[j] < RoundSize)
                    foreach (var inst in instances)
                        if (inst is IAdaptiveStrategy a) a.Observe(r.Decisions);
                if (!counted[j]) continue;
                sinceCheckpoint++;
                report.Schedules++;
                report.TotalSteps += r.Steps;
                report.StepsMin = Math.Min(report.StepsMin, r.Steps);
                report.StepsMax = Math.Max(report.StepsMax, r.Steps);
                report.MaxDecisions = Math.Max(report.MaxDecisions, r.Decisions);
                if (distinct.Count < MaxDistinctTracked) distinct.Add(r.ScheduleHash);
                records?.Add(batch[j], r);
                if (r.Violation != null)
                {
                    report.Violations++;
                    if (report.Violations == 1)
                    {
                        report.TimeToFirstBug = finishedAt[j];
                        report.SchedulesToFirstBug = report.Schedules;
                    }
                    if (report.Counterexamples.Count < options.MaxCounterexamples)
                        report.Counterexamples.Add(Counterexample.From(program.Info, descriptions[j], spec.Seed, batch[j], r));
                    if (report.Violations == 1 && report.Counterexamples.Count > 0) options.FirstViolation?.Invoke(report.Counterexamples[0]);
                    if (!options.All) stop = true;
                }
            }
            Array.Clear(results);
            report.DistinctSchedules = distinct.Count;
            report.Elapsed = before + sw.Elapsed;
            options.Progress?.Invoke(new ExploreProgress(report.Schedules, options.Iterations, report.TotalSteps, report.Violations, report.Elapsed));
            if (exhaustive != null && !exhaustive.HasMore)
            {
                report.Exhausted = true;
                break;
            }
            if (count == 0) break;
            if (options.Checkpoint is { } save && !stop && next < options.Iterations &&
                (sinceCheckpoint >= options.CheckpointEverySchedules || sw.Elapsed - lastCheckpoint >= options.CheckpointInterval))
            {
                report.Elapsed = before + sw.Elapsed;
                save(ExploreCheckpoint.Capture(next, report, distinct, records));
                sinceCheckpoint = 0;
                lastCheckpoint = sw.Elapsed;
            }
        }

        report.Elapsed = before + sw.Elapsed;
        report.DistinctSchedules = distinct.Count;
        report.Records = records;
        if (report.Schedules == 0) report.StepsMin = 0;
        if (report.Exhausted && report.Violations == 0) report.Completion = exhaustive!.Completion(report.Schedules);
        if (exhaustive is DfsStrategy { UsesStateCache: true } cached) report.StateCache = (cached.DistinctStates, cached.PrunedRuns);
        return report;

        void RunOne(IStrategy strategy, int iteration, int slot)
        {
            RunOutcome r;
            try { r = program.RunOnce(strategy, iteration); }
            catch (Exception e) when (e is not OperationCanceledException and not Scenarios.ScenarioException)
            {
                throw new ExploreException($"model error in iteration {iteration} of {program.Info.Scenario} under {spec}: {e.Message}", iteration, e);
            }
            results[slot] = r;
            descriptions[slot] = StrategySpec.Describe(strategy);
            finishedAt[slot] = before + sw.Elapsed;
        }
    }
}

/// <summary>
/// The model threw during exploration (a bug in MmuSim, not in the modelled kernel); names the iteration. Bad scenario
/// input found at run time (<see cref="Scenarios.ScenarioException"/>) is not wrapped.
/// </summary>
public sealed class ExploreException(string message, int iteration, Exception inner) : Exception(message, inner)
{
    public int Iteration { get; } = iteration;
}
