using System.Collections;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// A 128-bit digest of the whole state of a run at a scheduling point, for the state cache of the exhaustive search
/// (<see cref="DfsStrategy"/> with <c>stateCache</c>): the model (page tables, frames, SPTEs, locks, wait queues,
/// counters, the checker's state, the simulated clock) <em>and</em> every context's position, i.e. the chain of its
/// suspended async state machines with their hoisted locals.
/// </summary>
/// <remarks>
/// <para>How: a canonical walk of the object graph reachable from the scheduler (its contexts' bodies and
/// continuations, the after-step hook that holds the checker). Objects are numbered in first-visit order (breadth
/// first, fields in declaration order), so two states whose reachable graphs are isomorphic, field for field, give the
/// same stream and the same digest, whatever the identities of their objects; different streams give different digests
/// except for a 128-bit collision. A suspended async method is its compiler-generated state machine (the state number,
/// <c>this</c>, parameters, hoisted locals and the awaiter it is suspended on); its caller is reached through the task's
/// continuation, so a context's whole call chain is part of the state. Collections of System.Collections.Generic are
/// walked by enumeration (their buckets hold identity hash codes that differ between runs).</para>
/// <para>What is left out, and why that is sound: the exploration's own bookkeeping (the strategy, the decision log,
/// step counts, step sinks, function hooks, the trace, <see cref="Stats"/>): the model's behaviour never reads them.
/// Statistics are read by one op, <c>vm.expect-stats</c>: when a thread's op list still holds one, the statistics are
/// hashed too. Everything else is hashed;
/// a type the walk cannot see into (a pointer field, a multi-dimensional array) throws NotSupportedException, which
/// ends the exploration as a model error rather than letting it guess.</para>
/// <para>Caveats, written down: (1) the digest is a hash: a collision (probability about n²/2¹²⁹ for n states) would
/// prune a state wrongly; (2) equal digests mean equal graphs up to the left-out fields and up to the padding bytes of
/// unmanaged structs (different padding only loses a merge); (3) behaviour must depend on the graph, never on object
/// identity (the scheduler's rule: no hashing of object identities); a Dictionary keyed by a reference type is walked in
/// its enumeration order, which is part of the state.</para>
/// </remarks>
public sealed class StateDigest
{
    readonly Dictionary<object, int> _ids = new(ReferenceEqualityComparer.Instance);
    readonly Queue<object> _work = new();
    ulong _a, _b;
    Scheduler _s = null!;
    bool _clockRead, _statsRead;
    Stats? _stats;
    /// <summary>Digest of everything reachable from <paramref name="s"/> that the model's behaviour depends on.</summary>
    public UInt128 Compute(Scheduler s)
    {
        _ids.Clear();
        _work.Clear();
        _a = 0x9E3779B97F4A7C15UL;
        _b = 0xC2B2AE3D27D4EB4FUL;
        _s = s;
        _clockRead = _statsRead = false;
        _stats = null;
        Ref(s);
        while (_work.Count > 0) Walk(_work.Dequeue());
        // Statistics are bookkeeping, except for a scenario that asserts them (vm.expect-stats reads KVM's binary
        // stats): then they are state too.
        if (_statsRead && _stats != null) Fields(_stats, StatsInfo);
        // Time: only differences of times decide anything (a sleeper wakes when the clock passes its wake time), so the
        // clock is hashed as each sleeper's remaining time, unless the state holds a type that stores absolute times
        // (ClockReaders: KSM's chain prune time), in which case the absolute clock is part of the state.
        foreach (var c in s.Contexts) Emit(c.State == ContextState.Sleeping ? (ulong)(c.WakeAtNs - s.ClockNs) : 0);
        if (_clockRead) Emit((ulong)s.ClockNs);
        return new UInt128(Fin(_a), Fin(_b ^ (ulong)_ids.Count));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    void Emit(ulong v)
    {
        _a = (_a ^ v) * 0x100000001B3UL;
        _a ^= _a >> 29;
        _b = (_b + v) * 0xFF51AFD7ED558CCDUL;
        _b ^= _b >> 32;
    }

    static ulong Fin(ulong h)
    {
        h ^= h >> 33; h *= 0xFF51AFD7ED558CCDUL;
        h ^= h >> 33; h *= 0xC4CEB9FE1A85EC53UL;
        return h ^ (h >> 33);
    }

    /// <summary>A reference: its number if seen, else a new number and its type, and it is queued for its fields.</summary>
    void Ref(object? o)
    {
        if (o == null) { Emit(0); return; }
        var t = o.GetType();
        if (t == typeof(string)) { EmitString((string)o); return; }
        if (o is Type ty) { Emit(TypeToken(ty)); return; }
        if (o is MemberInfo mi) { Emit(TypeToken(mi.DeclaringType!) ^ (ulong)mi.MetadataToken); return; }
        var info = TypeInfoOf(t);
        if (info.Skip)
        {
            if (o is Stats st) _stats = st;
            else if (o is Scenarios.OpCall { Spec.Name: "vm.expect-stats" }) _statsRead = true;
            Emit(info.IsConstant ? ConstantId(o) : 1);
            return;
        }
        if (info.IsValueLike) { Emit(info.Token); Value(o, info); return; }
        if (_ids.TryGetValue(o, out int id)) { Emit(2); Emit((ulong)id); return; }
        _ids.Add(o, _ids.Count + 1);
        if (info.ReadsClock) _clockRead = true;
        Emit(info.Token);
        _work.Enqueue(o);
    }

    void EmitString(string s)
    {
        Emit(3);
        Emit((ulong)s.Length);
        foreach (var ch in s) Emit(ch);
    }

    void Walk(object o)
    {
        var t = o.GetType();
        var info = TypeInfoOf(t);
        if (o is Delegate d)
        {
            Emit(TypeToken(d.Method.DeclaringType!) ^ (ulong)d.Method.MetadataToken);
            Ref(d.Target);
            if (d is MulticastDelegate md && md.GetInvocationList() is { Length: > 1 } list)
                foreach (var x in list) Ref(x.Target);
            return;
        }
        if (o is Array arr) { WalkArray(arr, info); return; }
        if (info.Enumerate)
        {
            int n = 0;
            if (info.Unordered)
            {
                // A HashSet is a membership set in the model (never iterated where order matters): its elements are
                // walked sorted by a pre-hash, so that insertion and removal history does not tell equal sets apart.
                var items = new List<(ulong Key, object? Item)>();
                foreach (var x in (IEnumerable)o) items.Add((PreHash(x, 2), x));
                items.Sort((p, q) => p.Key.CompareTo(q.Key));
                foreach (var (_, x) in items) { Elem(x); n++; }
            }
            else
                foreach (var x in (IEnumerable)o) { Elem(x); n++; }
            Emit((ulong)n);
            return;
        }
        Fields(o, info);
    }

    /// <summary>An element of a walked collection: boxed value types are values, references are references.</summary>
    void Elem(object? x)
    {
        if (x == null) { Emit(0); return; }
        var info = TypeInfoOf(x.GetType());
        if (x.GetType().IsValueType) { Emit(info.Token); Value(x, info); }
        else Ref(x);
    }

    /// <summary>An order key for a set element: values and strings by content, references by type and, if already
    /// numbered, number.</summary>
    ulong PreHash(object? x, int depth)
    {
        if (x == null) return 0;
        var t = x.GetType();
        if (x is string str) return (ulong)str.Length * 31 + (str.Length > 0 ? str[0] : 0u);
        var info = TypeInfoOf(t);
        if (info.Primitive)
            return x is Enum ? Convert.ToUInt64(x, System.Globalization.CultureInfo.InvariantCulture) : Convert.ToUInt64(x is bool b ? (b ? 1 : 0) : x, System.Globalization.CultureInfo.InvariantCulture);
        if (!t.IsValueType) return info.Token ^ (_ids.TryGetValue(x, out int id) ? (ulong)id * 0x9E3779B97F4A7C15UL : 0);
        if (depth == 0) return info.Token;
        ulong h = info.Token;
        foreach (var f in info.Fields) h = (h ^ PreHash(f.GetValue(x), depth - 1)) * 0x100000001B3UL;
        return h;
    }

    void WalkArray(Array arr, TypeInfo info)
    {
        Emit((ulong)arr.Length);
        if (info.ElementBlittable)
        {
            var bytes = MemoryMarshal.CreateReadOnlySpan(ref MemoryMarshal.GetArrayDataReference(arr), checked(arr.Length * info.ElementSize));
            var words = MemoryMarshal.Cast<byte, ulong>(bytes);
            foreach (var w in words) Emit(w);
            for (int i = words.Length * 8; i < bytes.Length; i++) Emit(bytes[i]);
            return;
        }
        if (arr.Rank != 1) throw new NotSupportedException($"state digest: multi-dimensional array {arr.GetType()}");
        foreach (var x in arr) Elem(x);
    }

    void Value(object boxed, TypeInfo info)
    {
        if (info.Primitive) { EmitPrimitive(boxed); return; }
        Fields(boxed, info);
    }

    void EmitPrimitive(object v)
    {
        switch (v)
        {
            case bool b: Emit(b ? 1UL : 0UL); break;
            case byte x: Emit(x); break;
            case sbyte x: Emit((ulong)x); break;
            case short x: Emit((ulong)x); break;
            case ushort x: Emit(x); break;
            case char x: Emit(x); break;
            case int x: Emit((ulong)x); break;
            case uint x: Emit(x); break;
            case long x: Emit((ulong)x); break;
            case ulong x: Emit(x); break;
            case double x: Emit((ulong)BitConverter.DoubleToInt64Bits(x)); break;
            case float x: Emit((ulong)BitConverter.SingleToInt32Bits(x)); break;
            case nint x: Emit((ulong)x); break;
            case nuint x: Emit(x); break;
            case decimal x: foreach (var p in decimal.GetBits(x)) Emit((ulong)p); break;
            case Enum e: Emit(Convert.ToUInt64(e, System.Globalization.CultureInfo.InvariantCulture)); break;
            default: throw new NotSupportedException($"state digest: primitive {v.GetType()}");
        }
    }

    void Fields(object o, TypeInfo info)
    {
        foreach (var f in info.Fields)
        {
            if (f.Name.StartsWith("<stepsMark>", StringComparison.Ordinal)) { Emit((ulong)(_s.Steps - (long)f.GetValue(o)!)); continue; }
            if (f.Name.StartsWith("<clockMark>", StringComparison.Ordinal)) { Emit((ulong)(_s.ClockNs - (long)f.GetValue(o)!)); continue; }
            var v = f.GetValue(o);
            if (v == null) { Emit(0); continue; }
            var ft = f.FieldType;
            if (ft.IsValueType)
            {
                var vi = TypeInfoOf(v.GetType());
                if (vi.Skip) { Emit(1); continue; }
                Value(v, vi);
            }
            else Ref(v);
        }
    }

    // ------------------------------------------------------------------ per-type tables

    sealed class TypeInfo
    {
        public ulong Token;
        public bool ReadsClock, Unordered, IsConstant;
        public bool Skip, Primitive, IsValueLike, Enumerate, ElementBlittable;
        public int ElementSize;
        public FieldInfo[] Fields = [];
    }

    static readonly Dictionary<Type, TypeInfo> Infos = [];
    static readonly Lock InfosLock = new();

    static readonly ConditionalWeakTable<object, object> ConstantIds = new();
    static long _constants;

    /// <summary>A constant object's number: the same object gets the same number in every run of the process.</summary>
    static ulong ConstantId(object o) =>
        0xC0_0000_0000UL + (ulong)(long)ConstantIds.GetValue(o, _ => Interlocked.Increment(ref _constants));

    static ulong TypeToken(Type t)
    {
        ulong h = 0xcbf29ce484222325UL;
        foreach (var ch in t.FullName ?? t.Name) h = (h ^ ch) * 0x100000001b3UL;
        return h;
    }

    static TypeInfo TypeInfoOf(Type t)
    {
        lock (InfosLock)
        {
            if (Infos.TryGetValue(t, out var i)) return i;
            i = Build(t);
            Infos[t] = i;
            return i;
        }
    }

    /// <summary><see cref="Stats"/>' fields, for walking it when a scenario asserts statistics (it is left out otherwise).</summary>
    static readonly TypeInfo StatsInfo = new()
    {
        Token = TypeToken(typeof(Stats)),
        Fields = typeof(Stats).GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic),
    };

