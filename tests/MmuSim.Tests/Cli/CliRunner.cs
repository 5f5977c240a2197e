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

    /// <summary>A minimal valid scenario: one process with a 16K RW VMA and one thread reading it (11 lines).</summary>
    public const string MinimalScenario = """
        name: t
        processes:
          - name: p
            vmas:
              - { start: 0x100000, len: 16K, prot: rw }
        threads:
          - name: cpu0
            process: p
            ops:
              - read: { addr: 0x100000 }
        """;

    /// <summary>
    /// Write <paramref name="yaml"/>, run it, and assert the bad-input contract: exit 2, exactly one stderr line
    /// <c>file:line: field: message</c> containing <paramref name="messagePart"/>, and no stack trace.
    /// </summary>
    public static void AssertBadInput(string yaml, int line, string field, string messagePart)
    {
        var path = WriteScenario(yaml);
        var (code, _, err) = Run("run", path);
        Assert.Equal(2, code);
        Assert.DoesNotContain("   at ", err);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith($"{path}:{line}: {field}: ", lines[0]);
        Assert.Contains(messagePart, lines[0]);
    }

    /// <summary>A two-thread race: the reader expects the old value, the writer may run first (explore finds it).</summary>
    public const string RaceDemo = """
        name: race-demo
        description: the reader expects the old value; the writer may run first
        processes:
          - name: p
            vmas:
              - { start: 0x10000, len: 16K, prot: rw }
        setup:
          - write: { process: p, addr: 0x10000, value: 1 }
        threads:
          - name: writer
            process: p
            ops:
              - write: { addr: 0x10000, value: 7 }
          - name: reader
            process: p
            ops:
              - expect-value: { addr: 0x10000, value: 1 }
        expect: pass
        """;
}
