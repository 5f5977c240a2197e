using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>Scenario ops for whole-process steps and range checks: execve, a memset over a range, and pagemap's duplicate-pfn check.</summary>
public static partial class CoreOps
{
    static void RegisterProcess(OpRegistry r)
    {
        r.Register(new OpSpec("exec", "execve: the process gets a new, empty mm (MMF_INIT_MASK flags and ksm_execve carried over per era); the old mm is torn down as by exit",
            ["process"], [], DoExec));
        r.Register(new OpSpec("memset", "user stores of value into each page of [addr, addr+len), in address order (faults each in, breaks COW)",
            ["process", "addr", "len", "value"], [], Memset) { Check = CheckRange });
        r.Register(new OpSpec("expect-no-duplicates", "no two present pages of [addr, addr+len) map the same pfn (pagemap; the KSM selftests' range_maps_duplicates); else unexpected-value",
            ["process", "addr", "len"], [], ExpectNoDuplicates) { Check = CheckRange });
    }

    /// <summary>A non-empty range (the loader checks page alignment for every addr/len op) of at most <see cref="ScenarioLimits.MaxContentPages"/> pages, inside a range the process may map.</summary>
    static void CheckRange(OpArgs a, ScenarioInfo i)
    {
        ulong addr = a.GetAddress("addr");
        ulong len = a.GetBounded("len", MmStruct.PageSize, (ulong)ScenarioLimits.MaxContentPages * MmStruct.PageSize); // page multiple: the loader
        if (a.Has("value")) a.GetULong("value");
        i.RequireMapped(a);
        if (a.Has("process") && !i.MayMap(a.GetString("process"), addr + len - 1))
            throw a.Error("len", $"[0x{addr:x}, 0x{addr + len:x}) runs past every VMA of process '{a.GetString("process")}'");
    }

    static async ValueTask DoExec(ScenarioWorld w, OpArgs a)
    {
        var name = a.GetString("process");
        w.Processes[name] = await Exec.ExecMmap(w.Process(a), name);
    }

    static async ValueTask Memset(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr"), end = addr + a.GetULong("len"), value = a.GetULong("value");
        for (ulong p = addr; p < end; p += MmStruct.PageSize)
        {
            var r = await Memory.UserAccessResult(mm, p, write: true, value);
            if (r.Fault != VmFault.Ok)
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedFault, $"{a.File}:{a.Line}: memset: the store at 0x{p:x} of {mm} ends with {r.Fault}", p);
                return;
            }
        }
    }

    /// <summary>range_maps_duplicates (tools/testing/selftests/mm/ksm_functional_tests.c): pagemap pfns of the present pages, pairwise distinct.</summary>
    static async ValueTask ExpectNoDuplicates(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr"), end = addr + a.GetULong("len");
        var seen = new Dictionary<ulong, ulong>();
        for (ulong p = addr; p < end; p += MmStruct.PageSize)
        {
            await w.K.S.Point(PointKind.PteRead, p);
            ulong e = TaskMmu.PagemapEntry(mm, p);
            if ((e >> TaskMmu.PmPresent & 1) == 0) continue;
            ulong pfn = e & ((1UL << 55) - 1);
            if (pfn == 0) continue;
            if (seen.TryGetValue(pfn, out var first))
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: {mm} maps pfn 0x{pfn:x} at 0x{first:x} and at 0x{p:x}: the range maps duplicates", p);
                return;
            }
            seen[pfn] = p;
        }
    }
}
