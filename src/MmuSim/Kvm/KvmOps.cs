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
            "; no_accessed_bit: age by zapping (EPT without A/D); pfncache: " + PfnCacheOps.KnownDesigns + " (where gfn_to_pfn_caches are invalidated; default start-hook = mainline)",
            ["process", "name"], ["arch", "no_accessed_bit", "apic_hva", "pfncache"], VmCreate)
        {
            Check = (a, _) =>
            {
                if (a.Has("arch") && !KvmArchInfo.TryParse(a.GetString("arch"), out KvmArch _))
                    throw a.Error("arch", $"unknown arch '{a.GetString("arch")}' (known: {KvmArchInfo.KnownList})");
                if (a.Has("pfncache") && !PfnCacheOps.TryParseDesign(a.GetString("pfncache"), out PfnCacheDesign _))
                    throw a.Error("pfncache", $"unknown pfn cache design '{a.GetString("pfncache")}' (known: {PfnCacheOps.KnownDesigns})");
                a.GetBool("no_accessed_bit");
                if (a.Has("apic_hva")) a.GetAddress("apic_hva");
            },
        });
        r.Register(new OpSpec("vm.destroy", "kvm_destroy_vm: unregister the notifier (->release zaps everything)", Vm, [], VmDestroy));
        r.Register(new OpSpec("memslot.add", "KVM_SET_USER_MEMORY_REGION: gfn..gfn+pages backed by hva; flags: readonly, log-dirty",
            ["vm", "gfn", "pages", "hva"], ["slot", "flags"], MemslotAdd) { Check = CheckMemslot });
        r.Register(new OpSpec("memslot.move", "move slot to a new base gfn (invalidate, zap, publish)", ["vm", "slot", "gfn"], [], MemslotMove)
        { Check = (a, _) => { a.GetInt("slot"); a.GetBounded("gfn", 0, ScenarioLimits.GfnLimit - 1); } });
        r.Register(new OpSpec("memslot.delete", "delete slot (invalidate, zap, publish; waits for in-flight invalidations from 5.13)",
            ["vm", "slot"], [], MemslotDelete) { Check = (a, _) => a.GetInt("slot") });
        r.Register(new OpSpec("guest.read", "guest load from gfn on vcpu (pages: each of gfn..gfn+pages-1 in turn); `expect` checks the value, `error: efault` expects an exit to the VMM (any: either)",
            ["vm", "gfn"], ["vcpu", "as", "expect", "error", "pages"], GuestRead) { Check = CheckGuest });
        r.Register(new OpSpec("guest.write", "guest store of value to gfn on vcpu (pages: each of gfn..gfn+pages-1 in turn); `error: efault` expects an exit to the VMM",
            ["vm", "gfn", "value"], ["vcpu", "error", "pages"], GuestWrite) { Check = (a, i) => { a.GetULong("value"); CheckGuest(a, i); } });
        r.Register(new OpSpec("vm.expect-stats", "KVM binary stats pf_taken / pf_fixed: their change since the previous vm.expect-stats of this VM (or its creation); a different count is an unexpected-value violation; `as` stores them as <as>.pf_taken, <as>.pf_fixed",
            Vm, ["pf_taken", "pf_fixed", "as"], ExpectStats)
        { Check = (a, _) => { if (a.Has("pf_taken")) a.GetULong("pf_taken"); if (a.Has("pf_fixed")) a.GetULong("pf_fixed"); } });
        r.Register(new OpSpec("dirty-log.enable", "turn on KVM_MEM_LOG_DIRTY_PAGES for slot (write-protects its SPTEs)",
            ["vm", "slot"], [], DirtyLogEnable) { Check = (a, _) => a.GetInt("slot") });
        r.Register(new OpSpec("dirty-log.get", "KVM_GET_DIRTY_LOG (get and clear); `expect`: the exact gfn list (empty string = none)",
            ["vm", "slot"], ["expect"], DirtyLogGet) { Check = (a, _) => { a.GetInt("slot"); ParseGfns(a); } });
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
        if (a.Has("slot")) a.GetInt("slot");
        ParseFlags(a);
    }

    static MemslotFlags ParseFlags(OpArgs a)
    {
        var f = MemslotFlags.None;
        if (!a.Has("flags")) return f;
        foreach (var s in a.GetString("flags").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            f |= s switch
            {
                "readonly" or "ro" => MemslotFlags.ReadOnly,
                "log-dirty" or "dirty-log" => MemslotFlags.LogDirtyPages,
                _ => throw a.Error("flags", $"unknown memslot flag '{s}' (known: readonly, log-dirty)"),
            };
        return f;
    }

    static void CheckGuest(OpArgs a, ScenarioInfo _)
    {
        a.GetULong("gfn");
        if (a.Has("vcpu") && a.GetInt("vcpu") > 255) throw a.Error("vcpu", "vCPU index must be 0..255");
        if (a.Has("expect")) a.GetULong("expect");
        if (a.Has("pages") && a.GetULong("pages") is 0 or > 1UL << 20) throw a.Error("pages", "pages must be 1..1048576");
        if (a.Has("error") && a.GetString("error") is not ("efault" or "none" or "any"))
            throw a.Error("error", $"'{a.GetString("error")}' is not an expected error (efault, none, any)");
    }

    static List<ulong>? ParseGfns(OpArgs a)
    {
        if (!a.Has("expect")) return null;
        var list = new List<ulong>();
        foreach (var s in a.GetString("expect").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            list.Add(OpArgs.TryParseULong(s, out var g) ? g : throw a.Error("expect", $"'{s}' is not a gfn"));
        return list;
    }

    static Memslot Slot(Kvm vm, OpArgs a)
    {
        int id = a.GetInt("slot");
        foreach (var s in vm.Memslots)
            if (s.Id == id) return s;
        throw a.Error("slot", $"{vm.Name} has no memslot {id}");
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
        vm.NoAccessedBit = a.GetBool("no_accessed_bit");
        if (a.Has("pfncache") && PfnCacheOps.TryParseDesign(a.GetString("pfncache"), out var design)) vm.PfnCache = design;
        if (a.Has("apic_hva")) vm.ApicAccessHva = a.GetAddress("apic_hva");
        w.Objects[name] = vm;
        w.Objects["report:" + name] = new VmReport(vm);
    }

    static ValueTask VmDestroy(ScenarioWorld w, OpArgs a) => w.Get<Kvm>(a, "vm").DestroyVm();

    // ---------------------------------------------------------------- memslots

    static async ValueTask MemslotAdd(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        ulong gfn = a.GetULong("gfn"), pages = a.GetULong("pages");
        int id = a.Has("slot") ? a.GetInt("slot") : vm.NextSlotId();
        foreach (var s in vm.Memslots)
            if (s.Id == id) throw a.Error("slot", $"{vm.Name} already has memslot {id}");
        if (vm.OverlappingSlot(gfn, pages) is { } other)
            throw a.Error("gfn", $"gfn range [0x{gfn:x}, 0x{gfn + pages:x}) overlaps {other} (KVM_SET_USER_MEMORY_REGION: -EEXIST)");
        int r = await vm.SetMemoryRegion(id, gfn, pages, a.GetAddress("hva"), ParseFlags(a));
        if (r != 0) throw a.Error("gfn", $"KVM_SET_USER_MEMORY_REGION failed: {r}");
    }

    static async ValueTask MemslotMove(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        ulong gfn = a.GetULong("gfn");
        if (vm.OverlappingSlot(gfn, s.NPages, s) is { } other)
            throw a.Error("gfn", $"moving {s} to gfn 0x{gfn:x} overlaps {other} (-EEXIST)");
        int r = await vm.SetMemoryRegion(s.Id, gfn, s.NPages, s.UserspaceAddr, s.Flags & ~MemslotFlags.Invalid);
        if (r != 0) throw a.Error("gfn", $"KVM_SET_USER_MEMORY_REGION failed: {r}");
    }

    static async ValueTask MemslotDelete(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        await vm.SetMemoryRegion(s.Id, s.BaseGfn, 0, s.UserspaceAddr, MemslotFlags.None);
    }

    // ---------------------------------------------------------------- guest accesses

    static KvmVcpu VcpuOf(ScenarioWorld w, OpArgs a, out Kvm vm, out ulong gfn)
    {
        vm = w.Get<Kvm>(a, "vm");
        gfn = a.GetULong("gfn");
        if (vm.GfnToMemslot(gfn) == null)
            throw a.Error("gfn", $"gfn 0x{gfn:x} is outside every memslot of {vm.Name} ({string.Join("; ", vm.Memslots)})");
        return vm.Vcpu(a.GetInt("vcpu", 0));
    }

    static async ValueTask GuestRead(ScenarioWorld w, OpArgs a)
    {
        var v = VcpuOf(w, a, out var vm, out ulong first);
        ulong pages = a.GetULong("pages", 1);
        for (ulong gfn = first; gfn < first + pages && w.K.S.Violation == null; gfn++)
        {
            if (vm.GfnToMemslot(gfn) == null) throw a.Error("pages", $"gfn 0x{gfn:x} is outside every memslot of {vm.Name}");
            var r = await v.GuestRead(gfn);
            if (!CheckError(w, a, r, vm, gfn)) continue;
            if (a.Has("as")) w.Observed[a.GetString("as")] = r.Value;
            if (a.Has("expect") && r.Value != a.GetULong("expect"))
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: {vm.Name} vcpu{v.Index} reads 0x{r.Value:x} at gfn 0x{gfn:x}, expected 0x{a.GetULong("expect"):x}");
        }
    }

    static async ValueTask GuestWrite(ScenarioWorld w, OpArgs a)
    {
        var v = VcpuOf(w, a, out var vm, out ulong first);
        ulong pages = a.GetULong("pages", 1);
        for (ulong gfn = first; gfn < first + pages && w.K.S.Violation == null; gfn++)
        {
            if (vm.GfnToMemslot(gfn) == null) throw a.Error("pages", $"gfn 0x{gfn:x} is outside every memslot of {vm.Name}");
            var r = await v.GuestWrite(gfn, a.GetULong("value"));
            CheckError(w, a, r, vm, gfn);
        }
    }

    sealed class StatsMark { public long Taken, Fixed; }

    static ValueTask ExpectStats(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        string key = "stats-mark:" + vm.Name;
        var mark = w.Objects.TryGetValue(key, out var o) && o is StatsMark m ? m : new StatsMark();
        long taken = w.K.Stats[Stat.KvmPfTaken] - mark.Taken, fixd = w.K.Stats[Stat.KvmPfFixed] - mark.Fixed;
        mark.Taken += taken;
        mark.Fixed += fixd;
        w.Objects[key] = mark;
        if (a.Has("as"))
        {
            w.Observed[a.GetString("as") + ".pf_taken"] = (ulong)taken;
            w.Observed[a.GetString("as") + ".pf_fixed"] = (ulong)fixd;
        }
        if ((a.Has("pf_taken") && (ulong)taken != a.GetULong("pf_taken")) || (a.Has("pf_fixed") && (ulong)fixd != a.GetULong("pf_fixed")))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {vm.Name} pf_taken +{taken} pf_fixed +{fixd}, expected +{a.GetString("pf_taken", "?")} / +{a.GetString("pf_fixed", "?")}");
        return default;
    }

    /// <summary>Compare the access's outcome with <c>error:</c>. Returns true if it succeeded.</summary>
    static bool CheckError(ScenarioWorld w, OpArgs a, GuestAccessResult r, Kvm vm, ulong gfn)
    {
        string want = a.GetString("error", "none");
        bool wantError = want == "efault";
        if (want != "any" && r.Ok == wantError)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {vm.Name} access to gfn 0x{gfn:x} {(r.Ok ? "succeeded" : "failed with " + r.Error)}, expected {(wantError ? "an error" : "success")}");
        return r.Ok;
    }

    // ---------------------------------------------------------------- dirty logging and aging

    static async ValueTask DirtyLogEnable(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        await vm.SetMemoryRegion(s.Id, s.BaseGfn, s.NPages, s.UserspaceAddr, (s.Flags & ~MemslotFlags.Invalid) | MemslotFlags.LogDirtyPages);
    }

    static async ValueTask DirtyLogGet(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        if (!s.LogDirty) throw a.Error("slot", $"{s} does not log dirty pages (dirty-log.enable first)");
        var got = await vm.GetDirtyLog(s);
        var want = ParseGfns(a);
        if (want == null) return;
        got.Sort();
        want.Sort();
        if (!got.SequenceEqual(want))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: dirty log of {s} is [{string.Join(", ", got.Select(g => $"0x{g:x}"))}], expected [{string.Join(", ", want.Select(g => $"0x{g:x}"))}]");
    }

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
            w.WriteLine($"present SPTEs {vm.PresentSptes} ({Spte.Size} bytes each)");
            foreach (var s in vm.Memslots) w.WriteLine(s.ToString());
            foreach (var g in vm.PfnCaches) w.WriteLine($"{g} ({g.Retries} hva_to_pfn_retry retries, {PfnCacheOps.NameOf(vm.PfnCache)} design)");
        }
    }
}
