using MmuSim.Scenarios;
using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Scenarios;

/// <summary>
/// The inputs that crashed or exhausted the loader before its limits (issue 14, item 6): each is now exit 2 with one
/// stderr line <c>file:line: field: message</c>.
/// </summary>
public class LoaderLimitTests
{
    [Fact]
    public void DeepFlowNestingIsRejectedBeforeTheRecursiveParser() =>
        AssertBadInput(MinimalScenario + "\ncosts: " + new string('[', 200_000) + new string(']', 200_000) + "\n", 11, "yaml",
            $"nesting deeper than {ScenarioLimits.MaxNesting}");

    [Fact]
    public void DeepBlockNestingIsRejected()
    {
        var deep = string.Concat(Enumerable.Range(0, 2000).Select(i => "\n" + new string(' ', 2 * i + 2) + "-"));
        var path = WriteScenario(MinimalScenario + "\ncosts:" + deep + " x\n");
        var (code, _, err) = Run("run", path);
        Assert.Equal(2, code);
        Assert.Matches($"^{System.Text.RegularExpressions.Regex.Escape(path)}:\\d+: yaml: nesting deeper than", err);
    }

    [Fact]
    public void UnclosedFlowMappingIsMalformedYaml() =>
        AssertBadInput(MinimalScenario.Replace("name: t", "name: {a: 1, b: 2"), 1, "yaml", "malformed YAML");

    [Fact]
    public void CostOfTwoToTheSixtyFourMinusOneIsOutOfRange() =>
        AssertBadInput(MinimalScenario + "\ncosts: { fault: 18446744073709551615 }\n", 11, "costs.fault", "out of range");

    [Fact]
    public void MaxStepsPastTheLimitIsOutOfRange() =>
        AssertBadInput(MinimalScenario + "\nmax_steps: 18446744073709551615\n", 11, "max_steps", "out of range");

    [Fact]
    public void SuffixOverflowIsNotANumber() =>
        AssertBadInput(MinimalScenario.Replace("len: 16K", "len: 99999999999999G"), 5, "processes[p].vmas[0].len", "is not a number");

    [Fact]
    public void HugeVmaWithContentsIsBoundedNotFilledPerPage() =>
        AssertBadInput(MinimalScenario.Replace("len: 16K, prot: rw", "len: 0x7ffe00000000, prot: rw, contents: 5"), 5,
            "processes[p].vmas[0].contents", $"at most {ScenarioLimits.MaxContentPages} pages");

    [Fact]
    public void HugeVmaWithAFewPagesOfContentsLoads()
    {
        var s = ScenarioLoader.Parse(MinimalScenario.Replace("len: 16K, prot: rw", "len: 0x7ffe00000000, prot: rw, contents: { value: 5, pages: 2 }"), "t.yaml");
        Assert.Equal(2, s.Processes[0].Vmas[0].Contents.Count);
    }

    static string Vm(string slot) => MinimalScenario.Replace("vmas:", "vmas:\n      - { start: 0x200000, len: 8K, prot: rw }") +
        "\nsetup:\n  - vm.create: { process: p, name: vm0 }\n  - memslot.add: { vm: vm0, " + slot + " }\n";

    [Fact]
    public void MemslotWithinTheLimitsLoads() =>
        Assert.Equal(0, Run("run", WriteScenario(Vm("gfn: 0x100, pages: 2, hva: 0x200000"))).Code);

    [Fact]
    public void MemslotWithHugePagesIsRejectedAtLoad() =>
        AssertBadInput(Vm("gfn: 0x100, pages: 0xffffffffffff, hva: 0x200000"), 14, "memslot.add.pages", "out of range");

    [Fact]
    public void MemslotWithHugeGfnIsRejectedAtLoad() =>
        AssertBadInput(Vm("gfn: 0xffffffffffffffff, pages: 2, hva: 0x200000"), 14, "memslot.add.gfn", "out of range");

    [Fact]
    public void MemslotPastTheGfnLimitIsRejectedAtLoad() =>
        AssertBadInput(Vm($"gfn: 0x{ScenarioLimits.GfnLimit - 1:x}, pages: 2, hva: 0x200000"), 14, "memslot.add.pages", "guest frame limit");

    [Fact]
    public void ThousandsOfThreadsAreOneError()
    {
        var threads = string.Concat(Enumerable.Range(0, 5000).Select(i => $"  - {{ name: t{i}, process: p, ops: [ {{ read: {{ addr: 0x100000 }} }} ] }}\n"));
        var yaml = MinimalScenario[..MinimalScenario.IndexOf("threads:", StringComparison.Ordinal)] + "threads:\n" + threads;
        AssertBadInput(yaml, 7, "threads", "at most 63 threads");
    }

    [Fact]
    public void VeryLongValueIsRejected() =>
        AssertBadInput(MinimalScenario.Replace("name: t", "name: " + new string('x', ScenarioLimits.MaxValueLength + 1)), 1, "yaml", "longer than the limit");

    [Fact]
    public void VeryLongUnknownOpNameIsOneLine() =>
        AssertBadInput(MinimalScenario.Replace("- read:", "- " + new string('r', 1000) + ":"), 10, "op", "unknown op");

    [Fact]
    public void UnreadableScenarioFileIsBadInput()
    {
        var (code, _, err) = Run("run", "/proc/self/mem");
        Assert.Equal(2, code);
        Assert.StartsWith("/proc/self/mem:0: file: ", err);
    }
}
