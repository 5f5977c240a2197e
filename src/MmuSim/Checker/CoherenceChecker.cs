using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Checker;

/// <summary>How much the checker does.</summary>
public enum CheckMode
{
    /// <summary>Nothing (benchmarks).</summary>
    Off,
    /// <summary>Event checks only: accesses, frees, cleaning, pairing, release. Cheap; for large workloads.</summary>
    Events,
    /// <summary>Events plus a scan of every secondary translation after every step (exploration).</summary>
    Full,
}

/// <summary>
/// Tests the coherence invariants of kernel-facts.md §7 against the primary page tables and every registered
/// secondary MMU, after every step (<see cref="CheckMode.Full"/>) and at the events where they can break.
/// </summary>
/// <remarks>
/// <para><b>When is an address "in flight"?</b> From the moment a path calls invalidate_range_start on it until its end
/// has returned, and while the page-table lock of its PTE (or PMD) is held. The second clause models the kernel's
/// atomic PTL section: a PTE cleared and notified under the same PTL (2.6.32 invalidate_page, change_pte,
/// invalidate_range) is coherent once the lock is dropped; a callback that comes after pte_unmap_unlock
/// (3.6-4.12 invalidate_page) leaves a window the checker sees (race 5(a)).</para>
/// <para><b>Checks</b> (names are <see cref="Invariants"/>):</para>
/// <list type="bullet">
/// <item>stale-translation (7.1): a start/end secondary holds a translation in a range whose start it has returned
/// from and whose end it has not entered; (7.4) outside any in-flight window, a translation disagrees with the primary.</item>
/// <item>freed-page-reachable (7.3): a translation or an access names a free frame, or a frame reused since.</item>
/// <item>writable-secondary (7.5): a writable translation, or a write, where the primary PTE is read-only.</item>
/// <item>lost-write: a secondary write lands in a frame the primary no longer maps at that address.</item>
/// <item>dirty-lost (7.7): the primary cleans or discards a folio a secondary wrote without the folio being marked dirty.</item>
/// <item>start-end-pairing (7.10): an end without start, a start never ended.</item>
/// <item>release (7.14): a translation survives -&gt;release, or one is used after it.</item>
/// <item>aging (7.8): an aging callback inside the calling CPU's own start/end (see <see cref="OnAgingCall"/>).</item>
/// <item>write-order (§5(d4)): a device that shares the page tables reads an address from a frame that lacks a CPU
/// write which precedes another CPU write the device already observed (see <see cref="OnUserWrite"/>).</item>
/// </list>
/// </remarks>
public sealed class CoherenceChecker
{
    readonly Kernel _k;
    readonly List<ISecondaryMmu> _secondaries = [];
    readonly List<SecondaryTranslation> _scratch = [];
    readonly List<(object Sub, MmuNotifierRange Range)> _startReturned = [];
    readonly HashSet<string> _disabled = [];

    // write-order: CPU stores are sequentially consistent in the model, so a global counter orders them. Kept only
    // while a page-table-sharing secondary is registered (TrackUserWrites); nothing is recorded on the fault path.
    long _writeClock;
    readonly Dictionary<(int Mm, ulong Page), (long Clock, long Pfn, ulong Value)> _lastUserWrite = [];
    readonly Dictionary<ISecondaryMmu, long> _observedClock = [];

    public CoherenceChecker(Kernel k) => _k = k;

    /// <summary>True while CPU stores are recorded for the write-order check (a page-table-sharing secondary exists).</summary>
    public bool TrackUserWrites { get; private set; }

    public CheckMode Mode { get; set; } = CheckMode.Full;

    public IReadOnlyList<ISecondaryMmu> Secondaries => _secondaries;

    Scheduler S => _k.S;

    /// <summary>Turn one invariant off (scenario <c>check:</c> lists).</summary>
    public void Disable(string invariant) => _disabled.Add(invariant);

    public void EnableOnly(IEnumerable<string> invariants)
    {
        _disabled.Clear();
        var keep = new HashSet<string>(invariants);
        foreach (var i in Invariants.All)
            if (!keep.Contains(i)) _disabled.Add(i);
    }

    public bool Enabled(string invariant) => Mode != CheckMode.Off && !_disabled.Contains(invariant);

