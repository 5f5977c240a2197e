using MmuSim.Eras;
using MmapPath = MmuSim.Mm.Mmap;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Hmm;

/// <summary>HMM_DMIRROR_PROT_*: the per-page codes of HMM_DMIRROR_SNAPSHOT (lib/test_hmm_uapi.h).</summary>
public static class DmirrorProt
{
    public const byte Error = 0xFF, None = 0x00, Read = 0x01, Write = 0x02, Pmd = 0x04, Pud = 0x08, Zero = 0x10,
        DevPrivateLocal = 0x20, DevPrivateRemote = 0x30, DevCoherentLocal = 0x40, DevCoherentRemote = 0x50;
}

/// <summary>
/// struct dmirror_device: one of lib/test_hmm.c's devices (/dev/hmm_dmirror0..3: 0-1 device-private, 2-3
/// device-coherent), with its ZONE_DEVICE memory (one <see cref="DevPagemap"/> whose owner is this device).
/// </summary>
public sealed class DmirrorDevice : IDevPagemapOps
{
    readonly Kernel _k;
    readonly Dictionary<long, Dmirror> _zoneDeviceData = [];

    DmirrorDevice(Kernel k, int id)
    {
        _k = k;
        Id = id;
        Type = id >= 2 ? MemoryType.DeviceCoherent : MemoryType.DevicePrivate;
        Pagemap = new DevPagemap(Type, this, this, $"hmm_dmirror{id}");
    }

    sealed class Devices(Kernel k)
    {
        public readonly DmirrorDevice?[] All = new DmirrorDevice?[4];
        public readonly Kernel K = k;
    }

    /// <summary>dmirror_devices[id] (hmm_dmirror_init creates all four).</summary>
    public static DmirrorDevice Get(Kernel k, int id)
    {
        var d = k.GetSubsystem(kk => new Devices(kk));
        return d.All[id] ??= new DmirrorDevice(k, id);
    }

    public int Id { get; }
    public MemoryType Type { get; }
    public DevPagemap Pagemap { get; }

    /// <summary>mdevice->calloc / cfree: device pages handed out and given back.</summary>
    public long Calloc { get; private set; }
    public long Cfree { get; private set; }

    /// <summary>One-shot FAIL_ALLOC (HMM_DMIRROR_FLAGS): the next THP allocation fails.</summary>
    internal bool FailAlloc;

    /// <summary>Live device pages and the mirror that migrated each (rpage->zone_device_data).</summary>
    public IReadOnlyCollection<long> LivePages => _zoneDeviceData.Keys;

    /// <summary>dmirror_devmem_alloc_page: one device page (refcount 1) for <paramref name="dmirror"/>; -1 if out of memory.</summary>
    internal long DevmemAllocPage(Dmirror dmirror)
    {
        long pfn = DevicePagemaps.Of(_k).ZoneDevicePageInit(Pagemap);
        if (pfn < 0) return -1;
        _zoneDeviceData[pfn] = dmirror;
        Calloc++;
        return pfn;
    }

    /// <summary>dmirror_devmem_free (->page_free): the page goes back to the device's free list.</summary>
    public void PageFree(long pfn)
    {
        _zoneDeviceData.Remove(pfn);
        Cfree++;
    }

    /// <summary>
    /// dmirror_devmem_fault (->migrate_to_ram): migrate the faulting page back to system memory with
    /// migrate_vma_setup(SELECT_DEVICE_PRIVATE, pgmap_owner = this device, fault_page), copy (erasing the mirror's
    /// entry first), migrate_vma_pages, migrate_vma_finalize.
    /// </summary>
    public async ValueTask<VmFault> MigrateToRam(MmStruct mm, Vma vma, ulong addr, long pfn)
    {
        using var _ = _k.S.Current.Enter("dmirror_devmem_fault");
        if (!_zoneDeviceData.TryGetValue(pfn, out var dmirror)) return VmFault.SigSegv;
        var args = new MigrateVma(vma, addr, addr + MmStruct.PageSize, this, MigrateVmaSelect.DevicePrivate) { FaultPage = DeviceFault.TakesFaultPageRef(_k) ? pfn : -1 };
        if (await MigrateDevice.MigrateVmaSetup(args) != 0) return VmFault.SigSegv; // VM_FAULT_SIGBUS
        if (await DevmemFaultAllocAndCopy(args, dmirror) != 0) return VmFault.Oom;
        await MigrateDevice.MigrateVmaPages(args);
        await MigrateDevice.MigrateVmaFinalize(args);
        return VmFault.Ok;
    }

