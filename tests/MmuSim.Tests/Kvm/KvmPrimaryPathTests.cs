using MmuSim.Kvm;
using MmuSim.Mm;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// Every primary path that changes a page the guest has mapped: afterwards no stale SPTE or TLB entry, the guest
/// re-faults and sees the primary's current contents (kernel-facts §4, invariants 1, 3-5).
/// </summary>
public class KvmPrimaryPathTests
{
    const ulong G = KvmKit.Gfn0 + 2;
    static readonly ulong H = KvmKit.HvaOf(G);

    void AssertMatchesPrimary(KvmKit t, ulong gfn)
    {
        var s = t.Vm.PeekSpte(gfn);
        var (present, pfn, writable, _) = t.Mm.Translate(KvmKit.HvaOf(gfn));
        Assert.True(present);
        Assert.True(s.Present);
        Assert.Equal(pfn, s.Pfn);
        Assert.True(!s.Writable || writable);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.10")]
    [InlineData("2.6.32")]
    public void MprotectReadOnly_RemovesWriteAccess_ReadsStillWork_WritesGetEfault(string era)
    {
        var t = new KvmKit(era);
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 5);
            Assert.True(t.Vm.PeekSpte(G).Writable);
            await Mprotect.DoMprotect(t.Mm, KvmKit.Hva, 8 * MmStruct.PageSize, Prot.Read);
        });
        Assert.False(t.Vm.PeekSpte(G).Writable);
        Assert.False(t.Vm.Vcpus[0].TlbLookup(G).Writable);
        Assert.False(t.Mm.PeekPte(H).Writable);
        t.MustDo(async () =>
        {
            Assert.Equal(5UL, await t.GuestRead(G));
            Assert.Equal(KvmFaultResult.Efault, (await t.Vm.Vcpu(0).GuestWrite(G, 6)).Error);
            await Mprotect.DoMprotect(t.Mm, KvmKit.Hva, 8 * MmStruct.PageSize, Prot.ReadWrite);
            await t.GuestWrite(G, 7); // upgrade needs no notification: the next write fault maps it writable
        });
        AssertMatchesPrimary(t, G);
        Assert.Equal(7UL, t.K.Mem[t.Mm.PeekPte(H).Pfn].Contents);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.10")]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void ForkCow_AGuestWriteAfterForkBreaksCowInTheParent_AndLandsInTheParentsNewPage(string era)
    {
        var t = new KvmKit(era);
        MmStruct child = null!;
        long shared = -1;
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 1);
            shared = t.Vm.PeekSpte(G).Pfn;
            child = await Fork.DupMmap(t.Mm, "child");
        });
        // copy_page_range write-protected the parent's PTE inside start/end: the writable SPTE is gone.
        Assert.False(t.Mm.PeekPte(H).Writable);
        Assert.False(t.Vm.PeekSpte(G).Writable);
        Assert.Equal(shared, child.PeekPte(H).Pfn);
        t.MustDo(async () =>
        {
            Assert.Equal(1UL, await t.GuestRead(G));   // read-only SPTE to the shared page
            Assert.False(t.Vm.PeekSpte(G).Writable);
            await t.GuestWrite(G, 2);                    // GUP(FOLL_WRITE) breaks COW in the parent
        });
        long mine = t.Mm.PeekPte(H).Pfn;
        Assert.NotEqual(shared, mine);
        Assert.Equal(mine, t.Vm.PeekSpte(G).Pfn);
        Assert.True(t.Vm.PeekSpte(G).Writable);
        Assert.Equal(2UL, t.K.Mem[mine].Contents);
        Assert.Equal(1UL, t.K.Mem[child.PeekPte(H).Pfn].Contents);
        t.MustDo(async () =>
        {
            Assert.Equal(2UL, await Memory.UserAccess(t.Mm, H, write: false));
            Assert.Equal(1UL, await Memory.UserAccess(child, H, write: false));
        });
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.13")]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void Reclaim_UnmapsTheSpteBeforeThePageGoes_GuestSwapsItBackIn(string era)
    {
        var t = new KvmKit(era);
        long pfn = -1;
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 0x5a);
            pfn = t.Mm.PeekPte(H).Pfn;
            Assert.True(await Vmscan.ShrinkFolio(t.K, pfn));
        });
        Assert.True(t.K.Mem[pfn].Has(PageFlags.Free));
        Assert.True(t.Mm.PeekPte(H).IsSwapEntry);
        t.AssertUnmapped(G);
        t.MustDo(async () => Assert.Equal(0x5aUL, await t.GuestRead(G)));
        AssertMatchesPrimary(t, G);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.19")]
    [InlineData("2.6.32")]
    public void Migration_ZapsTheOldPage_GuestRefaultsToTheNewOne(string era)
    {
        var t = new KvmKit(era);
        long oldPfn = -1, newPfn = -1;
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 0x77);
            oldPfn = t.Mm.PeekPte(H).Pfn;
            newPfn = await Migrate.MigrateFolio(t.K, oldPfn);
        });
        Assert.True(newPfn > 0);
        Assert.True(t.K.Mem[oldPfn].Has(PageFlags.Free));
        t.AssertUnmapped(G);
        t.MustDo(async () => Assert.Equal(0x77UL, await t.GuestRead(G)));
        Assert.Equal(newPfn, t.Vm.PeekSpte(G).Pfn);
        AssertMatchesPrimary(t, G);
    }

    /// <summary>
    /// Race 5(a): in 3.6-4.12 try_to_unmap_one calls invalidate_page after pte_unmap_unlock; between the two the
    /// SPTE still maps the page the primary already unmapped. The checker reports it in every schedule.
    /// </summary>
    [Theory]
    [InlineData("4.10", true)]
    [InlineData("4.10", false)]
    [InlineData("3.6", true)]
    public void InvalidatePageAfterPtl_3_6To4_12_LeavesAStaleSpteWindow(string era, bool reclaim)
    {
        var t = new KvmKit(era);
        var v = t.Do(async () =>
        {
            await t.GuestWrite(G, 0x5a);
            long pfn = t.Mm.PeekPte(H).Pfn;
            if (reclaim) await Vmscan.ShrinkFolio(t.K, pfn);
            else await Migrate.MigrateFolio(t.K, pfn);
        });
        Assert.NotNull(v);
        Assert.Equal(MmuSim.Sched.Invariants.StaleTranslation, v!.Invariant);
        Assert.Equal("mmu_notifier_invalidate_page", v.Function);
        Assert.Equal(H, v.Address);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("2.6.32")]
    public void MadvFreeThenGuestWrite_TheWriteIsNotLost(string era)
    {
        var t = new KvmKit(era);
        long pfn = -1;
        t.MustDo(async () =>
        {
            await t.GuestWrite(G, 1);
            pfn = t.Mm.PeekPte(H).Pfn;
            await Madvise.MadviseFree(t.Mm, KvmKit.Hva, 8 * MmStruct.PageSize);
            await t.GuestWrite(G, 2);     // re-faults (the SPTE was zapped), and the write re-dirties the page
            await Vmscan.ShrinkFolio(t.K, t.Mm.PeekPte(H).Pfn);
            Assert.Equal(2UL, await t.GuestRead(G));
        });
    }
}
