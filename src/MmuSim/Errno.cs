namespace MmuSim;

/// <summary>
/// The errnos the model's syscalls and ioctls return (negative, as the kernel returns them), and their names as
/// scenarios write them (<c>ok</c>, <c>einval</c>, ...; <see cref="Scenarios.OpArgs.GetErrno"/>).
/// </summary>
public static class Errno
{
    public const int EPERM = -1, ENOENT = -2, EIO = -5, ENXIO = -6, E2BIG = -7, EBADF = -9, EAGAIN = -11, ENOMEM = -12, EACCES = -13, EFAULT = -14, EBUSY = -16,
        EEXIST = -17, ENODEV = -19, EINVAL = -22, ENOTTY = -25, ENOSPC = -28, ERANGE = -34, ENOSYS = -38, EOPNOTSUPP = -95, EHWPOISON = -133;

    static readonly (string Name, int Value)[] Names =
    [
        ("ok", 0), ("eperm", EPERM), ("enoent", ENOENT), ("eio", EIO), ("enxio", ENXIO), ("e2big", E2BIG), ("ebadf", EBADF), ("eagain", EAGAIN), ("enomem", ENOMEM),
        ("eacces", EACCES), ("efault", EFAULT), ("ebusy", EBUSY), ("eexist", EEXIST), ("enodev", ENODEV), ("einval", EINVAL), ("enotty", ENOTTY), ("enospc", ENOSPC), ("erange", ERANGE), ("enosys", ENOSYS), ("eopnotsupp", EOPNOTSUPP),
        ("ehwpoison", EHWPOISON),
    ];

    /// <summary>The names a scenario may write, comma separated.</summary>
    public static string KnownList => string.Join(", ", Array.ConvertAll(Names, n => n.Name));

    /// <summary><c>ok</c> for 0, <c>einval</c> for -22, ...; the number for an errno without a name here.</summary>
    public static string NameOf(int value)
    {
        foreach (var (name, v) in Names)
            if (v == value) return name;
        return value.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    public static bool TryParse(string s, out int value)
    {
        foreach (var (name, v) in Names)
            if (string.Equals(name, s, StringComparison.OrdinalIgnoreCase)) { value = v; return true; }
        value = 0;
        return false;
    }
}
