namespace MmuSim.Mm;

/// <summary>mm/migrate.c. (Skeleton: filled in by the primary-paths work.)</summary>
public static class Migrate
{
    /// <summary>migration_entry_wait: wait until the migration entry is replaced, then retry the fault.</summary>
    public static ValueTask<VmFault> MigrationEntryWait(MmStruct mm, int t, ulong addr, Pte entry) =>
        throw new NotImplementedException("migration_entry_wait");
}
