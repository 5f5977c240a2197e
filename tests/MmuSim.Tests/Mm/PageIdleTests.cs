using MmuSim.Devices;
using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Mm;

/// <summary>
/// Idle page tracking (mm/page_idle.c): the bitmap write ages every mapping with clear_young (primary Accessed bit
/// cleared without a flush, the secondaries asked through mmu_notifier_clear_young), the read re-walks an idle folio;
/// folio_referenced consumes PG_young; and access_tracking_perf_test's page_idle ports in every era, which fail when
/// KVM's aging loses the guest's accesses.
/// </summary>
public class PageIdleTests
{
    const ulong A = 0x10000000;

    [Fact]
    public void BitmapWrite_ClearsYoungThroughClearYoung_NoFlush_ThenAnAccessMakesThePageNotIdle()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 0x1000);
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, A, write: true, value: 1)));
        long pfn = mm.PeekPte(A).Pfn;
        Assert.True(mm.PeekPte(A).Accessed);
        var rec = Recorder(k, mm);
        var pi = PageIdle.Of(k);
        bool idle = false;
        Assert.Null(Run(k, async _ =>
        {
            Assert.Equal(0, await pi.BitmapWrite(pfn));
            idle = await pi.BitmapRead(pfn);
        }));
        Assert.True(idle);
        Assert.False(mm.PeekPte(A).Accessed);
        Assert.True(pi.TestYoung(pfn)); // the primary PTE was young when it was marked
        var cy = rec.Calls.Where(c => c.Kind == CallbackKind.ClearYoung).ToList();
        Assert.Equal(2, cy.Count); // the write's walk, and the read's walk of a folio still idle
        Assert.All(cy, c => Assert.Equal((A, A + 0x1000), (c.Start, c.End)));
        Assert.DoesNotContain(rec.Calls, c => c.Kind == CallbackKind.ClearFlushYoung);
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, A, write: false);
            idle = await pi.BitmapRead(pfn);
        }));
        Assert.False(idle);
        // The read's walk took the PTE's young bit; PG_young carries it to folio_referenced, which consumes it.
        Assert.False(mm.PeekPte(A).Accessed);
        int referenced = 0;
        Assert.Null(Run(k, async _ => referenced = await Rmap.FolioReferenced(k, pfn)));
        Assert.Equal(1, referenced);
        Assert.False(pi.TestYoung(pfn));
    }

    [Fact]
    public void AFreedAndReusedFrame_IsNotIdle_AndTheZeroPageIsNeverTracked()
    {
        var k = Kernel("6.13");
        var mm = MmWithVma(k, A, 0x2000);
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, A, write: true, value: 1);
            await Memory.UserAccess(mm, A + 0x1000, write: false); // the zero page
        }));
        long pfn = mm.PeekPte(A).Pfn;
        var pi = PageIdle.Of(k);
        Assert.Null(Run(k, async _ =>
        {
            await pi.BitmapWrite(pfn);
            await pi.BitmapWrite(PhysMem.ZeroPfn);
        }));
        Assert.True(pi.TestIdle(pfn));
        Assert.False(pi.TestIdle(PhysMem.ZeroPfn));
        Assert.Null(Run(k, async _ =>
        {
            await Madvise.MadviseDontneed(mm, A, 0x1000);
            await Memory.UserAccess(mm, A, write: true, value: 2);
        }));
        Assert.Equal(pfn, mm.PeekPte(A).Pfn); // the same frame, reused
        Assert.False(pi.TestIdle(pfn));
    }

    [Fact]
    public void BeforeIdlePageTracking_TheBitmapIsMissing()
    {
        var s = ScenarioLoader.Parse("""
            name: t
            era: "3.19"
            processes:
              - name: p
                vmas:
                  - { start: 0x10000000, len: 4K }
            threads:
              - name: m
                process: p
                ops:
                  - write: { addr: 0x10000000, value: 1 }
                  - page-idle.mark: { addr: 0x10000000, len: 4K }
            """, "t.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get("3.19"), null);
        Assert.Contains("page_idle/bitmap does not exist in 3.19", r.Violation?.Message);
    }

    public static TheoryData<string> Ports() => new(ScenarioLoader.BuiltInNames.Where(n =>
        n.StartsWith("selftests/kvm/access_tracking_perf_test/", StringComparison.Ordinal) && !n.EndsWith("-benchmark", StringComparison.Ordinal)));

    public static TheoryData<string> PageIdlePorts() => SelftestPorts.Under("selftests/kvm/access_tracking_perf_test/page-idle");

    [Theory]
    [MemberData(nameof(PageIdlePorts))]
    public void Port_MeetsItsDeclarationInEveryEra_AndRecordsNothingStillIdle(string name)
    {
        int run = SelftestPorts.AssertMeetsDeclaration(name, check: r =>
        {
            Assert.Equal(0UL, r.Observed["mark1.no_pfn"]);
            Assert.Equal(0UL, r.Observed["mark2.still_idle"]);
            Assert.True(r.Kernel.Stats[Stat.NotifierClearYoung] >= 256);
        });
        Assert.True(run >= 10);
    }

    [Theory]
    [MemberData(nameof(Ports))]
    public void Port_FailsWhenKvmAgingLosesTheAccessedBits(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        var r = ScenarioRunner.Run(s, EraTable.Get("6.18"), null, new RunOptions { Mutations = [Mutation.KvmAgeLosesYoung] });
        Assert.Contains("Too many pages still idle (128 out of 128)", r.Violation?.Message);
    }
}
