using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Secondary;

/// <summary><c>mmusim explore --secondary DLL</c> in-process, with this test assembly's drivers.</summary>
public class ExploreSecondaryCliTests
{
    static readonly string Dll = typeof(ExploreSecondaryCliTests).Assembly.Location;

    [Fact]
    public void ACorrectDriverExploresCleanInEveryScenarioOfTheEra()
    {
        var (code, o, e) = Run("explore", "--secondary", Dll, "--driver", "NotifierMirrorDriver", "--era", "6.13", "-n", "200");
        Assert.True(code == 0, o + e);
        Assert.Contains("driver NotifierMirrorDriver\n", o.ReplaceLineEndings("\n"));
        Assert.Matches(@"secondary-munmap-vs-fault +\.", o);
        Assert.Contains("clean: driver NotifierMirrorDriver: no violation in 7 scenario x era cells (1400 schedules)", o);
    }

    [Fact]
    public void ABuggyDriverIsCaughtWithACounterexample()
    {
        var (code, o, e) = Run("explore", "--secondary", Dll, "--driver", "NoRetryUserptrDriver", "secondary-munmap-vs-fault", "--era", "6.13", "-n", "5000");
        Assert.Equal(1, code);
        Assert.Matches(@"violation: driver NoRetryUserptrDriver, scenario secondary-munmap-vs-fault, era 6\.13: (stale-translation|freed-page-reachable)", o);
        Assert.Contains("race diagram", o);
        Assert.Contains("shrunk:", e);
    }

    [Fact]
    public void ADriverThatThrowsIsReportedAsTheDriversBugWithExitOne()
    {
        var (code, o, e) = Run("explore", "--secondary", Dll, "--driver", "throwing", "secondary-dontneed", "--era", "6.13");
        Assert.True(code == 1, o + e);
        Assert.Contains("violation: driver throwing, scenario secondary-dontneed, era 6.13: the driver threw InvalidOperationException: no GPU page table at 0x200000", o);
        Assert.DoesNotContain("internal model error", e);
    }

    [Fact]
    public void WithoutDriverTheExplicitOnlyOnesAreSkipped()
    {
        var (code, o, e) = Run("explore", "--secondary", Dll, "secondary-dontneed", "--era", "4.19");
        Assert.True(code == 0, o + e);
        Assert.Contains("driver NotifierMirrorDriver", o);
        Assert.Contains("driver NoRetryUserptrDriver", o);
        Assert.DoesNotContain("driver throwing", o);
    }

    [Fact]
    public void ErasWithoutARequiredFeatureAreNotApplicable()
    {
        var (code, o, _) = Run("explore", "--secondary", Dll, "--driver", "NoRetryUserptrDriver", "secondary-dontneed", "--era", "4.19");
        Assert.Equal(0, code);
        Assert.Matches(@"secondary-dontneed +-", o);
        Assert.Contains("no violation in 0 scenario x era cells (0 schedules), 1 n/a", o);
    }

    [Theory]
    [InlineData("/nonexistent/MyDriver.dll", null, "mmusim: --secondary: no such file '/nonexistent/MyDriver.dll'")]
    [InlineData("<xunit>", null, "contains no public class deriving from MmuSim.Secondary.SecondaryDriver")]
    [InlineData("<self>", "NoSuchDriver", "mmusim: --driver: no driver named 'NoSuchDriver' in ")]
    public void BadAssembliesAndDriverNamesExitTwoInOneLine(string dll, string? driver, string message)
    {
        dll = dll switch { "<xunit>" => typeof(FactAttribute).Assembly.Location, "<self>" => Dll, _ => dll };
        var args = new List<string> { "explore", "--secondary", dll };
        if (driver != null) args.AddRange(["--driver", driver]);
        var (code, o, e) = Run([.. args]);
        Assert.Equal(2, code);
        Assert.Equal("", o);
        Assert.Contains(message, e);
        Assert.Single(e.TrimEnd().Split('\n'));
    }

    [Fact]
    public void UsageErrorsAroundSecondaryExitTwo()
    {
        var (code, _, e) = Run("explore", "--secondary", Dll, "cow-zero-page");
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: scenario: 'cow-zero-page' has no `secondary` op", e);
        (code, _, e) = Run("explore");
        Assert.Equal(2, code);
        Assert.Equal("mmusim: explore: missing argument SCENARIO (see mmusim explore --help)", e.TrimEnd());
        (code, _, e) = Run("explore", "cow-zero-page", "--driver", "x");
        Assert.Equal(2, code);
        Assert.Equal("mmusim: --driver: only with --secondary DLL", e.TrimEnd());
    }
}
