using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>
/// Dirty logging in its three modes (virt/kvm/kvm_main.c, virt/kvm/dirty_ring.c, arch/x86/kvm/mmu/mmu.c):
/// KVM_GET_DIRTY_LOG that clears and write-protects (the classic mode), KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with
/// KVM_CLEAR_DIRTY_LOG (and KVM_DIRTY_LOG_INITIALLY_SET), and the per-vCPU dirty ring (KVM_CAP_DIRTY_LOG_RING,
/// KVM_EXIT_DIRTY_RING_FULL, KVM_RESET_DIRTY_RINGS). x86 without PML: a logged gfn is write-protected, the first
/// write faults (fast_page_fault) and marks it; a harvest write-protects it again.
/// </summary>
/// <remarks>
/// The dirty-log-lost check: every guest write to a logging slot is recorded (<see cref="Memslot.GuestWritten"/>,
/// model bookkeeping) and forgotten when KVM re-arms tracking of that gfn for a harvest that reported it
/// (<see cref="EnableLogDirtyPtMasked"/>). <see cref="FindLostDirtyGfns"/> lists written gfns that are in no dirty
/// bitmap and no un-reset ring entry: writes that no later harvest can report.
/// </remarks>
public sealed partial class Kvm
{
    /// <summary>KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE / KVM_DIRTY_LOG_INITIALLY_SET (args[0] of KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).</summary>
    public const ulong KvmDirtyLogManualProtectEnable = 1, KvmDirtyLogInitiallySet = 2;

    /// <summary>kvm->manual_dirty_log_protect.</summary>
    public ulong ManualDirtyLogProtect { get; private set; }

    /// <summary>kvm->dirty_ring_size in bytes (0: no ring, the dirty bitmap is used).</summary>
    public uint DirtyRingBytes { get; private set; }

    bool ManualProtect => (ManualDirtyLogProtect & KvmDirtyLogManualProtectEnable) != 0;

    /// <summary>kvm_dirty_log_manual_protect_and_init_set.</summary>
    bool ManualProtectAndInitSet => (ManualDirtyLogProtect & KvmDirtyLogInitiallySet) != 0;

    /// <summary>kvm_use_dirty_bitmap: no dirty ring (the model has no KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP).</summary>
    bool UseDirtyBitmap => DirtyRingBytes == 0;

    /// <summary>Slots whose <see cref="Memslot.GuestWritten"/> is allocated (so that writes skip the lookup otherwise).</summary>
    int _trackedSlots;

    /// <summary>
    /// kvm_vm_ioctl_enable_cap_generic(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): args[0] may hold
    /// KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, and with it KVM_DIRTY_LOG_INITIALLY_SET (from 5.7); other bits → -EINVAL.
    /// Before 5.0 (no KVM_CAP_MANUAL_DIRTY_LOG_PROTECT) the capability is unknown → -EINVAL.
    /// </summary>
    public int EnableManualDirtyLogProtect(ulong args0)
    {
        if (!Era.Has(Feature.KvmManualDirtyLogProtect)) return Errno.EINVAL;
        ulong allowed = KvmDirtyLogManualProtectEnable;
        if ((args0 & KvmDirtyLogManualProtectEnable) != 0 && Era.Has(Feature.KvmDirtyLogInitiallySet))
            allowed |= KvmDirtyLogInitiallySet;                // KVM_DIRTY_LOG_MANUAL_CAPS
        if ((args0 & ~allowed) != 0) return Errno.EINVAL;
        ManualDirtyLogProtect = args0;
        return 0;
    }

