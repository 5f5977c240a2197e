// kvm_faults.c - run a tiny guest on the real KVM of this machine and print, per pass, the
// deltas of KVM's binary stats (KVM_GET_STATS_FD, VM and vCPU) while the host mapping that
// backs the guest's 512 data pages goes through populate, KSM merge, COW break,
// MADV_DONTNEED, mprotect(PROT_READ) and back.  See README.md.
// Exit codes: 0 ok, 1 failure, 77 skipped (no usable /dev/kvm).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39 /* uapi since 6.8; older installed headers lack it */
#endif

#define NPAGES 512
#define PAGE 4096UL
#define DATA_GPA 0x200000UL
#define MMIO_GPA 0x400000UL /* no memslot */
#define CODE_GPA 0x0UL
#define CODE_SIZE 0x10000UL
#define ENTRY 0x1000UL
#define PML4 0x2000UL /* guest page tables, in the code slot */
#define PDPT 0x3000UL
#define PD 0x4000UL
#define PT0 0x5000UL /* 0..2M: code page */
#define PT1 0x6000UL /* 2M..4M: the 512 data pages */
#define PT2 0x7000UL /* 4M..: the MMIO page */

/* Guest: 64-bit user mode (CPL 3) with 4-level paging, which PVM runs natively in hardware
 * ring 3 over KVM's shadow page tables (a non-long-mode guest is run by KVM's instruction
 * emulator instead, and then no page fault is ever taken).  Identity map, 4 KiB guest PTEs.
 * Each pass: read the op from the MMIO page (KVM_EXIT_MMIO read; 0 = read pass, 1 = write
 * pass, 2 = warm-up: touch nothing), touch one dword in each of the 512 data pages, write the MMIO page (pass done). */
extern const unsigned char guest_start[], guest_end[];
__asm__(".pushsection .rodata\n"
        ".global guest_start\n"
        ".global guest_end\n"
        "guest_start:\n"
        "1: movl 0x400000, %eax\n"
        "   movl $0x200000, %esi\n"
        "   movl $512, %ecx\n"
        "   cmpl $2, %eax\n"
        "   je 4f\n"
        "   testl %eax, %eax\n"
        "   jnz 3f\n"
        "2: movl (%rsi), %edx\n"
        "   addq $0x1000, %rsi\n"
        "   decl %ecx\n"
        "   jnz 2b\n"
        "   jmp 4f\n"
        "3: movl $0x5a5a5a5a, (%rsi)\n"
        "   addq $0x1000, %rsi\n"
        "   decl %ecx\n"
        "   jnz 3b\n"
        "4: movl %eax, 0x400004\n"
        "   jmp 1b\n"
        "guest_end:\n"
        ".popsection\n");

struct stats {
    int fd;
    struct kvm_stats_header hdr;
    char *descs; /* hdr.num_desc descriptors of size sizeof(desc) + name_size */
    size_t desc_size;
    size_t nvals;  /* total u64 values */
    uint64_t *vals;
};

static int stats_open(int fd, struct stats *s, const char *what)
{
    s->fd = ioctl(fd, KVM_GET_STATS_FD, NULL);
    if (s->fd < 0) { fprintf(stderr, "kvm_faults: KVM_GET_STATS_FD (%s): %s\n", what, strerror(errno)); return -1; }
    if (pread(s->fd, &s->hdr, sizeof s->hdr, 0) != sizeof s->hdr) return -1;
    s->desc_size = sizeof(struct kvm_stats_desc) + s->hdr.name_size;
    s->descs = calloc(s->hdr.num_desc, s->desc_size);
    if (pread(s->fd, s->descs, s->hdr.num_desc * s->desc_size, s->hdr.desc_offset) !=
        (ssize_t)(s->hdr.num_desc * s->desc_size)) return -1;
    s->nvals = 0;
    for (unsigned i = 0; i < s->hdr.num_desc; i++) {
        struct kvm_stats_desc *d = (void *)(s->descs + i * s->desc_size);
        if (d->offset / 8 + d->size > s->nvals) s->nvals = d->offset / 8 + d->size;
    }
    return 0;
}

static uint64_t *stats_read(struct stats *s)
{
    uint64_t *v = calloc(s->nvals, 8);
    if (pread(s->fd, v, s->nvals * 8, s->hdr.data_offset) != (ssize_t)(s->nvals * 8)) {
        perror("kvm_faults: read stats"); exit(1);
    }
    return v;
}

