using MmuSim.Scenarios;

namespace MmuSim.Tests.Secondary;

/// <summary>The guide shows the template's drivers exactly as `dotnet new mmusim-secondary` creates them, and the ops are documented.</summary>
public class SecondaryDocsTests
{
    static string Repo(params string[] parts)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "MmuSim.sln"))) return Path.Combine([d.FullName, .. parts]);
        throw new InvalidOperationException("MmuSim.sln not found");
    }

    [Theory]
    [InlineData("UserptrDriver.cs")]
    [InlineData("BuggyUserptrDriver.cs")]
    public void TheGuideEmbedsTheTemplatesDriverVerbatim(string file)
    {
        var guide = File.ReadAllText(Repo("docs", "your-secondary-mmu.md")).ReplaceLineEndings("\n");
        var code = File.ReadAllText(Repo("templates", "mmusim-secondary", file)).ReplaceLineEndings("\n").TrimEnd();
        Assert.Contains("```csharp\n" + code + "\n```", guide);
    }

    [Fact]
    public void TheTemplateReferencesThisVersionOfTheModel()
    {
        string version = typeof(Kernel).Assembly.GetName().Version!.ToString(3);
        Assert.Contains($"<PackageReference Include=\"MmuSim.Model\" Version=\"{version}\" />", File.ReadAllText(Repo("templates", "mmusim-secondary", "MyDriver.csproj")));
        Assert.Contains($"MmuSim.Templates.{version}.nupkg", File.ReadAllText(Repo("README.md")));
    }

    [Theory]
    [InlineData("secondary")]
    [InlineData("secondary.read")]
    [InlineData("secondary.write")]
    [InlineData("secondary.unbind")]
    public void TheSecondaryOpsAreRegisteredAndDocumented(string op)
    {
        Assert.True(OpRegistry.Default.TryGet(op, out _));
        Assert.Contains($"`{op}`", File.ReadAllText(Repo("docs", "scenarios.md")));
    }

    [Fact]
    public void TheReadmeStillStartsWithTheMainJobAndTheTests()
    {
        var lines = File.ReadAllLines(Repo("README.md"));
        Assert.Equal(["# MmuSim", "", "```sh", "dotnet run --project src/MmuSim.Cli -c Release -- history", "dotnet test MmuSim.sln -c Release", "```"], lines[..6]);
    }
}
