using System.Runtime.CompilerServices;

namespace MmuSim.Mm;

/// <summary>
/// Every page table of every mm in one flat array: table t owns entries [t*512, t*512+512). Entry values are
/// <see cref="Pte"/> raw words; a non-leaf entry holds the id of the next-level table in its pfn field.
/// Page-table pages are model objects, not frames in <see cref="PhysMem"/> (they never hold user data).
/// One <see cref="Sched.LockSet"/> provides the split locks: for a PTE table it is that table's PTL
/// (pte_lockptr), for a PMD table its PMD lock (pmd_lockptr). Table id 0 is never used, so 0 means "no table".
/// </summary>
/// <remarks>
/// Locking rules (as in the kernel): PTE values in a PTE table change only under that table's PTL, except
/// ptep_get_and_clear by zap under the same PTL and lockless readers (GUP-fast, the model's checker).
/// PMD entries change under the PMD lock (THP install/split/zap) or, for table population, under mmap_lock.
/// Tables are allocated on first touch and freed at exit_mmap (free_pgtables) and by khugepaged's retraction
/// (retract_page_tables, collapse_pte_mapped_thp). Before 6.6 retraction holds mmap_lock for write, so a walker's table
/// id stays valid while it holds mmap_lock; from 6.6 it does not, and a walker that slept must recheck the PMD under the
/// PTL (<see cref="MmStruct.PteOffsetMapLock"/>). A store into a freed table is a violation
/// (<see cref="CheckNotFreed"/>): the kernel's RCU-deferred free would keep the memory, but the store would be lost.
/// </remarks>
public sealed class PageTablePool
{
    public const int Entries = 512;
    ulong[] _e;
    int _next = 1;
    readonly Stack<int> _freeTables = new();
    bool[] _freed = new bool[64];
    readonly Sched.Scheduler _s;

    /// <summary><paramref name="initialTables"/> tables (table id 0 is reserved); grows by half again when full.</summary>
    public PageTablePool(Sched.Scheduler s, int initialTables = 64)
    {
        _s = s;
        int tables = Math.Max(initialTables, 1) + 1;
        _e = new ulong[(long)tables * Entries];
        Locks = new Sched.LockSet(s, "ptl", sleeping: false, capacity: tables);
    }

    /// <summary>Split page-table locks, indexed by table id.</summary>
    public Sched.LockSet Locks { get; }

    public int TablesInUse => _next - 1 - _freeTables.Count;

    public long ModelBytes => (long)_e.Length * sizeof(ulong);

    public int AllocTable()
    {
        if (_freeTables.Count > 0)
        {
            int reused = _freeTables.Pop();
            Array.Clear(_e, reused * Entries, Entries);
            _freed[reused] = false;
            return reused;
        }
        // Never-used tables are still zero (fresh or grown array): no clearing needed.
        int t = _next++;
        if ((long)_next * Entries > _e.Length) Array.Resize(ref _e, checked(_e.Length + Math.Max(_e.Length / 2, 8 * Entries)));
        Locks.EnsureCapacity(_next);
        return t;
    }

    public void FreeTable(int t)
    {
        if (t >= _freed.Length) Array.Resize(ref _freed, Math.Max(t + 1, _freed.Length * 2));
        if (_freed[t]) throw new Sched.ModelException($"page table {t} freed twice");
        _freed[t] = true;
        _freeTables.Push(t);
    }

    /// <summary>
    /// A store into table <paramref name="t"/> after it was freed: a walker kept a table that was retracted meanwhile
    /// (the kernel's use-after-free of a page table; its RCU-deferred free keeps the memory, the store is lost). Reported
    /// as <see cref="Sched.Invariants.PrimaryConsistency"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void CheckNotFreed(int t, ulong va)
    {
        if ((uint)t < (uint)_freed.Length && _freed[t])
            _s.Fail(Sched.Invariants.PrimaryConsistency,
                $"a store at 0x{va:x} into page table {t} after it was freed (a walker kept a table that was retracted meanwhile)", va);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref ulong Entry(int table, int index) => ref _e[(long)table * Entries + index];

    public Span<ulong> Table(int table) => _e.AsSpan(table * Entries, Entries);

    public static int PgdIndex(ulong va) => (int)((va >> 39) & 511);
    public static int PudIndex(ulong va) => (int)((va >> 30) & 511);
    public static int PmdIndex(ulong va) => (int)((va >> 21) & 511);
    public static int PteIndex(ulong va) => (int)((va >> 12) & 511);
}
