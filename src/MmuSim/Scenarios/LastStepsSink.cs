using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>
/// A step sink that keeps the last <see cref="Depth"/> steps of every context, for the "last steps of each CPU" part
/// of a violation report. Used when a single run is printed (and when an exploration counterexample is replayed);
/// exploration itself runs without a sink.
/// </summary>
public sealed class LastStepsSink(int depth = 8) : IStepSink
{
    public readonly record struct Entry(long Step, string Function, PointKind Kind, ulong Arg);

    readonly Dictionary<int, Queue<Entry>> _byContext = [];

    public int Depth { get; } = depth;

    public void OnStep(Scheduler s, KContext ctx, PointKind kind, ulong arg)
    {
        if (!_byContext.TryGetValue(ctx.Id, out var q)) _byContext[ctx.Id] = q = new Queue<Entry>(Depth + 1);
        q.Enqueue(new Entry(s.Steps, ctx.CurrentFunction, kind, arg));
        if (q.Count > Depth) q.Dequeue();
    }

    public void OnViolation(Scheduler s, Violation v) { }

    public IReadOnlyCollection<Entry> For(int contextId) =>
        _byContext.TryGetValue(contextId, out var q) ? q : [];

    /// <summary>One block per context: its name and its last steps, oldest first.</summary>
    public void Write(TextWriter w, Scheduler s)
    {
        foreach (var c in s.Contexts)
        {
            w.WriteLine($"  {c} steps={c.Steps} now in {c.CurrentFunction}");
            foreach (var e in For(c.Id))
                w.WriteLine($"    #{e.Step,-6} {e.Function,-28} {e.Kind}{(e.Arg != 0 ? $" 0x{e.Arg:x}" : "")}");
        }
    }
}
