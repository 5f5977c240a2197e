using MmuSim.Eras;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>
/// KVM's side of private memory (6.8+): the VM type with private memory, the per-gfn memory attributes
/// (KVM_SET_MEMORY_ATTRIBUTES), KVM_CREATE_GUEST_MEMFD and the invalidation a guest_memfd runs
/// (<see cref="GuestMemfd"/>). Locking: the attributes change under slots_lock, between an mmu_invalidate_begin and end
/// of their own; a fault reads a gfn's attribute after sampling mmu_invalidate_seq and re-checks the seq under
/// mmu_lock, as for every other invalidation.
/// </summary>
public sealed partial class Kvm
{
    HashSet<ulong>? _privateGfns;
    readonly List<GuestMemfd> _gmems = [];

    /// <summary>
    /// vm_type KVM_X86_SW_PROTECTED_VM (kvm_arch_has_private_mem): the VM may set KVM_MEMORY_ATTRIBUTE_PRIVATE and bind
    /// guest_memfd slots. x86 with TDP only. Private-ness of a fault is the gfn's attribute (the software-protected VM
    /// has no hardware private bit).
    /// </summary>
    public bool SwProtected { get; internal set; }

    /// <summary>kvm_mem_is_private: the gfn's attribute is KVM_MEMORY_ATTRIBUTE_PRIVATE.</summary>
    public bool IsPrivateGfn(ulong gfn) => _privateGfns != null && _privateGfns.Contains(gfn);

    /// <summary>The guest_memfd files this VM created.</summary>
    public IReadOnlyList<GuestMemfd> GuestMemfds => _gmems;

    /// <summary>
    /// KVM_CREATE_GUEST_MEMFD (kvm_gmem_create): -EINVAL before 6.8, for flags (none are modelled) or a size that is 0
    /// or not page aligned; else a new file of <paramref name="size"/> bytes.
    /// </summary>
    public (int Error, GuestMemfd? File) CreateGuestMemfd(string name, ulong size, ulong flags = 0)
    {
        using var _ = S.Current.Enter("kvm_gmem_create");
        if (!Era.Has(Feature.KvmGuestMemfd) || flags != 0 || size == 0 || (size & (MmuSim.Mm.MmStruct.PageSize - 1)) != 0)
            return (Errno.EINVAL, null);
        var g = new GuestMemfd(this, name, size >> MmuSim.Mm.MmStruct.PageShift);
        _gmems.Add(g);
        return (0, g);
    }

    /// <summary>
    /// kvm_gmem_invalidate_begin: for each slot bound to <paramref name="gmem"/> in page range [start, end): at the
    /// first, take mmu_lock and kvm_mmu_invalidate_begin; then kvm_mmu_unmap_gfn_range (range_add and zap of the
    /// slot's gfns for those pages); flush if anything was zapped; unlock. Returns whether a slot was found (then
    /// <see cref="GmemInvalidateEnd"/> must follow).
    /// </summary>
    internal async ValueTask<bool> GmemInvalidateBegin(GuestMemfd gmem, ulong start, ulong end)
    {
        using var _ = S.Current.Enter("kvm_gmem_invalidate_begin");
        bool found = false, flush = false;
        foreach (var slot in gmem.Bindings)
        {
            ulong lo = Math.Max(slot.GmemPgoff, start), hi = Math.Min(slot.GmemPgoff + slot.NPages, end);
            if (lo >= hi) continue;
            if (!found)
            {
                found = true;
                await MmuLock.Lock();
                await S.Point(PointKind.Counter, slot.BaseGfn, InvalidateState.Write);
                MmuInvalidateBegin(0, 0);
            }
            ulong gs = slot.BaseGfn + (lo - slot.GmemPgoff), ge = slot.BaseGfn + (hi - slot.GmemPgoff);
            MmuInvalidateRangeAdd(gs, ge);
            flush |= await UnmapGfnRange(slot, gs, ge);
        }
        if (flush) await FlushRemoteTlbs();
        if (found) await MmuLock.Unlock();
        return found;
    }

    /// <summary>kvm_gmem_invalidate_end: with a binding in the range, kvm_mmu_invalidate_end under mmu_lock.</summary>
    internal async ValueTask GmemInvalidateEnd()
    {
        using var _ = S.Current.Enter("kvm_gmem_invalidate_end");
        await MmuLock.Lock();
        await S.Point(PointKind.Counter, 0, InvalidateState.Write);
        await MmuInvalidateEnd();
        await MmuLock.Unlock();
    }

    /// <summary>
    /// KVM_SET_MEMORY_ATTRIBUTES (kvm_vm_ioctl_set_mem_attributes → kvm_vm_set_mem_attributes): -EINVAL before 6.8, for
    /// PRIVATE on a VM without private memory (kvm_supported_mem_attributes), a size of 0, a wrapping or unaligned
    /// range. Under slots_lock: nothing if the range already has the attributes; else kvm_handle_gfn_range with
    /// on_lock = kvm_mmu_invalidate_begin and kvm_pre_set_memory_attributes (range_add, zap) for every overlapping
    /// slot, the attributes stored, and kvm_mmu_invalidate_end under mmu_lock again.
    /// </summary>
    public async ValueTask<int> SetMemoryAttributes(ulong gpa, ulong size, bool isPrivate)
    {
        using var _ = S.Current.Enter("kvm_vm_set_mem_attributes");
        const ulong mask = MmuSim.Mm.MmStruct.PageSize - 1;
        if (!Era.Has(Feature.KvmGuestMemfd) || (isPrivate && !SwProtected)) return Errno.EINVAL;
        if (size == 0 || gpa + size < gpa || (gpa & mask) != 0 || (size & mask) != 0) return Errno.EINVAL;
        ulong start = gpa >> MmuSim.Mm.MmStruct.PageShift, end = (gpa + size) >> MmuSim.Mm.MmStruct.PageShift;
        await SlotsLock.Lock();
        try
        {
            bool already = true;
            for (ulong g = start; g < end && already; g++) already = IsPrivateGfn(g) == isPrivate;
            if (already) return 0;
            bool found = false, flush = false;
            foreach (var slot in _slots)
            {
                ulong gs = Math.Max(start, slot.BaseGfn), ge = Math.Min(end, slot.EndGfn);
                if (gs >= ge) continue;
                if (!found)
                {
                    found = true;
                    await MmuLock.Lock();
                    await S.Point(PointKind.Counter, gs, InvalidateState.Write);
                    MmuInvalidateBegin(0, 0);
                }
                MmuInvalidateRangeAdd(gs, ge);
                flush |= await UnmapGfnRange(slot, gs, ge);
            }
            if (flush) await FlushRemoteTlbs();
            if (found) await MmuLock.Unlock();
            await S.Point(PointKind.Counter, start, InvalidateState.Write);   // xa_store of each gfn's attributes
            for (ulong g = start; g < end; g++)
                if (isPrivate) (_privateGfns ??= []).Add(g);
                else _privateGfns?.Remove(g);
            if (found)
            {
                // the post-set kvm_handle_gfn_range: on_lock = kvm_mmu_invalidate_end
                await MmuLock.Lock();
                await S.Point(PointKind.Counter, start, InvalidateState.Write);
                await MmuInvalidateEnd();
                await MmuLock.Unlock();
            }
            return 0;
        }
        finally { await SlotsLock.Unlock(); }
    }
}
