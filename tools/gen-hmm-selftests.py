#!/usr/bin/env python3
"""Generate src/MmuSim/Scenarios/BuiltIn/selftests/hmm/*.yaml: the port of
tools/testing/selftests/mm/hmm-tests.c (one scenario per TEST_F x fixture variant).

Run from the repository root: python3 tools/gen-hmm-selftests.py. docs/hmm.md explains the scaling and the
substitutions; every scenario names the TEST_F it follows in its description.
"""
import os

OUT = "src/MmuSim/Scenarios/BuiltIn/selftests/hmm"
A = 0x10000000          # buffer->ptr (2 MiB aligned)
N = 128                 # HMM_BUFFER_SIZE scaled from 1024 to 128 pages (two 64-page dmirror chunks)
PMD = 512               # read_pmd_pagesize() in pages
KB4 = 0x1000

def h(x): return f"0x{x:x}"
def sz(pages): return f"{pages * 4}K"

class T:
    def __init__(self, fixture, test, variant, what, needs=None):
        self.fixture, self.test, self.variant, self.what = fixture, test, variant, what
        self.coherent = variant == "coherent"
        self.d0 = 2 if self.coherent else 0
        self.d1 = 3 if self.coherent else 1
        self.ops = []
        self.threads = None
        # the first named era that has everything the case needs
        first = {"5.13": 0, "6.1": 1}
        self.first = "6.1" if (self.coherent or needs == "6.1") else "5.13"

    def op(self, opname, **f):
        items = []
        for k, v in f.items():
            if isinstance(v, bool): v = "true" if v else "false"
            elif isinstance(v, int): v = h(v) if k in ("addr", "new_addr") else str(v)
            elif isinstance(v, str) and (any(c in v for c in ",*|:") or v == ""): v = f'"{v}"'
            items.append(f"{k}: {v}")
        self.ops.append(f"      - {opname}: {{ {', '.join(items)} }}")

    def name(self):
        return f"{self.fixture}.{self.fixture}_device_{'coherent' if self.coherent else 'private'}.{self.test}"

    def text(self):
        full = f"selftests/hmm/{self.name()}"
        desc = f"hmm-tests.c TEST_F({self.fixture}, {self.test}), variant {self.fixture}_device_{'coherent' if self.coherent else 'private'}. {self.what}"
        lines = [f"name: {full}", "description: >"]
        words, line = desc.split(), "  "
        for w in words:
            if len(line) + len(w) + 1 > 118: lines.append(line.rstrip()); line = "  "
            line += w + " "
        lines.append(line.rstrip())
        lines += ["era: 6.13", "processes:", "  - name: p", "threads:"]
        if self.threads:
            for tname, tops in self.threads:
                lines += [f"  - name: {tname}", "    process: p", "    ops:"] + tops
        else:
            lines += ["  - name: test", "    process: p", "    ops:"] + self.ops
        lines += ["expect:", "  default: pass", f'  "<{self.first}": n/a', ""]
        return "\n".join(lines)

CASES = []
def case(fixture, test, what, needs=None, variants=("private", "coherent")):
    def deco(fn):
        for v in variants:
            t = T(fixture, test, v, what, needs)
            fn(t)
            CASES.append(t)
        return fn
    return deco

def open_(t, dev=None, name="dmirror", process=None):
    f = {"name": name, "device": t.d0 if dev is None else dev}
    if process: f["process"] = process
    t.op("hmm.open", **f)

def close(t, name="dmirror"): t.op("hmm.close", mirror=name)

@case("hmm", "open_close", "Open and close the device (an interval notifier inserted over the whole mm, then removed).")
def _(t):
    open_(t); t.op("hmm.expect-mirror", mirror="dmirror", entries=0); close(t)

