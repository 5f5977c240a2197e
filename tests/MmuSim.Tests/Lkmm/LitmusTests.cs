using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Lkmm;
using MmuSim.Scenarios;
using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Lkmm;

/// <summary>
/// The LKMM litmus tests (tools/memory-model/litmus-tests) ported as litmus/ scenarios: under --memory lkmm an
/// exhaustive search must agree with the result each file documents; under sc the weak outcomes must disappear.
/// </summary>
public class LitmusTests
{
    public static IEnumerable<object[]> Tests() => LitmusRunner.Names.Select(n => new object[] { n });

    [Fact]
    public void The_issue_s_twelve_tests_are_all_ported()
    {
        string[] required =
        [
            "MP+poonceonces", "MP+pooncerelease+poacquireonce", "MP+fencewmbonceonce+fencermbonceonce", "SB+poonceonces",
            "SB+fencembonceonces", "LB+poonceonces", "LB+fencembonceonce+ctrlonceonce", "LB+poacquireonce+pooncerelease",
            "WRC+poonceonces+Once", "WRC+pooncerelease+fencermbonceonce+Once", "ISA2+poonceonces",
            "ISA2+pooncerelease+poacquirerelease+poacquireonce",
        ];
        foreach (var t in required) Assert.Contains(LitmusRunner.Prefix + t, LitmusRunner.Names);
    }

    [Theory]
    [MemberData(nameof(Tests))]
    public void Lkmm_agrees_with_the_documented_result(string name)
    {
        var s = ScenarioLoader.LoadBuiltIn(name);
        Assert.Equal(MemoryModel.Lkmm, s.Memory);
        var row = LitmusRunner.Run(s);
        Assert.True(row.Complete, $"{name}: undecided after {row.Schedules} schedules");
        Assert.Equal(row.Documented, row.Found);
        Assert.True(row.Agrees);
    }

    [Theory]
    [InlineData("MP+poonceonces")]
    [InlineData("SB+poonceonces")]
    [InlineData("LB+poonceonces")]
    [InlineData("S+poonceonces")]
    [InlineData("WRC+poonceonces+Once")]
    [InlineData("IRIW+poonceonces+OnceOnce")]
    public void Under_sc_the_weak_outcome_never_happens(string test)
    {
        var row = LitmusRunner.Run(ScenarioLoader.LoadBuiltIn(LitmusRunner.Prefix + test), MemoryModel.Sc);
        Assert.Equal("Sometimes", row.Documented);
        Assert.Equal("Never", row.Found);
        Assert.False(row.Agrees);
    }

    [Fact]
    public void A_weak_outcome_replays_from_its_decision_log()
    {
        var s = ScenarioLoader.LoadBuiltIn("litmus/LB+poonceonces");
        var era = s.EraOrDefault(null);
        var report = new Explorer(new ScenarioExplorable(s, era), new ExploreOptions
        {
            Strategy = new StrategySpec { Kind = StrategyKind.Dfs, Preemptions = DporStrategy.Unbounded, Por = false },
            Iterations = 10_000,
        }).Run();
        var first = report.First ?? throw new Xunit.Sdk.XunitException("LB+poonceonces: no weak outcome found");
        Assert.Equal(ScenarioInvariants.LitmusExists, first.Violation.Invariant);
        Assert.Contains("0:r0=1 1:r0=1", first.Violation.Message);
        // The store hoisting and the load choices are data decisions in the log: the replay repeats the outcome.
        var replay = ScenarioRunner.Replay(s, era, first.Decisions);
        Assert.Equal(first.Violation.Invariant, replay.Violation?.Invariant);
        Assert.Equal(first.Violation.Message, replay.Violation!.Message);
    }

    [Fact]
    public void Litmus_command_prints_the_table_and_exits_zero_when_all_agree()
    {
        var (code, o, _) = Run("litmus", "MP+poonceonces", "SB+fencembonceonces", "LB+poonceonces");
        Assert.Equal(0, code);
        Assert.Matches(@"MP\+poonceonces\s+Sometimes\s+Sometimes\s+yes", o);
        Assert.Matches(@"SB\+fencembonceonces\s+Never\s+Never\s+yes", o);
        Assert.Matches(@"LB\+poonceonces\s+Sometimes\s+Sometimes\s+yes", o);
        Assert.Contains("3/3 agree", o);
    }

    [Fact]
    public void Litmus_command_under_sc_disagrees_and_exits_one()
    {
        var (code, o, _) = Run("litmus", "MP+poonceonces", "--memory", "sc");
        Assert.Equal(1, code);
        Assert.Matches(@"MP\+poonceonces\s+Sometimes\s+Never\s+NO", o);
    }

