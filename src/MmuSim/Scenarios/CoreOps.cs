using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>
/// Scenario ops for the primary mm and the scenario machinery itself (docs/scenarios.md lists them all):
/// user accesses, faults, mmap/munmap/madvise/exit, a recording secondary, a device mirror, simulated sleep, thread
/// events and value assertions; the other mm paths are in CoreOps.MmPaths.cs. Registered through <see cref="OpRegistry.Providers"/>.
/// </summary>
public static partial class CoreOps
{
    static readonly string[] P = ["process"];

    /// <summary>
    /// madvise advice handlers by name (<c>madvise: {advice: dontneed}</c>). Subsystems add theirs (KSM: mergeable,
    /// unmergeable) before the registry is first used; the loader rejects advice nobody handles.
    /// Each handler runs with no lock held and takes what the kernel's madvise takes.
    /// </summary>
    public static readonly Dictionary<string, Func<MmStruct, ulong, ulong, ValueTask>> MadviseHandlers = new(StringComparer.Ordinal)
    {
        ["dontneed"] = (mm, s, e) => Madvise.MadviseDontneed(mm, s, e - s),
        ["free"] = async (mm, s, e) => await Madvise.MadviseFree(mm, s, e - s),
        ["hugepage"] = (mm, s, e) => MadviseVmFlags(mm, s, e, VmFlags.HugePage, VmFlags.NoHugePage),
        ["nohugepage"] = (mm, s, e) => MadviseVmFlags(mm, s, e, VmFlags.NoHugePage, VmFlags.HugePage),
        ["dontfork"] = (mm, s, e) => MadviseVmFlags(mm, s, e, VmFlags.DontCopy, VmFlags.None),
        ["dofork"] = (mm, s, e) => MadviseVmFlags(mm, s, e, VmFlags.None, VmFlags.DontCopy),
    };

