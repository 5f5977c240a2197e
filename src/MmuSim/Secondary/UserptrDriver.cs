using MmuSim.Eras;
using MmuSim.Notifier;

namespace MmuSim.Secondary;

/// <summary>
/// The reference user secondary: a userptr-style GPU driver (amdgpu/xe userptr, i915 userptr after 5.x) that mirrors a
/// user buffer in its own device page table, kept coherent by one <see cref="MmuIntervalNotifier"/> over the buffer.
/// Faults follow the read_begin / get_user_pages / lock / read_retry protocol; the invalidate callback takes the same
/// lock, sets the sequence and zaps the range. It is the driver of docs/your-secondary-mmu.md and of the
/// <c>mmusim-secondary</c> template, and the default driver of the <c>secondary</c> op.
/// </summary>
[SecondaryDriver(Name = "userptr", Description = "userptr GPU driver with an interval notifier (reference)")]
[RequiresFeature(Feature.IntervalNotifier)]
public sealed class UserptrDriver : SecondaryDriver
{
    readonly DeviceLock _lock;
    readonly Dictionary<ulong, SecondaryTranslation> _gpuPt = [];
    readonly UserptrNotifier _notifier;

    /// <summary>Create the driver; <see cref="Bind"/> subscribes it.</summary>
    public UserptrDriver(DriverContext context) : base(context)
    {
        _lock = context.CreateLock("notifier_lock", sleeping: true);
        _notifier = new UserptrNotifier(this);
    }

    /// <summary>Device page-table entries now installed.</summary>
    public int Entries => _gpuPt.Count;

    /// <summary>mmu_interval_notifier_insert over the user buffer.</summary>
    public override ValueTask Bind() => Context.MmuIntervalNotifierInsert(_notifier, Context.Start, Context.Length);

    /// <summary>mmu_interval_notifier_remove, then drop the device page table.</summary>
    public override async ValueTask Unbind()
    {
        await Context.MmuIntervalNotifierRemove(_notifier);
        await _lock.Lock();
        _gpuPt.Clear();
        await _lock.Unlock();
    }

    /// <summary>A GPU read through the device page table, faulting on a miss.</summary>
    public override async ValueTask<ulong?> Read(ulong address)
    {
        using var _ = Context.Enter("userptr_read");
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            await _lock.Lock();
            if (_gpuPt.TryGetValue(address, out var t))
            {
                ulong v = await Context.DeviceRead(t);
                await _lock.Unlock();
                return v;
            }
            await _lock.Unlock();
            if (!await Fault(address, write: false)) return null;
        }
        return null;
    }

    /// <summary>A GPU write through the device page table, faulting (for write) on a miss or a read-only entry.</summary>
    public override async ValueTask<bool> Write(ulong address, ulong value)
    {
        using var _ = Context.Enter("userptr_write");
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            await _lock.Lock();
            if (_gpuPt.TryGetValue(address, out var t) && t.Writable)
            {
                await Context.DeviceWrite(t, value);
                await _lock.Unlock();
                return true;
            }
            await _lock.Unlock();
            if (!await Fault(address, write: true)) return false;
        }
        return false;
    }

    /// <summary>userptr_fault: read_begin, get_user_pages, then install under the lock unless read_retry says an invalidation ran.</summary>
    async ValueTask<bool> Fault(ulong address, bool write)
    {
        using var _ = Context.Enter("userptr_fault");
        Context.CountFault();
        while (true)
        {
            ulong seq = await Context.MmuIntervalReadBegin(_notifier);
            var page = await Context.GetUserPages(address, write);
            if (!page.Ok) return false;
            await _lock.Lock();
            if (await Context.MmuIntervalReadRetry(_notifier, seq))
            {
                // An invalidation ran since read_begin: the page may already be unmapped (and freed after our put).
                await _lock.Unlock();
                Context.PutPage(page);
                continue;
            }
            _gpuPt[address] = page.ToTranslation(Name);
            await _lock.Unlock();
            Context.PutPage(page);
            return true;
        }
    }

    /// <summary>Every installed device page-table entry.</summary>
    public override void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var t in _gpuPt.Values) into.Add(t);
    }

    /// <summary>ops->invalidate: under the notifier lock, set the sequence and zap the range's entries.</summary>
    sealed class UserptrNotifier(UserptrDriver d) : MmuIntervalNotifier
    {
        public override string Name => d.Name;

        public override async ValueTask<bool> Invalidate(MmuNotifierRange range, ulong curSeq)
        {
            if (!range.Blockable) return false; // the notifier lock is a mutex
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
