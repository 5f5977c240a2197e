using System.CommandLine;
using MmuSim.Explore;
using MmuSim.Scenarios;
using Spectre.Console;

namespace MmuSim.Cli.Commands;

/// <summary>
/// <c>mmusim explore FILE|NAME [--era V] [--strategy S] [--iterations N] [--time-limit T] [--seed S] [--depth d]
/// [--preemptions k] [--all] [--jobs J] [--mutate NAME ...] [--out FILE] [--trace-format F]</c>: explore schedules until
/// the first violation (exit 1; shrunk, saved, shown as a race diagram) or until the budget is spent clean (exit 0).
/// </summary>
public static class ExploreCommand
{
    public static Command Create(CliContext cli)
    {
        var scenario = new Argument<string?>("scenario")
        {
            Description = "a scenario file (.yaml) or a built-in scenario name (mmusim list); omitted with --family, optional with --secondary (default: every secondary-* scenario)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var secondary = new Option<string?>("--secondary")
        {
            Description = "a driver assembly (MyDriver.dll): explore every SecondaryDriver in it against the secondary-* scenarios in every era " +
                          "(or --era), --iterations schedules per cell (default " + ExploreSecondary.DefaultIterationsPerCell + "); docs/your-secondary-mmu.md",
        };
        var driver = new Option<string[]>("--driver")
        {
            Description = "with --secondary: only these drivers (name or class name; repeatable or comma-separated)",
            AllowMultipleArgumentsPerToken = false,
        };
        var family = new Option<string?>("--family")
        {
            Description = "explore a generated scenario family instead of a scenario: " + ScenarioFamily.KnownList +
                          " (race 5(a) and KVM fault-vs-invalidate with -P pages and -V vCPUs; docs/explore.md)",
        };
        var pages = new Option<int?>("--pages", "-P") { Description = $"--family: number of pages, 1..{ScenarioFamily.MaxPages} (default 1)" };
        var vcpus = new Option<int?>("--vcpus", "-V") { Description = $"--family: number of vCPUs, 1..{ScenarioFamily.MaxVcpus} (default 1)" };
        var era = new Option<string?>("--era") { Description = "kernel era (mmusim eras); default: the scenario's era:, else 6.13" };
        var strategy = new Option<string>("--strategy", "-s")
        {
            Description = "search strategy: portfolio (default: rotates random, pct d=2, delay 2, pct d=3, prob-random), random, " +
                          "pct (" + PctStrategy.GuaranteeText + "), delay (delay bounding: a non-preemptive round robin with at most " +
                          "--preemptions delays), dfs (exhaustive depth-first search of every schedule with at most --preemptions " +
                          "preemptions; reports 'no violation in all N schedules up to bound k' when complete), prob-random",
            DefaultValueFactory = _ => "portfolio",
        };
        var iterations = new Option<int>("--iterations", "-n") { Description = "maximum number of schedules", DefaultValueFactory = _ => 10_000 };
        var timeLimit = new Option<string?>("--time-limit", "-t") { Description = "wall-clock limit, e.g. 30s, 2m, 500ms (checked every 32 schedules)" };
        var seed = new Option<ulong>("--seed") { Description = "exploration seed (schedule i uses a seed derived from it and i)", DefaultValueFactory = _ => 1UL };
        var depth = new Option<int?>("--depth", "-d")
        {
            Description = "PCT bug depth d: d-1 priority change points per run; a depth-d bug is found with probability >= 1/(n*k^(d-1)) per run " +
                          "(n contexts, k scheduling decisions per run, estimated from earlier runs). Default: the scenario's pct_depth, else 3 " +
                          "(the portfolio's deeper PCT member uses it too)",
        };
        var preemptions = new Option<string?>("--preemptions", "-k")
        {
            Description = "preemption bound (dfs) / delay bound (delay), default 2; 'unbounded' (dfs only): every interleaving, " +
                          "and a completed search prints 'verified: no violation in any interleaving (N traces, M states)'",
        };
        var por = new Option<string?>("--por")
        {
            Description = "dfs only: on (default) explores one schedule per Mazurkiewicz trace (source-set DPOR with sleep sets, " +
                          "Abdulla et al. POPL 2014); off enumerates every schedule. With a preemption bound the reduced search is " +
                          "not guaranteed exhaustive within the bound",
        };
        var stateCache = new Option<string?>("--state-cache")
        {
            Description = "dfs only: on remembers a digest of every state reached (the model and every context's position) and " +
                          "ends a run at a state already explored (explicit-state search; implies --por off; docs/explore.md)",
        };
        var memory = new Option<string?>("--memory") { Description = "memory model of the threads phase: sc (sequentially consistent) or lkmm (docs/memory-model.md); default: the scenario's memory:, else sc" };
        var all = new Option<bool>("--all") { Description = "do not stop at the first violation: count them all (the first is shown)" };
        var jobs = new Option<int>("--jobs", "-j") { Description = "worker threads (one kernel per run); results do not depend on it", DefaultValueFactory = _ => 1 };
        var noShrink = new Option<bool>("--no-shrink") { Description = "show the counterexample as found, without shrinking" };
        var outFile = new Option<string?>("--out", "-o") { Description = "save the counterexample as a trace file (replay it with mmusim replay FILE)" };
        var format = CounterexampleOutput.FormatOption();
        var traceOut = CounterexampleOutput.TraceOutOption();
        var mutate = new Option<string[]>("--mutate")
        {
            Description = "turn on a mutation switch (repeatable, or comma-separated): " + Mutations.KnownList,
            AllowMultipleArgumentsPerToken = false,
        };
        var json = new Option<bool>("--json") { Description = "print the result as JSON on stdout (schema in docs/campaigns.md); no race diagram, no shrinking unless --out" };
        var shardOpt = new Option<string?>("--shard")
        {
            Description = "run shard k of N (1 <= k <= N): schedule i runs in shard (i mod N)+1 with the seed it has unsharded; prints the shard's " +
                          "JSON for mmusim merge (implies --json)",
        };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "write the search state to FILE (atomically) every --checkpoint-every; continue a killed run with --resume FILE" };
        var checkpointEvery = new Option<string>("--checkpoint-every") { Description = "a number of schedules (10000) or a duration (30s, 5m)", DefaultValueFactory = _ => "30s" };
        var resume = new Option<string?>("--resume") { Description = "continue the exploration saved in this checkpoint (same scenario and options); it keeps checkpointing there unless --checkpoint says otherwise" };
        var cmd = new Command("explore", "Explore schedules of a scenario; stop at the first violation (exit 1, shrunk and shown as a race diagram) or finish clean (exit 0). " +
                                         PctStrategy.GuaranteeText)
        {
            scenario, family, pages, vcpus, era, strategy, iterations, timeLimit, seed, depth, preemptions, por, stateCache, all, memory, jobs, noShrink, outFile, format, traceOut, mutate, secondary, driver,
            json, shardOpt, checkpoint, checkpointEvery, resume,
        };
        cmd.SetAction(p =>
        {
            if (p.GetValue(secondary) is { } dll) return RunSecondary(cli, p, dll);
            if (p.GetValue(driver) is { Length: > 0 }) throw new UsageException("--driver", "only with --secondary DLL");
            var s = LoadScenarioOrFamily(p.GetValue(scenario), p.GetValue(family), p.GetValue(pages), p.GetValue(vcpus));
            if (CliContext.ParseMemory(p.GetValue(memory)) is { } mm) s = s.WithMemory(mm);
            var e = s.EraOrDefault(CliContext.ParseEra(p.GetValue(era)));
            var muts = CliContext.ParseMutations(p.GetValue(mutate));
            int n = p.GetValue(iterations);
            if (n < 1) throw new UsageException("--iterations", $"must be at least 1, got {n}");
            if (!StrategySpec.TryParseKind(p.GetValue(strategy) ?? "portfolio", out var kind))
                throw new UsageException("--strategy", $"unknown strategy '{p.GetValue(strategy)}' (known: {StrategySpec.KnownNames})");
            int d = p.GetValue(depth) ?? s.PctDepth ?? 3;
            if (d < 1) throw new UsageException("--depth", $"must be at least 1, got {d}");
            int k = ParsePreemptions(p.GetValue(preemptions), kind);
            bool reduce = ParsePor(p.GetValue(por), kind);
            bool cache = ParseStateCache(p.GetValue(stateCache), p.GetValue(por), kind);
            if (cache) reduce = false;
            var limit = ParseDuration(p.GetValue(timeLimit));
            var fmt = CounterexampleOutput.ParseFormat(p.GetValue(format));
            string? outPath = p.GetValue(outFile);
            var spec = new StrategySpec { Kind = kind, Seed = p.GetValue(seed), Depth = d, Preemptions = k, Por = reduce, StateCache = cache };
            var program = new ScenarioExplorable(s, e, muts, spec.Seed);
            ShardSpec? shard = null;
            if (p.GetValue(shardOpt) is { } shardText)
                shard = ShardSpec.TryParse(shardText, out var why) ?? throw new UsageException("--shard", why);
            string? ckPath = p.GetValue(checkpoint), resumePath = p.GetValue(resume);
            if (spec.Sequential && (shard != null || ckPath != null || resumePath != null))
                throw new UsageException(shard != null ? "--shard" : ckPath != null ? "--checkpoint" : "--resume",
                    $"not available with --strategy {StrategySpec.NameOf(kind)} (an exhaustive search runs in one piece)");
            bool asJson = p.GetValue(json) || shard != null;
            var (everySchedules, everyTime) = ParseEvery(p.GetValue(checkpointEvery)!);
            var options = new ExploreOptions
            {
                Strategy = spec,
                Iterations = n,
                TimeLimit = limit,
                All = p.GetValue(all),
                Parallelism = CliContext.ParseJobs(p.GetValue(jobs)),
                // The counterexample is saved as soon as it is found, then overwritten with the shrunk one below.
                FirstViolation = outPath == null ? null : c => SaveTrace(cli, c, s.File, outPath, shrunk: false),
                Shard = shard,
                RecordRuns = shard != null,
            };
            string config = ExploreJson.Config(program.Info, s.File, spec, options);
            if (resumePath != null)
            {
                if (!File.Exists(resumePath)) throw new UsageException("--resume", $"no such file '{resumePath}'");
                string text;
                try { text = File.ReadAllText(resumePath); }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new UsageException("--resume", $"cannot read '{resumePath}': {ex.Message}"); }
                var state = ExploreJson.ReadCheckpoint(resumePath, text, ShardConfig(config, shard));
                if (state.Records == null && shard != null) throw new UsageException("--resume", $"'{resumePath}' is not a checkpoint of a sharded run");
                options = options with { Resume = state };
                cli.Err.WriteLine($"resuming from {resumePath}: {state.Schedules} schedules done, next iteration {state.Next}");
            }
            if ((ckPath ?? resumePath) is { } savePath)
            {
                // Fail now, not after the first interval of work, when the checkpoint cannot be written there.
                string? parent = Path.GetDirectoryName(Path.GetFullPath(savePath));
                if (parent != null && !Directory.Exists(parent))
                    throw new UsageException("--checkpoint", $"cannot write '{savePath}': no such directory '{parent}'");
                string ckConfig = ShardConfig(config, shard);
                options = options with
                {
                    Checkpoint = st => WriteAtomically("--checkpoint", savePath, stream => ExploreJson.Checkpoint(stream, ckConfig, st)),
                    CheckpointEverySchedules = everySchedules,
                    CheckpointInterval = everyTime,
                };
            }
            var started = System.Diagnostics.Stopwatch.StartNew();
            var allMuts = program.Info.Mutations;
            cli.Err.WriteLine($"explore {s.Name}: era {e.Name}, strategy {spec}, {n} schedules{(limit is { } l ? $" or {l.TotalSeconds:0.##} s" : "")}, " +
                              $"mutations: {(allMuts.Count == 0 ? "none" : string.Join(", ", allMuts))}");

            ExploreReport report;
            try { report = RunExplorer(cli, program, options, n); }
            catch (ExploreException ex)
            {
                cli.Err.WriteLine($"mmusim: internal model error: {ex.Message}");
                if (Environment.GetEnvironmentVariable("MMUSIM_DEBUG") == "1") cli.Err.WriteLine(ex);
                return Program.InternalError;
            }

            cli.Err.Write(report.Summary());
            if (asJson)
            {
                if (report.First is { } first && outPath != null && !p.GetValue(noShrink))
                {
                    var shrinker = new Shrinker(program, ShrinkBudget(limit, started.Elapsed));
                    var small = shrinker.Shrink(first);
                    if (!ReferenceEquals(small, first)) SaveTrace(cli, small, s.File, outPath, shrunk: true);
                }
                cli.Out.WriteLine(shard is { } sh ? ExploreJson.Shard(config, sh, report) : ExploreJson.Result(config, report));
                return report.Violations > 0 ? Program.Failed : Program.Ok;
            }
            if (report.First is not { } found)
            {
                cli.Out.WriteLine(report.Completion ?? $"clean: no violation in {report.Schedules} schedules of {s.Name} in era {e.Name} ({spec})");
                return Program.Ok;
            }

            var shown = found;
            if (!p.GetValue(noShrink))
            {
                var shrinker = new Shrinker(program, ShrinkBudget(limit, started.Elapsed));
                shown = shrinker.Shrink(found);
                cli.Err.WriteLine($"shrunk: {found.Preemptions} -> {shown.Preemptions} preemptions, {found.Steps} -> {shown.Steps} steps ({shrinker.Runs} replays)");
            }
            if (outPath != null && !ReferenceEquals(shown, found)) SaveTrace(cli, shown, s.File, outPath, shrunk: true);
            cli.Out.WriteLine($"violation found in schedule {found.Iteration + 1} ({report.Violations} violating of {report.Schedules})");
            CounterexampleOutput.Show(cli, program, shown.Decisions, shown.Violation.Invariant,
                $"{shown.Strategy}, iteration {shown.Iteration}, {shown.Preemptions} preemptions", fmt, p.GetValue(traceOut));
            return Program.Failed;
        });
        return cmd;

        int RunSecondary(CliContext cli, ParseResult p, string dll)
        {
            if (p.GetValue(all)) throw new UsageException("--all", "not supported with --secondary");
            if (p.GetValue(outFile) != null) throw new UsageException("--out", "not supported with --secondary");
            var iterResult = p.GetResult(iterations);
            int n = iterResult is { Implicit: false } ? p.GetValue(iterations) : ExploreSecondary.DefaultIterationsPerCell;
            if (n < 1) throw new UsageException("--iterations", $"must be at least 1, got {n}");
            if (!StrategySpec.TryParseKind(p.GetValue(strategy) ?? "portfolio", out var kind))
                throw new UsageException("--strategy", $"unknown strategy '{p.GetValue(strategy)}' (known: {StrategySpec.KnownNames})");
            int d = p.GetValue(depth) ?? 3;
            if (d < 1) throw new UsageException("--depth", $"must be at least 1, got {d}");
            int k = ParsePreemptions(p.GetValue(preemptions), kind);
            var spec = new StrategySpec { Kind = kind, Seed = p.GetValue(seed), Depth = d, Preemptions = k };
            return ExploreSecondary.Run(cli, new ExploreSecondary.Request(dll, p.GetValue(driver) ?? [], p.GetValue(scenario),
                CliContext.ParseEra(p.GetValue(era)), spec, n, ParseDuration(p.GetValue(timeLimit)), CliContext.ParseJobs(p.GetValue(jobs)),
                p.GetValue(noShrink), CounterexampleOutput.ParseFormat(p.GetValue(format)), p.GetValue(traceOut), CliContext.ParseMutations(p.GetValue(mutate))));
        }
    }

