using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Ksm;

/// <summary>Race §5(d8): KSM merging a page a CPU still caches writable+dirty while MADV_FREE and clear_refs defer their flushes.</summary>
public class KsmDeferredFlushTests
{
    /// <summary>
    /// Drives Nadav Amit's interleaving: cpu0 caches the entry; cpu1 (MADV_FREE) and cpu2 (clear_refs) run up to their
    /// deferred TLB flush and are held there; ksmd runs up to replace_page; only then does cpu0 write; the held flushes
    /// go last. Context ids: 0 setup, 1 cpu0, 2 cpu1, 3 cpu2, 4 ksmd (scenario order).
    /// </summary>
    sealed class NadavSchedule : IStrategy
    {
        public Kernel? K;
        public string Name => "nadav-d8";
        public void BeginRun(int iteration) { }
        public int NextInt(int bound) => 0;

        bool AtFlush(int id) => K!.S.Contexts[id].CurrentFunction == "flush_tlb_mm_range";

        public int Next(in Decision d)
        {
            var r = d.Runnable;
            var ksmd = K!.S.Contexts[4];
            if (r.IndexOf(2) >= 0 && !AtFlush(2)) return 2;
            if (r.IndexOf(3) >= 0 && !AtFlush(3)) return 3;
            if (r.IndexOf(4) >= 0 && (ksmd.CurrentFunction != "replace_page" || _wrote)) return 4;
            if (r.IndexOf(1) >= 0)
            {
                if (ksmd.CurrentFunction == "replace_page") _wrote = true;
                return 1;
            }
            return r[0];
        }

        bool _wrote;
    }

    static RunResult RunNadav(string era)
    {
        var s = ScenarioLoader.LoadBuiltIn("ksm-deferred-tlb-flush");
        var strategy = new NadavSchedule();
        return ScenarioRunner.Run(s, EraTable.Get(era), strategy, new RunOptions { Configure = k => strategy.K = k });
    }

    [Theory]
    [InlineData("4.12")]
    [InlineData("4.13-rc1")]
    public void NadavInterleaving_LosesTheWrite_BeforeTheFix(string era)
    {
        var r = RunNadav(era);
        Assert.NotNull(r.Violation);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation!.Invariant);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void NadavInterleaving_KeepsTheWrite_FromTheFix(string era)
    {
        var r = RunNadav(era);
        Assert.Null(r.Violation);
    }
}
