using System.Text.RegularExpressions;
using MmuSim.Eras;
using MmuSim.Scenarios;
using MmuSim.Sched;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace MmuSim.Experiments;

/// <summary>
/// An experiment (docs/experiments.md): a question, scenario templates swept over parameters and eras, the counters
/// that answer it, and how to compare the eras. Parsed from a YAML file; a new experiment is a new file.
/// </summary>
public sealed class Experiment
{
    public required string Name { get; init; }
    public required string File { get; init; }
    public required string Question { get; init; }
    public string Description { get; init; } = "";
    /// <summary>How the modelled sizes relate to the real ones (e.g. a scaled guest), printed with the results.</summary>
    public string Scale { get; init; } = "";
    public required IReadOnlyList<KernelEra> Eras { get; init; }
    /// <summary>The era every other era is compared with, or null.</summary>
    public KernelEra? Baseline { get; init; }
    /// <summary>Reported metrics: counter names (<see cref="Stats.NameOf"/>) and <c>sim_ns</c>, over the threads phase.</summary>
    public required IReadOnlyList<string> Metrics { get; init; }
    /// <summary>Normalisations of the difference against the baseline: name → expression over the cell's variables.</summary>
    public IReadOnlyList<(string Name, string Expr)> Per { get; init; } = [];
    public VaryCost? Vary { get; init; }
    public required IReadOnlyList<ExperimentScenario> Scenarios { get; init; }
    public IReadOnlyList<PlotSpec> Plots { get; init; } = [];

    /// <summary>Every cell: scenario × parameter combination (in declaration order, last parameter fastest) × era.</summary>
    public IReadOnlyList<ExperimentCell> Cells()
    {
        var list = new List<ExperimentCell>();
        foreach (var sc in Scenarios)
            foreach (var point in sc.Points)
                foreach (var era in Eras)
                    list.Add(new ExperimentCell(list.Count, sc, point, era));
        return list;
    }
}

/// <summary>The cost whose value is a parameter of the answer: its kind, the metric that counts its charges, the values.</summary>
public sealed record VaryCost(CostKind Kind, string Count, IReadOnlyList<long> Values);

/// <summary>One plot of the report: <c>y</c> against <c>x</c> (parameter or metric), one line per <c>color</c>.</summary>
public sealed record PlotSpec(string Title, string Scenario, string X, string Y, string Color, IReadOnlyList<(string Name, double Value)> Where);

/// <summary>One scenario template of an experiment with its parameter sweep.</summary>
public sealed class ExperimentScenario
{
    public required string Name { get; init; }
    public required IReadOnlyList<string> ParamNames { get; init; }
    /// <summary>Every parameter point, with the <c>let:</c> values added, in sweep order.</summary>
    public required IReadOnlyList<SweepPoint> Points { get; init; }
    public required string Template { get; init; }
    public int TemplateLine { get; init; }
}

/// <summary>One parameter combination: its variables (parameters then <c>let:</c>) and the scenario it instantiates.</summary>
public sealed class SweepPoint
{
    public required IReadOnlyDictionary<string, double> Vars { get; init; }
    public required IReadOnlyList<string> ParamNames { get; init; }
    public required Scenario Scenario { get; init; }

    public string Label => string.Join(" ", ParamNames.Select(p => $"{p}={Expr.Format(Vars[p])}"));
}

/// <summary>One run of an experiment: a sweep point in one era.</summary>
public sealed record ExperimentCell(int Index, ExperimentScenario Scenario, SweepPoint Point, KernelEra Era);

/// <summary>Loads experiment files; every problem is one <c>file:line: field: message</c> (<see cref="ScenarioException"/>).</summary>
public static class ExperimentLoader
{
    const string ResourcePrefix = "experiments/";
    static readonly string[] TopKeys = ["name", "question", "description", "scale", "eras", "baseline", "metrics", "per", "vary_cost", "scenarios", "plots"];
    static readonly Regex Hole = new(@"\{\{(.*?)\}\}", RegexOptions.Compiled);

