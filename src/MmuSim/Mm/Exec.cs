using MmuSim.Sched;

namespace MmuSim.Mm;

/// <summary>fs/exec.c, as far as the address space goes: execve replaces the task's mm with a fresh one.</summary>
public static class Exec
{
    /// <summary>
    /// bprm_mm_init + exec_mmap: a new, empty mm_struct (mm_init copies the flags of MMF_INIT_MASK from the old one:
    /// the KSM merge-any flag from 6.6), ksm_execve, then the old mm is dropped (mmput: exit_mmap, ->release first,
    /// when this task held its last user). Returns the new mm; the caller makes it the task's.
    /// </summary>
    public static async ValueTask<MmStruct> ExecMmap(MmStruct old, string name)
    {
        var k = old.Kernel;
        using var _ = k.S.Current.Enter("exec_mmap");
        var mm = k.CreateMm(name);
        await k.S.Point(PointKind.Alloc); // mm_alloc
        Ksm.Ksmd.Of(k).KsmExecve(old, mm);
        await Mmap.ExitMmap(old);
        return mm;
    }
}
