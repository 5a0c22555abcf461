/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-threads.c: the thread promises of issue 5.
 *
 *  - faults on different pages load in parallel (no lock held across
 *    loadblk), faults on one page load it once and the others wait;
 *  - invalidate, discard, reclaim and writeout racing with faults on the
 *    same pages never install stale bytes, never lose a dirty page, never
 *    deadlock;
 *  - a writeout while other threads keep writing loses no write;
 *  - mmap/munmap in some threads while others fault;
 *  - a loadblk may read another libvmpage mapping; one that touches the
 *    page it is loading is refused (-EDEADLK, VMP_FAULT_RECURSION), never
 *    hangs.
 *
 * The races are checked with rules that hold under any interleaving (each
 * test says which); bytes are written as stamps (thread-util.h) so that any
 * word read can be traced back to the write it came from.  Every test runs
 * under a watchdog: a deadlock aborts with a message instead of hanging.
 * Worker threads never call cmocka asserts (see thread-util.h).
 *
 * Every test body re-arms the library's SIGSEGV handler first: cmocka
 * installs its own around each test (STYLE.md, "Two facts").  Faults then
 * happen in any thread: the handler is process-wide.
 *
 * Each randomised race runs VMPAGE_RACE_MS milliseconds (default 400); the
 * seed is printed, VMPAGE_SEED replays the threads' choices (not the
 * interleaving).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "thread-util.h"

#define NTHREADS 8
#define LOAD_MS 50 /* loadblk sleep in the parallelism tests */

/* Length of each randomised race, in ns ($VMPAGE_RACE_MS, default 400). */
static uint64_t race_ns(void)
{
	const char *s = getenv("VMPAGE_RACE_MS");
	long ms = s && *s ? atol(s) : 400;

	return (uint64_t)(ms > 0 ? ms : 400) * 1000000ull;
}

/* --- parallel loads ------------------------------------------------------- */

struct toucher {
	pthread_t tid;
	pthread_barrier_t *bar;
	char *addr;    /* the byte to read */
	char *page;    /* its page, checked after the read */
	uint64_t blk;
	uint32_t version;
	size_t ps;
	int rc;        /* vmp_guard's answer */
	size_t bad;    /* gen_check's answer */
	uint64_t done_ns;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	uint8_t v;

	pthread_barrier_wait(t->bar);
	t->rc = guarded_peek(t->addr, &v);
	t->done_ns = now_ns();
	if (!t->rc)
		t->bad = gen_check(t->page, t->ps, t->blk, t->version);
	return NULL;
}

/* Start the touchers, let them go at once; ns until the last is done. */
static uint64_t touch_together(struct toucher *t, size_t n)
{
	pthread_barrier_t bar;
	uint64_t t0, last = 0;

	pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
	for (size_t i = 0; i < n; i++) {
		t[i].bar = &bar;
		assert_int_equal(pthread_create(&t[i].tid, NULL, toucher_main,
						&t[i]), 0);
	}
	pthread_barrier_wait(&bar);
	t0 = now_ns();
	for (size_t i = 0; i < n; i++) {
		pthread_join(t[i].tid, NULL);
		if (t[i].done_ns > last)
			last = t[i].done_ns;
	}
	pthread_barrier_destroy(&bar);
	return last > t0 ? last - t0 : 0;
}

static void set_toucher(struct toucher *t, char *map, size_t ps, uint64_t pg0,
			uint64_t blk, size_t off)
{
	memset(t, 0, sizeof(*t));
	t->page = map + (blk - pg0) * ps;
	t->addr = t->page + off;
	t->blk = blk;
	t->ps = ps;
}

/* Each of the NTHREADS touchers read its page right, and each page was
 * loaded once, by one loadblk call. */
static void assert_each_loaded_once(const struct toucher *t, struct mock *m)
{
	for (size_t i = 0; i < NTHREADS; i++) {
		assert_rc(t[i].rc, 0);
		assert_int_equal(t[i].bad, 0);
		assert_u64(mock_loads(m, t[i].blk), 1);
	}
	assert_u64(m->load_calls, NTHREADS);
}

/*
 * 8 threads, 8 different pages, loadblk sleeps 50 ms: serialised loads
 * would take 400 ms; loads in parallel take ~50.  The pages are 16 apart so
 * that no read-ahead window joins two of them.
 */
static void test_parallel_loads(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 1024, MOCK_READONLY | MOCK_NO_HOOKS);
	struct toucher t[NTHREADS];
	vmp_ram *ram;
	vmp_fileh *fh;
	uint64_t el;
	char *map;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(30, "test_parallel_loads");
	m->load_sleep_us = LOAD_MS * 1000;
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	map = map_pages(fh, 0, 1024, PROT_READ);

	for (size_t i = 0; i < NTHREADS; i++)
		set_toucher(&t[i], map, ps, 0, 16 * i + 3, 8 * i);
	el = touch_together(t, NTHREADS);
	print_message("8 faults on 8 pages, loadblk 50 ms each: %.1f ms\n",
		      el / 1e6);
	assert_each_loaded_once(t, m);
	if (el >= 4 * LOAD_MS * 1000000ull)
		fail_msg("8 parallel loads of %d ms took %.1f ms: loads are "
			 "serialised (bound: %d ms)", LOAD_MS, el / 1e6,
			 4 * LOAD_MS);

	assert_ok(vmp_munmap(map));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/*
 * The same with 8 neighbouring pages of an 8-page mapping: read-ahead may
 * load several of them in one fault (one thread, one loadblk after the
 * other), the others wait for it.  Every page is still loaded exactly once;
 * the time is reported, and bounded only by the serial case.
 */
static void test_parallel_loads_adjacent(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 64, MOCK_READONLY | MOCK_NO_HOOKS);
	struct toucher t[NTHREADS];
	vmp_ram *ram;
	vmp_fileh *fh;
	uint64_t el;
	char *map;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(30, "test_parallel_loads_adjacent");
	m->load_sleep_us = LOAD_MS * 1000;
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	map = map_pages(fh, 8, NTHREADS, PROT_READ);

	for (size_t i = 0; i < NTHREADS; i++)
		set_toucher(&t[i], map, ps, 8, 8 + i, 0);
	el = touch_together(t, NTHREADS);
	print_message("8 faults on 8 adjacent pages, loadblk 50 ms each: "
		      "%.1f ms\n", el / 1e6);
	assert_each_loaded_once(t, m);
	if (el >= (NTHREADS + 1) * LOAD_MS * 1000000ull)
		fail_msg("8 adjacent loads took %.1f ms", el / 1e6);

	assert_ok(vmp_munmap(map));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/*
 * 8 threads fault on one page whose loadblk sleeps 50 ms: loadblk runs
 * once, every thread sees the loaded bytes, and the waiters are woken when
 * it is installed (a condition variable: the whole takes about one load,
 * where a sleep poll would add its period).  In a writable mapping too, and
 * there reading makes nothing dirty.
 */
static void test_same_page(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 1024, MOCK_NO_HOOKS);
	struct toucher t[NTHREADS];
	vmp_ram *ram;
	vmp_fileh *fh;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_same_page");
	m->load_sleep_us = LOAD_MS * 1000;
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);

	for (int rw = 0; rw < 2; rw++) {
		int prot = rw ? PROT_READ | PROT_WRITE : PROT_READ;
		char *map = map_pages(fh, 0, 1024, prot);

		for (uint64_t round = 0; round < 4; round++) {
			uint64_t blk = 100 + 16 * round + 512 * (uint64_t)rw;
			uint64_t calls = m->load_calls, el;

			for (size_t i = 0; i < NTHREADS; i++)
				set_toucher(&t[i], map, ps, 0, blk, 512 * i + 7);
			el = touch_together(t, NTHREADS);
			for (size_t i = 0; i < NTHREADS; i++) {
				assert_rc(t[i].rc, 0);
				assert_int_equal(t[i].bad, 0);
			}
			assert_u64(mock_loads(m, blk), 1);
			assert_u64(m->load_calls - calls, 1);
			if (el >= 3 * LOAD_MS * 1000000ull)
				fail_msg("8 threads on one %d ms load took "
					 "%.1f ms: waiters are not woken when "
					 "it is installed", LOAD_MS, el / 1e6);
		}
		assert_u64(dirty_count(fh), 0);
		assert_ok(vmp_munmap(map));
	}

	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* --- invalidate racing with a load ------------------------------------------ */

struct reader1 {
	pthread_t tid;
	char *map;       /* mapping of pages [pg0, ...) */
	uint64_t pg0;
	uint64_t blk[2]; /* pages to read, in order (nblk of them) */
	int nblk;
	size_t ps;
	int rc;
	int done;        /* atomic */
};

