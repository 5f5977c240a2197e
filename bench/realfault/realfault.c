/*
 * realfault: the real kernel's anonymous minor write fault, timed the way MmuSim's
 * FoundationBenchmarks.AnonWriteFaults times the model's (one write per 4 KiB page of a fresh
 * private anonymous VMA, THP off so each write is one do_anonymous_page fault).
 *
 * Usage: realfault [MiB] [rounds]   (default 1024 MiB, 5 rounds; prints the best round)
 * Output: one line per round, then "best ns/fault N.N" (parsed by ratio.sh).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	size_t len = mib << 20, pages = len / 4096;
	double best = 1e30;

	for (int r = 0; r < rounds; r++) {
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		madvise(p, len, MADV_NOHUGEPAGE);
		struct rusage a, b;
		getrusage(RUSAGE_SELF, &a);
		double t0 = now_ns();
		for (size_t i = 0; i < pages; i++)
			p[i * 4096] = 1;
		double t1 = now_ns();
		getrusage(RUSAGE_SELF, &b);
		long faults = b.ru_minflt - a.ru_minflt;
		double ns = (t1 - t0) / pages;
		printf("round %d: %zu pages, %ld minor faults, %.1f ns/fault\n", r, pages, faults, ns);
		if (ns < best)
			best = ns;
		munmap(p, len);
	}
	printf("best ns/fault %.1f\n", best);
	return 0;
}
