using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>The mkdirty.c ports (selftests/mkdirty/): setting a PTE/PMD dirty in a read-only VMA must not make it writable.</summary>
public class MkdirtySelftestTests
{
    public static TheoryData<string> Ports() => SelftestPorts.Under("selftests/mkdirty/");

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_PassesIn613_6_1_4_19_AndThe2_6_38Era(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        bool uffd = name.EndsWith("uffdio-copy", StringComparison.Ordinal);
        if (uffd) Assert.Equal(ExpectKind.NotApplicable, s.ExpectedIn(EraTable.Get("3.6")).Kind); // userfaultfd is 4.3
        foreach (var era in uffd ? new[] { "6.13", "6.1", "4.19", "4.10" } : ["6.13", "6.1", "4.19", "3.6"])
        {
            Assert.Equal(ExpectKind.Pass, s.ExpectedIn(EraTable.Get(era)).Kind);
            var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
            Assert.True(r.MatchesExpectation, $"{name} in {era}: {r.Violation}");
        }
    }

    [Fact]
    public void EveryUpstreamCaseIsPorted()
    {
        var names = ScenarioLoader.BuiltInNames.ToHashSet();
        foreach (var f in new[] { "ptrace-write", "ptrace-write-thp", "page-migration", "page-migration-thp", "pte-mapped-thp", "uffdio-copy" })
            Assert.Contains($"selftests/mkdirty/{f}", names);
    }

    /// <summary>A FOLL_FORCE write into a PROT_READ MADV_HUGEPAGE VMA places a fresh THP: the PMD is huge, dirty and
    /// not writable, the folio has one mapping and one reference, and a user write is SIGSEGV.</summary>
    [Theory]
    [InlineData("4.19")]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void ForcedWriteIntoReadOnlyThpVma_MapsADirtyReadOnlyPmd(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, 0x200000, MmStruct.PmdSize, VmFlags.HugePage, Prot.Read);
        Ok(k, async () => Assert.Equal(0, (await Gup.GetUserPages(mm, 0x200000, 1, GupFlags.Write | GupFlags.Force | GupFlags.Get, false)).Error));
        var pmd = mm.PeekPmd(0x200000);
        Assert.True(pmd.Present && pmd.Huge && pmd.Dirty);
        Assert.False(pmd.Writable);
        Ok(k, async () => Assert.Equal(VmFault.SigSegv, (await Memory.UserAccessResult(mm, 0x200000, write: true)).Fault));
    }
}
