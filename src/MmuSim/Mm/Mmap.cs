using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>mm/mmap.c: mmap, munmap and exit_mmap.</summary>
public static class Mmap
{
    /// <summary>
    /// do_mmap at a fixed address: anonymous memory, or <paramref name="file"/> from page <paramref name="pgoff"/>
    /// (MAP_SHARED when <paramref name="flags"/> has <see cref="VmFlags.Shared"/>, else MAP_PRIVATE). Takes mmap_lock for write.
    /// </summary>
    public static async ValueTask<Vma> DoMmap(MmStruct mm, ulong addr, ulong len, Prot prot, VmFlags flags, string name = "",
        AddressSpace? file = null, ulong pgoff = 0)
    {
        using var _ = mm.Kernel.S.Current.Enter("do_mmap");
        await mm.MmapLock.WriteLock();
        try
        {
            var vma = new Vma(mm, addr, addr + len, prot, flags | NewVmaFlags(mm.Kernel)) { Name = name, File = file };
            if (file != null) vma.PgOff = pgoff;
            return mm.InsertVma(vma);
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>
    /// do_vmi_munmap: split the VMAs at the edges, unmap_region (unmap_vmas inside UNMAP start/end, then
    /// tlb_finish_mmu frees the pages), remove the VMAs. Takes mmap_lock for write.
    /// </summary>
    public static async ValueTask Munmap(MmStruct mm, ulong start, ulong len)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_vmi_munmap");
        ulong end = start + len;
        await mm.MmapLock.WriteLock();
        try
        {
            var victims = await SplitAround(mm, start, end);
            if (victims.Count == 0) return;
            await UnmapRegion(mm, start, end);
            foreach (var v in victims) mm.RemoveVma(v);
        }
        finally
        {
            await mm.MmapLock.WriteUnlock();
        }
    }

    /// <summary>unmap_region: tlb_gather_mmu, unmap_vmas, free_pgtables (tables kept in the model), tlb_finish_mmu.</summary>
    public static async ValueTask UnmapRegion(MmStruct mm, ulong start, ulong end)
    {
        using var _ = mm.Kernel.S.Current.Enter("unmap_region");
        var tlb = new MmuGather(mm);
        await Memory.UnmapVmas(tlb, mm, start, end);
        await tlb.Finish();
    }

    /// <summary>
    /// vma_merge after madvise_update_vma (vma_modify_flags): every VMA touching [start, end) is merged with its
    /// successor when both are anonymous (no shmem file), adjacent, with the same protection, flags, anon_vma, policy and name,
    /// and contiguous vm_pgoff. Caller holds mmap_lock for write.
    /// </summary>
    internal static void VmaMergeAround(MmStruct mm, ulong start, ulong end)
    {
        for (int i = 0; i + 1 < mm.Vmas.Count; i++)
        {
            Vma prev = mm.Vmas[i], next = mm.Vmas[i + 1];
            if (next.End < start || prev.Start > end) continue;
            if (prev.End != next.Start || prev.Prot != next.Prot || ((prev.Flags ^ next.Flags) & ~VmFlags.SoftDirty) != 0 || prev.AnonVma != next.AnonVma || prev.Uffd != next.Uffd || prev.PolicyNode != next.PolicyNode ||
                prev.File != null || next.File != null || prev.Name != next.Name || prev.PgOff + prev.Pages != next.PgOff) continue;
            prev.End = next.End;
            prev.Flags |= next.Flags & VmFlags.SoftDirty;
            mm.RemoveVma(next);
            i--;
        }
    }

    /// <summary>The flags mmap_region adds to every new VMA: VM_SOFTDIRTY where the era has soft-dirty tracking.</summary>
    public static VmFlags NewVmaFlags(Kernel k) => k.Era.Has(Eras.Feature.ClearRefsSoftDirty) ? VmFlags.SoftDirty : VmFlags.None;

    /// <summary>Split VMAs so that [start, end) is covered by whole VMAs; return those VMAs.</summary>
    internal static async ValueTask<List<Vma>> SplitAround(MmStruct mm, ulong start, ulong end)
    {
        var list = new List<Vma>();
        foreach (var v in mm.Vmas.ToArray())
        {
            if (v.End <= start || v.Start >= end) continue;
            var cur = v;
            if (cur.Start < start)
            {
                await VmaAdjustTransHuge(cur, start);
                cur = mm.SplitVma(cur, start);
            }
            if (cur.End > end)
            {
                await VmaAdjustTransHuge(cur, end);
                mm.SplitVma(cur, end);
            }
            list.Add(cur);
        }
        return list;
    }

    /// <summary>
    /// __split_vma's vma_adjust_trans_huge (split_huge_pmd_if_needed): a huge PMD that the new boundary
    /// <paramref name="addr"/> would cut is split first, with its own CLEAR range, before the caller's own
    /// invalidation (mprotect's PROTECTION_VMA, munmap's UNMAP). Caller holds mmap_lock for write.
    /// </summary>
    static async ValueTask VmaAdjustTransHuge(Vma vma, ulong addr)
    {
        ulong h = addr & MmStruct.PmdMask;
        if (h == addr || vma.IsHugetlb || h < vma.Start || h + MmStruct.PmdSize > vma.End) return;
        var pmd = vma.Mm.PeekPmd(h);
        if (pmd.IsHugeOrMigrationPmd) await HugeMemory.SplitHugePmd(vma, h, notify: true);
    }

    /// <summary>
    /// exit_mmap: mmu_notifier_release first (every secondary is torn down before any page is freed), then unmap
    /// everything with unmap_vmas(0, ULONG_MAX) (interval subscriptions still see that UNMAP), free the tables.
    /// </summary>
    public static async ValueTask ExitMmap(MmStruct mm)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("exit_mmap");
        if (mm.Exited) return;
        mm.Users = 0;
        await mm.Notifiers.Release();
        await mm.MmapLock.WriteLock();
        if (mm.Vmas.Count > 0)
        {
            var tlb = new MmuGather(mm);
            await Memory.UnmapVmas(tlb, mm, 0, ulong.MaxValue);
            await tlb.Finish();
        }
        foreach (var v in mm.Vmas.ToArray()) mm.RemoveVma(v);
        foreach (var a in k.AnonVmasOf(mm)) a.Members.Remove(mm);
        mm.Exited = true;
        await mm.MmapLock.WriteUnlock();
        await k.S.Point(PointKind.Free);
        mm.FreeAllTables();
    }
}
