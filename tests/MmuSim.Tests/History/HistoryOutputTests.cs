using System.Text.Json;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using MmuSim.Eras;
using MmuSim.History;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.History;

/// <summary>
/// <c>mmusim history</c>'s verdict depends on the seed and the schedule budget, not on the host: the same seed gives the
/// same table and exit code, also beside CPU-burning threads; the compact matrix fits 160 columns; TAP and JUnit output
/// have their standard shape; the wall-clock limit makes cells inconclusive, never contradictions.
/// </summary>
public class HistoryOutputTests
{
    static HistoryOptions Subset(int schedules = 300) => new()
    {
        Scenarios = [ScenarioLoader.LoadBuiltIn("invalidate-page-after-ptl"), ScenarioLoader.LoadBuiltIn("thp-invalidate-page")],
        Eras = [EraTable.Get("2.6.27"), EraTable.Get("3.10"), EraTable.Get("4.12"), EraTable.Get("6.13")],
        SchedulesPerCell = schedules,
        TimeLimit = null,
        Parallelism = 2,
        StatRuns = 2,
    };

    /// <summary>The report's JSON without its wall-clock fields (elapsed, time_to_bug).</summary>
    static string Untimed(HistoryReport r)
    {
        var node = JsonNode.Parse(HistoryFormat.ToJson(r))!.AsObject();
        node.Remove("elapsed");
        foreach (var c in node["cells"]!.AsArray())
        {
            c!.AsObject().Remove("elapsed");
            c.AsObject().Remove("time_to_bug");
        }
        return node.ToJsonString();
    }

    static string Symbols(HistoryReport r) => new(r.Cells.Select(c => c.Symbol).ToArray());

    [Fact]
    public void SameSeed_GivesTheSameTableAndVerdict()
    {
        var a = HistoryRunner.Run(Subset());
        var b = HistoryRunner.Run(Subset() with { Parallelism = 1 });
        Assert.Equal(Untimed(a), Untimed(b));
        Assert.Empty(a.Contradictions);
        Assert.Equal(".xx.-xx.", Symbols(a));
        Assert.Equal(CellStatus.Violation, a[0, 1].Status);
        Assert.Equal(CellStatus.Clean, a[0, 3].Status);
        Assert.Equal(300, a[0, 3].Schedules);
        Assert.Equal(a[0, 1].Schedules, b[0, 1].Schedules);
    }

    [Fact]
    public void SameSeed_GivesTheSameTable_BesideCpuBurningThreads()
    {
        var quiet = HistoryRunner.Run(Subset());
        using var stop = new CancellationTokenSource();
        var burners = Enumerable.Range(0, Environment.ProcessorCount * 2).Select(_ => new Thread(() =>
        {
            ulong x = 1;
            while (!stop.IsCancellationRequested) x = x * 6364136223846793005UL + 1;
            GC.KeepAlive(x);
        }) { IsBackground = true, Priority = ThreadPriority.AboveNormal }).ToList();
        burners.ForEach(t => t.Start());
        HistoryReport loaded;
        try { loaded = HistoryRunner.Run(Subset()); }
        finally { stop.Cancel(); burners.ForEach(t => t.Join()); }
        Assert.Equal(Untimed(quiet), Untimed(loaded));
        Assert.Equal(Symbols(quiet), Symbols(loaded));
    }

    [Fact]
    public void WallClockLimit_MakesCellsInconclusive_NeverContradictions()
    {
        // No time left: every cell that would run is "?", not "!", even those declared to violate.
        var r = HistoryRunner.Run(Subset() with { TimeLimit = TimeSpan.Zero });
        Assert.All(r.Cells.Where(c => c.Status != CellStatus.NotApplicable), c =>
        {
            Assert.Equal(CellStatus.Inconclusive, c.Status);
            Assert.False(c.Contradicts);
            Assert.Equal('?', c.Symbol);
            Assert.Equal("inconclusive (0 schedules)", c.Text);
        });
        Assert.Empty(r.Contradictions);
        string text = HistoryFormat.ToText(r);
        Assert.Contains("inconclusive", text);
        Assert.Contains("(a) invalidate-page-after-ptl: ? inconclusive in 2.6.27..6.13", text);
    }

