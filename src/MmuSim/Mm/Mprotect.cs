using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>change_protection's cp_flags beyond the new protection (MM_CP_*).</summary>
public enum ChangeProtFlags : byte
{
    None = 0,
    /// <summary>MM_CP_UFFD_WP: write-protect and mark uffd-wp (UFFDIO_WRITEPROTECT with MODE_WP).</summary>
    UffdWp = 1,
    /// <summary>MM_CP_UFFD_WP_RESOLVE: clear uffd-wp; the PTE stays read-only unless <see cref="TryChangeWritable"/>.</summary>
    UffdWpResolve = 2,
    /// <summary>MM_CP_TRY_CHANGE_WRITABLE with a resolve: make the PTE writable now where can_change_pte_writable allows.</summary>
    TryChangeWritable = 4,
}

/// <summary>mm/mprotect.c.</summary>
public static class Mprotect
{
    /// <summary>
    /// do_mprotect_pkey: split the VMAs at the edges, then mprotect_fixup each (new vm_flags, change_protection).
    /// Takes mmap_lock for write. Downgrades write-protect the PTEs inside a PROTECTION_VMA invalidation. Upgrades
    /// change the VMA only: PTEs become writable lazily, at the next write fault (wp_page_reuse, no notifier); the
    /// kernel's change_pmd_range still brackets the populated part with PROTECTION_VMA, and so does the model.
    /// PROT_NONE turns every present PTE (zero page included) into a pte_protnone one inside the same PROTECTION_VMA
    /// range; mprotect back to an accessible protection makes them accessible again (read-only: writes refault).
    /// </summary>
    public static async ValueTask DoMprotect(MmStruct mm, ulong start, ulong len, Prot prot)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_mprotect_pkey");
        if (prot != Prot.None && (prot & Prot.Read) == 0) throw new ArgumentException("mprotect without PROT_READ is not modelled");
        ulong end = start + len;
        await mm.MmapLock.WriteLock();
        try
        {
            var vmas = await Mmap.SplitAround(mm, start, end);
            ulong lo = ulong.MaxValue, hi = 0;
            foreach (var vma in vmas)
            {
                vma.Prot = prot; // mprotect_fixup: vm_flags / vm_page_prot
                if (await ChangeProtection(vma, vma.Start, vma.End, prot) > 0)
                {
                    lo = Math.Min(lo, vma.Start);
                    hi = Math.Max(hi, vma.End);
                }
            }
            if (hi > lo) await Tlb.FlushTlbRange(mm, lo, hi); // tlb_finish_mmu
            Mmap.VmaMergeAround(mm, start, end); // mprotect_fixup's vma_merge: alike neighbours become one VMA again
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>
    /// change_protection: walk [start, end) of one VMA. Returns the number of entries changed. With uffd-wp
    /// <paramref name="cp"/> flags (uffd_wp_range) the protection is the VMA's own and only the uffd-wp bit (and the
    /// write bit it implies) changes, inside the same PROTECTION_VMA invalidation.
    /// </summary>
    public static async ValueTask<long> ChangeProtection(Vma vma, ulong start, ulong end, Prot prot, ChangeProtFlags cp = ChangeProtFlags.None)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("change_protection");
        long pages = 0;
        if (!k.Era.Has(Feature.MprotectLazyStart) || vma.IsHugetlb)
        {
            // 2.6.32, and hugetlb_change_protection in every era: one invalidation over the whole range, populated or
            // not (hugetlb: flush_hugetlb_tlb_range and, 3.19-6.5, invalidate_range before the end).
            var range = new MmuNotifierRange(mm, start, end, MmuNotifyEvent.ProtectionVma);
            await mm.Notifiers.InvalidateRangeStart(range);
            pages = await ChangePmdRange(vma, start, end, prot, lazy: false, cp);
            if (vma.IsHugetlb && pages > 0)
            {
                await Tlb.FlushTlbRange(mm, start, end);
                if (k.Era.Has(Feature.InvalidateRange)) await mm.Notifiers.InvalidateRange(start, end);
            }
            // hugetlb_change_protection's end is only_end (4.15+: it has just called invalidate_range itself).
            if (vma.IsHugetlb) await mm.Notifiers.InvalidateRangeOnlyEnd(range);
            else await mm.Notifiers.InvalidateRangeEnd(range);
            return pages;
        }
        const ulong PudSize = 1UL << 30;
        for (ulong addr = start; addr < end;)
        {
            ulong next = Math.Min((addr & ~(PudSize - 1)) + PudSize, end);
            pages += await ChangePmdRange(vma, addr, next, prot, lazy: true, cp);
            addr = next;
        }
        return pages;
    }

