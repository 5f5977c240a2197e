using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Hmm;

/// <summary>One src[]/dst[] word of struct migrate_vma: migrate_pfn(pfn) | MIGRATE_PFN_VALID/MIGRATE/WRITE.</summary>
public struct MigratePfn
{
    /// <summary>The page, when <see cref="Valid"/>.</summary>
    public long Pfn;
    /// <summary>MIGRATE_PFN_VALID: there is a page (false: pte_none or the zero page).</summary>
    public bool Valid;
    /// <summary>MIGRATE_PFN_MIGRATE: the slot is being migrated.</summary>
    public bool Migrate;
    /// <summary>MIGRATE_PFN_WRITE: the mapping was (or the destination must be) writable.</summary>
    public bool Write;

    public static MigratePfn Of(long pfn, bool write) => new() { Pfn = pfn, Valid = true, Write = write };

    public override readonly string ToString() => Valid ? $"0x{Pfn:x}{(Migrate ? " M" : "")}{(Write ? " W" : "")}" : Migrate ? "none M" : "-";
}

/// <summary>enum migrate_vma_direction: which source pages migrate_vma_setup collects.</summary>
[Flags]
public enum MigrateVmaSelect : byte
{
    System = 1,
    DevicePrivate = 2,
    DeviceCoherent = 4,
}

/// <summary>struct migrate_vma: one migration of [Start, End) of one VMA.</summary>
public sealed class MigrateVma(Vma vma, ulong start, ulong end, object? pgmapOwner, MigrateVmaSelect flags)
{
    public Vma Vma { get; } = vma;
    public ulong Start { get; } = start;
    public ulong End { get; } = end;
    public MigratePfn[] Src { get; } = new MigratePfn[(end - start) >> MmStruct.PageShift];
    public MigratePfn[] Dst { get; } = new MigratePfn[(end - start) >> MmStruct.PageShift];
    public object? PgmapOwner { get; } = pgmapOwner;
    public MigrateVmaSelect Flags { get; } = flags;

    /// <summary>Pages collected for migration (MIGRATE set).</summary>
    public int Cpages { get; internal set; }

    /// <summary>The device page a CPU fault is migrating back (migrate_vma.fault_page): it holds the fault's reference.</summary>
    public long FaultPage { get; init; } = -1;

    public int Npages => Src.Length;
    public ulong AddressOf(int i) => Start + ((ulong)i << MmStruct.PageShift);
}

/// <summary>
/// mm/migrate_device.c (mm/migrate.c before 5.18): migration to and from ZONE_DEVICE memory, driven by the driver.
/// The driver calls <see cref="MigrateVmaSetup"/> (collect + unmap: migration entries), allocates and copies the
/// destination pages into <see cref="MigrateVma.Dst"/>, then <see cref="MigrateVmaPages"/> and
/// <see cref="MigrateVmaFinalize"/>. <see cref="MigrateDeviceRange"/> evicts device pages by pfn (dmirror RELEASE).
/// </summary>
public static class MigrateDevice
{
    /// <summary>Pages collected by a migrate_vma / migrate_device_range that has not finalized them yet.</summary>
    sealed class Collected
    {
        /// <summary>Source pfn -> its destination once the driver copied it (<see cref="NoteCopied"/>; -1 before).</summary>
        public readonly Dictionary<long, long> Pfns = [];
    }

    static Dictionary<long, long> CollectedSet(Kernel k) => k.GetSubsystem(_ => new Collected()).Pfns;

    /// <summary>
    /// Whether a translation to <paramref name="pfn"/> is coherent with a migration entry for <paramref name="src"/>:
    /// the source is locked in a device migration (collect .. finalize) and <paramref name="pfn"/> is the source or
    /// its destination. <paramref name="writeLost"/>: a write through it now would be lost (it targets the source after
    /// the driver copied it to the destination).
    /// </summary>
    public static bool IsCollected(Kernel k, long src, long pfn, out bool writeLost)
    {
        writeLost = false;
        if (!k.Subsystems.ContainsKey(typeof(Collected)) || !CollectedSet(k).TryGetValue(src, out var dst)) return false;
        writeLost = pfn == src && dst >= 0;
        return pfn == src || (dst >= 0 && dst == pfn);
    }

