using MmuSim.Scenarios;

namespace MmuSim.Userfaultfd;

/// <summary>
/// Scenario ops of userfaultfd (<c>uffd.*</c>): open a userfaultfd on a process, register ranges, resolve faults with
/// the ioctls, and run a handler thread the way the selftests' uffd_handler_thread does. Every ioctl op takes
/// <c>expect:</c> (an errno name, ok by default); a different result is an unexpected-value violation. The userfaultfd
/// is named by <c>uffd:</c> (default <c>uffd</c>), the name <c>uffd.open</c> gave it with <c>as:</c>.
/// </summary>
public static class UffdOps
{
    const string DefaultName = "uffd";

    /// <summary>Register the userfaultfd ops (listed in <see cref="OpRegistry.Providers"/>).</summary>
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("uffd.open", "userfaultfd(2) + UFFDIO_API on process: a userfaultfd named as: (default uffd); features: sigbus, event_fork, event_remap, event_remove (4.11+), wp_unpopulated (6.4+), poison (6.6+), " +
            "comma separated (UFFDIO_API is EINVAL for one the era lacks); " +
            "api: false leaves out UFFDIO_API (uffd.api does it); dev: true opens /dev/userfaultfd (6.1+) instead of the syscall; expect: ok or enosys",
            ["process"], ["as", "features", "expect", "api", "dev"], Open)
        {
            Check = (a, _) =>
            {
                ParseFeatures(a);
                a.GetErrno("expect");
                if (!a.GetBool("api", true) && a.Has("features")) throw a.Error("features", "features are UFFDIO_API's: give them to uffd.api when api: false");
                a.GetBool("dev");
            },
            DefaultAs = DefaultName,
        });
        r.Register(new OpSpec("uffd.api", "UFFDIO_API on a userfaultfd opened with api: false: api (default 0xaa, UFFD_API), features (as uffd.open's), feature_bits " +
            "(raw bits no kernel defines, 17..63, for the EINVAL case); EINVAL for a wrong api, an unknown bit or a second UFFDIO_API",
            [], ["uffd", "api", "features", "feature_bits", "expect"], ApiOp)
        {
            Check = (a, i) =>
            {
                CheckName(a, i);
                a.GetULong("api", UserfaultfdCtx.UffdApi);
                ParseFeatures(a);
                ulong bits = a.GetULong("feature_bits", 0);
                if ((bits & UserfaultfdCtx.KnownFeatures) != 0)
                    throw a.Error("feature_bits", $"0x{bits:x} has defined UFFD_FEATURE bits (0..16); name the modelled ones in features ({FeatureNames}), the others are not modelled");
                a.GetErrno("expect");
            },
        });
        r.Register(new OpSpec("uffd.register", "UFFDIO_REGISTER [addr, addr+len) with mode: missing, wp, minor (comma separated), or none (no mode: EINVAL); " +
            "ioctls / no_ioctls: range ioctls (" + IoctlNames + ") uffdio_register.ioctls must / must not name",
            ["addr", "len", "mode"], ["uffd", "expect", "ioctls", "no_ioctls"], RegisterRange)
        {
            Check = (a, i) => { CheckRange(a, i); ParseMode(a); ParseIoctls(a, "ioctls"); ParseIoctls(a, "no_ioctls"); },
        });
        r.Register(new OpSpec("uffd.unregister", "UFFDIO_UNREGISTER [addr, addr+len): wakes the faults waiting there, which retry as plain faults",
            ["addr", "len"], ["uffd", "expect"], UnregisterRange) { Check = CheckRange });
        r.Register(new OpSpec("uffd.copy", "UFFDIO_COPY: place pages holding value (default 0) at [addr, addr+len) (len default 4K); wp: UFFDIO_COPY_MODE_WP; dontwake",
            ["addr"], ["uffd", "len", "value", "wp", "dontwake", "expect"], (w, a) => MfillOp(w, a, MfillMode.Copy)) { Check = CheckMfill });
        r.Register(new OpSpec("uffd.zeropage", "UFFDIO_ZEROPAGE: map the zero page (shmem: a zeroed page-cache page) at [addr, addr+len)",
            ["addr"], ["uffd", "len", "dontwake", "expect"], (w, a) => MfillOp(w, a, MfillMode.Zeropage)) { Check = CheckMfill });
        r.Register(new OpSpec("uffd.continue", "UFFDIO_CONTINUE: map the page-cache pages already there at [addr, addr+len) (MINOR faults); wp: UFFDIO_CONTINUE_MODE_WP",
            ["addr"], ["uffd", "len", "wp", "dontwake", "expect"], (w, a) => MfillOp(w, a, MfillMode.Continue)) { Check = CheckMfill });
        r.Register(new OpSpec("uffd.poison", "UFFDIO_POISON (6.6+): poisoned PTE markers at the none PTEs of [addr, addr+len) (len default 4K): every later access is SIGBUS",
            ["addr"], ["uffd", "len", "dontwake", "expect"], (w, a) => MfillOp(w, a, MfillMode.Poison)) { Check = CheckMfill });
        r.Register(new OpSpec("uffd.move", "UFFDIO_MOVE (6.8+): move the exclusive anonymous pages of [src, src+len) to the none range at dst (len default 4K) of the same mm; " +
            "allow_src_holes: UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES; CLEAR invalidations of the source; expect: the errno (EEXIST, ENOENT, EBUSY, EINVAL, ...)",
            ["dst", "src"], ["uffd", "len", "allow_src_holes", "dontwake", "expect"], MoveOp)
        {
            Check = (a, i) =>
            {
                CheckName(a, i);
                a.GetAddress("dst");
                a.GetAddress("src");
                a.GetBounded("len", 0, 1UL << 40, Mm.MmStruct.PageSize);
                a.GetBool("allow_src_holes");
                a.GetBool("dontwake");
                a.GetErrno("expect");
            },
        });
        r.Register(new OpSpec("uffd.writeprotect", "UFFDIO_WRITEPROTECT [addr, addr+len): wp: true (default) protects, false resolves (and wakes unless dontwake)",
            ["addr", "len"], ["uffd", "wp", "dontwake", "expect"], WriteProtect) { Check = (a, i) => { CheckRange(a, i); a.GetBool("wp", true); a.GetBool("dontwake"); } });
        r.Register(new OpSpec("uffd.wake", "UFFDIO_WAKE [addr, addr+len): wake the faults waiting there",
            ["addr", "len"], ["uffd", "expect"], WakeOp) { Check = CheckRange });
        r.Register(new OpSpec("uffd.close", "close the userfaultfd (userfaultfd_release): unregister every range and wake every waiting fault",
            [], ["uffd"], Close) { Check = CheckName });
        r.Register(new OpSpec("uffd.handle",
            "a fault handler thread: read count (default 1) messages, blocking for each, and resolve each faulting page with resolve: copy (value), zeropage, continue, unprotect, wake, " +
            "poison, poison-even (uffd-unit-tests' uffd_poison_handle_fault: pages at an even page_size offset from their VMA's start poisoned, odd ones copied), " +
            "move (uffd_move_handle_fault: UFFDIO_MOVE of the page_size chunk at the same offset from move_src as the fault from move_dst), " +
            "or auto (uffd-common's uffd_handle_page_fault: WP faults unprotected, MINOR continued, MISSING copied, with UFFDIO_COPY_MODE_WP when wp: true); " +
            "events are handled as uffd_poll_thread does: FORK switches to the child's userfaultfd (named uffd@child), REMOVE unregisters the range, " +
            "REMAP is noted (follow-fork: false keeps reading the parent's, as fork_event_consumer does); expect-faults: the number of MISSING faults resolved by a copy, checked at the end (uffd_args.missing_faults); " +
            "on EEXIST wake the page (another resolution won). expect-reason: missing, wp or minor, checked for every message; page_size " +
            "(4K or 2M, demand_paging_test's demand_paging_size) is the length each resolution covers, from the message's address; " +
            "flip_from/flip_to (uffd-unit-tests' minor handler): before resolving, complement each page through the other mapping, " +
            "at the message's address - flip_from + flip_to",
            [], ["uffd", "count", "resolve", "value", "expect-reason", "page_size", "flip_from", "flip_to", "wp", "expect-faults", "follow-fork", "move_src", "move_dst"], Handle) { Check = CheckHandle });
    }

    static readonly string[] Resolutions = ["copy", "zeropage", "continue", "unprotect", "wake", "poison", "poison-even", "auto", "move"];

    /// <summary>The UFFD_FEATURE_* bits a scenario can name (features:).</summary>
    static readonly (string Name, ulong Bit)[] Features =
    [
        ("sigbus", UserfaultfdCtx.FeatureSigbus), ("event_fork", UserfaultfdCtx.FeatureEventFork),
        ("event_remap", UserfaultfdCtx.FeatureEventRemap), ("event_remove", UserfaultfdCtx.FeatureEventRemove),
        ("wp_unpopulated", UserfaultfdCtx.FeatureWpUnpopulated), ("poison", UserfaultfdCtx.FeaturePoison), ("move", UserfaultfdCtx.FeatureMove),
    ];

    /// <summary>The range ioctls uffdio_register.ioctls can name (ioctls: / no_ioctls:).</summary>
    static readonly (string Name, ulong Bit)[] Ioctls =
    [
        ("wake", (ulong)Mfill.RangeIoctl.Wake), ("copy", (ulong)Mfill.RangeIoctl.Copy), ("zeropage", (ulong)Mfill.RangeIoctl.Zeropage),
        ("move", (ulong)Mfill.RangeIoctl.Move), ("writeprotect", (ulong)Mfill.RangeIoctl.Writeprotect),
        ("continue", (ulong)Mfill.RangeIoctl.Continue), ("poison", (ulong)Mfill.RangeIoctl.Poison),
    ];

    static readonly string FeatureNames = string.Join(", ", Array.ConvertAll(Features, f => f.Name));
    static readonly string IoctlNames = string.Join(", ", Array.ConvertAll(Ioctls, f => f.Name));

    /// <summary>The comma-separated names of <paramref name="key"/> as the bits of <paramref name="table"/>.</summary>
    static ulong ParseNames(OpArgs a, string key, (string Name, ulong Bit)[] table, string what)
    {
        ulong bits = 0;
        foreach (var n in a.GetString(key, "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int i = Array.FindIndex(table, e => e.Name == n);
            if (i < 0) throw a.Error(key, $"'{n}' is not {what} ({string.Join(", ", Array.ConvertAll(table, e => e.Name))})");
            bits |= table[i].Bit;
        }
        return bits;
    }

    static void CheckName(OpArgs a, ScenarioInfo i) => i.RequireNamed(a, "uffd", "userfaultfd", DefaultName);

    static void CheckRange(OpArgs a, ScenarioInfo i)
    {
        CheckName(a, i);
        a.GetAddress("addr");
        a.GetBounded("len", 0, 1UL << 40);
        a.GetErrno("expect");
    }

    static void CheckMfill(OpArgs a, ScenarioInfo i)
    {
        CheckName(a, i);
        a.GetAddress("addr");
        a.GetBounded("len", 0, 1UL << 40, Mm.MmStruct.PageSize);
        a.GetULong("value", 0);
        a.GetBool("wp");
        a.GetBool("dontwake");
        a.GetErrno("expect");
    }

    static void CheckHandle(OpArgs a, ScenarioInfo i)
    {
        CheckName(a, i);
        a.GetBounded("count", 1, 1 << 20, 1);
        var res = a.GetString("resolve", "copy");
        if (Array.IndexOf(Resolutions, res) < 0) throw a.Error("resolve", $"'{res}' is not a resolution ({string.Join(", ", Resolutions)})");
        a.GetULong("value", 0);
        if (a.Has("expect-reason")) ParseReason(a);
        ulong ps = a.GetULong("page_size", Mm.MmStruct.PageSize);
        if (ps != Mm.MmStruct.PageSize && ps != Mm.MmStruct.PmdSize) throw a.Error("page_size", $"0x{ps:x} is neither 4K nor 2M");
        if (a.Has("flip_from") != a.Has("flip_to")) throw a.Error(a.Has("flip_from") ? "flip_to" : "flip_from", "flip_from and flip_to go together");
        if (a.Has("flip_from")) { a.GetAddress("flip_from"); a.GetAddress("flip_to"); }
        a.GetBool("wp");
        a.GetBool("follow-fork", true);
        foreach (var f in (string[])["move_src", "move_dst"])
        {
            if (a.Has(f) != (res == "move")) throw a.Error(a.Has(f) ? f : "resolve", "resolve: move goes with move_src and move_dst (area_src and area_dst)");
            if (a.Has(f)) a.GetAddress(f);
        }
        if (a.Has("expect-faults")) a.GetBounded("expect-faults", 0, 1 << 20);
    }

    /// <summary>features: the UFFD_FEATURE_* bits named.</summary>
    static ulong ParseFeatures(OpArgs a) => ParseNames(a, "features", Features, "a modelled UFFD_FEATURE");

    static UffdMode ParseMode(OpArgs a)
    {
        var mode = UffdMode.None;
        foreach (var m in a.GetString("mode").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            mode |= m switch
            {
                "missing" => UffdMode.Missing,
                "wp" => UffdMode.Wp,
                "minor" => UffdMode.Minor,
                "none" => UffdMode.None, // uffdio_register.mode 0: the ioctl's EINVAL
                _ => throw a.Error("mode", $"'{m}' is not a UFFDIO_REGISTER mode (missing, wp, minor, or none)"),
            };
        if (mode == UffdMode.None && a.GetString("mode").Trim() != "none") throw a.Error("mode", "no mode given (missing, wp, minor, or none)");
        return mode;
    }

    static UffdReason ParseReason(OpArgs a) => a.GetString("expect-reason") switch
    {
        "missing" => UffdReason.Missing,
        "wp" => UffdReason.Wp,
        "minor" => UffdReason.Minor,
        var s => throw a.Error("expect-reason", $"'{s}' is not a fault reason (missing, wp, minor)"),
    };

    static async ValueTask ApiOp(ScenarioWorld w, OpArgs a)
    {
        ulong features = ParseFeatures(a) | a.GetULong("feature_bits", 0);
        w.ExpectErrno(a, await Ctx(w, a).Api(a.GetULong("api", UserfaultfdCtx.UffdApi), features), "UFFDIO_API");
    }

    static UserfaultfdCtx Ctx(ScenarioWorld w, OpArgs a)
    {
        var name = a.GetString("uffd", DefaultName);
        if (w.Objects.TryGetValue(name, out var o) && o is UserfaultfdCtx c) return c;
        throw a.Error("uffd", $"no open userfaultfd named '{name}' (uffd.open failed or has not run)");
    }

    static ValueTask Open(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        var name = a.GetString("as", DefaultName);
        bool dev = a.GetBool("dev");
        if (dev && !w.K.Era.Has(Eras.Feature.UffdDevice))
        {
            w.ExpectErrno(a, Errno.ENOENT, "open(/dev/userfaultfd)");
            return default;
        }
        ulong features = ParseFeatures(a);
        var ctx = a.GetBool("api", true) ? UserfaultfdCtx.Create(mm, name, features) : UserfaultfdCtx.CreateUninitialized(mm, name);
        if (ctx != null && !UserfaultfdCtx.EraSupports(w.K, features))
        {
            w.ExpectErrno(a, Errno.EINVAL, "UFFDIO_API"); // a feature this kernel does not define
            return default;
        }
        w.ExpectErrno(a, ctx == null ? Errno.ENOSYS : 0, dev ? "USERFAULTFD_IOC_NEW" : "userfaultfd");
        if (ctx != null) w.Objects[name] = ctx;
        return default;
    }

    static Mfill.RangeIoctl ParseIoctls(OpArgs a, string key) => (Mfill.RangeIoctl)ParseNames(a, key, Ioctls, "a range ioctl");

    static async ValueTask RegisterRange(ScenarioWorld w, OpArgs a)
    {
        var ctx = Ctx(w, a);
        ulong start = a.GetAddress("addr"), len = a.GetULong("len");
        var mode = ParseMode(a);
        int r = await Mfill.UserfaultfdRegister(ctx, start, len, mode);
        w.ExpectErrno(a, r, "UFFDIO_REGISTER");
        if (r != 0 || !(a.Has("ioctls") || a.Has("no_ioctls"))) return;
        await w.K.S.Point(Sched.PointKind.Counter, start); // copy_to_user of uffdio_register.ioctls
        bool hugetlb = false;
        foreach (var vma in ctx.Mm.Vmas) if (vma.Start < start + len && start < vma.End && vma.IsHugetlb) hugetlb = true;
        var got = Mfill.RangeIoctls(w.K, hugetlb, mode);
        var must = ParseIoctls(a, "ioctls");
        var mustNot = ParseIoctls(a, "no_ioctls");
        if ((got & must) != must || (got & mustNot) != 0)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: uffdio_register.ioctls is {got}, expected {(must != 0 ? $"{must}" : "")}{(mustNot != 0 ? $" and not {mustNot}" : "")}", start);
    }

    static async ValueTask UnregisterRange(ScenarioWorld w, OpArgs a)
    {
        int r = await Mfill.UserfaultfdUnregister(Ctx(w, a), a.GetAddress("addr"), a.GetULong("len"));
        w.ExpectErrno(a, r, "UFFDIO_UNREGISTER");
    }

    static async ValueTask MfillOp(ScenarioWorld w, OpArgs a, MfillMode mode)
    {
        var (_, err) = await Mfill.MfillAtomic(Ctx(w, a), a.GetAddress("addr"), a.GetULong("len", Mm.MmStruct.PageSize), mode,
            a.GetULong("value", 0), a.GetBool("wp"), a.GetBool("dontwake"));
        w.ExpectErrno(a, err, a.Op switch { "uffd.copy" => "UFFDIO_COPY", "uffd.zeropage" => "UFFDIO_ZEROPAGE", "uffd.poison" => "UFFDIO_POISON", _ => "UFFDIO_CONTINUE" });
    }

    static async ValueTask WriteProtect(ScenarioWorld w, OpArgs a)
    {
        int r = await Mfill.MwriteprotectRange(Ctx(w, a), a.GetAddress("addr"), a.GetULong("len"), a.GetBool("wp", true), a.GetBool("dontwake"));
        w.ExpectErrno(a, r, "UFFDIO_WRITEPROTECT");
    }

    static async ValueTask WakeOp(ScenarioWorld w, OpArgs a)
    {
        ulong len = a.GetULong("len");
        int r = len == 0 || (len & ~Mm.MmStruct.PageMask) != 0 || !Ctx(w, a).Initialized ? Errno.EINVAL : 0;
        if (r == 0) await Ctx(w, a).Wake(a.GetAddress("addr"), len);
        w.ExpectErrno(a, r, "UFFDIO_WAKE");
    }

    static async ValueTask Close(ScenarioWorld w, OpArgs a) => await Ctx(w, a).Release();

    /// <summary>uffd_poison_handle_fault's choice: "Odd pages -> copy zeroed page; even pages -> poison", counted from area_dst (the VMA's start).</summary>
    static bool PoisonEven(UserfaultfdCtx ctx, ulong at, ulong ps) =>
        ctx.Mm.FindVma(at) is not { } vma || ((at - vma.Start) & ps) == 0;

    /// <summary>
    /// The selftests' uffd_handler_thread / uffd_poll_thread / demand_paging_test's handle_uffd_page_request, one message
    /// at a time: a page fault is resolved, an event handled.
    /// </summary>
    static async ValueTask Handle(ScenarioWorld w, OpArgs a)
    {
        var ctx = Ctx(w, a);
        int count = a.GetInt("count", 1);
        string res = a.GetString("resolve", "copy");
        bool applyWp = a.GetBool("wp"), followFork = a.GetBool("follow-fork", true);
        ulong ps = a.GetULong("page_size", Mm.MmStruct.PageSize);
        UffdReason? want = a.Has("expect-reason") ? ParseReason(a) : null;
        long missingFaults = 0;
        for (int i = 0; i < count; i++)
        {
            var msg = await ctx.Read();
            if (msg is not { } m) return; // released
            switch (m.Event)
            {
                case UffdEvent.Fork:
                    w.Objects[m.Child!.Name] = m.Child; // "uffd@child"
                    if (followFork) ctx = m.Child; // uffd = msg.arg.fork.ufd
                    continue;
                case UffdEvent.Remove:
                    if (await Mfill.UserfaultfdUnregister(ctx, m.Address, m.Len) is var ur && ur != 0)
                    {
                        w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: remove failure: UFFDIO_UNREGISTER of [0x{m.Address:x}, 0x{m.Address + m.Len:x}) returned {Errno.NameOf(ur)}", m.Address);
                        return;
                    }
                    continue;
                case UffdEvent.Remap:
                    continue; // area_dst = msg.arg.remap.to: the resolutions work from the message's address
            }
            if (want is { } r && m.Reason != r)
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: {ctx} read a {m.Reason} fault at 0x{m.Address:x}, expected {r}", m.Address);
                return;
            }
            ulong at = m.Address & ~(ps - 1);
            if (a.Has("flip_from") && !await FlipThroughAlias(w, a, ctx, m, at, ps)) return;
            string how = res != "auto" ? res : m.Reason switch { UffdReason.Wp => "unprotect", UffdReason.Minor => "continue", _ => "copy" };
            int err = how switch
            {
                "copy" => (await Mfill.MfillAtomic(ctx, at, ps, MfillMode.Copy, a.GetULong("value", 0), applyWp, false)).Error,
                "zeropage" => (await Mfill.MfillAtomic(ctx, at, ps, MfillMode.Zeropage, 0, false, false)).Error,
                "continue" => (await Mfill.MfillAtomic(ctx, at, ps, MfillMode.Continue, 0, applyWp, false)).Error,
                "poison" => (await Mfill.MfillAtomic(ctx, at, ps, MfillMode.Poison, 0, false, false)).Error,
                "poison-even" => (await Mfill.MfillAtomic(ctx, at, ps, PoisonEven(ctx, at, ps) ? MfillMode.Poison : MfillMode.Copy, a.GetULong("value", 0), false, false)).Error,
                "unprotect" => await Mfill.MwriteprotectRange(ctx, at, ps, false, false),
                "move" => await MovePage(ctx, a, at, ps),
                _ => 0,
            };
            if (err == 0 && how is "copy" or "move" && m.Reason == UffdReason.Missing) missingFaults++;
            if (err == Errno.EEXIST || res == "wake") await ctx.Wake(at, ps);
            else if (err != 0)
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: resolving the {m.Reason} fault at 0x{m.Address:x} with {how} returned {Errno.NameOf(err)}", m.Address);
                return;
            }
        }
        if (a.Has("expect-faults") && missingFaults != a.GetInt("expect-faults"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: stats check error: {missingFaults} missing faults resolved by UFFDIO_COPY, expected {a.GetInt("expect-faults")}", 0);
    }

    /// <summary>move_page: UFFDIO_MOVE of the chunk at the fault's offset from area_dst, from the same offset of area_src, then the wake.</summary>
    static async ValueTask<int> MovePage(UserfaultfdCtx ctx, OpArgs a, ulong at, ulong len)
    {
        ulong offset = at - a.GetAddress("move_dst"), src = a.GetAddress("move_src") + offset;
        var (moved, err) = await Move.MovePages(ctx, at, src, len, allowSrcHoles: false);
        if (err == 0 && moved != len) err = Errno.EAGAIN; // "UFFDIO_MOVE error": a short move
        if (moved > 0) await ctx.Wake(at, moved);
        return err;
    }

    static async ValueTask MoveOp(ScenarioWorld w, OpArgs a)
    {
        var ctx = Ctx(w, a);
        ulong dst = a.GetAddress("dst"), len = a.GetULong("len", Mm.MmStruct.PageSize);
        var (moved, err) = await Move.MovePages(ctx, dst, a.GetAddress("src"), len, a.GetBool("allow_src_holes"));
        if (moved > 0 && !a.GetBool("dontwake")) await ctx.Wake(dst, moved);
        w.ExpectErrno(a, err, "UFFDIO_MOVE");
    }

    /// <summary>uffd_handle_page_fault's minor case: "bit-flip the contents of the page" through the unregistered alias.</summary>
    static async ValueTask<bool> FlipThroughAlias(ScenarioWorld w, OpArgs a, UserfaultfdCtx ctx, UffdMsg m, ulong at, ulong ps)
    {
        ulong alias = at - a.GetAddress("flip_from") + a.GetAddress("flip_to");
        for (ulong off = 0; off < ps; off += Mm.MmStruct.PageSize)
        {
            if (await Mm.Memory.UserAccess(ctx.Mm, alias + off, write: false) is not { } v
                || await Mm.Memory.UserAccess(ctx.Mm, alias + off, write: true, value: ~v) == null)
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: bit-flipping 0x{alias + off:x} before resolving the {m.Reason} fault at 0x{m.Address:x} faulted", alias + off);
                return false;
            }
        }
        return true;
    }
}
