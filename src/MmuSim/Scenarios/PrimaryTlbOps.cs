using MmuSim.Mm;

namespace MmuSim.Scenarios;

/// <summary>
/// Ops for the primary-TLB paths of race §5(d8): <c>clear-refs</c> (/proc/PID/clear_refs). User accesses
/// (<c>read</c>, <c>write</c>, <c>expect-value</c>) go through the thread's TLB by themselves when the scenario says
/// <c>primary_tlb: true</c>. Also the other /proc/PID interface of fs/proc/task_mmu.c that changes page tables:
/// <c>pagemap.scan</c> (the PAGEMAP_SCAN ioctl, catalog e4).
/// </summary>
public static class PrimaryTlbOps
{
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("clear-refs",
            "echo TYPE > /proc/PID/clear_refs; only type 4 (soft-dirty): write-protect every PTE, flush the TLB at the end (n/a before 3.11)",
            ["process"], ["type"], ClearRefs) { Check = CheckClearRefs });
        r.Register(new OpSpec("pagemap.scan",
            "ioctl(PAGEMAP_SCAN) over [addr, addr+len) (6.7+; enotty before): `present` checks the number of present pages found; wp: PM_SCAN_WP_MATCHING " +
            "(a PROTECTION_VMA start/end around the scan; uffd-wp async VMAs are not modelled, so every VMA is skipped); check_wpasync: PM_SCAN_CHECK_WPASYNC (eperm); expect: errno",
            ["process", "addr", "len"], ["wp", "check_wpasync", "present", "expect"], PagemapScan)
        {
            Check = (a, _) =>
            {
                a.GetULong("addr"); a.GetULong("len"); a.GetBool("wp"); a.GetBool("check_wpasync"); a.GetErrno("expect");
                if (a.Has("present")) a.GetULong("present");
            },
        });
    }

    static async ValueTask PagemapScan(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong start = a.GetULong("addr");
        ulong flags = (a.GetBool("wp") ? TaskMmu.PmScanWpMatching : 0) | (a.GetBool("check_wpasync") ? TaskMmu.PmScanCheckWpAsync : 0);
        long r = await TaskMmu.DoPagemapScan(mm, start, start + a.GetULong("len"), flags);
        w.ExpectErrno(a, r < 0 ? (int)r : 0, "PAGEMAP_SCAN");
        if (r >= 0 && a.Has("present") && (ulong)r != a.GetULong("present"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: PAGEMAP_SCAN found {r} present pages, expected {a.GetULong("present")}");
    }

    static void CheckClearRefs(OpArgs a, ScenarioInfo _)
    {
        var t = a.GetString("type", "soft-dirty");
        if (t != "soft-dirty" && t != TaskMmu.ClearRefsSoftDirtyType.ToString())
            throw a.Error("type", $"'{t}': only 4 (soft-dirty) is modelled");
    }

    static async ValueTask ClearRefs(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        if (!await TaskMmu.ClearRefsWrite(mm))
            throw new ScenarioException(a.File, a.Line, "clear-refs", $"era {w.K.Era.Name} has no CLEAR_REFS_SOFT_DIRTY (3.11+)");
    }
}
