using System.Text;
using System.Text.Json;
using System.Xml.Linq;
using MmuSim.Scenarios;

namespace MmuSim.History;

/// <summary>Compact matrix, wide table, Markdown, JSON, TAP and JUnit output of a <see cref="HistoryReport"/>.</summary>
public static class HistoryFormat
{
    /// <summary>The compact matrix's symbols.</summary>
    public const string Legend = "x violation  . clean  - n/a  ? inconclusive (wall-clock limit)  ! contradicts the declared expectation";

    /// <summary>Longest line the compact output prints (detail lines wrap at it).</summary>
    public const int MaxWidth = 160;

    /// <summary>Column pitch of the compact matrix: era names alternate on two header lines, so 8-char names fit.</summary>
    const int Pitch = 5;

    /// <summary>
    /// The default output: one symbol per cell (rows: catalog ids, columns: eras, names staggered on two header lines),
    /// the legend, then one line per row naming the scenario, its invariants with their eras and its time-to-bug range,
    /// then the summary and the contradictions. Fits <see cref="MaxWidth"/> columns for up to ~28 eras.
    /// </summary>
    public static string ToText(HistoryReport r)
    {
        var sb = new StringBuilder();
        int label = Math.Max(8, r.Scenarios.Max(s => Label(s).Length)) + 2;
        for (int line = 0; line < 2; line++)
        {
            var h = new StringBuilder(new string(' ', label));
            for (int e = line; e < r.Eras.Count; e += 2)
            {
                int col = label + e * Pitch;
                if (h.Length < col) h.Append(' ', col - h.Length);
                h.Append(r.Eras[e].Name);
            }
            sb.AppendLine(h.ToString().TrimEnd());
        }
        for (int s = 0; s < r.Scenarios.Count; s++)
        {
            var row = new StringBuilder(Label(r.Scenarios[s]).PadRight(label));
            for (int e = 0; e < r.Eras.Count; e++) row.Append(r[s, e].Symbol).Append(' ', Pitch - 1);
            sb.AppendLine(row.ToString().TrimEnd());
        }
        sb.AppendLine();
        sb.AppendLine(Legend);
        sb.AppendLine();
        for (int s = 0; s < r.Scenarios.Count; s++)
            Wrap(sb, $"{Label(r.Scenarios[s])} {r.Scenarios[s].Name}: {RowDetail(r, s)}");
        Summary(sb, r);
        return sb.ToString();
    }

    static string Label(Scenario s) => $"({s.Catalog ?? s.Name})";

    /// <summary>One row's detail: each invariant with the eras that violate it and the time-to-bug range; the stats.</summary>
    static string RowDetail(HistoryReport r, int s)
    {
        var parts = new List<string>();
        var byInv = new List<(string Inv, List<HistoryCell> Cells)>();
        for (int e = 0; e < r.Eras.Count; e++)
        {
            var c = r[s, e];
            if (c.Status != CellStatus.Violation) continue;
            var inv = c.Invariant ?? "?";
            int k = byInv.FindIndex(b => b.Inv == inv);
            if (k < 0) byInv.Add((inv, [c]));
            else byInv[k].Cells.Add(c);
        }
        foreach (var (inv, cells) in byInv)
        {
            var times = cells.Select(c => c.TimeToBug ?? c.Elapsed).ToList();
            int minS = cells.Min(c => c.Schedules), maxS = cells.Max(c => c.Schedules);
            string t = times.Min() == times.Max() ? HistoryCell.FormatTime(times.Min()) : $"{HistoryCell.FormatTime(times.Min())}..{HistoryCell.FormatTime(times.Max())}";
            string sch = minS == maxS ? $"{minS} schedule{(minS == 1 ? "" : "s")}" : $"{minS}..{maxS} schedules";
            parts.Add($"x {inv} in {Eras(r, cells)}, time-to-bug {t} ({sch})");
        }
        var clean = Enumerable.Range(0, r.Eras.Count).Select(e => r[s, e]).Where(c => c.Status == CellStatus.Clean).ToList();
        if (clean.Count > 0) parts.Add($"clean in {clean.Count} eras ({clean.Max(c => c.Schedules)} schedules each)");
        var inconclusive = Enumerable.Range(0, r.Eras.Count).Select(e => r[s, e]).Where(c => c.Status == CellStatus.Inconclusive).ToList();
        if (inconclusive.Count > 0) parts.Add($"? inconclusive in {Eras(r, inconclusive)}");
        // Counters grouped by value: "found_present 8/8 in 2.6.32, 3.6; 0/8 in 3.7..6.8".
        var groups = new List<(string Text, List<HistoryCell> Cells)>();
        for (int e = 0; e < r.Eras.Count; e++)
        {
            var c = r[s, e];
            if (c.Stats.Count == 0) continue;
            string t = string.Join(", ", c.Stats.Select(st => $"{st.Name.Replace("kvm_", "")} {st.Runs}/{c.StatRuns}"));
            int k = groups.FindIndex(g => g.Text == t);
            if (k < 0) groups.Add((t, [c]));
            else groups[k].Cells.Add(c);
        }
        if (groups.Count > 0) parts.Add("stats: " + string.Join("; ", groups.Select(g => $"{g.Text} in {Eras(r, g.Cells)}")));
        return parts.Count == 0 ? "n/a in every era" : string.Join("; ", parts);
    }

