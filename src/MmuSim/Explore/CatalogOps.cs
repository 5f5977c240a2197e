using MmuSim.Scenarios;

namespace MmuSim.Explore;

/// <summary>
/// Ops the historical catalog needs that no subsystem registers: an IOMMU-style device whose TLB shares the primary
/// page tables (spec 5(d4)). (reclaim, migrate, writeback... are the primary's, in CoreOps.MmPaths.)
/// </summary>
public static class CatalogOps
{
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("iommu.bind", "bind an IOMMU-style device whose TLB shares the process's page tables (iommu_sva_bind_device); name it for iommu.dma-read",
            ["process"], ["name"], IommuBind));
        r.Register(new OpSpec("iommu.dma-read", "device DMA read of addr through the IOTLB (walks the CPU page table on a miss)",
            ["iommu", "addr"], [], IommuDmaRead));
    }

    /// <summary>iommu_sva_bind_device: register the device's notifier on the process's mm.</summary>
    static async ValueTask IommuBind(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name", "iommu0");
        var dev = new Devices.SharedPtTlbDevice(w.K, mm, name);
        await dev.Bind();
        w.Objects[name] = dev;
    }

    static async ValueTask IommuDmaRead(ScenarioWorld w, OpArgs a)
    {
        var dev = w.Get<Devices.SharedPtTlbDevice>(a, "iommu");
        await dev.DmaRead(a.GetAddress("addr"));
    }
}
