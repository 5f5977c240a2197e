using MmuSim.Scenarios;

namespace MmuSim.Devices;

/// <summary>
/// Scenario ops for the IOMMU-style device whose TLB shares the primary page tables (<see cref="SharedPtTlbDevice"/>,
/// spec 5(d4)): bind it to a process, and DMA through its IOTLB.
/// </summary>
public static class IommuOps
{
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("iommu.bind", "bind an IOMMU-style device whose TLB shares the process's page tables (iommu_sva_bind_device); name it for iommu.dma-read",
            ["process"], ["name"], IommuBind));
        r.Register(new OpSpec("iommu.dma-read", "device DMA read of addr through the IOTLB (walks the CPU page table on a miss)",
            ["iommu", "addr"], [], IommuDmaRead));
        r.Register(new OpSpec("iommu.dma-write", "device DMA write of value to addr through the IOMMU's IOTLB (walks the CPU page table on a miss)",
            ["iommu", "addr", "value"], [], IommuDmaWrite) { Check = (a, _) => a.GetULong("value") });
    }

    /// <summary>iommu_sva_bind_device: register the device's notifier on the process's mm.</summary>
    static async ValueTask IommuBind(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name", "iommu0");
        var dev = new SharedPtTlbDevice(w.K, mm, name);
        await dev.Bind();
        w.Objects[name] = dev;
    }

    static async ValueTask IommuDmaRead(ScenarioWorld w, OpArgs a) =>
        await w.Get<SharedPtTlbDevice>(a, "iommu").DmaRead(a.GetAddress("addr"));

    static async ValueTask IommuDmaWrite(ScenarioWorld w, OpArgs a) =>
        await w.Get<SharedPtTlbDevice>(a, "iommu").DmaWrite(a.GetAddress("addr"), a.GetULong("value"));
}
