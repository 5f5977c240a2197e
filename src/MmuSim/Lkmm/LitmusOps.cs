using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Lkmm;

/// <summary>
/// Litmus tests as scenarios (docs/memory-model.md): <c>litmus.exists</c> in setup declares the processes and the
/// <c>exists</c> clause; each thread runs one <c>litmus.thread</c>, a process body. When the last process finishes, a
/// true clause is the violation <c>litmus-exists</c>: "Result: Sometimes" is <c>expect: litmus-exists</c>,
/// "Result: Never" is <c>expect: pass</c> under an exhaustive search.
/// </summary>
public static class LitmusOps
{
    const string StateKey = "litmus";

    /// <summary>Process bodies parsed once per scenario op, not per run.</summary>
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<OpArgs, IReadOnlyList<LitmusStmt>> Parsed = new();

    /// <summary>One run's litmus state: the variables, each process's registers, how many processes finished.</summary>
    sealed class LitmusState(int procs, IReadOnlyList<LitmusTerm> exists, string existsText)
    {
        public readonly int Procs = procs;
        public readonly IReadOnlyList<LitmusTerm> Exists = exists;
        public readonly string ExistsText = existsText;
        public readonly Dictionary<string, WeakLoc> Locations = [];
        public readonly Dictionary<string, ulong>?[] Registers = new Dictionary<string, ulong>?[procs];
        public int Finished;

        public WeakLoc Loc(WeakMemory m, string name) =>
            Locations.TryGetValue(name, out var l) ? l : Locations[name] = m.NewLocation(name);
    }

    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("litmus.exists", "a litmus test (setup): procs processes (litmus.thread proc: 0..procs-1); when all finished, " +
            "cond (P:rN=v or x=v terms joined by /\\) holding is the violation litmus-exists", ["procs", "cond"], [], Exists)
        {
            Check = (a, _) =>
            {
                int procs = (int)a.GetBounded("procs", 1, 8);
                var terms = LitmusProgram.ParseExists(a.GetString("cond"), out var err) ?? throw a.Error("cond", err);
                foreach (var t in terms)
                    if (t.IsRegister && t.Proc >= procs) throw a.Error("cond", $"'{t}' names process {t.Proc} of a {procs}-process test");
            },
        });
        r.Register(new OpSpec("litmus.thread", "run process proc of the litmus test: code is its body, statements separated by ';' " +
            "(READ_ONCE, WRITE_ONCE, smp_load_acquire, smp_store_release, rcu_dereference, rcu_assign_pointer, smp_mb, smp_rmb, smp_wmb, if (rN))",
            ["proc", "code"], [], Thread)
        {
            Check = (a, _) =>
            {
                a.GetBounded("proc", 0, 7);
                if (LitmusProgram.Parse(a.GetString("code"), out var err) == null) throw a.Error("code", err);
            },
        });
    }

    static ValueTask Exists(ScenarioWorld w, OpArgs a)
    {
        int procs = (int)a.GetBounded("procs", 1, 8);
        string text = a.GetString("cond");
        var terms = LitmusProgram.ParseExists(text, out var err) ?? throw a.Error("cond", err);
        foreach (var t in terms)
            if (t.IsRegister && t.Proc >= procs) throw a.Error("cond", $"'{t}' names process {t.Proc} of {procs}");
        if (!w.Objects.TryAdd(StateKey, new LitmusState(procs, terms, text))) throw a.Error("cond", "a second litmus.exists");
        return default;
    }

    /// <summary>
    /// One litmus process: statements in program order, except that in lkmm a po-later independent WRITE_ONCE may be
    /// performed first (<see cref="LitmusProgram.MayHoist"/>), a choice made through the strategy. Every statement is
    /// one step after a scheduling point.
    /// </summary>
    static async ValueTask Thread(ScenarioWorld w, OpArgs a)
    {
        var k = w.K;
        if (!w.Objects.TryGetValue(StateKey, out var o) || o is not LitmusState st)
            throw a.Error("proc", "litmus.thread without a litmus.exists in setup");
        int proc = (int)a.GetBounded("proc", 0, 7);
        if (proc >= st.Procs) throw a.Error("proc", $"process {proc} of a {st.Procs}-process test");
        if (st.Registers[proc] != null) throw a.Error("proc", $"process {proc} runs twice");
        var code = Parsed.GetValue(a, args => LitmusProgram.Parse(args.GetString("code"), out var err) ?? throw args.Error("code", err));
        var regs = st.Registers[proc] = [];
        using var _ = k.S.Current.Enter($"P{proc}");
        var done = new bool[code.Count];
        var options = new int[code.Count];
        for (int first = 0; first < code.Count;)
        {
            await k.S.Point(PointKind.Counter, (ulong)first);
            int n = 0;
            options[n++] = first;
            if (k.Weak.IsWeak)
                for (int j = first + 1; j < code.Count; j++)
                    if (!done[j] && LitmusProgram.MayHoist(code, done, j)) options[n++] = j;
            int pick = options[k.S.ChooseInt(n)];
            Execute(k.Weak, st, regs, code[pick]);
            done[pick] = true;
            while (first < code.Count && done[first]) first++;
        }
        if (++st.Finished == st.Procs && Holds(k.Weak, st, out var shown))
            k.S.Fail(ScenarioInvariants.LitmusExists, $"exists ({st.ExistsText}) holds: {shown}");
    }

    static void Execute(WeakMemory m, LitmusState st, Dictionary<string, ulong> regs, LitmusStmt s)
    {
        if (s.Guard != null && regs.GetValueOrDefault(s.Guard) == 0) return;
        switch (s.Kind)
        {
            case LitmusKind.Load:
                regs[s.Register!] = m.Load(st.Loc(m, s.Location!), s.Order);
                break;
            case LitmusKind.Store:
                ulong v = s.ValueRegister != null ? regs.GetValueOrDefault(s.ValueRegister) : s.Value;
                m.Store(st.Loc(m, s.Location!), v, s.Order);
                break;
            case LitmusKind.Fence:
                m.Fence(s.Fence);
                break;
        }
    }

    static bool Holds(WeakMemory m, LitmusState st, out string shown)
    {
        var parts = new List<string>();
        foreach (var t in st.Exists)
        {
            ulong got = t.IsRegister ? st.Registers[t.Proc]?.GetValueOrDefault(t.Name) ?? 0
                : st.Locations.TryGetValue(t.Name, out var l) ? m.Latest(l) : 0;
            parts.Add(t.IsRegister ? $"{t.Proc}:{t.Name}={got}" : $"{t.Name}={got}");
            if (got != t.Value) { shown = ""; return false; }
        }
        shown = string.Join(" ", parts);
        return true;
    }
}
