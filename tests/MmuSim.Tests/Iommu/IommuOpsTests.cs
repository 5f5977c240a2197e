using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Iommu;

public class IommuOpsTests
{
    const string D4 = """
        name: d4
        processes:
          - name: p
            vmas:
              - { start: 0x40000, len: 8K, prot: rw }
        setup:
          - iommu.bind: { process: p, name: iommu0 }
          - read: { process: p, addr: 0x40000 }
          - iommu.dma-read: { iommu: iommu0, addr: 0x40000 }
        threads:
          - name: cpu
            process: p
            ops:
              - write: { addr: 0x40000, value: 42 }
          - name: device
            ops:
              - iommu.dma-read: { iommu: iommu0, addr: 0x40000 }
              - iommu.dma-read: { iommu: iommu0, addr: 0x40000 }
        expect: pass
        """;

    [Theory]
    [InlineData("3.7", true)]   // start/end only: the IOTLB refills from the old PTE inside the range
    [InlineData("4.19", false)] // invalidate_range under the PTL
    public void IommuOpsReproduceTheSharedPageTableCowRace(string era, bool violates)
    {
        var s = ScenarioLoader.Parse(D4, "d4.yaml");
        var r = new Explorer(new ScenarioExplorable(s, EraTable.Get(era)), new ExploreOptions { Iterations = 2000 }).Run();
        Assert.Equal(violates, r.First != null);
        if (violates) Assert.Equal("stale-translation", r.First!.Violation.Invariant);
    }

    [Fact]
    public void ReclaimOfAnUnmappedAddressIsANoOp()
    {
        var s = ScenarioLoader.Parse("""
            name: r
            processes:
              - name: p
                vmas:
                  - { start: 0x10000, len: 8K, prot: rw }
            threads:
              - name: t
                process: p
                ops:
                  - reclaim: { addr: 0x10000 }
                  - migrate: { addr: 0x11000, expect: failed }
            expect: pass
            """, "r.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        Assert.Equal(0, r.Kernel.Stats.NonZero().Count(x => x.Name.Contains("reclaim", StringComparison.OrdinalIgnoreCase)));
    }
}
