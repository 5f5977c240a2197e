using MmuSim.Devices;
using MmuSim.Ksm;
using MmuSim.Mm;
using MmuSim.Notifier;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Ksm;

/// <summary>What a secondary MMU is told when ksmd merges two identical pages, per era (kernel-facts §4.1).</summary>
public class KsmNotifierTests
{
    const ulong A = 0x200000;
    const ulong P = MmStruct.PageSize;

    static (Kernel K, MmStruct Mm, RecordingSecondary Rec) MergeTwo(string era, KernelOptions? options = null)
    {
        var k = Kernel(era, options: options);
        var mm = k.CreateMm("task");
        mm.InsertVma(new Vma(mm, A, A + 2 * P, Prot.ReadWrite, VmFlags.None));
        Assert.Null(Run(k, async _ =>
        {
            await Memory.UserAccess(mm, A, write: true, value: 0x5A);
            await Memory.UserAccess(mm, A + P, write: true, value: 0x5A);
            Assert.Equal(0, await Ksmd.Of(k).KsmMadvise(mm, A, 2 * P, mergeable: true));
        }));
        var rec = Recorder(k, mm);
        Assert.Null(Run(k, async _ => await Ksmd.Of(k).ScanFull(2), "ksmd"));
        Assert.Equal(1, Ksmd.Of(k).PagesShared);
        Assert.Equal(1, Ksmd.Of(k).PagesSharing);
        return (k, mm, rec);
    }

    static string Log(RecordingSecondary rec) =>
        string.Join(" ", rec.Calls.Select(c => $"{Short(c.Kind)}@{(c.Start - A) / P}"));

    static string Short(CallbackKind kind) => kind switch
    {
        CallbackKind.InvalidateRangeStart => "S",
        CallbackKind.InvalidateRangeEnd => "E",
        CallbackKind.ChangePte => "CP",
        CallbackKind.InvalidateRange => "IR",
        CallbackKind.InvalidatePage => "IP",
        _ => kind.ToString(),
    };

    // The page at A+P is scanned second and finds A in the unstable tree: write_protect_page(A+P) makes it the KSM
    // page, then write_protect_page(A) and replace_page(A -> KSM page). 2.6.32 allocates a new KSM page and
    // replace_page()s both pages into it.
    [Theory]
    [InlineData("2.6.32", "CP@1 CP@1 CP@0 CP@0")]
    [InlineData("3.10", "S@1 CP@1 E@1 S@0 CP@0 E@0 S@0 CP@0 E@0")]
    [InlineData("4.10", "S@1 IR@1 CP@1 IR@1 E@1 S@0 IR@0 CP@0 IR@0 E@0 S@0 IR@0 CP@0 IR@0 E@0")]
    [InlineData("4.19", "S@1 CP@1 IR@1 E@1 S@0 CP@0 IR@0 E@0 S@0 CP@0 IR@0 E@0")]
    [InlineData("6.8", "S@1 CP@1 E@1 S@0 CP@0 E@0 S@0 CP@0 E@0")]
    [InlineData("6.13", "S@1 E@1 S@0 E@0 S@0 E@0")]
    public void WriteProtectAndReplace_NotifySequencePerEra(string era, string expected)
    {
        var (k, mm, rec) = MergeTwo(era);
        Assert.Equal(expected, Log(rec));
        // change_pte is always delivered with the PTL held; start/end never are.
        Assert.All(rec.Calls.Where(c => c.Kind == CallbackKind.ChangePte), c => Assert.True(c.Atomic));
        Assert.All(rec.Calls.Where(c => c.Kind is CallbackKind.InvalidateRangeStart or CallbackKind.InvalidateRangeEnd), c =>
        {
            Assert.False(c.Atomic);
            Assert.Equal(c.Start + P, c.End);
            if (k.Era.Has(Eras.Feature.RangeEvents)) Assert.Equal(MmuNotifyEvent.Clear, c.Event);
        });
        // The last change_pte tells the secondary the new read-only PTE: the KSM page.
        var lastCp = rec.Calls.LastOrDefault(c => c.Kind == CallbackKind.ChangePte);
        if (lastCp.Kind == CallbackKind.ChangePte)
        {
            Assert.False(lastCp.Pte.Writable);
            Assert.Equal(mm.PeekPte(A).Pfn, lastCp.Pte.Pfn);
        }
    }

    [Fact]
    public void NoNotifierBracketMutation_Uses2_6_32Placement_In6_13_SecondaryHearsNothing()
    {
        var opts = new KernelOptions { Mutations = new HashSet<Mutation> { Mutation.KsmNoNotifierBracket } };
        var (_, _, rec) = MergeTwo("6.13", opts);
        Assert.Empty(rec.Calls);
        var (_, _, rec68) = MergeTwo("6.8", opts);
        Assert.Equal("CP@1 CP@0 CP@0", Log(rec68));
    }

    [Theory]
    [InlineData("2.6.32", "CP@0")]
    [InlineData("4.19", "S@0 IR@0 CP@0 E@0")] // wp_page_copy: ptep_clear_flush_notify + only_end
    [InlineData("6.13", "S@0 E@0")]
    public void UnmergeByWrite_GoesThroughCow(string era, string expected)
    {
        var (k, mm, rec) = MergeTwo(era);
        rec.Clear();
        long kpfn = mm.PeekPte(A).Pfn;
        Assert.Null(Run(k, async _ => await Memory.UserAccess(mm, A, write: true, value: 1)));
        Assert.Equal(expected, Log(rec));
        Assert.NotEqual(kpfn, mm.PeekPte(A).Pfn);
        Assert.True(mm.PeekPte(A).Writable);
        Assert.Equal(kpfn, mm.PeekPte(A + P).Pfn);
        Assert.Equal(1, k.Mem[kpfn].MapCount);
    }
}