    /// <summary>
    /// change_pmd_range: one PUD's worth. With <paramref name="lazy"/>, start PROTECTION_VMA at the first populated
    /// PMD over [that address, end) and end after the loop. A huge PMD that is only partly covered is split inside
    /// (with its own nested CLEAR start/end); a covered one is changed whole (change_huge_pmd).
    /// </summary>
    static async ValueTask<long> ChangePmdRange(Vma vma, ulong start, ulong end, Prot prot, bool lazy, ChangeProtFlags cp)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("change_pmd_range");
        MmuNotifierRange? range = null;
        long pages = 0;
        // pgtable_populate_needed (6.4+): write-protecting with markers must reach none PTEs, so their tables are
        // allocated first (change_pmd_prepare / change_prepare).
        bool markers = (cp & ChangeProtFlags.UffdWp) != 0 && Userfaultfd.UserfaultfdCtx.UseMarkers(vma);
        bool populate = markers && !vma.IsHugetlb;
        for (ulong addr = start; addr < end;)
        {
            ulong next = mm.PmdAddrEnd(addr, end);
            var pmd = mm.PeekPmd(addr);
            if (vma.IsHugetlb && cp != ChangeProtFlags.None && (pmd.IsNone ? markers : pmd.IsMarker))
            {
                // hugetlb_change_protection (5.19+): protecting a none huge entry installs a uffd-wp marker ("Safe to
                // modify directly (none->non-present)"), resolving drops one; a poisoned marker is left alone.
                pages += await HugetlbUffdWpNonPresent(vma, addr, (cp & ChangeProtFlags.UffdWp) != 0);
                addr = (addr & MmStruct.PmdMask) + MmStruct.PmdSize; // one huge entry (an unpopulated PUD is now populated)
                continue;
            }
            if (populate && pmd.IsNone)
            {
                mm.PteAlloc(addr);
                pmd = mm.PeekPmd(addr);
            }
            if (pmd.IsNone)
            {
                addr = next;
                continue;
            }
            if (lazy && range == null)
            {
                range = new MmuNotifierRange(mm, addr, end, MmuNotifyEvent.ProtectionVma);
                await mm.Notifiers.InvalidateRangeStart(range);
            }
            if (pmd.IsHugeOrMigrationPmd)
            {
                // pgtable_split_needed: uffd-wp protection of a file PMD needs PTEs (markers), so it is split.
                bool split = (cp & ChangeProtFlags.UffdWp) != 0 && vma.File != null && !vma.IsHugetlb;
                if ((addr & ~MmStruct.PmdMask) == 0 && next - addr == MmStruct.PmdSize && !split)
                {
                    long changed = await ChangeHugePmd(vma, addr, prot, cp);
                    if (changed >= 0)
                    {
                        pages += changed;
                        addr = next;
                        continue;
                    }
                }
                else
                {
                    await HugeMemory.SplitHugePmd(vma, addr, notify: true);
                    if (populate && mm.PeekPmd(addr).IsNone) mm.PteAlloc(addr); // change_pmd_prepare after a file split
                }
            }
            int t = mm.PteTable(addr);
            if (t != 0) pages += cp == ChangeProtFlags.None ? await ChangePteRange(vma, t, addr, next, prot) : await ChangePteRangeUffdWp(vma, t, addr, next, cp);
            addr = next;
        }
        if (range != null) await mm.Notifiers.InvalidateRangeEnd(range);
        return pages;
    }

    /// <summary>hugetlb_change_protection's none and marker entries under the huge PTE lock; returns the entries changed.</summary>
    static async ValueTask<long> HugetlbUffdWpNonPresent(Vma vma, ulong haddr, bool wp)
    {
        var mm = vma.Mm;
        mm.PmdAlloc(haddr); // huge_pte_alloc for the uffd-wp case
        await mm.LockPmd(haddr);
        var cur = await mm.PmdpGet(haddr);
        long changed = 0;
        if (wp && cur.IsNone) { await mm.SetPmd(haddr, HugeMemory.HugetlbUffdWpMarker); changed = 1; }
        else if (!wp && cur.IsUffdWpMarker) { await mm.SetPmd(haddr, Pte.None); changed = 1; }
        await mm.UnlockPmd(haddr);
        return changed;
    }

    /// <summary>
    /// change_pte_range: under the PTL, apply the new protection to each present PTE (ptep_modify_prot_start/commit):
    /// write-protect on a downgrade, make PROT_NONE (pte_protnone) for <see cref="Prot.None"/>, make a pte_protnone
    /// entry accessible (read-only) again on the way back. Writable migration entries become read ones unless the new
    /// protection allows writes (readable-exclusive for an anon folio). Upgrades of accessible PTEs are lazy (the next write fault).
    /// </summary>
    static async ValueTask<long> ChangePteRange(Vma vma, int t, ulong start, ulong end, Prot prot)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("change_pte_range");
        if ((prot & Prot.Write) != 0 && !AnyProtNone(mm, start, end)) return await ChangePteRangeUpgrade(vma, t, start, end);
        long pages = 0;
        await mm.LockPtl(t);
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            var peek = mm.PeekPte(a);
            if (!(peek.Present && PteModify(peek, prot) != peek) && !(peek.IsWritableEntry && (prot & Prot.Write) == 0)) continue;
            var pte = await mm.PtepGet(t, a);
            if (pte.Present && PteModify(pte, prot) != pte)
            {
                // ptep_modify_prot_start / commit
                var old = await mm.PtepGetAndClear(t, a);
                await mm.SetPte(t, a, PteModify(old, prot));
                pages++;
            }
            else if (pte.IsWritableEntry && (prot & Prot.Write) == 0)
            {
                // change_pte_range: writable migration / device-private / device-exclusive entries become readable ones;
                // a writable migration entry of an anon folio becomes readable-exclusive (it was exclusive: 6c287605fd56),
                // so remove_migration_pte restores PageAnonExclusive.
                var k = mm.Kernel;
                bool anon = pte.IsMigration && k.Mem[k.Mem.FolioOf(pte.Pfn)].Has(PageFlags.Anon);
                await mm.SetPte(t, a, pte.ReadOnlyEntry().WithMigrationExclusive(anon));
                pages++;
            }
        }
        await mm.UnlockPtl(t);
        return pages;
    }

    /// <summary>
    /// change_pte_range with MM_CP_UFFD_WP or MM_CP_UFFD_WP_RESOLVE: under the PTL, set (write-protecting) or clear the
    /// uffd-wp bit of each present PTE and of each swap or migration entry (pte_swp_mkuffd_wp); with
    /// userfaultfd_wp_use_markers (UFFD_FEATURE_WP_UNPOPULATED, 6.4+) protecting a none PTE installs PTE_MARKER_UFFD_WP
    /// and resolving drops such a marker; poisoned markers are left alone. A resolve with
    /// MM_CP_TRY_CHANGE_WRITABLE (6.3+) makes an exclusive anon page writable at once, else the next write fault does.
    /// </summary>
    static async ValueTask<long> ChangePteRangeUffdWp(Vma vma, int t, ulong start, ulong end, ChangeProtFlags cp)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("change_pte_range");
        bool wp = (cp & ChangeProtFlags.UffdWp) != 0;
        bool tryWritable = (cp & ChangeProtFlags.TryChangeWritable) != 0 && vma.Writable && !vma.Shared;
        bool markers = wp && Userfaultfd.UserfaultfdCtx.UseMarkers(vma);
        long pages = 0;
        await mm.LockPtl(t);
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            var peek = mm.PeekPte(a);
            if ((peek.IsNone && !markers) || (peek.IsSwapEntry && peek.IsDeviceEntry) || peek.IsPoisonMarker || (peek.IsMarker && wp)) continue;
            var pte = await mm.PtepGet(t, a);
            if (pte.IsNone)
            {
                // "Nobody plays with any none ptes besides userfaultfd when applying the protections."
                if (markers)
                {
                    await mm.SetPte(t, a, Pte.Marker(uffdWp: true, poisoned: false));
                    pages++;
                }
                continue;
            }
            if (pte.IsMarker)
            {
                // A poisoned marker is left alone ("any access should sigbus anyway"); unprotecting drops a uffd-wp
                // one, so that the next fault is not trapped.
                if (!wp && pte.IsUffdWpMarker)
                {
                    await mm.SetPte(t, a, Pte.None);
                    pages++;
                }
                continue;
            }
            if (pte.IsSwapEntry)
            {
                if (pte.IsDeviceEntry || pte.UffdWp == wp) continue;
                await mm.SetPte(t, a, pte.WithUffdWp(wp));
                pages++;
                continue;
            }
            if (Apply(pte) == pte) continue;
            var old = await mm.PtepGetAndClear(t, a); // ptep_modify_prot_start (the hardware may have set A/D meanwhile)
            await mm.SetPte(t, a, Apply(old));        // ptep_modify_prot_commit
            pages++;
        }
        await mm.UnlockPtl(t);
        return pages;

        Pte Apply(Pte p)
        {
            var u = p.WithUffdWp(wp);
            return !wp && tryWritable && CanChangePteWritable(k, vma, u) ? u.WithWrite(true) : u;
        }
    }

    /// <summary>pte_modify(pte, vm_get_page_prot(prot)) for a present entry: PROT_NONE, read-only, or (lazily) unchanged.</summary>
    static Pte PteModify(Pte pte, Prot prot)
    {
        if (prot == Prot.None) return pte.MkProtNone();
        var p = pte.MkAccessible();
        return (prot & Prot.Write) == 0 ? p.Wrprotect() : p;
    }

    /// <summary>Does [start, end) hold a pte_protnone entry (which an upgrade must make accessible)? No scheduling point.</summary>
    static bool AnyProtNone(MmStruct mm, ulong start, ulong end)
    {
        for (ulong a = start; a < end; a += MmStruct.PageSize)
            if (mm.PeekPte(a).ProtNone) return true;
        return false;
    }


    /// <summary>
    /// change_pte_range on an upgrade with MM_CP_TRY_CHANGE_WRITABLE (6.0+, private VMAs): under the PTL, a present
    /// read-only PTE of an exclusive anonymous page becomes writable now (can_change_pte_writable); KSM, zero and
    /// shared-anon pages stay read-only and are upgraded at the next write fault. Before 6.0 every upgrade is lazy.
    /// </summary>
    static async ValueTask<long> ChangePteRangeUpgrade(Vma vma, int t, ulong start, ulong end)
    {
        var mm = vma.Mm;
        var k = mm.Kernel;
        if (!k.Era.Has(Feature.MprotectTryChangeWritable) || vma.Shared) return 0;
        long pages = 0;
        await mm.LockPtl(t);
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            var peek = mm.PeekPte(a);
            if (!peek.Present || peek.Writable) continue;
            var pte = await mm.PtepGet(t, a);
            if (!pte.Present || pte.Writable || !CanChangePteWritable(k, vma, pte)) continue;
            var old = await mm.PtepGetAndClear(t, a);            // ptep_modify_prot_start
            await mm.SetPte(t, a, old.WithWrite(true));          // pte_mkwrite + ptep_modify_prot_commit
            pages++;
        }
        await mm.UnlockPtl(t);
        return pages;
    }

    /// <summary>can_change_pte_writable for a private VMA: the page is anonymous and PageAnonExclusive, and soft-dirty
    /// tracking needs no write fault (vma_soft_dirty_enabled: after clear_refs 4 a clean PTE stays read-only).</summary>
    static bool CanChangePteWritable(Kernel k, Vma vma, Pte pte)
    {
        if (pte.Pfn == PhysMem.ZeroPfn || pte.Special) return false;
        if (pte.UffdWp && (vma.Flags & VmFlags.UffdWp) != 0) return false; // uffd-wp tracking needs the write fault
        if (k.Era.Has(Feature.ClearRefsSoftDirty) && (vma.Flags & VmFlags.SoftDirty) == 0 && !pte.SoftDirty) return false;
        var folio = k.Mem[k.Mem.FolioOf(pte.Pfn)];
        return folio.Has(PageFlags.Anon) && !folio.Has(PageFlags.Ksm) && k.Mem[pte.Pfn].Has(PageFlags.AnonExclusive);
    }

    /// <summary>change_huge_pmd: under the PMD lock, write-protect (or make PROT_NONE, or accessible again) a huge PMD. -1: no longer huge.</summary>
    static async ValueTask<long> ChangeHugePmd(Vma vma, ulong haddr, Prot prot, ChangeProtFlags cp)
    {
        var mm = vma.Mm;
        using var _ = mm.Kernel.S.Current.Enter("change_huge_pmd");
        long pages = 0;
        await mm.LockPmd(haddr);
        var pmd = await mm.PmdpGet(haddr);
        // uffd-wp: pmd_mkuffd_wp / pmd_clear_uffd_wp (a resolve leaves the PMD read-only: the next write reuses it).
        var updated = cp == ChangeProtFlags.None ? PteModify(pmd, prot) : pmd.WithUffdWp((cp & ChangeProtFlags.UffdWp) != 0);
        if (pmd.IsMigration)
        {
            // change_huge_pmd's is_swap_pmd case (4.14+): a writable migration entry becomes readable (exclusive for an
            // anon folio: it was exclusive), and uffd-wp is set or cleared; nothing else changes.
            var e = pmd.SwapKind == SwapType.MigrationWrite ? pmd.ReadOnlyEntry().WithMigrationExclusive(mm.Kernel.Mem[pmd.Pfn].Has(PageFlags.Anon)) : pmd;
            if (cp != ChangeProtFlags.None) e = e.WithUffdWp((cp & ChangeProtFlags.UffdWp) != 0);
            if (e != pmd) await mm.SetPmd(haddr, e); // returns 1, which change_pmd_range counts as no pages changed
        }
        else if (!(pmd.Present && pmd.Huge)) pages = -1;
        else if (updated != pmd)
        {
            await mm.SetPmd(haddr, updated); // pmd_modify
            pages = PhysMem.HugePages;
        }
        await mm.UnlockPmd(haddr);
        return pages;
    }
}
