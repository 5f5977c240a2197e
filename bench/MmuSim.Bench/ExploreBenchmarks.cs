using BenchmarkDotNet.Attributes;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Bench;

/// <summary>
/// Issue 5 figure: exploration throughput on the catalog scenario (a) `invalidate-page-after-ptl` with the random
/// strategy, on one core: schedules per second (one operation = one schedule, each a fresh Kernel) and scheduling steps
/// per second (= schedules/s x <see cref="StepsPerSchedule"/>, printed at cleanup). Era 4.19 (clean: every schedule runs
/// to completion). Targets: >= 20,000 schedules/s and >= 1,000,000 steps/s.
/// Run: dotnet run -c Release --project bench/MmuSim.Bench -- --filter '*Explore*'   (or `-- explore` for a quick check)
/// </summary>
[MemoryDiagnoser]
public class ExploreBenchmarks
{
    public const int SchedulesPerInvoke = 256;

    ScenarioExplorable _program = null!;
    long _steps, _schedules;
    int _iteration;

    [Params("4.19", "4.10")]
    public string Era { get; set; } = "4.19";

    [GlobalSetup]
    public void Setup() => _program = new ScenarioExplorable(ScenarioLoader.LoadBuiltIn("invalidate-page-after-ptl"), EraTable.Get(Era));

    /// <summary>Average scheduling steps per schedule seen so far.</summary>
    public double StepsPerSchedule => _schedules == 0 ? 0 : (double)_steps / _schedules;

    [Benchmark(OperationsPerInvoke = SchedulesPerInvoke)]
    public long RandomSchedules()
    {
        long steps = 0;
        for (int i = 0; i < SchedulesPerInvoke; i++)
        {
            int it = _iteration++;
            var r = _program.RunOnce(new RandomStrategy((ulong)it * 0x9E3779B97F4A7C15UL + 1), it);
            steps += r.Steps;
        }
        _steps += steps;
        _schedules += SchedulesPerInvoke;
        return steps;
    }

    [GlobalCleanup]
    public void Cleanup() => Console.WriteLine($"// {Era}: {StepsPerSchedule:F1} scheduling steps per schedule (steps/s = schedules/s x this)");

    /// <summary>A quick Stopwatch check (not the reported figure): best of 3 rounds of 2,000 schedules.</summary>
    public static void Quick()
    {
        foreach (var era in new[] { "4.19", "4.10" })
        {
            var b = new ExploreBenchmarks { Era = era };
            b.Setup();
            for (int w = 0; w < 4; w++) b.RandomSchedules();
            double best = 0, steps = 0;
            for (int round = 0; round < 3; round++)
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                long s = 0;
                int n = 0;
                while (n < 2000) { s += b.RandomSchedules(); n += SchedulesPerInvoke; }
                double rate = n / sw.Elapsed.TotalSeconds;
                if (rate > best) { best = rate; steps = s / sw.Elapsed.TotalSeconds; }
            }
            Console.WriteLine($"{era}: {best:F0} schedules/s, {steps:F0} steps/s ({b.StepsPerSchedule:F1} steps/schedule)");
        }
    }
}
