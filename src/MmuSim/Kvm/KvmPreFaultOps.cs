using MmuSim.Scenarios;

namespace MmuSim.Kvm;

/// <summary>
/// Scenario op for KVM_PRE_FAULT_MEMORY (<see cref="KvmVcpu.PreFaultMemory"/>), as pre_fault_memory_test.c calls it:
/// one ioctl over [gpa, gpa+size) on a vCPU, its return and the size it leaves in the range compared by the op.
/// </summary>
public static class KvmPreFaultOps
{
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("vcpu.pre-fault", "KVM_PRE_FAULT_MEMORY (6.10+, x86 TDP; -EOPNOTSUPP on the shadow MMU, -EINVAL where the ioctl does not exist): " +
            "map [gpa, gpa+size) into the VM's SPTEs under kvm->srcu; flags (must be 0); expect: the return, an errno or several comma separated " +
            "(default ok; a prefault that mapped at least one page returns ok); remaining: the range.size the ioctl writes back (default: not checked); " +
            "resume: true instead of gpa and size continues this vCPU's previous range if bytes were left (pre_fault_memory_test's `if (range.size) continue`) and calls " +
            "again until no bytes are left or a call fails; else keeps its result. Every call also checks the test's `(range.size < prev) ^ (ret < 0)`",
            ["vm"], ["gpa", "size", "resume", "vcpu", "flags", "expect", "remaining"], PreFault)
        {
            Check = (a, _) =>
            {
                if (a.GetBool("resume"))
                {
                    if (a.Has("gpa") || a.Has("size")) throw a.Error(a.Has("gpa") ? "gpa" : "size", "resume continues the previous range: no gpa or size");
                }
                else
                {
                    if (!a.Has("gpa")) throw a.Error("gpa", "missing (or resume: true)");
                    if (!a.Has("size")) throw a.Error("size", "missing (or resume: true)");
                    a.GetULong("gpa");
                    a.GetULong("size");
                }
                a.GetULong("flags", 0);
                if (a.Has("remaining")) a.GetULong("remaining");
                if (a.Has("vcpu")) a.GetBounded("vcpu", 0, 255);
                Expected(a);
            },
        });
    }

    /// <summary>The errnos <c>expect</c> allows.</summary>
    static int[] Expected(OpArgs a)
    {
        var names = a.GetString("expect", "ok").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (names.Length == 0) throw a.Error("expect", "expected at least one errno");
        var errnos = new int[names.Length];
        for (int i = 0; i < names.Length; i++)
            if (!Errno.TryParse(names[i], out errnos[i])) throw a.Error("expect", $"'{names[i]}' is not an errno ({Errno.KnownList})");
        return errnos;
    }

    static async ValueTask PreFault(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var vcpu = vm.Vcpu(a.GetInt("vcpu", 0));
        string key = $"pre-fault:{vm.Name}:{vcpu.Index}";
        PreFaultResult r;
        if (a.GetBool("resume"))
        {
            if (w.Objects.GetValueOrDefault(key) is not PreFaultResult prev) throw a.Error("resume", $"{vm.Name} vcpu{vcpu.Index} has no earlier vcpu.pre-fault to continue");
            // The test's loop after the slot is back: call again until nothing is left or a call fails.
            r = prev;
            for (bool first = true; r.Size != 0 && (first || r.Errno >= 0) && w.K.S.Violation == null; first = false)
                r = await Call(w, a, vcpu, r.Gpa, r.Size);
        }
        else r = await Call(w, a, vcpu, a.GetULong("gpa"), a.GetULong("size"));
        w.Objects[key] = r;
        if (w.K.S.Violation != null) return;
        var want = Expected(a);
        if (Array.IndexOf(want, r.Errno) < 0)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {vm.Name} vcpu{vcpu.Index} KVM_PRE_FAULT_MEMORY returned {Errno.NameOf(r.Errno)}, expected {a.GetString("expect", "ok")}");
        else if (a.Has("remaining") && r.Size != a.GetULong("remaining"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {vm.Name} vcpu{vcpu.Index} KVM_PRE_FAULT_MEMORY left size 0x{r.Size:x}, expected 0x{a.GetULong("remaining"):x}");
    }

    /// <summary>One ioctl, with pre_fault_memory_test's check that the range moved exactly when the call succeeded.</summary>
    static async ValueTask<PreFaultResult> Call(ScenarioWorld w, OpArgs a, KvmVcpu vcpu, ulong gpa, ulong size)
    {
        var r = await vcpu.PreFaultMemory(gpa, size, a.GetULong("flags", 0));
        if (w.K.S.Violation == null && (r.Size < size) == (r.Errno < 0))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {vcpu.Kvm.Name} vcpu{vcpu.Index} KVM_PRE_FAULT_MEMORY returned {Errno.NameOf(r.Errno)} with size 0x{size:x} -> 0x{r.Size:x} " +
                $"(\"{(r.Errno < 0 ? "not " : "")}expecting range.size to change on {(r.Errno < 0 ? "failure" : "success")}\")");
        return r;
    }
}
