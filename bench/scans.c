/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * scans.c: the rows of issue 14, programs as users write them over a
 * mapping larger than the other rows' file (g_big_size, four times it:
 * 1 GiB by default):
 *
 *   par/...      an OpenMP `parallel for` sum over the whole mapping, 1, 2
 *                and 4 threads: schedule(static) (each thread one
 *                contiguous half or quarter) or 2 MiB chunks handed out
 *                dynamically; generated store and file store (4 KiB
 *                blocks, no limit), kernel mmap of the same file, a
 *                CPU-only loop, and the copy floor in N threads into one
 *                memfd (as a handle has) and into a memfd per thread.
 *                Each N-thread row's ratio is to 1 thread of the same kind.
 *   gather/gen   random reads of single words of a 1 GiB generated store
 *                under a limit of an eighth: pages loaded per distinct page
 *                touched (read-ahead must not fire on random access).
 *   big/...      sequential first-touch read of a 1 GiB generated store of
 *                2 MiB blocks, next to its copy floor (the same bytes
 *                computed into a buffer, pwritten into a fresh memfd,
 *                mapped readable, summed); at least 5 rounds, for the spread.
 *   bsearch/...  binary-search lookups of random keys in a sorted 200 MB
 *                array (generated store, 4 KiB blocks, 64 MiB limit), next
 *                to the same lookups in an array in memory.
 *
 * Without OpenMP the par/ rows are "n/a".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, MAP_NORESERVE; meson passes it too */
#endif
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "vmpage.h"
#include "bench.h"

uint64_t g_big_size;

#define SCAN_CHUNK (2 * MiB) /* the dynamic schedule's unit */

/* --- the parallel scan --------------------------------------------------- */

struct scan {
	const uint64_t *base;
	uint64_t nbytes;
	bool dynamic;        /* 2 MiB chunks, schedule(dynamic), else static */
	uint64_t spin;       /* CPU only: spin_work steps per 4 KiB "page" */
	int threads;
	_Atomic uint64_t sum;
};

/* Each thread of the team: its share of the loop (an orphaned `omp for`,
 * bound to the team of scan_run's parallel region), under vmp_guard. */
__attribute__((unused)) static int scan_body(void *arg)
{
	struct scan *s = arg;
	const int64_t npg = (int64_t)(s->nbytes / OS_PAGE);
	const int64_t nch = (int64_t)(s->nbytes / SCAN_CHUNK);
	uint64_t sum = 0;

	(void)npg;
	(void)nch;
#ifdef _OPENMP
	if (s->spin) {
#pragma omp for schedule(static) nowait
		for (int64_t i = 0; i < npg; i++)
			sum += spin_work(s->spin);
	} else if (s->dynamic) {
#pragma omp for schedule(dynamic, 1) nowait
		for (int64_t i = 0; i < nch; i++)
			sum += sum_words(s->base + i * (int64_t)(SCAN_CHUNK / 8),
					 SCAN_CHUNK / 8);
	} else {
#pragma omp for schedule(static) nowait
		for (int64_t i = 0; i < npg; i++)
			sum += sum_words(s->base + i * (int64_t)WORDS_PER_OS_PAGE,
					 WORDS_PER_OS_PAGE);
	}
#endif
	atomic_fetch_add(&s->sum, sum);
	return 0;
}

/* Run the scan in s->threads threads; the wall time, or < 0 with the first
 * fault error in *err.  The team is made before the clock starts. */
static double scan_run(struct scan *s, bool guard, int *err)
{
	_Atomic int e = 0;
	double t0 = 0, t1 = 0;

	*err = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(s->threads)
	{
		/* nothing: the threads exist before the clock starts */
	}
	t0 = now();
#pragma omp parallel num_threads(s->threads)
	{
		int r = guard ? vmp_guard(scan_body, s) : scan_body(s);

		if (r < 0) {
			int zero = 0;

			atomic_compare_exchange_strong(&e, &zero, r);
		}
	}
	t1 = now();
#else
	e = -ENOSYS;
#endif
	*err = e;
	return t1 - t0;
}