    /// <summary>
    /// kvm_vm_ioctl_enable_dirty_log_ring (5.11+): <paramref name="bytes"/> a power of 2, at least a page and the
    /// reserved entries, at most KVM_DIRTY_RING_MAX_ENTRIES entries (-E2BIG), only once and before any vCPU exists.
    /// </summary>
    public int EnableDirtyLogRing(ulong bytes)
    {
        if (!Era.Has(Feature.KvmDirtyRing)) return Errno.EINVAL;
        if (bytes == 0 || (bytes & (bytes - 1)) != 0) return Errno.EINVAL;
        if (bytes < DirtyRing.RsvdEntries * DirtyRing.EntryBytes || bytes < MmStruct.PageSize) return Errno.EINVAL;
        if (bytes > DirtyRing.MaxEntries * DirtyRing.EntryBytes) return Errno.E2BIG;
        if (DirtyRingBytes != 0) return Errno.EINVAL;
        if (_vcpus.Count != 0) return Errno.EINVAL;           // kvm->created_vcpus, under kvm->lock
        DirtyRingBytes = (uint)bytes;
        return 0;
    }

    /// <summary>kvm_dirty_ring_alloc for a new vCPU (kvm_vm_ioctl_create_vcpu), if the VM uses the ring.</summary>
    DirtyRing? NewDirtyRing() => DirtyRingBytes == 0 ? null : new DirtyRing(DirtyRingBytes / DirtyRing.EntryBytes);

    /// <summary>
    /// mark_page_dirty_in_slot: nothing unless the slot logs dirty pages; with a dirty ring, push (slot, offset) on the
    /// running vCPU's ring; else set the bit in the slot's dirty bitmap.
    /// </summary>
    internal void MarkPageDirtyInSlot(KvmVcpu? vcpu, Memslot slot, ulong gfn)
    {
        if (!slot.LogDirty) return;                             // kvm_slot_dirty_track_enabled
        if (DirtyRingBytes != 0 && vcpu?.DirtyRing is { } ring) ring.Push(slot.Id, gfn - slot.BaseGfn);
        else slot.SetDirtyBit(gfn);
    }

    /// <summary>
    /// kvm_prepare_memory_region's dirty-bitmap part for a slot that starts logging (create or flags-only): allocate the
    /// bitmap if the VM uses bitmaps (kvm_alloc_dirty_bitmap), all ones with KVM_DIRTY_LOG_INITIALLY_SET; a moved slot
    /// keeps its old bitmap. Publication happens with the slot.
    /// </summary>
    void PrepareDirtyBitmap(Memslot slot, Memslot? old)
    {
        if (!slot.LogDirty || !UseDirtyBitmap) { slot.DirtyBitmap = null; return; }
        if (old?.DirtyBitmap is { } kept && kept.Length == (int)((slot.NPages + 63) / 64)) { slot.DirtyBitmap = kept; return; }
        var bm = slot.DirtyBitmap ?? new ulong[(slot.NPages + 63) / 64];
        Array.Clear(bm);
        if (ManualProtectAndInitSet)
        {
            Array.Fill(bm, ulong.MaxValue);                     // bitmap_set(new->dirty_bitmap, 0, new->npages)
            int tail = (int)(slot.NPages & 63);
            if (tail != 0) bm[^1] = (1UL << tail) - 1;
        }
        slot.DirtyBitmap = bm;
    }

    /// <summary>Model bookkeeping: start or stop recording the slot's guest writes for the dirty-log-lost check.</summary>
    void TrackGuestWrites(Memslot slot, bool on)
    {
        if (on && slot.GuestWritten == null) { slot.GuestWritten = new ulong[(slot.NPages + 63) / 64]; _trackedSlots++; }
        else if (!on && slot.GuestWritten != null) { slot.GuestWritten = null; _trackedSlots--; }
    }

    /// <summary>Model bookkeeping: the guest stored to <paramref name="gfn"/> (part of the access step).</summary>
    internal void NoteGuestWrite(ulong gfn)
    {
        if (_trackedSlots == 0) return;
        if (GfnToMemslot(gfn) is not { GuestWritten: { } w } slot) return;
        ulong rel = gfn - slot.BaseGfn;
        w[rel >> 6] |= 1UL << (int)(rel & 63);
    }

