using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;
using MmuSim.Secondary;

namespace MmuSim.Devices;

/// <summary>
/// Xen's grant-table device (drivers/xen/gntdev.c) as an mm notifier user: a process maps pages that another domain
/// granted, and gntdev's interval notifier (gntdev_invalidate, 5.7+: mmu_interval_notifier) unmaps the grants of any
/// range the process unmaps. Until 5.19 the unmap was synchronous: unmap_grant_pages → gnttab_unmap_refs_sync waits,
/// re-polling from a delayed work (__gnttab_unmap_refs_async), until no page of the range has a reference beyond its
/// mappings (page_count(page) &gt; 1, from 745282256c75 "safely unmap grants in case they are still in use"). If
/// whoever holds that reference waits for the same invalidation to finish, neither moves: the QubesOS deadlock
/// against i915 (catalog e8). dbe97cff7dd9 "xen/gntdev: Avoid blocking in unmap_grant_pages()" (Demi Marie Obenour,
/// 5.19-rc4, Cc stable) makes the unmap asynchronous: the notifier starts it, takes a reference on the map and returns.
/// </summary>
/// <remarks>
/// Model: the grant pages are the process's own pages of the range (a real gntdev maps foreign frames that gntdev
/// allocated), so "a reference beyond its mappings" is a frame whose refcount exceeds its mapcount (a GUP pin, a
/// get_page). The delayed-work poll is a <see cref="Scheduler.SpinWait"/> on those refcounts (it repeats without
/// effect until one changes), so a wait that nothing can end is a liveness violation, not an unrolled loop. The
/// asynchronous unmap's completion is not modelled (it does not touch any mm or notifier state). Holds no
/// translations: the grant mappings are the primary PTEs themselves.
/// Locking: gntdev's priv->lock (a mutex) is taken around the unmap, as gntdev_invalidate does under map-&gt;priv-&gt;lock;
/// the frames' refcounts are read at a scheduling point each poll.
/// </remarks>
[SecondaryDriver(Name = "gntdev", Description = "Xen gntdev: an interval notifier that unmaps grants, waiting for their pages to be unused before 5.19", ExplicitOnly = true)]
[RequiresFeature(Feature.IntervalNotifier)]
public sealed class GntdevDriver : SecondaryDriver
{
    readonly DeviceLock _lock;
    readonly GntdevNotifier _notifier;

    /// <summary>Create the driver; <see cref="Bind"/> inserts its interval notifier over the mapping.</summary>
    public GntdevDriver(DriverContext context) : base(context)
    {
        _lock = context.CreateLock("priv->lock", sleeping: true);
        _notifier = new GntdevNotifier(this);
    }

    /// <summary>Invalidations that waited for a page to become unused.</summary>
    public int Waits { get; private set; }

    /// <summary>Invalidations that started an asynchronous unmap (5.19+).</summary>
    public int AsyncUnmaps { get; private set; }

    /// <summary>The grant mappings are the primary PTEs: no secondary translation to check.</summary>
    public override bool UsesStartEnd => false;

    /// <summary>gntdev_mmap → mmu_interval_notifier_insert over the mapping.</summary>
    public override ValueTask Bind() => Context.MmuIntervalNotifierInsert(_notifier, Context.Start, Context.Length);

    /// <summary>gntdev_vma_close / gntdev_put_map: mmu_interval_notifier_remove.</summary>
    public override ValueTask Unbind() => Context.MmuIntervalNotifierRemove(_notifier);

    /// <summary>The granting domain reads the page (through its own mapping of the grant): a GUP-like look-up, no translation kept.</summary>
    public override async ValueTask<ulong?> Read(ulong address)
    {
        using var _ = Context.Enter("gntdev_grant_read");
        var page = await Context.GetUserPages(address, write: false);
        if (!page.Ok) return null;
        ulong v = await Context.DeviceRead(page.ToTranslation(Name));
        Context.PutPage(page);
        return v;
    }

