using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Hmm;

/// <summary>
/// Scenario ops for lib/test_hmm.c's dmirror devices: <c>hmm.open</c> a mirror of a process on /dev/hmm_dmirrorN, then
/// the ioctls (<c>hmm.read</c>, <c>hmm.write</c>, <c>hmm.migrate-to-dev</c>, <c>hmm.migrate-to-sys</c>,
/// <c>hmm.snapshot</c>, <c>hmm.exclusive</c>, <c>hmm.check-exclusive</c>, <c>hmm.release</c>, <c>hmm.flags</c>), each
/// checking what hmm-tests.c asserts: the return code (<c>ret</c>, default 0), <c>cpages</c>, <c>faults</c>, the data
/// (<c>seq</c>/<c>all</c>/<c>values</c>) and the snapshot codes. A mismatch is an unexpected-value violation.
/// <c>hmm.fill</c> / <c>hmm.expect-memory</c> are the test's CPU loops over the buffer.
/// </summary>
public static class HmmOps
{
    static readonly string[] Cmd = ["mirror", "addr", "npages"];
    static readonly string[] Expect = ["ret", "cpages", "faults"];
    static readonly string[] Data = ["seq", "all", "values"];
    const ulong MaxPages = 1UL << 16;

    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("hmm.open", "open /dev/hmm_dmirror<device> (0-1 device-private, 2-3 device-coherent) in process: a dmirror with an mmu_interval_notifier over its whole mm (lib/test_hmm.c, 5.7+; coherent 6.0+)",
            ["process", "name"], ["device"], Open) { Check = (a, _) => a.GetBounded("device", 0, 3, 0) });
        r.Register(new OpSpec("hmm.close", "close the dmirror (mmu_interval_notifier_remove)", ["mirror"], [], Close));
        r.Register(new OpSpec("hmm.read", "HMM_DMIRROR_READ of npages at addr (hmm_range_fault REQ_FAULT on a miss); checks ret (default 0), cpages, faults and the data read (seq: page i = seq+i, all, values)",
            Cmd, [.. Expect, .. Data], Read) { Check = CheckCmd });
        r.Register(new OpSpec("hmm.write", "HMM_DMIRROR_WRITE of npages at addr with the data seq/all/values (hmm_range_fault REQ_FAULT|REQ_WRITE on a miss); checks ret, cpages, faults",
            Cmd, [.. Expect, .. Data], Write) { Check = CheckCmd });
        r.Register(new OpSpec("hmm.migrate-to-dev", "HMM_DMIRROR_MIGRATE_TO_DEV: migrate_vma_setup/pages/finalize into device memory (MMU_NOTIFY_MIGRATE, owner = the device), then read back; checks ret, cpages, data",
            Cmd, [.. Expect, .. Data], MigrateToDev) { Check = CheckCmd });
        r.Register(new OpSpec("hmm.migrate-to-sys", "HMM_DMIRROR_MIGRATE_TO_SYS (6.0+): migrate the device's pages in the range back to system memory; checks ret, cpages",
            Cmd, Expect, MigrateToSys) { Check = CheckCmd });
        r.Register(new OpSpec("hmm.snapshot", "HMM_DMIRROR_SNAPSHOT: hmm_range_fault without faulting; expect: one HMM_DMIRROR_PROT_* code per page (numbers or names joined by |: error none read write pmd pud zero dev-private-local dev-private-remote dev-coherent-local dev-coherent-remote), or all: one code for every page",
            Cmd, ["ret", "cpages", "expect", "all"], Snapshot) { Check = CheckSnapshot });
        r.Register(new OpSpec("hmm.exclusive", "HMM_DMIRROR_EXCLUSIVE (5.14+): make_device_exclusive each page (MMU_NOTIFY_EXCLUSIVE), map it ATOMIC in the mirror, read back; checks ret, cpages, data",
            Cmd, [.. Expect, .. Data], Exclusive) { Check = CheckCmd });
        r.Register(new OpSpec("hmm.check-exclusive", "HMM_DMIRROR_CHECK_EXCLUSIVE: ret is -EPERM while any page of the range is still mapped ATOMIC (expected ret default 0)",
            Cmd, ["ret"], CheckExclusive) { Check = CheckCmd });
        r.Register(new OpSpec("hmm.release", "HMM_DMIRROR_RELEASE (6.1+): evict the device's memory to system memory (migrate_device_range)",
            ["mirror"], ["ret"], Release) { Check = (a, _) => ParseRet(a) });
        r.Register(new OpSpec("hmm.flags", "HMM_DMIRROR_FLAGS: flags (1 = FAIL_ALLOC: the next device THP allocation fails; eras with device-private THP)",
            ["mirror", "flags"], ["ret"], Flags) { Check = (a, _) => { a.GetBounded("flags", 0, 1); ParseRet(a); } });
        r.Register(new OpSpec("hmm.mmap", "mmap of the dmirror device file at addr (dmirror_fops_mmap: npages zeroed pages inserted read-only with vm_insert_page)",
            ["mirror", "addr", "npages"], ["ret"], MmapDevice) { Check = (a, _) => { a.GetAddress("addr"); a.GetBounded("npages", 1, MaxPages); ParseRet(a); } });
        r.Register(new OpSpec("hmm.gup", "a gup_test ioctl on the page at addr of process with FOLL_WRITE: test: basic (get_user_pages), fast (get_user_pages_fast), pin-fast-longterm, pin-longterm (FOLL_LONGTERM migrates device-coherent pages out first)",
            ["process", "addr", "test"], ["ret"], GupTest)
        {
            Check = (a, _) =>
            {
                if (a.GetString("test") is not ("basic" or "fast" or "pin-fast-longterm" or "pin-longterm"))
                    throw a.Error("test", $"unknown gup_test '{a.GetString("test")}' (known: basic, fast, pin-fast-longterm, pin-longterm)");
                ParseRet(a);
            },
        });
        r.Register(new OpSpec("hmm.fill", "the selftest's CPU loop: user stores into npages at addr of process (seq: page i = seq+i, or all)",
            ["process", "addr", "npages"], ["seq", "all"], Fill) { Check = CheckMem });
        r.Register(new OpSpec("hmm.expect-memory", "the selftest's CPU check: user loads of npages at addr of process must equal seq+i / all / values (faults device-private pages back)",
            ["process", "addr", "npages"], Data, ExpectMemory) { Check = CheckMem });
        r.Register(new OpSpec("hmm.expect-mirror", "the mirror's page table: entries (count); at addr: mapped (true/false), writable, atomic",
            ["mirror"], ["entries", "addr", "mapped", "writable", "atomic"], ExpectMirror)
        {
            Check = (a, _) =>
            {
                if (a.Has("entries")) a.GetInt("entries");
                if (a.Has("addr")) a.GetAddress("addr");
                if ((a.Has("mapped") || a.Has("writable") || a.Has("atomic")) && !a.Has("addr")) throw a.Error("mapped", "needs addr");
                a.GetBool("mapped"); a.GetBool("writable"); a.GetBool("atomic");
            },
        });
    }

    // ---------------------------------------------------------------- parsing (load time)

    static readonly (string Name, int Errno)[] Errnos =
        [("0", 0), ("efault", Hmm.EFAULT), ("eperm", Hmm.EPERM), ("einval", Hmm.EINVAL), ("enoent", Hmm.ENOENT), ("ebusy", Hmm.EBUSY), ("enomem", Hmm.ENOMEM)];

    /// <summary>The expected return code: 0 or an errno name; null for <c>any</c>.</summary>
    static int? ParseRet(OpArgs a)
    {
        string s = a.GetString("ret", "0").Trim().ToLowerInvariant();
        if (s == "any") return null;
        foreach (var (n, e) in Errnos)
            if (n == s || (s.StartsWith('-') && s[1..] == n)) return e;
        throw a.Error("ret", $"'{a.GetString("ret")}' is not an expected return (0, efault, eperm, einval, enoent, ebusy, enomem, any)");
    }

    static void CheckCmd(OpArgs a, ScenarioInfo _)
    {
        a.GetAddress("addr");
        a.GetBounded("npages", 1, MaxPages);
        ParseRet(a);
        if (a.Has("cpages")) a.GetULong("cpages");
        if (a.Has("faults")) a.GetULong("faults");
        ParseData(a, (int)a.GetULong("npages"));
    }

    static void CheckMem(OpArgs a, ScenarioInfo _)
    {
        a.GetAddress("addr");
        a.GetBounded("npages", 1, MaxPages);
        ParseData(a, (int)a.GetULong("npages"));
    }

    /// <summary>seq (page i holds seq + i), all (every page), or values (a comma list, one per page); null when none is given.</summary>
    static ulong[]? ParseData(OpArgs a, int npages)
    {
        int given = (a.Has("seq") ? 1 : 0) + (a.Has("all") ? 1 : 0) + (a.Has("values") ? 1 : 0);
        if (given > 1) throw a.Error(a.Has("values") ? "values" : "all", "give only one of seq, all, values");
        if (given == 0) return null;
        var d = new ulong[npages];
        if (a.Has("seq"))
        {
            ulong s = a.GetULong("seq");
            for (int i = 0; i < npages; i++) d[i] = s + (ulong)i;
        }
        else if (a.Has("all")) Array.Fill(d, a.GetULong("all"));
        else
        {
            // Items: a value, v*n (n times v), or a..b (a, a+1, ..., b).
            int n = 0;
            foreach (var part in a.GetString("values").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                ulong first, count = 1, step = 0;
                int star = part.IndexOf('*'), dots = part.IndexOf("..", StringComparison.Ordinal);
                if (star > 0 && OpArgs.TryParseULong(part[..star], out first) && OpArgs.TryParseULong(part[(star + 1)..], out count)) { }
                else if (dots > 0 && OpArgs.TryParseULong(part[..dots], out first) && OpArgs.TryParseULong(part[(dots + 2)..], out var last) && last >= first)
                {
                    count = last - first + 1;
                    step = 1;
                }
                else if (!OpArgs.TryParseULong(part, out first))
                    throw a.Error("values", $"'{part}' is not a value, v*n or a..b");
                if (count > (ulong)(npages - n)) throw a.Error("values", $"more values than the {npages} pages");
                for (ulong j = 0; j < count; j++) d[n++] = first + j * step;
            }
            if (n != npages) throw a.Error("values", $"{n} values for {npages} pages");
        }
        return d;
    }

    static readonly (string Name, byte Code)[] ProtNames =
    [
        ("error", DmirrorProt.Error), ("none", DmirrorProt.None), ("read", DmirrorProt.Read), ("write", DmirrorProt.Write),
        ("pmd", DmirrorProt.Pmd), ("pud", DmirrorProt.Pud), ("zero", DmirrorProt.Zero),
        ("dev-private-local", DmirrorProt.DevPrivateLocal), ("dev-private-remote", DmirrorProt.DevPrivateRemote),
        ("dev-coherent-local", DmirrorProt.DevCoherentLocal), ("dev-coherent-remote", DmirrorProt.DevCoherentRemote),
    ];

    static byte ParseProt(OpArgs a, string key, string s)
    {
        int code = 0;
        foreach (var part in s.Split('|', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            bool found = false;
            foreach (var (n, c) in ProtNames)
                if (n == part) { code |= c; found = true; }
            if (!found)
            {
                if (OpArgs.TryParseULong(part, out var v) && v <= 0xFF) code |= (int)v;
                else throw a.Error(key, $"'{part}' is not a snapshot code (known: {string.Join(", ", ProtNames.Select(p => p.Name))}, or 0..0xff)");
            }
        }
        return (byte)code;
    }

    static byte[]? ParseSnapshot(OpArgs a, int npages)
    {
        if (a.Has("expect") && a.Has("all")) throw a.Error("all", "give expect or all, not both");
        if (a.Has("all"))
        {
            var d = new byte[npages];
            Array.Fill(d, ParseProt(a, "all", a.GetString("all")));
            return d;
        }
        if (!a.Has("expect")) return null;
        // Items: a code, or code*n (n pages with that code).
        var r = new byte[npages];
        int k = 0;
        foreach (var part in a.GetString("expect").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int star = part.LastIndexOf('*');
            ulong count = 1;
            string code = part;
            if (star > 0)
            {
                if (!OpArgs.TryParseULong(part[(star + 1)..], out count) || count == 0) throw a.Error("expect", $"'{part}': the repeat count must be a positive number");
                code = part[..star];
            }
            if (count > (ulong)(npages - k)) throw a.Error("expect", $"more codes than the {npages} pages");
            byte c = ParseProt(a, "expect", code);
            for (ulong j = 0; j < count; j++) r[k++] = c;
        }
        if (k != npages) throw a.Error("expect", $"{k} codes for {npages} pages");
        return r;
    }

    static void CheckSnapshot(OpArgs a, ScenarioInfo _)
    {
        a.GetAddress("addr");
        a.GetBounded("npages", 1, MaxPages);
        ParseRet(a);
        if (a.Has("cpages")) a.GetULong("cpages");
        ParseSnapshot(a, (int)a.GetULong("npages"));
    }

    // ---------------------------------------------------------------- checks (run time)

    static string Errno(int e)
    {
        foreach (var (n, v) in Errnos)
            if (v == e) return e == 0 ? "0" : "-" + n.ToUpperInvariant();
        return e.ToString();
    }

    static bool Expected(ScenarioWorld w, OpArgs a, Dmirror m, Dmirror.CmdResult r)
    {
        string what = $"{a.File}:{a.Line}: {a.Op} on {m.Name}";
        var expect = ParseRet(a);
        if (expect == null && r.Ret != 0) return false; // ret: any, and it failed: nothing else to check
        if (expect is { } want && r.Ret != want)
        {
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{what} returned {Errno(r.Ret)}, expected {Errno(want)}");
            return false;
        }
        if (a.Has("cpages") && r.Cpages != a.GetULong("cpages"))
        {
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{what}: cpages {r.Cpages}, expected {a.GetULong("cpages")}");
            return false;
        }
        if (a.Has("faults") && r.Faults != a.GetULong("faults"))
        {
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{what}: faults {r.Faults}, expected {a.GetULong("faults")}");
            return false;
        }
        return true;
    }

    static void CheckData(ScenarioWorld w, OpArgs a, string who, ulong addr, ulong[] got, int n)
    {
        var want = ParseData(a, (int)a.GetULong("npages"));
        if (want == null) return;
        for (int i = 0; i < n && i < want.Length; i++)
            if (got[i] != want[i])
            {
                ulong va = addr + ((ulong)i << MmStruct.PageShift);
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {who} page {i} (0x{va:x}) holds 0x{got[i]:x}, expected 0x{want[i]:x}", va);
                return;
            }
    }

    // ---------------------------------------------------------------- ops

    static async ValueTask Open(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name");
        if (w.Objects.ContainsKey(name)) throw a.Error("name", $"an object named '{name}' already exists");
        if (!w.K.Era.Has(Feature.TestHmm) || !w.K.Era.Has(Feature.IntervalNotifier))
            throw new ScenarioException(a.File, a.Line, a.Op, $"lib/test_hmm.c does not exist in {w.K.Era.Name} (5.7+)");
        int dev = (int)a.GetULong("device", 0);
        if (dev >= 2 && !w.K.Era.Has(Feature.DeviceCoherent))
            throw a.Error("device", $"DEVICE_COHERENT not available in {w.K.Era.Name} (6.0+; the selftest SKIPs)");
        if (mm.Exited || mm.Users <= 0) throw a.Error("process", $"process '{a.GetString("process")}' has exited");
        w.Objects[name] = await Dmirror.Open(w.K, mm, DmirrorDevice.Get(w.K, dev), name);
    }

    static ValueTask Close(ScenarioWorld w, OpArgs a) => w.Get<Dmirror>(a, "mirror").Close();

    static (Dmirror M, ulong Addr, ulong N) CmdArgs(ScenarioWorld w, OpArgs a) =>
        (w.Get<Dmirror>(a, "mirror"), a.GetAddress("addr"), a.GetULong("npages"));

    static async ValueTask Read(ScenarioWorld w, OpArgs a)
    {
        var (m, addr, n) = CmdArgs(w, a);
        var buf = new ulong[n];
        var r = await m.Read(addr, n, buf);
        if (Expected(w, a, m, r) && r.Ret == 0) CheckData(w, a, m.Name, addr, buf, (int)r.Cpages);
    }

    static async ValueTask Write(ScenarioWorld w, OpArgs a)
    {
        var (m, addr, n) = CmdArgs(w, a);
        var data = ParseData(a, (int)n) ?? new ulong[n];
        Expected(w, a, m, await m.Write(addr, n, data));
    }

    static async ValueTask MigrateToDev(ScenarioWorld w, OpArgs a)
    {
        var (m, addr, n) = CmdArgs(w, a);
        var buf = new ulong[n];
        var r = await m.MigrateToDev(addr, n, buf);
        if (Expected(w, a, m, r) && r.Ret == 0) CheckData(w, a, m.Name, addr, buf, (int)r.Cpages);
    }

    static async ValueTask MigrateToSys(ScenarioWorld w, OpArgs a)
    {
        var (m, addr, n) = CmdArgs(w, a);
        Expected(w, a, m, await m.MigrateToSys(addr, n));
    }

    static async ValueTask Snapshot(ScenarioWorld w, OpArgs a)
    {
        var (m, addr, n) = CmdArgs(w, a);
        var perm = new byte[n];
        var r = await m.Snapshot(addr, n, perm);
        if (!Expected(w, a, m, r) || r.Ret != 0) return;
        if (ParseSnapshot(a, (int)n) is not { } want) return;
        for (int i = 0; i < (int)n; i++)
            if (perm[i] != want[i])
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: {m.Name} snapshot page {i} (0x{addr + ((ulong)i << MmStruct.PageShift):x}) is 0x{perm[i]:x2}, expected 0x{want[i]:x2}");
                return;
            }
    }

    static async ValueTask Exclusive(ScenarioWorld w, OpArgs a)
    {
        var (m, addr, n) = CmdArgs(w, a);
        var buf = new ulong[n];
        var r = await m.Exclusive(addr, n, buf);
        if (Expected(w, a, m, r) && r.Ret == 0) CheckData(w, a, m.Name, addr, buf, (int)r.Cpages);
    }

    static async ValueTask CheckExclusive(ScenarioWorld w, OpArgs a)
    {
        var (m, addr, n) = CmdArgs(w, a);
        Expected(w, a, m, await m.CheckExclusive(addr, n));
    }

    static async ValueTask Release(ScenarioWorld w, OpArgs a)
    {
        var m = w.Get<Dmirror>(a, "mirror");
        Expected(w, a, m, await m.Release());
    }

    static ValueTask Flags(ScenarioWorld w, OpArgs a)
    {
        var m = w.Get<Dmirror>(a, "mirror");
        Expected(w, a, m, m.Flags(a.GetULong("flags")));
        return default;
    }

    static async ValueTask MmapDevice(ScenarioWorld w, OpArgs a)
    {
        var m = w.Get<Dmirror>(a, "mirror");
        ulong addr = a.GetAddress("addr"), n = a.GetULong("npages");
        if (m.MirroredMm.FindVma(addr) != null || m.MirroredMm.FindVma(addr + (n << MmStruct.PageShift) - 1) != null)
            throw a.Error("addr", $"[0x{addr:x}, +{n} pages) overlaps an existing mapping");
        Expected(w, a, m, new Dmirror.CmdResult(await m.Mmap(addr, n), 0, 0));
    }

    /// <summary>
    /// tools/testing/selftests/mm/gup_test.c's ioctls for one page: get or pin it (FOLL_WRITE), then put or unpin it.
    /// A FOLL_LONGTERM pin of a device-coherent page migrates it to system memory first (migrate_device_coherent_folio).
    /// </summary>
    static async ValueTask GupTest(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        var k = w.K;
        ulong addr = a.GetAddress("addr");
        bool longterm = a.GetString("test").EndsWith("longterm", StringComparison.Ordinal);
        int ret = 0;
        for (int attempt = 0; attempt < 4; attempt++)
        {
            var g = await Gup.GetUserPage(mm, addr, write: true);
            if (!g.Ok) { ret = Hmm.EFAULT; break; }
            bool coherent = DevicePagemaps.Of(k).IsDeviceCoherentPage(g.Pfn);
            Folio.Put(k, g.Pfn);
            if (!longterm || !coherent) break;
            // check_and_migrate_movable_pages: a long-term pin may not keep device memory busy.
            await MigrateDevice.MigrateDeviceRange(k, [g.Pfn], src =>
            {
                long d = k.Mem.AllocPage();
                if (d >= 0) k.Mem[d].Contents = k.Mem[src].Contents;
                return new ValueTask<long>(d);
            });
        }
        if (ParseRet(a) is { } want && want != ret)
            k.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: gup_test {a.GetString("test")} at 0x{addr:x} returned {Errno(ret)}, expected {Errno(want)}", addr);
    }

    static async ValueTask Fill(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr"), n = a.GetULong("npages");
        var data = ParseData(a, (int)n) ?? new ulong[n];
        for (ulong i = 0; i < n && w.K.S.Violation == null; i++)
        {
            ulong va = addr + (i << MmStruct.PageShift);
            var r = await Memory.UserAccessResult(mm, va, write: true, data[i]);
            if (r.Fault != VmFault.Ok)
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {mm} store at 0x{va:x} ended with {r.Fault}", va);
                return;
            }
        }
    }

    static async ValueTask ExpectMemory(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr"), n = a.GetULong("npages");
        var got = new ulong[n];
        for (ulong i = 0; i < n && w.K.S.Violation == null; i++)
        {
            ulong va = addr + (i << MmStruct.PageShift);
            var r = await Memory.UserAccessResult(mm, va, write: false);
            if (r.Fault != VmFault.Ok)
            {
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {mm} load at 0x{va:x} ended with {r.Fault}", va);
                return;
            }
            got[i] = r.Value;
        }
        CheckData(w, a, mm.ToString(), addr, got, (int)n);
    }

    static ValueTask ExpectMirror(ScenarioWorld w, OpArgs a)
    {
        var m = w.Get<Dmirror>(a, "mirror");
        if (a.Has("entries") && m.Entries != a.GetInt("entries"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {m.Name} has {m.Entries} entries, expected {a.GetInt("entries")}");
        if (a.Has("addr"))
        {
            var (mapped, _, writable, atomic) = m.Lookup(a.GetAddress("addr"));
            if (a.Has("mapped") && mapped != a.GetBool("mapped") || a.Has("writable") && writable != a.GetBool("writable") ||
                a.Has("atomic") && atomic != a.GetBool("atomic"))
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: {m.Name} at 0x{a.GetAddress("addr"):x}: mapped={mapped} writable={writable} atomic={atomic}");
        }
        return default;
    }
}
