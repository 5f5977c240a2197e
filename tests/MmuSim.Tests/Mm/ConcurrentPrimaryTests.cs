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

    /// <summary>
    /// Stress: two tasks (parent and, after fork, child) run random user operations while a daemon reclaims,
    /// migrates, ages and cleans random folios and another context reaps nothing but ages; every interleaving comes
    /// from the random strategy. Asserts no violation (pairing, sleeping in atomic, deadlock), no model exception,
    /// and consistent counts and rmap at the end.
    /// </summary>
    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.10")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void RandomConcurrentOperations_StayConsistent(string era)
    {
        const ulong S = 0x400000, Hg = 0x600000;
        for (ulong seed = 1; seed <= 12; seed++)
        {
            var k = Kernel(era, new RandomStrategy(seed));
            var mm = k.CreateMm("p0");
            mm.InsertVma(new Vma(mm, S, S + 0x8000, Prot.ReadWrite, VmFlags.None));
            mm.InsertVma(new Vma(mm, Hg, Hg + 0x200000, Prot.ReadWrite, VmFlags.HugePage));
            var rec = Recorder(k, mm);
            var dev = new Devices.DeviceMirror(k, mm, "dmirror");
            bool withDev = era != "4.10"; // 3.6-4.12 have the known races 5(a)/5(b)
            if (withDev)
            {
                k.Checker.AddSecondary(dev);
                Run(k, async _ => { await mm.Notifiers.Register(dev); }, "register-dev");
            }
            MmStruct? child = null;
            var rnd = new Random((int)seed);
            ulong Addr(int i) => i < 8 ? S + (ulong)i * 0x1000 : Hg + (ulong)(i - 8) * 0x41000;

            async ValueTask UserOps(Func<MmStruct?> who, Random r, int n)
            {
                for (int j = 0; j < n; j++)
                {
                    var m = who();
                    if (m == null) { await k.S.Point(PointKind.Yield); continue; }
                    int i = r.Next(12);
                    ulong a = Addr(i);
                    switch (r.Next(9))
                    {
                        case 0: case 1: case 2: await Write(m, a, (ulong)r.Next(1, 1000)); break;
                        case 3: await Read(m, a); break;
                        case 4: await Madvise.MadviseDontneed(m, a, 0x1000); break;
                        case 5: await Madvise.MadviseFree(m, a, 0x1000); break;
                        case 6: await Mprotect.DoMprotect(m, a, 0x1000, r.Next(2) == 0 ? Prot.Read : Prot.ReadWrite); break;
                        case 7:
                            await Mmap.Munmap(m, a, 0x1000);
                            await Mmap.DoMmap(m, a, 0x1000, Prot.ReadWrite, VmFlags.None);
                            break;
                        default: await Read(m, a); break;
                    }
                }
            }

            var r0 = new Random(rnd.Next());
            var r1 = new Random(rnd.Next());
            var r2 = new Random(rnd.Next());
            k.S.Spawn("task0", async _ =>
            {
                await UserOps(() => mm, r0, 6);
                child = await Fork.DupMmap(mm, "p1");
                await UserOps(() => mm, r0, 8);
            });
            k.S.Spawn("task1", async _ => await UserOps(() => child, r1, 14));
            var r3 = new Random(rnd.Next());
            if (withDev)
                k.S.Spawn("device", async _ =>
                {
                    for (int j = 0; j < 10; j++) await dev.Access(Addr(r3.Next(12)), write: r3.Next(2) == 0, (ulong)r3.Next(1, 1000));
                });
            k.S.Spawn("kswapd", async _ =>
            {
                for (int j = 0; j < 16; j++)
                {
                    var m = r2.Next(2) == 0 ? mm : child ?? mm;
                    if (m.Exited) continue;
                    var (present, pfn, _, _) = m.Translate(Addr(r2.Next(12)));
                    if (!present || pfn == PhysMem.ZeroPfn) { await k.S.Point(PointKind.Yield); continue; }
                    switch (r2.Next(4))
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
            Consistent(k);
            Assert.Equal(
                rec.Calls.Count(c => c.Kind == Devices.CallbackKind.InvalidateRangeStart),
                rec.Calls.Count(c => c.Kind == Devices.CallbackKind.InvalidateRangeEnd));
        }
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void ReclaimAndMigrationOfTheSameFolio_OnlyOneIsolatesIt(string era)
    {
        for (ulong seed = 1; seed <= 40; seed++)
        {
            var k = Kernel(era, new RandomStrategy(seed));
            var mm = MmWithVma(k, A, 0x1000);
            Ok(k, async () => await Write(mm, A, 7));
            long pfn = mm.PeekPte(A).Pfn;
            ushort gen = k.Mem[pfn].Generation;
            bool reclaimed = false;
            long migrated = -1;
            k.S.Spawn("kswapd", async _ => reclaimed = await Vmscan.ShrinkFolio(k, pfn));
            k.S.Spawn("kcompactd", async _ => migrated = await Migrate.MigrateFolio(k, pfn));
            ulong? got = null;
            k.S.Spawn("task", async _ => got = await Read(mm, A));
            var v = k.Run();
            Assert.True(v == null, $"seed {seed}: {v}");
            Assert.False(reclaimed && migrated > 0);
            Assert.Equal(7UL, got);
            Assert.Equal(reclaimed || migrated > 0, k.Mem[pfn].Generation != gen); // freed (maybe reused) iff one succeeded
            Consistent(k);
        }
    }
}
