using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>
/// Scenario ops for GUP references that outlive one op (mm/gup.c and its users): gup_test-style pins
/// (<c>pin</c>, <c>pin-read</c>, <c>unpin</c>), vmsplice's pipe references (<c>vmsplice</c>, <c>pipe-read</c>), io_uring
/// fixed buffers (<c>iouring-register</c>, <c>iouring-write-fixed</c>), the /proc/PID/mem write (<c>proc-mem-write</c>),
/// and <c>expect-page</c> for the counts of the page an address maps.
/// </summary>
public static partial class CoreOps
{
    static readonly string[] GupOutcomes = ["ok", "efault", "enomem", "any"];

    static void RegisterGup(OpRegistry r)
    {
        r.Register(new OpSpec("pin",
            "pin_user_pages(_fast) [addr, addr+len) like gup_test PIN_LONGTERM_TEST_START: FOLL_PIN (get: true = FOLL_GET), " +
            "write (FOLL_WRITE), longterm (FOLL_LONGTERM), fast (GUP-fast first); held until unpin; as names it; expect: ok (default), efault, enomem, any",
            ["process", "addr", "len", "as"], ["write", "longterm", "fast", "get", "expect"], Pin) { Check = CheckPin });
        r.Register(new OpSpec("unpin", "unpin_user_pages (or put_page for FOLL_GET/vmsplice references) of a pin, pipe or io_uring buffer",
            ["pin"], [], Unpin) { Check = (a, i) => i.RequireNamed(a, "pin", "pin") });
        r.Register(new OpSpec("pin-read",
            "read the pinned pages' contents through the pin (gup_test PIN_LONGTERM_TEST_READ): each page (or page: i) must hold value; as stores page 0 (or page i)",
            ["pin"], ["value", "page", "as"], PinRead) { Check = CheckPinRead });
        r.Register(new OpSpec("vmsplice", "vmsplice(addr, len) into a pipe named as: R/O FOLL_GET references (GUP-fast, never unshares) held by the pipe buffers",
            ["process", "addr", "len", "as"], ["expect"], Vmsplice) { Check = CheckGupRange });
        r.Register(new OpSpec("pipe-read", "read(2) the pipe filled by vmsplice: every page must hold value (as stores page 0); the pipe buffers' references are dropped",
            ["pipe"], ["value", "as"], PipeRead) { Check = (a, i) => { i.RequireNamed(a, "pipe", "pipe"); if (a.Has("value")) a.GetULong("value"); } });
        r.Register(new OpSpec("iouring-register",
            "io_uring_register_buffers(addr, len): a fixed buffer pinned FOLL_WRITE|FOLL_PIN|FOLL_LONGTERM (pin_user_pages_fast), named as; release with unpin",
            ["process", "addr", "len", "as"], ["expect"], IouringRegister) { Check = CheckGupRange });
        r.Register(new OpSpec("iouring-write-fixed",
            "IORING_OP_WRITE_FIXED from the buffer: the data the file receives, read through the pin, must be value in every page (or page: i)",
            ["buf", "value"], ["page"], IouringWriteFixed) { Check = (a, i) => { i.RequireNamed(a, "buf", "fixed buffer"); a.GetULong("value"); if (a.Has("page")) a.GetBounded("page", 0, (1UL << 18) - 1); } });
        r.Register(new OpSpec("proc-mem-write",
            "write value at addr through /proc/PID/mem (access_remote_vm: FOLL_FORCE|FOLL_WRITE|FOLL_GET): COWs a private read-only mapping; expect: ok (default), efault, any",
            ["process", "addr", "value"], ["expect"], ProcMemWrite) { Check = CheckProcMemWrite });
        r.Register(new OpSpec("expect-page",
            "the page the PTE (or huge PMD) at addr maps: each given field must match: refcount (folio), mapcount (page), pincount, exclusive (PageAnonExclusive), writable (PTE), zero (the shared zero page)",
            ["process", "addr"], PageFields, ExpectPage) { Check = CheckExpectPage });
    }

    static readonly string[] PageFields = ["refcount", "mapcount", "pincount", "exclusive", "writable", "zero"];

    static void CheckGupOutcome(OpArgs a)
    {
        var e = a.GetString("expect", "ok");
        if (Array.IndexOf(GupOutcomes, e) < 0) throw a.Error("expect", $"'{e}' is not a GUP outcome (ok, efault, enomem, any)");
    }

