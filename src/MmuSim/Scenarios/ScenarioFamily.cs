using System.Text;

namespace MmuSim.Scenarios;

/// <summary>
/// Scenario families for bounded verification at size: a catalog race generated for P pages and V vCPUs
/// (<c>mmusim explore --family NAME -P 8 -V 2</c>). The generator writes scenario YAML and parses it with
/// <see cref="ScenarioLoader.Parse"/>, so a family member is an ordinary scenario (file name
/// <c>family/NAME-P8xV2.yaml</c> in messages and trace headers).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <para>Thread vcpuN is the VM's vCPU N (<c>vcpu: N</c> on every guest op: two threads on one <c>KvmVcpu</c> would share
/// its fault-retry snapshot) and accesses every one of the P pages, in order.</para>
/// <list type="bullet">
/// <item><c>race-5a</c> (catalog row a, <c>invalidate-page-after-ptl</c>): P pages of one VMA, all mapped by the guest in
/// setup; every vCPU writes every page, kswapd reclaims every page, the VMM writes every page. lost-write from
/// 3.6 to 4.12 (invalidate_page after pte_unmap_unlock); default era 4.19 (fixed).</item>
/// <item><c>kvm-fault-vs-invalidate</c>: each of the V vCPUs write-faults every page, while one CPU zaps
/// all of them with one MADV_DONTNEED: the fault's seq/in-progress retry check against start/end. Passes in every era
/// with the retry protocol; default era 6.13; <c>--mutate kvm-no-retry-check</c> is the buggy variant.</item>
/// </list>
/// </remarks>
public static class ScenarioFamily
{
    public const int MaxPages = 64, MaxVcpus = 8;

    public static readonly string[] Names = ["race-5a", "kvm-fault-vs-invalidate"];

    public static string KnownList => string.Join(", ", Names);

    public static bool IsKnown(string name) => Array.IndexOf(Names, name) >= 0;

    /// <summary>The YAML of family <paramref name="name"/> with <paramref name="pages"/> pages and
    /// <paramref name="vcpus"/> vCPUs. Throws <see cref="ArgumentException"/> for an unknown name or a size out of range
    /// (the CLI checks both first and reports them as usage errors).</summary>
    public static string Generate(string name, int pages, int vcpus)
    {
        if (pages < 1 || pages > MaxPages) throw new ArgumentOutOfRangeException(nameof(pages));
        if (vcpus < 1 || vcpus > MaxVcpus) throw new ArgumentOutOfRangeException(nameof(vcpus));
        return name switch
        {
            "race-5a" => Race5a(pages, vcpus),
            "kvm-fault-vs-invalidate" => FaultVsInvalidate(pages, vcpus),
            _ => throw new ArgumentException($"unknown family '{name}' (known: {KnownList})", nameof(name)),
        };
    }

    /// <summary>Generate and parse a family member.</summary>
    public static Scenario Load(string name, int pages, int vcpus) =>
        ScenarioLoader.Parse(Generate(name, pages, vcpus), $"family/{name}-P{pages}xV{vcpus}.yaml");

    const ulong Hva = 0x10000, Gfn = 0x100;

    static string Head(StringBuilder sb, string name, int pages, int vcpus, string what)
    {
        sb.Append("name: ").Append(name).Append("-P").Append(pages).Append("xV").Append(vcpus).Append('\n');
        sb.Append("description: >\n  ").Append(what).Append('\n');
        return name;
    }

    static void Vm(StringBuilder sb, int pages, bool mapInSetup)
    {
        sb.Append("processes:\n  - name: qemu\n    vmas:\n");
        sb.Append($"      - {{ start: 0x{Hva:x}, len: {pages * 4}K, prot: rw, contents: {{ value: 0x11, pages: {pages} }} }}\n");
        sb.Append("setup:\n  - vm.create: { process: qemu, name: vm0 }\n");
        sb.Append($"  - memslot.add: {{ vm: vm0, gfn: 0x{Gfn:x}, pages: {pages}, hva: 0x{Hva:x} }}\n");
        if (mapInSetup)
            for (int p = 0; p < pages; p++) sb.Append($"  - guest.read: {{ vm: vm0, gfn: 0x{Gfn + (ulong)p:x}, expect: 0x11 }}\n");
        sb.Append("threads:\n");
    }

    static string Race5a(int pages, int vcpus)
    {
        var sb = new StringBuilder();
        Head(sb, "race-5a", pages, vcpus, $"Race 5(a) (invalidate-page-after-ptl) on {pages} pages with {vcpus} vCPUs: each vCPU writes every page while kswapd reclaims every page and the VMM writes every page.");
        sb.Append("catalog: a\nchecks: [lost-write, dirty-lost, freed-page-reachable, writable-secondary]\nera: 4.19\n");
        Vm(sb, pages, mapInSetup: true);
        for (int v = 0; v < vcpus; v++)
        {
            sb.Append($"  - name: vcpu{v}\n    ops:\n");
            for (int p = 0; p < pages; p++) sb.Append($"      - guest.write: {{ vm: vm0, vcpu: {v}, gfn: 0x{Gfn + (ulong)p:x}, value: 0x{0x30 + v:x} }}\n");
        }
        sb.Append("  - name: kswapd\n    process: qemu\n    ops:\n");
        for (int p = 0; p < pages; p++) sb.Append($"      - reclaim: {{ addr: 0x{Hva + (ulong)p * 4096:x} }}\n");
        sb.Append("  - name: vmm\n    process: qemu\n    ops:\n");
        for (int p = 0; p < pages; p++) sb.Append($"      - write: {{ addr: 0x{Hva + (ulong)p * 4096:x}, value: 0x33 }}\n");
        sb.Append("expect:\n  default: pass\n  \"3.6..4.12\": lost-write\n");
        return sb.ToString();
    }

    static string FaultVsInvalidate(int pages, int vcpus)
    {
        var sb = new StringBuilder();
        Head(sb, "kvm-fault-vs-invalidate", pages, vcpus, $"KVM fault vs invalidate on {pages} pages with {vcpus} vCPUs: each vCPU write-faults every page while a CPU zaps them all with MADV_DONTNEED.");
        sb.Append("era: 6.13\n");
        Vm(sb, pages, mapInSetup: false);
        for (int v = 0; v < vcpus; v++)
        {
            sb.Append($"  - name: vcpu{v}\n    ops:\n");
            for (int p = 0; p < pages; p++) sb.Append($"      - guest.write: {{ vm: vm0, vcpu: {v}, gfn: 0x{Gfn + (ulong)p:x}, value: 0x{0x30 + v:x} }}\n");
        }
        sb.Append($"  - name: cpu1\n    process: qemu\n    ops:\n      - madvise: {{ addr: 0x{Hva:x}, len: {pages * 4}K, advice: dontneed }}\n");
        sb.Append("expect: pass\n");
        return sb.ToString();
    }
}
