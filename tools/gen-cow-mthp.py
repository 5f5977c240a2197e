#!/usr/bin/env python3
"""Generate src/MmuSim/Scenarios/BuiltIn/selftests/cow/*-{16..1024}k.yaml: the mTHP half of the port of
tools/testing/selftests/mm/cow.c, i.e. run_anon_test_case's loop over thpsizes for every size below the PMD size:
14 anon tests x 6 preparations (run_with_pte_mapped_thp, _swap, run_with_single_pte_of_thp, _swap,
run_with_partial_mremap_thp, run_with_partial_shared_thp) x 7 sizes (x86-64: orders 2..8) = 588 scenarios.

Run from the repository root: python3 tools/gen-cow-mthp.py. docs/selftests.md explains the port. Like the 2 MiB
ports, these memset and compare the whole range, as upstream does (write/expect-value `len`).
"""
import os

OUT = "src/MmuSim/Scenarios/BuiltIn/selftests/cow"
B = 0x200000            # mem: the size-aligned start of the folio (mmap_mem is mem - size, itself aligned)
HOLE = 0x1000000        # the PROT_NONE mapping run_with_partial_mremap_thp moves the upper half into
KB4 = 0x1000
SIZES_KB = [16, 32, 64, 128, 256, 512, 1024]

def h(x): return f"0x{x:x}"
def ln(b): return f"{b // 1024}K"

# (name, upstream function, upstream description, assertion message, body(mem, size) -> ops)
def body_cow_in_parent(m, s, mprotect=False):
    ops = ["fork: { child: c }"]
    if mprotect:
        ops += [f"mprotect: {{ addr: {h(m)}, len: {ln(s)}, prot: r }}", f"mprotect: {{ addr: {h(m)}, len: {ln(s)}, prot: rw }}"]
    ops += [f"write: {{ addr: {h(m)}, len: {ln(s)}, value: 0xff }}",
            f"expect-value: {{ process: c, addr: {h(m)}, len: {ln(s)}, value: 0x1 }}"]
    return ops

def body_vmsplice_in_child(m, s, mprotect=False):
    ops = ["fork: { child: c }",
           f"vmsplice: {{ process: c, addr: {h(m)}, len: {ln(s)}, as: pipe }}",
           f"munmap: {{ process: c, addr: {h(m)}, len: {ln(s)} }}"]
    if mprotect:
        ops += [f"mprotect: {{ addr: {h(m)}, len: {ln(s)}, prot: r }}", f"mprotect: {{ addr: {h(m)}, len: {ln(s)}, prot: rw }}"]
    ops += [f"write: {{ addr: {h(m)}, len: {ln(s)}, value: 0xff }}", "pipe-read: { pipe: pipe, value: 0x1 }"]
    return ops

def body_vmsplice_fork(m, s, before):
    splice = f"vmsplice: {{ addr: {h(m)}, len: {ln(s)}, as: pipe }}"
    ops = [splice, "fork: { child: c }"] if before else ["fork: { child: c }", splice]
    ops += [f"munmap: {{ addr: {h(m)}, len: {ln(s)} }}",
            f"write: {{ process: c, addr: {h(m)}, len: {ln(s)}, value: 0xff }}",
            "pipe-read: { pipe: pipe, value: 0x1 }"]
    return ops

def body_iouring_ro(m, s):
    return [f"iouring-register: {{ addr: {h(m)}, len: {ln(s)}, as: buf }}",
            f"mprotect: {{ addr: {h(m)}, len: {ln(s)}, prot: r }}",
            "clear-refs: { type: soft-dirty }",
            f"mprotect: {{ addr: {h(m)}, len: {ln(s)}, prot: rw }}",
            f"write: {{ addr: {h(m)}, len: {ln(s)}, value: 0xff }}",
            "iouring-write-fixed: { buf: buf, value: 0xff }",
            "unpin: { pin: buf }"]

def body_iouring_fork(m, s):
    return [f"iouring-register: {{ addr: {h(m)}, len: {ln(s)}, as: buf }}",
            "fork: { child: c }",
            f"write: {{ addr: {h(m)}, len: {ln(s)}, value: 0xff }}",
            "iouring-write-fixed: { buf: buf, value: 0xff }",
            f"expect-value: {{ process: c, addr: {h(m)}, len: {ln(s)}, value: 0x1 }}",
            "unpin: { pin: buf }"]

