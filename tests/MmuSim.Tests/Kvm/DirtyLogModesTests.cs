using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Tests.Cli;
using KvmVm = MmuSim.Kvm.Kvm;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// Dirty logging in all modes (issue 9 item 3): KVM_MEM_LOG_DIRTY_PAGES on and off, KVM_CLEAR_DIRTY_LOG with
/// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 and KVM_DIRTY_LOG_INITIALLY_SET, the dirty ring (push, KVM_EXIT_DIRTY_RING_FULL,
/// KVM_RESET_DIRTY_RINGS), and the dirty-log-lost check.
/// </summary>
public class DirtyLogModesTests
{
    const ulong G = KvmKit.Gfn0;

    static bool Writable(KvmKit t, ulong gfn) => t.Vm.PeekSpte(gfn).Writable;

    static async ValueTask EnableLogging(KvmKit t) =>
        Assert.Equal(0, await t.Vm.SetMemoryRegion(0, G, t.Slot.NPages, KvmKit.Hva, MemslotFlags.LogDirtyPages));

    [Theory]
    [InlineData("6.18")]
    [InlineData("5.5")]
    public void ManualProtect_GetOnlyCopies_ClearWriteProtectsAndTheNextWriteIsLoggedAgain(string era)
    {
        var t = new KvmKit(era, pages: 8);
        Assert.Equal(0, t.Vm.EnableManualDirtyLogProtect(KvmVm.KvmDirtyLogManualProtectEnable));
        t.MustDo(async () =>
        {
            await EnableLogging(t);
            await t.GuestWrite(G + 2, 7);
            long fast = t.Stat(Stat.KvmPfFast);
            Assert.Equal([G + 2], await t.GetDirtyLog(t.Slot));
            Assert.True(Writable(t, G + 2));                    // GET does not protect in manual mode
            Assert.Equal([G + 2], await t.GetDirtyLog(t.Slot)); // nor clear
            await t.GuestWrite(G + 2, 8);                       // no fault: the SPTE is writable
            Assert.Equal(fast, t.Stat(Stat.KvmPfFast));
            Assert.Equal(0, await t.Vm.ClearDirtyLog(t.Slot, 0, 8, [1UL << 2]));
            Assert.False(Writable(t, G + 2));
            Assert.True(t.Vm.PeekSpte(G + 2).Present);
            Assert.Empty(await t.GetDirtyLog(t.Slot));
            await t.GuestWrite(G + 2, 9);                       // write-protect fault, fixed by fast_page_fault
            Assert.Equal(fast + 1, t.Stat(Stat.KvmPfFast));
            Assert.True(Writable(t, G + 2));
            Assert.Equal([G + 2], await t.GetDirtyLog(t.Slot));
            Assert.Empty(t.Vm.FindLostDirtyGfns(t.Slot));
        });
    }

    [Fact]
    public void ClearDirtyLog_ClearsOnlyBitsSetInBothMasks_AndFlushesTheVcpuTlb()
    {
        var t = new KvmKit("6.18", pages: 8);
        Assert.Equal(0, t.Vm.EnableManualDirtyLogProtect(KvmVm.KvmDirtyLogManualProtectEnable));
        t.MustDo(async () =>
        {
            await EnableLogging(t);
            await t.GuestWrite(G + 1, 1);
            await t.GuestWrite(G + 3, 3);
            Assert.True(t.Vm.Vcpu(0).TlbLookup(G + 1).Writable);
            long flushes = t.Stat(Stat.KvmRemoteTlbFlushes);
            // mask names 1, 3 and 5; 5 is not dirty: it stays as it is (no SPTE), 1 and 3 are protected
            Assert.Equal(0, await t.Vm.ClearDirtyLog(t.Slot, 0, 8, [(1UL << 1) | (1UL << 3) | (1UL << 5)]));
            Assert.Equal(flushes + 1, t.Stat(Stat.KvmRemoteTlbFlushes));
            Assert.False(t.Vm.Vcpu(0).TlbLookup(G + 1).Present);
            Assert.False(Writable(t, G + 1));
            Assert.False(Writable(t, G + 3));
            Assert.False(t.Vm.PeekSpte(G + 5).Present);
            // nothing dirty any more: a second clear protects nothing and does not flush
            Assert.Equal(0, await t.Vm.ClearDirtyLog(t.Slot, 0, 8, [0xff]));
            Assert.Equal(flushes + 1, t.Stat(Stat.KvmRemoteTlbFlushes));
        });
    }

