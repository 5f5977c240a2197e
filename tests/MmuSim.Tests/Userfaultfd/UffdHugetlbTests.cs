using MmuSim.Devices;
using MmuSim.Hugetlb;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Userfaultfd;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Userfaultfd;

/// <summary>
/// userfaultfd on hugetlb (4.11 MISSING, 5.13 MINOR): hugetlb_no_page hands the fault to userspace with the huge
/// page's address, mfill_atomic_hugetlb places whole huge pages (aligned ranges only, no ZEROPAGE), no notifier fires;
/// and demand_paging_test's two hugetlb modes.
/// </summary>
public class UffdHugetlbTests
{
    const ulong A = 0x200000;
    const ulong H = MmStruct.PmdSize;

    [Theory]
    [InlineData("4.19")]
    [InlineData("5.13")]
    [InlineData("6.13")]
    public void MissingFault_OnAnonHugetlb_ReportsTheHugePage_AndUffdioCopyMapsAWholePoolPage(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, H, VmFlags.Hugetlb);
        Assert.Equal(0, HugetlbPages.Of(k).SetNrHugepages(2));
        var ctx = UserfaultfdCtx.Create(mm, "uffd", sigbus: false)!;
        Ok(k, async () => Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, H, UffdMode.Missing)));
        var rec = Recorder(k, mm);
        ulong? seen = null;
        UffdMsg? msg = null;
        int unaligned = 1, zeropage = 1, again = 1;
        k.S.Spawn("faulter", async _ => seen = await Memory.UserAccess(mm, A + 5 * MmStruct.PageSize, write: false));
        k.S.Spawn("handler", async _ =>
        {
            msg = await ctx.Read();
            unaligned = (await Mfill.MfillAtomic(ctx, msg!.Value.Address, MmStruct.PageSize, MfillMode.Copy, 0x77, false, false)).Error;
            zeropage = (await Mfill.MfillAtomic(ctx, msg.Value.Address, H, MfillMode.Zeropage, 0, false, false)).Error;
            Assert.Equal((512L, 0), await Mfill.MfillAtomic(ctx, msg.Value.Address, H, MfillMode.Copy, 0x77, false, false));
            again = (await Mfill.MfillAtomic(ctx, msg.Value.Address, H, MfillMode.Copy, 0x78, false, false)).Error;
        });
        Assert.Null(k.Run());
        Assert.Equal(new UffdMsg(A, UffdReason.Missing, false), msg); // the huge page's address
        Assert.Equal((Errno.EINVAL, Errno.EINVAL, Errno.EEXIST), (unaligned, zeropage, again));
        Assert.Equal(0x77UL, seen);
        var pmd = mm.PeekPmd(A);
        Assert.True(pmd.Present && pmd.Huge && pmd.Writable && pmd.Dirty);
        long head = pmd.Pfn;
        Assert.True(HugetlbPages.IsHugetlbFolio(k, head));
        Assert.Equal(1, k.Mem[head].RefCount);
        Assert.Equal(1, k.Mem.EntireMapcountHolder(head).RefCount);
        Assert.True(k.Mem[head].Has(PageFlags.Anon | PageFlags.AnonExclusive));
        Assert.Equal(0x77UL, k.Mem[head + 511].Contents);
        Assert.Equal(1, HugetlbPages.Of(k).FreeHugepages); // EEXIST's copy went back to the pool
        Assert.Empty(rec.Calls); // nothing was mapped before: no invalidation
    }

    [Theory]
    [InlineData("4.10", UffdMode.Missing, Errno.EINVAL)] // before userfaultfd on hugetlb
    [InlineData("4.19", UffdMode.Missing, 0)]
    [InlineData("5.5", UffdMode.Minor, Errno.EINVAL)]    // MINOR is 5.13
    [InlineData("5.13", UffdMode.Minor, 0)]
    [InlineData("5.13", UffdMode.Wp, Errno.EINVAL)]      // hugetlb uffd-wp is 5.19 (UFFD_FEATURE_WP_HUGETLBFS_SHMEM)
    [InlineData("6.13", UffdMode.Wp, 0)]
    public void Register_OnHugetlb_FollowsTheEra(string era, UffdMode mode, int expect)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, H, VmFlags.Hugetlb);
        var ctx = UserfaultfdCtx.Create(mm, "uffd", sigbus: false)!;
        int rc = 1;
        Ok(k, async () => rc = await Mfill.UserfaultfdRegister(ctx, A, H, mode));
        Assert.Equal(expect, rc);
    }

    public static TheoryData<string> Ports() => new()
    {
        "selftests/kvm/demand_paging_test/missing-anonymous-hugetlb", "selftests/kvm/demand_paging_test/missing-shared-hugetlb",
        "selftests/kvm/demand_paging_test/minor-shared-hugetlb",
    };

    /// <summary>
    /// A vCPU's fault that finds the page UFFDIO_COPY has just added to the hugetlbfs page cache maps it; the copy then
    /// gets EEXIST and must leave the page in the cache (folio_in_pagecache), where the file reads the copied data.
    /// </summary>
    [Fact]
    public void SharedHugetlbCopy_ThatLosesTheRace_LeavesItsPageInTheCache()
    {
        var s = ScenarioLoader.LoadBuiltIn("selftests/kvm/demand_paging_test/missing-shared-hugetlb");
        var r = ScenarioRunner.Explore(s, MmuSim.Eras.EraTable.Get("6.18"), seed => new MmuSim.Sched.RandomStrategy(seed), 600, 1);
        Assert.Null(r.FirstViolation?.Violation);
    }

    [Theory]
    [MemberData(nameof(Ports))]
    public void DemandPagingPort_MeetsItsDeclaration_WithOneHugePagePlaced(string name)
    {
        int run = SelftestPorts.AssertMeetsDeclaration(name, check: r =>
        {
            Assert.Equal(512, r.Kernel.Stats[Stat.UffdPagesPlaced]);
            Assert.InRange(r.Kernel.Stats[Stat.UffdFaults], 1, 2); // one per vCPU at most: the second may find the page placed
        });
        Assert.True(run >= 7);
    }

    [Fact]
    public void Continue_OfAHugePageNotInTheCache_IsEfault()
    {
        var s = ScenarioLoader.Parse("""
            name: t
            era: "6.13"
            processes:
              - name: p
                vmas: []
            threads:
              - name: main
                process: p
                ops:
                  - hugetlb.set: { knob: nr_hugepages, value: 1 }
                  - file.create: { as: f, kind: memfd-hugetlb, size: 2M }
                  - mmap: { addr: 0x200000, len: 2M, prot: rw, file: f, flags: shared }
                  - uffd.open: {}
                  - uffd.register: { addr: 0x200000, len: 2M, mode: minor }
                  - uffd.continue: { addr: 0x200000, len: 2M, expect: efault }
                  - uffd.continue: { addr: 0x200000, len: 4K, expect: einval }
            """, "t.yaml");
        Assert.Null(ScenarioRunner.Run(s, s.DefaultEra!, null).Violation);
    }
}