    [Fact]
    public void CompactMatrix_FitsOneHundredSixtyColumns_ForTheCatalogAndTwentySixEras()
    {
        var scenarios = HistoryRunner.CatalogScenarios();
        // Today's eras plus repeats, to leave room for the eras up to 6.18 still to come.
        var eras = EraTable.All.Concat(EraTable.All).Take(Math.Max(26, EraTable.All.Count)).ToList();
        var cells = new HistoryCell[scenarios.Count * eras.Count];
        for (int s = 0; s < scenarios.Count; s++)
            for (int e = 0; e < eras.Count; e++)
                cells[s * eras.Count + e] = new HistoryCell
                {
                    Scenario = scenarios[s].Name, Era = eras[e].Name, Expected = scenarios[s].ExpectedIn(eras[e]),
                    Status = (s + e) % 3 == 0 ? CellStatus.Clean : CellStatus.Violation,
                    Invariant = $"some-rather-long-invariant-name-{e % 4}", Message = new string('m', 300),
                    Schedules = 1000 + e, TimeToBug = TimeSpan.FromMilliseconds(e + 1),
                };
        var r = new HistoryReport { Scenarios = scenarios, Eras = eras, Cells = cells, SchedulesPerCell = 1024 };
        string text = HistoryFormat.ToText(r);
        var lines = text.Split('\n');
        Assert.All(lines, l => Assert.True(l.Length <= 160, $"{l.Length} chars: {l}"));
        // One matrix row per scenario, each with one symbol per era.
        foreach (var sc in scenarios)
        {
            var row = lines.First(l => l.StartsWith($"({sc.Catalog}) ", StringComparison.Ordinal) && !l.Contains(sc.Name));
            Assert.Equal(eras.Count, row[(row.IndexOf(')') + 1)..].Count(ch => ch is 'x' or '.' or '-' or '?' or '!'));
        }
        Assert.Contains(HistoryFormat.Legend, text);
        Assert.Contains("time-to-bug", text);
    }

    [Fact]
    public void HistoryCli_DefaultOutput_IsTheMatrix_WithLegendAndProgressCount()
    {
        var (code, stdout, stderr) = CliRunner.Run("history", "--scenarios", "a", "--eras", "2.6.27,3.10,6.13", "-n", "100");
        Assert.Equal(0, code);
        Assert.All(stdout.Split('\n'), l => Assert.True(l.Length <= 160, l));
        Assert.Contains("(a)", stdout);
        Assert.Contains("x lost-write in 3.10, time-to-bug", stdout);
        Assert.Contains("clean in 2 eras (100 schedules each)", stdout);
        Assert.Contains("legend: x violation", stderr);
        Assert.Contains("3/3 cells done", stderr);
        var (wcode, wide, _) = CliRunner.Run("history", "--scenarios", "a", "--eras", "2.6.27,3.10,6.13", "-n", "100", "--wide");
        Assert.Equal(0, wcode);
        Assert.Contains("clean (100 schedules)", wide);
        Assert.Contains("violation (lost-write, ", wide);
        var (_, md, _) = CliRunner.Run("history", "--scenarios", "a", "--eras", "3.10", "-n", "100", "--markdown");
        Assert.StartsWith("| scenario | 3.10 |\n| --- | --- |\n| (a) invalidate-page-after-ptl | violation (lost-write, ", md);
    }

