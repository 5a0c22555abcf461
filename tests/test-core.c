/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-core.c: the core promises of issue 2.
 *
 *  - lazy loading: touching k random pages of a 1 TiB store calls loadblk
 *    exactly k times, the bytes are right, memory follows the pages touched;
 *  - overlapping mappings of one handle show the same bytes;
 *  - several handles per store and several RAMs are independent;
 *  - read-ahead through ops->loadblks, and its fallback to loadblk;
 *  - threads faulting on one page together load it once;
 *  - read-only mappings are read-only (a write dies of SIGSEGV);
 *  - page sizes from 4 KiB to 2 MiB;
 *  - faults outside our mappings crash as without the library;
 *  - read(2) into unloaded pages fails with EFAULT, and works after
 *    vmp_prefault().
 *
 * Every test body re-arms the library's SIGSEGV handler first: cmocka
 * installs its own around each test (STYLE.md, "Two facts").
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

/* True if @blk is @blks[i] or next to one, for i < n. */
static bool near_any(const uint64_t *blks, size_t n, uint64_t blk)
{
	for (size_t i = 0; i < n; i++)
		if (blk + 1 >= blks[i] && blk <= blks[i] + 1)
			return true;
	return false;
}

/* --- lazy loading ----------------------------------------------------------- */

static void test_lazy_load_1tib(void **state)
{
	enum { K = 300 };
	const size_t ps = os_page();
	const uint64_t npages = BIG_SPAN / ps;
	struct mock *m = mock_new_generated(ps);
	uint64_t blks[K];
	uint64_t rss0;
	struct vmp_stats st;
	struct rng r;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	rng_seed(&r, test_seed(1));
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	rss0 = proc_status_bytes("VmRSS");
	p = map_pages(fh, 0, npages, PROT_READ);
	assert_u64(m->load_calls, 0);

	/* Isolated pages, so that no read-ahead is expected. */
	for (size_t i = 0; i < K; i++) {
		size_t off = rng_below(&r, ps);
		uint64_t b;

		do
			b = rng_below(&r, npages);
		while (near_any(blks, i, b));
		blks[i] = b;
		if ((uint8_t)p[b * ps + off] != gen_byte(b, off, 0))
			fail_msg("page %llu byte %zu wrong",
				 (unsigned long long)b, off);
	}
	for (size_t i = 0; i < K; i++) {
		size_t bad = gen_check(p + blks[i] * ps, ps, blks[i], 0);

		if (bad)
			fail_msg("page %llu: byte %zu wrong",
				 (unsigned long long)blks[i], bad - 1);
		assert_u64(mock_loads(m, blks[i]), 1);
	}
	assert_false(m->tab_full);
	assert_u64(m->load_calls, K);

	st = ram_stats(ram);
	assert_u64(st.loads, K);
	assert_u64(st.resident_bytes, K * ps);
	assert_u64(st.dirty_bytes, 0);
	assert_true(st.faults >= K);
	/* Memory proportional to the pages touched, not to 2^28 pages: even
	 * one bit per page of the store would be 32 MiB. */
	assert_u64_le(st.metadata_bytes, 4 * MiB);
	assert_u64_le(proc_status_bytes("VmRSS"), rss0 + 16 * MiB);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	assert_u64(m->releases, 0); /* the program still holds the store */
	mock_store_free(m);
	assert_u64(m->releases, 1);
	mock_free(m);
}

/* --- mappings and handles ----------------------------------------------------- */