    /// <summary>
    /// dmirror_devmem_fault_alloc_and_copy (6.x order): per collected device page, allocate a system page, erase the
    /// mirror's entry (xa_erase: the xarray's own lock, not the mirror mutex), then copy the contents.
    /// </summary>
    internal async ValueTask<int> DevmemFaultAllocAndCopy(MigrateVma args, Dmirror dmirror)
    {
        for (int i = 0; i < args.Npages; i++)
        {
            var s = args.Src[i];
            if (!s.Valid || !s.Migrate) continue;
            await _k.S.Point(PointKind.Alloc, args.AddressOf(i));
            long d = _k.Mem.AllocPage();
            if (d < 0) return Hmm.ENOMEM;
            await dmirror.XaErase(args.AddressOf(i));
            _k.Mem[d].Contents = _k.Mem[s.Pfn].Contents;
            _k.S.Charge(CostKind.CopyPage);
            MigrateDevice.NoteCopied(_k, s.Pfn, d);
            args.Dst[i] = MigratePfn.Of(d, s.Write);
        }
        return 0;
    }

    /// <summary>dmirror_device_evict_chunk (HMM_DMIRROR_RELEASE): migrate every page of this device back to system memory.</summary>
    internal async ValueTask<int> EvictChunk()
    {
        using var _ = _k.S.Current.Enter("dmirror_device_evict_chunk");
        var pages = new List<long>(_zoneDeviceData.Keys);
        pages.Sort();
        var owners = new Dictionary<long, Dmirror>(_zoneDeviceData);
        int moved = await MigrateDevice.MigrateDeviceRange(_k, pages, src =>
        {
            long d = _k.Mem.AllocPage();
            if (d >= 0) _k.Mem[d].Contents = _k.Mem[src].Contents;
            return new ValueTask<long>(d);
        });
        foreach (var m in new HashSet<Dmirror>(owners.Values)) await m.DropDevicePages(pages);
        return moved;
    }

    public override string ToString() => Pagemap.Name;
}

/// <summary>
/// struct dmirror (lib/test_hmm.c): one open file of a dmirror device mirroring the opener's mm. Its page table (an
/// xarray of pages tagged WRITE or ATOMIC, holding no references) is filled by hmm_range_fault under the
/// read_begin/read_retry protocol of its <see cref="MmuIntervalNotifier"/> over the whole address space, and emptied by
/// its invalidate callback, which skips the MIGRATE invalidations its own device starts.
/// </summary>
/// <remarks>
/// Locking: <see cref="_mutex"/> (dmirror->mutex) is the notifier's user lock: it protects <see cref="_pt"/>, and an
/// entry is installed only under it after mmu_interval_read_retry said no invalidation ran since read_begin. Device
/// accesses (READ/WRITE) use an entry only under the mutex. Non-blockable invalidations trylock and may refuse.
/// </remarks>
public sealed class Dmirror : MmuIntervalNotifier, ISecondaryMmu
{
    public const int Chunk = 64; // pfns[64] in dmirror_fault / dmirror_snapshot / dmirror_migrate_*

    enum Tag : byte { Read, Write, Atomic }

    readonly record struct Entry(long Pfn, ushort Gen, Tag Tag);

    readonly Kernel _k;
    readonly MmStruct _mm;
    readonly string _name;
    readonly KMutex _mutex;
    readonly Dictionary<ulong, Entry> _pt = [];

    Dmirror(Kernel k, MmStruct mm, DmirrorDevice device, string name)
    {
        _k = k;
        _mm = mm;
        Device = device;
        _name = name;
        _mutex = new KMutex(k.S, name + "->mutex");
    }

    public DmirrorDevice Device { get; }
    public override string Name => _name;
    public bool UsesStartEnd => true;
    public MmStruct MirroredMm => _mm;

    /// <summary>Entries in the mirror's page table.</summary>
    public int Entries => _pt.Count;

    /// <summary>Invalidate callbacks received, and those skipped because they were this device's own MIGRATE.</summary>
    public long Invalidations { get; private set; }
    public long SkippedOwnMigrate { get; private set; }

    /// <summary>Whether the mirror maps <paramref name="addr"/>, and how.</summary>
    public (bool Mapped, long Pfn, bool Writable, bool Atomic) Lookup(ulong addr) =>
        _pt.TryGetValue(addr >> MmStruct.PageShift, out var e) ? (true, e.Pfn, e.Tag == Tag.Write, e.Tag == Tag.Atomic) : (false, -1, false, false);

