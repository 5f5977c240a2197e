using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Kvm;

/// <summary>
/// Scenario ops for KVM: VMs, memslots, guest accesses, dirty logging, aging. Registered through
/// <see cref="OpRegistry.Providers"/>. Fields: <c>vm</c> names a VM created by <c>vm.create</c>; gfns and slot ids are
/// numbers; <c>vcpu</c> is an index (default 0). Bad input (an overlapping memslot, a gfn outside every memslot, a VM on
/// an exited process) is a <see cref="ScenarioException"/> (exit code 2).
/// </summary>
public static class KvmOps
{
    static readonly string[] Vm = ["vm"];

    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("vm.create", "kvm_create_vm on process: one mmu_notifier subscription; arch: " + KvmArchInfo.KnownList +
            "; no_accessed_bit: age by zapping (EPT without A/D); pfncache: " + PfnCacheOps.KnownDesigns + " (where gfn_to_pfn_caches are invalidated; default start-hook = mainline)" +
            "; mn_invalidate_lock: spinlock (mainline through 6.18) or raw (the Feb 2026 patch 'make mn_invalidate_lock non-sleeping for non-blocking invalidations'; matters under preempt_rt)",
            ["process", "name"], ["arch", "no_accessed_bit", "apic_hva", "pfncache", "mmio_caching", "type", "mn_invalidate_lock"], VmCreate)
        {
            Check = (a, _) =>
            {
                if (a.Has("type") && a.GetString("type") is not ("default" or "sw-protected"))
                    throw a.Error("type", $"unknown VM type '{a.GetString("type")}' (known: default, sw-protected)");
                if (a.GetString("type", "default") == "sw-protected" && a.GetString("arch", "x86-tdp") != "x86-tdp")
                    throw a.Error("type", "KVM_X86_SW_PROTECTED_VM needs arch x86-tdp (the TDP MMU)");
                if (a.Has("arch") && !KvmArchInfo.TryParse(a.GetString("arch"), out KvmArch _))
                    throw a.Error("arch", $"unknown arch '{a.GetString("arch")}' (known: {KvmArchInfo.KnownList})");
                if (a.Has("pfncache") && !PfnCacheOps.TryParseDesign(a.GetString("pfncache"), out PfnCacheDesign _))
                    throw a.Error("pfncache", $"unknown pfn cache design '{a.GetString("pfncache")}' (known: {PfnCacheOps.KnownDesigns})");
                a.GetBool("no_accessed_bit");
                a.GetBool("mmio_caching");
                if (a.Has("mn_invalidate_lock") && a.GetString("mn_invalidate_lock") is not ("spinlock" or "raw"))
                    throw a.Error("mn_invalidate_lock", $"unknown lock kind '{a.GetString("mn_invalidate_lock")}' (known: spinlock, raw)");
                if (a.Has("apic_hva")) a.GetAddress("apic_hva");
            },
        });
        r.Register(new OpSpec("vm.destroy", "kvm_destroy_vm: unregister the notifier (->release zaps everything)", Vm, [], VmDestroy));
        r.Register(new OpSpec("memslot.add", "KVM_SET_USER_MEMORY_REGION: gfn..gfn+pages backed by hva; flags: readonly, log-dirty; " +
            "count: N consecutive slots (ids slot.., gfns and hvas pages apart), stopping at the first error; expect: the errno (default ok)",
            ["vm", "gfn", "pages", "hva"], ["slot", "flags", "expect", "count", "gmem", "gmem_offset"], MemslotAdd) { Check = CheckMemslot });
        r.Register(new OpSpec("memslot.set", "KVM_SET_USER_MEMORY_REGION(2) with raw fields, checked as __kvm_set_memory_region does: slot (as_id << 16 | id), " +
            "flags (names or a number), gpa, size (bytes; 0 deletes), hva; api: v1 | v2; gmem, gmem_offset: the guest_memfd and offset (bytes) of a KVM_MEM_GUEST_MEMFD slot; " +
            "expect: the errno (default ok)",
            ["vm", "slot", "gpa", "size"], ["hva", "flags", "api", "expect", "gmem", "gmem_offset"], MemslotSet) { Check = CheckMemslotSet });
        r.Register(new OpSpec("memslot.move", "move slot to a new base gfn (invalidate, zap, publish); expect: the errno (default ok)",
            ["vm", "slot", "gfn"], ["expect"], MemslotMove)
        { Check = (a, _) => { a.GetInt("slot"); a.GetBounded("gfn", 0, ScenarioLimits.GfnLimit - 1); a.GetErrno("expect"); } });
        r.Register(new OpSpec("memslot.delete", "delete slot (invalidate, zap, publish; waits for in-flight invalidations from 5.13); expect: the errno (default ok)",
            ["vm", "slot"], ["expect"], MemslotDelete) { Check = (a, _) => { a.GetInt("slot"); a.GetErrno("expect"); } });
        r.Register(new OpSpec("vm.check-extension", "KVM_CHECK_EXTENSION: cap nr-memslots (KVM_CAP_NR_MEMSLOTS) or readonly-mem; a different value is an unexpected-value violation",
            ["vm", "cap", "expect"], [], CheckExtension)
        { Check = (a, _) => { if (Array.IndexOf(Caps, a.GetString("cap")) < 0) throw a.Error("cap", $"unknown capability '{a.GetString("cap")}' (known: {string.Join(", ", Caps)})"); a.GetULong("expect"); } });
        r.Register(new OpSpec("vmm.mmio-handler", "the VMM's answer to KVM_EXIT_MMIO: every MMIO load of the VM gets value and KVM_RUN resumes (none: no handler, the exit is the access's error)",
            ["vm", "value"], [], MmioHandler) { Check = (a, _) => { if (a.GetString("value") != "none") a.GetULong("value"); } });
        r.Register(new OpSpec("guest.fetch", "guest instruction fetch from gfn on vcpu (x86 only): as guest.read, but a gfn no memslot covers cannot be emulated: " +
            "`error: internal-error` expects KVM_EXIT_INTERNAL_ERROR (KVM_INTERNAL_ERROR_EMULATION); `error: efault`, `none` (default) or `any` as for guest.read",
            ["vm", "gfn"], ["vcpu", "error"], GuestFetch) { Check = CheckGuest });
        r.Register(new OpSpec("guest.read", "guest load from gfn on vcpu (pages: each of gfn..gfn+pages-1 in turn); `expect` checks the value, `error: efault` expects KVM_RUN to fail, `error: mmio` an unanswered KVM_EXIT_MMIO (a gfn without memslot; any: either)",
            ["vm", "gfn"], ["vcpu", "as", "expect", "error", "pages"], GuestRead) { Check = CheckGuest });
        r.Register(new OpSpec("guest.write", "guest store of value to gfn on vcpu (pages: each of gfn..gfn+pages-1 in turn); `error: efault` expects KVM_RUN to fail, `error: mmio` an unanswered KVM_EXIT_MMIO (no memslot, or a read-only one), `error: ring-full` KVM_EXIT_DIRTY_RING_FULL",
            ["vm", "gfn", "value"], ["vcpu", "error", "pages"], GuestWrite) { Check = (a, i) => { a.GetULong("value"); CheckGuest(a, i); } });
        r.Register(new OpSpec("vm.expect-stats", "KVM binary stats, by their KVM_GET_STATS_FD names (" + string.Join(", ", BinaryStats.Select(b => b.Name)) +
            "): their change since the previous vm.expect-stats of this VM (or its creation); a different count is an unexpected-value violation; `as` stores them as <as>.<name>",
            Vm, [.. BinaryStats.Select(b => b.Name), "as"], ExpectStats)
        { Check = (a, _) => { foreach (var (name, _) in BinaryStats) if (a.Has(name)) a.GetULong(name); } });
        KvmDirtyLogOps.Register(r);
        KvmPreFaultOps.Register(r);
        GuestMemfdOps.Register(r);
        r.Register(new OpSpec("vm.age", "clear_flush_young (clear_young with flush: false, test_young with test: true) page by page over [addr, addr+len) of the VM's process; `young`: expected count of young pages; `as` stores the count",
            ["vm", "addr", "len"], ["young", "flush", "test", "as"], VmAge) { Check = (a, _) => { if (a.Has("young")) a.GetInt("young"); a.GetBool("flush", true); a.GetBool("test", false); } });
        r.Register(new OpSpec("vm.expect-no-page-refs", "the page behind gfn has no reference beyond its mappings (page_count == page_mapcount: what KSM's write_protect_page needs); else unexpected-value",
            ["vm", "gfn"], [], ExpectNoPageRefs) { Check = (a, _) => a.GetULong("gfn") });
        PfnCacheOps.Register(r);
        r.Register(new OpSpec("vm.expect-sptes", "the number of present SPTEs of the VM; a different count is an unexpected-value violation",
            ["vm", "count"], [], ExpectSptes) { Check = (a, _) => a.GetInt("count") });
    }

    // ---------------------------------------------------------------- parsing

    static void CheckMemslot(OpArgs a, ScenarioInfo _)
    {
        ulong gfn = a.GetBounded("gfn", 0, ScenarioLimits.GfnLimit - 1);
        if (a.GetULong("pages") == 0) throw a.Error("pages", "a memslot needs at least one page");
        ulong pages = a.GetBounded("pages", 1, ScenarioLimits.MaxMemslotPages);
        if (gfn + pages > ScenarioLimits.GfnLimit) throw a.Error("pages", $"gfn 0x{gfn:x} + {pages} pages passes the guest frame limit 0x{ScenarioLimits.GfnLimit:x}");
        ulong hva = a.GetAddress("hva");
        if (hva + (pages << MmStruct.PageShift) > 1UL << 47) throw a.Error("pages", "hva + pages extends past the 47-bit user address space");
        if (a.Has("slot")) a.GetBounded("slot", 0, 0xffff);
        ulong count = a.GetBounded("count", 1, 32768, 1);
        if (count > 1 && gfn + count * pages > ScenarioLimits.GfnLimit) throw a.Error("count", $"{count} slots of {pages} pages from gfn 0x{gfn:x} pass the guest frame limit");
        if (count > 1 && hva + count * (pages << MmStruct.PageShift) > 1UL << 47) throw a.Error("count", "the slots' hvas extend past the 47-bit user address space");
        ParseFlags(a);
        CheckGmemFields(a);
        a.GetErrno("expect");
    }

    static readonly string[] Caps = ["nr-memslots", "readonly-mem"];

    /// <summary>The KVM binary stats a scenario can compare, by their KVM_GET_STATS_FD names (vCPU stats summed over vCPUs).</summary>
    static readonly (string Name, Stat Stat)[] BinaryStats =
    [
        ("pf_taken", Stat.KvmPfTaken), ("pf_fixed", Stat.KvmPfFixed), ("pf_fast", Stat.KvmPfFast), ("pf_emulate", Stat.KvmPfEmulate),
        ("pf_mmio_spte_created", Stat.KvmPfMmioSpteCreated), ("exits", Stat.VmExits), ("mmio_exits", Stat.KvmMmioExits),
        ("tlb_flush", Stat.KvmVcpuTlbFlushes), ("remote_tlb_flush_requests", Stat.KvmRemoteTlbFlushes),
    ];

    /// <summary>gmem (a guest_memfd's name) and gmem_offset (bytes) of a KVM_MEM_GUEST_MEMFD slot.</summary>
    static void CheckGmemFields(OpArgs a)
    {
        if (a.Has("gmem")) a.GetString("gmem");
        if (a.Has("gmem_offset"))
        {
            if (!a.Has("gmem")) throw a.Error("gmem_offset", "gmem_offset without gmem");
            if (a.Op == "memslot.set") GmemOffsets(a);
            else a.GetULong("gmem_offset");
        }
    }

    /// <summary>memslot.set's gmem_offset: one offset, or "first..last" (bytes, at most 65536 of them): the ioctl once per offset, each with the same expect.</summary>
    static (ulong First, ulong Last) GmemOffsets(OpArgs a)
    {
        if (!a.Has("gmem_offset")) return (0, 0);
        string v = a.GetString("gmem_offset");
        int dots = v.IndexOf("..", StringComparison.Ordinal);
        if (dots < 0) { ulong one = a.GetULong("gmem_offset"); return (one, one); }
        if (!OpArgs.TryParseULong(v[..dots].Trim(), out ulong first) || !OpArgs.TryParseULong(v[(dots + 2)..].Trim(), out ulong last))
            throw a.Error("gmem_offset", $"'{v}' is not an offset or a range first..last");
        if (last < first || last - first >= 65536) throw a.Error("gmem_offset", $"range '{v}' must be ascending and at most 65536 offsets");
        return (first, last);
    }

    static void CheckMemslotSet(OpArgs a, ScenarioInfo _)
    {
        a.GetBounded("slot", 0, uint.MaxValue);
        CheckGmemFields(a);
        a.GetULong("gpa");
        ulong size = a.GetULong("size");
        if (a.Has("hva")) a.GetULong("hva");
        ParseFlags(a, raw: true);
        if (a.Has("api") && a.GetString("api") is not ("v1" or "v2")) throw a.Error("api", $"'{a.GetString("api")}' is not an API version (v1, v2)");
        a.GetErrno("expect");
        // The kernel takes up to KVM_MEM_MAX_NR_PAGES; the model allocates the SPTEs of a slot it accepts.
        if ((size & (MmStruct.PageSize - 1)) == 0 && size >> MmStruct.PageShift is > ScenarioLimits.MaxMemslotPages and <= Kvm.MaxNrPages)
            throw a.Error("size", $"{size >> MmStruct.PageShift} pages is above the model's memslot limit of {ScenarioLimits.MaxMemslotPages} pages");
    }

    /// <summary>
    /// The uapi KVM_MEM_* bits of <c>flags</c>: names (readonly, log-dirty); with <paramref name="raw"/> (memslot.set)
    /// also guest-memfd or one number, so that a scenario can pass bits KVM refuses.
    /// </summary>
    static uint ParseFlags(OpArgs a, bool raw = false)
    {
        if (!a.Has("flags")) return 0;
        string v = a.GetString("flags");
        if (raw && OpArgs.TryParseULong(v, out ulong n)) return n <= uint.MaxValue ? (uint)n : throw a.Error("flags", $"{n} does not fit the 32-bit flags field");
        uint f = 0;
        foreach (var s in v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            f |= s switch
            {
                "readonly" or "ro" => Kvm.KvmMemReadonly,
                "log-dirty" or "dirty-log" => Kvm.KvmMemLogDirtyPages,
                "guest-memfd" when raw => Kvm.KvmMemGuestMemfd,
                _ => throw a.Error("flags", $"unknown memslot flag '{s}' (known: readonly, log-dirty{(raw ? ", guest-memfd, or a number" : "")})"),
            };
        return f;
    }

    static void CheckGuest(OpArgs a, ScenarioInfo _)
    {
        a.GetULong("gfn");
        if (a.Has("vcpu") && a.GetInt("vcpu") > 255) throw a.Error("vcpu", "vCPU index must be 0..255");
        if (a.Has("expect")) a.GetULong("expect");
        if (a.Has("pages") && a.GetULong("pages") is 0 or > 1UL << 20) throw a.Error("pages", "pages must be 1..1048576");
        if (a.Has("error") && a.GetString("error") is not ("efault" or "mmio" or "ring-full" or "internal-error" or "none" or "any"))
            throw a.Error("error", $"'{a.GetString("error")}' is not an expected error (efault, mmio, ring-full, internal-error, none, any)");
    }

    static Memslot Slot(Kvm vm, OpArgs a)
    {
        int id = a.GetInt("slot");
        return vm.FindSlot(id) ?? throw a.Error("slot", $"{vm.Name} has no memslot {id}");
    }

    // ---------------------------------------------------------------- VMs

    static async ValueTask VmCreate(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name");
        if (w.Objects.ContainsKey(name)) throw a.Error("name", $"an object named '{name}' already exists");
        if (mm.Exited || mm.Users <= 0) throw a.Error("process", $"process '{a.GetString("process")}' has exited: a VM needs a live mm");
        KvmArchInfo.TryParse(a.GetString("arch", "x86-tdp"), out var arch);
        var vm = await Kvm.CreateVm(mm, name, arch);
        if (a.GetString("type", "default") == "sw-protected")
        {
            if (!w.K.Era.Has(Eras.Feature.KvmGuestMemfd)) throw a.Error("type", $"KVM_X86_SW_PROTECTED_VM does not exist in {w.K.Era.Name} (6.8+)");
            vm.SwProtected = true;
        }
        vm.NoAccessedBit = a.GetBool("no_accessed_bit");
        if (a.Has("mmio_caching")) vm.MmioCaching = a.GetBool("mmio_caching") && KvmArchInfo.IsX86(vm.Arch);
        if (a.Has("pfncache") && PfnCacheOps.TryParseDesign(a.GetString("pfncache"), out var design)) vm.PfnCache = design;
        if (a.Has("apic_hva")) vm.ApicAccessHva = a.GetAddress("apic_hva");
        vm.MnInvalidateLock.Raw = a.GetString("mn_invalidate_lock", "spinlock") == "raw";
        w.Objects[name] = vm;
        w.Objects["report:" + name] = new VmReport(vm);
    }

    static ValueTask VmDestroy(ScenarioWorld w, OpArgs a) => w.Get<Kvm>(a, "vm").DestroyVm();

    // ---------------------------------------------------------------- memslots

    static async ValueTask MemslotAdd(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        ulong gfn = a.GetULong("gfn"), pages = a.GetULong("pages"), hva = a.GetAddress("hva");
        int id = a.Has("slot") ? a.GetInt("slot") : vm.NextSlotId();
        ulong count = a.GetULong("count", 1);
        uint flags = ParseFlags(a);
        var gmem = a.Has("gmem") ? w.Get<GuestMemfd>(a, "gmem") : null;
        if (gmem != null) flags |= Kvm.KvmMemGuestMemfd;             // KVM_SET_USER_MEMORY_REGION2 with the guest_memfd fields
        int r = 0;
        ulong i = 0;
        for (; i < count && r == 0; i++)
            r = await vm.SetUserMemoryRegion((uint)id + (uint)i, flags, (gfn + i * pages) << MmStruct.PageShift, pages << MmStruct.PageShift,
                hva + i * (pages << MmStruct.PageShift), v2: gmem != null, gmem, a.GetULong("gmem_offset", 0) + i * (pages << MmStruct.PageShift));
        ExpectErrno(w, a, r, count == 1 ? $"memslot {id}" : $"memslot {id + (int)i - 1} (of {count} from {id})", vm);
    }

    static uint ToUapi(MemslotFlags f) =>
        ((f & MemslotFlags.LogDirtyPages) != 0 ? Kvm.KvmMemLogDirtyPages : 0) | ((f & MemslotFlags.ReadOnly) != 0 ? Kvm.KvmMemReadonly : 0);

    static async ValueTask MemslotSet(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        uint slot = (uint)a.GetULong("slot");
        // guest_memfd: any object's name, as a test passes any fd: one that is not a guest_memfd (the VM, a memfd) is -EINVAL.
        GuestMemfd? gmem = null;
        if (a.Has("gmem"))
        {
            string name = a.GetString("gmem");
            if (!w.Objects.TryGetValue(name, out var o)) throw a.Error("gmem", $"unknown guest_memfd, VM or file '{name}'");
            gmem = o as GuestMemfd;
        }
        var (first, last) = GmemOffsets(a);
        for (ulong off = first; ; off++)
        {
            int r = await vm.SetUserMemoryRegion(slot, ParseFlags(a, raw: true), a.GetULong("gpa"), a.GetULong("size"), a.GetULong("hva", 0),
                a.GetString("api", "v1") == "v2", gmem, off);
            ExpectErrno(w, a, r, first == last ? $"slot 0x{slot:x}" : $"slot 0x{slot:x}, guest_memfd_offset 0x{off:x}", vm);
            if (off == last || w.K.S.Violation != null) break;
        }
    }

    static async ValueTask MemslotMove(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        int r = await vm.SetUserMemoryRegion((uint)s.Id, ToUapi(s.Flags & ~MemslotFlags.Invalid), a.GetULong("gfn") << MmStruct.PageShift,
            s.NPages << MmStruct.PageShift, s.UserspaceAddr);
        ExpectErrno(w, a, r, $"moving {s}", vm);
    }

    static async ValueTask MemslotDelete(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        uint id = (uint)a.GetInt("slot");
        var s = vm.FindSlot((int)id);
        int r = await vm.SetUserMemoryRegion(id, 0, s == null ? 0 : s.BaseGfn << MmStruct.PageShift, 0, s?.UserspaceAddr ?? 0);
        ExpectErrno(w, a, r, $"deleting memslot {id}", vm);
    }

    /// <summary>Compare an ioctl's result with <c>expect:</c> (default ok): a different errno is an unexpected-value violation.</summary>
    static void ExpectErrno(ScenarioWorld w, OpArgs a, int r, string what, Kvm vm)
    {
        int want = a.GetErrno("expect");
        if (r != want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {vm.Name} KVM_SET_USER_MEMORY_REGION ({what}) returned {Errno.NameOf(r)}, expected {Errno.NameOf(want)}");
    }

    static ValueTask CheckExtension(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        string cap = a.GetString("cap");
        ulong got = cap == "nr-memslots" ? (ulong)vm.UserMemSlots : 1;
        if (got != a.GetULong("expect"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: KVM_CHECK_EXTENSION({cap}) is {got}, expected {a.GetULong("expect")}");
        return default;
    }

    static ValueTask MmioHandler(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        vm.Vmm.MmioReadValue = a.GetString("value") == "none" ? null : a.GetULong("value");
        return default;
    }

    // ---------------------------------------------------------------- guest accesses

    static KvmVcpu VcpuOf(ScenarioWorld w, OpArgs a, out Kvm vm, out ulong gfn)
    {
        vm = w.Get<Kvm>(a, "vm");
        gfn = a.GetULong("gfn");
        return vm.Vcpu(a.GetInt("vcpu", 0));
    }

    static async ValueTask GuestRead(ScenarioWorld w, OpArgs a)
    {
        var v = VcpuOf(w, a, out var vm, out ulong first);
        ulong pages = a.GetULong("pages", 1);
        for (ulong gfn = first; gfn < first + pages && w.K.S.Violation == null; gfn++)
        {
            var r = await v.GuestRead(gfn);
            if (!CheckError(w, a, r, vm, gfn)) continue;
            if (a.Has("as")) w.Observed[a.GetString("as")] = r.Value;
            if (a.Has("expect") && r.Value != a.GetULong("expect"))
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: {vm.Name} vcpu{v.Index} reads 0x{r.Value:x} at gfn 0x{gfn:x}, expected 0x{a.GetULong("expect"):x}");
        }
    }

    static async ValueTask GuestFetch(ScenarioWorld w, OpArgs a)
    {
        var v = VcpuOf(w, a, out var vm, out ulong gfn);
        if (!KvmArchInfo.IsX86(vm.Arch)) throw a.Error("vm", $"guest.fetch models x86's emulation failure; {vm.Name} is {vm.Arch}");
        CheckError(w, a, await v.GuestFetch(gfn), vm, gfn);
    }

    static async ValueTask GuestWrite(ScenarioWorld w, OpArgs a)
    {
        var v = VcpuOf(w, a, out var vm, out ulong first);
        ulong pages = a.GetULong("pages", 1);
        for (ulong gfn = first; gfn < first + pages && w.K.S.Violation == null; gfn++)
        {
            var r = await v.GuestWrite(gfn, a.GetULong("value"));
            CheckError(w, a, r, vm, gfn);
        }
    }

    /// <summary>The binary stats at the previous vm.expect-stats of a VM (model bookkeeping of the op).</summary>
    sealed class StatsMark { public readonly long[] At = new long[BinaryStats.Length]; }

    static ValueTask ExpectStats(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        string key = "stats-mark:" + vm.Name;
        var mark = w.Objects.TryGetValue(key, out var o) && o is StatsMark m ? m : new StatsMark();
        w.Objects[key] = mark;
        var wrong = new List<string>();
        for (int i = 0; i < BinaryStats.Length; i++)
        {
            var (name, stat) = BinaryStats[i];
            long delta = w.K.Stats[stat] - mark.At[i];
            mark.At[i] += delta;
            if (a.Has("as")) w.Observed[a.GetString("as") + "." + name] = (ulong)delta;
            if (a.Has(name) && (ulong)delta != a.GetULong(name)) wrong.Add($"{name} +{delta} (expected +{a.GetULong(name)})");
        }
        if (wrong.Count > 0)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {vm.Name} {string.Join(", ", wrong)}");
        return default;
    }

    /// <summary>Compare the access's outcome with <c>error:</c>. Returns true if it succeeded.</summary>
    static bool CheckError(ScenarioWorld w, OpArgs a, GuestAccessResult r, Kvm vm, ulong gfn)
    {
        string want = a.GetString("error", "none");
        string got = r.Ok ? "none" : r.Error switch { KvmFaultResult.Mmio => "mmio", KvmFaultResult.DirtyRingFull => "ring-full", KvmFaultResult.EmulationFailure => "internal-error", _ => "efault" };
        if (want != "any" && want != got)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {vm.Name} access to gfn 0x{gfn:x} {Describe(r)}, expected {want switch { "none" => "success", "mmio" => "an unanswered KVM_EXIT_MMIO", "ring-full" => "KVM_EXIT_DIRTY_RING_FULL", "internal-error" => "KVM_EXIT_INTERNAL_ERROR", _ => "-EFAULT" }}");
        return r.Ok;
    }

    static string Describe(GuestAccessResult r) => r.Ok ? "succeeded" : r.Error == KvmFaultResult.EmulationFailure
        ? "exited with KVM_EXIT_INTERNAL_ERROR (emulation failure: an instruction fetch from a gfn without memslot)" : r.Error == KvmFaultResult.DirtyRingFull
        ? "exited with KVM_EXIT_DIRTY_RING_FULL (vmm.dirty-ring-full: collect answers it)" : r.Error == KvmFaultResult.Mmio
        ? "exited to the VMM with KVM_EXIT_MMIO (no memslot, or a write to a read-only one; vmm.mmio-handler answers it)"
        : "failed with -EFAULT";

    // ---------------------------------------------------------------- dirty logging and aging

    static async ValueTask VmAge(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var mm = vm.MirroredMm;
        ulong start = a.GetAddress("addr"), end = start + a.GetULong("len");
        bool flush = a.GetBool("flush", true), test = a.GetBool("test", false);
        int young = 0;
        for (ulong va = start; va < end; va += MmStruct.PageSize)
            if (test ? await mm.Notifiers.TestYoung(va)
                : flush ? await mm.Notifiers.ClearFlushYoung(va, va + MmStruct.PageSize) : await mm.Notifiers.ClearYoung(va, va + MmStruct.PageSize))
                young++;
        if (a.Has("as")) w.Observed[a.GetString("as")] = (ulong)young;
        if (a.Has("young") && young != a.GetInt("young"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {young} page(s) young in [0x{start:x}, 0x{end:x}), expected {a.GetInt("young")}");
    }

    static async ValueTask ExpectNoPageRefs(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        ulong gfn = a.GetULong("gfn");
        var slot = vm.GfnToMemslot(gfn) ?? throw a.Error("gfn", $"gfn 0x{gfn:x} is outside every memslot of {vm.Name}");
        ulong hva = slot.GfnToHva(gfn);
        var mm = vm.MirroredMm;
        await w.K.S.Point(Sched.PointKind.Counter, hva);
        var (present, pfn, _, _) = mm.Translate(hva);
        if (!present || pfn == PhysMem.ZeroPfn) return;
        long head = w.K.Mem.FolioOf(pfn);
        int refs = w.K.Mem[head].RefCount, maps = w.K.Mem.FolioMapCount(head);
        if (refs != maps)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: page 0x{pfn:x} behind gfn 0x{gfn:x} has refcount {refs} but mapcount {maps}: someone holds a reference (KSM could never merge it)", hva, pfn);
    }

    static ValueTask ExpectSptes(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        if (vm.PresentSptes != a.GetInt("count"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {vm.Name} has {vm.PresentSptes} SPTE(s), expected {a.GetInt("count")}");
        return default;
    }

    sealed class VmReport(Kvm vm) : IRunReport
    {
        public string ReportTitle => $"kvm {vm.Name} ({KvmArchInfo.NameOf(vm.Arch)})";

        public void Report(TextWriter w)
        {
            w.WriteLine($"mmu_invalidate_seq {vm.InvalidateSeq}, in_progress {vm.InvalidateInProgress}, mn_active_invalidate_count {vm.MnActiveInvalidateCount}");
            w.WriteLine($"present SPTEs {vm.PresentSptes} ({Spte.Size} bytes each), MMIO SPTEs {vm.MmioSptes}, KVM_EXIT_MMIO seen by the VMM {vm.Vmm.MmioExits}");
            foreach (var s in vm.Memslots) w.WriteLine(s.ToString());
            foreach (var g in vm.PfnCaches) w.WriteLine($"{g} ({g.Retries} hva_to_pfn_retry retries, {PfnCacheOps.NameOf(vm.PfnCache)} design)");
        }
    }
}