    [Theory]
    [InlineData(new[] { "litmus", "NoSuchTest" }, "mmusim: tests: no litmus test 'NoSuchTest'")]
    [InlineData(new[] { "litmus", "--memory", "tso" }, "mmusim: --memory: unknown memory model 'tso' (known: sc, lkmm)")]
    [InlineData(new[] { "explore", "cow-zero-page", "--memory", "x" }, "mmusim: --memory: unknown memory model 'x'")]
    public void Bad_command_lines_are_one_line_and_exit_two(string[] args, string message)
    {
        var (code, _, err) = Run(args);
        Assert.Equal(2, code);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith(message, err);
    }

    const string Litmus = """
        name: bad-litmus
        description: a litmus test with one defect
        memory: lkmm
        setup:
          - litmus.exists: { procs: 2, cond: '0:r0=1 /\ 1:r0=1' }
        threads:
          - name: P0
            ops:
              - litmus.thread: { proc: 0, code: 'r0 = READ_ONCE(x); WRITE_ONCE(y, 1)' }
          - name: P1
            ops:
              - litmus.thread: { proc: 1, code: 'r0 = READ_ONCE(y); WRITE_ONCE(x, 1)' }
        """;

    [Theory]
    [InlineData("memory: lkmm", "memory: tso", 3, "memory", "unknown memory model 'tso' (known: sc, lkmm)")]
    [InlineData("WRITE_ONCE(y, 1)", "WRITE_TWICE(y, 1)", 9, "litmus.thread.code", "'WRITE_TWICE(y, 1)' is not a litmus statement")]
    [InlineData("WRITE_ONCE(y, 1)", "WRITE_ONCE(y, q)", 9, "litmus.thread.code", "'q' is neither a number nor a register")]
    [InlineData("1:r0=1'", "2:r0=1'", 5, "litmus.exists.cond", "'2:r0=1' names process 2 of a 2-process test")]
    [InlineData("1:r0=1'", "1:r0'", 5, "litmus.exists.cond", "'1:r0' is not a term")]
    [InlineData("procs: 2", "procs: 9", 5, "litmus.exists.procs", "out of range")]
    [InlineData("proc: 1,", "proc: 8,", 12, "litmus.thread.proc", "out of range")]
    public void Bad_litmus_scenarios_are_file_line_errors(string from, string to, int line, string field, string message)
    {
        Assert.Contains(from, Litmus);
        AssertBadInput(Litmus.Replace(from, to), line, field, message);
    }

    [Fact]
    public void A_process_outside_the_declared_count_is_a_run_time_file_line_error()
    {
        var yaml = Litmus.Replace("procs: 2, cond: '0:r0=1 /\\ 1:r0=1'", "procs: 1, cond: '0:r0=1'");
        AssertBadInput(yaml, 12, "litmus.thread.proc", "process 1 of a 1-process test");
    }

    [Fact]
    public void Store_hoisting_respects_dependencies_fences_and_acquires()
    {
        static IReadOnlyList<LitmusStmt> P(string code) => LitmusProgram.Parse(code, out _)!;
        bool[] none = [false, false, false];
        Assert.True(LitmusProgram.MayHoist(P("r0 = READ_ONCE(x); WRITE_ONCE(y, 1)"), none, 1));
        Assert.False(LitmusProgram.MayHoist(P("r0 = READ_ONCE(x); if (r0) WRITE_ONCE(y, 1)"), none, 1));   // ctrl
        Assert.False(LitmusProgram.MayHoist(P("r0 = READ_ONCE(x); WRITE_ONCE(y, r0)"), none, 1));          // data
        Assert.False(LitmusProgram.MayHoist(P("r0 = READ_ONCE(x); smp_mb(); WRITE_ONCE(y, 1)"), none, 2));
        Assert.False(LitmusProgram.MayHoist(P("WRITE_ONCE(x, 1); smp_wmb(); WRITE_ONCE(y, 1)"), none, 2));
        Assert.True(LitmusProgram.MayHoist(P("r0 = READ_ONCE(x); smp_rmb(); WRITE_ONCE(y, 1)"), none, 2));   // rmb orders loads only
        Assert.False(LitmusProgram.MayHoist(P("r0 = smp_load_acquire(x); WRITE_ONCE(y, 1)"), none, 1));
        Assert.False(LitmusProgram.MayHoist(P("r0 = READ_ONCE(x); smp_store_release(y, 1)"), none, 1));    // a release never goes first
        Assert.False(LitmusProgram.MayHoist(P("r0 = READ_ONCE(x); WRITE_ONCE(x, 1)"), none, 1));           // same location
        Assert.True(LitmusProgram.MayHoist(P("r0 = READ_ONCE(x); r1 = READ_ONCE(x); WRITE_ONCE(y, r0)"), [true, false, false], 2));
    }
}
