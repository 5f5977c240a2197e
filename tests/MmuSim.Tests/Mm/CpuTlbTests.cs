using MmuSim.Devices;
using MmuSim.Mm;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using MmuSim.Sched;
using static MmuSim.Tests.Harness;
using static MmuSim.Tests.Mm.MmTestKit;

namespace MmuSim.Tests.Mm;

/// <summary>The opt-in primary CPU TLB (<see cref="CpuTlb"/>), clear_refs and mm_tlb_flush_pending per era (§5(d8)).</summary>
public class CpuTlbTests
{
    const ulong A = 0x10000, P = MmStruct.PageSize;

    static (Kernel K, MmStruct Mm) WithTlb(string era = "6.13", KernelOptions? options = null)
    {
        var k = Kernel(era, options: options);
        k.PrimaryTlb = new CpuTlb(k);
        return (k, MmWithVma(k, A, 4 * P));
    }

    /// <summary>Rewrite the PTE at <paramref name="a"/> under its PTL without any TLB flush (what a batched path does).</summary>
    static async ValueTask ChangePteNoFlush(MmStruct mm, ulong a, Func<Pte, Pte> f)
    {
        int t = mm.PteTable(a);
        await mm.LockPtl(t);
        await mm.SetPte(t, a, f(await mm.PtepGet(t, a)));
        await mm.UnlockPtl(t);
    }

    [Fact]
    public void WriteThroughCachedWritableDirtyEntry_LeavesThePteAlone_UntilTheFlush()
    {
        var (k, mm) = WithTlb();
        Ok(k, async () =>
        {
            await Write(mm, A, 1); // fault, walk, fill: writable + dirty
            long pfn = mm.PeekPte(A).Pfn;
            var e = Assert.Single(k.PrimaryTlb!.EntriesOf(k.S.Current.Id));
            Assert.Equal((pfn, true, true), (e.Pfn, e.Writable, e.Dirty));

            // MADV_FREE + clear_refs style: clean and read-only in the page table, flush deferred.
            await ChangePteNoFlush(mm, A, p => p.Mkclean().Wrprotect());
            long faults = k.Stats[Stat.Faults];
            await Write(mm, A, 2);
            Assert.Equal(faults, k.Stats[Stat.Faults]);        // no fault
            var pte = mm.PeekPte(A);
            Assert.False(pte.Writable);                           // the PTE is untouched
            Assert.False(pte.Dirty);
            Assert.Equal(2UL, k.Mem[pfn].Contents);               // but the data landed

            await Tlb.FlushTlbRange(mm, A, A + P);               // the deferred flush arrives
            Assert.Empty(k.PrimaryTlb.EntriesOf(k.S.Current.Id));
            await Write(mm, A, 3);                                // now it faults (do_wp_page reuses the page)
            Assert.Equal(faults + 1, k.Stats[Stat.Faults]);
            pte = mm.PeekPte(A);
            Assert.True(pte.Writable && pte.Dirty);
            Assert.Equal(3UL, k.Mem[pte.Pfn].Contents);
        });
    }

