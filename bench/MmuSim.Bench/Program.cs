using BenchmarkDotNet.Running;

namespace MmuSim.Bench;

public static class Program
{
    /// <summary>
    /// BenchmarkDotNet switcher, plus `footprint` (bytes of model memory per mapped page, measured on the managed heap) and `fault-phases`
    /// (the two-phase fault loop that bench/realfault/instructions.sh counts under callgrind).
    /// </summary>
    public static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "footprint")
        {
            Footprint.Run(args.Length > 1 ? int.Parse(args[1]) : FoundationBenchmarks.Pages);
            return;
        }
        if (args.Length > 0 && args[0] == "fault-phases")
        {
            FaultInstructions.Run(args.Length > 1 ? int.Parse(args[1]) : 200_000);
            return;
        }
        if (args.Length > 0 && args[0] == "explore")
        {
            ExploreBenchmarks.Quick();
            return;
        }
        if (args.Length > 0 && args[0] == "ksm")
        {
            KsmScanBench.Run(args.Length > 1 ? int.Parse(args[1]) : 1024, args.Length > 2 ? args[2] : "6.13");
            return;
        }
        if (args.Length > 0 && args[0] == "quick")
        {
            // Fast feedback while tuning (best of 3, Stopwatch); the reported figures come from BenchmarkDotNet.
            var b = new FoundationBenchmarks();
            for (int r = 0; r < 3; r++)
            {
                b.SetupFaults();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                b.AnonWriteFaults();
                double f = sw.Elapsed.TotalNanoseconds / FoundationBenchmarks.Pages;
                sw.Restart();
                b.MunmapZap();
                Console.WriteLine($"fault {f:F1} ns, zap {sw.Elapsed.TotalNanoseconds / FoundationBenchmarks.Pages:F1} ns");
            }
            return;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