    /// <summary>The driver copied collected page <paramref name="src"/> into <paramref name="dst"/> (alloc_and_copy).</summary>
    public static void NoteCopied(Kernel k, long src, long dst)
    {
        var set = CollectedSet(k);
        if (set.ContainsKey(src)) set[src] = dst;
    }

    static MmuNotifyEvent MigrateEvent(Kernel k) => k.Era.Has(Feature.MigrateEventOwner) ? MmuNotifyEvent.Migrate : MmuNotifyEvent.Clear;

    static object? EventOwner(Kernel k, object? owner) => k.Era.Has(Feature.MigrateEventOwner) ? owner : null;

    /// <summary>
    /// migrate_vma_setup: validate the range (-EINVAL unless page aligned and inside the VMA), collect the source pages
    /// under an invalidation (MMU_NOTIFY_MIGRATE with owner = pgmap_owner from 5.9) replacing their PTEs by migration
    /// entries, then unmap any other mapping and drop the pages that cannot be migrated.
    /// </summary>
    public static async ValueTask<int> MigrateVmaSetup(MigrateVma args)
    {
        var vma = args.Vma;
        if (((args.Start | args.End) & ~MmStruct.PageMask) != 0 || args.Start >= args.End) return Hmm.EINVAL;
        if (args.Start < vma.Start || args.End > vma.End) return Hmm.EINVAL;
        await MigrateVmaCollect(args);
        if (args.Cpages > 0) await MigrateVmaUnmap(args);
        return 0;
    }

    /// <summary>migrate_vma_collect: walk the range under an invalidation; migrate_vma_collect_pmd per page table.</summary>
    static async ValueTask MigrateVmaCollect(MigrateVma args)
    {
        var vma = args.Vma;
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("migrate_vma_collect");
        var range = new MmuNotifierRange(mm, args.Start, args.End, MigrateEvent(k), EventOwner(k, args.PgmapOwner));
        await mm.Notifiers.InvalidateRangeStart(range);
        bool unmapped = false;
        for (int i = 0; i < args.Npages; i++)
        {
            ulong a = args.AddressOf(i);
            var pmd = mm.PeekPmd(a);
            if (pmd.Present && pmd.Huge)
            {
                // No device THP in this era: split the PMD mapping, then the folio (split_folio), and collect the
                // PTEs (migrate_vma_collect_pmd). A folio still PMD-mapped elsewhere stays whole and is skipped.
                await HugeMemory.SplitHugePmd(vma, a & MmStruct.PmdMask, notify: true);
                long head = k.Mem.FolioOf(pmd.Pfn);
                await k.S.Point(PointKind.Counter, (ulong)head);
                if (head != PhysMem.ZeroPfn && k.Mem.IsLarge(head) && k.Mem.EntireMapcountHolder(head).RefCount == 0)
                    k.Mem.SplitFolio(head);
            }
            int t = mm.PteTable(a);
            if (t == 0)
            {
                // migrate_vma_collect_hole: an empty anonymous slot can be populated by the destination.
                if (IsAnonymous(vma)) { args.Src[i] = new MigratePfn { Migrate = true }; args.Cpages++; }
                continue;
            }
            await mm.LockPtl(t);
            unmapped |= await CollectPte(args, i, a, t);
            await mm.UnlockPtl(t);
        }
        if (unmapped) await Tlb.FlushTlbRange(mm, args.Start, args.End);
        await mm.Notifiers.InvalidateRangeEnd(range);
    }

