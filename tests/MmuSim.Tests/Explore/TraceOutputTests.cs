using System.Text.Json;
using System.Text.RegularExpressions;
using MmuSim.Explore;
using MmuSim.Sched;
using MmuSim.Trace;

namespace MmuSim.Tests.Explore;

public class TraceOutputTests
{
    /// <summary>Find the late-invalidate race, shrink it, and replay it with a collector attached.</summary>
    static (Counterexample C, TraceCollector T) RecordedRace()
    {
        var p = Programs.LateInvalidate();
        var found = new Explorer(p, new ExploreOptions { Strategy = new StrategySpec { Kind = StrategyKind.Random, Seed = 1 }, Iterations = 2000 }).Run().First;
        Assert.NotNull(found);
        var small = new Shrinker(p).Shrink(found!);
        var t = new TraceCollector { Title = "late-invalidate 4.10" };
        var r = small.Replay(p, t);
        Assert.True(r.Reproduced);
        return (small, t);
    }

    [Fact]
    public void RaceDiagramShowsTheInterleavingInKernelFunctionNames()
    {
        var (c, t) = RecordedRace();
        Assert.Equal(1, c.Preemptions);
        var d = RaceDiagram.Build(t);
        string text = d.ToString();

        Assert.Equal(["CPU0 (kswapd: try_to_unmap_one)", "CPU1 (vcpu0: kvm_mmu_page_fault)"], d.Columns.Select(x => x.Header));
        var lines = text.Split('\n');
        Assert.Matches(@"^CPU0 \(kswapd: try_to_unmap_one\) +CPU1 \(vcpu0: kvm_mmu_page_fault\)$", lines[0]);

        // The shrunk race, in order: the vCPU reads the PTE before reclaim clears it and installs after the late notification.
        var rows = d.Rows.Select(r => (r.Cpu, r.Text)).ToList();
        int read = rows.IndexOf((1, "hva_to_pfn: read pte 0x10000"));
        int lockI = rows.IndexOf((0, "lock PTL"));
        int clear = rows.IndexOf((0, "ptep_clear_flush(0x10000)"));
        int unlock = rows.IndexOf((0, "unlock PTL"));
        int notify = rows.FindIndex(r => r.Cpu == 0 && r.Text.StartsWith("mmu_notifier_invalidate_page(0x10000)"));
        int install = rows.IndexOf((1, "kvm_mmu_set_spte(0x10000)"));
        Assert.True(read >= 0 && lockI >= 0 && clear >= 0 && unlock >= 0 && notify >= 0 && install >= 0, text);
        Assert.True(read < clear && clear < unlock && unlock < notify && notify < install, text);
        Assert.True(lockI < clear);
        // Counter values where they change, and the tracepoint, on the notifying CPU.
        Assert.Contains("[mmu_invalidate_seq=1]", rows[notify].Text);
        Assert.Contains((0, "kvm_unmap_hva_range"), rows);
        Assert.True(d.RowsFor(0) <= 12 && d.RowsFor(1) <= 12, text);
        // The violated invariant at the bottom.
        Assert.StartsWith("violation: stale-translation: secondary maps 0x10000 but the primary PTE is none", lines[^2]);
        // Each row has text in exactly one column: vCPU rows are indented past CPU0's column.
        int col1 = lines[0].IndexOf("CPU1", StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith(new string(' ', col1) + "kvm_mmu_set_spte(0x10000)", StringComparison.Ordinal));
    }

    [Fact]
    public void UncollapsedDiagramHasEveryStep()
    {
        var (_, t) = RecordedRace();
        var full = RaceDiagram.Build(t, new DiagramOptions { Collapse = false });
        var small = RaceDiagram.Build(t);
        Assert.True(full.Rows.Count >= small.Rows.Count);
        Assert.Contains(full.Rows, r => r.Text == "unlock PTL");
    }

    [Fact]
    public void ContendedLockShowsTheWait()
    {
        var p = new SchedulerExplorable(ExplorableInfo.Of("contended"), strategy =>
        {
            var s = new Scheduler(strategy);
            var l = new KSpinLock(s, "mmu_lock");
            for (int c = 0; c < 2; c++)
                s.Spawn($"t{c}", async ctx =>
                {
                    using var _ = ctx.Enter(c == 0 ? "kvm_mmu_notifier_invalidate_range_start" : "kvm_tdp_mmu_map");
                    await l.Lock();
                    await s.Point(PointKind.SpteWrite, 0x1000);
                    await l.Unlock();
                });
            return s;
        });
        // t0 takes the lock, is preempted, t1 blocks, t0 finishes, t1 takes it.
        var t = new TraceCollector();
        var r = Replay.Run(p, [(DecisionLog.SchedKind, 0), (DecisionLog.SchedKind, 0), (DecisionLog.SchedKind, 1)], observer: t);
        Assert.False(r.Diverged);
        var rows = RaceDiagram.Build(t, new DiagramOptions { Collapse = false }).Rows.Select(x => (x.Cpu, x.Text)).ToList();
        int wait = rows.IndexOf((1, "lock mmu_lock: contended, waits"));
        int release = rows.IndexOf((0, "unlock mmu_lock"));
        int take = rows.LastIndexOf((1, "lock mmu_lock"));
        Assert.True(wait >= 0 && wait < release && release < take, string.Join("\n", rows));
    }

