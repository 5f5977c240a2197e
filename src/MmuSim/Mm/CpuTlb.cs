using System.Diagnostics;
using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>
/// The primary CPUs' own TLBs (x86-64 semantics), opt-in per scenario (<c>primary_tlb: true</c>): without it
/// <see cref="Kernel.PrimaryTlb"/> is null and a user access walks the page tables every time, as before.
/// </summary>
/// <remarks>
/// <para><b>Structure.</b> One small list of entries per CPU; a CPU is a scheduler context (<see cref="KContext.Id"/>),
/// i.e. one scenario thread. An entry caches one 4 KiB translation of one mm: (mm, page vaddr) → (pfn, frame
/// generation, writable, dirty), as filled by the hardware walk of <see cref="Memory.UserAccess"/>. Huge PMD
/// mappings are cached per 4 KiB sub-page.</para>
/// <para><b>Hit rules</b> (what x86 does): a load hits any entry of the address; a store hits only an entry cached
/// writable AND dirty; a store on a writable-but-clean entry re-walks to set the PTE's dirty bit (and faults if the PTE
/// is read-only by now). A hit never reads or writes the PTE: that is the whole point of §5(d8), where a CPU keeps
/// writing through a writable+dirty entry after the PTE was made clean and read-only, until the flush arrives.</para>
/// <para><b>Flushes.</b> Every primary flush (flush_tlb_mm_range: <see cref="Tlb.FlushTlbRange"/>, reached from
/// ptep_clear_flush, tlb_flush_mmu/tlb_finish_mmu and the young paths) drops the mm's entries in the range on every
/// CPU (a synchronous IPI shootdown). Deferred flushes are simply flushes that happen later.</para>
/// <para><b>Locking.</b> None: a TLB is per-CPU hardware state. Its fill and its use are one scheduling step with the
/// walk (<see cref="PointKind.PteRead"/>); a flush is part of the step of the flush's <see cref="PointKind.TlbFlush"/>.</para>
/// <para><b>Invariants</b> (<see cref="AssertInvariants"/>): at most one entry per (CPU, mm, page); a dirty entry is
/// writable; an entry's frame is not free and has the generation it had when cached (the kernel never frees a page a
/// TLB may still reach: the checker reports a free that breaks this as freed-page-reachable).</para>
/// </remarks>
public sealed class CpuTlb
{
    /// <summary>One cached translation.</summary>
    public readonly record struct Entry(int MmId, ulong Page, long Pfn, ushort Generation, bool Writable, bool Dirty);

    readonly Kernel _k;
    List<Entry>?[] _cpus = new List<Entry>?[8];

    public CpuTlb(Kernel k) => _k = k;

    /// <summary>Entries of CPU <paramref name="cpu"/> (tests, diagrams).</summary>
    public IReadOnlyList<Entry> EntriesOf(int cpu) => cpu < _cpus.Length && _cpus[cpu] is { } l ? l : [];

    /// <summary>Every CPU's entries for <paramref name="mm"/>'s page <paramref name="va"/>.</summary>
    public IEnumerable<(int Cpu, Entry Entry)> Find(MmStruct mm, ulong va)
    {
        ulong page = va & MmStruct.PageMask;
        for (int c = 0; c < _cpus.Length; c++)
            if (_cpus[c] is { } l)
                foreach (var e in l)
                    if (e.MmId == mm.Id && e.Page == page) yield return (c, e);
    }

    /// <summary>
    /// The TLB part of an access by the current CPU: on a hit with the needed permission, move the data to/from the
    /// frame and return true (no page-table access at all). No scheduling point: the caller's point covers it.
    /// </summary>
    public bool TryHit(MmStruct mm, ulong va, bool write, ulong value, out ulong result)
    {
        result = 0;
        int cpu = _k.S.Current.Id;
        if (cpu >= _cpus.Length || _cpus[cpu] is not { } l) return false;
        ulong page = va & MmStruct.PageMask;
        for (int i = 0; i < l.Count; i++)
        {
            var e = l[i];
            if (e.MmId != mm.Id || e.Page != page) continue;
            if (write && !(e.Writable && e.Dirty)) return false;
            ref var f = ref _k.Mem[e.Pfn];
            if (write)
            {
                if (_k.Trace.On) _k.Trace.Event("tlb_write_hit", $"mm {mm.Id} addr 0x{va:x} pfn 0x{e.Pfn:x}");
                f.Contents = value;
                if (_k.Checker.TrackUserWrites) _k.Checker.OnUserWrite(mm, page, e.Pfn, value);
            }
            result = f.Contents;
            _k.S.Charge(CostKind.Access);
            return true;
        }
        return false;
    }

    /// <summary>The hardware walker caches the translation it just used (replacing the CPU's entry for that page).</summary>
    public void Fill(MmStruct mm, ulong va, long pfn, bool writable, bool dirty)
    {
        int cpu = _k.S.Current.Id;
        if (cpu >= _cpus.Length) Array.Resize(ref _cpus, Math.Max(cpu + 1, _cpus.Length * 2));
        var l = _cpus[cpu] ??= [];
        ulong page = va & MmStruct.PageMask;
        var e = new Entry(mm.Id, page, pfn, _k.Mem[pfn].Generation, writable, dirty && writable);
        for (int i = 0; i < l.Count; i++)
            if (l[i].MmId == mm.Id && l[i].Page == page)
            {
                l[i] = e;
                return;
            }
        l.Add(e);
        AssertInvariants();
    }

    /// <summary>flush_tlb_range / flush_tlb_page on every CPU (IPI shootdown): drop <paramref name="mm"/>'s entries in [start, end).</summary>
    public void FlushRange(MmStruct mm, ulong start, ulong end)
    {
        foreach (var l in _cpus)
            l?.RemoveAll(e => e.MmId == mm.Id && e.Page >= (start & MmStruct.PageMask) && e.Page < end);
    }

    /// <summary>Does any CPU still cache a translation to <paramref name="pfn"/> (frames [pfn, pfn + pages))?</summary>
    public bool Reaches(long pfn, int pages, out Entry hit)
    {
        foreach (var l in _cpus)
            if (l != null)
                foreach (var e in l)
                    if (e.Pfn >= pfn && e.Pfn < pfn + pages && _k.Mem[e.Pfn].Generation == e.Generation)
                    {
                        hit = e;
                        return true;
                    }
        hit = default;
        return false;
    }

    [Conditional("DEBUG")]
    public void AssertInvariants()
    {
        foreach (var l in _cpus)
        {
            if (l == null) continue;
            for (int i = 0; i < l.Count; i++)
            {
                Debug.Assert(!l[i].Dirty || l[i].Writable, "a dirty TLB entry is writable");
                for (int j = i + 1; j < l.Count; j++)
                    Debug.Assert(l[i].MmId != l[j].MmId || l[i].Page != l[j].Page, "one entry per (cpu, mm, page)");
            }
        }
    }
}