def body_ro_pin(m, s, kind, fast):
    if kind == "shared":
        ops = ["fork: { child: c }"]
    elif kind == "previously-shared":
        ops = ["fork: { child: c }", "exit: { process: c }"]
    else:
        ops = [f"mprotect: {{ addr: {h(m)}, len: {ln(s)}, prot: r }}", "clear-refs: { type: soft-dirty }",
               f"mprotect: {{ addr: {h(m)}, len: {ln(s)}, prot: rw }}"]
    f = ", fast: true" if fast else ""
    ops += [f"pin: {{ addr: {h(m)}, len: {ln(s)}, longterm: true{f}, as: pin }}",
            f"write: {{ addr: {h(m)}, len: {ln(s)}, value: 0xff }}",
            "pin-read: { pin: pin, value: 0xff }",
            "unpin: { pin: pin }"]
    return ops

TESTS = [
    ("cow-in-parent", "test_cow_in_parent", "Basic COW after fork()", "No leak from parent into child", lambda m, s: body_cow_in_parent(m, s)),
    ("cow-in-parent-mprotect", "test_cow_in_parent_mprotect", "Basic COW after fork() with mprotect() optimization", "No leak from parent into child", lambda m, s: body_cow_in_parent(m, s, True)),
    ("vmsplice-in-child", "test_vmsplice_in_child", "vmsplice() + unmap in child", "No leak from parent into child", lambda m, s: body_vmsplice_in_child(m, s)),
    ("vmsplice-in-child-mprotect", "test_vmsplice_in_child_mprotect", "vmsplice() + unmap in child with mprotect() optimization", "No leak from parent into child", lambda m, s: body_vmsplice_in_child(m, s, True)),
    ("vmsplice-before-fork", "test_vmsplice_before_fork", "vmsplice() before fork(), unmap in parent after fork()", "No leak from child into parent", lambda m, s: body_vmsplice_fork(m, s, True)),
    ("vmsplice-after-fork", "test_vmsplice_after_fork", "vmsplice() + unmap in parent after fork()", "No leak from child into parent", lambda m, s: body_vmsplice_fork(m, s, False)),
    ("iouring-ro", "test_iouring_ro", "R/O-mapping a page registered as iouring fixed buffer", "Longterm R/W pin is reliable", body_iouring_ro),
    ("iouring-fork", "test_iouring_fork", "fork() with an iouring fixed buffer", "Longterm R/W pin is reliable", body_iouring_fork),
    ("ro-pin-on-shared", "test_ro_pin_on_shared", "R/O GUP pin on R/O-mapped shared page", "Longterm R/O pin is reliable", lambda m, s: body_ro_pin(m, s, "shared", False)),
    ("ro-fast-pin-on-shared", "test_ro_fast_pin_on_shared", "R/O GUP-fast pin on R/O-mapped shared page", "Longterm R/O pin is reliable", lambda m, s: body_ro_pin(m, s, "shared", True)),
    ("ro-pin-on-ro-previously-shared", "test_ro_pin_on_ro_previously_shared", "R/O GUP pin on R/O-mapped previously-shared page", "Longterm R/O pin is reliable", lambda m, s: body_ro_pin(m, s, "previously-shared", False)),
    ("ro-fast-pin-on-ro-previously-shared", "test_ro_fast_pin_on_ro_previously_shared", "R/O GUP-fast pin on R/O-mapped previously-shared page", "Longterm R/O pin is reliable", lambda m, s: body_ro_pin(m, s, "previously-shared", True)),
    ("ro-pin-on-ro-exclusive", "test_ro_pin_on_ro_exclusive", "R/O GUP pin on R/O-mapped exclusive page", "Longterm R/O pin is reliable", lambda m, s: body_ro_pin(m, s, "exclusive", False)),
    ("ro-fast-pin-on-ro-exclusive", "test_ro_fast_pin_on_ro_exclusive", "R/O GUP-fast pin on R/O-mapped exclusive page", "Longterm R/O pin is reliable", lambda m, s: body_ro_pin(m, s, "exclusive", True)),
]

# (suffix, run_with_* function, THP_RUN_* mode, what upstream prints after "with")
VARIANTS = [
    ("pte-thp", "run_with_pte_mapped_thp", "THP_RUN_PTE", "PTE-mapped THP"),
    ("pte-thp-swap", "run_with_pte_mapped_thp_swap", "THP_RUN_PTE_SWAPOUT", "swapped-out, PTE-mapped THP"),
    ("single-pte-thp", "run_with_single_pte_of_thp", "THP_RUN_SINGLE_PTE", "single PTE of THP"),
    ("single-pte-thp-swap", "run_with_single_pte_of_thp_swap", "THP_RUN_SINGLE_PTE_SWAPOUT", "single PTE of swapped-out THP"),
    ("partial-mremap-thp", "run_with_partial_mremap_thp", "THP_RUN_PARTIAL_MREMAP", "partially mremap()'ed THP"),
    ("partial-shared-thp", "run_with_partial_shared_thp", "THP_RUN_PARTIAL_SHARED", "partially shared THP"),
]

