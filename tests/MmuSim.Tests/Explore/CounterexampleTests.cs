using MmuSim.Explore;
using MmuSim.Sched;

namespace MmuSim.Tests.Explore;

public class CounterexampleTests
{
    [Fact]
    public void ShrinkingReducesPreemptionsToTheMinimumAndKeepsTheInvariant()
    {
        var p = Programs.LostUpdate(6);
        var found = new Explorer(p, new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 2 }, Iterations = 1000 }).Run().First!;
        Assert.True(found.Preemptions > 2, $"the random counterexample should be noisy (has {found.Preemptions} preemptions)");

        var shrinker = new Shrinker(p);
        var small = shrinker.Shrink(found);
        Assert.Equal(found.Violation.Invariant, small.Violation.Invariant);
        // Lost update needs exactly one preemption: between one context's read and its write.
        Assert.Equal(1, small.Preemptions);
        Assert.True(small.Steps <= found.Steps);
        Assert.EndsWith(" shrunk", small.Strategy);

        var again = small.Replay(p);
        Assert.True(again.Reproduced);
        Assert.False(again.Diverged);
        Assert.Equal(small.Decisions, again.Run.Log);
        Assert.Equal(small.Steps, again.Run.Steps);
    }

    [Fact]
    public void ReplayOfADifferentProgramReportsDivergence()
    {
        var found = new Explorer(Programs.LostUpdate(3), new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 2 }, Iterations = 1000 }).Run().First!;
        var r = found.Replay(Programs.Independent(1));
        Assert.False(r.Reproduced);
        Assert.True(r.Diverged);
    }

    /// <summary>Two contexts with 50,000 points each and a data choice every 100 points; fails at the very end.</summary>
    static IExplorable Long() => new SchedulerExplorable(ExplorableInfo.Of("long", "6.13", "skip-tlb-flush"), strategy =>
    {
        var s = new Scheduler(strategy);
        long sum = 0;
        int done = 0;
        for (int c = 0; c < 2; c++)
            s.Spawn($"cpu{c}", async _ =>
            {
                for (int i = 0; i < 50_000; i++)
                {
                    await s.Point(PointKind.Yield);
                    if (i % 100 == 0) sum = sum * 31 + s.ChooseInt(7);
                    sum = sum * 3 + c;
                }
                if (++done == 2) s.Fail("test-end", $"sum {sum}");
            });
        return s;
    });

    [Fact]
    public void TraceFileRoundTripsAHundredThousandStepRun()
    {
        var p = Long();
        var report = new Explorer(p, new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 77 }, Iterations = 1 }).Run();
        var c = report.First!;
        Assert.True(c.Steps >= 100_000);
        Assert.True(c.Decisions.Length >= 99_000);
        Assert.Contains(c.Decisions, d => d.Kind == DecisionLog.DataKind);

        string path = Path.Combine(Path.GetTempPath(), $"mmusim-roundtrip-{Environment.ProcessId}.trace");
        try
        {
            TraceFile.From(c).Save(path);
            var t = TraceFile.Load(path);
            Assert.Equal(TraceFile.FormatVersion, t.Format);
            Assert.Equal(TraceFile.ModelVersion, t.Model);
            Assert.Equal("long", t.Scenario);
            Assert.Equal("6.13", t.Era);
            Assert.Equal(["skip-tlb-flush"], t.Mutations);
            Assert.Equal(77UL, t.Seed);
            Assert.Equal(c.Strategy, t.Strategy);
            Assert.Equal("test-end", t.Invariant);
            Assert.Equal(c.Violation.Message, t.Message);
            Assert.Equal(c.Steps, t.Steps);
            Assert.Equal(c.Decisions, t.Decisions);

            var r = Replay.File(path, p);
            Assert.True(r.Reproduced);
            Assert.Equal(c.Violation.Message, r.Violation!.Message); // same sum: every data choice replayed
            Assert.Equal(c.Decisions, r.Run.Log);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void TraceFileFormatIsLineOriented()
    {
        var c = new Counterexample
        {
            Info = ExplorableInfo.Of("s", "4.10"),
            Strategy = "pct(seed=1,depth=2,k=10)",
            Seed = 1,
            Iteration = 3,
            Violation = new Violation("stale-translation", "two\nlines", 1, "vcpu0", "kvm_mmu_page_fault", 12),
            Decisions = [(DecisionLog.SchedKind, 1), (DecisionLog.DataKind, 4), (DecisionLog.SchedKind, 0)],
            Steps = 12,
            Preemptions = 1,
        };
        var text = TraceFile.From(c).ToString();
        var lines = text.Split('\n');
        Assert.Equal("mmusim-trace 1", lines[0]);
        Assert.StartsWith("model ", lines[1]);
        Assert.Contains("scenario s", lines);
        Assert.Contains("era 4.10", lines);
        Assert.Contains("mutations -", lines);
        Assert.Contains("message two\\nlines", lines);
        int sep = Array.IndexOf(lines, "--");
        Assert.Equal(["1", "d 4", "0", "end"], lines[(sep + 1)..(sep + 5)]);
        var back = TraceFile.Parse(text);
        Assert.Equal("two\nlines", back.Message);
        Assert.Equal(c.Decisions, back.Decisions);
    }

    [Theory]
    [InlineData("hello\n", ":1: trace: not an MmuSim trace")]
    [InlineData("mmusim-trace 9\n", "newer than this mmusim")]
    [InlineData("mmusim-trace 1\nscenario s\n--\n1\nx\nend\n", ":5: trace: bad decision 'x'")]
    [InlineData("mmusim-trace 1\nscenario s\n--\n1\n", "no 'end' line")]
    [InlineData("mmusim-trace 1\nscenario s\ndecisions 3\n--\n1\nend\n", "header says 3 decisions, file has 1")]
    public void MalformedTraceFilesNameTheLine(string text, string error)
    {
        var e = Assert.Throws<TraceFileException>(() => TraceFile.Parse(text, "t.trace"));
        Assert.Contains(error, e.Message);
        Assert.StartsWith("t.trace:", e.Message);
    }
}
