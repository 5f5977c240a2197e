using System.Diagnostics;
using MmuSim.Checker;
using MmuSim.Eras;
using MmuSim.Ksm;
using MmuSim.Mm;

namespace MmuSim.Bench;

/// <summary>
/// Issue 4 figure: ksmd over 4 VMs x N MiB of guest memory with 50% duplicate contents (even pages hold the same value
/// in all four VMs, odd pages are unique). Reports, per full scan, pages scanned and merged per simulated second (the
/// cost model's clock) and the wall time of the scan.
/// Run: dotnet run -c Release --project bench/MmuSim.Bench -- ksm [MiB per VM] [era]
/// </summary>
public static class KsmScanBench
{
    public static void Run(int mibPerVm, string era)
    {
        const int Vms = 4;
        const ulong Base = 0x7f00_0000_0000;
        int pages = mibPerVm * 256;
        var k = new Kernel(EraTable.Get(era), null, new KernelOptions
        {
            InitialFrames = (long)Vms * pages + 4096,
            InitialPageTables = Vms * (pages / 512 + 8),
            CheckMode = CheckMode.Off,
        });
        k.S.MaxSteps = long.MaxValue;
        var mms = new MmStruct[Vms];
        for (int v = 0; v < Vms; v++)
        {
            mms[v] = k.CreateMm($"qemu{v}");
            mms[v].InsertVma(new Vma(mms[v], Base, Base + (ulong)pages * MmStruct.PageSize, Prot.ReadWrite, VmFlags.Mergeable));
        }
        var ksmd = Ksmd.Of(k);
        var populate = Stopwatch.StartNew();
        Must(k, "populate", async () =>
        {
            for (int v = 0; v < Vms; v++)
            {
                var vm = await Kvm.Kvm.CreateVm(mms[v], $"vm{v}");
                await vm.SetMemoryRegion(0, 0x1000, (ulong)pages, Base, default);
                for (int i = 0; i < pages; i++)
                {
                    ulong value = (i & 1) == 0 ? 0x5EED_0000_0000UL + (ulong)i : ((ulong)(v + 1) << 40) + (ulong)i;
                    await Memory.UserAccess(mms[v], Base + (ulong)i * MmStruct.PageSize, write: true, value);
                }
            }
        });
        Console.WriteLine($"ksm bench: era {era}, {Vms} VMs x {mibPerVm} MiB ({Vms * pages} pages, 50% duplicates), populated in {populate.Elapsed.TotalSeconds:F2} s wall");
        for (int scan = 1; scan <= 2; scan++)
        {
            long ns0 = k.S.ClockNs, scanned0 = ksmd.PagesScanned, merges0 = k.Stats[Stat.KsmMerges];
            var sw = Stopwatch.StartNew();
            Must(k, "ksmd", async () => await ksmd.ScanFull(1));
            double wall = sw.Elapsed.TotalSeconds;
            double simS = (k.S.ClockNs - ns0) / 1e9;
            long scanned = ksmd.PagesScanned - scanned0, merged = k.Stats[Stat.KsmMerges] - merges0;
            Console.WriteLine($"full scan {scan}: {scanned} pages scanned, {merged} merged; simulated {simS * 1e3:F1} ms = " +
                $"{scanned / simS / 1e6:F2} M pages scanned/s, {merged / simS / 1e6:F3} M pages merged/s; wall {wall:F2} s ({scanned / wall / 1e6:F2} M pages/s)");
        }
        Console.WriteLine($"pages_shared {ksmd.PagesShared}, pages_sharing {ksmd.PagesSharing}");
    }

    static void Must(Kernel k, string name, Func<ValueTask> body)
    {
        k.S.Spawn(name, async _ => await body());
        var v = k.Run();
        if (v != null) throw new InvalidOperationException($"{name}: {v}");
    }
}
