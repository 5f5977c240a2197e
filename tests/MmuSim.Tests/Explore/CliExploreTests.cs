using MmuSim.Explore;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.Explore;

/// <summary><c>mmusim explore</c>, <c>replay</c> and <c>mutants</c>, in process.</summary>
public class CliExploreTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("mmusim-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string Scenario()
    {
        string path = Path.Combine(_dir, "race.yaml");
        File.WriteAllText(path, CliRunner.RaceDemo);
        return path;
    }

    [Fact]
    public void ExploreFindsShrinksSavesAndReplayReproduces()
    {
        string trace = Path.Combine(_dir, "race.trace");
        var (code, stdout, stderr) = CliRunner.Run("explore", Scenario(), "--strategy", "pct", "--depth", "2", "--out", trace);
        Assert.Equal(1, code);
        Assert.Contains("race diagram", stdout);
        Assert.Contains("CPU1 (writer: user_write)", stdout);
        Assert.Contains("violation: unexpected-value", stdout);
        Assert.Contains("steps per schedule: min", stderr);
        Assert.Contains("shrunk:", stderr);
        var t = TraceFile.Load(trace);
        Assert.Equal("race-demo", t.Scenario);
        Assert.Equal("unexpected-value", t.Invariant);

        var (rcode, rout, rerr) = CliRunner.Run("replay", trace);
        Assert.Equal(1, rcode);
        Assert.Contains("reproduced: unexpected-value", rerr);
        Assert.Contains("violation: unexpected-value", rout);

        var (fcode, fout, _) = CliRunner.Run("replay", trace, "--trace-format", "ftrace");
        Assert.Equal(1, fcode);
        Assert.StartsWith("# tracer: nop\n", fout.Substring(fout.IndexOf("# tracer", StringComparison.Ordinal)));
        string json = Path.Combine(_dir, "race.json");
        Assert.Equal(1, CliRunner.Run("replay", trace, "--trace-format", "perfetto", "--trace-out", json).Code);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
        Assert.True(doc.RootElement.GetProperty("traceEvents").GetArrayLength() > 5);
    }

    [Fact]
    public void DfsReportsCompletionAndExitsZero()
    {
        var (code, stdout, _) = CliRunner.Run("explore", "cow-zero-page", "--strategy", "dfs", "--preemptions", "2", "--por", "off");
        Assert.Equal(0, code);
        Assert.Matches(@"^no violation in all \d+ schedules up to 2 preemptions", stdout);
        // Reduced (the default): a bounded reduced search does not claim exhaustiveness within the bound.
        var (code2, stdout2, _) = CliRunner.Run("explore", "cow-zero-page", "--strategy", "dfs", "--preemptions", "2");
        Assert.Equal(0, code2);
        Assert.Matches(@"^no violation in any explored interleaving \(\d+ traces, \d+ states, up to 2 preemptions; bounded partial-order reduction is not exhaustive within the bound\)", stdout2);
    }

    [Theory]
    [InlineData("--strategy", "bfs", "unknown strategy 'bfs'")]
    [InlineData("--time-limit", "soon", "is not a duration")]
    [InlineData("--depth", "0", "must be at least 1")]
    [InlineData("--trace-format", "svg", "unknown format 'svg'")]
    public void BadOptionsExitTwo(string option, string value, string message)
    {
        var (code, _, stderr) = CliRunner.Run("explore", "cow-zero-page", option, value);
        Assert.Equal(2, code);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void HelpPrintsThePctGuarantee()
    {
        var (_, stdout, _) = CliRunner.Run("explore", "--help");
        Assert.Contains("1/(n*k^(d-1))", stdout);
    }

    [Fact]
    public void ReplayOfAMalformedFileExitsTwo()
    {
        string bad = Path.Combine(_dir, "bad.trace");
        File.WriteAllText(bad, "hello\n");
        var (code, _, stderr) = CliRunner.Run("replay", bad);
        Assert.Equal(2, code);
        Assert.Contains("not an MmuSim trace", stderr);
    }

    [Fact]
    public void MutantsJsonHasOneRecordPerMutant()
    {
        var (code, stdout, _) = CliRunner.Run("mutants", "--json", "--iterations", "20", "--mutant", "skip-tlb-flush,free-before-end");
        using var doc = System.Text.Json.JsonDocument.Parse(stdout);
        var recs = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(["skip-tlb-flush", "free-before-end"], recs.Select(r => r.GetProperty("name").GetString()));
        Assert.All(recs, r => Assert.True(r.TryGetProperty("killed", out _) && r.TryGetProperty("scenario", out _) && r.TryGetProperty("time", out _)));
        // cow-zero-page alone kills neither: exit 1 (not every mutant killed).
        Assert.Equal(recs.All(r => r.GetProperty("killed").GetBoolean()) ? 0 : 1, code);
    }
}
