using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>
/// A parsed, validated scenario (docs/scenarios.md). Immutable: parse once with <see cref="ScenarioLoader"/>, then run
/// it any number of times; each run (<see cref="ScenarioRunner"/>) builds a fresh <see cref="Kernel"/> and world.
/// </summary>
public sealed class Scenario
{
    /// <summary>The name (<c>name:</c>); built-in scenarios are listed and looked up by it.</summary>
    public required string Name { get; init; }

    public string Description { get; init; } = "";

    /// <summary>Where it came from (a path, or <c>builtin/NAME.yaml</c>), for error messages.</summary>
    public required string File { get; init; }

    /// <summary>Era used when the command line names none (<c>era:</c>), or null for <see cref="EraTable.Default"/>.</summary>
    public KernelEra? DefaultEra { get; init; }

    public IReadOnlyList<ProcessDecl> Processes { get; init; } = [];

    /// <summary>Ops run on one context before any thread starts, with no interleaving.</summary>
    public IReadOnlyList<OpCall> Setup { get; init; } = [];

    public IReadOnlyList<ThreadDecl> Threads { get; init; } = [];

    /// <summary>Contexts whose ops loop until every thread is done (ksmd, kswapd...).</summary>
    public IReadOnlyList<ThreadDecl> Daemons { get; init; } = [];

    /// <summary>Cost model overrides in ns.</summary>
    public IReadOnlyList<(CostKind Kind, long Ns)> Costs { get; init; } = [];

    /// <summary>Invariants to check; null = all.</summary>
    public IReadOnlyList<string>? Checks { get; init; }

    public Expectation Expect { get; init; } = Expectation.Pass;

    /// <summary>Mutation switches always on for this scenario (e.g. a scenario that demonstrates a mutant).</summary>
    public IReadOnlyList<Mutation> Mutations { get; init; } = [];

    /// <summary>Step bound: a run that exceeds it is a liveness violation. Null = scheduler default.</summary>
    public long? MaxSteps { get; init; }

    /// <summary>
    /// <c>pct_depth</c>: the PCT bug depth this scenario's race needs (ordering constraints). Used by explore and history
    /// when the user gives no --depth; null = the default 3.
    /// </summary>
    public int? PctDepth { get; init; }

    /// <summary>The historical catalog entry this scenario reproduces (`catalog: a`, kernel-facts §5), or null.
    /// `mmusim history` runs exactly the scenarios that have one.</summary>
    public string? Catalog { get; init; }

    /// <summary>Model the primary CPUs' TLBs (`primary_tlb: true`, <see cref="Mm.CpuTlb"/>): each thread is a CPU whose
    /// user accesses go through its own TLB. Off by default.</summary>
    public bool PrimaryTlb { get; init; }

    /// <summary>CONFIG_PREEMPT_RT (`preempt_rt: true`, <see cref="Sched.Scheduler.PreemptRt"/>): spinlock_t and rwlock_t
    /// acquires may sleep. Off by default.</summary>
    public bool PreemptRt { get; init; }

    /// <summary>NUMA nodes of the machine (`numa_nodes: 2`, 1..<see cref="Mm.PhysMem.MaxNodes"/>); 1 by default. Memory
    /// is allocated on node 0 unless a VMA's policy (mbind) or a migration target says otherwise.</summary>
    public int NumaNodes { get; init; } = 1;

    /// <summary>The memory model of the threads phase (`memory: sc|lkmm`, docs/memory-model.md); sc by default.
    /// <c>--memory</c> overrides it (<see cref="WithMemory"/>).</summary>
    public Lkmm.MemoryModel Memory { get; private set; }

    /// <summary>A copy of this scenario explored under <paramref name="model"/> (mmusim explore/run/history --memory).</summary>
    public Scenario WithMemory(Lkmm.MemoryModel model)
    {
        var copy = (Scenario)MemberwiseClone();
        copy.Memory = model;
        return copy;
    }

    /// <summary>Loader: the declared `memory:`.</summary>
    internal Scenario InitMemory(Lkmm.MemoryModel model)
    {
        Memory = model;
        return this;
    }

    /// <summary>Counters `mmusim history` shows in each cell (`history_stats:`), summed over the schedules run.</summary>
    public IReadOnlyList<Stat> HistoryStats { get; init; } = [];

    /// <summary>The expected outcome in <paramref name="era"/>.</summary>
    public ExpectedOutcome ExpectedIn(KernelEra era) => Expect.For(era);

