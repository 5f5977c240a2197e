using MmuSim.Eras;
using MmuSim.Mm;
using MmuSim.Sched;

namespace MmuSim.Kvm;

/// <summary>The result of KVM_PRE_FAULT_MEMORY: the ioctl's return (0 or a negative errno) and the range it wrote back.</summary>
public readonly record struct PreFaultResult(int Errno, ulong Gpa, ulong Size);

/// <summary>
/// KVM_PRE_FAULT_MEMORY (6.10+, x86 with TDP): virt/kvm/kvm_main.c kvm_vcpu_pre_fault_memory and
/// arch/x86/kvm/mmu/mmu.c kvm_arch_vcpu_pre_fault_memory / kvm_tdp_map_page.
/// </summary>
/// <remarks>
/// <para>Locking: the whole range runs under kvm->srcu (one read-side section, <see cref="Kvm.SrcuReaders"/>), and each
/// page is an ordinary fault with <c>prefetch</c> set (a read: error code PFERR_GUEST_FINAL_MASK only).</para>
/// <para>The bug of 6.10-6.17 (catalog e2): a memslot deletion or move marks the slot KVM_MEMSLOT_INVALID and then
/// waits in synchronize_srcu for every reader; a prefault on that slot gets RET_PF_RETRY from kvm_mmu_faultin_pfn and
/// kvm_tdp_map_page faults again without leaving SRCU, so neither side can move. KVM_RUN does not hang there because
/// vcpu_enter_guest drops SRCU on every entry. From 6.18 the fault returns -EAGAIN to userspace for a prefault.</para>
/// </remarks>
public sealed partial class KvmVcpu
{
    /// <summary>kvm_vcpu_pre_fault_memory: argument checks, then map [gpa, gpa+size) page by page under kvm->srcu.</summary>
    public async ValueTask<PreFaultResult> PreFaultMemory(ulong gpa, ulong size, ulong flags)
    {
        await LockVcpu();                                      // kvm_vcpu_ioctl: mutex_lock_killable(&vcpu->mutex)
        try { return await VcpuPreFaultMemory(gpa, size, flags); }
        finally { Mutex.UnlockNoPoint(); }
    }

    async ValueTask<PreFaultResult> VcpuPreFaultMemory(ulong gpa, ulong size, ulong flags)
    {
        var k = _kvm.Kernel;
        using var _ = k.S.Current.Enter("kvm_vcpu_pre_fault_memory");
        // No CONFIG_KVM_GENERIC_PRE_FAULT_MEMORY (before 6.10, or not x86): the ioctl reaches kvm_arch_vcpu_ioctl's default.
        if (!k.Era.Has(Feature.KvmPreFaultMemory) || !KvmArchInfo.IsX86(_kvm.Arch)) return new(Errno.EINVAL, gpa, size);
        if (flags != 0) return new(Errno.EINVAL, gpa, size);
        if ((gpa & ~MmStruct.PageMask) != 0 || (size & ~MmStruct.PageMask) != 0 || gpa + size <= gpa) return new(Errno.EINVAL, gpa, size);
        await _kvm.SrcuReadLock();
        ulong full = size;
        long r;
        do
        {
            r = await ArchPreFaultMemory(gpa, size);
            if (r < 0) break;
            size -= (ulong)r;
            gpa += (ulong)r;
        } while (size != 0);
        _kvm.SrcuReadUnlock();
        // "Return success if at least one page was mapped successfully."
        return new(full == size ? (int)r : 0, gpa, size);
    }

    /// <summary>
    /// kvm_arch_vcpu_pre_fault_memory: map the page at <paramref name="gpa"/>; the bytes it covers up to the end of the
    /// mapping level (4 KiB, or 2 MiB for a huge SPTE), at most <paramref name="size"/>; or a negative errno.
    /// </summary>
    async ValueTask<long> ArchPreFaultMemory(ulong gpa, ulong size)
    {
        ulong gfn = gpa >> MmStruct.PageShift;
        int r = await TdpMapPage(gfn);
        if (r < 0) return r;
        ulong levelSize = _kvm.GfnToMemslot(gfn) is { } slot && slot.Tables[slot.Block(gfn)] == SpteTable.HugeLeaf ? MmStruct.PmdSize : MmStruct.PageSize;
        ulong end = (gpa & ~(levelSize - 1)) + levelSize;
        return (long)Math.Min(size, end - gpa);
    }

    /// <summary>
    /// kvm_tdp_map_page: -EOPNOTSUPP unless the MMU is TDP; fault (prefetch) until the result is not RET_PF_RETRY;
    /// RET_PF_EMULATE (no memslot) is -ENOENT. A retry whose inputs did not change waits for a write that changes them
    /// (<see cref="Scheduler.SpinWait"/>), as the guest-access loop does; if none can come, the run is a liveness violation.
    /// </summary>
    async ValueTask<int> TdpMapPage(ulong gfn)
    {
        var k = _kvm.Kernel;
        using var _ = k.S.Current.Enter("kvm_tdp_map_page");
        if (_kvm.Arch != KvmArch.X86Tdp) return Errno.EOPNOTSUPP; // shadow paging faults on GVAs
        int retries = 0;
        while (true)
        {
            _attempt = _kvm.FaultRetryInputsOf(gfn);
            _attemptGfn = gfn;
            var r = await _kvm.PageFault(this, gfn, write: false, present: false, prefetch: true);
            switch (r)
            {
                case KvmFaultResult.Fixed: return 0;
                case KvmFaultResult.Mmio: return Errno.ENOENT;
                case KvmFaultResult.Efault: return Errno.EFAULT;
                case KvmFaultResult.Eagain: return Errno.EAGAIN;
            }
            if (++retries > MaxRetries)
            {
                k.S.Fail(Invariants.Liveness, $"{_kvm.Name} vcpu{Index}: KVM_PRE_FAULT_MEMORY on gfn 0x{gfn:x} retried {MaxRetries} times", 0);
                return Errno.EAGAIN;
            }
            // cond_resched(), then fault again.
            if (InputsChanged || k.Weak.IsWeak) await k.S.Sleep(k.S.Costs[CostKind.SecondaryFault]);
            else await k.S.SpinWait(this, "kvm_tdp_map_page (RET_PF_RETRY)");
        }
    }
}