static void *reader1_main(void *arg)
{
	struct reader1 *r = arg;
	uint8_t v;

	for (int i = 0; i < r->nblk && !r->rc; i++)
		r->rc = guarded_peek(r->map + (r->blk[i] - r->pg0) * r->ps, &v);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void start_reader1(struct reader1 *r, char *map, uint64_t pg0,
			  size_t ps, uint64_t b0, int nblk, uint64_t b1)
{
	memset(r, 0, sizeof(*r));
	r->map = map;
	r->pg0 = pg0;
	r->ps = ps;
	r->blk[0] = b0;
	r->blk[1] = b1;
	r->nblk = nblk;
	assert_int_equal(pthread_create(&r->tid, NULL, reader1_main, r), 0);
}

/* Wait until the RAM counted @n faults.  A fault is counted and waits for
 * a LOADING page in one critical section of ram->lock, so once the count
 * is seen (under that lock) the thread is in its condition wait. */
static void wait_faults(vmp_ram *ram, uint64_t n)
{
	uint64_t t0 = now_ns();

	while (ram_stats(ram).faults < n) {
		if (now_ns() - t0 > 5000000000ull)
			fail_msg("no fault #%llu within 5 s",
				 (unsigned long long)n);
		usleep(1000);
	}
}

/*
 * The store changes while a thread is inside loadblk for the page (the
 * gate holds it after it read the old bytes); vmp_invalidate() runs, then
 * the load ends.  Its old bytes must be thrown away: the reader, and a
 * second thread that waited for the same load, both see the new version,
 * and loadblk ran exactly twice.
 */
static void test_invalidate_during_load(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 256, MOCK_READONLY | MOCK_NO_HOOKS);
	struct reader1 a, b;
	struct gate g;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *map;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_invalidate_during_load");
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	map = map_pages(fh, 0, 256, PROT_READ);
	gate_init(&g, 77, false);
	mock_set_gate(m, &g);

	start_reader1(&a, map, 0, ps, 77, 1, 0);
	assert_true(gate_wait_entered(&g)); /* a is in loadblk(77), old bytes */
	start_reader1(&b, map, 0, ps, 77, 1, 0);
	wait_faults(ram, 2);                /* b waits for a's load */
	mock_change(m, 77);
	assert_ok(vmp_invalidate(fh, 77, 1));
	gate_open(&g);
	pthread_join(a.tid, NULL);
	pthread_join(b.tid, NULL);
	assert_false(g.timed_out);
	assert_rc(a.rc, 0);
	assert_rc(b.rc, 0);
	assert_int_equal(gen_check(map + 77 * ps, ps, 77, 1), 0);
	assert_u64(mock_loads(m, 77), 2);
	assert_u64(m->load_calls, 2);
	assert_u64(ram_stats(ram).resident_bytes, ps);

	gate_destroy(&g);
	assert_ok(vmp_munmap(map));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/*
 * The same inside a read-ahead run: a sequential reader makes one fault
 * load several pages; two of them change and are invalidated while the
 * run is being loaded.  Those two are loaded again (new bytes), the others
 * of the run are kept.  Once with loadblk per block, once with the store's
 * loadblks (the whole run in one call; the gate holds it after the bytes
 * moved).  If read-ahead does not reach the gated page, the run is not
 * tested (reported, not failed: read-ahead is a tuning choice).
 */
static void invalidate_during_readahead(bool batch)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 64, MOCK_READONLY | MOCK_NO_HOOKS |
						  (batch ? MOCK_BATCH : 0));
	struct reader1 a;
	struct gate g;
	uint64_t t0;
	bool entered = false;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *map;

	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	map = map_pages(fh, 0, 8, PROT_READ);
	gate_init(&g, 3, false);
	mock_set_gate(m, &g);

	start_reader1(&a, map, 0, ps, 0, 2, 1); /* pages 0, then 1: sequential */
	for (t0 = now_ns(); now_ns() - t0 < 5000000000ull;) {
		if (sem_trywait(&g.entered) == 0) {
			entered = true;
			break;
		}
		if (__atomic_load_n(&a.done, __ATOMIC_ACQUIRE))
			break;
		usleep(1000);
	}
	if (entered) {
		/* page 2 is filled already, page 3 is being filled */
		mock_change(m, 2);
		mock_change(m, 3);
		assert_ok(vmp_invalidate(fh, 2, 2));
		gate_open(&g);
	} else {
		print_message("read-ahead (%s) did not load page 3 with page 1: "
			      "nothing to invalidate during a run\n",
			      batch ? "loadblks" : "loadblk");
		__atomic_store_n(&g.armed, false, __ATOMIC_SEQ_CST);
	}
	pthread_join(a.tid, NULL);
	assert_false(g.timed_out);
	assert_rc(a.rc, 0);
	for (uint64_t b = 0; b < 8; b++) {
		uint32_t v = entered && (b == 2 || b == 3) ? 1 : 0;
		if (gen_check(map + b * ps, ps, b, v))
			fail_msg("%s: page %llu is not version %u",
				 batch ? "loadblks" : "loadblk",
				 (unsigned long long)b, v);
	}
	if (entered) {
		assert_u64(mock_loads(m, 2), 2);
		assert_u64(mock_loads(m, 3), 2);
		assert_u64(mock_loads(m, 1), 1);
		if (batch)
			assert_true(m->batch_calls > 0);
	}

	gate_destroy(&g);
	assert_ok(vmp_munmap(map));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

static void test_invalidate_during_readahead(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_invalidate_during_readahead");
	invalidate_during_readahead(false);
	invalidate_during_readahead(true);
}

/*
 * Randomised: one thread changes store pages and invalidates them, others
 * read all the time, under a memory limit (reclaim churns too).  Rule: the
 * changer publishes version k of page b after vmp_invalidate() returned;
 * a read that starts after that must see version k or newer in every word.
 * Newer: at most k1 + 1, where k1 is the version published when the read
 * ended (the store may already hold k1 + 1, not yet published).  A page
 * may be torn between two such versions if it is invalidated during the
 * read: each word is checked.
 */
struct inv_race {
	char *map;
	size_t ps;
	uint64_t npages;
	struct mock *m;
	vmp_fileh *fh;
	uint32_t *ver;  /* published version per page (atomic) */
	uint64_t deadline;
	uint64_t seed;
	uint64_t reads, changes, torn; /* atomic */
};