@case("hmm", "anon_read", "Device read of private anonymous memory, read-only: page 0 is pte_none, page 1 the zero page, the rest hold their index; one fault for all pages.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A + 2 * KB4, npages=N - 2, seq=2)
    t.op("mprotect", addr=A, len=sz(N), prot="r")
    t.op("expect-value", addr=A + KB4, value=0)
    t.op("hmm.read", mirror="dmirror", addr=A, npages=N, cpages=N, faults=1, values=f"0*2, 2..{N-1}")
    close(t)

@case("hmm", "anon_read_prot", "Device read of PROT_NONE memory fails with -EFAULT and leaves the memory as it was.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("mprotect", addr=A, len=sz(N), prot="none")
    t.op("hmm.read", mirror="dmirror", addr=A, npages=N, ret="efault")
    t.op("mprotect", addr=A, len=sz(N), prot="r")
    t.op("hmm.expect-memory", addr=A, npages=N, seq=0)
    t.op("hmm.expect-mirror", mirror="dmirror", entries=0)
    close(t)

@case("hmm", "anon_write", "Device write of private anonymous memory (REQ_FAULT|REQ_WRITE, one fault), then the CPU sees it.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.write", mirror="dmirror", addr=A, npages=N, cpages=N, faults=1, seq=0)
    t.op("hmm.expect-memory", addr=A, npages=N, seq=0)
    close(t)

@case("hmm", "anon_write_prot", "Device write of a PROT_READ mapping is -EPERM and writes nothing; after mprotect(rw) it replaces the zero page.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="r")
    t.op("hmm.read", mirror="dmirror", addr=A, npages=1, cpages=1, faults=1, all=0)
    t.op("hmm.write", mirror="dmirror", addr=A, npages=N, ret="eperm", seq=0)
    t.op("hmm.expect-memory", addr=A, npages=N, all=0)
    t.op("mprotect", addr=A, len=sz(N), prot="rw")
    t.op("hmm.write", mirror="dmirror", addr=A, npages=N, cpages=N, faults=1, seq=0)
    t.op("hmm.expect-memory", addr=A, npages=N, seq=0)
    close(t)

@case("hmm", "anon_write_child", "A child's device write to an inherited private mapping copies on write (4K and THP, with and without migrating to the device first); the parent keeps its values.")
def _(t):
    open_(t)
    k = 0
    for migrate in (0, 1):
        for thp in (0, 1):
            n = PMD if thp else N
            base = A + k * 0x400000
            child = f"child{k}"
            t.op("mmap", addr=base, len=sz(n), prot="rw", flags="hugepage" if thp else "nohugepage")
            t.op("hmm.fill", addr=base, npages=n, seq=0)
            if migrate:
                t.op("hmm.migrate-to-dev", mirror="dmirror", addr=base, npages=n, cpages=n, seq=0)
            t.op("fork", child=child)
            t.op("hmm.expect-memory", process=child, addr=base, npages=n, seq=0)
            open_(t, dev=0, name=f"cmirror{k}", process=child)
            t.op("hmm.write", mirror=f"cmirror{k}", addr=base, npages=n, cpages=n, faults=1, seq=0x10000)
            if not migrate:
                t.op("hmm.expect-memory", process=child, addr=base, npages=n, seq=0x10000)
            close(t, f"cmirror{k}")
            t.op("exit", process=child)
            t.op("hmm.expect-memory", addr=base, npages=n, seq=0)
            t.op("munmap", addr=base, len=sz(n))
            k += 1
    close(t)

@case("hmm", "anon_write_child_shared", "A child's device write to an inherited MAP_SHARED mapping does not copy: the parent sees it.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw", flags="shared")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("fork", child="child")
    t.op("hmm.expect-memory", process="child", addr=A, npages=N, seq=0)
    open_(t, dev=0, name="cmirror", process="child")
    t.op("hmm.write", mirror="cmirror", addr=A, npages=N, cpages=N, faults=1, seq=0x10000)
    t.op("hmm.expect-memory", process="child", addr=A, npages=N, seq=0x10000)
    close(t, "cmirror"); t.op("exit", process="child")
    t.op("hmm.expect-memory", addr=A, npages=N, seq=0x10000)
    close(t)

@case("hmm", "anon_write_huge", "Device write of a private anonymous THP (MADV_HUGEPAGE, 2 MiB aligned): one fault for 512 pages.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(PMD), prot="rw", flags="hugepage")
    t.op("hmm.write", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, faults=1, seq=0)
    t.op("hmm.expect-memory", addr=A, npages=PMD, seq=0)
    close(t)

@case("hmm", "file_read", "Device read of a MAP_SHARED file mapping (the test's O_TMPFILE file in /tmp, i.e. tmpfs: a shmem mapping filled first, then made read-only as the test maps it PROT_READ).")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw", flags="shared")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("mprotect", addr=A, len=sz(N), prot="r")
    t.op("hmm.read", mirror="dmirror", addr=A, npages=N, cpages=N, faults=1, seq=0)
    close(t)

@case("hmm", "file_write", "Device write of a MAP_SHARED tmpfs file mapping (shmem); the CPU (and pread of the file: the same shmem pages) sees it.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw", flags="shared")
    t.op("hmm.write", mirror="dmirror", addr=A, npages=N, cpages=N, faults=1, seq=0)
    t.op("hmm.expect-memory", addr=A, npages=N, seq=0)
    close(t)

@case("hmm", "migrate", "Migrate anonymous memory to device memory: migrate_vma_setup/pages/finalize (MMU_NOTIFY_MIGRATE, owner = the device, skipped by the mirror); the device reads it back.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
    prot = "dev-coherent-local|write" if t.coherent else "dev-private-local|write"
    t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=N, all=prot)
    close(t)

@case("hmm", "migrate_file_private", "Migrate a MAP_PRIVATE file mapping after the CPU wrote every page: only anonymous COW pages remain, so the port uses a private anonymous mapping holding the same pages.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
    close(t)

@case("hmm", "migrate_fault", "Migrate to the device, fault half back with CPU reads (do_swap_page -> migrate_to_ram for device-private pages), migrate the mix again.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
    t.op("hmm.expect-memory", addr=A, npages=N // 2, seq=0)
    if not t.coherent:
        t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=N, expect=f"write*{N//2}, dev-private-local|write*{N//2}")
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
    close(t)

@case("hmm", "migrate_release", "Migrate to the device, HMM_DMIRROR_RELEASE evicts the device memory (migrate_device_range), the CPU reads the data back.", needs="6.1")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
    t.op("hmm.release", mirror="dmirror")
    t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=N, all="write")
    t.op("hmm.expect-memory", addr=A, npages=N // 2, seq=0)
    close(t)

@case("hmm", "migrate_shared", "Migrating an untouched MAP_SHARED anonymous mapping moves nothing: -ENOENT.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw", flags="shared")
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=N, ret="enoent")
    close(t)

@case("hmm2", "migrate_mixed", "Migration errors: a PROT_NONE range and a range with a hole are -EINVAL; pages 2-5 (zero page, read-only, read-write) move to device 1; page 5 is then -ENOENT for device 0.")
def _(t):
    open_(t, t.d0, "dmirror0"); open_(t, t.d1, "dmirror1")
    t.op("mmap", addr=A, len=sz(6), prot="none")
    t.op("hmm.migrate-to-dev", mirror="dmirror1", addr=A, npages=6, ret="einval")
    t.op("munmap", addr=A + KB4, len="4K")
    t.op("hmm.migrate-to-dev", mirror="dmirror1", addr=A, npages=3, ret="einval")
    t.op("mprotect", addr=A + 2 * KB4, len="4K", prot="r")
    t.op("expect-value", addr=A + 2 * KB4, value=0)
    t.op("mprotect", addr=A + 3 * KB4, len="4K", prot="rw")
    t.op("write", addr=A + 3 * KB4, value=3)
    t.op("mprotect", addr=A + 3 * KB4, len="4K", prot="r")
    t.op("mprotect", addr=A + 4 * KB4, len="8K", prot="rw")
    t.op("write", addr=A + 4 * KB4, value=3)
    t.op("write", addr=A + 5 * KB4, value=3)
    t.op("hmm.migrate-to-dev", mirror="dmirror1", addr=A + 2 * KB4, npages=4, cpages=4, values="0, 3, 3, 3")
    t.op("hmm.migrate-to-dev", mirror="dmirror0", addr=A + 5 * KB4, npages=1, ret="enoent")
    close(t, "dmirror0"); close(t, "dmirror1")

@case("hmm", "migrate_multiple", "Migrate to the device and back NTIMES (10) times: device-private pages come back through CPU faults, device-coherent ones through MIGRATE_TO_SYS.")
def _(t):
    open_(t)
    for c in range(10):
        t.op("mmap", addr=A, len=sz(N), prot="rw")
        t.op("hmm.fill", addr=A, npages=N, seq=0)
        t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
        if t.coherent:
            t.op("hmm.migrate-to-sys", mirror="dmirror", addr=A, npages=N, cpages=N)
        t.op("hmm.expect-memory", addr=A, npages=N, seq=0)
        t.op("munmap", addr=A, len=sz(N))
    close(t)

@case("hmm", "anon_read_multiple", "Device read of fresh anonymous memory NTIMES (10) times, each buffer holding i + c.")
def _(t):
    open_(t)
    for c in range(10):
        t.op("mmap", addr=A, len=sz(N), prot="rw")
        t.op("hmm.fill", addr=A, npages=N, seq=c)
        t.op("hmm.read", mirror="dmirror", addr=A, npages=N, cpages=N, faults=1, seq=c)
        t.op("munmap", addr=A, len=sz(N))
    close(t)

@case("hmm", "anon_teardown", "Device read while another thread unmaps the upper half: if the read succeeds it read everything (cpages, one fault, values); it may fail. NTIMES iterations become the explorer's schedules.")
def _(t):
    t.threads = [
        ("test", [
            f"      - hmm.open: {{ name: dmirror, device: {t.d0} }}",
            f"      - mmap: {{ addr: {h(A)}, len: {sz(N)}, prot: rw }}",
            f"      - hmm.fill: {{ addr: {h(A)}, npages: {N}, seq: 0 }}",
            "      - signal: { event: filled }",
            f"      - hmm.read: {{ mirror: dmirror, addr: {h(A)}, npages: {N}, ret: any, cpages: {N}, faults: 1, seq: 0 }}",
            "      - wait: { event: unmapped }",
            "      - hmm.close: { mirror: dmirror }",
        ]),
        ("unmap_buffer", [
            "      - wait: { event: filled }",
            f"      - munmap: {{ addr: {h(A + N // 2 * KB4)}, len: {sz(N // 2)} }}",
            "      - signal: { event: unmapped }",
        ]),
    ]

@case("hmm", "mixedmap", "SNAPSHOT of an mmap of the device file itself (dmirror_fops_mmap inserts pages read-only with vm_insert_page): HMM_DMIRROR_PROT_READ.")
def _(t):
    open_(t)
    t.op("hmm.mmap", mirror="dmirror", addr=A, npages=1)
    t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=1, cpages=1, expect="read")
    close(t)

@case("hmm2", "snapshot", "SNAPSHOT codes without faulting: PROT_NONE and a hole are ERROR, the zero page ZERO|READ, read-only READ, read-write WRITE, a page on this device DEV_*_LOCAL|WRITE, on the other device NONE (private) or DEV_COHERENT_REMOTE|WRITE.")
def _(t):
    open_(t, t.d0, "dmirror0"); open_(t, t.d1, "dmirror1")
    t.op("mmap", addr=A, len=sz(7), prot="none")
    t.op("munmap", addr=A + KB4, len="4K")
    t.op("mprotect", addr=A + 2 * KB4, len="4K", prot="r")
    t.op("expect-value", addr=A + 2 * KB4, value=0)
    t.op("mprotect", addr=A + 3 * KB4, len="4K", prot="rw")
    t.op("write", addr=A + 3 * KB4, value=3)
    t.op("mprotect", addr=A + 3 * KB4, len="4K", prot="r")
    t.op("mprotect", addr=A + 4 * KB4, len="12K", prot="rw")
    t.op("write", addr=A + 4 * KB4, value=3)
    t.op("hmm.migrate-to-dev", mirror="dmirror0", addr=A + 5 * KB4, npages=1, cpages=1)
    t.op("hmm.migrate-to-dev", mirror="dmirror1", addr=A + 6 * KB4, npages=1, cpages=1)
    last = "dev-private-local|write, none" if not t.coherent else "dev-coherent-local|write, dev-coherent-remote|write"
    t.op("hmm.snapshot", mirror="dmirror0", addr=A, npages=7, cpages=7, expect=f"error, error, zero|read, read, write, {last}")
    close(t, "dmirror0"); close(t, "dmirror1")

@case("hmm", "compound", "SNAPSHOT of a region backed by one huge page mapped by a PMD: every page WRITE|PMD, then READ|PMD after mprotect(PROT_READ). The model has no hugetlbfs: a THP stands for the huge page.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(PMD), prot="rw", flags="hugepage")
    t.op("hmm.fill", addr=A, npages=PMD, seq=0)
    t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, all="write|pmd")
    t.op("mprotect", addr=A, len=sz(PMD), prot="r")
    t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, all="read|pmd")
    close(t)

@case("hmm2", "double_map", "Two devices read the same read-only memory; after migrating it to device 1, device 0 still reads it (one fault each).")
def _(t):
    open_(t, t.d0, "dmirror0"); open_(t, t.d1, "dmirror1")
    t.op("mmap", addr=A, len=sz(6), prot="rw")
    t.op("hmm.fill", addr=A, npages=6, seq=0)
    t.op("mprotect", addr=A, len=sz(6), prot="r")
    t.op("hmm.read", mirror="dmirror0", addr=A, npages=6, cpages=6, faults=1, seq=0)
    t.op("hmm.read", mirror="dmirror1", addr=A, npages=6, cpages=6, faults=1, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror1", addr=A, npages=6, cpages=6, seq=0)
    t.op("hmm.read", mirror="dmirror0", addr=A, npages=6, cpages=6, faults=1, seq=0)
    close(t, "dmirror0"); close(t, "dmirror1")

@case("hmm", "exclusive", "make_device_exclusive every page (MMU_NOTIFY_EXCLUSIVE), device reads them; CPU increments fault them back (remove_device_exclusive_entry); CHECK_EXCLUSIVE then finds no atomic mapping.", needs="6.1")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("hmm.exclusive", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
    t.op("hmm.expect-mirror", mirror="dmirror", addr=A, mapped=True, atomic=True)
    t.op("hmm.expect-memory", addr=A, npages=N, seq=0)
    t.op("hmm.fill", addr=A, npages=N, seq=1)
    t.op("hmm.expect-memory", addr=A, npages=N, seq=1)
    t.op("hmm.check-exclusive", mirror="dmirror", addr=A, npages=N)
    close(t)

@case("hmm", "exclusive_mprotect", "After EXCLUSIVE, mprotect(PROT_READ) and a device write is -EPERM.", needs="6.1")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("hmm.exclusive", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
    t.op("mprotect", addr=A, len=sz(N), prot="r")
    t.op("hmm.write", mirror="dmirror", addr=A, npages=N, ret="eperm", seq=0)
    close(t)

@case("hmm", "exclusive_cow", "After EXCLUSIVE, fork; child and parent each increment every page: copy-on-write keeps them apart.", needs="6.1")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(N), prot="rw")
    t.op("hmm.fill", addr=A, npages=N, seq=0)
    t.op("hmm.exclusive", mirror="dmirror", addr=A, npages=N, cpages=N, seq=0)
    t.op("fork", child="child")
    t.op("hmm.expect-memory", process="child", addr=A, npages=N, seq=0)
    t.op("hmm.fill", process="child", addr=A, npages=N, seq=1)
    t.op("hmm.expect-memory", process="child", addr=A, npages=N, seq=1)
    t.op("exit", process="child")
    t.op("hmm.expect-memory", addr=A, npages=N, seq=0)
    t.op("hmm.fill", addr=A, npages=N, seq=1)
    t.op("hmm.expect-memory", addr=A, npages=N, seq=1)
    close(t)

@case("hmm", "hmm_gup_test", "gup_test on migrated pages (GUP basic, GUP fast, PIN fast longterm, PIN longterm, all FOLL_WRITE): device-private pages fault back; device-coherent ones stay unless pinned long-term. SNAPSHOT shows which.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(4), prot="rw")
    t.op("hmm.fill", addr=A, npages=4, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=4, cpages=4, seq=0)
    for i, test in enumerate(("basic", "fast", "pin-fast-longterm", "pin-longterm")):
        t.op("hmm.gup", addr=A + i * KB4, test=test)
    first = "dev-coherent-local|write*2" if t.coherent else "write*2"
    t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=4, cpages=4, expect=f"{first}, write*2")
    t.op("hmm.expect-memory", addr=A, npages=4, seq=0)
    close(t)

@case("hmm", "hmm_cow_in_device", "Migrate, fork (the child spins), the parent writes its copy-on-write pages (device-private pages migrate back first), kill the child: SNAPSHOT shows WRITE everywhere.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(4), prot="rw")
    t.op("hmm.fill", addr=A, npages=4, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=4, cpages=4, seq=0)
    t.op("fork", child="child")
    t.op("hmm.fill", addr=A, npages=4, seq=0)
    t.op("exit", process="child")
    t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=4, cpages=4, all="write")
    close(t)

@case("hmm", "migrate_anon_huge_empty", "Migrate an empty MADV_HUGEPAGE PROT_READ region of one PMD: all 512 slots get zeroed device pages (4K: no device THP in the named eras).")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(2 * PMD), prot="r")
    t.op("madvise", addr=A, len=sz(PMD), advice="hugepage")
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, all=0)
    close(t)

@case("hmm", "migrate_anon_huge_zero", "Migrate a MADV_HUGEPAGE PROT_READ region after a read mapped the zero page; device and CPU read zeros.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(2 * PMD), prot="r")
    t.op("madvise", addr=A, len=sz(PMD), advice="hugepage")
    t.op("expect-value", addr=A, value=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, all=0)
    t.op("hmm.expect-memory", addr=A, npages=PMD, all=0)
    close(t)

@case("hmm", "migrate_anon_huge_free", "Migrate a populated THP (the collect splits it), then MADV_FREE the range.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(2 * PMD), prot="rw")
    t.op("madvise", addr=A, len=sz(PMD), advice="hugepage")
    t.op("hmm.fill", addr=A, npages=PMD, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, seq=0)
    t.op("madvise", addr=A, len=sz(PMD), advice="free")
    close(t)

@case("hmm", "migrate_anon_huge_fault", "Migrate a THP and fault it back. Ported for the coherent variant only (it skips the PMD snapshot); the private variant asserts a device-private THP (PROT_PMD), which no named era has.", variants=("coherent",))
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(2 * PMD), prot="rw")
    t.op("madvise", addr=A, len=sz(PMD), advice="hugepage")
    t.op("hmm.fill", addr=A, npages=PMD, seq=0)
    t.op("hmm.migrate-to-dev", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, seq=0)
    t.op("hmm.expect-memory", addr=A, npages=PMD, seq=0)
    close(t)

@case("hmm", "migrate_partial_unmap_fault", "Migrate one PMD of memory (THP and 4K), munmap half of it at offsets 0, 1/4 and 1/2, fault the rest back.")
def _(t):
    open_(t)
    k = 0
    for thp in (0, 1):
        for off in (0, PMD // 4, PMD // 2):
            base = A + k * 0x400000
            t.op("mmap", addr=base, len=sz(2 * PMD), prot="rw")
            t.op("madvise", addr=base, len=sz(PMD), advice="hugepage" if thp else "nohugepage")
            t.op("hmm.fill", addr=base, npages=PMD, seq=0)
            t.op("hmm.migrate-to-dev", mirror="dmirror", addr=base, npages=PMD, cpages=PMD, seq=0)
            t.op("munmap", addr=base + off * KB4, len=sz(PMD // 2))
            if off > 0:
                t.op("hmm.expect-memory", addr=base, npages=off, seq=0)
            rest = off + PMD // 2
            if rest < PMD:
                t.op("hmm.expect-memory", addr=base + rest * KB4, npages=PMD - rest, seq=rest)
            k += 1
    close(t)

@case("hmm", "anon_write_hugetlbfs", "Device write of a 2 MiB huge page mapping: one fault for every page. The model has no hugetlbfs: a PMD-mapped THP (MADV_HUGEPAGE, populated by the CPU first) stands for the MAP_HUGETLB page.")
def _(t):
    open_(t); t.op("mmap", addr=A, len=sz(PMD), prot="rw", flags="hugepage")
    t.op("hmm.fill", addr=A, npages=PMD, all=0)
    t.op("hmm.snapshot", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, all="write|pmd")
    t.op("hmm.write", mirror="dmirror", addr=A, npages=PMD, cpages=PMD, faults=1, seq=0)
    t.op("hmm.expect-memory", addr=A, npages=PMD, seq=0)
    close(t)

@case("hmm", "migrate_remap_fault", "Migrate one PMD of memory (THP and 4K) and mremap it (MREMAP_MAYMOVE|FIXED, with and without MREMAP_DONTUNMAP) to offsets 0, 1/4 and 1/2 past its end, before or after the migration, then fault it back at the new address.")
def _(t):
    open_(t)
    k = 0
    for before in (0, 1):
        for dont in (0, 1):
            for thp in (0, 1):
                for off in (0, PMD // 4, PMD // 2):
                    base = A + k * 0x1000000
                    new = base + PMD * KB4 + off * KB4
                    t.op("mmap", addr=base, len=sz(8 * PMD), prot="rw")
                    t.op("madvise", addr=base, len=sz(PMD), advice="hugepage" if thp else "nohugepage")
                    t.op("munmap", addr=base + PMD * KB4, len=sz(2 * PMD))
                    t.op("hmm.fill", addr=base, npages=PMD, seq=0)
                    mr = dict(addr=base, len=sz(PMD), new_addr=new)
                    if dont: mr["dontunmap"] = True
                    if before:
                        t.op("mremap", **mr)
                        t.op("hmm.migrate-to-dev", mirror="dmirror", addr=new, npages=PMD, cpages=PMD, seq=0)
                    else:
                        t.op("hmm.migrate-to-dev", mirror="dmirror", addr=base, npages=PMD, cpages=PMD, seq=0)
                        t.op("mremap", **mr)
                    t.op("hmm.expect-memory", addr=new, npages=PMD, seq=0)
                    t.op("munmap", addr=base, len=sz(8 * PMD))
                    k += 1
    close(t)

def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".yaml"): os.remove(os.path.join(OUT, f))
    for t in CASES:
        with open(os.path.join(OUT, t.name() + ".yaml"), "w") as fh:
            fh.write(t.text())
    print(f"{len(CASES)} scenarios in {OUT}")

main()
