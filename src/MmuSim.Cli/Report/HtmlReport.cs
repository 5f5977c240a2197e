using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MmuSim.Scenarios;

namespace MmuSim.Cli.Report;

/// <summary>What a report page shows: JSON texts as the commands print them, and benchmark text files.</summary>
public sealed record ReportInputs
{
    /// <summary><c>mmusim experiment --json</c> outputs.</summary>
    public IReadOnlyList<string> Experiments { get; init; } = [];
    /// <summary><c>mmusim history --json</c> output, or null.</summary>
    public string? History { get; init; }
    /// <summary><c>mmusim mutants --json</c> output, or null.</summary>
    public string? Mutants { get; init; }
    /// <summary>Benchmark figures: (title, text) pairs (bench/realkvm output, BenchmarkDotNet summaries...).</summary>
    public IReadOnlyList<(string Title, string Text)> Bench { get; init; } = [];
}

/// <summary>
/// One self-contained HTML page: the history matrix, each experiment's tables and plots (Vega-Lite specs rendered by
/// vega + vega-lite + vega-embed, whose minified builds are embedded in this assembly from tools/report, so the page
/// needs no network), the mutation score and the benchmark figures. Script errors are collected into
/// <c>#report-errors</c> and the number of rendered plots into <c>body[data-plots-rendered]</c> (the Chromium test reads both).
/// </summary>
public static class HtmlReport
{
    static readonly string[] Assets = ["vega.min.js", "vega-lite.min.js", "vega-embed.min.js"];

    /// <summary>Create the output directory; failure is bad input for <paramref name="option"/>.</summary>
    public static void EnsureDir(string option, string dir)
    {
        try { Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new UsageException(option, $"cannot create directory '{dir}': {e.Message}");
        }
    }

    static string Asset(string name)
    {
        using var st = typeof(HtmlReport).Assembly.GetManifestResourceStream("report/" + name)
            ?? throw new InvalidOperationException($"report asset {name} is not embedded");
        using var r = new StreamReader(st);
        var js = r.ReadToEnd();
        int map = js.LastIndexOf("//# sourceMappingURL=", StringComparison.Ordinal);
        if (map >= 0) js = js[..map];
        return js.Replace("</script", "<\\/script", StringComparison.OrdinalIgnoreCase);
    }

    static string H(string? s) => WebUtility.HtmlEncode(s ?? "");

    public static string Build(ReportInputs inputs)
    {
        var sb = new StringBuilder();
        var plots = new List<(string Id, JsonObject Spec)>();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>MmuSim report</title>\n<style>\n")
          .Append("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;display:block;overflow-x:auto;max-width:100%}")
          .Append("td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}")
          .Append(".hist td{text-align:center;font-family:monospace}.x{background:#f8d0d0}.ok{background:#d8f0d8}.na{color:#999}.bang{background:#ff9b9b;font-weight:bold}.q{background:#fff3c0}")
          .Append("pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:12px}.plot{margin:1em 0}.q-text{font-style:italic}\n</style>\n</head>\n<body>\n")
          .Append("<h1>MmuSim report</h1>\n<pre id=\"report-errors\" hidden></pre>\n");
        sb.Append("<script>window.reportErrors=[];function reportError(m){window.reportErrors.push(String(m));var e=document.getElementById('report-errors');e.hidden=false;e.textContent=window.reportErrors.join('\\n');}")
          .Append("window.addEventListener('error',function(ev){reportError(ev.message)});window.addEventListener('unhandledrejection',function(ev){reportError(ev.reason)});")
          .Append("(function(){var ce=console.error;console.error=function(){reportError(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};})();</script>\n");

        if (inputs.History != null) Checked("--history", "mmusim history --json", () => History(sb, inputs.History));
        int n = 0;
        foreach (var x in inputs.Experiments) Checked("--experiment", "mmusim experiment --json", () => Experiment(sb, x, plots, ref n));
        if (inputs.Mutants != null) Checked("--mutants", "mmusim mutants --json", () => Mutants(sb, inputs.Mutants));
        if (inputs.Bench.Count > 0)
        {
            sb.Append("<h2>Benchmark figures</h2>\n");
            foreach (var (title, text) in inputs.Bench)
                sb.Append("<h3>").Append(H(title)).Append("</h3>\n<pre>").Append(H(text)).Append("</pre>\n");
        }

        foreach (var a in Assets) sb.Append("<script>").Append(Asset(a)).Append("</script>\n");
        sb.Append("<script>\nvar reportPlots=").Append(new JsonArray(plots.Select(p => (JsonNode)new JsonObject { ["id"] = p.Id, ["spec"] = p.Spec }).ToArray()).ToJsonString()).Append(";\n")
          .Append("document.body.dataset.plots=String(reportPlots.length);var rendered=0;\n")
          .Append("Promise.all(reportPlots.map(function(p){return vegaEmbed('#'+p.id,p.spec,{renderer:'svg',actions:false}).then(function(){rendered++;document.body.dataset.plotsRendered=String(rendered);});}))")
          .Append(".then(function(){document.body.dataset.plotsDone='yes';}).catch(function(e){reportError(e);});\n</script>\n</body></html>\n");
        return sb.ToString();
    }