    /// <summary>Field names left out of the state, by declaring type: bookkeeping the model never reads.</summary>
    static readonly (Type Type, string Field)[] LeftOut =
    [
        (typeof(Scheduler), "_strategy"),
        (typeof(Scheduler), "_observer"),
        (typeof(Scheduler), "_stepSink"),
        (typeof(Scheduler), "_functionHook"),
        (typeof(Scheduler), "<Decisions>k__BackingField"),
        (typeof(Scheduler), "<Steps>k__BackingField"),
        (typeof(Scheduler), "_slowAtStep"),
        (typeof(Scheduler), "_runnableBuf"),
        (typeof(Scheduler), "_pendingNext"),
        (typeof(Scheduler), "_current"),
        (typeof(Scheduler), "_parkedCur"),
        (typeof(Scheduler), "_parkedKind"),
        (typeof(Scheduler), "<ClockNs>k__BackingField"), // emitted relative, see Compute
        (typeof(Scheduler), "_nextWakeNs"),
        (typeof(KContext), "WakeAtNs"),
        (typeof(Notifier.SecondaryTranslation), "<Where>k__BackingField"), // a label for violation messages only
        (typeof(KContext), "Steps"),
        (typeof(KContext), "BusyNs"),
        (typeof(KContext), "Hook"),
        (typeof(KContext), "Pending"),
        (typeof(Mm.LruGen), "_birthNs"), // absolute times read only into lru_gen_seq_show's age column, which no op decides on
    ];

