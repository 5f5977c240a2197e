using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Sched;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Iommu;

/// <summary>
/// kernel-facts §5(d4): a TLB that shares the primary page tables must be flushed under the PTL when COW re-points a
/// PTE. With only start/end (before invalidate_range, 3.19) the IOTLB refills from the old PTE after start and keeps the
/// old page after the PTE is switched, until end.
/// </summary>
public class SharedPtTlbDeviceTests
{
    const ulong A = 0x40000;

    static Violation? CowVsDma(string era, int iteration)
    {
        var k = Kernel(era, new RandomStrategy(0xD4));
        var mm = MmWithVma(k, A, 0x2000);
        var dev = new SharedPtTlbDevice(k, mm);
        Assert.Null(Run(k, async _ =>
        {
            await dev.Bind();
            await Memory.UserAccess(mm, A, write: false);
            await dev.DmaRead(A);
        }, "setup"));
        k.S.Spawn("cpu", async _ => await Memory.UserAccess(mm, A, write: true, value: 42));
        k.S.Spawn("device", async _ =>
        {
            for (int i = 0; i < 3; i++) await dev.DmaRead(A);
        });
        return k.Run(iteration);
    }

    [Fact]
    public void StartEndOnlyIommu_SeesOldPageAfterCow_In_3_7()
    {
        Violation? found = null;
        for (int it = 0; it < 2000 && found == null; it++) found = CowVsDma("3.7", it);
        Assert.NotNull(found);
        Assert.Equal(Invariants.StaleTranslation, found!.Invariant);
        Assert.Contains("iommu0 iotlb", found.Message);
        Assert.Contains("primary now maps", found.Message);
    }

    [Theory]
    [InlineData("2.6.32")] // change_pte falls back to invalidate_page under the PTL
    [InlineData("4.19")]   // ptep_clear_flush_notify -> invalidate_range under the PTL
    [InlineData("6.13")]   // the TLB flush calls arch_invalidate_secondary_tlbs
    public void UnderPtlFlush_IsCoherent(string era)
    {
        for (int it = 0; it < 2000; it++) Assert.Null(CowVsDma(era, it));
    }

    [Fact]
    public void SkipTlbFlushMutation_BreaksArchInvalidate_In_6_13()
    {
        Violation? found = null;
        for (int it = 0; it < 2000 && found == null; it++)
        {
            var k = Kernel("6.13", new RandomStrategy(1), new KernelOptions { Mutations = new HashSet<Mutation> { Mutation.SkipTlbFlush } });
            var mm = MmWithVma(k, A, 0x2000);
            var dev = new SharedPtTlbDevice(k, mm);
            Assert.Null(Run(k, async _ => { await dev.Bind(); await Memory.UserAccess(mm, A, false); await dev.DmaRead(A); }, "setup"));
            k.S.Spawn("cpu", async _ => await Memory.UserAccess(mm, A, write: true, value: 42));
            k.S.Spawn("device", async _ => { for (int i = 0; i < 3; i++) await dev.DmaRead(A); });
            found = k.Run(it);
        }
        Assert.NotNull(found);
    }
}

/// <summary>
/// iommu-munmap: the IOTLB may hold a cleared translation until the mmu_gather's TLB flush reaches it, but the page
/// may not be freed before: clean in every era; freeing before the flush (free-before-end) or a flush that never
/// reaches the device (skip-tlb-flush, 6.6+ where the device is flushed from flush_tlb_mm_range) is caught.
/// </summary>
public class IommuMunmapScenarioTests
{
    static MmuSim.Explore.ExploreReport Explore(string era, params Mutation[] m)
    {
        var s = MmuSim.Scenarios.ScenarioLoader.LoadBuiltIn("iommu-munmap");
        var program = new MmuSim.Explore.ScenarioExplorable(s, MmuSim.Eras.EraTable.Get(era), m);
        return new MmuSim.Explore.Explorer(program, new MmuSim.Explore.ExploreOptions
        {
            Strategy = new MmuSim.Explore.StrategySpec { Kind = MmuSim.Explore.StrategyKind.Random, Seed = 7 },
            Iterations = 1500,
            Parallelism = 1,
        }).Run();
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void Clean(string era) => Assert.Equal(0, Explore(era).Violations);

    [Theory]
    [InlineData("4.19", Mutation.FreeBeforeEnd)]
    [InlineData("6.13", Mutation.FreeBeforeEnd)]
    [InlineData("6.13", Mutation.SkipTlbFlush)]
    public void MutantIsKilled(string era, Mutation m)
    {
        var r = Explore(era, m);
        Assert.True(r.Violations > 0);
        Assert.Equal(Invariants.FreedPageReachable, r.Counterexamples[0].Violation!.Invariant);
    }
}
