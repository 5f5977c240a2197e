using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>mm/mremap.c.</summary>
public static class Mremap
{
    /// <summary>
    /// mremap(old, len, len, MREMAP_MAYMOVE|MREMAP_FIXED, new) → move_vma: a new VMA at <paramref name="newAddr"/>
    /// (same prot, flags, anon_vma and vm_pgoff, so rmap still finds moved folios), move_page_tables, then
    /// do_vmi_munmap of the old range (which notifies UNMAP over it once more, with nothing left to zap). Anything
    /// mapped at the destination is unmapped first. The old range must lie in one VMA. Takes mmap_lock for write.
    /// With <paramref name="dontUnmap"/> (MREMAP_DONTUNMAP, 5.7+) the old VMA is kept, its page tables now empty.
    /// </summary>
    public static async ValueTask DoMremap(MmStruct mm, ulong oldAddr, ulong len, ulong newAddr, bool dontUnmap = false)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("mremap");
        ulong oldEnd = oldAddr + len, newEnd = newAddr + len;
        if (newAddr < oldEnd && oldAddr < newEnd) throw new ArgumentException("mremap ranges overlap");
        Userfaultfd.UserfaultfdCtx? uffd = null;
        await mm.MmapLock.WriteLock();
        try
        {
            var src = mm.FindVma(oldAddr);
            if (src == null || oldEnd > src.End) throw new ArgumentException($"mremap: [0x{oldAddr:x}, 0x{oldEnd:x}) is not inside one VMA");
            // MREMAP_FIXED: unmap whatever is at the destination.
            var victims = await Mmap.SplitAround(mm, newAddr, newEnd);
            if (victims.Count > 0)
            {
                await Mmap.UnmapRegion(mm, newAddr, newEnd);
                foreach (var v in victims) mm.RemoveVma(v);
            }
            var moved = await Mmap.SplitAround(mm, oldAddr, oldEnd);
            var old = moved[0];
            // mremap_userfaultfd_prep: the moved VMA stays registered with UFFD_FEATURE_EVENT_REMAP, else it is not.
            uffd = Userfaultfd.UserfaultfdCtx.MremapUserfaultfdPrep(old);
            var dst = mm.InsertVma(new Vma(mm, newAddr, newEnd, old.Prot, uffd != null ? old.Flags : old.Flags & ~VmFlags.UffdAny)
            {
                Uffd = uffd,
                PgOff = old.PgOff,
                AnonVma = old.AnonVma,
                File = old.File,
                Name = old.Name,
                PolicyNode = old.PolicyNode,
            });
            await MovePageTables(old, oldAddr, dst, newAddr, len);
            if (!dontUnmap)
            {
                await Mmap.UnmapRegion(mm, oldAddr, oldEnd);
                mm.RemoveVma(old);
            }
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
        await Userfaultfd.UserfaultfdCtx.MremapUserfaultfdComplete(uffd, oldAddr, newAddr, len); // UFFD_EVENT_REMAP
    }

