using MmuSim.Checker;
using MmuSim.Eras;
using MmuSim.Mm;

namespace MmuSim.Bench;

/// <summary>Bytes of model memory per mapped 4 KiB page: structural (frame + PTE) and measured on the managed heap.</summary>
public static class Footprint
{
    public static void Run(int pages)
    {
        const ulong Base = 0x7f00_0000_0000;
        long before = GC.GetTotalMemory(forceFullCollection: true);
        var k = new Kernel(EraTable.Get("6.13"), null, new KernelOptions { InitialFrames = pages + 1024, InitialPageTables = pages / 512 + 64, CheckMode = CheckMode.Off });
        var mm = k.CreateMm("footprint");
        mm.InsertVma(new Vma(mm, Base, Base + (ulong)pages * MmStruct.PageSize, Prot.ReadWrite, VmFlags.None));
        k.S.MaxSteps = long.MaxValue;
        k.S.Spawn("populate", async _ =>
        {
            await mm.MmapLock.ReadLock();
            for (int i = 0; i < pages; i++)
                await Memory.HandleMmFault(mm, Base + (ulong)i * MmStruct.PageSize, FaultFlags.Write);
            await mm.MmapLock.ReadUnlock();
        });
        k.Run();
        long after = GC.GetTotalMemory(forceFullCollection: true);
        GC.KeepAlive(k);
        double frame = (double)k.Mem.ModelBytes / pages;
        double tables = (double)k.PageTables.ModelBytes / pages;
        Console.WriteLine($"pages mapped            {pages}");
        Console.WriteLine($"frame metadata          {frame:F2} B/page ({System.Runtime.CompilerServices.Unsafe.SizeOf<Frame>()} B per frame, {k.Mem.Capacity} frames)");
        Console.WriteLine($"page tables (all levels) {tables:F2} B/page ({k.PageTables.TablesInUse} tables)");
        Console.WriteLine($"rmap                    0.00 B/page (anon root + index live in the frame)");
        Console.WriteLine($"structural total        {frame + tables:F2} B/page");
        Console.WriteLine($"managed heap growth     {(double)(after - before) / pages:F2} B/page");
    }
}
