using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;
using MmuSim.Trace;

namespace MmuSim;

/// <summary>Construction options of a <see cref="Kernel"/>.</summary>
public sealed record KernelOptions
{
    /// <summary>Initial physical frames (the array grows on demand up to <see cref="MaxFrames"/>).</summary>
    public long InitialFrames { get; init; } = 256;

    public long MaxFrames { get; init; } = 1L << 30;

    /// <summary>Initial page-table pages (all levels); the pool grows by half again when full.</summary>
    public int InitialPageTables { get; init; } = 5;

    public MmuSim.Checker.CheckMode CheckMode { get; init; } = MmuSim.Checker.CheckMode.Full;

    public IReadOnlySet<Mutation> Mutations { get; init; } = new HashSet<Mutation>();

    public CostModel? Costs { get; init; }

    /// <summary>NUMA nodes of physical memory (<see cref="PhysMem.Nodes"/>); 1 = UMA.</summary>
    public int NumaNodes { get; init; } = 1;

    /// <summary>Seed for data choices in plain simulation.</summary>
    public ulong Seed { get; init; } = 1;
}

/// <summary>
/// One simulated machine: the scheduler, the era, physical memory, page tables, every mm, and the checker.
/// Kernel paths (faults, zap, rmap, KSM, KVM...) are methods that take it as their context; one instance is one run.
/// </summary>
/// <remarks>
/// Everything here is touched only from the scheduler's single thread. Independent runs (exploration iterations)
/// each build their own Kernel, so runs may go in parallel on separate cores without sharing state.
/// </remarks>
public sealed class Kernel
{
    readonly List<MmStruct> _mms = [];
    readonly List<AnonVma> _anonVmas = [null!];
    readonly ulong _mutations;

    public Kernel(KernelEra era, IStrategy? strategy = null, KernelOptions? options = null)
    {
        options ??= new KernelOptions();
        Era = era;
        S = new Scheduler(strategy, options.Costs);
        S.SeedPlain(options.Seed);
        Mem = new PhysMem(options.InitialFrames, options.MaxFrames, options.NumaNodes);
        PageTables = new PageTablePool(S, options.InitialPageTables);
        Stats = new Stats();
        Trace = new Tracer(this);
        Checker = new Checker.CoherenceChecker(this) { Mode = options.CheckMode };
        SrcuWq = new WaitQueue(S, "srcu");
        Weak = new Lkmm.WeakMemory(S, Lkmm.MemoryModel.Sc);
        foreach (var m in options.Mutations) _mutations |= 1UL << (int)m;
        if (options.CheckMode == MmuSim.Checker.CheckMode.Full) S.AfterStep = Checker.AfterStep;
    }

    public KernelEra Era { get; }

    /// <summary>The weakly ordered locations (READ_ONCE/WRITE_ONCE, barriers, seq counts); SC until a run begins in lkmm.</summary>
    public Lkmm.WeakMemory Weak { get; }

    public Scheduler S { get; }

    public PhysMem Mem { get; }

    public PageTablePool PageTables { get; }

    public Stats Stats { get; }

    public Tracer Trace { get; }

    public Checker.CoherenceChecker Checker { get; }

    /// <summary>/sys/kernel/mm/transparent_hugepage/use_zero_page: read faults on THP-eligible ranges map the huge zero
    /// page. The kernel's default is 1; the model's is 0 (off), so that scenarios written before the huge zero page was
    /// modelled keep allocating a THP on a read fault; <c>thp.set: { knob: use_zero_page, value: 1 }</c> turns it on.</summary>
    public bool ThpUseZeroPage { get; set; }

    /// <summary>/sys/kernel/mm/transparent_hugepage/shmem_enabled (4.8+): when a shmem fault allocates a huge folio
    /// (<see cref="Mm.ShmemHuge"/>). Default never, as the kernel's.</summary>
    public Mm.ShmemHuge ShmemEnabled { get; set; }

    /// <summary>/sys/kernel/mm/transparent_hugepage/enabled and the per-size hugepages-&lt;size&gt;kB/enabled knobs (6.8+).</summary>
    public Mm.ThpSettings Thp { get; } = new();

    /// <summary>The primary CPUs' TLBs (<see cref="CpuTlb"/>), or null when not modelled (the default; scenario
    /// <c>primary_tlb: true</c> turns them on). One null test on the user-access and flush paths.</summary>
    public CpuTlb? PrimaryTlb { get; set; }

    public IReadOnlyList<MmStruct> Mms => _mms;

    /// <summary>Swap space: slot → page contents written out by reclaim.</summary>
    public SwapSpace Swap { get; } = new();

    /// <summary>Global SRCU readers of the notifier core (3.7+) and the queue synchronize_srcu waits on.</summary>
    public int SrcuReaders { get; internal set; }

