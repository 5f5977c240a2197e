using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// kvm-migrate-thp: migration of a guest's PMD-mapped THP under a running vCPU and a VMM writer. From 4.14 the THP
/// moves whole through a PMD migration entry and comes back PMD-mapped; before, it is split and one page moves.
/// </summary>
public class KvmMigrateThpTests
{
    static MmuSim.Explore.ExploreReport Explore(string era, params Mutation[] m) =>
        new MmuSim.Explore.Explorer(new MmuSim.Explore.ScenarioExplorable(ScenarioLoader.LoadBuiltIn("kvm-migrate-thp"), EraTable.Get(era), m),
            new MmuSim.Explore.ExploreOptions { Iterations = 1024 }).Run();

    [Theory]
    [InlineData("2.6.32", null)]
    [InlineData("3.6", "stale-translation")] // invalidate_page after pte_unmap_unlock (race 5(a)) on the split-off page
    [InlineData("4.12", "stale-translation")]
    [InlineData("4.13", null)]
    [InlineData("4.15", null)]
    [InlineData("6.13", null)]
    public void MigrationOfAGuestThp_PerEra(string era, string? invariant) =>
        Assert.Equal(invariant, Explore(era).First?.Violation.Invariant);

    [Theory]
    [InlineData(Mutation.KvmNoRetryCheck)]
    [InlineData(Mutation.KvmNoZapOnStart)]
    public void Mutants_AreKilled(Mutation m) => Assert.NotNull(Explore("6.13", m).First);

    [Theory]
    [InlineData("4.12", 1, false)]
    [InlineData("4.15", PhysMem.HugePages, true)]
    [InlineData("6.13", PhysMem.HugePages, true)]
    public void OneRun_MovesTheFolio_AndItStaysPmdMappedFrom414(string era, int migrated, bool pmdMapped)
    {
        var r = ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn("kvm-migrate-thp"), EraTable.Get(era), null);
        Assert.Null(r.Violation);
        Assert.Equal(migrated, r.Kernel.Stats[Stat.PagesMigrated]);
        var qemu = r.Kernel.Mms.Single(m => m.Name == "qemu");
        var pmd = qemu.PeekPmd(0x200000);
        Assert.Equal(pmdMapped, pmd.Present && pmd.Huge);
    }
}
