using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Secondary;

namespace MyDriver;

/// <summary>
/// A userptr-style GPU driver: the GPU maps a user buffer through its own page table, faulted in with
/// get_user_pages and kept coherent by an interval notifier over the buffer (the amdgpu/xe userptr pattern).
/// Explore it: <c>mmusim explore --secondary bin/Debug/net10.0/MyDriver.dll</c>.
/// </summary>
[SecondaryDriver(Name = "userptr", Description = "userptr GPU driver with an interval notifier")]
[RequiresFeature(Feature.IntervalNotifier)] // mmu_interval_notifier exists from 5.5: older eras are n/a
public class UserptrDriver : SecondaryDriver
{
    readonly DeviceLock _lock;                                   // the driver's notifier lock
    readonly Dictionary<ulong, SecondaryTranslation> _gpuPt = []; // the GPU page table: user address -> page
    readonly Notifier _notifier;

    public UserptrDriver(DriverContext context) : base(context)
    {
        _lock = context.CreateLock("notifier_lock", sleeping: true);
        _notifier = new Notifier(this);
    }

    /// <summary>Set false by the buggy variant: install the faulted page without asking read_retry.</summary>
    protected virtual bool UsesReadRetry => true;

    // Subscribe to the buffer the scenario hands the device.
    public override ValueTask Bind() => Context.MmuIntervalNotifierInsert(_notifier, Context.Start, Context.Length);

    public override async ValueTask Unbind()
    {
        await Context.MmuIntervalNotifierRemove(_notifier);
        await _lock.Lock();
        _gpuPt.Clear();
        await _lock.Unlock();
    }

    public override async ValueTask<ulong?> Read(ulong address)
    {
        using var _ = Context.Enter("my_gpu_read");
        for (int attempt = 0; attempt < 100; attempt++)
        {
            await _lock.Lock();
            if (_gpuPt.TryGetValue(address, out var t))
            {
                ulong value = await Context.DeviceRead(t); // the checker sees every device access
                await _lock.Unlock();
                return value;
            }
            await _lock.Unlock();
            if (!await Fault(address, write: false)) return null;
        }
        return null;
    }

    public override async ValueTask<bool> Write(ulong address, ulong value)
    {
        using var _ = Context.Enter("my_gpu_write");
        for (int attempt = 0; attempt < 100; attempt++)
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

    // The interval-notifier fault protocol: read_begin, fault the page, lock, read_retry, install.
    async ValueTask<bool> Fault(ulong address, bool write)
    {
        using var _ = Context.Enter("my_gpu_fault");
        Context.CountFault();
        while (true)
        {
            ulong seq = await Context.MmuIntervalReadBegin(_notifier);
            var page = await Context.GetUserPages(address, write);
            if (!page.Ok) return false;                       // -EFAULT
            await _lock.Lock();
            if (UsesReadRetry && await Context.MmuIntervalReadRetry(_notifier, seq))
            {
                await _lock.Unlock();                          // an invalidation ran: the page may be stale
                Context.PutPage(page);
                continue;
            }
            _gpuPt[address] = page.ToTranslation(Name);
            await _lock.Unlock();
            Context.PutPage(page);
            return true;
        }
    }

    // What the checker compares with the CPU page tables after every step.
    public override void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var t in _gpuPt.Values) into.Add(t);
    }

    sealed class Notifier(UserptrDriver driver) : MmuIntervalNotifier
    {
        public override string Name => driver.Name;

        // ops->invalidate: under the notifier lock, publish the new sequence and zap the range.
        public override async ValueTask<bool> Invalidate(MmuNotifierRange range, ulong curSeq)
        {
            if (!range.Blockable) return false;                // the lock is a mutex: the OOM reaper must retry
            await driver._lock.Lock();
            SetSeq(curSeq);
            foreach (var hva in driver._gpuPt.Keys)
                if (range.Overlaps(hva, hva + DriverContext.PageSize)) driver._gpuPt.Remove(hva);
            driver.Context.CountInvalidation();
            await driver._lock.Unlock();
            return true;
        }
    }
}
