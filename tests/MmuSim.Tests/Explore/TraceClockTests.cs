using System.Text.Json;
using System.Text.RegularExpressions;
using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Trace;

namespace MmuSim.Tests.Explore;

/// <summary>Trace outputs of a real KVM scenario: the simulated clock as the time axis, KVM's counters, sched_switch.</summary>
public class TraceClockTests
{
    static TraceCollector Record(string scenario, string era)
    {
        var p = new ScenarioExplorable(ScenarioLoader.LoadBuiltIn(scenario), EraTable.Get(era));
        var t = new TraceCollector { Title = scenario };
        p.RunOnce(new MmuSim.Sched.RoundRobinStrategy(3), 0, t);
        Assert.True(t.Events.Count > 20);
        return t;
    }

    [Fact]
    public void PerfettoTimeAxisIsTheSimulatedClock()
    {
        var t = Record("kvm-fault-vs-invalidate", "6.13");
        using var doc = JsonDocument.Parse(PerfettoJsonWriter.Write(t));
        var ts = doc.RootElement.GetProperty("traceEvents").EnumerateArray()
            .Where(e => e.TryGetProperty("ts", out _)).Select(e => e.GetProperty("ts").GetDouble()).ToList();
        // Strictly increasing (stable order for viewers) ...
        for (int i = 1; i < ts.Count; i++) Assert.True(ts[i] > ts[i - 1], $"ts[{i}] = {ts[i]} after {ts[i - 1]}");
        // ... and spanning the simulated time of the run, in microseconds from a 1 s base: not one microsecond per event.
        double firstNs = t.Events[0].TimeNs, lastNs = t.Events[^1].TimeNs;
        Assert.True(lastNs - firstNs > 1000, "the scenario runs for more than a simulated microsecond");
        Assert.True(ts[0] >= 1e6 + firstNs / 1000.0 - 1e-6, $"first ts {ts[0]}");
        double span = ts[^1] - ts[0], simUs = (lastNs - firstNs) / 1000.0;
        // At most the simulated span plus the 1 ns nudges (one microsecond per event would be ts.Count us).
        Assert.True(ts.Count > 2 * simUs, $"the check can tell: {ts.Count} events over {simUs} simulated us");
        Assert.InRange(span, simUs / 2, simUs + ts.Count * 0.001 + 1e-3);
        // Sub-microsecond steps are visible: some consecutive events are closer than 1 us.
        Assert.Contains(Enumerable.Range(1, ts.Count - 1), i => ts[i] - ts[i - 1] < 0.5);
    }

    [Fact]
    public void KvmCountersAreCounterTracks()
    {
        var t = Record("kvm-fault-vs-invalidate", "6.13");
        using var doc = JsonDocument.Parse(PerfettoJsonWriter.Write(t));
        var counters = doc.RootElement.GetProperty("traceEvents").EnumerateArray()
            .Where(e => e.GetProperty("ph").GetString() == "C")
            .Select(e => (Name: e.GetProperty("name").GetString(), Value: e.GetProperty("args").GetProperty("value").GetInt64())).ToList();
        // invalidate_range_start raises in_progress (and, from 5.13, mn_active_invalidate_count); end drops them and bumps the seq.
        Assert.Contains(("mmu_invalidate_in_progress", 1L), counters);
        Assert.Contains(("mmu_invalidate_in_progress", 0L), counters);
        Assert.Contains(("mn_active_invalidate_count", 1L), counters);
        Assert.Contains(counters, c => c.Name == "mmu_invalidate_seq" && c.Value >= 1);
        int up = counters.IndexOf(("mmu_invalidate_in_progress", 1L)), down = counters.IndexOf(("mmu_invalidate_in_progress", 0L));
        Assert.True(up < down);
        // The ftrace text carries the same samples as atrace counters.
        Assert.Contains(FtraceWriter.Lines(t), l => l.EndsWith("tracing_mark_write: C|1|mmu_invalidate_in_progress|1", StringComparison.Ordinal));
    }

    static readonly Regex Line = new(@"^(.{16})-(\d+)\s+\[(\d+)\] [.0-9a-f]{5} +(\d+\.\d+): (\S+): (.*)$");
    static readonly Regex Switch = new(@"^prev_comm=(\S+) prev_pid=(\d+) prev_prio=120 prev_state=(R\+|R|D) ==> next_comm=(\S+) next_pid=(\d+) next_prio=120$");

    [Fact]
    public void FtraceHasSchedSwitchAtEveryContextChange()
    {
        var t = Record("kvm-fault-vs-invalidate", "6.13");
        var lines = FtraceWriter.Lines(t);
        var running = new Dictionary<int, string>();   // cpu -> comm switched in
        int switches = 0;
        double prev = 0;
        foreach (var l in lines)
        {
            var m = Line.Match(l);
            Assert.True(m.Success, l);
            double ts = double.Parse(m.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(ts > prev, "timestamps strictly increase: " + l);
            prev = ts;
            int cpu = int.Parse(m.Groups[3].Value);
            string task = m.Groups[1].Value.Trim();
            if (m.Groups[5].Value == "sched_switch")
            {
                var s = Switch.Match(m.Groups[6].Value);
                Assert.True(s.Success, l);
                Assert.Equal(task == "<idle>" ? $"swapper/{cpu}" : task, s.Groups[1].Value);
                if (s.Groups[4].Value.StartsWith("swapper/", StringComparison.Ordinal))
                {
                    Assert.Equal(running[cpu], task);
                    running.Remove(cpu);
                }
                else
                {
                    Assert.Equal("<idle>", task);
                    Assert.Empty(running);                    // one model CPU runs at a time
                    running[cpu] = s.Groups[4].Value;
                    switches++;
                }
            }
            else
                // Every other line is from the task switched in on that CPU.
                Assert.True(running.TryGetValue(cpu, out var r) && r == task, $"{l}: running {string.Join(",", running)}");
        }
        Assert.True(switches >= 3, $"round-robin over several contexts switches often ({switches})");
    }
}
