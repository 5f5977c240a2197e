using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Scenarios;

/// <summary>Scenario ops for the primary mm paths: fork, mprotect, mremap, reclaim, aging, writeback, migration, uprobes, OOM reaping.</summary>
public static partial class CoreOps
{
    static void RegisterMmPaths(OpRegistry r)
    {
        r.Register(new OpSpec("fork", "fork: dup_mmap into a new process named child (COW, PROTECTION_PAGE on the parent)",
            ["process", "child"], [], DoFork));
        r.Register(new OpSpec("mprotect", "mprotect(addr, len, prot): PROTECTION_VMA, lazily started at the first populated PMD",
            ["process", "addr", "len", "prot"], [], DoMprotect) { Check = CheckProt });
        r.Register(new OpSpec("mremap", "mremap(addr, len) to new_addr (MREMAP_FIXED|MAYMOVE): UNMAP on the old range; dontunmap: true adds MREMAP_DONTUNMAP (the old VMA stays, empty)",
            ["process", "addr", "len", "new_addr"], ["dontunmap"], DoMremap) { Check = (a, _) => { a.GetAddress("new_addr"); a.GetBool("dontunmap"); } });
        r.Register(new OpSpec("reclaim",
            "reclaim the folio mapped at addr (shrink_folio_list, try_to_unmap through rmap; anon to swap, a small page-cache folio written back and dropped from the cache); references: true runs " +
            "folio_referenced first and try_to_unmap without TTU_IGNORE_ACCESS (default: the folio is already cold)",
            ["process", "addr"], ["references"], Reclaim) { Check = (a, i) => { a.GetBool("references"); i.RequireMapped(a); } });
        r.Register(new OpSpec("age", "folio_referenced on the folio at addr (clear_flush_young); `as` stores the reference count",
            ["process", "addr"], ["as"], Age) { Check = (a, i) => i.RequireMapped(a) });
        r.Register(new OpSpec("writeback", "clean the folio at addr for writeback (folio_clear_dirty_for_io → page_mkclean_one)",
            ["process", "addr"], [], Writeback) { Check = (a, i) => i.RequireMapped(a) });
        r.Register(new OpSpec("thp.set", "write a /sys/kernel/mm/transparent_hugepage knob: knob use_zero_page (1: a read fault on a THP-eligible range maps the huge zero page; the model's default is 0), value 0 or 1; " +
            "or knob shmem_enabled (4.8+), value never (default), always, within_size, advise (VM_HUGEPAGE), deny or force: when a shmem fault allocates a huge folio; " +
            "or knob enabled, value always, madvise (the model's default) or never; or knob hugepages-<size>kB/enabled (6.8+, size 16, 32, .. 2048), value always, inherit (2048's default), madvise or never (the others' default): " +
            "which anon folio sizes a write fault allocates (alloc_anon_folio); " +
            "expect: the errno of the write (ok default; enoent in an era without the knob: use_zero_page before 3.8, shmem_enabled before 4.8, hugepages-* before 6.8)",
            ["knob", "value"], ["expect"], ThpSet) { Check = (a, _) => { ThpKnob(a); a.GetErrno("expect"); } });
        r.Register(new OpSpec("migrate", "migrate the folio at addr (try_to_migrate_one, then remove_migration_ptes); expect: migrated (default), failed or any",
            ["process", "addr"], ["expect"], DoMigrate) { Check = CheckMigrate });
        r.Register(new OpSpec("uprobe", "uprobes __replace_page: install a new page with contents value at addr",
            ["process", "addr", "value"], [], Uprobe) { Check = (a, i) => { a.GetULong("value"); i.RequireMapped(a); } });
        r.Register(new OpSpec("oom-reap", "the OOM reaper unmaps the victim's anonymous memory (non-blocking start, -EAGAIN retries)",
            ["process"], [], OomReap));
    }

    static void CheckProt(OpArgs a, ScenarioInfo _)
    {
        if (ScenarioLoader.ParseProt(a.GetString("prot")) == null)
            throw a.Error("prot", $"'{a.GetString("prot")}' is not a protection (r, rw, rwx, none)");
    }

    static async ValueTask DoFork(ScenarioWorld w, OpArgs a)
    {
        var parent = w.Process(a);
        var name = a.GetString("child");
        if (w.Processes.ContainsKey(name)) throw a.Error("child", $"a process named '{name}' already exists");
        w.Processes[name] = await Fork.DupMmap(parent, name);
    }

