using System.Diagnostics;
using System.Text.Json;

namespace MmuSim.Explore;

/// <summary>A scenario the mutant runner can build with any set of mutation switches on.</summary>
/// <param name="Name">Scenario name (reported as what killed a mutant).</param>
/// <param name="Build">Build the program with these mutations (and the scenario's era).</param>
public sealed record MutationTarget(string Name, Func<IReadOnlySet<Mutation>, IExplorable> Build);

/// <summary>The verdict on one mutant.</summary>
/// <param name="Name">Command-line name of the mutation (<c>skip-tlb-flush</c>).</param>
/// <param name="Killed">Some scenario found a violation with the mutation on.</param>
/// <param name="Scenario">The first scenario that killed it, or null.</param>
/// <param name="Invariant">The invariant that scenario reported, or null.</param>
/// <param name="TimeMs">Wall time spent on this mutant, in milliseconds.</param>
/// <param name="Schedules">Schedules run on this mutant over all scenarios tried.</param>
public sealed record MutantResult(string Name, bool Killed, string? Scenario, string? Invariant, double TimeMs, int Schedules);

/// <summary>The whole mutation score.</summary>
public sealed record MutationReport(IReadOnlyList<MutantResult> Mutants, IReadOnlyList<string> BaselineFailures)
{
    public int KilledCount => Mutants.Count(m => m.Killed);

    public double Score => Mutants.Count == 0 ? 1 : (double)KilledCount / Mutants.Count;

    /// <summary>One JSON record per mutant: <c>[{"name":...,"killed":...,"scenario":...,"time":...}, ...]</c>.</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartArray();
            foreach (var m in Mutants)
            {
                w.WriteStartObject();
                w.WriteString("name", m.Name);
                w.WriteBoolean("killed", m.Killed);
                if (m.Scenario != null) w.WriteString("scenario", m.Scenario); else w.WriteNull("scenario");
                if (m.Invariant != null) w.WriteString("invariant", m.Invariant); else w.WriteNull("invariant");
                w.WriteNumber("time", Math.Round(m.TimeMs / 1000.0, 3));
                w.WriteNumber("schedules", m.Schedules);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>TAP version 13: a baseline point per failing unmutated scenario, then one point per mutant; a survivor is <c>not ok</c>.</summary>
    public string ToTap()
    {
        var sb = new System.Text.StringBuilder("TAP version 13\n");
        sb.Append("1..").Append(BaselineFailures.Count + Mutants.Count).Append('\n');
        int n = 0;
        foreach (var f in BaselineFailures) sb.Append($"not ok {++n} - baseline (unmutated): {f.Replace('\n', ' ').Replace("#", "\\#")}\n");
        foreach (var m in Mutants)
            sb.Append(m.Killed
                ? $"ok {++n} - {m.Name}: killed by {m.Scenario} ({m.Invariant}, {m.Schedules} schedules)\n"
                : $"not ok {++n} - {m.Name}: survived ({m.Schedules} schedules)\n");
        return sb.ToString();
    }

    /// <summary>JUnit XML: one <c>testsuite</c> "mutants", one <c>testcase</c> per mutant; a survivor is a <c>failure</c>.</summary>
    public string ToJUnit()
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var suite = new System.Xml.Linq.XElement("testsuite",
            new System.Xml.Linq.XAttribute("name", "mmusim mutants"),
            new System.Xml.Linq.XAttribute("tests", BaselineFailures.Count + Mutants.Count),
            new System.Xml.Linq.XAttribute("failures", BaselineFailures.Count + Mutants.Count(m => !m.Killed)));
        foreach (var f in BaselineFailures)
            suite.Add(new System.Xml.Linq.XElement("testcase", new System.Xml.Linq.XAttribute("classname", "baseline"), new System.Xml.Linq.XAttribute("name", f),
                new System.Xml.Linq.XElement("failure", new System.Xml.Linq.XAttribute("message", "violation without mutations"))));
        foreach (var m in Mutants)
        {
            var tc = new System.Xml.Linq.XElement("testcase", new System.Xml.Linq.XAttribute("classname", "mutants"), new System.Xml.Linq.XAttribute("name", m.Name),
                new System.Xml.Linq.XAttribute("time", (m.TimeMs / 1000.0).ToString("0.000", inv)));
            if (m.Killed) tc.Add(new System.Xml.Linq.XElement("system-out", $"killed by {m.Scenario} ({m.Invariant})"));
            else tc.Add(new System.Xml.Linq.XElement("failure", new System.Xml.Linq.XAttribute("message", $"survived {m.Schedules} schedules")));
            suite.Add(tc);
        }
        return "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n" + new System.Xml.Linq.XElement("testsuites", suite) + "\n";
    }

    public string ToText()
    {
        var sb = new System.Text.StringBuilder();
        foreach (var f in BaselineFailures) sb.AppendLine($"baseline violation (unmutated): {f}");
        int w = Mutants.Count == 0 ? 10 : Mutants.Max(m => m.Name.Length);
        foreach (var m in Mutants)
            sb.AppendLine(m.Killed
                ? $"{m.Name.PadRight(w)}  killed   by {m.Scenario} ({m.Invariant}, {m.TimeMs:F0} ms, {m.Schedules} schedules)"
                : $"{m.Name.PadRight(w)}  SURVIVED ({m.Schedules} schedules, {m.TimeMs:F0} ms)");
        sb.AppendLine($"mutation score: {KilledCount}/{Mutants.Count} killed");
        return sb.ToString();
    }
}

/// <summary>
/// Runs every mutant against a set of scenarios: for each mutation, each scenario is explored with that single switch on
/// until a violation kills the mutant or the per-scenario budget is spent. The unmutated scenarios are explored first
/// (the baseline): a scenario that fails without mutations cannot judge a mutant, and is reported and skipped.
/// </summary>
public sealed class MutantRunner(IReadOnlyList<MutationTarget> scenarios, ExploreOptions budget)
{
    /// <summary>Called after each mutant.</summary>
    public Action<MutantResult>? OnMutant { get; init; }

    public MutationReport Run(IEnumerable<Mutation> mutations)
    {
        var none = new HashSet<Mutation>();
        var baseline = new List<string>();
        var usable = new List<MutationTarget>();
        foreach (var s in scenarios)
        {
            var r = new Explorer(s.Build(none), budget with { All = false }).Run();
            if (r.First != null) baseline.Add($"{s.Name}: {r.First.Violation}");
            else usable.Add(s);
        }

        var results = new List<MutantResult>();
        foreach (var m in mutations)
        {
            var sw = Stopwatch.StartNew();
            var set = new HashSet<Mutation> { m };
            int schedules = 0;
            MutantResult? verdict = null;
            foreach (var s in usable)
            {
                var r = new Explorer(s.Build(set), budget with { All = false }).Run();
                schedules += r.Schedules;
                if (r.First is { } c)
                {
                    verdict = new MutantResult(Mutations.NameOf(m), true, s.Name, c.Violation.Invariant, sw.Elapsed.TotalMilliseconds, schedules);
                    break;
                }
            }
            verdict ??= new MutantResult(Mutations.NameOf(m), false, null, null, sw.Elapsed.TotalMilliseconds, schedules);
            results.Add(verdict);
            OnMutant?.Invoke(verdict);
        }
        return new MutationReport(results, baseline);
    }
}
