using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>kernel/fork.c: the mm half of fork.</summary>
public static class Fork
{
    /// <summary>
    /// dup_mmap: a new mm (<see cref="Kernel.CreateMm"/>) with a copy of every VMA of <paramref name="parent"/> except
    /// VM_DONTCOPY ones (a VM_WIPEONFORK VMA is copied empty: no anon_vma, no page copy); each copy joins its parent VMA's anon_vma family (anon_vma_fork) and keeps vm_pgoff, so rmap
    /// finds the child's mappings; copy_page_range copies the PTEs (COW). Holds the parent's mmap_lock for write;
    /// flush_tlb_mm(oldmm) runs after the copy, before the lock is dropped.
    /// </summary>
    public static async ValueTask<MmStruct> DupMmap(MmStruct parent, string childName)
    {
        var k = parent.Kernel;
        using var _ = k.S.Current.Enter("dup_mmap");
        await parent.MmapLock.WriteLock();
        var child = k.CreateMm(childName);
        var forks = new List<(Userfaultfd.UserfaultfdCtx Orig, Userfaultfd.UserfaultfdCtx New)>(); // the fcs list
        try
        {
            ulong lo = ulong.MaxValue, hi = 0;
            for (int i = 0; i < parent.Vmas.Count; i++)
            {
                var src = parent.Vmas[i];
                if ((src.Flags & VmFlags.DontCopy) != 0) continue;
                // VM_WIPEONFORK: tmp->anon_vma = NULL and no copy_page_range; the child faults in fresh zero pages.
                bool wipe = (src.Flags & VmFlags.WipeOnFork) != 0;
                // dup_userfaultfd: registered with the child's new context (UFFD_FEATURE_EVENT_FORK), else not at all.
                var uffd = Userfaultfd.UserfaultfdCtx.DupUserfaultfd(src, child, forks);
                var dst = child.InsertVma(new Vma(child, src.Start, src.End, src.Prot, uffd != null ? src.Flags : src.Flags & ~VmFlags.UffdAny)
                {
                    Uffd = uffd,
                    PgOff = src.PgOff,
                    AnonVma = wipe ? null : src.AnonVma,
                    File = src.File,
                    Name = src.Name,
                    PolicyNode = src.PolicyNode, // vma_dup_policy
                });
                if (wipe) continue;
                if (src.AnonVma != null && !src.AnonVma.Members.Contains(child)) src.AnonVma.Members.Add(child);
                await Memory.CopyPageRange(dst, src);
                lo = Math.Min(lo, src.Start);
                hi = Math.Max(hi, src.End);
            }
            if (hi > lo) await Tlb.FlushTlbRange(parent, lo, hi);
        }
        finally
        {
            await parent.MmapLock.WriteUnlock();
        }
        await Userfaultfd.UserfaultfdCtx.DupUserfaultfdComplete(forks); // UFFD_EVENT_FORK, waited for after the lock is dropped
        // ksm_fork: a child of a KSM-registered (or merge-any) mm is registered with ksmd too.
        if (parent.KsmSlot != null || parent.MergeAny) Ksm.Ksmd.Of(parent.Kernel).KsmFork(parent, child);
        return child;
    }
}
