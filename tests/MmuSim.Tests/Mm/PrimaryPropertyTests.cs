using FsCheck;
using FsCheck.Fluent;
using MmuSim.Eras;
using MmuSim.Mm;

namespace MmuSim.Tests.Mm;

/// <summary>
/// Property: random sequences of primary operations across two processes (the second created by fork) keep
/// refcounts, mapcounts, rmap and PTEs consistent (<see cref="Checker.CoherenceChecker.CheckPrimaryConsistency"/>
/// after every operation) and every process sees the contents of a simple reference model (a dictionary per
/// process, copied on fork).
/// </summary>
public class PrimaryPropertyTests
{
    const ulong A = 0x400000, H = 0x600000;
    const int SmallPages = 8, Pages = 12;

    /// <summary>Pages 0-7: a 4 KiB VMA at A. Pages 8-11: pages of a VM_HUGEPAGE VMA (one THP where the era has THP).</summary>
    static readonly ulong[] HugeOffsets = [0, 1, 0x100, 0x1ff];

    static ulong Addr(int page) => page < SmallPages ? A + (ulong)page * MmStruct.PageSize : H + HugeOffsets[page - SmallPages] * MmStruct.PageSize;

    /// <summary>Range ops cover up to 3 pages in the 4 KiB VMA, one page in the huge one.</summary>
    static int Span(Op op) => op.Page < SmallPages ? Math.Min(op.N, SmallPages - op.Page) : 1;

    public enum OpKind { Read, Write, Fork, Munmap, Remap, Dontneed, Free, Protect, Reclaim, Migrate, CowWrite, ReclaimAll, DevRead, DevWrite }

    public sealed record Op(OpKind Kind, int Proc, int Page, int N, ulong Value)
    {
        public override string ToString() => $"{Kind}(p{Proc}, page {Page}, n {N}, v {Value})";
    }

    /// <summary>What a process should see at one page.</summary>
    struct RefPage
    {
        public bool Mapped, Writable, MaybeZero;
        public ulong Value;
    }

    static readonly Gen<Op> OpGen =
        from kind in Gen.Frequency(
            (6, Gen.Constant(OpKind.Read)), (8, Gen.Constant(OpKind.Write)), (2, Gen.Constant(OpKind.Fork)),
            (1, Gen.Constant(OpKind.Munmap)), (1, Gen.Constant(OpKind.Remap)), (2, Gen.Constant(OpKind.Dontneed)),
            (3, Gen.Constant(OpKind.Free)), (2, Gen.Constant(OpKind.Protect)), (3, Gen.Constant(OpKind.Reclaim)),
            (3, Gen.Constant(OpKind.Migrate)), (3, Gen.Constant(OpKind.CowWrite)),
            (2, Gen.Constant(OpKind.ReclaimAll)), (3, Gen.Constant(OpKind.DevRead)), (3, Gen.Constant(OpKind.DevWrite)))
        from proc in Gen.Choose(0, 1)
        from page in Gen.Frequency((3, Gen.Choose(0, 3)), (1, Gen.Choose(SmallPages, Pages - 1)), (2, Gen.Choose(0, Pages - 1)))
        from n in Gen.Choose(1, 3)
        from v in Gen.Choose(1, 1_000_000)
        select new Op(kind, proc, page, n, (ulong)v);

    static readonly Gen<(string Era, Op[] Ops)> CaseGen =
        from era in Gen.Elements("2.6.32", "3.7", "4.10", "4.13", "4.19", "6.13")
        from ops in Gen.ListOf(OpGen)
        select (era, ops.ToArray());

    [Fact]
    public void RandomPrimaryOperations_KeepRmapCountsAndContentsConsistent()
    {
        // Fixed seed: CI is deterministic. MMUSIM_PROP_SEED / MMUSIM_PROP_TESTS explore further by hand.
        ulong seed = ulong.TryParse(Environment.GetEnvironmentVariable("MMUSIM_PROP_SEED"), out var s0) ? s0 : 20261121UL;
        int tests = int.TryParse(Environment.GetEnvironmentVariable("MMUSIM_PROP_TESTS"), out var t0) ? t0 : 150;
        var config = Config.QuickThrowOnFailure.WithMaxTest(tests).WithEndSize(50)
            .WithReplay(new Replay(new Rnd(seed, 0x9E3779B97F4A7C15UL), null));
        var totals = new Stats();
        Check.One(config, Prop.ForAll(CaseGen.ToArbitrary(), c => RunCase(c.Era, c.Ops, totals)));
        // The generated sequences really exercised the paths (COW reuse and lazyfree discard need longer chains and
        // are rare with this seed; MadviseTests and ForkTests cover them directly).
        foreach (var s in new[] { Stat.CowCopies, Stat.ForkCopiedPtes, Stat.PagesReclaimed, Stat.PagesMigrated,
                     Stat.ThpFaults, Stat.ThpSplits, Stat.PagesZapped, Stat.ZeroPageMaps, Stat.DeviceFaults,
                     Stat.NotifierInvalidatePage, Stat.NotifierChangePte })
            Assert.True(totals[s] > 0, $"no {Stats.NameOf(s)} in any generated case: {string.Join(", ", totals.NonZero())}");
    }

