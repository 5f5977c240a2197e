using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;
using MmuSim.Eras;

namespace MmuSim.Scenarios;

/// <summary>How one ported selftest case ended in one era.</summary>
public enum SelftestStatus
{
    /// <summary>The outcome is the one the scenario declares for the era (upstream's assertion holds, or the era's known bug is reproduced).</summary>
    Pass,
    /// <summary>The outcome differs from the declaration.</summary>
    Fail,
    /// <summary>The scenario declares the era n/a (the kernel interface did not exist).</summary>
    Skip,
    /// <summary>The model threw: a bug in MmuSim, not in the kernel it models.</summary>
    Error,
}

/// <summary>One (scenario, era) point of a selftest suite run.</summary>
public sealed record SelftestCase(string Scenario, string Description, string Era, SelftestStatus Status, string Expected, string Outcome, TimeSpan Elapsed)
{
    /// <summary>The upstream file the port belongs to (<c>selftests/cow</c> for <c>selftests/cow/iouring-fork-base</c>).</summary>
    public string Group => Scenario.LastIndexOf('/') is var i and > 0 ? Scenario[..i] : "";
}

/// <summary>The result of <see cref="SelftestSuite.Run"/>, in (scenario, era) order.</summary>
public sealed record SelftestReport(IReadOnlyList<SelftestCase> Cases, TimeSpan Elapsed)
{
    public int Count(SelftestStatus s)
    {
        int n = 0;
        foreach (var c in Cases) if (c.Status == s) n++;
        return n;
    }
}

/// <summary>
/// The ported upstream selftests (built-in scenarios under <c>selftests/</c>, or the scenario files of a folder) run as a
/// suite, one plain simulation per (scenario, era), each compared with what the scenario declares for that era, with
/// text, TAP version 13 and JUnit XML output for a kernel CI (issue 13 item 6, issue 12 "run the suites under 6.13 and
/// under the oldest era where each feature exists").
/// </summary>
public static class SelftestSuite
{
    /// <summary>The default eras of a scenario: the default era (6.13) and the oldest era in which the scenario applies.</summary>
    public static IReadOnlyList<KernelEra> DefaultEras(Scenario s)
    {
        var eras = new List<KernelEra> { EraTable.Default };
        foreach (var e in EraTable.All)
        {
            if (s.ExpectedIn(e).Kind == ExpectKind.NotApplicable) continue;
            if (e.Name != EraTable.Default.Name) eras.Insert(0, e);
            break;
        }
        return eras;
    }

