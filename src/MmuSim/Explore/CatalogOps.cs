using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Explore;

/// <summary>
/// Ops the historical catalog needs that no subsystem registers: reclaim and migration of the folio mapped at an
/// address (the rmap walkers whose notifier calls moved across eras, spec 5(a)/(b)).
/// </summary>
public static class CatalogOps
{
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("reclaim", "shrink_folio_list on the folio mapped at addr: try_to_unmap every mapping, write back, free (no-op if none is mapped)",
            ["process", "addr"], [], Reclaim) { Check = (a, i) => i.RequireMapped(a) });
        r.Register(new OpSpec("migrate", "migrate_pages of the folio mapped at addr to a new frame (no-op if none is mapped)",
            ["process", "addr"], [], MigrateOp) { Check = (a, i) => i.RequireMapped(a) });
        r.Register(new OpSpec("iommu.bind", "bind an IOMMU-style device whose TLB shares the process's page tables (iommu_sva_bind_device); name it for iommu.dma-read",
            ["process"], ["name"], IommuBind));
        r.Register(new OpSpec("iommu.dma-read", "device DMA read of addr through the IOTLB (walks the CPU page table on a miss)",
            ["iommu", "addr"], [], IommuDmaRead));
    }

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

    static async ValueTask Reclaim(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        await w.K.S.Point(Sched.PointKind.PteRead, addr);
        var pte = mm.PeekPte(addr);
        if (pte.Present && pte.Pfn != 0) await Vmscan.ShrinkFolio(w.K, pte.Pfn);
    }

    static async ValueTask MigrateOp(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        ulong addr = a.GetAddress("addr");
        await w.K.S.Point(Sched.PointKind.PteRead, addr);
        var pte = mm.PeekPte(addr);
        if (pte.Present && pte.Pfn != 0) await Migrate.MigrateFolio(w.K, pte.Pfn);
    }
}
