using MmuSim.Scenarios;
using MmuSim.Sched;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace MmuSim.Experiments;

/// <summary>One cost as a run used it: its value and where the figure came from.</summary>
public sealed record UsedCost(CostKind Kind, long Ns, string Source);

/// <summary>
/// The cost model of a run: the calibrated defaults (<see cref="CostModel.Sources"/>) with the overrides of a
/// <c>--costs FILE</c> (YAML or JSON): <c>{ machine: "...", costs: { vm-exit: 1200, zap: { ns: 25, source: "..." } } }</c>.
/// A bad file is one <c>file:line: field: message</c> error.
/// </summary>
public sealed class CostSet
{
    /// <summary>Where the figures come from: "defaults (...)" or the file and its machine.</summary>
    public required string Origin { get; init; }
    public required IReadOnlyList<UsedCost> Costs { get; init; }

    /// <summary>The calibrated defaults.</summary>
    public static CostSet Defaults { get; } = new()
    {
        Origin = "defaults (calibrated on this project's machine: bench/realkvm, bench/realfault)",
        Costs = Enum.GetValues<CostKind>().Select(k => new UsedCost(k, CostModel.Sources[k].Ns, CostModel.Sources[k].Source)).ToList(),
    };

    public long this[CostKind kind] => Costs.First(c => c.Kind == kind).Ns;

    /// <summary>The entries that differ from the defaults (applied to each run's kernel).</summary>
    public IEnumerable<UsedCost> Overrides => Costs.Where(c => c.Ns != CostModel.Defaults[c.Kind]);

    /// <summary>Set every cost of <paramref name="model"/>.</summary>
    public void ApplyTo(CostModel model)
    {
        foreach (var c in Costs) model[c.Kind] = c.Ns;
    }

    /// <summary>A copy with one cost changed (the varied cost of an experiment).</summary>
    public CostSet With(CostKind kind, long ns) => new()
    {
        Origin = Origin,
        Costs = Costs.Select(c => c.Kind == kind ? c with { Ns = ns, Source = "varied by the experiment" } : c).ToList(),
    };

    public static CostSet Load(string path) => Parse(ScenarioLoader.ReadText(path, "costs"), path);

    public static CostSet Parse(string text, string file)
    {
        var doc = new YamlStream();
        try { doc.Load(new StringReader(text)); }
        catch (YamlException e) { throw new ScenarioException(file, (int)e.Start.Line, "yaml", e.Message); }
        var p = new ExperimentLoader.P(file);
        if (doc.Documents.Count == 0 || doc.Documents[0].RootNode is not YamlMappingNode root)
            throw new ScenarioException(file, 1, "costs", "a cost file is a mapping: { machine: ..., costs: { KIND: NS, ... } }");
        p.CheckKeys(root, "", ["machine", "costs"]);
        string machine = p.Opt(root, "machine") is { } mn ? p.Str(mn, "machine") : "";
        var map = p.Map(p.Req(root, "costs", ""), "costs");
        var costs = Defaults.Costs.ToDictionary(c => c.Kind);
        foreach (var (k, v) in map.Children)
        {
            var name = p.Str(k, "costs");
            var kind = ScenarioLoader.ParseCostKind(name)
                ?? throw p.Err(k, "costs." + name, $"unknown cost kind (known: {string.Join(", ", Enum.GetValues<CostKind>().Select(x => ScenarioLoader.Kebab(x.ToString())))})");
            string field = "costs." + name;
            long ns;
            string source = machine.Length > 0 ? $"{file} ({machine})" : file;
            if (v is YamlMappingNode vm)
            {
                p.CheckKeys(vm, field + ".", ["ns", "source"]);
                ns = Ns(p, p.Req(vm, "ns", field + "."), field + ".ns");
                if (p.Opt(vm, "source") is { } sn) source = p.Str(sn, field + ".source");
            }
            else ns = Ns(p, v, field);
            costs[kind] = new UsedCost(kind, ns, source);
        }
        return new CostSet
        {
            Origin = machine.Length > 0 ? $"{file} ({machine}); defaults for the rest" : $"{file}; defaults for the rest",
            Costs = Enum.GetValues<CostKind>().Select(x => costs[x]).ToList(),
        };
    }

    static long Ns(ExperimentLoader.P p, YamlNode n, string field)
    {
        var s = p.Str(n, field);
        if (!long.TryParse(s.Replace("_", ""), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v))
            throw p.Err(n, field, $"'{s}' is not a whole number of nanoseconds");
        if (v > 1_000_000_000_000) throw p.Err(n, field, $"{v} ns is more than the limit of 10^12");
        return v;
    }
}