    void Fail(string inv, string msg, ulong addr = 0, long pfn = -1)
    {
        if (Enabled(inv)) S.Fail(inv, msg, addr, pfn);
    }

    public void AddSecondary(ISecondaryMmu sec)
    {
        if (!_secondaries.Contains(sec)) _secondaries.Add(sec);
        if (!sec.UsesStartEnd)
        {
            TrackUserWrites = true;
            S.AllStepsDependent = true; // store numbering orders CPU stores to different pages: no step commutes
        }
    }

    /// <summary>
    /// A CPU store of <paramref name="value"/> to <paramref name="page"/> landed in <paramref name="pfn"/> (called by the
    /// hardware access only while <see cref="TrackUserWrites"/>).
    /// </summary>
    public void OnUserWrite(MmStruct mm, ulong page, long pfn, ulong value) =>
        _lastUserWrite[(mm.Id, page)] = (++_writeClock, pfn, value);

    /// <summary>
    /// §5(d4), Documentation/mm/mmu_notifier.rst: a device read of <paramref name="hva"/> from <paramref name="pfn"/>
    /// misses the last CPU store to that address (another frame, another value) although the device already observed a
    /// later store: it sees the CPU's writes out of order. Otherwise, reading the frame that holds the last store
    /// means the device has observed that store and every earlier one.
    /// </summary>
    bool CheckWriteOrder(ISecondaryMmu sec, MmStruct mm, ulong hva, long pfn)
    {
        if (!_lastUserWrite.TryGetValue((mm.Id, hva & MmStruct.PageMask), out var w)) return true;
        _observedClock.TryGetValue(sec, out long seen);
        bool missed = w.Pfn != pfn && _k.Mem[pfn].Contents != w.Value;
        if (missed && w.Clock < seen)
        {
            Fail(Invariants.WriteOrder,
                $"{sec.Name} reads 0x{hva:x} from pfn 0x{pfn:x} (value {_k.Mem[pfn].Contents}) and misses CPU store #{w.Clock} " +
                $"(value {w.Value} in pfn 0x{w.Pfn:x}), although it already observed the later store #{seen}: the device sees " +
                "the CPU's writes out of order", hva, pfn);
            return false;
        }
        if (!missed && w.Clock > seen) _observedClock[sec] = w.Clock;
        return true;
    }

    public void RemoveSecondary(ISecondaryMmu sec) => _secondaries.Remove(sec);

    // ------------------------------------------------------------------ in-flight windows

    /// <summary>True if <paramref name="va"/> of <paramref name="mm"/> is inside a start..end in flight.</summary>
    public bool InFlight(MmStruct mm, ulong va)
    {
        foreach (var r in mm.ActiveRanges)
            if (va >= r.Start && va < r.End) return true;
        return false;
    }

    /// <summary>True if the PTL (or PMD lock) covering <paramref name="va"/> is held by anyone.</summary>
    public bool PtlHeld(MmStruct mm, ulong va)
    {
        var locks = _k.PageTables.Locks;
        int pte = mm.PteTable(va);
        if (pte != 0 && locks.IsHeld(pte)) return true;
        int pmd = mm.PmdTable(va);
        return pmd != 0 && locks.IsHeld(pmd);
    }

    internal void OnRangeStart(MmuNotifierRange r) => r.Mm.ActiveRanges.Add(r);

    internal void OnRangeEnd(MmuNotifierRange r, bool failed)
    {
        if (!r.Mm.ActiveRanges.Remove(r)) Fail(Invariants.Pairing, $"end of a range that was never started {r}", r.Start);
        for (int i = _startReturned.Count - 1; i >= 0; i--)
            if (ReferenceEquals(_startReturned[i].Range, r)) _startReturned.RemoveAt(i);
    }

    internal void OnSubscriptionStartReturned(object sub, MmuNotifierRange r)
    {
        if (Mode == CheckMode.Off) return;
        _startReturned.Add((sub, r));
        if (sub is ISecondaryMmu sec && sec.UsesStartEnd && Enabled(Invariants.StaleTranslation))
            CheckNoTranslation(sec, r, "after its invalidate_range_start returned");
    }