    /// <summary>Model types that store or compare absolute simulated times (grep ClockNs outside Sched/).</summary>
    static readonly Type[] ClockReaders = [typeof(Ksm.Ksmd)];

    static bool IsLeftOutType(Type t) =>
        typeof(IStrategy).IsAssignableFrom(t) || typeof(IStepSink).IsAssignableFrom(t) || typeof(IFunctionHook).IsAssignableFrom(t)
        || typeof(IStepObserver).IsAssignableFrom(t) || t == typeof(DecisionLog) || t == typeof(Stats)
        || t == typeof(Trace.Tracer) || t == typeof(ExecutionContext) || typeof(SynchronizationContext).IsAssignableFrom(t)
        || typeof(TaskScheduler).IsAssignableFrom(t) || t == typeof(CostModel);

    /// <summary>Configuration shared, unchanged, by every run of an exploration (the parsed scenario, the era table):
    /// hashed by type only. The loader builds them once and parallel workers share them, so they are never written.</summary>
    static readonly Type[] Constant =
    [
        typeof(Scenarios.Scenario), typeof(Scenarios.ProcessDecl), typeof(Scenarios.VmaDecl), typeof(Scenarios.ThreadDecl),
        typeof(Scenarios.OpCall), typeof(Scenarios.OpSpec), typeof(Scenarios.OpArgs), typeof(Scenarios.Expectation),
        typeof(Scenarios.EraSet), typeof(Eras.KernelEra),
    ];

