using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Tests;

/// <summary>Test helpers: build a kernel in an era, run kernel code on a context, register a recorder.</summary>
public static class Harness
{
    public static Kernel Kernel(string era, IStrategy? strategy = null, KernelOptions? options = null) =>
        new(EraTable.Get(era), strategy, options);

    /// <summary>Run <paramref name="body"/> as the only context and return its violation (null if clean).</summary>
    public static Violation? Run(Kernel k, Func<KContext, ValueTask> body, string name = "task")
    {
        k.S.Spawn(name, body);
        return k.Run();
    }

    /// <summary>mm with one anonymous private RW VMA at [start, start+len).</summary>
    public static MmStruct MmWithVma(Kernel k, ulong start, ulong len, VmFlags flags = VmFlags.None, Prot prot = Prot.ReadWrite)
    {
        var mm = k.CreateMm("task");
        mm.InsertVma(new Vma(mm, start, start + len, prot, flags));
        return mm;
    }

    public static RecordingSecondary Recorder(Kernel k, MmStruct mm, MmuSim.Notifier.NotifierOps ops = RecordingSecondary.All)
    {
        var rec = new RecordingSecondary(k, ops);
        Run(k, async _ => { await mm.Notifiers.Register(rec); }, "register");
        rec.Clear();
        return rec;
    }
}
