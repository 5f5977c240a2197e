using System.Diagnostics;
using Xunit.Abstractions;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// Runs one of the real-KVM programs of bench/realkvm on this machine's kernel: compiles it with cc and runs it.
/// Returns its output, or null after writing why the comparison was skipped (no /dev/kvm, no compiler, exit 77).
/// </summary>
public static class RealKvm
{
    public static string? Run(string program, ITestOutputHelper output)
    {
        if (!File.Exists("/dev/kvm"))
        {
            output.WriteLine("skipped: /dev/kvm is not present");
            return null;
        }
        string dir = Path.Combine(Path.GetTempPath(), "mmusim-realkvm-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        string exe = Path.Combine(dir, Path.GetFileNameWithoutExtension(program));
        var (ccRc, ccOut) = Exec("cc", $"-O2 -o {exe} {Path.Combine(RepoRoot(), "bench/realkvm", program)}");
        if (ccRc != 0)
        {
            output.WriteLine($"skipped: cc failed ({ccRc}): {ccOut}");
            return null;
        }
        var (rc, text) = Exec(exe, "");
        if (rc == 77)
        {
            output.WriteLine("skipped: " + text.Trim());
            return null;
        }
        Assert.True(rc == 0, $"{program} exited {rc}: {text}");
        return text;
    }

    static (int Rc, string Output) Exec(string file, string args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception e) { return (-1, e.Message); }
        using (p)
        {
            var so = p.StandardOutput.ReadToEndAsync();
            var se = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(120_000))
            {
                p.Kill();
                return (-1, "timeout");
            }
            return (p.ExitCode, so.Result + se.Result);
        }
    }

    /// <summary>The repository root (the directory holding MmuSim.sln above the test binary).</summary>
    public static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d != null && !File.Exists(Path.Combine(d.FullName, "MmuSim.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("MmuSim.sln not found above " + AppContext.BaseDirectory);
    }
}
