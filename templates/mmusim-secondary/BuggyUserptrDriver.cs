using MmuSim.Secondary;

namespace MyDriver;

/// <summary>
/// The same driver with the classic userptr bug: it never calls mmu_interval_read_retry, so a page faulted just
/// before an invalidation (munmap, COW, reclaim, migration) is installed after it and the GPU keeps a stale page.
/// Only run when named: <c>mmusim explore --secondary bin/Debug/net10.0/MyDriver.dll --driver buggy-userptr</c>.
/// </summary>
[SecondaryDriver(Name = "buggy-userptr", Description = "userptr driver without read_retry (deliberately buggy)", ExplicitOnly = true)]
public sealed class BuggyUserptrDriver(DriverContext context) : UserptrDriver(context)
{
    protected override bool UsesReadRetry => false;
}
