namespace MmuSim.Scenarios;

/// <summary>
/// The documented bounds of a scenario file (docs/scenarios.md, "Limits"). The loader rejects anything past them with a
/// <c>file:line: field: message</c> error, so that no input can exhaust the stack or memory of the process.
/// </summary>
public static class ScenarioLimits
{
    /// <summary>Largest scenario or trace file read, in bytes.</summary>
    public const long MaxFileBytes = 16L << 20;

    /// <summary>Deepest nesting of YAML mappings and lists (the YAML parser recurses on it).</summary>
    public const int MaxNesting = 32;

    /// <summary>Longest single value (name, description, op field).</summary>
    public const int MaxValueLength = 64 * 1024;

    /// <summary>Most pages a VMA's <c>contents:</c> may fill (each is written by the setup context).</summary>
    public const int MaxContentPages = 1 << 16;

    /// <summary>Largest cost of one event, in simulated ns (1000 s).</summary>
    public const ulong MaxCostNs = 1_000_000_000_000;

    /// <summary>Largest <c>max_steps</c>.</summary>
    public const ulong MaxSteps = 1UL << 40;

    /// <summary>Most pages of one KVM memslot (4 GiB of guest memory).</summary>
    public const ulong MaxMemslotPages = 1UL << 20;

    /// <summary>Guest frame numbers are below 2^40 (52-bit guest physical addresses).</summary>
    public const ulong GfnLimit = 1UL << 40;
}
