using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;
using Xunit;

namespace MmuSim.Tests.Explore;

/// <summary>The state cache of the exhaustive search (<see cref="DfsStrategy"/> with <c>stateCache</c>, <see cref="StateDigest"/>).</summary>
public class StateCacheTests
{
    static ExploreReport Explore(IExplorable p, bool cache, int n = 1_000_000) =>
        new Explorer(p, new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = DporStrategy.Unbounded, Por = false, StateCache = cache },
            Iterations = n,
        }).Run();

    /// <summary>Two contexts writing the PTEs of <paramref name="m"/> pages each.</summary>
    static IExplorable Ptes(int m) => new SchedulerExplorable(ExplorableInfo.Of("ptes"), strategy =>
    {
        var s = new Scheduler(strategy);
        for (int c = 0; c < 2; c++)
        {
            ulong baseVa = (ulong)c << 30;
            s.Spawn($"cpu{c}", async _ =>
            {
                for (int i = 0; i < m; i++) await s.Point(PointKind.PteWrite, baseVa + ((ulong)i << 12));
            });
        }
        return s;
    });

    [Fact]
    public void Interleavings_that_reach_the_same_state_are_explored_once()
    {
        var full = Explore(Ptes(3), cache: false);
        var cached = Explore(Ptes(3), cache: true);
        Assert.Equal(70, full.Schedules); // C(8,4)
        Assert.True(cached.Exhausted);
        // A state is the pair of positions (not started, at point 1..3, done) of each context: 5 x 5, of which those
        // with both contexts alive and a choice to make are decisions: not started or at a point, 4 x 4 = 16.
        Assert.Matches(@"^verified: no violation in any interleaving \(\d+ runs, 16 distinct states, \d+ ended at a state seen before\)$", cached.Completion);
        Assert.True(cached.Schedules < full.Schedules, $"{cached.Schedules} runs");
    }

    /// <summary>
    /// A bug visible only through a hoisted local: A reads x into r, then fails if it read B's write. The state where A
    /// holds r = 1 has the same globals and positions as one where A holds r = 0 (reached first, when B wrote after A's
    /// read); a digest that ignored the async state machine's locals would prune it and miss the bug.
    /// </summary>
    static IExplorable LocalOnly() => new SchedulerExplorable(ExplorableInfo.Of("local"), strategy =>
    {
        var s = new Scheduler(strategy);
        var x = new int[1];
        s.Spawn("A", async _ =>
        {
            await s.Point(PointKind.Yield);
            int r = x[0];
            await s.Point(PointKind.Yield);
            await s.Point(PointKind.Yield);
            if (r == 1) s.Fail("lost-write", "A read B's write");
        });
        s.Spawn("B", async _ =>
        {
            await s.Point(PointKind.Yield);
            x[0] = 1;
        });
        s.Spawn("C", async _ =>
        {
            for (int i = 0; i < 4; i++) await s.Point(PointKind.Yield);
        });
        return s;
    });

    [Fact]
    public void A_state_differing_only_in_a_local_of_a_suspended_method_is_not_pruned()
    {
        var full = Explore(LocalOnly(), cache: false);
        var cached = Explore(LocalOnly(), cache: true);
        Assert.Equal(1, full.Violations);
        Assert.Equal(1, cached.Violations);
        Assert.Equal("lost-write", cached.Counterexamples[0].Violation.Invariant);
    }

    [Fact]
    public void Equal_states_reached_in_different_orders_digest_equal()
    {
        // The terminal state of Ptes(1) after the two contexts ran in two different orders.
        (UInt128 Digest, ulong Schedule) Final(IStrategy st)
        {
            UInt128 d = default;
            var outcome = Ptes(1).RunOnce(st, 0, new DigestAtEnd(h => d = h));
            return (d, outcome.ScheduleHash);
        }
        var a = Final(new RoundRobinStrategy(int.MaxValue)); // each context runs to its end
        var b = Final(new RoundRobinStrategy(1));            // a switch at every point
        Assert.NotEqual(a.Schedule, b.Schedule);
        Assert.Equal(a.Digest, b.Digest);
        var other = Final(new RoundRobinStrategy(int.MaxValue));
        Assert.Equal(a, other);
    }

    sealed class DigestAtEnd(Action<UInt128> got) : IRunObserver
    {
        public void Attach(Scheduler s, Kernel? k) { }
        public void Detach(Scheduler s, Kernel? k) => got(new StateDigest().Compute(s));
    }

    /// <summary>Race 5(a) in 4.10 (lost-write). Its fixed era, 4.19, is verified by the same search in about a minute
    /// (docs/explore.md), too long for CI.</summary>
    [Fact]
    public void Catalog_row_5a_is_found_in_its_buggy_era()
    {
        var s = ScenarioLoader.LoadBuiltIn("invalidate-page-after-ptl");
        var r = Explore(new ScenarioExplorable(s, EraTable.Get("4.10")), cache: true, n: 2_000_000);
        Assert.True(r.Violations > 0, r.Completion);
        Assert.Equal("lost-write", r.Counterexamples[0].Violation.Invariant);
        Assert.NotNull(r.StateCache);
    }

    [Fact]
    public void The_no_retry_mutant_is_killed_with_the_cache()
    {
        var s = ScenarioFamily.Load("kvm-fault-vs-invalidate", 1, 1);
        var r = Explore(new ScenarioExplorable(s, EraTable.Get("6.13"), [Mutation.KvmNoRetryCheck]), cache: true);
        Assert.True(r.Violations > 0, r.Completion);
        var clean = Explore(new ScenarioExplorable(s, EraTable.Get("6.13")), cache: true);
        Assert.StartsWith("verified: no violation in any interleaving", clean.Completion);
        Assert.True(clean.StateCache!.Value.Pruned > 0);
        // The enumeration of every schedule does not finish in ten times as many runs (measured: not within 3.1 M
        // schedules in 60 s).
        var full = Explore(new ScenarioExplorable(s, EraTable.Get("6.13")), cache: false, n: clean.Schedules * 10);
        Assert.False(full.Exhausted);
        Assert.Equal(0, full.Violations);
    }

    /// <summary>With a preemption bound the cached search gives the verdict of the unreduced one (the key holds the
    /// current context and the preemptions spent), in no more runs.</summary>
    [Theory]
    [InlineData("invalidate-page-after-ptl", "4.10", true)]
    [InlineData("invalidate-page-after-ptl", "4.19", false)]
    [InlineData("memslot-between-start-end", "6.13", false)]
    [InlineData("device-private-fault-ref", "5.13", true)]
    [InlineData("device-private-fault-ref", "6.13", false)]
    public void Bounded_cached_search_agrees_with_the_unreduced_one(string name, string era, bool buggy)
    {
        IExplorable P() => new ScenarioExplorable(ScenarioLoader.LoadBuiltIn(name), EraTable.Get(era));
        ExploreReport Run(bool cache) => new Explorer(P(), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = 1, Por = false, StateCache = cache },
            Iterations = 1_000_000,
        }).Run();
        var cached = Run(true);
        var full = Run(false);
        Assert.Equal(buggy, full.Violations > 0);
        Assert.Equal(buggy, cached.Violations > 0);
        if (buggy) Assert.Equal(full.Counterexamples[0].Violation.Invariant, cached.Counterexamples[0].Violation.Invariant);
        else Assert.True(cached.Exhausted && full.Exhausted);
        Assert.True(cached.Schedules <= full.Schedules, $"{cached.Schedules} runs against {full.Schedules} schedules");
    }

    /// <summary>MGLRU's aging walk (its generations, the clear_young it sends KVM) racing a vCPU's faults: the digest walks
    /// the LruGen state, merges interleavings, and the search completes with no violation.</summary>
    [Fact]
    public void MglruAgingRacingKvmFaults_IsVerifiedExhaustively()
    {
        var sc = ScenarioLoader.Parse("""
            name: lg-small
            era: "6.18"
            processes:
              - name: vmm
                vmas:
                  - { start: 0x10000000, len: 8K, prot: rw, flags: nohugepage }
            setup:
              - lru-gen.enable: {}
              - vm.create: { process: vmm, name: vm0, arch: x86-tdp }
              - memslot.add: { vm: vm0, slot: 1, gfn: 0x100, pages: 2, hva: 0x10000000 }
            threads:
              - name: vcpu0
                process: vmm
                ops:
                  - guest.write: { vm: vm0, vcpu: 0, gfn: 0x100, pages: 2, value: 1 }
              - name: main
                process: vmm
                ops:
                  - lru-gen.age: {}
            """, "lg-small.yaml");
        var r = Explore(new ScenarioExplorable(sc, EraTable.Get("6.18"), []), cache: true);
        Assert.True(r.Exhausted);
        Assert.Equal(0, r.Violations);
        Assert.Matches(@"^verified: no violation in any interleaving \(\d+ runs, \d+ distinct states, [1-9]\d* ended at a state seen before\)$", r.Completion);
    }
}
