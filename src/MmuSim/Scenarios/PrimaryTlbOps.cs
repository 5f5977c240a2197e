using MmuSim.Mm;

namespace MmuSim.Scenarios;

/// <summary>
/// Ops for the primary-TLB paths of race §5(d8): <c>clear-refs</c> (/proc/PID/clear_refs). User accesses
/// (<c>read</c>, <c>write</c>, <c>expect-value</c>) go through the thread's TLB by themselves when the scenario says
/// <c>primary_tlb: true</c>.
/// </summary>
public static class PrimaryTlbOps
{
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("clear-refs",
            "echo TYPE > /proc/PID/clear_refs; only type 4 (soft-dirty): write-protect every PTE, flush the TLB at the end (n/a before 3.11)",
            ["process"], ["type"], ClearRefs) { Check = CheckClearRefs });
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
