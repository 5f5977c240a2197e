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
    bool _pooled;
    readonly Stack<int> _freeTables = new();

    /// <summary>
    /// <paramref name="initialTables"/> tables (table id 0 is reserved). Small arrays (exploration: a kernel per
    /// schedule) come from <see cref="System.Buffers.ArrayPool{T}"/> and go back on <see cref="Release"/>.
    /// </summary>
    public PageTablePool(Sched.Scheduler s, int initialTables = 64)
    {
        int tables = Math.Max(initialTables, 1) + 1;
        if (tables <= PooledTables)
        {
            _e = System.Buffers.ArrayPool<ulong>.Shared.Rent(tables * Entries);
            _pooled = true;
        }
        else _e = new ulong[(long)tables * Entries];
        Locks = new Sched.LockSet(s, "ptl", sleeping: false, capacity: tables);
    }

    /// <summary>Pools of up to this many tables are rented rather than allocated.</summary>
    const int PooledTables = 64;

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
        int t = _next++;
        if ((long)_next * Entries > _e.Length)
        {
            var grown = new ulong[checked(_e.Length + Math.Max(_e.Length / 2, 8 * Entries))];
            Array.Copy(_e, grown, (long)t * Entries);
            ReturnToPool();
            _e = grown;
        }
        // A rented array holds old contents; a fresh or grown one is zero. Clearing one table is cheap either way.
        if (_pooled) Array.Clear(_e, t * Entries, Entries);
        Locks.EnsureCapacity(_next);
        return t;
    }

    /// <summary>Give a rented array back (the kernel is done: <see cref="Kernel.Dispose"/>). The pool is unusable afterwards.</summary>
    public void Release()
    {
        ReturnToPool();
        _e = [];
    }

    void ReturnToPool()
    {
        if (!_pooled) return;
        System.Buffers.ArrayPool<ulong>.Shared.Return(_e);
        _pooled = false;
    }

    public void FreeTable(int t) => _freeTables.Push(t);

    public ref ulong Entry(int table, int index) => ref _e[(long)table * Entries + index];

    public Span<ulong> Table(int table) => _e.AsSpan(table * Entries, Entries);

    public static int PgdIndex(ulong va) => (int)((va >> 39) & 511);
    public static int PudIndex(ulong va) => (int)((va >> 30) & 511);
    public static int PmdIndex(ulong va) => (int)((va >> 21) & 511);
    public static int PteIndex(ulong va) => (int)((va >> 12) & 511);
}
