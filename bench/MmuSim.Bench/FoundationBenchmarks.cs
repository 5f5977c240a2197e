using BenchmarkDotNet.Attributes;
using MmuSim.Checker;
using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Bench;

/// <summary>
/// Issue 2 figures: anonymous write faults per second (plain simulation, 16 GiB address space), munmap/zap pages per
/// second. One operation = one page. Run: dotnet run -c Release --project bench/MmuSim.Bench -- --filter '*Foundation*'
/// </summary>
[MemoryDiagnoser]
public class FoundationBenchmarks
{
    /// <summary>4M pages = 16 GiB.</summary>
    public const int Pages = 4 << 20;
    const ulong Base = 0x7f00_0000_0000;

    Kernel _k = null!;
    MmStruct _mm = null!;
    Vma _vma = null!;

    static Kernel NewKernel()
    {
        var k = new Kernel(EraTable.Get("6.13"), null,
            new KernelOptions { InitialFrames = Pages + 1024, InitialPageTables = Pages / 512 + 64, CheckMode = CheckMode.Off });
        k.S.MaxSteps = long.MaxValue;
        return k;
    }

    static void RunChecked(Kernel k, string what, Func<bool> done)
    {
        var v = k.Run();
        if (v != null || !done()) throw new InvalidOperationException($"{what} did not complete: {v}");
    }

    [IterationSetup(Target = nameof(AnonWriteFaults))]
    public void SetupFaults()
    {
        _k = NewKernel();
        _mm = _k.CreateMm("bench");
        _vma = _mm.InsertVma(new Vma(_mm, Base, Base + (ulong)Pages * MmStruct.PageSize, Prot.ReadWrite, VmFlags.None));
    }

    /// <summary>handle_mm_fault(FAULT_FLAG_WRITE) on every page of a fresh 16 GiB anon VMA, mmap_lock held for read.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void AnonWriteFaults()
    {
        var mm = _mm;
        _k.S.Spawn("bench", async _ =>
        {
            await mm.MmapLock.ReadLock();
            for (int i = 0; i < Pages; i++)
                await Memory.HandleMmFault(mm, Base + (ulong)i * MmStruct.PageSize, FaultFlags.Write);
            await mm.MmapLock.ReadUnlock();
        });
        RunChecked(_k, "faults", () => _k.Mem.Allocated == Pages && mm.RssAnon == Pages);
    }

    [IterationSetup(Target = nameof(MunmapZap))]
    public void SetupZap()
    {
        SetupFaults();
        AnonWriteFaults();
    }

    /// <summary>munmap of the whole populated 16 GiB VMA: zap, batched TLB flush and free.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void MunmapZap()
    {
        var mm = _mm;
        _k.S.Spawn("bench", async _ => await Mmap.Munmap(mm, Base, (ulong)Pages * MmStruct.PageSize));
        RunChecked(_k, "munmap", () => _k.Mem.Allocated == 0 && mm.RssAnon == 0);
    }
}

/// <summary>Cost of one scheduling point, without and with a context switch.</summary>
public class SchedPointBenchmarks
{
    const int N = 1_000_000;

    /// <summary>Plain simulation: the point completes synchronously (no strategy).</summary>
    [Benchmark(OperationsPerInvoke = N)]
    public long PointNoSwitch()
    {
        var s = new Scheduler();
        s.MaxSteps = long.MaxValue;
        s.Spawn("a", async _ =>
        {
            for (int i = 0; i < N; i++) await s.Point(PointKind.Counter);
        });
        s.Run();
        return s.Steps;
    }

    /// <summary>Two contexts, a strategy that alternates at every point: every point is a switch.</summary>
    [Benchmark(OperationsPerInvoke = N)]
    public long PointWithSwitch()
    {
        var s = new Scheduler(new AlternateStrategy());
        s.MaxSteps = long.MaxValue;
        for (int c = 0; c < 2; c++)
            s.Spawn("c" + c, async _ =>
            {
                for (int i = 0; i < N / 2; i++) await s.Point(PointKind.Counter);
            });
        s.Run();
        return s.Steps;
    }

    sealed class AlternateStrategy : IStrategy
    {
        public string Name => "alternate";
        public void BeginRun(int iteration) { }
        public int Next(in Decision d)
        {
            foreach (var id in d.Runnable)
                if (id != d.Current) return id;
            return d.Runnable[0];
        }
        public int NextInt(int bound) => 0;
    }
}
