using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.History;

/// <summary>
/// Scenario ops the historical catalog needs beyond the core/KVM/KSM ones: a secondary whose callbacks sleep (the
/// 4.13-rc over-correction of §5(a)) and expectations on observed values. The IOMMU device's ops are in Devices/IommuOps.cs. Registered through
/// <see cref="OpRegistry.Providers"/>.
/// </summary>
public static class HistoryOps
{
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("sleepy-secondary",
            "register a secondary whose invalidate_page and invalidate_range_start take a mutex (may sleep), as drivers did from 3.7",
            ["process"], ["name"], SleepySecondaryOp));
        r.Register(new OpSpec("expect-observed", "the value an earlier op stored with `as: label` must equal value (or be one of one_of: a comma-separated list); else an unexpected-value violation",
            ["label"], ["value", "one_of"], ExpectObserved) { Check = (a, _) => ExpectedValues(a) });
    }

    static async ValueTask SleepySecondaryOp(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name", "sleepy");
        if (w.Objects.ContainsKey(name)) throw a.Error("name", $"an object named '{name}' already exists");
        var dev = new SleepingSecondary(w.K, name);
        w.Objects[name] = dev;
        await mm.Notifiers.Register(dev);
    }

    /// <summary><c>value</c> or <c>one_of</c>, exactly one of them.</summary>
    static ulong[] ExpectedValues(OpArgs a)
    {
        if (a.Has("value") == a.Has("one_of")) throw a.Error("value", "give either value or one_of");
        if (a.Has("value")) return [a.GetULong("value")];
        var parts = a.GetString("one_of").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw a.Error("one_of", "the list is empty");
        return Array.ConvertAll(parts, p => OpArgs.TryParseULong(p, out var v) ? v : throw a.Error("one_of", $"'{p}' is not a number"));
    }

    static async ValueTask ExpectObserved(ScenarioWorld w, OpArgs a)
    {
        await w.K.S.Point(PointKind.Counter, 0);
        string label = a.GetString("label");
        var want = ExpectedValues(a);
        if (!w.Observed.TryGetValue(label, out var got))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: expect-observed: nothing was stored as '{label}'");
        else if (Array.IndexOf(want, got) < 0)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: expect-observed: {label} is {got}, expected {(want.Length == 1 ? want[0].ToString() : "one of " + string.Join(", ", want))}");
    }
}

/// <summary>
/// A secondary in the style of the drivers 4.13-rc1 broke: its invalidate_page and invalidate_range_start take a
/// mutex (mutex_lock may sleep), legal from 3.7 (SRCU read side, invalidate_page after the PTL) and illegal whenever
/// the callback runs under the PTL or an RCU read lock. Holds no translations.
/// </summary>
public sealed class SleepingSecondary(Kernel k, string name) : MmuNotifier
{
    readonly KMutex _lock = new(k.S, name + "->mutex");

    public override NotifierOps Ops => NotifierOps.InvalidatePage | NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd;

    public override string Name => name;

    /// <summary>Callbacks that took the mutex.</summary>
    public int Calls { get; private set; }

    async ValueTask Sleepy()
    {
        await _lock.Lock();
        Calls++;
        await _lock.Unlock();
    }

    /// <summary>driver invalidate_page: takes the driver mutex.</summary>
    public override async ValueTask InvalidatePage(MmStruct mm, ulong address)
    {
        using var _ = k.S.Current.Enter("sleepy_invalidate_page");
        await Sleepy();
    }

    /// <summary>driver invalidate_range_start: takes the driver mutex (blockable ranges only, as the 4.19 rule says).</summary>
    public override async ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        using var _ = k.S.Current.Enter("sleepy_invalidate_range_start");
        if (!range.Blockable) return -11; // -EAGAIN
        await Sleepy();
        return 0;
    }
}
