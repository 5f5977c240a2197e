using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Secondary;

namespace MmuSim.Devices;

/// <summary>
/// i915's userptr objects as reworked onto interval notifiers (drivers/gpu/drm/i915/gem/i915_gem_userptr.c, 5.14+):
/// an object pins its user pages (pin_user_pages_fast) at submission and keeps them pinned until the next submission
/// or put_pages. i915_gem_userptr_invalidate only sets the sequence and waits for the GPU ("we will unbind on next
/// submission, still have userptr pins"), and i915_gem_object_userptr_submit_init begins with
/// mmu_interval_read_begin, which sleeps while the object's interval is being invalidated, before it drops the old
/// pins. That is the half of the QubesOS deadlock (catalog e8) that waits for gntdev's notifier to finish while
/// holding the pages gntdev waits for.
/// </summary>
/// <remarks>
/// Model: one object over the whole buffer; a device access is one execbuf that uses one page. The GPU page-table
/// entries of the range are dropped by the invalidate callback (the GPU is idle after dma_resv_wait_timeout, and the
/// next submission rebinds), but the pins stay until the next submit_init, as in i915. Locking: the
/// notifier_lock (a rwlock in i915, a spinlock here: held only around the sequence and the GPU page table).
/// </remarks>
[SecondaryDriver(Name = "i915-userptr", Description = "i915 userptr object: pins its pages until the next submission, which begins with mmu_interval_read_begin", ExplicitOnly = true)]
[RequiresFeature(Feature.IntervalNotifier)]
public sealed class I915UserptrDriver : SecondaryDriver
{
    readonly DeviceLock _lock;
    readonly I915Notifier _notifier;
    readonly Dictionary<ulong, SecondaryTranslation> _gpuPt = [];
    readonly List<DevicePage> _pvec = [];

    /// <summary>Create the driver; <see cref="Bind"/> inserts the object's interval notifier.</summary>
    public I915UserptrDriver(DriverContext context) : base(context)
    {
        _lock = context.CreateLock("notifier_lock", sleeping: false);
        _notifier = new I915Notifier(this);
    }

    /// <summary>Pages the object holds pinned now.</summary>
    public int Pinned => _pvec.Count;

    /// <summary>i915_gem_userptr_ioctl → i915_gem_userptr_init__mmu_notifier: mmu_interval_notifier_insert.</summary>
    public override ValueTask Bind() => Context.MmuIntervalNotifierInsert(_notifier, Context.Start, Context.Length);

    /// <summary>Object release: remove the notifier, then unpin (i915_gem_userptr_release, put_pages).</summary>
    public override async ValueTask Unbind()
    {
        await Context.MmuIntervalNotifierRemove(_notifier);
        await _lock.Lock();
        _gpuPt.Clear();
        await _lock.Unlock();
        PutPages();
    }

    /// <summary>A batch that reads <paramref name="address"/>: submit_init (pin, bind), then the GPU's load.</summary>
    public override async ValueTask<ulong?> Read(ulong address)
    {
        using var _ = Context.Enter("i915_gem_do_execbuffer");
        ulong v = 0;
        bool ok = await Execbuffer(address, write: false, async t => v = await Context.DeviceRead(t));
        return ok ? v : null;
    }

    /// <summary>A batch that writes <paramref name="address"/>.</summary>
    public override async ValueTask<bool> Write(ulong address, ulong value)
    {
        using var _ = Context.Enter("i915_gem_do_execbuffer");
        return await Execbuffer(address, write: true, t => Context.DeviceWrite(t, value));
    }

    /// <summary>
    /// Submit a batch that accesses <paramref name="address"/>: submit_init, then run it while the binding stands. The
    /// batch runs under the notifier_lock: the model's stand-in for the GPU fence that i915_gem_userptr_invalidate
    /// waits for (dma_resv_wait_timeout), so an invalidation either precedes the batch (which then rebinds) or waits
    /// for it to finish.
    /// </summary>
    async ValueTask<bool> Execbuffer(ulong address, bool write, Func<SecondaryTranslation, ValueTask> batch)
    {
        ulong page = address & ~(DriverContext.PageSize - 1);
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            if (!await SubmitInit(address, write)) return false;
            await _lock.Lock();
            if (_gpuPt.TryGetValue(page, out var t) && (t.Writable || !write))
            {
                await batch(t);
                await _lock.Unlock();
                return true;
            }
            await _lock.Unlock();
        }
        return false;
    }

    /// <summary>
    /// i915_gem_object_userptr_submit_init: mmu_interval_read_begin (sleeps while the interval is invalidated), then
    /// drop the previous submission's pins (the old pvec), pin the page, and bind it under the notifier_lock unless
    /// mmu_interval_read_retry says an invalidation ran (-EAGAIN: unpin and start again).
    /// </summary>
    async ValueTask<bool> SubmitInit(ulong address, bool write)
    {
        using var _ = Context.Enter("i915_gem_object_userptr_submit_init");
        Context.CountFault();
        while (true)
        {
            ulong seq = await Context.MmuIntervalReadBegin(_notifier);
            PutPages();
            var page = await Context.GetUserPages(address, write); // pin_user_pages_fast: the reference is kept
            if (!page.Ok) return false;
            await _lock.Lock();
            if (await Context.MmuIntervalReadRetry(_notifier, seq))
            {
                await _lock.Unlock();
                Context.PutPage(page);
                continue;
            }
            _pvec.Add(page);
            _gpuPt[address & ~(DriverContext.PageSize - 1)] = page.ToTranslation(Name);
            await _lock.Unlock();
            return true;
        }
    }

    /// <summary>i915_gem_userptr_put_pages → unpin_user_pages of the object's pvec.</summary>
    void PutPages()
    {
        foreach (var p in _pvec) Context.PutPage(p);
        _pvec.Clear();
    }

    /// <summary>Every GPU page-table entry now bound.</summary>
    public override void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var t in _gpuPt.Values) into.Add(t);
    }

    /// <summary>i915_gem_userptr_invalidate.</summary>
    sealed class I915Notifier(I915UserptrDriver d) : MmuIntervalNotifier
    {
        public override string Name => d.Name;

        /// <summary>
        /// i915_gem_userptr_invalidate: false for a non-blockable range; set the sequence under the notifier_lock;
        /// wait for the GPU (idle here) and drop the range's GPU bindings. The pins stay until the next submission.
        /// </summary>
        public override async ValueTask<bool> Invalidate(MmuNotifierRange range, ulong curSeq)
        {
            using var _ = d.Context.Enter("i915_gem_userptr_invalidate");
            if (!range.Blockable) return false;
            await d._lock.Lock();
            SetSeq(curSeq);
            foreach (var hva in d._gpuPt.Keys)
                if (range.Overlaps(hva, hva + DriverContext.PageSize)) d._gpuPt.Remove(hva);
            d.Context.CountInvalidation();
            await d._lock.Unlock();
            return true;
        }
    }
}