static void test_overlapping_mappings(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 32, 0);
	const int rw = PROT_READ | PROT_WRITE;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *a, *b, *c, *d;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	a = map_pages(fh, 0, 32, rw);  /* a + i*ps is page i */
	b = map_pages(fh, 4, 16, rw);  /* b + i*ps is page 4 + i */
	c = map_pages(fh, 10, 16, PROT_READ);
	d = map_pages(fh, 10, 16, PROT_READ);

	/* One load serves every mapping of the handle. */
	assert_int_equal(gen_check(c, ps, 10, 0), 0);
	assert_int_equal(memcmp(a + 10 * ps, c, ps), 0);
	assert_int_equal(memcmp(b + 6 * ps, d, ps), 0);
	assert_u64(mock_loads(m, 10), 1);

	/* A write through one mapping is visible in all at once. */
	a[12 * ps + 7] = (char)0xaa;
	assert_int_equal((uint8_t)b[8 * ps + 7], 0xaa);
	assert_int_equal((uint8_t)c[2 * ps + 7], 0xaa);
	assert_int_equal((uint8_t)d[2 * ps + 7], 0xaa);
	b[11 * ps] = 'B'; /* page 15 */
	assert_int_equal(a[15 * ps], 'B');
	assert_int_equal(c[5 * ps], 'B');
	assert_u64(dirty_count(fh), 2);
	assert_u64(mock_loads(m, 12), 1);
	assert_u64(mock_loads(m, 15), 1);

	/* Unmapping keeps the handle's pages and changes. */
	assert_ok(vmp_munmap(b));
	assert_ok(vmp_munmap(a));
	assert_int_equal((uint8_t)c[2 * ps + 7], 0xaa);
	b = map_pages(fh, 12, 1, rw);
	assert_int_equal((uint8_t)b[7], 0xaa);
	assert_u64(dirty_count(fh), 2);
	assert_u64(mock_loads(m, 12), 1);

	assert_ok(vmp_munmap(b));
	assert_ok(vmp_munmap(c));
	assert_ok(vmp_munmap(d));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

static void test_several_handles_and_rams(void **state)
{
	const size_t ps = os_page();
	struct mock *s = mock_new(ps, 16, 0), *t = mock_new(ps, 16, 0);
	const int rw = PROT_READ | PROT_WRITE;
	vmp_ram *ram1, *ram2;
	vmp_fileh *h1, *h2, *h3, *h4;
	char *p1, *p2, *p3, *p4;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram1, 0));
	assert_ok(vmp_ram_new(&ram2, 0));
	h1 = open_fh(ram1, s, 0);
	h2 = open_fh(ram1, s, 0);
	h3 = open_fh(ram2, s, 0);
	h4 = open_fh(ram2, t, 0);
	p1 = map_pages(h1, 0, 16, rw);
	p2 = map_pages(h2, 0, 16, rw);
	p3 = map_pages(h3, 0, 16, PROT_READ);
	p4 = map_pages(h4, 0, 16, rw);

	/* Each handle loads for itself. */
	assert_int_equal(gen_check(p1 + 3 * ps, ps, 3, 0), 0);
	assert_int_equal(gen_check(p2 + 3 * ps, ps, 3, 0), 0);
	assert_int_equal(gen_check(p3 + 3 * ps, ps, 3, 0), 0);
	assert_u64(mock_loads(s, 3), 3);
	assert_int_equal(gen_check(p4 + 3 * ps, ps, 3, 0), 0);
	assert_u64(mock_loads(t, 3), 1);

	/* Uncommitted writes stay in their handle. */
	p1[3 * ps + 100] ^= 0x55;
	assert_int_equal(gen_check(p2 + 3 * ps, ps, 3, 0), 0);
	assert_int_equal(gen_check(p3 + 3 * ps, ps, 3, 0), 0);
	assert_u64(dirty_count(h1), 1);
	assert_u64(dirty_count(h2), 0);
	assert_u64(dirty_count(h4), 0);

	/* Each RAM counts its own handles' pages. */
	assert_u64(ram_stats(ram1).resident_bytes, 2 * ps);
	assert_u64(ram_stats(ram1).dirty_bytes, ps);
	assert_u64(ram_stats(ram2).resident_bytes, 2 * ps);
	assert_u64(ram_stats(ram2).dirty_bytes, 0);

	assert_ok(vmp_munmap(p1));
	assert_ok(vmp_munmap(p2));
	assert_ok(vmp_munmap(p3));
	assert_ok(vmp_munmap(p4));
	/* s freed by the program first: its last close releases it; t's
	 * last close does not, the program still holds it. */
	mock_store_free(s);
	assert_ok(vmp_fileh_close(h1));
	assert_ok(vmp_fileh_close(h2));
	assert_u64(s->releases, 0);
	assert_ok(vmp_fileh_close(h3));
	assert_u64(s->releases, 1);
	assert_ok(vmp_fileh_close(h4));
	assert_u64(t->releases, 0);
	mock_store_free(t);
	assert_u64(t->releases, 1);
	assert_ok(vmp_ram_free(ram1));
	assert_ok(vmp_ram_free(ram2));
	mock_free(s);
	mock_free(t);
}

/* --- read-ahead ----------------------------------------------------------- */

