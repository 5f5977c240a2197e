using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Scenarios;

public class LoaderTests
{
    const string Full = """
        name: everything
        description: every field of the format
        era: 4.19
        max_steps: 5000
        pct_depth: 4
        mutations: skip-tlb-flush
        checks: [stale-translation, freed-page-reachable]
        costs: { fault: 300, tlb-flush-remote: 700, Ipi: 2000 }
        processes:
          - name: p
            vmas:
              - { start: 0x100000, len: 16K, prot: rw, flags: [mergeable, hugepage], contents: [1, _, 3] }
              - { start: 0x200000, len: 8K, prot: r }
              - start: 0x300000
                len: 12K
                contents: { distinct: 0x40, pages: 2 }
          - name: q
            vmas:
              - { start: 0x100000, len: 4K, contents: 0x99 }
        setup:
          - record: { process: p, name: rec }
        threads:
          - name: cpu0
            process: p
            ops:
              - read: { addr: 0x100000, as: first }
              - write: { addr: 0x101000, value: 7 }
              - fault: { addr: 0x102000, write: true }
              - madvise: { addr: 0x100000, len: 8K, advice: dontneed }
          - name: cpu1
            ops:
              - expect-value: { process: q, addr: 0x100000, value: 0x99 }
              - signal: { event: go }
        daemons:
          - name: tick
            ops:
              - sleep: { ns: 1000 }
        expect:
          default: pass
          "3.6..4.12": stale-translation
          "<3.6": n/a
          6.10+: violation
        """;

    [Fact]
    public void ParsesEveryField()
    {
        var s = ScenarioLoader.Parse(Full, "full.yaml");
        Assert.Equal("everything", s.Name);
        Assert.Equal("every field of the format", s.Description);
        Assert.Equal("4.19", s.DefaultEra!.Name);
        Assert.Equal(5000, s.MaxSteps);
        Assert.Equal(4, s.PctDepth);
        Assert.Equal([Mutation.SkipTlbFlush], s.Mutations);
        Assert.Equal(["stale-translation", "freed-page-reachable"], s.Checks!);
        Assert.Equal([(CostKind.Fault, 300L), (CostKind.TlbFlushRemote, 700L), (CostKind.Ipi, 2000L)], s.Costs);

        Assert.Equal(["p", "q"], s.Processes.Select(p => p.Name));
        var v0 = s.Processes[0].Vmas[0];
        Assert.Equal((0x100000UL, 0x4000UL, Prot.ReadWrite, VmFlags.Mergeable | VmFlags.HugePage), (v0.Start, v0.Len, v0.Prot, v0.Flags));
        Assert.Equal([1UL, null, 3UL], v0.Contents);
        Assert.Equal(12, v0.Line);
        Assert.Equal(Prot.Read, s.Processes[0].Vmas[1].Prot);
        Assert.Empty(s.Processes[0].Vmas[1].Contents);
        Assert.Equal([0x40UL, 0x41UL], s.Processes[0].Vmas[2].Contents);
        Assert.Equal([0x99UL], s.Processes[1].Vmas[0].Contents);

        Assert.Equal("record", Assert.Single(s.Setup).Spec.Name);
        Assert.Equal(["cpu0", "cpu1"], s.Threads.Select(t => t.Name));
        var ops = s.Threads[0].Ops;
        Assert.Equal(["read", "write", "fault", "madvise"], ops.Select(o => o.Spec.Name));
        Assert.Equal("p", ops[0].Args.GetString("process")); // the thread's process is the default
        Assert.Equal(0x100000UL, ops[0].Args.GetAddress("addr"));
        Assert.Equal(26, ops[0].Args.Line);
        Assert.True(ops[2].Args.GetBool("write"));
        Assert.Equal("q", s.Threads[1].Ops[0].Args.GetString("process"));
        var d = Assert.Single(s.Daemons);
        Assert.True(d.Daemon);
        Assert.Equal("sleep", d.Ops[0].Spec.Name);
    }

