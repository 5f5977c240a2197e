using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Userfaultfd;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Userfaultfd;

/// <summary>
/// The non-cooperative userfaultfd events (fs/userfaultfd.c, 4.11): fork, mremap and MADV_DONTNEED / MADV_REMOVE post
/// UFFD_EVENT_FORK / REMAP / REMOVE on a context that asked for them and wait until the monitor has read the message;
/// meanwhile the context's mmap_changing makes the mfill ioctls EAGAIN. Without the features the registration is
/// dropped (fork, mremap) or nothing is announced (madvise).
/// </summary>
public class UffdEventsTests
{
    const ulong A = 0x200000;
    const ulong B = 0x400000;
    const ulong P = MmStruct.PageSize;
    const ulong AllEvents = UserfaultfdCtx.FeatureEventFork | UserfaultfdCtx.FeatureEventRemap | UserfaultfdCtx.FeatureEventRemove;

    static UserfaultfdCtx Registered(Kernel k, MmStruct mm, ulong features, ulong len = 4 * P)
    {
        var ctx = UserfaultfdCtx.Create(mm, "uffd", features)!;
        Ok(k, async () => Assert.Equal(0, await Mfill.UserfaultfdRegister(ctx, A, len, UffdMode.Missing)));
        return ctx;
    }