/* Sequential reads through a store with loadblks: read-ahead fills runs of
 * blocks in one call, every block is loaded once, the bytes are right.
 * When loadblks fails, the faulting block is loaded alone with loadblk and
 * the program sees nothing of it. */
/*
 * Read-ahead follows each sequential stream by itself (issue 14): two
 * streams interleaved page by page in one thread, and two threads each
 * scanning its half of one mapping, get their growing windows (a few dozen
 * faults for thousands of pages), as one stream alone does; random
 * touches load little more than they touch.
 */
#define STREAM_PAGES 4096

struct half_scan {
	pthread_t th;
	const char *p;
	uint64_t first;
	int bad;
};

static void *half_scan_main(void *arg)
{
	struct half_scan *h = arg;
	size_t ps = os_page();

	for (uint64_t b = h->first; b < h->first + STREAM_PAGES; b++)
		h->bad += gen_check(h->p + b * ps, ps, b, 0) != 0;
	return NULL;
}

static void test_readahead_per_stream(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 1 << 20, MOCK_BATCH | MOCK_READONLY);
	struct half_scan h[2];
	struct vmp_stats st;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);

	/* two streams, interleaved page by page */
	p = map_pages(fh, 0, 2 * STREAM_PAGES, PROT_READ);
	for (uint64_t i = 0; i < STREAM_PAGES; i++) {
		assert_int_equal(gen_check(p + i * ps, ps, i, 0), 0);
		assert_int_equal(gen_check(p + (STREAM_PAGES + i) * ps, ps,
					   STREAM_PAGES + i, 0), 0);
	}
	st = ram_stats(ram);
	assert_u64_le(st.faults, 64);
	assert_true(st.readahead_pages >= 2 * STREAM_PAGES - 64);
	assert_ok(vmp_munmap(p));

	/* two threads, a half each, through one mapping */
	p = map_pages(fh, 2 * STREAM_PAGES, 2 * STREAM_PAGES, PROT_READ);
	for (int i = 0; i < 2; i++) {
		h[i] = (struct half_scan){ .p = p - 2 * STREAM_PAGES * ps,
					   .first = (2 + (uint64_t)i) * STREAM_PAGES };
		assert_int_equal(pthread_create(&h[i].th, NULL, half_scan_main,
						&h[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(h[i].th, NULL), 0);
		assert_int_equal(h[i].bad, 0);
	}
	assert_u64_le(ram_stats(ram).faults - st.faults, 64);
	assert_ok(vmp_munmap(p));

	/* random touches: at most 1.1x the pages touched are loaded */
	p = map_pages(fh, 8 * STREAM_PAGES, 64 * STREAM_PAGES, PROT_READ);
	st = ram_stats(ram);
	{
		struct rng r;
		uint64_t touched = 0;
		static uint8_t seen[64 * STREAM_PAGES];

		rng_seed(&r, test_seed(7));
		memset(seen, 0, sizeof(seen));
		for (int i = 0; i < 20000; i++) {
			uint64_t b = rng_below(&r, 64 * STREAM_PAGES);
			(void)peek(p + b * ps);
			touched += !seen[b];
			seen[b] = 1;
		}
		assert_u64_le(ram_stats(ram).loads - st.loads, touched * 11 / 10);
	}
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/*
 * Read-ahead windows end on the boundaries of the largest window laid end
 * to end from page 0 (2 MiB): a scan of one aligned chunk loads that chunk
 * and nothing of the next, and a scan of the next chunk, started after
 * (as by another thread handed it), continues the stream at full size: one
 * fault for the whole chunk.  So threads sharing a scan out in chunks load
 * their own chunks instead of waiting for windows reaching into them.  A
 * window cut short keeps the size it was cut from: a stream that started
 * 24 pages before a boundary (windows 1, 1, 4, 16, then 64 cut to 2) goes
 * on with 256 pages after it, and takes the chunk in 2 faults, not 4.
 */
/* Read blocks [from, to) of @p in order, checking each. */
static void read_blocks(const char *p, size_t ps, uint64_t from, uint64_t to)
{
	for (uint64_t b = from; b < to; b++)
		assert_int_equal(gen_check(p + b * ps, ps, b, 0), 0);
}

static void test_readahead_aligned_windows(void **state)
{
	const size_t ps = os_page();
	const uint64_t chunk = (((size_t)2 << 20) / ps) > 512 ? 512
							       : ((size_t)2 << 20) / ps;
	struct mock *m = mock_new(ps, 4 * chunk, MOCK_BATCH | MOCK_READONLY);
	uint64_t faults;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 0, 4 * chunk, PROT_READ);
	read_blocks(p, ps, 0, chunk);
	assert_u64(ram_stats(ram).loads, chunk);
	/* chunk 2 by itself, then chunk 1, which continues chunk 0's stream */
	read_blocks(p, ps, 2 * chunk, 3 * chunk);
	faults = ram_stats(ram).faults;
	read_blocks(p, ps, chunk, 2 * chunk);
	assert_u64(ram_stats(ram).faults - faults, 1);
	assert_u64(ram_stats(ram).loads, 3 * chunk);
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));

	if (chunk == 512) { /* (4 KiB pages: the windows above) */
		fh = open_fh(ram, m, 0);
		p = map_pages(fh, chunk - 24, chunk + 24, PROT_READ);
		p -= (chunk - 24) * ps;
		read_blocks(p, ps, chunk - 24, chunk);
		faults = ram_stats(ram).faults;
		read_blocks(p, ps, chunk, 2 * chunk);
		assert_u64(ram_stats(ram).faults - faults, 2);
		assert_ok(vmp_munmap(p + (chunk - 24) * ps));
		assert_ok(vmp_fileh_close(fh));
	}
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* Read-ahead after a sequential scan: a hole punched in the middle of it
 * (invalidated) and touched at random loads about what it touches, not a
 * window from the stream that once passed there. */