    /// <summary>The driver its <c>secondary</c> ops create (null: the reference driver); set with <see cref="WithSecondaryDriver"/>.</summary>
    public Secondary.DriverInfo? SecondaryDriver { get; private set; }

    /// <summary>A copy of this scenario whose <c>secondary</c> ops create <paramref name="driver"/> (mmusim explore --secondary).</summary>
    public Scenario WithSecondaryDriver(Secondary.DriverInfo driver)
    {
        var copy = (Scenario)MemberwiseClone();
        copy.SecondaryDriver = driver;
        return copy;
    }

    /// <summary>Does it create a user-driver device (a <c>secondary</c> op in setup or a thread that names no
    /// built-in <c>driver:</c>)?</summary>
    public bool UsesSecondaryDriver =>
        Setup.Any(IsUserDriverBind) || Threads.Any(t => t.Ops.Any(IsUserDriverBind));

    static bool IsUserDriverBind(OpCall o) => o.Spec.Name == "secondary" && !o.Args.Has("driver");

    /// <summary>The era to run in: the given name, else the scenario's, else the table default.</summary>
    public KernelEra EraOrDefault(KernelEra? era) => era ?? DefaultEra ?? EraTable.Default;

    public override string ToString() => Name;
}

/// <summary>A process (mm) that exists when the scenario starts.</summary>
public sealed record ProcessDecl(string Name, IReadOnlyList<VmaDecl> Vmas, int Line);

/// <summary>A VMA created before the scenario starts, with optional initial contents.</summary>
/// <param name="Contents">Per page: null = not populated, else the value written at setup.</param>
public sealed record VmaDecl(ulong Start, ulong Len, Prot Prot, VmFlags Flags, IReadOnlyList<ulong?> Contents, int Line)
{
    public ulong End => Start + Len;
}

/// <summary>A thread (or daemon) and the ops it runs in order.</summary>
public sealed record ThreadDecl(string Name, IReadOnlyList<OpCall> Ops, bool Daemon, int Line);

/// <summary>One validated op invocation: its spec and its arguments.</summary>
public sealed record OpCall(OpSpec Spec, OpArgs Args)
{
    public override string ToString() => $"{Spec.Name}@{Args.Line}";
}

/// <summary>What a run is expected to end with.</summary>
public enum ExpectKind : byte
{
    Pass,
    /// <summary>A violation; of <see cref="ExpectedOutcome.Invariant"/> if set, else of any invariant.</summary>
    Violation,
    /// <summary>The scenario does not apply to this era (history prints n/a; run does not execute).</summary>
    NotApplicable,
}

public readonly record struct ExpectedOutcome(ExpectKind Kind, string? Invariant = null)
{
    public static readonly ExpectedOutcome Pass = new(ExpectKind.Pass);
    public static readonly ExpectedOutcome NotApplicable = new(ExpectKind.NotApplicable);

    /// <summary>Does a run that ended with <paramref name="v"/> meet this expectation?</summary>
    public bool Matches(Violation? v) => Kind switch
    {
        ExpectKind.Pass => v == null,
        ExpectKind.Violation => v != null && (Invariant == null || v.Invariant == Invariant),
        _ => true,
    };

    public override string ToString() => Kind switch
    {
        ExpectKind.Pass => "pass",
        ExpectKind.NotApplicable => "n/a",
        _ => Invariant ?? "violation",
    };

    /// <summary>Parse <c>pass</c>, <c>n/a</c>, <c>violation</c> or an invariant name.</summary>
    public static bool TryParse(string s, out ExpectedOutcome o)
    {
        s = s.Trim();
        o = s switch
        {
            "pass" or "clean" => Pass,
            "n/a" or "na" => NotApplicable,
            "violation" => new ExpectedOutcome(ExpectKind.Violation),
            _ => ScenarioInvariants.IsKnown(s) ? new ExpectedOutcome(ExpectKind.Violation, s) : default,
        };
        return s is "pass" or "clean" or "n/a" or "na" or "violation" || ScenarioInvariants.IsKnown(s);
    }
}

/// <summary>
/// A set of eras written as a key of <c>expect:</c>: an era (<c>4.19</c>), an inclusive range (<c>3.6..4.12</c>),
/// from an era on (<c>4.13+</c>), before an era (<c>&lt;3.6</c>), up to one (<c>..4.12</c>), or a comma list of those.
/// Endpoints must be named eras (<c>mmusim eras</c>); ranges follow the era table's order, oldest first, so a release
/// candidate such as <c>4.13-rc1</c> comes before its release (<c>4.13+</c> excludes it, <c>&lt;4.13</c> includes it).
/// </summary>
public sealed class EraSet
{
    readonly (int Lo, int Hi)[] _parts; // inclusive positions in EraTable.All