    static ValueTask DoMprotect(ScenarioWorld w, OpArgs a) =>
        Mprotect.DoMprotect(w.Process(a), a.GetAddress("addr"), a.GetULong("len"), ScenarioLoader.ParseProt(a.GetString("prot"))!.Value);

    static ValueTask DoMremap(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr"), len = a.GetULong("len"), to = a.GetAddress("new_addr");
        // mremap's own checks, made here so that a bad range is the scenario's error and not a model exception.
        if (len == 0 || addr + len < addr || to + len < to) throw a.Error("len", $"0x{len:x} is not a valid mremap length here (EINVAL)");
        if (to < addr + len && addr < to + len) throw a.Error("new_addr", $"[0x{to:x}, 0x{to + len:x}) overlaps the old range (EINVAL)");
        var vma = mm.FindVma(addr);
        if (vma == null || addr + len > vma.End) throw a.Error("len", $"[0x{addr:x}, 0x{addr + len:x}) is not inside one VMA (EFAULT)");
        if (vma.IsHugetlb && !w.K.Era.Has(Eras.Feature.HugetlbMremap))
        {
            // vma_to_resize refused hugetlb VMAs before 5.16: mremap fails, as upstream's tests then report.
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: mremap of hugetlb memory ({vma}) returns EINVAL before 5.16", addr);
            return default;
        }
        return Mremap.DoMremap(mm, addr, len, to, a.GetBool("dontunmap"));
    }

    /// <summary>The folio the primary maps at addr now (the scenario's pick from the LRU), or -1.</summary>
    static async ValueTask<long> FolioAt(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        await w.K.S.Point(PointKind.PteRead, addr);
        var (present, pfn, _, _) = mm.Translate(addr);
        return present && pfn != PhysMem.ZeroPfn ? pfn : -1;
    }

    static async ValueTask Reclaim(ScenarioWorld w, OpArgs a)
    {
        long pfn = await FolioAt(w, a);
        if (pfn >= 0) await Vmscan.ShrinkFolio(w.K, pfn, a.GetBool("references"));
    }

    static async ValueTask Age(ScenarioWorld w, OpArgs a)
    {
        long pfn = await FolioAt(w, a);
        int refs = pfn >= 0 ? await Rmap.FolioReferenced(w.K, pfn) : 0;
        if (a.Has("as")) w.Observed[a.GetString("as")] = (ulong)refs;
    }

    static async ValueTask Writeback(ScenarioWorld w, OpArgs a)
    {
        long pfn = await FolioAt(w, a);
        if (pfn >= 0) await PageWriteback.FolioClearDirtyForIo(w.K, pfn);
    }

    /// <summary>A parsed thp.set: the feature whose era has the sysfs file, and the write.</summary>
    readonly record struct ThpWrite(Eras.Feature Exists, Action<Kernel> Apply);

    /// <summary>
    /// The knob and its parsed value: use_zero_page 0/1; shmem_enabled as its sysfs words; enabled (always, madvise,
    /// never); hugepages-&lt;size&gt;kB/enabled for a size of 16 KiB .. 2 MiB (also inherit).
    /// </summary>
    static ThpWrite ThpKnob(OpArgs a)
    {
        string knob = a.GetString("knob"), v;
        switch (knob)
        {
            case "use_zero_page":
                bool on = a.GetBounded("value", 0, 1) == 1;
                return new(Eras.Feature.HugeZeroPage, k => k.ThpUseZeroPage = on);
            case "shmem_enabled":
                v = a.GetString("value");
                var h = ShmemHugeNames.TryGetValue(v, out var sh) ? sh
                    : throw a.Error("value", $"'{v}' is not a shmem_enabled setting ({string.Join(", ", ShmemHugeNames.Keys)})");
                return new(Eras.Feature.KhugepagedShmemCollapse, k => k.ShmemEnabled = h);
            case "enabled":
                v = a.GetString("value");
                var top = ThpModeNames.TryGetValue(v, out var tm) && tm != ThpMode.Inherit ? tm
                    : throw a.Error("value", $"'{v}' is not a transparent_hugepage/enabled setting (always, madvise, never)");
                return new(Eras.Feature.Thp, k => k.Thp.Enabled = top);
            default:
                int order = MthpKnobOrder(knob);
                if (order < 0)
                    throw a.Error("knob", $"'{knob}' is not a modelled THP knob (enabled, hugepages-<16..2048>kB/enabled, use_zero_page, shmem_enabled)");
                v = a.GetString("value");
                var m = ThpModeNames.TryGetValue(v, out var pm) ? pm
                    : throw a.Error("value", $"'{v}' is not a {knob} setting (always, inherit, madvise, never)");
                return new(Eras.Feature.AnonMthp, k => k.Thp[order] = m);
        }
    }

