using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Tests.Kvm;

/// <summary>A VM on one process with one memslot: gfn 0x100.. backed by hva 0x10000.. (setup runs on its own context).</summary>
public sealed class KvmKit
{
    public const ulong Hva = 0x10000, Gfn0 = 0x100;

    public Kernel K { get; }
    public MmStruct Mm { get; }
    public MmuSim.Kvm.Kvm Vm { get; private set; } = null!;
    public Memslot Slot => Vm.Memslots[0];

    public KvmKit(string era, IStrategy? strategy = null, KvmArch arch = KvmArch.X86Tdp, ulong pages = 8,
        MemslotFlags flags = MemslotFlags.None, KernelOptions? options = null, Prot prot = Prot.ReadWrite)
    {
        K = Harness.Kernel(era, strategy, options);
        Mm = Harness.MmWithVma(K, Hva, pages * MmStruct.PageSize, prot: prot);
        var v = Harness.Run(K, async _ =>
        {
            Vm = await MmuSim.Kvm.Kvm.CreateVm(Mm, "vm0", arch);
            Assert.Equal(0, await Vm.SetMemoryRegion(0, Gfn0, pages, Hva, flags));
        }, "vmm");
        Assert.Null(v);
    }

    public static ulong HvaOf(ulong gfn) => Hva + ((gfn - Gfn0) << MmStruct.PageShift);

    /// <summary>Run <paramref name="body"/> on a fresh context to completion; return its violation.</summary>
    public Violation? Do(Func<ValueTask> body, string name = "t")
    {
        K.S.Spawn(name, async _ => await body());
        return K.Run();
    }

    public void MustDo(Func<ValueTask> body, string name = "t")
    {
        Assert.Null(Do(body, name));
        Vm.AssertInvariants();
    }

    public async ValueTask<ulong> GuestRead(ulong gfn, int vcpu = 0)
    {
        var r = await Vm.Vcpu(vcpu).GuestRead(gfn);
        Assert.True(r.Ok, $"guest read of 0x{gfn:x} failed: {r}");
        return r.Value;
    }

    public async ValueTask GuestWrite(ulong gfn, ulong value, int vcpu = 0)
    {
        var r = await Vm.Vcpu(vcpu).GuestWrite(gfn, value);
        Assert.True(r.Ok, $"guest write of 0x{gfn:x} failed: {r}");
    }

    /// <summary>madvise(MADV_DONTNEED) as the kernel does it: mmap_lock for read, zap_page_range_single.</summary>
    public async ValueTask Dontneed(ulong hva, ulong len)
    {
        await Mm.MmapLock.ReadLock();
        var vma = Mm.FindVma(hva)!;
        await Memory.ZapPageRangeSingle(vma, hva, hva + len);
        await Mm.MmapLock.ReadUnlock();
    }

    /// <summary>No SPTE and no vCPU TLB entry maps <paramref name="gfn"/>.</summary>
    public void AssertUnmapped(ulong gfn)
    {
        Assert.False(Vm.PeekSpte(gfn).Present, $"SPTE for 0x{gfn:x} survived");
        foreach (var v in Vm.Vcpus) Assert.False(v.TlbLookup(gfn).Present, $"{v} TLB still caches 0x{gfn:x}");
    }

    public long Stat(MmuSim.Stat s) => K.Stats[s];

    /// <summary>KVM_GET_DIRTY_LOG that must succeed: the gfns it reported.</summary>
    public async ValueTask<List<ulong>> GetDirtyLog(Memslot slot)
    {
        var gfns = new List<ulong>();
        Assert.Equal(0, await Vm.GetDirtyLog(slot, gfns));
        return gfns;
    }
}

/// <summary>
/// A scripted strategy: run <see cref="First"/> until <see cref="Gate"/> says stop at the current point, then run
/// <see cref="Second"/> until it finishes, then anything. Used to force one interleaving.
/// </summary>
public sealed class GateStrategy(Kernel? kernel = null) : IStrategy
{
    public Kernel? K { get; set; } = kernel;
    public int First { get; set; } = -1;
    public int Second { get; set; } = -1;
    public Func<KContext, PointKind, bool> Gate { get; set; } = (_, _) => false;
    public bool Opened { get; private set; }

    public string Name => "gate";

    public void BeginRun(int iteration) => Opened = false;

    public int Next(in Decision d)
    {
        var ctxs = K!.S.Contexts;
        if (!Opened && d.Current == First && Gate(ctxs[First], d.Kind)) Opened = true;
        int want = Opened ? Second : First;
        if (want >= 0 && d.Runnable.Contains(want)) return want;
        return d.Current >= 0 ? d.Current : d.Runnable[0];
    }

    public int NextInt(int bound) => 0;
}
