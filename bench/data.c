/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * data.c: the test data and its closed-form sums, the test file and its page
 * cache state, timing and peak RSS, and the access loops that every row
 * (kernel mmap, floors, libvmpage) runs unchanged, so that rows differ only
 * in what serves the faults.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, MAP_NORESERVE; meson passes it too */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmpage.h"
#include "bench.h"

uint32_t *g_perm;
uint64_t g_npages;
size_t g_ntouch;
int g_fd = -1;
uint64_t g_size;
char g_fsname[16] = "?";

/* --- data ---------------------------------------------------------------- */

void data_fill(void *buf, uint64_t first, size_t nbytes)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < nbytes / 8; i++)
		w[i] = data_word(first + i);
}

/* n (n - 1) / 2 mod 2^64: halve the even factor first so nothing is lost. */
static uint64_t tri(uint64_t n)
{
	if (n == 0)
		return 0;
	return n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);
}

uint64_t data_sum(uint64_t first, uint64_t n)
{
	/* sum of g * K over [first, first + n) = K * (tri(first + n) - tri(first)) */
	return DATA_K * (tri(first + n) - tri(first));
}

/* Four accumulators: the loop is then limited by memory, not by one chain
 * of dependent adds, whatever the compiler's vectoriser decides. */
uint64_t sum_words(const uint64_t *w, size_t n)
{
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	size_t i = 0;

	for (; i + 4 <= n; i += 4) {
		s0 += w[i];
		s1 += w[i + 1];
		s2 += w[i + 2];
		s3 += w[i + 3];
	}
	for (; i < n; i++)
		s0 += w[i];
	return s0 + s1 + s2 + s3;
}

/* xorshift64*: small, seeded, good enough to shuffle page numbers. */
static uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

void shuffle(uint32_t *a, size_t n, uint64_t seed)
{
	uint64_t s = seed | 1;

	for (size_t i = 0; i < n; i++)
		a[i] = (uint32_t)i;
	for (size_t i = n; i > 1; i--) {
		size_t j = rnd_next(&s) % i;
		uint32_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

size_t g_wall_touches = 200000;
uint64_t g_wall_dirty = 1000000;

const uint32_t *wall_perm(int pass)
{
	static uint32_t *perm[2];
	uint32_t *idx;

	if (perm[0])
		return perm[pass];
	/* a shuffle of all the pages, of which the first g_wall_touches are
	 * used: distinct, and spread over the whole store */
	perm[0] = malloc(WALL_PAGES * sizeof(*perm[0]));
	perm[1] = malloc(g_wall_touches * sizeof(*perm[1]));
	idx = malloc(g_wall_touches * sizeof(*idx));
	if (perm[0] && perm[1] && idx) {
		shuffle(perm[0], WALL_PAGES, 0x3A11);
		shuffle(idx, g_wall_touches, 0x3A12);
		for (size_t i = 0; i < g_wall_touches; i++)
			perm[1][i] = perm[0][idx[i]];
	} else {
		free(perm[0]);
		free(perm[1]);
		perm[0] = perm[1] = NULL;
	}
	free(idx);
	return perm[pass];
}

/* --- test file, page cache ----------------------------------------------- */

const char *tmp_dir(void)
{
	const char *d = getenv("TMPDIR");

	return d && *d ? d : "/var/tmp";
}

int file_create(uint64_t size, const char *what)
{
	char path[4096];
	size_t chunk = 1 * MiB;
	void *buf;
	int fd;

	snprintf(path, sizeof(path), "%s/vmpage-bench-%s-XXXXXX", tmp_dir(),
		 what);
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	/* Unlinked at once: nothing is left behind, whatever happens. */
	unlink(path);
	buf = malloc(chunk);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		data_fill(buf, off / 8, n);
		if (pwrite(fd, buf, n, off) != (ssize_t)n) {
			int e = errno ? -errno : -EIO;

			free(buf);
			close(fd);
			return e;
		}
	}
	free(buf);
	return fd;
}

double cache_resident_pct(int fd, uint64_t size)
{
	size_t n = (size + OS_PAGE - 1) / OS_PAGE, in = 0;
	unsigned char *vec;
	void *p;

	if (size == 0)
		return 0;
	/* A read-only mapping that nobody touches faults nothing in. */
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	vec = malloc(n);
	if (vec && mincore(p, size, vec) == 0)
		for (size_t i = 0; i < n; i++)
			in += vec[i] & 1;
	free(vec);
	munmap(p, size);
	return 100.0 * (double)in / (double)n;
}

double cache_drop(int fd, uint64_t size)
{
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return cache_resident_pct(fd, size);
}

/*
 * "Hot" must be one and the same state for every row: the pages a cold
 * random read leaves behind sit in small folios, and kernel mmap over such
 * a cache ran at a third of its speed here (7 vs 20 GB/s).  So hot means:
 * dropped, then read whole with pread, and nothing else done to it since.
 */
static bool hot_canonical;

void cache_hot(int fd, uint64_t size)
{
	static char buf[1 * MiB];

	if (hot_canonical && cache_resident_pct(fd, size) >= 100.0)
		return;
	cache_drop(fd, size);
	for (uint64_t off = 0; off < size; off += sizeof(buf))
		if (pread(fd, buf, sizeof(buf), (off_t)off) <= 0)
			break;
	hot_canonical = true;
}

double cache_cold(int fd, uint64_t size)
{
	hot_canonical = false;
	return cache_drop(fd, size);
}

/* --- timing, memory ------------------------------------------------------ */

double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double process_peak_mib;

/* getrusage's figure is the same high-water mark that clear_refs resets:
 * keep the largest value seen before each reset. */
double process_peak_rss_mib(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) == 0 &&
	    (double)ru.ru_maxrss / 1024.0 > process_peak_mib)
		process_peak_mib = (double)ru.ru_maxrss / 1024.0;
	return process_peak_mib;
}