    delegate void Section();

    /// <summary>Well-formed JSON of the wrong shape is bad input of <paramref name="option"/>, not a model error.</summary>
    static void Checked(string option, string producer, Section section)
    {
        try { section(); }
        catch (Exception e) when (e is NullReferenceException or InvalidOperationException or FormatException or KeyNotFoundException or JsonException or ArgumentException)
        {
            throw new UsageException(option, $"not the output of {producer} ({e.Message})");
        }
    }

    // ------------------------------------------------------------ history

    static void History(StringBuilder sb, string json)
    {
        var root = JsonNode.Parse(json)!.AsObject();
        var eras = root["eras"]!.AsArray().Select(e => e!.GetValue<string>()).ToList();
        var cells = root["cells"]!.AsArray().Select(c => c!.AsObject()).ToList();
        sb.Append("<h2>History matrix</h2>\n<p>Each catalog scenario under each era: <b>x</b> violation, <b>.</b> clean, <b>-</b> n/a, <b>?</b> inconclusive, <b>!</b> contradicts the declared expectation. ")
          .Append(H($"seed {root["seed"]}, {root["schedules_per_cell"]} schedules per cell, {root["contradictions"]} contradictions")).Append("</p>\n");
        sb.Append("<table class=\"hist\"><tr><th class=\"l\">scenario</th><th>catalog</th>");
        foreach (var e in eras) sb.Append("<th>").Append(H(e)).Append("</th>");
        sb.Append("</tr>\n");
        foreach (var g in cells.GroupBy(c => c["scenario"]!.GetValue<string>()))
        {
            var first = g.First();
            sb.Append("<tr><td class=\"l\">").Append(H(g.Key)).Append("</td><td>").Append(H(first["catalog"]?.GetValue<string>())).Append("</td>");
            foreach (var e in eras)
            {
                var c = g.FirstOrDefault(x => x["era"]!.GetValue<string>() == e);
                if (c == null) { sb.Append("<td></td>"); continue; }
                string status = c["status"]!.GetValue<string>();
                bool matches = c["matches"]?.GetValue<bool>() ?? true;
                var (sym, cls) = !matches ? ("!", "bang") : status switch
                {
                    "violation" => ("x", "x"),
                    "clean" => (".", "ok"),
                    "n/a" => ("-", "na"),
                    _ when status.StartsWith("inconclusive", StringComparison.Ordinal) => ("?", "q"),
                    _ => (status.Length > 0 ? status[..1] : "?", ""),
                };
                string tip = status + (c["invariant"] is { } inv ? ": " + inv.GetValue<string>() : "") + $" (expected {c["expected"]})";
                sb.Append("<td class=\"").Append(cls).Append("\" title=\"").Append(H(tip)).Append("\">").Append(sym).Append("</td>");
            }
            sb.Append("</tr>\n");
        }
        sb.Append("</table>\n");
    }

    // ------------------------------------------------------------ experiments

