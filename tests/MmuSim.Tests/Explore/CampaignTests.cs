using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Tests.Cli;

namespace MmuSim.Tests.Explore;

/// <summary>
/// Sharded and resumable campaigns (issue 14 items 4, 5): N shards merged equal the unsharded run, a run resumed from a
/// checkpoint equals the uninterrupted one, in-process and as separate processes of the built CLI (SIGKILL included).
/// </summary>
public class CampaignTests
{
    /// <summary>The members whose values depend on the host (wall time): everything else must be identical.</summary>
    static readonly string[] TimingKeys = ["timing", "elapsed", "time_to_bug", "time"];

    /// <summary>The JSON text with its timing members removed, re-serialized in one fixed formatting.</summary>
    public static string WithoutTiming(string json)
    {
        var node = JsonNode.Parse(json)!;
        Strip(node);
        return node.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

        static void Strip(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o:
                    foreach (var k in TimingKeys) o.Remove(k);
                    foreach (var (_, v) in o) Strip(v);
                    break;
                case JsonArray a:
                    foreach (var v in a) Strip(v);
                    break;
            }
        }
    }

    static ScenarioExplorable Racy() =>
        new(ScenarioLoader.LoadBuiltIn("kvm-dontneed"), Eras.EraTable.Get("6.13"), [Mutation.KvmNoRetryCheck]);

    static ExploreOptions Options(bool all, int jobs = 1) => new()
    {
        Strategy = new StrategySpec { Kind = StrategyKind.Portfolio, Seed = 7 },
        Iterations = 150,
        All = all,
        Parallelism = jobs,
    };

    static string Config(IExplorable p, ExploreOptions o) => ExploreJson.Config(p.Info, "builtin/kvm-dontneed.yaml", o.Strategy, o);

    [Theory]
    [InlineData(false, 3)]
    [InlineData(true, 3)]
    [InlineData(false, 1)]
    [InlineData(true, 4)]
    public void ShardsMergedEqualTheUnshardedRun(bool all, int n)
    {
        var program = Racy();
        var o = Options(all);
        var whole = new Explorer(program, o).Run();
        Assert.True(whole.Violations > 0);
        string expected = ExploreJson.Result(Config(program, o), whole);

        var shards = new List<ExploreMerge.ShardResult>();
        for (int k = n; k >= 1; k--) // any order
        {
            var so = o with { Shard = new ShardSpec(k, n), RecordRuns = true, Parallelism = 2 };
            var r = new Explorer(program, so).Run();
            Assert.All(r.Records!.Iterations, i => Assert.Equal(k - 1, i % n));
            using var doc = JsonDocument.Parse(ExploreJson.Shard(Config(program, o), new ShardSpec(k, n), r));
            shards.Add(ExploreMerge.Read($"s{k}.json", doc.RootElement.Clone()));
        }
        var (merged, violation) = ExploreMerge.Merge(shards);
        Assert.True(violation);
        Assert.Equal(WithoutTiming(expected), WithoutTiming(merged));
        using var m = JsonDocument.Parse(merged);
        Assert.Equal(whole.Schedules, m.RootElement.GetProperty("result").GetProperty("schedules").GetInt32());
        Assert.Equal(whole.First!.Iteration, m.RootElement.GetProperty("result").GetProperty("counterexamples")[0].GetProperty("iteration").GetInt32());
    }

    [Fact]
    public void ShardsPartitionTheIterations()
    {
        for (int n = 1; n <= 5; n++)
        {
            var owner = new int[40];
            for (int k = 1; k <= n; k++)
            {
                var sh = new ShardSpec(k, n);
                for (int i = sh.FirstOwnedFrom(0); i < owner.Length; i = sh.FirstOwnedFrom(i + 1))
                {
                    Assert.True(sh.Owns(i));
                    Assert.Equal(0, owner[i]);
                    owner[i] = k;
                }
            }
            Assert.All(owner, o => Assert.InRange(o, 1, n));
        }
        Assert.Equal(7, new ShardSpec(2, 3).FirstOwnedFrom(5));
        Assert.Equal(4, new ShardSpec(2, 3).FirstOwnedFrom(4));
    }

    /// <summary>
    /// Every run violates; runs after the calibration round are ten times longer. Iteration 32 is slow, so one worker runs
    /// only it in round 1 and its portfolio members meet round 2 without having run round 1.
    /// </summary>
    sealed class SlowFirstRound : IExplorable
    {
        public ExplorableInfo Info { get; } = ExplorableInfo.Of("slow-first-round");

        public RunOutcome RunOnce(MmuSim.Sched.IStrategy strategy, int iteration, IRunObserver? observer = null)
        {
            if (iteration == Explorer.RoundSize) Thread.Sleep(300);
            var s = new MmuSim.Sched.Scheduler(strategy);
            int points = iteration < Explorer.RoundSize ? 2 : 20, done = 0;
            for (int c = 0; c < 2; c++)
                s.Spawn($"cpu{c}", async _ =>
                {
                    for (int i = 0; i < points; i++) await s.Point(MmuSim.Sched.PointKind.Counter);
                    if (++done == 2) s.Fail(MmuSim.Sched.Invariants.LostWrite, "planted");
                });
            var v = s.Run(iteration);
            return RunOutcome.Capture(s, v, keepLog: true);
        }
    }

    [Fact]
    public void TheStepBoundIsLearntFromTheCalibrationRoundWhateverWorkerRunsWhat()
    {
        var o = new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Portfolio, Seed = 3 }, Iterations = 96, All = true };
        var one = new Explorer(new SlowFirstRound(), o).Run();
        var two = new Explorer(new SlowFirstRound(), o with { Parallelism = 2 }).Run();
        Assert.Equal(96, one.Counterexamples.Count);
        // pct and delay members name their k: it must be the calibration round's, in every iteration, on any worker.
        Assert.Contains(one.Counterexamples, c => c.Strategy.Contains("k="));
        Assert.Equal(one.Counterexamples.Select(c => c.Strategy), two.Counterexamples.Select(c => c.Strategy));
    }

    [Fact]
    public void TheReportDoesNotDependOnTheNumberOfWorkers()
    {
        var program = Racy();
        var one = new Explorer(program, Options(false, 1)).Run();
        var two = new Explorer(program, Options(false, 2)).Run();
        // The first violation is not at a round boundary: results after it in its round are discarded, not counted.
        Assert.NotEqual(0, one.Schedules % Explorer.RoundSize);
        Assert.Equal((one.Schedules, one.TotalSteps, one.DistinctSchedules, one.First!.Iteration, one.First.Strategy),
            (two.Schedules, two.TotalSteps, two.DistinctSchedules, two.First!.Iteration, two.First.Strategy));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ResumingFromEveryCheckpointEqualsTheUninterruptedRun(bool all)
    {
        var program = new ScenarioExplorable(ScenarioLoader.LoadBuiltIn("kvm-dontneed"), Eras.EraTable.Get("6.13"));
        var o = Options(all) with { Iterations = 200 };
        if (all) { program = Racy(); o = o with { Iterations = 150 }; }
        string config = Config(program, o);
        var saved = new List<string>();
        var whole = new Explorer(program, o with { Checkpoint = c => saved.Add(ExploreJson.Checkpoint(config, c)), CheckpointEverySchedules = 32 }).Run();
        string expected = WithoutTiming(ExploreJson.Result(config, whole));
        Assert.True(saved.Count >= 3, $"{saved.Count} checkpoints");
        foreach (var text in saved)
        {
            var state = ExploreJson.ReadCheckpoint("ck.json", text, config);
            Assert.True(state.Next > 0 && state.Next < o.Iterations);
            var resumed = new Explorer(program, o with { Resume = state, Parallelism = 2 }).Run();
            Assert.Equal(expected, WithoutTiming(ExploreJson.Result(config, resumed)));
        }
    }

    [Fact]
    public void ACheckpointOfAnotherExplorationIsRefusedNamingTheField()
    {
        var program = Racy();
        var o = Options(true);
        string? saved = null;
        new Explorer(program, o with { Checkpoint = c => saved ??= ExploreJson.Checkpoint(Config(program, o), c), CheckpointEverySchedules = 32 }).Run();
        var e = Assert.Throws<ScenarioException>(() => ExploreJson.ReadCheckpoint("ck.json", saved!, Config(program, o with { Iterations = 99 })));
        Assert.Equal("ck.json:1: config: the checkpoint was written by a different exploration (iterations: 99 vs 150)", e.Message);
    }

    // ---- the CLI as separate processes ----

    static readonly string Dll = Path.Combine(AppContext.BaseDirectory, "mmusim.dll");

    static Process Start(string dir, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir };
        psi.ArgumentList.Add(Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    static (int Code, string Out, string Err) RunProcess(string dir, params string[] args)
    {
        using var p = Start(dir, args);
        var err = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, err.Result);
    }

    static string TempDir() => Directory.CreateTempSubdirectory("mmusim-campaign-").FullName;

    [Fact]
    public async Task ShardProcessesMergedByTheCliEqualTheUnshardedProcess()
    {
        string dir = TempDir();
        string[] args = ["explore", "kvm-dontneed", "--mutate", "kvm-no-retry-check", "-n", "120", "--seed", "3", "--all"];
        var whole = RunProcess(dir, [.. args, "--json"]);
        Assert.Equal(1, whole.Code);
        var procs = Enumerable.Range(1, 3).Select(k => (k, p: Start(dir, [.. args, "--shard", $"{k}/3"]))).ToList();
        foreach (var (k, p) in procs)
        {
            var err = p.StandardError.ReadToEndAsync();
            File.WriteAllText(Path.Combine(dir, $"shard{k}.json"), p.StandardOutput.ReadToEnd());
            await p.WaitForExitAsync();
            Assert.True(p.ExitCode is 0 or 1, await err);
            p.Dispose();
        }
        var merged = RunProcess(dir, "merge", "shard3.json", "shard1.json", "shard2.json");
        Assert.Equal(1, merged.Code);
        Assert.Equal(WithoutTiming(whole.Out), WithoutTiming(merged.Out));
        using var doc = JsonDocument.Parse(merged.Out);
        Assert.Equal(120, doc.RootElement.GetProperty("result").GetProperty("schedules").GetInt32());

        // A missing or duplicated shard, or one of another campaign: one line, exit 2.
        var missing = RunProcess(dir, "merge", "shard1.json", "shard3.json");
        Assert.Equal((2, "shard1.json:1: shard: missing shard 2/3 of this campaign\n"), (missing.Code, missing.Err));
        var dup = RunProcess(dir, "merge", "shard1.json", "shard2.json", "shard1.json");
        Assert.Equal((2, "shard1.json:1: shard.index: shard 1/3 is also shard1.json\n"), (dup.Code, dup.Err));
        var other = RunProcess(dir, [.. args.Select(a => a == "120" ? "60" : a), "--shard", "2/3"]);
        File.WriteAllText(Path.Combine(dir, "other2.json"), other.Out);
        var mismatch = RunProcess(dir, "merge", "shard1.json", "other2.json", "shard3.json");
        Assert.Equal((2, "other2.json:1: config: not the configuration of shard1.json (iterations: 120 vs 60)\n"), (mismatch.Code, mismatch.Err));
    }

    [Fact]
    public void AnExplorationKilledWithSigkillResumesToTheUninterruptedResult()
    {
        string dir = TempDir();
        string[] args = ["explore", "kvm-dontneed", "-n", "2500", "--seed", "5", "--json"];
        var whole = RunProcess(dir, args);
        Assert.Equal(0, whole.Code);

        string ck = Path.Combine(dir, "ck.json");
        using (var p = Start(dir, [.. args, "--checkpoint", ck, "--checkpoint-every", "64"]))
        {
            var sw = Stopwatch.StartNew();
            while (!File.Exists(ck) && !p.HasExited && sw.Elapsed < TimeSpan.FromMinutes(2)) Thread.Sleep(20);
            Assert.False(p.HasExited, "the run ended before it could be killed");
            p.Kill(); // SIGKILL
            p.WaitForExit();
            Assert.NotEqual(0, p.ExitCode);
        }
        using (var state = JsonDocument.Parse(File.ReadAllText(ck)))
        {
            int next = state.RootElement.GetProperty("next").GetInt32();
            Assert.InRange(next, 64, 2499);
        }
        var resumed = RunProcess(dir, [.. args, "--resume", ck]);
        Assert.Equal(0, resumed.Code);
        Assert.Contains("resuming from", resumed.Err);
        Assert.Equal(WithoutTiming(whole.Out), WithoutTiming(resumed.Out));

        // Resuming with other options is refused, naming the checkpoint and the difference.
        var wrong = RunProcess(dir, ["explore", "kvm-dontneed", "-n", "2500", "--seed", "6", "--json", "--resume", ck]);
        Assert.Equal(2, wrong.Code);
        Assert.StartsWith($"{ck}:1: config: the checkpoint was written by a different exploration (strategy: ", wrong.Err);
        Assert.Single(wrong.Err.TrimEnd('\n').Split('\n'));
    }

    // ---- history and mutants shards, and bad options (in-process CLI) ----

    [Fact]
    public void HistoryShardsMergeIntoTheUnshardedTable()
    {
        string dir = TempDir();
        string[] args = ["history", "--scenarios", "a,d1", "--eras", "2.6.32,4.13,6.13", "-n", "24", "-j", "1"];
        var whole = CliRunner.Run([.. args, "--json"]);
        var files = new List<string>();
        for (int k = 1; k <= 4; k++)
        {
            var s = CliRunner.Run([.. args, "--shard", $"{k}/4"]);
            Assert.True(s.Code is 0 or 1, s.Err);
            string f = Path.Combine(dir, $"h{k}.json");
            File.WriteAllText(f, s.Out);
            files.Add(f);
        }
        var merged = CliRunner.Run(["merge", .. files]);
        Assert.Equal(whole.Code, merged.Code);
        Assert.Equal(WithoutTiming(whole.Out), WithoutTiming(merged.Out));
        using var doc = JsonDocument.Parse(merged.Out);
        Assert.Equal(6, doc.RootElement.GetProperty("cells").GetArrayLength());
    }

    [Fact]
    public void MutantShardsMergeIntoTheUnshardedScore()
    {
        string dir = TempDir();
        string[] args = ["mutants", "--scenario", "kvm-dontneed", "--mutant", "kvm-no-retry-check,kvm-no-zap-on-start,kvm-hold-page-refs", "-n", "100"];
        var whole = CliRunner.Run([.. args, "--json"]);
        var files = new List<string>();
        for (int k = 1; k <= 2; k++)
        {
            var s = CliRunner.Run([.. args, "--shard", $"{k}/2"]);
            string f = Path.Combine(dir, $"m{k}.json");
            File.WriteAllText(f, s.Out);
            files.Add(f);
        }
        var merged = CliRunner.Run(["merge", files[1], files[0]]);
        Assert.Equal(whole.Code, merged.Code);
        Assert.Equal(WithoutTiming(whole.Out), WithoutTiming(merged.Out));
        using var doc = JsonDocument.Parse(merged.Out);
        Assert.Equal(["kvm-no-retry-check", "kvm-no-zap-on-start", "kvm-hold-page-refs"],
            doc.RootElement.EnumerateArray().Select(m => m.GetProperty("name").GetString()));
    }

    [Theory]
    [InlineData("explore", "0/3", "mmusim: --shard: '0/3': need 1 <= k <= N")]
    [InlineData("explore", "4/3", "mmusim: --shard: '4/3': need 1 <= k <= N")]
    [InlineData("explore", "two", "mmusim: --shard: 'two' is not k/N (e.g. 2/8)")]
    [InlineData("explore", "1/0", "mmusim: --shard: '1/0': need 1 <= k <= N")]
    [InlineData("history", "-1/2", "mmusim: --shard: '-1/2' is not k/N (e.g. 2/8)")]
    [InlineData("mutants", "3/2", "mmusim: --shard: '3/2': need 1 <= k <= N")]
    public void ABadShardIsOneLineAndExit2(string command, string shard, string message)
    {
        string[] args = command == "explore" ? [command, "kvm-dontneed", "--shard", shard] : [command, "--shard", shard];
        var (code, stdout, err) = CliRunner.Run(args);
        Assert.Equal((2, "", message + "\n"), (code, stdout, err));
    }

    [Theory]
    [InlineData(new[] { "-s", "dfs", "--shard", "1/2" }, "mmusim: --shard: not available with --strategy dfs (an exhaustive search runs in one piece)")]
    [InlineData(new[] { "-s", "dfs", "--checkpoint", "x.json" }, "mmusim: --checkpoint: not available with --strategy dfs (an exhaustive search runs in one piece)")]
    [InlineData(new[] { "--checkpoint", "x.json", "--checkpoint-every", "0" }, "mmusim: --checkpoint-every: must be at least 1 schedule, got 0")]
    [InlineData(new[] { "--checkpoint", "x.json", "--checkpoint-every", "soon" }, "mmusim: --checkpoint-every: 'soon' is not a duration (a number of schedules, or e.g. 30s, 2m, 500ms)")]
    [InlineData(new[] { "--resume", "/nonexistent/ck.json" }, "mmusim: --resume: no such file '/nonexistent/ck.json'")]
    [InlineData(new[] { "-n", "200", "--checkpoint", "/nonexistent/dir/ck.json", "--checkpoint-every", "32" }, "mmusim: --checkpoint: cannot write '/nonexistent/dir/ck.json': ")]
    public void BadCampaignOptionsAreOneLineAndExit2(string[] extra, string message)
    {
        var (code, _, err) = CliRunner.Run(["explore", "kvm-dontneed", .. extra]);
        Assert.Equal(2, code);
        Assert.StartsWith(message, err);
        Assert.Single(err.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void MergeRefusesFilesThatAreNotShards()
    {
        string dir = TempDir();
        string plain = Path.Combine(dir, "plain.json"), broken = Path.Combine(dir, "broken.json");
        File.WriteAllText(plain, CliRunner.Run("explore", "kvm-dontneed", "-n", "10", "--json").Out);
        File.WriteAllText(broken, "{\"format\": \"mmusim-explore-shard\",\n  \"version\": 1,\n  \"config\": {");
        var a = CliRunner.Run("merge", plain);
        Assert.Equal((2, $"{plain}:1: format: 'mmusim-explore' is not a shard result (known: mmusim-explore-shard, mmusim-history-shard, mmusim-mutants-shard)\n"), (a.Code, a.Err));
        var b = CliRunner.Run("merge", broken);
        Assert.Equal(2, b.Code);
        Assert.StartsWith($"{broken}:3: json: ", b.Err);
        string odd = Path.Combine(dir, "odd.json");
        File.WriteAllText(odd, "{\"format\": \"mmusim-history-shard\", \"version\": 1, \"config\": {}, \"shard\": {\"index\": 1, \"count\": 1}, \"elapsed\": \"x\", \"cells\": []}");
        var d = CliRunner.Run("merge", odd);
        Assert.Equal((2, $"{odd}:1: elapsed: expected a number\n"), (d.Code, d.Err));
        var c = CliRunner.Run("merge", Path.Combine(dir, "none.json"));
        Assert.Equal((2, $"mmusim: shards: no such file '{Path.Combine(dir, "none.json")}'\n"), (c.Code, c.Err));
    }
}
