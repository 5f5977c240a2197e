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
    public string ToJson() => Array(w =>
    {
        foreach (var m in Mutants) WriteMutant(w, m);
    });

    static string Array(Action<Utf8JsonWriter> items)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartArray();
            items(w);
            w.WriteEndArray();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    static void WriteMutant(Utf8JsonWriter w, MutantResult m)
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

    public const string ShardFormat = "mmusim-mutants-shard";

    /// <summary><c>mmusim mutants --shard k/N</c>: the baseline failures and this shard's mutants, for <c>mmusim merge</c>.</summary>
    public string ToShardJson(string config, ShardSpec shard) => ExploreJson.Document(w =>
    {
        w.WriteString("format", ShardFormat);
        w.WriteNumber("version", ExploreJson.Version);
        w.WritePropertyName("config");
        ExploreJson.WriteValue(w, config);
        w.WriteStartObject("shard");
        w.WriteNumber("index", shard.Index);
        w.WriteNumber("count", shard.Count);
        w.WriteEndObject();
        w.WriteStartArray("baseline_failures");
        foreach (var f in BaselineFailures) w.WriteStringValue(f);
        w.WriteEndArray();
        w.WriteStartArray("mutants");
        foreach (var m in Mutants) WriteMutant(w, m);
        w.WriteEndArray();
    });

    /// <summary>
    /// Merge mutant shards into the unsharded <c>--json</c> array (mutants in the configured order); returns it and whether
    /// the campaign fails (a survivor or a baseline failure). Missing or duplicate shards or mutants, and mismatched
    /// configurations, are bad input.
    /// </summary>
    public static (string Json, bool Failed) MergeShards(IReadOnlyList<(string File, JsonElement Root)> shards)
    {
        string? config = null, firstFile = null, baseline = null;
        int count = 0;
        var seen = new List<string?>();
        var byName = new Dictionary<string, JsonElement>();
        bool failed = false;
        foreach (var (file, root) in shards)
        {
            var f = new ExploreJson.Fields(file, root);
            f.Format(ShardFormat);
            var sh = new ExploreJson.Fields(file, f.Get("shard"), "shard.");
            var spec = ShardSpec.TryParse($"{sh.Int("index")}/{sh.Int("count")}", out var err) ?? throw sh.Error("index", err);
            string cfg = f.Get("config").GetRawText(), base_ = ExploreJson.Normal(f.Get("baseline_failures").GetRawText());
            if (config == null)
            {
                (config, firstFile, baseline, count) = (cfg, file, base_, spec.Count);
                seen.AddRange(new string?[count]);
            }
            else if (ExploreJson.Normal(cfg) != ExploreJson.Normal(config))
                throw f.Error("config", $"not the configuration of {firstFile} ({ExploreJson.FirstDifference(config, cfg)})");
            else if (base_ != baseline) throw f.Error("baseline_failures", $"differ from those of {firstFile}");
            if (spec.Count != count) throw sh.Error("count", $"{spec.Count}, but {firstFile} is one of {count} shards");
            if (seen[spec.Index - 1] is { } dup) throw sh.Error("index", $"shard {spec} is also {dup}");
            seen[spec.Index - 1] = file;
            failed |= f.Array("baseline_failures").Any();
            int n = 0;
            foreach (var m in f.Array("mutants"))
            {
                var mf = new ExploreJson.Fields(file, m, $"mutants[{n++}].");
                string name = mf.Str("name");
                if (!byName.TryAdd(name, m)) throw mf.Error("name", $"mutant {name} is in two shards");
                failed |= !mf.Bool("killed");
            }
        }
        var missing = Enumerable.Range(1, count).Where(k => seen[k - 1] == null).ToList();
        if (missing.Count > 0)
            throw new Scenarios.ScenarioException(firstFile!, 1, "shard", $"missing shard{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(k => $"{k}/{count}"))} of this campaign");
        using var doc = JsonDocument.Parse(config!);
        var cf = new ExploreJson.Fields(firstFile!, doc.RootElement, "config.");
        var names = cf.Array("mutants").Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw cf.Error("mutants", "expected mutant names")).ToList();
        foreach (var name in names)
            if (!byName.ContainsKey(name)) throw new Scenarios.ScenarioException(firstFile!, 1, "mutants", $"no shard judged mutant {name}");
        if (byName.Count != names.Count) throw new Scenarios.ScenarioException(firstFile!, 1, "mutants", "a shard judged a mutant the configuration does not list");
        return (Array(w =>
        {
            foreach (var name in names) byName[name].WriteTo(w);
        }), failed);
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

    /// <summary>Judge only this shard's mutants (the i-th of the list with i mod N = k-1); the baseline runs in every shard.</summary>
    public ShardSpec? Shard { get; init; }

    /// <summary>What the shards of one mutation campaign must share: scenarios, mutants (in order), budget and seed.</summary>
    public string Config(IEnumerable<Mutation> mutations) => ExploreJson.Document(w =>
    {
        w.WriteStartArray("scenarios");
        foreach (var t in scenarios) w.WriteStringValue(t.Name);
        w.WriteEndArray();
        w.WriteStartArray("mutants");
        foreach (var m in mutations) w.WriteStringValue(Mutations.NameOf(m));
        w.WriteEndArray();
        w.WriteString("strategy", budget.Strategy.ToString());
        w.WriteNumber("seed", budget.Strategy.Seed);
        w.WriteNumber("iterations", budget.Iterations);
    });

    public MutationReport Run(IEnumerable<Mutation> mutations)
    {
        if (Shard is { } shard) mutations = mutations.Where((_, i) => shard.Owns(i)).ToList();
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