    static void CheckGupRange(OpArgs a, ScenarioInfo i)
    {
        CheckGupOutcome(a);
        ulong len = a.GetBounded("len", MmStruct.PageSize, 1UL << 30);
        if (a.GetString("expect", "ok") == "ok")
        {
            i.RequireMapped(a);
            var p = a.GetString("process");
            ulong last = a.GetAddress("addr") + len - MmStruct.PageSize;
            if (!i.MayMap(p, last)) throw a.Error("len", $"0x{last:x} (the range's last page) is outside every VMA of process '{p}'");
        }
    }

    static void CheckPin(OpArgs a, ScenarioInfo i)
    {
        foreach (var b in new[] { "write", "longterm", "fast", "get" }) a.GetBool(b);
        if (a.GetBool("get") && a.GetBool("longterm"))
            throw a.Error("longterm", "FOLL_LONGTERM needs FOLL_PIN (the kernel rejects get_user_pages with FOLL_LONGTERM in this form); drop get: true");
        CheckGupRange(a, i);
    }

    static void CheckPinRead(OpArgs a, ScenarioInfo i)
    {
        i.RequireNamed(a, "pin", "pin");
        if (a.Has("value")) a.GetULong("value");
        if (a.Has("page")) a.GetBounded("page", 0, (1UL << 18) - 1);
        if (!a.Has("value") && !a.Has("as")) throw a.Error("pin", "pin-read needs value (to compare) or as (to store)");
    }

    static void CheckProcMemWrite(OpArgs a, ScenarioInfo i)
    {
        a.GetULong("value");
        CheckGupOutcome(a);
        if (a.GetString("expect", "ok") == "ok") i.RequireMapped(a);
    }

    static void CheckExpectPage(OpArgs a, ScenarioInfo i)
    {
        i.RequireMapped(a);
        foreach (var f in new[] { "refcount", "mapcount", "pincount" }) if (a.Has(f)) a.GetBounded(f, 0, 1UL << 24);
        foreach (var f in new[] { "exclusive", "writable", "zero" }) a.GetBool(f);
        if (!PageFields.Any(a.Has)) throw a.Error("addr", $"give at least one of {string.Join(", ", PageFields)}");
    }

    /// <summary>Run GetUserPages for an op and compare the outcome with its <c>expect</c>; store the pages under <c>as</c>.</summary>
    static async ValueTask TakeUserPages(ScenarioWorld w, OpArgs a, GupFlags flags, bool fast)
    {
        var mm = w.Process(a);
        var name = a.GetString("as");
        if (w.Objects.ContainsKey(name)) throw a.Error("as", $"an object named '{name}' already exists");
        ulong addr = a.GetAddress("addr");
        int n = (int)(a.GetULong("len") >> MmStruct.PageShift);
        var (pages, err) = await Gup.GetUserPages(mm, addr, n, flags, fast);
        var want = a.GetString("expect", "ok");
        string got = err switch { 0 => "ok", GupResult.EFAULT => "efault", GupResult.ENOMEM => "enomem", _ => $"error {err}" };
        if (pages != null) w.Objects[name] = pages;
        if (want != "any" && want != got)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {a.Op} of {mm} at 0x{addr:x} ended {got}, expected {want}", addr);
    }

    static ValueTask Pin(ScenarioWorld w, OpArgs a)
    {
        var flags = a.GetBool("get") ? GupFlags.Get : GupFlags.Pin;
        if (a.GetBool("write")) flags |= GupFlags.Write;
        if (a.GetBool("longterm")) flags |= GupFlags.Longterm;
        return TakeUserPages(w, a, flags, a.GetBool("fast"));
    }

    /// <summary>The pages named by a field, or a run-time error naming file:line (released already / not created, e.g. the pin failed).</summary>
    static UserPages PagesOf(ScenarioWorld w, OpArgs a, string key)
    {
        var p = w.Get<UserPages>(a, key);
        if (p.Released) throw a.Error(key, $"'{a.GetString(key)}' was released already");
        return p;
    }

    static async ValueTask Unpin(ScenarioWorld w, OpArgs a) => await Gup.Release(w.K, PagesOf(w, a, "pin"));

    /// <summary>Compare each page's contents (read through the references, no page table involved) with <c>value</c>.</summary>
    static async ValueTask<bool> ReadThrough(ScenarioWorld w, OpArgs a, UserPages p, string what, int only = -1)
    {
        var k = w.K;
        bool ok = true;
        for (int i = 0; i < p.Pfns.Length; i++)
        {
            if (only >= 0 && i != only) continue;
            ulong va = p.Start + (ulong)i * MmStruct.PageSize;
            await k.S.Point(PointKind.PteRead, va); // the kernel's kmap + copy of the page
            ulong v = k.Mem[p.Pfns[i]].Contents;
            if (a.Has("as") && (only < 0 ? i == 0 : i == only)) w.Observed[a.GetString("as")] = v;
            if (!a.Has("value") || v == a.GetULong("value")) continue;
            ok = false;
            k.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {what} of page 0x{va:x} (pfn 0x{p.Pfns[i]:x}) reads 0x{v:x}, expected 0x{a.GetULong("value"):x}", va, p.Pfns[i]);
            break;
        }
        return ok;
    }