    /// <summary>
    /// kvm_mmu_slot_apply_flags (x86, KVM_MR_FLAGS_ONLY and CREATE): logging switched on write-protects the slot
    /// (kvm_mmu_slot_remove_write_access) unless KVM_DIRTY_LOG_INITIALLY_SET leaves that to KVM_CLEAR_DIRTY_LOG;
    /// switched off recovers huge pages (kvm_mmu_zap_collapsible_sptes / kvm_mmu_recover_huge_pages).
    /// </summary>
    async ValueTask ApplyDirtyLogFlags(Memslot slot, bool wasLogging)
    {
        using var _ = S.Current.Enter("kvm_mmu_slot_apply_flags");
        if (!wasLogging && slot.LogDirty)
        {
            if (!ManualProtectAndInitSet) await WriteProtectSlot(slot);
            TrackGuestWrites(slot, true);
        }
        else if (wasLogging && !slot.LogDirty)
        {
            TrackGuestWrites(slot, false);
            await ZapCollapsibleSptes(slot);
        }
    }

    /// <summary>
    /// kvm_mmu_slot_remove_write_access (dirty logging switched on): write-protect every SPTE of the slot, huge ones
    /// included, under mmu_lock, and flush.
    /// </summary>
    async ValueTask WriteProtectSlot(Memslot slot)
    {
        using var _ = S.Current.Enter("kvm_mmu_slot_remove_write_access");
        await MmuLock.Lock();
        await S.Point(PointKind.SpteWrite, slot.BaseGfn);
        bool flush = false;
        for (ulong g = slot.BaseGfn; g < slot.EndGfn && slot.PresentCount > 0; g++)
        {
            ref ulong e = ref slot.SpteRef(g);
            var s = new Spte(e);
            if (s.Present && s.Writable) { e = s.With(Spte.WritableBit, false).Raw; flush = true; }
        }
        for (int b = 0; b < slot.HugeSptes.Length; b++)
        {
            var h = new Spte(slot.HugeSptes[b]);
            if (h.Present && h.Writable) { slot.HugeSptes[b] = h.With(Spte.WritableBit, false).Raw; flush = true; }
        }
        if (flush) await FlushRemoteTlbs();
        await MmuLock.Unlock();
    }

    /// <summary>
    /// kvm_mmu_zap_collapsible_sptes (logging switched off): zap the 4 KiB SPTEs of every block the host maps huge and
    /// the slot could map with one 2 MiB SPTE, so that the next fault installs the huge SPTE again; flush.
    /// </summary>
    async ValueTask ZapCollapsibleSptes(Memslot slot)
    {
        using var _ = S.Current.Enter("kvm_mmu_zap_collapsible_sptes");
        await MmuLock.Lock();
        bool flush = false;
        for (int b = 0; b < slot.Tables.Length; b++)
        {
            if (slot.Tables[b] != SpteTable.Table || slot.Live[b] == 0) continue;
            ulong blockGfn = ((slot.BaseGfn >> 9) + (ulong)b) << 9;
            if (!slot.HugeCapable(blockGfn)) continue;
            var pmd = _mm.PeekPmd(slot.GfnToHva(blockGfn));
            if (pmd.Present && pmd.Huge) flush |= await ZapGfnRange(slot, blockGfn, blockGfn + 512, marksDirty: true);
        }
        if (flush) await FlushRemoteTlbs();
        await MmuLock.Unlock();
    }

    /// <summary>
    /// kvm_arch_mmu_enable_log_dirty_pt_masked for one gfn, under mmu_lock: write-protect its SPTE again (a huge SPTE
    /// covering it is write-protected whole, as kvm_mmu_slot_gfn_write_protect at 2M does under INITIALLY_SET). This is
    /// where a harvest re-arms tracking, so the model forgets the gfn's recorded guest writes here. Returns whether a
    /// writable SPTE was protected (a flush is needed).
    /// </summary>
    bool EnableLogDirtyPtMasked(Memslot slot, ulong gfn)
    {
        if (slot.GuestWritten is { } w)
        {
            ulong rel = gfn - slot.BaseGfn;
            w[rel >> 6] &= ~(1UL << (int)(rel & 63));
        }
        if (_k.Mutated(Mutation.KvmDirtyLogNoReprotect)) return false;
        int b = slot.Block(gfn);
        if (slot.Tables[b] == SpteTable.HugeLeaf)
        {
            var h = new Spte(slot.HugeSptes[b]);
            if (!h.Present || !h.Writable) return false;
            slot.HugeSptes[b] = h.With(Spte.WritableBit, false).Raw;
            return true;
        }
        ref ulong e = ref slot.SpteRef(gfn);
        var s = new Spte(e);
        if (!s.Present || !s.Writable) return false;
        e = s.With(Spte.WritableBit, false).Raw;
        return true;
    }

