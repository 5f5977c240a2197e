using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>
/// struct kvm_gmem and its inode (virt/kvm/guest_memfd.c, 6.8+): KVM's private guest memory. The pages live in the
/// inode's page cache (<see cref="File"/>, a <see cref="FileKind.GuestMemfd"/> address space) and no VMA maps them, so no
/// mmu notifier ever covers them: reclaim, KSM, migration, NUMA balancing and madvise never reach them. KVM maps
/// them for the private gfns of the memslots bound to the file (<see cref="Bindings"/>), and the file invalidates
/// them itself: fallocate(PUNCH_HOLE) and the last close run kvm_gmem_invalidate_begin/end around the truncation,
/// which are KVM's mmu_invalidate_begin/range_add/end under mmu_lock: the same seq/in-progress protocol that a fault
/// re-checks before installing an SPTE.
/// </summary>
/// <remarks>
/// Locking: <see cref="InvalidateLock"/> is filemap_invalidate_lock of the inode: held across a punch hole and by
/// kvm_gmem_bind/unbind, so the bindings are stable between begin and end (their counts must balance). The page
/// cache itself changes in one step per page (as <see cref="AddressSpace"/> documents). A fault's lookup
/// (kvm_gmem_get_pfn) does not take the invalidate lock in 6.8; it takes a folio reference that the fault drops
/// after installing (or retrying).
/// Invariants (<see cref="AssertInvariants"/>): the bindings' page ranges are disjoint and inside i_size; every
/// binding names this file.
/// </remarks>
public sealed class GuestMemfd : IPrivateBacking
{
    readonly List<Memslot> _bindings = [];

    internal GuestMemfd(Kvm kvm, string name, ulong sizePages)
    {
        Kvm = kvm;
        File = kvm.Kernel.NewAddressSpace(FileKind.GuestMemfd, $"kvm-gmem:{name}", sizePages);
        File.Users = 1;
        InvalidateLock = new KMutex(kvm.Kernel.S, $"{File.Name}->invalidate_lock");
    }

    /// <summary>gmem->kvm: the VM that created the file (only its memslots may bind it).</summary>
    public Kvm Kvm { get; }

    /// <summary>The inode's page cache.</summary>
    public AddressSpace File { get; }

    public string Name => File.Name;

    /// <summary>filemap_invalidate_lock(inode->i_mapping).</summary>
    public KMutex InvalidateLock { get; }

    /// <summary>gmem->bindings: the memslots bound to the file, by page offset.</summary>
    public IReadOnlyList<Memslot> Bindings => _bindings;

    /// <summary>True once the last file reference is gone (kvm_gmem_release ran).</summary>
    public bool Released { get; private set; }

    /// <inheritdoc/>
    public long PfnAt(ulong index) => File.Pages.TryGetValue(index, out long pfn) ? pfn : -1;

    /// <summary>
    /// kvm_gmem_bind, under the invalidate lock: the offset must be page aligned and the slot's page range
    /// [pgoff, pgoff + npages) inside i_size (else -EINVAL) and free of other bindings (else -EEXIST); then
    /// slot->gmem.file/pgoff are set.
    /// </summary>
    internal async ValueTask<int> Bind(Memslot slot, ulong offset)
    {
        using var _ = Kvm.Kernel.S.Current.Enter("kvm_gmem_bind");
        if (Released || (offset & (MmStruct.PageSize - 1)) != 0) return Errno.EINVAL;
        ulong start = offset >> MmStruct.PageShift;
        if (start > File.SizePages || slot.NPages > File.SizePages - start) return Errno.EINVAL;
        await InvalidateLock.Lock();
        try
        {
            foreach (var b in _bindings)
                if (start < b.GmemPgoff + b.NPages && b.GmemPgoff < start + slot.NPages) return Errno.EEXIST;
            slot.Gmem = this;
            slot.GmemPgoff = start;
            _bindings.Add(slot);
            return 0;
        }
        finally { await InvalidateLock.Unlock(); }
    }

