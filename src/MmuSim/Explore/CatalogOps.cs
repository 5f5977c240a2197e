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