    /// <summary>
    /// KVM_GET_DIRTY_LOG (kvm_get_dirty_log_protect): -ENXIO with a dirty ring, -ENOENT for a slot without a bitmap.
    /// Classic mode: under mmu_lock take and clear each bitmap word and write-protect the gfns it named, flush.
    /// Manual-protect mode: only copy the bitmap (KVM_CLEAR_DIRTY_LOG clears and protects). The gfns go to
    /// <paramref name="gfns"/>; returns 0 or -errno.
    /// </summary>
    public async ValueTask<int> GetDirtyLog(Memslot slot, List<ulong> gfns)
    {
        using var _ = S.Current.Enter("kvm_get_dirty_log_protect");
        if (!UseDirtyBitmap) return Errno.ENXIO;
        await SlotsLock.Lock();
        try
        {
            if (FindSlot(slot.Id) != slot || slot.DirtyBitmap is not { } bm) return Errno.ENOENT;
            bool manual = ManualProtect;
            if (!manual) await MmuLock.Lock();
            await S.Point(manual ? PointKind.Counter : PointKind.SpteWrite, slot.BaseGfn);
            bool flush = false;
            for (int w = 0; w < bm.Length; w++)
            {
                ulong mask = bm[w];
                if (!manual) bm[w] = 0;                           // xchg(&dirty_bitmap[i], 0)
                while (mask != 0)
                {
                    int bit = System.Numerics.BitOperations.TrailingZeroCount(mask);
                    mask &= mask - 1;
                    ulong gfn = slot.BaseGfn + (ulong)(w * 64 + bit);
                    gfns.Add(gfn);
                    if (!manual) flush |= EnableLogDirtyPtMasked(slot, gfn);
                }
            }
            if (flush) await FlushRemoteTlbs();
            if (!manual) await MmuLock.Unlock();
            return 0;
        }
        finally
        {
            await SlotsLock.Unlock();
        }
    }

    /// <summary>
    /// KVM_CLEAR_DIRTY_LOG (kvm_clear_dirty_log_protect): -ENXIO with a dirty ring; first_page must be a multiple of 64
    /// and [first_page, first_page + num_pages) inside the slot, num_pages a multiple of 64 unless it reaches the slot's
    /// end (-EINVAL); -ENOENT without a bitmap. Under mmu_lock, for each word, clear only the bits set in both the
    /// user's mask and the bitmap (atomic_long_fetch_andnot) and write-protect those gfns; flush if any.
    /// </summary>
    public async ValueTask<int> ClearDirtyLog(Memslot slot, ulong firstPage, ulong numPages, ulong[] userMask)
    {
        using var _ = S.Current.Enter("kvm_clear_dirty_log_protect");
        if (!UseDirtyBitmap) return Errno.ENXIO;
        if ((firstPage & 63) != 0) return Errno.EINVAL;
        await SlotsLock.Lock();
        try
        {
            if (FindSlot(slot.Id) != slot || slot.DirtyBitmap is not { } bm) return Errno.ENOENT;
            if (firstPage > slot.NPages || numPages > slot.NPages - firstPage ||
                (numPages < slot.NPages - firstPage && (numPages & 63) != 0)) return Errno.EINVAL;
            await MmuLock.Lock();
            await S.Point(PointKind.SpteWrite, slot.BaseGfn + firstPage);
            bool flush = false;
            int words = (int)((numPages + 63) / 64);
            for (int i = 0; i < words && i < userMask.Length; i++)
            {
                int w = (int)(firstPage / 64) + i;
                ulong mask = userMask[i];
                if (i == words - 1 && (numPages & 63) != 0) mask &= (1UL << (int)(numPages & 63)) - 1;
                mask &= bm[w];                                   // atomic_long_fetch_andnot
                bm[w] &= ~mask;
                while (mask != 0)
                {
                    int bit = System.Numerics.BitOperations.TrailingZeroCount(mask);
                    mask &= mask - 1;
                    flush |= EnableLogDirtyPtMasked(slot, slot.BaseGfn + (ulong)(w * 64 + bit));
                }
            }
            if (flush) await FlushRemoteTlbs();
            await MmuLock.Unlock();
            return 0;
        }
        finally
        {
            await SlotsLock.Unlock();
        }
    }