    /// <summary>kvm_gmem_unbind (kvm_free_memslot of a deleted slot), under the invalidate lock.</summary>
    internal async ValueTask Unbind(Memslot slot)
    {
        using var _ = Kvm.Kernel.S.Current.Enter("kvm_gmem_unbind");
        await InvalidateLock.Lock();
        _bindings.Remove(slot);
        await InvalidateLock.Unlock();
    }

    /// <summary>
    /// kvm_gmem_get_pfn: the folio at the gfn's index (kvm_gmem_get_folio → filemap_grab_folio: allocated and zeroed on
    /// first use, kvm_gmem_prepare_folio), with a reference for the caller. Always writable (map_writable =
    /// !KVM_MEM_READONLY). A scheduling point (the lookup). Error -ENOMEM when memory is exhausted.
    /// </summary>
    internal async ValueTask<GupResult> GetPfn(Memslot slot, ulong gfn)
    {
        var k = Kvm.Kernel;
        using var _ = k.S.Current.Enter("kvm_gmem_get_pfn");
        long pfn = await Filemap.FilemapGetFolio(k, File, slot.GmemIndex(gfn), Spte.GfnToGpa(gfn));
        if (pfn < 0) return new GupResult(-1, false, 0, false, Errno.ENOMEM);
        Folio.Get(k, pfn);
        return new GupResult(pfn, true, k.Mem[pfn].Generation, false, 0);
    }

    /// <summary>
    /// kvm_gmem_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) → kvm_gmem_punch_hole: offset and length page
    /// aligned (else -EINVAL); under the invalidate lock, kvm_gmem_invalidate_begin over the bound gfns, drop the pages
    /// (truncate_inode_pages_range), kvm_gmem_invalidate_end.
    /// </summary>
    public async ValueTask<int> PunchHole(ulong offset, ulong len)
    {
        var k = Kvm.Kernel;
        using var _ = k.S.Current.Enter("kvm_gmem_punch_hole");
        const ulong mask = MmStruct.PageSize - 1;
        if ((offset & mask) != 0 || (len & mask) != 0 || offset + len < offset) return Errno.EINVAL;
        if (Released) return Errno.EBADF;
        ulong start = offset >> MmStruct.PageShift, end = (offset + len) >> MmStruct.PageShift;
        await InvalidateLock.Lock();
        try
        {
            bool began = await Kvm.GmemInvalidateBegin(this, start, end);
            await Truncate.TruncateInodePagesRange(k, File, start, end);
            if (began) await Kvm.GmemInvalidateEnd();
            return 0;
        }
        finally { await InvalidateLock.Unlock(); }
    }

    /// <summary>
    /// kvm_gmem_release (the last close; here with the VM's destruction or the `gmem.close` op): invalidate every
    /// binding's gfns, drop the page cache, and leave the bindings (a slot then has no private memory to map).
    /// </summary>
    public async ValueTask Release()
    {
        var k = Kvm.Kernel;
        using var _ = k.S.Current.Enter("kvm_gmem_release");
        if (Released) return;
        await InvalidateLock.Lock();
        bool began = await Kvm.GmemInvalidateBegin(this, 0, ulong.MaxValue);
        await Truncate.TruncateInodePagesRange(k, File, 0, ulong.MaxValue);
        if (began) await Kvm.GmemInvalidateEnd();
        Released = true;
        await InvalidateLock.Unlock();
    }

    /// <summary>Debug-only checks of the binding invariants.</summary>
    [System.Diagnostics.Conditional("DEBUG")]
    public void AssertInvariants()
    {
        for (int i = 0; i < _bindings.Count; i++)
        {
            var a = _bindings[i];
            if (a.Gmem != this || a.GmemPgoff + a.NPages > File.SizePages)
                throw new ModelException($"{Name}: binding {a} does not fit the file");
            for (int j = i + 1; j < _bindings.Count; j++)
            {
                var b = _bindings[j];
                if (a.GmemPgoff < b.GmemPgoff + b.NPages && b.GmemPgoff < a.GmemPgoff + a.NPages)
                    throw new ModelException($"{Name}: bindings {a} and {b} overlap");
            }
        }
        File.AssertInvariants(Kvm.Kernel);
    }

    public override string ToString() => Name;
}