static void *inv_reader(void *arg)
{
	struct inv_race *r = arg;
	size_t nw = r->ps / 8;
	uint64_t *buf = malloc(r->ps), *exp = malloc(4 * r->ps);
	struct rng rng;

	rng_seed(&rng, r->seed ^ (uintptr_t)pthread_self());
	while (now_ns() < r->deadline && !tfailed()) {
		uint64_t b = rng_below(&rng, r->npages);
		uint32_t k0 = __atomic_load_n(&r->ver[b], __ATOMIC_ACQUIRE), k1;
		int rc = guarded_read(r->map + b * r->ps, buf, nw);
		bool torn = false;

		k1 = __atomic_load_n(&r->ver[b], __ATOMIC_ACQUIRE);
		if (rc) {
			tfail("read of page %llu failed: %s",
			      (unsigned long long)b, errname(rc));
			break;
		}
		if (k1 - k0 > 2)
			continue; /* changed too often to say which it was */
		k1++; /* see above */
		for (uint32_t v = k0; v <= k1; v++)
			gen_fill(exp + (v - k0) * nw, r->ps, b, v);
		for (size_t w = 0; w < nw; w++) {
			uint32_t v;
			for (v = k0; v <= k1; v++)
				if (buf[w] == exp[(v - k0) * nw + w])
					break;
			if (v > k1) {
				tfail("page %llu word %zu holds %#llx: not "
				      "version %u..%u (stale or foreign bytes "
				      "after vmp_invalidate)",
				      (unsigned long long)b, w,
				      (unsigned long long)buf[w], k0, k1);
				break;
			}
			if (buf[w] != exp[w])
				torn = true;
		}
		__atomic_add_fetch(&r->reads, 1, __ATOMIC_RELAXED);
		if (torn)
			__atomic_add_fetch(&r->torn, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	free(exp);
	return NULL;
}

static void *inv_changer(void *arg)
{
	struct inv_race *r = arg;
	struct rng rng;

	rng_seed(&rng, r->seed);
	while (now_ns() < r->deadline && !tfailed()) {
		uint64_t b = rng_below(&rng, r->npages);
		uint64_t lo = b > 0 ? b - 1 : b;
		int rc;

		mock_change(r->m, b);
		rc = vmp_invalidate(r->fh, lo, 3);
		if (rc) {
			tfail("vmp_invalidate: %s", errname(rc));
			break;
		}
		__atomic_add_fetch(&r->ver[b], 1, __ATOMIC_RELEASE);
		__atomic_add_fetch(&r->changes, 1, __ATOMIC_RELAXED);
		if (rng_below(&rng, 2))
			usleep((useconds_t)rng_below(&rng, 200));
	}
	return NULL;
}

/* With @batch the store offers loadblks: read-ahead runs come in one call. */
static void invalidate_vs_faults(bool batch)
{
	const size_t ps = os_page();
	const uint64_t npages = 32;
	struct inv_race r;
	pthread_t tid[5];
	vmp_ram *ram;

	memset(&r, 0, sizeof(r));
	r.ps = ps;
	r.npages = npages;
	r.seed = test_seed(now_ns());
	print_message("%s: seed %#llx (VMPAGE_SEED to repeat a thread's "
		      "choices)\n", batch ? "loadblks" : "loadblk",
		      (unsigned long long)r.seed);
	r.m = mock_new(ps, npages, MOCK_READONLY | MOCK_NO_HOOKS |
					   (batch ? MOCK_BATCH : 0));
	r.ver = calloc(npages, sizeof(*r.ver));
	assert_ok(vmp_ram_new(&ram, npages / 2 * ps));
	r.fh = open_fh(ram, r.m, 0);
	r.map = map_pages(r.fh, 0, npages, PROT_READ);
	r.deadline = now_ns() + race_ns();

	assert_int_equal(pthread_create(&tid[0], NULL, inv_changer, &r), 0);
	for (int i = 1; i < 5; i++)
		assert_int_equal(pthread_create(&tid[i], NULL, inv_reader, &r), 0);
	for (int i = 0; i < 5; i++)
		pthread_join(tid[i], NULL);
	assert_no_thread_failure();
	print_message("%llu reads (%llu torn by an invalidate), %llu changes\n",
		      (unsigned long long)r.reads, (unsigned long long)r.torn,
		      (unsigned long long)r.changes);
	assert_true(r.reads > 0 && r.changes > 0);
	for (uint64_t b = 0; b < npages; b++)
		if (gen_check(r.map + b * ps, ps, b, r.ver[b]))
			fail_msg("page %llu is not version %u after the race",
				 (unsigned long long)b, r.ver[b]);

	assert_ok(vmp_munmap(r.map));
	assert_ok(vmp_fileh_close(r.fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(r.m);
	free(r.ver);
}

static void test_invalidate_vs_faults(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_invalidate_vs_faults");
	invalidate_vs_faults(false);
	invalidate_vs_faults(true);
}

/* --- writers, readers and one racing operation -------------------------------- */

/*
 * The common frame of the discard, reclaim and writeout races.  Pages
 * [0, nwritable) are written, page p only by writer p % nwriters, which
 * therefore knows what it wrote (cur: the stamp of each word, 0 = the
 * store's original bytes).  Before writing with stamp s the writer
 * publishes s in pmax[p].  Readers read any page and check each word with
 * word_plausible(): the store's original word, or a stamp written for
 * exactly that page and word, not newer than pmax.  Writers read their own
 * pages back exactly (with discards racing: each word is what they last
 * wrote there, or the store's word).
 */
enum race_op { RACE_DISCARD, RACE_RECLAIM, RACE_WRITEOUT };
#define NO_PAGE UINT64_MAX

struct race {
	enum race_op op;
	vmp_ram *ram;
	vmp_fileh *fh;
	struct mock *m;
	char *map;          /* RW, all pages: writers */
	char *rmap;         /* RO, all pages: readers */
	size_t ps, nw;      /* page size, 64-bit words per page */
	uint64_t npages, nwritable;
	unsigned nwriters;
	uint64_t counter_pg; /* RACE_WRITEOUT: page of counters, else NO_PAGE */
	uint64_t *orig;     /* the store's bytes of every page (version 0) */
	uint32_t *pmax;     /* per page (atomic) */
	uint32_t *cur;      /* cur[p * nw + w], writers' model */
	uint64_t counts[NTHREADS]; /* increments of counter word t, by t */
	uint64_t deadline;
	uint64_t seed;
	uint64_t nwrites, nreads, nops; /* atomic */
};

struct race_thread {
	pthread_t tid;
	struct race *r;
	unsigned idx;
};

static uint64_t model_word(const struct race *r, uint64_t p, size_t w)
{
	uint32_t s = r->cur[p * r->nw + w];

	return s ? stamp_word(p, w, s) : r->orig[p * r->nw + w];
}

/* Call after reading @v (see stamp_publish). */
static bool word_plausible(struct race *r, uint64_t p, size_t w, uint64_t v)
{
	uint32_t s;

	if (v == r->orig[p * r->nw + w])
		return true;
	return p < r->nwritable && stamp_decode(v, p, w, &s) && s >= 1 &&
	       s <= stamp_newest(&r->pmax[p]);
}

struct wjob {
	char *page;
	uint64_t p;
	size_t lo, hi;
	uint32_t s;
};

static int wjob_run(void *arg)
{
	struct wjob *j = arg;

	for (size_t w = j->lo; w < j->hi; w++)
		st64(j->page + 8 * w, stamp_word(j->p, w, j->s));
	return 0;
}

struct cjob {
	uint64_t *word;
	unsigned n;
};

static int cjob_run(void *arg)
{
	struct cjob *j = arg;

	for (unsigned i = 0; i < j->n; i++)
		__atomic_fetch_add(j->word, 1, __ATOMIC_RELAXED);
	return 0;
}

static void race_write(struct race *r, unsigned t, struct rng *rng,
		       uint64_t *buf)
{
	uint64_t p = t + r->nwriters * rng_below(rng, r->nwritable / r->nwriters);
	struct wjob j = { r->map + p * r->ps, p, 0, r->nw, 0 };
	int rc;

	if (r->counter_pg != NO_PAGE && rng_below(rng, 4) == 0) {
		/* counters: word t is t's, word NTHREADS everybody's */
		uint64_t *cp = (uint64_t *)(r->map + r->counter_pg * r->ps);
		struct cjob c1 = { cp + t, 16 }, c2 = { cp + NTHREADS, 16 };

		if ((rc = vmp_guard(cjob_run, &c1)) ||
		    (rc = vmp_guard(cjob_run, &c2))) {
			tfail("increment on page %llu failed: %s",
			      (unsigned long long)r->counter_pg, errname(rc));
			return;
		}
		r->counts[t] += 16;
		return;
	}
	if (rng_below(rng, 4)) {
		j.lo = rng_below(rng, r->nw);
		j.hi = j.lo + 1 + rng_below(rng, r->nw - j.lo);
	}
	j.s = __atomic_load_n(&r->pmax[p], __ATOMIC_RELAXED) + 1;
	stamp_publish(&r->pmax[p], j.s);
	rc = vmp_guard(wjob_run, &j);
	if (rc) {
		tfail("write of page %llu failed: %s", (unsigned long long)p,
		      errname(rc));
		return;
	}
	for (size_t w = j.lo; w < j.hi; w++)
		r->cur[p * r->nw + w] = j.s;
	__atomic_add_fetch(&r->nwrites, 1, __ATOMIC_RELAXED);

	/* read back through the other mapping */
	rc = guarded_read(r->rmap + p * r->ps, buf, r->nw);
	if (rc) {
		tfail("read-back of page %llu failed: %s",
		      (unsigned long long)p, errname(rc));
		return;
	}
	for (size_t w = 0; w < r->nw; w++) {
		uint64_t want = model_word(r, p, w);
		if (buf[w] == want ||
		    (r->op == RACE_DISCARD && buf[w] == r->orig[p * r->nw + w]))
			continue;
		tfail("writer %u, page %llu word %zu: read back %#llx, wrote "
		      "%#llx%s (stamp %u)", t, (unsigned long long)p, w,
		      (unsigned long long)buf[w], (unsigned long long)want,
		      r->op == RACE_DISCARD ? " (or the store's word)" : "",
		      r->cur[p * r->nw + w]);
		return;
	}
}

static void race_read(struct race *r, struct rng *rng, uint64_t *buf)
{
	uint64_t p = rng_below(rng, r->npages);
	int rc;

	if (p == r->counter_pg)
		return; /* counters change all the time: checked at the end */
	rc = guarded_read(r->rmap + p * r->ps, buf, r->nw);
	if (rc) {
		tfail("read of page %llu failed: %s", (unsigned long long)p,
		      errname(rc));
		return;
	}
	for (size_t w = 0; w < r->nw; w++)
		if (!word_plausible(r, p, w, buf[w])) {
			tfail("page %llu word %zu holds %#llx: neither the "
			      "store's word %#llx nor a stamp written there "
			      "(pmax %u)", (unsigned long long)p, w,
			      (unsigned long long)buf[w],
			      (unsigned long long)r->orig[p * r->nw + w],
			      stamp_newest(&r->pmax[p]));
			return;
		}
	__atomic_add_fetch(&r->nreads, 1, __ATOMIC_RELAXED);
}

static void *race_worker(void *arg)
{
	struct race_thread *th = arg;
	struct race *r = th->r;
	uint64_t *buf = malloc(r->ps);
	struct rng rng;

	rng_seed(&rng, r->seed + th->idx);
	while (now_ns() < r->deadline && !tfailed()) {
		if (th->idx < r->nwriters)
			race_write(r, th->idx, &rng, buf);
		else
			race_read(r, &rng, buf);
	}
	free(buf);
	return NULL;
}

/* The stored words of @p must never go back: last[] is what the previous
 * writeout left (stamps; for the counter page the counts). */
static void check_stored(struct race *r, uint64_t p, uint64_t *buf,
			 uint64_t *last)
{
	mock_expected(r->m, p, buf);
	for (size_t w = 0; w < r->nw; w++) {
		uint64_t v;
		uint32_t s = 0;

		if (p == r->counter_pg) {
			v = buf[w] - r->orig[p * r->nw + w];
			if (v < last[w])
				tfail("stored counter %zu went back from %llu "
				      "to %llu", w, (unsigned long long)last[w],
				      (unsigned long long)v);
			last[w] = v;
			continue;
		}
		if (!word_plausible(r, p, w, buf[w]))
			tfail("stored page %llu word %zu is %#llx: not a "
			      "word ever written there",
			      (unsigned long long)p, w,
			      (unsigned long long)buf[w]);
		else if (buf[w] != r->orig[p * r->nw + w])
			stamp_decode(buf[w], p, w, &s);
		if (s < last[w])
			tfail("stored page %llu word %zu went back from stamp "
			      "%llu to %u", (unsigned long long)p, w,
			      (unsigned long long)last[w], s);
		last[w] = s;
	}
}

static void *race_op_main(void *arg)
{
	struct race *r = arg;
	uint64_t *buf = malloc(r->ps);
	uint64_t *last = calloc(r->npages * r->nw, sizeof(*last));
	struct rng rng;

	rng_seed(&rng, r->seed ^ 0xabcdef);
	while (now_ns() < r->deadline && !tfailed()) {
		int rc = 0;

		switch (r->op) {
		case RACE_DISCARD:
			rc = vmp_discard(r->fh);
			break;
		case RACE_RECLAIM:
			rc = vmp_ram_reclaim(r->ram,
					     rng_below(&rng, r->npages) * r->ps);
			break;
		case RACE_WRITEOUT:
			rc = vmp_writeout(r->fh, VMP_WRITEOUT_STORE |
							 VMP_WRITEOUT_MARKSTORED);
			for (uint64_t p = 0; !rc && p < r->npages; p++)
				if (p < r->nwritable || p == r->counter_pg)
					check_stored(r, p, buf,
						     last + p * r->nw);
			break;
		}
		if (rc) {
			tfail("racing operation %d failed: %s", r->op,
			      errname(rc));
			break;
		}
		__atomic_add_fetch(&r->nops, 1, __ATOMIC_RELAXED);
		usleep((useconds_t)rng_below(&rng, 300));
	}
	free(buf);
	free(last);
	return NULL;
}

static void race_run(enum race_op op, uint64_t npages, uint64_t nwritable,
		     size_t limit_pages, const char *name)
{
	const size_t ps = os_page();
	struct race_thread th[NTHREADS];
	pthread_t optid;
	uint64_t *buf;
	struct race r;
	uint64_t ndirty_want = 0;

	memset(&r, 0, sizeof(r));
	r.op = op;
	r.ps = ps;
	r.nw = ps / 8;
	r.npages = npages;
	r.nwritable = nwritable;
	r.nwriters = 4;
	r.counter_pg = op == RACE_WRITEOUT ? npages - 1 : NO_PAGE;
	r.seed = test_seed(now_ns());
	print_message("%s: seed %#llx\n", name, (unsigned long long)r.seed);
	r.m = mock_new(ps, npages, 0);
	r.orig = malloc(npages * ps);
	for (uint64_t p = 0; p < npages; p++)
		gen_fill(r.orig + p * r.nw, ps, p, 0);
	r.pmax = calloc(npages, sizeof(*r.pmax));
	r.cur = calloc(npages * r.nw, sizeof(*r.cur));
	buf = malloc(ps);
	assert_ok(vmp_ram_new(&r.ram, limit_pages * ps));
	r.fh = open_fh(r.ram, r.m, 0);
	r.map = map_pages(r.fh, 0, npages, PROT_READ | PROT_WRITE);
	r.rmap = map_pages(r.fh, 0, npages, PROT_READ);
	r.deadline = now_ns() + race_ns();

	assert_int_equal(pthread_create(&optid, NULL, race_op_main, &r), 0);
	for (unsigned i = 0; i < NTHREADS; i++) {
		th[i].r = &r;
		th[i].idx = i;
		assert_int_equal(pthread_create(&th[i].tid, NULL, race_worker,
						&th[i]), 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(th[i].tid, NULL);
	pthread_join(optid, NULL);
	assert_no_thread_failure();
	print_message("%s: %llu writes, %llu reads, %llu racing calls\n", name,
		      (unsigned long long)r.nwrites,
		      (unsigned long long)r.nreads, (unsigned long long)r.nops);
	assert_true(r.nwrites > 0 && r.nreads > 0 && r.nops > 0);

	/* Quiet now.  What every page shows: */
	for (uint64_t p = 0; p < npages; p++) {
		bool written = false;

		assert_ok(guarded_read(r.rmap + p * ps, buf, r.nw));
		for (size_t w = 0; w < r.nw; w++) {
			uint64_t want = model_word(&r, p, w);
			written |= r.cur[p * r.nw + w] != 0;
			if (p == r.counter_pg) {
				uint64_t n = w < NTHREADS ? r.counts[w] : 0;
				if (w == NTHREADS)
					for (unsigned t = 0; t < NTHREADS; t++)
						n += r.counts[t];
				want = r.orig[p * r.nw + w] + n;
				written |= n != 0;
			}
			if (buf[w] == want ||
			    (op == RACE_DISCARD && buf[w] == r.orig[p * r.nw + w]))
				continue;
			fail_msg("%s: page %llu word %zu is %#llx, expected "
				 "%#llx", name, (unsigned long long)p, w,
				 (unsigned long long)buf[w],
				 (unsigned long long)want);
		}
		ndirty_want += written;
	}
	/* No dirty page was lost: without discards every written page is
	 * still dirty (reclaim) or stored (writeout) */
	if (op == RACE_RECLAIM)
		assert_u64(dirty_count(r.fh), ndirty_want);
	else
		assert_u64_le(dirty_count(r.fh), ndirty_want);
	assert_ok(vmp_writeout(r.fh, VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED));
	assert_u64(dirty_count(r.fh), 0);
	/* ... and the store holds exactly what the pages show */
	for (uint64_t p = 0; p < npages; p++) {
		uint64_t *view = malloc(ps);

		assert_ok(guarded_read(r.rmap + p * ps, view, r.nw));
		mock_expected(r.m, p, buf);
		if (memcmp(view, buf, ps))
			fail_msg("%s: the store's page %llu differs from the "
				 "mapping after the final writeout: a write "
				 "was lost", name, (unsigned long long)p);
		if (op != RACE_DISCARD && p < nwritable)
			for (size_t w = 0; w < r.nw; w++)
				assert_true(view[w] == model_word(&r, p, w));
		free(view);
	}
	assert_ok(vmp_discard(r.fh));
	for (uint64_t p = 0; p < npages; p++)
		assert_int_equal(mock_check(r.m, p, r.rmap + p * ps), 0);

	assert_ok(vmp_munmap(r.map));
	assert_ok(vmp_munmap(r.rmap));
	assert_ok(vmp_fileh_close(r.fh));
	assert_ok(vmp_ram_free(r.ram));
	mock_free(r.m);
	free(r.orig);
	free(r.pmax);
	free(r.cur);
	free(buf);
}

/* Discard drops the change set while writers write and readers read: each
 * word shows the store's bytes or the last write there, never an older
 * write (a stale dirty page installed again). */
static void test_discard_vs_faults(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_discard_vs_faults");
	race_run(RACE_DISCARD, 32, 32, 0, "discard");
	race_run(RACE_DISCARD, 64, 16, 48, "discard, limit 48 pages");
}

/* Reclaim (by vmp_ram_reclaim, and by the memory limit) while writers and
 * readers fault: exact bytes, and every written page is still dirty. */
static void test_reclaim_vs_faults(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_reclaim_vs_faults");
	race_run(RACE_RECLAIM, 64, 16, 0, "reclaim");
	race_run(RACE_RECLAIM, 128, 16, 64, "reclaim, limit 64 pages");
}

/*
 * Writeout (STORE|MARKSTORED) in a loop while writers keep writing: the
 * rule of vmp_writeout (a page written during the writeout stays dirty
 * with the new bytes).  Checked: each writeout succeeds; the store never
 * goes back (every stored word is a write at least as new as the one the
 * previous writeout stored); counters incremented with atomic adds lose
 * no increment; after the writers stop, one more writeout leaves the store
 * holding every last write.
 */
static void test_writeout_vs_writers(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_writeout_vs_writers");
	race_run(RACE_WRITEOUT, 33, 32, 0, "writeout");
	race_run(RACE_WRITEOUT, 65, 16, 48, "writeout, limit 48 pages");
}

/* --- reads never dirty --------------------------------------------------- */

struct rd_race {
	char *map;
	size_t ps;
	uint64_t npages;
	vmp_ram *ram;
	uint64_t deadline;
	uint64_t seed;
	int reclaimer; /* atomic: thread index that reclaims */
};

static void *rd_main(void *arg)
{
	struct rd_race *r = arg;
	unsigned me = __atomic_fetch_add(&r->reclaimer, 1, __ATOMIC_RELAXED);
	uint64_t *buf = malloc(r->ps);
	struct rng rng;

	rng_seed(&rng, r->seed + me);
	while (now_ns() < r->deadline && !tfailed()) {
		uint64_t b = rng_below(&rng, r->npages);
		int rc;

		if (me == 0) {
			vmp_ram_reclaim(r->ram, r->npages * r->ps);
			usleep(50);
			continue;
		}
		rc = guarded_read(r->map + b * r->ps, buf, 8);
		if (rc)
			tfail("read of page %llu: %s", (unsigned long long)b,
			      errname(rc));
		else if (gen_check(buf, 64, b, 0))
			tfail("page %llu: wrong bytes", (unsigned long long)b);
	}
	free(buf);
	return NULL;
}

/*
 * Threads that only read, through a writable mapping, pages that reclaim
 * keeps deactivating and dropping: many faults on one page at once.  None
 * of them is a write, so no page may become dirty (a dirty page is a
 * change the user never made: writeout would store it, and it would hide
 * the store's newer bytes from vmp_invalidate).
 */
static void test_reads_never_dirty(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 16, MOCK_NO_HOOKS);
	struct rd_race r;
	vmp_fileh *fh;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_reads_never_dirty");
	memset(&r, 0, sizeof(r));
	r.ps = ps;
	r.npages = 16;
	r.seed = test_seed(now_ns());
	assert_ok(vmp_ram_new(&r.ram, 0));
	fh = open_fh(r.ram, m, 0);
	r.map = map_pages(fh, 0, r.npages, PROT_READ | PROT_WRITE);
	r.deadline = now_ns() + race_ns();
	run_threads(NTHREADS, rd_main, &r);
	assert_no_thread_failure();
	print_message("%llu faults, %llu pages dirty after reads only\n",
		      (unsigned long long)ram_stats(r.ram).faults,
		      (unsigned long long)dirty_count(fh));
	assert_u64(dirty_count(fh), 0);
	assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED));
	assert_u64(m->store_calls, 0);

	assert_ok(vmp_munmap(r.map));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(r.ram));
	mock_free(m);
}

/* --- mmap / munmap while others fault ------------------------------------- */

struct mm_race {
	struct mock *m;
	vmp_ram *ram;
	vmp_fileh *fh;
	size_t ps;
	uint64_t npages;
	uint64_t *orig;
	uint64_t deadline;
	uint64_t seed;
	unsigned next; /* atomic: thread index */
	uint64_t maps, faults_read; /* atomic */
};

/* Pages [0, 8) are written by thread 0 (stamps), the rest never. */
static bool mm_plausible(struct mm_race *r, uint64_t p, size_t w, uint64_t v)
{
	uint32_t s;

	return v == r->orig[p * (r->ps / 8) + w] ||
	       (p < 8 && stamp_decode(v, p, w, &s));
}

/* Read page @p at @addr and check its words; -ENOMEM (a tight budget) is
 * returned, any other error or a wrong word is a failure (@what: the read). */
static int mm_read_check(struct mm_race *r, const char *addr, uint64_t p,
			 uint64_t *buf, const char *what)
{
	size_t nw = r->ps / 8;
	int rc = guarded_read(addr, buf, nw);

	if (rc == -ENOMEM)
		return rc;
	if (rc)
		tfail("%s: %s", what, errname(rc));
	for (size_t w = 0; !rc && w < nw; w++)
		if (!mm_plausible(r, p, w, buf[w])) {
			tfail("page %llu word %zu: %#llx",
			      (unsigned long long)p, w,
			      (unsigned long long)buf[w]);
			break;
		}
	return rc;
}

static void *mm_main(void *arg)
{
	struct mm_race *r = arg;
	unsigned me = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
	size_t nw = r->ps / 8;
	uint64_t *buf = malloc(r->ps);
	struct rng rng;
	char *own = NULL;
	uint32_t stamp = 0;
	int rc;

	rng_seed(&rng, r->seed + me);
	if (me >= 3 && (rc = vmp_mmap(r->fh, 0, r->npages,
				      me == 3 ? PROT_READ | PROT_WRITE : PROT_READ,
				      (void **)&own))) {
		tfail("vmp_mmap: %s", errname(rc));
		return NULL;
	}
	while (now_ns() < r->deadline && !tfailed()) {
		if (me < 3) {
			/* mappers: a mapping of a random range, RO or RW, of
			 * the shared handle or of a handle of their own */
			uint64_t lo = rng_below(&rng, r->npages);
			uint64_t len = 1 + rng_below(&rng, r->npages - lo);
			int prot = rng_below(&rng, 2) ? PROT_READ
						      : PROT_READ | PROT_WRITE;
			vmp_fileh *fh = r->fh;
			char *a;

			if (me == 2 && (rc = vmp_fileh_open(&fh, r->ram,
							    r->m->store, 0))) {
				tfail("vmp_fileh_open: %s", errname(rc));
				break;
			}
			if ((rc = vmp_mmap(fh, lo, len, prot, (void **)&a))) {
				tfail("vmp_mmap: %s", errname(rc));
				break;
			}
			for (int i = 0; i < 4 && !tfailed(); i++) {
				uint64_t p = lo + rng_below(&rng, len);

				mm_read_check(r, a + (p - lo) * r->ps, p, buf,
					      "read through a new mapping");
			}
			if ((rc = vmp_munmap(a)))
				tfail("vmp_munmap: %s", errname(rc));
			if (fh != r->fh && (rc = vmp_fileh_close(fh)))
				tfail("vmp_fileh_close: %s", errname(rc));
			__atomic_add_fetch(&r->maps, 1, __ATOMIC_RELAXED);
		} else if (me == 3) {
			/* the writer: pages [0, 8) of its own mapping */
			uint64_t p = rng_below(&rng, 8);
			struct wjob j = { own + p * r->ps, p, 0, nw, ++stamp };
			if ((rc = vmp_guard(wjob_run, &j)))
				tfail("write: %s", errname(rc));
		} else {
			uint64_t p = rng_below(&rng, r->npages);

			if (mm_read_check(r, own + p * r->ps, p, buf, "read") ==
			    -ENOMEM)
				continue;
			__atomic_add_fetch(&r->faults_read, 1, __ATOMIC_RELAXED);
		}
	}
	if (own && (rc = vmp_munmap(own)))
		tfail("vmp_munmap: %s", errname(rc));
	free(buf);
	return NULL;
}

/*
 * Three threads map, read through and unmap mappings (of the shared handle,
 * and of handles opened and closed each time), while five others fault on
 * long-lived mappings of the same handle under a tight memory limit (so
 * reclaim changes the protection of pages in every mapping all the time,
 * the new ones included).  Reads see the right bytes; -ENOMEM is allowed
 * (LOADING pages can fill the tight budget) but nothing else; no deadlock;
 * every mapping is gone at the end (close succeeds).
 */
static void test_mmap_munmap_vs_faults(void **state)
{
	const size_t ps = os_page();
	struct mm_race r;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_mmap_munmap_vs_faults");
	memset(&r, 0, sizeof(r));
	r.ps = ps;
	r.npages = 128;
	r.seed = test_seed(now_ns());
	r.m = mock_new(ps, r.npages, MOCK_NO_HOOKS);
	r.orig = malloc(r.npages * ps);
	for (uint64_t p = 0; p < r.npages; p++)
		gen_fill(r.orig + p * (ps / 8), ps, p, 0);
	assert_ok(vmp_ram_new(&r.ram, 48 * ps));
	r.fh = open_fh(r.ram, r.m, 0);
	r.deadline = now_ns() + race_ns();
	run_threads(NTHREADS, mm_main, &r);
	assert_no_thread_failure();
	print_message("%llu mmap/munmap cycles, %llu reads\n",
		      (unsigned long long)r.maps,
		      (unsigned long long)r.faults_read);
	assert_true(r.maps > 0 && r.faults_read > 0);

	assert_ok(vmp_fileh_close(r.fh));
	assert_ok(vmp_ram_free(r.ram));
	mock_free(r.m);
	free(r.orig);
}

/* --- loadblk touching mappings ------------------------------------------------ */

/*
 * A store built on another mapped store: block b of the derived store is
 * page (5b + 1) mod n of the base mapping, each word xored with b.  Its
 * loadblk reads the base mapping, so each of its faults takes a nested
 * fault on the base handle; vmp_guard inside loadblk turns a nested failure
 * into a load error.
 */
struct derived {
	const char *base;
	size_t ps;
	uint64_t nbase;
};

static uint64_t derived_base(const struct derived *d, uint64_t blk)
{
	return (blk * 5 + 1) % d->nbase;
}

static int derived_loadblk(void *ctx, uint64_t blk, void *buf)
{
	struct derived *d = ctx;
	uint64_t *words = buf;
	size_t n = d->ps / 8;
	int rc = guarded_read(d->base + derived_base(d, blk) * d->ps, words, n);

	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		words[i] ^= blk * 0x0101010101010101ull;
	return 0;
}

struct nest_race {
	struct derived d;
	const char *dmap; /* mapping of the derived handle */
	uint64_t nderived;
	bool limited;
	uint64_t deadline, seed;
	unsigned next;
	uint64_t reads, enomem; /* atomic */
};

/* Say whose bytes @buf holds: a base page, a derived page, or neither. */
static void describe_bytes(struct nest_race *r, const uint64_t *buf,
			   char *out, size_t len)
{
	size_t ps = r->d.ps;
	uint64_t *g = malloc(ps);

	snprintf(out, len, "none of the base or derived pages");
	for (uint64_t b = 0; b < r->d.nbase; b++) {
		gen_fill(g, ps, b, 0);
		if (!memcmp(g, buf, ps)) {
			snprintf(out, len, "the bytes of base page %llu",
				 (unsigned long long)b);
			break;
		}
	}
	for (uint64_t b = 0; b < r->nderived; b++) {
		gen_fill(g, ps, derived_base(&r->d, b), 0);
		for (size_t i = 0; i < ps / 8; i++)
			g[i] ^= b * 0x0101010101010101ull;
		if (!memcmp(g, buf, ps)) {
			snprintf(out, len, "the bytes of derived page %llu",
				 (unsigned long long)b);
			break;
		}
	}
	free(g);
}

static void *nest_main(void *arg)
{
	struct nest_race *r = arg;
	unsigned me = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
	size_t ps = r->d.ps, nw = ps / 8;
	uint64_t *buf = malloc(ps), *want = malloc(ps);
	struct rng rng;

	rng_seed(&rng, r->seed + me);
	while (now_ns() < r->deadline && !tfailed()) {
		bool derived = rng_below(&rng, 4) != 0;
		uint64_t b = rng_below(&rng, derived ? r->nderived : r->d.nbase);
		int rc;

		if (derived) {
			rc = guarded_read(r->dmap + b * ps, buf, nw);
			gen_fill(want, ps, derived_base(&r->d, b), 0);
			for (size_t i = 0; i < nw; i++)
				want[i] ^= b * 0x0101010101010101ull;
		} else {
			rc = guarded_read(r->d.base + b * ps, buf, nw);
			gen_fill(want, ps, b, 0);
		}
		if (rc == -ENOMEM && r->limited) {
			__atomic_add_fetch(&r->enomem, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (rc) {
			tfail("read of %s page %llu failed: %s",
			      derived ? "derived" : "base",
			      (unsigned long long)b, errname(rc));
			break;
		}
		if (memcmp(buf, want, ps)) {
			char what[128];
			describe_bytes(r, buf, what, sizeof(what));
			tfail("%s page %llu: wrong bytes: %s",
			      derived ? "derived" : "base",
			      (unsigned long long)b, what);
			break;
		}
		__atomic_add_fetch(&r->reads, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	free(want);
	return NULL;
}

static void nest_run(bool shared_limited_ram)
{
	const size_t ps = os_page();
	const uint64_t nbase = 64, nderived = 64;
	struct mock *m = mock_new(ps, nbase, MOCK_READONLY | MOCK_NO_HOOKS);
	vmp_store_ops ops = { .loadblk = derived_loadblk };
	struct nest_race r;
	vmp_ram *ram_b, *ram_d;
	vmp_fileh *fb, *fd;
	char *bmap, *dmap;

	memset(&r, 0, sizeof(r));
	r.seed = test_seed(now_ns());
	r.limited = shared_limited_ram;
	if (shared_limited_ram) {
		assert_ok(vmp_ram_new(&ram_b, 32 * ps));
		ram_d = ram_b;
	} else {
		assert_ok(vmp_ram_new(&ram_b, 0));
		assert_ok(vmp_ram_new(&ram_d, 0));
	}
	fb = open_fh(ram_b, m, 0);
	bmap = map_pages(fb, 0, nbase, PROT_READ);
	r.d = (struct derived){ bmap, ps, nbase };
	assert_ok(open_fh_ops(&fd, ram_d, &ops, &r.d, ps, 0));
	dmap = map_pages(fd, 0, nderived, PROT_READ);
	r.dmap = dmap;
	r.nderived = nderived;
	r.deadline = now_ns() + race_ns();

	run_threads(NTHREADS, nest_main, &r);
	assert_no_thread_failure();
	print_message("store on a mapped store%s: %llu reads, %llu -ENOMEM\n",
		      shared_limited_ram ? " (one RAM, 32 pages)" : "",
		      (unsigned long long)r.reads,
		      (unsigned long long)r.enomem);
	assert_true(r.reads > 0);
	if (!shared_limited_ram)
		/* each base page loaded once, although 8 threads and the
		 * derived loads raced for it */
		for (uint64_t b = 0; b < nbase; b++)
			assert_true(mock_loads(m, b) <= 1);

	assert_ok(vmp_munmap(dmap));
	assert_ok(vmp_fileh_close(fd));
	assert_ok(vmp_munmap(bmap));
	assert_ok(vmp_fileh_close(fb));
	if (ram_d != ram_b)
		assert_ok(vmp_ram_free(ram_d));
	assert_ok(vmp_ram_free(ram_b));
	mock_free(m);
}

static void test_store_on_mapped_store(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_store_on_mapped_store");
	nest_run(false);
	nest_run(true);
}

/*
 * A loadblk that touches pages of its own handle.  ->touch says which page
 * (relative to the one loaded) and ->guarded whether under vmp_guard; the
 * result of each inner touch is kept per block.
 */
struct selfref {
	char *map;   /* mapping of the handle itself, from page 0 */
	size_t ps;
	uint64_t n;
	int touch;   /* 0: the page being loaded; 1: the next page */
	bool guarded;
	bool fail_load; /* return the inner error from loadblk */
	int inner[64]; /* per block: the inner vmp_guard's answer, 1 = none */
	/* what the fault error handler saw (atomic) */
	int err_calls, err_what, err_err;
	uint64_t err_blk;
};

static int selfref_loadblk(void *ctx, uint64_t blk, void *buf)
{
	struct selfref *s = ctx;
	uint64_t t = blk + (uint64_t)s->touch;
	uint8_t v;
	int rc = 1;

	gen_fill(buf, s->ps, blk, 0);
	if (t < s->n && (s->touch == 0 || blk % 2 == 0)) {
		if (s->guarded)
			rc = guarded_peek(s->map + t * s->ps, &v);
		else
			rc = peek(s->map + t * s->ps) * 0;
	}
	if (blk < 64)
		__atomic_store_n(&s->inner[blk], rc, __ATOMIC_RELAXED);
	return s->fail_load && rc < 0 ? rc : 0;
}

static int selfref_errfn(const struct vmp_fault_error *e, void *arg)
{
	struct selfref *s = arg;

	if (__atomic_fetch_add(&s->err_calls, 1, __ATOMIC_RELAXED) == 0) {
		s->err_what = e->what;
		s->err_err = e->err;
		s->err_blk = e->blk;
	}
	return VMP_FAULT_DEFAULT;
}

struct selfref_env {
	struct selfref s;
	vmp_store_ops ops;
	vmp_ram *ram;
	vmp_fileh *fh;
};

/* The store of 16 OS pages, nothing open yet. */
static void selfref_init(struct selfref_env *e, int touch, bool guarded,
			 bool fail_load)
{
	const size_t ps = os_page();

	memset(e, 0, sizeof(*e));
	e->s.ps = ps;
	e->s.n = 16;
	e->s.touch = touch;
	e->s.guarded = guarded;
	e->s.fail_load = fail_load;
	for (int i = 0; i < 64; i++)
		e->s.inner[i] = 1;
	e->ops.loadblk = selfref_loadblk;
}

static void selfref_open(struct selfref_env *e, int touch, bool guarded,
			 bool fail_load)
{
	selfref_init(e, touch, guarded, fail_load);
	assert_ok(vmp_ram_new(&e->ram, 0));
	assert_ok(open_fh_ops(&e->fh, e->ram, &e->ops, &e->s, e->s.ps, 0));
	assert_ok(vmp_set_fault_error_handler(e->fh, selfref_errfn, &e->s));
	e->s.map = map_pages(e->fh, 0, e->s.n, PROT_READ);
}

static void selfref_close(struct selfref_env *e)
{
	assert_ok(vmp_munmap(e->s.map));
	assert_ok(vmp_fileh_close(e->fh));
	assert_ok(vmp_ram_free(e->ram));
}

struct selfref_reader {
	struct selfref *s;
	uint64_t blk;
	int rc;
};

static void *selfref_reader_main(void *arg)
{
	struct selfref_reader *r = arg;
	uint8_t v;

	r->rc = guarded_peek(r->s->map + r->blk * r->s->ps, &v);
	return NULL;
}

/* --- scans in several threads (issue 14) ---------------------------------- */

#define LANE_PAGES 4096 /* 16 MiB of 4 KiB pages, two halves of 8 MiB */

struct scanner {
	pthread_t tid;
	pthread_barrier_t *bar;
	char *map;
	size_t ps;
	uint64_t first, n; /* its half */
	bool write;        /* pass 2: write byte 0 of every 64th page */
	uint64_t bad;      /* pages that read wrong */
};

static void *scanner_main(void *arg)
{
	struct scanner *t = arg;

	pthread_barrier_wait(t->bar);
	for (uint64_t b = t->first; b < t->first + t->n; b++) {
		char *page = t->map + b * t->ps;
		if (t->write && b % 64 == 0)
			page[0] = (char)0xa5;
		else if (!t->write && gen_check(page, t->ps, b, 0) != 0)
			t->bad++;
	}
	return NULL;
}

/* Two threads scan (or write) their own half of @map at once. */
static void scan_halves(char *map, size_t ps, bool write)
{
	struct scanner t[2];
	pthread_barrier_t bar;

	pthread_barrier_init(&bar, NULL, 3);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct scanner){ .bar = &bar, .map = map, .ps = ps,
					 .first = (uint64_t)i * LANE_PAGES / 2,
					 .n = LANE_PAGES / 2, .write = write };
		assert_int_equal(pthread_create(&t[i].tid, NULL, scanner_main,
						&t[i]), 0);
	}
	pthread_barrier_wait(&bar);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i].tid, NULL);
		assert_u64(t[i].bad, 0);
	}
	pthread_barrier_destroy(&bar);
}

/* Kernel VMAs over [addr, addr+len), and how many files they map. */
static void maps_in(const char *addr, size_t len, long *vmas, long *files)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long inodes[64];
	char line[512];

	assert_non_null(f);
	*vmas = *files = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, inode;
		long k;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &inode) != 3 ||
		    lo >= (uintptr_t)addr + len || hi <= (uintptr_t)addr)
			continue;
		++*vmas;
		for (k = 0; k < *files && inodes[k] != inode; k++)
			;
		if (k == *files && k < 64)
			inodes[(*files)++] = inode;
	}
	fclose(f);
}

