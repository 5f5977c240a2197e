using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Hugetlb;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Hugetlb;

/// <summary>
/// Migration of hugetlb folios (issue 12, migration.c's *_htlb cases): move_pages moves the 2 MiB page whole, with a
/// hugetlb migration entry in the PMD, the notifier placement of each era, and fork, munmap and faults racing it.
/// </summary>
public class HugetlbMigrationTests
{
    const ulong A = 0x40000000;
    const ulong H = MmStruct.PmdSize;

    static (Kernel K, MmStruct Mm, long Head) Populated(string era, VmFlags extra = 0)
    {
        var k = Kernel(era, options: new KernelOptions { NumaNodes = 2 });
        var mm = MmWithVma(k, A, H, VmFlags.Hugetlb | extra);
        Assert.Equal(0, HugetlbPages.Of(k).SetNrHugepages(2));
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, A, write: true, value: 0xde);
            await Memory.UserAccess(mm, A + H - MmStruct.PageSize, write: true, value: 0xad);
        }));
        return (k, mm, mm.PeekPmd(A).Pfn);
    }

    [Theory]
    [InlineData("3.19", "InvalidatePage[0,1)")]            // before 4.13: one invalidate_page for the first address
    [InlineData("4.19", "InvalidateRangeStart[0,512) InvalidateRange[0,512) InvalidateRange[0,512) InvalidateRangeEnd[0,512)")]
    [InlineData("6.13", "InvalidateRangeStart[0,512) InvalidateRangeEnd[0,512)")]
    public void MovePages_MovesTheHugePageWhole_PmdContentsAndCountsFollow(string era, string calls)
    {
        var (k, mm, old) = Populated(era);
        int to = 1 - k.Mem.NodeOf(old);
        var rec = Recorder(k, mm);
        (int Ret, int[] Status) r = (0, []);
        Assert.Null(Run(k, async _ => r = await Migrate.MovePages(mm, [A], [to], Migrate.MoveFlags.Move)));
        Assert.Equal((0, to), (r.Ret, r.Status[0]));
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable);
        long nw = pmd.Pfn;
        Assert.NotEqual(old, nw);
        Assert.Equal(to, k.Mem.NodeOf(nw));
        Assert.True(HugetlbPages.IsHugetlbFolio(k, nw));
        Assert.False(HugetlbPages.IsHugetlbFolio(k, old));
        Assert.True(k.Mem[old].Has(PageFlags.Free));
        Assert.Equal((0xdeUL, 0xadUL), (k.Mem[nw].Contents, k.Mem[nw + 511].Contents));
        Assert.Equal(1, k.Mem[nw].RefCount);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(nw).RefCount);
        Assert.True(k.Mem[nw].Has(PageFlags.Anon | PageFlags.AnonExclusive));
        Assert.Equal(512, mm.RssAnon);
        Assert.Equal(1, HugetlbPages.Of(k).FreeHugepages);
        Assert.Equal(calls, string.Join(" ", rec.Calls.Select(c => $"{c.Kind}[{(c.Start - A) / MmStruct.PageSize},{(c.End - A) / MmStruct.PageSize})")));
        Assert.Null(k.Checker.CheckPrimaryConsistency());
    }

    [Fact]
    public void Before3_12_AHugetlbPageIsBusy()
    {
        var (k, mm, old) = Populated("3.10");
        (int Ret, int[] Status) r = (0, []);
        Assert.Null(Run(k, async _ => r = await Migrate.MovePages(mm, [A], [1 - k.Mem.NodeOf(old)], Migrate.MoveFlags.Move)));
        Assert.Equal((0, Errno.EBUSY), (r.Ret, r.Status[0]));
        Assert.Equal(old, mm.PeekPmd(A).Pfn);
    }

    [Fact]
    public void APinnedHugePageFailsAllTenPasses_TheEntryIsRestored()
    {
        var (k, mm, old) = Populated("6.13");
        Folio.Get(k, old); // a GUP reference held across the call
        (int Ret, int[] Status) r = (0, []);
        Assert.Null(Run(k, async _ => r = await Migrate.MovePages(mm, [A], [1 - k.Mem.NodeOf(old)], Migrate.MoveFlags.Move)));
        Assert.Equal(1, r.Ret); // one page not migrated
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable);
        Assert.Equal(old, pmd.Pfn);
        Assert.Equal((2, 1), (k.Mem[old].RefCount, k.Mem.EntireMapcountHolder(old).RefCount));
        Folio.Put(k, old);
        Assert.Null(k.Checker.CheckPrimaryConsistency());
    }

    static string Race(string ops) => $$"""
        name: htlb-race
        era: "6.13"
        numa_nodes: 2
        processes:
          - name: p
            vmas: []
        setup:
          - hugetlb.set: { knob: nr_hugepages, value: 3 }
          - mmap: { process: p, addr: 0x40000000, len: 2M, flags: hugetlb }
          - memset: { process: p, addr: 0x40000000, len: 2M, value: 0xde }
        threads:
          - name: main
            process: p
            ops:
              - move-pages: { addr: 0x40000000, node: 1, flags: move_all, ret: 0, status: "1" }
        {{ops}}
        """;

    /// <summary>
    /// fork and munmap racing the migration, in every explored schedule: fork copies a hugetlb migration entry
    /// (made read-only for the COW mapping) and the child's page is the migrated one; munmap clears a migration entry.
    /// No schedule ends in a model error or a violation.
    /// </summary>
    [Theory]
    [InlineData("""
                  - name: forker
                    process: p
                    ops:
                      - fork: { child: c }
                      - expect-value: { process: c, addr: 0x401ff000, value: 0xde }
                      - write: { process: c, addr: 0x40000000, value: 0x1 }
                      - expect-value: { process: p, addr: 0x40000000, value: 0xde }
                """)]
    [InlineData("""
                  - name: unmapper
                    process: p
                    ops:
                      - munmap: { addr: 0x40000000, len: 2M }
                """)]
    public void ForkAndMunmapRacingTheMigration_AreCleanInEverySchedule(string thread)
    {
        var yaml = Race(thread);
        if (thread.Contains("munmap")) yaml = yaml.Replace(", ret: 0, status: \"1\"", ""); // -EFAULT or 1, as the schedule has it
        var s = ScenarioLoader.Parse(yaml, "htlb-race.yaml");
        var rep = new Explorer(new ScenarioExplorable(s, EraTable.Get("6.13")), new ExploreOptions { Iterations = 300 }).Run();
        Assert.Null(rep.First?.Violation.Message);
        Assert.True(rep.Schedules >= 100);
    }
}
