using MmuSim.Mm;

namespace MmuSim.Scenarios;

/// <summary>
/// Scenario ops for files (mm/filemap.c, mm/shmem.c, mm/truncate.c): <c>file.create</c> makes a memfd or a regular
/// file (tmpfile) of a size, <c>mmap</c> with <c>file:</c> maps it (MAP_PRIVATE unless <c>flags: shared</c>), and
/// <c>file.write</c>/<c>file.expect</c> are pwrite/pread through the page cache, <c>file.truncate</c> and
/// <c>file.punch-hole</c> shrink it with unmap_mapping_range's CLEAR invalidations.
/// </summary>
public static partial class CoreOps
{
    static readonly string[] FileKinds = ["memfd", "tmpfile", "memfd-hugetlb"];

    static void RegisterFile(OpRegistry r)
    {
        r.Register(new OpSpec("file.create",
            "memfd_create + ftruncate (kind: memfd, default) or tmpfile + fallocate (kind: tmpfile, a regular file with writeback) of size bytes; as names it",
            ["as", "size"], ["kind"], FileCreate) { Check = (a, _) => { FileKind(a); FileSizePages(a, "size"); } });
        r.Register(new OpSpec("file.write", "pwrite of value into the page at byte offset of file (through the page cache; marks it dirty)",
            ["file", "offset", "value"], [], FileWrite) { Check = CheckFileOffset });
        r.Register(new OpSpec("file.expect", "pread of the page at byte offset of file must return value; else unexpected-value",
            ["file", "offset", "value"], [], FileExpect) { Check = CheckFileOffset });
        r.Register(new OpSpec("file.truncate", "ftruncate(file, size): a shrink unmaps every mapping beyond (CLEAR, even private copies) and drops the pages",
            ["file", "size"], [], FileTruncate) { Check = (a, i) => { i.RequireNamed(a, "file", "file"); FileSizePages(a, "size"); } });
        r.Register(new OpSpec("file.punch-hole", "fallocate(PUNCH_HOLE|KEEP_SIZE) of [offset, offset+len): unmap (CLEAR) and drop those pages",
            ["file", "offset", "len"], [], FilePunchHole) { Check = (a, i) => { CheckFileOffset(a, i); FileSizePages(a, "len"); } });
        r.Register(new OpSpec("file.close", "close the file's descriptor (the mappings keep it alive)",
            ["file"], [], FileClose) { Check = (a, i) => i.RequireNamed(a, "file", "file") });
    }

    static FileKind FileKind(OpArgs a) => a.GetString("kind", "memfd") switch
    {
        "memfd" => Mm.FileKind.Memfd,
        "tmpfile" => Mm.FileKind.Regular,
        "memfd-hugetlb" => Mm.FileKind.MemfdHugetlb,
        var s => throw a.Error("kind", $"'{s}' is not a file kind ({string.Join(", ", FileKinds)})"),
    };

    static ulong FileSizePages(OpArgs a, string key)
    {
        ulong bytes = a.GetBounded(key, 0, 1UL << 36);
        if ((bytes & ~MmStruct.PageMask) != 0) throw a.Error(key, $"{bytes} is not a multiple of the page size");
        return bytes >> MmStruct.PageShift;
    }

    static void CheckFileOffset(OpArgs a, ScenarioInfo i)
    {
        i.RequireNamed(a, "file", "file");
        FileSizePages(a, "offset");
        if (a.Has("value")) a.GetULong("value");
    }

    static AddressSpace File(ScenarioWorld w, OpArgs a, string key = "file") => w.Get<AddressSpace>(a, key);

    static ValueTask FileCreate(ScenarioWorld w, OpArgs a)
    {
        var kind = FileKind(a);
        var name = a.GetString("as");
        if (kind == Mm.FileKind.MemfdHugetlb && (FileSizePages(a, "size") & (PhysMem.HugePages - 1)) != 0)
            throw a.Error("size", "a hugetlbfs file's size is a multiple of the huge page size (2M)");
        var f = w.K.NewAddressSpace(kind, kind == Mm.FileKind.Memfd ? $"memfd:{name}" : name, FileSizePages(a, "size"));
        f.Users++; // the descriptor
        w.Objects[name] = f;
        return default;
    }

    /// <summary>The page at the op's offset, or a scenario error beyond the file's size (pwrite would extend it: not modelled).</summary>
    static ulong FileIndex(ScenarioWorld w, OpArgs a, AddressSpace f)
    {
        ulong index = FileSizePages(a, "offset");
        if (index >= f.SizePages) throw a.Error("offset", $"offset {index << MmStruct.PageShift} is beyond the end of {f} ({f.SizePages << MmStruct.PageShift} bytes)");
        return index;
    }

    /// <summary>The page-cache ops the model has only for 4 KiB page caches: refused on a hugetlbfs file.</summary>
    static void NotHugetlbfs(OpArgs a, AddressSpace f)
    {
        if (f.Kind == Mm.FileKind.MemfdHugetlb) throw a.Error("file", $"{a.Op} of a hugetlbfs file ({f}) is not modelled");
    }

    static async ValueTask FileWrite(ScenarioWorld w, OpArgs a)
    {
        var f = File(w, a);
        NotHugetlbfs(a, f);
        ulong index = FileIndex(w, a, f);
        long pfn = await Filemap.FilemapGetFolio(w.K, f, index, index);
        if (pfn < 0) throw a.Error("offset", "out of memory");
        await w.K.S.Point(Sched.PointKind.Counter, index);
        w.K.Mem[pfn].Contents = a.GetULong("value"); // generic_perform_write: copy into the cached page
        Folio.MarkDirty(w.K, pfn);
    }

    static async ValueTask FileExpect(ScenarioWorld w, OpArgs a)
    {
        var f = File(w, a);
        ulong index = FileIndex(w, a, f);
        ulong got;
        if (f.Kind == Mm.FileKind.MemfdHugetlb)
        {
            // hugetlbfs_read_iter: the cached huge page's sub-page, or zeroes for a hole.
            await w.K.S.Point(Sched.PointKind.PteRead, index);
            ulong h = index & ~(ulong)(PhysMem.HugePages - 1);
            got = f.Pages.TryGetValue(h, out long head) ? w.K.Mem[head + (long)(index - h)].Contents : 0;
        }
        else
        {
            long pfn = await Filemap.FilemapGetFolio(w.K, f, index, index);
            if (pfn < 0) throw a.Error("offset", "out of memory");
            got = w.K.Mem[pfn].Contents;
        }
        ulong want = a.GetULong("value");
        if (got != want)
            w.K.S.Fail(ScenarioInvariants.UnexpectedValue, $"{a.File}:{a.Line}: pread of {f} at offset {index << MmStruct.PageShift} returned 0x{got:x}, expected 0x{want:x}");
    }

    static ValueTask FileTruncate(ScenarioWorld w, OpArgs a)
    {
        var f = File(w, a);
        NotHugetlbfs(a, f);
        return Truncate.TruncateSetsize(w.K, f, FileSizePages(a, "size"));
    }

    static ValueTask FilePunchHole(ScenarioWorld w, OpArgs a)
    {
        var f = File(w, a);
        NotHugetlbfs(a, f);
        return Truncate.PunchHole(w.K, f, FileSizePages(a, "offset"), FileSizePages(a, "len"));
    }

    static ValueTask FileClose(ScenarioWorld w, OpArgs a)
    {
        File(w, a).Put(w.K);
        return default;
    }
}
