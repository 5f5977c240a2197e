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
/// Tables are allocated on first touch and freed only at exit_mmap (free_pgtables), so a table id stays valid for
/// the life of its mm.
/// </remarks>
public sealed class PageTablePool
{
    public const int Entries = 512;
    ulong[] _e;
    int _next = 1;
    readonly Stack<int> _freeTables = new();

    /// <summary><paramref name="initialTables"/> tables (table id 0 is reserved); grows by half again when full.</summary>
    public PageTablePool(Sched.Scheduler s, int initialTables = 64)
    {
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
            return reused;
        }
        // Never-used tables are still zero (fresh or grown array): no clearing needed.
        int t = _next++;
        if ((long)_next * Entries > _e.Length) Array.Resize(ref _e, checked(_e.Length + Math.Max(_e.Length / 2, 8 * Entries)));
        Locks.EnsureCapacity(_next);
        return t;
    }

    public void FreeTable(int t) => _freeTables.Push(t);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref ulong Entry(int table, int index) => ref _e[(long)table * Entries + index];

    public Span<ulong> Table(int table) => _e.AsSpan(table * Entries, Entries);

    public static int PgdIndex(ulong va) => (int)((va >> 39) & 511);
    public static int PudIndex(ulong va) => (int)((va >> 30) & 511);
    public static int PmdIndex(ulong va) => (int)((va >> 21) & 511);
    public static int PteIndex(ulong va) => (int)((va >> 12) & 511);
}
