using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>kernel/events/uprobes.c: installing a breakpoint by replacing the page.</summary>
public static class Uprobes
{
    /// <summary>
    /// uprobe_write_opcode: under mmap_lock (write), get the old page (GUP), build a new anonymous page with the old
    /// contents and the "opcode" <paramref name="newContents"/>, and __replace_page it in. The old page is put by
    /// __replace_page before end, but this caller's GUP reference keeps it until after end. Returns false if the
    /// feature is absent in the era or the page could not be replaced.
    /// </summary>
    public static async ValueTask<bool> UprobeWriteOpcode(MmStruct mm, ulong addr, ulong newContents)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("uprobe_write_opcode");
        if (!k.Era.Has(Feature.Uprobes)) return false;
        addr &= MmStruct.PageMask;
        await mm.MmapLock.WriteLock();
        try
        {
            var vma = mm.FindVma(addr);
            if (vma == null) return false;
            var old = await Gup.GetUserPage(mm, addr, write: false, mmapLocked: true);
            if (!old.Ok) return false;
            await k.S.Point(PointKind.Alloc, addr);
            long newPfn = k.Mem.AllocPage();
            if (newPfn < 0)
            {
                Folio.Put(k, old.Pfn);
                return false;
            }
            k.S.Charge(CostKind.CopyPage);
            k.Mem[newPfn].Contents = newContents;
            bool ok = await ReplacePage(vma, addr, old.Pfn, newPfn);
            await k.S.Point(PointKind.Free, addr);
            Folio.Put(k, newPfn);  // the allocation reference; the new PTE holds its own
            Folio.Put(k, old.Pfn); // the GUP reference: the old page is freed here, after end
            return ok;
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>
    /// __replace_page: start/end CLEAR over the page (3.7+); under the PTL, if the PTE still maps
    /// <paramref name="oldPfn"/>: add the new page's rmap, ptep_clear_flush (ptep_clear_flush_notify in 3.19-6.5),
    /// set_pte_at_notify the new page read-only (vm_page_prot), remove the old rmap; unlock; put the old page
    /// before end (the caller's reference keeps it alive).
    /// </summary>
    public static async ValueTask<bool> ReplacePage(Vma vma, ulong addr, long oldPfn, long newPfn)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("__replace_page");
        bool bracket = k.Era.Has(Feature.SetPteAtNotifyBracketed);
        var range = new MmuNotifierRange(mm, addr, addr + MmStruct.PageSize, MmuNotifyEvent.Clear);
        if (bracket) await mm.Notifiers.InvalidateRangeStart(range);
        bool oldIsZero = oldPfn == PhysMem.ZeroPfn;
        bool done = false;
        int t = mm.PteTable(addr);
        if (t != 0)
        {
            await mm.LockPtl(t);
            var pte = await mm.PtepGet(t, addr);
            if (pte.Present && pte.Pfn == oldPfn)
            {
                Folio.Get(k, newPfn);
                Folio.AddNewAnonRmap(k, newPfn, vma, addr);
                if (k.Era.Has(Feature.InvalidateRange)) await Tlb.PtepClearFlushNotify(mm, t, addr);
                else await Tlb.PtepClearFlush(mm, t, addr);
                await Tlb.SetPteAtNotify(mm, t, addr, Pte.Make(newPfn, writable: false));
                if (!oldIsZero) Folio.RemoveRmap(k, oldPfn, mm);
                done = true;
            }
            await mm.UnlockPtl(t);
        }
        if (done && !oldIsZero) Folio.Put(k, oldPfn);
        if (bracket) await mm.Notifiers.InvalidateRangeEnd(range);
        return done;
    }
}