    static bool RunCase(string era, Op[] ops, Stats totals)
    {
        var k = new Kernel(EraTable.Get(era), null, new KernelOptions { InitialFrames = 1024 });
        var mms = new MmStruct?[2];
        mms[0] = k.CreateMm("p0");
        mms[0]!.InsertVma(new Vma(mms[0]!, A, A + SmallPages * MmStruct.PageSize, Prot.ReadWrite, VmFlags.None));
        mms[0]!.InsertVma(new Vma(mms[0]!, H, H + MmStruct.PmdSize, Prot.ReadWrite, VmFlags.HugePage));
        var model = new RefPage[2][];
        model[0] = new RefPage[Pages];
        for (int i = 0; i < Pages; i++) model[0][i] = new RefPage { Mapped = true, Writable = true };
        var rec = new Devices.RecordingSecondary(k);
        // A dmirror-style device mirrors p0 (its translations are checked after every step) in the eras whose
        // rmap walkers notify coherently; 3.6-4.12 have the known races 5(a)/5(b) (HistoricalRaceTests).
        Devices.DeviceMirror? dev = era is "3.7" or "4.10" ? null : new Devices.DeviceMirror(k, mms[0]!, "dmirror");
        if (dev != null) k.Checker.AddSecondary(dev);
        string? failure = null;
        int step = 0;

        void Fail(string msg) => failure ??= $"era {era}, step {step} ({(step < ops.Length ? ops[step] : "final check")}): {msg}";

        async ValueTask Body()
        {
            await mms[0]!.Notifiers.Register(rec);
            if (dev != null) await mms[0]!.Notifiers.Register(dev);
            for (step = 0; step < ops.Length && failure == null; step++)
            {
                await Apply(k, ops[step], mms, model, dev, Fail);
                var c = k.Checker.CheckPrimaryConsistency();
                if (c != null) Fail(c);
            }
            for (int p = 0; p < 2 && failure == null; p++)
            {
                if (mms[p] == null) continue;
                for (int i = 0; i < Pages; i++) await CheckRead(mms[p]!, model[p], i, Fail);
            }
            if (failure != null) return;
            // Swap slots are used exactly by the swap PTEs; after both exits nothing leaks.
            var uses = new Dictionary<int, int>();
            foreach (var mm in mms)
                for (ulong a = A; mm != null && a < H + MmStruct.PmdSize; a += MmStruct.PageSize)
                {
                    var pte = mm.PeekPte(a);
                    if (pte.SwapKind == SwapType.Swap) uses[(int)pte.Pfn] = uses.GetValueOrDefault((int)pte.Pfn) + 1;
                }
            if (uses.Count != k.Swap.InUse) Fail($"{k.Swap.InUse} swap slots in use, swap PTEs name {uses.Count}");
            foreach (var (slot, n) in uses)
                if (k.Swap.RefCount(slot) != n) Fail($"swap slot {slot}: count {k.Swap.RefCount(slot)}, {n} swap PTEs");
            foreach (var mm in mms)
                if (mm != null) await Mmap.ExitMmap(mm);
            if (k.Mem.Allocated != 0) Fail($"{k.Mem.Allocated} frames still allocated after both processes exited");
            if (k.Swap.InUse != 0) Fail($"{k.Swap.InUse} swap slots still in use after both processes exited");
        }

        var v = Harness.Run(k, async _ => await Body());
        if (v != null) Fail(v.ToString());
        if (failure != null) throw new Exception(failure + "\nops:\n  " + string.Join("\n  ", ops));
        foreach (var s in Enum.GetValues<Stat>()) totals.Inc(s, k.Stats[s]);
        return true;
    }

    static async ValueTask CheckRead(MmStruct mm, RefPage[] m, int page, Action<string> fail, Devices.DeviceMirror? dev = null)
    {
        var got = dev != null ? await dev.Access(Addr(page), write: false) : await Memory.UserAccess(mm, Addr(page), write: false);
        ref var r = ref m[page];
        if (!r.Mapped)
        {
            if (got != null) fail($"{mm} page {page}: read {got} from an unmapped page");
            return;
        }
        if (got == null) { fail($"{mm} page {page}: read faulted"); return; }
        if (got == r.Value) return;
        if (r.MaybeZero && got == 0)
        {
            r.Value = 0; // the lazyfree page was discarded
            r.MaybeZero = false;
            return;
        }
        fail($"{mm} page {page}: read {got}, expected {r.Value}{(r.MaybeZero ? " or 0" : "")}");
    }