    EraSet(string text, (int, int)[] parts)
    {
        Text = text;
        _parts = parts;
    }

    public string Text { get; }

    public bool Contains(KernelEra era)
    {
        int i = Position(era);
        foreach (var (lo, hi) in _parts)
            if (i >= lo && i <= hi) return true;
        return false;
    }

    /// <summary>Position of an era in the table; an era built outside it sorts with the last named era of its version.</summary>
    static int Position(KernelEra era)
    {
        var all = EraTable.All;
        for (int i = 0; i < all.Count; i++)
            if (ReferenceEquals(all[i], era) || all[i].Name == era.Name) return i;
        int p = -1;
        for (int i = 0; i < all.Count; i++)
            if (all[i].Version <= era.Version) p = i;
        return p;
    }

    /// <summary>Parse; on failure returns the offending era name in <paramref name="error"/>.</summary>
    public static EraSet? TryParse(string text, out string? error)
    {
        error = null;
        int last = EraTable.All.Count - 1;
        var parts = new List<(int, int)>();
        foreach (var raw in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            string p = raw;
            string? bad = null;
            int At(string name)
            {
                name = name.Trim();
                if (EraTable.TryGet(name, out var e)) return Position(e);
                bad ??= name;
                return 0;
            }
            (int, int) part;
            if (p.Contains(".."))
            {
                var ends = p.Split("..", 2);
                part = (ends[0].Trim().Length > 0 ? At(ends[0]) : 0, ends[1].Trim().Length > 0 ? At(ends[1]) : last);
            }
            else if (p.StartsWith(">=")) part = (At(p[2..]), last);
            else if (p.EndsWith('+')) part = (At(p[..^1]), last);
            else if (p.StartsWith("<=")) part = (0, At(p[2..]));
            else if (p.StartsWith('<')) part = (0, At(p[1..]) - 1);
            else
            {
                int i = At(p);
                part = (i, i);
            }
            if (bad != null) { error = bad; return null; }
            parts.Add(part);
        }
        if (parts.Count == 0) { error = text; return null; }
        return new EraSet(text, [.. parts]);
    }

    public override string ToString() => Text;
}

/// <summary>
/// The declared outcome per era: <c>expect: pass</c>, <c>expect: stale-translation</c>, or a map from era sets to
/// outcomes with an optional <c>default</c>. At most one era set may contain any named era (checked at load).
/// </summary>
public sealed class Expectation(ExpectedOutcome @default, IReadOnlyList<(EraSet Eras, ExpectedOutcome Outcome)> rules)
{
    public static readonly Expectation Pass = new(ExpectedOutcome.Pass, []);

    public ExpectedOutcome Default { get; } = @default;

    public IReadOnlyList<(EraSet Eras, ExpectedOutcome Outcome)> Rules { get; } = rules;

    public ExpectedOutcome For(KernelEra era)
    {
        foreach (var (set, o) in Rules)
            if (set.Contains(era)) return o;
        return Default;
    }

    public override string ToString() =>
        Rules.Count == 0 ? Default.ToString()
        : string.Join(", ", Rules.Select(r => $"{r.Eras}: {r.Outcome}")) + $", otherwise {Default}";
}

/// <summary>Invariant names a scenario may name in <c>checks:</c> and <c>expect:</c>.</summary>
public static class ScenarioInvariants
{
    /// <summary>An <c>expect-value</c> or <c>expect-calls</c> op saw something else.</summary>
    public const string UnexpectedValue = "unexpected-value";

    /// <summary>A <c>read</c>/<c>write</c> ended otherwise than its <c>expect</c> (default: no fatal fault).</summary>
    public const string UnexpectedFault = "unexpected-fault";

    /// <summary>A litmus test's <c>exists</c> clause held at the end of a run (<see cref="Lkmm.LitmusOps"/>).</summary>
    public const string LitmusExists = "litmus-exists";

    public static bool IsKnown(string name) => name == UnexpectedValue || name == UnexpectedFault || name == LitmusExists || Invariants.All.Contains(name);

    public static string KnownList => string.Join(", ", Invariants.All.Append(UnexpectedValue).Append(UnexpectedFault).Append(LitmusExists));
}
