using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Scenarios;

/// <summary>The scenario ops over the primary mm paths, each run through YAML in an old, a middle and a new era.</summary>
public class MmPathOpsTests
{
    /// <summary>One process p with two populated pages at 0x100000 (0x10, 0x20) and a 16 KiB hole after them.</summary>
    static RunResult Run(string era, string ops, string extraVmas = "")
    {
        var yaml = $$"""
            name: op-test
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 8K, prot: rw, contents: [0x10, 0x20] }
            {{extraVmas}}
            threads:
              - name: cpu0
                process: p
                ops:
            {{string.Join("\n", ops.Trim().Split('\n').Select(l => "      " + l.Trim()))}}
            """;
        var s = ScenarioLoader.Parse(yaml, "op-test.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
        Assert.True(r.Violation == null, r.Violation?.ToString());
        return r;
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void ForkSharesThenCopiesOnWrite(string era)
    {
        var r = Run(era, """
            - fork: { child: c }
            - expect-value: { process: c, addr: 0x100000, value: 0x10 }
            - write: { process: c, addr: 0x100000, value: 0x11 }
            - expect-value: { process: c, addr: 0x100000, value: 0x11 }
            - expect-value: { addr: 0x100000, value: 0x10 }
            - expect-value: { process: c, addr: 0x101000, value: 0x20 }
            """);
        var p = r.World.Processes["p"];
        var c = r.World.Processes["c"];
        Assert.NotEqual(p.PeekPte(0x100000).Pfn, c.PeekPte(0x100000).Pfn);
        Assert.Equal(p.PeekPte(0x101000).Pfn, c.PeekPte(0x101000).Pfn); // still shared
        Assert.False(p.PeekPte(0x101000).Writable);
        Assert.Equal(2, r.Kernel.Mem[p.PeekPte(0x101000).Pfn].MapCount);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void MprotectReadOnlyThenWriteIsRefused(string era)
    {
        var r = Run(era, """
            - record: { name: rec }
            - mprotect: { addr: 0x100000, len: 8K, prot: r }
            - write: { addr: 0x100000, value: 0x99, expect: sigsegv }
            - expect-value: { addr: 0x100000, value: 0x10 }
            """);
        var p = r.World.Processes["p"];
        Assert.False(p.PeekPte(0x100000).Writable);
        Assert.Equal(Prot.Read, p.FindVma(0x100000)!.Prot);
        var rec = (MmuSim.Devices.RecordingSecondary)r.World.Objects["rec"];
        Assert.Contains(rec.Calls, c => c.Kind == MmuSim.Devices.CallbackKind.InvalidateRangeStart);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void MremapMovesTheContents(string era)
    {
        var r = Run(era, """
            - mremap: { addr: 0x100000, len: 8K, new_addr: 0x400000 }
            - expect-value: { addr: 0x400000, value: 0x10 }
            - expect-value: { addr: 0x401000, value: 0x20 }
            """);
        var p = r.World.Processes["p"];
        Assert.Null(p.FindVma(0x100000));
        Assert.True(p.PeekPte(0x400000).Present);
    }

    /// <summary>A range mremap cannot move (crossing the VMA's end, overlapping its target) is a one-line exit-2 error, not a model exception (found by the loader fuzz).</summary>
    [Theory]
    [InlineData("{ addr: 0x100000, len: 32K, new_addr: 0x400000 }", "len", "not inside one VMA")]
    [InlineData("{ addr: 0x100000, len: 8K, new_addr: 0x101000 }", "new_addr", "overlaps the old range")]
    public void MremapOfABadRangeIsBadInput(string args, string field, string message) =>
        MmuSim.Tests.Cli.CliRunner.AssertBadInput(MmuSim.Tests.Cli.CliRunner.MinimalScenario.Replace("- read: { addr: 0x100000 }", "- mremap: " + args), 10, "mremap." + field, message);

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void ReclaimSwapsOutAndTheNextReadSwapsIn(string era)
    {
        var r = Run(era, """
            - reclaim: { addr: 0x100000 }
            - expect-value: { addr: 0x100000, value: 0x10 }
            """);
        Assert.Equal(1, r.Kernel.Stats[Stat.PagesReclaimed]);
        Assert.True(r.World.Processes["p"].PeekPte(0x100000).Present);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void AgeReportsAnAccessOnce(string era)
    {
        var r = Run(era, """
            - read: { addr: 0x100000 }
            - age: { addr: 0x100000, as: first }
            - age: { addr: 0x100000, as: second }
            """);
        Assert.Equal(1UL, r.Observed["first"]);
        Assert.Equal(0UL, r.Observed["second"]);
        Assert.False(r.World.Processes["p"].PeekPte(0x100000).Accessed);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void WritebackCleansTheDirtyPte(string era)
    {
        var r = Run(era, """
            - write: { addr: 0x100000, value: 0x15 }
            - writeback: { addr: 0x100000 }
            """);
        var pte = r.World.Processes["p"].PeekPte(0x100000);
        Assert.False(pte.Dirty);
        Assert.False(pte.Writable);
        Assert.Equal(1, r.Kernel.Stats[Stat.PagesCleaned]);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void MigrateMovesThePageKeepingItsContents(string era)
    {
        var before = Run(era, "- read: { addr: 0x101000 }").World.Processes["p"].PeekPte(0x101000).Pfn;
        var r = Run(era, """
            - migrate: { addr: 0x101000 }
            - expect-value: { addr: 0x101000, value: 0x20 }
            """);
        Assert.Equal(1, r.Kernel.Stats[Stat.PagesMigrated]);
        Assert.NotEqual(before, r.World.Processes["p"].PeekPte(0x101000).Pfn);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void UprobeReplacesThePage(string era)
    {
        var r = Run(era, """
            - uprobe: { addr: 0x100000, value: 0xcc }
            - expect-value: { addr: 0x100000, value: 0xcc }
            - expect-value: { addr: 0x101000, value: 0x20 }
            """);
        Assert.False(r.World.Processes["p"].PeekPte(0x100000).Writable);
    }

    [Theory]
    [InlineData("4.10")]
    [InlineData("6.13")]
    public void OomReapUnmapsThePrivateMemory(string era)
    {
        var r = Run(era, "- oom-reap: { process: p }");
        var p = r.World.Processes["p"];
        Assert.True(p.OomReaped);
        Assert.False(p.PeekPte(0x100000).Present);
        Assert.False(p.PeekPte(0x101000).Present);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void MadviseFreeThenReclaimDiscardsCleanPages(string era)
    {
        var r = Run(era, """
            - madvise: { addr: 0x100000, len: 8K, advice: free }
            - reclaim: { addr: 0x100000 }
            - expect-value: { addr: 0x100000, value: 0 }
            - expect-value: { addr: 0x101000, value: 0x20 }
            """);
        Assert.Equal(1, r.Kernel.Stats[Stat.LazyfreeDiscarded]);
    }

    [Fact]
    public void ForkChildNameMustBeNew()
    {
        var yaml = """
            name: t
            processes:
              - name: p
                vmas: [ { start: 0x100000, len: 4K } ]
              - name: q
            threads:
              - name: a
                process: p
                ops:
                  - fork: { child: q }
            """;
        var s = ScenarioLoader.Parse(yaml, "t.yaml");
        var e = Assert.Throws<ScenarioException>(() => ScenarioRunner.Run(s, EraTable.Default, null));
        Assert.Equal((10, "fork.child"), (e.Line, e.Field));
    }
}