static const char *want[] = {"pf_taken", "pf_fixed", "pf_fast", "pf_spurious", "pf_emulate",
                             "pf_mmio_spte_created", "exits", "io_exits", "mmio_exits",
                             "tlb_flush", "remote_tlb_flush", "mmu_shadow_zapped",
                             "mmu_pte_write", "mmu_pde_zapped", "mmu_flooded", "mmu_recycled",
                             "mmu_cache_miss", "mmu_unsync", "pages_4k", "halt_exits",
                             "invlpg", "insn_emulation", NULL};

#define NPASS 9
static const char *pass_name[NPASS + 1] = {
    "", "1 populate (write)", "2 re-read", "3 KSM merge, read", "4 re-read",
    "5 COW-break write", "6 DONTNEED half, read", "7 mprotect(R), read",
    "8 write under R/O", "9 mprotect(RW), write"};

static uint64_t *before_vm[NPASS + 1], *after_vm[NPASS + 1], *before_cpu[NPASS + 1], *after_cpu[NPASS + 1];
static char result[NPASS + 1][160];

static int kvm_fd, vm_fd, vcpu_fd;
static struct kvm_run *run;
static unsigned char *data;

/* Run the vCPU until the guest reports pass done (OUT); answer its IN with op.
 * Returns 0 on done, or -errno if KVM_RUN failed. */
static int run_pass(int op, char *res, size_t rlen)
{
    for (;;) {
        int r = ioctl(vcpu_fd, KVM_RUN, NULL);
        if (r < 0) {
            int e = errno;
            snprintf(res, rlen, "KVM_RUN = -1, errno %d (%s), exit_reason %u", e, strerror(e), run->exit_reason);
            if (run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
                /* struct { __u64 flags, gpa, size; } memory_fault, at the start of the exit union */
                const uint64_t *mf = (const uint64_t *)&run->mmio;
                snprintf(res + strlen(res), rlen - strlen(res), " (KVM_EXIT_MEMORY_FAULT gpa=0x%llx size=0x%llx flags=0x%llx)",
                         (unsigned long long)mf[1], (unsigned long long)mf[2], (unsigned long long)mf[0]);
            }
            return -e;
        }
        if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == MMIO_GPA && !run->mmio.is_write) {
            memset(run->mmio.data, 0, sizeof run->mmio.data);
            run->mmio.data[0] = op;
            continue;
        }
        if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == MMIO_GPA + 4 && run->mmio.is_write) {
            snprintf(res, rlen, "ok (guest MMIO write, pass done)");
            return 0;
        }
        snprintf(res, rlen, "unexpected exit_reason %u", run->exit_reason);
        if (run->exit_reason == KVM_EXIT_MMIO)
            snprintf(res + strlen(res), rlen - strlen(res), " (KVM_EXIT_MMIO gpa=0x%llx len=%u %s)",
                     (unsigned long long)run->mmio.phys_addr, run->mmio.len, run->mmio.is_write ? "write" : "read");
        if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
            snprintf(res + strlen(res), rlen - strlen(res), " (FAIL_ENTRY hw reason 0x%llx)",
                     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
            snprintf(res + strlen(res), rlen - strlen(res), " (INTERNAL_ERROR suberror %u)", run->internal.suberror);
        return -1000;
    }
}

static long ksm_get(const char *f)
{
    char p[128], b[64]; snprintf(p, sizeof p, "/sys/kernel/mm/ksm/%s", f);
    FILE *fp = fopen(p, "r"); if (!fp) return -1;
    long v = -1; if (fgets(b, sizeof b, fp)) v = atol(b); fclose(fp); return v;
}
static int ksm_set(const char *f, long v)
{
    char p[128]; snprintf(p, sizeof p, "/sys/kernel/mm/ksm/%s", f);
    FILE *fp = fopen(p, "w"); if (!fp) return -1;
    int r = fprintf(fp, "%ld\n", v) < 0; if (fclose(fp)) r = 1; return r ? -1 : 0;
}

