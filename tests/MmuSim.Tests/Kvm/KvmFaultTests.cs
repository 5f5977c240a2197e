using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Sched;

namespace MmuSim.Tests.Kvm;

public class KvmFaultTests
{
    const ulong G = KvmKit.Gfn0 + 1;
    static readonly ulong H = KvmKit.HvaOf(G);

    [Theory]
    [InlineData("6.8")]
    [InlineData("2.6.32")]
    [InlineData("4.10")]
    [InlineData("6.13")]
    public void GuestWriteFaultsInThePrimaryAndLandsInItsPage(string era)
    {
        var t = new KvmKit(era);
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 42);
            await t.GuestWrite(G, 43); // TLB hit: no second exit
        });
        var pte = t.Mm.PeekPte(H);
        Assert.True(pte.Present && pte.Writable);
        Assert.Equal(43UL, t.K.Mem[pte.Pfn].Contents);
        var spte = t.Vm.PeekSpte(G);
        Assert.True(spte.Present && spte.Writable && spte.Dirty && spte.Accessed);
        Assert.Equal(pte.Pfn, spte.Pfn);
        Assert.Equal(1, t.Stat(Stat.VmExits));
        Assert.Equal(1, t.Stat(Stat.VmExitsEptViolation));
        Assert.Equal(1, t.Stat(Stat.GuestTlbHits));
        Assert.Equal(1, t.Stat(Stat.SptesInstalled));
        // No reference is held for an established SPTE.
        Assert.Equal(1, t.K.Mem[pte.Pfn].RefCount);
        Assert.Equal(1, t.K.Mem[pte.Pfn].MapCount);
        t.MustDo(async () => Assert.Equal(43UL, await Memory.UserAccess(t.Mm, H, write: false)));
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("2.6.32")]
    public void ReadMapsZeroPageReadOnly_WriteExitsAndBreaksCowIntoAWritableSpte(string era)
    {
        var t = new KvmKit(era);
        t.MustDo(async () => Assert.Equal(0UL, await t.GuestRead(G)));
        var s = t.Vm.PeekSpte(G);
        Assert.True(s.Present);
        Assert.False(s.Writable);
        Assert.Equal(PhysMem.ZeroPfn, s.Pfn);
        t.MustDo(async () => await t.GuestWrite(G, 9));
        s = t.Vm.PeekSpte(G);
        Assert.True(s.Writable);
        Assert.NotEqual(PhysMem.ZeroPfn, s.Pfn);
        Assert.Equal(s.Pfn, t.Mm.PeekPte(H).Pfn);
        Assert.Equal(9UL, t.K.Mem[s.Pfn].Contents);
        // The write exit's own GUP breaks COW, whose invalidation (start/end from 3.7, change_pte in 2.6.32) bumps the
        // seq the fault sampled: that fault retries and the guest re-faults on the zapped SPTE.
        Assert.Equal(1, t.Stat(Stat.KvmFaultRetries));
        Assert.Equal(2, t.Stat(Stat.VmExitsEptViolation));
        Assert.Equal(1, t.Stat(Stat.VmExitsWriteProtect));
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("2.6.32")]
    [InlineData("4.10")]
    public void Munmap_LeavesNoStaleSpte_ThenReMmapIsSeenByTheGuest(string era)
    {
        var t = new KvmKit(era);
        long pfn = -1;
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 5);
            pfn = t.Vm.PeekSpte(G).Pfn;
            await Mmap.Munmap(t.Mm, KvmKit.Hva, 8 * MmStruct.PageSize);
        });
        t.AssertUnmapped(G);
        Assert.True(t.K.Mem[pfn].Has(PageFlags.Free));
        Assert.True(t.Stat(Stat.KvmRemoteTlbFlushes) >= 1);
        t.MustDo(async () =>
        {
            var r = await t.Vm.Vcpu(0).GuestRead(G);
            Assert.False(r.Ok);
            Assert.Equal(KvmFaultResult.Efault, r.Error);
            await Mmap.DoMmap(t.Mm, KvmKit.Hva, 8 * MmStruct.PageSize, Prot.ReadWrite, VmFlags.None);
            await Memory.UserAccess(t.Mm, H, write: true, value: 77);
            Assert.Equal(77UL, await t.GuestRead(G));
        });
        Assert.Equal(1, t.Stat(Stat.KvmEfaults));
        Assert.Equal(t.Mm.PeekPte(H).Pfn, t.Vm.PeekSpte(G).Pfn);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("2.6.32")]
    [InlineData("4.10")]
    public void MadvDontneed_ZapsTheSpte_GuestRefaultsAndSeesZero(string era)
    {
        var t = new KvmKit(era);
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 5);
            await t.Dontneed(H, MmStruct.PageSize);
        });
        t.AssertUnmapped(G);
        long exits = t.Stat(Stat.VmExits);
        t.MustDo(async () => Assert.Equal(0UL, await t.GuestRead(G)));
        Assert.Equal(exits + 1, t.Stat(Stat.VmExits));
        Assert.Equal(PhysMem.ZeroPfn, t.Vm.PeekSpte(G).Pfn);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("2.6.32")]
    public void ProcessExit_ReleaseZapsEverything_GuestGetsEfault(string era)
    {
        var t = new KvmKit(era);
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 5);
            await t.GuestRead(G + 1);
            await Mmap.ExitMmap(t.Mm);
        });
        Assert.True(t.Vm.Released);
        Assert.Equal(0, t.Vm.PresentSptes);
        t.AssertUnmapped(G);
        t.MustDo(async () => Assert.Equal(KvmFaultResult.Efault, (await t.Vm.Vcpu(0).GuestRead(G)).Error));
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.10")]
    public void BadAccessesReturnEfaultToTheVmm(string era)
    {
        var t = new KvmKit(era, pages: 8);
        t.MustDo(async () =>
        {
            // hva 0x10000+8 pages is the VMA; a second slot over unmapped hva, a PROT_NONE VMA and a read-only VMA.
            await Mmap.DoMmap(t.Mm, 0x40000, 0x1000, Prot.None, VmFlags.None);
            await Mmap.DoMmap(t.Mm, 0x50000, 0x1000, Prot.Read, VmFlags.None);
            Assert.Equal(0, await t.Vm.SetMemoryRegion(1, 0x200, 1, 0x30000, MemslotFlags.None));
            Assert.Equal(0, await t.Vm.SetMemoryRegion(2, 0x300, 1, 0x40000, MemslotFlags.None));
            Assert.Equal(0, await t.Vm.SetMemoryRegion(3, 0x400, 1, 0x50000, MemslotFlags.None));
            Assert.Equal(0, await t.Vm.SetMemoryRegion(4, 0x500, 1, KvmKit.Hva, MemslotFlags.ReadOnly));
            var v = t.Vm.Vcpu(0);
            Assert.Equal(KvmFaultResult.Efault, (await v.GuestRead(0x200)).Error);
            Assert.Equal(KvmFaultResult.Efault, (await v.GuestRead(0x300)).Error);
            Assert.True((await v.GuestRead(0x400)).Ok);
            Assert.Equal(KvmFaultResult.Efault, (await v.GuestWrite(0x400, 1)).Error);
            Assert.True((await v.GuestRead(0x500)).Ok);
            // A write to a read-only memslot and any access without a memslot are emulated: KVM_EXIT_MMIO, not -EFAULT.
            var ro = await v.GuestWrite(0x500, 1);
            Assert.Equal(KvmFaultResult.Mmio, ro.Error);
            Assert.True(ro.Mmio);
            Assert.Equal(KvmFaultResult.Mmio, (await v.GuestRead(0x900)).Error);
        });
        Assert.Equal(3, t.Stat(Stat.KvmEfaults));
        Assert.Equal(2, t.Stat(Stat.KvmMmioExits));
        Assert.False(t.Vm.PeekSpte(0x400).Writable);
    }

    [Fact]
    public void OverlappingMemslotIsRefused_AliasingHvaIsAllowed_AndBothAliasesAreZapped()
    {
        var t = new KvmKit("6.8");
        t.MustDo(async () =>
        {
            Assert.Equal(MmuSim.Kvm.Kvm.EEXIST, await t.Vm.SetMemoryRegion(1, KvmKit.Gfn0 + 4, 8, KvmKit.Hva, MemslotFlags.None));
            Assert.Equal(0, await t.Vm.SetMemoryRegion(1, 0x800, 8, KvmKit.Hva, MemslotFlags.None)); // alias
            await t.GuestWrite(G, 3);
            Assert.Equal(3UL, await t.GuestRead(0x801));
            Assert.Equal(t.Vm.PeekSpte(G).Pfn, t.Vm.PeekSpte(0x801).Pfn);
            await t.Dontneed(H, MmStruct.PageSize);
        });
        t.AssertUnmapped(G);
        t.AssertUnmapped(0x801);
    }

    // ------------------------------------------------------------------ the retry protocol

    /// <summary>
    /// vCPU faults on G: it samples the seq and GUPs the old page, then (gate) MADV_DONTNEED of the same page runs
    /// start..end completely, then the vCPU takes mmu_lock.
    /// </summary>
    static (KvmKit Kit, Violation? V) ForcedInvalidationBetweenSampleAndInstall(string era, params Mutation[] mutations)
    {
        var gate = new GateStrategy();
        var t = new KvmKit(era, gate, options: new KernelOptions { Mutations = new HashSet<Mutation>(mutations) });
        gate.K = t.K;
        t.MustDo(async () => await Memory.UserAccess(t.Mm, H, write: true, value: 0x11), "host");
        string faultFn = "kvm_tdp_mmu_page_fault";
        var vcpu = t.K.S.Spawn("vcpu0", async _ =>
        {
            ulong v = await t.GuestRead(G);
            Assert.Equal(0UL, v); // re-faulted after the zap: the new zero page
        });
        var zap = t.K.S.Spawn("madvise", async _ => await t.Dontneed(H, MmStruct.PageSize));
        gate.First = vcpu.Id;
        gate.Second = zap.Id;
        gate.Gate = (ctx, kind) => kind == PointKind.LockAcquire && ctx.CurrentFunction == faultFn;
        var viol = t.K.Run();
        Assert.True(gate.Opened);
        return (t, viol);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("5.13")]
    [InlineData("4.10")]
    [InlineData("2.6.32")]
    public void InvalidationBetweenSeqSampleAndInstall_ForcesARetry(string era)
    {
        var (t, v) = ForcedInvalidationBetweenSampleAndInstall(era);
        Assert.Null(v);
        Assert.Equal(1, t.Stat(Stat.KvmFaultRetries));
        Assert.Equal(2, t.Stat(Stat.VmExits));
        Assert.Equal(PhysMem.ZeroPfn, t.Vm.PeekSpte(G).Pfn);
        Assert.Equal(1UL, t.Vm.InvalidateSeq); // one end: seq 0 -> 1
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("2.6.32")]
    public void SameInterleavingWithoutTheRetryCheck_IsAStaleTranslation(string era)
    {
        var (t, v) = ForcedInvalidationBetweenSampleAndInstall(era, Mutation.KvmNoRetryCheck);
        Assert.NotNull(v);
        Assert.Equal(Invariants.StaleTranslation, v!.Invariant);
        Assert.Equal(H, v.Address);
        Assert.Equal(0, t.Stat(Stat.KvmFaultRetries));
    }

    [Fact]
    public void AStartThatNeverEnds_IsALivenessViolationNotAHang()
    {
        var t = new KvmKit("6.8");
        var v = t.Do(async () =>
        {
            await t.Mm.Notifiers.InvalidateRangeStart(new MmuNotifierRange(t.Mm, H, H + MmStruct.PageSize, MmuNotifyEvent.Clear));
            await t.Vm.Vcpu(0).GuestRead(G);
        });
        Assert.NotNull(v);
        Assert.Equal(Invariants.Liveness, v!.Invariant);
        // The retry changed nothing and no other context is left to end the invalidation: the first RET_PF_RETRY
        // spin-waits and the scheduler reports the livelock at once instead of after MaxRetries identical attempts.
        Assert.Equal(1, t.Stat(Stat.KvmFaultRetries));
        Assert.Contains("spins in kvm_mmu_page_fault (RET_PF_RETRY)", v.Message);
        Assert.Equal(1, t.Vm.InvalidateInProgress);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("5.13")]
    public void RangeRetry_AFaultOutsideTheInFlightRangeDoesNotRetry(string era)
    {
        var t = new KvmKit(era);
        var v = t.Do(async () =>
        {
            var r = new MmuNotifierRange(t.Mm, H, H + MmStruct.PageSize, MmuNotifyEvent.Clear);
            await t.Mm.Notifiers.InvalidateRangeStart(r);
            Assert.Equal(0UL, await t.GuestRead(G + 2)); // other gfn: no retry (x86 range variant)
            await t.Mm.Notifiers.InvalidateRangeEnd(r);
        });
        Assert.Null(v);
        Assert.Equal(0, t.Stat(Stat.KvmFaultRetries));
    }
}