    /// <summary>
    /// §7.8, §5(d7) part 1: an aging callback must not go to a start/end secondary for a range whose start, issued by the
    /// calling CPU itself, already returned for that secondary: the secondary zapped its translations there (their
    /// Accessed bits went to the folio), so its answer is always "old" and the call is dead (57128468080a: "we are within
    /// an mmu notifier invalidate range scope. The spte exists no more"; 013339df116c for the 4.13-5.10 recurrence).
    /// </summary>
    internal void OnAgingCall(object sub, MmStruct mm, ulong start, ulong end, string op)
    {
        if (!Enabled(Invariants.Aging) || sub is not ISecondaryMmu { UsesStartEnd: true } sec) return;
        int self = S.Current.Id;
        for (int i = 0; i < _startReturned.Count; i++)
        {
            var (s, r) = _startReturned[i];
            if (!ReferenceEquals(s, sub) || r.Mm != mm || r.StartedBy != self || !r.Overlaps(start, end)) continue;
            Fail(Invariants.Aging,
                $"{op}(0x{start:x}, 0x{end:x}) sent to {sec.Name} inside this CPU's own invalidate_range_start {r}: " +
                "its translations there are already zapped, so it can never report the secondary's accesses", start);
            return;
        }
    }

    internal void OnSubscriptionEndEntered(object sub, MmuNotifierRange r)
    {
        for (int i = _startReturned.Count - 1; i >= 0; i--)
            if (ReferenceEquals(_startReturned[i].Sub, sub) && ReferenceEquals(_startReturned[i].Range, r))
            {
                _startReturned.RemoveAt(i);
                return;
            }
    }

    void CheckNoTranslation(ISecondaryMmu sec, MmuNotifierRange r, string when)
    {
        if (!ReferenceEquals(sec.MirroredMm, r.Mm)) return;
        _scratch.Clear();
        sec.CollectTranslations(_scratch);
        foreach (var t in _scratch)
            if (t.Private == null && t.Hva < r.End && r.Start < t.Hva + t.Size)
            {
                Fail(Invariants.StaleTranslation,
                    $"{sec.Name} still maps 0x{t.Hva:x} -> pfn 0x{t.Pfn:x} ({t.Where}) {when} for {r}", t.Hva, t.Pfn);
                return;
            }
    }

    // ------------------------------------------------------------------ registration and release

    readonly HashSet<(object, int)> _released = [];

    internal void OnRegister(MmuNotifier mn, MmStruct mm) => _released.Remove((mn, mm.Id));

    internal void OnUnregister(MmuNotifier mn, MmStruct mm) { }

    internal void OnReleaseReturned(MmuNotifier mn, MmStruct mm)
    {
        _released.Add((mn, mm.Id));
        if (mn is ISecondaryMmu sec && Enabled(Invariants.Release))
        {
            _scratch.Clear();
            sec.CollectTranslations(_scratch);
            if (_scratch.Count > 0)
                Fail(Invariants.Release, $"{sec.Name} still holds {_scratch.Count} translation(s) after ->release, e.g. 0x{_scratch[0].Hva:x}", _scratch[0].Hva, _scratch[0].Pfn);
        }
    }

    // ------------------------------------------------------------------ events from the primary

    /// <summary>A folio is about to be freed (refcount reached 0): no secondary may still reach it (7.3).</summary>
    public void OnFree(long headPfn, int pages)
    {
        if (Mode != CheckMode.Full || !Enabled(Invariants.FreedPageReachable)) return;
        if (_k.PrimaryTlb is { } tlb && tlb.Reaches(headPfn, pages, out var e))
        {
            Fail(Invariants.FreedPageReachable, $"pfn 0x{e.Pfn:x} freed while a CPU TLB still caches it for mm{e.MmId} 0x{e.Page:x}", e.Page, e.Pfn);
            return;
        }
        foreach (var sec in _secondaries)
        {
            _scratch.Clear();
            sec.CollectTranslations(_scratch);
            foreach (var t in _scratch)
            {
                long first = t.Pfn, last = t.Pfn + (long)(t.Size / MmStruct.PageSize) - 1;
                if (last >= headPfn && first < headPfn + pages && _k.Mem[t.Pfn].Generation == t.Generation)
                {
                    Fail(Invariants.FreedPageReachable,
                        $"pfn 0x{headPfn:x} freed while {sec.Name} still maps it at 0x{t.Hva:x} ({t.Where})", t.Hva, t.Pfn);
                    return;
                }
            }
        }
    }