    [Fact]
    public void InitiallySet_LeavesSptesWritable_EveryBitSet_UntilClear()
    {
        var t = new KvmKit("6.18", pages: 8);
        t.MustDo(async () => { for (ulong g = G; g < G + 8; g++) await t.GuestWrite(g, g); });
        Assert.Equal(0, t.Vm.EnableManualDirtyLogProtect(KvmVm.KvmDirtyLogManualProtectEnable | KvmVm.KvmDirtyLogInitiallySet));
        t.MustDo(async () =>
        {
            await EnableLogging(t);
            for (ulong g = G; g < G + 8; g++) Assert.True(Writable(t, g), $"0x{g:x} write-protected at enable");
            var all = Enumerable.Range(0, 8).Select(i => G + (ulong)i).ToList();
            Assert.Equal(all, await t.GetDirtyLog(t.Slot));
            Assert.Equal(0, await t.Vm.ClearDirtyLog(t.Slot, 0, 8, [0xff]));
            for (ulong g = G; g < G + 8; g++) Assert.False(Writable(t, g));
            await t.GuestWrite(G + 6, 1);
            Assert.Equal([G + 6], await t.GetDirtyLog(t.Slot));
        });
    }

    [Theory]
    [InlineData("6.18", 1UL, 0)]
    [InlineData("6.18", 3UL, 0)]
    [InlineData("6.18", 2UL, Errno.EINVAL)]   // INITIALLY_SET only with MANUAL_PROTECT_ENABLE
    [InlineData("6.18", 4UL, Errno.EINVAL)]
    [InlineData("5.5", 3UL, Errno.EINVAL)]    // before KVM_DIRTY_LOG_INITIALLY_SET
    [InlineData("5.5", 1UL, 0)]
    [InlineData("4.19", 1UL, Errno.EINVAL)]   // before KVM_CAP_MANUAL_DIRTY_LOG_PROTECT
    public void ManualProtectCap_Errnos(string era, ulong args0, int want)
    {
        var t = new KvmKit(era);
        Assert.Equal(want, t.Vm.EnableManualDirtyLogProtect(args0));
        Assert.Equal(want == 0 ? args0 : 0, t.Vm.ManualDirtyLogProtect);
    }

    [Fact]
    public void ClearDirtyLog_Errnos()
    {
        var t = new KvmKit("6.18", pages: 130);
        t.MustDo(async () =>
        {
            Assert.Equal(Errno.ENOENT, await t.Vm.ClearDirtyLog(t.Slot, 0, 130, [0, 0, 0]));   // no bitmap: not logging
            var none = new List<ulong>();
            Assert.Equal(Errno.ENOENT, await t.Vm.GetDirtyLog(t.Slot, none));
            await EnableLogging(t);
            Assert.Equal(Errno.EINVAL, await t.Vm.ClearDirtyLog(t.Slot, 1, 64, [0]));          // first_page & 63
            Assert.Equal(Errno.EINVAL, await t.Vm.ClearDirtyLog(t.Slot, 0, 65, [0, 0]));       // num_pages & 63, not to the end
            Assert.Equal(Errno.EINVAL, await t.Vm.ClearDirtyLog(t.Slot, 128, 3, [0]));         // past the end
            Assert.Equal(Errno.EINVAL, await t.Vm.ClearDirtyLog(t.Slot, 192, 0, [0]));         // first_page > npages
            Assert.Equal(0, await t.Vm.ClearDirtyLog(t.Slot, 128, 2, [0]));                    // the tail may be short
            Assert.Equal(0, await t.Vm.ClearDirtyLog(t.Slot, 64, 64, [0]));
        });
    }