static void ksm_merge(char *res, size_t rlen)
{
    long o_run = ksm_get("run"), o_scan = ksm_get("pages_to_scan"), o_sleep = ksm_get("sleep_millisecs");
    if (madvise(data, NPAGES * PAGE, MADV_MERGEABLE)) { snprintf(res, rlen, "MADV_MERGEABLE: %s", strerror(errno)); return; }
    ksm_set("pages_to_scan", 10000); ksm_set("sleep_millisecs", 10);
    long fs0 = ksm_get("full_scans");
    if (ksm_set("run", 1)) { snprintf(res, rlen, "ksm run=1: %s", strerror(errno)); return; }
    int waited = 0;
    while (ksm_get("full_scans") < fs0 + 2 && waited < 120000) { usleep(10000); waited += 10; }
    long fs1 = ksm_get("full_scans");
    snprintf(res, rlen, "ksm full_scans %ld->%ld in %d ms, pages_shared %ld pages_sharing %ld; ",
             fs0, fs1, waited, ksm_get("pages_shared"), ksm_get("pages_sharing"));
    ksm_set("run", o_run); ksm_set("pages_to_scan", o_scan); ksm_set("sleep_millisecs", o_sleep);
}

static void print_table(struct stats *vs, struct stats *cs)
{
    printf("\nPer-pass deltas (after - before) of KVM binary stats; vm.* from the VM fd, the rest summed from the one vCPU\n");
    printf("%-24s", "pass");
    struct { struct stats *s; int vm; unsigned idx; } cols[64]; int nc = 0;
    for (int w = 0; want[w]; w++)
        for (int k = 0; k < 2; k++) {
            struct stats *s = k ? vs : cs;
            for (unsigned i = 0; i < s->hdr.num_desc; i++) {
                struct kvm_stats_desc *d = (void *)(s->descs + i * s->desc_size);
                if (!strcmp(d->name, want[w]) && nc < 64) { cols[nc].s = s; cols[nc].vm = k; cols[nc].idx = i; nc++; }
            }
        }
    for (int c = 0; c < nc; c++) {
        struct kvm_stats_desc *d = (void *)(cols[c].s->descs + cols[c].idx * cols[c].s->desc_size);
        char n[64]; snprintf(n, sizeof n, "%s%s", cols[c].vm ? "vm." : "", d->name);
        printf(" %*s", (int)(strlen(n) > 6 ? strlen(n) : 6), n);
    }
    printf("\n");
    for (int p = 1; p <= NPASS; p++) {
        printf("%-24s", pass_name[p]);
        for (int c = 0; c < nc; c++) {
            struct kvm_stats_desc *d = (void *)(cols[c].s->descs + cols[c].idx * cols[c].s->desc_size);
            char n[64]; snprintf(n, sizeof n, "%s%s", cols[c].vm ? "vm." : "", d->name);
            uint64_t *b = cols[c].vm ? before_vm[p] : before_cpu[p], *a = cols[c].vm ? after_vm[p] : after_cpu[p];
            long long delta = (long long)(a[d->offset / 8] - b[d->offset / 8]);
            printf(" %*lld", (int)(strlen(n) > 6 ? strlen(n) : 6), delta);
        }
        printf("\n");
    }
    printf("\nData-page faults: pf_taken - pf_emulate (each pass's MMIO read and MMIO write are one pf_emulate\n"
           "fault each here, since no MMIO SPTE is cached: pf_mmio_spte_created stays 0)\n");
    printf("%-24s %9s %9s\n", "pass", "taken", "fixed");
    for (int p = 1; p <= NPASS; p++) {
        long long t = 0, f = 0, e = 0;
        for (unsigned i = 0; i < cs->hdr.num_desc; i++) {
            struct kvm_stats_desc *d = (void *)(cs->descs + i * cs->desc_size);
            long long delta = (long long)(after_cpu[p][d->offset / 8] - before_cpu[p][d->offset / 8]);
            if (!strcmp(d->name, "pf_taken")) t = delta;
            if (!strcmp(d->name, "pf_fixed")) f = delta;
            if (!strcmp(d->name, "pf_emulate")) e = delta;
        }
        printf("%-24s %9lld %9lld\n", pass_name[p], t - e, f);
    }
    printf("\nAll other stats with a nonzero delta in some pass:\n");
    for (int k = 0; k < 2; k++) {
        struct stats *s = k ? vs : cs;
        for (unsigned i = 0; i < s->hdr.num_desc; i++) {
            struct kvm_stats_desc *d = (void *)(s->descs + i * s->desc_size);
            int listed = 0;
            for (int w = 0; want[w]; w++) if (!strcmp(d->name, want[w])) listed = 1;
            if (listed) continue;
            for (unsigned e = 0; e < d->size; e++) {
                unsigned o = d->offset / 8 + e; int nz = 0; char line[512]; int len = 0;
                for (int p = 1; p <= NPASS; p++) {
                    uint64_t *b = k ? before_vm[p] : before_cpu[p], *a = k ? after_vm[p] : after_cpu[p];
                    long long delta = (long long)(a[o] - b[o]); if (delta) nz = 1;
                    len += snprintf(line + len, sizeof line - len, " %lld", delta);
                }
                if (nz) printf("  %s%s%s: %s\n", k ? "vm." : "", d->name,
                               d->size > 1 ? "[]" : "", line);
            }
        }
    }
}

