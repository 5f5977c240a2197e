using MmuSim.Sched;

namespace MmuSim.Lkmm;

/// <summary>The memory model the explorer assumes for the accesses that go through <see cref="WeakMemory"/>.</summary>
public enum MemoryModel : byte
{
    /// <summary>Sequential consistency: every load sees the latest store (the default).</summary>
    Sc,

    /// <summary>
    /// An operational approximation of the Linux-kernel memory model (tools/memory-model): loads may see older stores
    /// as far as the barriers, acquire/release and locks allow (docs/memory-model.md).
    /// </summary>
    Lkmm,
}

/// <summary>Names and parsing of <see cref="MemoryModel"/> (scenario <c>memory:</c>, CLI <c>--memory</c>).</summary>
public static class MemoryModels
{
    public const string KnownList = "sc, lkmm";

    public static bool TryParse(string s, out MemoryModel m)
    {
        switch (s.Trim().ToLowerInvariant())
        {
            case "sc": m = MemoryModel.Sc; return true;
            case "lkmm": m = MemoryModel.Lkmm; return true;
            default: m = MemoryModel.Sc; return false;
        }
    }

    public static string NameOf(MemoryModel m) => m == MemoryModel.Lkmm ? "lkmm" : "sc";
}

/// <summary>How a load or store is ordered (the kernel primitive it models).</summary>
public enum AccessOrder : byte
{
    /// <summary>READ_ONCE / WRITE_ONCE (and a plain access the model treats as marked).</summary>
    Once,

    /// <summary>smp_load_acquire / smp_store_release (rcu_dereference and rcu_assign_pointer are modelled so too).</summary>
    AcquireRelease,
}

/// <summary>The fences: smp_mb, smp_rmb, smp_wmb.</summary>
public enum FenceKind : byte
{
    Mb,
    Rmb,
    Wmb,
}

/// <summary>A shared location whose accesses go through <see cref="WeakMemory"/>.</summary>
public readonly record struct WeakLoc(int Id);

/// <summary>
/// A view-based operational model of the weakly ordered accesses (the "view" machinery of Kang et al., "A promising
/// semantics for relaxed-memory concurrency", POPL 2017, without promises, with smp_mb as an SC fence). Every location
/// keeps the list of its stores in coherence order (a store's timestamp is its index; index 0 is the value at the end of
/// setup); every CPU (context) keeps three views, a timestamp per location: <c>cur</c> (the oldest store each of its
/// loads may still read), <c>acq</c> (what an smp_rmb/smp_mb would make it see: the views of the stores it read) and
/// <c>rel</c> (what its stores publish: its <c>cur</c> at its last smp_wmb/smp_mb). A load that may read several stores
/// makes the choice through <see cref="Scheduler.ChooseInt"/> (choice 0 = the newest), so the strategy enumerates it,
/// the decision log records it and replay reproduces it. Locks carry views (spin_unlock publishes, spin_lock acquires).
/// </summary>
/// <remarks>
/// In <see cref="MemoryModel.Sc"/> there is no state at all: loads return the newest value, nothing is chosen.
/// Views are arrays of a handful of ints (one per weak location: a litmus test's variables, a VM's two counters);
/// they are allocated per store only in the weak mode.
/// </remarks>
public sealed class WeakMemory
{
    sealed class Location(string name)
    {
        public readonly string Name = name;
        public readonly List<ulong> Values = [];
        public readonly List<int[]> Views = [];
    }

    sealed class CpuViews(int[] cur, int[] acq, int[] rel)
    {
        public int[] Cur = cur, Acq = acq, Rel = rel;
    }

    readonly Scheduler _s;
    readonly List<Location> _locs = [];
    readonly List<CpuViews?> _cpus = [];
    readonly Dictionary<(object Lock, int Slot), int[]> _lockViews = [];
    int[] _sc = [];

    public WeakMemory(Scheduler s, MemoryModel model)
    {
        _s = s;
        Model = model;
    }

    public MemoryModel Model { get; private set; }

    /// <summary>True in <see cref="MemoryModel.Lkmm"/>: loads may see older stores.</summary>
    public bool IsWeak => Model == MemoryModel.Lkmm;

    /// <summary>
    /// Must mirrored fields (KVM's counters) store here? During setup (whose last values become the initial ones) and
    /// under lkmm; not in an sc threads phase, where nothing reads the locations (the fields are the newest values).
    /// </summary>
    public bool Records { get; private set; } = true;

    /// <summary>Number of weak locations.</summary>
    public int Locations => _locs.Count;

    /// <summary>A new location holding <paramref name="initial"/> (visible to every CPU).</summary>
    public WeakLoc NewLocation(string name, ulong initial = 0)
    {
        var l = new Location(name);
        l.Values.Add(initial);
        l.Views.Add([]);
        _locs.Add(l);
        return new WeakLoc(_locs.Count - 1);
    }

    public string NameOf(WeakLoc l) => _locs[l.Id].Name;

    /// <summary>The newest value (coherence-order last): what a final-state check or a lock holder sees.</summary>
    public ulong Latest(WeakLoc l)
    {
        var v = _locs[l.Id].Values;
        return v[^1];
    }

    /// <summary>Number of stores to <paramref name="l"/> after the initial value (tests).</summary>
    public int StoresTo(WeakLoc l) => _locs[l.Id].Values.Count - 1;