/*
 * Two threads scanning their own halves of one mapping load into memfds of
 * their own with the mprotect mechanism (a pwrite holds the memfd's lock
 * for its whole copy), each stream into one (one kernel VMA, not one per
 * run); with userfaultfd there is one memfd.  The bytes are right
 * throughout: read, written, stored and read again, without a limit and
 * with one that drops pages of both lanes all along (so pages move between
 * a lane's memfd and the reservation's).  Builds with -Ddebug_checks=3
 * also compare the library's count of kernel VMAs with the kernel's at
 * each munmap.
 */
static void test_scans_in_lanes(void **state)
{
	const size_t ps = os_page();
	const size_t limits[] = { 0, (size_t)4 << 20 };

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_scans_in_lanes");
	for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
		struct mock *m = mock_new(ps, LANE_PAGES, MOCK_NO_HOOKS);
		vmp_ram *ram;
		vmp_fileh *fh;
		char *map;
		long vmas, files;

		assert_ok(vmp_ram_new(&ram, limits[l]));
		fh = open_fh(ram, m, 0);
		map = map_pages(fh, 0, LANE_PAGES, PROT_READ | PROT_WRITE);
		scan_halves(map, ps, false);
		maps_in(map, LANE_PAGES * ps, &vmas, &files);
		print_message("limit %zu MiB: %ld kernel VMAs over %ld memfds\n",
			      limits[l] >> 20, vmas, files);
		if (!limits[l] && vmp_ram_faults(ram) == VMP_FAULTS_SIGSEGV) {
			/* a lane each (the first pages of a stream, loaded
			 * alone, go into the reservation's) */
			assert_true(files >= 2);
			assert_true(vmas <= 8);
		} else if (!limits[l]) {
			assert_int_equal(files, 1);
			assert_int_equal(vmas, 1);
		}
		scan_halves(map, ps, true);
		assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE |
						   VMP_WRITEOUT_MARKSTORED));
		for (uint64_t b = 0; b < LANE_PAGES; b += 64) {
			assert_int_equal((uint8_t)map[b * ps], 0xa5);
			assert_int_equal(mock_check(m, b, map + b * ps), 0);
		}
		assert_ok(vmp_munmap(map));
		/* read again: pages in memory are in the lanes they came in */
		map = map_pages(fh, 0, LANE_PAGES, PROT_READ);
		for (uint64_t b = 0; b < LANE_PAGES; b++) {
			char page[ps];
			memcpy(page, map + b * ps, ps);
			if (b % 64 == 0) {
				assert_int_equal((uint8_t)page[0], 0xa5);
				page[0] = (char)gen_byte(b, 0, 0);
			}
			assert_int_equal(gen_check(page, ps, b, 0), 0);
		}
		assert_ok(vmp_munmap(map));
		assert_ok(vmp_fileh_close(fh));
		assert_ok(vmp_ram_free(ram));
		mock_free(m);
	}
}

