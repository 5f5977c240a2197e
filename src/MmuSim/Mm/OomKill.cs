using MmuSim.Eras;
using MmuSim.Notifier;

namespace MmuSim.Mm;

/// <summary>mm/oom_kill.c: the OOM reaper.</summary>
public static class OomKill
{
    /// <summary>MAX_OOM_REAP_RETRIES.</summary>
    public const int MaxOomReapRetries = 10;

    /// <summary>HZ/10 in nanoseconds (schedule_timeout_idle between attempts).</summary>
    public const long RetryDelayNs = 100_000_000;

    /// <summary>
    /// oom_reap_task: reap the victim's private memory, retrying up to <see cref="MaxOomReapRetries"/> times with a
    /// 100 ms sleep while a non-blocking start failed; then mark the mm reaped (MMF_OOM_SKIP). Eras without an OOM
    /// reaper do nothing. Returns whether the last attempt reaped everything.
    /// </summary>
    public static async ValueTask<bool> OomReapTask(MmStruct mm)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("oom_reap_task");
        if (!k.Era.Has(Feature.OomReaper)) return false;
        int attempts = 0;
        bool ok;
        while (!(ok = await OomReapTaskMm(mm)) && ++attempts < MaxOomReapRetries)
        {
            k.Stats.Inc(Stat.OomReapRetries);
            await k.S.Sleep(RetryDelayNs);
        }
        mm.OomReaped = true;
        return ok;
    }

    /// <summary>
    /// oom_reap_task_mm / __oom_reap_task_mm: under mmap_lock (read), unmap every private VMA that is not VM_LOCKED.
    /// 4.6-4.14: unmap_page_range with no notifier at all (§5(d3)). 4.15-4.18: an mm with notifiers is skipped after
    /// a one-second sleep. 4.19+: per VMA an UNMAP range with invalidate_range_start_nonblock; on -EAGAIN the VMA is
    /// skipped (no unmap, no end) and the attempt reports failure. Returns false when a VMA was skipped.
    /// </summary>
    public static async ValueTask<bool> OomReapTaskMm(MmStruct mm)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("__oom_reap_task_mm");
        var era = k.Era;
        if (!era.Has(Feature.OomReaper) || mm.Exited) return true;
        await mm.MmapLock.ReadLock();
        try
        {
            if (era.Has(Feature.OomReaperSkipsNotifierMm) && mm.Notifiers.HasNotifiers)
            {
                await mm.MmapLock.ReadUnlock();
                await k.S.Sleep(1_000_000_000); // schedule_timeout_idle(HZ)
                await mm.MmapLock.ReadLock();
                return true;
            }
            bool ret = true;
            for (int i = 0; i < mm.Vmas.Count; i++)
            {
                var vma = mm.Vmas[i];
                if ((vma.Flags & VmFlags.Locked) != 0 || vma.Shared) continue;
                var tlb = new MmuGather(mm);
                if (!era.Has(Feature.OomReaperNonblock))
                {
                    await Memory.UnmapPageRange(tlb, vma, vma.Start, vma.End);
                    await tlb.Finish();
                    continue;
                }
                var range = new MmuNotifierRange(mm, vma.Start, vma.End, MmuNotifyEvent.Unmap);
                if (await mm.Notifiers.InvalidateRangeStartNonblock(range) != 0)
                {
                    await tlb.Finish();
                    ret = false;
                    continue;
                }
                await Memory.UnmapPageRange(tlb, vma, vma.Start, vma.End);
                await mm.Notifiers.InvalidateRangeEnd(range);
                await tlb.Finish();
            }
            return ret;
        }
        finally
        {
            await mm.MmapLock.ReadUnlock();
        }
    }
}
