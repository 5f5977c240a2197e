namespace MmuSim.Trace;

/// <summary>
/// Timestamps for trace outputs, on the simulated clock (<see cref="Sched.Scheduler.ClockNs"/>, global and monotone),
/// offset by 1 s. Lines stamped at the same simulated instant are nudged apart by the least unit of the output
/// (1 ns for Perfetto JSON; 1 us for ftrace text, whose <c>%5lu.%06lu</c> column has no finer digit) so that viewers
/// which sort by time keep the recorded order and slices nest.
/// </summary>
internal static class TraceTime
{
    public const long BaseNs = 1_000_000_000;

    /// <summary>The next timestamp in units of <paramref name="unitNs"/>: the simulated time, or one unit past the last.</summary>
    public static long Next(long timeNs, ref long last, long unitNs)
    {
        long v = (BaseNs + timeNs) / unitNs;
        last = v > last ? v : last + 1;
        return last;
    }

    /// <summary>Strictly increasing nanoseconds, one per event.</summary>
    public static long[] AssignNs(IReadOnlyList<TraceEvent> events)
    {
        var t = new long[events.Count];
        long last = BaseNs - 1;
        for (int i = 0; i < events.Count; i++) t[i] = Next(events[i].TimeNs, ref last, 1);
        return t;
    }
}
