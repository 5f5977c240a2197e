namespace MmuSim.Trace;

/// <summary>
/// Timestamps for trace outputs: simulated nanoseconds turned into microseconds, made strictly increasing (every event
/// gets its own microsecond) so that viewers which sort by time keep the recorded order and slices nest. Starts at 1 s.
/// </summary>
internal static class TraceTime
{
    public const long BaseUs = 1_000_000;

    public static long[] Assign(IReadOnlyList<TraceEvent> events)
    {
        var us = new long[events.Count];
        long prev = BaseUs;
        for (int i = 0; i < events.Count; i++)
        {
            long t = BaseUs + events[i].TimeNs / 1000;
            prev = t > prev ? t : prev + 1;
            us[i] = prev;
        }
        return us;
    }
}
