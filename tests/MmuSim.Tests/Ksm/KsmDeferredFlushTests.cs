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

    /// <summary>Nadav Amit's setup with nothing else: two identical pages; the schedule is forced by the strategy.</summary>
    const string Minimal = """
        name: d8-minimal
        primary_tlb: true
        processes:
          - name: p
            vmas:
              - { start: 0x100000, len: 8K, prot: rw, contents: { value: 0x5A } }
        setup:
          - madvise: { process: p, addr: 0x100000, len: 8K, advice: mergeable }
          - ksm.scan: { full_scans: 1 }
        threads:
          - name: cpu0
            process: p
            ops:
              - write: { addr: 0x100000, value: 0x5A }
              - signal: { event: cached }
              - write: { addr: 0x100000, value: 0x77 }
              - wait: { event: merged }
              - expect-value: { addr: 0x100000, value: 0x77 }
          - name: cpu1
            process: p
            ops:
              - wait: { event: cached }
              - madvise: { addr: 0x100000, len: 4K, advice: free }
          - name: cpu2
            process: p
            ops:
              - wait: { event: cached }
              - clear-refs: { type: 4 }
          - name: ksmd
            ops:
              - wait: { event: cached }
              - ksm.scan: { full_scans: 1 }
              - signal: { event: merged }
        """;

    static RunResult RunNadav(string era)
    {
        var s = ScenarioLoader.Parse(Minimal, "d8-minimal.yaml");
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
        Assert.Equal(MmuSim.Sched.Invariants.LostWrite, r.Violation!.Invariant);
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
    [Fact]
    public void BuiltIn_ExplorationFindsTheLostWriteIn4_12_NotIn4_19()
    {
        var s = ScenarioLoader.LoadBuiltIn("ksm-deferred-tlb-flush");
        Assert.Equal("d8", s.Catalog);
        Assert.True(s.PrimaryTlb);
        var bad = ScenarioRunner.Explore(s, EraTable.Get("4.12"), ScenarioRunner.RandomStrategyFactory, 300, 1);
        Assert.NotNull(bad.FirstViolation);
        Assert.Equal(MmuSim.Sched.Invariants.LostWrite, bad.FirstViolation!.Violation!.Invariant);
        Assert.True(bad.FirstViolation.MatchesExpectation);
        var fixedEra = ScenarioRunner.Explore(s, EraTable.Get("4.19"), ScenarioRunner.RandomStrategyFactory, 150, 1);
        Assert.Null(fixedEra.FirstViolation?.Violation);
    }

    [Fact]
    public void IgnoringTlbFlushPending_IsKilledIn4_19()
    {
        var s = ScenarioLoader.LoadBuiltIn("ksm-deferred-tlb-flush");
        var r = ScenarioRunner.Explore(s, EraTable.Get("4.19"), ScenarioRunner.RandomStrategyFactory, 300, 1,
            [Mutation.KsmIgnoreTlbFlushPending]);
        Assert.NotNull(r.FirstViolation);
        Assert.Equal(MmuSim.Sched.Invariants.LostWrite, r.FirstViolation!.Violation!.Invariant);
    }

    [Fact]
    public void BuiltIn_IsNotApplicableBeforeMadvFree()
    {
        var s = ScenarioLoader.LoadBuiltIn("ksm-deferred-tlb-flush");
        Assert.Equal(ExpectKind.NotApplicable, s.ExpectedIn(EraTable.Get("3.19")).Kind);
        Assert.Equal(ExpectKind.Violation, s.ExpectedIn(EraTable.Get("4.13-rc1")).Kind);
        Assert.Equal(ExpectKind.Pass, s.ExpectedIn(EraTable.Get("4.13")).Kind);
        Assert.False(EraTable.Get("4.13-rc1").Has(Feature.KsmTlbFlushPending));
        Assert.True(EraTable.Get("4.13").Has(Feature.KsmTlbFlushPending));
    }
}