    /// <summary>
    /// move_page_tables: start/end UNMAP on the old range only (the new range had no secondary mappings); PTEs move
    /// under both PTLs with the old range's TLB flushed; an aligned whole huge PMD moves as one (move_huge_pmd),
    /// a partly covered one is split first (its own nested CLEAR start/end).
    /// </summary>
    public static async ValueTask MovePageTables(Vma vma, ulong oldAddr, Vma newVma, ulong newAddr, ulong len)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        if (vma.IsHugetlb)
        {
            await MoveHugetlbPageTables(vma, oldAddr, newAddr, len);
            return;
        }
        using var _ = k.S.Current.Enter("move_page_tables");
        var range = new MmuNotifierRange(mm, oldAddr, oldAddr + len, MmuNotifyEvent.Unmap);
        await mm.Notifiers.InvalidateRangeStart(range);
        for (ulong off = 0; off < len;)
        {
            ulong o = oldAddr + off, n = newAddr + off;
            ulong extent = Math.Min((o & MmStruct.PmdMask) + MmStruct.PmdSize - o, (n & MmStruct.PmdMask) + MmStruct.PmdSize - n);
            extent = Math.Min(extent, len - off);
            var pmd = mm.PeekPmd(o);
            if (pmd.IsHugeOrMigrationPmd)
            {
                if (extent == MmStruct.PmdSize && mm.PeekPmd(n).IsNone && await MoveHugePmd(mm, o, n))
                {
                    off += extent;
                    continue;
                }
                await HugeMemory.SplitHugePmd(vma, o, notify: true);
            }
            int ot = mm.PteTable(o);
            if (ot != 0) await MovePtes(mm, ot, o, n, extent);
            off += extent;
        }
        await mm.Notifiers.InvalidateRangeEnd(range);
    }

    /// <summary>
    /// move_hugetlb_page_tables (5.16+): CLEAR over the old range (no PMD sharing modelled), then each huge entry, present
    /// or not, moves under both huge PTE locks (move_huge_pte: huge_ptep_get_and_clear, set_huge_pte_at), and the old
    /// range is flushed before the end.
    /// </summary>
    static async ValueTask MoveHugetlbPageTables(Vma vma, ulong oldAddr, ulong newAddr, ulong len)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("move_hugetlb_page_tables");
        var range = new MmuNotifierRange(mm, oldAddr, oldAddr + len, MmuNotifyEvent.Clear);
        await mm.Notifiers.InvalidateRangeStart(range);
        for (ulong off = 0; off < len; off += MmStruct.PmdSize)
        {
            ulong o = oldAddr + off, n = newAddr + off;
            if (mm.PeekPmd(o).IsNone) continue;
            mm.PmdAlloc(n);
            int a = mm.PmdTable(o), b = mm.PmdTable(n);
            await mm.LockPmd(o);
            if (a != b) await mm.LockPmd(n);
            var e = await mm.PmdpGet(o);
            if (!e.IsNone)
            {
                await mm.SetPmd(o, Pte.None);
                await mm.SetPmd(n, e);
            }
            if (a != b) await mm.UnlockPmd(n);
            await mm.UnlockPmd(o);
        }
        await Tlb.FlushTlbRange(mm, oldAddr, oldAddr + len); // flush_hugetlb_tlb_range
        await mm.Notifiers.InvalidateRangeEnd(range);
    }

    /// <summary>move_ptes: under the old and the new PTL, get-and-clear each old PTE and set it at the new address.</summary>
    static async ValueTask MovePtes(MmStruct mm, int ot, ulong oldAddr, ulong newAddr, ulong extent)
    {
        using var _ = mm.Kernel.S.Current.Enter("move_ptes");
        int nt = mm.PteAlloc(newAddr);
        if (nt == 0) throw new ModelException($"mremap destination 0x{newAddr:x} is mapped by a huge PMD");
        await mm.LockPtl(ot);
        if (nt != ot) await mm.LockPtl(nt);
        bool flush = false;
        for (ulong off = 0; off < extent; off += MmStruct.PageSize)
        {
            if (mm.PeekPte(oldAddr + off).IsNone) continue;
            var pte = await mm.PtepGetAndClear(ot, oldAddr + off);
            flush |= pte.Present;
            await mm.SetPte(nt, newAddr + off, pte);
        }
        if (flush) await Tlb.FlushTlbRange(mm, oldAddr, oldAddr + extent);
        if (nt != ot) await mm.UnlockPtl(nt);
        await mm.UnlockPtl(ot);
    }

    /// <summary>move_huge_pmd: move one huge PMD under both PMD locks and flush the old range. False: no longer huge.</summary>
    static async ValueTask<bool> MoveHugePmd(MmStruct mm, ulong oldAddr, ulong newAddr)
    {
        using var _ = mm.Kernel.S.Current.Enter("move_huge_pmd");
        mm.PmdAlloc(newAddr);
        int a = mm.PmdTable(oldAddr), b = mm.PmdTable(newAddr);
        await mm.LockPmd(oldAddr);
        if (a != b) await mm.LockPmd(newAddr);
        var pmd = await mm.PmdpGet(oldAddr);
        bool huge = pmd.IsHugeOrMigrationPmd; // a PMD migration entry moves too (no flush: not present)
        if (huge)
        {
            await mm.SetPmd(oldAddr, Pte.None);
            await mm.SetPmd(newAddr, pmd);
            if (pmd.Present) await Tlb.FlushTlbRange(mm, oldAddr, oldAddr + MmStruct.PmdSize);
        }
        if (a != b) await mm.UnlockPmd(newAddr);
        await mm.UnlockPmd(oldAddr);
        return huge;
    }
}
