using MmuSim.Mm;
using MmuSim.Notifier;

namespace MmuSim.Devices;

/// <summary>Which callback a <see cref="RecordingSecondary"/> saw.</summary>
public enum CallbackKind : byte
{
    Release,
    ClearFlushYoung,
    ClearYoung,
    TestYoung,
    ChangePte,
    InvalidatePage,
    InvalidateRangeStart,
    InvalidateRangeEnd,
    InvalidateRange,
    ArchInvalidateSecondaryTlbs,
}

/// <summary>One callback as a secondary received it.</summary>
/// <param name="Kind">Which callback.</param>
/// <param name="Start">Range start (or the address for single-address callbacks).</param>
/// <param name="End">Range end (address + PAGE_SIZE for single-address callbacks).</param>
/// <param name="Event">The range's event as the era reports it (None before 5.2 or for non-range callbacks).</param>
/// <param name="Blockable">The range's blockable flag (true for non-range callbacks that may sleep).</param>
/// <param name="Atomic">The caller held a spinlock or RCU read lock (under the PTL, or 2.6.32's RCU read side).</param>
/// <param name="Pte">The new PTE for change_pte.</param>
/// <param name="Cpu">Context that made the call.</param>
public readonly record struct NotifierCall(CallbackKind Kind, ulong Start, ulong End, MmuNotifyEvent Event, bool Blockable, bool Atomic, Pte Pte, int Cpu)
{
    public override string ToString() =>
        $"{Kind}(0x{Start:x}, 0x{End:x}{(Event != MmuNotifyEvent.None ? ", " + Event : "")}{(Blockable ? "" : ", nonblock")}{(Atomic ? ", atomic" : "")}{(Kind == CallbackKind.ChangePte ? ", " + Pte : "")})";
}

/// <summary>
/// A secondary MMU for tests: implements every callback of every era, holds no translations, and logs each call with
/// its range, event, blockable flag and whether it ran in atomic context. Tests assert exactly what each primary path
/// notifies in each era.
/// </summary>
public sealed class RecordingSecondary : MmuNotifier
{
    readonly Kernel _k;
    readonly List<NotifierCall> _calls = [];

    public RecordingSecondary(Kernel k, NotifierOps ops = All)
    {
        _k = k;
        Ops = ops;
    }

    public const NotifierOps All = NotifierOps.Release | NotifierOps.ClearFlushYoung | NotifierOps.ClearYoung |
        NotifierOps.TestYoung | NotifierOps.ChangePte | NotifierOps.InvalidatePage | NotifierOps.InvalidateRangeStart |
        NotifierOps.InvalidateRangeEnd | NotifierOps.InvalidateRange;

    public override NotifierOps Ops { get; }

    public override string Name => "recorder";

    /// <summary>Answer for the young callbacks.</summary>
    public bool Young { get; set; }

    public IReadOnlyList<NotifierCall> Calls => _calls;

    public void Clear() => _calls.Clear();

    /// <summary>The calls as one string per line (readable test failures).</summary>
    public string Log => string.Join("\n", _calls);

    void Add(CallbackKind kind, ulong start, ulong end, MmuNotifyEvent ev = MmuNotifyEvent.None, bool blockable = true, Pte pte = default)
    {
        var cur = _k.S.Current;
        _calls.Add(new NotifierCall(kind, start, end, ev, blockable, cur.AtomicDepth > 0, pte, cur.Id));
    }

    public override ValueTask Release(MmStruct mm)
    {
        Add(CallbackKind.Release, 0, 0);
        return default;
    }

    public override ValueTask<bool> ClearFlushYoung(MmStruct mm, ulong start, ulong end)
    {
        Add(CallbackKind.ClearFlushYoung, start, end);
        return new(Young);
    }

    public override ValueTask<bool> ClearYoung(MmStruct mm, ulong start, ulong end)
    {
        Add(CallbackKind.ClearYoung, start, end);
        return new(Young);
    }

    public override ValueTask<bool> TestYoung(MmStruct mm, ulong address)
    {
        Add(CallbackKind.TestYoung, address, address + MmStruct.PageSize);
        return new(Young);
    }

    public override ValueTask ChangePte(MmStruct mm, ulong address, Pte pte)
    {
        Add(CallbackKind.ChangePte, address, address + MmStruct.PageSize, pte: pte);
        return default;
    }

    public override ValueTask InvalidatePage(MmStruct mm, ulong address)
    {
        Add(CallbackKind.InvalidatePage, address, address + MmStruct.PageSize);
        return default;
    }

    public override ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        Add(CallbackKind.InvalidateRangeStart, range.Start, range.End, range.Event, range.Blockable);
        return new(0);
    }

    public override ValueTask InvalidateRangeEnd(MmuNotifierRange range)
    {
        Add(CallbackKind.InvalidateRangeEnd, range.Start, range.End, range.Event, range.Blockable);
        return default;
    }

    public override ValueTask InvalidateRange(MmStruct mm, ulong start, ulong end)
    {
        Add(CallbackKind.InvalidateRange, start, end);
        return default;
    }

    public override ValueTask ArchInvalidateSecondaryTlbs(MmStruct mm, ulong start, ulong end)
    {
        Add(CallbackKind.ArchInvalidateSecondaryTlbs, start, end);
        return default;
    }
}
