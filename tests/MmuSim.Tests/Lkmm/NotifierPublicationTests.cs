using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Lkmm;

/// <summary>
/// mmu_notifier_register's publication under the weak-memory mode (issue 11: "notifier registration published without
/// hlist_add_head_rcu", 543bdb2d825f): the driver's ->ops store and the list store are plain before 5.3, a store-release
/// after. A walker that holds none of the locks mm_take_all_locks takes can then reach the subscription and read its
/// ->ops uninitialized before 5.3, never after; every kernel walker holds one of those locks, so the catalog cannot
/// show it (docs/history.md), and the unlocked walker here is the test's, not a kernel path.
/// </summary>
public class NotifierPublicationTests
{
    const ulong A = 0x10000;

    static int Violations(string era, bool walkerTakesMmapLock)
    {
        int bad = 0;
        for (ulong seed = 1; seed <= 300; seed++)
        {
            var k = Kernel(era, new RandomStrategy(seed));
            var mm = MmWithVma(k, A, 0x4000);
            k.Weak.Begin(MmuSim.Lkmm.MemoryModel.Lkmm);
            k.S.Spawn("driver", async _ => await mm.Notifiers.Register(new RecordingSecondary(k, RecordingSecondary.All)));
            k.S.Spawn("walker", async _ =>
            {
                if (walkerTakesMmapLock) await mm.MmapLock.ReadLock();
                var range = new MmuNotifierRange(mm, A, A + 0x1000, MmuNotifyEvent.Clear);
                await mm.Notifiers.InvalidateRangeStart(range);
                await mm.Notifiers.InvalidateRangeEnd(range);
                if (walkerTakesMmapLock) await mm.MmapLock.ReadUnlock();
            });
            var v = k.Run();
            if (v != null)
            {
                Assert.Equal(Invariants.UninitializedNotifier, v.Invariant);
                bad++;
            }
        }
        return bad;
    }

    [Fact]
    public void AnUnlockedWalker_ReadsOpsUninitialized_OnlyBeforeHlistAddHeadRcu()
    {
        Assert.True(Violations("4.19", walkerTakesMmapLock: false) > 0);
        Assert.Equal(0, Violations("5.5", walkerTakesMmapLock: false));
    }

    [Fact]
    public void AWalkerUnderMmapLock_IsOrderedByTheLock_EvenBefore5_3()
    {
        Assert.Equal(0, Violations("4.19", walkerTakesMmapLock: true));
    }
}
