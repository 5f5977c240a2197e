using MmuSim.Scenarios;
using Spectre.Console;

namespace MmuSim.Cli;

/// <summary>Prints a run: outcome, expectation, violation report with each CPU's last steps, counters, reports.</summary>
public static class ResultPrinter
{
    public const string RunFormat = "mmusim-run", ReplayFormat = "mmusim-replay";

    /// <summary>
    /// <c>mmusim run --json</c> / <c>mmusim replay --json</c>: format, version, then the run's members in a fixed order
    /// (schema in docs/campaigns.md); <paramref name="extra"/> adds the command's own members after <c>schedule</c>.
    /// </summary>
    public static string ToJson(string format, RunResult r, string schedule, Action<System.Text.Json.Utf8JsonWriter>? extra = null) =>
        Explore.ExploreJson.Document(w =>
        {
            w.WriteString("format", format);
            w.WriteNumber("version", Explore.ExploreJson.Version);
            w.WriteString("scenario", r.Scenario.Name);
            w.WriteString("file", r.Scenario.File);
            w.WriteString("era", r.Era.Name);
            w.WriteStartArray("mutations");
            foreach (var m in r.Mutations) w.WriteStringValue(Mutations.NameOf(m));
            w.WriteEndArray();
            w.WriteString("schedule", schedule);
            extra?.Invoke(w);
            w.WriteString("outcome", r.Violation == null ? "pass" : "violation");
            if (r.Violation is { } v) Explore.ExploreJson.WriteViolation(w, v); else w.WriteNull("violation");
            w.WriteString("expected", r.Expected.ToString());
            w.WriteBoolean("matches_expectation", r.MatchesExpectation);
            w.WriteNumber("simulated_ns", r.SimulatedNs);
            w.WriteNumber("steps", r.Steps);
            w.WriteNumber("decisions", r.Decisions.Length);
            w.WriteNumber("preemptions", r.Preemptions);
            w.WriteStartObject("observed");
            foreach (var (k, val) in r.Observed.OrderBy(x => x.Key, StringComparer.Ordinal)) w.WriteString(k, $"0x{val:x}");
            w.WriteEndObject();
            w.WriteStartObject("counters");
            foreach (var (name, value) in r.Stats) w.WriteNumber(name, value);
            w.WriteEndObject();
        });

    public static void Print(CliContext cli, RunResult r, LastStepsSink? steps, string how)
    {
        var o = cli.Out;
        o.WriteLine($"scenario   {r.Scenario.Name} ({r.Scenario.File})");
        o.WriteLine($"era        {r.Era.Name}");
        o.WriteLine($"schedule   {how}");
        if (r.Mutations.Count > 0)
            o.WriteLine($"mutations  {string.Join(", ", r.Mutations.Select(Mutations.NameOf))}");
        o.WriteLine($"outcome    {(r.Violation == null ? "pass" : "VIOLATION " + r.Violation.Invariant)}");
        o.WriteLine($"expected   {r.Expected} -> {(r.MatchesExpectation ? "as expected" : "NOT AS EXPECTED")}");
        o.WriteLine($"simulated  {CliContext.FormatNs(r.SimulatedNs)}");
        o.WriteLine($"steps      {r.Steps} (decisions {r.Decisions.Length}, preemptions {r.Preemptions})");
        if (r.Violation is { } v)
        {
            o.WriteLine();
            o.WriteLine($"violation: {v.Invariant}");
            o.WriteLine($"  {v.Message}");
            o.WriteLine($"  at CPU{v.ContextId} ({v.ContextName}) in {v.Function}, step {v.Step}" +
                (v.Address != 0 ? $", address 0x{v.Address:x}" : "") + (v.Pfn >= 0 ? $", pfn 0x{v.Pfn:x}" : ""));
            var mem = r.Kernel.Mem;
            if (v.Pfn >= 0 && mem.IsValidPfn(v.Pfn))
            {
                ref var f = ref mem[v.Pfn];
                o.WriteLine($"  frame pfn 0x{v.Pfn:x}: refcount {f.RefCount}, mapcount {f.MapCount}, generation {f.Generation}, " +
                    $"flags {f.Flags}, contents 0x{f.Contents:x}");
            }
            if (v.Address != 0)
                foreach (var (name, mm) in r.World.Processes)
                {
                    if (mm.Exited) continue;
                    var (present, pfn, writable, dirty) = mm.Translate(v.Address);
                    o.WriteLine($"  {name} maps 0x{v.Address:x} -> " +
                        (present ? $"pfn 0x{pfn:x}{(writable ? " writable" : " read-only")}{(dirty ? " dirty" : "")}" : "nothing"));
                }
            if (steps != null)
            {
                o.WriteLine("last steps of each CPU:");
                steps.Write(o, r.Kernel.S);
            }
        }
        if (r.Observed.Count > 0)
        {
            o.WriteLine();
            o.WriteLine("observed:");
            foreach (var (k, val) in r.Observed.OrderBy(x => x.Key, StringComparer.Ordinal)) o.WriteLine($"  {k} = 0x{val:x}");
        }
        var stats = r.Stats;
        if (stats.Count > 0)
        {
            o.WriteLine();
            var t = new Table().Border(TableBorder.Simple).AddColumn("counter").AddColumn(new TableColumn("value").RightAligned());
            foreach (var (name, value) in stats) t.AddRow(Markup.Escape(name), value.ToString());
            cli.WriteTable(t);
        }
        foreach (var rep in r.Reports)
        {
            o.WriteLine();
            o.WriteLine(rep.ReportTitle);
            rep.Report(o);
        }
    }
}
