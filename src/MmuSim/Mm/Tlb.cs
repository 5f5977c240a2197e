using MmuSim.Eras;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// TLB maintenance and the PTE helpers whose notifier behaviour changed across eras
/// (include/linux/mmu_notifier.h, mm/pgtable-generic.c, arch/x86/mm/tlb.c).
/// The primary CPUs' own TLBs are modelled only when a scenario asks for them (<see cref="CpuTlb"/>, §5(d8)); otherwise a
/// flush costs time and is counted, and what matters is which secondary callbacks it triggers.
/// </summary>
public static class Tlb
{
    /// <summary>flush_tlb_mm_range: local + remote shootdown; from 6.6 it calls arch_invalidate_secondary_tlbs.</summary>
    public static async ValueTask FlushTlbRange(MmStruct mm, ulong start, ulong end)
    {
        var k = mm.Kernel;
        if (k.Mutated(Mutation.SkipTlbFlush)) return;
        using var _ = k.S.Current.Enter("flush_tlb_mm_range");
        await k.S.Point(PointKind.TlbFlush, start);
        k.S.Charge(CostKind.TlbFlushLocal);
        k.Stats.Inc(Stat.TlbFlushesLocal);
        k.PrimaryTlb?.FlushRange(mm, start, end);
        if (k.Era.Has(Feature.ArchInvalidateSecondaryTlbs)) await mm.Notifiers.ArchInvalidateSecondaryTlbs(start, end);
    }

    /// <summary>flush_tlb_mm: flush every CPU's TLB entries of <paramref name="mm"/> (whole address space).</summary>
    public static ValueTask FlushTlbMm(MmStruct mm) => FlushTlbRange(mm, 0, TaskSize);

    /// <summary>TASK_SIZE of x86-64 with 4-level tables (47-bit user addresses).</summary>
    public const ulong TaskSize = 1UL << 47;

    /// <summary>ptep_clear_flush: clear the PTE and flush the TLB for that page. Caller holds the PTL.</summary>
    public static async ValueTask<Pte> PtepClearFlush(MmStruct mm, int table, ulong addr)
    {
        using var _ = mm.Kernel.S.Current.Enter("ptep_clear_flush");
        var old = await mm.PtepGetAndClear(table, addr);
        if (old.Present) await FlushTlbRange(mm, addr, addr + MmStruct.PageSize);
        return old;
    }

    /// <summary>
    /// ptep_clear_flush_notify: ptep_clear_flush plus the era's under-PTL notification:
    /// invalidate_page up to 3.5, invalidate_range in 3.19-6.5, nothing else (3.6-3.18 callers notify themselves;
    /// 6.6+ the flush itself calls arch_invalidate_secondary_tlbs). Caller holds the PTL.
    /// </summary>
    public static async ValueTask<Pte> PtepClearFlushNotify(MmStruct mm, int table, ulong addr)
    {
        var era = mm.Kernel.Era;
        var old = await PtepClearFlush(mm, table, addr);
        // invalidate_range where it exists (3.19-6.5; 4.13-rc1 too: c7ab0d2fdc84 changed only the rmap walkers, which
        // use PtepClearFlushInvalidatePage), else 2.6.27-3.5's invalidate_page.
        if (era.Has(Feature.InvalidateRange)) await mm.Notifiers.InvalidateRange(addr, addr + MmStruct.PageSize);
        else if (era.Has(Feature.InvalidatePageUnderPtl)) await mm.Notifiers.InvalidatePage(addr);
        return old;
    }

    /// <summary>
    /// ptep_clear_flush followed by mmu_notifier_invalidate_page under the PTL: the rmap walkers up to 3.5
    /// (ptep_clear_flush_notify) and in 4.13-rc1 (c7ab0d2fdc84 called invalidate_page inside the page_vma_mapped_walk
    /// loop). Caller holds the PTL.
    /// </summary>
    public static async ValueTask<Pte> PtepClearFlushInvalidatePage(MmStruct mm, int table, ulong addr)
    {
        var old = await PtepClearFlush(mm, table, addr);
        await mm.Notifiers.InvalidatePage(addr);
        return old;
    }

    /// <summary>
    /// set_pte_at_notify: 2.6.32 sets the PTE and then calls change_pte; 3.7-6.9 call change_pte first (the primary PTE
    /// was already cleared); 6.10+ have no change_pte and callers use plain set_pte_at. Caller holds the PTL.
    /// </summary>
    public static async ValueTask SetPteAtNotify(MmStruct mm, int table, ulong addr, Pte pte)
    {
        var k = mm.Kernel;
        if (!k.Era.Has(Feature.ChangePte))
        {
            await mm.SetPte(table, addr, pte);
            return;
        }
        using var _ = k.S.Current.Enter("set_pte_at_notify");
        k.Stats.Inc(Stat.NotifierChangePte);
        if (k.Era.Has(Feature.SetPteThenNotify))
        {
            await mm.SetPte(table, addr, pte);
            await mm.Notifiers.ChangePte(addr, pte);
        }
        else
        {
            await mm.Notifiers.ChangePte(addr, pte);
            await mm.SetPte(table, addr, pte);
        }
    }

    /// <summary>
    /// ptep_clear_young_notify / pmdp_clear_young_notify (include/linux/mmu_notifier.h): the primary's
    /// test-and-clear of Accessed without a TLB flush, OR'ed with the secondaries' clear_young. Caller holds the PTL
    /// (the PMD lock for <paramref name="size"/> == PMD_SIZE).
    /// </summary>
    public static ValueTask<bool> PtepClearYoungNotify(MmStruct mm, int table, ulong addr, ulong size = MmStruct.PageSize) =>
        ClearYoungNotify(mm, table, addr, size, flush: false);

    /// <summary>
    /// ptep_clear_flush_young_notify: primary test-and-clear of Accessed plus the secondaries' clear_flush_young,
    /// OR'ed. Caller holds the PTL. <paramref name="size"/> is the primary mapping size (PAGE_SIZE or PMD_SIZE).
    /// </summary>
    public static ValueTask<bool> PtepClearFlushYoungNotify(MmStruct mm, int table, ulong addr, ulong size = MmStruct.PageSize) =>
        ClearYoungNotify(mm, table, addr, size, flush: true);

    /// <summary>
    /// The one body of the (flush_)young_notify pairs: test-and-clear the primary's Accessed bit (PTE or huge PMD),
    /// flush the primary TLB for a young entry when <paramref name="flush"/>, then ask the secondaries through
    /// clear_flush_young or clear_young.
    /// </summary>
    static async ValueTask<bool> ClearYoungNotify(MmStruct mm, int table, ulong addr, ulong size, bool flush)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter(flush ? "ptep_clear_flush_young_notify" : "ptep_clear_young_notify");
        bool young;
        if (size == MmStruct.PmdSize)
        {
            var pmd = await mm.PmdpGet(addr);
            young = pmd.Accessed;
            if (young) await mm.SetPmd(addr, pmd.Mkold());
        }
        else
        {
            var pte = await mm.PtepGet(table, addr);
            young = pte.Present && pte.Accessed;
            if (young) await mm.SetPte(table, addr, pte.Mkold());
        }
        if (young && flush) await FlushTlbRange(mm, addr, addr + size);
        if (flush)
        {
            k.Stats.Inc(Stat.NotifierClearFlushYoung);
            return await mm.Notifiers.ClearFlushYoung(addr, addr + size) | young;
        }
        k.Stats.Inc(Stat.NotifierClearYoung);
        return await mm.Notifiers.ClearYoung(addr, addr + size) | young;
    }
}