    static async ValueTask PinRead(ScenarioWorld w, OpArgs a)
    {
        var p = PagesOf(w, a, "pin");
        int only = a.Has("page") ? (int)a.GetULong("page") : -1;
        if (only >= p.Pfns.Length) throw a.Error("page", $"page {only} is beyond the {p.Pfns.Length} page(s) pinned");
        await ReadThrough(w, a, p, "the pin", only);
    }

    static ValueTask Vmsplice(ScenarioWorld w, OpArgs a) => TakeUserPages(w, a, GupFlags.Get, fast: true);

    /// <summary>pipe_read: copy the buffers out, then pipe_buf_release drops each page reference.</summary>
    static async ValueTask PipeRead(ScenarioWorld w, OpArgs a)
    {
        var p = PagesOf(w, a, "pipe");
        await ReadThrough(w, a, p, "the pipe's copy");
        await Gup.Release(w.K, p);
    }

    static ValueTask IouringRegister(ScenarioWorld w, OpArgs a) =>
        TakeUserPages(w, a, GupFlags.Write | GupFlags.Pin | GupFlags.Longterm, fast: true);

    static async ValueTask IouringWriteFixed(ScenarioWorld w, OpArgs a)
    {
        var p = PagesOf(w, a, "buf");
        int only = a.Has("page") ? (int)a.GetULong("page") : -1;
        if (only >= p.Pfns.Length) throw a.Error("page", $"page {only} is beyond the {p.Pfns.Length} page(s) of the buffer");
        await ReadThrough(w, a, p, "the data write_fixed sends from the fixed buffer", only);
    }

    /// <summary>mem_rw → access_remote_vm: get_user_pages_remote(FOLL_FORCE|FOLL_WRITE), copy into the page, set_page_dirty_lock, put_page.</summary>
    static async ValueTask ProcMemWrite(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        var k = w.K;
        ulong addr = a.GetAddress("addr");
        var (pages, err) = await Gup.GetUserPages(mm, addr, 1, GupFlags.Write | GupFlags.Force | GupFlags.Get, fast: false);
        if (pages != null)
        {
            await k.S.Point(PointKind.Counter, addr);
            k.Mem[pages.Pfns[0]].Contents = a.GetULong("value");
            if (k.Checker.TrackUserWrites) k.Checker.OnUserWrite(mm, addr, pages.Pfns[0], a.GetULong("value"));
            await Gup.Release(k, pages);
        }
        string got = err == 0 ? "ok" : err == GupResult.ENOMEM ? "enomem" : "efault", want = a.GetString("expect", "ok");
        if (want != "any" && want != got)
            k.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: proc-mem-write of {mm} at 0x{addr:x} ended {got}, expected {want}", addr);
    }

    static async ValueTask ExpectPage(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        var k = w.K;
        ulong addr = a.GetAddress("addr");
        await k.S.Point(PointKind.PteRead, addr);
        var (present, pfn, writable, _) = mm.Translate(addr);
        if (!present)
        {
            k.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: expect-page: nothing is mapped at 0x{addr:x} in {mm}", addr);
            return;
        }
        long head = k.Mem.FolioOf(pfn);
        (string Field, long Got)[] got =
        [
            ("refcount", k.Mem[head].RefCount), ("mapcount", k.Mem[pfn].MapCount), ("pincount", Gup.FolioPincount(k, pfn)),
            ("exclusive", k.Mem[pfn].Has(PageFlags.AnonExclusive) ? 1 : 0), ("writable", writable ? 1 : 0), ("zero", pfn == PhysMem.ZeroPfn || k.Mem.IsHugeZero(pfn) ? 1 : 0),
        ];
        foreach (var (f, g) in got)
        {
            if (!a.Has(f)) continue;
            long want = f is "exclusive" or "writable" or "zero" ? (a.GetBool(f) ? 1 : 0) : (long)a.GetULong(f);
            if (want != g)
                k.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: expect-page at 0x{addr:x} of {mm} (pfn 0x{pfn:x}): {f} is {g}, expected {want}", addr, pfn);
        }
    }
}
