using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Mm;

public static partial class Memory
{
    /// <summary>
    /// copy_page_range: copy the page tables of <paramref name="src"/> (parent) into <paramref name="dst"/> (child).
    /// For a COW mapping the parent mm gets start/end PROTECTION_PAGE around the copy (the child has no secondary);
    /// writable PTEs are write-protected in both, under both PTLs. Each copied anon page gains a mapping and a
    /// reference and loses PageAnonExclusive; the zero page is shared as is; swap entries are duplicated; a huge PMD is
    /// copied write-protected (entire_mapcount+1). VMAs without an anon_vma have nothing to copy (they refault), unless
    /// the child's copy is uffd-wp armed.
    /// </summary>
    public static async ValueTask CopyPageRange(Vma dst, Vma src)
    {
        var parent = src.Mm;
        var child = dst.Mm;
        var k = parent.Kernel;
        using var _ = k.S.Current.Enter("copy_page_range");
        bool hugetlb = src.IsHugetlb;
        // vma_needs_copy: hugetlb VMAs are always copied (copy_page_range's VM_HUGETLB test), and so is a VMA whose copy is
        // uffd-wp armed (UFFD_FEATURE_EVENT_FORK): "pgtable contains uffd-wp protection information, that's something we
        // can't retrieve from page cache" (5.19, with uffd-wp on shmem); others without an anon_vma refault instead.
        if (src.AnonVma == null && !hugetlb && (dst.Flags & VmFlags.UffdWp) == 0) return;
        bool cow = src.IsCowMapping;
        // copy_hugetlb_page_range brackets a COW copy with CLEAR over the VMA, copy_page_range with PROTECTION_PAGE.
        var range = new MmuNotifierRange(parent, src.Start, src.End, hugetlb ? MmuNotifyEvent.Clear : MmuNotifyEvent.ProtectionPage);
        if (cow) await parent.Notifiers.InvalidateRangeStart(range);
        for (ulong addr = src.Start; addr < src.End;)
        {
            if (hugetlb)
            {
                if (!parent.PeekPmd(addr).IsNone && !await Hugetlb.HugetlbPages.CopyHugetlbEntry(dst, src, addr & MmStruct.PmdMask, cow))
                {
                    k.S.Fail(Invariants.Liveness, $"fork: no huge page in the pool to copy the pinned page at 0x{addr:x}", addr);
                    break;
                }
                addr = (addr & MmStruct.PmdMask) + MmStruct.PmdSize;
                continue;
            }
            ulong next = parent.PmdAddrEnd(addr, src.End);
            var pmd = parent.PeekPmd(addr);
            // copy_huge_pmd falls through to the PTE copy when the PMD was split meanwhile.
            if (pmd.IsHugeOrMigrationPmd && await CopyHugePmd(dst, src, addr & MmStruct.PmdMask, cow)) { addr = next; continue; }
            pmd = parent.PeekPmd(addr);
            if (pmd.Present && !pmd.Huge) await CopyPteRange(dst, src, pmd.TableId, addr, next, cow);
            addr = next;
        }
        if (cow) await parent.Notifiers.InvalidateRangeEnd(range);
    }

