using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Hmm;

/// <summary>mm/memory.c: the CPU side of device-private memory.</summary>
public static class DeviceFault
{
    /// <summary>
    /// do_swap_page on a device-private entry: take a reference on the device page (under the PTL, after pte_same),
    /// drop the PTL and ask the owning driver to migrate it back (pgmap->ops->migrate_to_ram), then let the fault
    /// retry against whatever the driver installed. Before 6.1 (16ce101db85d) the entry read without the PTL went to
    /// the callback directly, with no reference: a concurrent migration of the page (another CPU's fault, the device's
    /// own migration back) could free it, and the pgmap with it, before vmf->page->pgmap was dereferenced.
    /// </summary>
    public static async ValueTask<VmFault> DoSwapPageDevicePrivate(MmStruct mm, Vma vma, ulong addr, int t, Pte entry)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_swap_page");
        if (!TakesFaultPageRef(k))
        {
            // vmf->page = pfn_swap_entry_to_page(entry); vmf->page->pgmap->ops->migrate_to_ram(vmf): the entry was read
            // without the PTL, and nothing keeps the page alive until the dereference of page->pgmap.
            ushort gen = k.Mem[entry.Pfn].Generation;
            await k.S.Point(PointKind.Counter, (ulong)entry.Pfn);
            k.Checker.OnDevicePageUse("do_swap_page: vmf->page->pgmap->ops->migrate_to_ram", addr, entry.Pfn, gen);
            var unreferenced = DevicePagemaps.Of(k).PgmapOf(entry.Pfn);
            if (unreferenced == null || k.Mem[entry.Pfn].Generation != gen) return VmFault.SigBus;
            var r0 = await unreferenced.Ops.MigrateToRam(mm, vma, addr, entry.Pfn);
            return r0 == VmFault.Ok ? VmFault.Retry : r0;
        }
        var attempt = new MigrateToRamAttempt(mm, addr, entry);
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
        // migrate_vma_check_page refused the page (another CPU's fault holds a reference too) and nothing the attempt
        // read has moved since it began: the next fault would fail the same way until that CPU drops its reference. A
        // spin, not progress (the real CPUs run concurrently), so wait for that write instead of being unrolled.
        if (r == VmFault.Ok && !attempt.InputsChanged) await k.S.SpinWait(attempt, "do_swap_page (device page still referenced)");
        return r == VmFault.Ok ? VmFault.Retry : r;
    }

    /// <summary>
    /// Model bookkeeping for <see cref="Scheduler.SpinWait"/>: what a device-private fault attempt's outcome depends on
    /// (the PTE, the device page's refcount, mapcount and generation) when the attempt began.
    /// </summary>
    sealed class MigrateToRamAttempt(MmStruct mm, ulong addr, Pte entry) : ISpinWaiter
    {
        readonly (int Ref, int Map, ushort Gen) _page = Snapshot(mm.Kernel, entry.Pfn);

        static (int, int, ushort) Snapshot(Kernel k, long pfn) => (k.Mem[pfn].RefCount, k.Mem[pfn].MapCount, k.Mem[pfn].Generation);

        public bool InputsChanged => mm.PeekPte(addr) != entry || Snapshot(mm.Kernel, entry.Pfn) != _page;
    }

    /// <summary>
    /// Whether do_swap_page holds a reference on the faulting device page across ->migrate_to_ram and names it in
    /// migrate_vma.fault_page, so that migrate_vma_check_page expects that one extra reference (16ce101db85d, 6.1).
    /// </summary>
    public static bool TakesFaultPageRef(Kernel k) =>
        k.Era.Has(Eras.Feature.DevicePrivateFaultRef) && !k.Mutated(Mutation.DevicePrivateFaultNoRef);
}