    /// <summary>vma_is_anonymous: a private anonymous mapping (no shmem object).</summary>
    static bool IsAnonymous(Vma vma) => !vma.Shared && vma.File == null;

    /// <summary>The per-PTE part of migrate_vma_collect_pmd. PTL held. True when a PTE was replaced (a TLB flush is owed).</summary>
    static async ValueTask<bool> CollectPte(MigrateVma args, int i, ulong a, int t)
    {
        var vma = args.Vma;
        var mm = vma.Mm;
        var k = mm.Kernel;
        var pgmaps = DevicePagemaps.Of(k);
        var pte = await mm.PtepGet(t, a);
        long page;
        bool write;
        if (pte.IsNone)
        {
            if (IsAnonymous(vma)) { args.Src[i] = new MigratePfn { Migrate = true }; args.Cpages++; }
            return false;
        }
        if (!pte.Present)
        {
            if (!pte.IsDevicePrivate) return false;
            var pgmap = pgmaps.PgmapOf(pte.Pfn);
            if ((args.Flags & MigrateVmaSelect.DevicePrivate) == 0 || pgmap == null || !ReferenceEquals(pgmap.Owner, args.PgmapOwner)) return false;
            page = pte.Pfn;
            write = pte.IsWritableEntry;
        }
        else
        {
            if (pte.ProtNone) return false;
            if (pte.Special || pte.Pfn == PhysMem.ZeroPfn)
            {
                // The zero page: nothing to copy, the destination replaces it.
                if (pte.Pfn == PhysMem.ZeroPfn && IsAnonymous(vma) && (args.Flags & MigrateVmaSelect.System) != 0)
                {
                    args.Src[i] = new MigratePfn { Migrate = true };
                    args.Cpages++;
                }
                return false;
            }
            page = pte.Pfn;
            var pgmap = pgmaps.PgmapOf(page);
            if (pgmap == null && (args.Flags & MigrateVmaSelect.System) == 0) return false;
            if (pgmap != null && (pgmap.Type != MemoryType.DeviceCoherent || (args.Flags & MigrateVmaSelect.DeviceCoherent) == 0 ||
                                  !ReferenceEquals(pgmap.Owner, args.PgmapOwner))) return false;
            long head = k.Mem.FolioOf(page);
            if (k.Mem.IsLarge(head))
            {
                // A PTE-mapped THP (after mremap or a partial split): migrate_vma_split_folio, then collect 4K pages.
                if (k.Mem.EntireMapcountHolder(head).RefCount != 0) return false;
                k.Mem.SplitFolio(head);
            }
            if (k.Mem[page].Has(PageFlags.Ksm) || !k.Mem[page].Has(PageFlags.Anon)) return false;
            write = pte.Writable;
            if (pte.Dirty) Folio.MarkDirty(k, page);
        }
        // folio_get + folio_trylock; ptep_get_and_clear; the migration entry takes the PTE's place; the PTE's
        // reference and mapcount are dropped (the collect's reference remains). A page another migration collected
        // is locked by it until it restores or finalizes the page (the collected set stands for that folio lock):
        // the trylock fails and the page is skipped.
        if (CollectedSet(k).ContainsKey(page)) return false;
        Folio.Get(k, page);
        await mm.PtepGetAndClear(t, a);
        await mm.SetPte(t, a, Migrate.MakeMigrationEntry(k, write, page, pte, exclusive: false));
        Folio.RemoveRmap(k, page, mm);
        Folio.Put(k, page);
        args.Src[i] = MigratePfn.Of(page, write);
        args.Src[i].Migrate = true;
        args.Cpages++;
        CollectedSet(k)[page] = -1;
        return pte.Present;
    }