    /// <summary>dmirror_fops_open: a mirror of <paramref name="mm"/> on <paramref name="device"/>, with an interval notifier over everything.</summary>
    public static async ValueTask<Dmirror> Open(Kernel k, MmStruct mm, DmirrorDevice device, string name)
    {
        var d = new Dmirror(k, mm, device, name);
        using var _ = k.S.Current.Enter("dmirror_fops_open");
        await mm.Notifiers.IntervalInsert(d, 0, ulong.MaxValue & MmStruct.PageMask);
        k.Checker.AddSecondary(d);
        return d;
    }

    /// <summary>dmirror_fops_release: remove the interval notifier and drop the table.</summary>
    public async ValueTask Close()
    {
        using var _ = _k.S.Current.Enter("dmirror_fops_release");
        await _mm.Notifiers.IntervalRemove(this);
        await _mutex.Lock();
        _pt.Clear();
        await _mutex.Unlock();
        _k.Checker.RemoveSecondary(this);
    }

    public void CollectTranslations(List<SecondaryTranslation> into)
    {
        foreach (var (vpfn, e) in _pt)
            into.Add(new SecondaryTranslation(vpfn << MmStruct.PageShift, e.Pfn, e.Gen, e.Tag != Tag.Read, MmStruct.PageSize, _name));
    }

    // ---------------------------------------------------------------- the interval notifier

    /// <summary>
    /// dmirror_interval_invalidate: ignore this device's own MIGRATE (range->owner == mdevice); else take the mutex
    /// (trylock when non-blockable: refuse on contention), mmu_interval_set_seq, erase [start, end).
    /// </summary>
    public override async ValueTask<bool> Invalidate(MmuNotifierRange range, ulong curSeq)
    {
        using var _ = _k.S.Current.Enter("dmirror_interval_invalidate");
        if (range.Event == MmuNotifyEvent.Migrate && ReferenceEquals(range.Owner, Device))
        {
            SkippedOwnMigrate++;
            return true;
        }
        if (range.Blockable) await _mutex.Lock();
        else
        {
            await _k.S.Point(PointKind.LockAcquire);
            if (!_mutex.TryLock()) return false;
        }
        SetSeq(curSeq);
        DoUpdate(range.Start, range.End);
        Invalidations++;
        _k.Stats.Inc(Stat.DeviceInvalidations);
        await _mutex.Unlock();
        return true;
    }

    /// <summary>dmirror_do_update: erase every entry in [start, end) (the xarray holds no references).</summary>
    void DoUpdate(ulong start, ulong end)
    {
        if (_pt.Count == 0) return;
        ulong first = start >> MmStruct.PageShift, last = end >> MmStruct.PageShift;
        if (last - first <= (ulong)_pt.Count)
        {
            for (ulong v = first; v < last; v++) _pt.Remove(v);
            return;
        }
        List<ulong>? drop = null;
        foreach (var v in _pt.Keys)
            if (v >= first && v < last) (drop ??= []).Add(v);
        if (drop != null) foreach (var v in drop) _pt.Remove(v);
    }

    // ---------------------------------------------------------------- faulting (hmm_range_fault)

    /// <summary>
    /// dmirror_range_fault: read_begin, hmm_range_fault under mmap_lock (-EBUSY: again), then under the mutex
    /// read_retry (again if an invalidation ran) and dmirror_do_fault. HMM_RANGE_DEFAULT_TIMEOUT becomes a bound on
    /// attempts (-EBUSY).
    /// </summary>
    async ValueTask<int> RangeFault(HmmRange range)
    {
        using var _ = _k.S.Current.Enter("dmirror_range_fault");
        for (int attempt = 0; ; attempt++)
        {
            if (attempt >= 200) return Hmm.EBUSY;
            range.NotifierSeq = await _mm.Notifiers.IntervalReadBegin(this);
            await _mm.MmapLock.ReadLock();
            int ret = await Hmm.RangeFault(range);
            await _mm.MmapLock.ReadUnlock();
            if (ret == Hmm.EBUSY) continue;
            if (ret != 0) return ret;
            await _mutex.Lock();
            if (await _mm.Notifiers.IntervalReadRetry(this, range.NotifierSeq))
            {
                await _mutex.Unlock();
                continue;
            }
            break;
        }
        int r = DoFault(range);
        await _mutex.Unlock();
        return r;
    }

