using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// set_memory_region_test.c's guest_memfd cases (6.8+): test_add_private_memory_region,
/// test_add_overlapping_private_memory_regions and invalid_memory_region_flags with private memory. Each port meets its
/// declaration in every era, and each upstream assertion is live: weakening the setup it depends on makes the port fail.
/// </summary>
public class SetMemoryRegionPrivatePortTests
{
    const string Dir = "selftests/kvm/set_memory_region_test/";

    [Theory]
    [InlineData("add_private_memory_region")]
    [InlineData("add_overlapping_private_memory_regions")]
    [InlineData("invalid_memory_region_flags-private")]
    public void Port_PassesFrom68_AndIsNotApplicableBefore(string name)
    {
        int eras = EraTable.All.Count(e => e.Version >= EraTable.Get("6.8").Version);
        Assert.Equal(eras, SelftestPorts.AssertMeetsDeclaration(Dir + name));
        Assert.Equal(ExpectKind.NotApplicable, ScenarioLoader.LoadBuiltIn(Dir + name).ExpectedIn(EraTable.Get("6.6")).Kind);
    }

    /// <summary>Each replacement turns one of upstream's asserted failures into a success (or the reverse).</summary>
    [Theory]
    [InlineData("add_private_memory_region", "gmem_offset: \"1..4095\"", "gmem_offset: \"0..4095\"")]             // offset 0 binds
    [InlineData("add_overlapping_private_memory_regions", "gpa: 0x17fe00000", "gpa: 0x100000000")]              // no overlap at all
    [InlineData("add_overlapping_private_memory_regions", "size: 0, hva: 0", "size: 0x400000, hva: 0")]        // slot 10 never deleted: EINVAL (immutable), not ok
    [InlineData("invalid_memory_region_flags-private", "flags: guest-memfd, gpa: 0,", "flags: \"guest-memfd,log-dirty\", gpa: 0,")]
    public void Port_FailsWhenAnAssertedOutcomeChanges(string name, string from, string to)
    {
        string text = ScenarioLoader.BuiltInText(Dir + name)!;
        Assert.Contains(from, text);
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(text.Replace(from, to), name + ".yaml"), EraTable.Get("6.18"), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
    }

    [Fact]
    public void PrivateSlot_IsBoundToTheGuestMemfd_AtOffsetZero()
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn(Dir + "add_overlapping_private_memory_regions"), EraTable.Get("6.18"), null);
        var vm = (MmuSim.Kvm.Kvm)r.World.Objects["vm"];
        var s11 = vm.FindSlot(11)!;
        Assert.Same(r.World.Objects["memfd"], s11.Gmem);
        Assert.Equal(0x400000UL >> 12, s11.GmemPgoff);
        Assert.Null(vm.FindSlot(10));
    }
}