/* Run @s over @base, check it, value in r->val[0] (GB/s). */
static void scan_measure(struct scan *s, const void *base, bool guard,
			 struct rep *r)
{
	int e;
	double secs;

	s->base = base;
	secs = scan_run(s, guard, &e);
	if (e == -ENOSYS) {
		rep_fail(r, REP_NA, "built without OpenMP");
		return;
	}
	if (e < 0) {
		rep_fail(r, REP_ERROR, "fault not served: %s", strerror(-e));
		return;
	}
	if (s->spin == 0 && s->sum != data_sum(0, s->nbytes / 8)) {
		rep_fail(r, REP_BADSUM, "parallel sum %#llx, want %#llx",
			 (unsigned long long)s->sum,
			 (unsigned long long)data_sum(0, s->nbytes / 8));
		return;
	}
	r->val[0] = s->spin ? (double)(s->nbytes / OS_PAGE) / secs / 1e6
			    : (double)s->nbytes / secs / 1e9;
}

/* The big file: the same data as the test file, g_big_size bytes, made on
 * first use and left in the page cache (hot) as writing it left it. */
static int big_fd(struct rep *r)
{
	static int fd = -1;

	if (fd < 0) {
		fd = file_create(g_big_size, "big");
		if (fd < 0) {
			rep_fail(r, REP_ERROR, "the %llu MiB file: %s",
				 (unsigned long long)(g_big_size / MiB),
				 strerror(-fd));
			fd = -1;
			return -1;
		}
		fdatasync(fd);
	}
	return fd;
}

/* par/cpu/N: no memory, ~1 us of computation per 4 KiB "page". */
void job_par_cpu(const struct job *j, struct rep *r)
{
	struct scan s = { .nbytes = g_big_size, .threads = j->threads,
			  .spin = (uint64_t)(g_spin_iters / 20 + 0.5) };

	scan_measure(&s, NULL, false, r);
}

/* par/kernel/N: kernel mmap of the big file, mapped afresh each time. */
void job_par_kernel(const struct job *j, struct rep *r)
{
	struct scan s = { .nbytes = g_big_size, .threads = j->threads,
			  .dynamic = j->dynamic };
	int fd = big_fd(r);
	void *p;

	if (fd < 0)
		return;
	p = mmap(NULL, g_big_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		rep_fail(r, REP_ERROR, "mmap of the file: %s", strerror(errno));
		return;
	}
	scan_measure(&s, p, false, r);
	munmap(p, g_big_size);
}

/*
 * par/floor/N, par/floor-sep/N: the copy floor in N threads, each its
 * contiguous share of the big size in 2 MiB steps (the library's largest
 * read-ahead window): compute the bytes into a buffer of its own, pwrite
 * them into a fresh memfd, mprotect them readable, sum them.  floor: one
 * memfd for all; floor-sep: one memfd per thread (each with its own
 * mapping), as a SIGSEGV handle's lanes are.  Whether the floor scales
 * says whether a library that copies into one memfd can.
 */
struct floor_par {
	int nfd;
	int fd[64];
	char *map[64];
	_Atomic uint64_t sum;
	_Atomic int err;
};

