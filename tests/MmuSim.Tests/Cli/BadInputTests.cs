using System.Text.RegularExpressions;
using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Cli;

/// <summary>Every kind of bad input: exit code 2 and exactly one stderr line naming file:line and the field.</summary>
public class BadInputTests
{
    /// <summary>Replace line <paramref name="line"/> (1-based) of <see cref="MinimalScenario"/>.</summary>
    static string With(int line, string text)
    {
        var lines = MinimalScenario.Split('\n').ToList();
        lines[line - 1] = text;
        return string.Join("\n", lines);
    }

    [Fact]
    public void GoodScenarioRuns() => Assert.Equal(0, Run("run", WriteScenario(MinimalScenario)).Code);

    [Fact]
    public void MalformedYaml()
    {
        var path = WriteScenario(With(10, "      - read: { addr: 0x100000"));
        var (code, _, err) = Run("run", path);
        Assert.Equal(2, code);
        Assert.Matches(new Regex($"^{Regex.Escape(path)}:1[01]: yaml: malformed YAML: .+\n?$"), err);
    }

    [Fact]
    public void BadIndentationIsMalformed()
    {
        var path = WriteScenario(With(3, " - name: p\n   vmas: x: y"));
        var (code, _, err) = Run("explore", path, "-n", "1");
        Assert.Equal(2, code);
        Assert.Matches(new Regex($"^{Regex.Escape(path)}:\\d+: yaml: malformed YAML"), err);
    }

    [Fact]
    public void UnknownOp() => AssertBadInput(With(10, "      - frobnicate: { addr: 0x100000 }"), 10, "op", "unknown op 'frobnicate'");

    [Fact]
    public void UnknownOpSuggestsNearNames() =>
        AssertBadInput(With(10, "      - munmapp: { addr: 0x100000, len: 4K }"), 10, "op", "did you mean munmap");

    [Fact]
    public void UnknownEra() => AssertBadInput("era: 9.9\n" + MinimalScenario, 1, "era", "unknown era '9.9' (known: 2.6.27,");

    [Fact]
    public void UnknownEraInExpectation() =>
        AssertBadInput(MinimalScenario + "\nexpect:\n  default: pass\n  \"3.6..4.11\": stale-translation", 13, "expect", "unknown era '4.11'");

    [Fact]
    public void AddressOutsideEveryVma() =>
        AssertBadInput(With(10, "      - read: { addr: 0x900000 }"), 10, "read.addr", "0x900000 is outside every VMA of process 'p'");

    [Fact]
    public void AddressOutsideTheUserAddressSpace() =>
        AssertBadInput(With(10, "      - write: { addr: 0x900000000000, value: 1 }"), 10, "write.addr", "outside the 47-bit user address space");

    [Fact]
    public void UnalignedAddress() =>
        AssertBadInput(With(10, "      - read: { addr: 0x100010 }"), 10, "read.addr", "0x100010 is not page aligned");

    [Fact]
    public void UnalignedVmaStart() =>
        AssertBadInput(With(5, "      - { start: 0x100800, len: 16K, prot: rw }"), 5, "processes[p].vmas[0].start", "not page aligned");

    [Fact]
    public void UnknownOpField() =>
        AssertBadInput(With(10, "      - read: { addr: 0x100000, colour: red }"), 10, "read.colour", "unknown field");

    [Fact]
    public void UnknownTopLevelField() => AssertBadInput(MinimalScenario + "\ncolour: red", 11, "colour", "unknown field");

    [Fact]
    public void MissingOpField() => AssertBadInput(With(10, "      - write: { addr: 0x100000 }"), 10, "write.value", "required field is missing");

    [Fact]
    public void MissingName() => AssertBadInput(With(1, "description: no name"), 1, "name", "required field is missing");

    [Fact]
    public void BadNumber() => AssertBadInput(With(10, "      - write: { addr: 0x100000, value: 12abc }"), 10, "write.value", "'12abc' is not a number");

    [Fact]
    public void UnknownProcess() =>
        AssertBadInput(With(10, "      - read: { process: q, addr: 0x100000 }"), 10, "read.process", "unknown process 'q'");

    [Fact]
    public void VmaOverlap() =>
        AssertBadInput(With(5, "      - { start: 0x100000, len: 16K }\n      - { start: 0x102000, len: 8K }"), 6, "processes[p].vmas[1]", "overlaps");

    [Fact]
    public void UnknownInvariantInExpect() => AssertBadInput(MinimalScenario + "\nexpect: stale", 11, "expect", "'stale' is not an outcome");

    [Fact]
    public void UnknownMutationInScenario() => AssertBadInput(MinimalScenario + "\nmutations: [no-such]", 11, "mutations", "unknown mutation 'no-such'");

    [Fact]
    public void UnknownCostKind() => AssertBadInput(MinimalScenario + "\ncosts: { warp: 5 }", 11, "costs.warp", "unknown cost kind");

    [Fact]
    public void OverlappingEraSets() =>
        AssertBadInput(MinimalScenario + "\nexpect:\n  4.13+: pass\n  \"6.10\": stale-translation", 13, "expect", "both contain 6.10");

    [Fact]
    public void UnknownMadviseAdvice() =>
        AssertBadInput(With(10, "      - madvise: { addr: 0x100000, len: 4K, advice: sideways }"), 10, "madvise.advice", "advice 'sideways'");

    [Fact]
    public void RunTimeOpErrorIsReportedLikeALoadError()
    {
        // Only known at run time: the mmap overlaps a VMA. The op raises file:line: field, the CLI exits 2.
        var path = WriteScenario(With(10, "      - mmap: { addr: 0x102000, len: 8K }"));
        foreach (var cmd in new[] { "run", "explore" })
        {
            var (code, _, err) = Run(cmd, path);
            Assert.Equal(2, code);
            // explore may print its settings line first; the error is one line, last, with no stack trace.
            var last = err.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
            Assert.StartsWith($"{path}:10: mmap.addr: mmap [0x102000, 0x104000) overlaps the VMA", last);
            Assert.DoesNotContain("   at ", err);
        }
    }

    [Fact]
    public void UnknownEraOnCommandLine()
    {
        var (code, _, err) = Run("run", WriteScenario(MinimalScenario), "--era", "1.0");
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: --era: unknown era '1.0' (known: 2.6.27, 2.6.32,", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void UnknownMutationOnCommandLine()
    {
        var (code, _, err) = Run("explore", WriteScenario(MinimalScenario), "--mutate", "kvm-no-such-thing", "-n", "1");
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: --mutate: unknown mutation 'kvm-no-such-thing' (known: skip-tlb-flush,", err);
    }

    [Fact]
    public void MissingScenario()
    {
        var (code, _, err) = Run("run", "no-such-scenario");
        Assert.Equal(2, code);
        Assert.Equal("mmusim: scenario: no file or built-in scenario named 'no-such-scenario' (see mmusim list)", err.Trim());
        Assert.Equal(2, Run("run", "/nonexistent/x.yaml").Code);
    }

    [Theory]
    [InlineData("run")]
    [InlineData("frobnicate")]
    [InlineData("explore", "x", "--iterations", "many")]
    [InlineData("run", "cow-zero-page", "--seed", "-3")]
    public void CommandLineParseErrorsExit2(params string[] args)
    {
        var (code, _, err) = Run(args);
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: ", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