    /// <summary>Eras of some cells, runs of adjacent columns joined: "3.6..4.12, 5.5".</summary>
    static string Eras(HistoryReport r, List<HistoryCell> cells)
    {
        var idx = cells.Select(c => r.Eras.ToList().FindIndex(e => e.Name == c.Era)).ToList();
        var runs = new List<string>();
        for (int i = 0; i < idx.Count;)
        {
            int j = i;
            while (j + 1 < idx.Count && idx[j + 1] == idx[j] + 1) j++;
            runs.Add(j == i ? cells[i].Era : j == i + 1 ? $"{cells[i].Era}, {cells[j].Era}" : $"{cells[i].Era}..{cells[j].Era}");
            i = j + 1;
        }
        return string.Join(", ", runs);
    }

    static void Summary(StringBuilder sb, HistoryReport r)
    {
        var bad = r.Contradictions.ToList();
        sb.AppendLine();
        int run = r.Cells.Count(c => c.Status != CellStatus.NotApplicable);
        int inc = r.Cells.Count(c => c.Status == CellStatus.Inconclusive);
        Wrap(sb, $"{r.Scenarios.Count} scenarios x {r.Eras.Count} eras: {run} cells run ({r.SchedulesPerCell} schedules each at most), " +
                 $"{r.Cells.Count(c => c.Status == CellStatus.Violation)} violations, {inc} inconclusive, {bad.Count} contradicting the declared expectation, {r.Elapsed.TotalSeconds:0.0} s");
        if (inc > 0)
            Wrap(sb, $"? {inc} cells were stopped by the wall-clock limit before their schedule budget: they count neither way (raise --time-limit)");
        foreach (var c in bad)
            Wrap(sb, $"!! {c.Scenario} @ {c.Era}: expected {c.Expected}, got {c.Text}{(c.Message != null ? ": " + c.Message : "")}");
    }

    /// <summary>Append <paramref name="text"/> wrapped at <see cref="MaxWidth"/>, continuation lines indented.</summary>
    static void Wrap(StringBuilder sb, string text)
    {
        const string indent = "    ";
        string rest = text;
        bool first = true;
        while (true)
        {
            string prefix = first ? "" : indent;
            int room = MaxWidth - prefix.Length;
            if (rest.Length <= room) { sb.Append(prefix).AppendLine(rest); return; }
            int cut = rest.LastIndexOf(' ', room);
            if (cut <= 0) cut = room;
            sb.Append(prefix).AppendLine(rest[..cut].TrimEnd());
            rest = rest[cut..].TrimStart();
            first = false;
        }
    }

