using System.Reflection;
using System.Runtime.Loader;
using MmuSim.Eras;

namespace MmuSim.Secondary;

/// <summary>
/// A <see cref="SecondaryDriver"/> class as the explorer sees it: its name, the features it needs, and how to create
/// one. <see cref="FromAssembly"/> finds every driver in a user's assembly (<c>mmusim explore --secondary DLL</c>).
/// </summary>
public sealed class DriverInfo
{
    readonly ConstructorInfo _ctor;

    DriverInfo(Type type, ConstructorInfo ctor)
    {
        Type = type;
        _ctor = ctor;
        var marker = type.GetCustomAttribute<SecondaryDriverAttribute>(inherit: false);
        Name = marker?.Name ?? type.Name;
        Description = marker?.Description ?? type.FullName ?? type.Name;
        ExplicitOnly = marker?.ExplicitOnly ?? false;
        Requires = type.GetCustomAttributes<RequiresFeatureAttribute>(inherit: true).Select(r => r.Feature).Distinct().ToArray();
    }

    /// <summary>The driver class.</summary>
    public Type Type { get; }

    /// <summary>Its name (<see cref="SecondaryDriverAttribute.Name"/>, else the class name).</summary>
    public string Name { get; }

    /// <summary>One line for reports.</summary>
    public string Description { get; }

    /// <summary>Run only when selected by name (<see cref="SecondaryDriverAttribute.ExplicitOnly"/>).</summary>
    public bool ExplicitOnly { get; }

    /// <summary>The features it declares with <see cref="RequiresFeatureAttribute"/>.</summary>
    public IReadOnlyList<Feature> Requires { get; }

    /// <summary>The built-in reference driver (<see cref="UserptrDriver"/>), used by the <c>secondary</c> op by default.</summary>
    public static DriverInfo Reference { get; } = Of(typeof(UserptrDriver));

    /// <summary>The drivers the model ships, by name, for the <c>secondary</c> op's <c>driver:</c> field: the reference
    /// userptr driver and the in-tree drivers of catalog rows (Devices/Gntdev.cs, Devices/I915Userptr.cs).</summary>
    public static IReadOnlyList<DriverInfo> BuiltIn { get; } =
        [Reference, Of(typeof(Devices.GntdevDriver)), Of(typeof(Devices.I915UserptrDriver))];

    /// <summary>The built-in driver named <paramref name="name"/>, or null.</summary>
    public static DriverInfo? BuiltInNamed(string name)
    {
        foreach (var d in BuiltIn)
            if (d.Name == name) return d;
        return null;
    }

    /// <summary>Can the driver run in <paramref name="era"/> (the era has every feature it requires)?</summary>
    public bool SupportedIn(KernelEra era)
    {
        foreach (var f in Requires)
            if (!era.Has(f)) return false;
        return true;
    }

    /// <summary>The first required feature <paramref name="era"/> lacks, or null.</summary>
    public Feature? MissingIn(KernelEra era)
    {
        foreach (var f in Requires)
            if (!era.Has(f)) return f;
        return null;
    }

    /// <summary>Create a driver instance for one device (once per run, in the setup phase).</summary>
    public SecondaryDriver Create(DriverContext context)
    {
        SecondaryDriver d;
        try { d = (SecondaryDriver)_ctor.Invoke([context]); }
        catch (TargetInvocationException e) when (e.InnerException != null)
        {
            throw new DriverLoadException($"{Type.FullName}: constructor threw {e.InnerException.GetType().Name}: {e.InnerException.Message}");
        }
        context.Owner = d;
        return d;
    }

    /// <summary>Describe <paramref name="type"/>; throws <see cref="DriverLoadException"/> if it is not a usable driver class.</summary>
    public static DriverInfo Of(Type type)
    {
        if (!typeof(SecondaryDriver).IsAssignableFrom(type))
            throw new DriverLoadException($"{type.FullName} does not derive from {nameof(SecondaryDriver)}");
        if (type.IsAbstract || type.ContainsGenericParameters)
            throw new DriverLoadException($"{type.FullName} is abstract or generic");
        var ctor = type.GetConstructor([typeof(DriverContext)])
            ?? throw new DriverLoadException($"{type.FullName} has no public constructor taking a {nameof(DriverContext)}");
        return new DriverInfo(type, ctor);
    }

