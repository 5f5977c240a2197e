using System.Diagnostics;
using System.Reflection;

namespace MmuSim.Tests.Secondary;

/// <summary>
/// The user-secondary story end to end, as a driver author lives it: pack MmuSim.Model, the mmusim tool and the
/// template into a local folder; install the tool (--tool-path) and the template from it; create a project from the
/// template in a fresh directory; build it offline (the local folder and this machine's global packages folder are
/// the only sources); explore it. The fixed driver passes (exit 0), the buggy variant is caught (exit 1, a
/// counterexample). Everything it installs lives under one temp directory (DOTNET_CLI_HOME, NUGET_PACKAGES), which
/// is deleted afterwards. Slow (tens of seconds: it runs dotnet pack/build), but part of the normal suite.
/// </summary>
[Trait("Category", "Packaging")]
public class PackagingTests
{
    static readonly TimeSpan StepTimeout = TimeSpan.FromMinutes(4);

    [Fact]
    public void PackInstallCreateBuildAndExploreATemplateDriver()
    {
        string repo = RepoRoot();
        string config = typeof(PackagingTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string root = Directory.CreateTempSubdirectory("mmusim-pack-").FullName;
        try
        {
            string feed = Path.Combine(root, "feed"), tools = Path.Combine(root, "tools"), work = Path.Combine(root, "work");
            Directory.CreateDirectory(work);

            // 1. dotnet pack: the model and the tool from this test run's build, the template package built here.
            Dotnet(repo, null, "pack", "src/MmuSim/MmuSim.csproj", "-c", config, "--no-build", "-o", feed).Ok();
            Dotnet(repo, null, "pack", "src/MmuSim.Cli/MmuSim.Cli.csproj", "-c", config, "--no-build", "-o", feed).Ok();
            Dotnet(repo, null, "pack", "templates/MmuSim.Templates.csproj", "-c", config, "-o", feed).Ok();
            string version = typeof(MmuSim.Kernel).Assembly.GetName().Version!.ToString(3);
            foreach (var id in new[] { "MmuSim.Model", "MmuSim.Cli", "MmuSim.Templates" })
                Assert.True(File.Exists(Path.Combine(feed, $"{id}.{version}.nupkg")), $"{id}.{version}.nupkg not in {feed}: {string.Join(", ", Directory.GetFiles(feed))}");

            // 2. Offline sources for everything below: the local feed and the machine's global packages folder.
            string machinePackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } np ? np
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            string nugetConfig = Path.Combine(root, "nuget.config");
            File.WriteAllText(nugetConfig, $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="mmusim-local" value="{feed}" />
                    <add key="machine-global-packages" value="{machinePackages}" />
                  </packageSources>
                </configuration>
                """);
            var isolated = new Dictionary<string, string>
            {
                ["DOTNET_CLI_HOME"] = Path.Combine(root, "home"),
                ["NUGET_PACKAGES"] = Path.Combine(root, "nuget-packages"),
            };

            // 3. Install the tool and the template the way the README says, from the local folder.
            Dotnet(root, isolated, "tool", "install", "MmuSim.Cli", "--tool-path", tools, "--add-source", feed, "--configfile", nugetConfig, "--version", version).Ok();
            var ti = Dotnet(root, isolated, "new", "install", Path.Combine(feed, $"MmuSim.Templates.{version}.nupkg")).Ok();
            Assert.Contains("mmusim-secondary", ti.Out);

            // 4. A fresh project from the template, built offline (nuget.config in an ancestor directory).
            Dotnet(work, isolated, "new", "mmusim-secondary", "-n", "GpuDriver", "-o", "GpuDriver").Ok();
            string proj = Path.Combine(work, "GpuDriver");
            Assert.Contains("namespace GpuDriver;", File.ReadAllText(Path.Combine(proj, "UserptrDriver.cs")));
            Assert.Contains($"Include=\"MmuSim.Model\" Version=\"{version}\"", File.ReadAllText(Path.Combine(proj, "GpuDriver.csproj")));
            Dotnet(proj, isolated, "build", "-c", "Release").Ok();
            string dll = Path.Combine(proj, "bin", "Release", "net10.0", "GpuDriver.dll");
            Assert.True(File.Exists(dll), dll);

            // 5. Explore with the installed tool: the fixed driver in every era, then the buggy one.
            string mmusim = Path.Combine(tools, OperatingSystem.IsWindows() ? "mmusim.exe" : "mmusim");
            var clean = Run(mmusim, proj, isolated, "explore", "--secondary", dll, "-n", "100");
            Assert.True(clean.Code == 0, clean.ToString());
            Assert.Contains("driver userptr (requires IntervalNotifier)", clean.Out);
            Assert.Matches(@"clean: driver userptr: no violation in \d+ scenario x era cells \(\d+ schedules\), \d+ n/a", clean.Out);
            Assert.DoesNotContain("buggy-userptr", clean.Out); // ExplicitOnly: not run unless named

            var buggy = Run(mmusim, proj, isolated, "explore", "--secondary", dll, "--driver", "buggy-userptr", "-n", "300");
            Assert.True(buggy.Code == 1, buggy.ToString());
            Assert.Matches(@"violation: driver buggy-userptr, scenario secondary-[a-z-]+, era [0-9.]+: (stale-translation|freed-page-reachable|lost-write)", buggy.Out);
            Assert.Contains("race diagram", buggy.Out);

            var bad = Run(mmusim, proj, isolated, "explore", "--secondary", Path.Combine(proj, "NoSuch.dll"));
            Assert.Equal(2, bad.Code);
            Assert.Equal($"mmusim: --secondary: no such file '{Path.Combine(proj, "NoSuch.dll")}'", bad.Err.Trim());
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    sealed record Result(string What, int Code, string Out, string Err)
    {
        public Result Ok()
        {
            Assert.True(Code == 0, ToString());
            return this;
        }

        public override string ToString() => $"{What} -> exit {Code}\n--- stdout\n{Out}\n--- stderr\n{Err}";
    }

    static Result Dotnet(string cwd, Dictionary<string, string>? env, params string[] args) =>
        Run(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet", cwd, env, args);

    static Result Run(string exe, string cwd, Dictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // The test host inherits MSBuild/VSTest variables from `dotnet test`; a nested build must not see them.
        foreach (var key in psi.Environment.Keys.ToArray())
            if (key.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || key.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase))
                psi.Environment.Remove(key);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        psi.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        if (env != null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(StepTimeout))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{exe} {string.Join(' ', args)} did not finish within {StepTimeout.TotalMinutes} min");
        }
        p.WaitForExit();
        return new Result($"{Path.GetFileName(exe)} {string.Join(' ', args)} (in {cwd})", p.ExitCode, stdout.Result, stderr.Result);
    }

    static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "MmuSim.sln"))) return d.FullName;
        throw new InvalidOperationException("MmuSim.sln not found above " + AppContext.BaseDirectory);
    }
}