    /// <summary>The scenario argument, or the member of --family with -P pages and -V vCPUs (exactly one of the two).</summary>
    public static Scenario LoadScenarioOrFamily(string? scenario, string? family, int? pages, int? vcpus)
    {
        if (family == null)
        {
            if (pages != null) throw new UsageException("--pages", "is only valid with --family");
            if (vcpus != null) throw new UsageException("--vcpus", "is only valid with --family");
            if (scenario == null) throw new UsageException("explore", "missing argument SCENARIO (see mmusim explore --help)");
            return CliContext.LoadScenario(scenario);
        }
        if (scenario != null) throw new UsageException("--family", $"cannot be combined with a scenario ('{scenario}')");
        if (!ScenarioFamily.IsKnown(family)) throw new UsageException("--family", $"unknown family '{family}' (known: {ScenarioFamily.KnownList})");
        int pg = pages ?? 1, vc = vcpus ?? 1;
        if (pg < 1 || pg > ScenarioFamily.MaxPages) throw new UsageException("--pages", $"must be between 1 and {ScenarioFamily.MaxPages}, got {pg}");
        if (vc < 1 || vc > ScenarioFamily.MaxVcpus) throw new UsageException("--vcpus", $"must be between 1 and {ScenarioFamily.MaxVcpus}, got {vc}");
        return ScenarioFamily.Load(family, pg, vc);
    }

