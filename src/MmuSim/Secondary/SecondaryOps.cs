using MmuSim.Mm;
using MmuSim.Scenarios;

namespace MmuSim.Secondary;

/// <summary>
/// Scenario ops for user-written secondary MMUs: <c>secondary</c> creates a device from the run's driver (the one
/// <c>mmusim explore --secondary DLL</c> loaded, else the reference <see cref="UserptrDriver"/>), binds it and
/// registers it with the checker; <c>secondary.read</c> / <c>secondary.write</c> are device accesses through it.
/// The built-in <c>secondary-*</c> scenarios are written with these ops only, so that any driver can run them.
/// </summary>
public static class SecondaryOps
{
    /// <summary>Register the ops.</summary>
    public static void Register(OpRegistry r)
    {
        r.Register(new OpSpec("secondary", "create a device from the user driver (explore --secondary DLL; default: the reference userptr driver) over [addr, addr+len) of process, bind it, check it; `driver:` picks a built-in one instead (userptr, gntdev, i915-userptr)",
            ["process", "addr", "len"], ["name", "driver"], Bind) { Check = CheckBind });
        r.Register(new OpSpec("secondary.read", "device read of addr through the user driver (`as` stores the value)",
            ["secondary", "addr"], ["as"], Read));
        r.Register(new OpSpec("secondary.write", "device write of value at addr through the user driver",
            ["secondary", "addr", "value"], [], Write) { Check = (a, _) => a.GetULong("value") });
        r.Register(new OpSpec("secondary.unbind", "close the device: the driver's Unbind (unsubscribe, drop translations)",
            ["secondary"], [], Unbind));
    }

    static void CheckBind(OpArgs a, ScenarioInfo _)
    {
        // addr and len (page aligned, positive) are checked by the loader's shared field conventions.
        ulong addr = a.GetAddress("addr"), len = a.GetULong("len");
        if (len > (1UL << 47) - addr) throw a.Error("len", $"[0x{addr:x}, +0x{len:x}) goes past the 47-bit user address space");
        BuiltInDriver(a);
    }

    /// <summary>The driver the op's <c>driver:</c> names, or null when it names none.</summary>
    static DriverInfo? BuiltInDriver(OpArgs a)
    {
        if (!a.Has("driver")) return null;
        string name = a.GetString("driver");
        return DriverInfo.BuiltInNamed(name) ?? throw a.Error("driver",
            $"no built-in driver named '{name}' (one of: {string.Join(", ", DriverInfo.BuiltIn.Select(d => d.Name))})");
    }

    static async ValueTask Bind(ScenarioWorld w, OpArgs a)
    {
        var mm = w.Process(a);
        string name = a.GetString("name", "gpu");
        if (w.Objects.ContainsKey(name)) throw a.Error("name", $"an object named '{name}' already exists");
        var info = BuiltInDriver(a) ?? w.SecondaryDriver ?? DriverInfo.Reference;
        if (info.MissingIn(w.K.Era) is { } f)
            throw a.Error(a.Has("driver") ? "driver" : "name", $"driver '{info.Name}' requires {f}, which era {w.K.Era.Name} does not have");
        var ctx = new DriverContext(w.K, mm, name, a.GetAddress("addr"), a.GetULong("len"));
        var dev = info.Create(ctx);
        w.Objects[name] = dev;
        await dev.Bind();
        w.K.Checker.AddSecondary(dev);
    }

    static async ValueTask Read(ScenarioWorld w, OpArgs a)
    {
        var dev = w.Get<SecondaryDriver>(a, "secondary");
        var v = await dev.Read(InBuffer(dev, a));
        if (a.Has("as") && v is { } value) w.Observed[a.GetString("as")] = value;
    }

    static async ValueTask Write(ScenarioWorld w, OpArgs a)
    {
        var dev = w.Get<SecondaryDriver>(a, "secondary");
        await dev.Write(InBuffer(dev, a), a.GetULong("value"));
    }

    static async ValueTask Unbind(ScenarioWorld w, OpArgs a)
    {
        var dev = w.Get<SecondaryDriver>(a, "secondary");
        await dev.Unbind();
        w.K.Checker.RemoveSecondary(dev);
    }

    static ulong InBuffer(SecondaryDriver dev, OpArgs a)
    {
        ulong addr = a.GetAddress("addr");
        if (addr < dev.Context.Start || addr >= dev.Context.End)
            throw a.Error("addr", $"0x{addr:x} is outside the device's buffer [0x{dev.Context.Start:x}, 0x{dev.Context.End:x})");
        return addr;
    }
}