    /// <summary>
    /// migrate_vma_unmap / migrate_device_unmap: pages still mapped elsewhere (fork) get migration entries there too
    /// (try_to_migrate); a page with references beyond ours (and the faulting CPU's) cannot migrate and is restored.
    /// </summary>
    static async ValueTask MigrateVmaUnmap(MigrateVma args)
    {
        var k = args.Vma.Mm.Kernel;
        using var _ = k.S.Current.Enter("migrate_vma_unmap");
        for (int i = 0; i < args.Npages; i++)
        {
            ref var s = ref args.Src[i];
            if (!s.Valid || !s.Migrate) continue;
            long page = s.Pfn;
            if (k.Mem[page].MapCount > 0) await TryToMigrateDevice(k, page);
            await k.S.Point(PointKind.Counter, (ulong)page);
            int extra = 1 + (page == args.FaultPage ? 1 : 0);
            if (k.Mem[page].MapCount != 0 || k.Mem[page].RefCount != extra)
            {
                // migrate_vma_check_page failed: restore the mappings and drop the page from the migration.
                await RemoveMigrationPtes(k, page, page);
                CollectedSet(k).Remove(page);
                Folio.Put(k, page);
                args.Src[i].Migrate = false;
                args.Src[i].Valid = false;
                args.Cpages--;
            }
        }
    }

    /// <summary>try_to_migrate for a page mapped in other mms too: each mapping becomes a migration entry (S/E CLEAR).</summary>
    static ValueTask TryToMigrateDevice(Kernel k, long page) =>
        Rmap.RmapWalk(k, page, async (vma, addr, first, count) =>
        {
            var mm = vma.Mm;
            int t = mm.PteTable(addr);
            var peek = mm.PeekPte(addr);
            if (t == 0 || peek.Pfn != page || !(peek.Present || peek.IsDevicePrivate)) return true;
            var range = new MmuNotifierRange(mm, addr, addr + MmStruct.PageSize, MmuNotifyEvent.Clear);
            await mm.Notifiers.InvalidateRangeStart(range);
            await mm.LockPtl(t);
            var pte = await mm.PtepGet(t, addr);
            if (pte.Pfn == page && (pte.Present || pte.IsDevicePrivate))
            {
                bool write = pte.Present ? pte.Writable : pte.IsWritableEntry;
                if (pte.Present) await Tlb.PtepClearFlush(mm, t, addr);
                else await mm.PtepGetAndClear(t, addr);
                if (pte.Present && pte.Dirty) Folio.MarkDirty(k, page);
                await mm.SetPte(t, addr, Migrate.MakeMigrationEntry(k, write, page, pte, exclusive: false));
                Folio.RemoveRmap(k, page, mm);
                Folio.Put(k, page);
            }
            await mm.UnlockPtl(t);
            await mm.Notifiers.InvalidateRangeEnd(range);
            return true;
        }, () => k.Mem[page].MapCount == 0);

    /// <summary>
    /// migrate_vma_pages: move each collected page's state to its destination (folio_migrate_mapping + flags; the
    /// driver copied the contents). Slots without a source page get the destination inserted
    /// (migrate_vma_insert_page) inside one MIGRATE invalidation started at the first such slot.
    /// </summary>
    public static async ValueTask MigrateVmaPages(MigrateVma args)
    {
        var vma = args.Vma;
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("migrate_vma_pages");
        MmuNotifierRange? range = null;
        for (int i = 0; i < args.Npages; i++)
        {
            var s = args.Src[i];
            var d = args.Dst[i];
            if (!d.Valid)
            {
                args.Src[i].Migrate = false;
                continue;
            }
            if (!s.Valid)
            {
                if (!s.Migrate) continue;
                if (range == null)
                {
                    range = new MmuNotifierRange(mm, args.AddressOf(i), args.End, MigrateEvent(k), EventOwner(k, args.PgmapOwner));
                    await mm.Notifiers.InvalidateRangeStart(range);
                }
                if (!await MigrateVmaInsertPage(args, i)) args.Src[i].Migrate = false;
                continue;
            }
            if (!IsAnonymous(vma) && DevicePagemaps.Of(k).PgmapOf(d.Pfn) != null)
            {
                // Only anonymous memory migrates to device memory.
                args.Src[i].Migrate = false;
                continue;
            }
            await k.S.Point(PointKind.Counter, (ulong)s.Pfn);
            // folio_migrate_flags: the destination becomes the same anonymous page (rmap identity, dirty state).
            CopyIdentity(k, s.Pfn, d.Pfn);
        }
        if (range != null) await mm.Notifiers.InvalidateRangeOnlyEnd(range);
    }