    /// <summary>
    /// The wide table (<c>--wide</c>): one row per scenario (headed by its catalog entry), one column per era, each cell in
    /// words. A cell that contradicts the scenario's declared expectation is prefixed with <c>!!</c> and listed under the
    /// table with what was expected.
    /// </summary>
    public static string ToWide(HistoryReport r, bool markdown = false)
    {
        var sb = new StringBuilder();
        var header = new List<string> { "scenario" };
        header.AddRange(r.Eras.Select(e => e.Name));
        var rows = new List<List<string>> { header };
        for (int s = 0; s < r.Scenarios.Count; s++)
        {
            var row = new List<string> { $"({r.Scenarios[s].Catalog}) {r.Scenarios[s].Name}" };
            for (int e = 0; e < r.Eras.Count; e++)
            {
                var c = r[s, e];
                row.Add((c.Contradicts ? "!! " : "") + c.Text);
            }
            rows.Add(row);
        }
        var widths = new int[header.Count];
        foreach (var row in rows)
            for (int i = 0; i < row.Count; i++) widths[i] = Math.Max(widths[i], row[i].Length);
        for (int ri = 0; ri < rows.Count; ri++)
        {
            if (markdown)
            {
                sb.AppendLine("| " + string.Join(" | ", rows[ri].Select(x => x.Replace("|", "\\|"))) + " |");
                if (ri == 0) sb.AppendLine("|" + string.Concat(rows[ri].Select(_ => " --- |")));
                continue;
            }
            sb.AppendLine(string.Join(" | ", rows[ri].Select((x, i) => x.PadRight(widths[i]))).TrimEnd());
            if (ri == 0) sb.AppendLine(string.Join("-+-", widths.Select(w => new string('-', w))));
        }
        var bad = r.Contradictions.ToList();
        sb.AppendLine();
        int run = r.Cells.Count(c => c.Status != CellStatus.NotApplicable);
        sb.AppendLine($"{r.Scenarios.Count} scenarios x {r.Eras.Count} eras: {run} cells run ({r.SchedulesPerCell} schedules each at most), " +
                      $"{r.Cells.Count(c => c.Status == CellStatus.Violation)} violations, {r.Cells.Count(c => c.Status == CellStatus.Inconclusive)} inconclusive, " +
                      $"{bad.Count} contradicting the declared expectation, {r.Elapsed.TotalSeconds:0.0} s");
        foreach (var c in bad)
            sb.AppendLine($"!! {c.Scenario} @ {c.Era}: expected {c.Expected}, got {c.Text}{(c.Message != null ? ": " + c.Message : "")}");
        return sb.ToString();
    }

    static string StatusWord(CellStatus s) => s switch
    {
        CellStatus.NotApplicable => "n/a",
        CellStatus.Clean => "clean",
        CellStatus.Inconclusive => "inconclusive",
        _ => "violation",
    };

    /// <summary>
    /// TAP version 13: one test point per cell, in row-major order. A contradiction is <c>not ok</c>; n/a and
    /// inconclusive cells are <c>ok ... # SKIP</c>.
    /// </summary>
    public static string ToTap(HistoryReport r)
    {
        var sb = new StringBuilder("TAP version 13\n");
        sb.Append("1..").Append(r.Cells.Length).Append('\n');
        for (int i = 0; i < r.Cells.Length; i++)
        {
            var c = r.Cells[i];
            var sc = r.Scenarios[i / r.Eras.Count];
            sb.Append(c.Contradicts ? "not ok " : "ok ").Append(i + 1).Append($" - ({sc.Catalog ?? sc.Name}) {c.Scenario} @ {c.Era}: {OneLine(c.Text)}");
            if (c.Status == CellStatus.NotApplicable) sb.Append(" # SKIP n/a");
            else if (c.Status == CellStatus.Inconclusive) sb.Append(" # SKIP inconclusive: wall-clock limit");
            sb.Append('\n');
            if (c.Contradicts)
            {
                sb.Append("  ---\n");
                sb.Append("  expected: ").Append(Yaml(c.Expected.ToString())).Append('\n');
                sb.Append("  got: ").Append(Yaml(StatusWord(c.Status) + (c.Invariant != null ? " " + c.Invariant : ""))).Append('\n');
                if (c.Message != null) sb.Append("  message: ").Append(Yaml(c.Message)).Append('\n');
                sb.Append("  ...\n");
            }
        }
        return sb.ToString();
    }

