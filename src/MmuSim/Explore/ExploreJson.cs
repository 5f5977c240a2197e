using System.Text;
using System.Text.Json;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Explore;

/// <summary>
/// The JSON forms of an exploration (schema in docs/campaigns.md): the result (<c>mmusim explore --json</c>), a shard's
/// result (<c>--shard k/N</c>, merged by <c>mmusim merge</c>) and a checkpoint (<c>--checkpoint</c>, <c>--resume</c>).
/// Keys are written in a fixed order; everything outside <c>timing</c> is a function of the configuration, so the same
/// configuration gives the same bytes on any host, number of cores or shards, and after a resume.
/// </summary>
public static class ExploreJson
{
    public const string ResultFormat = "mmusim-explore", ShardFormat = "mmusim-explore-shard", CheckpointFormat = "mmusim-checkpoint";

    public const int Version = 1;

    static readonly JsonWriterOptions Indented = new() { Indented = true };

    /// <summary>Write a JSON document with <paramref name="body"/> inside a top-level object.</summary>
    public static string Document(Action<Utf8JsonWriter> body)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, Indented))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>Write a JSON value given as text (e.g. a config object), re-indented like the rest of the document.</summary>
    public static void WriteValue(Utf8JsonWriter w, string json)
    {
        using var d = JsonDocument.Parse(json);
        d.RootElement.WriteTo(w);
    }

    /// <summary>The configuration object: what must be equal for two results (or shards, or a checkpoint) to combine.</summary>
    public static string Config(ExplorableInfo info, string? file, StrategySpec spec, ExploreOptions o) => Document(w =>
    {
        w.WriteString("scenario", info.Scenario);
        if (file != null) w.WriteString("file", file); else w.WriteNull("file");
        w.WriteString("era", info.Era);
        w.WriteStartArray("mutations");
        foreach (var m in info.Mutations) w.WriteStringValue(m);
        w.WriteEndArray();
        w.WriteString("strategy", spec.ToString());
        w.WriteNumber("seed", spec.Seed);
        w.WriteNumber("iterations", o.Iterations);
        w.WriteBoolean("all", o.All);
        w.WriteNumber("max_counterexamples", o.MaxCounterexamples);
    });

    /// <summary><c>mmusim explore --json</c>: format, config, result, timing.</summary>
    public static string Result(string config, ExploreReport r) => Document(w =>
    {
        w.WriteString("format", ResultFormat);
        w.WriteNumber("version", Version);
        w.WritePropertyName("config");
        ExploreJson.WriteValue(w, config);
        w.WriteStartObject("result");
        w.WriteString("verdict", r.Violations > 0 ? "violation" : r.TimedOut ? "timed-out" : r.Completion != null ? "verified" : "clean");
        w.WriteNumber("schedules", r.Schedules);
        w.WriteNumber("distinct_schedules", r.DistinctSchedules);
        w.WriteNumber("steps_total", r.TotalSteps);
        w.WriteNumber("steps_min", r.StepsMin);
        w.WriteNumber("steps_max", r.StepsMax);
        w.WriteNumber("max_decisions", r.MaxDecisions);
        w.WriteNumber("violations", r.Violations);
        if (r.SchedulesToFirstBug is { } s) w.WriteNumber("schedules_to_first_bug", s); else w.WriteNull("schedules_to_first_bug");
        w.WriteBoolean("timed_out", r.TimedOut);
        w.WriteBoolean("exhausted", r.Exhausted);
        if (r.Completion != null) w.WriteString("completion", r.Completion); else w.WriteNull("completion");
        w.WriteStartArray("counterexamples");
        foreach (var c in r.Counterexamples) WriteCounterexampleSummary(w, c);
        w.WriteEndArray();
        w.WriteEndObject();
        WriteTiming(w, r.Elapsed, r.Schedules, r.TotalSteps, r.TimeToFirstBug);
    });

    /// <summary><c>mmusim explore --shard k/N</c>: the shard's runs, for <see cref="ExploreMerge"/>.</summary>
    public static string Shard(string config, ShardSpec shard, ExploreReport r) => Document(w =>
    {
        w.WriteString("format", ShardFormat);
        w.WriteNumber("version", Version);
        w.WritePropertyName("config");
        ExploreJson.WriteValue(w, config);
        w.WriteStartObject("shard");
        w.WriteNumber("index", shard.Index);
        w.WriteNumber("count", shard.Count);
        w.WriteEndObject();
        w.WriteBoolean("timed_out", r.TimedOut);
        WriteRecords(w, r.Records ?? new RunRecords());
        w.WriteStartArray("counterexamples");
        foreach (var c in r.Counterexamples) WriteCounterexampleSummary(w, c);
        w.WriteEndArray();
        WriteTiming(w, r.Elapsed, r.Schedules, r.TotalSteps, r.TimeToFirstBug);
    });

    /// <summary>Write a JSON document with <paramref name="body"/> inside a top-level object straight to a stream.</summary>
    public static void Document(Stream stream, Action<Utf8JsonWriter> body)
    {
        using var w = new Utf8JsonWriter(stream, Indented);
        w.WriteStartObject();
        body(w);
        w.WriteEndObject();
    }

    /// <summary>A checkpoint: the config, and the explorer's state at a round boundary.</summary>
    public static string Checkpoint(string config, ExploreCheckpoint c) => Document(w => WriteCheckpoint(w, config, c));

    /// <summary>Stream a checkpoint to <paramref name="stream"/> (no copy of it in memory: a long run's hash set is megabytes).</summary>
    public static void Checkpoint(Stream stream, string config, ExploreCheckpoint c) => Document(stream, w => WriteCheckpoint(w, config, c));

    static void WriteCheckpoint(Utf8JsonWriter w, string config, ExploreCheckpoint c)
    {
        w.WriteString("format", CheckpointFormat);
        w.WriteNumber("version", Version);
        w.WritePropertyName("config");
        ExploreJson.WriteValue(w, config);
        w.WriteNumber("next", c.Next);
        w.WriteNumber("schedules", c.Schedules);
        w.WriteNumber("steps_total", c.TotalSteps);
        w.WriteNumber("steps_min", c.StepsMin);
        w.WriteNumber("steps_max", c.StepsMax);
        w.WriteNumber("max_decisions", c.MaxDecisions);
        w.WriteNumber("violations", c.Violations);
        if (c.SchedulesToFirstBug is { } s) w.WriteNumber("schedules_to_first_bug", s); else w.WriteNull("schedules_to_first_bug");
        w.WriteNumber("elapsed_ticks", c.Elapsed.Ticks);
        if (c.TimeToFirstBug is { } t) w.WriteNumber("time_to_first_bug_ticks", t.Ticks); else w.WriteNull("time_to_first_bug_ticks");
        w.WriteBase64String("distinct", System.Runtime.InteropServices.MemoryMarshal.AsBytes(c.Distinct.AsSpan()));
        w.Flush(); // to the stream: the writer's buffer does not grow with the next members
        w.WriteStartArray("counterexamples");
        foreach (var ce in c.Counterexamples)
        {
            w.WriteStartObject();
            w.WriteString("strategy", ce.Strategy);
            w.WriteNumber("seed", ce.Seed);
            w.WriteNumber("iteration", ce.Iteration);
            w.WriteNumber("steps", ce.Steps);
            w.WriteNumber("preemptions", ce.Preemptions);
            WriteViolation(w, ce.Violation);
            w.WriteStartArray("decision_kinds");
            foreach (var (k, _) in ce.Decisions) w.WriteNumberValue(k);
            w.WriteEndArray();
            w.WriteStartArray("decision_values");
            foreach (var (_, v) in ce.Decisions) w.WriteNumberValue(v);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        if (c.Records != null) WriteRecords(w, c.Records); else w.WriteNull("runs");
    }

    static void WriteTiming(Utf8JsonWriter w, TimeSpan elapsed, int schedules, long steps, TimeSpan? toBug)
    {
        w.WriteStartObject("timing");
        w.WriteNumber("elapsed_s", Math.Round(elapsed.TotalSeconds, 3));
        w.WriteNumber("schedules_per_s", elapsed.TotalSeconds > 0 ? Math.Round(schedules / elapsed.TotalSeconds, 1) : 0);
        w.WriteNumber("steps_per_s", elapsed.TotalSeconds > 0 ? Math.Round(steps / elapsed.TotalSeconds, 0) : 0);
        if (toBug is { } t) w.WriteNumber("time_to_first_bug_s", Math.Round(t.TotalSeconds, 6)); else w.WriteNull("time_to_first_bug_s");
        w.WriteEndObject();
    }

    static void WriteRecords(Utf8JsonWriter w, RunRecords r)
    {
        w.WriteStartObject("runs");
        w.WriteNumber("count", r.Count);
        w.WriteStartArray("iterations");
        foreach (var i in r.Iterations) w.WriteNumberValue(i);
        w.WriteEndArray();
        w.WriteStartArray("steps");
        foreach (var s in r.Steps) w.WriteNumberValue(s);
        w.WriteEndArray();
        w.WriteStartArray("decisions");
        foreach (var d in r.Decisions) w.WriteNumberValue(d);
        w.WriteEndArray();
        w.WriteBase64String("hashes", System.Runtime.InteropServices.MemoryMarshal.AsBytes(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(r.Hashes)));
        w.WriteStartArray("violations");
        foreach (var v in r.Violations) w.WriteNumberValue(v);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>What a result says about a counterexample (its decisions are in the trace file, <c>--out</c>).</summary>
    public static void WriteCounterexampleSummary(Utf8JsonWriter w, Counterexample c)
    {
        w.WriteStartObject();
        w.WriteNumber("iteration", c.Iteration);
        w.WriteString("strategy", c.Strategy);
        w.WriteNumber("steps", c.Steps);
        w.WriteNumber("preemptions", c.Preemptions);
        w.WriteNumber("decisions", c.Decisions.Length);
        WriteViolation(w, c.Violation);
        w.WriteEndObject();
    }

    /// <summary>A violation as an object: invariant, message, context, function, step, address, pfn.</summary>
    public static void WriteViolation(Utf8JsonWriter w, Violation v)
    {
        w.WriteStartObject("violation");
        w.WriteString("invariant", v.Invariant);
        w.WriteString("message", v.Message);
        w.WriteNumber("context_id", v.ContextId);
        w.WriteString("context", v.ContextName);
        w.WriteString("function", v.Function);
        w.WriteNumber("step", v.Step);
        w.WriteString("address", $"0x{v.Address:x}");
        w.WriteNumber("pfn", v.Pfn);
        w.WriteEndObject();
    }

    // ---- reading ----

    /// <summary>Parse a JSON file; a malformed one is bad input (<c>file:line: json: message</c>).</summary>
    public static JsonDocument Parse(string file, string text)
    {
        try { return JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 64 }); }
        catch (JsonException e) { throw new ScenarioException(file, (int)(e.LineNumber ?? 0) + 1, "json", OneLine(e.Message)); }
    }

    static string OneLine(string s) => s.Split('\n')[0].Trim();

    /// <summary>Read a checkpoint written by <see cref="Checkpoint"/>; <paramref name="config"/> must be the current run's.</summary>
    public static ExploreCheckpoint ReadCheckpoint(string file, string text, string config)
    {
        using var doc = Parse(file, text);
        var f = new Fields(file, doc.RootElement);
        f.Format(CheckpointFormat);
        f.SameConfig(config, "the checkpoint was written by a different exploration");
        var ces = new List<Counterexample>();
        var info = ReadInfo(f, "config");
        foreach (var (e, i) in f.Array("counterexamples").Select((e, i) => (e, i)))
        {
            var c = new Fields(file, e, $"counterexamples[{i}].");
            var kinds = c.Array("decision_kinds").Select(x => (byte)c.Int(x, "decision_kinds")).ToArray();
            var values = c.Array("decision_values").Select(x => c.Int(x, "decision_values")).ToArray();
            if (kinds.Length != values.Length) throw c.Error("decision_values", "not as many as decision_kinds");
            var decisions = new (byte, int)[kinds.Length];
            for (int k = 0; k < kinds.Length; k++) decisions[k] = (kinds[k], values[k]);
            ces.Add(new Counterexample
            {
                Info = info,
                Strategy = c.Str("strategy"),
                Seed = c.ULong("seed"),
                Iteration = c.Int("iteration"),
                Steps = c.Long("steps"),
                Preemptions = c.Int("preemptions"),
                Violation = ReadViolation(new Fields(file, c.Get("violation"), $"counterexamples[{i}].violation.")),
                Decisions = decisions,
            });
        }
        var runs = f.Get("runs");
        return new ExploreCheckpoint
        {
            Next = f.Int("next"),
            Schedules = f.Int("schedules"),
            TotalSteps = f.Long("steps_total"),
            StepsMin = f.Long("steps_min"),
            StepsMax = f.Long("steps_max"),
            MaxDecisions = f.Long("max_decisions"),
            Violations = f.Int("violations"),
            SchedulesToFirstBug = f.NullableInt("schedules_to_first_bug"),
            Elapsed = TimeSpan.FromTicks(f.Long("elapsed_ticks")),
            TimeToFirstBug = f.NullableLong("time_to_first_bug_ticks") is { } t ? TimeSpan.FromTicks(t) : null,
            Distinct = f.Hashes("distinct"),
            Counterexamples = ces,
            Records = runs.ValueKind == JsonValueKind.Null ? null : ReadRecords(new Fields(file, runs, "runs.")),
        };
    }

    static ExplorableInfo ReadInfo(Fields f, string at)
    {
        var c = new Fields(f.File, f.Get(at), at + ".");
        return new ExplorableInfo(c.Str("scenario"), c.Str("era"), c.Array("mutations").Select(m => m.GetString() ?? "").ToArray());
    }

    internal static Violation ReadViolation(Fields v)
    {
        string addr = v.Str("address");
        if (!addr.StartsWith("0x", StringComparison.Ordinal) || !ulong.TryParse(addr[2..], System.Globalization.NumberStyles.HexNumber, null, out var a))
            throw v.Error("address", $"'{addr}' is not a hex address");
        return new Violation(v.Str("invariant"), v.Str("message"), v.Int("context_id"), v.Str("context"), v.Str("function"), v.Long("step"), a, v.Long("pfn"));
    }

    internal static RunRecords ReadRecords(Fields f)
    {
        var r = new RunRecords();
        var its = f.Array("iterations").Select(x => f.Int(x, "iterations")).ToArray();
        var steps = f.Array("steps").Select(x => f.Long(x, "steps")).ToArray();
        var decs = f.Array("decisions").Select(x => f.Int(x, "decisions")).ToArray();
        var hashes = f.Hashes("hashes");
        if (steps.Length != its.Length || decs.Length != its.Length || hashes.Length != its.Length || f.Int("count") != its.Length)
            throw f.Error("count", "iterations, steps, decisions and hashes differ in length");
        var violated = new HashSet<int>(f.Array("violations").Select(x => f.Int(x, "violations")));
        for (int i = 0; i < its.Length; i++) r.Add(its[i], steps[i], decs[i], hashes[i], violated.Contains(its[i]));
        if (r.Violations.Count != violated.Count) throw f.Error("violations", "names an iteration that is not in the runs");
        return r;
    }

    /// <summary>Typed access to one JSON object's members; a missing or mistyped one is bad input naming the field.</summary>
    internal readonly struct Fields(string file, JsonElement e, string prefix = "")
    {
        public string File => file;
        public JsonElement Element => e;

        public ScenarioException Error(string field, string message) => new(file, 1, prefix + field, message);

        public JsonElement Get(string name)
        {
            if (e.ValueKind != JsonValueKind.Object) throw Error(name, "expected an object around it");
            return e.TryGetProperty(name, out var v) ? v : throw Error(name, "missing");
        }

        public string Str(string name) => Get(name) is { ValueKind: JsonValueKind.String } v ? v.GetString()! : throw Error(name, "expected a string");

        public int Int(string name) => Int(Get(name), name);

        public int Int(JsonElement v, string name) => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Error(name, "expected a 32-bit whole number");

        public long Long(string name) => Long(Get(name), name);

        public long Long(JsonElement v, string name) => v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long i) ? i : throw Error(name, "expected a 64-bit whole number");

        public double Double(string name) => Get(name) is { ValueKind: JsonValueKind.Number } v ? v.GetDouble() : throw Error(name, "expected a number");

        public ulong ULong(string name) => Get(name) is { ValueKind: JsonValueKind.Number } v && v.TryGetUInt64(out ulong u) ? u : throw Error(name, "expected an unsigned whole number");

        public bool Bool(string name) => Get(name).ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(name, "expected true or false"),
        };

        public int? NullableInt(string name) => Get(name).ValueKind == JsonValueKind.Null ? null : Int(name);

        public long? NullableLong(string name) => Get(name).ValueKind == JsonValueKind.Null ? null : Long(name);

        public IEnumerable<JsonElement> Array(string name) =>
            Get(name) is { ValueKind: JsonValueKind.Array } v ? v.EnumerateArray() : throw Error(name, "expected an array");

        public ulong[] Hashes(string name)
        {
            byte[] bytes;
            try { bytes = Convert.FromBase64String(Str(name)); }
            catch (FormatException) { throw Error(name, "not base64"); }
            if (bytes.Length % 8 != 0) throw Error(name, "not a whole number of 64-bit hashes");
            return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(bytes).ToArray();
        }

        public void Format(string expected)
        {
            string got = Str("format");
            if (got != expected) throw Error("format", $"'{got}', expected '{expected}'");
            if (Int("version") != Version) throw Error("version", $"{Int("version")}, this mmusim reads version {Version}");
        }

        /// <summary>The <c>config</c> member equals <paramref name="config"/> (as written by this mmusim).</summary>
        public void SameConfig(string config, string what)
        {
            string mine = Normal(Get("config").GetRawText()), theirs = Normal(config);
            if (mine != theirs) throw Error("config", $"{what} ({FirstDifference(theirs, mine)})");
        }
    }

    /// <summary>A config object in one canonical text (compact), for comparison.</summary>
    internal static string Normal(string json)
    {
        using var d = JsonDocument.Parse(json);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms)) d.RootElement.WriteTo(w);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>"iterations: 100 vs 200": the first top-level member where two config objects differ.</summary>
    internal static string FirstDifference(string a, string b)
    {
        using var da = JsonDocument.Parse(a);
        using var db = JsonDocument.Parse(b);
        foreach (var p in da.RootElement.EnumerateObject())
        {
            string other = db.RootElement.TryGetProperty(p.Name, out var q) ? q.GetRawText() : "missing";
            if (other != p.Value.GetRawText()) return $"{p.Name}: {p.Value.GetRawText()} vs {other}";
        }
        foreach (var q in db.RootElement.EnumerateObject())
            if (!da.RootElement.TryGetProperty(q.Name, out _)) return $"{q.Name}: missing vs {q.Value.GetRawText()}";
        return "members differ";
    }
}
