using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Hugetlb;

/// <summary>How an op may touch hugetlb memory at its <c>addr</c>/<c>len</c>.</summary>
public enum HugetlbSupport : byte
{
    /// <summary>The model does not take this path for VM_HUGETLB VMAs: the op is refused there.</summary>
    No,
    /// <summary>Modelled on hugetlb memory.</summary>
    Any,
    /// <summary>Modelled for ranges on huge page boundaries; others are -EINVAL (hugetlb_vm_op_split), a one-line error.</summary>
    Aligned,
}

/// <summary>
/// Scenario ops of hugetlb (<c>hugetlb.*</c>: the pool's sysctl and counters), and the check that keeps the other ops
/// off hugetlb memory where the model has no hugetlb path for them: a scenario that would reclaim, migrate, collapse or
/// register userfaultfd on a MAP_HUGETLB range gets `file:line: addr: ... not modelled on hugetlb memory` (exit 2),
/// never a THP path that the kernel does not take for hugetlb.
/// </summary>
public static class HugetlbOps
{
    /// <summary>Register the hugetlb ops (listed in <see cref="OpRegistry.Providers"/>).</summary>
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("hugetlb.set", "write /proc/sys/vm/nr_hugepages (knob: nr_hugepages, value 0..512); expect: the errno (ok by default)",
            ["knob", "value"], ["expect"], Set) { Check = (a, _) => { Knob(a); a.GetULong("value"); a.GetErrno("expect"); } });
        r.Register(new OpSpec("hugetlb.expect", "a hugetlb pool counter (nr_hugepages, free_hugepages) must equal value; else an unexpected-value violation",
            ["counter", "value"], [], Expect) { Check = (a, _) => { Counter(a); a.GetULong("value"); } });
    }

    static readonly string[] Counters = ["nr_hugepages", "free_hugepages"];

    static void Knob(OpArgs a)
    {
        if (a.GetString("knob") != "nr_hugepages") throw a.Error("knob", $"'{a.GetString("knob")}' is not a modelled hugetlb knob (nr_hugepages)");
    }

    static string Counter(OpArgs a)
    {
        var c = a.GetString("counter");
        return Array.IndexOf(Counters, c) >= 0 ? c : throw a.Error("counter", $"'{c}' is not a hugetlb counter ({string.Join(", ", Counters)})");
    }

    static ValueTask Set(ScenarioWorld w, OpArgs a)
    {
        w.ExpectErrno(a, HugetlbPages.Of(w.K).SetNrHugepages((long)Math.Min(a.GetULong("value"), long.MaxValue)), "nr_hugepages");
        return default;
    }

    static ValueTask Expect(ScenarioWorld w, OpArgs a)
    {
        var pool = HugetlbPages.Of(w.K);
        var c = Counter(a);
        long got = c == "nr_hugepages" ? pool.NrHugepages : pool.FreeHugepages, want = (long)a.GetULong("value");
        if (got != want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: /sys/kernel/mm/hugepages/hugepages-2048kB/{c} is {got}, expected {want}");
        return default;
    }

    /// <summary>madvise advice modelled on hugetlb memory (madvise_dontneed_free needs aligned ranges there, 5.18+).</summary>
    static HugetlbSupport Madvise(OpArgs a) => a.GetString("advice") switch
    {
        "dontfork" or "dofork" or "mergeable" or "unmergeable" or "populate_read" or "populate_write" => HugetlbSupport.Any,
        "dontneed" or "remove" => HugetlbSupport.Aligned, // remove: hugetlbfs_punch_hole of whole huge pages
        _ => HugetlbSupport.No,
    };

    /// <summary>The core ops that have a hugetlb path in the model; every other op with an addr is refused on hugetlb memory.</summary>
    static readonly Dictionary<string, Func<OpArgs, HugetlbSupport>> Supported = new(StringComparer.Ordinal)
    {
        ["read"] = static _ => HugetlbSupport.Any,
        ["write"] = static _ => HugetlbSupport.Any,
        ["fault"] = static _ => HugetlbSupport.Any,
        ["memset"] = static _ => HugetlbSupport.Any,
        ["expect-value"] = static _ => HugetlbSupport.Any,
        ["expect-page"] = static _ => HugetlbSupport.Any,
        ["expect-pagemap"] = static _ => HugetlbSupport.Any,
        ["expect-no-duplicates"] = static _ => HugetlbSupport.Any,
        ["pin"] = static _ => HugetlbSupport.Any,
        ["vmsplice"] = static _ => HugetlbSupport.Any,
        ["iouring-register"] = static _ => HugetlbSupport.Any,
        ["proc-mem-write"] = static _ => HugetlbSupport.Any,
        ["mirror.read"] = static _ => HugetlbSupport.Any,
        ["mirror.write"] = static _ => HugetlbSupport.Any,
        ["mmap"] = static _ => HugetlbSupport.Any, // overlap is mmap's own error; its flags were checked at load
        ["munmap"] = static _ => HugetlbSupport.Aligned,
        ["mremap"] = static a => a.Has("new_addr") && (a.GetAddress("new_addr") & ~MmStruct.PmdMask) != 0 ? HugetlbSupport.No : HugetlbSupport.Aligned, // move_hugetlb_page_tables (5.16+)
        ["mprotect"] = static _ => HugetlbSupport.Aligned,
        ["madvise"] = Madvise,
        ["move-pages"] = static _ => HugetlbSupport.Any, // anon hugetlb folios migrate from 3.12 (Hugetlb/HugetlbMigration.cs)
    };

    /// <summary>
    /// Refuse <paramref name="op"/> when its [addr, addr+len) touches a hugetlb VMA of its process and the model has no
    /// hugetlb path for it (or the range is not on huge page boundaries where it must be). Called before each op runs
    /// once some process maps hugetlb memory.
    /// </summary>
    public static void CheckOp(ScenarioWorld w, string op, OpArgs a)
    {
        if (!a.Has("addr") || !a.Has("process")) return;
        if (!w.Processes.TryGetValue(a.GetString("process"), out var mm)) return; // the op reports its own error
        ulong addr = a.GetAddress("addr"), len = a.Has("len") ? a.GetULong("len") : MmStruct.PageSize;
        Vma? hit = null;
        foreach (var v in mm.Vmas)
            if (v.IsHugetlb && v.Start < addr + len && addr < v.End) { hit = v; break; }
        if (hit == null) return;
        var support = Supported.TryGetValue(op, out var f) ? f(a) : HugetlbSupport.No;
        if (support == HugetlbSupport.No)
            throw a.Error("addr", $"{op}{(a.Has("advice") ? " " + a.GetString("advice") : "")} on hugetlb memory ({hit}) is not modelled");
        if (support == HugetlbSupport.Aligned && !HugetlbPages.Aligned(addr, len))
            throw a.Error((addr & ~MmStruct.PmdMask) != 0 ? "addr" : "len",
                $"[0x{addr:x}, 0x{addr + len:x}) is not on 2 MiB boundaries, as {op} on hugetlb memory ({hit}) must be (EINVAL)");
    }
}
