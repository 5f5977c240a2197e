using MmuSim.Eras;
using MmuSim.Notifier;
using MmuSim.Secondary;

namespace MmuSim.Tests.Secondary;

/// <summary>The reference userptr driver with the classic bug: it never calls read_retry, so a page faulted before an invalidation is installed after it.</summary>
[RequiresFeature(Feature.IntervalNotifier)]
public sealed class NoRetryUserptrDriver(DriverContext ctx) : SecondaryDriver(ctx)
{
    readonly DeviceLock _lock = ctx.CreateLock("lock", sleeping: true);
    readonly Dictionary<ulong, SecondaryTranslation> _pt = [];
    Sub? _sub;

    sealed class Sub(NoRetryUserptrDriver d) : MmuIntervalNotifier
    {
        public override async ValueTask<bool> Invalidate(MmuNotifierRange range, ulong curSeq)
        {
            if (!range.Blockable) return false;
            await d._lock.Lock();
            SetSeq(curSeq);
            foreach (var hva in d._pt.Keys)
                if (range.Overlaps(hva, hva + DriverContext.PageSize)) d._pt.Remove(hva);
            await d._lock.Unlock();
            return true;
        }
    }

    public override ValueTask Bind() => Context.MmuIntervalNotifierInsert(_sub = new Sub(this), Context.Start, Context.Length);

    public override async ValueTask<ulong?> Read(ulong address)
    {
        for (int i = 0; i < 4; i++)
        {
            await _lock.Lock();
            if (_pt.TryGetValue(address, out var t))
            {
                var v = await Context.DeviceRead(t);
                await _lock.Unlock();
                return v;
            }
            await _lock.Unlock();
            await Context.MmuIntervalReadBegin(_sub!);
            var page = await Context.GetUserPages(address, write: false);
            if (!page.Ok) return null;
            await _lock.Lock();
            _pt[address] = page.ToTranslation(Name); // BUG: no MmuIntervalReadRetry
            await _lock.Unlock();
            Context.PutPage(page);
        }
        return null;
    }

    public override async ValueTask<bool> Write(ulong address, ulong value)
    {
        await _lock.Lock();
        bool hit = _pt.TryGetValue(address, out var t) && t.Writable;
        if (hit) await Context.DeviceWrite(t, value);
        await _lock.Unlock();
        return hit;
    }

    public override void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var t in _pt.Values) into.Add(t);
    }
}

/// <summary>
/// The mmu_notifier route, usable in every era: start/end with an in-progress count and a sequence (KVM's protocol),
/// plus invalidate_page for the eras that have it (until 4.12).
/// </summary>
public sealed class NotifierMirrorDriver : SecondaryDriver
{
    readonly DeviceLock _lock;
    readonly Dictionary<ulong, SecondaryTranslation> _pt = [];
    readonly Mn _mn;
    ulong _seq;
    int _inProgress;

    public NotifierMirrorDriver(DriverContext ctx) : base(ctx)
    {
        _lock = ctx.CreateLock("lock", sleeping: false);
        _mn = new Mn(this);
    }

    sealed class Mn(NotifierMirrorDriver d) : MmuNotifier
    {
        public override NotifierOps Ops => NotifierOps.Release | NotifierOps.InvalidatePage | NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd;

        public override string Name => d.Name;

        public override async ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
        {
            await d._lock.Lock();
            d._inProgress++;
            d.Drop(range.Start, range.End);
            await d._lock.Unlock();
            return 0;
        }

        public override async ValueTask InvalidateRangeEnd(MmuNotifierRange range)
        {
            await d._lock.Lock();
            d._seq++;
            d._inProgress--;
            await d._lock.Unlock();
        }

        public override async ValueTask InvalidatePage(MmuSim.Mm.MmStruct mm, ulong address)
        {
            await d._lock.Lock();
            d.Drop(address, address + DriverContext.PageSize);
            d._seq++;
            await d._lock.Unlock();
        }

        public override async ValueTask Release(MmuSim.Mm.MmStruct mm)
        {
            await d._lock.Lock();
            d._pt.Clear();
            await d._lock.Unlock();
        }
    }

    void Drop(ulong start, ulong end)
    {
        foreach (var hva in _pt.Keys)
            if (hva >= start && hva < end) _pt.Remove(hva);
    }

    public override async ValueTask Bind() => Assert.Equal(0, await Context.MmuNotifierRegister(_mn));

    public override async ValueTask<ulong?> Read(ulong address)
    {
        var t = await Translate(address, write: false);
        if (t is not { } tr) return null;
        var v = await Context.DeviceRead(tr);
        await _lock.Unlock();
        return v;
    }

    public override async ValueTask<bool> Write(ulong address, ulong value)
    {
        var t = await Translate(address, write: true);
        if (t is not { } tr) return false;
        await Context.DeviceWrite(tr, value);
        await _lock.Unlock();
        return true;
    }

    /// <summary>Returns with the lock held and a usable translation, or null (lock dropped) on -EFAULT.</summary>
    async ValueTask<SecondaryTranslation?> Translate(ulong address, bool write)
    {
        for (int i = 0; i < 100; i++)
        {
            await _lock.Lock();
            if (_pt.TryGetValue(address, out var t) && (!write || t.Writable)) return t;
            ulong seq = _seq;
            await _lock.Unlock();
            var page = await Context.GetUserPages(address, write);
            if (!page.Ok) return null;
            await _lock.Lock();
            if (_inProgress == 0 && _seq == seq) _pt[address] = page.ToTranslation(Name);
            await _lock.Unlock();
            Context.PutPage(page);
        }
        return null;
    }

    public override void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var t in _pt.Values) into.Add(t);
    }
}

/// <summary>A driver with a plain C# bug (it throws on its first read): reported as the driver's fault, exit 1, not as a model error.</summary>
[SecondaryDriver(Name = "throwing", ExplicitOnly = true)]
public sealed class ThrowingDriver(DriverContext ctx) : SecondaryDriver(ctx)
{
    public override ValueTask Bind() => default;

    public override async ValueTask<ulong?> Read(ulong address)
    {
        await Context.SchedulingPoint(address);
        throw new InvalidOperationException($"no GPU page table at 0x{address:x}");
    }

    public override ValueTask<bool> Write(ulong address, ulong value) => new(false);

    public override void CollectTranslations(List<SecondaryTranslation> into) { }
}
