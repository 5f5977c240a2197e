using BenchmarkDotNet.Attributes;
using MmuSim.Checker;
using MmuSim.Eras;
using MmuSim.Kvm;
using MmuSim.Mm;

namespace MmuSim.Bench;

/// <summary>
/// Issue 3 figures: guest accesses per second in plain simulation with 4 vCPUs over a 4 GiB guest, split into the
/// fault path (every access a VM exit: GUP faults the primary in, SPTE installed) and the hit path (SPTE present: the
/// walk or the vCPU TLB serves it). One operation = one guest access.
/// Run: dotnet run -c Release --project bench/MmuSim.Bench -- --filter '*Kvm*'.
/// Memory per SPTE: 8 bytes (<see cref="Spte.Size"/>) plus 11 bytes per 512 gfns (huge SPTE, table state, live count).
/// </summary>
[MemoryDiagnoser]
public class KvmBenchmarks
{
    /// <summary>1M pages = 4 GiB of guest memory.</summary>
    public const int Pages = 1 << 20;
    public const int Vcpus = 4;
    const ulong Base = 0x7f00_0000_0000;

    Kernel _k = null!;
    MmuSim.Kvm.Kvm _vm = null!;

    void Setup()
    {
        _k = new Kernel(EraTable.Get("6.8"), null,
            new KernelOptions { InitialFrames = Pages + 1024, InitialPageTables = Pages / 512 + 64, CheckMode = CheckMode.Off });
        _k.S.MaxSteps = long.MaxValue;
        var mm = _k.CreateMm("qemu");
        mm.InsertVma(new Vma(mm, Base, Base + (ulong)Pages * MmStruct.PageSize, Prot.ReadWrite, VmFlags.None));
        _k.S.Spawn("vmm", async _ =>
        {
            _vm = await MmuSim.Kvm.Kvm.CreateVm(mm, "vm0");
            await _vm.SetMemoryRegion(0, 0, Pages, Base, MemslotFlags.None);
        });
        if (_k.Run() != null) throw new InvalidOperationException("setup failed");
    }

    /// <summary>Each vCPU writes every page of its quarter once (the guest touches fresh memory).</summary>
    void Touch(bool write)
    {
        for (int c = 0; c < Vcpus; c++)
        {
            var v = _vm.Vcpu(c);
            ulong first = (ulong)(c * (Pages / Vcpus)), last = first + Pages / Vcpus;
            _k.S.Spawn($"vcpu{c}", async _ =>
            {
                for (ulong g = first; g < last; g++)
                    if (!(write ? await v.GuestWrite(g, g) : await v.GuestRead(g)).Ok) throw new InvalidOperationException($"gfn {g}");
            });
        }
        if (_k.Run() != null) throw new InvalidOperationException("guest run failed");
    }

    [IterationSetup(Target = nameof(FaultPath))]
    public void SetupFault() => Setup();

    /// <summary>Every access exits: fault path (GUP + do_anonymous_page + SPTE install).</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void FaultPath()
    {
        Touch(write: true);
        if (_k.Stats[Stat.VmExits] != Pages) throw new InvalidOperationException("expected one exit per page");
    }

    [IterationSetup(Target = nameof(HitPath))]
    public void SetupHit()
    {
        Setup();
        Touch(write: true);
    }

    /// <summary>Every access is served by the SPTE walk (or the vCPU TLB): no exit.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void HitPath()
    {
        long exits = _k.Stats[Stat.VmExits];
        Touch(write: false);
        if (_k.Stats[Stat.VmExits] != exits) throw new InvalidOperationException("hit path took an exit");
    }
}
