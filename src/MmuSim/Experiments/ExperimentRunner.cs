using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MmuSim.Checker;
using MmuSim.Scenarios;

namespace MmuSim.Experiments;

/// <summary>The outcome of one cell: the counters of its threads phase (setup excluded) and how the run ended.</summary>
public sealed record CellResult(ExperimentCell Cell, string Outcome, bool MatchesExpectation, IReadOnlyDictionary<string, long> Metrics);

/// <summary>A cell compared with the same sweep point in the baseline era.</summary>
/// <param name="Delta">metric(this era) − metric(baseline), per metric.</param>
/// <param name="SavingPer">the baseline's saving in simulated ns per unit of each <c>per:</c> normalisation, at the run's costs.</param>
/// <param name="SavingByCost">for each value X of the varied cost: the saving per unit (<c>per:</c> name → ns) had that cost been X.</param>
public sealed record Comparison(CellResult Cell, CellResult Baseline, IReadOnlyDictionary<string, long> Delta,
    IReadOnlyDictionary<string, double> SavingPer, IReadOnlyList<(long Cost, IReadOnlyDictionary<string, double> Per)> SavingByCost);

/// <summary>The results of an experiment run.</summary>
public sealed class ExperimentResult
{
    public required Experiment Experiment { get; init; }
    public required ulong Seed { get; init; }
    public required CostSet Costs { get; init; }
    public required IReadOnlyList<CellResult> Cells { get; init; }
    public required IReadOnlyList<Comparison> Comparisons { get; init; }
    /// <summary>Wall time (not in the JSON, which must be the same for the same seed).</summary>
    public TimeSpan Elapsed { get; init; }
    public int Jobs { get; init; }

    public bool AllMatch => Cells.All(c => c.MatchesExpectation);
}

/// <summary>
/// Runs every cell of an <see cref="Experiment"/> in plain simulation (no strategy, no exploration), in parallel over
/// <c>jobs</c> worker threads. Each cell builds its own kernel, so the results depend only on the seed and the costs.
/// </summary>
public static class ExperimentRunner
{
    public static ExperimentResult Run(Experiment x, ulong seed, CostSet costs, int jobs, Action<int, int>? progress = null, CancellationToken ct = default)
    {
        var sw = Stopwatch.StartNew();
        var cells = x.Cells();
        var results = new CellResult[cells.Count];
        int done = 0;
        Parallel.For(0, cells.Count, new ParallelOptions { MaxDegreeOfParallelism = jobs, CancellationToken = ct }, i =>
        {
            results[i] = RunCell(x, cells[i], seed, costs);
            progress?.Invoke(Interlocked.Increment(ref done), cells.Count);
        });
        return new ExperimentResult
        {
            Experiment = x, Seed = seed, Costs = costs, Cells = results, Comparisons = Compare(x, results, costs),
            Elapsed = sw.Elapsed, Jobs = jobs,
        };
    }