    /// <summary>The primary is about to clear a folio's dirty state or discard it as clean (7.7).</summary>
    public void OnFolioCleaned(long headPfn, int pages, string how)
    {
        if (Mode == CheckMode.Off) return;
        for (long p = headPfn; p < headPfn + pages; p++)
            if (_k.Mem[p].Has(PageFlags.SecondaryDirtyPending))
            {
                Fail(Invariants.DirtyLost, $"{how} on pfn 0x{p:x}: a secondary wrote it and the folio was never marked dirty", 0, p);
                return;
            }
    }

    /// <summary>The folio was marked dirty: pending secondary writes are accounted for.</summary>
    public void OnFolioDirtied(long headPfn, int pages)
    {
        for (long p = headPfn; p < headPfn + pages; p++) _k.Mem[p].Clear(PageFlags.SecondaryDirtyPending);
    }

    /// <summary>
    /// KSM replace_page is about to map <paramref name="kpage"/> over <paramref name="oldPfn"/> at <paramref name="addr"/>
    /// (the old PTE is cleared and flushed, the PTL held). KSM's premise: the old page still holds what pages_identical
    /// compared, since write_protect_page left no way to write it. A difference is a lost write (§5(d8): a CPU wrote
    /// through a stale writable TLB entry). Checked only where the primary TLBs are modelled (<see cref="Kernel.PrimaryTlb"/>):
    /// without them the same loss surfaces later as the scenario's unexpected-value, which the KSM mutant scenarios
    /// assert.
    /// </summary>
    public void OnKsmReplacePage(MmStruct mm, ulong addr, long oldPfn, long kpage)
    {
        if (_k.PrimaryTlb == null || Mode == CheckMode.Off || !Enabled(Invariants.LostWrite)) return;
        ulong was = _k.Mem[oldPfn].Contents, merged = _k.Mem[kpage].Contents;
        if (was != merged)
            Fail(Invariants.LostWrite,
                $"replace_page maps KSM pfn 0x{kpage:x} (0x{merged:x}) over pfn 0x{oldPfn:x} at 0x{addr:x} of {mm}, which was written (0x{was:x}) after pages_identical: the write is lost", addr, oldPfn);
    }

    // ------------------------------------------------------------------ events from secondaries

    /// <summary>
    /// A secondary read or wrote <paramref name="hva"/> through a translation to (<paramref name="pfn"/>,
    /// <paramref name="gen"/>). Call before the access takes effect.
    /// </summary>
    /// <summary>
    /// A secondary accessed private memory (a guest_memfd page, <see cref="IPrivateBacking"/>) at page
    /// <paramref name="index"/> through a translation to (<paramref name="pfn"/>, <paramref name="gen"/>): the frame must
    /// be live and still be the backing's page at that index (else a translation survived the backing's own
    /// invalidation: stale-translation). No primary PTE is involved. Call before the access takes effect.
    /// </summary>
    public void OnPrivateAccess(ISecondaryMmu sec, IPrivateBacking backing, ulong index, long pfn, ushort gen, bool write)
    {
        if (Mode == CheckMode.Off) return;
        ref var f = ref _k.Mem[pfn];
        if (f.Has(PageFlags.Free) || f.Generation != gen)
            Fail(Invariants.FreedPageReachable, $"{sec.Name} {(write ? "writes" : "reads")} {backing.Name} page {index} through a translation to freed pfn 0x{pfn:x}", index, pfn);
        else if (backing.PfnAt(index) != pfn)
            Fail(Invariants.StaleTranslation, $"{sec.Name} {(write ? "writes" : "reads")} pfn 0x{pfn:x} for {backing.Name} page {index}, which now holds {(backing.PfnAt(index) is var now and >= 0 ? $"pfn 0x{now:x}" : "no page")}", index, pfn);
    }