    static async ValueTask Apply(Kernel k, Op op, MmStruct?[] mms, RefPage[][] model, Devices.DeviceMirror? dev, Action<string> fail)
    {
        var mm = mms[op.Proc];
        if (mm == null && op.Kind != OpKind.Fork) return;
        var m = model[op.Proc];
        ulong addr = Addr(op.Page);
        int n = Span(op);
        ulong len = (ulong)n * MmStruct.PageSize;
        switch (op.Kind)
        {
            case OpKind.Read:
                await CheckRead(mm!, m, op.Page, fail);
                break;
            case OpKind.DevRead: // the device reads p0 through its mirror (faulting through GUP)
                if (dev != null) await CheckRead(mms[0]!, model[0], op.Page, fail, dev);
                break;
            case OpKind.DevWrite:
            {
                if (dev == null) break;
                var got = await dev.Access(addr, write: true, op.Value);
                var pm = model[0];
                bool allowed = pm[op.Page].Mapped && pm[op.Page].Writable;
                if (allowed != (got != null)) fail($"device write to p0 page {op.Page} {(got != null ? "succeeded" : "failed")}, model says {(allowed ? "allowed" : "EFAULT")}");
                if (got != null)
                {
                    pm[op.Page].Value = op.Value;
                    pm[op.Page].MaybeZero = false;
                }
                break;
            }
            case OpKind.Write:
            case OpKind.CowWrite:
            {
                // CowWrite writes the page in the other process when there is one (after fork: the COW break).
                int p = op.Kind == OpKind.CowWrite && mms[1 - op.Proc] != null ? 1 - op.Proc : op.Proc;
                var target = mms[p]!;
                var pm = model[p];
                var got = await Memory.UserAccess(target, addr, write: true, op.Value);
                bool allowed = pm[op.Page].Mapped && pm[op.Page].Writable;
                if (allowed != (got != null)) fail($"{target} page {op.Page}: write {(got != null ? "succeeded" : "faulted")}, model says {(allowed ? "allowed" : "SIGSEGV")}");
                if (got != null)
                {
                    pm[op.Page].Value = op.Value;
                    pm[op.Page].MaybeZero = false;
                }
                break;
            }
            case OpKind.Fork:
            {
                if (mms[1] != null) await Mmap.ExitMmap(mms[1]!);
                mms[1] = await Fork.DupMmap(mms[0]!, "p1");
                model[1] = (RefPage[])model[0].Clone();
                break;
            }
            case OpKind.Munmap:
                await Mmap.Munmap(mm!, addr, len);
                for (int i = op.Page; i < op.Page + n; i++) m[i] = default;
                break;
            case OpKind.Remap:
                if (m[op.Page].Mapped) break;
                await Mmap.DoMmap(mm!, addr, MmStruct.PageSize, Prot.ReadWrite, VmFlags.None);
                m[op.Page] = new RefPage { Mapped = true, Writable = true };
                break;
            case OpKind.Dontneed:
                await Madvise.MadviseDontneed(mm!, addr, len);
                for (int i = op.Page; i < op.Page + n; i++)
                    if (m[i].Mapped) { m[i].Value = 0; m[i].MaybeZero = false; }
                break;
            case OpKind.Free:
                if (await Madvise.MadviseFree(mm!, addr, len))
                    for (int i = op.Page; i < op.Page + n; i++)
                        if (m[i].Mapped && m[i].Value != 0) m[i].MaybeZero = true;
                break;
            case OpKind.Protect:
            {
                bool all = true;
                for (int i = op.Page; i < op.Page + n; i++) all &= m[i].Mapped;
                if (!all) break;
                bool ro = op.Value % 3 == 0; // read-only a third of the time: writes stay common
                await Mprotect.DoMprotect(mm!, addr, len, ro ? Prot.Read : Prot.ReadWrite);
                for (int i = op.Page; i < op.Page + n; i++) m[i].Writable = !ro;
                break;
            }
            case OpKind.ReclaimAll: // memory pressure: shrink every folio the process maps
                for (int i = 0; i < Pages; i++)
                {
                    var (present, pfn, _, _) = mm!.Translate(Addr(i)); // a THP's sub-page when PMD-mapped
                    if (present && pfn != PhysMem.ZeroPfn) await Vmscan.ShrinkFolio(k, pfn);
                }
                break;
            case OpKind.Reclaim:
            case OpKind.Migrate:
            {
                var (present, pfn, _, _) = mm!.Translate(addr);
                if (!present || pfn == PhysMem.ZeroPfn) break;
                if (op.Kind == OpKind.Reclaim) await Vmscan.ShrinkFolio(k, pfn);
                else await MmuSim.Mm.Migrate.MigrateFolio(k, pfn);
                break;
            }
        }
    }
}
