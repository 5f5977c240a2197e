using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Notifier;

namespace MmuSim.Tests.Mm;

/// <summary>
/// A second subscription for tests: at every start, end, invalidate_page and release it samples whether the watched
/// frames are already free, so a test can assert when pages are freed relative to the notifications.
/// </summary>
public sealed class FreeProbe(Kernel k) : MmuNotifier
{
    readonly List<string> _log = [];

    public override NotifierOps Ops => NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd |
        NotifierOps.InvalidatePage | NotifierOps.Release;

    public List<long> Watch { get; } = [];

    /// <summary>One entry per callback: "S:live", "E:live", "IP:freed"... ("freed" if any watched frame is free).</summary>
    public IReadOnlyList<string> Log => _log;

    /// <summary>Sleep this long (simulated ns) inside every end: lets other contexts run in the window.</summary>
    public long SleepInEnd { get; set; }

    public Action? OnEnd { get; set; }

    /// <summary>Called at every start, after the log entry.</summary>
    public Action? OnStart { get; set; }

    string State()
    {
        foreach (var p in Watch)
            if (k.Mem[p].Has(PageFlags.Free)) return "freed";
        return "live";
    }

    public override ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        _log.Add("S:" + State());
        OnStart?.Invoke();
        return new(0);
    }

    public override async ValueTask InvalidateRangeEnd(MmuNotifierRange range)
    {
        _log.Add("E:" + State());
        OnEnd?.Invoke();
        if (SleepInEnd > 0) await k.S.Sleep(SleepInEnd);
    }

    public override ValueTask InvalidatePage(MmStruct mm, ulong address)
    {
        _log.Add("IP:" + State());
        return default;
    }

    public override ValueTask Release(MmStruct mm)
    {
        _log.Add("R:" + State());
        return default;
    }
}

public static class MmTestKit
{
    /// <summary>A kernel in <paramref name="era"/> with a THP at 0x200000 (MADV_HUGEPAGE, 2 MiB) holding 1 in its page 0
    /// and 3 in its page 3; returns the mm and the THP's head pfn.</summary>
    public static (Kernel K, MmStruct Mm, long Head) WrittenThp(string era)
    {
        const ulong h = 0x200000;
        var k = Harness.Kernel(era);
        var mm = Harness.MmWithVma(k, h, MmStruct.PmdSize, VmFlags.HugePage);
        Ok(k, async () =>
        {
            await Write(mm, h, 1);
            await Write(mm, h + 0x3000, 3);
        });
        long head = mm.PeekPmd(h).Pfn;
        Assert.True(k.Mem.IsHuge(head));
        return (k, mm, head);
    }

    /// <summary>The recorder's calls in a compact form: <c>S(10000,11000,Clear)</c>, <c>IP(10000)!</c> (! = atomic).</summary>
    public static string Seq(RecordingSecondary rec) => string.Join(" ", rec.Calls.Select(Fmt));

    public static string Fmt(NotifierCall c)
    {
        string k = c.Kind switch
        {
            CallbackKind.InvalidateRangeStart => "S",
            CallbackKind.InvalidateRangeEnd => "E",
            CallbackKind.InvalidateRange => "IR",
            CallbackKind.InvalidatePage => "IP",
            CallbackKind.ChangePte => "CP",
            CallbackKind.ClearFlushYoung => "CFY",
            CallbackKind.ClearYoung => "CY",
            CallbackKind.TestYoung => "TY",
            CallbackKind.Release => "R",
            CallbackKind.ArchInvalidateSecondaryTlbs => "AIST",
            _ => c.Kind.ToString(),
        };
        string args = c.Kind switch
        {
            CallbackKind.Release => "",
            CallbackKind.InvalidatePage or CallbackKind.ChangePte or CallbackKind.TestYoung => $"{c.Start:x}",
            _ => $"{c.Start:x},{c.End:x}",
        };
        if (c.Event != MmuNotifyEvent.None) args += "," + c.Event;
        if (!c.Blockable) args += ",nb";
        return $"{k}({args}){(c.Atomic ? "!" : "")}";
    }

    /// <summary>Register a <see cref="FreeProbe"/> watching <paramref name="pfns"/>.</summary>
    public static FreeProbe Probe(Kernel k, MmStruct mm, params long[] pfns)
    {
        var p = new FreeProbe(k);
        p.Watch.AddRange(pfns);
        Harness.Run(k, async _ => { await mm.Notifiers.Register(p); }, "register-probe");
        return p;
    }

    /// <summary>Run <paramref name="body"/> and fail the test on a violation.</summary>
    public static void Ok(Kernel k, Func<ValueTask> body)
    {
        var v = Harness.Run(k, async _ => await body());
        Assert.True(v == null, v?.ToString());
        Assert.True(k.S.ModelError == null, k.S.ModelError?.ToString());
    }

    public static void Consistent(Kernel k)
    {
        var err = k.Checker.CheckPrimaryConsistency();
        Assert.True(err == null, err);
    }

    public static ValueTask<ulong?> Write(MmStruct mm, ulong a, ulong v) => Memory.UserAccess(mm, a, true, v);

    public static ValueTask<ulong?> Read(MmStruct mm, ulong a) => Memory.UserAccess(mm, a, false);
}