/* In a child whose file descriptors are used up: two threads scan their
 * halves all the same, every load in the reservation's memfd. */
static void child_scans_without_fds(void *arg)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, LANE_PAGES, MOCK_READONLY | MOCK_NO_HOOKS);
	struct rlimit old, none;
	struct scanner t[2];
	pthread_barrier_t bar;
	vmp_ram *ram;
	vmp_fileh *fh;
	void *map;
	long vmas, files;

	(void)arg;
	child_check_rc(vmp_fault_handler_install(), 0);
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	child_check_rc(vmp_fileh_open(&fh, ram, m->store, 0), 0);
	child_check_rc(vmp_mmap(fh, 0, LANE_PAGES, PROT_READ, &map), 0);
	child_check(getrlimit(RLIMIT_NOFILE, &old) == 0);
	none = old;
	/* the lowest free one: none left */
	none.rlim_cur = (rlim_t)open("/dev/null", O_RDONLY | O_CLOEXEC);
	child_check(none.rlim_cur != (rlim_t)-1);
	child_check(setrlimit(RLIMIT_NOFILE, &none) == 0);
	pthread_barrier_init(&bar, NULL, 2);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct scanner){ .bar = &bar, .map = map, .ps = ps,
					 .first = (uint64_t)i * LANE_PAGES / 2,
					 .n = LANE_PAGES / 2 };
		child_check(pthread_create(&t[i].tid, NULL, scanner_main,
					   &t[i]) == 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i].tid, NULL);
		child_check(t[i].bad == 0);
	}
	child_check(setrlimit(RLIMIT_NOFILE, &old) == 0);
	maps_in(map, LANE_PAGES * ps, &vmas, &files);
	child_check(files == 1);
	child_check(vmas == 1);
	child_check_rc(vmp_munmap(map), 0);
	child_check_rc(vmp_fileh_close(fh), 0);
	child_check_rc(vmp_ram_free(ram), 0);
}

