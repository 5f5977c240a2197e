using System.Text.Json;
using MmuSim.Experiments;
using MmuSim.Scenarios;
using MmuSim.Sched;
using static MmuSim.Tests.Cli.CliRunner;

namespace MmuSim.Tests.Experiments;

/// <summary>Experiments: files, sweeps, the plain-simulation runner, comparisons, cost files and the CLI.</summary>
public class ExperimentTests
{
    /// <summary>A small change-pte: 64 guest pages, half of them identical; ksmd merges them, the guest reads everything.</summary>
    internal const string Small = """
        name: small-change-pte
        question: what does a working change_pte save on 64 pages?
        eras: [2.6.32, "6.8", "6.13"]
        baseline: 2.6.32
        metrics: [vm_exits, sptes_zapped, kvm_pf_fixed, kvm_change_pte_found_present, sim_ns]
        per:
          merged_page: merged_pages
        vary_cost: { kind: vm-exit, count: vm_exits, values: [500, 4000] }
        scenarios:
          - name: touch
            params:
              merged: [0.5, 1]
            let:
              pages: 64
              merged_pages: floor(pages * merged)
            template: |
              name: small
              processes:
                - name: qemu
                  vmas:
                    - { start: 0x100000, len: {{pages * 4096}}, prot: rw, contents: { value: 0x5A, pages: {{merged_pages}}, rest_distinct: 0x1000 } }
              setup:
                - madvise: { process: qemu, addr: 0x100000, len: {{pages * 4096}}, advice: mergeable }
                - vm.create: { process: qemu, name: vm0, arch: x86-tdp }
                - memslot.add: { vm: vm0, gfn: 0x100, pages: {{pages}}, hva: 0x100000 }
                - guest.read: { vm: vm0, gfn: 0x100, pages: {{pages}} }
              threads:
                - name: ksmd
                  process: qemu
                  ops:
                    - ksm.scan: { full_scans: 2 }
                    - signal: { event: merged }
                - name: vcpu0
                  ops:
                    - wait: { event: merged }
                    - guest.read: { vm: vm0, gfn: 0x100, pages: {{pages}} }
              expect: pass
        plots:
          - { title: exits, scenario: touch, x: merged, y: vm_exits }
          - { title: saving, scenario: touch, x: merged, y: saving_per_merged_page }
        """;

    static CellResult Cell(ExperimentResult r, double merged, string era) =>
        r.Cells.Single(c => c.Cell.Point.Vars["merged"] == merged && c.Cell.Era.Name == era);

    [Fact]
    public void BuiltInsLoadAndNameTheirEras()
    {
        Assert.Equal(["aging", "change-pte", "lru-gen", "retry", "thp-invalidate"], ExperimentLoader.BuiltInNames);
        var x = ExperimentLoader.LoadBuiltIn("change-pte");
        Assert.Equal(["2.6.32", "6.8", "6.13"], x.Eras.Select(e => e.Name));
        Assert.Equal("2.6.32", x.Baseline!.Name);
        Assert.Equal(["touch", "churn"], x.Scenarios.Select(s => s.Name));
        Assert.Equal(8, x.Scenarios[0].Points.Count); // gib 2 x merged 4
        Assert.Equal(8192 * 2, x.Scenarios[0].Points[^1].Vars["pages"]);
        foreach (var n in ExperimentLoader.BuiltInNames) Assert.NotEmpty(ExperimentLoader.LoadBuiltIn(n).Cells());
    }

