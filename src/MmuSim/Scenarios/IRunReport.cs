namespace MmuSim.Scenarios;

/// <summary>
/// Something that prints its own section after a run (<c>mmusim run</c>): KSM's /sys/kernel/mm/ksm counters, a
/// recorder's callback log, a VM's dirty bitmap... Implement it on an object in <see cref="Kernel.Subsystems"/> or in
/// <see cref="ScenarioWorld.Objects"/>; <see cref="ScenarioRunner"/> collects them in insertion order.
/// </summary>
public interface IRunReport
{
    /// <summary>Section heading, e.g. <c>/sys/kernel/mm/ksm</c> or <c>recorder rec0</c>.</summary>
    string ReportTitle { get; }

    /// <summary>Write the section body (plain text, one item per line).</summary>
    void Report(TextWriter w);
}
