using System.Text.Json;

namespace MmuSim.Tests.Cli;

/// <summary><c>--json</c> of run, explore and replay (issue 13 item 6): documented keys in a fixed order, real values.</summary>
public class JsonOutputTests
{
    static string[] Keys(JsonElement e) => e.EnumerateObject().Select(p => p.Name).ToArray();

    [Fact]
    public void RunJsonHasTheDocumentedKeysAndTheRunsCounters()
    {
        var (code, stdout, err) = CliRunner.Run("run", "kvm-dontneed", "--json", "--seed", "3");
        Assert.Equal((0, ""), (code, err));
        using var doc = JsonDocument.Parse(stdout);
        var r = doc.RootElement;
        Assert.Equal(["format", "version", "scenario", "file", "era", "mutations", "schedule", "seed", "outcome", "violation", "expected",
            "matches_expectation", "simulated_ns", "steps", "decisions", "preemptions", "observed", "counters"], Keys(r));
        Assert.Equal("mmusim-run", r.GetProperty("format").GetString());
        Assert.Equal("pass", r.GetProperty("outcome").GetString());
        Assert.Equal(JsonValueKind.Null, r.GetProperty("violation").ValueKind);
        Assert.True(r.GetProperty("matches_expectation").GetBoolean());
        Assert.True(r.GetProperty("steps").GetInt64() > 0);
        // DONTNEED zaps the page and KVM's start handler zaps its SPTE.
        Assert.Equal(1, r.GetProperty("counters").GetProperty("pages_zapped").GetInt64());
        Assert.Equal(1, r.GetProperty("counters").GetProperty("sptes_zapped").GetInt64());
        // Same seed, same bytes.
        Assert.Equal(stdout, CliRunner.Run("run", "kvm-dontneed", "--json", "--seed", "3").Out);
    }

    [Fact]
    public void ExploreAndReplayJsonDescribeTheViolation()
    {
        string trace = Path.Combine(Directory.CreateTempSubdirectory("mmusim-json-").FullName, "ce.trace");
        var (code, stdout, _) = CliRunner.Run("explore", "kvm-dontneed", "--mutate", "kvm-no-retry-check", "-n", "200", "--json", "--out", trace);
        Assert.Equal(1, code);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal(["format", "version", "config", "result", "timing"], Keys(root));
        Assert.Equal(["scenario", "file", "era", "mutations", "strategy", "seed", "iterations", "all", "max_counterexamples"], Keys(root.GetProperty("config")));
        var res = root.GetProperty("result");
        Assert.Equal(["verdict", "schedules", "distinct_schedules", "steps_total", "steps_min", "steps_max", "max_decisions", "violations",
            "schedules_to_first_bug", "timed_out", "exhausted", "completion", "counterexamples"], Keys(res));
        Assert.Equal("violation", res.GetProperty("verdict").GetString());
        var ce = res.GetProperty("counterexamples")[0];
        Assert.Equal(res.GetProperty("schedules").GetInt32(), ce.GetProperty("iteration").GetInt32() + 1);
        Assert.Equal("stale-translation", ce.GetProperty("violation").GetProperty("invariant").GetString());

        var rep = CliRunner.Run("replay", trace, "--json");
        Assert.Equal(1, rep.Code);
        using var rd = JsonDocument.Parse(rep.Out);
        var r = rd.RootElement;
        Assert.Equal("mmusim-replay", r.GetProperty("format").GetString());
        Assert.True(r.GetProperty("reproduced").GetBoolean());
        Assert.False(r.GetProperty("diverged").GetBoolean());
        Assert.Equal("violation", r.GetProperty("outcome").GetString());
        Assert.Equal("stale-translation", r.GetProperty("violation").GetProperty("invariant").GetString());
        Assert.Equal(["kvm-no-retry-check"], r.GetProperty("mutations").EnumerateArray().Select(m => m.GetString()));
        Assert.False(r.GetProperty("matches_expectation").GetBoolean());
    }

    [Fact]
    public void ACleanExploreJsonSaysCleanAndCountsEverySchedule()
    {
        var (code, stdout, _) = CliRunner.Run("explore", "kvm-dontneed", "-n", "64", "--json", "-j", "2");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(stdout);
        var res = doc.RootElement.GetProperty("result");
        Assert.Equal("clean", res.GetProperty("verdict").GetString());
        Assert.Equal(64, res.GetProperty("schedules").GetInt32());
        Assert.Equal(0, res.GetProperty("counterexamples").GetArrayLength());
        Assert.True(res.GetProperty("steps_min").GetInt64() <= res.GetProperty("steps_max").GetInt64());
    }
}