    /// <summary>
    /// A kernel path dereferences the ZONE_DEVICE page (<paramref name="pfn"/>, <paramref name="gen"/>) it found in a
    /// device-private entry at <paramref name="addr"/> (do_swap_page's vmf->page->pgmap->ops->migrate_to_ram): the page
    /// must not have been freed since, which only a reference taken under the PTL guarantees (16ce101db85d).
    /// </summary>
    public void OnDevicePageUse(string what, ulong addr, long pfn, ushort gen)
    {
        if (Mode == CheckMode.Off) return;
        ref var f = ref _k.Mem[pfn];
        if (f.Has(PageFlags.Free) || f.Generation != gen)
            Fail(Invariants.FreedPageReachable, $"{what} at 0x{addr:x} dereferences device-private pfn 0x{pfn:x}, freed by a concurrent migration since its entry was read (no reference held)", addr, pfn);
    }

    public void OnSecondaryAccess(ISecondaryMmu sec, ulong hva, long pfn, ushort gen, bool write)
    {
        if (Mode == CheckMode.Off) return;
        var mm = sec.MirroredMm;
        ref var f = ref _k.Mem[pfn];
        if (f.Has(PageFlags.Free) || f.Generation != gen)
        {
            Fail(Invariants.FreedPageReachable, $"{sec.Name} {(write ? "writes" : "reads")} 0x{hva:x} through a translation to freed pfn 0x{pfn:x}", hva, pfn);
            return;
        }
        if (mm.Exited)
        {
            Fail(Invariants.Release, $"{sec.Name} accesses 0x{hva:x} after its mm exited", hva, pfn);
            return;
        }
        if (!write && TrackUserWrites && Enabled(Invariants.WriteOrder) && !CheckWriteOrder(sec, mm, hva, pfn)) return;
        var (present, ppfn, pw, pdirty) = PrimaryFor(sec, mm, hva, write, pfn);
        bool match = present && ppfn == pfn;
        bool ptl = PtlHeld(mm, hva);
        if (write)
        {
            if (!match && !ptl)
            {
                Fail(Invariants.LostWrite,
                    $"{sec.Name} writes pfn 0x{pfn:x} at 0x{hva:x} but the primary maps {(present ? $"pfn 0x{ppfn:x}" : "nothing")} there", hva, pfn);
                return;
            }
            if (match && !pw && !ptl)
            {
                Fail(Invariants.WritableWithoutPrimary, $"{sec.Name} writes 0x{hva:x} (pfn 0x{pfn:x}) while the primary PTE is read-only", hva, pfn);
                return;
            }
            // The write is accounted for if the folio is dirty, or if the primary PTE mapping it is dirty: that bit
            // reaches the folio when the PTE is zapped, unmapped or cleaned (MADV_FREE drops it on purpose, after
            // invalidating the secondaries). Only a write behind a clean primary PTE and a clean folio is pending.
            long head = _k.Mem.FolioOf(pfn);
            if (!_k.Mem[head].Has(PageFlags.Dirty) && !(match && pdirty)) f.Set(PageFlags.SecondaryDirtyPending);
        }
        else if (!match && !ptl && (!InFlight(mm, hva) || (!sec.UsesStartEnd && present)) &&
                 !(!sec.UsesStartEnd && !present && mm.TlbGathersInFlight > 0))
        {
            Fail(Invariants.StaleTranslation,
                $"{sec.Name} reads pfn 0x{pfn:x} at 0x{hva:x} but the primary maps {(present ? $"pfn 0x{ppfn:x}" : "nothing")} there", hva, pfn);
        }
    }

    /// <summary>
    /// What the primary designates at <paramref name="va"/> for a secondary: the present PTE; for a software
    /// (start/end) secondary also a device-private or device-exclusive entry (the page the device holds: its own
    /// memory, or atomic access) and a migration entry of a page a migrate_vma has collected (locked until finalize),
    /// for a translation to that page or to its destination; a write to the source after the driver copied it would
    /// be lost, so such a write sees nothing.
    /// </summary>
    (bool Present, long Pfn, bool Writable, bool Dirty) PrimaryFor(ISecondaryMmu sec, MmStruct mm, ulong va, bool forWrite, long secPfn)
    {
        var p = mm.Translate(va);
        if (p.Present || !sec.UsesStartEnd) return p;
        var pte = mm.PeekPte(va);
        if (pte.IsDeviceEntry) return (true, pte.Pfn, pte.IsWritableEntry, true);
        if (pte.IsMigration && Hmm.MigrateDevice.IsCollected(_k, pte.Pfn, secPfn, out bool lost) && !(forWrite && lost))
            return (true, secPfn, true, true);
        return p;
    }

