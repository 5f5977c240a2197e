using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Sched;
using MmuSim.Tests.Cli;
using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Scenarios;

/// <summary>read/write `expect:` (an observable SIGSEGV), PROT_NONE through YAML, and expect-observed naming file:line.</summary>
public class AccessOutcomeTests
{
    /// <summary>p has 8 KiB rw at 0x100000 (0x10, 0x20) and 4 KiB r at 0x200000. Ops start at line 11.</summary>
    static RunResult Run(string era, string ops)
    {
        var yaml = $$"""
            name: access-test
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 8K, prot: rw, contents: [0x10, 0x20] }
                  - { start: 0x200000, len: 4K, prot: r }
            threads:
              - name: cpu0
                process: p
                ops:
            {{string.Join("\n", ops.Trim().Split('\n').Select(l => "      " + l.Trim()))}}
            """;
        return ScenarioRunner.Run(ScenarioLoader.Parse(yaml, "access.yaml"), EraTable.Get(era), null);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("4.13")]
    [InlineData("6.13")]
    public void ExpectedSigsegvs_Pass(string era)
    {
        var r = Run(era, """
            - write: { addr: 0x200000, value: 1, expect: sigsegv }
            - write: { addr: 0x300000, value: 1, expect: sigsegv }
            - read: { addr: 0x300000, expect: sigsegv }
            - read: { addr: 0x200000, as: ro }
            - write: { addr: 0x100000, value: 0x11, expect: ok }
            """);
        Assert.True(r.Violation == null, r.Violation?.ToString());
        var p = r.World.Processes["p"];
        var ro = p.PeekPte(0x200000);
        Assert.True(ro.Present && !ro.Writable && ro.Pfn == PhysMem.ZeroPfn); // the read-only write never got a page
        Assert.True(p.PeekPte(0x300000).IsNone);
        Assert.Equal(0UL, r.World.Observed["ro"]);
    }

    [Theory]
    [InlineData("2.6.32")]
    [InlineData("6.13")]
    public void UnexpectedSigsegv_IsAViolationNamingFileLine(string era)
    {
        var r = Run(era, """
            - read: { addr: 0x100000 }
            - write: { addr: 0x200000, value: 1 }
            """);
        Assert.NotNull(r.Violation);
        Assert.Equal(ScenarioInvariants.UnexpectedFault, r.Violation!.Invariant);
        Assert.StartsWith("access.yaml:12: write by mm1(p) at 0x200000 ended SIGSEGV, expected ok", r.Violation.Message);
    }

    [Fact]
    public void ExpectedSigsegvThatSucceeds_IsAViolation()
    {
        var r = Run("6.13", "- write: { addr: 0x100000, value: 1, expect: sigsegv }");
        Assert.Equal(ScenarioInvariants.UnexpectedFault, r.Violation?.Invariant);
        Assert.Contains("access.yaml:11: write by mm1(p) at 0x100000 ended ok, expected SIGSEGV", r.Violation!.Message);
    }

    [Theory]
    [InlineData("2.6.32", 2)]
    [InlineData("4.13", 3)]
    [InlineData("6.13", 2)]
    public void ProtNone_ThroughYaml_FaultsAndComesBack(string era, int calls)
    {
        // Before PROT_NONE was modelled, this mprotect aborted the run as a model error (exit 3).
        var r = Run(era, """
            - record: { name: rec }
            - mprotect: { addr: 0x100000, len: 8K, prot: none }
            - read: { addr: 0x100000, expect: sigsegv }
            - write: { addr: 0x101000, value: 5, expect: sigsegv }
            - mprotect: { addr: 0x100000, len: 8K, prot: rw }
            - expect-value: { addr: 0x100000, value: 0x10 }
            - write: { addr: 0x101000, value: 5 }
            """);
        Assert.True(r.Violation == null, r.Violation?.ToString());
        Assert.Null(r.Kernel.S.ModelError);
        var p = r.World.Processes["p"];
        var pte = p.PeekPte(0x101000);
        Assert.True(pte.Accessible && pte.Writable && pte.Dirty);
        Assert.Equal(5UL, r.Kernel.Mem[pte.Pfn].Contents);
        Assert.Equal(1, r.Kernel.Mem[pte.Pfn].MapCount);
        var rec = (MmuSim.Devices.RecordingSecondary)r.World.Objects["rec"];
        Assert.Equal(2 * calls, rec.Calls.Count); // one PROTECTION_VMA bracket per mprotect
    }

    [Fact]
    public void ProtNoneScenario_ExitsZeroFromTheCli()
    {
        var path = WriteScenario("""
            name: t
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 16K, prot: rw, contents: [1] }
            threads:
              - name: cpu0
                process: p
                ops:
                  - mprotect: { addr: 0x100000, len: 16K, prot: none }
                  - read: { addr: 0x100000, expect: sigsegv }
            """);
        var (code, _, err) = CliRunner.Run("run", path);
        Assert.True(code == 0, err);
    }

    [Fact]
    public void BadExpect_ExitsTwoNamingTheField() =>
        AssertBadInput(MinimalScenario.Replace("- read: { addr: 0x100000 }", "- write: { addr: 0x100000, value: 1, expect: segv }"),
            10, "write.expect", "'segv' is not an access outcome");

    [Fact]
    public void WriteOnlyProt_ExitsTwo() =>
        AssertBadInput(MinimalScenario.Replace("- read: { addr: 0x100000 }", "- mprotect: { addr: 0x100000, len: 16K, prot: w }"),
            10, "mprotect.prot", "'w' is not a protection (r, rw, rwx, none)");

    [Fact]
    public void ExpectObservedFailure_NamesFileLine()
    {
        var r = Run("6.13", """
            - read: { addr: 0x100000, as: v }
            - expect-observed: { label: v, value: 0x11 }
            """);
        Assert.Equal(ScenarioInvariants.UnexpectedValue, r.Violation?.Invariant);
        Assert.StartsWith("access.yaml:12: expect-observed: v is 16, expected 17", r.Violation!.Message);
    }
}
