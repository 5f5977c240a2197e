using MmuSim.Eras;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.Scenarios;

/// <summary>migrate never does nothing silently: its outcome is asserted (expect), for KSM folios per era too.</summary>
public class MigrateOutcomeTests
{
    /// <summary>A KSM folio migrates from 3.9 (ksm_migrate_folio) and is refused before, as NUMA migration skipped PageKsm.</summary>
    [Theory]
    [InlineData("3.7", "failed")]
    [InlineData("3.10", "migrated")]
    [InlineData("6.13", "migrated")]
    public void KsmFolio_MigratesWhereTheEraMovesKsmFolios(string era, string outcome)
    {
        var s = ScenarioLoader.Parse($$"""
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
                  - migrate: { addr: 0x100000, expect: {{outcome}} }
                  - expect-value: { addr: 0x101000, value: 0xAB }
            """, "t.yaml");
        var r = ScenarioRunner.Run(s, EraTable.Get(era), null);
        Assert.Null(r.Violation);
        var mm = r.Kernel.Mms[0];
        Assert.Equal(mm.PeekPte(0x100000).Pfn, mm.PeekPte(0x101000).Pfn); // still one KSM page for both, moved or not
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