    [Fact]
    public void DisablingLogging_FreesTheBitmap_AndKeepsSptes_OfA4kBackedSlot()
    {
        var t = new KvmKit("6.18", pages: 8);
        t.MustDo(async () =>
        {
            await EnableLogging(t);
            await t.GuestWrite(G, 1);
            Assert.Equal(0, await t.Vm.SetMemoryRegion(0, G, 8, KvmKit.Hva, MemslotFlags.None));
            Assert.Null(t.Slot.DirtyBitmap);
            Assert.True(t.Vm.PeekSpte(G).Present);               // no huge host mapping: nothing collapsible
            var none = new List<ulong>();
            Assert.Equal(Errno.ENOENT, await t.Vm.GetDirtyLog(t.Slot, none));
            await t.GuestWrite(G + 1, 1);                          // writable at once: no logging fault
            Assert.True(Writable(t, G + 1));
        });
    }

    // ------------------------------------------------------------------ dirty ring

    [Theory]
    [InlineData("6.18", 4096UL, 0)]
    [InlineData("6.18", 65536UL * 16, 0)]
    [InlineData("6.18", 0UL, Errno.EINVAL)]
    [InlineData("6.18", 4097UL, Errno.EINVAL)]              // not a power of 2
    [InlineData("6.18", 2048UL, Errno.EINVAL)]              // less than a page
    [InlineData("6.18", 131072UL * 16, Errno.E2BIG)]        // more than KVM_DIRTY_RING_MAX_ENTRIES
    [InlineData("5.5", 4096UL, Errno.EINVAL)]              // before KVM_CAP_DIRTY_LOG_RING
    public void DirtyRingEnable_Errnos(string era, ulong bytes, int want)
    {
        var t = new KvmKit(era);
        Assert.Equal(want, t.Vm.EnableDirtyLogRing(bytes));
        if (want == 0) Assert.Equal(Errno.EINVAL, t.Vm.EnableDirtyLogRing(bytes));   // only once
    }

    [Fact]
    public void DirtyRingEnable_AfterAVcpuExists_IsEinval()
    {
        var t = new KvmKit("6.18");
        t.Vm.Vcpu(0);
        Assert.Equal(Errno.EINVAL, t.Vm.EnableDirtyLogRing(4096));
        Assert.Null(t.Vm.Vcpu(0).DirtyRing);
    }

    static KvmKit RingKit(int pages, uint entries = 256)
    {
        var t = new KvmKit("6.18", pages: (ulong)pages);
        Assert.Equal(0, t.Vm.EnableDirtyLogRing(entries * DirtyRing.EntryBytes));
        return t;
    }

    [Fact]
    public void DirtyRing_WritesPushSlotAndOffset_NoBitmap_CollectAndResetReprotect()
    {
        var t = RingKit(8);
        t.MustDo(async () =>
        {
            await EnableLogging(t);
            Assert.Null(t.Slot.DirtyBitmap);                        // kvm_use_dirty_bitmap: false with a ring
            await t.GuestWrite(G + 5, 1);
            await t.GuestWrite(G + 2, 1);
            await t.GuestWrite(G + 5, 2);                           // writable now: no second entry
            var ring = t.Vm.Vcpu(0).DirtyRing!;
            Assert.Equal((2u, 0u), (ring.DirtyIndex, ring.ResetIndex));
            var none = new List<ulong>();
            Assert.Equal(Errno.ENXIO, await t.Vm.GetDirtyLog(t.Slot, none));
            Assert.Equal(Errno.ENXIO, await t.Vm.ClearDirtyLog(t.Slot, 0, 8, [0xff]));
            var got = new List<(int, ulong)>();
            Assert.Equal(2, ring.Harvest((s, o) => got.Add((s, o))));
            Assert.Equal([(0, 5UL), (0, 2UL)], got);
            Assert.True(Writable(t, G + 5));                        // harvested, not yet reset
            Assert.Empty(t.Vm.FindLostDirtyGfns(t.Slot));
            Assert.Equal(2, await t.Vm.ResetDirtyRings());
            Assert.Equal(2u, ring.ResetIndex);
            Assert.False(Writable(t, G + 5));
            Assert.False(Writable(t, G + 2));
            Assert.Equal(0, await t.Vm.ResetDirtyRings());          // nothing harvested since
            await t.GuestWrite(G + 2, 3);
            Assert.Equal(3u, ring.DirtyIndex);
        });
    }

