using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>Records what the primary PTE holds when invalidate_page arrives.</summary>
sealed class PteAtInvalidatePage : MmuNotifier
{
    public override NotifierOps Ops => NotifierOps.InvalidatePage;
    public List<Pte> Seen { get; } = [];

    public override ValueTask InvalidatePage(MmStruct mm, ulong address)
    {
        Seen.Add(mm.PeekPte(address));
        return default;
    }
}

/// <summary>Primary paths under random interleavings (the deterministic scheduler's random strategy).</summary>
public class ConcurrentPrimaryTests
{
    const ulong A = 0x10000;

    /// <summary>
    /// Race 5(a): in 3.6-4.12 try_to_unmap_one sends invalidate_page after pte_unmap_unlock, so a fault can map a new
    /// page at the address first: the late callback then meets the new translation. Up to 3.5 it is sent under the
    /// PTL and can only ever see the swap entry.
    /// </summary>
    [Theory]
    [InlineData("4.10", true)]
    [InlineData("3.7", true)]
    [InlineData("2.6.32", false)]
    public void Race5a_InvalidatePageAfterPtl_CanArriveAfterARefault(string era, bool reachable)
    {
        bool found = false;
        for (ulong seed = 1; seed <= 300 && !found; seed++)
        {
            var k = Kernel(era, new RandomStrategy(seed));
            var mm = MmWithVma(k, A, 0x1000);
            Ok(k, async () => await Write(mm, A, 5));
            long pfn = mm.PeekPte(A).Pfn;
            var probe = new PteAtInvalidatePage();
            Run(k, async _ => { await mm.Notifiers.Register(probe); }, "register");
            k.S.Spawn("kswapd", async _ => await Vmscan.ShrinkFolio(k, pfn));
            ulong? got = null;
            k.S.Spawn("task", async _ => got = await Read(mm, A));
            Assert.Null(k.Run());
            Assert.Equal(5UL, got);
            Consistent(k);
            foreach (var pte in probe.Seen)
            {
                if (pte.Present) found = true;
                else Assert.True(pte.IsNone || pte.SwapKind == SwapType.Swap); // 2.6.32: cleared, entry not yet set
            }
        }
        Assert.Equal(reachable, found);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("3.7")]
    [InlineData("4.13")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void UserWritesAgainstReclaimMigrationAgingAndWriteback_KeepContentsAndCounts(string era)
    {
        for (ulong seed = 1; seed <= 25; seed++)
        {
            var k = Kernel(era, new RandomStrategy(seed));
            var mm = MmWithVma(k, A, 0x4000);
            var rec = Recorder(k, mm);
            Ok(k, async () =>
            {
                for (int i = 0; i < 4; i++) await Write(mm, A + (ulong)i * 0x1000, 100 + (ulong)i);
            });
            var final = new ulong?[4];
            k.S.Spawn("task", async _ =>
            {
                for (int round = 1; round <= 3; round++)
                    for (int i = 0; i < 4; i++) await Write(mm, A + (ulong)i * 0x1000, (ulong)(round * 1000 + i));
                for (int i = 0; i < 4; i++) final[i] = await Read(mm, A + (ulong)i * 0x1000);
            });
            k.S.Spawn("daemon", async _ =>
            {
                for (int round = 0; round < 3; round++)
                    for (int i = 0; i < 4; i++)
                    {
                        var (present, pfn, _, _) = mm.Translate(A + (ulong)i * 0x1000);
                        if (!present || pfn == PhysMem.ZeroPfn) continue;
                        switch ((round + i) % 4)
                        {
                            case 0: await Vmscan.ShrinkFolio(k, pfn); break;
                            case 1: await Migrate.MigrateFolio(k, pfn); break;
                            case 2: await Rmap.FolioReferenced(k, pfn); break;
                            default: await PageWriteback.FolioClearDirtyForIo(k, pfn); break;
                        }
                    }
            });
            var v = k.Run();
            Assert.True(v == null, $"seed {seed}: {v}");
            for (int i = 0; i < 4; i++) Assert.Equal((ulong)(3000 + i), final[i]);
            Consistent(k);
            Assert.Empty(mm.ActiveRanges);
            Assert.Equal(
                rec.Calls.Count(c => c.Kind == Devices.CallbackKind.InvalidateRangeStart),
                rec.Calls.Count(c => c.Kind == Devices.CallbackKind.InvalidateRangeEnd));
        }
    }

    [Theory]
    [InlineData("3.7")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void ForkMprotectAndMadviseAgainstThpReclaim_StayConsistent(string era)
    {
        for (ulong seed = 1; seed <= 15; seed++)
        {
            var k = Kernel(era, new RandomStrategy(seed));
            var mm = MmWithVma(k, 0x200000, 0x200000, VmFlags.HugePage);
            Ok(k, async () =>
            {
                await Write(mm, 0x200000, 1);
                await Write(mm, 0x201000, 2);
            });
            long head = mm.PeekPmd(0x200000).Pfn;
            MmStruct? child = null;
            ulong? c0 = null, p1 = null;
            k.S.Spawn("task", async _ =>
            {
                child = await Fork.DupMmap(mm, "c");
                await Write(mm, 0x200000, 10);
                await Mprotect.DoMprotect(mm, 0x201000, 0x1000, Prot.Read);
                await Madvise.MadviseDontneed(mm, 0x202000, 0x1000);
                p1 = await Read(mm, 0x201000);
                c0 = await Read(child, 0x200000);
            });
            k.S.Spawn("kswapd", async _ =>
            {
                await Vmscan.ShrinkFolio(k, head);
                await Rmap.FolioReferenced(k, head);
            });
            var v = k.Run();
            Assert.True(v == null, $"seed {seed}: {v}");
            Assert.Equal(2UL, p1);
            Assert.Equal(1UL, c0);
            Consistent(k);
        }
    }
}