    [Fact]
    public void Fork_WithEventFork_WaitsForTheMonitor_AndTheChildsVmaIsRegisteredWithANewContext()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 4 * P, VmFlags.NoHugePage);
        var ctx = Registered(k, mm, AllEvents);
        MmStruct? child = null;
        UffdMsg? msg = null;
        int during = 1, changingSeen = -1;
        bool forkDoneBeforeRead = true;
        k.S.Spawn("forker", async _ => child = await Fork.DupMmap(mm, "child"));
        k.S.Spawn("monitor", async _ =>
        {
            // The forker, spawned first, runs until it sleeps on its event (the default strategy switches only then).
            changingSeen = ctx.MmapChanging;
            during = (await Mfill.MfillAtomic(ctx, A, P, MfillMode.Copy, 1, false, false)).Error;
            forkDoneBeforeRead = child != null;
            msg = await ctx.Read();
        });
        Assert.Null(k.Run());
        Assert.Equal(1, changingSeen);
        Assert.Equal(Errno.EAGAIN, during); // "bail out and request the user to retry later"
        Assert.False(forkDoneBeforeRead);  // fork waited for the read
        Assert.Equal(UffdEvent.Fork, msg!.Value.Event);
        var nctx = msg.Value.Child!;
        Assert.Same(child, nctx.Mm);
        Assert.NotSame(ctx, nctx);
        Assert.Equal(AllEvents, nctx.Features);
        var cv = child!.FindVma(A)!;
        Assert.Same(nctx, cv.Uffd);
        Assert.Equal(VmFlags.UffdMissing, cv.Flags & VmFlags.UffdAny);
        Assert.Equal(0, ctx.MmapChanging);
        Assert.Same(ctx, mm.FindVma(A)!.Uffd);
    }

    [Fact]
    public void Fork_WithoutEventFork_DoesNotWait_AndTheChildIsNotRegistered()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 4 * P, VmFlags.NoHugePage);
        Registered(k, mm, UserfaultfdCtx.FeatureEventRemap);
        MmStruct child = null!;
        Ok(k, async () => child = await Fork.DupMmap(mm, "child"));
        var cv = child.FindVma(A)!;
        Assert.Null(cv.Uffd);
        Assert.Equal((VmFlags)0, cv.Flags & VmFlags.UffdAny);
    }

    [Fact]
    public void Fork_WhoseEventIsNeverRead_CompletesWhenTheParentsUserfaultfdCloses_AndTheChildIsUnregistered()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 4 * P, VmFlags.NoHugePage);
        var ctx = Registered(k, mm, UserfaultfdCtx.FeatureEventFork);
        MmStruct? child = null;
        k.S.Spawn("forker", async _ => child = await Fork.DupMmap(mm, "child"));
        k.S.Spawn("closer", async _ =>
        {
            Assert.Equal(1, ctx.MmapChanging); // the forker sleeps on its event
            await ctx.Release();
        });
        Assert.Null(k.Run());
        Assert.NotNull(child);
        Assert.Null(child!.FindVma(A)!.Uffd); // userfaultfd_release_new
        Assert.Equal(0, ctx.MmapChanging);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Mremap_WithEventRemap_KeepsTheRegistration_AndReportsFromToLen(bool feature)
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 4 * P, VmFlags.NoHugePage);
        var ctx = Registered(k, mm, feature ? UserfaultfdCtx.FeatureEventRemap : 0);
        UffdMsg? msg = null;
        k.S.Spawn("mover", async _ => await Mremap.DoMremap(mm, A, 4 * P, B));
        if (feature) k.S.Spawn("monitor", async _ => msg = await ctx.Read());
        Assert.Null(k.Run());
        var moved = mm.FindVma(B)!;
        if (feature)
        {
            Assert.Equal(new UffdMsg(A, default, false, UffdEvent.Remap, To: B, Len: 4 * P), msg);
            Assert.Same(ctx, moved.Uffd);
            Assert.Equal(VmFlags.UffdMissing, moved.Flags & VmFlags.UffdAny);
        }
        else
        {
            Assert.Null(moved.Uffd);
            Assert.Equal((VmFlags)0, moved.Flags & VmFlags.UffdAny);
        }
        Assert.Null(mm.FindVma(A));
    }

    [Fact]
    public void Dontneed_WithEventRemove_AnnouncesTheRangeBeforeItZaps_WithMmapLockDropped()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 4 * P, VmFlags.NoHugePage);
        var ctx = Registered(k, mm, UserfaultfdCtx.FeatureEventRemove);
        Ok(k, async () => Assert.Equal((4L, 0), await Mfill.MfillAtomic(ctx, A, 4 * P, MfillMode.Copy, 7, false, false)));
        UffdMsg? msg = null;
        bool presentAtRead = false, lockFreeAtRead = false;
        k.S.Spawn("madvise", async _ => await Madvise.MadviseDontneed(mm, A + P, 2 * P));
        k.S.Spawn("monitor", async _ =>
        {
            msg = await ctx.Read();
            presentAtRead = mm.PeekPte(A + P).Present;
            lockFreeAtRead = !mm.MmapLock.IsWriteLocked && !mm.MmapLock.IsReadLocked;
            Assert.Equal(0, await Mfill.UserfaultfdUnregister(ctx, msg!.Value.Address, msg.Value.Len)); // as uffd_poll_thread
        });
        Assert.Null(k.Run());
        Assert.Equal(new UffdMsg(A + P, default, false, UffdEvent.Remove, Len: 2 * P), msg);
        Assert.True(presentAtRead);  // the zap waits for the read
        Assert.True(lockFreeAtRead); // userfaultfd_remove dropped mmap_lock, so UFFDIO_UNREGISTER could take it for write
        Assert.True(mm.PeekPte(A + P).IsNone && mm.PeekPte(A + 2 * P).IsNone);
        Assert.True(mm.PeekPte(A).Present && mm.PeekPte(A + 3 * P).Present);
        Assert.Null(mm.FindVma(A + P)!.Uffd);
        Assert.Same(ctx, mm.FindVma(A)!.Uffd);
    }

    [Fact]
    public void ReadReturnsPendingFaultsBeforeEvents_AndACopyBeforeTheEventIsReadIsEagain()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 4 * P, VmFlags.NoHugePage);
        var ctx = Registered(k, mm, UserfaultfdCtx.FeatureEventRemove);
        var order = new List<UffdEvent>();
        int early = 1, late = 1;
        ulong? seen = null;
        k.S.Spawn("faulter", async _ => seen = await Memory.UserAccess(mm, A, write: false));
        k.S.Spawn("madvise", async _ => await Madvise.MadviseDontneed(mm, A + 2 * P, P));
        k.S.Spawn("monitor", async _ =>
        {
            Assert.Equal((1, 1), (ctx.Pending.Count, ctx.Events.Count)); // both sleep: the fault and the madvise
            order.Add((await ctx.Read())!.Value.Event);
            early = (await Mfill.MfillAtomic(ctx, A, P, MfillMode.Copy, 1, false, false)).Error; // the layout may be stale
            order.Add((await ctx.Read())!.Value.Event);
        });
        // The retry, once the madvise task has woken and dropped mmap_changing (userfaultfd_event_wait_completion).
        k.S.Spawn("monitor-retry", async _ =>
        {
            Assert.Equal(0, ctx.MmapChanging);
            late = (await Mfill.MfillAtomic(ctx, A, P, MfillMode.Copy, 1, false, false)).Error;
        });
        Assert.Null(k.Run());
        Assert.Equal([UffdEvent.PageFault, UffdEvent.Remove], order);
        Assert.Equal((Errno.EAGAIN, 0), (early, late));
        Assert.Equal(1UL, seen);
    }

    [Fact]
    public void MadviseRemove_PunchesTheHoleOfASharedMemfd_AndRefusesPrivateOrAnonMappings()
    {
        var s = ScenarioLoader.Parse("""
            name: t
            era: "6.13"
            processes:
              - name: p
                vmas:
                  - { start: 0x400000, len: 8K, prot: rw }
            threads:
              - name: main
                process: p
                ops:
                  - file.create: { as: f, kind: memfd, size: 16K }
                  - mmap: { addr: 0x200000, len: 16K, prot: rw, file: f, flags: shared }
                  - mmap: { addr: 0x300000, len: 16K, prot: rw, file: f }
                  - write: { addr: 0x200000, value: 5 }
                  - write: { addr: 0x201000, value: 6 }
                  - madvise: { addr: 0x200000, len: 4K, advice: remove }
                  - expect-value: { addr: 0x200000, value: 0 }
                  - expect-value: { addr: 0x201000, value: 6 }
                  - madvise: { addr: 0x300000, len: 4K, advice: remove, expect: eacces }
                  - madvise: { addr: 0x400000, len: 4K, advice: remove, expect: einval }
            """, "t.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
    }

    [Fact]
    public void TheEventFeatures_Are411_InUffdioApi()
    {
        Assert.False(UserfaultfdCtx.EraSupports(Kernel("4.10"), UserfaultfdCtx.FeatureEventFork));
        Assert.True(UserfaultfdCtx.EraSupports(Kernel("4.12"), AllEvents));
    }
}

public class UffdEventsPortTests
{
    [Fact]
    public void EventsAnon_WithoutTheRemoveEvent_ReadsTheCopiedPagesAgain_AndFails()
    {
        // Drop EVENT_REMOVE from the port: MADV_DONTNEED no longer unregisters the range, so the final reads are missing
        // faults the handler copies, and "page is not zero" is what upstream would report.
        var text = ScenarioLoader.BuiltInText("selftests/uffd-unit-tests/events-anon")!.Replace("event_fork,event_remap,event_remove", "event_fork,event_remap");
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(text, "events-anon.yaml"), EraTable.Get("6.13"), null);
        Assert.NotNull(r.Violation);
    }
}