    static string OneLine(string s) => s.Replace('\n', ' ').Replace('\r', ' ').Replace("#", "\\#");
    static string Yaml(string s) => JsonSerializer.Serialize(s.Replace('\n', ' '));

    /// <summary>
    /// JUnit XML: one <c>testsuite</c> per scenario, one <c>testcase</c> per era; a contradiction is a <c>failure</c>,
    /// n/a and inconclusive cells are <c>skipped</c>.
    /// </summary>
    public static string ToJUnit(HistoryReport r)
    {
        var root = new XElement("testsuites",
            new XAttribute("name", "mmusim history"),
            new XAttribute("tests", r.Cells.Length),
            new XAttribute("failures", r.Contradictions.Count()),
            new XAttribute("skipped", r.Cells.Count(c => c.Status is CellStatus.NotApplicable or CellStatus.Inconclusive)),
            new XAttribute("time", Seconds(r.Elapsed)));
        for (int s = 0; s < r.Scenarios.Count; s++)
        {
            var sc = r.Scenarios[s];
            var cells = Enumerable.Range(0, r.Eras.Count).Select(e => r[s, e]).ToList();
            var suite = new XElement("testsuite",
                new XAttribute("name", $"({sc.Catalog ?? sc.Name}) {sc.Name}"),
                new XAttribute("tests", cells.Count),
                new XAttribute("failures", cells.Count(c => c.Contradicts)),
                new XAttribute("skipped", cells.Count(c => c.Status is CellStatus.NotApplicable or CellStatus.Inconclusive)));
            foreach (var c in cells)
            {
                var tc = new XElement("testcase", new XAttribute("classname", sc.Name), new XAttribute("name", c.Era),
                    new XAttribute("time", Seconds(c.Elapsed)));
                if (c.Contradicts)
                    tc.Add(new XElement("failure", new XAttribute("message", $"expected {c.Expected}, got {c.Text}"), c.Message ?? ""));
                else if (c.Status == CellStatus.NotApplicable) tc.Add(new XElement("skipped", new XAttribute("message", "n/a")));
                else if (c.Status == CellStatus.Inconclusive) tc.Add(new XElement("skipped", new XAttribute("message", c.Text)));
                tc.Add(new XElement("system-out", c.Text));
                suite.Add(tc);
            }
            root.Add(suite);
        }
        return new XDocument(new XDeclaration("1.0", "utf-8", null), root).Declaration + "\n" + root + "\n";
    }

    static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary><c>mmusim history --json</c>: eras, elapsed, contradictions, inconclusive, schedules_per_cell, seed, cells.</summary>
    public static string ToJson(HistoryReport r) => Explore.ExploreJson.Document(w =>
        WriteTop(w, r.Eras.Select(e => e.Name), r.Elapsed.TotalSeconds, r.Contradictions.Count(), r.Cells.Count(c => c?.Status == CellStatus.Inconclusive),
            r.SchedulesPerCell, r.Seed, () =>
            {
                for (int s = 0; s < r.Scenarios.Count; s++)
                    for (int e = 0; e < r.Eras.Count; e++)
                        WriteCell(w, r, s, e);
            }));

