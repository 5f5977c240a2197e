namespace MmuSim.Tests.Cli;

/// <summary>Runs the mmusim CLI in-process with captured stdout/stderr, and writes scenario files to a temp dir.</summary>
public static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = MmuSim.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static readonly string Dir = Directory.CreateTempSubdirectory("mmusim-tests-").FullName;

    /// <summary>Write <paramref name="yaml"/> to a fresh file; returns its path.</summary>
    public static string WriteScenario(string yaml, string? name = null)
    {
        var path = Path.Combine(Dir, (name ?? Guid.NewGuid().ToString("N")) + ".yaml");
        File.WriteAllText(path, yaml.ReplaceLineEndings("\n"));
        return path;
    }
}
