using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>mm/mprotect.c.</summary>
public static class Mprotect
{
    /// <summary>
    /// do_mprotect_pkey: split the VMAs at the edges, then mprotect_fixup each (new vm_flags, change_protection).
    /// Takes mmap_lock for write. Downgrades write-protect the PTEs inside a PROTECTION_VMA invalidation. Upgrades
    /// change the VMA only: PTEs become writable lazily, at the next write fault (wp_page_reuse, no notifier); the
    /// kernel's change_pmd_range still brackets the populated part with PROTECTION_VMA, and so does the model.
    /// PROT_NONE is not modelled (the model's PTE has no protnone encoding).
    /// </summary>
    public static async ValueTask DoMprotect(MmStruct mm, ulong start, ulong len, Prot prot)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_mprotect_pkey");
        if ((prot & Prot.Read) == 0) throw new ArgumentException("mprotect without PROT_READ is not modelled");
        ulong end = start + len;
        await mm.MmapLock.WriteLock();
        try
        {
            var vmas = Mmap.SplitAround(mm, start, end);
            ulong lo = ulong.MaxValue, hi = 0;
            foreach (var vma in vmas)
            {
                vma.Prot = prot; // mprotect_fixup: vm_flags / vm_page_prot
                if (await ChangeProtection(vma, vma.Start, vma.End, prot) > 0)
                {
                    lo = Math.Min(lo, vma.Start);
                    hi = Math.Max(hi, vma.End);
                }
            }
            if (hi > lo) await Tlb.FlushTlbRange(mm, lo, hi); // tlb_finish_mmu
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>change_protection: walk [start, end) of one VMA. Returns the number of entries changed.</summary>
    public static async ValueTask<long> ChangeProtection(Vma vma, ulong start, ulong end, Prot prot)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("change_protection");
        long pages = 0;
        if (!k.Era.Has(Feature.MprotectLazyStart))
        {
            // 2.6.32: one invalidation over the whole range, populated or not.
            var range = new MmuNotifierRange(mm, start, end, MmuNotifyEvent.ProtectionVma);
            await mm.Notifiers.InvalidateRangeStart(range);
            pages = await ChangePmdRange(vma, start, end, prot, lazy: false);
            await mm.Notifiers.InvalidateRangeEnd(range);
            return pages;
        }
        const ulong PudSize = 1UL << 30;
        for (ulong addr = start; addr < end;)
        {
            ulong next = Math.Min((addr & ~(PudSize - 1)) + PudSize, end);
            pages += await ChangePmdRange(vma, addr, next, prot, lazy: true);
            addr = next;
        }
        return pages;
    }