    static TypeInfo Build(Type t)
    {
        var info = new TypeInfo { Token = TypeToken(t), ReadsClock = Array.IndexOf(ClockReaders, t) >= 0 };
        if (IsLeftOutType(t)) { info.Skip = true; return info; }
        if (Array.IndexOf(Constant, t) >= 0) { info.Skip = info.IsConstant = true; return info; }
        if (t.IsPrimitive || t.IsEnum || t == typeof(decimal))
        {
            info.Primitive = info.IsValueLike = true;
            return info;
        }
        if (t.IsPointer) throw new NotSupportedException($"state digest: {t}");
        if (t.IsArray)
        {
            var et = t.GetElementType()!;
            if (et.IsValueType && !(bool)typeof(RuntimeHelpers).GetMethod(nameof(RuntimeHelpers.IsReferenceOrContainsReferences))!
                    .MakeGenericMethod(et).Invoke(null, null)!)
            {
                info.ElementBlittable = true;
                info.ElementSize = (int)typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!.MakeGenericMethod(et).Invoke(null, null)!;
            }
            return info;
        }
        if (t.IsValueType) info.IsValueLike = true;
        if (t.Namespace == "System.Collections.Generic" && typeof(IEnumerable).IsAssignableFrom(t))
        {
            info.Enumerate = true;
            info.Unordered = t.IsGenericType && t.GetGenericTypeDefinition() == typeof(HashSet<>);
            return info;
        }
        if (typeof(Task).IsAssignableFrom(t))
        {
            // An async method's box: its state machine and its continuation (the caller's box); the Task's own fields
            // (id, flags, cached delegates, execution context) are not behaviour.
            var fs = new List<FieldInfo>();
            for (var b = t; b != null && b != typeof(object); b = b.BaseType)
                foreach (var f in b.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                    if (f.Name is "StateMachine" or "m_continuationObject" or "m_result") fs.Add(f);
            info.Fields = [.. fs];
            return info;
        }
        var fields = new List<FieldInfo>();
        var chain = new List<Type>();
        for (var b = t; b != null && b != typeof(object) && b != typeof(ValueType); b = b.BaseType) chain.Add(b);
        chain.Reverse();
        foreach (var b in chain)
            foreach (var f in b.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                if (Array.Exists(LeftOut, x => x.Type == b && x.Field == f.Name)) continue;
                if (f.FieldType.IsPointer) throw new NotSupportedException($"state digest: pointer field {b}.{f.Name}");
                if (f.Name == "<>t__builder") continue; // the method builder points back at the box
                fields.Add(f);
            }
        info.Fields = [.. fields];
        return info;
    }
}
