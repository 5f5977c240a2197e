using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>The soft-dirty.c ports (selftests/soft-dirty/) in 6.13, 6.1, 4.19 and 3.19 (n/a before 3.11), and the
/// VM_SOFTDIRTY / pmd_mkdirty behaviour they rely on.</summary>
public class SoftDirtySelftestTests
{
    public static TheoryData<string> Ports() => SelftestPorts.Under("selftests/soft-dirty/");

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_MatchesItsExpectationPerEra(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        Assert.Equal(ExpectKind.NotApplicable, s.ExpectedIn(EraTable.Get("3.10")).Kind);
        foreach (var era in new[] { "6.13", "6.1", "4.19", "3.19" })
        {
            Assert.Equal(ExpectKind.Pass, s.ExpectedIn(EraTable.Get(era)).Kind);
            var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
            Assert.True(r.MatchesExpectation, $"{name} in {era}: {r.Violation}");
        }
    }

    [Fact]
    public void EveryUpstreamFunctionIsPorted()
    {
        var names = ScenarioLoader.BuiltInNames.ToHashSet();
        foreach (var f in new[] { "simple", "vma-reuse", "hugepage", "mprotect-anon", "mprotect-file" })
            Assert.Contains($"selftests/soft-dirty/{f}", names);
    }

    /// <summary>A write fault on the PMD clear_refs write-protected reuses the THP with pmd_mkdirty, which sets the
    /// PMD's soft-dirty bit (bit 55 in pagemap); clear_refs clears it and VM_SOFTDIRTY again.</summary>
    [Theory]
    [InlineData("4.19")]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void ThpWriteAfterClearRefs_SetsPmdSoftDirty(string era)
    {
        var k = Kernel(era);
        var mm = k.CreateMm("p");
        Ok(k, async () =>
        {
            await Mmap.DoMmap(mm, 0x200000, MmStruct.PmdSize, Prot.ReadWrite, VmFlags.HugePage);
            await Write(mm, 0x200000, 1);
        });
        Assert.True((mm.Vmas[0].Flags & VmFlags.SoftDirty) != 0);
        Ok(k, async () => Assert.True(await TaskMmu.ClearRefsWrite(mm)));
        Assert.Equal(VmFlags.HugePage, mm.Vmas[0].Flags);
        var pmd = mm.PeekPmd(0x200000);
        Assert.True(pmd.Huge && !pmd.Writable && !pmd.SoftDirty);
        Assert.Equal(0UL, TaskMmu.PagemapEntry(mm, 0x201000) >> TaskMmu.PmSoftDirty & 1);
        Ok(k, async () => await Write(mm, 0x3ff000, 2));
        pmd = mm.PeekPmd(0x200000);
        Assert.True(pmd.Huge && pmd.Writable && pmd.Dirty && pmd.SoftDirty);
        Assert.Equal(1UL, TaskMmu.PagemapEntry(mm, 0x200000) >> TaskMmu.PmSoftDirty & 1);
        Assert.Equal(1, k.Mem[pmd.Pfn].RefCount);
    }
}