    /// <summary>The top level of the history JSON (shared by <see cref="ToJson"/> and <see cref="MergeShards"/>).</summary>
    static void WriteTop(Utf8JsonWriter w, IEnumerable<string> eras, double elapsed, int contradictions, int inconclusive, int perCell, ulong seed, Action cells)
    {
        w.WriteStartArray("eras");
        foreach (var e in eras) w.WriteStringValue(e);
        w.WriteEndArray();
        w.WriteNumber("elapsed", Math.Round(elapsed, 3));
        w.WriteNumber("contradictions", contradictions);
        w.WriteNumber("inconclusive", inconclusive);
        w.WriteNumber("schedules_per_cell", perCell);
        w.WriteNumber("seed", seed);
        w.WriteStartArray("cells");
        cells();
        w.WriteEndArray();
    }

    static void WriteCell(Utf8JsonWriter w, HistoryReport r, int s, int e)
    {
        var c = r[s, e];
        w.WriteStartObject();
        w.WriteString("scenario", c.Scenario);
        w.WriteString("catalog", r.Scenarios[s].Catalog);
        w.WriteString("era", c.Era);
        w.WriteString("status", StatusWord(c.Status));
        w.WriteString("expected", c.Expected.ToString());
        w.WriteBoolean("matches", !c.Contradicts);
        if (c.Invariant != null) w.WriteString("invariant", c.Invariant);
        if (c.Status != CellStatus.NotApplicable)
        {
            w.WriteNumber("schedules", c.Schedules);
            w.WriteNumber("elapsed", Math.Round(c.Elapsed.TotalSeconds, 6));
        }
        if (c.TimeToBug is { } t) w.WriteNumber("time_to_bug", Math.Round(t.TotalSeconds, 6));
        if (c.Stats.Count > 0)
        {
            w.WriteStartObject("stats");
            w.WriteNumber("runs", c.StatRuns);
            foreach (var (name, runs, total) in c.Stats)
            {
                w.WriteStartObject(name);
                w.WriteNumber("nonzero_runs", runs);
                w.WriteNumber("total", total);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    public const string ShardFormat = "mmusim-history-shard";

    /// <summary>The configuration a history shard must share with the others: scenarios, eras, strategy, budget.</summary>
    public static string Config(HistoryReport r, Explore.StrategySpec spec) => Explore.ExploreJson.Document(w =>
    {
        w.WriteStartArray("scenarios");
        foreach (var s in r.Scenarios) w.WriteStringValue(s.Name);
        w.WriteEndArray();
        w.WriteStartArray("eras");
        foreach (var e in r.Eras) w.WriteStringValue(e.Name);
        w.WriteEndArray();
        w.WriteString("strategy", spec.ToString());
        w.WriteNumber("seed", r.Seed);
        w.WriteNumber("schedules_per_cell", r.SchedulesPerCell);
    });

    /// <summary><c>mmusim history --shard k/N</c>: this shard's cells (row-major index i with i mod N = k-1), for <c>mmusim merge</c>.</summary>
    public static string ToShardJson(HistoryReport r, Explore.StrategySpec spec, Explore.ShardSpec shard) => Explore.ExploreJson.Document(w =>
    {
        w.WriteString("format", ShardFormat);
        w.WriteNumber("version", Explore.ExploreJson.Version);
        w.WritePropertyName("config");
        Explore.ExploreJson.WriteValue(w, Config(r, spec));
        w.WriteStartObject("shard");
        w.WriteNumber("index", shard.Index);
        w.WriteNumber("count", shard.Count);
        w.WriteEndObject();
        w.WriteNumber("elapsed", Math.Round(r.Elapsed.TotalSeconds, 3));
        w.WriteStartArray("cells");
        for (int s = 0; s < r.Scenarios.Count; s++)
            for (int e = 0; e < r.Eras.Count; e++)
            {
                int i = s * r.Eras.Count + e;
                if (r.Cells[i] == null) continue;
                w.WriteStartObject();
                w.WriteNumber("index", i);
                w.WritePropertyName("cell");
                WriteCell(w, r, s, e);
                w.WriteEndObject();
            }
        w.WriteEndArray();
    });

    /// <summary>
    /// Merge history shards (parsed roots, with their file names) into the unsharded <c>--json</c> output; returns it and
    /// whether a cell contradicts. Missing or duplicate shards and mismatched configurations are bad input.
    /// </summary>
    public static (string Json, bool Contradiction) MergeShards(IReadOnlyList<(string File, JsonElement Root)> shards)
    {
        var parsed = new List<(string File, string Config, Explore.ShardSpec Shard, double Elapsed, JsonElement Cells)>();
        foreach (var (file, root) in shards)
        {
            var f = new Explore.ExploreJson.Fields(file, root);
            f.Format(ShardFormat);
            var sh = new Explore.ExploreJson.Fields(file, f.Get("shard"), "shard.");
            var spec = Explore.ShardSpec.TryParse($"{sh.Int("index")}/{sh.Int("count")}", out var err) ?? throw sh.Error("index", err);
            if (f.Get("cells").ValueKind != JsonValueKind.Array) throw f.Error("cells", "expected an array");
            parsed.Add((file, f.Get("config").GetRawText(), spec, f.Double("elapsed"), f.Get("cells")));
        }
        var first = parsed[0];
        using var cfg = JsonDocument.Parse(first.Config);
        var c = new Explore.ExploreJson.Fields(first.File, cfg.RootElement, "config.");
        var eras = c.Array("eras").Select(e => e.GetString() ?? "").ToList();
        int total = c.Array("scenarios").Count() * eras.Count, count = first.Shard.Count;
        var cells = new JsonElement?[total];
        var seen = new string?[count];
        foreach (var p in parsed)
        {
            if (Explore.ExploreJson.Normal(p.Config) != Explore.ExploreJson.Normal(first.Config))
                throw new ScenarioException(p.File, 1, "config", $"not the configuration of {first.File} ({Explore.ExploreJson.FirstDifference(first.Config, p.Config)})");
            if (p.Shard.Count != count) throw new ScenarioException(p.File, 1, "shard.count", $"{p.Shard.Count}, but {first.File} is one of {count} shards");
            if (seen[p.Shard.Index - 1] is { } dup) throw new ScenarioException(p.File, 1, "shard.index", $"shard {p.Shard} is also {dup}");
            seen[p.Shard.Index - 1] = p.File;
            int n = 0;
            foreach (var e in p.Cells.EnumerateArray())
            {
                var cf = new Explore.ExploreJson.Fields(p.File, e, $"cells[{n++}].");
                int i = cf.Int("index");
                if (i < 0 || i >= total || !p.Shard.Owns(i)) throw cf.Error("index", $"{i} is not a cell of shard {p.Shard} of {total} cells");
                var cell = new Explore.ExploreJson.Fields(p.File, cf.Get("cell"), $"cells[{n - 1}].cell.");
                cell.Bool("matches");
                cell.Str("status");
                cells[i] = cell.Element;
            }
        }
        var missing = Enumerable.Range(1, count).Where(k => seen[k - 1] == null).ToList();
        if (missing.Count > 0)
            throw new ScenarioException(first.File, 1, "shard", $"missing shard{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(k => $"{k}/{count}"))} of this campaign");
        for (int i = 0; i < total; i++)
            if (cells[i] == null) throw new ScenarioException(seen[i % count]!, 1, "cells", $"cell {i} is missing");
        int contradictions = cells.Count(x => x!.Value.GetProperty("matches").ValueKind == JsonValueKind.False);
        int inconclusive = cells.Count(x => x!.Value.GetProperty("status").GetString() == StatusWord(CellStatus.Inconclusive));
        string json = Explore.ExploreJson.Document(w => WriteTop(w, eras, parsed.Sum(p => p.Elapsed), contradictions, inconclusive,
            c.Int("schedules_per_cell"), c.ULong("seed"), () =>
            {
                foreach (var x in cells) x!.Value.WriteTo(w);
            }));
        return (json, contradictions > 0);
    }
}
