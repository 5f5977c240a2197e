using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Ksm;

/// <summary>
/// Scenario ops of the KSM subsystem (<c>ksm.*</c>). Each runs on the scenario thread that performs it; the ksmd
/// daemon is started by <c>ksmd</c>. Errors from the kernel (-EINVAL, -EBUSY) are scenario errors naming file:line.
/// </summary>
public static class KsmOps
{
    /// <summary>Register the KSM ops (listed in <see cref="OpRegistry.Providers"/>).</summary>
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("ksm.madvise", "madvise(MADV_MERGEABLE|MADV_UNMERGEABLE) on [start, start+len)",
            ["process", "start", "len", "advice"], [], Madvise) { Check = (a, _) => { ParseAdvice(a); a.GetAddress("start"); a.GetULong("len"); } });
        r.Register(new OpSpec("ksm.merge_any", "prctl(PR_SET_MEMORY_MERGE, enable): merge every compatible VMA of the process",
            ["process"], ["enable"], MergeAny));
        r.Register(new OpSpec("ksm.set", "write a /sys/kernel/mm/ksm knob: knob (run, pages_to_scan, sleep_millisecs, use_zero_pages, max_page_sharing, merge_across_nodes, smart_scan), value; expect: the errno (ok by default; merge_across_nodes is ebusy while KSM pages exist)",
            ["knob", "value"], ["expect"], Set) { Check = (a, _) => { CheckKnob(a); a.GetErrno("expect"); } });
        r.Register(new OpSpec("ksm.run", "echo VALUE > /sys/kernel/mm/ksm/run (0 stop, 1 merge, 2 unmerge all)",
            ["value"], [], RunOp));
        r.Register(new OpSpec("ksm.scan", "run ksmd's scanner on this thread until full_scans more full scans completed (default 1)",
            [], ["full_scans"], Scan) { Check = (a, _) => a.GetBounded("full_scans", 1, MaxFullScans, 1) });
        r.Register(new OpSpec("ksmd", "start the ksmd daemon (run=1 unless run: is given); it scans pages_to_scan pages every sleep_millisecs",
            [], ["run", "pages_to_scan", "sleep_millisecs", "use_zero_pages"], Daemon));
        r.Register(new OpSpec("ksm.read", "read a /sys/kernel/mm/ksm counter (or ksm_merging_pages/ksm_rmap_items/ksm_zero_pages of process of:) into label as:",
            ["counter"], ["as", "of"], Read));
        r.Register(new OpSpec("ksm.expect", "a /sys/kernel/mm/ksm counter (or a ksm_stat field, or memory_merge: PR_GET_MEMORY_MERGE, of process of:) must equal value; else an unexpected-value violation",
            ["counter", "value"], ["of"], Expect));
        r.Register(new OpSpec("gup.pinned-write", "O_DIRECT-style: get_user_pages(FOLL_WRITE) pins the page at addr, sleeps ns, stores value through the pin (DMA), unpins",
            ["process", "addr", "value"], ["ns"], PinnedWrite) { Check = (a, _) => { a.GetAddress("addr"); a.GetULong("value"); a.GetULong("ns", 0); } });
        CoreOps.MadviseHandlers.TryAdd("mergeable", (mm, s, e) => Discard(Ksmd.Of(mm.Kernel).KsmMadvise(mm, s, e - s, mergeable: true)));
        CoreOps.MadviseHandlers.TryAdd("unmergeable", (mm, s, e) => Discard(Ksmd.Of(mm.Kernel).KsmMadvise(mm, s, e - s, mergeable: false)));
    }

    static async ValueTask Discard(ValueTask<int> op) => await op;

    /// <summary>
    /// A device writing into user memory through a GUP pin, as O_DIRECT reads, vhost or VFIO do: the pin (an extra page
    /// reference, no notifier) is exactly what write_protect_page's mapcount/refcount check exists to see. If KSM merges
    /// the page while it is pinned, the store lands in a page the process no longer maps.
    /// </summary>
    static async ValueTask PinnedWrite(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        var k = w.K;
        var r = await Gup.GetUserPage(mm, a.GetAddress("addr"), write: true);
        if (!r.Ok) throw a.Error("addr", $"get_user_pages failed with {r.Error}");
        ulong ns = a.GetULong("ns", 0);
        if (ns > 0) await k.S.Sleep((long)ns);
        await k.S.Point(Sched.PointKind.Counter, a.GetAddress("addr"));
        k.Mem[r.Pfn].Contents = a.GetULong("value"); // the DMA
        Folio.MarkDirty(k, r.Pfn);                   // set_page_dirty_lock before unpin_user_page
        Folio.Put(k, r.Pfn);
    }

    /// <summary>A kernel error (-EINVAL: no such knob in this era, -EBUSY...) is an unexpected-value violation, not bad input.</summary>
    static async ValueTask Check(ScenarioWorld w, OpArgs a, string field, ValueTask<int> op)
    {
        int err = await op;
        int want = a.Has("expect") ? a.GetErrno("expect") : 0;
        if (err != want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: {a.Op}: the kernel returned {Errno.NameOf(err)} ({field}: {a.GetString(field, "")})" +
                (want != 0 ? $", expected {Errno.NameOf(want)}" : ""));
    }

    static bool ParseAdvice(OpArgs a) => a.GetString("advice").ToLowerInvariant() switch
    {
        "mergeable" or "madv_mergeable" => true,
        "unmergeable" or "madv_unmergeable" => false,
        var s => throw a.Error("advice", $"'{s}' is not mergeable or unmergeable"),
    };

    static readonly string[] Knobs =
        ["run", "pages_to_scan", "sleep_millisecs", "use_zero_pages", "max_page_sharing", "merge_across_nodes", "smart_scan", "stable_node_chains_prune_millisecs"];

    static void CheckKnob(OpArgs a)
    {
        var knob = a.GetString("knob");
        if (Array.IndexOf(Knobs, knob) < 0) throw a.Error("knob", $"unknown knob '{knob}' (known: {string.Join(", ", Knobs)})");
        if (!OpArgs.TryParseULong(a.GetString("value"), out _)) throw a.Error("value", $"'{a.GetString("value")}' is not a number");
    }

    static ValueTask Madvise(ScenarioWorld w, OpArgs a) =>
        Check(w, a, "advice", Ksmd.Of(w.K).KsmMadvise(w.Process(a), a.GetAddress("start"), a.GetULong("len"), ParseAdvice(a)));

    static ValueTask MergeAny(ScenarioWorld w, OpArgs a) =>
        Check(w, a, "enable", Ksmd.Of(w.K).PrSetMemoryMerge(w.Process(a), a.GetBool("enable", true)));

    static ValueTask Set(ScenarioWorld w, OpArgs a) =>
        Check(w, a, "value", Ksmd.Of(w.K).Store(a.GetString("knob"), a.GetString("value")));

    static ValueTask RunOp(ScenarioWorld w, OpArgs a) =>
        Check(w, a, "value", Ksmd.Of(w.K).Store("run", a.GetString("value")));

    /// <summary>Most full scans one ksm.scan may ask for (a scan of a large area costs a step per page).</summary>
    const ulong MaxFullScans = 64;

    static ValueTask Scan(ScenarioWorld w, OpArgs a) => Ksmd.Of(w.K).ScanFull((int)a.GetBounded("full_scans", 1, MaxFullScans, 1));

    static async ValueTask Daemon(ScenarioWorld w, OpArgs a)
    {
        var ksm = Ksmd.Of(w.K);
        foreach (var knob in new[] { "pages_to_scan", "sleep_millisecs", "use_zero_pages" })
            if (a.Has(knob)) await Check(w, a, knob, ksm.Store(knob, a.GetString(knob)));
        ksm.StartDaemon();
        await Check(w, a, "run", ksm.Store("run", a.GetString("run", "1")));
    }

    static ValueTask Read(ScenarioWorld w, OpArgs a)
    {
        var v = Value(w, a) ?? throw a.Error("counter", $"/sys/kernel/mm/ksm/{a.GetString("counter")} does not exist in era {w.K.Era.Name}");
        w.Observed[a.GetString("as", a.GetString("counter"))] = unchecked((ulong)v);
        return default;
    }

    static ValueTask Expect(ScenarioWorld w, OpArgs a)
    {
        long? got = Value(w, a);
        long want = (long)a.GetULong("value");
        if (got != want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                $"{a.File}:{a.Line}: {(a.Has("of") ? a.GetString("of") + " " : "/sys/kernel/mm/ksm/")}{a.GetString("counter")} is " +
                $"{(got is { } g ? g.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"absent in era {w.K.Era.Name}")}, expected {want}");
        return default;
    }

    /// <summary>The counter's value, or null when the era has no such sysfs file.</summary>
    static long? Value(ScenarioWorld w, OpArgs a)
    {
        var ksm = Ksmd.Of(w.K);
        var name = a.GetString("counter");
        long value;
        if (a.Has("of"))
        {
            var mm = w.Process(a, "of");
            value = name switch
            {
                "ksm_merging_pages" => ksm.MergingPagesOf(mm),
                "ksm_rmap_items" => ksm.RmapItemsOf(mm),
                "ksm_zero_pages" => ksm.KsmZeroPagesOf(mm),
                // prctl(PR_GET_MEMORY_MERGE); an unknown option (EINVAL) before 6.4
                "memory_merge" when !w.K.Era.Has(Eras.Feature.KsmMergeAny) => long.MinValue,
                "memory_merge" => mm.MergeAny ? 1 : 0,
                _ => throw a.Error("counter", $"'{name}' is not a ksm_stat field (ksm_merging_pages, ksm_rmap_items, ksm_zero_pages) or memory_merge (PR_GET_MEMORY_MERGE)"),
            };
        }
        else
        {
            if (name == "memory_merge") throw a.Error("counter", "memory_merge is PR_GET_MEMORY_MERGE of a process: give of: PROCESS");
            var s = ksm.Show(name);
            if (s == null) return null;
            value = long.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
        }
        return value == long.MinValue ? null : value;
    }
}
