using MmuSim.Mm;

namespace MmuSim.Notifier;

/// <summary>One translation a secondary MMU holds (an SPTE, a mirror entry, a cached TLB entry), at 4 KiB or 2 MiB.</summary>
/// <param name="Hva">Host virtual address it translates (page aligned).</param>
/// <param name="Pfn">Frame it points at.</param>
/// <param name="Generation">The frame's generation when the translation was made (detects freed-and-reused frames).</param>
/// <param name="Writable">Whether the secondary may write through it.</param>
/// <param name="Size">4 KiB or 2 MiB.</param>
/// <param name="Where">Short label for reports, e.g. <c>spte gfn 0x12</c> or <c>vcpu1 tlb</c>.</param>
/// <param name="Private">Set when the translation maps memory no primary PTE maps (a guest_memfd page of a private
/// gfn): it is checked against <paramref name="Private"/>'s page at <paramref name="Index"/>, not against the mm at
/// <paramref name="Hva"/>.</param>
/// <param name="Index">The page index in <paramref name="Private"/>.</param>
public readonly record struct SecondaryTranslation(ulong Hva, long Pfn, ushort Generation, bool Writable, ulong Size = MmStruct.PageSize, string Where = "",
    IPrivateBacking? Private = null, ulong Index = 0);

/// <summary>
/// Memory that a secondary maps without any primary mapping: KVM's guest_memfd (virt/kvm/guest_memfd.c). No mmu
/// notifier covers it; it has its own invalidation (punch hole, release), and a translation must name the page the
/// backing holds at its index now.
/// </summary>
public interface IPrivateBacking
{
    /// <summary>Name in violation reports.</summary>
    string Name { get; }

    /// <summary>The pfn cached at <paramref name="index"/>, or -1.</summary>
    long PfnAt(ulong index);
}

/// <summary>
/// What the checker needs from a secondary MMU: its live translations. Implement it next to <see cref="MmuNotifier"/>
/// or <see cref="MmuIntervalNotifier"/> and register with <c>Kernel.Checker.AddSecondary</c>; report accesses through
/// <c>Kernel.Checker.OnSecondaryAccess</c> so that lost writes and use-after-free are caught where they happen.
/// </summary>
public interface ISecondaryMmu
{
    /// <summary>Name in violation reports.</summary>
    string Name { get; }

    /// <summary>
    /// True for secondaries that keep software translations and rely on invalidate_range_start to drop them (KVM, HMM
    /// mirrors): invariant 1 (no translation in a range after start returned, until end) applies. False for TLBs that
    /// share the primary page tables and are flushed by invalidate_range / arch_invalidate_secondary_tlbs.
    /// </summary>
    bool UsesStartEnd { get; }

    /// <summary>The mm this secondary mirrors.</summary>
    MmStruct MirroredMm { get; }

    /// <summary>Append every live translation (including cached TLB entries) into <paramref name="into"/>.</summary>
    void CollectTranslations(List<SecondaryTranslation> into);

    /// <summary>
    /// Checked at the end of a run in which every invalidation of <see cref="MirroredMm"/> has ended: a description
    /// of a counter that an invalidate_range_start raised and no invalidate_range_end lowered (KVM's
    /// mmu_invalidate_in_progress), or null. A secondary without such counters keeps the default.
    /// </summary>
    string? ImbalanceAtRest() => null;
}