def prepare(variant, kb):
    """do_run_with_thp for an mTHP of kb KiB: the ops before fn(mem, size), and size."""
    s = kb * 1024
    m = B
    ops = [f"thp.set: {{ knob: hugepages-2048kB/enabled, value: never }}",
           f"thp.set: {{ knob: hugepages-{kb}kB/enabled, value: always }}",
           # mem[0] = 1, then upstream skips unless the last subpage got populated with it: here an assertion.
           f"write: {{ addr: {h(m)}, value: 0x1 }}",
           f"expect-pagemap: {{ addr: {h(m + s - KB4)}, present: true }}",
           f"write: {{ addr: {h(m)}, len: {ln(s)}, value: 0x1 }}"]
    size = s
    if variant.startswith("pte-thp"):
        ops += [f"mprotect: {{ addr: {h(m + KB4)}, len: 4K, prot: r }}", f"mprotect: {{ addr: {h(m + KB4)}, len: 4K, prot: rw }}"]
    elif variant.startswith("single-pte"):
        ops += [f"madvise: {{ addr: {h(m + KB4)}, len: {ln(s - KB4)}, advice: dontneed }}"]
        size = KB4
    elif variant == "partial-mremap-thp":
        size = s // 2
        ops += [f"mremap: {{ addr: {h(m + size)}, len: {ln(size)}, new_addr: {h(HOLE)} }}"]
    elif variant == "partial-shared-thp":
        ops += [f"madvise: {{ addr: {h(m + KB4)}, len: {ln(s - KB4)}, advice: dontfork }}",
                "fork: { child: c0 }", "exit: { process: c0 }",
                f"madvise: {{ addr: {h(m + KB4)}, len: {ln(s - KB4)}, advice: dofork }}"]
    if variant.endswith("swap"):
        # MADV_PAGEOUT of [mem, mem + size): the reclaim of the folio; then range_is_swapped.
        ops += [f"reclaim: {{ addr: {h(m)} }}"]
        ops += [f"expect-pagemap: {{ addr: {h(m + i)}, present: false, swapped: true }}" for i in sorted({0, size - KB4})]
    return ops, m, size

def main():
    n = 0
    for kb in SIZES_KB:
        s = kb * 1024
        for vname, vfn, vmode, vwhat in VARIANTS:
            for tname, tfn, tdesc, tmsg in [(t[0], t[1], t[2], t[3]) for t in TESTS]:
                body = next(t[4] for t in TESTS if t[0] == tname)
                prep, m, size = prepare(vname, kb)
                ops = prep + body(m, size)
                name = f"{tname}-{vname}-{kb}k"
                vmas = [f"      - {{ start: {h(B - s)}, len: {ln(2 * s)}, prot: rw, flags: hugepage }}"]
                if vname == "partial-mremap-thp":
                    vmas.append(f"      - {{ start: {h(HOLE)}, len: {ln(s // 2)}, prot: none }}")
                desc = (f"Follows cow.c {tfn} (\"{tdesc}\") with a {vwhat} of {kb} kB ({vfn}, {vmode}; thpsizes loop: "
                        f"hugepages-2048kB/enabled never, hugepages-{kb}kB/enabled always, MADV_HUGEPAGE): upstream asserts "
                        f"\"{tmsg}\". Upstream's \"Did not get a THP populated\" skip is an assertion here (the last subpage is "
                        f"present after the first write). Generated by tools/gen-cow-mthp.py. Per era: ..6.7: n/a (multi-size THP is 6.8).")
                text = [f"name: selftests/cow/{name}", "description: >", f"  {desc}", "era: 6.13", "processes:", "  - name: p",
                        "    vmas:", *vmas, "threads:", "  - name: main", "    process: p", "    ops:",
                        *[f"      - {o}" for o in ops], "expect:", "  ..6.7: n/a", "  default: pass", ""]
                with open(os.path.join(OUT, name + ".yaml"), "w") as f:
                    f.write("\n".join(text))
                n += 1
    print(f"wrote {n} scenarios to {OUT}")

if __name__ == "__main__":
    main()
