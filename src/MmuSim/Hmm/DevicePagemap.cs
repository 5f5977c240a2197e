using MmuSim.Mm;

namespace MmuSim.Hmm;

/// <summary>enum memory_type (include/linux/memremap.h): the ZONE_DEVICE kinds the model has.</summary>
public enum MemoryType : byte
{
    /// <summary>MEMORY_DEVICE_PRIVATE (4.14+): not CPU-addressable; mapped by device-private swap entries.</summary>
    DevicePrivate,
    /// <summary>MEMORY_DEVICE_COHERENT (6.0+): CPU-addressable; mapped by ordinary present PTEs.</summary>
    DeviceCoherent,
}

/// <summary>struct dev_pagemap_ops: what the core mm calls back into the driver that owns ZONE_DEVICE pages.</summary>
public interface IDevPagemapOps
{
    /// <summary>->page_free: the last reference to a device page was dropped (free_zone_device_folio).</summary>
    void PageFree(long pfn);

    /// <summary>
    /// ->migrate_to_ram: a CPU fault hit a device-private entry for <paramref name="pfn"/> at <paramref name="addr"/>
    /// (do_swap_page). Migrate the page back to system memory. Called with mmap_lock held for read.
    /// </summary>
    ValueTask<VmFault> MigrateToRam(MmStruct mm, Vma vma, ulong addr, long pfn);
}

/// <summary>struct dev_pagemap: one device's ZONE_DEVICE memory, its type and owner (pgmap->owner).</summary>
public sealed class DevPagemap(MemoryType type, object owner, IDevPagemapOps ops, string name)
{
    public MemoryType Type { get; } = type;

    /// <summary>pgmap->owner: compared with hmm_range.dev_private_owner and migrate_vma.pgmap_owner.</summary>
    public object Owner { get; } = owner;

    public IDevPagemapOps Ops { get; } = ops;

    public string Name { get; } = name;

    public override string ToString() => Name;
}

/// <summary>
/// The kernel's ZONE_DEVICE pages and their pagemaps (page->pgmap). A device page is a frame of <see cref="PhysMem"/>
/// (the model carves device memory out of its simulated physical memory, as lib/test_hmm.c backs each device page
/// with a system page) with an entry here while it is allocated; is_zone_device_page is a lookup in this table.
/// </summary>
public sealed class DevicePagemaps
{
    readonly Kernel _k;
    readonly Dictionary<long, DevPagemap> _byPfn = [];

    DevicePagemaps(Kernel k)
    {
        _k = k;
        k.HasZoneDevice = true;
    }

    public static DevicePagemaps Of(Kernel k) => k.GetSubsystem(kk => new DevicePagemaps(kk));

    /// <summary>Live device pages.</summary>
    public int Count => _byPfn.Count;

    /// <summary>page->pgmap of a ZONE_DEVICE page, or null for an ordinary page.</summary>
    public DevPagemap? PgmapOf(long pfn) =>
        pfn > 0 && _byPfn.TryGetValue(pfn, out var p) ? p : null;

    /// <summary>is_device_private_page.</summary>
    public bool IsDevicePrivatePage(long pfn) => PgmapOf(pfn)?.Type == MemoryType.DevicePrivate;

    /// <summary>is_device_coherent_page.</summary>
    public bool IsDeviceCoherentPage(long pfn) => PgmapOf(pfn)?.Type == MemoryType.DeviceCoherent;

    /// <summary>
    /// A free page of <paramref name="pgmap"/>'s memory, initialised with one reference (zone_device_page_init after the
    /// driver took it off its free list). -1 when memory is exhausted.
    /// </summary>
    public long ZoneDevicePageInit(DevPagemap pgmap)
    {
        long pfn = _k.Mem.AllocPage();
        if (pfn < 0) return -1;
        _byPfn[pfn] = pgmap;
        return pfn;
    }

    /// <summary>free_zone_device_folio: the folio's last reference is gone; tell its driver (->page_free).</summary>
    internal void FreeZoneDeviceFolio(long pfn)
    {
        if (!_byPfn.Remove(pfn, out var pgmap)) return;
        pgmap.Ops.PageFree(pfn);
    }
}
