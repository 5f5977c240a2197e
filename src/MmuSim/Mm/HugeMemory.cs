using MmuSim.Eras;

namespace MmuSim.Mm;

/// <summary>mm/huge_memory.c: anonymous THP fault, wp, split and zap. (Skeleton: filled in by the primary-paths work.)</summary>
public static class HugeMemory
{
    /// <summary>thp_vma_allowable_order for an anon fault: VM_HUGEPAGE VMA covering the whole aligned 2 MiB, era with THP.</summary>
    public static bool ThpEligible(MmStruct mm, Vma vma, ulong addr)
    {
        if (!mm.Kernel.Era.Has(Feature.Thp) || (vma.Flags & VmFlags.HugePage) == 0 || (vma.Flags & VmFlags.NoHugePage) != 0) return false;
        ulong h = addr & MmStruct.PmdMask;
        return h >= vma.Start && h + MmStruct.PmdSize <= vma.End;
    }

    /// <summary>do_huge_pmd_anonymous_page.</summary>
    public static ValueTask<VmFault> DoHugePmdAnonymousPage(MmStruct mm, Vma vma, ulong addr, bool write) =>
        throw new NotImplementedException("do_huge_pmd_anonymous_page");

    /// <summary>Fault on a present huge PMD (do_huge_pmd_wp_page or access-bit update).</summary>
    public static ValueTask<VmFault> HugePmdFault(MmStruct mm, Vma vma, ulong addr, Pte pmd, FaultFlags flags) =>
        throw new NotImplementedException("huge pmd fault");

    /// <summary>__split_huge_pmd: with <paramref name="notify"/>, inside its own CLEAR start/end.</summary>
    public static ValueTask SplitHugePmd(Vma vma, ulong addr, bool notify) =>
        throw new NotImplementedException("__split_huge_pmd");

    /// <summary>zap_huge_pmd.</summary>
    public static ValueTask ZapHugePmd(MmuGather tlb, Vma vma, ulong addr) =>
        throw new NotImplementedException("zap_huge_pmd");
}