/* Out of file descriptors, a handle makes no more lanes and loads into
 * the one it has: nothing fails. */
static void test_lanes_without_fds(void **state)
{
	struct child_result r;

	(void)state;
	run_child(child_scans_without_fds, NULL, &r);
	assert_child_exited_ok(&r);
}

/* Two threads, each loading the isolated blocks of its own half of @map
 * (every other block) until *@stop, invalidating its half after each pass
 * if @inval. */
struct lane_loader {
	pthread_t tid;
	vmp_fileh *fh;
	char *map;
	size_t bs;
	uint64_t first, n;
	bool inval;
	bool write;
	const bool *stop; /* atomic */
	int rc;
};

static void *lane_loader_main(void *arg)
{
	struct lane_loader *t = arg;

	do {
		for (uint64_t b = t->first; b < t->first + t->n; b += 2) {
			if (t->write)
				t->map[b * t->bs] = 1;
			else
				(void)peek(t->map + b * t->bs);
		}
		if (t->inval && !t->rc)
			t->rc = vmp_invalidate(t->fh, t->first, t->n);
	} while (!__atomic_load_n(t->stop, __ATOMIC_RELAXED));
	return NULL;
}

static void lane_loaders_start(struct lane_loader *t, vmp_fileh *fh, char *map,
			       size_t bs, uint64_t nblocks, bool inval,
			       bool write, const bool *stop)
{
	for (int i = 0; i < 2; i++) {
		t[i] = (struct lane_loader){ .fh = fh, .map = map, .bs = bs,
					     .first = (uint64_t)i * nblocks / 2,
					     .n = nblocks / 2, .inval = inval,
					     .write = write, .stop = stop };
		assert_int_equal(pthread_create(&t[i].tid, NULL,
						lane_loader_main, &t[i]), 0);
	}
}