    public WaitQueue SrcuWq { get; }

    /// <summary>Subsystems attached to this kernel (KSM's ksmd state, KVM VMs...), by type.</summary>
    public Dictionary<Type, object> Subsystems { get; } = [];

    /// <summary>Some ZONE_DEVICE memory exists (Hmm.DevicePagemaps): folio_put must look for device pages.</summary>
    internal bool HasZoneDevice;

    public T GetSubsystem<T>(Func<Kernel, T> create) where T : class
    {
        if (Subsystems.TryGetValue(typeof(T), out var o)) return (T)o;
        var t = create(this);
        Subsystems[typeof(T)] = t;
        return t;
    }

    /// <summary>Is a mutation switch on? One bit test.</summary>
    public bool Mutated(Mutation m) => (_mutations & (1UL << (int)m)) != 0;

    /// <summary>mm_alloc: a new address space with one user.</summary>
    public MmStruct CreateMm(string name)
    {
        var mm = new MmStruct(this, _mms.Count + 1, name);
        _mms.Add(mm);
        return mm;
    }

    internal AnonVma NewAnonVma(MmStruct owner)
    {
        if (_anonVmas.Count > 0xFFFF) throw new ModelException("more than 65535 anon_vma families");
        var a = new AnonVma(_anonVmas.Count, S);
        a.Members.Add(owner);
        _anonVmas.Add(a);
        return a;
    }

    public AnonVma AnonVmaById(int id) => _anonVmas[id];

    readonly List<AddressSpace> _files = [null!];

    /// <summary>A new file's page cache (memfd_create, a tmpfile, or shmem_zero_setup's file).</summary>
    public AddressSpace NewAddressSpace(FileKind kind, string name, ulong sizePages)
    {
        if (_files.Count > 0xFFFF) throw new ModelException("more than 65535 files");
        var f = new AddressSpace(_files.Count, kind, name, sizePages);
        _files.Add(f);
        return f;
    }

    /// <summary>The file a page-cache frame's root names.</summary>
    public AddressSpace AddressSpaceById(int id) => _files[id];

    /// <summary>Every anon_vma family <paramref name="mm"/> belongs to.</summary>
    public IEnumerable<AnonVma> AnonVmasOf(MmStruct mm)
    {
        for (int i = 1; i < _anonVmas.Count; i++)
            if (_anonVmas[i].Members.Contains(mm)) yield return _anonVmas[i];
    }

    /// <summary>Run every context to completion (or violation), then the end-of-run checks.</summary>
    public Violation? Run(int iteration = 0)
    {
        var v = S.Run(iteration);
        if (v == null && !S.Abandoned)
        {
            Checker.OnRunComplete();
            v = S.Violation;
        }
        return v;
    }

    /// <summary>Bytes of model memory for frames and page tables.</summary>
    public long ModelBytes => Mem.ModelBytes + PageTables.ModelBytes;
}

/// <summary>
/// Swap slots holding the contents of pages written out by reclaim, with a use count per slot (swap_map): one for the
/// swap cache while reclaim holds the folio, one per swap PTE (fork duplicates it). The slot is free at count zero.
/// </summary>
public sealed class SwapSpace
{
    readonly List<ulong> _slots = [0];
    readonly List<int> _refs = [0];
    readonly Stack<int> _free = new();

    /// <summary>Allocate a slot holding <paramref name="contents"/> with one use (get_swap_page / add_to_swap).</summary>
    public int Store(ulong contents)
    {
        if (_free.Count > 0)
        {
            int s = _free.Pop();
            _slots[s] = contents;
            _refs[s] = 1;
            return s;
        }
        _slots.Add(contents);
        _refs.Add(1);
        return _slots.Count - 1;
    }

    public ulong Load(int slot) => _slots[slot];

    /// <summary>swap_writepage: (re)write the slot's contents.</summary>
    public void Write(int slot, ulong contents) => _slots[slot] = contents;

    /// <summary>swap_duplicate: one more user of the slot (a swap PTE copied by fork or installed by reclaim).</summary>
    public void Dup(int slot)
    {
        if (_refs[slot] <= 0) throw new Sched.ModelException($"swap_duplicate of free slot {slot}");
        _refs[slot]++;
    }

    /// <summary>swap_free: drop one use; the last frees the slot.</summary>
    public void Free(int slot)
    {
        if (_refs[slot] <= 0) throw new Sched.ModelException($"swap_free of free slot {slot}");
        if (--_refs[slot] == 0) _free.Push(slot);
    }

    public int RefCount(int slot) => _refs[slot];

    public int InUse => _slots.Count - 1 - _free.Count;
}
