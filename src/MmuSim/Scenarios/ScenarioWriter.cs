using MmuSim.Mm;
using YamlDotNet.RepresentationModel;

namespace MmuSim.Scenarios;

/// <summary>
/// Writes a <see cref="Scenario"/> back as scenario YAML in a canonical form (explicit fields, hex addresses, the
/// threads' default process spelled out on each op). Loading the output gives an equivalent scenario; trace files and
/// tests use it to carry a scenario with a counterexample.
/// </summary>
public static class ScenarioWriter
{
    public static string ToYaml(Scenario s)
    {
        var root = new YamlMappingNode();
        root.Add("name", s.Name);
        if (s.Description.Length > 0) root.Add("description", s.Description);
        if (s.DefaultEra != null) root.Add("era", s.DefaultEra.Name);
        if (s.MaxSteps is { } max) root.Add("max_steps", max.ToString());
        if (s.PctDepth is { } depth) root.Add("pct_depth", depth.ToString());
        if (s.Catalog != null) root.Add("catalog", s.Catalog);
        if (s.PrimaryTlb) root.Add("primary_tlb", "true");
        if (s.PreemptRt) root.Add("preempt_rt", "true");
        if (s.NumaNodes != 1) root.Add("numa_nodes", s.NumaNodes.ToString());
        if (s.Memory != Lkmm.MemoryModel.Sc) root.Add("memory", Lkmm.MemoryModels.NameOf(s.Memory));
        if (s.HistoryStats.Count > 0)
            root.Add("history_stats", Flow(s.HistoryStats.Select(st => string.Concat(st.ToString().Select((ch, i) =>
                i > 0 && char.IsUpper(ch) ? "_" + char.ToLowerInvariant(ch) : char.ToLowerInvariant(ch).ToString())))));
        if (s.Mutations.Count > 0) root.Add("mutations", Flow(s.Mutations.Select(Mutations.NameOf)));
        if (s.Checks != null) root.Add("checks", Flow(s.Checks));
        if (s.Costs.Count > 0)
        {
            var c = new YamlMappingNode { Style = YamlDotNet.Core.Events.MappingStyle.Flow };
            foreach (var (kind, ns) in s.Costs) c.Add(ScenarioLoader.Kebab(kind.ToString()), ns.ToString());
            root.Add("costs", c);
        }
        if (s.Processes.Count > 0)
        {
            var procs = new YamlSequenceNode();
            foreach (var p in s.Processes)
            {
                var pm = new YamlMappingNode { { "name", p.Name } };
                var vmas = new YamlSequenceNode();
                foreach (var v in p.Vmas)
                {
                    var vm = new YamlMappingNode { Style = YamlDotNet.Core.Events.MappingStyle.Flow };
                    vm.Add("start", Hex(v.Start));
                    vm.Add("len", Hex(v.Len));
                    vm.Add("prot", ProtName(v.Prot));
                    if (v.Flags != VmFlags.None) vm.Add("flags", Flow(FlagNames(v.Flags)));
                    if (v.Contents.Count > 0) vm.Add("contents", Flow(v.Contents.Select(c => c is { } x ? Hex(x) : "_")));
                    vmas.Add(vm);
                }
                if (vmas.Children.Count > 0) pm.Add("vmas", vmas);
                procs.Add(pm);
            }
            root.Add("processes", procs);
        }
        if (s.Setup.Count > 0) root.Add("setup", Ops(s.Setup));
        if (s.Threads.Count > 0) root.Add("threads", Threads(s.Threads));
        if (s.Daemons.Count > 0) root.Add("daemons", Threads(s.Daemons));
        root.Add("expect", Expect(s.Expect));

        var sw = new StringWriter();
        new YamlStream(new YamlDocument(root)).Save(sw, assignAnchors: false);
        var text = sw.ToString().ReplaceLineEndings("\n");
        if (text.EndsWith("...\n", StringComparison.Ordinal)) text = text[..^4];
        return text;
    }

    static YamlSequenceNode Threads(IReadOnlyList<ThreadDecl> threads)
    {
        var seq = new YamlSequenceNode();
        foreach (var t in threads) seq.Add(new YamlMappingNode { { "name", t.Name }, { "ops", Ops(t.Ops) } });
        return seq;
    }

    static YamlSequenceNode Ops(IReadOnlyList<OpCall> ops)
    {
        var seq = new YamlSequenceNode();
        foreach (var (spec, args) in ops)
        {
            var fields = new YamlMappingNode { Style = YamlDotNet.Core.Events.MappingStyle.Flow };
            foreach (var k in args.Keys) fields.Add(k, args.GetString(k));
            seq.Add(new YamlMappingNode { { spec.Name, fields } });
        }
        return seq;
    }

    static YamlNode Expect(Expectation e)
    {
        if (e.Rules.Count == 0) return new YamlScalarNode(e.Default.ToString());
        var m = new YamlMappingNode { { "default", e.Default.ToString() } };
        foreach (var (set, o) in e.Rules) m.Add(set.Text, o.ToString());
        return m;
    }

    static YamlSequenceNode Flow(IEnumerable<string> items)
    {
        var s = new YamlSequenceNode { Style = YamlDotNet.Core.Events.SequenceStyle.Flow };
        foreach (var i in items) s.Add(i);
        return s;
    }

    static string Hex(ulong v) => $"0x{v:x}";

    static string ProtName(Prot p) => p == Prot.None ? "none"
        : ((p & Prot.Read) != 0 ? "r" : "-") + ((p & Prot.Write) != 0 ? "w" : "-") + ((p & Prot.Exec) != 0 ? "x" : "-");

    static IEnumerable<string> FlagNames(VmFlags f)
    {
        foreach (var name in new[] { "mergeable", "hugepage", "nohugepage", "shared", "locked", "dontcopy", "hugetlb" })
            if ((f & ScenarioLoader.ParseVmFlag(name)!.Value) != 0) yield return name;
    }
}
