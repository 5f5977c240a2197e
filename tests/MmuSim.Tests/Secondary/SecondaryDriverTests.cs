using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Notifier;
using MmuSim.Scenarios;
using MmuSim.Secondary;
using MmuSim.Sched;

namespace MmuSim.Tests.Secondary;

public class SecondaryDriverTests
{
    static readonly string[] SecondaryScenarios = ScenarioLoader.BuiltInNames.Where(n => n.StartsWith("secondary-", StringComparison.Ordinal)).ToArray();

    static ExploreReport Explore(string scenario, DriverInfo driver, string era, int iterations = 1500) =>
        new Explorer(new ScenarioExplorable(ScenarioLoader.LoadBuiltIn(scenario).WithSecondaryDriver(driver), EraTable.Get(era)),
            new ExploreOptions { Iterations = iterations }).Run();

    [Fact]
    public void EveryBuiltInSecondaryScenarioUsesTheSecondaryOp()
    {
        Assert.True(SecondaryScenarios.Length >= 6, string.Join(", ", SecondaryScenarios));
        foreach (var n in SecondaryScenarios) Assert.True(ScenarioLoader.LoadBuiltIn(n).UsesSecondaryDriver, n);
        Assert.False(ScenarioLoader.LoadBuiltIn("cow-zero-page").UsesSecondaryDriver);
    }

    [Theory]
    [InlineData("5.5")]
    [InlineData("6.13")]
    public void TheReferenceUserptrDriverIsCleanInEverySecondaryScenario(string era)
    {
        foreach (var n in SecondaryScenarios)
        {
            var r = Explore(n, DriverInfo.Reference, era, 600);
            Assert.True(r.First == null, $"{n} {era}: {r.First?.Violation}");
            Assert.Equal(600, r.Schedules);
        }
    }

    [Fact]
    public void TheGuidesInATestSnippetRunsAsWritten()
    {
        // docs/your-secondary-mmu.md section 6, with a smaller budget.
        var driver = DriverInfo.Of(typeof(UserptrDriver));
        var scenario = ScenarioLoader.LoadBuiltIn("secondary-munmap-vs-fault").WithSecondaryDriver(driver);
        int eras = 0;
        foreach (var era in EraTable.All.Where(driver.SupportedIn))
        {
            var report = new Explorer(new ScenarioExplorable(scenario, era), new ExploreOptions { Iterations = 100 }).Run();
            Assert.Null(report.First);
            eras++;
        }
        Assert.Equal(EraTable.All.Count(e => e.Has(Feature.IntervalNotifier)), eras);
        Assert.True(eras >= 10);
    }