    /// <summary>The order of hugepages-&lt;size&gt;kB/enabled (x86-64: 16 KiB, order 2, .. 2048 KiB, order 9), or -1.</summary>
    static int MthpKnobOrder(string knob)
    {
        for (int o = ThpSettings.MinAnonOrder; o <= ThpSettings.PmdOrder; o++)
            if (knob == MthpKnobNames[o]) return o;
        return -1;
    }

    /// <summary>The sysfs names of the per-size knobs, by order (null below <see cref="ThpSettings.MinAnonOrder"/>).</summary>
    static readonly string?[] MthpKnobNames = [.. Enumerable.Range(0, ThpSettings.PmdOrder + 1)
        .Select(o => o < ThpSettings.MinAnonOrder ? null : $"hugepages-{4 << o}kB/enabled")];

    static readonly Dictionary<string, ThpMode> ThpModeNames = new(StringComparer.Ordinal)
    {
        ["always"] = ThpMode.Always, ["madvise"] = ThpMode.Madvise, ["never"] = ThpMode.Never, ["inherit"] = ThpMode.Inherit,
    };

    static readonly Dictionary<string, ShmemHuge> ShmemHugeNames = new(StringComparer.Ordinal)
    {
        ["never"] = ShmemHuge.Never, ["always"] = ShmemHuge.Always, ["within_size"] = ShmemHuge.WithinSize,
        ["advise"] = ShmemHuge.Advise, ["deny"] = ShmemHuge.Deny, ["force"] = ShmemHuge.Force,
    };

    static ValueTask ThpSet(ScenarioWorld w, OpArgs a)
    {
        var write = ThpKnob(a);
        // The sysfs file exists from the era of the feature it controls (THP 2.6.38, huge zero page 3.8, shmem THP 4.8,
        // the per-size files 6.8).
        bool exists = w.K.Era.Has(write.Exists);
        if (exists) write.Apply(w.K);
        w.ExpectErrno(a, exists ? 0 : Errno.ENOENT, $"write of /sys/kernel/mm/transparent_hugepage/{a.GetString("knob")}");
        return default;
    }

    static readonly string[] MigrateOutcomes = ["migrated", "failed", "any"];

    static void CheckMigrate(OpArgs a, ScenarioInfo i)
    {
        i.RequireMapped(a);
        var e = a.GetString("expect", "migrated");
        if (Array.IndexOf(MigrateOutcomes, e) < 0) throw a.Error("expect", $"'{e}' is not a migration outcome (migrated, failed, any)");
    }

    /// <summary>
    /// migrate: migrate_pages of the folio mapped at addr to any node (anon, page cache, or KSM where the era moves
    /// KSM folios); the outcome is compared with <c>expect</c> and a mismatch is an unexpected-value violation naming file:line.
    /// </summary>
    static async ValueTask DoMigrate(ScenarioWorld w, OpArgs a)
    {
        long pfn = await FolioAt(w, a);
        ulong addr = a.GetAddress("addr");
        bool moved = pfn >= 0 && await Migrate.MigrateFolio(w.K, pfn) >= 0;
        var e = a.GetString("expect", "migrated");
        if (e == "any" || moved == (e == "migrated")) return;
        string why = pfn < 0 ? "no folio is mapped there" : "migrate_pages failed (not a migratable LRU folio, or extra references)";
        w.K.S.Fail(ScenarioInvariants.UnexpectedValue,
            $"{a.File}:{a.Line}: migrate at 0x{addr:x} {(moved ? "migrated" : "did not migrate: " + why)}, expected {e}", addr);
    }

    static async ValueTask Uprobe(ScenarioWorld w, OpArgs a) =>
        await Uprobes.UprobeWriteOpcode(w.Process(a), a.GetAddress("addr"), a.GetULong("value"));

    static async ValueTask OomReap(ScenarioWorld w, OpArgs a) => await OomKill.OomReapTask(w.Process(a));
}