    /// <summary>
    /// Start the threads phase under <paramref name="model"/>: what every location holds now is its initial value, seen
    /// by every CPU (setup ran alone, in SC, and the threads start after it). Under <see cref="MemoryModel.Lkmm"/> the
    /// scheduler's locks start carrying views.
    /// </summary>
    public void Begin(MemoryModel model)
    {
        Model = model;
        Records = IsWeak;
        foreach (var l in _locs)
        {
            ulong v = l.Values[^1];
            l.Values.Clear(); l.Views.Clear();
            l.Values.Add(v); l.Views.Add([]);
        }
        _cpus.Clear();
        _lockViews.Clear();
        _sc = [];
        _s.Weak = IsWeak ? this : null;
    }

    /// <summary>READ_ONCE (<see cref="AccessOrder.Once"/>) or smp_load_acquire: one of the stores the CPU may still see.</summary>
    public ulong Load(WeakLoc l, AccessOrder order = AccessOrder.Once)
    {
        var loc = _locs[l.Id];
        if (!IsWeak) return loc.Values[^1];
        var cpu = Cpu();
        int newest = loc.Values.Count - 1;
        int oldest = At(cpu.Cur, l.Id);
        int ts = newest - _s.ChooseInt(newest - oldest + 1);
        Set(ref cpu.Cur, l.Id, ts);
        var msg = loc.Views[ts];
        if (order == AccessOrder.AcquireRelease) Join(ref cpu.Cur, msg);
        Join(ref cpu.Acq, msg);
        Set(ref cpu.Acq, l.Id, ts);
        return loc.Values[ts];
    }

    /// <summary>WRITE_ONCE (<see cref="AccessOrder.Once"/>) or smp_store_release: a new coherence-last store.</summary>
    public void Store(WeakLoc l, ulong value, AccessOrder order = AccessOrder.Once)
    {
        var loc = _locs[l.Id];
        if (!IsWeak)
        {
            loc.Values[^1] = value;
            return;
        }
        var cpu = Cpu();
        int ts = loc.Values.Count;
        Set(ref cpu.Cur, l.Id, ts);
        Set(ref cpu.Acq, l.Id, ts);
        var msg = (int[])(order == AccessOrder.AcquireRelease ? cpu.Cur : cpu.Rel).Clone();
        Set(ref msg, l.Id, ts);
        loc.Values.Add(value);
        loc.Views.Add(msg);
    }

    /// <summary>smp_mb (an SC fence: it also joins and publishes the global fence view), smp_rmb, smp_wmb.</summary>
    public void Fence(FenceKind kind)
    {
        if (!IsWeak) return;
        var cpu = Cpu();
        switch (kind)
        {
            case FenceKind.Rmb:
                Join(ref cpu.Cur, cpu.Acq);
                break;
            case FenceKind.Wmb:
                cpu.Rel = (int[])cpu.Cur.Clone();
                break;
            case FenceKind.Mb:
                Join(ref cpu.Cur, cpu.Acq);
                Join(ref cpu.Cur, _sc);
                _sc = (int[])cpu.Cur.Clone();
                Join(ref cpu.Acq, cpu.Cur);
                cpu.Rel = (int[])cpu.Cur.Clone();
                break;
        }
    }

    /// <summary>
    /// Store propagation is eventual: a CPU that spins on <paramref name="l"/> (a retry loop with nothing else to wait
    /// for) eventually sees its newest store. Returns true if the CPU's view moved (its next attempt may decide otherwise).
    /// </summary>
    public bool CatchUp(WeakLoc l)
    {
        if (!IsWeak) return false;
        var cpu = Cpu();
        int newest = _locs[l.Id].Values.Count - 1;
        if (At(cpu.Cur, l.Id) >= newest) return false;
        Set(ref cpu.Cur, l.Id, newest);
        Set(ref cpu.Acq, l.Id, newest);
        return true;
    }

    /// <summary>spin_lock / down_* acquired: the CPU sees everything the last releaser of the lock saw.</summary>
    public void LockAcquired(object lockObj, int slot)
    {
        if (!_lockViews.TryGetValue((lockObj, slot), out var v)) return;
        var cpu = Cpu();
        Join(ref cpu.Cur, v);
        Join(ref cpu.Acq, v);
    }

    /// <summary>spin_unlock / up_*: the lock publishes the releasing CPU's view.</summary>
    public void LockReleased(object lockObj, int slot)
    {
        var cpu = Cpu();
        if (_lockViews.TryGetValue((lockObj, slot), out var v)) { Join(ref v, cpu.Cur); _lockViews[(lockObj, slot)] = v; }
        else _lockViews[(lockObj, slot)] = (int[])cpu.Cur.Clone();
    }

    CpuViews Cpu()
    {
        int id = _s.Current.Id;
        while (_cpus.Count <= id) _cpus.Add(null);
        return _cpus[id] ??= new CpuViews([], [], []);
    }

    static int At(int[] v, int i) => i < v.Length ? v[i] : 0;

    static void Set(ref int[] v, int i, int ts)
    {
        if (i >= v.Length) Array.Resize(ref v, i + 1);
        if (ts > v[i]) v[i] = ts;
    }

    static void Join(ref int[] into, int[] from)
    {
        if (from.Length > into.Length) Array.Resize(ref into, from.Length);
        for (int i = 0; i < from.Length; i++)
            if (from[i] > into[i]) into[i] = from[i];
    }
}