void peak_rss_reset(void)
{
	int fd;

	process_peak_rss_mib();
	fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, "5", 1) < 0) {
		/* an old kernel: the peak then covers earlier rows too */
	}
	close(fd);
}

double peak_rss_mib(void)
{
	char buf[4096], *p;
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strstr(buf, "VmHWM:");
	return p ? strtod(p + 6, NULL) / 1024.0 : -1;
}

uint64_t spin_work(uint64_t iters)
{
	uint64_t x = iters;

	for (uint64_t i = 0; i < iters; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	return x;
}

double spin_calibrate(void)
{
	uint64_t iters = 1 << 20;
	double best = 1e9;

	/* Best of a few: the shortest time is the one least disturbed. */
	for (int i = 0; i < 5; i++) {
		double t = now();
		uint64_t x = spin_work(iters);

		__asm__ volatile("" : : "r"(x));
		t = now() - t;
		if (t < best)
			best = t;
	}
	return (double)iters / (best * 1e6);
}

/* --- access loops -------------------------------------------------------- */

static void access_seq(struct access *a)
{
	/* Check the clock once per chunk: cheap, and fine-grained enough. */
	const uint64_t chunk = 256 * KiB;
	double t0 = now();
	uint64_t s = 0, off;

	for (off = 0; off < a->nbytes; off += chunk) {
		uint64_t n = a->nbytes - off < chunk ? a->nbytes - off : chunk;

		s += sum_words(a->base + off / 8, n / 8);
		if (a->cap > 0 && now() - t0 > a->cap) {
			off += n;
			a->capped = off < a->nbytes;
			break;
		}
	}
	a->done = off < a->nbytes ? off : a->nbytes;
	a->sum = s;
	a->secs = now() - t0;
}

static void access_rand(struct access *a)
{
	double t0 = now();
	uint64_t s = 0;
	size_t i;

	for (i = 0; i < a->ntouch; i++) {
		s += a->base[touch_word(a->perm[i])];
		if (a->cap > 0 && i % 64 == 63 && now() - t0 > a->cap) {
			i++;
			a->capped = i < a->ntouch;
			break;
		}
	}
	a->done = i;
	a->sum = s;
	a->secs = now() - t0;
}

static void access_cpu(struct access *a)
{
	double t0 = now();
	uint64_t x = 0;

	for (size_t i = 0; i < a->ntouch; i++)
		x += spin_work(a->spin);
	__asm__ volatile("" : : "r"(x));
	a->done = a->ntouch;
	a->sum = 0;
	a->secs = now() - t0;
}

int access_run(void *arg)
{
	struct access *a = arg;

	a->capped = false;
	if (a->kind == ACC_SEQ)
		access_seq(a);
	else if (a->kind == ACC_RAND)
		access_rand(a);
	else
		access_cpu(a);
	return 0;
}

bool access_check(const struct access *a, char *err, size_t errlen)
{
	uint64_t want = 0;

	if (a->kind == ACC_CPU) {
		return true;
	} else if (a->kind == ACC_SEQ) {
		want = data_sum(0, a->done / 8);
	} else {
		for (size_t i = 0; i < a->done; i++)
			want += data_word(touch_word(a->perm[i]));
	}
	if (want == a->sum)
		return true;
	snprintf(err, errlen, "%s sum over %llu %s is %#llx, want %#llx",
		 a->kind == ACC_SEQ ? "sequential" : "random",
		 (unsigned long long)a->done,
		 a->kind == ACC_SEQ ? "bytes" : "pages",
		 (unsigned long long)a->sum, (unsigned long long)want);
	return false;
}

double access_rate(const struct access *a)
{
	if (a->secs <= 0)
		return 0;
	if (a->kind == ACC_SEQ)
		return (double)a->done / a->secs / 1e9;
	return (double)a->done / a->secs / 1e6;
}

void access_split(struct access *a, int n, const uint64_t *base,
		  const uint32_t *perm, size_t ntouch)
{
	for (int i = 0; i < n; i++) {
		size_t lo = ntouch * (size_t)i / (size_t)n;
		size_t hi = ntouch * (size_t)(i + 1) / (size_t)n;

		memset(&a[i], 0, sizeof(a[i]));
		a[i].base = base;
		a[i].kind = ACC_RAND;
		a[i].perm = perm + lo;
		a[i].ntouch = hi - lo;
	}
}

struct worker {
	pthread_t tid;
	struct access *a;
	pthread_barrier_t *start;
	bool guard;
	int ret;
};

static int run_one(struct access *a, bool guard)
{
	return guard ? vmp_guard(access_run, a) : access_run(a);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(w->start);
	w->ret = run_one(w->a, w->guard);
	return NULL;
}

double access_parallel(struct access *a, int n, bool guard, int *err)
{
	struct worker w[64];
	pthread_barrier_t start;
	int started = 0, ret = 0;
	double t0, t1;

	if (n == 0) {
		t0 = now();
		ret = run_one(a, guard);
		t1 = now();
		if (err)
			*err = ret < 0 ? ret : 0;
		return t1 - t0;
	}
	if (n > 64)
		n = 64;
	/* Threads are created first and released together, so that thread
	 * creation is not timed and all of them fault at the same time. */
	pthread_barrier_init(&start, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){ .a = &a[i], .start = &start,
					.guard = guard };
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "vmpage-bench: pthread_create failed\n");
			exit(2);
		}
		started++;
	}
	pthread_barrier_wait(&start);
	t0 = now();
	for (int i = 0; i < started; i++) {
		pthread_join(w[i].tid, NULL);
		if (w[i].ret < 0 && ret == 0)
			ret = w[i].ret;
	}
	t1 = now();
	pthread_barrier_destroy(&start);
	if (err)
		*err = ret;
	return t1 - t0;
}