    [Fact]
    public void WorkingChangePte_NoExitsAfterMerge_DeadAndRemoved_OneRefaultPerMergedPage()
    {
        var x = ExperimentLoader.Parse(Small, "small.yaml");
        var r = ExperimentRunner.Run(x, 1, CostSet.Defaults, 2);
        Assert.True(r.AllMatch);
        foreach (double merged in new[] { 0.5, 1.0 })
        {
            long mergedPages = (long)(64 * merged);
            var working = Cell(r, merged, "2.6.32");
            Assert.Equal(0, working.Metrics["vm_exits"]);
            Assert.True(working.Metrics["kvm_change_pte_found_present"] >= mergedPages);
            foreach (var era in new[] { "6.8", "6.13" })
            {
                var dead = Cell(r, merged, era);
                // ksmd keeps one page of each stable node in place (the first copy): every other merged page refaults.
                Assert.InRange(dead.Metrics["vm_exits"], mergedPages - 2, mergedPages);
                Assert.Equal(dead.Metrics["vm_exits"], dead.Metrics["kvm_pf_fixed"]);
                Assert.Equal(0, dead.Metrics["kvm_change_pte_found_present"]);
                var cmp = r.Comparisons.Single(c => c.Cell == dead);
                Assert.Equal(dead.Metrics["sim_ns"] - working.Metrics["sim_ns"], cmp.Delta["sim_ns"]);
                Assert.Equal((double)cmp.Delta["sim_ns"] / mergedPages, cmp.SavingPer["merged_page"], 6);
                // The saving is linear in the exit cost: moving vm-exit from 1500 to X moves it by Δexits·(X−1500)/pages.
                var (cost, per) = cmp.SavingByCost[1];
                Assert.Equal(4000, cost);
                Assert.Equal((cmp.Delta["sim_ns"] + cmp.Delta["vm_exits"] * (4000.0 - 1500)) / mergedPages, per["merged_page"], 6);
                Assert.True(cmp.SavingPer["merged_page"] > CostModel.Defaults[CostKind.VmExit]);
            }
        }
    }

    [Fact]
    public void SameSeed_SameJson_WhateverTheWorkerCount()
    {
        var x = ExperimentLoader.Parse(Small, "small.yaml");
        string a = ExperimentRunner.ToJson(ExperimentRunner.Run(x, 7, CostSet.Defaults, 1));
        string b = ExperimentRunner.ToJson(ExperimentRunner.Run(x, 7, CostSet.Defaults, 2));
        Assert.Equal(a, b);
        using var doc = JsonDocument.Parse(a);
        Assert.Equal(6, doc.RootElement.GetProperty("cells").GetArrayLength());
        Assert.Equal(4, doc.RootElement.GetProperty("comparisons").GetArrayLength());
        Assert.Equal(1500, doc.RootElement.GetProperty("costs").GetProperty("kinds").GetProperty("vm-exit").GetProperty("ns").GetInt32());
        Assert.Contains("bench/realkvm", doc.RootElement.GetProperty("costs").GetProperty("kinds").GetProperty("vm-exit").GetProperty("source").GetString());
    }

    [Fact]
    public void CostsFile_OverridesTheClock_AndTheOutputSaysWhichCosts()
    {
        var x = ExperimentLoader.Parse(Small, "small.yaml");
        var path = WriteScenario("machine: test box\ncosts:\n  vm-exit: 4000\n  zap: { ns: 50, source: measured elsewhere }\n");
        var cs = CostSet.Load(path);
        Assert.Equal(4000, cs[CostKind.VmExit]);
        Assert.Equal("measured elsewhere", cs.Costs.Single(c => c.Kind == CostKind.Zap).Source);
        Assert.Contains("test box", cs.Origin);
        var d = ExperimentRunner.Run(x, 1, CostSet.Defaults, 2);
        var o = ExperimentRunner.Run(x, 1, cs, 2);
        var dc = Cell(d, 1, "6.13");
        var oc = Cell(o, 1, "6.13");
        Assert.Equal(dc.Metrics["vm_exits"], oc.Metrics["vm_exits"]);
        Assert.Equal(dc.Metrics["sim_ns"] + dc.Metrics["vm_exits"] * 2500 + dc.Metrics["sptes_zapped"] * 30, oc.Metrics["sim_ns"]);
        Assert.Contains("test box", ExperimentRunner.ToText(o));
        // A JSON cost file works the same way.
        var json = WriteScenario("{\"costs\": {\"vm-exit\": 4000, \"zap\": 50}}");
        Assert.Equal(oc.Metrics["sim_ns"], Cell(ExperimentRunner.Run(x, 1, CostSet.Load(json), 1), 1, "6.13").Metrics["sim_ns"]);
    }

    [Theory]
    [InlineData("machine: m\ncosts:\n  warp: 5\n", 3, "costs.warp", "unknown cost kind")]
    [InlineData("costs:\n  vm-exit: fast\n", 2, "costs.vm-exit", "not a whole number")]
    [InlineData("costs:\n  vm-exit: { ns: 5, src: x }\n", 2, "costs.vm-exit.src", "unknown field")]
    [InlineData("machine: m\n", 1, "costs", "missing")]
    [InlineData("costs: [1, 2\n", 2, "yaml", "")]
    public void BadCostsFile_Exit2_FileLineField(string text, int line, string field, string message)
    {
        var path = WriteScenario(text);
        var (code, _, err) = Run("experiment", WriteScenario(Small), "--costs", path);
        Assert.Equal(2, code);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith($"{path}:{line}: {field}: ", lines[0]);
        Assert.Contains(message, lines[0]);
    }