int main(int argc, char **argv)
{
    int warmup = !(argc > 1 && !strcmp(argv[1], "--no-warmup"));
    if (argc > 1 && warmup) { fprintf(stderr, "kvm_faults: %s: unknown option (only --no-warmup)\n", argv[1]); return 2; }
    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0) { printf("kvm_faults: skipped: /dev/kvm: %s\n", strerror(errno)); return 77; }
    int api = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) { printf("kvm_faults: skipped: KVM API %d\n", api); return 77; }
    if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_BINARY_STATS_FD) <= 0) {
        printf("kvm_faults: skipped: no KVM_CAP_BINARY_STATS_FD\n"); return 77;
    }
    vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (vm_fd < 0) { printf("kvm_faults: skipped: KVM_CREATE_VM: %s\n", strerror(errno)); return 77; }

    unsigned char *code = mmap(NULL, CODE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(code + ENTRY, guest_start, guest_end - guest_start);
    uint64_t *pt = (uint64_t *)code;
    const uint64_t PTE = 7; /* present, writable, user */
    pt[PML4 / 8] = PDPT | PTE;
    pt[PDPT / 8] = PD | PTE;
    pt[PD / 8 + 0] = PT0 | PTE;
    pt[PD / 8 + 1] = PT1 | PTE;
    pt[PD / 8 + 2] = PT2 | PTE;
    pt[PT0 / 8 + ENTRY / PAGE] = ENTRY | PTE;
    for (unsigned i = 0; i < NPAGES; i++) pt[PT1 / 8 + i] = (DATA_GPA + i * PAGE) | PTE;
    pt[PT2 / 8] = MMIO_GPA | PTE;
    struct kvm_userspace_memory_region cr = {.slot = 0, .guest_phys_addr = CODE_GPA,
                                             .memory_size = CODE_SIZE, .userspace_addr = (uintptr_t)code};
    if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &cr)) { perror("kvm_faults: code slot"); return 1; }

    /* 512 data pages: one anonymous mapping, THP off so every guest page is a 4 KiB host page. */
    data = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) { perror("kvm_faults: mmap"); return 1; }
    madvise(data, NPAGES * PAGE, MADV_NOHUGEPAGE);
    struct kvm_userspace_memory_region dr = {.slot = 1, .guest_phys_addr = DATA_GPA,
                                             .memory_size = NPAGES * PAGE, .userspace_addr = (uintptr_t)data};
    if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &dr)) { perror("kvm_faults: data slot"); return 1; }

    vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
    if (vcpu_fd < 0) { perror("kvm_faults: KVM_CREATE_VCPU"); return 1; }
    int msz = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    run = mmap(NULL, msz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
    if (run == MAP_FAILED) { perror("kvm_faults: mmap kvm_run"); return 1; }

    struct kvm_sregs sr;
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &sr)) { perror("kvm_faults: KVM_GET_SREGS"); return 1; }
    /* 64-bit user mode: Linux's __USER_CS/__USER_DS selectors, which PVM requires in user mode. */
    struct kvm_segment seg = {.base = 0, .limit = 0xffffffff, .present = 1, .dpl = 3, .db = 0, .s = 1,
                              .l = 1, .g = 1, .avl = 0};
    seg.type = 11; seg.selector = 0x33; sr.cs = seg;
    seg.type = 3; seg.l = 0; seg.db = 1; seg.selector = 0x2b; sr.ds = sr.es = sr.ss = seg;
    sr.fs = sr.gs = seg;
    sr.cr3 = PML4;
    sr.cr0 = 0x80050033; /* PG AM WP NE ET MP PE */
    sr.cr4 = 0x10020;    /* FSGSBASE PAE */
    sr.efer = 0x501;     /* LMA LME SCE */
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &sr)) { perror("kvm_faults: KVM_SET_SREGS"); return 1; }
    struct kvm_regs rg = {.rip = ENTRY, .rflags = 0x202};
    if (ioctl(vcpu_fd, KVM_SET_REGS, &rg)) { perror("kvm_faults: KVM_SET_REGS"); return 1; }

    struct stats vs, cs;
    if (stats_open(vm_fd, &vs, "vm") || stats_open(vcpu_fd, &cs, "vcpu")) return 1;

    FILE *fp = fopen("/proc/sys/kernel/osrelease", "r");
    char rel[128] = "?"; if (fp) { if (fgets(rel, sizeof rel, fp)) rel[strcspn(rel, "\n")] = 0; fclose(fp); }
    printf("kvm_faults: kernel %s, %d data pages of 4 KiB at gpa 0x%lx (one memslot, one anonymous mapping, MADV_NOHUGEPAGE)\n",
           rel, NPAGES, DATA_GPA);
    printf("vm stats: %u, vcpu stats: %u\n", vs.hdr.num_desc, cs.hdr.num_desc);

    /* Pass 0 (warm-up, not in the table): fault in the code page and take the first MMIO exits,
     * so that passes 1-9 count only the data pages plus the two MMIO accesses of each pass. */
    if (warmup) {
        char res[240];
        uint64_t *b = stats_read(&cs);
        if (run_pass(2, res, sizeof res)) { printf("warm-up: %s\n", res); return 1; }
        uint64_t *a = stats_read(&cs);
        printf("pass 0 warm-up (no data access): %s\n", res);
        for (unsigned i = 0; i < cs.hdr.num_desc; i++) {
            struct kvm_stats_desc *d = (void *)(cs.descs + i * cs.desc_size);
            if (!strcmp(d->name, "pf_taken") || !strcmp(d->name, "pf_fixed") || !strcmp(d->name, "pf_emulate"))
                printf("  warm-up %s: %lld\n", d->name, (long long)(a[d->offset / 8] - b[d->offset / 8]));
        }
    }

    if (!warmup) printf("no warm-up: pass 1 also counts the code-page fetch fault\n");
    int failed = 0;
    for (int p = 1; p <= NPASS; p++) {
        char pre[400] = "";
        switch (p) {
        case 3: ksm_merge(pre, sizeof pre); break;
        case 6:
            if (madvise(data, NPAGES / 2 * PAGE, MADV_DONTNEED)) snprintf(pre, sizeof pre, "MADV_DONTNEED: %s; ", strerror(errno));
            else snprintf(pre, sizeof pre, "MADV_DONTNEED pages 0..255; ");
            break;
        case 7:
            if (mprotect(data, NPAGES * PAGE, PROT_READ)) snprintf(pre, sizeof pre, "mprotect(R): %s; ", strerror(errno));
            else snprintf(pre, sizeof pre, "mprotect(PROT_READ); ");
            break;
        case 9:
            if (mprotect(data, NPAGES * PAGE, PROT_READ | PROT_WRITE)) snprintf(pre, sizeof pre, "mprotect(RW): %s; ", strerror(errno));
            else snprintf(pre, sizeof pre, "mprotect(PROT_READ|PROT_WRITE), resume the faulted write; ");
            break;
        }
        int op = (p == 1 || p == 5 || p == 8 || p == 9) ? 1 : 0;
        before_vm[p] = stats_read(&vs); before_cpu[p] = stats_read(&cs);
        char res[240];
        int r = run_pass(op, res, sizeof res);
        after_vm[p] = stats_read(&vs); after_cpu[p] = stats_read(&cs);
        snprintf(result[p], sizeof result[p], "%s%s", pre, res);
        struct kvm_regs now; ioctl(vcpu_fd, KVM_GET_REGS, &now);
        printf("pass %-24s: %s [rip=0x%llx esi=0x%llx]\n", pass_name[p], result[p],
               (unsigned long long)now.rip, (unsigned long long)now.rsi);
        if (p == 8) { if (r == 0) printf("  note: pass 8 completed without a fault\n"); }
        else if (r) { failed = 1; break; }
    }
    if (!failed) print_table(&vs, &cs);
    return failed;
}