    [Theory]
    [InlineData("2.6.27", "n/a")]
    [InlineData("3.6", "stale-translation")]
    [InlineData("4.12", "stale-translation")]
    [InlineData("4.13", "pass")]
    [InlineData("6.8", "pass")]
    [InlineData("6.10", "violation")]
    [InlineData("6.13", "violation")]
    public void ExpectationPerEra(string era, string expected)
    {
        var s = ScenarioLoader.Parse(Full, "full.yaml");
        Assert.Equal(expected, s.ExpectedIn(EraTable.Get(era)).ToString());
    }

    [Fact]
    public void ExpectationMatching()
    {
        var stale = new Violation(Invariants.StaleTranslation, "m", 0, "c", "f", 1);
        Assert.True(ExpectedOutcome.Pass.Matches(null));
        Assert.False(ExpectedOutcome.Pass.Matches(stale));
        Assert.True(new ExpectedOutcome(ExpectKind.Violation, Invariants.StaleTranslation).Matches(stale));
        Assert.False(new ExpectedOutcome(ExpectKind.Violation, Invariants.LostWrite).Matches(stale));
        Assert.False(new ExpectedOutcome(ExpectKind.Violation, Invariants.LostWrite).Matches(null));
        Assert.True(new ExpectedOutcome(ExpectKind.Violation).Matches(stale));
    }

    [Theory]
    [InlineData("4.19", "4.19", true)]
    [InlineData("4.19", "4.15", false)]
    [InlineData("3.6..4.12", "3.19", true)]
    [InlineData("3.6..4.12", "4.13", false)]
    [InlineData("..3.7", "2.6.32", true)]
    [InlineData("4.13+", "6.13", true)]
    [InlineData(">=4.13", "4.12", false)]
    [InlineData("<3.6", "3.6", false)]
    [InlineData("<=3.6", "3.6", true)]
    [InlineData("2.6.32, 6.10+", "6.13", true)]
    [InlineData("2.6.32, 6.10+", "4.19", false)]
    [InlineData("4.13+", "4.13-rc1", false)]
    [InlineData("<4.13", "4.13-rc1", true)]
    [InlineData("4.13-rc1", "4.13-rc1", true)]
    [InlineData("4.13-rc1", "4.13", false)]
    [InlineData("3.6..4.12", "4.13-rc1", false)]
    public void EraSets(string set, string era, bool contains)
    {
        var s = EraSet.TryParse(set, out var err);
        Assert.Null(err);
        Assert.Equal(contains, s!.Contains(EraTable.Get(era)));
    }

    [Fact]
    public void EraSetRejectsUnknownEndpoints()
    {
        Assert.Null(EraSet.TryParse("3.6..4.11", out var err));
        Assert.Equal("4.11", err);
    }

    [Fact]
    public void BuiltInsLoadAndAreNamedAfterTheirFile()
    {
        Assert.NotEmpty(ScenarioLoader.BuiltInNames);
        foreach (var n in ScenarioLoader.BuiltInNames)
        {
            var s = ScenarioLoader.LoadBuiltIn(n);
            Assert.Equal(n, s.Name);
            Assert.Equal($"builtin/{n}.yaml", s.File);
            Assert.False(string.IsNullOrWhiteSpace(s.Description));
        }
    }

