using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;

namespace MmuSim.Devices;

/// <summary>
/// A secondary whose invalidate_range_start waits a fixed time for its hardware, as amdgpu_hmm_invalidate_gfx waits
/// for the GPU's fences (dma_resv_wait_timeout) or an IOMMU waits for an ATS invalidation: every other subscriber's
/// range stays open that long. Holds no translations. Op <c>slow-secondary: { process, name, ns }</c>.
/// </summary>
public sealed class SlowSecondary(Kernel k, string name, long ns, bool hasEnd = true) : MmuNotifier
{
    /// <summary>start and end; with <c>end: false</c> start only, as i915_gem_userptr's mmu_notifier_ops (4.19-5.10),
    /// the kind of subscription that may fail a non-blocking start (c2655835fd8c).</summary>
    public override NotifierOps Ops => hasEnd ? NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd : NotifierOps.InvalidateRangeStart;

    public override string Name => name;

    /// <summary>Invalidations it waited in.</summary>
    public int Waits { get; private set; }

    /// <summary>driver invalidate_range_start (amdgpu_hmm_invalidate_gfx-style): wait for the device (blockable ranges only).</summary>
    public override async ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        using var _ = k.S.Current.Enter("slow_invalidate_range_start");
        if (!range.Blockable) return -11; // -EAGAIN
        Waits++;
        await k.S.Sleep(ns);
        return 0;
    }

    /// <summary>Register the <c>slow-secondary</c> op.</summary>
    public static void Register(OpRegistry r) =>
        r.Register(new OpSpec("slow-secondary",
            "register a secondary whose invalidate_range_start sleeps ns (a device waiting for its hardware, e.g. GPU fences); register it before vm.create so that KVM's start runs first. A non-blocking start (the OOM reaper) fails with -EAGAIN. `end: false` gives it no invalidate_range_end (i915 userptr's ops), which 5.12+ requires of a start that can fail",
            ["process", "ns"], ["name", "end"], SlowSecondaryOp) { Check = (a, _) => { a.GetBounded("ns", 0, ScenarioLimits.MaxCostNs); a.GetBool("end", true); } });

    static async ValueTask SlowSecondaryOp(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name", "slow");
        if (w.Objects.ContainsKey(name)) throw a.Error("name", $"an object named '{name}' already exists");
        var dev = new SlowSecondary(w.K, name, (long)a.GetULong("ns"), a.GetBool("end", true));
        w.Objects[name] = dev;
        await mm.Notifiers.Register(dev);
    }
}