    /// <summary>
    /// change_pmd_range: one PUD's worth. With <paramref name="lazy"/>, start PROTECTION_VMA at the first populated
    /// PMD over [that address, end) and end after the loop. A huge PMD that is only partly covered is split inside
    /// (with its own nested CLEAR start/end); a covered one is changed whole (change_huge_pmd).
    /// </summary>
    static async ValueTask<long> ChangePmdRange(Vma vma, ulong start, ulong end, Prot prot, bool lazy)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("change_pmd_range");
        MmuNotifierRange? range = null;
        long pages = 0;
        for (ulong addr = start; addr < end;)
        {
            ulong next = Math.Min((addr & MmStruct.PmdMask) + MmStruct.PmdSize, end);
            var pmd = mm.PeekPmd(addr);
            if (pmd.IsNone)
            {
                addr = next;
                continue;
            }
            if (lazy && range == null)
            {
                range = new MmuNotifierRange(mm, addr, end, MmuNotifyEvent.ProtectionVma);
                await mm.Notifiers.InvalidateRangeStart(range);
            }
            if (pmd.Present && pmd.Huge)
            {
                if ((addr & ~MmStruct.PmdMask) == 0 && next - addr == MmStruct.PmdSize)
                {
                    long changed = await ChangeHugePmd(vma, addr, prot);
                    if (changed >= 0)
                    {
                        pages += changed;
                        addr = next;
                        continue;
                    }
                }
                else await HugeMemory.SplitHugePmd(vma, addr, notify: true);
            }
            int t = mm.PteTable(addr);
            if (t != 0) pages += await ChangePteRange(vma, t, addr, next, prot);
            addr = next;
        }
        if (range != null) await mm.Notifiers.InvalidateRangeEnd(range);
        return pages;
    }

    /// <summary>change_pte_range: under the PTL, write-protect writable PTEs when the new protection has no write.</summary>
    static async ValueTask<long> ChangePteRange(Vma vma, int t, ulong start, ulong end, Prot prot)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("change_pte_range");
        if ((prot & Prot.Write) != 0) return await ChangePteRangeUpgrade(vma, t, start, end);
        long pages = 0;
        await mm.LockPtl(t);
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            var peek = mm.PeekPte(a);
            if (!(peek.Present && peek.Writable) && peek.SwapKind != SwapType.MigrationWrite) continue;
            var pte = await mm.PtepGet(t, a);
            if (pte.Present && pte.Writable)
            {
                // ptep_modify_prot_start / commit
                var old = await mm.PtepGetAndClear(t, a);
                await mm.SetPte(t, a, old.Wrprotect());
                pages++;
            }
            else if (pte.SwapKind == SwapType.MigrationWrite)
            {
                await mm.SetPte(t, a, Pte.SwapEntry(SwapType.MigrationRead, pte.Pfn));
                pages++;
            }
        }
        await mm.UnlockPtl(t);
        return pages;
    }

    /// <summary>
    /// change_pte_range on an upgrade with MM_CP_TRY_CHANGE_WRITABLE (6.0+, private VMAs): under the PTL, a present
    /// read-only PTE of an exclusive anonymous page becomes writable now (can_change_pte_writable); KSM, zero and
    /// shared-anon pages stay read-only and are upgraded at the next write fault. Before 6.0 every upgrade is lazy.
    /// </summary>
    static async ValueTask<long> ChangePteRangeUpgrade(Vma vma, int t, ulong start, ulong end)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        if (!k.Era.Has(Feature.MprotectTryChangeWritable) || vma.Shared) return 0;
        long pages = 0;
        await mm.LockPtl(t);
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            var peek = mm.PeekPte(a);
            if (!peek.Present || peek.Writable) continue;
            var pte = await mm.PtepGet(t, a);
            if (!pte.Present || pte.Writable || !CanChangePteWritable(k, pte)) continue;
            var old = await mm.PtepGetAndClear(t, a);            // ptep_modify_prot_start
            await mm.SetPte(t, a, old.WithWrite(true));          // pte_mkwrite + ptep_modify_prot_commit
            pages++;
        }
        await mm.UnlockPtl(t);
        return pages;
    }

    /// <summary>can_change_pte_writable for a private VMA: the page is anonymous and PageAnonExclusive.</summary>
    static bool CanChangePteWritable(Kernel k, Pte pte)
    {
        if (pte.Pfn == PhysMem.ZeroPfn || pte.Special) return false;
        var folio = k.Mem[k.Mem.FolioOf(pte.Pfn)];
        return folio.Has(PageFlags.Anon) && !folio.Has(PageFlags.Ksm) && k.Mem[pte.Pfn].Has(PageFlags.AnonExclusive);
    }

    /// <summary>change_huge_pmd: under the PMD lock, write-protect a writable huge PMD on a downgrade. -1: no longer huge.</summary>
    static async ValueTask<long> ChangeHugePmd(Vma vma, ulong haddr, Prot prot)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("change_huge_pmd");
        long pages = 0;
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        if (!(pmd.Present && pmd.Huge)) pages = -1;
        else if ((prot & Prot.Write) == 0 && pmd.Writable)
        {
            await mm.SetPmd(haddr, pmd.Wrprotect());
            pages = PhysMem.HugePages;
        }
        await mm.UnlockPmd(haddr);
        return pages;
    }
}