    static void Experiment(StringBuilder sb, string json, List<(string, JsonObject)> plots, ref int n)
    {
        var x = JsonNode.Parse(json)!.AsObject();
        string name = x["experiment"]!.GetValue<string>();
        sb.Append("<h2>Experiment ").Append(H(name)).Append("</h2>\n<p class=\"q-text\">").Append(H(x["question"]!.GetValue<string>())).Append("</p>\n");
        if (x["scale"] is { } scale) sb.Append("<p><b>Scale:</b> ").Append(H(scale.GetValue<string>())).Append("</p>\n");
        var costs = x["costs"]!.AsObject();
        sb.Append("<p><b>Costs used:</b> ").Append(H(costs["origin"]!.GetValue<string>())).Append($"; seed {x["seed"]}.</p>\n");
        sb.Append("<details><summary>cost model</summary><table><tr><th class=\"l\">kind</th><th>ns</th><th class=\"l\">source</th></tr>\n");
        foreach (var (k, v) in costs["kinds"]!.AsObject())
            sb.Append("<tr><td class=\"l\">").Append(H(k)).Append("</td><td>").Append(v!["ns"]).Append("</td><td class=\"l\">").Append(H(v["source"]!.GetValue<string>())).Append("</td></tr>\n");
        sb.Append("</table></details>\n");

        var metrics = x["metrics"]!.AsArray().Select(m => m!.GetValue<string>()).ToList();
        var cells = x["cells"]!.AsArray().Select(c => c!.AsObject()).ToList();
        var comps = x["comparisons"]!.AsArray().Select(c => c!.AsObject()).ToList();
        foreach (var g in cells.GroupBy(c => c["scenario"]!.GetValue<string>()))
        {
            sb.Append("<h3>").Append(H(name)).Append(" / ").Append(H(g.Key)).Append("</h3>\n<table><tr>");
            var pnames = g.First()["params"]!.AsObject().Select(p => p.Key).ToList();
            foreach (var p in pnames) sb.Append("<th>").Append(H(p)).Append("</th>");
            sb.Append("<th>era</th>");
            foreach (var m in metrics) sb.Append("<th>").Append(H(m)).Append("</th>");
            sb.Append("<th>outcome</th></tr>\n");
            foreach (var c in g)
            {
                sb.Append("<tr>");
                foreach (var p in pnames) sb.Append("<td>").Append(H(c["params"]![p]!.ToJsonString())).Append("</td>");
                sb.Append("<td>").Append(H(c["era"]!.GetValue<string>())).Append("</td>");
                foreach (var m in metrics) sb.Append("<td>").Append(H(c["metrics"]![m]!.ToJsonString())).Append("</td>");
                sb.Append("<td>").Append(H(c["outcome"]!.GetValue<string>())).Append(c["matches"]!.GetValue<bool>() ? "" : " (unexpected)").Append("</td></tr>\n");
            }
            sb.Append("</table>\n");
            var gc = comps.Where(c => c["scenario"]!.GetValue<string>() == g.Key).ToList();
            if (gc.Count > 0)
            {
                var perNames = gc[0]["saving_ns_per"]!.AsObject().Select(p => p.Key).ToList();
                sb.Append("<p>Saving of ").Append(H(x["baseline"]?.GetValue<string>())).Append(" over each era, simulated ns per unit");
                if (x["vary_cost"] is { } vc) sb.Append(H($"; columns X: with {vc["kind"]} = X ns"));
                sb.Append("</p>\n<table><tr>");
                foreach (var p in pnames) sb.Append("<th>").Append(H(p)).Append("</th>");
                sb.Append("<th>era</th>");
                var byCost0 = gc[0]["saving_ns_per_by_cost"]?.AsArray();
                foreach (var pn in perNames)
                {
                    sb.Append("<th>per ").Append(H(pn)).Append("</th>");
                    if (byCost0 != null) foreach (var b in byCost0) sb.Append("<th>X=").Append(b!["cost"]).Append("</th>");
                }
                sb.Append("</tr>\n");
                foreach (var c in gc)
                {
                    sb.Append("<tr>");
                    foreach (var p in pnames) sb.Append("<td>").Append(H(c["params"]![p]!.ToJsonString())).Append("</td>");
                    sb.Append("<td>").Append(H(c["era"]!.GetValue<string>())).Append("</td>");
                    foreach (var pn in perNames)
                    {
                        sb.Append("<td>").Append(H(Experiments.ExperimentRunner.Fmt(c["saving_ns_per"]![pn]!.GetValue<double>()))).Append("</td>");
                        if (c["saving_ns_per_by_cost"] is JsonArray bc)
                            foreach (var b in bc) sb.Append("<td>").Append(H(Experiments.ExperimentRunner.Fmt(b![pn]!.GetValue<double>()))).Append("</td>");
                    }
                    sb.Append("</tr>\n");
                }
                sb.Append("</table>\n");
            }
        }
        foreach (var p in x["plots"]!.AsArray())
        {
            string id = $"plot-{n++}";
            var spec = PlotSpec(p!.AsObject(), cells, comps, x["eras"]!.AsArray().Select(e => e!.GetValue<string>()).ToList());
            sb.Append("<div class=\"plot\" id=\"").Append(id).Append("\" data-title=\"").Append(H(p["title"]!.GetValue<string>())).Append("\"></div>\n");
            plots.Add((id, spec));
        }
    }

