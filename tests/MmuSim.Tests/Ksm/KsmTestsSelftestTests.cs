using MmuSim.Eras;
using MmuSim.Ksm;
using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Ksm;

/// <summary>
/// The ksm_tests.c ports (selftests/ksm_tests/) against their declarations in every era, and what the assertions
/// rest on: the counters after the merge, the zero-page and per-node outcomes, the THP splits of -H.
/// </summary>
public class KsmTestsSelftestTests
{
    const string Prefix = "selftests/ksm_tests/";

    public static TheoryData<string> Ports() => SelftestPorts.Under(Prefix);

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MeetsItsDeclarationInEveryEra(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        Assert.Equal(ExpectKind.Pass, s.ExpectedIn(EraTable.Get("6.18")).Kind);
        // ksm_save_def needs max_page_sharing (4.13): every case is n/a before.
        Assert.Equal(ExpectKind.NotApplicable, s.ExpectedIn(EraTable.Get("4.12")).Kind);
        int run = SelftestPorts.AssertMeetsDeclaration(name, check: r => Assert.Null(Ksmd.Of(r.Kernel).CheckInvariants()));
        Assert.True(run >= 2, $"{name} runs in at least two eras");
    }

    [Fact]
    public void Ports_CoverEveryTestMode()
    {
        // -M -U -Z(z0, z1) -N(m1, m0) -P -H -D -C, and the prctl merge type (-t 1) of -M and -U.
        string[] modes = ["merge", "merge-prctl", "unmerge", "unmerge-prctl", "zero-page-merge-z0", "zero-page-merge-z1",
            "numa-merge-m1", "numa-merge-m0", "merge-time", "merge-time-huge-pages", "unmerge-time", "cow-time"];
        var names = ScenarioLoader.BuiltInNames.Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).ToHashSet();
        foreach (var m in modes) Assert.Contains(Prefix + m, names);
        Assert.Equal(modes.Length, names.Count);
    }

    // -H: both THPs were PMD-mapped, and KSM split both to merge their pages (6.13: split in try_to_merge_one_page and
    // the same-THP split of cmp_and_merge_page); upstream asserts only that the scans complete.
    [Fact]
    public void MergeTimeHugePages_SplitsBothThps_613()
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn(Prefix + "merge-time-huge-pages"), EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        Assert.Equal(2L, r.Kernel.Stats[Stat.ThpSplitPages]);
        Assert.True(Ksmd.Of(r.Kernel).PagesSharing > 1000, $"pages_sharing {Ksmd.Of(r.Kernel).PagesSharing}");
    }

    // -N -m 0 fails its assertion if the two pages merge anyway (the per-node trees are what makes it pass), and -m 1
    // if they do not: each case fails under the other's setting.
    [Theory]
    [InlineData("numa-merge-m0", "1", "pages_shared is 1, expected 0")]
    [InlineData("numa-merge-m1", "0", "pages_shared is 0, expected 1")]
    public void NumaMerge_FailsUnderTheOtherSetting(string name, string other, string message)
    {
        var yaml = File.ReadAllText(Path.Combine(Kvm.RealKvm.RepoRoot(), "src", "MmuSim", "Scenarios", "BuiltIn", "selftests", "ksm_tests", name + ".yaml"));
        var flipped = yaml.Replace($"knob: merge_across_nodes, value: {(other == "1" ? "0" : "1")} }}", $"knob: merge_across_nodes, value: {other} }}");
        Assert.NotEqual(yaml, flipped);
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(flipped, name + ".yaml"), EraTable.Get("6.13"), null);
        Assert.NotNull(r.Violation);
        Assert.Contains(message, r.Violation!.ToString());
    }
}
