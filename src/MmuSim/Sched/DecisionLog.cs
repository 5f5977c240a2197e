namespace MmuSim.Sched;

/// <summary>
/// The recorded choices of one run: one entry per scheduling decision that had more than one option, and one per
/// data choice, in the order they were made. A run is fully determined by its scenario, era and this list.
/// </summary>
public sealed class DecisionLog
{
    int[] _items = new int[256];
    byte[] _kinds = new byte[256];

    public int Count { get; private set; }

    /// <summary>Scheduling decisions where the strategy preempted a context that could have continued.</summary>
    public int Preemptions { get; private set; }

    public const byte SchedKind = 0, DataKind = 1;

    public int this[int i] => _items[i];

    public byte KindAt(int i) => _kinds[i];

    public void Clear()
    {
        Count = 0;
        Preemptions = 0;
    }

    internal void AddSchedule(int ctx, bool preempted)
    {
        Add(ctx, SchedKind);
        if (preempted) Preemptions++;
    }

    internal void AddData(int value) => Add(value, DataKind);

    void Add(int v, byte kind)
    {
        if (Count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
            Array.Resize(ref _kinds, _kinds.Length * 2);
        }
        _items[Count] = v;
        _kinds[Count] = kind;
        Count++;
    }

    public int[] ToArray() => _items.AsSpan(0, Count).ToArray();

    public (byte Kind, int Value)[] ToEntries()
    {
        var r = new (byte, int)[Count];
        for (int i = 0; i < Count; i++) r[i] = (_kinds[i], _items[i]);
        return r;
    }
}
