using MmuSim.Eras;
using MmuSim.Explore;
using MmuSim.Scenarios;
using MmuSim.Sched;
using Xunit;
using Xunit.Abstractions;

namespace MmuSim.Tests.Explore;

/// <summary>How many steps of a run of a scenario family are Global (dependent with every step).</summary>
public class FootprintCensusTests(ITestOutputHelper output)
{
    /// <summary>Random choices, recording each step's footprint and the function its context is in.</summary>
    sealed class Census(ulong seed) : IStrategy, IStepObserver
    {
        readonly RandomStrategy _r = new(seed);
        Scheduler _s = null!;
        public readonly List<(int Ctx, string Func, Footprint Fp)> Steps = [];
        public string Name => "census";
        public void BeginRun(int iteration) { _r.BeginRun(iteration); Steps.Clear(); }
        public int Next(in Decision d) => _r.Next(d);
        public int NextInt(int bound) => _r.NextInt(bound);
        public void Attach(Scheduler s) => _s = s;
        public void OnStep(int context, in Footprint footprint) =>
            Steps.Add((context, _s.Contexts[context].CurrentFunction, footprint));
    }

    static Census Run(string family, int pages, string era)
    {
        var c = new Census(1);
        new ScenarioExplorable(ScenarioFamily.Load(family, pages, 2), EraTable.Get(era)).RunOnce(c, 0);
        return c;
    }

    [Fact]
    public void Kvm_fault_path_names_the_vm_state_it_reads_and_fewer_than_half_the_steps_are_global()
    {
        var c = Run("kvm-fault-vs-invalidate", 1, "6.13");
        int global = 0;
        foreach (var (ctx, f, fp) in c.Steps)
        {
            if (fp.Class == ObjectClass.Global) global++;
            output.WriteLine($"{ctx} {f} {fp}");
        }
        output.WriteLine($"global {global} of {c.Steps.Count}");
        // The fault samples mmu_invalidate_seq (a read of the VM's invalidate state), takes mmu_lock (a write of it:
        // the lock guards it), enters the guest through an SPTE-class access.
        Assert.Contains(c.Steps, s => s.Func == "kvm_tdp_mmu_page_fault" && s.Fp is { Class: ObjectClass.Var, Write: false });
        Assert.Contains(c.Steps, s => s.Func == "kvm_tdp_mmu_page_fault" && s.Fp is { Class: ObjectClass.Var, Write: true });
        Assert.Contains(c.Steps, s => s.Func == "guest_write" && s.Fp.Class == ObjectClass.Spte);
        Assert.True(global * 2 < c.Steps.Count, $"{global} of {c.Steps.Count} steps are Global");
    }
}