    /// <summary>
    /// Load the assembly at <paramref name="path"/> (with its dependencies from the same folder; MmuSim.Model itself
    /// is shared with the caller) and describe every public concrete <see cref="SecondaryDriver"/> subclass in it.
    /// Throws <see cref="DriverLoadException"/> (one line) for a missing or unloadable file, or no drivers.
    /// </summary>
    public static IReadOnlyList<DriverInfo> FromAssembly(string path)
    {
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new DriverLoadException($"'{path}' is not a valid path");
        }
        if (Directory.Exists(full)) throw new DriverLoadException($"'{path}' is a directory, not an assembly (.dll)");
        if (!File.Exists(full)) throw new DriverLoadException($"no such file '{path}'");
        Assembly asm;
        try { asm = new DriverLoadContext(full).LoadFromAssemblyPath(full); }
        catch (BadImageFormatException) { throw new DriverLoadException($"'{path}' is not a .NET assembly"); }
        catch (Exception e) when (e is FileLoadException or IOException or UnauthorizedAccessException)
        {
            throw new DriverLoadException($"cannot load '{path}': {e.Message}");
        }
        Type[] types;
        try { types = asm.GetExportedTypes(); }
        catch (Exception e) when (e is ReflectionTypeLoadException or FileNotFoundException or FileLoadException or TypeLoadException)
        {
            throw new DriverLoadException($"cannot load the types of '{path}': {FirstLine(e.Message)} (is it built against this MmuSim.Model version?)");
        }
        var found = new List<DriverInfo>();
        foreach (var t in types.OrderBy(t => t.FullName, StringComparer.Ordinal))
            if (typeof(SecondaryDriver).IsAssignableFrom(t) && !t.IsAbstract && !t.ContainsGenericParameters)
                found.Add(Of(t));
        if (found.Count == 0)
        {
            var other = types.FirstOrDefault(t => typeof(Notifier.ISecondaryMmu).IsAssignableFrom(t) && !t.IsAbstract);
            throw new DriverLoadException(other != null
                ? $"'{path}': {other.FullName} implements ISecondaryMmu but does not derive from MmuSim.Secondary.{nameof(SecondaryDriver)} (see docs/your-secondary-mmu.md)"
                : $"'{path}' contains no public class deriving from MmuSim.Secondary.{nameof(SecondaryDriver)}");
        }
        var dup = found.GroupBy(d => d.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (dup != null) throw new DriverLoadException($"'{path}': two drivers are named '{dup.Key}'");
        return found;
    }

    static string FirstLine(string s) => s.Split('\n', 2)[0].Trim();

    /// <summary>The driver's name.</summary>
    public override string ToString() => Name;

    /// <summary>Resolves a driver's own dependencies from its folder; MmuSim.Model and the framework come from the host.</summary>
    sealed class DriverLoadContext(string mainPath) : AssemblyLoadContext("mmusim-driver:" + Path.GetFileName(mainPath))
    {
        readonly AssemblyDependencyResolver _resolver = new(mainPath);

        protected override Assembly? Load(AssemblyName name)
        {
            // Share the model (and everything the host already has) so SecondaryDriver is one type on both sides.
            foreach (var a in Default.Assemblies)
                if (AssemblyName.ReferenceMatchesDefinition(a.GetName(), name) || a.GetName().Name == name.Name) return a;
            var p = _resolver.ResolveAssemblyToPath(name);
            return p != null ? LoadFromAssemblyPath(p) : null;
        }
    }
}

/// <summary>A user driver assembly cannot be used: reported as one line (<c>mmusim: --secondary: ...</c>) with exit code 2.</summary>
public sealed class DriverLoadException(string message) : Exception(message);
