using MmuSim.Scenarios;

namespace MmuSim.Kvm;

/// <summary>
/// Scenario ops for KVM's private memory (6.8+): KVM_CREATE_GUEST_MEMFD, fallocate(PUNCH_HOLE) and close of a
/// guest_memfd (<see cref="GuestMemfd"/>), and KVM_SET_MEMORY_ATTRIBUTES. A slot is bound with memslot.add/memslot.set
/// and `gmem:`; the VM must be `type: sw-protected`.
/// </summary>
public static class GuestMemfdOps
{
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("gmem.create", "KVM_CREATE_GUEST_MEMFD: a guest_memfd of size bytes for vm, named name; flags (none are valid); " +
            "expect: the errno (default ok; einval before 6.8, for flags or a size that is 0 or not page aligned)",
            ["vm", "name", "size"], ["flags", "expect"], Create)
        { Check = (a, _) => { a.GetULong("size"); a.GetULong("flags", 0); a.GetErrno("expect"); } });
        r.Register(new OpSpec("gmem.punch-hole", "fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) on a guest_memfd: kvm_gmem_invalidate_begin over the bound gfns " +
            "(mmu_invalidate_begin, zap), drop the pages, kvm_gmem_invalidate_end; offset and len in bytes; expect: the errno (default ok)",
            ["gmem", "offset", "len"], ["expect"], PunchHole)
        { Check = (a, _) => { a.GetULong("offset"); a.GetULong("len"); a.GetErrno("expect"); } });
        r.Register(new OpSpec("gmem.close", "the last close of a guest_memfd (kvm_gmem_release): invalidate every binding, drop the pages; the slots' private gfns fault with -EFAULT from then on",
            ["gmem"], [], Close));
        r.Register(new OpSpec("vm.set-memory-attributes", "KVM_SET_MEMORY_ATTRIBUTES over [gpa, gpa+size): private: true sets KVM_MEMORY_ATTRIBUTE_PRIVATE (a VM of type sw-protected only), false clears it; " +
            "the range is zapped between an mmu_invalidate_begin and end; expect: the errno (default ok)",
            ["vm", "gpa", "size", "private"], ["expect"], SetAttributes)
        { Check = (a, _) => { a.GetULong("gpa"); a.GetULong("size"); a.GetBool("private"); a.GetErrno("expect"); } });
    }

    static ValueTask Create(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        string name = a.GetString("name");
        if (w.Objects.ContainsKey(name)) throw a.Error("name", $"an object named '{name}' already exists");
        var (err, file) = vm.CreateGuestMemfd(name, a.GetULong("size"), a.GetULong("flags", 0));
        if (file != null) w.Objects[name] = file;
        w.ExpectErrno(a, err, $"{vm.Name} KVM_CREATE_GUEST_MEMFD ({name})");
        return ValueTask.CompletedTask;
    }

    static async ValueTask PunchHole(ScenarioWorld w, OpArgs a)
    {
        var g = w.Get<GuestMemfd>(a, "gmem");
        int err = await g.PunchHole(a.GetULong("offset"), a.GetULong("len"));
        w.ExpectErrno(a, err, $"fallocate(PUNCH_HOLE) on {g.Name}");
    }

    static ValueTask Close(ScenarioWorld w, OpArgs a) => w.Get<GuestMemfd>(a, "gmem").Release();

    static async ValueTask SetAttributes(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        int err = await vm.SetMemoryAttributes(a.GetULong("gpa"), a.GetULong("size"), a.GetBool("private"));
        w.ExpectErrno(a, err, $"{vm.Name} KVM_SET_MEMORY_ATTRIBUTES");
    }
}