__attribute__((unused)) static void floor_par_body(struct floor_par *f, int threads)
{
#ifdef _OPENMP
	const int64_t nch = (int64_t)(g_big_size / SCAN_CHUNK);
	int me = omp_get_thread_num(), k = f->nfd > 1 ? me : 0;
	char *buf = aligned_alloc(OS_PAGE, SCAN_CHUNK);
	uint64_t sum = 0;

	(void)threads;
	if (!buf) {
		atomic_store(&f->err, -ENOMEM);
		return;
	}
	memset(buf, 0, SCAN_CHUNK);
#pragma omp for schedule(static) nowait
	for (int64_t i = 0; i < nch; i++) {
		uint64_t off = (uint64_t)i * SCAN_CHUNK;

		data_fill(buf, off / 8, SCAN_CHUNK);
		if (pwrite(f->fd[k], buf, SCAN_CHUNK, (off_t)off) != SCAN_CHUNK ||
		    mprotect(f->map[k] + off, SCAN_CHUNK, PROT_READ) != 0) {
			atomic_store(&f->err, -errno);
			continue;
		}
		sum += sum_words((const uint64_t *)(f->map[k] + off),
				 SCAN_CHUNK / 8);
	}
	atomic_fetch_add(&f->sum, sum);
	free(buf);
#else
	(void)f;
	(void)threads;
#endif
}

void job_par_floor(const struct job *j, struct rep *r)
{
	struct floor_par f = { .nfd = j->sep_fds ? j->threads : 1 };
	double t0 = 0, t1 = 0;

	for (int i = 0; i < f.nfd; i++) {
		f.fd[i] = memfd_create("vmpage-bench-par", MFD_CLOEXEC);
		f.map[i] = MAP_FAILED;
		if (f.fd[i] < 0 || ftruncate(f.fd[i], (off_t)g_big_size) ||
		    (f.map[i] = mmap(NULL, g_big_size, PROT_NONE,
				     MAP_SHARED | MAP_NORESERVE, f.fd[i], 0)) ==
			    MAP_FAILED) {
			rep_fail(r, REP_ERROR, "memfd region: %s",
				 strerror(errno));
			f.nfd = i + 1;
			goto out;
		}
	}
#ifdef _OPENMP
#pragma omp parallel num_threads(j->threads)
	{
		/* the team exists before the clock starts */
	}
	t0 = now();
#pragma omp parallel num_threads(j->threads)
	floor_par_body(&f, j->threads);
	t1 = now();
#else
	rep_fail(r, REP_NA, "built without OpenMP");
	goto out;
#endif
	if (f.err)
		rep_fail(r, REP_ERROR, "pwrite or mprotect: %s",
			 strerror(-f.err));
	else if (f.sum != data_sum(0, g_big_size / 8))
		rep_fail(r, REP_BADSUM, "parallel floor sum %#llx, want %#llx",
			 (unsigned long long)f.sum,
			 (unsigned long long)data_sum(0, g_big_size / 8));
	else
		r->val[0] = (double)g_big_size / (t1 - t0) / 1e9;
out:
	for (int i = 0; i < f.nfd; i++) {
		if (f.map[i] != MAP_FAILED)
			munmap(f.map[i], g_big_size);
		if (f.fd[i] >= 0)
			close(f.fd[i]);
	}
}

/* A note: faults, loads, read-ahead of the pass. */
static void note_stats(const struct libmap *m, struct rep *r)
{
	struct vmp_stats st;

	if (vmp_ram_stats(m->ram, &st) == 0)
		snprintf(r->info, sizeof(r->info), "%llu faults, %llu loads "
			 "(%llu read ahead), %llu taken over",
			 (unsigned long long)st.faults,
			 (unsigned long long)st.loads,
			 (unsigned long long)st.readahead_pages,
			 (unsigned long long)st.takeovers);
}

/* par/gen/..., par/file/...: the scan over a fresh library mapping. */
void job_par_lib(const struct job *j, struct rep *r)
{
	struct scan s = { .nbytes = g_big_size, .threads = j->threads,
			  .dynamic = j->dynamic };
	struct gen g = { .blksize = j->ps };
	struct libmap m;
	vmp_store *st;
	int e, fd;

	if (j->temp == T_HOT) { /* the file store */
		if ((fd = big_fd(r)) < 0)
			return;
		if ((e = vmp_file_store_new(&st, fd, j->ps)) < 0) {
			rep_fail(r, REP_ERROR, "vmp_file_store_new: %s",
				 strerror(-e));
			return;
		}
	} else if (!(st = gen_store_new(&g, r))) {
		return;
	}
	if (!lib_open(&m, st, j->ps, j->limit ? g_big_size / 4 : 0, 0,
		      j->faults, g_big_size / j->ps, PROT_READ, r))
		return;
	scan_measure(&s, m.addr, true, r);
	note_stats(&m, r);
	r->meta_bpp = lib_meta_bpp(&m);
	lib_close(&m, r);
}

