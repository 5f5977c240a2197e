// KVM_SET_USER_MEMORY_REGION's errors on the real KVM, case by case as set_memory_region_test.c and the
// checks of __kvm_set_memory_region (virt/kvm/kvm_main.c) order them. Prints one "case errno" line per case,
// which tests/MmuSim.Tests/Kvm/MemslotApiTests.cs compares with MmuSim's memslot.set op.
// Build and run: gcc -O2 -Wall -o kvm_memslot_api kvm_memslot_api.c && ./kvm_memslot_api
// Exit 77 (skip) without /dev/kvm.
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#define REGION_SIZE 0x200000UL
#define REGION_GPA 0xc0000000UL
#define REGION_SLOT 10

static int vm;

static const char *err_name(int e)
{
	switch (e) {
	case 0: return "ok";
	case EINVAL: return "einval";
	case EEXIST: return "eexist";
	case EFAULT: return "efault";
	case ENOMEM: return "enomem";
	case EIO: return "eio";
	default: return strerror(e);
	}
}

static int set_region(uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};
	return ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) ? errno : 0;
}

static void report(const char *name, int e) { printf("%-40s %s\n", name, err_name(e)); }

int main(void)
{
	struct utsname u;
	int kvm = open("/dev/kvm", O_RDWR);
	if (kvm < 0) { perror("/dev/kvm"); return 77; }
	uname(&u);
	int max = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	printf("# kernel %s\n", u.release);
	printf("%-40s %d\n", "cap.nr_memslots", max);
	printf("%-40s %d\n", "cap.readonly_mem", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM));
	printf("%-40s %d\n", "cap.multi_address_space", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MULTI_ADDRESS_SPACE));
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) { perror("KVM_CREATE_VM"); return 1; }
	char *mem = mmap(NULL, 4 * REGION_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char name[64];

	/* test_invalid_memory_region_flags: every bit but LOG_DIRTY_PAGES (0) and READONLY (1), v1 API. */
	for (int i = 2; i < 32; i++) {
		snprintf(name, sizeof(name), "flags.bit%d", i);
		report(name, set_region(REGION_SLOT, 1u << i, REGION_GPA, REGION_SIZE, mem));
	}
	report("flags.log_dirty|readonly", set_region(REGION_SLOT, 3, REGION_GPA, REGION_SIZE, mem));
	report("delete.log_dirty|readonly", set_region(REGION_SLOT, 0, REGION_GPA, 0, mem));

	/* The general sanity checks, in order. */
	report("size.unaligned", set_region(REGION_SLOT, 0, REGION_GPA, REGION_SIZE + 0x800, mem));
	report("gpa.unaligned", set_region(REGION_SLOT, 0, REGION_GPA + 0x800, REGION_SIZE, mem));
	report("hva.unaligned", set_region(REGION_SLOT, 0, REGION_GPA, REGION_SIZE, mem + 0x800));
	report("hva.kernel", set_region(REGION_SLOT, 0, REGION_GPA, REGION_SIZE, (void *)0xffff888000000000UL));
	report("slot.as_id1", set_region(REGION_SLOT | (1u << 16), 0, REGION_GPA, REGION_SIZE, mem));
	report("slot.max", set_region((uint32_t)max, 0, REGION_GPA, REGION_SIZE, mem));
	report("slot.32767", set_region(32767, 0, REGION_GPA, REGION_SIZE, mem));
	report("gpa.wraps", set_region(REGION_SLOT, 0, 0xfffffffffff00000UL, REGION_SIZE, mem));
	report("delete.missing", set_region(REGION_SLOT, 0, REGION_GPA, 0, mem));

	/* Create, then modify: only the base gfn (MOVE) or the flags other than READONLY may change. */
	report("create", set_region(REGION_SLOT, 0, REGION_GPA, REGION_SIZE, mem));
	report("create.same", set_region(REGION_SLOT, 0, REGION_GPA, REGION_SIZE, mem));
	report("modify.size", set_region(REGION_SLOT, 0, REGION_GPA, 2 * REGION_SIZE, mem));
	report("modify.hva", set_region(REGION_SLOT, 0, REGION_GPA, REGION_SIZE, mem + REGION_SIZE));
	report("modify.readonly", set_region(REGION_SLOT, KVM_MEM_READONLY, REGION_GPA, REGION_SIZE, mem));
	report("modify.log_dirty", set_region(REGION_SLOT, KVM_MEM_LOG_DIRTY_PAGES, REGION_GPA, REGION_SIZE, mem));
	report("modify.log_dirty_off", set_region(REGION_SLOT, 0, REGION_GPA, REGION_SIZE, mem));
	report("overlap.create", set_region(REGION_SLOT + 1, 0, REGION_GPA + 0x1000, REGION_SIZE, mem + 2 * REGION_SIZE));
	report("overlap.same_hva_ok", set_region(REGION_SLOT + 1, 0, REGION_GPA + REGION_SIZE, REGION_SIZE, mem));
	report("overlap.move", set_region(REGION_SLOT + 1, 0, REGION_GPA + 0x100000, REGION_SIZE, mem));
	report("move", set_region(REGION_SLOT + 1, 0, REGION_GPA + 2 * REGION_SIZE, REGION_SIZE, mem));
	report("delete", set_region(REGION_SLOT + 1, 0, 0, 0, mem));
	report("delete.again", set_region(REGION_SLOT + 1, 0, 0, 0, mem));
	report("delete.first", set_region(REGION_SLOT, 0, 0, 0, mem));
	close(vm);

	/* test_add_max_memory_regions: slots 0..max-1 of 2 MiB each, then slot max fails. */
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	char *big = mmap(NULL, (size_t)max * REGION_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int first_err = 0, added = 0;
	for (int s = 0; s < max && !first_err; s++, added++)
		first_err = set_region(s, 0, (uint64_t)s * REGION_SIZE, REGION_SIZE, big + (size_t)s * REGION_SIZE);
	printf("%-40s %d (%s)\n", "max.added", added - (first_err != 0), err_name(first_err));
	report("max.one_more", set_region(max, 0, (uint64_t)max * REGION_SIZE, REGION_SIZE, mem));
	return 0;
}
