using MmuSim.Eras;
using MmuSim.Scenarios;
using MmuSim.Sched;
using MmuSim.Trace;

namespace MmuSim.Explore;

/// <summary>
/// A YAML scenario in one era with a set of mutations, as something the explorer can run: each run is
/// <see cref="ScenarioRunner.Run"/> with a fresh kernel. Only the threads phase is explored and recorded
/// (the setup phase makes no decisions).
/// </summary>
public sealed class ScenarioExplorable : IExplorable
{
    readonly Scenario _scenario;
    readonly KernelEra _era;
    readonly IReadOnlyList<Mutation> _mutations;
    readonly ulong _seed;

    /// <param name="mutations">Mutations on top of the scenario's own.</param>
    /// <param name="seed">Seed for data choices made without a strategy (the setup phase).</param>
    public ScenarioExplorable(Scenario scenario, KernelEra era, IReadOnlyList<Mutation>? mutations = null, ulong seed = 1)
    {
        _scenario = scenario;
        _era = era;
        _mutations = mutations ?? [];
        _seed = seed;
        var all = scenario.Mutations.Concat(_mutations).Distinct().Select(MmuSim.Mutations.NameOf).ToArray();
        Info = new ExplorableInfo(scenario.Name, era.Name, all);
    }

    public ExplorableInfo Info { get; }

    public Scenario Scenario => _scenario;

    public KernelEra Era => _era;

    /// <summary>The full result of the last run on this thread (kernel, world, stats), for printing a replay.</summary>
    [ThreadStatic] static Scenarios.RunResult? _last;

    public static Scenarios.RunResult? LastRun => _last;

    public RunOutcome RunOnce(IStrategy strategy, int iteration, IRunObserver? observer = null)
    {
        var r = ScenarioRunner.Run(_scenario, _era, strategy, new RunOptions
        {
            Iteration = iteration,
            Seed = _seed,
            Mutations = _mutations,
            StepSink = observer as IStepSink,
            Configure = observer == null ? null : k =>
            {
                if (observer is TraceCollector tc) tc.Bind(k);
                else observer.Attach(k.S, k);
            },
        });
        observer?.Detach(r.Kernel.S, r.Kernel);
        if (observer != null) _last = r;
        return new RunOutcome
        {
            Violation = r.Violation,
            Steps = r.Steps,
            Decisions = r.Decisions.Length,
            Preemptions = r.Preemptions,
            ScheduleHash = RunOutcome.Hash(r.Decisions),
            Log = r.Decisions,
            ClockNs = r.SimulatedNs,
        };
    }
}