    /// <summary>Names of the built-in experiments, sorted.</summary>
    public static IReadOnlyList<string> BuiltInNames { get; } = typeof(ExperimentLoader).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".yaml", StringComparison.Ordinal))
        .Select(n => n[ResourcePrefix.Length..^".yaml".Length])
        .OrderBy(n => n, StringComparer.Ordinal)
        .ToArray();

    public static string? BuiltInText(string name)
    {
        using var st = typeof(ExperimentLoader).Assembly.GetManifestResourceStream(ResourcePrefix + name + ".yaml");
        if (st == null) return null;
        using var r = new StreamReader(st);
        return r.ReadToEnd();
    }

    public static Experiment LoadBuiltIn(string name) =>
        Parse(BuiltInText(name) ?? throw new ArgumentException($"no built-in experiment '{name}'"), $"builtin/experiments/{name}.yaml");

    public static Experiment Load(string path) => Parse(ScenarioLoader.ReadText(path, "file"), path);

    /// <summary>Metric names an experiment may report: every counter, and <c>sim_ns</c> (simulated time).</summary>
    public static IReadOnlyList<string> KnownMetrics { get; } =
        ["sim_ns", .. Enum.GetValues<Stat>().Select(Stats.NameOf)];

    public static Experiment Parse(string text, string file)
    {
        var doc = new YamlStream();
        try { doc.Load(new StringReader(text)); }
        catch (YamlException e) { throw new ScenarioException(file, (int)e.Start.Line, "yaml", e.Message); }
        if (doc.Documents.Count == 0 || doc.Documents[0].RootNode is not YamlMappingNode root)
            throw new ScenarioException(file, 1, "yaml", "an experiment is a mapping (name:, question:, eras:, metrics:, scenarios:)");
        var p = new P(file);
        p.CheckKeys(root, "", TopKeys);
        string name = p.Str(p.Req(root, "name", ""), "name");
        string question = p.Str(p.Req(root, "question", ""), "question");
        string description = p.Opt(root, "description") is { } d ? p.Str(d, "description") : "";
        string scale = p.Opt(root, "scale") is { } sc ? p.Str(sc, "scale") : "";

        var erasNode = p.Seq(p.Req(root, "eras", ""), "eras");
        var eras = new List<KernelEra>();
        foreach (var en in erasNode.Children)
        {
            var es = p.Str(en, "eras");
            if (!EraTable.TryGet(es, out var era)) throw p.Err(en, "eras", $"unknown era '{es}' (known: {EraTable.KnownList})");
            if (eras.Contains(era)) throw p.Err(en, "eras", $"era {era.Name} is listed twice");
            eras.Add(era);
        }
        if (eras.Count == 0) throw p.Err(erasNode, "eras", "list at least one era");
        KernelEra? baseline = null;
        if (p.Opt(root, "baseline") is { } bn)
        {
            var bs = p.Str(bn, "baseline");
            baseline = eras.FirstOrDefault(e => e.Name == bs || EraTable.TryGet(bs, out var be) && be == e)
                ?? throw p.Err(bn, "baseline", $"'{bs}' is not one of eras: ({string.Join(", ", eras.Select(e => e.Name))})");
        }

        var metricsNode = p.Seq(p.Req(root, "metrics", ""), "metrics");
        var metrics = new List<string>();
        foreach (var mn in metricsNode.Children)
        {
            var m = p.Str(mn, "metrics");
            bool observed = m.StartsWith("observed.", StringComparison.Ordinal) && m.Length > "observed.".Length;
            if (!observed && !KnownMetrics.Contains(m)) throw p.Err(mn, "metrics", $"unknown metric '{m}' (a counter of mmusim run, sim_ns, or observed.LABEL: a value an op stored with as:)");
            metrics.Add(m);
        }
        if (metrics.Count == 0) throw p.Err(metricsNode, "metrics", "list at least one metric");

        var per = new List<(string, string, YamlNode)>();
        if (p.Opt(root, "per") is { } perNode)
            foreach (var (k, v) in p.Map(perNode, "per").Children)
                per.Add((p.Str(k, "per"), p.Str(v, "per." + p.Str(k, "per")), v));

        VaryCost? vary = null;
        if (p.Opt(root, "vary_cost") is { } vn)
        {
            var vm = p.Map(vn, "vary_cost");
            p.CheckKeys(vm, "vary_cost.", ["kind", "count", "values"]);
            var kn = p.Req(vm, "kind", "vary_cost.");
            var kind = ScenarioLoader.ParseCostKind(p.Str(kn, "vary_cost.kind"))
                ?? throw p.Err(kn, "vary_cost.kind", $"unknown cost kind '{p.Str(kn, "vary_cost.kind")}'");
            var cn = p.Req(vm, "count", "vary_cost.");
            var count = p.Str(cn, "vary_cost.count");
            if (!metrics.Contains(count)) throw p.Err(cn, "vary_cost.count", $"'{count}' is not one of metrics:");
            var values = new List<long>();
            foreach (var x in p.Seq(p.Req(vm, "values", "vary_cost."), "vary_cost.values").Children)
                values.Add((long)p.Num(x, "vary_cost.values", 0, 1e12));
            vary = new VaryCost(kind, count, values);
        }

        var scenarios = new List<ExperimentScenario>();
        var scNode = p.Seq(p.Req(root, "scenarios", ""), "scenarios");
        foreach (var sn in scNode.Children)
            scenarios.Add(ParseScenario(p, p.Map(sn, "scenarios"), name, scenarios));
        if (scenarios.Count == 0) throw p.Err(scNode, "scenarios", "list at least one scenario");

        // per: expressions must evaluate at every point (checked here, not half-way through a sweep).
        foreach (var (pn, pe, node) in per)
            foreach (var sc2 in scenarios)
                foreach (var pt in sc2.Points)
                {
                    try { Expr.Eval(pe, pt.Vars); }
                    catch (ExprException e) { throw p.Err(node, "per." + pn, e.Message); }
                }

        var plots = new List<PlotSpec>();
        if (p.Opt(root, "plots") is { } pl)
            foreach (var plotNode in p.Seq(pl, "plots").Children)
            {
                var m = p.Map(plotNode, "plots");
                p.CheckKeys(m, "plots.", ["title", "scenario", "x", "y", "color", "where"]);
                string title = p.Str(p.Req(m, "title", "plots."), "plots.title");
                var scn = p.Req(m, "scenario", "plots.");
                var scName = p.Str(scn, "plots.scenario");
                var target = scenarios.FirstOrDefault(s => s.Name == scName) ?? throw p.Err(scn, "plots.scenario", $"no scenario named '{scName}'");
                string Axis(string key, string? dflt)
                {
                    var n = dflt == null ? p.Req(m, key, "plots.") : p.Opt(m, key);
                    if (n == null) return dflt!;
                    var a = p.Str(n, "plots." + key);
                    bool ok = a == "era" || target.Points[0].Vars.ContainsKey(a) || metrics.Contains(a)
                        || a.StartsWith("saving_per_", StringComparison.Ordinal) && per.Any(x => "saving_per_" + x.Item1 == a);
                    return ok ? a : throw p.Err(n, "plots." + key, $"'{a}' is not era, a parameter, a metric or saving_per_<per>");
                }
                var where = new List<(string, double)>();
                if (p.Opt(m, "where") is { } wn)
                    foreach (var (k, v) in p.Map(wn, "plots.where").Children)
                    {
                        var wk = p.Str(k, "plots.where");
                        if (!target.ParamNames.Contains(wk)) throw p.Err(k, "plots.where", $"'{wk}' is not a parameter of {scName}");
                        where.Add((wk, p.Num(v, "plots.where." + wk, double.MinValue, double.MaxValue)));
                    }
                plots.Add(new PlotSpec(title, scName, Axis("x", null), Axis("y", null), Axis("color", "era"), where));
            }

        return new Experiment
        {
            Name = name, File = file, Question = question, Description = description, Scale = scale, Eras = eras,
            Baseline = baseline, Metrics = metrics, Per = per.Select(x => (x.Item1, x.Item2)).ToList(), Vary = vary,
            Scenarios = scenarios, Plots = plots,
        };
    }

    static ExperimentScenario ParseScenario(P p, YamlMappingNode m, string expName, List<ExperimentScenario> before)
    {
        p.CheckKeys(m, "scenarios.", ["name", "params", "let", "template"]);
        var nn = p.Req(m, "name", "scenarios.");
        string name = p.Str(nn, "scenarios.name");
        if (before.Any(b => b.Name == name)) throw p.Err(nn, "scenarios.name", $"duplicate scenario name '{name}'");
        string f = $"scenarios[{name}]";
        var paramNames = new List<string>();
        var paramValues = new List<IReadOnlyList<double>>();
        if (p.Opt(m, "params") is { } pn)
            foreach (var (k, v) in p.Map(pn, f + ".params").Children)
            {
                var key = p.Str(k, f + ".params");
                if (!IsName(key)) throw p.Err(k, f + ".params", $"'{key}' is not a name (letters, digits, _)");
                var vals = p.Seq(v, $"{f}.params.{key}").Children.Select(x => p.Num(x, $"{f}.params.{key}", double.MinValue, double.MaxValue)).ToList();
                if (vals.Count == 0) throw p.Err(v, $"{f}.params.{key}", "give at least one value");
                paramNames.Add(key);
                paramValues.Add(vals);
            }
        var lets = new List<(string, string, YamlNode)>();
        if (p.Opt(m, "let") is { } ln)
            foreach (var (k, v) in p.Map(ln, f + ".let").Children)
            {
                var key = p.Str(k, f + ".let");
                if (!IsName(key) || paramNames.Contains(key)) throw p.Err(k, f + ".let", $"'{key}' is not a new name");
                lets.Add((key, p.Str(v, $"{f}.let.{key}"), v));
            }
        var tn = p.Req(m, "template", "scenarios.");
        string template = p.Str(tn, f + ".template");
        int templateLine = (int)tn.Start.Line;

        var points = new List<SweepPoint>();
        int total = 1;
        foreach (var pv in paramValues)
        {
            total *= pv.Count;
            if (total > 10_000) throw p.Err(m, f + ".params", "more than 10,000 parameter combinations");
        }
        var idx = new int[paramValues.Count];
        for (int n = 0; n < total; n++)
        {
            int r = n;
            for (int i = paramValues.Count - 1; i >= 0; i--) { idx[i] = r % paramValues[i].Count; r /= paramValues[i].Count; }
            var vars = new Dictionary<string, double>(StringComparer.Ordinal);
            for (int i = 0; i < paramNames.Count; i++) vars[paramNames[i]] = paramValues[i][idx[i]];
            foreach (var (key, e, node) in lets)
            {
                try { vars[key] = Expr.Eval(e, vars); }
                catch (ExprException ex) { throw p.Err(node, $"{f}.let.{key}", ex.Message); }
            }
            string text;
            try { text = Hole.Replace(template, h => Fill(h.Groups[1].Value, vars)); }
            catch (ExprException ex) { throw p.Err(tn, f + ".template", ex.Message); }
            var label = string.Join(" ", paramNames.Select(x => $"{x}={Expr.Format(vars[x])}"));
            Scenario s;
            try { s = ScenarioLoader.Parse(text, $"{expName}/{name}"); }
            catch (ScenarioException e)
            {
                // A template line is a line of the experiment file: report it there.
                throw new ScenarioException(p.File, templateLine + e.Line, $"{f}.template{(label.Length > 0 ? $" ({label})" : "")}: {e.Field}", e.Detail);
            }
            points.Add(new SweepPoint { Vars = vars, ParamNames = paramNames, Scenario = s });
        }
        return new ExperimentScenario { Name = name, ParamNames = paramNames, Points = points, Template = template, TemplateLine = templateLine };
    }

    /// <summary>
    /// A template hole: <c>{{expr}}</c> is the value; <c>{{cond ? text}}</c> is the text when cond is non-zero, else
    /// nothing; <c>{{cond ? text || other}}</c> picks one of two texts.
    /// </summary>
    static string Fill(string hole, IReadOnlyDictionary<string, double> vars)
    {
        int q = hole.IndexOf('?');
        if (q < 0) return Expr.Format(Expr.Eval(hole, vars));
        string rest = hole[(q + 1)..];
        int bar = rest.IndexOf("||", StringComparison.Ordinal);
        string then = bar < 0 ? rest : rest[..bar], other = bar < 0 ? "" : rest[(bar + 2)..];
        return (Expr.Eval(hole[..q], vars) != 0 ? then : other).Trim();
    }

    static bool IsName(string s) => s.Length > 0 && (char.IsLetter(s[0]) || s[0] == '_') && s.All(c => char.IsLetterOrDigit(c) || c == '_');

    /// <summary>YAML node helpers that raise <c>file:line: field: message</c>.</summary>
    internal sealed class P(string file)
    {
        public string File => file;

        public ScenarioException Err(YamlNode n, string field, string message) => new(file, (int)n.Start.Line, field, message);

        public YamlNode? Opt(YamlMappingNode m, string key) =>
            m.Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : null;

        public YamlNode Req(YamlMappingNode m, string key, string prefix) =>
            Opt(m, key) ?? throw Err(m, prefix + key, "missing");

        public void CheckKeys(YamlMappingNode m, string prefix, string[] known)
        {
            foreach (var k in m.Children.Keys)
            {
                var s = k is YamlScalarNode sk ? sk.Value ?? "" : "";
                if (!known.Contains(s)) throw Err(k, prefix + s, $"unknown field (known: {string.Join(", ", known)})");
            }
        }

        public string Str(YamlNode n, string field) =>
            n is YamlScalarNode s ? s.Value ?? "" : throw Err(n, field, "expected a plain value");

        public YamlMappingNode Map(YamlNode n, string field) =>
            n as YamlMappingNode ?? throw Err(n, field, "expected a mapping");

        public YamlSequenceNode Seq(YamlNode n, string field) =>
            n as YamlSequenceNode ?? throw Err(n, field, "expected a list");

        public double Num(YamlNode n, string field, double min, double max)
        {
            var s = Str(n, field);
            double v;
            try { v = Expr.Eval(s, new Dictionary<string, double>()); }
            catch (ExprException) { throw Err(n, field, $"'{s}' is not a number"); }
            if (double.IsNaN(v) || v < min || v > max) throw Err(n, field, $"{s} is out of range ({min}..{max})");
            return v;
        }
    }
}