    [Fact]
    public void ForkChildrenAndMmapRangesCountAsKnown()
    {
        // A process created by an op with a `child` field, and an address that only an mmap op maps, both load.
        var yaml = """
            name: t
            processes:
              - name: p
            threads:
              - name: a
                process: p
                ops:
                  - mmap: { addr: 0x500000, len: 8K, prot: rw, flags: hugepage }
                  - write: { addr: 0x501000, value: 1 }
            """;
        var s = ScenarioLoader.Parse(yaml, "t.yaml");
        Assert.Equal(2, s.Threads[0].Ops.Count);
        var bad = yaml.Replace("0x501000", "0x502000");
        var e = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(bad, "t.yaml"));
        Assert.Equal((9, "write.addr"), (e.Line, e.Field));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("9")]
    [InlineData("deep")]
    public void PctDepthOutOfRangeNamesLineAndField(string value)
    {
        var yaml = $"name: t\npct_depth: {value}\nthreads:\n  - name: a\n    ops: [ {{ sleep: {{ ns: 1 }} }} ]\n";
        var e = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(yaml, "t.yaml"));
        Assert.Equal((2, "pct_depth"), (e.Line, e.Field));
    }

    [Fact]
    public void DuplicateThreadNamesAreRejected()
    {
        var yaml = """
            name: t
            threads:
              - name: a
                ops: [ { sleep: { ns: 1 } } ]
              - name: a
                ops: [ { sleep: { ns: 1 } } ]
            """;
        var e = Assert.Throws<ScenarioException>(() => ScenarioLoader.Parse(yaml, "t.yaml"));
        Assert.Equal((5, "threads[1].name"), (e.Line, e.Field));
    }

    public static IEnumerable<object[]> RoundTripCases() =>
        ScenarioLoader.BuiltInNames.Select(n => new object[] { n }).Append(["<full>"]);

    [Theory]
    [MemberData(nameof(RoundTripCases))]
    public void WriteThenLoadRoundTrips(string name)
    {
        var s1 = name == "<full>" ? ScenarioLoader.Parse(Full, "full.yaml") : ScenarioLoader.LoadBuiltIn(name);
        var yaml = ScenarioWriter.ToYaml(s1);
        var s2 = ScenarioLoader.Parse(yaml, "written.yaml");
        Assert.Equal(yaml, ScenarioWriter.ToYaml(s2)); // canonical form is a fixed point

        Assert.Equal((s1.Name, s1.Description, s1.DefaultEra, s1.MaxSteps, s1.PctDepth), (s2.Name, s2.Description, s2.DefaultEra, s2.MaxSteps, s2.PctDepth));
        Assert.Equal(s1.Mutations, s2.Mutations);
        Assert.Equal(s1.Checks, s2.Checks);
        Assert.Equal(s1.Costs, s2.Costs);
        Assert.Equal(s1.Processes.Select(p => (p.Name, p.Vmas.Count)), s2.Processes.Select(p => (p.Name, p.Vmas.Count)));
        foreach (var (a, b) in s1.Processes.SelectMany(p => p.Vmas).Zip(s2.Processes.SelectMany(p => p.Vmas)))
        {
            Assert.Equal((a.Start, a.Len, a.Prot, a.Flags), (b.Start, b.Len, b.Prot, b.Flags));
            Assert.Equal(a.Contents, b.Contents);
        }
        static string Ops(IEnumerable<OpCall> ops) =>
            string.Join(";", ops.Select(o => o.Spec.Name + "{" + string.Join(",", o.Args.Keys.Select(k => k + "=" + o.Args.GetString(k))) + "}"));
        Assert.Equal(Ops(s1.Setup), Ops(s2.Setup));
        Assert.Equal(s1.Threads.Select(t => t.Name + ":" + Ops(t.Ops)), s2.Threads.Select(t => t.Name + ":" + Ops(t.Ops)));
        Assert.Equal(s1.Daemons.Select(t => t.Name + ":" + Ops(t.Ops)), s2.Daemons.Select(t => t.Name + ":" + Ops(t.Ops)));
        foreach (var era in EraTable.All) Assert.Equal(s1.ExpectedIn(era), s2.ExpectedIn(era));

        if (name != "<full>")
        {
            var e = s1.EraOrDefault(null);
            var r1 = ScenarioRunner.Run(s1, e, new RandomStrategy(5));
            var r2 = ScenarioRunner.Run(s2, e, new RandomStrategy(5));
            // Violations name the op's file:line, which differs between the two texts.
            static string Unplaced(string s) => System.Text.RegularExpressions.Regex.Replace(s, @"\S+\.yaml:\d+: ", "");
            Assert.Equal(Unplaced(r1.Summary), Unplaced(r2.Summary));
        }
    }
}
