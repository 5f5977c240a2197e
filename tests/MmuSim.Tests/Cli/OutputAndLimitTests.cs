using System.Text.RegularExpressions;
using MmuSim.Explore;
using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Cli;

/// <summary>
/// Output files and option limits of explore, replay and history (issue 14, item 6): an unwritable --out/--trace-out,
/// an unreadable trace, an absurd --time-limit or --jobs 0 are exit 2 with a one-line error, never exit 3; --out is
/// written as soon as the counterexample is found; the time limit bounds shrinking.
/// </summary>
public class OutputAndLimitTests
{

    static readonly string Dir = Directory.CreateTempSubdirectory("mmusim-out-").FullName;

    static void AssertUsage(string option, (int Code, string Out, string Err) r)
    {
        Assert.Equal(2, r.Code);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("internal model error", r.Err);
        Assert.Matches(new Regex($"(^|\n)mmusim: {Regex.Escape(option)}: [^\n]+\n?$"), r.Err);
    }

    [Fact]
    public void OutIntoAMissingDirectoryIsBadInput() =>
        AssertUsage("--out", Run("explore", WriteScenario(RaceDemo), "-s", "random", "--out", Path.Combine(Dir, "no-such-dir", "x.trace")));

    [Fact]
    public void OutOntoAFullDeviceIsBadInput() =>
        AssertUsage("--out", Run("explore", WriteScenario(RaceDemo), "-s", "random", "--out", "/dev/full"));

    [Fact]
    public void TraceOutIntoAMissingDirectoryIsBadInput() =>
        AssertUsage("--trace-out", Run("explore", WriteScenario(RaceDemo), "-s", "random", "--trace-format", "ftrace",
            "--trace-out", Path.Combine(Dir, "no-such-dir", "x.ftrace")));

    [Fact]
    public void TraceOutOntoAFullDeviceIsBadInput() =>
        AssertUsage("--trace-out", Run("explore", WriteScenario(RaceDemo), "-s", "random", "--trace-format", "perfetto", "--trace-out", "/dev/full"));

    [Fact]
    public void ReplayOfAnUnreadableFileIsBadInput()
    {
        var (code, _, err) = Run("replay", "/proc/self/mem");
        Assert.Equal(2, code);
        Assert.Matches(new Regex("^/proc/self/mem:0: trace: [^\n]+\n?$"), err);
    }

    [Theory]
    [InlineData("1e400")]
    [InlineData("1e300s")]
    [InlineData("NaN")]
    [InlineData("-5s")]
    public void AbsurdTimeLimitIsBadInput(string limit) =>
        AssertUsage("--time-limit", Run("explore", WriteScenario(RaceDemo), "-t", limit));

    [Theory]
    [InlineData("explore")]
    [InlineData("history")]
    public void JobsZeroIsBadInputNotSilentlyOne(string command)
    {
        var args = command == "explore" ? new[] { "explore", WriteScenario(RaceDemo), "--jobs", "0" } : ["history", "--jobs", "0"];
        var r = Run(args);
        AssertUsage("--jobs", r);
        Assert.Contains("must be at least 1, got 0", r.Err);
    }

    [Fact]
    public void CorruptedTraceEraNamesTheTraceFileAndLine()
    {
        var good = Path.Combine(Dir, "era.trace");
        Assert.Equal(1, Run("explore", WriteScenario(RaceDemo), "-s", "random", "--out", good).Code);
        var lines = File.ReadAllLines(good);
        int eraLine = Array.FindIndex(lines, l => l.StartsWith("era ", StringComparison.Ordinal));
        lines[eraLine] = "era 9.99";
        var bad = Path.Combine(Dir, "bad-era.trace");
        File.WriteAllLines(bad, lines);
        var (code, _, err) = Run("replay", bad);
        Assert.Equal(2, code);
        Assert.Matches(new Regex($"^{Regex.Escape(bad)}:{eraLine + 1}: era: unknown era '9.99' [^\n]+\n?$"), err);
    }

