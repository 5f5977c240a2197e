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
        r.Register(new OpSpec("iommu.bind", "bind an IOMMU-style device whose TLB shares the process's page tables (iommu_sva_bind_device) under pasid; ats: true adds the device's ATS device TLB, flushed after the IOTLB (ats_order: iotlb-first, default) or before it (devtlb-first); name it for iommu.dma-read",
            ["process"], ["name", "pasid", "ats", "ats_order"], IommuBind)
        {
            Check = (a, _) =>
            {
                a.GetBounded("pasid", 1, (1UL << 20) - 1, 1);
                a.GetBool("ats");
                if (a.Has("ats_order") && !TryParseOrder(a.GetString("ats_order"), out AtsInvalidationOrder _))
                    throw a.Error("ats_order", $"unknown order '{a.GetString("ats_order")}' (known: iotlb-first, devtlb-first)");
                if (a.Has("ats_order") && !a.GetBool("ats")) throw a.Error("ats_order", "needs ats: true");
            },
        });
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
        TryParseOrder(a.GetString("ats_order", "iotlb-first"), out var order);
        var dev = new SharedPtTlbDevice(w.K, mm, name, ats: a.GetBool("ats"), atsOrder: order, pasid: (int)a.GetULong("pasid", 1));
        await dev.Bind();
        w.Objects[name] = dev;
    }

    static bool TryParseOrder(string s, out AtsInvalidationOrder order)
    {
        order = s == "devtlb-first" ? AtsInvalidationOrder.DevTlbFirst : AtsInvalidationOrder.IotlbFirst;
        return s is "iotlb-first" or "devtlb-first";
    }

    static async ValueTask IommuDmaRead(ScenarioWorld w, OpArgs a) =>
        await w.Get<SharedPtTlbDevice>(a, "iommu").DmaRead(a.GetAddress("addr"));

    static async ValueTask IommuDmaWrite(ScenarioWorld w, OpArgs a) =>
        await w.Get<SharedPtTlbDevice>(a, "iommu").DmaWrite(a.GetAddress("addr"), a.GetULong("value"));
}