static void lane_loaders_join(struct lane_loader *t)
{
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i].tid, NULL);
		assert_rc(t[i].rc, 0);
	}
}

/*
 * A child of fork() gets no mapping of a handle's memory, even while
 * threads load into lanes (a lane's memfd is mapped over the reservation
 * with mmap and then made MADV_DONTFORK: a fork between the two calls
 * used to copy the mapping into the child).
 */
static void test_lanes_fork(void **state)
{
	const size_t bs = (size_t)64 << 10;
	struct mock *m = mock_new(bs, 64, MOCK_READONLY | MOCK_NO_HOOKS);
	struct lane_loader t[2];
	bool stop = false;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *map;
	int found = 0, forks;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_lanes_fork");
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	map = map_pages(fh, 0, 64, PROT_READ);
	lane_loaders_start(t, fh, map, bs, 64, true, false, &stop);
	for (forks = 0; forks < 400 && !found; forks++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			FILE *f = fopen("/proc/self/maps", "re");
			char line[512];
			int n = 0;
			while (f && fgets(line, sizeof(line), f))
				n += strstr(line, "memfd:vmpage") != NULL;
			_exit(n ? 1 : 0);
		}
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		found += WIFEXITED(st) && WEXITSTATUS(st) == 1;
	}
	__atomic_store_n(&stop, true, __ATOMIC_RELAXED);
	lane_loaders_join(t);
	print_message("%d of %d children had a mapping of the handle's memory\n",
		      found, forks);
	assert_int_equal(found, 0);
	assert_ok(vmp_munmap(map));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/*
 * Pages that show nothing show the reservation (lane 0), whatever lane
 * holds their bytes: so spilled pages, and inactive ones, merge with their
 * neighbours and take no kernel VMA of their own (else the deactivation
 * that the VMA budget relies on would free none).  Two threads write
 * isolated 64 KiB blocks of a spilling handle, 16x its limit: the mapping
 * takes about two kernel VMAs per block in memory, not per block written.
 */