    /// <summary>dmirror_do_fault: store every pfn (WRITE tag iff HMM_PFN_WRITE). Mutex held.</summary>
    int DoFault(HmmRange range)
    {
        for (int i = 0; i < range.Pages; i++)
        {
            ulong w = range.HmmPfns[i];
            if ((w & HmmPfn.Error) != 0 || (w & HmmPfn.Valid) == 0)
                throw new ModelException($"{_name}: hmm_range_fault returned 0 with an invalid pfn at 0x{range.Start + ((ulong)i << MmStruct.PageShift):x}");
            bool write = (w & HmmPfn.Write) != 0;
            if (!write && (range.DefaultFlags & HmmPfn.ReqWrite) != 0) return Hmm.EFAULT;
            long pfn = HmmPfn.ToPfn(w);
            _pt[(range.Start >> MmStruct.PageShift) + (ulong)i] = new Entry(pfn, _k.Mem[pfn].Generation, write ? Tag.Write : Tag.Read);
        }
        return 0;
    }

    /// <summary>dmirror_fault: fault [start, end) in chunks of 64 pages, REQ_FAULT (| REQ_WRITE), owner = this device.</summary>
    async ValueTask<int> Fault(ulong start, ulong end, bool write)
    {
        using var _ = _k.S.Current.Enter("dmirror_fault");
        _k.Stats.Inc(Stat.DeviceFaults);
        if (_mm.Exited || _mm.Users <= 0) return 0; // mmget_not_zero
        for (ulong addr = start; addr < end;)
        {
            ulong next = Math.Min(addr + ((ulong)Chunk << MmStruct.PageShift), end);
            var range = new HmmRange(this, addr, next, new ulong[(next - addr) >> MmStruct.PageShift])
            {
                DefaultFlags = HmmPfn.ReqFault | (write ? HmmPfn.ReqWrite : 0),
                DevPrivateOwner = Device,
            };
            int ret = await RangeFault(range);
            if (ret != 0) return ret;
            addr = next;
        }
        return 0;
    }

    // ---------------------------------------------------------------- ioctls

    /// <summary>The result of one ioctl: return code and the cmd fields it fills in.</summary>
    public readonly record struct CmdResult(int Ret, ulong Cpages, ulong Faults);

    static int Check(ulong addr, ulong npages) =>
        (addr & ~MmStruct.PageMask) != 0 || npages == 0 || npages > (1UL << 35) || addr + (npages << MmStruct.PageShift) <= addr ? Hmm.EINVAL : 0;

    /// <summary>
    /// HMM_DMIRROR_READ (dmirror_read): copy npages from the mirror into <paramref name="into"/>; a missing entry drops
    /// the mutex, faults the rest (faults++) and tries again.
    /// </summary>
    public ValueTask<CmdResult> Read(ulong addr, ulong npages, ulong[] into) => CopyWithFaults(addr, npages, into, write: false);