    [Fact]
    public void TheReferenceDriverMirrorsFaultsAndDropsTranslationsOnMunmap()
    {
        var s = ScenarioLoader.LoadBuiltIn("secondary-munmap-vs-fault");
        var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), null);
        Assert.Null(r.Violation);
        var gpu = Assert.IsType<UserptrDriver>(r.World.Objects["gpu"]);
        Assert.Equal(0, gpu.Entries); // munmap's invalidation dropped everything
        Assert.True(r.Kernel.Stats[Stat.DeviceFaults] > 0);
        Assert.Equal(1, r.Kernel.Stats[Stat.DeviceInvalidations]);
        Assert.Contains(gpu, r.Kernel.Checker.Secondaries);
    }

    [Fact]
    public void ADriverWithoutReadRetryIsCaughtInstallingAPageFaultedBeforeMunmap()
    {
        var buggy = DriverInfo.Of(typeof(NoRetryUserptrDriver));
        var r = Explore("secondary-munmap-vs-fault", buggy, "6.13", 5000);
        var v = Assert.IsType<Violation>(r.First?.Violation);
        Assert.Contains(v.Invariant, new[] { Invariants.StaleTranslation, Invariants.FreedPageReachable });
        Assert.Contains("gpu", v.Message);
    }

    [Fact]
    public void TheMmuNotifierRouteRunsInEveryEraAndMeetsTheKernelsInvalidatePageWindow()
    {
        var d = DriverInfo.Of(typeof(NotifierMirrorDriver));
        Assert.Empty(d.Requires);
        Assert.True(d.SupportedIn(EraTable.Get("2.6.27")));
        Assert.Null(Explore("secondary-munmap-vs-fault", d, "2.6.32", 800).First);
        Assert.Null(Explore("secondary-munmap-vs-fault", d, "6.13", 800).First);
        Assert.Null(Explore("secondary-reclaim", d, "4.19", 800).First);
        // 3.6-4.12: try_to_unmap_one calls invalidate_page after dropping the PTL (kernel-facts race 5(a)):
        // however correct the driver, a device read in that window reaches a page the primary no longer maps.
        var old = Explore("secondary-reclaim", d, "4.10", 5000);
        Assert.Equal(Invariants.StaleTranslation, old.First?.Violation.Invariant);
    }

    [Fact]
    public void AnIntervalNotifierDriverInAnEraWithoutThemIsAOneLineScenarioError()
    {
        Assert.Equal([Feature.IntervalNotifier], DriverInfo.Reference.Requires);
        Assert.False(DriverInfo.Reference.SupportedIn(EraTable.Get("4.19")));
        var e = Assert.Throws<ScenarioException>(() => ScenarioRunner.Run(ScenarioLoader.LoadBuiltIn("secondary-dontneed"), EraTable.Get("4.19"), null));
        Assert.Matches(@"^builtin/secondary-dontneed\.yaml:\d+: secondary\.name: driver 'userptr' requires IntervalNotifier, which era 4\.19 does not have$", e.Message);
    }

    [Fact]
    public void DriverDiscoveryRejectsBadAssembliesInOneLine()
    {
        var dir = Directory.CreateTempSubdirectory("mmusim-drv").FullName;
        var missing = Path.Combine(dir, "nope.dll");
        Assert.Equal($"no such file '{missing}'", Assert.Throws<DriverLoadException>(() => DriverInfo.FromAssembly(missing)).Message);
        var text = Path.Combine(dir, "text.dll");
        File.WriteAllText(text, "not an assembly");
        Assert.Equal($"'{text}' is not a .NET assembly", Assert.Throws<DriverLoadException>(() => DriverInfo.FromAssembly(text)).Message);
        Assert.Contains("is a directory", Assert.Throws<DriverLoadException>(() => DriverInfo.FromAssembly(dir)).Message);
        var xunit = typeof(FactAttribute).Assembly.Location;
        Assert.EndsWith("contains no public class deriving from MmuSim.Secondary.SecondaryDriver",
            Assert.Throws<DriverLoadException>(() => DriverInfo.FromAssembly(xunit)).Message);
        Assert.Contains("has no public constructor", Assert.Throws<DriverLoadException>(() => DriverInfo.Of(typeof(NoCtorDriver))).Message);
        Assert.Contains("does not derive from SecondaryDriver", Assert.Throws<DriverLoadException>(() => DriverInfo.Of(typeof(string))).Message);
    }

    [Fact]
    public void DriverDiscoveryFindsTheTestAssemblysDriversByName()
    {
        var found = DriverInfo.FromAssembly(typeof(SecondaryDriverTests).Assembly.Location);
        Assert.Equal(["NoRetryUserptrDriver", "NotifierMirrorDriver", "throwing"], found.Select(d => d.Name).ToArray());
        Assert.Equal([false, false, true], found.Select(d => d.ExplicitOnly).ToArray());
        Assert.Same(typeof(SecondaryDriver), found[0].Type.BaseType); // one SecondaryDriver type on both sides
    }

    [Fact]
    public void DeviceAccessesOutsideTheBufferAreOneLineErrors()
    {
        var yaml = ScenarioLoader.BuiltInText("secondary-dontneed")!.Replace("secondary.read: { secondary: gpu, addr: 0x200000 }", "secondary.read: { secondary: gpu, addr: 0x400000 }");
        var s = ScenarioLoader.Parse(yaml, "t.yaml");
        var e = Assert.Throws<ScenarioException>(() => ScenarioRunner.Run(s, EraTable.Get("6.13"), null));
        Assert.Matches(@"^t\.yaml:\d+: secondary\.read\.addr: 0x400000 is outside the device's buffer \[0x200000, 0x202000\)$", e.Message);
        var bad = ScenarioLoader.BuiltInText("secondary-dontneed")!.Replace("len: 8K }\nthreads", "len: 5000 }\nthreads");
        Assert.Matches(@"^t\.yaml:\d+: secondary\.len: 0x1388 is not a positive multiple of the page size$", Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(bad, "t.yaml")).Message);
    }

    public abstract class Abstract(DriverContext c) : SecondaryDriver(c);

    internal sealed class NoCtorDriver : SecondaryDriver
    {
        public NoCtorDriver() : base(null!) { }
        public override ValueTask Bind() => default;
        public override ValueTask<ulong?> Read(ulong address) => new((ulong?)null);
        public override ValueTask<bool> Write(ulong address, ulong value) => new(false);
        public override void CollectTranslations(List<SecondaryTranslation> into) { }
    }
}