static void test_readahead_after_scan(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 8192, MOCK_READONLY);
	uint64_t loads;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 0, 8192, PROT_READ);
	for (uint64_t b = 0; b < 8192; b++)
		(void)peek(p + b * ps);
	assert_ok(vmp_invalidate(fh, 3000, 2000));
	loads = ram_stats(ram).loads;
	for (uint64_t b = 3100; b < 5000; b += 400)
		(void)peek(p + b * ps);
	assert_u64_le(ram_stats(ram).loads - loads, 5 * 4);
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* Mappings of 2 MiB or more sit where huge pages can be mapped whole: the
 * address agrees with the page's offset (in the memfd, or in the base file
 * of an overlay handle) modulo 2 MiB (issue 14). */
static void test_huge_alignment(void **state)
{
	const size_t ps = os_page();
	const uintptr_t huge = 2 * MiB;
	struct mock *m = mock_new(ps, 4096, MOCK_FILE);
	const uint64_t offs[] = { 0, 3, 512, 1000 };
	vmp_ram *ram;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	for (int overlay = 0; overlay < 2; overlay++) {
		vmp_fileh *fh = open_fh(ram, m, overlay ? VMP_OVERLAY : 0);
		for (size_t i = 0; i < ARRAY_LEN(offs); i++) {
			char *p = map_pages(fh, offs[i], 1024, PROT_READ);
			uintptr_t want = (offs[i] * ps) & (huge - 1);
			if (((uintptr_t)p & (huge - 1)) != want)
				fail_msg("mapping of page %llu at %p: not %#lx "
					 "modulo 2 MiB",
					 (unsigned long long)offs[i], (void *)p,
					 (unsigned long)want);
			assert_int_equal(gen_check(p + 5 * ps, ps, offs[i] + 5, 0), 0);
			assert_ok(vmp_munmap(p));
		}
		assert_ok(vmp_fileh_close(fh));
	}
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

static void test_readahead_loadblks(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 2048, MOCK_BATCH);
	struct vmp_stats st;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p, *q;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 0, 512, PROT_READ);

	read_blocks(p, ps, 0, 256);
	for (uint64_t b = 0; b < 256; b++)
		assert_u64(mock_loads(m, b), 1);
	assert_true(m->batch_calls > 0);
	assert_true(m->batch_blocks > m->batch_calls); /* runs, not pages */
	st = ram_stats(ram);
	assert_true(st.readahead_pages > 0);
	assert_u64(st.resident_bytes, st.loads * ps);
	assert_u64(st.loads, m->load_ok);

	/* Every loadblks fails from now on; a fresh stretch of the store,
	 * through its own mapping (read-ahead stops at a mapping's end). */
	mock_reset_counts(m);
	mock_set_fail(m, &m->fail_batch, -1, 1, 0, -EIO);
	q = map_pages(fh, 1000, 64, PROT_READ);
	for (uint64_t b = 0; b < 64; b++)
		assert_int_equal(gen_check(q + b * ps, ps, 1000 + b, 0), 0);
	assert_true(m->fail_batch.seen > 0);
	assert_u64(m->batch_blocks, 0);
	assert_u64(m->load_calls, 64);
	assert_u64(ram_stats(ram).load_errors, 0);

	assert_ok(vmp_munmap(q));
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* --- concurrent faults --------------------------------------------------------- */