    /// <summary>
    /// The loop dmirror_read and dmirror_write share: under the mutex copy what the mirror maps (dmirror_do_read /
    /// dmirror_do_write, which continue from page cpages); on a missing entry drop the mutex, fault the rest
    /// (dmirror_fault, faults++) and try again.
    /// </summary>
    async ValueTask<CmdResult> CopyWithFaults(ulong addr, ulong npages, ulong[] buffer, bool write)
    {
        using var _ = _k.S.Current.Enter(write ? "dmirror_write" : "dmirror_read");
        if (Check(addr, npages) is not 0 and var bad) return new(bad, 0, 0);
        ulong end = addr + (npages << MmStruct.PageShift), cpages = 0, faults = 0;
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            await _mutex.Lock();
            int ret = write ? DoWrite(addr, end, buffer, ref cpages) : DoRead(addr, end, buffer, ref cpages);
            await _mutex.Unlock();
            if (ret != Hmm.ENOENT) return new(ret, cpages, faults);
            ret = await Fault(addr + (cpages << MmStruct.PageShift), end, write);
            if (ret != 0) return new(ret, cpages, faults);
            faults++;
        }
        _k.S.Fail(Invariants.Liveness, $"{_name}: {(write ? "WRITE" : "READ")} at 0x{addr:x} kept faulting", addr);
        return new(Hmm.EBUSY, cpages, faults);
    }

    /// <summary>dmirror_do_read: mutex held; continues from page <paramref name="cpages"/>.</summary>
    int DoRead(ulong addr, ulong end, ulong[] into, ref ulong cpages)
    {
        for (ulong va = addr + (cpages << MmStruct.PageShift); va < end; va += MmStruct.PageSize)
        {
            if (!_pt.TryGetValue(va >> MmStruct.PageShift, out var e)) return Hmm.ENOENT;
            _k.Checker.OnSecondaryAccess(this, va, e.Pfn, e.Gen, write: false);
            into[cpages] = _k.Mem[e.Pfn].Contents;
            cpages++;
        }
        return 0;
    }

    /// <summary>HMM_DMIRROR_WRITE (dmirror_write): copy npages into the pages the mirror maps with the WRITE tag.</summary>
    public ValueTask<CmdResult> Write(ulong addr, ulong npages, ulong[] from) => CopyWithFaults(addr, npages, from, write: true);

    int DoWrite(ulong addr, ulong end, ulong[] from, ref ulong cpages)
    {
        for (ulong va = addr + (cpages << MmStruct.PageShift); va < end; va += MmStruct.PageSize)
        {
            if (!_pt.TryGetValue(va >> MmStruct.PageShift, out var e) || e.Tag != Tag.Write) return Hmm.ENOENT;
            _k.Checker.OnSecondaryAccess(this, va, e.Pfn, e.Gen, write: true);
            if (_k.S.Violation != null) return Hmm.EFAULT;
            _k.Mem[e.Pfn].Contents = from[cpages];
            cpages++;
        }
        return 0;
    }

    /// <summary>
    /// HMM_DMIRROR_MIGRATE_TO_DEV (dmirror_migrate_to_device; HMM_DMIRROR_MIGRATE before 6.0): per VMA chunk,
    /// migrate_vma_setup(SELECT_SYSTEM, owner = device), allocate device pages and copy, migrate_vma_pages, map them
    /// in the mirror, migrate_vma_finalize; then read the range back through the mirror (-ENOENT if a page did not move).
    /// </summary>
    public async ValueTask<CmdResult> MigrateToDev(ulong addr, ulong npages, ulong[] into)
    {
        using var _ = _k.S.Current.Enter("dmirror_migrate_to_device");
        if (Check(addr, npages) is not 0 and var bad) return new(bad, 0, 0);
        ulong end = addr + (npages << MmStruct.PageShift);
        if (_mm.Exited || _mm.Users <= 0) return new(Hmm.EINVAL, 0, 0);
        await _mm.MmapLock.ReadLock();
        for (ulong a = addr; a < end;)
        {
            var vma = _mm.FindVma(a);
            if (vma == null || a < vma.Start || !vma.Readable)
            {
                await _mm.MmapLock.ReadUnlock();
                return new(Hmm.EINVAL, 0, 0);
            }
            ulong next = Math.Min(Math.Min(end, a + ((ulong)Chunk << MmStruct.PageShift)), vma.End);
            var args = new MigrateVma(vma, a, next, Device, MigrateVmaSelect.System);
            int r = await MigrateDevice.MigrateVmaSetup(args);
            if (r != 0)
            {
                await _mm.MmapLock.ReadUnlock();
                return new(r, 0, 0);
            }
            MigrateAllocAndCopy(args);
            await MigrateDevice.MigrateVmaPages(args);
            await MigrateFinalizeAndMap(args);
            await MigrateDevice.MigrateVmaFinalize(args);
            a = next;
        }
        await _mm.MmapLock.ReadUnlock();
        ulong cpages = 0;
        await _mutex.Lock();
        int ret = DoRead(addr, end, into, ref cpages);
        await _mutex.Unlock();
        return new(ret, cpages, 0);
    }

    /// <summary>dmirror_migrate_alloc_and_copy: a device page per collected slot (none for other devices' pages).</summary>
    void MigrateAllocAndCopy(MigrateVma args)
    {
        var pgmaps = DevicePagemaps.Of(_k);
        for (int i = 0; i < args.Npages; i++)
        {
            var s = args.Src[i];
            if (!s.Migrate) continue;
            if (s.Valid && pgmaps.PgmapOf(s.Pfn) != null) continue; // never migrate device pages (ours or others')
            long d = Device.DevmemAllocPage(this);
            if (d < 0) continue;
            _k.Mem[d].Contents = s.Valid ? _k.Mem[s.Pfn].Contents : 0;
            _k.S.Charge(CostKind.CopyPage);
            if (s.Valid) MigrateDevice.NoteCopied(_k, s.Pfn, d);
            bool write = s.Write || (!s.Valid && args.Vma.Writable);
            args.Dst[i] = MigratePfn.Of(d, write);
        }
    }

    /// <summary>dmirror_migrate_finalize_and_map: map the migrated pages in the mirror (WRITE tag if writable).</summary>
    async ValueTask MigrateFinalizeAndMap(MigrateVma args)
    {
        await _mutex.Lock();
        for (int i = 0; i < args.Npages; i++)
        {
            var s = args.Src[i];
            var d = args.Dst[i];
            if (!s.Migrate || !d.Valid) continue;
            _pt[args.AddressOf(i) >> MmStruct.PageShift] = new Entry(d.Pfn, _k.Mem[d.Pfn].Generation, d.Write ? Tag.Write : Tag.Read);
        }
        await _mutex.Unlock();
    }

    /// <summary>xa_erase of one page: atomic on the xarray (its internal lock); the mirror mutex is not taken.</summary>
    internal async ValueTask XaErase(ulong addr)
    {
        await _k.S.Point(PointKind.Counter, addr);
        _pt.Remove(addr >> MmStruct.PageShift);
    }

    /// <summary>Erase every mirror entry that points at one of <paramref name="pages"/> (after an eviction).</summary>
    internal async ValueTask DropDevicePages(List<long> pages)
    {
        await _mutex.Lock();
        List<ulong>? drop = null;
        foreach (var (v, e) in _pt)
            if (pages.BinarySearch(e.Pfn) >= 0) (drop ??= []).Add(v);
        if (drop != null) foreach (var v in drop) _pt.Remove(v);
        await _mutex.Unlock();
    }

    /// <summary>
    /// HMM_DMIRROR_MIGRATE_TO_SYS (dmirror_migrate_to_system, 6.0+): migrate this device's pages in the range back to
    /// system memory (SELECT_DEVICE_PRIVATE or _COHERENT). cpages counts the pages collected.
    /// </summary>
    public async ValueTask<CmdResult> MigrateToSys(ulong addr, ulong npages)
    {
        using var _ = _k.S.Current.Enter("dmirror_migrate_to_system");
        if (!_k.Era.Has(Feature.DeviceCoherent)) return new(Hmm.EINVAL, 0, 0);
        if (Check(addr, npages) is not 0 and var bad) return new(bad, 0, 0);
        ulong end = addr + (npages << MmStruct.PageShift), cpages = 0;
        if (_mm.Exited || _mm.Users <= 0) return new(Hmm.EINVAL, 0, 0);
        await _mm.MmapLock.ReadLock();
        for (ulong a = addr; a < end;)
        {
            var vma = _mm.FindVma(a);
            if (vma == null || a < vma.Start || !vma.Readable)
            {
                await _mm.MmapLock.ReadUnlock();
                return new(Hmm.EINVAL, cpages, 0);
            }
            ulong next = Math.Min(Math.Min(end, a + ((ulong)Chunk << MmStruct.PageShift)), vma.End);
            var sel = Device.Type == MemoryType.DeviceCoherent ? MigrateVmaSelect.DeviceCoherent : MigrateVmaSelect.DevicePrivate;
            var args = new MigrateVma(vma, a, next, Device, sel);
            int r = await MigrateDevice.MigrateVmaSetup(args);
            if (r != 0)
            {
                await _mm.MmapLock.ReadUnlock();
                return new(r, cpages, 0);
            }
            cpages += (ulong)args.Cpages;
            if (await Device.DevmemFaultAllocAndCopy(args, this) != 0)
            {
                await _mm.MmapLock.ReadUnlock();
                return new(Hmm.ENOMEM, cpages, 0);
            }
            await MigrateDevice.MigrateVmaPages(args);
            await MigrateDevice.MigrateVmaFinalize(args);
            a = next;
        }
        await _mm.MmapLock.ReadUnlock();
        return new(0, cpages, 0);
    }

    /// <summary>
    /// HMM_DMIRROR_SNAPSHOT (dmirror_snapshot): per 64-page chunk, a temporary interval notifier over the chunk, then
    /// hmm_range_fault without fault flags under the read_begin/read_retry loop, and one HMM_DMIRROR_PROT_* code per page.
    /// </summary>
    public async ValueTask<CmdResult> Snapshot(ulong addr, ulong npages, byte[] perm)
    {
        using var _ = _k.S.Current.Enter("dmirror_snapshot");
        if (Check(addr, npages) is not 0 and var bad) return new(bad, 0, 0);
        if (_mm.Exited || _mm.Users <= 0) return new(Hmm.EINVAL, 0, 0);
        ulong end = addr + (npages << MmStruct.PageShift), cpages = 0;
        for (ulong a = addr; a < end;)
        {
            ulong next = Math.Min(a + ((ulong)Chunk << MmStruct.PageShift), end);
            int ret = await RangeSnapshot(a, next, perm, (int)cpages);
            if (ret != 0) return new(ret, cpages, 0);
            cpages += (next - a) >> MmStruct.PageShift;
            a = next;
        }
        return new(0, cpages, 0);
    }

    /// <summary>dmirror_snapshot_invalidate: a snapshot only needs the sequence bumped.</summary>
    sealed class SnapshotNotifier(Dmirror d) : MmuIntervalNotifier
    {
        public override string Name => d._name + "-snapshot";

        public override async ValueTask<bool> Invalidate(MmuNotifierRange range, ulong curSeq)
        {
            if (range.Blockable) await d._mutex.Lock();
            else
            {
                await d._k.S.Point(PointKind.LockAcquire);
                if (!d._mutex.TryLock()) return false;
            }
            SetSeq(curSeq);
            await d._mutex.Unlock();
            return true;
        }
    }

    /// <summary>dmirror_range_snapshot.</summary>
    async ValueTask<int> RangeSnapshot(ulong start, ulong end, byte[] perm, int offset)
    {
        var notifier = new SnapshotNotifier(this);
        await _mm.Notifiers.IntervalInsert(notifier, start, end - start);
        var range = new HmmRange(notifier, start, end, new ulong[(end - start) >> MmStruct.PageShift]) { DevPrivateOwner = Device };
        int ret = 0;
        for (int attempt = 0; ; attempt++)
        {
            if (attempt >= 200) { ret = Hmm.EBUSY; break; }
            range.NotifierSeq = await _mm.Notifiers.IntervalReadBegin(notifier);
            Array.Clear(range.HmmPfns);
            await _mm.MmapLock.ReadLock();
            ret = await Hmm.RangeFault(range);
            await _mm.MmapLock.ReadUnlock();
            if (ret == Hmm.EBUSY) continue;
            if (ret != 0) break;
            await _mutex.Lock();
            if (await _mm.Notifiers.IntervalReadRetry(notifier, range.NotifierSeq))
            {
                await _mutex.Unlock();
                continue;
            }
            for (int i = 0; i < range.Pages; i++) perm[offset + i] = MkEntry(range.HmmPfns[i]);
            await _mutex.Unlock();
            break;
        }
        await _mm.Notifiers.IntervalRemove(notifier);
        return ret;
    }

    /// <summary>dmirror_mkentry: the HMM_DMIRROR_PROT_* code of one hmm_pfns word.</summary>
    byte MkEntry(ulong entry)
    {
        if ((entry & HmmPfn.Error) != 0) return DmirrorProt.Error;
        if ((entry & HmmPfn.Valid) == 0) return DmirrorProt.None;
        long pfn = HmmPfn.ToPfn(entry);
        var pgmap = DevicePagemaps.Of(_k).PgmapOf(pfn);
        byte perm;
        if (pgmap?.Type == MemoryType.DevicePrivate)
            perm = ReferenceEquals(pgmap.Owner, Device) ? DmirrorProt.DevPrivateLocal : DmirrorProt.DevPrivateRemote;
        else if (pgmap?.Type == MemoryType.DeviceCoherent)
            perm = ReferenceEquals(pgmap.Owner, Device) ? DmirrorProt.DevCoherentLocal : DmirrorProt.DevCoherentRemote;
        else if (pfn == PhysMem.ZeroPfn) perm = DmirrorProt.Zero;
        else perm = DmirrorProt.None;
        perm |= (entry & HmmPfn.Write) != 0 ? DmirrorProt.Write : DmirrorProt.Read;
        if (HmmPfn.MapOrder(entry) == PhysMem.HugeOrder) perm |= DmirrorProt.Pmd;
        return perm;
    }

    /// <summary>
    /// HMM_DMIRROR_EXCLUSIVE (dmirror_exclusive, 5.14+): make every page device-exclusive (make_device_exclusive,
    /// owner NULL), map them in the mirror with the ATOMIC tag, then read the range back through the mirror.
    /// </summary>
    public async ValueTask<CmdResult> Exclusive(ulong addr, ulong npages, ulong[] into)
    {
        using var _ = _k.S.Current.Enter("dmirror_exclusive");
        if (!_k.Era.Has(Feature.DeviceExclusive)) return new(Hmm.EINVAL, 0, 0);
        if (Check(addr, npages) is not 0 and var bad) return new(bad, 0, 0);
        if (_mm.Exited || _mm.Users <= 0) return new(Hmm.EINVAL, 0, 0);
        ulong end = addr + (npages << MmStruct.PageShift);
        await _mm.MmapLock.ReadLock();
        for (ulong a = addr; a < end; a += MmStruct.PageSize)
        {
            long page = await DeviceExclusive.MakeDeviceExclusive(_mm, a, owner: null);
            if (page < 0)
            {
                await _mm.MmapLock.ReadUnlock();
                return new(Hmm.EBUSY, 0, 0);
            }
            // dmirror_atomic_map: under the mutex, map it ATOMIC; then unlock and put the GUP reference.
            await _mutex.Lock();
            _pt[a >> MmStruct.PageShift] = new Entry(page, _k.Mem[page].Generation, Tag.Atomic);
            await _mutex.Unlock();
            Folio.Put(_k, page);
        }
        await _mm.MmapLock.ReadUnlock();
        ulong cpages = 0;
        await _mutex.Lock();
        int ret = DoRead(addr, end, into, ref cpages);
        await _mutex.Unlock();
        return new(ret, cpages, 0);
    }

    /// <summary>HMM_DMIRROR_CHECK_EXCLUSIVE (dmirror_check_atomic): -EPERM if any page of the range is still mapped ATOMIC.</summary>
    public async ValueTask<CmdResult> CheckExclusive(ulong addr, ulong npages)
    {
        if (!_k.Era.Has(Feature.DeviceExclusive)) return new(Hmm.EINVAL, 0, 0);
        if (Check(addr, npages) is not 0 and var bad) return new(bad, 0, 0);
        int ret = 0;
        await _mutex.Lock();
        for (ulong v = addr >> MmStruct.PageShift; v < (addr >> MmStruct.PageShift) + npages; v++)
            if (_pt.TryGetValue(v, out var e) && e.Tag == Tag.Atomic) ret = Hmm.EPERM;
        await _mutex.Unlock();
        return new(ret, 0, 0);
    }

    /// <summary>HMM_DMIRROR_RELEASE (6.1+): evict all of the device's memory back to system memory.</summary>
    public async ValueTask<CmdResult> Release()
    {
        if (!_k.Era.Has(Feature.MigrateDeviceRange)) return new(Hmm.EINVAL, 0, 0);
        await Device.EvictChunk();
        return new(0, 0, 0);
    }

    /// <summary>HMM_DMIRROR_FLAGS: FAIL_ALLOC (1) makes the next device THP allocation fail (eras with device THP).</summary>
    public CmdResult Flags(ulong flags)
    {
        if (!_k.Era.Has(Feature.DevicePrivateThp)) return new(Hmm.EINVAL, 0, 0);
        Device.FailAlloc = (flags & 1) != 0;
        return new(0, 0, 0);
    }

    /// <summary>
    /// dmirror_fops_mmap: mmap of the device file: a private mapping at <paramref name="addr"/> where every page is a
    /// fresh zeroed kernel page inserted read-only with vm_insert_page (VM_MIXEDMAP; not anonymous, not special).
    /// </summary>
    public async ValueTask<int> Mmap(ulong addr, ulong npages)
    {
        using var _ = _k.S.Current.Enter("dmirror_fops_mmap");
        ulong len = npages << MmStruct.PageShift;
        var vma = await MmapPath.DoMmap(_mm, addr, len, Prot.Read | Prot.Write, VmFlags.None, _name);
        for (ulong a = addr; a < addr + len; a += MmStruct.PageSize)
        {
            // vm_insert_page -> insert_page: mk_pte with the private mapping's (read-only) vm_page_prot.
            await _k.S.Point(PointKind.Alloc, a);
            long page = _k.Mem.AllocPage();
            if (page < 0) return Hmm.ENOMEM;
            int t = _mm.PteAllocAt(_mm.PmdAlloc(a), a);
            await _mm.LockPtl(t);
            _k.Mem[page].MapCount = 1;
            _mm.RssAnon++;
            await _mm.SetPte(t, a, Pte.Make(page, writable: false));
            await _mm.UnlockPtl(t);
        }
        return 0;
    }

    public override string ToString() => _name;
}
