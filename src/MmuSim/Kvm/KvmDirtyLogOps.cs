using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>
/// Scenario ops for KVM dirty logging in its three modes (dirty_log_test's dirty-log, clear-log and dirty-ring):
/// <c>dirty-log.*</c> (bitmap, KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2),
/// <c>dirty-ring.*</c> (KVM_CAP_DIRTY_LOG_RING, the VMM's harvest, KVM_RESET_DIRTY_RINGS) and
/// <c>vmm.dirty-ring-full</c>. The harvest ops check afterwards that no guest write is lost (dirty-log-lost):
/// every gfn the guest wrote is reported or still pending in a bitmap or ring.
/// </summary>
public static class KvmDirtyLogOps
{
    static readonly string[] VmSlot = ["vm", "slot"];

    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("dirty-log.enable", "KVM_SET_USER_MEMORY_REGION adding KVM_MEM_LOG_DIRTY_PAGES to slot (write-protects its SPTEs, unless KVM_DIRTY_LOG_INITIALLY_SET)",
            VmSlot, [], (w, a) => SetLogging(w, a, true)) { Check = (a, _) => a.GetInt("slot") });
        r.Register(new OpSpec("dirty-log.disable", "KVM_SET_USER_MEMORY_REGION clearing KVM_MEM_LOG_DIRTY_PAGES (frees the bitmap, zaps collapsible SPTEs)",
            VmSlot, [], (w, a) => SetLogging(w, a, false)) { Check = (a, _) => a.GetInt("slot") });
        r.Register(new OpSpec("dirty-log.manual-protect", "KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): args0 (a number; default 1 = MANUAL_PROTECT_ENABLE, " +
            "3 adds KVM_DIRTY_LOG_INITIALLY_SET, or initially_set: true); expect: the errno (default ok)",
            ["vm"], ["args0", "initially_set", "expect"], ManualProtect)
        { Check = (a, _) => { a.GetULong("args0", 1); a.GetBool("initially_set"); a.GetErrno("expect"); } });
        r.Register(new OpSpec("dirty-log.get", "KVM_GET_DIRTY_LOG (clears and write-protects; only copies in manual-protect mode); expect: the exact gfn list " +
            "(a, b, c-d; empty string = none); count: how many; errno: the ioctl's errno (default ok); verify: the dirty-log-lost check afterwards (default true)",
            VmSlot, ["expect", "count", "errno", "verify"], GetLog) { Check = CheckHarvest });
        r.Register(new OpSpec("dirty-log.clear", "KVM_CLEAR_DIRTY_LOG over [first_page, first_page + num_pages) of slot (default: the whole slot) with the mask of " +
            "gfns (a, b, c-d; default: what the previous dirty-log.get of this slot returned); errno (default ok); verify (default true)",
            VmSlot, ["first_page", "num_pages", "gfns", "errno", "verify"], ClearLog)
        {
            Check = (a, i) =>
            {
                CheckHarvest(a, i);
                a.GetULong("first_page", 0);
                if (a.Has("num_pages")) a.GetULong("num_pages");
                if (a.Has("gfns")) ParseGfns(a, "gfns");
            },
        });
        r.Register(new OpSpec("dirty-log.expect-none-lost", "dirty-log-lost check of slot now: every gfn the guest wrote since its tracking was last re-armed is in the bitmap or an un-reset ring entry; " +
            "reported: true also requires that every such write was already reported by a harvest (nothing pending; an unexpected-value violation otherwise)",
            VmSlot, ["reported"], ExpectNoneLost) { Check = (a, _) => { a.GetInt("slot"); a.GetBool("reported"); } });
        r.Register(new OpSpec("dirty-ring.enable", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING) before any vCPU runs: entries (16-byte kvm_dirty_gfn each) or bytes; expect: the errno (default ok)",
            ["vm"], ["entries", "bytes", "expect"], RingEnable)
        {
            Check = (a, _) =>
            {
                if (a.Has("entries") == a.Has("bytes")) throw a.Error(a.Has("bytes") ? "bytes" : "entries", "give exactly one of entries and bytes");
                if (a.Has("entries")) a.GetBounded("entries", 0, uint.MaxValue / DirtyRing.EntryBytes);
                else a.GetBounded("bytes", 0, uint.MaxValue);
                a.GetErrno("expect");
            },
        });
        r.Register(new OpSpec("dirty-ring.collect", "the VMM harvests every vCPU's dirty ring (dirty_ring_collect_dirty_pages), then KVM_RESET_DIRTY_RINGS (reset: false skips it); " +
            "expect: the exact gfn list harvested (with those harvested at KVM_EXIT_DIRTY_RING_FULL since the last collect); count: how many; verify (default true)",
            ["vm"], ["expect", "count", "reset", "verify"], RingCollect)
        { Check = (a, i) => { a.GetBool("reset", true); CheckHarvest(a, i); } });
        r.Register(new OpSpec("vmm.dirty-ring-full", "the VMM's answer to KVM_EXIT_DIRTY_RING_FULL: collect (harvest the ring, KVM_RESET_DIRTY_RINGS, re-enter) or exit (the access fails with error: ring-full)",
            ["vm", "action"], [], RingFullAction)
        { Check = (a, _) => { if (a.GetString("action") is not ("collect" or "exit")) throw a.Error("action", $"'{a.GetString("action")}' is not an action (collect, exit)"); } });
    }

    static void CheckHarvest(OpArgs a, ScenarioInfo _)
    {
        if (a.Has("slot")) a.GetInt("slot");
        if (a.Has("expect")) ParseGfns(a, "expect");
        if (a.Has("count")) a.GetULong("count");
        if (a.Has("errno")) a.GetErrno("errno");
        a.GetBool("verify", true);
    }

    /// <summary>A gfn list: numbers and inclusive ranges <c>a-b</c>, comma separated; empty = none.</summary>
    static List<ulong> ParseGfns(OpArgs a, string key)
    {
        var list = new List<ulong>();
        foreach (var s in a.GetString(key).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int dash = s.IndexOf('-');
            if (dash < 0)
            {
                list.Add(OpArgs.TryParseULong(s, out var g) ? g : throw a.Error(key, $"'{s}' is not a gfn"));
                continue;
            }
            if (!OpArgs.TryParseULong(s[..dash].Trim(), out var lo) || !OpArgs.TryParseULong(s[(dash + 1)..].Trim(), out var hi))
                throw a.Error(key, $"'{s}' is not a gfn range (a-b)");
            if (hi < lo || hi - lo >= 1UL << 20) throw a.Error(key, $"'{s}' is not a range of 1..1048576 gfns");
            for (ulong g = lo; g <= hi; g++) list.Add(g);
        }
        return list;
    }

    static Memslot Slot(Kvm vm, OpArgs a)
    {
        int id = a.GetInt("slot");
        return vm.FindSlot(id) ?? throw a.Error("slot", $"{vm.Name} has no memslot {id}");
    }

    static async ValueTask SetLogging(ScenarioWorld w, OpArgs a, bool on)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        var flags = s.Flags & ~MemslotFlags.Invalid;
        await vm.SetMemoryRegion(s.Id, s.BaseGfn, s.NPages, s.UserspaceAddr, on ? flags | MemslotFlags.LogDirtyPages : flags & ~MemslotFlags.LogDirtyPages);
    }

    static ValueTask ManualProtect(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        ulong args0 = a.GetULong("args0", 1) | (a.GetBool("initially_set") ? Kvm.KvmDirtyLogInitiallySet : 0);
        Expect(w, a, "expect", vm.EnableManualDirtyLogProtect(args0), $"KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 0x{args0:x})");
        return default;
    }

    static ValueTask RingEnable(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        ulong bytes = a.Has("entries") ? a.GetULong("entries") * DirtyRing.EntryBytes : a.GetULong("bytes");
        Expect(w, a, "expect", vm.EnableDirtyLogRing(bytes), $"KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, {bytes})");
        return default;
    }

    static ValueTask RingFullAction(ScenarioWorld w, OpArgs a)
    {
        w.Get<Kvm>(a, "vm").Vmm.CollectsDirtyRing = a.GetString("action") == "collect";
        return default;
    }

    static string LastKey(Kvm vm, Memslot s) => $"dirty-log-last:{vm.Name}:{s.Id}";

    static async ValueTask GetLog(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        var got = new List<ulong>();
        int r = await vm.GetDirtyLog(s, got);
        if (!Expect(w, a, "errno", r, $"KVM_GET_DIRTY_LOG(slot {s.Id})") || r != 0) return;
        w.Objects[LastKey(vm, s)] = got;
        Verify(w, a, vm, s);
        if (w.K.S.Violation == null) CompareGfns(w, a, got, $"dirty log of {s}");
    }

    static async ValueTask ClearLog(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        ulong first = a.GetULong("first_page", 0);
        ulong num = a.GetULong("num_pages", first <= s.NPages ? s.NPages - first : 0);
        List<ulong> gfns = a.Has("gfns") ? ParseGfns(a, "gfns")
            : w.Objects.TryGetValue(LastKey(vm, s), out var o) && o is List<ulong> last ? last : [];
        // struct kvm_clear_dirty_log's bitmap: bit i is page first_page + i
        var mask = new ulong[(Math.Min(num, s.NPages) + 63) / 64];
        foreach (var g in gfns)
        {
            if (g < s.BaseGfn + first || g >= s.BaseGfn + first + num || g >= s.EndGfn) continue;
            ulong i = g - s.BaseGfn - first;
            mask[i >> 6] |= 1UL << (int)(i & 63);
        }
        int r = await vm.ClearDirtyLog(s, first, num, mask);
        if (!Expect(w, a, "errno", r, $"KVM_CLEAR_DIRTY_LOG(slot {s.Id}, first_page {first}, num_pages {num})") || r != 0) return;
        Verify(w, a, vm, s);
    }

    static async ValueTask RingCollect(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        await w.K.S.Point(PointKind.Counter);
        vm.Vmm.HarvestRings(vm);
        var got = new List<ulong>(vm.Vmm.Harvested.Count);
        foreach (var (_, g) in vm.Vmm.Harvested) got.Add(g);
        vm.Vmm.Harvested.Clear();
        if (a.GetBool("reset", true))
        {
            int r = await vm.ResetDirtyRings();
            if (r < 0) Expect(w, a, "errno", r, "KVM_RESET_DIRTY_RINGS");
        }
        foreach (var s in vm.Memslots) Verify(w, a, vm, s);
        if (w.K.S.Violation == null) CompareGfns(w, a, got, $"{vm.Name} dirty rings");
    }

    static ValueTask ExpectNoneLost(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        var s = Slot(vm, a);
        Verify(w, a, vm, s, force: true);
        if (w.K.S.Violation != null || !a.GetBool("reported")) return default;
        var pending = vm.UnreportedGuestWrites(s);
        if (pending.Count > 0)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {vm.Name} {s}: guest writes to [{Format(pending)}] are still pending: no harvest reported them yet");
        return default;
    }

    /// <summary>Compare an ioctl's result with <paramref name="key"/> (default ok); returns whether it matched.</summary>
    static bool Expect(ScenarioWorld w, OpArgs a, string key, int r, string what)
    {
        int want = a.GetErrno(key);
        if (r == want) return true;
        w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {what} returned {Errno.NameOf(r)}, expected {Errno.NameOf(want)}");
        return false;
    }

    static void CompareGfns(ScenarioWorld w, OpArgs a, List<ulong> got, string what)
    {
        if (a.Has("count") && (ulong)got.Count != a.GetULong("count"))
        {
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {what} has {got.Count} gfn(s), expected {a.GetULong("count")}");
            return;
        }
        if (!a.Has("expect")) return;
        var want = ParseGfns(a, "expect");
        var sorted = new List<ulong>(got);
        sorted.Sort();
        want.Sort();
        if (!sorted.SequenceEqual(want))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {what} is [{Format(sorted)}], expected [{Format(want)}]");
    }

    static void Verify(ScenarioWorld w, OpArgs a, Kvm vm, Memslot s, bool force = false)
    {
        if (!force && !a.GetBool("verify", true)) return;
        var lost = vm.FindLostDirtyGfns(s);
        if (lost.Count > 0)
            w.K.S.Fail(Invariants.DirtyLogLost,
                $"{a.File}:{a.Line}: {vm.Name} {s}: guest wrote gfn(s) [{Format(lost)}] that no dirty bitmap or dirty ring entry holds: no harvest will report them");
    }

    static string Format(List<ulong> gfns) => string.Join(", ", gfns.Select(g => $"0x{g:x}"));
}
