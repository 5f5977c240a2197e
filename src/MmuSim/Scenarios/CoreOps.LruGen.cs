using MmuSim.Mm;

namespace MmuSim.Scenarios;

/// <summary>
/// Scenario ops for the multi-gen LRU (mm/vmscan.c, <see cref="LruGen"/>), as KVM's selftests drive it through
/// tools/testing/selftests/kvm/lib/lru_gen_util.c: <c>lru-gen.enable</c> writes /sys/kernel/mm/lru_gen/enabled,
/// <c>lru-gen.age</c> is lru_gen_do_aging (read the generations, write '+ memcg node max_gen 1 1' per node, read them
/// again), <c>lru-gen.find-generation</c> is access_tracking_perf_test's find_generation (the oldest generation holding
/// more than 90 % of the test's pages), optionally with lru_gen_mark_memory_idle's check that the pages moved to a
/// newer generation than the one recorded before; <c>lru-gen.evict</c> is the debugfs eviction command ('-').
/// </summary>
public static partial class CoreOps
{
    static void RegisterLruGen(OpRegistry r)
    {
        r.Register(new OpSpec("lru-gen.enable",
            "write /sys/kernel/mm/lru_gen/enabled (features: 0x1 core, 0x2 mm_walk, 0x4 nonleaf_young; default 0x7); `expect` the errno " +
            "(enoent before 6.1, where there is no MGLRU)",
            [], ["features", "expect"], LruGenEnable)
        {
            Check = (a, _) =>
            {
                int f = a.GetInt("features", 7);
                if ((f & ~7) != 0) throw a.Error("features", $"0x{f:x} has bits other than 0x7 (core, mm_walk, nonleaf_young)");
                a.GetErrno("expect");
            },
        });
        r.Register(new OpSpec("lru-gen.age",
            "lru_gen_do_aging: for each node, the debugfs aging command at its max_gen (swappiness 1, force_scan): the page-table walk " +
            "promotes the folios found young (6.12+ through clear_young_notify, so the secondaries' Accessed bits count), then a new " +
            "generation; tracked_at_least asserts the generations then hold at least that many pages (upstream's 'Not all pages accounted for'); " +
            "`as` records the pages of generation max_seq - 1 afterwards (node 0): the folios this pass found young",
            [], ["tracked_at_least", "as"], LruGenAge) { Check = (a, _) => { if (a.Has("tracked_at_least")) a.GetULong("tracked_at_least"); } });
        r.Register(new OpSpec("lru-gen.evict",
            "run_eviction: for each node, the debugfs eviction command '- memcg node seq swappiness nr_to_reclaim' (seq default max_seq - 2, " +
            "the newest it takes; swappiness default 60, 0 file only, 200 anon first; nr default all): the oldest generations' folios go " +
            "through shrink_folio_list with folio_referenced (the secondaries' young state keeps a folio, put back in max_seq - 1); " +
            "`reclaimed` asserts the pages reclaimed over all nodes, `as` records them; `expect` the errno (einval for a seq newer than max_seq - 2)",
            [], ["seq", "swappiness", "nr", "reclaimed", "as", "expect"], LruGenEvict)
        {
            Check = (a, _) =>
            {
                if (a.Has("seq")) a.GetULong("seq");
                int sw = a.GetInt("swappiness", 60);
                if (sw < 0 || sw > LruGen.MaxSwappiness) throw a.Error("swappiness", $"{sw} is outside 0..{LruGen.MaxSwappiness}");
                if (a.Has("nr")) a.GetULong("nr");
                if (a.Has("reclaimed")) a.GetULong("reclaimed");
                a.GetErrno("expect");
            },
        });
        r.Register(new OpSpec("lru-gen.find-generation",
            "find_generation(stats, pages): read the generations, take the oldest with more than pages*9/10 pages (none: 'Could not find a " +
            "generation with 90% of guest memory'); `newer_than` a generation recorded before: it must be newer ('Too many pages still " +
            "idle'), as lru_gen_mark_memory_idle asserts; `as` records it",
            ["pages"], ["newer_than", "as"], LruGenFindGeneration) { Check = (a, _) => a.GetULong("pages") });
    }

    static bool LruGenMissing(ScenarioWorld w, OpArgs a)
    {
        if (LruGen.Of(w.K).Enabled) return false;
        w.K.S.Fail(ScenarioInvariants.UnexpectedValue, w.K.Era.Has(Eras.Feature.LruGen)
            ? $"{a.File}:{a.Line}: lru_gen is not enabled (write /sys/kernel/mm/lru_gen/enabled first: lru-gen.enable)"
            : $"{a.File}:{a.Line}: /sys/kernel/debug/lru_gen does not exist in {w.K.Era.Name} (the multi-gen LRU is 6.1)");
        return true;
    }

