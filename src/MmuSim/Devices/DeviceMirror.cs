using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Devices;

/// <summary>
/// A minimal device that mirrors a process's address space with its own software page table, in the style of
/// lib/test_hmm.c's dmirror: faults go through get_user_pages and are installed under the device lock only if no
/// invalidation ran meanwhile (a sequence count plus an in-progress count, the same collision protocol KVM uses);
/// invalidate_range_start drops the range's entries. Its translations are visible to the checker, so a primary path
/// that forgets to notify (or a mutation that skips the notification) is caught as a stale translation.
/// </summary>
/// <remarks>
/// Locking: <see cref="_lock"/> is a spinlock (callbacks run atomic before 3.7) protecting <see cref="_pt"/>,
/// <see cref="_seq"/> and <see cref="_inProgress"/>. GUP runs with it dropped. Invariant: while
/// <see cref="_inProgress"/> &gt; 0 no entry is installed, and an entry installed after a sequence sample is dropped
/// unless <see cref="_seq"/> is unchanged.
/// </remarks>
public sealed class DeviceMirror : MmuNotifier, ISecondaryMmu
{
    readonly Kernel _k;
    readonly MmStruct _mm;
    readonly string _name;
    readonly KSpinLock _lock;
    readonly Dictionary<ulong, (long Pfn, ushort Gen, bool Writable)> _pt = [];
    ulong _seq;
    int _inProgress;

    public DeviceMirror(Kernel k, MmStruct mm, string name)
    {
        _k = k;
        _mm = mm;
        _name = name;
        _lock = new KSpinLock(k.S, name + "->lock");
    }

    public override NotifierOps Ops => NotifierOps.Release | NotifierOps.InvalidatePage |
        NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd;

    public override string Name => _name;

    public bool UsesStartEnd => true;

    public MmStruct MirroredMm => _mm;

    public int Entries => _pt.Count;

    public void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var (hva, e) in _pt) into.Add(new SecondaryTranslation(hva, e.Pfn, e.Gen, e.Writable, MmStruct.PageSize, _name));
    }

    /// <summary>dmirror_fault + the device access: read (or write) <paramref name="addr"/> through the mirror. Null on -EFAULT.</summary>
    public async ValueTask<ulong?> Access(ulong addr, bool write, ulong value = 0)
    {
        using var _ = _k.S.Current.Enter(write ? "dmirror_write" : "dmirror_read");
        addr &= MmStruct.PageMask;
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            await _lock.Lock();
            if (_pt.TryGetValue(addr, out var e) && (!write || e.Writable))
            {
                _k.Checker.OnSecondaryAccess(this, addr, e.Pfn, e.Gen, write);
                ulong r;
                if (write) { _k.Mem[e.Pfn].Contents = value; r = value; }
                else r = _k.Mem[e.Pfn].Contents;
                await _lock.Unlock();
                return r;
            }
            await _lock.Unlock();

            // dmirror_fault: sample the sequence, fault through GUP, install only if nothing invalidated meanwhile.
            using var f = _k.S.Current.Enter("dmirror_fault");
            _k.Stats.Inc(Stat.DeviceFaults);
            await _k.S.Point(PointKind.Counter);
            ulong seq = _seq;
            var g = await Gup.GetUserPage(_mm, addr, write);
            if (!g.Ok) return null;
            await _lock.Lock();
            if (_inProgress == 0 && _seq == seq)
                _pt[addr] = (g.Pfn, g.Generation, g.Writable);
            await _lock.Unlock();
            Folio.Put(_k, g.Pfn);
        }
        _k.S.Fail(Invariants.Liveness, $"{_name}: fault at 0x{addr:x} kept retrying", addr);
        return null;
    }

    void Drop(ulong start, ulong end)
    {
        if (_pt.Count == 0) return;
        foreach (var hva in _pt.Keys.ToArray())
            if (hva >= start && hva < end) _pt.Remove(hva);
    }

    public override async ValueTask<int> InvalidateRangeStart(MmuNotifierRange range)
    {
        await _lock.Lock();
        _inProgress++;
        Drop(range.Start, range.End);
        _k.Stats.Inc(Stat.DeviceInvalidations);
        await _lock.Unlock();
        return 0;
    }

    public override async ValueTask InvalidateRangeEnd(MmuNotifierRange range)
    {
        await _lock.Lock();
        _seq++;
        _inProgress--;
        await _lock.Unlock();
    }

    /// <summary>invalidate_page (until 4.12): drop one page and bump the sequence.</summary>
    public override async ValueTask InvalidatePage(MmStruct mm, ulong address)
    {
        await _lock.Lock();
        Drop(address, address + MmStruct.PageSize);
        _seq++;
        _k.Stats.Inc(Stat.DeviceInvalidations);
        await _lock.Unlock();
    }

    public override async ValueTask Release(MmStruct mm)
    {
        await _lock.Lock();
        _pt.Clear();
        _seq++;
        await _lock.Unlock();
    }
}