    /// <summary>folio_migrate_flags + the anon mapping: the destination takes over the source's rmap identity and state.</summary>
    static void CopyIdentity(Kernel k, long from, long to)
    {
        ref var src = ref k.Mem[from];
        ref var dst = ref k.Mem[to];
        const PageFlags keep = PageFlags.Dirty | PageFlags.Anon | PageFlags.AnonExclusive | PageFlags.Referenced;
        dst.Flags = (dst.Flags & ~keep) | (src.Flags & keep);
        dst.AnonRoot = src.AnonRoot;
        dst.Index = src.Index;
    }

    /// <summary>migrate_vma_insert_page: map the destination where there was nothing (or the zero page). PTL taken here.</summary>
    static async ValueTask<bool> MigrateVmaInsertPage(MigrateVma args, int i)
    {
        var vma = args.Vma;
        var mm = vma.Mm;
        var k = mm.Kernel;
        using var _ = k.S.Current.Enter("migrate_vma_insert_page");
        ulong a = args.AddressOf(i);
        var d = args.Dst[i];
        if (!IsAnonymous(vma)) return false;
        int pmdT = mm.PmdAlloc(a);
        int t = mm.PteAllocAt(pmdT, a);
        if (t == 0) return false;
        mm.AnonVmaPrepare(vma);
        await mm.LockPtl(t);
        var pte = await mm.PtepGet(t, a);
        bool zero = pte.Present && pte.Pfn == PhysMem.ZeroPfn;
        if (!pte.IsNone && !zero)
        {
            await mm.UnlockPtl(t);
            return false;
        }
        if (zero) await Tlb.PtepClearFlush(mm, t, a);
        Folio.AddNewAnonRmap(k, d.Pfn, vma, a);
        Folio.Get(k, d.Pfn);
        bool write = d.Write && vma.Writable;
        await mm.SetPte(t, a, MapEntryFor(k, d.Pfn, write));
        await mm.UnlockPtl(t);
        return true;
    }

    /// <summary>The entry that maps <paramref name="pfn"/>: a device-private entry for device-private memory, else a PTE.</summary>
    static Pte MapEntryFor(Kernel k, long pfn, bool write) =>
        DevicePagemaps.Of(k).IsDevicePrivatePage(pfn)
            ? Pte.SwapEntry(write ? SwapType.DevicePrivateWrite : SwapType.DevicePrivateRead, pfn)
            : Pte.Make(pfn, write, dirty: write);

    /// <summary>
    /// migrate_vma_finalize / migrate_device_finalize: replace the migration entries by the destination (or restore the
    /// source where the slot did not migrate), then drop the collect's and the allocation's references. The source
    /// page is freed here (a device page goes back to its driver through page_free).
    /// </summary>
    public static async ValueTask MigrateVmaFinalize(MigrateVma args) => await MigrateDeviceFinalize(args.Vma.Mm.Kernel, args.Src, args.Dst);

