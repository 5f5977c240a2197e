namespace MmuSim.Kvm;

/// <summary>
/// Which arch/kvm secondary MMU a VM uses. It decides how faults take mmu_lock, which SPTE tables an unmap frees and
/// what <c>kvm_set_spte_gfn</c> (change_pte) does (kernel-facts.md §3.4, [6.8] arch trees).
/// </summary>
public enum KvmArch : byte
{
    /// <summary>x86 TDP MMU (EPT/NPT): faults take mmu_lock for read when it is an rwlock; unmap zaps leaves only.</summary>
    X86Tdp,
    /// <summary>x86 shadow MMU (rmap based): faults take mmu_lock for write; shadow pages survive leaf zaps.</summary>
    X86Shadow,
    /// <summary>arch/mips/kvm/mmu.c: GPA page tables; a table is freed only when a flush covers all of it.</summary>
    Mips,
    /// <summary>arch/arm64/kvm/mmu.c stage 2: refcounted tables, freed by unmap as soon as they are empty.</summary>
    Arm64,
    /// <summary>arch/riscv/kvm/mmu.c G-stage: unmap clears leaves only.</summary>
    RiscV,
    /// <summary>
    /// PPC Book3S HV (hash MMU): the fault's mmu_notifier_retry check and the install run under the page's rmap lock,
    /// not mmu_lock, so the check is lockless with respect to the invalidation's end (race 5(d1) without barriers);
    /// change_pte unmaps.
    /// </summary>
    PpcBook3s,
    /// <summary>PPC e500: change_pte unmaps.</summary>
    PpcE500,
    /// <summary>arch/loongarch/kvm/mmu.c: tables freed only when the flush covers the whole table (like MIPS).</summary>
    LoongArch,
}

/// <summary>Per-arch behaviour, as data.</summary>
public static class KvmArchInfo
{
    /// <summary>Scenario spelling: x86-tdp, x86-shadow, mips, arm64, riscv, ppc-book3s, ppc-e500, loongarch.</summary>
    public static string NameOf(KvmArch a) => a switch
    {
        KvmArch.X86Tdp => "x86-tdp",
        KvmArch.X86Shadow => "x86-shadow",
        KvmArch.Mips => "mips",
        KvmArch.Arm64 => "arm64",
        KvmArch.RiscV => "riscv",
        KvmArch.PpcBook3s => "ppc-book3s",
        KvmArch.PpcE500 => "ppc-e500",
        KvmArch.LoongArch => "loongarch",
        _ => a.ToString(),
    };

    public static bool TryParse(string s, out KvmArch arch)
    {
        foreach (var a in Enum.GetValues<KvmArch>())
            if (NameOf(a) == s.Trim().ToLowerInvariant() || (s.Trim() == "x86" && a == KvmArch.X86Tdp)) { arch = a; return true; }
        arch = default;
        return false;
    }

    public static string KnownList => string.Join(", ", Enum.GetValues<KvmArch>().Select(NameOf));

    public static bool IsX86(KvmArch a) => a is KvmArch.X86Tdp or KvmArch.X86Shadow;

    /// <summary>Faults take mmu_lock for read when it is an rwlock (x86 TDP MMU, arm64 user_mem_abort).</summary>
    public static bool FaultTakesReadLock(KvmArch a) => a is KvmArch.X86Tdp or KvmArch.Arm64;

    /// <summary>
    /// The retry check is the range variant (mmu_notifier_retry_hva in 5.13-6.7, mmu_invalidate_retry_gfn from 6.8):
    /// x86 only; the other archs call plain mmu_invalidate_retry.
    /// </summary>
    public static bool UsesRangeRetry(KvmArch a) => IsX86(a);

    /// <summary>The retry check and install run under a per-page rmap lock instead of mmu_lock (PPC Book3S HV hash).</summary>
    public static bool RetryUnderRmapLock(KvmArch a) => a == KvmArch.PpcBook3s;

    /// <summary>
    /// After installing a 4 KiB leaf the fault maps the other not-present SPTEs of its aligned block of PTE_PREFETCH_NUM
    /// (direct_pte_prefetch / FNAME(pte_prefetch), x86 shadow MMU only: the TDP MMU's kvm_tdp_mmu_map does not prefetch).
    /// </summary>
    public static bool PrefetchesPtes(KvmArch a) => a == KvmArch.X86Shadow;

    /// <summary>PTE_PREFETCH_NUM (arch/x86/kvm/mmu/mmu.c).</summary>
    public const int PtePrefetchNum = 8;

    /// <summary>How an unmap of part of a block treats the block's last-level table.</summary>
    public static TableFreeing TableFreeingOf(KvmArch a) => a switch
    {
        KvmArch.Arm64 => TableFreeing.WhenEmpty,
        KvmArch.Mips or KvmArch.LoongArch => TableFreeing.WhenRangeCoversTable,
        _ => TableFreeing.Never,
    };
}

/// <summary>When an arch's unmap frees a last-level SPTE table.</summary>
public enum TableFreeing : byte
{
    /// <summary>Leaf zaps leave tables in place (x86 TDP tdp_mmu_zap_leafs, x86 shadow pages, RISC-V, PPC).</summary>
    Never,
    /// <summary>Freed as soon as its last entry goes (arm64 stage2_unmap_walker with refcounted tables).</summary>
    WhenEmpty,
    /// <summary>Freed only if the flushed range spans the whole table (MIPS kvm_mips_flush_gpa_pte safe_to_remove).</summary>
    WhenRangeCoversTable,
}
