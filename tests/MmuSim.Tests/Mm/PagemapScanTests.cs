using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Mm;

/// <summary>The PAGEMAP_SCAN ioctl (fs/proc/task_mmu.c do_pagemap_scan, 6.7+): its results and its notifier bracket.</summary>
public class PagemapScanTests
{
    static RunResult Run(string ops, string era)
    {
        var yaml = $$"""
            name: pagemap-scan
            processes:
              - name: p
                vmas:
                  - { start: 0x10000, len: 16K, prot: rw }
            setup:
              - write: { process: p, addr: 0x10000, value: 1 }
              - write: { process: p, addr: 0x12000, value: 2 }
            threads:
              - name: cpu0
                process: p
                ops:
            {{ops}}
            """;
        return ScenarioRunner.Run(ScenarioLoader.Parse(yaml, "pagemap-scan.yaml"), EraTable.Get(era), null);
    }

    [Theory]
    [InlineData("6.7")]
    [InlineData("6.18")]
    public void CountsThePresentPages_WithoutANotifierBracket(string era)
    {
        var r = Run("      - pagemap.scan: { process: p, addr: 0x10000, len: 16K, present: 2 }\n" +
                    "      - pagemap.scan: { process: p, addr: 0x11000, len: 8K, present: 1 }\n", era);
        Assert.Null(r.Violation);
        Assert.Equal(0, r.Kernel.Stats[Stat.NotifierStarts]);
    }

    [Fact]
    public void AWrongCountIsAnUnexpectedValue()
    {
        var r = Run("      - pagemap.scan: { process: p, addr: 0x10000, len: 16K, present: 3 }", "6.13");
        Assert.Equal("unexpected-value", r.Violation?.Invariant);
        Assert.Contains("found 2 present pages, expected 3", r.Violation!.Message);
    }

    [Theory]
    [InlineData("6.7")]
    [InlineData("6.8")]
    [InlineData("6.18")]
    public void WpMatchingFiresOneProtectionBracket_AndSkipsAVmaThatIsNotUffdWpAsync(string era)
    {
        var r = Run("      - pagemap.scan: { process: p, addr: 0x10000, len: 16K, wp: true, present: 0 }\n" +
                    "      - pagemap.scan: { process: p, addr: 0x10000, len: 16K, check_wpasync: true, expect: eperm }\n" +
                    "      - write: { addr: 0x10000, value: 3 }", era);
        Assert.Null(r.Violation);
        Assert.Equal(1, r.Kernel.Stats[Stat.NotifierStarts]);
        Assert.Equal(1, r.Kernel.Stats[Stat.NotifierEnds]);
    }

    /// <summary>Before 6.7 /proc/PID/pagemap has no ioctl. (The ioctl's -EINVAL for an unaligned start cannot be written:
    /// the loader's shared address check rejects an unaligned addr as bad input.)</summary>
    [Fact]
    public void NoSuchIoctlBefore6_7()
    {
        Assert.Null(Run("      - pagemap.scan: { process: p, addr: 0x10000, len: 16K, expect: enotty }", "6.6").Violation);
        var r = Run("      - pagemap.scan: { process: p, addr: 0x10000, len: 16K }", "6.6");
        Assert.Equal("unexpected-value", r.Violation?.Invariant);
    }

    [Fact]
    public void BadInputNamesTheField()
    {
        Cli.CliRunner.AssertBadInput(Cli.CliRunner.MinimalScenario.Replace("read: { addr: 0x100000 }",
            "pagemap.scan: { process: p, addr: 0x100000, len: 4K, expect: enope }"), 10, "pagemap.scan.expect", "not an errno");
        Cli.CliRunner.AssertBadInput(Cli.CliRunner.MinimalScenario.Replace("read: { addr: 0x100000 }",
            "pagemap.scan: { process: p, addr: 0x100000, len: 4K, wp: maybe }"), 10, "pagemap.scan.wp", "not a boolean");
    }
}