    // ------------------------------------------------------------------ per-step scan

    /// <summary>Scan every translation of every secondary (after each step in <see cref="CheckMode.Full"/>).</summary>
    public void AfterStep()
    {
        if (Mode != CheckMode.Full) return;
        foreach (var sec in _secondaries)
        {
            var mm = sec.MirroredMm;
            _scratch.Clear();
            sec.CollectTranslations(_scratch);
            foreach (var t in _scratch)
            {
                if (!CheckTranslation(sec, mm, t)) return;
            }
        }
    }

    bool CheckTranslation(ISecondaryMmu sec, MmStruct mm, SecondaryTranslation t)
    {
        int pages = (int)(t.Size / MmStruct.PageSize);
        ref var f = ref _k.Mem[t.Pfn];
        if (f.Has(PageFlags.Free) || f.Generation != t.Generation)
        {
            Fail(Invariants.FreedPageReachable, $"{sec.Name} maps 0x{t.Hva:x} ({t.Where}) to pfn 0x{t.Pfn:x}, which was freed", t.Hva, t.Pfn);
            return false;
        }
        if (mm.Exited || _released.Contains((sec, mm.Id)))
        {
            Fail(Invariants.Release, $"{sec.Name} holds 0x{t.Hva:x} ({t.Where}) after ->release", t.Hva, t.Pfn);
            return false;
        }
        if (t.Private is { } backing)
        {
            // Private memory: no primary PTE to compare with; the translation must name the backing's current page.
            if (backing.PfnAt(t.Index) == t.Pfn) return true;
            Fail(Invariants.StaleTranslation, $"{sec.Name} maps {backing.Name} page {t.Index} ({t.Where}) to pfn 0x{t.Pfn:x}, which the file no longer holds there", t.Hva, t.Pfn);
            return false;
        }
        if (sec.UsesStartEnd)
            foreach (var (sub, r) in _startReturned)
                if (ReferenceEquals(sub, sec) && t.Hva < r.End && r.Start < t.Hva + t.Size)
                {
                    Fail(Invariants.StaleTranslation, $"{sec.Name} maps 0x{t.Hva:x} ({t.Where}) inside {r} after its start returned", t.Hva, t.Pfn);
                    return false;
                }
        for (int i = 0; i < pages; i++)
        {
            ulong va = t.Hva + (ulong)i * MmStruct.PageSize;
            if (PtlHeld(mm, va)) continue;
            var (present, ppfn, pw, _) = PrimaryFor(sec, mm, va, forWrite: false, t.Pfn + i);
            // A TLB that shares the page tables (invariant 13) must be flushed under the PTL before the PTE points at
            // another page: once the PTL is dropped, no start..end window excuses a translation to the old page.
            if (!sec.UsesStartEnd && present && ppfn != t.Pfn + i)
            {
                Fail(Invariants.StaleTranslation,
                    $"{sec.Name} caches 0x{va:x} -> pfn 0x{t.Pfn + i:x} ({t.Where}) but the primary now maps pfn 0x{ppfn:x}: device and CPU see different pages", va, t.Pfn + i);
                return false;
            }
            if (InFlight(mm, va)) continue;
            // A hardware TLB may keep a cleared translation until the pending TLB flush reaches it (mmu_gather):
            // the page is not freed before that flush (checked in OnFree), exactly as for the CPU's own TLB.
            if (!sec.UsesStartEnd && !present && mm.TlbGathersInFlight > 0) continue;
            if (!present || ppfn != t.Pfn + i)
            {
                Fail(Invariants.StaleTranslation,
                    $"{sec.Name} maps 0x{va:x} ({t.Where}) to pfn 0x{t.Pfn + i:x} but the primary maps {(present ? $"pfn 0x{ppfn:x}" : "nothing")} and no invalidation is in flight", va, t.Pfn + i);
                return false;
            }
            if (t.Writable && !pw)
            {
                Fail(Invariants.WritableWithoutPrimary, $"{sec.Name} maps 0x{va:x} ({t.Where}) writable, the primary PTE is read-only", va, t.Pfn + i);
                return false;
            }
        }
        return true;
    }