    [Fact]
    public void DirtyRing_ThePushThatMakesItSoftFull_ExitsBeforeTheStoreCompletes_TheRetriedStorePushesAgain()
    {
        var t = RingKit(200);                                       // 256 entries: soft limit 192
        t.MustDo(async () =>
        {
            await EnableLogging(t);
            for (ulong g = G; g < G + 191; g++) await t.GuestWrite(g, 1);
            var ring = t.Vm.Vcpu(0).DirtyRing!;
            Assert.Equal(191u, ring.Used);
            // the 192nd store faults, the fault installs a writable SPTE and pushes (192 = soft limit); the next guest
            // entry exits with KVM_EXIT_DIRTY_RING_FULL before the store is re-executed
            var r = await t.Vm.Vcpu(0).GuestWrite(G + 191, 1);
            Assert.False(r.Ok);
            Assert.Equal(KvmFaultResult.DirtyRingFull, r.Error);
            Assert.Equal(1, t.Stat(Stat.KvmDirtyRingFullExits));
            Assert.True(ring.SoftFull);
            Assert.True(Writable(t, G + 191));
            Assert.Equal(0UL, t.K.Mem[t.Vm.PeekSpte(G + 191).Pfn].Contents);   // the store never ran
            Assert.Empty(t.Vm.FindLostDirtyGfns(t.Slot));
            Assert.Equal(192, ring.Harvest((_, _) => { }));
            Assert.Equal(192, await t.Vm.ResetDirtyRings());
            Assert.False(Writable(t, G + 191));
            await t.GuestWrite(G + 191, 1);                         // re-executed: faults again, pushed again
            Assert.Equal(1u, ring.Used);
            Assert.Equal(1UL, t.K.Mem[t.Vm.PeekSpte(G + 191).Pfn].Contents);
        });
    }

    [Fact]
    public void DirtyRing_VmmCollectingAtFullExit_LosesNoWrite()
    {
        var t = RingKit(400);
        t.Vm.Vmm.CollectsDirtyRing = true;
        t.MustDo(async () =>
        {
            await EnableLogging(t);
            for (ulong g = G; g < G + 400; g++) await t.GuestWrite(g, 1);
            Assert.Equal(2, t.Vm.Vmm.DirtyRingFullExits);         // at 192 entries, and again 192 later
            Assert.Equal(384, t.Vm.Vmm.Harvested.Count);
            Assert.Empty(t.Vm.FindLostDirtyGfns(t.Slot));
            t.Vm.Vmm.HarvestRings(t.Vm);
            var all = t.Vm.Vmm.Harvested.Select(h => h.Gfn).ToList();
            Assert.Equal(402, all.Count);                          // each exit's store is pushed twice
            Assert.Equal(Enumerable.Range(0, 400).Select(i => G + (ulong)i), all.Distinct().Order());
            Assert.Equal([G + 191, G + 382], all.GroupBy(g => g).Where(x => x.Count() == 2).Select(x => x.Key).Order());
        });
    }

    [Fact]
    public void LostCheck_FindsAWriteWhoseBitVanished()
    {
        var t = new KvmKit("6.18", pages: 8);
        t.MustDo(async () =>
        {
            await EnableLogging(t);
            await t.GuestWrite(G + 4, 1);
            Assert.Empty(t.Vm.FindLostDirtyGfns(t.Slot));
            t.Slot.DirtyBitmap![0] = 0;                              // a bit lost without re-protecting (a bug)
            Assert.Equal([G + 4], t.Vm.FindLostDirtyGfns(t.Slot));
            Assert.Equal(0, await t.Vm.ClearDirtyLog(t.Slot, 0, 8, [0xff]));
            Assert.Equal([G + 4], t.Vm.FindLostDirtyGfns(t.Slot)); // nothing to clear: still lost
        });
    }

    // ------------------------------------------------------------------ scenarios and bad input

    const string Scenario = """
        name: t
        era: "6.18"
        processes:
          - name: qemu
            vmas:
              - { start: 0x10000, len: 16K, prot: rw }
        threads:
          - name: vmm
            process: qemu
            ops:
              - vm.create: { process: qemu, name: vm0 }
              - memslot.add: { vm: vm0, slot: 0, gfn: 0x100, pages: 4, hva: 0x10000 }
        """;

