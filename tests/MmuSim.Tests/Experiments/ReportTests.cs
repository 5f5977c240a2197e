using System.Diagnostics;
using System.Text.RegularExpressions;
using MmuSim.Cli.Report;
using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Experiments;

/// <summary>Real headless Chromium (Debian package <c>chromium</c>); tests using it are skipped when it is absent.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public static string? Path { get; } =
        new[] { Environment.GetEnvironmentVariable("MMUSIM_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser" }
            .FirstOrDefault(p => !string.IsNullOrEmpty(p) && File.Exists(p));

    public ChromiumFactAttribute()
    {
        if (Path == null) Skip = "chromium is not installed (apt-get install -y chromium)";
    }
}

public class ReportTests
{
    static string NewDir() => Directory.CreateTempSubdirectory("mmusim-report-").FullName;

    /// <summary>An experiment JSON, a history JSON and a mutants JSON made by the real commands, small budgets.</summary>
    static (string Exp, string Hist, string Mut) Inputs(string dir)
    {
        var (c, exp, _) = Run("experiment", WriteScenario(ExperimentTests.Small), "--json");
        Assert.Equal(0, c);
        var (_, hist, _) = Run("history", "--json", "--scenarios", "c,b", "--eras", "2.6.32,4.10,4.13", "-n", "20");
        var (_, mut, _) = Run("mutants", "--json", "--scenario", "kvm-fault-vs-invalidate", "--mutant", "kvm-no-retry-check,kvm-no-zap-on-start", "-n", "50");
        string e = Path.Combine(dir, "exp.json"), h = Path.Combine(dir, "history.json"), m = Path.Combine(dir, "mutants.json");
        File.WriteAllText(e, exp);
        File.WriteAllText(h, hist);
        File.WriteAllText(m, mut);
        return (e, h, m);
    }

    static string Chromium(string userDir, params string[] args)
    {
        var psi = new ProcessStartInfo(ChromiumFactAttribute.Path!)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + userDir,
                     "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000" })
            psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(120_000), "chromium did not finish in 120 s");
        Assert.Equal(0, p.ExitCode);
        // Console messages of the page: Chromium logs them as ...:CONSOLE(line)] "text", source: ...
        var console = stderr.Result.Split('\n').Where(l => l.Contains(":CONSOLE", StringComparison.Ordinal) || l.Contains("Uncaught", StringComparison.Ordinal)).ToList();
        Assert.True(console.Count == 0, "console output: " + string.Join("\n", console));
        return stdout.Result;
    }

    [Fact]
    public void Page_IsSelfContained_HasEverySection()
    {
        var dir = NewDir();
        var (e, h, m) = Inputs(dir);
        var (code, outText, err) = Run("report", "--out", dir, "--experiment", e, "--history", h, "--mutants", m, "--bench", "../../../../../bench/realkvm/output-6.18.txt");
        Assert.True(code == 0, err);
        Assert.StartsWith("wrote ", outText);
        var html = File.ReadAllText(Path.Combine(dir, "index.html"));
        Assert.Contains("<h2>History matrix</h2>", html);
        Assert.Contains("thp-invalidate-page", html);
        Assert.Contains("<h2>Experiment small-change-pte</h2>", html);
        Assert.Contains("<b>Costs used:</b> defaults (calibrated", html);
        Assert.Matches(new Regex(@"<p id=""mutation-score"">\d of 2 mutants killed"), html);
        Assert.Contains("<h2>Benchmark figures</h2>", html);
        Assert.Contains("kvm_faults: kernel 6.18", html);
        // No network at view time: no script or stylesheet is loaded from anywhere.
        Assert.DoesNotMatch(new Regex(@"<script[^>]+src=|<link[^>]+href=", RegexOptions.IgnoreCase), html);
        Assert.Contains("vegaEmbed", html);
        Assert.Equal(2, Regex.Matches(html, @"<div class=""plot"" id=""plot-\d+""").Count);
    }

    [ChromiumFact]
    public void Chromium_LoadsThePage_NoConsoleErrors_EveryPlotRenders_Screenshot()
    {
        var dir = NewDir();
        var (e, h, m) = Inputs(dir);
        Assert.Equal(0, Run("report", "--out", dir, "--experiment", e, "--history", h, "--mutants", m).Code);
        string page = new Uri(Path.Combine(dir, "index.html")).AbsoluteUri;
        string dom = Chromium(Directory.CreateTempSubdirectory("mmusim-chromium-").FullName, "--dump-dom", page);
        Assert.Contains("data-plots-done=\"yes\"", dom);
        Assert.Contains("data-plots-rendered=\"2\"", dom);
        Assert.Matches(new Regex(@"<pre id=""report-errors"" hidden=""""></pre>"), dom);
        foreach (var id in new[] { "plot-0", "plot-1" })
        {
            var div = Regex.Match(dom, $@"<div class=""plot[^""]*"" id=""{id}""[^>]*>(.*?)</div>", RegexOptions.Singleline);
            Assert.True(div.Success, $"{id} missing from the DOM");
            Assert.Contains("<svg", div.Groups[1].Value);
            Assert.Contains("<path", div.Groups[1].Value); // the line marks were drawn
        }
        // The screenshot goes into the test output (and, with MMUSIM_REPORT_SCREENSHOT=PATH, to PATH for the docs).
        string shot = Path.Combine(AppContext.BaseDirectory, "report-screenshot.png");
        Chromium(Directory.CreateTempSubdirectory("mmusim-chromium-").FullName, "--screenshot=" + shot, "--window-size=1280,2200", "--hide-scrollbars", page);
        var bytes = File.ReadAllBytes(shot);
        Assert.True(bytes.Length > 10_000);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
        if (Environment.GetEnvironmentVariable("MMUSIM_REPORT_SCREENSHOT") is { Length: > 0 } docs) File.Copy(shot, docs, true);
    }

    [Fact]
    public void BadInputs_Exit2_OneLine()
    {
        var dir = NewDir();
        var bad = Path.Combine(dir, "bad.json");
        File.WriteAllText(bad, "{\n  \"eras\": [1,\n");
        var (code, _, err) = Run("report", "--out", dir, "--history", bad);
        Assert.Equal(2, code);
        Assert.Matches(new Regex($"^{Regex.Escape(bad)}:\\d+: json: .+\n$"), err);
        var wrong = Path.Combine(dir, "wrong.json");
        File.WriteAllText(wrong, "{\"cells\": 5}");
        (code, _, err) = Run("report", "--out", dir, "--history", wrong);
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: --history: not the output of mmusim history --json", err);
        (code, _, err) = Run("report", "--out", dir);
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: report: nothing to report", err);
        (code, _, err) = Run("report", "--history", wrong);
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: --out: give the directory", err);
        (code, _, err) = Run("report", "--out", dir, "--experiment", Path.Combine(dir, "missing.json"));
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: --experiment: no such file", err);
    }
}