    /// <summary>
    /// Run every scenario in each of its eras (<paramref name="eras"/>, or <see cref="DefaultEras"/> when null), on up to
    /// <paramref name="parallelism"/> cores; each run is one deterministic plain simulation with seed 1.
    /// </summary>
    public static SelftestReport Run(IReadOnlyList<Scenario> scenarios, IReadOnlyList<KernelEra>? eras, int parallelism = 1,
        IReadOnlyList<Mutation>? mutations = null)
    {
        var sw = Stopwatch.StartNew();
        var points = new List<(Scenario S, KernelEra E)>();
        foreach (var s in scenarios)
            foreach (var e in eras ?? DefaultEras(s)) points.Add((s, e));
        var cases = new SelftestCase[points.Count];
        Parallel.For(0, points.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, parallelism) },
            i => cases[i] = RunOne(points[i].S, points[i].E, mutations ?? []));
        return new SelftestReport(cases, sw.Elapsed);
    }

    static SelftestCase RunOne(Scenario s, KernelEra e, IReadOnlyList<Mutation> mutations)
    {
        var expected = s.ExpectedIn(e);
        string desc = FirstSentence(s.Description);
        if (expected.Kind == ExpectKind.NotApplicable)
            return new SelftestCase(s.Name, desc, e.Name, SelftestStatus.Skip, "n/a", "n/a", TimeSpan.Zero);
        var sw = Stopwatch.StartNew();
        try
        {
            var r = ScenarioRunner.Run(s, e, null, new RunOptions { Mutations = mutations });
            string outcome = r.Violation == null ? "pass" : r.Violation.ToString();
            return new SelftestCase(s.Name, desc, e.Name, r.MatchesExpectation ? SelftestStatus.Pass : SelftestStatus.Fail,
                expected.ToString(), outcome, sw.Elapsed);
        }
        catch (ScenarioException)
        {
            throw; // bad input stays a one-line exit-2 error
        }
        catch (Exception ex) when (ex.InnerException is not ScenarioException)
        {
            return new SelftestCase(s.Name, desc, e.Name, SelftestStatus.Error, expected.ToString(),
                $"internal model error: {ex.GetType().Name}: {ex.Message}", sw.Elapsed);
        }
    }

    static string FirstSentence(string description)
    {
        var d = description.Trim().Replace('\n', ' ');
        int dot = d.IndexOf(". ", StringComparison.Ordinal);
        return dot > 0 ? d[..(dot + 1)] : d;
    }

    /// <summary>One line per case (<c>PASS selftests/cow/x @ 6.13</c>), then a summary per upstream file and in all.</summary>
    public static string ToText(SelftestReport r)
    {
        var sb = new StringBuilder();
        foreach (var c in r.Cases)
        {
            sb.Append(c.Status switch { SelftestStatus.Pass => "PASS ", SelftestStatus.Fail => "FAIL ", SelftestStatus.Skip => "SKIP ", _ => "ERROR" })
              .Append(' ').Append(c.Scenario).Append(" @ ").Append(c.Era);
            if (c.Status == SelftestStatus.Pass && c.Expected != "pass") sb.Append(" (the era's declared outcome: ").Append(c.Expected).Append(')');
            if (c.Status is SelftestStatus.Fail or SelftestStatus.Error) sb.Append(": expected ").Append(c.Expected).Append(", got ").Append(OneLine(c.Outcome));
            sb.Append('\n');
        }
        sb.Append('\n');
        foreach (var g in r.Cases.GroupBy(c => c.Group))
            sb.Append(Summary(g.Key + "/", g.ToList())).Append('\n');
        sb.Append(Summary("total", r.Cases)).Append(CultureInfo.InvariantCulture, $" in {r.Elapsed.TotalSeconds:0.0} s\n");
        return sb.ToString();
    }

    static string Summary(string what, IReadOnlyCollection<SelftestCase> cs) =>
        $"{what}: {cs.Count} cases, {cs.Count(c => c.Status == SelftestStatus.Pass)} passed, {cs.Count(c => c.Status == SelftestStatus.Fail)} failed, " +
        $"{cs.Count(c => c.Status == SelftestStatus.Skip)} skipped (n/a), {cs.Count(c => c.Status == SelftestStatus.Error)} model errors";

    /// <summary>TAP version 13, one point per (scenario, era); n/a is <c># SKIP</c>; a failure carries a YAML block.</summary>
    public static string ToTap(SelftestReport r)
    {
        var sb = new StringBuilder("TAP version 13\n");
        sb.Append("1..").Append(r.Cases.Count).Append('\n');
        for (int i = 0; i < r.Cases.Count; i++)
        {
            var c = r.Cases[i];
            bool ok = c.Status is SelftestStatus.Pass or SelftestStatus.Skip;
            sb.Append(ok ? "ok " : "not ok ").Append(i + 1).Append(" - ").Append(c.Scenario).Append(" @ ").Append(c.Era);
            if (c.Status == SelftestStatus.Skip) sb.Append(" # SKIP n/a in this era");
            sb.Append('\n');
            if (!ok)
            {
                sb.Append("  ---\n");
                sb.Append("  expected: ").Append(Json(c.Expected)).Append('\n');
                sb.Append("  got: ").Append(Json(OneLine(c.Outcome))).Append('\n');
                sb.Append("  upstream: ").Append(Json(c.Description)).Append('\n');
                sb.Append("  ...\n");
            }
        }
        return sb.ToString();
    }

    /// <summary>JUnit XML: one <c>testsuite</c> per upstream file, one <c>testcase</c> per (scenario, era).</summary>
    public static string ToJUnit(SelftestReport r)
    {
        var root = new XElement("testsuites",
            new XAttribute("name", "mmusim selftests"),
            new XAttribute("tests", r.Cases.Count),
            new XAttribute("failures", r.Count(SelftestStatus.Fail)),
            new XAttribute("errors", r.Count(SelftestStatus.Error)),
            new XAttribute("skipped", r.Count(SelftestStatus.Skip)),
            new XAttribute("time", Seconds(r.Elapsed)));
        foreach (var g in r.Cases.GroupBy(c => c.Group))
        {
            var list = g.ToList();
            var suite = new XElement("testsuite",
                new XAttribute("name", g.Key),
                new XAttribute("tests", list.Count),
                new XAttribute("failures", list.Count(c => c.Status == SelftestStatus.Fail)),
                new XAttribute("errors", list.Count(c => c.Status == SelftestStatus.Error)),
                new XAttribute("skipped", list.Count(c => c.Status == SelftestStatus.Skip)));
            foreach (var c in list)
            {
                var tc = new XElement("testcase", new XAttribute("classname", c.Scenario), new XAttribute("name", c.Era),
                    new XAttribute("time", Seconds(c.Elapsed)));
                switch (c.Status)
                {
                    case SelftestStatus.Fail:
                        tc.Add(new XElement("failure", new XAttribute("message", $"expected {c.Expected}, got {OneLine(c.Outcome)}"), c.Description));
                        break;
                    case SelftestStatus.Error:
                        tc.Add(new XElement("error", new XAttribute("message", OneLine(c.Outcome))));
                        break;
                    case SelftestStatus.Skip:
                        tc.Add(new XElement("skipped", new XAttribute("message", "n/a in this era")));
                        break;
                }
                suite.Add(tc);
            }
            root.Add(suite);
        }
        return "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n" + root + "\n";
    }

    /// <summary>JSON: one record per case.</summary>
    public static string ToJson(SelftestReport r)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("format", "mmusim-selftests");
            w.WriteNumber("version", 1);
            w.WriteNumber("cases", r.Cases.Count);
            w.WriteNumber("passed", r.Count(SelftestStatus.Pass));
            w.WriteNumber("failed", r.Count(SelftestStatus.Fail));
            w.WriteNumber("skipped", r.Count(SelftestStatus.Skip));
            w.WriteNumber("errors", r.Count(SelftestStatus.Error));
            w.WriteStartArray("results");
            foreach (var c in r.Cases)
            {
                w.WriteStartObject();
                w.WriteString("scenario", c.Scenario);
                w.WriteString("era", c.Era);
                w.WriteString("status", c.Status.ToString().ToLowerInvariant());
                w.WriteString("expected", c.Expected);
                w.WriteString("outcome", c.Outcome);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    static string OneLine(string s) => s.Replace('\n', ' ').Replace('\r', ' ');
    static string Json(string s) => JsonSerializer.Serialize(s);
    static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture);
}
