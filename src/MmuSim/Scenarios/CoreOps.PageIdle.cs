using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>
/// Scenario ops for idle page tracking (mm/page_idle.c, <see cref="PageIdle"/>): <c>page-idle.mark</c> is
/// access_tracking_perf_test's pageidle_mark_vcpu_memory_idle over a range (pagemap lookup, bitmap read, bitmap
/// write), <c>page-idle.expect</c> reads one page's bit.
/// </summary>
public static partial class CoreOps
{
    static void RegisterPageIdle(OpRegistry r)
    {
        r.Register(new OpSpec("page-idle.mark",
            "for each page of [addr, addr+len): its pfn from pagemap (none: no_pfn), its page_idle bit read (set: still_idle), else the bit " +
            "written (clear_young through every mapping, then PG_idle); still_idle_below / no_pfn_below assert the counts as upstream does; " +
            "`as` stores them as <as>.still_idle and <as>.no_pfn",
            ["process", "addr", "len"], ["still_idle_below", "no_pfn_below", "as"], PageIdleMark)
        {
            Check = (a, i) =>
            {
                CheckRange(a, i);
                if (a.Has("still_idle_below")) a.GetULong("still_idle_below");
                if (a.Has("no_pfn_below")) a.GetULong("no_pfn_below");
            },
        });
        r.Register(new OpSpec("page-idle.expect", "the page_idle bit of the pfn mapped at addr (page_idle_bitmap_read: young mappings clear it first) must be `idle`; else unexpected-value",
            ["process", "addr", "idle"], [], PageIdleExpect) { Check = (a, i) => { i.RequireMapped(a); a.GetBool("idle"); } });
    }

    static bool PageIdleMissing(ScenarioWorld w, OpArgs a, ulong addr)
    {
        if (w.K.Era.Has(Eras.Feature.IdlePageTracking)) return false;
        w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
            $"{a.File}:{a.Line}: /sys/kernel/mm/page_idle/bitmap does not exist in {w.K.Era.Name} (idle page tracking is 4.3)", addr);
        return true;
    }

    static async ValueTask PageIdleMark(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr"), len = a.GetULong("len");
        if (PageIdleMissing(w, a, addr)) return;
        var pi = PageIdle.Of(w.K);
        ulong stillIdle = 0, noPfn = 0, pages = len / MmStruct.PageSize;
        for (ulong p = 0; p < pages; p++)
        {
            ulong va = addr + p * MmStruct.PageSize;
            await w.K.S.Point(PointKind.PteRead, va);
            ulong e = TaskMmu.PagemapEntry(mm, va);
            long pfn = (e >> TaskMmu.PmPresent & 1) != 0 ? (long)(e & TaskMmu.PmPfnMask) : 0;
            if (pfn == 0) { noPfn++; continue; }
            if (await pi.BitmapRead(pfn)) { stillIdle++; continue; }
            await pi.BitmapWrite(pfn);
        }
        if (a.Has("as"))
        {
            w.Observed[a.GetString("as") + ".still_idle"] = stillIdle;
            w.Observed[a.GetString("as") + ".no_pfn"] = noPfn;
        }
        if (a.Has("no_pfn_below") && noPfn >= a.GetULong("no_pfn_below"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: No PFN for {noPfn} out of {pages} pages", addr);
        else if (a.Has("still_idle_below") && stillIdle >= a.GetULong("still_idle_below"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: Too many pages still idle ({stillIdle} out of {pages})", addr);
    }

    static async ValueTask PageIdleExpect(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        if (PageIdleMissing(w, a, addr)) return;
        await w.K.S.Point(PointKind.PteRead, addr);
        ulong e = TaskMmu.PagemapEntry(mm, addr);
        bool want = a.GetBool("idle");
        bool got = (e >> TaskMmu.PmPresent & 1) != 0 && await PageIdle.Of(w.K).BitmapRead((long)(e & TaskMmu.PmPfnMask));
        if (got != want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: page_idle bit of {mm} at 0x{addr:x} is {(got ? 1 : 0)}, expected {(want ? 1 : 0)}", addr);
    }
}