    /// <summary>copy_pte_range: one PTE table's part, with the child's PTL and then the parent's held.</summary>
    static async ValueTask CopyPteRange(Vma dst, Vma src, int st, ulong start, ulong end, bool cow)
    {
        var parent = src.Mm;
        var child = dst.Mm;
        var k = parent.Kernel;
        using var _ = k.S.Current.Enter("copy_pte_range");
        int dt = child.PteAlloc(start);
        await child.LockPtl(dt);
        await parent.LockPtl(st);
        for (ulong a = start; a < end; a += MmStruct.PageSize)
        {
            if (parent.PeekPte(a).IsNone) continue;
            var pte = await parent.PtepGet(st, a);
            if (pte.IsNone) continue;
            if (pte.IsMarker)
            {
                // copy_nonpresent_pte -> copy_pte_marker: a poisoned marker always goes to the child, a uffd-wp one only
                // when the child's VMA is uffd-wp armed (UFFD_FEATURE_EVENT_FORK, not modelled: never).
                var marker = Pte.Marker(uffdWp: pte.UffdWp && dst.Uffd != null, poisoned: pte.IsPoisonMarker);
                if (marker.IsUffdWpMarker || marker.IsPoisonMarker) await child.SetPte(dt, a, marker);
                continue;
            }
            if (!pte.Present)
            {
                // copy_nonpresent_pte: swap_duplicate; a writable migration entry becomes a read one in both (COW).
                if (pte.SwapKind == SwapType.Swap) k.Swap.Dup((int)pte.Pfn);
                else if (pte.IsDeviceEntry)
                {
                    // copy_nonpresent_pte: a device-private page gains the child's mapping (device-exclusive entries
                    // are restored first by the kernel; the model copies them as the read-only entry they become).
                    await k.S.Point(PointKind.Counter, a);
                    Folio.Get(k, pte.Pfn);
                    Folio.AddAnonRmap(k, pte.Pfn, child);
                    k.Mem[pte.Pfn].Clear(PageFlags.AnonExclusive);
                }
                if ((pte.SwapKind == SwapType.MigrationWrite || pte.IsDeviceEntry) && cow && pte.IsWritableEntry)
                {
                    pte = pte.ReadOnlyEntry();
                    await parent.SetPte(st, a, pte);
                }
                await child.SetPte(dt, a, pte.WithUffdWp(pte.UffdWp && dst.Uffd != null)); // pte_swp_clear_uffd_wp unless userfaultfd_wp(dst_vma)
                continue;
            }
            if (cow && !pte.Special && pte.Pfn != PhysMem.ZeroPfn && NeedsCowForDma(src, pte.Pfn))
            {
                await k.S.Point(PointKind.Counter, a);
                if (!CopyPresentPage(dst, a, dt, pte, out var childPte)) { k.S.Fail(Invariants.Liveness, $"fork: no memory to copy pinned page 0x{pte.Pfn:x}", a); break; }
                await child.SetPte(dt, a, childPte);
                k.Stats.Inc(Stat.ForkCopiedPtes);
                continue;
            }
            if (!pte.Special && pte.Pfn != PhysMem.ZeroPfn)
            {
                await k.S.Point(PointKind.Counter, a);
                Folio.Get(k, pte.Pfn);
                Folio.AddAnonRmap(k, pte.Pfn, child); // folio_try_dup_anon_rmap_pte
                k.Mem[pte.Pfn].Clear(PageFlags.AnonExclusive);
                k.Mem[k.Mem.FolioOf(pte.Pfn)].Clear(PageFlags.AnonExclusive);
            }
            if (cow && pte.Writable)
            {
                await parent.SetPte(st, a, pte.Wrprotect()); // ptep_set_wrprotect
                pte = pte.Wrprotect();
            }
            if (dst.Shared) pte = pte.Mkclean();
            if (dst.Uffd == null) pte = pte.WithUffdWp(false); // copy_present_pte: pte_clear_uffd_wp unless userfaultfd_wp(dst_vma)
            await child.SetPte(dt, a, pte.Mkold());
            k.Stats.Inc(Stat.ForkCopiedPtes);
        }
        await parent.UnlockPtl(st);
        await child.UnlockPtl(dt);
    }

    /// <summary>
    /// page_needs_cow_for_dma (folio_needs_cow_for_dma): in a COW mapping of an mm that ever pinned (MMF_HAS_PINNED), a
    /// possibly DMA-pinned anon page must not be shared with the child (5.9+; <paramref name="since"/> names the era
    /// rule of the caller: hugetlb's copy_hugetlb_page_range got it with Feature.HugetlbForkCopiesPinned). From 5.19 only
    /// an exclusive page can be pinned that way (__folio_try_dup_anon_rmap and hugetlb_try_dup_anon_rmap refuse with
    /// -EBUSY only for PageAnonExclusive pages).
    /// </summary>
    internal static bool NeedsCowForDma(Vma src, long pfn, Eras.Feature since = Eras.Feature.ForkCopiesPinnedPages)
    {
        var k = src.Mm.Kernel;
        if (!k.Era.Has(since) || !src.Mm.HasPinned || !Gup.FolioMaybeDmaPinned(k, pfn)) return false;
        if (!k.Mem[k.Mem.FolioOf(pfn)].Has(PageFlags.Anon)) return false;
        return !k.Era.Has(Eras.Feature.PageAnonExclusiveReuse) || k.Mem[pfn].Has(PageFlags.AnonExclusive);
    }