    /// <summary>--preemptions: a count, or 'unbounded' (dfs only). Default 2.</summary>
    public static int ParsePreemptions(string? value, StrategyKind kind)
    {
        if (value == null) return 2;
        var v = value.Trim().ToLowerInvariant();
        if (v is "unbounded" or "inf" or "none")
            return kind == StrategyKind.Dfs ? DporStrategy.Unbounded
                : throw new UsageException("--preemptions", $"'{value}' is only valid with --strategy dfs");
        if (!int.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int k))
            throw new UsageException("--preemptions", $"'{value}' is not a number or 'unbounded'");
        if (k < 0) throw new UsageException("--preemptions", $"must be at least 0, got {k}");
        return k;
    }

    /// <summary>--state-cache on|off (dfs only; default off; on is explicit-state search without partial-order reduction).</summary>
    static bool ParseStateCache(string? value, string? por, StrategyKind kind)
    {
        if (value == null) return false;
        if (kind != StrategyKind.Dfs) throw new UsageException("--state-cache", "is only valid with --strategy dfs");
        bool on = value.Trim().ToLowerInvariant() switch
        {
            "on" => true,
            "off" => false,
            _ => throw new UsageException("--state-cache", $"'{value}' is not on or off"),
        };
        if (on && por?.Trim().ToLowerInvariant() == "on") throw new UsageException("--state-cache", "on cannot be combined with --por on (the cache runs without partial-order reduction)");
        return on;
    }

    /// <summary>--por on|off (dfs only; default on).</summary>
    public static bool ParsePor(string? value, StrategyKind kind)
    {
        if (value == null) return true;
        if (kind != StrategyKind.Dfs) throw new UsageException("--por", "is only valid with --strategy dfs");
        return value.Trim().ToLowerInvariant() switch
        {
            "on" or "true" or "yes" => true,
            "off" or "false" or "no" => false,
            _ => throw new UsageException("--por", $"'{value}' is not on or off"),
        };
    }

    /// <summary>
    /// The shrinking budget: the time limit bounds search and shrinking together, so shrinking gets what the search left
    /// (none when it is spent), and never more than its own cap.
    /// </summary>
    public static ShrinkOptions ShrinkBudget(TimeSpan? limit, TimeSpan elapsed)
    {
        var o = new ShrinkOptions();
        return limit is { } l ? o with { TimeLimit = TimeSpan.FromTicks(Math.Clamp((l - elapsed).Ticks, 0, o.TimeLimit.Ticks)) } : o;
    }

    static void SaveTrace(CliContext cli, Counterexample c, string? source, string path, bool shrunk)
    {
        CliContext.WriteFile("--out", path, TraceFile.From(c, source).Write);
        cli.Err.WriteLine($"{(shrunk ? "shrunk counterexample" : "counterexample")} saved to {path} (mmusim replay {path})");
    }

    /// <summary>Run the explorer, with a progress bar (schedules/s) on stderr when stderr is a terminal.</summary>
    static ExploreReport RunExplorer(CliContext cli, ScenarioExplorable program, ExploreOptions options, int n)
    {
        ExploreReport report;
        if (cli.InteractiveErr)
        {
            report = null!;
            cli.ErrConsole().Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("schedules", maxValue: n);
                    report = new Explorer(program, options with
                    {
                        Progress = pr =>
                        {
                            task.Value = pr.Schedules;
                            task.Description = $"schedules ({pr.SchedulesPerSecond:0}/s, {pr.Violations} violations)";
                        },
                    }).Run();
                    task.Value = n;
                });
        }
        else report = new Explorer(program, options).Run();
        return report;
    }

    /// <summary>A checkpoint of a shard also names the shard: it resumes only that shard.</summary>
    static string ShardConfig(string config, ShardSpec? shard) => shard is not { } sh ? config : ExploreJson.Document(w =>
    {
        using var d = System.Text.Json.JsonDocument.Parse(config);
        foreach (var m in d.RootElement.EnumerateObject()) m.WriteTo(w);
        w.WriteString("shard", sh.ToString());
    });

    /// <summary>--checkpoint-every: a whole number of schedules, or a duration.</summary>
    static (int Schedules, TimeSpan Time) ParseEvery(string text)
    {
        if (int.TryParse(text.Trim(), System.Globalization.NumberStyles.None, null, out int n))
            return n >= 1 ? (n, TimeSpan.MaxValue) : throw new UsageException("--checkpoint-every", $"must be at least 1 schedule, got {n}");
        try { return (int.MaxValue, ParseDuration(text)!.Value); }
        catch (UsageException e) { throw new UsageException("--checkpoint-every", e.Message.Replace("(e.g. 30s", "(a number of schedules, or e.g. 30s")); }
    }

    /// <summary>Write the file to PATH.tmp, flush it to disk, and rename it over PATH: a kill at any moment leaves the old or the new file whole.</summary>
    public static void WriteAtomically(string option, string path, Action<Stream> write)
    {
        string tmp = path + ".tmp";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new UsageException(option, $"cannot write '{path}': {e.Message}");
        }
    }

    /// <summary>The longest --time-limit: one year.</summary>
    const double MaxDurationSeconds = 365 * 86400.0;

    /// <summary>30, 30s, 2m, 500ms, 1h, or a TimeSpan (00:01:00).</summary>
    public static TimeSpan? ParseDuration(string? s)
    {
        if (string.IsNullOrWhiteSpace(s)) return null;
        s = s.Trim().ToLowerInvariant();
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        (string num, double mult) = s.EndsWith("ms") ? (s[..^2], 0.001) : s.EndsWith('s') ? (s[..^1], 1) : s.EndsWith('m') ? (s[..^1], 60) : s.EndsWith('h') ? (s[..^1], 3600) : (s, 1);
        if (double.TryParse(num, System.Globalization.NumberStyles.Float, inv, out var v) && v > 0)
            return double.IsFinite(v * mult) && v * mult <= MaxDurationSeconds ? TimeSpan.FromSeconds(v * mult)
                : throw new UsageException("--time-limit", $"'{s}' is longer than the limit of {MaxDurationSeconds / 86400:0} days");
        if (TimeSpan.TryParse(s, inv, out var ts) && ts > TimeSpan.Zero) return ts;
        throw new UsageException("--time-limit", $"'{s}' is not a duration (e.g. 30s, 2m, 500ms)");
    }
}