    [Fact]
    public void Scenario_ClearLogMode_GetClearAndStats()
    {
        var path = CliRunner.WriteScenario(Scenario + """

                  - dirty-log.manual-protect: { vm: vm0 }
                  - dirty-log.enable: { vm: vm0, slot: 0 }
                  - guest.write: { vm: vm0, gfn: 0x101, value: 1, pages: 2 }
                  - dirty-log.get: { vm: vm0, slot: 0, expect: "0x101-0x102" }
                  - dirty-log.get: { vm: vm0, slot: 0, count: 2 }
                  - dirty-log.clear: { vm: vm0, slot: 0 }
                  - dirty-log.get: { vm: vm0, slot: 0, expect: "" }
                  - dirty-log.clear: { vm: vm0, slot: 0, first_page: 1, errno: einval }
                  - dirty-log.expect-none-lost: { vm: vm0, slot: 0 }
            """);
        var (code, o, e) = CliRunner.Run("run", path);
        Assert.True(code == 0, o + e);
    }

    [Fact]
    public void Scenario_RingFullWithoutHandler_IsTheAccessError()
    {
        var ok = CliRunner.WriteScenario(Scenario.Replace("16K", "1M").Replace("pages: 4", "pages: 200") + """

                  - dirty-ring.enable: { vm: vm0, entries: 256 }
                  - dirty-log.enable: { vm: vm0, slot: 0 }
                  - guest.write: { vm: vm0, gfn: 0x100, value: 1, pages: 191 }
                  - guest.write: { vm: vm0, gfn: 0x1bf, value: 1, error: ring-full }
                  - dirty-ring.collect: { vm: vm0, expect: "0x100-0x1bf" }
                  - guest.write: { vm: vm0, gfn: 0x1bf, value: 1 }
                  - dirty-ring.collect: { vm: vm0, expect: "0x1bf" }
            """);
        var (code, o, e) = CliRunner.Run("run", ok);
        Assert.True(code == 0, o + e);
        var bad = CliRunner.WriteScenario(Scenario.Replace("16K", "1M").Replace("pages: 4", "pages: 200") + """

                  - dirty-ring.enable: { vm: vm0, entries: 256 }
                  - dirty-log.enable: { vm: vm0, slot: 0 }
                  - guest.write: { vm: vm0, gfn: 0x100, value: 1, pages: 192 }
            """);
        var (bcode, bout, _) = CliRunner.Run("run", bad);
        Assert.Equal(1, bcode);
        Assert.Contains($"{bad}:15: vm0 access to gfn 0x1bf exited with KVM_EXIT_DIRTY_RING_FULL", bout);
    }

    [Theory]
    [InlineData("      - dirty-log.get: { vm: vm0, slot: 0, expect: \"0x5-0x1\" }", "dirty-log.get.expect", "'0x5-0x1' is not a range")]
    [InlineData("      - dirty-log.get: { vm: vm0, slot: 0, errno: bad }", "dirty-log.get.errno", "'bad' is not an errno")]
    [InlineData("      - dirty-log.clear: { vm: vm0, slot: 0, gfns: \"x\" }", "dirty-log.clear.gfns", "'x' is not a gfn")]
    [InlineData("      - dirty-ring.enable: { vm: vm0 }", "dirty-ring.enable.entries", "exactly one of entries and bytes")]
    [InlineData("      - dirty-ring.enable: { vm: vm0, entries: 256, bytes: 4096 }", "dirty-ring.enable.bytes", "exactly one of entries and bytes")]
    [InlineData("      - vmm.dirty-ring-full: { vm: vm0, action: ignore }", "vmm.dirty-ring-full.action", "'ignore' is not an action")]
    [InlineData("      - dirty-log.manual-protect: { vm: vm0, initially_set: perhaps }", "dirty-log.manual-protect.initially_set", "'perhaps' is not a boolean")]
    [InlineData("      - guest.write: { vm: vm0, gfn: 0x100, value: 1, error: full }", "guest.write.error", "(efault, mmio, ring-full, internal-error, none, any)")]
    public void BadFields_ExitTwo(string op, string field, string message) =>
        CliRunner.AssertBadInput(Scenario + "\n" + op + "\n", 13, field, message);
}