    [Theory]
    [InlineData("eras: [2.6.32, \"6.8\", \"6.13\"]", "eras: [2.6.32, \"9.9\"]", 3, "eras", "unknown era '9.9'")]
    [InlineData("baseline: 2.6.32", "baseline: \"5.5\"", 4, "baseline", "not one of eras")]
    [InlineData("metrics: [vm_exits,", "metrics: [vm_exitz,", 5, "metrics", "unknown metric 'vm_exitz'")]
    [InlineData("merged_pages: floor(pages * merged)", "merged_pages: floor(pagez * merged)", 15, "scenarios[touch].let.merged_pages", "unknown name 'pagez'")]
    [InlineData("- { title: exits, scenario: touch, x: merged, y: vm_exits }", "- { title: exits, scenario: touch, x: merged, y: walltime }", 39, "plots.y", "not era, a parameter")]
    public void BadExperimentFile_Exit2_FileLineField(string from, string to, int line, string field, string message)
    {
        var path = WriteScenario(Small.Replace(from, to));
        var (code, _, err) = Run("experiment", path);
        Assert.Equal(2, code);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith($"{path}:{line}: {field}: ", lines[0]);
        Assert.Contains(message, lines[0]);
    }

    [Fact]
    public void TemplateError_IsReportedAtItsLineInTheExperimentFile()
    {
        var path = WriteScenario(Small.Replace("advice: mergeable", "advice: mergable"));
        var (code, _, err) = Run("experiment", path);
        Assert.Equal(2, code);
        // The madvise line is line 23 of the experiment file; the field names the scenario, the sweep point and the op.
        Assert.StartsWith($"{path}:23: scenarios[touch].template (merged=0.5): madvise.advice: ", err);
    }

    [Fact]
    public void UnknownExperiment_AndBadJobs_AreUsageErrors()
    {
        var (code, _, err) = Run("experiment", "change-ptx");
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: experiment: no file or built-in experiment named 'change-ptx' (known: aging, change-pte, lru-gen, retry, thp-invalidate)", err);
        (code, _, err) = Run("experiment", WriteScenario(Small), "-j", "0");
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: --jobs: must be at least 1", err);
        (code, _, err) = Run("experiment", WriteScenario(Small), "--costs", "/nonexistent/costs.yaml");
        Assert.Equal(2, code);
        Assert.StartsWith("mmusim: --costs: no such file", err);
    }

    [Fact]
    public void Cli_TextAndJson_SameSeedSameJson_OutWritesJsonAndHtml()
    {
        var path = WriteScenario(Small);
        var (code, text, _) = Run("experiment", path);
        Assert.Equal(0, code);
        Assert.Contains("costs: defaults (calibrated", text);
        Assert.Contains("vm-exit 1500", text);
        Assert.Contains("saving of 2.6.32 over each era", text);
        var (c1, j1, _) = Run("experiment", path, "--json", "--seed", "3");
        var (c2, j2, _) = Run("experiment", path, "--json", "--seed", "3", "-j", "1");
        Assert.Equal(0, c1);
        Assert.Equal(0, c2);
        Assert.Equal(j1, j2);
        var dir = Path.Combine(Path.GetTempPath(), "mmusim-exp-" + Guid.NewGuid().ToString("N"));
        Assert.Equal(0, Run("experiment", path, "--out", dir).Code);
        Assert.True(File.Exists(Path.Combine(dir, "small-change-pte.json")));
        var html = File.ReadAllText(Path.Combine(dir, "index.html"));
        Assert.Contains("id=\"plot-0\"", html);
        Assert.Contains("id=\"plot-1\"", html);
    }

    [Fact]
    public void ContentsRestDistinct_FirstPagesHoldValue_RestDistinct()
    {
        var s = ScenarioLoader.Parse("""
            name: t
            processes:
              - name: p
                vmas:
                  - { start: 0x100000, len: 16K, prot: rw, contents: { value: 0x5A, pages: 1, rest_distinct: 0x10 } }
            threads:
              - name: c
                process: p
                ops:
                  - read: { addr: 0x100000 }
            """, "t.yaml");
        Assert.Equal([0x5AUL, 0x11UL, 0x12UL, 0x13UL], s.Processes[0].Vmas[0].Contents.Select(c => c!.Value));
    }

