using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Hmm;

/// <summary>mm/memory.c: the CPU side of device-private memory.</summary>
public static class DeviceFault
{
    /// <summary>
    /// do_swap_page on a device-private entry: take a reference on the device page (under the PTL, after pte_same),
    /// drop the PTL and ask the owning driver to migrate it back (pgmap->ops->migrate_to_ram), then let the fault
    /// retry against whatever the driver installed.
    /// </summary>
    public static async ValueTask<VmFault> DoSwapPageDevicePrivate(MmStruct mm, Vma vma, ulong addr, int t, Pte entry)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_swap_page");
        await mm.LockPtl(t);
        var cur = await mm.PtepGet(t, addr);
        var pgmap = DevicePagemaps.Of(k).PgmapOf(entry.Pfn);
        if (cur != entry || pgmap == null)
        {
            await mm.UnlockPtl(t);
            return VmFault.Retry;
        }
        Folio.Get(k, entry.Pfn);
        await mm.UnlockPtl(t);
        var r = await pgmap.Ops.MigrateToRam(mm, vma, addr, entry.Pfn);
        Folio.Put(k, entry.Pfn);
        return r == VmFault.Ok ? VmFault.Retry : r;
    }
}