    /// <summary>The granting domain writes the page.</summary>
    public override async ValueTask<bool> Write(ulong address, ulong value)
    {
        using var _ = Context.Enter("gntdev_grant_write");
        var page = await Context.GetUserPages(address, write: true);
        if (!page.Ok) return false;
        await Context.DeviceWrite(page.ToTranslation(Name), value);
        Context.PutPage(page);
        return true;
    }

    /// <summary>No translations of its own.</summary>
    public override void CollectTranslations(List<SecondaryTranslation> into) { }

    /// <summary>
    /// unmap_grant_pages (before 5.19): gnttab_unmap_refs_sync, i.e. poll until no frame mapped in
    /// [<paramref name="start"/>, <paramref name="end"/>) has a reference beyond its mappings.
    /// </summary>
    async ValueTask UnmapGrantPagesSync(ulong start, ulong end)
    {
        using var _ = Context.Enter("gnttab_unmap_refs_sync");
        var k = Context.Kernel;
        bool waited = false;
        while (true)
        {
            await k.S.Point(PointKind.Counter, start); // page_count() of each grant page
            var busy = new BusyPages(k);
            for (ulong va = start; va < end; va += MmStruct.PageSize)
            {
                var pte = Context.Mm.PeekPte(va);
                if (!pte.Present || pte.Pfn <= 0) continue;
                ref var f = ref k.Mem[pte.Pfn];
                if (f.Has(PageFlags.Head | PageFlags.Tail | PageFlags.Zero)) continue; // THP subpages: not modelled
                if (f.RefCount > f.MapCount) busy.Add(pte.Pfn, f.RefCount);
            }
            if (busy.Count == 0) return;
            if (!waited) { Waits++; waited = true; }
            // __gnttab_unmap_refs_async: "page_count(item->pages[pc]) > 1" → schedule_delayed_work and try again.
            await k.S.SpinWait(busy, "gnttab_unmap_refs_sync (a grant page is still in use)");
        }
    }

    /// <summary>The refcounts one poll saw; the next poll can differ only once one of them changes.</summary>
    sealed class BusyPages(Kernel k) : ISpinWaiter
    {
        readonly List<(long Pfn, int Ref)> _seen = [];

        public int Count => _seen.Count;

        public void Add(long pfn, int refcount) => _seen.Add((pfn, refcount));

        public bool InputsChanged
        {
            get
            {
                foreach (var (pfn, r) in _seen)
                    if (k.Mem[pfn].RefCount != r) return true;
                return false;
            }
        }
    }

    /// <summary>gntdev_invalidate (mmu_interval_notifier_ops.invalidate).</summary>
    sealed class GntdevNotifier(GntdevDriver d) : MmuIntervalNotifier
    {
        public override string Name => d.Name;

        /// <summary>
        /// gntdev_invalidate: false for a non-blockable range; else set the sequence and, under priv->lock,
        /// unmap_if_in_range → unmap_grant_pages: synchronous before 5.19 (waits for the pages to be unused),
        /// asynchronous from dbe97cff7dd9.
        /// </summary>
        public override async ValueTask<bool> Invalidate(MmuNotifierRange range, ulong curSeq)
        {
            using var _ = d.Context.Enter("gntdev_invalidate");
            if (!range.Blockable) return false;
            await d._lock.Lock();
            SetSeq(curSeq);
            ulong start = Math.Max(range.Start, Start), end = Math.Min(range.End, End);
            d.Context.CountInvalidation();
            if (d.Context.Has(Feature.GntdevAsyncUnmap) && !d.Context.Kernel.Mutated(Mutation.GntdevSyncUnmap))
                d.AsyncUnmaps++; // __unmap_grant_pages with a done callback; a reference on the map keeps it alive
            else
                await d.UnmapGrantPagesSync(start, end);
            await d._lock.Unlock();
            return true;
        }
    }
}
