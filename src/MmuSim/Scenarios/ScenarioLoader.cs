using System.Reflection;
using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace MmuSim.Scenarios;

/// <summary>
/// Parses and validates scenario YAML (docs/scenarios.md) into an immutable <see cref="Scenario"/>. Everything that
/// can be checked without running is checked here, and every problem is a <see cref="ScenarioException"/> naming the
/// file, the line and the field: malformed YAML, unknown or missing fields, unknown ops, bad numbers, unknown eras,
/// invariants or mutations, unaligned or out-of-range addresses, unknown processes, overlapping VMAs.
/// </summary>
public static class ScenarioLoader
{
    const string ResourcePrefix = "scenarios/";

    static readonly string[] TopKeys =
        ["name", "description", "era", "processes", "setup", "threads", "daemons", "costs", "checks", "expect", "mutations", "max_steps", "pct_depth", "catalog", "history_stats", "primary_tlb", "memory", "numa_nodes", "preempt_rt"];

    /// <summary>Load a scenario file.</summary>
    public static Scenario Load(string path, OpRegistry? ops = null)
    {
        return Parse(ReadText(path, "file"), path, ops);
    }

    /// <summary>
    /// Read a scenario or trace file, at most <see cref="ScenarioLimits.MaxFileBytes"/>; an unreadable or too large file is
    /// a <c>file:0: field: message</c> error.
    /// </summary>
    public static string ReadText(string path, string field)
    {
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            if (f.CanSeek && f.Length > ScenarioLimits.MaxFileBytes)
                throw new ScenarioException(path, 0, field, $"file of {f.Length} bytes is larger than the limit of {ScenarioLimits.MaxFileBytes}");
            using var r = new StreamReader(f);
            var buf = new char[ScenarioLimits.MaxFileBytes + 1];
            int n = r.ReadBlock(buf, 0, buf.Length);
            if (n > ScenarioLimits.MaxFileBytes)
                throw new ScenarioException(path, 0, field, $"file is larger than the limit of {ScenarioLimits.MaxFileBytes} bytes");
            return new string(buf, 0, n);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new ScenarioException(path, 0, field, e.Message);
        }
    }

    /// <summary>Names of the built-in scenarios, sorted.</summary>
    public static IReadOnlyList<string> BuiltInNames { get; } = typeof(ScenarioLoader).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".yaml", StringComparison.Ordinal))
        .Select(n => n[ResourcePrefix.Length..^".yaml".Length])
        .OrderBy(n => n, StringComparer.Ordinal)
        .ToArray();

    public static bool IsBuiltIn(string name) => BuiltInNames.Contains(name);

    /// <summary>The YAML text of a built-in scenario, or null.</summary>
    public static string? BuiltInText(string name)
    {
        using var s = typeof(ScenarioLoader).Assembly.GetManifestResourceStream(ResourcePrefix + name + ".yaml");
        if (s == null) return null;
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>Load a built-in scenario by name.</summary>
    public static Scenario LoadBuiltIn(string name, OpRegistry? ops = null)
    {
        var text = BuiltInText(name) ?? throw new ScenarioException("mmusim", 0, "scenario",
            $"no built-in scenario named '{name}' (see mmusim list)");
        return Parse(text, $"builtin/{name}.yaml", ops);
    }

    /// <summary>Parse scenario text; <paramref name="file"/> names it in error messages.</summary>
    public static Scenario Parse(string text, string file, OpRegistry? ops = null) =>
        new Parser(file, ops ?? OpRegistry.Default).Parse(text);

    sealed class Parser(string file, OpRegistry registry)
    {
        readonly ScenarioInfo _info = new(file);

        ScenarioException Err(YamlNode? node, string field, string msg) => new(file, Line(node), field, msg);

        static string OneLine(string s) => System.Text.RegularExpressions.Regex.Replace(s.Trim(), @"\s+", " ");

        /// <summary>
        /// Walk the YAML events (YamlDotNet's event parser is iterative) and reject nesting deeper than
        /// <see cref="ScenarioLimits.MaxNesting"/> before the recursive representation model would overflow the stack.
        /// </summary>
        void CheckNesting(string text)
        {
            var parser = new YamlDotNet.Core.Parser(new StringReader(text));
            int depth = 0;
            while (parser.MoveNext())
            {
                switch (parser.Current)
                {
                    case YamlDotNet.Core.Events.MappingStart or YamlDotNet.Core.Events.SequenceStart:
                        if (++depth > ScenarioLimits.MaxNesting)
                            throw new ScenarioException(file, (int)parser.Current.Start.Line, "yaml",
                                $"nesting deeper than {ScenarioLimits.MaxNesting} mappings and lists");
                        break;
                    case YamlDotNet.Core.Events.MappingEnd or YamlDotNet.Core.Events.SequenceEnd:
                        depth--;
                        break;
                    case YamlDotNet.Core.Events.Scalar sc when sc.Value.Length > ScenarioLimits.MaxValueLength:
                        throw new ScenarioException(file, (int)sc.Start.Line, "yaml",
                            $"a value of {sc.Value.Length} characters is longer than the limit of {ScenarioLimits.MaxValueLength}");
                }
            }
        }

        static int Line(YamlNode? n) => n == null ? 0 : (int)n.Start.Line;

        public Scenario Parse(string text)
        {
            if (text.Length > ScenarioLimits.MaxFileBytes)
                throw new ScenarioException(file, 1, "file", $"larger than the limit of {ScenarioLimits.MaxFileBytes} characters");
            var stream = new YamlStream();
            try
            {
                CheckNesting(text);
                stream.Load(new StringReader(text));
            }
            catch (ScenarioException) { throw; }
            catch (Exception e) when (e is not YamlException and not OutOfMemoryException)
            {
                // YamlDotNet reports some malformed inputs (e.g. an unclosed flow mapping) with other exception types.
                throw new ScenarioException(file, 1, "yaml", $"malformed YAML: {OneLine(e.Message)}");
            }
            catch (YamlException e)
            {
                var msg = e.InnerException?.Message ?? e.Message;
                int nl = msg.IndexOf('\n');
                if (nl >= 0) msg = msg[..nl];
                // YamlDotNet prefixes "(Line: a, Col: b, ...): "; the position is in our prefix already.
                int close = msg.IndexOf("): ", StringComparison.Ordinal);
                if (msg.StartsWith("(Line", StringComparison.Ordinal) && close > 0) msg = msg[(close + 3)..];
                msg = System.Text.RegularExpressions.Regex.Replace(msg.Trim(), @"\s+", " ");
                throw new ScenarioException(file, (int)e.Start.Line, "yaml", $"malformed YAML: {msg}");
            }
            if (stream.Documents.Count == 0) throw new ScenarioException(file, 1, "yaml", "empty file");
            if (stream.Documents.Count > 1) throw Err(stream.Documents[1].RootNode, "yaml", "more than one YAML document");
            if (stream.Documents[0].RootNode is not YamlMappingNode root)
                throw Err(stream.Documents[0].RootNode, "yaml", "the top level must be a mapping (name:, threads:, ...)");
            CheckKeys(root, "", TopKeys);

            string name = Str(Req(root, "name", ""), "name");
            string desc = Opt(root, "description") is { } d ? Str(d, "description") : "";
            KernelEra? era = null;
            if (Opt(root, "era") is { } eraNode) era = ParseEra(eraNode, "era");

            var processes = new List<ProcessDecl>();
            if (Opt(root, "processes") is { } pn)
                foreach (var (p, i) in Seq(pn, "processes").Select((p, i) => (p, i)))
                    processes.Add(ParseProcess(p, i));

            // Ops are parsed in two passes: first their fields (to learn fork children and mmap ranges), then checks.
            var calls = new List<OpCall>();
            var setup = Opt(root, "setup") is { } sn ? ParseOps(sn, "setup", null, calls) : [];
            var threads = new List<ThreadDecl>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            if (Opt(root, "threads") is { } tn)
                foreach (var (t, i) in Seq(tn, "threads").Select((t, i) => (t, i)))
                    threads.Add(ParseThread(t, $"threads[{i}]", daemon: false, calls, names));
            var daemons = new List<ThreadDecl>();
            if (Opt(root, "daemons") is { } dn)
                foreach (var (t, i) in Seq(dn, "daemons").Select((t, i) => (t, i)))
                    daemons.Add(ParseThread(t, $"daemons[{i}]", daemon: true, calls, names));
            if (threads.Count == 0 && setup.Count == 0)
                throw Err(root, "threads", "a scenario needs at least one thread (or setup ops)");
            if (threads.Count + daemons.Count + 1 > 64)
                throw Err(Opt(root, "threads"), "threads", "at most 63 threads and daemons");
            CheckOps(calls);

            var costs = new List<(CostKind, long)>();
            if (Opt(root, "costs") is { } cn)
                foreach (var (k, v) in Map(cn, "costs").Children)
                {
                    var key = Str(k, "costs");
                    var kind = ParseCostKind(key) ?? throw Err(k, $"costs.{key}",
                        $"unknown cost kind (known: {string.Join(", ", Enum.GetNames<CostKind>().Select(Kebab))})");
                    costs.Add((kind, (long)Bounded(v, $"costs.{key}", 0, ScenarioLimits.MaxCostNs)));
                }

            List<string>? checks = null;
            if (Opt(root, "checks") is { } chk)
            {
                checks = [];
                foreach (var (c, s) in ScalarList(chk, "checks"))
                {
                    if (s == "all") { checks = null; break; }
                    if (!ScenarioInvariants.IsKnown(s))
                        throw Err(c, "checks", $"unknown invariant '{s}' (known: {ScenarioInvariants.KnownList})");
                    checks.Add(s);
                }
            }

            var expect = Opt(root, "expect") is { } en ? ParseExpect(en) : Expectation.Pass;

            var mutations = new List<Mutation>();
            if (Opt(root, "mutations") is { } mn)
                foreach (var (m, s) in ScalarList(mn, "mutations"))
                {
                    if (!MmuSim.Mutations.TryParse(s, out var mut))
                        throw Err(m, "mutations", $"unknown mutation '{s}' (known: {MmuSim.Mutations.KnownList})");
                    mutations.Add(mut);
                }

            long? maxSteps = null;
            int? pctDepth = null;
            if (Opt(root, "pct_depth") is { } pd)
            {
                var v = Num(pd, "pct_depth");
                if (v < 1 || v > 8) throw Err(pd, "pct_depth", "must be between 1 and 8");
                pctDepth = (int)v;
            }
            if (Opt(root, "max_steps") is { } ms)
            {
                if (Num(ms, "max_steps") < 1) throw Err(ms, "max_steps", "must be at least 1");
                maxSteps = (long)Bounded(ms, "max_steps", 1, ScenarioLimits.MaxSteps);
            }

            bool primaryTlb = OptBool(root, "primary_tlb");
            bool preemptRt = OptBool(root, "preempt_rt");

            int numaNodes = Opt(root, "numa_nodes") is { } nn ? (int)Bounded(nn, "numa_nodes", 1, Mm.PhysMem.MaxNodes) : 1;

            var memory = Lkmm.MemoryModel.Sc;
            if (Opt(root, "memory") is { } mem && !Lkmm.MemoryModels.TryParse(Str(mem, "memory"), out memory))
                throw Err(mem, "memory", $"unknown memory model '{Str(mem, "memory")}' (known: {Lkmm.MemoryModels.KnownList})");

            string? catalog = Opt(root, "catalog") is { } cat ? Str(cat, "catalog") : null;
            var historyStats = new List<Stat>();
            if (Opt(root, "history_stats") is { } hs)
                foreach (var (h, st) in ScalarList(hs, "history_stats"))
                    historyStats.Add(Enum.TryParse<Stat>(st.Replace("_", ""), ignoreCase: true, out var stat) ? stat
                        : throw Err(h, "history_stats", $"unknown counter '{st}' (see Stats.cs)"));

            return new Scenario
            {
                Name = name,
                Catalog = catalog,
                HistoryStats = historyStats,
                Description = desc,
                File = file,
                DefaultEra = era,
                Processes = processes,
                Setup = setup,
                Threads = threads,
                Daemons = daemons,
                Costs = costs,
                Checks = checks,
                Expect = expect,
                Mutations = mutations,
                MaxSteps = maxSteps,
                PctDepth = pctDepth,
                PrimaryTlb = primaryTlb,
                PreemptRt = preemptRt,
                NumaNodes = numaNodes,
            }.InitMemory(memory);
        }

        /// <summary>An optional top-level boolean (false when absent).</summary>
        bool OptBool(YamlMappingNode root, string field) =>
            Opt(root, field) is not { } n ? false : Str(n, field).ToLowerInvariant() switch
            {
                "true" or "yes" => true,
                "false" or "no" => false,
                var b => throw Err(n, field, $"'{b}' is not a boolean (true or false)"),
            };

        // ------------------------------------------------------------ processes and VMAs

        ProcessDecl ParseProcess(YamlNode node, int index)
        {
            var m = Map(node, $"processes[{index}]");
            CheckKeys(m, $"processes[{index}].", ["name", "vmas"]);
            var name = Str(Req(m, "name", $"processes[{index}]."), $"processes[{index}].name");
            if (_info.IsProcess(name)) throw Err(m.Children[new YamlScalarNode("name")], $"processes[{index}].name", $"duplicate process '{name}'");
            _info.AddProcess(name);
            var vmas = new List<VmaDecl>();
            if (Opt(m, "vmas") is { } vn)
                foreach (var (v, i) in Seq(vn, $"processes[{name}].vmas").Select((v, i) => (v, i)))
                {
                    var vma = ParseVma(v, $"processes[{name}].vmas[{i}]");
                    foreach (var o in vmas)
                        if (vma.Start < o.End && o.Start < vma.End)
                            throw Err(v, $"processes[{name}].vmas[{i}]",
                                $"VMA [0x{vma.Start:x}, 0x{vma.End:x}) overlaps [0x{o.Start:x}, 0x{o.End:x}) declared at line {o.Line}");
                    vmas.Add(vma);
                    _info.AddRange(name, vma.Start, vma.End);
                }
            return new ProcessDecl(name, vmas, Line(node));
        }

        VmaDecl ParseVma(YamlNode node, string f)
        {
            var m = Map(node, f);
            CheckKeys(m, f + ".", ["start", "len", "prot", "flags", "contents"]);
            var startNode = Req(m, "start", f + ".");
            ulong start = Num(startNode, f + ".start");
            CheckAddress(startNode, f + ".start", start);
            var lenNode = Req(m, "len", f + ".");
            ulong len = Num(lenNode, f + ".len");
            if (len == 0 || (len & ~MmStruct.PageMask) != 0)
                throw Err(lenNode, f + ".len", $"0x{len:x} is not a positive multiple of the page size");
            if (start + len > 1UL << 47 || start + len < start)
                throw Err(lenNode, f + ".len", $"[0x{start:x}, 0x{start + len:x}) extends past the 47-bit user address space");
            Prot prot = Prot.ReadWrite;
            if (Opt(m, "prot") is { } pn)
                prot = ParseProt(Str(pn, f + ".prot"), allowWriteOnly: true) ?? throw Err(pn, f + ".prot", $"'{Str(pn, f)}' is not a protection (r, w, rw, rwx, none)");
            var flags = VmFlags.None;
            if (Opt(m, "flags") is { } fn)
                foreach (var (x, s) in ScalarList(fn, f + ".flags"))
                {
                    flags |= ParseVmFlag(s) ?? throw Err(x, f + ".flags",
                        $"unknown VMA flag '{s}' (known: mergeable, hugepage, nohugepage, shared, locked, dontcopy, hugetlb)");
                }
            if ((flags & VmFlags.Hugetlb) != 0 && !Hugetlb.HugetlbPages.Aligned(start, len))
                throw Err(lenNode, f + ".len", $"[0x{start:x}, 0x{start + len:x}) is not 2 MiB aligned, as hugetlb memory must be (EINVAL)");
            int pages = (int)Math.Min(len >> MmStruct.PageShift, int.MaxValue);
            IReadOnlyList<ulong?> contents = [];
            if (Opt(m, "contents") is { } cn)
            {
                contents = ParseContents(cn, f + ".contents", pages);
                if (contents.Count > 0 && (prot & Prot.Write) == 0)
                    throw Err(cn, f + ".contents", "initial contents need a writable VMA (mprotect it read-only in setup)");
            }
            return new VmaDecl(start, len, prot, flags, contents, Line(node));
        }

        List<ulong?> ParseContents(YamlNode node, string f, int pages)
        {
            var list = new List<ulong?>();
            switch (node)
            {
                case YamlScalarNode s:
                    ulong v = Num(s, f);
                    CheckContentPages(s, f, pages);
                    for (int i = 0; i < pages; i++) list.Add(v);
                    break;
                case YamlSequenceNode seq:
                    if (seq.Children.Count > pages)
                        throw Err(seq, f, $"{seq.Children.Count} values for a VMA of {pages} pages");
                    foreach (var c in seq.Children)
                    {
                        var t = Str(c, f);
                        list.Add(t is "_" or "~" or "" or "null" ? null : Num(c, f));
                    }
                    break;
                case YamlMappingNode m:
                    CheckKeys(m, f + ".", ["value", "distinct", "pages", "rest_distinct"]);
                    int n = pages;
                    if (Opt(m, "pages") is { } pn)
                    {
                        ulong want = Num(pn, f + ".pages");
                        if (want > (ulong)pages) throw Err(pn, f + ".pages", $"{want} pages in a VMA of {pages}");
                        n = (int)want;
                    }
                    CheckContentPages(m, f, n);
                    var valueNode = Opt(m, "value");
                    var distinctNode = Opt(m, "distinct");
                    if ((valueNode == null) == (distinctNode == null))
                        throw Err(m, f, "give exactly one of value: (every page) or distinct: (page i holds base + i)");
                    if (valueNode != null)
                    {
                        ulong val = Num(valueNode, f + ".value");
                        for (int i = 0; i < n; i++) list.Add(val);
                        if (Opt(m, "rest_distinct") is { } rest)
                        {
                            // { value: V, pages: M, rest_distinct: B }: pages M.. hold B + i (an experiment's merged fraction).
                            ulong rb = Num(rest, f + ".rest_distinct");
                            CheckContentPages(rest, f, pages);
                            for (int i = n; i < pages; i++) list.Add(rb + (ulong)i);
                        }
                    }
                    else if (Opt(m, "rest_distinct") is { } restNode)
                        throw Err(restNode, f + ".rest_distinct", "needs value: (the first pages: pages hold value, the rest base + i)");
                    else
                    {
                        ulong b = Num(distinctNode!, f + ".distinct");
                        for (int i = 0; i < n; i++) list.Add(b + (ulong)i);
                    }
                    break;
            }
            return list;
        }

        // ------------------------------------------------------------ threads and ops

        ThreadDecl ParseThread(YamlNode node, string f, bool daemon, List<OpCall> calls, HashSet<string> names)
        {
            var m = Map(node, f);
            CheckKeys(m, f + ".", ["name", "process", "ops"]);
            var nameNode = Req(m, "name", f + ".");
            var name = Str(nameNode, f + ".name");
            if (!names.Add(name)) throw Err(nameNode, f + ".name", $"duplicate thread name '{name}'");
            (string, int)? process = null;
            if (Opt(m, "process") is { } pn)
            {
                var p = Str(pn, f + ".process");
                if (!_info.IsProcess(p)) throw Err(pn, f + ".process", $"unknown process '{p}'");
                process = (p, Line(pn));
            }
            var ops = ParseOps(Req(m, "ops", f + "."), $"{(daemon ? "daemons" : "threads")}[{name}].ops", process, calls);
            if (ops.Count == 0) throw Err(m, f + ".ops", "no ops");
            return new ThreadDecl(name, ops, daemon, Line(node));
        }

        List<OpCall> ParseOps(YamlNode node, string f, (string Name, int Line)? process, List<OpCall> calls)
        {
            var list = new List<OpCall>();
            foreach (var item in Seq(node, f))
            {
                string op;
                YamlNode? argsNode = null;
                if (item is YamlScalarNode s) op = s.Value ?? "";
                else if (item is YamlMappingNode m && m.Children.Count == 1)
                {
                    var (k, v) = m.Children.First();
                    op = Str(k, f);
                    argsNode = v is YamlScalarNode vs && IsNull(vs) ? null : v;
                }
                else throw Err(item, f, "each op is `- name: {field: value, ...}` (one op per list item)");

                var values = new Dictionary<string, (string Value, int Line)>(StringComparer.Ordinal);
                if (argsNode != null)
                {
                    if (argsNode is not YamlMappingNode am)
                        throw Err(argsNode, op, "an op's fields are a mapping, e.g. `- write: {process: p, addr: 0x1000, value: 1}`");
                    foreach (var (k, v) in am.Children)
                    {
                        var key = Str(k, op);
                        string val = v switch
                        {
                            YamlScalarNode sv => sv.Value ?? "",
                            YamlSequenceNode sq => string.Join(",", sq.Children.Select(c => Str(c, $"{op}.{key}"))),
                            _ => throw Err(v, $"{op}.{key}", "expected a value or a list of values"),
                        };
                        values[key] = (val, Line(v));
                    }
                }
                if (!registry.TryGet(op, out var spec))
                    throw Err(item, "op", $"unknown op '{op}'{Suggest(op)}");
                if (process is { } p && !values.ContainsKey("process") &&
                    (spec.Required.Contains("process") || spec.Optional.Contains("process")))
                    values["process"] = (p.Name, p.Line);
                var args = new OpArgs(op, file, Line(item), values);
                registry.Validate(args);
                var call = new OpCall(spec, args);
                list.Add(call);
                calls.Add(call);
                if (args.Has("child") && args.Has("process")) _info.AddProcess(args.GetString("child"), args.GetString("process"));
                if (args.Has("as")) _info.AddName(args.GetString("as"));
                else if (spec.DefaultAs is { } defaultAs) _info.AddName(defaultAs);
                if (op == "mmap" && args.Has("process") && args.Has("addr") && args.Has("len") &&
                    OpArgs.TryParseULong(args.GetString("addr"), out var a) && OpArgs.TryParseULong(args.GetString("len"), out var l))
                    _info.AddRange(args.GetString("process"), a, a + l);
                if (op == "mremap" && args.Has("process") && args.Has("new_addr") && args.Has("len") &&
                    OpArgs.TryParseULong(args.GetString("new_addr"), out var na) && OpArgs.TryParseULong(args.GetString("len"), out var nl))
                    _info.AddRange(args.GetString("process"), na, na + nl);
            }
            return list;
        }

        string Suggest(string op)
        {
            if (op.Length > 64) return " (see docs/scenarios.md)";
            var near = registry.All.Select(o => o.Name)
                .Where(n => n.Contains(op, StringComparison.Ordinal) || op.Contains(n, StringComparison.Ordinal) || Distance(n, op) <= 2)
                .Take(3).ToArray();
            return near.Length > 0 ? $" (did you mean {string.Join(", ", near)}?)" : " (see docs/scenarios.md)";
        }

        static int Distance(string a, string b)
        {
            var d = new int[a.Length + 1, b.Length + 1];
            for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
            for (int j = 0; j <= b.Length; j++) d[0, j] = j;
            for (int i = 1; i <= a.Length; i++)
                for (int j = 1; j <= b.Length; j++)
                    d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            return d[a.Length, b.Length];
        }

        /// <summary>Field conventions shared by every op (docs/scenarios.md), then the op's own check.</summary>
        void CheckOps(List<OpCall> calls)
        {
            foreach (var (spec, a) in calls)
            {
                foreach (var key in new[] { "process", "parent" })
                    if (a.Has(key) && !_info.IsProcess(a.GetString(key)))
                        throw a.Error(key, $"unknown process '{a.GetString(key)}' (declared: {string.Join(", ", _info.ProcessNames)})");
                if (a.Has("addr")) a.GetAddress("addr");
                if (a.Has("len"))
                {
                    ulong len = a.GetULong("len");
                    if (len == 0 || (len & ~MmStruct.PageMask) != 0) throw a.Error("len", $"0x{len:x} is not a positive multiple of the page size");
                    if (a.Has("addr") && a.GetAddress("addr") + len > 1UL << 47)
                        throw a.Error("len", "the range extends past the 47-bit user address space");
                }
                spec.Check?.Invoke(a, _info);
            }
        }

        // ------------------------------------------------------------ expect

        Expectation ParseExpect(YamlNode node)
        {
            if (node is YamlScalarNode s) return new Expectation(Outcome(s, "expect"), []);
            var m = Map(node, "expect");
            var def = ExpectedOutcome.Pass;
            var rules = new List<(EraSet, ExpectedOutcome)>();
            foreach (var (k, v) in m.Children)
            {
                var key = Str(k, "expect");
                if (key == "default") { def = Outcome(v, "expect.default"); continue; }
                var set = EraSet.TryParse(key, out var bad) ?? throw Err(k, "expect",
                    $"unknown era '{bad}' in era set '{key}' (known: {EraTable.KnownList}; forms: 4.19, 3.6..4.12, 4.13+, <3.6)");
                var o = Outcome(v, $"expect.{key}");
                foreach (var era in EraTable.All)
                    foreach (var (other, _) in rules)
                        if (set.Contains(era) && other.Contains(era))
                            throw Err(k, "expect", $"era sets '{other}' and '{key}' both contain {era.Name}");
                rules.Add((set, o));
            }
            return new Expectation(def, rules);
        }

        ExpectedOutcome Outcome(YamlNode n, string f)
        {
            var s = Str(n, f);
            return ExpectedOutcome.TryParse(s, out var o) ? o
                : throw Err(n, f, $"'{s}' is not an outcome (pass, n/a, violation or an invariant: {ScenarioInvariants.KnownList})");
        }

        // ------------------------------------------------------------ scalars

        KernelEra ParseEra(YamlNode n, string f)
        {
            var s = Str(n, f);
            return EraTable.TryGet(s, out var e) ? e : throw Err(n, f, $"unknown era '{s}' (known: {EraTable.KnownList})");
        }

        void CheckAddress(YamlNode n, string f, ulong a)
        {
            if ((a & ~MmStruct.PageMask) != 0) throw Err(n, f, $"0x{a:x} is not page aligned");
            if (a >= 1UL << 47) throw Err(n, f, $"0x{a:x} is outside the 47-bit user address space");
        }

        void CheckContentPages(YamlNode n, string f, int pages)
        {
            if (pages > ScenarioLimits.MaxContentPages)
                throw Err(n, f, $"contents for {pages} pages; at most {ScenarioLimits.MaxContentPages} pages may be filled (give pages:)");
        }

        /// <summary>A number in [<paramref name="min"/>, <paramref name="max"/>].</summary>
        ulong Bounded(YamlNode n, string f, ulong min, ulong max)
        {
            ulong v = Num(n, f);
            return v >= min && v <= max ? v : throw Err(n, f, $"{v} is out of range (allowed: {min}..{max})");
        }

        ulong Num(YamlNode n, string f)
        {
            var s = Str(n, f);
            return OpArgs.TryParseULong(s, out var v) ? v : throw Err(n, f, $"'{s}' is not a number");
        }

        static bool IsNull(YamlScalarNode s) =>
            s.Style == YamlDotNet.Core.ScalarStyle.Plain && (s.Value is null or "" or "~" or "null");

        string Str(YamlNode n, string f) => n is YamlScalarNode s
            ? s.Value ?? ""
            : throw Err(n, f, "expected a single value, found a " + (n is YamlMappingNode ? "mapping" : "list"));

        YamlMappingNode Map(YamlNode n, string f) => n as YamlMappingNode ?? throw Err(n, f, "expected a mapping (key: value)");

        IEnumerable<YamlNode> Seq(YamlNode n, string f) => n switch
        {
            YamlSequenceNode s => s.Children,
            YamlScalarNode s when IsNull(s) => [],
            _ => throw Err(n, f, "expected a list (- item)"),
        };

        /// <summary>A list of scalars, or one scalar holding a comma-separated list: (node for the line, value).</summary>
        IEnumerable<(YamlNode Node, string Value)> ScalarList(YamlNode n, string f)
        {
            if (n is YamlScalarNode s)
            {
                if (IsNull(s)) return [];
                return (s.Value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(x => ((YamlNode)s, x)).ToList();
            }
            return Seq(n, f).Select(c => (c, Str(c, f))).ToList();
        }

        YamlNode? Opt(YamlMappingNode m, string key) =>
            m.Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : null;

        YamlNode Req(YamlMappingNode m, string key, string prefix) =>
            Opt(m, key) ?? throw Err(m, prefix + key, "required field is missing");

        void CheckKeys(YamlMappingNode m, string prefix, string[] allowed)
        {
            foreach (var k in m.Children.Keys)
            {
                var key = Str(k, prefix.TrimEnd('.'));
                if (Array.IndexOf(allowed, key) < 0)
                    throw Err(k, prefix + key, $"unknown field (allowed: {string.Join(", ", allowed)})");
            }
        }
    }

    // ---------------------------------------------------------------- shared parsers

    /// <summary>r, rw, rwx, r-x, none (or ---). Write or exec without read is not a protection the model has (null),
    /// except write-only (<c>w</c>) where <paramref name="allowWriteOnly"/>: a VMA created PROT_WRITE (mmap), which the
    /// fault path models as x86 does (reads allowed by access_error, refused by GUP's check_vma_flags).</summary>
    public static Prot? ParseProt(string s, bool allowWriteOnly = false)
    {
        s = s.Trim().ToLowerInvariant();
        if (s is "none" or "---" or "-") return Prot.None;
        var p = Prot.None;
        foreach (var c in s)
            switch (c)
            {
                case 'r': p |= Prot.Read; break;
                case 'w': p |= Prot.Write; break;
                case 'x': p |= Prot.Exec; break;
                case '-': break;
                default: return null;
            }
        return p == Prot.None || (p & Prot.Read) != 0 || (allowWriteOnly && p == Prot.Write) ? p : null;
    }

    public static VmFlags? ParseVmFlag(string s) => s.Trim().ToLowerInvariant() switch
    {
        "mergeable" => VmFlags.Mergeable,
        "hugepage" => VmFlags.HugePage,
        "nohugepage" => VmFlags.NoHugePage,
        "shared" => VmFlags.Shared,
        "locked" => VmFlags.Locked,
        "dontcopy" => VmFlags.DontCopy,
        "hugetlb" => VmFlags.Hugetlb,
        _ => null,
    };

    /// <summary>A <see cref="CostKind"/> by name in any of <c>tlb-flush-remote</c>, <c>tlb_flush_remote</c>, <c>TlbFlushRemote</c>.</summary>
    public static CostKind? ParseCostKind(string s)
    {
        var n = s.Replace("-", "").Replace("_", "");
        foreach (var k in Enum.GetValues<CostKind>())
            if (string.Equals(k.ToString(), n, StringComparison.OrdinalIgnoreCase)) return k;
        return null;
    }

    /// <summary><c>TlbFlushRemote</c> → <c>tlb-flush-remote</c>.</summary>
    public static string Kebab(string pascal)
    {
        var sb = new System.Text.StringBuilder(pascal.Length + 4);
        for (int i = 0; i < pascal.Length; i++)
        {
            if (char.IsUpper(pascal[i]) && i > 0) sb.Append('-');
            sb.Append(char.ToLowerInvariant(pascal[i]));
        }
        return sb.ToString();
    }
}