    /// <summary>One plain-simulation run; the metrics count the threads phase only.</summary>
    public static CellResult RunCell(Experiment x, ExperimentCell cell, ulong seed, CostSet costs)
    {
        var s = cell.Point.Scenario;
        long[]? before = null;
        long clock0 = 0;
        var statKinds = Enum.GetValues<Stat>();
        var r = ScenarioRunner.Run(s, cell.Era, null, new RunOptions
        {
            Seed = seed,
            CheckMode = CheckMode.Events,
            Configure = k =>
            {
                costs.ApplyTo(k.S.Costs);
                foreach (var (kind, ns) in s.Costs) k.S.Costs[kind] = ns; // the scenario's own costs: still its own
            },
            AfterSetup = k =>
            {
                before = statKinds.Select(st => k.Stats[st]).ToArray();
                clock0 = k.S.ClockNs;
            },
        });
        var metrics = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var m in x.Metrics)
        {
            if (m == "sim_ns") { metrics[m] = r.SimulatedNs - clock0; continue; }
            if (m.StartsWith("observed.", StringComparison.Ordinal))
            {
                metrics[m] = r.Observed.TryGetValue(m["observed.".Length..], out ulong o) ? (long)o : 0;
                continue;
            }
            int i = Array.FindIndex(statKinds, st => Stats.NameOf(st) == m);
            metrics[m] = r.Kernel.Stats[statKinds[i]] - (before?[i] ?? 0);
        }
        string outcome = r.Violation == null ? "pass" : r.Violation.Invariant;
        return new CellResult(cell, outcome, r.MatchesExpectation, metrics);
    }

    static List<Comparison> Compare(Experiment x, CellResult[] cells, CostSet costs)
    {
        var list = new List<Comparison>();
        if (x.Baseline == null) return list;
        foreach (var c in cells)
        {
            if (c.Cell.Era == x.Baseline) continue;
            var b = cells.First(o => o.Cell.Point == c.Cell.Point && o.Cell.Era == x.Baseline);
            var delta = x.Metrics.ToDictionary(m => m, m => c.Metrics[m] - b.Metrics[m], StringComparer.Ordinal);
            var per = new Dictionary<string, double>(StringComparer.Ordinal);
            var units = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var (name, e) in x.Per)
            {
                units[name] = Expr.Eval(e, c.Cell.Point.Vars);
                per[name] = units[name] == 0 ? 0 : delta.GetValueOrDefault("sim_ns") / units[name];
            }
            var byCost = new List<(long, IReadOnlyDictionary<string, double>)>();
            if (x.Vary is { } v && delta.ContainsKey("sim_ns"))
                foreach (long value in v.Values)
                {
                    // The varied cost is charged once per counted event: move those charges from the run's cost to value.
                    double ns = delta["sim_ns"] + (double)delta[v.Count] * (value - costs[v.Kind]);
                    byCost.Add((value, units.ToDictionary(u => u.Key, u => u.Value == 0 ? 0 : ns / u.Value, StringComparer.Ordinal)));
                }
            list.Add(new Comparison(c, b, delta, per, byCost));
        }
        return list;
    }

    // ------------------------------------------------------------ output

    /// <summary>
    /// Machine output. Deterministic for a seed and a cost set (no wall time):
    /// <c>{experiment, question, scale, seed, costs:{origin, kinds:{kind:{ns,source}}}, eras, baseline, cells:[{scenario, params, era, outcome, matches, metrics}], comparisons:[...]}</c>.
    /// </summary>
    public static string ToJson(ExperimentResult r)
    {
        var x = r.Experiment;
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("experiment", x.Name);
            w.WriteString("question", x.Question.Trim());
            if (x.Scale.Length > 0) w.WriteString("scale", x.Scale.Trim());
            w.WriteNumber("seed", r.Seed);
            w.WriteStartObject("costs");
            w.WriteString("origin", r.Costs.Origin);
            w.WriteStartObject("kinds");
            foreach (var c in r.Costs.Costs)
            {
                w.WriteStartObject(ScenarioLoader.Kebab(c.Kind.ToString()));
                w.WriteNumber("ns", c.Ns);
                w.WriteString("source", c.Source);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartArray("eras");
            foreach (var e in x.Eras) w.WriteStringValue(e.Name);
            w.WriteEndArray();
            if (x.Baseline != null) w.WriteString("baseline", x.Baseline.Name);
            w.WriteStartArray("metrics");
            foreach (var m in x.Metrics) w.WriteStringValue(m);
            w.WriteEndArray();
            if (x.Vary is { } v)
            {
                w.WriteStartObject("vary_cost");
                w.WriteString("kind", ScenarioLoader.Kebab(v.Kind.ToString()));
                w.WriteString("count", v.Count);
                w.WriteStartArray("values");
                foreach (var val in v.Values) w.WriteNumberValue(val);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteStartArray("plots");
            foreach (var p in x.Plots)
            {
                w.WriteStartObject();
                w.WriteString("title", p.Title);
                w.WriteString("scenario", p.Scenario);
                w.WriteString("x", p.X);
                w.WriteString("y", p.Y);
                w.WriteString("color", p.Color);
                w.WriteStartObject("where");
                foreach (var (n, val) in p.Where) w.WriteNumber(n, val);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("cells");
            foreach (var c in r.Cells)
            {
                w.WriteStartObject();
                WriteCellHead(w, c);
                w.WriteString("outcome", c.Outcome);
                w.WriteBoolean("matches", c.MatchesExpectation);
                w.WriteStartObject("metrics");
                foreach (var m in x.Metrics) w.WriteNumber(m, c.Metrics[m]);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("comparisons");
            foreach (var c in r.Comparisons)
            {
                w.WriteStartObject();
                WriteCellHead(w, c.Cell);
                w.WriteString("baseline", c.Baseline.Cell.Era.Name);
                w.WriteStartObject("delta");
                foreach (var m in x.Metrics) w.WriteNumber(m, c.Delta[m]);
                w.WriteEndObject();
                w.WriteStartObject("saving_ns_per");
                foreach (var (k, val) in c.SavingPer) w.WriteNumber(k, Math.Round(val, 3));
                w.WriteEndObject();
                if (c.SavingByCost.Count > 0)
                {
                    w.WriteStartArray("saving_ns_per_by_cost");
                    foreach (var (cost, per) in c.SavingByCost)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("cost", cost);
                        foreach (var (k, val) in per) w.WriteNumber(k, Math.Round(val, 3));
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    static void WriteCellHead(Utf8JsonWriter w, CellResult c)
    {
        w.WriteString("scenario", c.Cell.Scenario.Name);
        w.WriteStartObject("params");
        foreach (var (k, v) in c.Cell.Point.Vars) w.WriteNumber(k, v);
        w.WriteEndObject();
        w.WriteString("era", c.Cell.Era.Name);
    }

    /// <summary>Text output: the question, the costs used, one table per scenario and the savings against the baseline.</summary>
    public static string ToText(ExperimentResult r)
    {
        var x = r.Experiment;
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.Append("experiment ").Append(x.Name).Append(": ").AppendLine(OneLine(x.Question));
        if (x.Scale.Length > 0) sb.Append("scale: ").AppendLine(OneLine(x.Scale));
        sb.Append(inv, $"plain simulation, seed {r.Seed}, {r.Cells.Count} runs on {r.Jobs} workers in {r.Elapsed.TotalSeconds:0.0} s wall").AppendLine();
        sb.Append("costs: ").AppendLine(r.Costs.Origin);
        sb.AppendLine("  " + string.Join(", ", r.Costs.Costs.Select(c => $"{ScenarioLoader.Kebab(c.Kind.ToString())} {c.Ns}")) + " (ns; sources: --json)");
        foreach (var sc in x.Scenarios)
        {
            sb.AppendLine();
            sb.Append("scenario ").AppendLine(sc.Name);
            var head = new List<string>(sc.ParamNames) { "era" };
            head.AddRange(x.Metrics);
            head.Add("outcome");
            var rows = new List<string[]>();
            foreach (var c in r.Cells.Where(c => c.Cell.Scenario == sc))
            {
                var row = sc.ParamNames.Select(p => Expr.Format(c.Cell.Point.Vars[p])).ToList();
                row.Add(c.Cell.Era.Name);
                row.AddRange(x.Metrics.Select(m => c.Metrics[m].ToString(inv)));
                row.Add(c.MatchesExpectation ? c.Outcome : c.Outcome + " (unexpected)");
                rows.Add(row.ToArray());
            }
            Table(sb, head.ToArray(), rows);
            var comps = r.Comparisons.Where(c => c.Cell.Cell.Scenario == sc).ToList();
            if (comps.Count == 0 || x.Per.Count == 0) continue;
            sb.AppendLine();
            sb.Append(inv, $"saving of {x.Baseline!.Name} over each era, simulated ns per unit (at the run's costs").Append(x.Vary is { } vv ? $"; then with {ScenarioLoader.Kebab(vv.Kind.ToString())} = X ns" : "").AppendLine(")");
            var h2 = new List<string>(sc.ParamNames) { "era" };
            foreach (var (pn, _) in x.Per)
            {
                h2.Add("per " + pn);
                if (x.Vary is { } v2) h2.AddRange(v2.Values.Select(val => $"X={val}"));
            }
            var rows2 = new List<string[]>();
            foreach (var c in comps)
            {
                var row = sc.ParamNames.Select(p => Expr.Format(c.Cell.Cell.Point.Vars[p])).ToList();
                row.Add(c.Cell.Cell.Era.Name);
                foreach (var (pn, _) in x.Per)
                {
                    row.Add(Fmt(c.SavingPer[pn]));
                    row.AddRange(c.SavingByCost.Select(b => Fmt(b.Per[pn])));
                }
                rows2.Add(row.ToArray());
            }
            Table(sb, h2.ToArray(), rows2);
        }
        if (!r.AllMatch) sb.AppendLine().AppendLine("some runs did not end as their scenario declares (outcome column)");
        return sb.ToString();
    }

    /// <summary>ns with a readable unit.</summary>
    public static string Fmt(double ns)
    {
        var inv = CultureInfo.InvariantCulture;
        double a = Math.Abs(ns);
        return a switch
        {
            < 10_000 => ns.ToString("0.#", inv),
            < 10_000_000 => (ns / 1e3).ToString("0.##", inv) + "us",
            < 10_000_000_000 => (ns / 1e6).ToString("0.##", inv) + "ms",
            _ => (ns / 1e9).ToString("0.##", inv) + "s",
        };
    }

    static void Table(StringBuilder sb, string[] head, List<string[]> rows)
    {
        var width = head.Select(h => h.Length).ToArray();
        foreach (var r in rows)
            for (int i = 0; i < r.Length; i++) width[i] = Math.Max(width[i], r[i].Length);
        void Line(string[] cells)
        {
            var parts = cells.Select((c, i) => i < cells.Length - 1 ? c.PadLeft(width[i]) : c.PadLeft(width[i]));
            sb.AppendLine(string.Join("  ", parts).TrimEnd());
        }
        Line(head);
        sb.AppendLine(string.Join("  ", width.Select(w => new string('-', w))));
        foreach (var r in rows) Line(r);
    }

    static string OneLine(string s) => string.Join(" ", s.Split((char[])['\n', '\r'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
