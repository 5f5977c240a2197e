using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Mm;

/// <summary>
/// MGLRU eviction (mm/vmscan.c run_eviction, evict_folios, try_to_inc_min_seq; the debugfs '-' command): which
/// generations it takes, what folio_referenced keeps, where it stops, and what a secondary MMU's young state does to it.
/// </summary>
public class LruGenEvictionTests
{
    const ulong A = 0x10000000;

    /// <summary>Four written anon pages, aged twice untouched: max_seq 5, min_seq 2, all four in generation 3.</summary>
    static (Kernel K, MmStruct Mm, LruGen Lg) AgedTwice(string era)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 4 * 0x1000);
        var lg = LruGen.Of(k);
        Assert.Equal(0, lg.Enable(7));
        Assert.Null(Run(k, async _ =>
        {
            for (int i = 0; i < 4; i++) await Memory.UserAccess(mm, A + (ulong)i * 0x1000, write: true, value: (ulong)i + 1);
            for (int pass = 0; pass < 2; pass++) Assert.Equal(0, await lg.RunAging(0, lg.MaxSeq(), swappiness: 1, forceScan: true));
        }));
        Assert.Equal((5UL, 2UL), (lg.MaxSeq(), lg.MinSeq()));
        for (int i = 0; i < 4; i++) Assert.Equal(3UL, lg.GenerationOf(mm.PeekPte(A + (ulong)i * 0x1000).Pfn));
        return (k, mm, lg);
    }

    static LruGen.EvictionResult Evict(Kernel k, LruGen lg, ulong seq, int swappiness, long nr = long.MaxValue)
    {
        LruGen.EvictionResult r = default;
        Assert.Null(Run(k, async _ => r = await lg.RunEviction(0, seq, swappiness, nr)));
        return r;
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.18")]
    public void Eviction_TakesTheOldestGeneration_KeepsTheFolioUsedSince_AndStopsAtMinNrGens(string era)
    {
        var (k, mm, lg) = AgedTwice(era);
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, A + 0x1000, write: false))); // page 1 used again
        long used = mm.PeekPte(A + 0x1000).Pfn;
        var r = Evict(k, lg, seq: 3, swappiness: LruGen.MaxSwappiness);
        Assert.Equal(0, r.Errno);
        Assert.Equal(3, r.Reclaimed);
        for (int i = 0; i < 4; i++)
        {
            var pte = mm.PeekPte(A + (ulong)i * 0x1000);
            if (i == 1) Assert.True(pte.Present && pte.Pfn == used);
            else Assert.Equal(SwapType.Swap, pte.SwapKind);
        }
        // folio_referenced found it used: back PG_active, to max_seq - 1 (lru_gen_folio_seq); generation 3 is empty
        // now, so min_seq moved past it, and with max_seq - min_seq + 1 == MIN_NR_GENS eviction stops.
        Assert.Equal(4UL, lg.GenerationOf(used));
        Assert.Equal((5UL, 4UL), (lg.MaxSeq(), lg.MinSeq()));
        Assert.Equal(3, k.Stats[Stat.PagesReclaimed]);
        Assert.Null(lg.CheckInvariants());
        Assert.Null(Run(k, async _ =>
        {
            for (int i = 0; i < 4; i++) Assert.Equal((ulong)i + 1, await Memory.UserAccess(mm, A + (ulong)i * 0x1000, write: false));
        }));
        // Nothing is left to take: -EINVAL for a seq newer than max_seq - MIN_NR_GENS, else nothing reclaimed.
        Assert.Equal(Errno.EINVAL, Evict(k, lg, seq: 4, swappiness: 200).Errno);
        Assert.Equal(0, Evict(k, lg, seq: 3, swappiness: 200).Reclaimed);
    }

    [Fact]
    public void Eviction_HonoursNrToReclaim_AndSwappinessZeroTakesNoAnonFolio()
    {
        var (k, _, lg) = AgedTwice("6.18");
        var none = Evict(k, lg, seq: 3, swappiness: 0);
        Assert.Equal((0, 0L), (none.Errno, none.Reclaimed));
        Assert.Equal((2UL, 4UL), (lg.MinSeq(), lg.MinSeq(file: true))); // only file's empty generations are retired
        // The first evict_folios finds anon's oldest generation (2) empty and moves min_seq to 3 (file's is at 4 already:
        // two generations, none to take); the second takes generation 3's four folios in one batch (up to MIN_LRU_BATCH
        // pages); run_eviction checks nr_to_reclaim only between batches, so it stops there, min_seq still 3.
        var one = Evict(k, lg, seq: 3, swappiness: 60, nr: 1);
        Assert.Equal((0, 4L, 5), (one.Errno, one.Reclaimed, one.Scanned));
        Assert.Equal(4, k.Stats[Stat.PagesReclaimed]);
        Assert.Equal((3UL, 4UL), (lg.MinSeq(), lg.MinSeq(file: true)));
        Assert.Null(lg.CheckInvariants());
    }

    [Fact]
    public void Eviction_ChecksItsArguments_AndItsEra()
    {
        var (k, _, lg) = AgedTwice("6.18");
        Assert.Equal(Errno.EINVAL, Evict(k, lg, seq: 4, swappiness: 60).Errno); // seq + MIN_NR_GENS > max_seq
        Assert.Equal(Errno.EINVAL, Evict(k, lg, seq: 3, swappiness: 201).Errno);
        Assert.Equal(0, k.Stats[Stat.PagesReclaimed]);
        var k2 = Kernel("6.18");
        Assert.Equal(Errno.ENOENT, Evict(k2, LruGen.Of(k2), seq: 0, swappiness: 60).Errno); // enabled was never written
    }

    /// <summary>
    /// lru-gen-evict-guest: what the secondary's young state does to eviction. 6.12+: the aging cleared the SPTEs'
    /// Accessed bits (clear_young_notify), a guest TLB hit sets none again, so the look-around finds all four old:
    /// four pages reclaimed, each zapped from KVM by a CLEAR range, no clear_flush_young. 6.1..6.11: the aging left the
    /// SPTEs young, so folio_referenced_one's ptep_clear_flush_young_notify asks KVM four times and keeps all four.
    /// </summary>
    [Theory]
    [InlineData("6.6", 0, 4, 0)]
    [InlineData("6.18", 4, 0, 4)]
    public void GuestMemory_EvictionFollowsTheSecondarysYoungState(string era, long reclaimed, long clearFlushYoung, long sptesZapped)
    {
        var s = ScenarioLoader.LoadBuiltIn("lru-gen-evict-guest");
        var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
        if (reclaimed == 4) Assert.Null(r.Violation);
        else Assert.Contains("the eviction reclaimed 0 pages, expected 4", r.Violation!.Message);
        Assert.Equal(reclaimed, r.Kernel.Stats[Stat.PagesReclaimed]);
        Assert.Equal(clearFlushYoung, r.Kernel.Stats[Stat.NotifierClearFlushYoung]);
        Assert.Equal(sptesZapped, r.Kernel.Stats[Stat.SptesZapped]);
    }

    [Fact]
    public void TheEvictOp_RejectsASwappinessOutOfRange()
    {
        var yaml = CliRunner.MinimalScenario.Replace("- read: { addr: 0x100000 }", "- lru-gen.evict: { swappiness: 300 }");
        CliRunner.AssertBadInput(yaml, 10, "lru-gen.evict.swappiness", "300 is outside 0..200");
    }
}
