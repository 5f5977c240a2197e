using MmuSim.Eras;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.Scenarios;

/// <summary>migrate never does nothing silently: its outcome is asserted (expect), and a KSM folio is a one-line error.</summary>
public class MigrateOutcomeTests
{
    [Fact]
    public void KsmFolio_IsAOneLineErrorNamingFileLine()
    {
        var path = CliRunner.WriteScenario("""
            name: t
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 8K, prot: rw, contents: { value: 0xAB } }
            setup:
              - madvise: { process: p, addr: 0x100000, len: 8K, advice: mergeable }
            threads:
              - name: cpu0
                process: p
                ops:
                  - ksm.scan: { full_scans: 2 }
                  - ksm.expect: { counter: pages_sharing, value: 1 }
                  - migrate: { addr: 0x100000 }
            """);
        var (code, _, err) = CliRunner.Run("run", path);
        Assert.Equal(2, code);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith($"{path}:14: migrate.addr: 0x100000 maps a KSM folio", lines[0]);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void Outcomes_AreAsserted(string era)
    {
        var s = ScenarioLoader.Parse("""
            name: m
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 8K, prot: rw, contents: [1] }
            threads:
              - name: cpu0
                process: p
                ops:
                  - migrate: { addr: 0x100000 }
                  - migrate: { addr: 0x101000, expect: failed }
                  - migrate: { addr: 0x101000 }
            """, "m.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.Equal("m.yaml:12: migrate at 0x101000 did not migrate: no folio is mapped there, expected migrated", r.Violation!.Message);
        Assert.Equal(1UL, r.Kernel.Mem[r.World.Processes["p"].PeekPte(0x100000).Pfn].Contents); // the first one moved
    }

    [Fact]
    public void BadExpect_ExitsTwo()
    {
        var path = CliRunner.WriteScenario("""
            name: t
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 8K, prot: rw }
            threads:
              - name: cpu0
                process: p
                ops:
                  - migrate: { addr: 0x100000, expect: moved }
            """);
        var (code, _, err) = CliRunner.Run("run", path);
        Assert.Equal(2, code);
        Assert.StartsWith($"{path}:10: migrate.expect: 'moved' is not a migration outcome", err.Trim());
    }
}
