using FsCheck;
using FsCheck.Fluent;
using MmuSim.Mm;
using static MmuSim.Tests.Harness;

namespace MmuSim.Tests.Mm;

/// <summary>
/// Property: random sequences of reads, writes, MADV_DONTNEED, reclaim with references, a secondary that answers
/// young or not, and MGLRU aging passes, on 8 anonymous pages, in 6.10 and 6.13. After every step the generations'
/// invariants hold and they hold exactly the mapped pages; after each aging pass every mapped PTE is old and a page
/// is in the generation just made (max_seq - 1) exactly when its PTE was young before the pass, or, from 6.12, when
/// the secondary said young, or the rmap look-around had already promoted it to max_seq.
/// </summary>
public class LruGenPropertyTests
{
    const int Pages = 8;
    const ulong A = 0x10000000;

    public enum OpKind { Read, Write, Dontneed, Reclaim, SecondaryYoung, SecondaryOld, Age }

    public sealed record Op(OpKind Kind, int Page)
    {
        public override string ToString() => $"{Kind}({Page})";
    }

    static readonly Gen<Op> OpGen =
        from kind in Gen.Frequency(
            (4, Gen.Constant(OpKind.Read)), (5, Gen.Constant(OpKind.Write)), (1, Gen.Constant(OpKind.Dontneed)),
            (1, Gen.Constant(OpKind.Reclaim)), (1, Gen.Constant(OpKind.SecondaryYoung)), (1, Gen.Constant(OpKind.SecondaryOld)),
            (3, Gen.Constant(OpKind.Age)))
        from page in Gen.Choose(0, Pages - 1)
        select new Op(kind, page);

    static readonly Gen<(string Era, Op[] Ops)> CaseGen =
        from era in Gen.Elements("6.10", "6.13")
        from ops in Gen.ListOf(OpGen)
        select (era, ops.ToArray());

    [Fact]
    public void RandomAccessesAndAgings_KeepTheGenerationsExact()
    {
        ulong seed = ulong.TryParse(Environment.GetEnvironmentVariable("MMUSIM_PROP_SEED"), out var s0) ? s0 : 20261207UL;
        int tests = int.TryParse(Environment.GetEnvironmentVariable("MMUSIM_PROP_TESTS"), out var t0) ? t0 : 150;
        var config = Config.QuickThrowOnFailure.WithMaxTest(tests).WithEndSize(40)
            .WithReplay(new Replay(new Rnd(seed, 0x9E3779B97F4A7C15UL), null));
        int agings = 0, promotedBySecondary = 0;
        Check.One(config, Prop.ForAll(CaseGen.ToArbitrary(), c => RunCase(c.Era, c.Ops, ref agings, ref promotedBySecondary)));
        Assert.True(agings > 100 && promotedBySecondary > 20, $"agings {agings}, pages promoted by the secondary alone {promotedBySecondary}");
    }

    static ulong Va(int page) => A + (ulong)page * MmStruct.PageSize;

    static bool RunCase(string era, Op[] ops, ref int agings, ref int promotedBySecondary)
    {
        var k = Kernel(era);
        var mm = MmWithVma(k, A, Pages * MmStruct.PageSize, VmFlags.NoHugePage);
        var lg = LruGen.Of(k);
        Assert.Equal(0, lg.Enable(7));
        var rec = Recorder(k, mm);
        bool notify = era == "6.13";
        int ag = 0, bySecondary = 0;
        Assert.Null(Run(k, async _ =>
        {
            foreach (var op in ops)
            {
                var young = new bool[Pages];
                var atMax = new bool[Pages]; // promoted to max_seq already (lru_gen_look_around from folio_referenced)
                ulong maxBefore = lg.MaxSeq();
                for (int i = 0; i < Pages; i++)
                {
                    young[i] = Mapped(mm, i) && mm.PeekPte(Va(i)).Accessed;
                    atMax[i] = Mapped(mm, i) && lg.GenerationOf(mm.PeekPte(Va(i)).Pfn) == maxBefore;
                }
                switch (op.Kind)
                {
                    case OpKind.Read: await Memory.UserAccess(mm, Va(op.Page), write: false); break;
                    case OpKind.Write: await Memory.UserAccess(mm, Va(op.Page), write: true, value: (ulong)op.Page + 1); break;
                    case OpKind.Dontneed: await Madvise.MadviseDontneed(mm, Va(op.Page), MmStruct.PageSize); break;
                    case OpKind.Reclaim:
                        if (Mapped(mm, op.Page)) await Vmscan.ShrinkFolio(k, mm.PeekPte(Va(op.Page)).Pfn, checkReferences: true);
                        break;
                    case OpKind.SecondaryYoung: rec.Young = true; break;
                    case OpKind.SecondaryOld: rec.Young = false; break;
                    case OpKind.Age: Assert.Equal(0, await lg.RunAging(0, lg.MaxSeq(), 1, forceScan: true)); break;
                }
                Assert.Null(lg.CheckInvariants());
                int mapped = 0;
                for (int i = 0; i < Pages; i++)
                {
                    if (!Mapped(mm, i)) continue;
                    mapped++;
                    Assert.NotNull(lg.GenerationOf(mm.PeekPte(Va(i)).Pfn));
                }
                var stats = await lg.ReadStats();
                Assert.Equal(mapped, stats.Sum(g => g.Anon + g.File));
                if (op.Kind != OpKind.Age) continue;
                ag++;
                for (int i = 0; i < Pages; i++)
                {
                    if (!Mapped(mm, i)) continue;
                    Assert.False(mm.PeekPte(Va(i)).Accessed);
                    bool promoted = lg.GenerationOf(mm.PeekPte(Va(i)).Pfn) == lg.MaxSeq() - 1;
                    bool expect = young[i] || (notify && rec.Young) || atMax[i];
                    Assert.True(promoted == expect, $"{era} page {i}: promoted {promoted}, primary young {young[i]}, secondary young {rec.Young}, at max_seq before {atMax[i]}");
                    if (promoted && !young[i] && !atMax[i]) bySecondary++;
                }
            }
        }));
        agings += ag;
        promotedBySecondary += bySecondary;
        return true;
    }

    /// <summary>A mapped page that is not the zero page (an LRU folio of the mm).</summary>
    static bool Mapped(MmStruct mm, int page)
    {
        var pte = mm.PeekPte(Va(page));
        return pte.Present && pte.Pfn != PhysMem.ZeroPfn;
    }
}