    [Fact]
    public void WriteOnCachedCleanEntry_RewalksAndSetsTheDirtyBit()
    {
        var (k, mm) = WithTlb();
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await ChangePteNoFlush(mm, A, p => p.Mkclean());
            await Tlb.FlushTlbRange(mm, A, A + P);
            Assert.Equal(1UL, await Read(mm, A));                 // fills writable, clean
            var e = Assert.Single(k.PrimaryTlb!.EntriesOf(k.S.Current.Id));
            Assert.True(e.Writable);
            Assert.False(e.Dirty);
            Assert.False(mm.PeekPte(A).Dirty);
            await Write(mm, A, 2);                                // a store needs D: the walker sets it in the PTE
            Assert.True(mm.PeekPte(A).Dirty);
            Assert.True(Assert.Single(k.PrimaryTlb.EntriesOf(k.S.Current.Id)).Dirty);
        });
    }

    [Fact]
    public void EachThreadHasItsOwnTlb_AndAFlushReachesEveryCpu()
    {
        var (k, mm) = WithTlb();
        Ok(k, async () => await Write(mm, A, 1));
        Ok(k, async () => await Read(mm, A));
        Assert.Equal(2, k.PrimaryTlb!.Find(mm, A).Count());
        Ok(k, async () => await Tlb.FlushTlbRange(mm, A, A + P));
        Assert.Empty(k.PrimaryTlb.Find(mm, A));
    }

    [Fact]
    public void SkippedFlush_LeavesATlbEntryToAFreedPage_FreedPageReachable()
    {
        var (k, mm) = WithTlb(options: new KernelOptions { Mutations = new HashSet<Mutation> { Mutation.SkipTlbFlush } });
        var v = Run(k, async _ =>
        {
            await Write(mm, A, 1);
            await Madvise.MadviseDontneed(mm, A, P);
        });
        Assert.NotNull(v);
        Assert.Equal(Invariants.FreedPageReachable, v!.Invariant);
    }

    [Fact]
    public void DontneedWithTheFlush_IsClean_AndTheNextAccessRefaults()
    {
        var (k, mm) = WithTlb();
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await Madvise.MadviseDontneed(mm, A, P);
            Assert.Equal(0UL, await Read(mm, A));
        });
    }

    [Theory]
    [InlineData("4.12", false)]
    [InlineData("4.13-rc1", false)]
    [InlineData("4.13", true)]
    [InlineData("6.13", true)]
    public void TlbGatherMmu_RaisesTlbFlushPending_From4_13(string era, bool raised)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, P);
        Ok(k, async () =>
        {
            var tlb = new MmuGather(mm);
            Assert.Equal(raised ? 1 : 0, mm.TlbFlushPending);
            Assert.Equal(1, mm.TlbGathersInFlight);
            await tlb.Finish();
            Assert.Equal(0, mm.TlbFlushPending);
            Assert.Equal(0, mm.TlbGathersInFlight);
        });
    }

    [Theory]
    [InlineData("4.12", false)]
    [InlineData("4.19", true)]
    public void ClearRefsSoftDirty_WriteProtectsEveryPte_NotifiesSoftDirty_FlushesAtTheEnd(string era, bool pendingDuringWalk)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, 4 * P);
        Ok(k, async () =>
        {
            await Write(mm, A, 1);
            await Write(mm, A + P, 2);
            await Read(mm, A + 2 * P);                             // zero page
            await ChangePteNoFlush(mm, A, p => p.WithSoftDirty(true));
        });
        var rec = Recorder(k, mm);
        var probe = Probe(k, mm);
        int pendingAtEnd = -1;
        probe.OnEnd = () => pendingAtEnd = mm.TlbFlushPending;
        long flushes = k.Stats[Stat.TlbFlushesLocal];
        Ok(k, async () => Assert.True(await TaskMmu.ClearRefsWrite(mm)));

        foreach (var a in new[] { A, A + P, A + 2 * P })
        {
            var pte = mm.PeekPte(a);
            Assert.True(pte.Present);
            Assert.False(pte.Writable);
            Assert.False(pte.SoftDirty);
        }
        Assert.True(mm.PeekPte(A).Dirty);                          // dirty is kept: only the write bit and soft-dirty go
        Assert.True(mm.PeekPte(A + 3 * P).IsNone);
        Assert.Equal(flushes + 1, k.Stats[Stat.TlbFlushesLocal]);  // one flush, after the walk
        Assert.Equal(pendingDuringWalk ? 1 : 0, pendingAtEnd);
        Assert.Equal(0, mm.TlbFlushPending);
        var calls = rec.Calls.Where(c => c.Kind is CallbackKind.InvalidateRangeStart or CallbackKind.InvalidateRangeEnd).ToList();
        Assert.Equal(2, calls.Count);
        Assert.Equal((0UL, Tlb.TaskSize), (calls[0].Start, calls[0].End));
        if (k.Era.Has(Eras.Feature.RangeEvents)) Assert.Equal(MmuNotifyEvent.SoftDirty, calls[0].Event);
        Consistent(k);
        // A write now faults and makes the PTE writable again (do_wp_page reuse).
        Ok(k, async () => await Write(mm, A, 5));
        Assert.True(mm.PeekPte(A).Writable);
    }

    [Fact]
    public void ClearRefs_DoesNotExistBefore3_11()
    {
        var k = Kernel("3.10");
        var mm = MmWithVma(k, A, P);
        Ok(k, async () => Assert.False(await TaskMmu.ClearRefsWrite(mm)));
    }

    [Fact]
    public void PrimaryTlb_IsOptIn_OffByDefault()
    {
        const string yaml = """
            name: t
            era: 6.13
            processes:
              - name: p
                vmas:
                  - { start: 0x10000, len: 4K, prot: rw }
            threads:
              - name: cpu0
                process: p
                ops:
                  - write: { addr: 0x10000, value: 1 }
            """;
        var off = ScenarioLoader.Parse(yaml, "t.yaml");
        Assert.False(off.PrimaryTlb);
        Assert.Null(ScenarioRunner.Run(off, off.EraOrDefault(null), null).Kernel.PrimaryTlb);
        Assert.Null(Kernel("6.13").PrimaryTlb);

        var on = ScenarioLoader.Parse(yaml.Replace("era: 6.13", "era: 6.13\nprimary_tlb: true"), "t.yaml");
        Assert.True(on.PrimaryTlb);
        var r = ScenarioRunner.Run(on, on.EraOrDefault(null), null);
        Assert.NotNull(r.Kernel.PrimaryTlb);
        Assert.Single(r.Kernel.PrimaryTlb!.Find(r.World.Processes["p"], 0x10000));
        Assert.Contains("primary_tlb: true", ScenarioWriter.ToYaml(on));

        var ex = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(yaml.Replace("era: 6.13", "era: 6.13\nprimary_tlb: maybe"), "t.yaml"));
        Assert.Equal("primary_tlb", ex.Field);
        Assert.Equal(3, ex.Line);
    }

    [Fact]
    public void ClearRefsOp_RejectsOtherTypes_WithFileAndLine()
    {
        var ex = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse("""
            name: t
            processes:
              - name: p
                vmas:
                  - { start: 0x10000, len: 4K, prot: rw }
            threads:
              - name: cpu2
                process: p
                ops:
                  - clear-refs: { type: 1 }
            """, "t.yaml"));
        Assert.Equal("clear-refs.type", ex.Field);
        Assert.Equal(10, ex.Line);
    }
}