    /// <summary>At the end of a completed run: every start was ended.</summary>
    public void OnRunComplete()
    {
        if (Mode == CheckMode.Off) return;
        foreach (var mm in _k.Mms)
            if (mm.ActiveRanges.Count > 0)
            {
                Fail(Invariants.Pairing, $"{mm}: invalidate_range_start {mm.ActiveRanges[0]} never ended", mm.ActiveRanges[0].Start);
                return;
            }
        foreach (var sec in _secondaries)
            if (sec.ImbalanceAtRest() is { } why)
            {
                Fail(Invariants.CounterBalance, $"{sec.Name}: {why}");
                return;
            }
    }

    // ------------------------------------------------------------------ primary consistency

    /// <summary>
    /// Recompute mapcounts from every PTE/PMD of every live mm and compare with the frames; check refcount ≥ mapcount
    /// and that each mapped anon page's rmap (anon root, index) leads back to the address. Returns null or a description.
    /// </summary>
    public string? CheckPrimaryConsistency()
    {
        var expected = new Dictionary<long, int>();
        var entire = new Dictionary<long, int>();
        foreach (var mm in _k.Mms)
        {
            if (mm.Exited) continue;
            foreach (var vma in mm.Vmas)
                for (ulong va = mm.SkipPmdHole(vma.Start, vma.End); va < vma.End; va = mm.SkipPmdHole(va + MmStruct.PageSize, vma.End))
                {
                    var pmd = mm.PeekPmd(va);
                    if (pmd.Present && pmd.Huge)
                    {
                        if ((va & ~MmStruct.PmdMask) == 0 && !pmd.Special) entire[pmd.Pfn] = entire.GetValueOrDefault(pmd.Pfn) + 1;
                        continue;
                    }
                    var pte = mm.PeekPte(va);
                    if (!pte.Present || pte.Special || pte.Pfn == PhysMem.ZeroPfn) continue;
                    expected[pte.Pfn] = expected.GetValueOrDefault(pte.Pfn) + 1;
                    ref var f = ref _k.Mem[pte.Pfn];
                    if (f.Has(PageFlags.Free)) return $"{mm} maps free pfn 0x{pte.Pfn:x} at 0x{va:x}";
                    if (f.Has(PageFlags.Anon) && !f.Has(PageFlags.Ksm))
                    {
                        long head = _k.Mem.FolioOf(pte.Pfn);
                        if (vma.AnonVma == null || _k.Mem[head].AnonRoot != vma.AnonVma.Id)
                            return $"{mm} 0x{va:x}: pfn 0x{pte.Pfn:x} anon root {_k.Mem[head].AnonRoot} is not the VMA's family {vma.AnonVma?.Id}";
                        if (vma.AddressOf(f.Index) != va)
                            return $"{mm} 0x{va:x}: pfn 0x{pte.Pfn:x} index 0x{f.Index:x} resolves to 0x{vma.AddressOf(f.Index):x}";
                    }
                }
        }
        for (long p = 1; p < _k.Mem.Capacity; p++)
        {
            ref var f = ref _k.Mem[p];
            if (f.Has(PageFlags.Free)) continue;
            int want = expected.GetValueOrDefault(p);
            if (f.MapCount != want) return $"pfn 0x{p:x}: mapcount {f.MapCount}, PTEs say {want}";
            if (!f.Has(PageFlags.Tail))
            {
                int maps = _k.Mem.IsLarge(p) ? _k.Mem.FolioMapCount(p) : f.MapCount;
                if (_k.Mem.IsLarge(p) && _k.Mem.EntireMapcountHolder(p).RefCount != entire.GetValueOrDefault(p))
                    return $"THP 0x{p:x}: entire_mapcount {_k.Mem.EntireMapcountHolder(p).RefCount}, PMDs say {entire.GetValueOrDefault(p)}";
                if (f.RefCount < maps) return $"pfn 0x{p:x}: refcount {f.RefCount} < mapcount {maps}";
            }
        }
        return null;
    }
}