    static ValueTask LruGenEnable(ScenarioWorld w, OpArgs a)
    {
        w.ExpectErrno(a, LruGen.Of(w.K).Enable(a.GetInt("features", 7)), "write of /sys/kernel/mm/lru_gen/enabled");
        return default;
    }

    static async ValueTask LruGenAge(ScenarioWorld w, OpArgs a)
    {
        if (LruGenMissing(w, a)) return;
        var lg = LruGen.Of(w.K);
        var before = await lg.ReadStats();
        for (int nid = 0; nid < w.K.Mem.Nodes; nid++)
        {
            ulong maxGen = 0;
            foreach (var g in before) if (g.Nid == nid) maxGen = Math.Max(maxGen, g.Seq);
            int rc = await lg.RunAging(nid, maxGen, swappiness: 1, forceScan: true);
            if (rc != 0)
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: the aging command '+ 1 {nid} {maxGen} 1 1' returned {Errno.NameOf(rc)}");
        }
        if (!a.Has("tracked_at_least") && !a.Has("as")) return;
        var after = await lg.ReadStats();
        if (a.Has("as"))
        {
            w.Observed[a.GetString("as")] = (ulong)PagesInGeneration(after, lg.MaxSeq(0) - 1, nid: 0);
        }
        if (!a.Has("tracked_at_least")) return;
        ulong want = a.GetULong("tracked_at_least");
        long total = PagesInGeneration(after, seq: null);
        if ((ulong)total < want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: Not all pages accounted for (looking for {want}, {total} in the generations)");
    }

    static async ValueTask LruGenEvict(ScenarioWorld w, OpArgs a)
    {
        if (LruGenMissing(w, a)) return;
        var lg = LruGen.Of(w.K);
        int swappiness = a.GetInt("swappiness", 60);
        long nr = a.Has("nr") ? (long)a.GetULong("nr") : long.MaxValue;
        long reclaimed = 0;
        int rc = 0;
        for (int nid = 0; nid < w.K.Mem.Nodes && rc == 0; nid++)
        {
            ulong seq = a.Has("seq") ? a.GetULong("seq") : lg.MaxSeq(nid) - LruGen.MinNrGens;
            var res = await lg.RunEviction(nid, seq, swappiness, nr - reclaimed);
            rc = res.Errno;
            reclaimed += res.Reclaimed;
        }
        w.ExpectErrno(a, rc, "the eviction command of /sys/kernel/debug/lru_gen");
        if (rc != 0) return;
        if (a.Has("as")) w.Observed[a.GetString("as")] = (ulong)reclaimed;
        if (a.Has("reclaimed") && (ulong)reclaimed != a.GetULong("reclaimed"))
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: the eviction reclaimed {reclaimed} pages, expected {a.GetULong("reclaimed")}");
    }

    static async ValueTask LruGenFindGeneration(ScenarioWorld w, OpArgs a)
    {
        if (LruGenMissing(w, a)) return;
        var stats = await LruGen.Of(w.K).ReadStats();
        long pages = (long)a.GetULong("pages"), threshold = pages * 9 / 10;
        long found = LruGenFindGeneration(stats, threshold);
        if (found < 0)
        {
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: Could not find a generation with 90% of guest memory ({threshold} pages)");
            return;
        }
        if (a.Has("newer_than"))
        {
            string name = a.GetString("newer_than");
            if (!w.Observed.TryGetValue(name, out ulong last))
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: no generation recorded as '{name}' yet");
            else if ((ulong)found <= last)
            {
                long idle = PagesInGeneration(stats, last);
                w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
                    $"{a.File}:{a.Line}: Too many pages still idle ({Math.Min(idle, pages)} out of {pages}): generation {found}, not newer than {name} ({last})");
            }
        }
        if (a.Has("as")) w.Observed[a.GetString("as")] = (ulong)found;
    }

    /// <summary>lru_gen_find_generation: the oldest generation, over every node, holding more than <paramref name="pages"/> pages; -1 if none.</summary>
    static long LruGenFindGeneration(List<LruGen.GenStats> stats, long pages)
    {
        if (stats.Count == 0) return -1;
        ulong min = ulong.MaxValue, max = 0;
        foreach (var g in stats) { min = Math.Min(min, g.Seq); max = Math.Max(max, g.Seq); }
        for (ulong s = min; s <= max; s++)
            if (PagesInGeneration(stats, s) > pages) return (long)s;
        return -1;
    }

    /// <summary>lru_gen_sum_memcg_stats_for_gen: the anon and file pages of generation <paramref name="seq"/> (every
    /// generation when null), over every node or only <paramref name="nid"/>.</summary>
    static long PagesInGeneration(List<LruGen.GenStats> stats, ulong? seq, int nid = -1)
    {
        long sum = 0;
        foreach (var g in stats)
            if ((seq == null || g.Seq == seq) && (nid < 0 || g.Nid == nid)) sum += g.Anon + g.File;
        return sum;
    }
}
