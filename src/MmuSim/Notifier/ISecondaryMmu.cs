using MmuSim.Mm;

namespace MmuSim.Notifier;

/// <summary>One translation a secondary MMU holds (an SPTE, a mirror entry, a cached TLB entry), at 4 KiB or 2 MiB.</summary>
/// <param name="Hva">Host virtual address it translates (page aligned).</param>
/// <param name="Pfn">Frame it points at.</param>
/// <param name="Generation">The frame's generation when the translation was made (detects freed-and-reused frames).</param>
/// <param name="Writable">Whether the secondary may write through it.</param>
/// <param name="Size">4 KiB or 2 MiB.</param>
/// <param name="Where">Short label for reports, e.g. <c>spte gfn 0x12</c> or <c>vcpu1 tlb</c>.</param>
public readonly record struct SecondaryTranslation(ulong Hva, long Pfn, ushort Generation, bool Writable, ulong Size = MmStruct.PageSize, string Where = "");

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
}