enum { NTHREADS = 4 };

struct racer {
	pthread_barrier_t *start;
	char *page;
	size_t ps;
	int id;
	char *copy; /* readers: what they saw */
};

static void *race_read(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->start);
	memcpy(r->copy, r->page, r->ps);
	return NULL;
}

static void *race_write(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->start);
	r->page[r->id * 8] = (char)('A' + r->id);
	return NULL;
}

/* Threads that fault on one page together: it is loaded once (the others
 * wait for that load, loadblk is slow here), all see it whole, and writes
 * from all of them land. */
static void race(char *page, size_t ps, void *(*fn)(void *),
		 struct racer *rs)
{
	pthread_barrier_t start;
	pthread_t t[NTHREADS];

	pthread_barrier_init(&start, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		rs[i] = (struct racer){ &start, page, ps, i, malloc(ps) };
		assert_non_null(rs[i].copy);
		assert_int_equal(pthread_create(&t[i], NULL, fn, &rs[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	pthread_barrier_destroy(&start);
}

static void test_concurrent_faults_load_once(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 16, 0);
	struct racer rs[NTHREADS];
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 0, 16, PROT_READ | PROT_WRITE);
	m->load_sleep_us = 30000;

	race(p + 7 * ps, ps, race_read, rs);
	assert_u64(mock_loads(m, 7), 1);
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(gen_check(rs[i].copy, ps, 7, 0), 0);
		free(rs[i].copy);
	}

	race(p + 12 * ps, ps, race_write, rs);
	assert_u64(mock_loads(m, 12), 1);
	assert_u64(dirty_count(fh), 1);
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(p[12 * ps + i * 8], 'A' + i);
		free(rs[i].copy);
	}
	m->load_sleep_us = 0;

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* --- read-only mappings and foreign faults (in children) --------------------------- */

struct child_objs {
	struct mock *m;
	vmp_ram *ram;
	vmp_fileh *fh;
};

static void child_open(struct child_objs *o)
{
	child_check_rc(vmp_fault_handler_install(), 0);
	o->m = mock_new(os_page(), 8, 0);
	child_check_rc(vmp_ram_new(&o->ram, 0), 0);
	child_check_rc(vmp_fileh_open(&o->fh, o->ram, o->m->store, 0), 0);
}

static char *child_map(struct child_objs *o, uint64_t pg, uint64_t n, int prot)
{
	void *p = NULL;

	child_check_rc(vmp_mmap(o->fh, pg, n, prot, &p), 0);
	return p;
}

static void child_write_after_read(void *arg)
{
	struct child_objs o;
	char *p;

	(void)arg;
	child_open(&o);
	p = child_map(&o, 0, 4, PROT_READ);
	child_check(gen_check(p, os_page(), 0, 0) == 0);
	poke(p + 10, 1);
	child_fail(__FILE__, __LINE__, "write to a PROT_READ mapping survived");
}

static void child_write_first(void *arg)
{
	struct child_objs o;
	char *p;

	(void)arg;
	child_open(&o);
	p = child_map(&o, 0, 4, PROT_READ);
	poke(p + os_page() + 3, 1);
	child_fail(__FILE__, __LINE__, "first-touch write to PROT_READ survived");
}

/* The page is dirty through a read-write mapping: a read-only mapping of
 * the same page must still refuse writes. */
static void child_write_ro_of_dirty(void *arg)
{
	struct child_objs o;
	char *rw, *ro;

	(void)arg;
	child_open(&o);
	rw = child_map(&o, 0, 4, PROT_READ | PROT_WRITE);
	ro = child_map(&o, 0, 4, PROT_READ);
	poke(rw + 5, 'w');
	child_check(peek(ro + 5) == 'w');
	poke(ro + 6, 'x');
	child_fail(__FILE__, __LINE__, "write to PROT_READ of a dirty page");
}

static void expect_sigsegv(void (*fn)(void *), void *arg)
{
	struct child_result r;

	run_child(fn, arg, &r);
	assert_child_signaled(&r, SIGSEGV);
	/* An ordinary crash: the library has nothing to say about it. */
	if (r.errlen)
		fail_msg("unexpected stderr: %s", r.err);
}

static void test_readonly_write_sigsegv(void **state)
{
	(void)state;
	expect_sigsegv(child_write_after_read, NULL);
	expect_sigsegv(child_write_first, NULL);
	expect_sigsegv(child_write_ro_of_dirty, NULL);
}

static void child_touch_prot_none(void *arg)
{
	struct child_objs o;
	char *plain;

	(void)arg;
	child_open(&o);
	(void)child_map(&o, 0, 4, PROT_READ);
	plain = mmap(NULL, os_page(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	child_check(plain != MAP_FAILED);
	(void)peek(plain);
	child_fail(__FILE__, __LINE__, "read of a PROT_NONE page survived");
}

static void child_touch_null(void *arg)
{
	struct child_objs o;

	(void)arg;
	child_open(&o);
	(void)child_map(&o, 0, 4, PROT_READ);
	poke(bad_address(16), 1);
	child_fail(__FILE__, __LINE__, "write near NULL survived");
}

static void child_touch_unmapped(void *arg)
{
	struct child_objs o;
	char *p;

	(void)arg;
	child_open(&o);
	p = child_map(&o, 0, 4, PROT_READ);
	child_check(peek(p) == gen_byte(0, 0, 0));
	child_check_rc(vmp_munmap(p), 0);
	(void)peek(p + os_page()); /* no longer a mapping of ours */
	child_fail(__FILE__, __LINE__, "read after vmp_munmap survived");
}

static void child_write_readonly_plain(void *arg)
{
	struct child_objs o;
	char *plain;

	(void)arg;
	child_open(&o);
	(void)child_map(&o, 0, 4, PROT_READ | PROT_WRITE);
	plain = mmap(NULL, os_page(), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	child_check(plain != MAP_FAILED);
	poke(plain, 1);
	child_fail(__FILE__, __LINE__, "write to a plain PROT_READ survived");
}

static void test_foreign_faults_sigsegv(void **state)
{
	(void)state;
	expect_sigsegv(child_touch_prot_none, NULL);
	expect_sigsegv(child_touch_null, NULL);
	expect_sigsegv(child_touch_unmapped, NULL);
	expect_sigsegv(child_write_readonly_plain, NULL);
}

/* --- page sizes ----------------------------------------------------------- */

static void check_page_size(size_t ps)
{
	struct mock *m = mock_new(ps, 8, 0);
	const size_t os = os_page();
	struct vmp_stats st;
	uint64_t faults;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	print_message("page size %zu\n", ps);
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 0, 8, PROT_READ | PROT_WRITE);

	/* First, last and middle byte of pages 0..3; then the whole page. */
	for (uint64_t b = 0; b < 4; b++) {
		char *pg = p + b * ps;

		assert_int_equal((uint8_t)pg[ps - 1], gen_byte(b, ps - 1, 0));
		assert_int_equal((uint8_t)pg[0], gen_byte(b, 0, 0));
		assert_int_equal((uint8_t)pg[ps / 2 + 3],
				 gen_byte(b, ps / 2 + 3, 0));
		assert_int_equal(gen_check(pg, ps, b, 0), 0);
		assert_u64(mock_loads(m, b), 1);
	}
	/* A loaded page is mapped whole: touching each OS page of it does not
	 * fault again. */
	faults = ram_stats(ram).faults;
	for (size_t off = 0; off < ps; off += os)
		(void)peek(p + 2 * ps + off);
	assert_u64(ram_stats(ram).faults, faults);

	/* First touch by a write: loaded, then dirtied. */
	p[5 * ps + ps - 1] = 'z';
	assert_int_equal(gen_check(p + 5 * ps, ps - 8, 5, 0), 0);
	assert_int_equal(p[5 * ps + ps - 1], 'z');
	assert_u64(mock_loads(m, 5), 1);
	assert_u64(dirty_count(fh), 1);

	st = ram_stats(ram);
	assert_u64(st.loads, m->load_ok); /* read-ahead included */
	assert_u64(st.resident_bytes, st.loads * ps);
	assert_u64(st.dirty_bytes, ps);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

static void test_page_sizes(void **state)
{
	const size_t sizes[] = { 4 * KiB, 8 * KiB, 64 * KiB, 2 * MiB };

	(void)state;
	assert_ok(vmp_fault_handler_install());
	for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
		if (sizes[i] >= os_page())
			check_page_size(sizes[i]);
}

/* --- system calls on mapped memory ---------------------------------------------- */

static void test_prefault_read_syscall(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 256, 0);
	int fd = temp_file(4 * ps, ps); /* blocks 0..3, unlike the store's */
	char *buf = malloc(2 * ps);
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p, *ro;

	(void)state;
	assert_non_null(buf);
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 100, 4, PROT_READ | PROT_WRITE);

	/* The kernel does not fault for its own copies: EFAULT, no effect. */
	errno = 0;
	assert_int_equal(pread(fd, p, 2 * ps, 0), -1);
	assert_int_equal(errno, EFAULT);
	assert_u64(m->load_calls, 0);
	assert_u64(dirty_count(fh), 0);
	assert_u64(ram_stats(ram).resident_bytes, 0);

	/* Prefaulted for writing, read() works. */
	assert_ok(vmp_prefault(p + 2 * ps, 2 * ps, 1));
	assert_u64(dirty_count(fh), 2);
	assert_int_equal(pread(fd, p + 2 * ps, 2 * ps, 0), (ssize_t)(2 * ps));
	assert_int_equal(gen_check(p + 2 * ps, ps, 0, 0), 0);
	assert_int_equal(gen_check(p + 3 * ps, ps, 1, 0), 0);
	assert_u64(dirty_count(fh), 2);
	/* The pages that failed are intact. */
	assert_int_equal(gen_check(p, ps, 100, 0), 0);

	/* write(2) from an unloaded page: EFAULT; prefaulted: the bytes. */
	ro = map_pages(fh, 200, 2, PROT_READ);
	errno = 0;
	assert_int_equal(pwrite(fd, ro, ps, 0), -1);
	assert_int_equal(errno, EFAULT);
	assert_ok(vmp_prefault(ro, 2 * ps, 0));
	assert_int_equal(pwrite(fd, ro, 2 * ps, 0), (ssize_t)(2 * ps));
	assert_int_equal(pread(fd, buf, 2 * ps, 0), (ssize_t)(2 * ps));
	assert_int_equal(gen_check(buf, ps, 200, 0), 0);
	assert_int_equal(gen_check(buf + ps, ps, 201, 0), 0);
	assert_u64(dirty_count(fh), 2);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_munmap(ro));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
	close(fd);
	free(buf);
}

FD_CHECKED(test_lazy_load_1tib)
FD_CHECKED(test_overlapping_mappings)
FD_CHECKED(test_several_handles_and_rams)
FD_CHECKED(test_readahead_loadblks)
FD_CHECKED(test_readahead_per_stream)
FD_CHECKED(test_readahead_aligned_windows)
FD_CHECKED(test_readahead_after_scan)
FD_CHECKED(test_huge_alignment)
FD_CHECKED(test_concurrent_faults_load_once)
FD_CHECKED(test_readonly_write_sigsegv)
FD_CHECKED(test_page_sizes)
FD_CHECKED(test_foreign_faults_sigsegv)
FD_CHECKED(test_prefault_read_syscall)

int main(void)
{
	const struct CMUnitTest tests[] = {
		FD_TEST(test_lazy_load_1tib),
		FD_TEST(test_overlapping_mappings),
		FD_TEST(test_several_handles_and_rams),
		FD_TEST(test_readahead_loadblks),
		FD_TEST(test_readahead_per_stream),
		FD_TEST(test_readahead_aligned_windows),
		FD_TEST(test_readahead_after_scan),
		FD_TEST(test_huge_alignment),
		FD_TEST(test_concurrent_faults_load_once),
		FD_TEST(test_readonly_write_sigsegv),
		FD_TEST(test_page_sizes),
		FD_TEST(test_foreign_faults_sigsegv),
		FD_TEST(test_prefault_read_syscall),
	};

	if (vmp_fault_handler_install() == -ENOSYS)
		return TEST_SKIP; /* libsigsegv cannot catch faults here */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