    [Fact]
    public void CorruptedTraceMutationNamesTheTraceFile()
    {
        var text = $"mmusim-trace 1\nscenario race-demo\nera 6.13\nmutations no-such-mutant\n--\nend\n";
        var e = Assert.Throws<TraceFileException>(() => TraceFile.Parse(text, "t.trace"));
        Assert.StartsWith("t.trace:4: mutations: unknown mutation 'no-such-mutant'", e.Message);
    }

    [Fact]
    public void OutIsWrittenWhenFoundThenOverwrittenWithTheShrunkCounterexample()
    {
        var path = Path.Combine(Dir, "early.trace");
        var (code, _, err) = Run("explore", WriteScenario(RaceDemo), "-s", "random", "--out", path);
        Assert.Equal(1, code);
        int found = err.IndexOf($"counterexample saved to {path}", StringComparison.Ordinal);
        int shrunk = err.IndexOf("shrunk:", StringComparison.Ordinal);
        int resaved = err.IndexOf($"shrunk counterexample saved to {path}", StringComparison.Ordinal);
        Assert.True(found >= 0 && shrunk > found, err);
        var t = TraceFile.Load(path);
        var m = Regex.Match(err, @"shrunk: \d+ -> (\d+) preemptions, \d+ -> (\d+) steps");
        Assert.True(m.Success, err);
        Assert.Equal(int.Parse(m.Groups[1].Value), t.Preemptions);
        Assert.Equal(long.Parse(m.Groups[2].Value), t.Steps);
        if (resaved < 0) Assert.Contains($"counterexample saved to {path}", err); // shrinking kept the original: one save
        else Assert.True(resaved > shrunk, err);
    }

    [Fact]
    public void ExplorerReportsTheFirstCounterexampleAsSoonAsFound()
    {
        var s = MmuSim.Scenarios.ScenarioLoader.Parse(RaceDemo, "race.yaml");
        var program = new ScenarioExplorable(s, s.EraOrDefault(null), [], 1);
        var seen = new List<Counterexample>();
        var report = new Explorer(program, new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 1 },
            Iterations = 200,
            All = true,
            FirstViolation = seen.Add,
        }).Run();
        Assert.True(report.Violations > 1);
        Assert.Same(report.First, Assert.Single(seen));
    }

    [Fact]
    public void TimeLimitAlsoBoundsShrinking()
    {
        var cap = new ShrinkOptions().TimeLimit;
        Assert.Equal(cap, MmuSim.Cli.Commands.ExploreCommand.ShrinkBudget(null, TimeSpan.FromSeconds(3)).TimeLimit);
        Assert.Equal(TimeSpan.FromSeconds(2), MmuSim.Cli.Commands.ExploreCommand.ShrinkBudget(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(3)).TimeLimit);
        Assert.Equal(TimeSpan.Zero, MmuSim.Cli.Commands.ExploreCommand.ShrinkBudget(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(7)).TimeLimit);
        Assert.Equal(cap, MmuSim.Cli.Commands.ExploreCommand.ShrinkBudget(TimeSpan.FromHours(1), TimeSpan.FromSeconds(1)).TimeLimit);

        // A spent budget leaves the shrinker only the replay that confirms the counterexample.
        var s = MmuSim.Scenarios.ScenarioLoader.Parse(RaceDemo, "race.yaml");
        var program = new ScenarioExplorable(s, s.EraOrDefault(null), [], 1);
        var found = new Explorer(program, new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 1 }, Iterations = 200 }).Run().First!;
        var spent = new Shrinker(program, new ShrinkOptions { TimeLimit = TimeSpan.Zero });
        spent.Shrink(found);
        Assert.Equal(1, spent.Runs);
        var free = new Shrinker(program);
        free.Shrink(found);
        Assert.True(free.Runs > 1);
    }
}
