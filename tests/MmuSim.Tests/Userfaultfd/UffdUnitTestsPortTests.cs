using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Userfaultfd;

/// <summary>
/// uffd-unit-tests.c's ported cases (selftests/uffd-unit-tests/): each meets its declaration in every era it applies
/// to; the ports fail where the kernel lacks what they test (MINOR on shmem before 5.14, PM_UFFD_WP before 5.13).
/// </summary>
public class UffdUnitTestsPortTests
{
    public static TheoryData<string> Ports() => SelftestPorts.Under("selftests/uffd-unit-tests/");

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MeetsItsDeclarationInEveryEra(string name)
    {
        int run = SelftestPorts.AssertMeetsDeclaration(name, check: r => Assert.Null(r.Violation));
        Assert.True(run >= 6, $"{name} ran in {run} eras");
    }

    [Fact]
    public void AllSixtySixCasesArePorted() => Assert.Equal(66, ScenarioLoader.BuiltInNames.Count(n => n.StartsWith("selftests/uffd-unit-tests/", StringComparison.Ordinal)));

    [Theory]
    [InlineData("poison-anon")]
    [InlineData("poison-hugetlb")]
    [InlineData("wp-unpopulated-anon")]
    public void PoisonAndWpUnpopulated_Before66_FailAtUffdioApi_AsUpstreamWouldSkipThem(string port)
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn("selftests/uffd-unit-tests/" + port), EraTable.Get("6.1"), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.Contains("UFFDIO_API returned einval, expected ok", r.Violation?.Message);
    }

    [Fact]
    public void MinorOnShmem_Before514_FailsAtRegister_AsUpstreamWouldSkipIt()
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn("selftests/uffd-unit-tests/minor-shmem"), EraTable.Get("5.13"), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.Contains("UFFDIO_REGISTER returned einval, expected ok", r.Violation?.Message);
    }

    [Fact]
    public void WpFork_NeedsThePagemapUffdWpBit_Of513()
    {
        var s = ScenarioLoader.LoadBuiltIn("selftests/uffd-unit-tests/wp-fork-anon");
        var r = ScenarioRunner.Run(s, EraTable.Get("5.5"), null); // uffd-wp missing altogether: register fails
        Assert.Contains("UFFDIO_REGISTER returned einval", r.Violation?.Message);
        Assert.Null(ScenarioRunner.Run(s, EraTable.Get("5.13"), null).Violation);
    }

    [Fact]
    public void TheMinorHandler_FlipsEveryHugePage_AndContinuesOncePerHugePage()
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn("selftests/uffd-unit-tests/minor-hugetlb"), EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        Assert.Equal(2, r.Kernel.Stats[Stat.UffdFaults]);
        Assert.Equal(2 * 512, r.Kernel.Stats[Stat.UffdPagesPlaced]);
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void MinorCollapse_MapsTheAliasByAPmd_AndWithoutTheCollapse_CheckHugeShmemFails(string era)
    {
        const string name = "selftests/uffd-unit-tests/minor-collapse-shmem";
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn(name), EraTable.Get(era), null);
        Assert.Null(r.Violation);
        Assert.Equal(512, r.Kernel.Stats[Stat.UffdFaults]); // minor_faults == nr_pages, and none after the collapse
        Assert.Equal(1, r.Kernel.Stats[Stat.ThpCollapseFile]);
        var text = ScenarioLoader.BuiltInText(name)!.Replace("advice: collapse", "advice: hugepage");
        var w = ScenarioRunner.Run(ScenarioLoader.Parse(text, "minor-collapse.yaml"), EraTable.Get(era), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, w.Violation?.Invariant);
        Assert.Contains("shmem_pmd_mapped is 0 kB, expected 2048 kB", w.Violation?.Message);
    }
}