    /// <summary>
    /// madvise advice that returns an errno (<c>madvise: {advice: populate_read, expect: enomem}</c>): the result is
    /// compared with the op's <c>expect</c> (default ok), a mismatch is an unexpected-value violation naming file:line.
    /// </summary>
    public static readonly Dictionary<string, Func<MmStruct, ulong, ulong, ValueTask<int>>> MadviseErrnoHandlers = new(StringComparer.Ordinal)
    {
        ["populate_read"] = (mm, s, e) => Madvise.MadvisePopulate(mm, s, e, write: false),
        ["populate_write"] = (mm, s, e) => Madvise.MadvisePopulate(mm, s, e, write: true),
        ["wipeonfork"] = (mm, s, e) => Madvise.MadviseWipeOnFork(mm, s, e, wipe: true),
        ["keeponfork"] = (mm, s, e) => Madvise.MadviseWipeOnFork(mm, s, e, wipe: false),
        ["collapse"] = Khugepaged.MadviseCollapse,
        ["remove"] = (mm, s, e) => Madvise.MadviseRemove(mm, s, e - s),
    };

    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("read", "user load from addr (faults it in); `as` stores the value; expect: ok (default), sigsegv, sigbus, oom or any",
            ["process", "addr"], ["as", "expect"], Read) { Check = CheckAccess });
        r.Register(new OpSpec("write", "user store of value at addr (faults it in, breaks COW); len: each page of [addr, addr+len) in address order, " +
            "page i storing value + i*step (step default 0, wrapping: the selftests' memset(p % 255) pattern); expect: ok (default), sigsegv, sigbus, oom or any, for every page",
            ["process", "addr", "value"], ["expect", "len", "step"], Write)
        { Check = (a, i) => { a.GetULong("value"); a.GetULong("step", 0); a.GetBounded("len", 0, 1UL << 32, MmStruct.PageSize); CheckAccess(a, i); } });
        r.Register(new OpSpec("expect-value", "user load from addr (len: from each page of [addr, addr+len), in address order, page i expected to hold " +
            "value + i*step, step default 0); a different value is an unexpected-value violation",
            ["process", "addr", "value"], ["len", "step"], ExpectValue)
        { Check = (a, i) => { a.GetULong("value"); a.GetULong("step", 0); a.GetBounded("len", 0, 1UL << 32, MmStruct.PageSize); i.RequireMapped(a); } });
        r.Register(new OpSpec("fault", "handle_mm_fault at addr under mmap_lock (read), without touching the data",
            ["process", "addr"], ["write"], Fault) { Check = (a, i) => { a.GetBool("write"); i.RequireMapped(a); } });
        r.Register(new OpSpec("mmap", "mmap at a fixed address (prot: rw default; flags: mergeable, hugepage, shared...): anonymous, or of file: (file.create) from byte offset (MAP_PRIVATE unless shared)",
            ["process", "addr", "len"], ["prot", "flags", "file", "offset"], DoMmap) { Check = CheckMmap });
        r.Register(new OpSpec("munmap", "munmap [addr, addr+len): UNMAP start/end, zap, free after end",
            ["process", "addr", "len"], [], DoMunmap));
        r.Register(new OpSpec("madvise", "madvise(addr, len, advice): dontneed, free, hugepage, nohugepage, dontfork, dofork (VM_DONTCOPY), " +
            "populate_read, populate_write (5.14), wipeonfork, keeponfork (4.14), collapse (6.1), remove (a shared file mapping: punch the hole); KSM adds mergeable, unmergeable; " +
            "expect: the errno (ok default; only for the errno-returning advice), or several joined by | (ok|eagain)",
            ["process", "addr", "len", "advice"], ["expect"], MadviseOp) { Check = CheckMadvise });
        r.Register(new OpSpec("khugepaged", "khugepaged scans the PMD range at addr (2 MiB aligned) and collapses it (max_ptes_none 511, swap 64, shared 256; VM_HUGEPAGE); " +
            "a shmem VMA goes through collapse_file and retract_page_tables (4.8), and each pass first runs collapse_pte_mapped_thp on ranges a failed trylock left (5.4); expect: collapsed (default), failed or any",
            ["process", "addr"], ["expect"], KhugepagedOp) { Check = CheckKhugepaged });
        r.Register(new OpSpec("exit", "exit_mmap: ->release first, then unmap everything", P, [], Exit));
        r.Register(new OpSpec("record", "register a recording secondary (every callback logged) on process; name for expect-calls",
            ["process"], ["name"], Record));
        r.Register(new OpSpec("expect-calls", "the recorder's callbacks since the last expect-calls, as kinds: InvalidateRangeStart,...",
            ["recorder", "calls"], [], ExpectCalls));
        r.Register(new OpSpec("mirror", "attach a dmirror-style device that mirrors process (checked for coherence); name it for mirror.read/write",
            ["process"], ["name"], Mirror));
        r.Register(new OpSpec("mirror.read", "device read of addr through the mirror (faults through GUP; `as` stores the value)",
            ["mirror", "addr"], ["as"], MirrorRead));
        r.Register(new OpSpec("mirror.write", "device write of value at addr through the mirror (GUP for write breaks COW)",
            ["mirror", "addr", "value"], [], MirrorWrite) { Check = (a, _) => a.GetULong("value") });
        r.Register(new OpSpec("sleep", "sleep on the simulated clock for ns nanoseconds", ["ns"], [], Sleep)
        { Check = (a, _) => a.GetULong("ns") });
        r.Register(new OpSpec("signal", "complete an event: wakes every thread in wait: {event}", ["event"], [], Signal));
        r.Register(new OpSpec("wait", "block until another thread signals the event (forces an ordering)", ["event"], [], Wait));
        r.Register(new OpSpec("expect-pagemap", "the /proc/PID/pagemap entry of addr: each given bit (present, swapped, exclusive, soft_dirty, file, uffd_wp) must match; " +
            "as: NAME records the pfn, pfn: NAME / pfn_not: NAME require the same / another pfn than the one recorded (pagemap_get_pfn); else unexpected-value",
            ["process", "addr"], [.. PagemapBits, "as", "pfn", "pfn_not"], ExpectPagemap)
        {
            Check = (a, i) =>
            {
                foreach (var b in PagemapBits) a.GetBool(b);
                if (a.Has("pfn")) i.RequireNamed(a, "pfn", "recorded pfn");
                if (a.Has("pfn_not")) i.RequireNamed(a, "pfn_not", "recorded pfn");
            },
        });
        r.Register(new OpSpec("expect-smaps", "the /proc/PID/smaps fields of the VMA at addr, in kB: each given field (rss, anon_huge_pages, " +
            "shmem_pmd_mapped, file_pmd_mapped: Rss, AnonHugePages, ShmemPmdMapped, FilePmdMapped) must match, as check_huge_anon and " +
            "check_huge_shmem read them; else unexpected-value", ["process", "addr"], [.. SmapsFieldNames], ExpectSmaps)
        {
            Check = (a, i) =>
            {
                foreach (var f in SmapsFieldNames) a.GetULong(f, 0);
                if (!SmapsFieldNames.Any(a.Has)) throw a.Error("addr", $"give at least one field to check ({string.Join(", ", SmapsFieldNames)})");
                i.RequireMapped(a);
            },
        });
        RegisterMmPaths(r);
        RegisterGup(r);
        RegisterFile(r);
        RegisterNuma(r);
        RegisterPageIdle(r);
        RegisterLruGen(r);
        RegisterProcess(r);
    }

    // ---------------------------------------------------------------- accesses

    /// <summary>The outcomes an access's <c>expect</c> field names: a fault kind, or null for "any".</summary>
    static readonly Dictionary<string, VmFault?> AccessOutcomes = new(StringComparer.Ordinal)
    {
        ["ok"] = VmFault.Ok, ["sigsegv"] = VmFault.SigSegv, ["sigbus"] = VmFault.SigBus, ["oom"] = VmFault.Oom, ["any"] = null,
    };

    /// <summary>read/write: a known <c>expect</c>; the address must be mappable unless the access is expected to fault.</summary>
    static void CheckAccess(OpArgs a, ScenarioInfo i)
    {
        var e = a.GetString("expect", "ok");
        if (!AccessOutcomes.TryGetValue(e, out var want))
            throw a.Error("expect", $"'{e}' is not an access outcome (ok, sigsegv, sigbus, oom, any)");
        if (want == VmFault.Ok) i.RequireMapped(a);
    }

    /// <summary>Compare an access's outcome with its <c>expect</c>: a mismatch is an unexpected-fault violation naming file:line.</summary>
    static void CheckOutcome(ScenarioWorld w, OpArgs a, MmStruct mm, ulong addr, AccessResult r)
    {
        var want = AccessOutcomes[a.GetString("expect", "ok")];
        if (want is not { } f || f == r.Fault) return;
        w.K.S.Fail(ScenarioInvariants.UnexpectedFault,
            $"{a.File}:{a.Line}: {a.Op} by {mm} at 0x{addr:x} ended {Outcome(r.Fault)}, expected {Outcome(f)}", addr);
    }

    static string Outcome(VmFault f) => f switch
    {
        VmFault.Ok => "ok", VmFault.SigSegv => "SIGSEGV", VmFault.SigBus => "SIGBUS", VmFault.Oom => "OOM", _ => "in a livelock",
    };

    static async ValueTask Read(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        var r = await Memory.UserAccessResult(mm, addr, write: false);
        CheckOutcome(w, a, mm, addr, r);
        if (a.Has("as") && r.Fault == VmFault.Ok) w.Observed[a.GetString("as")] = r.Value;
    }

    static async ValueTask Write(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong start = a.GetAddress("addr"), value = a.GetULong("value"), step = a.GetULong("step", 0), end = start + a.GetULong("len", MmStruct.PageSize);
        for (ulong addr = start; addr < end; addr += MmStruct.PageSize, value += step)
            CheckOutcome(w, a, mm, addr, await Memory.UserAccessResult(mm, addr, write: true, value));
    }

    static async ValueTask ExpectValue(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong start = a.GetAddress("addr"), want = a.GetULong("value"), step = a.GetULong("step", 0), end = start + a.GetULong("len", MmStruct.PageSize);
        for (ulong addr = start; addr < end; addr += MmStruct.PageSize, want += step)
        {
            var got = await Memory.UserAccess(mm, addr, write: false);
            if (got == want) continue;
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {mm} reads {(got is { } g ? $"0x{g:x}" : "SIGSEGV")} at 0x{addr:x}, expected 0x{want:x}", addr);
            return;
        }
    }

    /// <summary>A fault without the access: what GUP or a prefault does.</summary>
    static async ValueTask Fault(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        await mm.MmapLock.ReadLock();
        try { await Memory.HandleMmFault(mm, addr, a.GetBool("write") ? FaultFlags.Write : FaultFlags.None); }
        finally { await mm.MmapLock.ReadUnlock(); }
    }

    static readonly string[] PagemapBits = ["present", "swapped", "exclusive", "soft_dirty", "file", "uffd_wp"];
    static readonly int[] PagemapBitNumbers = [TaskMmu.PmPresent, TaskMmu.PmSwap, TaskMmu.PmMmapExclusive, TaskMmu.PmSoftDirty, TaskMmu.PmFile, TaskMmu.PmUffdWp];

    static readonly string[] SmapsFieldNames = ["rss", "anon_huge_pages", "shmem_pmd_mapped", "file_pmd_mapped"];

    /// <summary>expect-smaps: compare the VMA's smaps fields (<see cref="TaskMmu.Smaps"/>) with the given values.</summary>
    static async ValueTask ExpectSmaps(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        await w.K.S.Point(PointKind.PteRead, addr);
        if (mm.FindVma(addr) is not { } vma)
        {
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: smaps of {mm} has no VMA at 0x{addr:x}", addr);
            return;
        }
        var got = TaskMmu.Smaps(mm, vma);
        ulong[] values = [got.Rss, got.AnonHugePages, got.ShmemPmdMapped, got.FilePmdMapped];
        for (int i = 0; i < SmapsFieldNames.Length; i++)
        {
            if (!a.Has(SmapsFieldNames[i])) continue;
            ulong want = a.GetULong(SmapsFieldNames[i]);
            if (want != values[i])
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: smaps of {mm} at 0x{addr:x}: {SmapsFieldNames[i]} is {values[i]} kB, expected {want} kB", addr);
        }
    }

    static readonly (string Key, bool Same)[] PfnChecks = [("pfn", true), ("pfn_not", false)];

    /// <summary>pagemap_read of one entry, compared bit by bit with the fields given, and its pfn with recorded ones.</summary>
    static async ValueTask ExpectPagemap(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        await w.K.S.Point(PointKind.PteRead, addr);
        ulong e = TaskMmu.PagemapEntry(mm, addr);
        ulong pfn = (e >> TaskMmu.PmPresent & 1) != 0 ? e & TaskMmu.PmPfnMask : ulong.MaxValue; // pagemap_get_pfn: -1 if not present
        if (a.Has("as")) w.Observed[a.GetString("as")] = pfn;
        foreach (var (key, same) in PfnChecks)
        {
            if (!a.Has(key)) continue;
            string name = a.GetString(key);
            bool recorded = w.Observed.TryGetValue(name, out ulong want);
            if (recorded && (pfn == want) == same) continue;
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: pagemap of {mm} at 0x{addr:x} gives pfn " +
                $"{(pfn == ulong.MaxValue ? "none" : $"0x{pfn:x}")}, expected {(same ? "" : "not ")}{name} " +
                (recorded ? $"(0x{want:x})" : "(not recorded yet)"), addr);
        }
        for (int i = 0; i < PagemapBits.Length; i++)
        {
            if (!a.Has(PagemapBits[i])) continue;
            bool want = a.GetBool(PagemapBits[i]), got = (e >> PagemapBitNumbers[i] & 1) != 0;
            if (want != got)
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: pagemap of {mm} at 0x{addr:x} is 0x{e:x}: {PagemapBits[i]} is {got}, expected {want}", addr);
        }
    }

    // ---------------------------------------------------------------- address space

    static void CheckMmap(OpArgs a, ScenarioInfo i)
    {
        if (a.Has("prot") && ScenarioLoader.ParseProt(a.GetString("prot"), allowWriteOnly: true) == null)
            throw a.Error("prot", $"'{a.GetString("prot")}' is not a protection (r, w, rw, rwx, none)");
        if (a.Has("flags"))
            foreach (var f in a.GetString("flags").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (ScenarioLoader.ParseVmFlag(f) is not { } fl) throw a.Error("flags", $"unknown VMA flag '{f}'");
                if (fl == VmFlags.Hugetlb && !Hugetlb.HugetlbPages.Aligned(a.GetAddress("addr"), a.GetULong("len")))
                    throw a.Error("len", $"[0x{a.GetAddress("addr"):x}, +0x{a.GetULong("len"):x}) is not on 2 MiB boundaries, as MAP_HUGETLB needs (EINVAL)");
                if (fl == VmFlags.Hugetlb && a.Has("file")) throw a.Error("file", "MAP_HUGETLB maps anonymous memory (a hugetlbfs file is not modelled)");
            }
        if (a.Has("file")) i.RequireNamed(a, "file", "file");
        else if (a.Has("offset")) throw a.Error("offset", "an offset needs a file: (anonymous memory has none)");
        if (a.Has("offset")) FileSizePages(a, "offset");
    }

    static async ValueTask DoMmap(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        var prot = a.Has("prot") ? ScenarioLoader.ParseProt(a.GetString("prot"), allowWriteOnly: true)!.Value : Prot.ReadWrite;
        var flags = VmFlags.None;
        if (a.Has("flags"))
            foreach (var f in a.GetString("flags").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                flags |= ScenarioLoader.ParseVmFlag(f)!.Value;
        ulong addr = a.GetAddress("addr"), len = a.GetULong("len");
        if ((flags & VmFlags.Hugetlb) != 0 && !w.K.Era.Has(Eras.Feature.Hugetlb))
        {
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: mmap(MAP_HUGETLB) returned EINVAL: no MAP_HUGETLB in era {w.K.Era.Name}", addr);
            return;
        }
        foreach (var v in mm.Vmas)
            if (v.Start < addr + len && addr < v.End)
                throw a.Error("addr", $"mmap [0x{addr:x}, 0x{addr + len:x}) overlaps the VMA {v} of {mm} (MAP_FIXED_NOREPLACE)");
        if (a.Has("file"))
        {
            var f = File(w, a);
            ulong pgoff = a.Has("offset") ? FileSizePages(a, "offset") : 0;
            if (f.Kind == Mm.FileKind.MemfdHugetlb && (!Hugetlb.HugetlbPages.Aligned(addr, len) || (pgoff & (PhysMem.HugePages - 1)) != 0))
                throw a.Error("len", $"[0x{addr:x}, 0x{addr + len:x}) of {f} is not on 2 MiB boundaries, as a hugetlbfs mapping must be (EINVAL)");
            await Mmap.DoMmap(mm, addr, len, prot, flags, file: f, pgoff: pgoff);
        }
        else await Mmap.DoMmap(mm, addr, len, prot, flags);
    }

    static ValueTask DoMunmap(ScenarioWorld w, OpArgs a) => Mmap.Munmap(w.Process(a), a.GetAddress("addr"), a.GetULong("len"));

    static ValueTask Exit(ScenarioWorld w, OpArgs a) => Mmap.ExitMmap(w.Process(a));

    static void CheckMadvise(OpArgs a, ScenarioInfo _)
    {
        var adv = a.GetString("advice");
        bool errno = MadviseErrnoHandlers.ContainsKey(adv);
        if (!errno && !MadviseHandlers.ContainsKey(adv))
            throw a.Error("advice", $"unknown or not yet modelled advice '{adv}' (available: {string.Join(", ", MadviseHandlers.Keys.Concat(MadviseErrnoHandlers.Keys).Order())})");
        if (a.Has("expect") && !errno)
            throw a.Error("expect", $"advice '{adv}' reports no errno in the model (expect is for {string.Join(", ", MadviseErrnoHandlers.Keys.Order())})");
        a.GetErrnoSet("expect");
        ulong len = a.GetULong("len");
        if (a.GetAddress("addr") + len > 1UL << 47) throw a.Error("len", $"0x{len:x} runs past the 47-bit user address space");
    }

    static async ValueTask MadviseOp(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong start = a.GetAddress("addr");
        string adv = a.GetString("advice");
        if (!MadviseErrnoHandlers.TryGetValue(adv, out var h))
        {
            await MadviseHandlers[adv](mm, start, start + a.GetULong("len"));
            return;
        }
        int got = await h(mm, start, start + a.GetULong("len"));
        var want = a.GetErrnoSet("expect");
        if (Array.IndexOf(want, got) < 0)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: madvise({adv}) on {mm} at 0x{start:x} returned {Errno.NameOf(got)}, expected {a.GetString("expect", "ok")}", start);
    }

    static readonly string[] KhugepagedOutcomes = ["collapsed", "failed", "any"];

    static void CheckKhugepaged(OpArgs a, ScenarioInfo _)
    {
        if ((a.GetAddress("addr") & ~MmStruct.PmdMask) != 0) throw a.Error("addr", $"0x{a.GetAddress("addr"):x} is not 2 MiB aligned");
        var e = a.GetString("expect", "collapsed");
        if (Array.IndexOf(KhugepagedOutcomes, e) < 0) throw a.Error("expect", $"'{e}' is not a khugepaged outcome (collapsed, failed, any)");
    }

    static async ValueTask KhugepagedOp(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        var r = await Khugepaged.KhugepagedScanPmd(mm, addr);
        bool collapsed = r is ScanResult.Succeed or ScanResult.PmdMapped;
        var e = a.GetString("expect", "collapsed");
        if (e == "any" || collapsed == (e == "collapsed")) return;
        w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
            $"{a.File}:{a.Line}: khugepaged at 0x{addr:x} of {mm} {(collapsed ? "collapsed" : $"did not collapse ({r})")}, expected {e}", addr);
    }

    /// <summary>madvise_update_vma: set/clear VM_HUGEPAGE-style flags, splitting VMAs at the edges and merging what
    /// became alike again (vma_merge). mmap_lock for write.</summary>
    static async ValueTask MadviseVmFlags(MmStruct mm, ulong start, ulong end, VmFlags set, VmFlags clear)
    {
        using var _ = mm.Kernel.S.Current.Enter("madvise_update_vma");
        await mm.MmapLock.WriteLock();
        try
        {
            foreach (var v in await Mmap.SplitAround(mm, start, end)) v.Flags = (v.Flags & ~clear) | set;
            Mmap.VmaMergeAround(mm, start, end);
        }
        finally { await mm.MmapLock.WriteUnlock(); }
    }

    // ---------------------------------------------------------------- recording secondary

    static async ValueTask Record(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name", "recorder");
        if (w.Objects.ContainsKey(name)) throw a.Error("name", $"an object named '{name}' already exists");
        var rec = new RecordingSecondary(w.K);
        w.Objects[name] = rec;
        w.Objects["report:" + name] = new RecorderReport(name, rec);
        await mm.Notifiers.Register(rec);
    }

    static ValueTask ExpectCalls(ScenarioWorld w, OpArgs a)
    {
        var rec = w.Get<RecordingSecondary>(a, "recorder");
        var report = (RecorderReport)w.Objects["report:" + a.GetString("recorder")];
        var want = string.Join(",", a.GetString("calls").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
        var calls = rec.Calls.Skip(report.Checked).Select(c => c.Kind.ToString());
        var got = string.Join(",", calls);
        report.Checked = rec.Calls.Count;
        if (got != want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: recorder '{a.GetString("recorder")}' saw [{got}], expected [{want}]");
        return default;
    }

    sealed class RecorderReport(string name, RecordingSecondary rec) : IRunReport
    {
        public int Checked;

        public string ReportTitle => $"recorder {name}: {rec.Calls.Count} callback(s)";

        public void Report(TextWriter w)
        {
            foreach (var c in rec.Calls)
                w.WriteLine($"CPU{c.Cpu} {c.Kind}(0x{c.Start:x}, 0x{c.End:x}" +
                    (c.Event != MmuSim.Notifier.MmuNotifyEvent.None ? $", {c.Event}" : "") + (c.Blockable ? "" : ", nonblock") +
                    (c.Atomic ? ", atomic" : "") + (c.Kind == CallbackKind.ChangePte ? $", pfn 0x{c.Pte.Pfn:x}{(c.Pte.Writable ? " writable" : "")}" : "") + ")");
        }
    }

    // ---------------------------------------------------------------- device mirror

    static async ValueTask Mirror(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name", "mirror");
        if (w.Objects.ContainsKey(name)) throw a.Error("name", $"an object named '{name}' already exists");
        var dev = new DeviceMirror(w.K, mm, name);
        w.Objects[name] = dev;
        await mm.Notifiers.Register(dev);
        w.K.Checker.AddSecondary(dev);
    }

    static async ValueTask MirrorRead(ScenarioWorld w, OpArgs a)
    {
        var v = await w.Get<DeviceMirror>(a, "mirror").Access(a.GetAddress("addr"), write: false);
        if (a.Has("as") && v is { } value) w.Observed[a.GetString("as")] = value;
    }

    static async ValueTask MirrorWrite(ScenarioWorld w, OpArgs a) =>
        await w.Get<DeviceMirror>(a, "mirror").Access(a.GetAddress("addr"), write: true, a.GetULong("value"));

    // ---------------------------------------------------------------- time and ordering

    static async ValueTask Sleep(ScenarioWorld w, OpArgs a) => await w.K.S.Sleep((long)a.GetULong("ns"));

    /// <summary>A one-shot completion between scenario threads.</summary>
    sealed class ScenarioEvent(Scheduler s, string name)
    {
        public bool Done;
        public readonly WaitQueue Wq = new(s, "event:" + name);
    }

    static ScenarioEvent EventOf(ScenarioWorld w, OpArgs a)
    {
        var key = "event:" + a.GetString("event");
        if (!w.Objects.TryGetValue(key, out var o)) w.Objects[key] = o = new ScenarioEvent(w.K.S, a.GetString("event"));
        return (ScenarioEvent)o;
    }

    static async ValueTask Signal(ScenarioWorld w, OpArgs a)
    {
        var e = EventOf(w, a);
        await w.K.S.Point(PointKind.Yield);
        e.Done = true;
        e.Wq.WakeAll();
    }

    static async ValueTask Wait(ScenarioWorld w, OpArgs a)
    {
        var e = EventOf(w, a);
        while (!e.Done) await e.Wq.Wait();
    }
}
