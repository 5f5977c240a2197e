using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// mm/mempolicy.c reduced to what the selftests use: mbind(MPOL_BIND) of a range to one node, with MPOL_MF_MOVE,
/// MPOL_MF_MOVE_ALL and MPOL_MF_STRICT. The policy lives on the VMA (<see cref="Vma.PolicyNode"/>, split at the range's
/// edges like mbind_range, copied by fork and mremap); interleave, preferred and the task policy are not modelled.
/// </summary>
public static class Mempolicy
{
    /// <summary>
    /// do_mbind: bind [start, start+len) to <paramref name="node"/> (-EINVAL for a node without memory, -EFAULT for a
    /// hole in the range) and, with <paramref name="move"/>, migrate the folios mapped there that sit elsewhere
    /// (queue_pages_range: without <paramref name="all"/> only folios mapped once); with <paramref name="strict"/> a
    /// folio left on another node makes the call -EIO. mmap_lock is held for write throughout, as do_mbind holds it.
    /// </summary>
    public static async ValueTask<int> DoMbind(MmStruct mm, ulong start, ulong len, int node, bool move, bool all, bool strict)
    {
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("do_mbind");
        if (node >= k.Mem.Nodes) return Errno.EINVAL;
        ulong end = start + len;
        await mm.MmapLock.WriteLock();
        try
        {
            ulong covered = start;
            foreach (var v in mm.Vmas)
            {
                if (v.End <= start || v.Start >= end) continue;
                if (v.Start > covered) return Errno.EFAULT;
                covered = Math.Min(end, v.End);
            }
            if (covered < end) return Errno.EFAULT;
            // queue_pages_range: the folios to move (each head once), and whether one must stay behind
            var queue = new List<long>();
            bool leftBehind = false;
            for (ulong a = start; a < end; a += MmStruct.PageSize)
            {
                await k.S.Point(PointKind.PteRead, a);
                var (present, pfn, _, _) = mm.Translate(a);
                if (!present || pfn == PhysMem.ZeroPfn) continue;
                long head = k.Mem.FolioOf(pfn);
                if (k.Mem.NodeOf(head) == node || queue.Contains(head)) continue;
                if (!move || (k.Mem.FolioMapCount(head) > 1 && !all)) leftBehind = true;
                else queue.Add(head);
            }
            foreach (var v in await Mmap.SplitAround(mm, start, end)) v.PolicyNode = node; // mbind_range
            Mmap.VmaMergeAround(mm, start, end);
            foreach (var head in queue)
                if (await Migrate.MigrateFolio(k, head, node) < 0) leftBehind = true;
            return strict && leftBehind ? Errno.EIO : 0;
        }
        finally { await mm.MmapLock.WriteUnlock(); }
    }
}