static void test_lanes_shown_none_merge(void **state)
{
	const size_t bs = (size_t)64 << 10, limit = (size_t)1 << 20;
	const uint64_t nblocks = 2 * 8 * (limit / bs) * 2;
	struct mock *m = mock_new(bs, nblocks, MOCK_NO_HOOKS);
	struct lane_loader t[2];
	bool stop = true; /* one pass each */
	vmp_ram *ram;
	vmp_fileh *fh;
	char *map;
	long vmas, files;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_lanes_shown_none_merge");
	assert_ok(vmp_ram_new(&ram, limit));
	fh = open_fh(ram, m, VMP_SPILL);
	map = map_pages(fh, 0, nblocks, PROT_READ | PROT_WRITE);
	lane_loaders_start(t, fh, map, bs, nblocks, false, true, &stop);
	lane_loaders_join(t);
	maps_in(map, nblocks * bs, &vmas, &files);
	print_message("%llu blocks written, %llu in memory: %ld kernel VMAs\n",
		      (unsigned long long)nblocks / 2,
		      (unsigned long long)(ram_stats(ram).resident_bytes / bs),
		      vmas);
	assert_true(ram_stats(ram).spilled_bytes > 0);
	assert_true(vmas <= 2 * (long)(limit / bs) + 3);
	for (uint64_t b = 0; b < nblocks; b += 2)
		assert_int_equal(map[b * bs], 1);
	assert_ok(vmp_discard(fh));
	assert_ok(vmp_munmap(map));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/*
 * loadblk touches the page it is loading.  Under vmp_guard inside loadblk
 * the touch returns -EDEADLK, the error handler sees VMP_FAULT_RECURSION for
 * that block, and the load itself can go on (the page then reads right) or
 * fail with that error (the outer vmp_guard returns -EDEADLK, the page is
 * not installed and can be loaded again).  Two threads on the page at once
 * both finish.  Without a guard the thread dies of SIGBUS with the message
 * (forked child) instead of hanging.
 */
static void child_selfref_unguarded(void *arg)
{
	struct selfref_env *e = arg;
	const size_t ps = os_page();

	selfref_init(e, 0, false, false);
	child_check_rc(vmp_ram_new(&e->ram, 0), 0);
	child_check_rc(open_fh_ops(&e->fh, e->ram, &e->ops, &e->s, e->s.ps, 0),
		       0);
	child_check_rc(vmp_set_fault_error_handler(e->fh, selfref_errfn, &e->s), 0);
	child_check_rc(vmp_mmap(e->fh, 0, e->s.n, PROT_READ, (void **)&e->s.map), 0);
	child_check_rc(vmp_fault_handler_install(), 0);
	(void)peek(e->s.map + 5 * ps);
	child_check(!"the read of a self-touching page returned");
}

static void test_loadblk_touches_own_page(void **state)
{
	struct selfref_env e;
	struct selfref_reader rd[4];
	pthread_t tid[4];
	struct child_result res;
	uint8_t v;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_loadblk_touches_own_page");

	/* guarded inside, load goes on */
	selfref_open(&e, 0, true, false);
	assert_ok(guarded_peek(e.s.map + 5 * e.s.ps, &v));
	assert_rc(e.s.inner[5], -EDEADLK);
	assert_int_equal(e.s.err_what, VMP_FAULT_RECURSION);
	assert_rc(e.s.err_err, -EDEADLK);
	assert_u64(e.s.err_blk, 5);
	assert_int_equal(gen_check(e.s.map + 5 * e.s.ps, e.s.ps, 5, 0), 0);
	selfref_close(&e);

	/* guarded inside, load fails with it; 4 threads on the page */
	selfref_open(&e, 0, true, true);
	for (int i = 0; i < 4; i++) {
		rd[i] = (struct selfref_reader){ &e.s, 6, 1 };
		assert_int_equal(pthread_create(&tid[i], NULL,
						selfref_reader_main, &rd[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		assert_rc(rd[i].rc, -EDEADLK);
	}
	assert_int_equal(e.s.err_what, VMP_FAULT_RECURSION);
	assert_u64(ram_stats(e.ram).resident_bytes, 0);
	e.s.touch = 1000; /* past the end: loadblk touches nothing now */
	assert_ok(guarded_peek(e.s.map + 6 * e.s.ps, &v));
	assert_int_equal(gen_check(e.s.map + 6 * e.s.ps, e.s.ps, 6, 0), 0);
	selfref_close(&e);

	/* no guard: SIGBUS and the message, in a child */
	run_child(child_selfref_unguarded, &e, &res);
	assert_child_signaled(&res, SIGBUS);
	if (!strstr(res.err, "loadblk touched the page it is loading"))
		fail_msg("no recursion message on stderr: %s", res.err);
}

/*
 * A store built on its own handle: loadblk of an even block reads the next
 * (odd) page through the handle's own mapping, which is not the page being
 * loaded.  The API only forbids touching the page being loaded, so a
 * sequential scan must work: without any vmp_guard (in a child: a refusal
 * would be SIGBUS), and with one inside loadblk, where no fault may fail
 * (the error handler is never called).
 */
static void child_selfref_next_page(void *arg)
{
	struct selfref_env *e = arg;
	const size_t ps = os_page();

	selfref_init(e, 1, false, false);
	child_check_rc(vmp_ram_new(&e->ram, 0), 0);
	child_check_rc(open_fh_ops(&e->fh, e->ram, &e->ops, &e->s, e->s.ps, 0),
		       0);
	child_check_rc(vmp_mmap(e->fh, 0, e->s.n, PROT_READ, (void **)&e->s.map), 0);
	child_check_rc(vmp_fault_handler_install(), 0);
	for (uint64_t b = 0; b < e->s.n; b++)
		child_check(gen_check(e->s.map + b * ps, ps, b, 0) == 0);
}

static void test_loadblk_reads_other_page_of_own_handle(void **state)
{
	struct selfref_env e;
	struct child_result res;
	uint8_t v;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_loadblk_reads_other_page_of_own_handle");
	run_child(child_selfref_next_page, &e, &res);
	if (!WIFEXITED(res.status) || WEXITSTATUS(res.status))
		fail_msg("a sequential scan of a store whose loadblk(b) reads "
			 "page b+1 of its own mapping died (status %#x); its "
			 "stderr:\n%s", res.status, res.err);

	selfref_open(&e, 1, true, true);
	for (uint64_t b = 0; b < e.s.n; b++) {
		int rc = guarded_peek(e.s.map + b * e.s.ps, &v);
		if (rc)
			fail_msg("sequential read of page %llu failed: %s (its "
				 "loadblk's touch of page %llu: %s; the fault "
				 "error handler saw what=%d for block %llu)",
				 (unsigned long long)b, errname(rc),
				 (unsigned long long)b + 1,
				 errname(e.s.inner[b]), e.s.err_what,
				 (unsigned long long)e.s.err_blk);
		if (gen_check(e.s.map + b * e.s.ps, e.s.ps, b, 0)) {
			uint64_t x;
			for (x = 0; x < e.s.n; x++)
				if (!gen_check(e.s.map + b * e.s.ps, e.s.ps, x, 0))
					break;
			fail_msg("page %llu holds the bytes of %s %llu: a "
				 "nested load (its loadblk's touch of page "
				 "%llu) overwrote this load's buffer",
				 (unsigned long long)b,
				 x < e.s.n ? "page" : "no page, not even",
				 (unsigned long long)x,
				 (unsigned long long)b + 1);
		}
	}
	if (e.s.err_calls)
		fail_msg("%d faults failed during the scan; the first: what=%d "
			 "(%s), block %llu, %s", e.s.err_calls, e.s.err_what,
			 e.s.err_what == VMP_FAULT_RECURSION ? "recursion" : "?",
			 (unsigned long long)e.s.err_blk, errname(e.s.err_err));
	selfref_close(&e);
}

#define T(f)                                                                   \
	cmocka_unit_test_setup_teardown(f, thread_test_setup,                  \
					thread_test_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_parallel_loads),
		T(test_parallel_loads_adjacent),
		T(test_same_page),
		T(test_invalidate_during_load),
		T(test_invalidate_during_readahead),
		T(test_invalidate_vs_faults),
		T(test_discard_vs_faults),
		T(test_reclaim_vs_faults),
		T(test_writeout_vs_writers),
		T(test_reads_never_dirty),
		T(test_mmap_munmap_vs_faults),
		T(test_store_on_mapped_store),
		T(test_scans_in_lanes),
		T(test_lanes_fork),
		T(test_lanes_without_fds),
		T(test_lanes_shown_none_merge),
		T(test_loadblk_touches_own_page),
		T(test_loadblk_reads_other_page_of_own_handle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
