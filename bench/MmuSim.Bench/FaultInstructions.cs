using MmuSim.Checker;
using MmuSim.Eras;
using MmuSim.Mm;

namespace MmuSim.Bench;

/// <summary>
/// `fault-phases N`: the plain anonymous write fault in two phases, for counting instructions per fault under
/// callgrind (bench/realfault/instructions.sh). Phase 1 faults N pages so that the tiered JIT reaches Tier1, then
/// the process waits on stdin; the script zeroes callgrind's counters, and phase 2 faults N fresh pages of a second
/// VMA; the script dumps the counters. Startup, JIT and warm-up therefore never reach the count.
/// </summary>
public static class FaultInstructions
{
    public static void Run(int pages)
    {
        const ulong BaseA = 0x7e00_0000_0000, BaseB = 0x7f00_0000_0000;
        var k = new Kernel(EraTable.Get("6.13"), null,
            new KernelOptions { InitialFrames = 2 * pages + 1024, InitialPageTables = 2 * (pages / 512) + 64, CheckMode = CheckMode.Off });
        var mm = k.CreateMm("faults");
        mm.InsertVma(new Vma(mm, BaseA, BaseA + (ulong)pages * MmStruct.PageSize, Prot.ReadWrite, VmFlags.None));
        mm.InsertVma(new Vma(mm, BaseB, BaseB + (ulong)pages * MmStruct.PageSize, Prot.ReadWrite, VmFlags.None));
        k.S.MaxSteps = long.MaxValue;
        k.S.Spawn("populate", async _ =>
        {
            await mm.MmapLock.ReadLock();
            await Populate(mm, BaseA, pages);
            Console.WriteLine("warm");
            Console.ReadLine(); // counters zeroed
            await Populate(mm, BaseB, pages);
            Console.WriteLine("done");
            Console.ReadLine(); // counters dumped
            await mm.MmapLock.ReadUnlock();
        });
        k.Run();
        if (k.Stats[Stat.AnonWriteFaults] != 2L * pages) throw new InvalidOperationException($"expected {2L * pages} anon write faults, got {k.Stats[Stat.AnonWriteFaults]}");
    }

    static async ValueTask Populate(MmStruct mm, ulong start, int pages)
    {
        for (int i = 0; i < pages; i++)
            await Memory.HandleMmFault(mm, start + (ulong)i * MmStruct.PageSize, FaultFlags.Write);
    }
}