public class UffdRegisterIoctlsTests
{
    [Theory]
    [InlineData("6.1", false, UffdMode.Missing, Mfill.RangeIoctl.Wake | Mfill.RangeIoctl.Copy | Mfill.RangeIoctl.Zeropage)]
    [InlineData("6.1", true, UffdMode.Missing, Mfill.RangeIoctl.Wake | Mfill.RangeIoctl.Copy)]                              // _BASIC: no ZEROPAGE
    [InlineData("6.1", false, UffdMode.Missing | UffdMode.Wp, Mfill.RangeIoctl.Wake | Mfill.RangeIoctl.Copy | Mfill.RangeIoctl.Zeropage | Mfill.RangeIoctl.Writeprotect)]
    [InlineData("5.5", false, UffdMode.Missing | UffdMode.Wp, Mfill.RangeIoctl.Wake | Mfill.RangeIoctl.Copy | Mfill.RangeIoctl.Zeropage)] // no WRITEPROTECT before 5.7
    [InlineData("6.1", true, UffdMode.Minor, Mfill.RangeIoctl.Wake | Mfill.RangeIoctl.Copy | Mfill.RangeIoctl.Continue)]
    [InlineData("6.6", true, UffdMode.Missing, Mfill.RangeIoctl.Wake | Mfill.RangeIoctl.Copy | Mfill.RangeIoctl.Poison)]       // UFFDIO_POISON, whatever the mode
    [InlineData("6.13", false, UffdMode.Wp, Mfill.RangeIoctl.Wake | Mfill.RangeIoctl.Copy | Mfill.RangeIoctl.Zeropage | Mfill.RangeIoctl.Writeprotect | Mfill.RangeIoctl.Poison | Mfill.RangeIoctl.Move)]
    [InlineData("6.6", false, UffdMode.Missing, Mfill.RangeIoctl.Wake | Mfill.RangeIoctl.Copy | Mfill.RangeIoctl.Zeropage | Mfill.RangeIoctl.Poison)] // no MOVE before 6.8
    public void RangeIoctls_FollowTheModeTheVmaAndTheEra(string era, bool hugetlb, UffdMode mode, Mfill.RangeIoctl expect) =>
        Assert.Equal(expect, Mfill.RangeIoctls(Kernel(era), hugetlb, mode));

