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

    /// <summary>Stopped by the time limit or cancellation before the iteration budget was spent.</summary>
    public bool TimedOut { get; internal set; }

    public string Summary()
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"scenario {Info.Scenario}, era {Info.Era}" + (Info.Mutations.Count > 0 ? $", mutations {string.Join(",", Info.Mutations)}" : "") + $", strategy {Strategy}");
        sb.AppendLine($"schedules: {Schedules} ({DistinctSchedules} distinct), {SchedulesPerSecond:F0} schedules/s, {StepsPerSecond:F0} steps/s, {Elapsed.TotalSeconds:F2} s");
        sb.AppendLine($"steps per schedule: min {StepsMin}, avg {StepsAvg:F1}, max {StepsMax}");
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
/// strategy instance and builds its own Kernel per run, and the results of a round are processed in iteration order, so
/// the reported counterexample is always the lowest failing iteration whatever the number of cores.
/// </summary>
public sealed class Explorer(IExplorable program, ExploreOptions options)
{
    /// <summary>Iterations per round; adaptive strategies commit their step-bound estimates at round boundaries.</summary>
    public const int RoundSize = 32;

    /// <summary>Distinct schedule hashes kept (8 bytes each); beyond it the distinct count is a lower bound.</summary>
    public const int MaxDistinctTracked = 1 << 22;

    public ExploreReport Run()
    {
        var spec = options.Strategy;
        var report = new ExploreReport { Info = program.Info, Strategy = spec.ToString(), StepsMin = long.MaxValue };
        var distinct = new HashSet<ulong>();
        var sw = Stopwatch.StartNew();
        int workers = spec.Sequential ? 1 : Math.Max(1, options.Parallelism);
        var instances = new IStrategy[workers];
        for (int w = 0; w < workers; w++) instances[w] = spec.Create();
        var exhaustive = instances[0] as IExhaustiveStrategy;
        var results = new RunOutcome[RoundSize];
        var descriptions = new string[RoundSize];
        var finishedAt = new TimeSpan[RoundSize];
        bool stop = false;
        int next = 0;

        while (!stop && next < options.Iterations)
        {
            if (options.Cancel.IsCancellationRequested || (options.TimeLimit is { } tl && sw.Elapsed >= tl))
            {
                report.TimedOut = true;
                break;
            }
            int start = next;
            int count = Math.Min(RoundSize, options.Iterations - start);
            if (workers == 1)
            {
                // Sequential: stop inside the round at the first violation or when DFS is exhausted.
                int done = 0;
                for (int j = 0; j < count; j++)
                {
                    if (exhaustive != null && !exhaustive.HasMore) break;
                    RunOne(instances[0], start + j, j);
                    done++;
                    if (results[j].Violation != null && !options.All) break;
                }
                count = done;
            }
            else
            {
                int claimed = -1;
                Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
                {
                    int j;
                    while ((j = Interlocked.Increment(ref claimed)) < count) RunOne(instances[w], start + j, j);
                });
            }
            next = start + count;
            for (int j = 0; j < count; j++)
            {
                var r = results[j];
                foreach (var inst in instances)
                    if (inst is IAdaptiveStrategy a) a.Observe(r.Decisions);
                report.Schedules++;
                report.TotalSteps += r.Steps;
                report.StepsMin = Math.Min(report.StepsMin, r.Steps);
                report.StepsMax = Math.Max(report.StepsMax, r.Steps);
                report.MaxDecisions = Math.Max(report.MaxDecisions, r.Decisions);
                if (distinct.Count < MaxDistinctTracked) distinct.Add(r.ScheduleHash);
                if (r.Violation != null && !stop)
                {
                    report.Violations++;
                    if (report.Violations == 1)
                    {
                        report.TimeToFirstBug = finishedAt[j];
                        report.SchedulesToFirstBug = report.Schedules;
                    }
                    if (report.Counterexamples.Count < options.MaxCounterexamples)
                        report.Counterexamples.Add(Counterexample.From(program.Info, descriptions[j], spec.Seed, start + j, r));
                    if (report.Violations == 1 && report.Counterexamples.Count > 0) options.FirstViolation?.Invoke(report.Counterexamples[0]);
                    if (!options.All) stop = true;
                }
            }
            Array.Clear(results);
            report.DistinctSchedules = distinct.Count;
            report.Elapsed = sw.Elapsed;
            options.Progress?.Invoke(new ExploreProgress(report.Schedules, options.Iterations, report.TotalSteps, report.Violations, sw.Elapsed));
            if (exhaustive != null && !exhaustive.HasMore)
            {
                report.Exhausted = true;
                break;
            }
            if (count == 0) break;
        }

        report.Elapsed = sw.Elapsed;
        report.DistinctSchedules = distinct.Count;
        if (report.Schedules == 0) report.StepsMin = 0;
        if (report.Exhausted && report.Violations == 0) report.Completion = exhaustive!.Completion(report.Schedules);
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
            finishedAt[slot] = sw.Elapsed;
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
