using System.Text;
using System.Text.Json;
using MmuSim.Scenarios;

namespace MmuSim.History;

/// <summary>Text table and JSON output of a <see cref="HistoryReport"/>.</summary>
public static class HistoryFormat
{
    /// <summary>
    /// The table: one row per scenario (headed by its catalog entry), one column per era. A cell that contradicts the
    /// scenario's declared expectation is prefixed with <c>!!</c> and listed under the table with what was expected.
    /// </summary>
    public static string ToText(HistoryReport r)
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
            sb.AppendLine(string.Join(" | ", rows[ri].Select((x, i) => x.PadRight(widths[i]))).TrimEnd());
            if (ri == 0) sb.AppendLine(string.Join("-+-", widths.Select(w => new string('-', w))));
        }
        var bad = r.Contradictions.ToList();
        sb.AppendLine();
        int run = r.Cells.Count(c => c.Status != CellStatus.NotApplicable);
        sb.AppendLine($"{r.Scenarios.Count} scenarios x {r.Eras.Count} eras: {run} cells run, " +
                      $"{r.Cells.Count(c => c.Status == CellStatus.Violation)} violations, {bad.Count} contradicting the declared expectation, {r.Elapsed.TotalSeconds:0.0} s");
        foreach (var c in bad)
            sb.AppendLine($"!! {c.Scenario} @ {c.Era}: expected {c.Expected}, got {c.Text}{(c.Message != null ? ": " + c.Message : "")}");
        return sb.ToString();
    }

    /// <summary>Machine output: <c>{"eras":[...],"elapsed":s,"cells":[{"scenario","catalog","era","status","expected","matches","invariant","schedules","time_to_bug","stats"}]}</c>.</summary>
    public static string ToJson(HistoryReport r)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartArray("eras");
            foreach (var e in r.Eras) w.WriteStringValue(e.Name);
            w.WriteEndArray();
            w.WriteNumber("elapsed", Math.Round(r.Elapsed.TotalSeconds, 3));
            w.WriteNumber("contradictions", r.Contradictions.Count());
            w.WriteStartArray("cells");
            for (int s = 0; s < r.Scenarios.Count; s++)
                for (int e = 0; e < r.Eras.Count; e++)
                {
                    var c = r[s, e];
                    w.WriteStartObject();
                    w.WriteString("scenario", c.Scenario);
                    w.WriteString("catalog", r.Scenarios[s].Catalog);
                    w.WriteString("era", c.Era);
                    w.WriteString("status", c.Status switch { CellStatus.NotApplicable => "n/a", CellStatus.Clean => "clean", _ => "violation" });
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
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