    /// <summary>A catalog row whose 4.19 expectation is wrong: history must report the contradiction.</summary>
    internal static string WrongHistory() => CliRunner.WriteScenario("""
        name: wrong-history
        catalog: z
        processes:
          - name: p
            vmas:
              - { start: 0x10000, len: 8K, prot: rw, contents: [1] }
        threads:
          - name: t
            process: p
            ops:
              - expect-value: { addr: 0x10000, value: 1 }
        expect:
          default: pass
          "4.19": unexpected-value
        """, "wrong-history-fmt");

    [Fact]
    public void Tap_OneTestPointPerCell_ContradictionIsNotOk_NaIsSkip()
    {
        var (code, tap, _) = CliRunner.Run("history", "--scenarios", WrongHistory() + ",d6", "--eras", "4.15,4.19", "-n", "20", "--format", "tap");
        Assert.Equal(1, code);
        var lines = tap.TrimEnd('\n').Split('\n');
        Assert.Equal("TAP version 13", lines[0]);
        Assert.Equal("1..4", lines[1]);
        var points = lines.Where(l => l.StartsWith("ok ") || l.StartsWith("not ok ")).ToList();
        Assert.Equal(4, points.Count);
        Assert.Equal("ok 1 - (z) wrong-history @ 4.15: clean (20 schedules)", points[0]);
        Assert.StartsWith("not ok 2 - (z) wrong-history @ 4.19: clean (20 schedules)", points[1]);
        Assert.EndsWith("# SKIP n/a", points[2]);
        Assert.Contains("  expected: \"unexpected-value\"", lines);
    }

    [Fact]
    public void JUnit_OneSuitePerScenario_ContradictionIsAFailure()
    {
        var (code, xml, _) = CliRunner.Run("history", "--scenarios", WrongHistory() + ",d6", "--eras", "4.15,4.19", "-n", "20", "--format", "junit");
        Assert.Equal(1, code);
        var doc = XDocument.Parse(xml);
        Assert.Equal("testsuites", doc.Root!.Name.LocalName);
        Assert.Equal("4", doc.Root.Attribute("tests")!.Value);
        Assert.Equal("1", doc.Root.Attribute("failures")!.Value);
        Assert.Equal("2", doc.Root.Attribute("skipped")!.Value);
        var suites = doc.Root.Elements("testsuite").ToList();
        Assert.Equal(2, suites.Count);
        var failing = suites[0].Elements("testcase").Single(t => t.Element("failure") != null);
        Assert.Equal("4.19", failing.Attribute("name")!.Value);
        Assert.Equal("wrong-history", failing.Attribute("classname")!.Value);
        Assert.Contains("expected unexpected-value", failing.Element("failure")!.Attribute("message")!.Value);
        Assert.All(suites[1].Elements("testcase"), t => Assert.NotNull(t.Element("skipped")));
    }

    [Theory]
    [InlineData(new[] { "foo" }, "mmusim: unknown command 'foo' (commands: run, list, explore, eras, ops, replay, mutants, history")]
    [InlineData(new string[0], "mmusim: no command given (commands: run, list, ")]
    [InlineData(new[] { "history", "-n", "abc" }, "mmusim: --iterations: 'abc' is not a whole number")]
    [InlineData(new[] { "history", "--bogus" }, "mmusim: history: unknown option '--bogus' (see mmusim history --help)")]
    [InlineData(new[] { "explore" }, "mmusim: explore: missing argument SCENARIO (see mmusim explore --help)")]
    [InlineData(new[] { "history", "--format", "xml" }, "mmusim: --format: unknown format 'xml' (known: matrix, wide, markdown, json, tap, junit)")]
    [InlineData(new[] { "history", "-n", "0" }, "mmusim: --iterations: the schedule budget must be at least 1, not 0")]
    public void CliErrors_AreOnePlainLine_ExitTwo(string[] args, string expected)
    {
        var (code, stdout, stderr) = CliRunner.Run(args);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.StartsWith(expected, stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.DoesNotContain("System.", stderr);
        Assert.DoesNotContain("Required command was not provided", stderr);
    }
}