    [Fact]
    public void RetryExperiment_SlowSecondaryOpensWindows_FaultsRetry()
    {
        var x = ExperimentLoader.LoadBuiltIn("retry");
        var cell = x.Cells().First(c => c.Point.Vars["cpus"] == 4 && c.Point.Vars["wait_us"] == 100);
        var r = ExperimentRunner.RunCell(x, cell, 1, CostSet.Defaults);
        Assert.True(r.MatchesExpectation);
        Assert.True(r.Metrics["kvm_fault_retries"] > 0);
        Assert.Equal(r.Metrics["vm_exits"] - r.Metrics["kvm_fault_retries"], r.Metrics["kvm_pf_fixed"]);
    }

    [Fact]
    public void ThpInvalidate_SingleAddressMissesTheWriteback_WholeRangeRefaultsEachTouchedPage()
    {
        var x = ExperimentLoader.LoadBuiltIn("thp-invalidate");
        var r = ExperimentRunner.Run(x, 1, CostSet.Defaults, 2);
        Assert.True(r.AllMatch);
        foreach (var c in r.Cells)
        {
            long touched = (long)c.Cell.Point.Vars["touched"];
            if (c.Cell.Era.Name == "4.10")
            {
                Assert.Equal(0, c.Metrics["vm_exits"]);         // the writes went through the stale writable SPTEs
                Assert.Equal(512, c.Metrics["pages_cleaned"]);  // the second writeback found the THP clean: missed
                Assert.Equal(1, c.Metrics["notifier_invalidate_page"]);
            }
            else
            {
                Assert.Equal(touched, c.Metrics["vm_exits"]);
                Assert.Equal(1024, c.Metrics["pages_cleaned"]);
                Assert.Equal(2 * touched, c.Metrics["sptes_zapped"]);
            }
        }
    }

    [Fact]
    public void Aging_ZappingWithoutABitsRefaultsTheHotSet_TestYoungNeverFlushes()
    {
        var x = ExperimentLoader.LoadBuiltIn("aging");
        CellResult Run1(double mode, double noAd) => ExperimentRunner.RunCell(x,
            x.Cells().First(c => c.Point.Vars["mode"] == mode && c.Point.Vars["no_ad"] == noAd && c.Point.Vars["hot"] == 0.25 && c.Era.Name == "6.13"),
            1, CostSet.Defaults);
        var flushAd = Run1(0, 0);
        var flushNoAd = Run1(0, 1);
        var test = Run1(2, 0);
        Assert.Equal(0, flushAd.Metrics["vm_exits"]);
        Assert.Equal(256, flushAd.Metrics["observed.young3"]);           // exactly the hot set
        Assert.Equal(3 * 256, flushNoAd.Metrics["vm_exits"]);            // zapping aging: every hot page refaults each round
        Assert.Equal(256, flushNoAd.Metrics["observed.young3"]);
        Assert.True(test.Metrics["kvm_remote_tlb_flushes"] < flushAd.Metrics["kvm_remote_tlb_flushes"]);
    }

    [Fact]
    public void LruGen_SeesTheVmsHotSetOnlyFrom612_AndZappingAgingRefaultsIt()
    {
        var x = ExperimentLoader.LoadBuiltIn("lru-gen");
        CellResult Run1(double mmu, string era) => ExperimentRunner.RunCell(x,
            x.Cells().First(c => c.Point.Vars["mmu"] == mmu && c.Point.Vars["hot"] == 0.25 && c.Era.Name == era), 1, CostSet.Defaults);
        foreach (double mmu in new[] { 0.0, 1.0, 2.0 })
        {
            var before = Run1(mmu, "6.10");
            var after = Run1(mmu, "6.13");
            Assert.Equal(0, before.Metrics["observed.young3"]);              // the walk never asks KVM: the VM looks idle
            Assert.Equal(0, before.Metrics["notifier_clear_young"]);
            Assert.Equal(256, after.Metrics["observed.young3"]);             // exactly the hot set
            Assert.Equal(4 * 1024, after.Metrics["notifier_clear_young"]);   // every PTE of the mm, four passes
            Assert.Equal(mmu == 1 ? 3 * 256 : 0, after.Metrics["vm_exits"]); // EPT without A/D: aging zaps, the hot set refaults
        }
    }
}