/* --- random gather ------------------------------------------------------- */

/* gather/gen: g_ntouch * 2 random words of a big generated store (4 KiB
 * blocks) under a limit of an eighth of it, so that the distinct pages
 * touched (about 64 MiB at most) fit: any page loaded more than once,
 * or not touched at all, is read-ahead gone wrong.  Value: pages loaded
 * per distinct page touched. */
struct gather {
	const uint64_t *base;
	const uint64_t *words;
	size_t n;
	uint64_t sum;
};

static int gather_run(void *arg)
{
	struct gather *ga = arg;
	uint64_t s = 0;

	for (size_t i = 0; i < ga->n; i++)
		s += ga->base[ga->words[i]];
	ga->sum = s;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void job_gather(const struct job *j, struct rep *r)
{
	const uint64_t nwords = g_big_size / 8;
	size_t n = g_ntouch * 2, distinct = 0;
	struct gen g = { .blksize = OS_PAGE };
	uint64_t *words = malloc(n * sizeof(*words));
	uint64_t *pages = malloc(n * sizeof(*pages));
	uint64_t rs = 0x6A7 | 1, want = 0;
	struct gather ga = { .words = words, .n = n };
	struct vmp_stats st;
	struct libmap m;
	vmp_store *sto;
	double t;
	int e;

	if (!words || !pages) {
		rep_fail(r, REP_ERROR, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rs ^= rs >> 12;
		rs ^= rs << 25;
		rs ^= rs >> 27;
		words[i] = (rs * 0x2545F4914F6CDD1Dull) % nwords;
		want += data_word(words[i]);
		pages[i] = words[i] / WORDS_PER_OS_PAGE;
	}
	qsort(pages, n, sizeof(*pages), cmp_u64);
	for (size_t i = 0; i < n; i++)
		distinct += i == 0 || pages[i] != pages[i - 1];
	if (!(sto = gen_store_new(&g, r)) ||
	    !lib_open(&m, sto, OS_PAGE, g_big_size / 8, 0, j->faults,
		      g_big_size / OS_PAGE, PROT_READ, r))
		goto out;
	ga.base = m.addr;
	t = now();
	e = vmp_guard(gather_run, &ga);
	t = now() - t;
	if (e < 0)
		rep_fail(r, REP_ERROR, "fault not served: %s", strerror(-e));
	else if (ga.sum != want)
		rep_fail(r, REP_BADSUM, "gather sum %#llx, want %#llx",
			 (unsigned long long)ga.sum, (unsigned long long)want);
	else if (vmp_ram_stats(m.ram, &st) < 0)
		rep_fail(r, REP_ERROR, "vmp_ram_stats failed");
	else {
		r->val[0] = (double)st.loads / (double)distinct;
		snprintf(r->info, sizeof(r->info), "%zu reads, %zu pages: "
			 "%llu loads, %llu read ahead, %llu reclaimed; "
			 "%.1f us per read", n, distinct,
			 (unsigned long long)st.loads,
			 (unsigned long long)st.readahead_pages,
			 (unsigned long long)st.reclaimed_pages,
			 t * 1e6 / (double)n);
	}
	r->meta_bpp = lib_meta_bpp(&m);
	lib_close(&m, r);
out:
	free(words);
	free(pages);
}

/* --- 2 MiB blocks, 1 GiB ------------------------------------------------- */

/* big/copy-2m: the floor of a copying loader of 2 MiB blocks that computes
 * them (as the generated store does) instead of reading a file: fill a
 * buffer, pwrite it into a fresh memfd, mprotect it readable, sum it. */
void job_big_copy(const struct job *j, struct rep *r)
{
	size_t ps = j->ps;
	uint64_t s = 0, off;
	char *base = MAP_FAILED, *buf;
	int fd = memfd_create("vmpage-bench-big", MFD_CLOEXEC);
	double t0;

	buf = aligned_alloc(OS_PAGE, ps);
	if (fd < 0 || !buf || ftruncate(fd, (off_t)g_big_size) != 0 ||
	    (base = mmap(NULL, g_big_size, PROT_NONE, MAP_SHARED | MAP_NORESERVE,
			 fd, 0)) == MAP_FAILED) {
		rep_fail(r, REP_ERROR, "memfd region: %s", strerror(errno));
		goto out;
	}
	memset(buf, 0, ps);
	t0 = now();
	for (off = 0; off < g_big_size; off += ps) {
		data_fill(buf, off / 8, ps);
		if (pwrite(fd, buf, ps, (off_t)off) != (ssize_t)ps ||
		    mprotect(base + off, ps, PROT_READ) != 0) {
			rep_fail(r, REP_ERROR, "copy at %llu: %s",
				 (unsigned long long)off, strerror(errno));
			goto out;
		}
		s += sum_words((const uint64_t *)(base + off), ps / 8);
	}
	r->val[0] = (double)g_big_size / (now() - t0) / 1e9;
	if (s != data_sum(0, g_big_size / 8))
		rep_fail(r, REP_BADSUM, "copy sum %#llx, want %#llx",
			 (unsigned long long)s,
			 (unsigned long long)data_sum(0, g_big_size / 8));
out:
	if (base != MAP_FAILED)
		munmap(base, g_big_size);
	if (fd >= 0)
		close(fd);
	free(buf);
}

/* big/seq-2m: the sequential first-touch read of the big generated store,
 * 2 MiB blocks, no limit, no cap. */
void job_big_seq(const struct job *j, struct rep *r)
{
	struct gen g = { .blksize = j->ps };
	vmp_store *st = gen_store_new(&g, r);
	struct access a = { .nbytes = g_big_size, .kind = ACC_SEQ };
	struct libmap m;
	int e;

	if (!st || !lib_open(&m, st, g.blksize, 0, 0, j->faults,
			     g_big_size / j->ps, PROT_READ, r))
		return;
	a.base = m.addr;
	e = vmp_guard(access_run, &a);
	if (e < 0)
		rep_fail(r, REP_ERROR, "fault not served: %s", strerror(-e));
	else if (!access_check(&a, r->msg, sizeof(r->msg)))
		r->status = REP_BADSUM;
	else
		r->val[0] = access_rate(&a);
	note_stats(&m, r);
	r->meta_bpp = lib_meta_bpp(&m);
	lib_close(&m, r);
}

/* --- binary search ------------------------------------------------------- */

#define BS_LOOKUPS 10000

struct bsearch_pass {
	const uint64_t *base;
	uint64_t nwords;
	const uint64_t *keys;
	size_t n;
	size_t wrong;       /* lookups that found another index */
	double secs;
};

/* Lower bound of each key, as libc's bsearch would probe it. */
static int bsearch_run(void *arg)
{
	struct bsearch_pass *b = arg;
	double t0 = now();

	b->wrong = 0;
	for (size_t i = 0; i < b->n; i++) {
		uint64_t lo = 0, hi = b->nwords, k = b->keys[i];

		while (lo < hi) {
			uint64_t mid = lo + (hi - lo) / 2;

			if (b->base[mid] < k)
				lo = mid + 1;
			else
				hi = mid;
		}
		b->wrong += lo != k;
	}
	b->secs = now() - t0;
	return 0;
}

static uint64_t bs_bytes(void)
{
	/* 200 MB (25 MB with --quick), whole pages */
	uint64_t b = opt.quick ? 25000000 : 200000000;

	return b / OS_PAGE * OS_PAGE;
}

static uint64_t *bs_keys(void)
{
	static uint64_t *keys;
	uint64_t rs = 0xB5 | 1, nwords = bs_bytes() / 8;

	if (keys)
		return keys;
	keys = malloc(BS_LOOKUPS * sizeof(*keys));
	for (size_t i = 0; keys && i < BS_LOOKUPS; i++) {
		rs ^= rs >> 12;
		rs ^= rs << 25;
		rs ^= rs >> 27;
		keys[i] = (rs * 0x2545F4914F6CDD1Dull) % nwords;
	}
	return keys;
}

static void bs_finish(struct bsearch_pass *b, struct rep *r)
{
	if (b->wrong)
		rep_fail(r, REP_BADSUM, "%zu of %zu lookups wrong", b->wrong,
			 b->n);
	else
		r->val[0] = b->secs * 1e6 / (double)b->n;
}

/* bsearch/memory: the same lookups in the sorted array in plain memory,
 * written before (untimed): the cost of the search itself, cache and TLB
 * misses, no fault. */
void job_bsearch_mem(const struct job *j, struct rep *r)
{
	struct bsearch_pass b = { .nwords = bs_bytes() / 8, .keys = bs_keys(),
				  .n = BS_LOOKUPS };
	uint64_t *arr = malloc(bs_bytes());

	(void)j;
	if (!arr || !b.keys) {
		rep_fail(r, REP_ERROR, "out of memory");
		free(arr);
		return;
	}
	for (uint64_t i = 0; i < b.nwords; i++)
		arr[i] = i;
	b.base = arr;
	bsearch_run(&b);
	bs_finish(&b, r);
	free(arr);
}

/* bsearch/gen-lim: over a generated store (4 KiB blocks) under a limit of
 * 64 MiB (8 MiB with --quick), a third of the array or so.  The note
 * counts the faults per lookup and those that loaded nothing (an inactive
 * page touched again: the top levels of the search are the hottest pages
 * there are). */
void job_bsearch_lib(const struct job *j, struct rep *r)
{
	struct bsearch_pass b = { .nwords = bs_bytes() / 8, .keys = bs_keys(),
				  .n = BS_LOOKUPS };
	struct gen g = { .blksize = OS_PAGE, .sorted = true };
	uint64_t limit = opt.quick ? 8 * MiB : 64 * MiB;
	struct vmp_stats st;
	struct libmap m;
	vmp_store *sto;
	int e;

	if (!b.keys) {
		rep_fail(r, REP_ERROR, "out of memory");
		return;
	}
	if (!(sto = gen_store_new(&g, r)) ||
	    !lib_open(&m, sto, OS_PAGE, limit, 0, j->faults,
		      bs_bytes() / OS_PAGE, PROT_READ, r))
		return;
	b.base = m.addr;
	e = vmp_guard(bsearch_run, &b);
	if (e < 0) {
		rep_fail(r, REP_ERROR, "fault not served: %s", strerror(-e));
	} else if (vmp_ram_stats(m.ram, &st) < 0) {
		rep_fail(r, REP_ERROR, "vmp_ram_stats failed");
	} else {
		/* each fault that loads loads its page and its read-ahead:
		 * the others loaded nothing (reactivations) */
		uint64_t loading = st.loads - st.readahead_pages;
		uint64_t idle = st.faults > loading ? st.faults - loading : 0;

		bs_finish(&b, r);
		snprintf(r->info, sizeof(r->info), "per lookup: %.2f faults, "
			 "%.2f loads; %.0f%% of faults loaded nothing",
			 (double)st.faults / (double)b.n,
			 (double)st.loads / (double)b.n,
			 st.faults ? 100.0 * (double)idle / (double)st.faults
				   : 0.0);
	}
	r->meta_bpp = lib_meta_bpp(&m);
	lib_close(&m, r);
}