    /// <summary>traces-style-dotnet.md §1c: Perfetto's systrace_line_tokenizer regex.</summary>
    static readonly Regex PerfettoLine = new(@"-(\d+)\s+\(?\s*(\d+|-+)?\)?\s?\[(\d+)\]\s*([a-zA-Z.]{3}[0-9a-f.]{1,2}\s*)?(\d+\.\d+):\s+(\S+):");

    [Fact]
    public void FtraceTextUsesTheKernelLayoutAndPerfettoParsesEveryLine()
    {
        var (_, t) = RecordedRace();
        string text = FtraceWriter.Write(t);
        var lines = text.TrimEnd('\n').Split('\n');
        Assert.Equal("# tracer: nop", lines[0]);
        Assert.Matches(@"^# entries-in-buffer/entries-written: (\d+)/\1   #P:2$", lines[2]);
        Assert.Equal("#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION", lines[10]);
        var data = lines.Where(l => !l.StartsWith('#')).ToList();
        Assert.Equal(int.Parse(Regex.Match(lines[2], @"(\d+)/").Groups[1].Value), data.Count);
        double prev = 0;
        foreach (var l in data)
        {
            var m = PerfettoLine.Match(l);
            Assert.True(m.Success, l);
            double ts = double.Parse(m.Groups[5].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(ts > prev, "timestamps strictly increase: " + l);
            prev = ts;
        }
        // Exact columns: "%16s-%-7d [%03d] flags %5lu.%06lu: event: fields".
        Assert.Contains(data, l => Regex.IsMatch(l, @"^          kswapd-100     \[000\] \.\.\.\.\.     1\.\d{6}: tracing_mark_write: B\|100\|try_to_unmap_one$"));
        Assert.Contains(data, l => Regex.IsMatch(l, @"^           vcpu0-101     \[001\] \.\.\.\.\.     1\.\d{6}: tracing_mark_write: B\|101\|kvm_mmu_page_fault$"));
        // Real tracepoints keep their names and TP_printk text; the PTL shows in the preempt-depth column.
        Assert.Contains(data, l => l.EndsWith(": kvm_unmap_hva_range: mmu notifier unmap range: 0x00000000010000 -- 0x00000000011000"));
        Assert.Contains(data, l => Regex.IsMatch(l, @"\[000\] \.\.\.\.\. .*: lock_acquire: ffff[0-9a-f]{12} ptl$"));
        Assert.Contains(data, l => Regex.IsMatch(l, @"\[000\] \.\.\.1\. .*: lock_release: ffff[0-9a-f]{12} ptl$"));
        Assert.Contains(data, l => l.EndsWith(": tracing_mark_write: C|1|mmu_invalidate_seq|1"));
        Assert.Contains(data, l => l.Contains(": tracing_mark_write: I|1|violation stale-translation: "));
        // Every B has its E on the same task.
        foreach (var pid in new[] { 100, 101 })
            Assert.Equal(data.Count(l => l.Contains($"B|{pid}|")), data.Count(l => l.EndsWith($"E|{pid}")));
    }

    [Fact]
    public void PerfettoJsonSlicesNestOnEveryThread()
    {
        var (_, t) = RecordedRace();
        using var doc = JsonDocument.Parse(PerfettoJsonWriter.Write(t));
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
        var stacks = new Dictionary<int, Stack<(string Name, double Ts)>>();
        int slices = 0;
        var threadNames = new List<string>();
        var counters = new List<long>();
        foreach (var e in events)
        {
            string ph = e.GetProperty("ph").GetString()!;
            if (ph == "M")
            {
                if (e.GetProperty("name").GetString() == "thread_name") threadNames.Add(e.GetProperty("args").GetProperty("name").GetString()!);
                continue;
            }
            double ts = e.GetProperty("ts").GetDouble();
            if (ph == "C")
            {
                Assert.Equal("mmu_invalidate_seq", e.GetProperty("name").GetString());
                counters.Add(e.GetProperty("args").GetProperty("value").GetInt64());
                continue;
            }
            int tid = e.GetProperty("tid").GetInt32();
            if (!stacks.TryGetValue(tid, out var st)) stacks[tid] = st = new();
            if (ph == "B")
            {
                st.Push((e.GetProperty("name").GetString()!, ts));
                slices++;
            }
            else if (ph == "E")
            {
                Assert.True(st.Count > 0, $"E without B on tid {tid} at {ts}");
                Assert.True(st.Pop().Ts < ts);
            }
        }
        Assert.All(stacks.Values, s => Assert.Empty(s));
        Assert.True(slices >= 6, $"{slices} slices");
        Assert.Equal(["CPU0 kswapd", "CPU1 vcpu0"], threadNames);
        Assert.Equal([1L], counters);
        Assert.Contains(events, e => e.GetProperty("ph").GetString() == "i" && e.GetProperty("name").GetString() == "violation: stale-translation");
    }

    [Fact]
    public void FunctionHookIsOffUnlessTracing()
    {
        var s = new Scheduler();
        var ctx = s.Spawn("t", _ => ValueTask.CompletedTask);
        Assert.Null(s.FunctionHook);
        var t = new TraceCollector();
        t.Attach(s, null);
        Assert.Null(s.FunctionHook); // installed at the first step only
        Assert.Same(t, s.StepSink);
    }
}
