using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Hmm;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Hmm;

/// <summary>
/// lib/test_hmm.c's dmirror on the model: hmm_range_fault under the interval notifier's read_begin/read_retry,
/// migrate_vma with device-private pages, the owner-skipped MIGRATE event, device-exclusive entries, SNAPSHOT codes.
/// A recorder (an hlist notifier on the same mm) shows the exact invalidations the mm paths issue.
/// </summary>
public class DmirrorTests
{
    const ulong A = 0x10000000;
    const int N = 8;
    const ulong Page = MmStruct.PageSize;

    sealed record Rig(Kernel K, MmStruct Mm, Dmirror D, RecordingSecondary Rec);

    /// <summary>An mm with N anonymous pages holding 0x100 + i, a recorder, and a dmirror on device <paramref name="dev"/>.</summary>
    static Rig Setup(string era, int dev = 0)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, N * Page);
        var rec = Recorder(k, mm, NotifierOps.InvalidateRangeStart | NotifierOps.InvalidateRangeEnd);
        Dmirror? d = null;
        Assert.Null(Run(k, async _ =>
        {
            for (int i = 0; i < N; i++) await Memory.UserAccess(mm, A + (ulong)i * Page, write: true, value: 0x100 + (ulong)i);
            d = await Dmirror.Open(k, mm, DmirrorDevice.Get(k, dev), "dmirror");
        }, "setup"));
        rec.Clear();
        return new Rig(k, mm, d!, rec);
    }

    static T Do<T>(Rig r, Func<ValueTask<T>> body)
    {
        T result = default!;
        Assert.Null(Run(r.K, async _ => result = await body()));
        return result;
    }

    [Theory]
    [InlineData("5.13")]
    [InlineData("6.1")]
    [InlineData("6.6")]
    [InlineData("6.13")]
    public void Read_FaultsOnce_MirrorsEveryPteAndNotifiesNothing(string era)
    {
        var r = Setup(era);
        var buf = new ulong[N];
        var res = Do(r, () => r.D.Read(A, N, buf));
        Assert.Equal(new Dmirror.CmdResult(0, N, 1), res);
        for (int i = 0; i < N; i++)
        {
            Assert.Equal(0x100 + (ulong)i, buf[i]);
            var pte = r.Mm.PeekPte(A + (ulong)i * Page);
            var (mapped, pfn, writable, atomic) = r.D.Lookup(A + (ulong)i * Page);
            Assert.True(mapped);
            Assert.Equal(pte.Pfn, pfn);
            Assert.Equal(pte.Writable, writable); // HMM_PFN_WRITE from a writable PTE even for a read request
            Assert.False(atomic);
        }
        Assert.Empty(r.Rec.Calls); // the pages were present: hmm_range_fault faulted nothing
        // A second read is served from the mirror: no fault.
        Assert.Equal(new Dmirror.CmdResult(0, N, 0), Do(r, () => r.D.Read(A, N, buf)));
    }

    [Theory]
    [InlineData("5.13")]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void Munmap_InvalidatesTheMirrorThroughTheIntervalNotifier(string era)
    {
        var r = Setup(era);
        Do(r, () => r.D.Read(A, N, new ulong[N]));
        ulong seq = r.Mm.Notifiers.InvalidateSeq;
        Assert.Null(Run(r.K, async _ => await Mmap.Munmap(r.Mm, A + 2 * Page, 2 * Page)));
        Assert.Equal(N - 2, r.D.Entries);
        Assert.False(r.D.Lookup(A + 2 * Page).Mapped);
        Assert.True(r.D.Lookup(A + 4 * Page).Mapped);
        Assert.Equal(1, r.D.Invalidations);
        Assert.Equal(seq + 2, r.Mm.Notifiers.InvalidateSeq); // odd during the invalidation, even after
        var c = Assert.Single(r.Rec.Calls, x => x.Kind == CallbackKind.InvalidateRangeStart);
        Assert.Equal((A + 2 * Page, A + 4 * Page, MmuNotifyEvent.Unmap), (c.Start, c.End, c.Event));
    }

    [Theory]
    [InlineData("5.13")]
    [InlineData("6.1")]
    [InlineData("6.6")]
    [InlineData("6.13")]
    public void MigrateToDev_DevicePrivateEntries_OwnMigrateEventSkipped(string era)
    {
        var r = Setup(era);
        long[] old = new long[N];
        for (int i = 0; i < N; i++) old[i] = r.Mm.PeekPte(A + (ulong)i * Page).Pfn;
        var buf = new ulong[N];
        Assert.Equal(new Dmirror.CmdResult(0, N, 0), Do(r, () => r.D.MigrateToDev(A, N, buf)));
        Assert.Equal(0x103UL, buf[3]);
        // migrate_vma_collect: one MIGRATE start/end over the whole range, owner = the device (5.9+); the mirror skips it.
        Assert.Equal(
            [(CallbackKind.InvalidateRangeStart, A, A + N * Page, MmuNotifyEvent.Migrate), (CallbackKind.InvalidateRangeEnd, A, A + N * Page, MmuNotifyEvent.Migrate)],
            r.Rec.Calls.Select(c => (c.Kind, c.Start, c.End, c.Event)));
        Assert.Equal(1, r.D.SkippedOwnMigrate);
        Assert.Equal(0, r.D.Invalidations);
        var pgmaps = DevicePagemaps.Of(r.K);
        for (int i = 0; i < N; i++)
        {
            var pte = r.Mm.PeekPte(A + (ulong)i * Page);
            Assert.Equal(SwapType.DevicePrivateWrite, pte.SwapKind);
            Assert.True(pgmaps.IsDevicePrivatePage(pte.Pfn));
            Assert.Equal((1, 1), (r.K.Mem[pte.Pfn].RefCount, r.K.Mem[pte.Pfn].MapCount));
            Assert.Equal(0x100 + (ulong)i, r.K.Mem[pte.Pfn].Contents);
            Assert.Equal(pte.Pfn, r.D.Lookup(A + (ulong)i * Page).Pfn); // dmirror_migrate_finalize_and_map
            Assert.True(r.K.Mem[old[i]].Has(PageFlags.Free));          // the system page was freed by finalize
        }
        Assert.Equal(N, r.D.Device.Calloc);
    }

    [Theory]
    [InlineData("5.13")]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void CpuFault_MigratesTheDevicePageBack(string era)
    {
        var r = Setup(era);
        Do(r, () => r.D.MigrateToDev(A, N, new ulong[N]));
        long dev = r.Mm.PeekPte(A + 5 * Page).Pfn;
        r.Rec.Clear();
        ulong? v = Do(r, () => Memory.UserAccess(r.Mm, A + 5 * Page, write: false));
        Assert.Equal(0x105UL, v);
        var pte = r.Mm.PeekPte(A + 5 * Page);
        Assert.True(pte.Present);
        Assert.False(DevicePagemaps.Of(r.K).IsDevicePrivatePage(pte.Pfn));
        Assert.True(pte.Writable);                               // MIGRATE_PFN_WRITE carried back
        Assert.True(r.K.Mem[dev].Has(PageFlags.Free));           // page_free gave it back to the device
        Assert.Equal(1, r.D.Device.Cfree);
        Assert.False(r.D.Lookup(A + 5 * Page).Mapped);           // erased by dmirror_devmem_fault_alloc_and_copy
        Assert.True(r.D.Lookup(A + 4 * Page).Mapped);
        Assert.Equal(
            [(CallbackKind.InvalidateRangeStart, A + 5 * Page, A + 6 * Page, MmuNotifyEvent.Migrate), (CallbackKind.InvalidateRangeEnd, A + 5 * Page, A + 6 * Page, MmuNotifyEvent.Migrate)],
            r.Rec.Calls.Select(c => (c.Kind, c.Start, c.End, c.Event)));
        Assert.Equal(SwapType.DevicePrivateWrite, r.Mm.PeekPte(A + 4 * Page).SwapKind);
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.6")]
    [InlineData("6.13")]
    public void Exclusive_EntryThenCpuWriteRestoresIt_UnderExclusiveEvents(string era)
    {
        var r = Setup(era);
        long pfn = r.Mm.PeekPte(A + Page).Pfn;
        var buf = new ulong[2];
        Assert.Equal(new Dmirror.CmdResult(0, 2, 0), Do(r, () => r.D.Exclusive(A, 2, buf)));
        Assert.Equal(new ulong[] { 0x100, 0x101 }, buf);
        var e = r.Mm.PeekPte(A + Page);
        Assert.Equal((SwapType.DeviceExclusiveWrite, pfn), (e.SwapKind, e.Pfn));
        Assert.True(r.D.Lookup(A + Page).Atomic);
        Assert.Equal(
            [(A, A + Page, MmuNotifyEvent.Exclusive), (A + Page, A + 2 * Page, MmuNotifyEvent.Exclusive)],
            r.Rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRangeStart).Select(c => (c.Start, c.End, c.Event)));
        Assert.Equal(MmuSim.Hmm.Hmm.EPERM, Do(r, () => r.D.CheckExclusive(A, 2)).Ret);
        r.Rec.Clear();
        Do(r, async () => await Memory.UserAccess(r.Mm, A + Page, write: true, value: 7));
        var p = r.Mm.PeekPte(A + Page);
        Assert.True(p.Present && p.Writable);
        Assert.Equal((pfn, 7UL), (p.Pfn, r.K.Mem[pfn].Contents));       // restore_exclusive_pte: the same page
        Assert.Equal((A + Page, A + 2 * Page, MmuNotifyEvent.Exclusive),
            r.Rec.Calls.Where(c => c.Kind == CallbackKind.InvalidateRangeStart).Select(c => (c.Start, c.End, c.Event)).Single());
        Assert.False(r.D.Lookup(A + Page).Mapped);
        Assert.Equal(MmuSim.Hmm.Hmm.EPERM, Do(r, () => r.D.CheckExclusive(A, 2)).Ret); // page 0 is still atomic
        Do(r, async () => await Memory.UserAccess(r.Mm, A, write: false));
        Assert.Equal(0, Do(r, () => r.D.CheckExclusive(A, 2)).Ret);
    }

    [Fact]
    public void Exclusive_DoesNotExistBefore5_14()
    {
        var r = Setup("5.13");
        Assert.Equal(MmuSim.Hmm.Hmm.EINVAL, Do(r, () => r.D.Exclusive(A, 1, new ulong[1])).Ret);
        Assert.True(r.Mm.PeekPte(A).Present);
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void Snapshot_CodesForZeroPageDevicePagesAndHoles(string era)
    {
        var r = Setup(era);
        var other = Do(r, () => Dmirror.Open(r.K, r.Mm, DmirrorDevice.Get(r.K, 1), "other"));
        Do(r, () => r.D.MigrateToDev(A + 2 * Page, 1, new ulong[1]));
        Do(r, () => other.MigrateToDev(A + 3 * Page, 1, new ulong[1]));
        Assert.Null(Run(r.K, async _ => await Mmap.Munmap(r.Mm, A + 7 * Page, Page)));
        var perm = new byte[N];
        Assert.Equal(new Dmirror.CmdResult(0, N, 0), Do(r, () => r.D.Snapshot(A, N, perm)));
        Assert.Equal(new byte[]
        {
            DmirrorProt.Write, DmirrorProt.Write, DmirrorProt.DevPrivateLocal | DmirrorProt.Write,
            DmirrorProt.None, // another device's private page: not faulted, not reported
            DmirrorProt.Write, DmirrorProt.Write, DmirrorProt.Write, DmirrorProt.Error,
        }, perm);
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.6")]
    [InlineData("6.13")]
    public void Coherent_PagesStayCpuMapped_MigrateToSysBringsThemBack(string era)
    {
        var r = Setup(era, dev: 2);
        Do(r, () => r.D.MigrateToDev(A, N, new ulong[N]));
        var pte = r.Mm.PeekPte(A);
        Assert.True(pte.Present);
        Assert.True(DevicePagemaps.Of(r.K).IsDeviceCoherentPage(pte.Pfn));
        Assert.Equal(0x100UL, Do(r, () => Memory.UserAccess(r.Mm, A, write: false))); // no fault: coherent memory
        Assert.True(DevicePagemaps.Of(r.K).IsDeviceCoherentPage(r.Mm.PeekPte(A).Pfn));
        Assert.Equal(new Dmirror.CmdResult(0, N, 0), Do(r, () => r.D.MigrateToSys(A, N)));
        Assert.Equal(0, DevicePagemaps.Of(r.K).Count);
        Assert.Equal(0x107UL, Do(r, () => Memory.UserAccess(r.Mm, A + 7 * Page, write: false)));
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.13")]
    public void Release_EvictsEveryDevicePage(string era)
    {
        var r = Setup(era);
        Do(r, () => r.D.MigrateToDev(A, N, new ulong[N]));
        Assert.Equal(0, Do(r, () => r.D.Release()).Ret);
        Assert.Equal(0, DevicePagemaps.Of(r.K).Count);
        Assert.Equal(N, r.D.Device.Cfree);
        for (int i = 0; i < N; i++)
        {
            var pte = r.Mm.PeekPte(A + (ulong)i * Page);
            Assert.True(pte.Present);
            Assert.Equal(0x100 + (ulong)i, r.K.Mem[pte.Pfn].Contents);
        }
        Assert.Equal(0, r.D.Entries);
    }

    [Fact]
    public void Fork_SharesDevicePrivateEntriesReadOnly_ChildWriteCopies()
    {
        var r = Setup("6.13");
        Do(r, () => r.D.MigrateToDev(A, N, new ulong[N]));
        long dev = r.Mm.PeekPte(A).Pfn;
        MmStruct? child = null;
        Assert.Null(Run(r.K, async _ => child = await Fork.DupMmap(r.Mm, "child")));
        Assert.Equal(SwapType.DevicePrivateRead, r.Mm.PeekPte(A).SwapKind);
        Assert.Equal(SwapType.DevicePrivateRead, child!.PeekPte(A).SwapKind);
        Assert.Equal((2, 2), (r.K.Mem[dev].RefCount, r.K.Mem[dev].MapCount));
        Assert.Equal(9UL, Do(r, () => Memory.UserAccess(child, A, write: true, value: 9)));
        Assert.Equal(9UL, Do(r, () => Memory.UserAccess(child, A, write: false)));
        Assert.Equal(0x100UL, Do(r, () => Memory.UserAccess(r.Mm, A, write: false)));
        // Both mappings were migrated back (try_to_migrate through the rmap), the device page freed, then the child copied.
        Assert.Equal(1, r.D.Device.Cfree);
        Assert.False(DevicePagemaps.Of(r.K).IsDevicePrivatePage(dev));
        Assert.NotEqual(r.Mm.PeekPte(A).Pfn, child.PeekPte(A).Pfn);
        Assert.False(r.Mm.PeekPte(A).Writable); // the parent's page is still shared COW... until the child's copy dropped its map
        Assert.Equal(1, r.K.Mem[r.Mm.PeekPte(A).Pfn].MapCount);
    }

    // ---------------------------------------------------------------- scenario ops

    static string Yaml(string op) => """
        name: t
        processes:
          - name: p
            vmas:
              - { start: 0x10000000, len: 8K, prot: rw }
        threads:
          - name: a
            process: p
            ops:
              - hmm.open: { name: d }
              - OP
        """.Replace("OP", op);

    [Theory]
    [InlineData("hmm.read: { mirror: d, addr: 0x10000000, npages: 0 }", "hmm.read.npages")]
    [InlineData("hmm.read: { mirror: d, addr: 0x10000001, npages: 1 }", "hmm.read.addr")]
    [InlineData("hmm.read: { mirror: d, addr: 0x10000000, npages: 2, ret: boom }", "hmm.read.ret")]
    [InlineData("hmm.read: { mirror: d, addr: 0x10000000, npages: 2, values: \"1\" }", "hmm.read.values")]
    [InlineData("hmm.read: { mirror: d, addr: 0x10000000, npages: 2, seq: 1, all: 2 }", "hmm.read.all")]
    [InlineData("hmm.snapshot: { mirror: d, addr: 0x10000000, npages: 2, expect: \"read|bogus*2\" }", "hmm.snapshot.expect")]
    [InlineData("hmm.snapshot: { mirror: d, addr: 0x10000000, npages: 2, faults: 1 }", "hmm.snapshot.faults")] // SNAPSHOT counts no faults
    [InlineData("hmm.gup: { addr: 0x10000000, test: slow }", "hmm.gup.test")]
    [InlineData("hmm.flags: { mirror: d, flags: 7 }", "hmm.flags.flags")]
    [InlineData("hmm.read: { mirror: d, addr: 0x10000000, npages: 2, colour: red }", "hmm.read.colour")]
    public void BadFields_NameFileLineAndField(string op, string field)
    {
        var e = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(Yaml(op), "t.yaml"));
        Assert.Equal(("t.yaml", 11, field), (e.File, e.Line, e.Field));
    }

    [Fact]
    public void Open_InAnEraWithoutTestHmm_IsBadInput()
    {
        var s = ScenarioLoader.Parse(Yaml("hmm.close: { mirror: d }"), "t.yaml");
        var e = Assert.Throws<ScenarioException>(() => ScenarioRunner.Run(s, EraTable.Get("5.5"), null));
        Assert.Equal((10, "hmm.open"), (e.Line, e.Field));
        var c = ScenarioLoader.Parse(Yaml("hmm.open: { name: c, device: 2 }"), "t.yaml");
        var e2 = Assert.Throws<ScenarioException>(() => ScenarioRunner.Run(c, EraTable.Get("5.13"), null));
        Assert.Equal((11, "hmm.open.device"), (e2.Line, e2.Field));
    }

    [Fact]
    public void ReadExpectation_MismatchIsAnUnexpectedValue()
    {
        var s = ScenarioLoader.Parse(Yaml("hmm.read: { mirror: d, addr: 0x10000000, npages: 2, faults: 2 }"), "t.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.Contains("faults 1, expected 2", r.Violation!.Message);
    }

    // ---------------------------------------------------------------- the hmm-tests.c port

    public static TheoryData<string> Selftests() => SelftestPorts.Under("selftests/hmm/");

    [Theory]
    [MemberData(nameof(Selftests))]
    public void SelftestPort_PassesInItsEraAnd6_1(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        Assert.Contains("TEST_F(", s.Description);
        foreach (var era in new[] { s.EraOrDefault(null), EraTable.Get("6.1") })
        {
            var r = ScenarioRunner.Run(s, era, null);
            Assert.True(r.MatchesExpectation, $"{name} in {era.Name}: {r.Violation}");
            Assert.Null(r.Violation);
        }
    }

    [Fact]
    public void SelftestPort_CoversAtLeast90PercentOfTheUpstreamCases()
    {
        // hmm-tests.c: 38 TEST_F x 2 variants (docs/hmm.md lists the cases left out and why).
        int ported = ScenarioLoader.BuiltInNames.Count(n => n.StartsWith("selftests/hmm/", StringComparison.Ordinal));
        Assert.True(ported >= 69, $"{ported} of 76 cases");
    }

    [Fact]
    public void OwnMigrateSkip_SecondOpenOfTheDeviceKeepsAMigratedAwayPage()
    {
        var s = ScenarioLoader.LoadBuiltIn("hmm-own-migrate-skip");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.True(r.MatchesExpectation);
        Assert.Equal("stale-translation", r.Violation?.Invariant);
        Assert.Contains("fileB maps 0x10001000", r.Violation!.Message);
    }
}