    [Fact]
    public void AnIoctlsExpectationThatDoesNotHold_IsAViolation()
    {
        var s = ScenarioLoader.Parse("""
            name: t
            era: "6.13"
            processes:
              - name: p
                vmas: []
            threads:
              - name: main
                process: p
                ops:
                  - hugetlb.set: { knob: nr_hugepages, value: 1 }
                  - mmap: { addr: 0x200000, len: 2M, flags: hugetlb }
                  - uffd.open: {}
                  - uffd.register: { addr: 0x200000, len: 2M, mode: missing, ioctls: "copy,zeropage" }
            """, "t.yaml");
        var r = ScenarioRunner.Run(s, s.DefaultEra!, null);
        Assert.Contains("t.yaml:13: uffdio_register.ioctls is Wake, Copy, Poison, expected Copy, Zeropage", r.Violation?.Message);
    }
}

public class UffdNewFieldsBadInputTests
{
    static string Scen(string op) =>
        Tests.Cli.CliRunner.MinimalScenario.Replace("      - read: { addr: 0x100000 }", "      - uffd.open: {}\n      - " + op);

    [Fact]
    public void PageSizeFlipAndModeNone_AreChecked_ExitTwoWithTheField()
    {
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.handle: { page_size: 8K }"), 11, "uffd.handle.page_size", "neither 4K nor 2M");
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.handle: { flip_from: 0x100000 }"), 11, "uffd.handle.flip_to", "go together");
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.handle: { flip_from: 0x100000, flip_to: 0x100001 }"), 11, "uffd.handle.flip_to", "not page aligned");
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.register: { addr: 0x100000, len: 4K, mode: \"\" }"), 11, "uffd.register.mode", "no mode given");
        Tests.Cli.CliRunner.AssertBadInput(Scen("expect-pagemap: { addr: 0x100000, uffd_wp: maybe }"), 11, "expect-pagemap.uffd_wp", "");
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.register: { addr: 0x100000, len: 4K, mode: missing, ioctls: mremap }"), 11, "uffd.register.ioctls", "not a range ioctl");
        Tests.Cli.CliRunner.AssertBadInput(Scen("uffd.api: { feature_bits: 0x1 }"), 11, "uffd.api.feature_bits", "has defined UFFD_FEATURE bits");
    }
}
