using MmuSim.Kvm;
using MmuSim.Mm;
using MmuSim.Notifier;

namespace MmuSim.Tests.Kvm;

/// <summary>2 MiB SPTEs: only where the host maps a THP; a partial invalidation drops the whole huge SPTE.</summary>
public class KvmHugeTests
{
    const ulong HugeHva = 0x4000_0000, HugeGfn = 0x8_0000;

    /// <summary>A VM whose slot covers one 2 MiB VMA; the host maps it with a THP (built by hand) or with 4K pages.</summary>
    static KvmKit2 Setup(string era, bool thp)
    {
        var k = Harness.Kernel(era);
        var mm = Harness.MmWithVma(k, HugeHva, MmStruct.PmdSize, thp ? VmFlags.HugePage : VmFlags.None);
        MmuSim.Kvm.Kvm vm = null!;
        Assert.Null(Harness.Run(k, async _ =>
        {
            vm = await MmuSim.Kvm.Kvm.CreateVm(mm, "vm0");
            Assert.Equal(0, await vm.SetMemoryRegion(0, HugeGfn, 512, HugeHva, MemslotFlags.None));
            if (thp)
            {
                // do_huge_pmd_anonymous_page, by hand: one compound folio mapped by a huge PMD.
                long head = k.Mem.AllocHuge();
                Folio.AddNewAnonRmap(k, head, mm.FindVma(HugeHva)!, HugeHva, huge: true);
                mm.PmdAlloc(HugeHva);
                await mm.SetPmd(HugeHva, Pte.Make(head, writable: true, dirty: true, huge: true));
            }
            else
                for (ulong va = HugeHva; va < HugeHva + 4 * MmStruct.PageSize; va += MmStruct.PageSize)
                    await Memory.UserAccess(mm, va, write: true, value: 1);
        }, "vmm"));
        return new KvmKit2(k, mm, vm);
    }

    public sealed record KvmKit2(Kernel K, MmStruct Mm, MmuSim.Kvm.Kvm Vm);

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.10")]
    public void ThpBackedGuestMemoryGetsOneHugeSpte_AndAFourKInvalidationDropsAllOfIt(string era)
    {
        var t = Setup(era, thp: true);
        long head = t.Mm.PeekPmd(HugeHva).Pfn;
        Assert.Null(Harness.Run(t.K, async _ =>
        {
            Assert.True((await t.Vm.Vcpu(0).GuestWrite(HugeGfn + 3, 5)).Ok);
            Assert.True((await t.Vm.Vcpu(0).GuestRead(HugeGfn + 300)).Ok); // same huge SPTE: no exit
        }));
        Assert.Equal(1, t.Vm.PresentSptes);
        Assert.Equal(1, t.K.Stats[Stat.VmExits]);
        Assert.Equal(SpteTable.HugeLeaf, t.Vm.Memslots[0].Tables[0]);
        Assert.Equal(head + 300, t.Vm.PeekSpte(HugeGfn + 300).Pfn);
        Assert.Equal(5UL, t.K.Mem[head + 3].Contents);
        Assert.Null(Harness.Run(t.K, async _ =>
        {
            var r = new MmuNotifierRange(t.Mm, HugeHva + 0x5000, HugeHva + 0x6000, MmuNotifyEvent.Clear);
            await t.Mm.Notifiers.InvalidateRangeStart(r);
            Assert.Equal(0, t.Vm.PresentSptes); // the whole 2 MiB SPTE, not just gfn+5 (invariant 9)
            await t.Mm.Notifiers.InvalidateRangeEnd(r);
        }));
        Assert.False(t.Vm.Vcpu(0).TlbLookup(HugeGfn + 3).Present);
    }

    [Fact]
    public void FourKHostMappingsGiveFourKSptes()
    {
        var t = Setup("6.8", thp: false);
        Assert.Null(Harness.Run(t.K, async _ =>
        {
            Assert.True((await t.Vm.Vcpu(0).GuestRead(HugeGfn)).Ok);
            Assert.True((await t.Vm.Vcpu(0).GuestRead(HugeGfn + 1)).Ok);
        }));
        Assert.Equal(2, t.Vm.PresentSptes);
        Assert.Equal(SpteTable.Table, t.Vm.Memslots[0].Tables[0]);
        Assert.Equal(2, t.K.Stats[Stat.VmExits]);
    }

    /// <summary>A THP-eligible VMA faulted by the guest through GUP; the primary maps a real THP.</summary>
    static KvmKit2 RealThp(string era)
    {
        var k = Harness.Kernel(era);
        var mm = Harness.MmWithVma(k, HugeHva, 2 * MmStruct.PmdSize, VmFlags.HugePage);
        MmuSim.Kvm.Kvm vm = null!;
        Assert.Null(Harness.Run(k, async _ =>
        {
            vm = await MmuSim.Kvm.Kvm.CreateVm(mm, "vm0");
            Assert.Equal(0, await vm.SetMemoryRegion(0, HugeGfn, 1024, HugeHva, MemslotFlags.None));
            Assert.True((await vm.Vcpu(0).GuestWrite(HugeGfn + 7, 0x77)).Ok);
        }, "vmm"));
        Assert.True(mm.PeekPmd(HugeHva).Huge);
        return new KvmKit2(k, mm, vm);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.19")]
    [InlineData("6.13")]
    public void RealThpFault_HugeSpte_ThenDontneedOfOnePageSplitsAndDropsTheWholeHugeSpte(string era)
    {
        var t = RealThp(era);
        Assert.Equal(1, t.Vm.PresentSptes);
        Assert.Equal(SpteTable.HugeLeaf, t.Vm.Memslots[0].Tables[0]);
        Assert.Null(Harness.Run(t.K, async _ =>
        {
            await Madvise.MadviseDontneed(t.Mm, HugeHva + 0x3000, MmStruct.PageSize);
            Assert.Equal(0, t.Vm.PresentSptes);
            // The rest of the block is still there, now mapped by 4K PTEs: the guest gets 4K SPTEs.
            var r = await t.Vm.Vcpu(0).GuestRead(HugeGfn + 7);
            Assert.True(r.Ok);
            Assert.Equal(0x77UL, r.Value);
            Assert.Equal(0UL, (await t.Vm.Vcpu(0).GuestRead(HugeGfn + 3)).Value);
        }));
        Assert.False(t.Mm.PeekPmd(HugeHva).Huge);
        Assert.Equal(SpteTable.Table, t.Vm.Memslots[0].Tables[0]);
        Assert.Equal(2, t.Vm.PresentSptes);
        Assert.Equal(t.Mm.PeekPte(HugeHva + 0x7000).Pfn, t.Vm.PeekSpte(HugeGfn + 7).Pfn);
    }

    [Theory]
    [InlineData("6.8")]
    [InlineData("4.10")]
    public void RealThp_MunmapZapsTheHugeSpte_BeforeTheThpIsFreed(string era)
    {
        var t = RealThp(era);
        long head = t.Mm.PeekPmd(HugeHva).Pfn;
        Assert.Null(Harness.Run(t.K, async _ => await Mmap.Munmap(t.Mm, HugeHva, 2 * MmStruct.PmdSize)));
        Assert.Equal(0, t.Vm.PresentSptes);
        Assert.True(t.K.Mem[head].Has(PageFlags.Free));
    }
}
