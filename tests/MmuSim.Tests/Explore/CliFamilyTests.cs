using MmuSim.Scenarios;

namespace MmuSim.Tests.Explore;

/// <summary><c>mmusim explore --family NAME -P pages -V vcpus</c>, <c>--por</c>, <c>--preemptions unbounded</c>, in process.</summary>
public class CliFamilyTests
{
    static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = MmuSim.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Theory]
    [InlineData("mmusim: --family: unknown family 'nope' (known: race-5a, kvm-fault-vs-invalidate)", "--family", "nope")]
    [InlineData("mmusim: --pages: must be between 1 and 64, got 0", "--family", "race-5a", "-P", "0")]
    [InlineData("mmusim: --pages: must be between 1 and 64, got 65", "--family", "race-5a", "-P", "65")]
    [InlineData("mmusim: --vcpus: must be between 1 and 8, got 9", "--family", "race-5a", "-V", "9")]
    [InlineData("mmusim: --vcpus: must be between 1 and 8, got -1", "--family", "kvm-fault-vs-invalidate", "-V", "-1")]
    [InlineData("mmusim: --pages: is only valid with --family", "kvm-exit", "-P", "2")]
    [InlineData("mmusim: --family: cannot be combined with a scenario ('kvm-exit')", "kvm-exit", "--family", "race-5a")]
    [InlineData("mmusim: explore: missing argument SCENARIO (see mmusim explore --help)")]
    [InlineData("mmusim: --por: 'maybe' is not on or off", "kvm-exit", "--strategy", "dfs", "--por", "maybe")]
    [InlineData("mmusim: --por: is only valid with --strategy dfs", "kvm-exit", "--por", "off")]
    [InlineData("mmusim: --preemptions: 'unbounded' is only valid with --strategy dfs", "kvm-exit", "--strategy", "delay", "--preemptions", "unbounded")]
    [InlineData("mmusim: --preemptions: 'lots' is not a number or 'unbounded'", "kvm-exit", "--strategy", "dfs", "--preemptions", "lots")]
    [InlineData("mmusim: --state-cache: is only valid with --strategy dfs", "kvm-exit", "--state-cache", "on")]
    [InlineData("mmusim: --state-cache: 'yes' is not on or off", "kvm-exit", "--strategy", "dfs", "--state-cache", "yes")]
    [InlineData("mmusim: --state-cache: on cannot be combined with --por on (the cache runs without partial-order reduction)", "kvm-exit", "--strategy", "dfs", "--state-cache", "on", "--por", "on")]
    public void Bad_family_and_dfs_options_are_one_line_exit_2(string message, params string[] rest)
    {
        var (code, stdout, stderr) = Cli(["explore", .. rest]);
        Assert.Equal(2, code);
        Assert.Equal(message, stderr.TrimEnd());
        Assert.Equal("", stdout);
    }

    const string TwoWriters = """
        name: two-writers
        description: two CPUs store to different pages of one VMA
        processes:
          - name: p
            vmas:
              - { start: 0x10000, len: 16K, prot: rw, contents: { value: 1, pages: 4 } }
        threads:
          - name: a
            process: p
            ops:
              - write: { addr: 0x10000, value: 7 }
          - name: b
            process: p
            ops:
              - write: { addr: 0x13000, value: 8 }
        expect: pass
        """;

    [Fact]
    public void Unbounded_dfs_that_completes_prints_verified_with_traces_and_states()
    {
        string dir = Directory.CreateTempSubdirectory("mmusim-family-").FullName;
        try
        {
            string path = Path.Combine(dir, "two-writers.yaml");
            File.WriteAllText(path, TwoWriters);
            var (code, stdout, stderr) = Cli("explore", path, "--strategy", "dfs", "--preemptions", "unbounded", "-n", "1000000");
            Assert.Equal(0, code);
            var m = System.Text.RegularExpressions.Regex.Match(stdout, @"^verified: no violation in any interleaving \((\d+) traces, (\d+) states\)\r?\n$");
            Assert.True(m.Success, stdout);
            Assert.Contains("strategy dfs(unbounded,por)", stderr);
            var (code2, stdout2, _) = Cli("explore", path, "--strategy", "dfs", "--preemptions", "unbounded", "--por", "off", "-n", "1000000");
            Assert.Equal(0, code2);
            var m2 = System.Text.RegularExpressions.Regex.Match(stdout2, @"^verified: no violation in any interleaving \((\d+) schedules, (\d+) states\)\r?\n$");
            Assert.True(m2.Success, stdout2);
            Assert.True(int.Parse(m.Groups[1].Value) <= int.Parse(m2.Groups[1].Value), $"{stdout} vs {stdout2}");
            var (code3, stdout3, stderr3) = Cli("explore", path, "--strategy", "dfs", "--preemptions", "unbounded", "--state-cache", "on", "-n", "1000000");
            Assert.Equal(0, code3);
            Assert.Matches(@"^verified: no violation in any interleaving \(\d+ runs, \d+ distinct states, \d+ ended at a state seen before\)\r?\n$", stdout3);
            Assert.Contains("strategy dfs(unbounded,state-cache)", stderr3);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void A_family_member_finds_race_5a_in_its_buggy_era()
    {
        var (code, stdout, _) = Cli("explore", "--family", "race-5a", "-P", "2", "-V", "2", "--era", "4.10", "--strategy", "dfs",
            "--preemptions", "1", "--no-shrink");
        Assert.Equal(1, code);
        Assert.Contains("violation: lost-write", stdout);
    }

    [Fact]
    public void The_generator_writes_P_pages_and_V_vcpus()
    {
        var s = ScenarioFamily.Load("kvm-fault-vs-invalidate", 3, 2);
        Assert.Equal("kvm-fault-vs-invalidate-P3xV2", s.Name);
        var yaml = ScenarioFamily.Generate("kvm-fault-vs-invalidate", 3, 2);
        Assert.Contains("memslot.add: { vm: vm0, gfn: 0x100, pages: 3, hva: 0x10000 }", yaml);
        Assert.Contains("guest.write: { vm: vm0, vcpu: 1, gfn: 0x102, value: 0x31 }", yaml);
        Assert.Contains("madvise: { addr: 0x10000, len: 12K, advice: dontneed }", yaml);
        Assert.Equal(2 * 3, yaml.Split("guest.write").Length - 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => ScenarioFamily.Generate("race-5a", 0, 1));
        Assert.Throws<ArgumentException>(() => ScenarioFamily.Generate("nope", 1, 1));
    }
}
