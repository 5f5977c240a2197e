using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Mm;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Iommu;

/// <summary>
/// IOMMU SVA with ATS: a PASID-bound device whose ATS device TLB is refilled from the IOMMU's IOTLB. The flush comes
/// from invalidate_range (3.19-6.5) or arch_invalidate_secondary_tlbs (6.6+), and must invalidate the IOTLB before the
/// device TLB.
/// </summary>
public class SvaAtsTests
{
    const ulong A = 0x40000;
    const ulong Page = MmStruct.PageSize;

    [Theory]
    [InlineData("4.19", "invalidate_range")]
    [InlineData("6.1", "invalidate_range")]
    [InlineData("6.6", "arch_invalidate_secondary_tlbs")]
    [InlineData("6.13", "arch_invalidate_secondary_tlbs")]
    public void Munmap_FlushesBothLevelsThroughTheEraCallback(string era, string callback)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 2 * Page);
        var dev = new SharedPtTlbDevice(k, mm, "sva0", ats: true, pasid: 7);
        Assert.Null(Run(k, async _ =>
        {
            await dev.Bind();
            await Memory.UserAccess(mm, A, write: true, value: 5);
            Assert.Equal(5UL, await dev.DmaRead(A));
        }));
        var cached = new List<MmuSim.Notifier.SecondaryTranslation>();
        dev.CollectTranslations(cached);
        Assert.Equal(["sva0 iotlb pasid 7", "sva0 devtlb pasid 7"], cached.Select(t => t.Where));
        Assert.Null(Run(k, async _ => await Mmap.Munmap(mm, A, 2 * Page)));
        Assert.Contains(dev.FlushLog, f => f.Callback == callback && f.Start <= A && f.End >= A + Page);
        Assert.DoesNotContain(dev.FlushLog, f => f.Callback is "invalidate_range_start" or "invalidate_range_end");
        cached.Clear();
        dev.CollectTranslations(cached);
        Assert.Empty(cached);
    }

    [Fact]
    public void Before3_19_OnlyStartEndFlush()
    {
        var k = Kernel("3.10");
        var mm = MmWithVma(k, A, Page);
        var dev = new SharedPtTlbDevice(k, mm, "sva0", ats: true);
        Assert.Null(Run(k, async _ =>
        {
            await dev.Bind();
            await dev.DmaRead(A);
            await Mmap.Munmap(mm, A, Page);
        }));
        Assert.Equal(["invalidate_range_start", "invalidate_range_end"], dev.FlushLog.Select(f => f.Callback));
        Assert.Equal((A, A + Page), (dev.FlushLog[0].Start, dev.FlushLog[0].End));
    }

    [Theory]
    [InlineData("4.19", "iotlb-first", null)]
    [InlineData("6.6", "iotlb-first", null)]
    [InlineData("6.13", "iotlb-first", null)]
    [InlineData("4.19", "devtlb-first", "stale-translation")]
    [InlineData("6.6", "devtlb-first", "stale-translation")]
    [InlineData("6.13", "devtlb-first", "stale-translation")]
    public void AtsInvalidationOrder_DeviceTlbFirstLetsTheDeviceRefetchAStaleTranslation(string era, string order, string? invariant)
    {
        var s = ScenarioLoader.LoadBuiltIn($"iommu-sva-ats-{order}");
        var r = new Explorer(new ScenarioExplorable(s, EraTable.Get(era)), new ExploreOptions { Iterations = 3000 }).Run();
        Assert.Equal(invariant, r.First?.Violation.Invariant);
        if (invariant != null) Assert.Contains("devtlb pasid 5", r.First!.Violation.Message);
    }

    [Theory]
    [InlineData("iommu.bind: { name: x, ats_order: devtlb-first }", "iommu.bind.ats_order")]
    [InlineData("iommu.bind: { name: x, ats: true, ats_order: sideways }", "iommu.bind.ats_order")]
    [InlineData("iommu.bind: { name: x, pasid: 0 }", "iommu.bind.pasid")]
    [InlineData("iommu.bind: { name: x, ats: maybe }", "iommu.bind.ats")]
    public void BadBindFields_NameFileLineAndField(string op, string field)
    {
        var yaml = """
            name: t
            processes:
              - name: p
            threads:
              - name: a
                process: p
                ops:
                  - OP
            """.Replace("OP", op);
        var e = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(yaml, "t.yaml"));
        Assert.Equal(("t.yaml", 8, field), (e.File, e.Line, e.Field));
    }
}