    /// <summary>The Vega-Lite spec of one plot: y against x, one coloured line per value of color.</summary>
    static JsonObject PlotSpec(JsonObject p, List<JsonObject> cells, List<JsonObject> comps, List<string> eras)
    {
        string scenario = p["scenario"]!.GetValue<string>(), xf = p["x"]!.GetValue<string>(), yf = p["y"]!.GetValue<string>(), cf = p["color"]!.GetValue<string>();
        var where = p["where"]!.AsObject().ToDictionary(w => w.Key, w => w.Value!.GetValue<double>());
        bool saving = yf.StartsWith("saving_per_", StringComparison.Ordinal);
        var rows = new JsonArray();
        foreach (var c in saving ? comps : cells)
        {
            if (c["scenario"]!.GetValue<string>() != scenario) continue;
            var ps = c["params"]!.AsObject();
            if (where.Any(w => ps[w.Key]!.GetValue<double>() != w.Value)) continue;
            JsonNode? Val(string f) => f == "era" ? JsonValue.Create(c["era"]!.GetValue<string>())
                : ps.ContainsKey(f) ? JsonValue.Create(ps[f]!.GetValue<double>())
                : saving && f == yf ? JsonValue.Create(c["saving_ns_per"]![f["saving_per_".Length..]]!.GetValue<double>())
                : c[saving ? "delta" : "metrics"]?[f] is { } v ? JsonValue.Create(v.GetValue<double>()) : null;
            rows.Add(new JsonObject { [xf] = Val(xf), [yf] = Val(yf), [cf] = Val(cf) });
        }
        return new JsonObject
        {
            ["$schema"] = "https://vega.github.io/schema/vega-lite/v5.json",
            ["title"] = p["title"]!.GetValue<string>(),
            ["width"] = 520,
            ["height"] = 260,
            ["data"] = new JsonObject { ["values"] = rows },
            ["mark"] = new JsonObject { ["type"] = "line", ["point"] = true },
            ["encoding"] = new JsonObject
            {
                ["x"] = new JsonObject { ["field"] = xf, ["type"] = xf == "era" ? "ordinal" : "quantitative" },
                ["y"] = new JsonObject { ["field"] = yf, ["type"] = "quantitative" },
                ["color"] = cf == "era"
                    ? new JsonObject { ["field"] = cf, ["type"] = "nominal", ["sort"] = new JsonArray(eras.Select(e => (JsonNode)JsonValue.Create(e)!).ToArray()) }
                    : new JsonObject { ["field"] = cf, ["type"] = "ordinal" },
            },
        };
    }

    // ------------------------------------------------------------ mutants

    static void Mutants(StringBuilder sb, string json)
    {
        var arr = JsonNode.Parse(json)!.AsArray().Select(m => m!.AsObject()).ToList();
        int killed = arr.Count(m => m["killed"]!.GetValue<bool>());
        sb.Append("<h2>Mutation score</h2>\n<p id=\"mutation-score\">").Append(killed).Append(" of ").Append(arr.Count).Append(" mutants killed")
          .Append(arr.Count > 0 ? $" ({100.0 * killed / arr.Count:0.#}%)" : "").Append("</p>\n<table><tr><th class=\"l\">mutant</th><th>killed</th><th class=\"l\">by scenario</th><th class=\"l\">invariant</th><th>schedules</th></tr>\n");
        foreach (var m in arr)
            sb.Append("<tr><td class=\"l\">").Append(H(m["name"]!.GetValue<string>())).Append("</td><td>").Append(m["killed"]!.GetValue<bool>() ? "yes" : "<b>no</b>")
              .Append("</td><td class=\"l\">").Append(H(m["scenario"]?.GetValue<string>())).Append("</td><td class=\"l\">").Append(H(m["invariant"]?.GetValue<string>()))
              .Append("</td><td>").Append(m["schedules"]).Append("</td></tr>\n");
        sb.Append("</table>\n");
    }

    /// <summary>Read and check a JSON input file: unreadable or malformed is <c>file:line: json: message</c> (exit 2).</summary>
    public static string ReadJson(string path, string option)
    {
        if (!File.Exists(path)) throw new UsageException(option, $"no such file '{path}'");
        string text = ScenarioLoader.ReadText(path, option);
        try { using var _ = JsonDocument.Parse(text); }
        catch (JsonException e) { throw new ScenarioException(path, (int)(e.LineNumber ?? 0) + 1, "json", e.Message.Split(". LineNumber")[0]); }
        return text;
    }
}
