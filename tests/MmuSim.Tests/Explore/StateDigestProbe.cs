using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;

namespace MmuSim.Tests.Explore;

public class StateDigestProbe
{
    sealed class Rand(ulong seed) : IStrategy, IStateReadingStrategy, IStepObserver
    {
        Rng _r = new(seed);
        public Scheduler? S;
        public string Name => "r";
        public bool ReadsState => true;
        public void BeginRun(int i) { }
        public List<string> Texts = [];
        public int Next(in Decision d) { Texts.Add(new StateDigest().Describe(S!)); return d.Runnable[_r.Below(d.Runnable.Length)]; }
        public int NextInt(int b) => _r.Below(b);
        public void Attach(Scheduler s) => S = s;
        public void OnStep(int c, in Footprint f) { }
    }

    [Fact(Skip = "diagnostic probe: run by hand")]
    public void VaryingFields()
    {
        var s = ScenarioFamily.Load("kvm-fault-vs-invalidate", 1, 2);
        var vals = new Dictionary<string, HashSet<string>>();
        for (ulong seed = 1; seed < 30; seed++)
        {
            var st = new Rand(seed);
            ScenarioRunner.Run(s, EraTable.Get("6.13"), st, null);
            foreach (var t in st.Texts)
                foreach (var line in t.Split('\n'))
                {
                    int eq = line.IndexOf('=');
                    if (eq < 0) continue;
                    var k = line[..eq];
                    if (!vals.TryGetValue(k, out var set)) vals[k] = set = [];
                    set.Add(line[(eq + 1)..]);
                }
        }
        File.WriteAllLines("/tmp/probe_vary.txt", vals.OrderByDescending(kv => kv.Value.Count).Take(60).Select(kv => $"{kv.Value.Count} {kv.Key} e.g. {string.Join(",", kv.Value.Take(6))}"));
    }

    [Fact(Skip = "diagnostic probe: run by hand")]
    public void TerminalStates()
    {
        var s = ScenarioFamily.Load("kvm-fault-vs-invalidate", 1, 2);
        var texts = new Dictionary<string, int>();
        for (ulong seed = 1; seed < 200; seed++)
        {
            var st = new Rand(seed);
            var r = ScenarioRunner.Run(s, EraTable.Get("6.13"), st, null);
            var t = new StateDigest().Describe(r.Kernel.S);
            texts[t] = texts.GetValueOrDefault(t) + 1;
        }
        var list = texts.Keys.ToList();
        File.WriteAllText("/tmp/probe_count.txt", $"{list.Count} distinct terminal states\n");
        for (int i = 0; i < list.Count; i++) File.WriteAllText($"/tmp/probe_{i}.txt", list[i]);
    }
}
