using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Notifier;

namespace MmuSim.Secondary;

/// <summary>
/// Base class of a user-written secondary MMU (a device driver that mirrors a process's address space): the unit that
/// <c>mmusim explore --secondary MyDriver.dll</c> loads and runs against the built-in <c>secondary-*</c> scenarios in
/// every kernel era. Derive from it, give it a public constructor taking a <see cref="DriverContext"/>, subscribe in
/// <see cref="Bind"/> (as an <see cref="MmuNotifier"/> through <see cref="DriverContext.MmuNotifierRegister"/> or as an
/// <see cref="MmuIntervalNotifier"/> through <see cref="DriverContext.MmuIntervalNotifierInsert"/>), serve device
/// accesses in <see cref="Read"/> and <see cref="Write"/>, and list the translations the device holds in
/// <see cref="CollectTranslations"/>: the coherence checker compares them with the primary page tables after every step.
/// </summary>
/// <remarks>
/// All driver code runs on the scheduler's contexts. Every access to state shared with another context (the device
/// page table, a sequence count) must be behind a scheduling point: take a <see cref="DeviceLock"/>, call a
/// <see cref="DriverContext"/> method, or <c>await</c> <see cref="DriverContext.SchedulingPoint"/>. Between points
/// nothing else runs, so a point is where the explorer may switch to a kernel path (munmap, reclaim, COW, migration).
/// Read shared state after the await, never cache it across one.
/// </remarks>
public abstract class SecondaryDriver : ISecondaryMmu
{
    /// <summary>Create the driver for one device instance; do not subscribe here (no context runs yet), do it in <see cref="Bind"/>.</summary>
    /// <param name="context">The kernel services, the mirrored process and the buffer the scenario hands the device.</param>
    protected SecondaryDriver(DriverContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Context = context;
    }

    /// <summary>The kernel services this driver uses (notifier registration, GUP, locks, device memory accesses).</summary>
    public DriverContext Context { get; }

    /// <summary>Name in traces and reports; by default the scenario's name for the device (<c>secondary: { name: gpu }</c>).</summary>
    public virtual string Name => Context.Name;

    /// <summary>
    /// True (the default) for a device that keeps its own software translations and drops them in
    /// invalidate_range_start or an interval notifier's invalidate (GPU userptr, RDMA ODP, HMM mirrors): the checker
    /// then requires that none survives in a range whose start returned. False for a TLB that walks the primary page
    /// tables itself (IOMMU SVA), flushed by invalidate_range (before 6.6) or arch_invalidate_secondary_tlbs (6.6+).
    /// </summary>
    public virtual bool UsesStartEnd => true;

    /// <summary>The process whose address space this device mirrors (<see cref="DriverContext.Mm"/>).</summary>
    public MmStruct MirroredMm => Context.Mm;

    /// <summary>
    /// Open the device on the process: subscribe to its mm. Runs once, in the scenario's setup phase, before any
    /// scenario thread. Afterwards the driver is registered with the checker automatically.
    /// </summary>
    public abstract ValueTask Bind();

    /// <summary>
    /// A device read of the 8-byte word at <paramref name="address"/> (page aligned, inside <see cref="DriverContext.Start"/>
    /// + <see cref="DriverContext.Length"/>): translate, fault through <see cref="DriverContext.GetUserPages"/> if needed,
    /// read with <see cref="DriverContext.DeviceRead"/>. Return null when the address cannot be mapped (-EFAULT).
    /// </summary>
    public abstract ValueTask<ulong?> Read(ulong address);

    /// <summary>A device write of <paramref name="value"/> at <paramref name="address"/> (see <see cref="Read"/>); return false on -EFAULT.</summary>
    public abstract ValueTask<bool> Write(ulong address, ulong value);

    /// <summary>Close the device: unsubscribe and drop every translation (the <c>secondary.unbind</c> op). By default nothing.</summary>
    public virtual ValueTask Unbind() => default;

    /// <summary>
    /// Append every translation the device holds now (device page-table entries, cached device-TLB entries) to
    /// <paramref name="into"/>. Called by the checker between steps with no context running: read your structures
    /// directly, without locks or awaits, and allocate nothing per entry.
    /// </summary>
    public abstract void CollectTranslations(List<SecondaryTranslation> into);

    /// <summary>The driver's name.</summary>
    public override string ToString() => Name;
}

/// <summary>
/// Declares that a <see cref="SecondaryDriver"/> needs a kernel feature (for instance
/// <see cref="Feature.IntervalNotifier"/>, 5.5+): <c>mmusim explore --secondary</c> reports the eras without it as
/// not applicable (<c>-</c>) instead of running the driver there, and the <c>secondary</c> op rejects them with a
/// one-line error. Repeat the attribute for several features.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = true)]
public sealed class RequiresFeatureAttribute(Feature feature) : Attribute
{
    /// <summary>The feature the driver cannot work without.</summary>
    public Feature Feature { get; } = feature;
}

/// <summary>
/// Optional marker for a <see cref="SecondaryDriver"/> class: gives the name <c>--driver</c> selects it by (default:
/// the class name) and a one-line description for reports. Unmarked public concrete subclasses are found too.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class SecondaryDriverAttribute : Attribute
{
    /// <summary>The name <c>mmusim explore --secondary DLL --driver NAME</c> selects; null = the class name.</summary>
    public string? Name { get; init; }

    /// <summary>One line describing the driver in reports.</summary>
    public string? Description { get; init; }

    /// <summary>Skipped unless selected by name with <c>--driver</c> (for a deliberately buggy variant kept beside the fixed one).</summary>
    public bool ExplicitOnly { get; init; }
}
