using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Kvm;

/// <summary>
/// Scenario ops for gfn_to_pfn_caches (registered by <see cref="KvmOps.Register"/>): <c>gpc.activate</c>,
/// <c>gpc.refresh</c>, <c>gpc.read</c>, <c>gpc.write</c>, <c>gpc.deactivate</c>. A cache is a named object of its VM;
/// the VM's <c>pfncache:</c> field (vm.create) chooses the invalidation design. Caches need a 5.17+ era: an op in an
/// older era is a run-time scenario error (exit 2).
/// </summary>
public static class PfnCacheOps
{
    /// <summary>Scenario spelling of a design: start-hook, end-hook.</summary>
    public static string NameOf(PfnCacheDesign d) => d == PfnCacheDesign.EndHook ? "end-hook" : "start-hook";

    /// <summary>vm.create's <c>pfncache</c> values.</summary>
    public static string KnownDesigns { get; } = string.Join(", ", Enum.GetValues<PfnCacheDesign>().Select(NameOf));

    public static bool TryParseDesign(string s, out PfnCacheDesign d)
    {
        foreach (var v in Enum.GetValues<PfnCacheDesign>())
            if (NameOf(v) == s.Trim().ToLowerInvariant()) { d = v; return true; }
        d = default;
        return false;
    }

    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("gpc.activate", "kvm_gpc_init + kvm_gpc_activate: a pfn cache `name` of vm on gpa (a guest physical byte address); `error: efault` expects the refresh to fail",
            ["vm", "name", "gpa"], ["error"], Activate) { Check = (a, _) => { a.GetULong("gpa"); CheckError(a); } });
        r.Register(new OpSpec("gpc.refresh", "kvm_gpc_refresh (on gpa, default: the cache's gpa)", ["gpc"], ["gpa", "error"], Refresh)
        { Check = (a, _) => { if (a.Has("gpa")) a.GetULong("gpa"); CheckError(a); } });
        r.Register(new OpSpec("gpc.read", "a kernel read through the cache: kvm_gpc_check, kvm_gpc_refresh on failure, read via khva; `expect` checks the value",
            ["gpc"], ["as", "expect", "error"], Read) { Check = (a, _) => { if (a.Has("expect")) a.GetULong("expect"); CheckError(a); } });
        r.Register(new OpSpec("gpc.write", "a kernel write through the cache (as gpc.read)", ["gpc", "value"], ["error"], Write)
        { Check = (a, _) => { a.GetULong("value"); CheckError(a); } });
        r.Register(new OpSpec("gpc.deactivate", "kvm_gpc_deactivate: off the VM's list, unmapped", ["gpc"], [], Deactivate));
    }

    static void CheckError(OpArgs a)
    {
        if (a.Has("error") && a.GetString("error") is not ("efault" or "none" or "any"))
            throw a.Error("error", $"'{a.GetString("error")}' is not an expected error (efault, none, any)");
    }

    static async ValueTask Activate(ScenarioWorld w, OpArgs a)
    {
        var vm = w.Get<Kvm>(a, "vm");
        string name = a.GetString("name");
        if (!w.K.Era.Has(Feature.KvmPfnCache))
            throw a.Error("name", $"gfn_to_pfn_cache exists from 5.17 (982ed0de4753); era {w.K.Era.Name} has none");
        if (w.Objects.TryGetValue(name, out var o) && o is not GfnToPfnCache)
            throw a.Error("name", $"an object named '{name}' already exists");
        var gpc = vm.GpcInit(name);
        w.Objects[name] = gpc;
        Outcome(w, a, gpc, await gpc.Activate(a.GetULong("gpa")), "kvm_gpc_activate");
    }

    static async ValueTask Refresh(ScenarioWorld w, OpArgs a)
    {
        var gpc = w.Get<GfnToPfnCache>(a, "gpc");
        Outcome(w, a, gpc, await gpc.Refresh(a.Has("gpa") ? a.GetULong("gpa") : gpc.Gpa), "kvm_gpc_refresh");
    }

    static async ValueTask Read(ScenarioWorld w, OpArgs a)
    {
        var gpc = w.Get<GfnToPfnCache>(a, "gpc");
        var (ok, value, err) = await gpc.Access(write: false, 0);
        if (!Outcome(w, a, gpc, ok ? 0 : err, "read")) return;
        if (a.Has("as")) w.Observed[a.GetString("as")] = value;
        if (a.Has("expect") && value != a.GetULong("expect"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {gpc.Name} reads 0x{value:x} at gpa 0x{gpc.Gpa:x}, expected 0x{a.GetULong("expect"):x}");
    }

    static async ValueTask Write(ScenarioWorld w, OpArgs a)
    {
        var gpc = w.Get<GfnToPfnCache>(a, "gpc");
        var (ok, _, err) = await gpc.Access(write: true, a.GetULong("value"));
        Outcome(w, a, gpc, ok ? 0 : err, "write");
    }

    static ValueTask Deactivate(ScenarioWorld w, OpArgs a) => w.Get<GfnToPfnCache>(a, "gpc").Deactivate();

    /// <summary>Compare a result with <c>error:</c>; returns true on success.</summary>
    static bool Outcome(ScenarioWorld w, OpArgs a, GfnToPfnCache gpc, int ret, string what)
    {
        string want = a.GetString("error", "none");
        bool wantError = want == "efault";
        if (want != "any" && (ret == 0) == wantError)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {what} of {gpc.Name} {(ret == 0 ? "succeeded" : $"failed with {ret}")}, expected {(wantError ? "-EFAULT" : "success")}");
        return ret == 0;
    }
}