    /// <summary>
    /// copy_present_page: the child gets its own copy of a pinned page, mapped dirty and (maybe_mkwrite) writable, and
    /// the parent's PTE stays as it is. The kernel preallocates the page (page_copy_prealloc) with the locks dropped and
    /// retries; the model allocates in place (nothing shared is read in between). False when memory is exhausted.
    /// </summary>
    static bool CopyPresentPage(Vma dst, ulong addr, int dt, Pte src, out Pte childPte)
    {
        var k = dst.Mm.Kernel;
        using var _ = k.S.Current.Enter("copy_present_page");
        childPte = default;
        long np = dst.AllocPage();
        if (np < 0) return false;
        k.Mem[np].Contents = k.Mem[src.Pfn].Contents;
        k.S.Charge(CostKind.CopyPage);
        Folio.AddNewAnonRmap(k, np, dst, addr);
        childPte = Pte.Make(np, writable: dst.Writable, dirty: true);
        // "Uffd-wp needs to be delivered to dest pte as well": userfaultfd_pte_wp(dst_vma, src pte) (UFFD_FEATURE_EVENT_FORK).
        if ((dst.Flags & VmFlags.UffdWp) != 0 && src.UffdWp) childPte = childPte.WithUffdWp(true);
        return true;
    }

    /// <summary>
    /// copy_huge_pmd: share the THP write-protected (folio_get, entire_mapcount+1), under both PMD locks. A page-cache
    /// PMD is not copied at all.
    /// </summary>
    static async ValueTask<bool> CopyHugePmd(Vma dst, Vma src, ulong haddr, bool cow)
    {
        var parent = src.Mm;
        var child = dst.Mm;
        var k = parent.Kernel;
        using var _ = k.S.Current.Enter("copy_huge_pmd");
        if (dst.File != null && !dst.IsHugetlb) return true; // !vma_is_anonymous: "Skip if can be re-fill on fault" (the child faults it in)
        var peek = parent.PeekPmd(haddr);
        if (cow && peek.Present && peek.Huge && !peek.Special && NeedsCowForDma(src, peek.Pfn))
        {
            // 7a4830c380f3: a pinned THP is split in the parent (-EAGAIN), and the PTE copy copies each pinned page.
            await HugeMemory.SplitHugePmd(src, haddr, notify: true);
            return false;
        }
        child.PmdAlloc(haddr);
        await child.LockPmd(haddr);
        await parent.LockPmd(haddr);
        var pmd = await parent.PmdpGet(haddr);
        bool huge = pmd.Present && pmd.Huge;
        if (pmd.IsMigration)
        {
            // copy_huge_pmd's is_swap_pmd case (4.14+): a writable migration entry becomes a readable one in both (COW);
            // the child's keeps uffd-wp only if its VMA is uffd-wp armed. No reference: the migration holds the folio.
            if (cow && pmd.SwapKind == SwapType.MigrationWrite)
            {
                pmd = pmd.ReadOnlyEntry();
                await parent.SetPmd(haddr, pmd);
            }
            await child.SetPmd(haddr, pmd.WithUffdWp(pmd.UffdWp && dst.Uffd != null));
            k.Stats.Inc(Stat.ForkCopiedPtes);
            huge = true;
        }
        else if (huge && pmd.Special)
        {
            await child.SetPmd(haddr, pmd.Mkold()); // copy_huge_pmd of the huge zero PMD: mm_get_huge_zero_folio, no rmap
            k.Stats.Inc(Stat.ForkCopiedPtes);
        }
        else if (huge)
        {
            long head = pmd.Pfn;
            Folio.Get(k, head);
            k.Mem.EntireMapcountHolder(head).RefCount++; // folio_try_dup_anon_rmap_pmd
            child.RssAnon += PhysMem.HugePages;
            k.Mem[head].Clear(PageFlags.AnonExclusive);
            if (cow && pmd.Writable)
            {
                await parent.SetPmd(haddr, pmd.Wrprotect()); // pmdp_set_wrprotect
                pmd = pmd.Wrprotect();
            }
            await child.SetPmd(haddr, pmd.Mkold());
            k.Stats.Inc(Stat.ForkCopiedPtes);
        }
        await parent.UnlockPmd(haddr);
        await child.UnlockPmd(haddr);
        return huge;
    }
}