    static async ValueTask MigrateDeviceFinalize(Kernel k, MigratePfn[] srcs, MigratePfn[] dsts)
    {
        using var _ = k.S.Current.Enter("migrate_device_finalize");
        for (int i = 0; i < srcs.Length; i++)
        {
            var s = srcs[i];
            var d = dsts[i];
            if (!s.Valid)
            {
                if (d.Valid) Folio.Put(k, d.Pfn);
                continue;
            }
            long newPage = d.Valid && s.Migrate ? d.Pfn : s.Pfn;
            if (d.Valid && !s.Migrate) Folio.Put(k, d.Pfn);
            await RemoveMigrationPtes(k, s.Pfn, newPage);
            CollectedSet(k).Remove(s.Pfn);
            if (newPage != s.Pfn)
            {
                Folio.Put(k, newPage); // the allocation reference: the mappings hold their own now
                k.Stats.Inc(Stat.PagesMigrated);
            }
            Folio.Put(k, s.Pfn); // the collect's reference: frees the source once migrated
        }
    }

    /// <summary>
    /// remove_migration_ptes: every migration entry for <paramref name="src"/> becomes a mapping of the same slot of
    /// <paramref name="dst"/>: a device-private entry for device-private memory (remove_migration_pte), else a PTE
    /// (device-coherent memory is mapped like system memory). Plain set_pte_at: nothing to invalidate. Wakes waiters.
    /// </summary>
    public static async ValueTask RemoveMigrationPtes(Kernel k, long src, long dst)
    {
        using var _ = k.S.Current.Enter("remove_migration_ptes");
        await Rmap.RmapWalk(k, dst, async (vma, addr, first, count) =>
        {
            var mm = vma.Mm;
            var peek = mm.PeekPte(addr);
            if (!peek.IsMigration || peek.Pfn != src) return true;
            int t = mm.PteTable(addr);
            await mm.LockPtl(t);
            var pte = await mm.PtepGet(t, addr);
            if (pte.IsMigration && pte.Pfn == src)
            {
                bool w = pte.SwapKind == SwapType.MigrationWrite && vma.Writable;
                var np = MapEntryFor(k, dst, w);
                if (np.Present) np = Migrate.RemapEntry(k, vma, pte, dst);
                await mm.SetPte(t, addr, np);
                Folio.Get(k, dst);
                Folio.AddAnonRmap(k, dst, mm);
            }
            await mm.UnlockPtl(t);
            return true;
        });
        Migrate.WakeMigrationWaiters(k);
    }

    /// <summary>
    /// migrate_device_range (6.1+): migrate device pages, by pfn, back to system memory wherever they are mapped
    /// (the driver evicting its memory: dmirror RELEASE). <paramref name="alloc"/> allocates and fills the destination.
    /// Returns the number of pages that moved.
    /// </summary>
    public static async ValueTask<int> MigrateDeviceRange(Kernel k, IReadOnlyList<long> pfns, Func<long, ValueTask<long>> alloc)
    {
        using var _ = k.S.Current.Enter("migrate_device_range");
        var src = new MigratePfn[pfns.Count];
        var dst = new MigratePfn[pfns.Count];
        for (int i = 0; i < pfns.Count; i++)
        {
            long p = pfns[i];
            if (k.Mem[p].Has(PageFlags.Free) || k.Mem[p].RefCount == 0) continue;
            Folio.Get(k, p); // migrate_device_range: folio_try_get
            src[i] = MigratePfn.Of(p, write: true);
            src[i].Migrate = true;
            CollectedSet(k)[p] = -1;
            await TryToMigrateDevice(k, p);
            if (k.Mem[p].MapCount != 0 || k.Mem[p].RefCount != 1)
            {
                await RemoveMigrationPtes(k, p, p);
                src[i].Migrate = false;
            }
        }
        int moved = 0;
        for (int i = 0; i < src.Length; i++)
        {
            if (!src[i].Valid || !src[i].Migrate) continue;
            long d = await alloc(src[i].Pfn);
            if (d < 0) { src[i].Migrate = false; continue; }
            CopyIdentity(k, src[i].Pfn, d);
            NoteCopied(k, src[i].Pfn, d);
            dst[i] = MigratePfn.Of(d, write: true);
            moved++;
        }
        await MigrateDeviceFinalize(k, src, dst);
        return moved;
    }
}
