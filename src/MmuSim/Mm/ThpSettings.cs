namespace MmuSim.Mm;

/// <summary>The words of a THP "enabled" file: the top-level one takes always, madvise, never; a per-size one also inherit.</summary>
public enum ThpMode : byte
{
    Never,
    Always,
    /// <summary>only in VM_HUGEPAGE (MADV_HUGEPAGE) VMAs.</summary>
    Madvise,
    /// <summary>per-size only: follow the top-level setting.</summary>
    Inherit,
}

/// <summary>
/// /sys/kernel/mm/transparent_hugepage/enabled and hugepages-&lt;size&gt;kB/enabled (mm/huge_memory.c:
/// huge_anon_orders_always / _madvise / _inherit, thp_vma_allowable_orders). The top level is <see cref="ThpMode.Madvise"/>
/// in the model (distributions differ; the model's THP scenarios were written for madvise); per size, the PMD order
/// defaults to inherit and every smaller order to never, as the kernel's. Before 6.8 only the top level exists and the PMD
/// order keeps inherit (the per-size files are ENOENT), so the table below reduces to the old rule.
/// </summary>
/// <remarks>Written by scenario ops before or between the threads' steps; read by the fault paths without a scheduling
/// point (sysfs writes are not part of any modelled race).</remarks>
public sealed class ThpSettings
{
    /// <summary>The orders a per-size knob exists for on x86-64 with 4 KiB pages: 2 (16 KiB) .. 9 (2 MiB).</summary>
    public const int MinAnonOrder = 2, PmdOrder = PhysMem.HugeOrder;

    readonly ThpMode[] _order = new ThpMode[PmdOrder + 1];

    public ThpSettings()
    {
        _order[PmdOrder] = ThpMode.Inherit;
    }

    /// <summary>The top-level enabled file.</summary>
    public ThpMode Enabled { get; set; } = ThpMode.Madvise;

    /// <summary>hugepages-&lt;4 KiB &lt;&lt; order&gt;kB/enabled.</summary>
    public ThpMode this[int order]
    {
        get => _order[order];
        set => _order[order] = value;
    }

    /// <summary>
    /// thp_vma_allowable_orders for an anonymous VMA with TVA_ENFORCE_SYSFS: the orders of <paramref name="mask"/> that
    /// the knobs allow in <paramref name="vma"/> (always; madvise with VM_HUGEPAGE; inherit when the top level allows).
    /// VM_NOHUGEPAGE allows none.
    /// </summary>
    public int AllowableOrders(Vma vma, int mask)
    {
        if ((vma.Flags & VmFlags.NoHugePage) != 0) return 0;
        bool madvised = (vma.Flags & VmFlags.HugePage) != 0;
        bool inherit = Enabled == ThpMode.Always || (madvised && Enabled == ThpMode.Madvise);
        int allowed = 0;
        for (int o = MinAnonOrder; o <= PmdOrder; o++)
        {
            var m = _order[o];
            if (m == ThpMode.Always || (m == ThpMode.Madvise && madvised) || (m == ThpMode.Inherit && inherit)) allowed |= 1 << o;
        }
        return allowed & mask;
    }
}
