using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Scenarios;

/// <summary>expect-pagemap: the /proc/PID/pagemap bits (fs/proc/task_mmu.c pte_to_pagemap_entry) and soft-dirty tracking.</summary>
public class PagemapTests
{
    static RunResult Run(string era, string ops)
    {
        var yaml = $$"""
            name: pagemap-test
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 16K, prot: rw }
                  - { start: 0x200000, len: 4K, prot: rw, flags: shared }
            threads:
              - name: cpu0
                process: p
                ops:
            {{string.Join("\n", ops.Trim().Split('\n').Select(l => "      " + l.Trim()))}}
            """;
        return ScenarioRunner.Run(ScenarioLoader.Parse(yaml, "pm.yaml"), EraTable.Get(era), null);
    }

    [Theory]
    [InlineData("4.13")]
    [InlineData("5.13")]
    [InlineData("6.13")]
    // A new VMA is VM_SOFTDIRTY (mmap_region): every page of it, the zero page and holes included, reads soft-dirty
    // until clear_refs 4 clears the VMA flag with the PTE bits.
    public void Bits_FollowFaultsForkAndClearRefs(string era)
    {
        var r = Run(era, """
            - write: { addr: 0x100000, value: 1 }
            - read: { addr: 0x101000 }
            - write: { addr: 0x200000, value: 2 }
            - expect-pagemap: { addr: 0x100000, present: true, swapped: false, exclusive: true, soft_dirty: true, file: false }
            - expect-pagemap: { addr: 0x101000, present: true, exclusive: false, soft_dirty: true, file: false }
            - expect-pagemap: { addr: 0x102000, present: false, swapped: false, soft_dirty: true }
            - expect-pagemap: { addr: 0x200000, present: true, exclusive: true, file: true }
            - clear-refs: {}
            - expect-pagemap: { addr: 0x100000, present: true, soft_dirty: false }
            - expect-pagemap: { addr: 0x101000, present: true, soft_dirty: false }
            - expect-pagemap: { addr: 0x102000, present: false, soft_dirty: false }
            - write: { addr: 0x100000, value: 3 }
            - expect-pagemap: { addr: 0x100000, present: true, soft_dirty: true, exclusive: true }
            - fork: { child: c }
            - expect-pagemap: { addr: 0x100000, exclusive: false }
            - reclaim: { addr: 0x103000 }
            """);
        Assert.True(r.Violation == null, r.Violation?.ToString());
        var p = r.World.Processes["p"];
        ulong e = TaskMmu.PagemapEntry(p, 0x100000);
        Assert.Equal((ulong)p.PeekPte(0x100000).Pfn, e & ((1UL << 55) - 1));
        Assert.Equal(2, r.Kernel.Mem[p.PeekPte(0x100000).Pfn].MapCount);
    }

    [Fact]
    public void Mismatch_NamesFileLineAndBit()
    {
        var r = Run("6.13", """
            - write: { addr: 0x100000, value: 1 }
            - expect-pagemap: { addr: 0x100000, swapped: true }
            """);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.Contains("pm.yaml:12: pagemap of", r.Violation!.Message);
        Assert.Contains("swapped is False, expected True", r.Violation.Message);
    }

    [Fact]
    public void BadBit_IsAFileLineError()
    {
        var ex = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse("""
            name: t
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 4K, prot: rw }
            threads:
              - name: cpu0
                process: p
                ops:
                  - expect-pagemap: { addr: 0x100000, present: maybe }
            """, "b.yaml"));
        Assert.Equal("b.yaml:10: expect-pagemap.present: 'maybe' is not a boolean", ex.Message);
    }
}