    /// <summary>
    /// KVM_RESET_DIRTY_RINGS (kvm_vm_ioctl_reset_dirty_pages): under slots_lock, for every vCPU's ring,
    /// kvm_dirty_ring_reset re-arms the entries the VMM harvested, in order from reset_index (kvm_reset_dirty_gfn
    /// under mmu_lock; an entry whose slot is gone or too small is skipped); flush if any. Returns the entries reset.
    /// </summary>
    public async ValueTask<int> ResetDirtyRings()
    {
        using var _ = S.Current.Enter("kvm_vm_ioctl_reset_dirty_pages");
        if (DirtyRingBytes == 0) return Errno.EINVAL;            // !kvm->dirty_ring_size
        await SlotsLock.Lock();
        int cleared = 0;
        bool flush = false;
        foreach (var v in _vcpus)
        {
            if (v.DirtyRing is not { } ring) continue;
            using var __ = S.Current.Enter("kvm_dirty_ring_reset");
            while (true)
            {
                await S.Point(PointKind.Counter, ring.ResetIndex);
                if (!ring.TryTakeHarvested(out int id, out ulong offset)) break;
                cleared++;
                if (FindSlot(id) is not { } slot || offset >= slot.NPages) continue;
                await MmuLock.Lock();                             // kvm_reset_dirty_gfn
                await S.Point(PointKind.SpteWrite, slot.BaseGfn + offset);
                flush |= EnableLogDirtyPtMasked(slot, slot.BaseGfn + offset);
                await MmuLock.Unlock();
            }
        }
        if (cleared > 0 && flush) await FlushRemoteTlbs();
        await SlotsLock.Unlock();
        return cleared;
    }

    /// <summary>
    /// The dirty-log-lost check: the gfns of <paramref name="slot"/> the guest wrote since tracking of them was last
    /// re-armed that are neither set in the dirty bitmap nor in an un-reset entry of any vCPU's ring: writes no harvest
    /// will ever report. Empty when logging is off.
    /// </summary>
    public List<ulong> FindLostDirtyGfns(Memslot slot)
    {
        var lost = new List<ulong>();
        if (slot.GuestWritten is not { } written) return lost;
        HashSet<ulong>? ring = null;
        for (int w = 0; w < written.Length; w++)
        {
            ulong mask = written[w];
            while (mask != 0)
            {
                int bit = System.Numerics.BitOperations.TrailingZeroCount(mask);
                mask &= mask - 1;
                ulong offset = (ulong)(w * 64 + bit), gfn = slot.BaseGfn + offset;
                if (slot.TestDirtyBit(gfn)) continue;
                ring ??= RingPendingOffsets(slot.Id);
                if (!ring.Contains(offset)) lost.Add(gfn);
            }
        }
        return lost;
    }

    /// <summary>The gfns of <paramref name="slot"/> the guest wrote that no harvest has reported yet (pending or lost).</summary>
    public List<ulong> UnreportedGuestWrites(Memslot slot)
    {
        var list = new List<ulong>();
        if (slot.GuestWritten is not { } written) return list;
        for (int w = 0; w < written.Length; w++)
            for (ulong mask = written[w]; mask != 0; mask &= mask - 1)
                list.Add(slot.BaseGfn + (ulong)(w * 64 + System.Numerics.BitOperations.TrailingZeroCount(mask)));
        return list;
    }

    HashSet<ulong> RingPendingOffsets(int slotId)
    {
        var set = new HashSet<ulong>();
        foreach (var v in _vcpus) v.DirtyRing?.CollectPending(slotId, set);
        return set;
    }
}
