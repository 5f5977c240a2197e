using System.Text;
using FsCheck;
using FsCheck.Fluent;
using MmuSim.Eras;
using MmuSim.Kvm;
using MmuSim.Scenarios;

namespace MmuSim.Tests.Kvm;

/// <summary>
/// Property: random sequences of guest accesses, attribute conversions, guest_memfd punch-holes and host-side stores
/// and madvise(DONTNEED) on a sw-protected VM's 4-page slot. The guest always reads what a reference model says: a
/// private gfn the guest_memfd's page (zero after a punch-hole), a shared gfn the hva's page (zero after DONTNEED,
/// the host's stores visible). The coherence checker runs after every step (a private translation must map the
/// guest_memfd's current page), and at the end every present SPTE is private exactly where the attribute is, with
/// the guest_memfd's page.
/// </summary>
public class GuestMemfdPropertyTests
{
    const int Pages = 4;
    const ulong Gfn = 0x100, Hva = 0x10000;

    public enum OpKind { GuestRead, GuestWrite, ToPrivate, ToShared, PunchHole, HostWrite, Dontneed }

    public sealed record Op(OpKind Kind, int Page, ulong Value)
    {
        public override string ToString() => $"{Kind}(page {Page}, v {Value})";
    }

    static readonly Gen<Op> OpGen =
        from kind in Gen.Frequency(
            (5, Gen.Constant(OpKind.GuestRead)), (5, Gen.Constant(OpKind.GuestWrite)), (2, Gen.Constant(OpKind.ToPrivate)),
            (2, Gen.Constant(OpKind.ToShared)), (2, Gen.Constant(OpKind.PunchHole)), (2, Gen.Constant(OpKind.HostWrite)),
            (1, Gen.Constant(OpKind.Dontneed)))
        from page in Gen.Choose(0, Pages - 1)
        from v in Gen.Choose(1, 1_000_000)
        select new Op(kind, page, (ulong)v);

    static readonly Gen<(string Era, Op[] Ops)> CaseGen =
        from era in Gen.Elements("6.8", "6.13", "6.18")
        from ops in Gen.ListOf(OpGen)
        select (era, ops.ToArray());

    [Fact]
    public void RandomConversionsAndInvalidations_GuestSeesTheReferenceModel_AndPrivateSptesMapTheGuestMemfd()
    {
        ulong seed = ulong.TryParse(Environment.GetEnvironmentVariable("MMUSIM_PROP_SEED"), out var s0) ? s0 : 20261205UL;
        int tests = int.TryParse(Environment.GetEnvironmentVariable("MMUSIM_PROP_TESTS"), out var t0) ? t0 : 120;
        var config = Config.QuickThrowOnFailure.WithMaxTest(tests).WithEndSize(40)
            .WithReplay(new Replay(new Rnd(seed, 0x9E3779B97F4A7C15UL), null));
        int privateReads = 0, sharedReads = 0;
        Check.One(config, Prop.ForAll(CaseGen.ToArbitrary(), c => RunCase(c.Era, c.Ops, ref privateReads, ref sharedReads)));
        Assert.True(privateReads > 50 && sharedReads > 50, $"private reads {privateReads}, shared reads {sharedReads}");
    }

    static bool RunCase(string era, Op[] ops, ref int privateReads, ref int sharedReads)
    {
        var shared = new ulong[] { 0x11, 0x22, 0x33, 0x44 };
        var priv = new ulong[Pages];
        var isPrivate = new bool[Pages];
        var y = new StringBuilder($$"""
            name: gmem-prop
            processes:
              - name: qemu
                vmas:
                  - { start: 0x{{Hva:x}}, len: 16K, prot: rw, contents: [0x11, 0x22, 0x33, 0x44] }
            setup:
              - vm.create: { process: qemu, name: vm0, type: sw-protected }
              - gmem.create: { vm: vm0, name: gmem0, size: 16K }
              - memslot.add: { vm: vm0, slot: 0, gfn: 0x{{Gfn:x}}, pages: {{Pages}}, hva: 0x{{Hva:x}}, gmem: gmem0 }
            threads:
              - name: t
                ops:

            """);
        foreach (var op in ops)
        {
            ulong gfn = Gfn + (ulong)op.Page, hva = Hva + (ulong)op.Page * 4096, gpa = gfn << 12;
            string line = op.Kind switch
            {
                OpKind.GuestRead => $"guest.read: {{ vm: vm0, gfn: 0x{gfn:x}, expect: {(isPrivate[op.Page] ? priv[op.Page] : shared[op.Page])} }}",
                OpKind.GuestWrite => $"guest.write: {{ vm: vm0, gfn: 0x{gfn:x}, value: {op.Value} }}",
                OpKind.ToPrivate => $"vm.set-memory-attributes: {{ vm: vm0, gpa: 0x{gpa:x}, size: 4K, private: true }}",
                OpKind.ToShared => $"vm.set-memory-attributes: {{ vm: vm0, gpa: 0x{gpa:x}, size: 4K, private: false }}",
                OpKind.PunchHole => $"gmem.punch-hole: {{ gmem: gmem0, offset: 0x{(ulong)op.Page * 4096:x}, len: 4K }}",
                OpKind.HostWrite => $"write: {{ process: qemu, addr: 0x{hva:x}, value: {op.Value} }}",
                _ => $"madvise: {{ process: qemu, addr: 0x{hva:x}, len: 4K, advice: dontneed }}",
            };
            y.Append("          - ").Append(line).Append('\n');
            switch (op.Kind)
            {
                case OpKind.GuestRead: if (isPrivate[op.Page]) privateReads++; else sharedReads++; break;
                case OpKind.GuestWrite: if (isPrivate[op.Page]) priv[op.Page] = op.Value; else shared[op.Page] = op.Value; break;
                case OpKind.ToPrivate: isPrivate[op.Page] = true; break;
                case OpKind.ToShared: isPrivate[op.Page] = false; break;
                case OpKind.PunchHole: priv[op.Page] = 0; break;
                case OpKind.HostWrite: shared[op.Page] = op.Value; break;
                case OpKind.Dontneed: shared[op.Page] = 0; break;
            }
        }
        for (int i = 0; i < Pages; i++) // the end: every page once more
            y.Append($"          - guest.read: {{ vm: vm0, gfn: 0x{Gfn + (ulong)i:x}, expect: {(isPrivate[i] ? priv[i] : shared[i])} }}\n");
        var r = ScenarioRunner.Run(ScenarioLoader.Parse(y.ToString(), "gmem-prop.yaml"), EraTable.Get(era), null);
        if (r.Violation != null) throw new Xunit.Sdk.XunitException($"{era}: {r.Violation}\n{y}");
        var vm = (MmuSim.Kvm.Kvm)r.World.Objects["vm0"];
        var gmem = (GuestMemfd)r.World.Objects["gmem0"];
        for (int i = 0; i < Pages; i++)
        {
            var spte = vm.PeekSpte(Gfn + (ulong)i);
            if (!spte.Present) continue;
            Assert.Equal(isPrivate[i], spte.Private);
            if (spte.Private) Assert.Equal(gmem.PfnAt((ulong)i), spte.Pfn);
        }
        gmem.AssertInvariants();
        return true;
    }
}
