using System.Diagnostics;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;
using Xunit.Abstractions;

namespace MmuSim.Tests.Scenarios;

/// <summary>
/// Fuzzes the scenario loader and the trace-file reader in-process: every built-in scenario and a saved trace of a few
/// of them are mutated (<see cref="FuzzMutator"/>) with a fixed seed. Each input must load, or fail with a one-line
/// <c>file:line: field: message</c> diagnostic; what loads is run once plainly with a small step bound, which must end
/// in a result or such a diagnostic. Any other exception is a crash. MMUSIM_FUZZ_N (default 2400) and MMUSIM_FUZZ_SEED
/// set the count and the seed of a longer run (docs/scenarios.md, "Limits").
/// </summary>
public class LoaderFuzzTests(ITestOutputHelper output)
{
    const long StepBound = 2000;

    enum Outcome { LoadedOk, LoadedViolation, Diagnostic, RunDiagnostic, Crash }

    [Fact]
    public void MutatedScenariosAndTracesLoadOrFailWithOneLineDiagnostic()
    {
        int n = int.TryParse(Environment.GetEnvironmentVariable("MMUSIM_FUZZ_N"), out var n0) ? n0 : 2400;
        ulong seed = ulong.TryParse(Environment.GetEnvironmentVariable("MMUSIM_FUZZ_SEED"), out var s0) ? s0 : 20261203UL;
        var rng = new FuzzMutator(seed);
        var corpus = ScenarioLoader.BuiltInNames.Select(name => (Name: name, Text: ScenarioLoader.BuiltInText(name)!, Trace: false)).ToList();
        foreach (var name in ScenarioLoader.BuiltInNames.Where((_, i) => i % 8 == 0))
            corpus.Add((name + ".trace", SavedTrace(name), true));

        var counts = new Dictionary<Outcome, int>();
        var byKind = new Dictionary<string, int>();
        var crashes = new List<string>();
        var slowest = (Ms: 0L, Kind: "");
        for (int i = 0; i < n; i++)
        {
            var (name, text, trace) = corpus[rng.Next(corpus.Count)];
            var input = rng.Mutate(text, out var kind);
            var sw = Stopwatch.StartNew();
            var outcome = trace ? TryTrace(input, $"fuzz/{i}-{name}", out var error) : TryScenario(input, $"fuzz/{i}-{name}.yaml", out error);
            if (sw.ElapsedMilliseconds > slowest.Ms) slowest = (sw.ElapsedMilliseconds, $"{kind} of {name}");
            counts[outcome] = counts.GetValueOrDefault(outcome) + 1;
            byKind[kind] = byKind.GetValueOrDefault(kind) + 1;
            if (outcome == Outcome.Crash && crashes.Count < 10) crashes.Add($"input {i} ({kind} of {name}): {error}");
        }
        output.WriteLine($"fuzz: {n} inputs, seed {seed}: " + string.Join(", ", Enum.GetValues<Outcome>().Select(o => $"{o} {counts.GetValueOrDefault(o)}")));
        output.WriteLine("mutations: " + string.Join(", ", byKind.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key} {kv.Value}")));
        output.WriteLine($"slowest input: {slowest.Ms} ms ({slowest.Kind})");
        Assert.True(crashes.Count == 0, string.Join("\n", crashes));
        Assert.True(counts.GetValueOrDefault(Outcome.Diagnostic) > 0 && counts.GetValueOrDefault(Outcome.LoadedOk) > 0,
            "the mutations should both break and keep inputs");
    }

    /// <summary>A trace file of one plain run of <paramref name="name"/>, as explore --out writes it.</summary>
    static string SavedTrace(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        var era = s.EraOrDefault(null);
        var r = ScenarioRunner.Run(s, era, new RandomStrategy(7), new RunOptions { Seed = 7 });
        return new TraceFile
        {
            Scenario = name, Era = era.Name, Seed = 7, Strategy = "random", Invariant = r.Violation?.Invariant,
            Steps = r.Steps, Preemptions = r.Preemptions, Decisions = r.Decisions,
        }.ToString();
    }

    static Outcome TryScenario(string text, string file, out string? error)
    {
        Scenario s;
        try { s = ScenarioLoader.Parse(text, file); }
        catch (Exception e) { return Diagnose(e, file, Outcome.Diagnostic, out error); }
        return RunOnce(s, s.EraOrDefault(null), null, out error);
    }

    static Outcome TryTrace(string text, string file, out string? error)
    {
        TraceFile t;
        try { t = TraceFile.Parse(text, file); }
        catch (Exception e) { return Diagnose(e, file, Outcome.Diagnostic, out error); }
        if (!ScenarioLoader.IsBuiltIn(t.Scenario) || !EraTable.TryGet(t.Era, out var era))
        {
            error = null;
            return Outcome.Diagnostic; // replay reports these as usage errors naming the trace
        }
        return RunOnce(ScenarioLoader.LoadBuiltIn(t.Scenario), era, t.Decisions, out error);
    }

    static Outcome RunOnce(Scenario s, KernelEra era, IReadOnlyList<(byte Kind, int Value)>? decisions, out string? error)
    {
        var options = new RunOptions { Configure = k => k.S.MaxSteps = Math.Min(k.S.MaxSteps, StepBound) };
        try
        {
            var r = decisions == null ? ScenarioRunner.Run(s, era, null, options) : ScenarioRunner.Replay(s, era, decisions, options);
            error = null;
            return r.Violation == null ? Outcome.LoadedOk : Outcome.LoadedViolation;
        }
        catch (Exception e) { return Diagnose(e, s.File, Outcome.RunDiagnostic, out error); }
    }

    /// <summary>A <see cref="ScenarioException"/> or <see cref="TraceFileException"/> whose message is one line <c>file:line: ...</c>; anything else is a crash.</summary>
    static Outcome Diagnose(Exception e, string file, Outcome ok, out string? error)
    {
        error = $"{e.GetType().Name}: {e.Message}";
        bool oneLine = !e.Message.Contains('\n') && System.Text.RegularExpressions.Regex.IsMatch(e.Message, $"^{System.Text.RegularExpressions.Regex.Escape(file)}:\\d+: ");
        return (e is ScenarioException or TraceFileException) && oneLine ? ok : Outcome.Crash;
    }
}
