using System.Xml.Linq;
using MmuSim.Eras;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Cli;

/// <summary><c>mmusim selftests</c>: the ported suites as one run, with TAP and JUnit output for a kernel CI.</summary>
public class SelftestsCommandTests
{
    const string Passing = """
        name: suite/pass
        description: writes 7 and reads it back. Second sentence.
        processes:
          - name: p
            vmas:
              - { start: 0x100000, len: 16K, prot: rw }
        threads:
          - name: cpu0
            process: p
            ops:
              - write: { addr: 0x100000, value: 7 }
              - expect-value: { addr: 0x100000, value: 7 }
        expect:
          ..4.19: n/a
          default: pass
        """;

    static string SuiteDir()
    {
        var dir = Directory.CreateTempSubdirectory("mmusim-suite-").FullName;
        File.WriteAllText(Path.Combine(dir, "a-pass.yaml"), Passing);
        File.WriteAllText(Path.Combine(dir, "b-fail.yaml"), Passing.Replace("suite/pass", "suite/fail").Replace("value: 7 }\nexpect", "value: 8 }\nexpect"));
        return dir;
    }

    /// <summary>Every ported selftest meets its declared outcome in 6.13 and in the oldest era it applies to.</summary>
    [Fact]
    public void EveryPortedSelftest_MeetsItsDeclarationIn613AndItsOldestEra()
    {
        var names = ScenarioLoader.BuiltInNames.Where(n => n.StartsWith("selftests/", StringComparison.Ordinal)).ToList();
        var r = SelftestSuite.Run(names.Select(n => ScenarioLoader.LoadBuiltIn(n)).ToList(), null, Environment.ProcessorCount);
        var bad = r.Cases.Where(c => c.Status is SelftestStatus.Fail or SelftestStatus.Error).Select(c => $"{c.Scenario} @ {c.Era}: {c.Outcome}").ToList();
        Assert.True(bad.Count == 0, string.Join("\n", bad));
        Assert.True(r.Count(SelftestStatus.Pass) >= names.Count, "each port passes at least in 6.13 or its oldest era");
        foreach (var n in names) Assert.Contains(r.Cases, c => c.Scenario == n && c.Era == "6.13");
    }

    [Fact]
    public void DefaultEras_Are613AndTheOldestApplicable()
    {
        var s = ScenarioLoader.Parse(Passing, "x.yaml");
        Assert.Equal(["5.5", "6.13"], SelftestSuite.DefaultEras(s).Select(e => e.Name));
        var madv = ScenarioLoader.LoadBuiltIn("selftests/madv_populate/softdirty"); // ..5.13: n/a
        Assert.Equal(["6.1", "6.13"], SelftestSuite.DefaultEras(madv).Select(e => e.Name));
    }

    [Fact]
    public void Tap_ReportsEachCaseAndEra_AndExitsOneOnAFailure()
    {
        var (code, o, err) = CliRunner.Run("selftests", SuiteDir(), "--format", "tap", "--eras", "4.19,6.13");
        Assert.Equal(1, code);
        Assert.Equal("", err);
        var lines = o.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("TAP version 13", lines[0]);
        Assert.Equal("1..4", lines[1]);
        Assert.Equal("ok 1 - suite/pass @ 4.19 # SKIP n/a in this era", lines[2]);
        Assert.Equal("ok 2 - suite/pass @ 6.13", lines[3]);
        Assert.Equal("ok 3 - suite/fail @ 4.19 # SKIP n/a in this era", lines[4]);
        Assert.Equal("not ok 4 - suite/fail @ 6.13", lines[5]);
        Assert.Equal("  ---", lines[6]);
        Assert.Equal("  expected: \"pass\"", lines[7]);
        Assert.StartsWith("  got: \"unexpected-value", lines[8]);
    }

    [Fact]
    public void JUnit_HasOneSuitePerFolderAndAFailureElement()
    {
        var (code, o, _) = CliRunner.Run("selftests", SuiteDir(), "--format", "junit");
        Assert.Equal(1, code);
        var root = XDocument.Parse(o).Root!;
        Assert.Equal("testsuites", root.Name.LocalName);
        Assert.Equal("4", root.Attribute("tests")!.Value);   // 5.5 and 6.13 for each
        Assert.Equal("2", root.Attribute("failures")!.Value); // suite/fail in both eras
        Assert.Equal("0", root.Attribute("skipped")!.Value);
        var suite = Assert.Single(root.Elements("testsuite"));
        Assert.Equal("suite", suite.Attribute("name")!.Value);
        var failed = suite.Elements("testcase").Where(t => t.Element("failure") != null).ToList();
        Assert.All(failed, t => Assert.Equal("suite/fail", t.Attribute("classname")!.Value));
        Assert.Equal(["5.5", "6.13"], failed.Select(t => t.Attribute("name")!.Value));
        Assert.All(suite.Elements("testcase").Where(t => t.Attribute("classname")!.Value == "suite/pass"), t => Assert.Empty(t.Elements()));
        Assert.Contains("expected pass, got unexpected-value", failed[1].Element("failure")!.Attribute("message")!.Value);
    }

    [Fact]
    public void Text_OfABuiltInPrefix_SummarisesPerUpstreamFile()
    {
        var (code, o, _) = CliRunner.Run("selftests", "selftests/madv_populate");
        Assert.Equal(0, code);
        int n = ScenarioLoader.BuiltInNames.Count(x => x.StartsWith("selftests/madv_populate/", StringComparison.Ordinal));
        Assert.Contains($"selftests/madv_populate/: {2 * n} cases, {2 * n} passed, 0 failed, 0 skipped (n/a), 0 model errors", o);
        Assert.Contains("PASS  selftests/madv_populate/softdirty @ 6.1\n", o);
    }

    [Fact]
    public void AMutationThatBreaksAPort_FailsTheSuite()
    {
        // The dirty-log ports catch a harvest that does not write-protect (DirtyLogTestPortTests); the suite must too.
        var (code, o, _) = CliRunner.Run("selftests", "selftests/kvm/dirty_log_test/dirty-log", "--eras", "6.18", "--mutate", "kvm-dirty-log-no-reprotect", "--format", "tap");
        Assert.Equal(1, code);
        Assert.Contains("not ok 1 - selftests/kvm/dirty_log_test/dirty-log @ 6.18", o);
    }

    [Theory]
    [InlineData(new[] { "selftests", "selftests/nope" }, "mmusim: suite: no built-in scenario starts with 'selftests/nope'")]
    [InlineData(new[] { "selftests", "--eras", "9.9" }, "mmusim: --eras: unknown era '9.9'")]
    [InlineData(new[] { "selftests", "--format", "xml" }, "mmusim: --format: unknown format 'xml'")]
    [InlineData(new[] { "selftests", "-j", "0" }, "mmusim: --jobs: must be at least 1")]
    public void BadArguments_AreOneLineExitTwo(string[] args, string start)
    {
        var (code, _, err) = CliRunner.Run(args);
        Assert.Equal(2, code);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith(start, lines[0]);
    }
}
