/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-selfstore.c: stores whose loadblk reads other pages of their own
 * handle, from several threads at once.  The library must never deadlock
 * there: a thread whose loadblk needs a page that another thread's
 * read-ahead holds but has not started takes that page over; a wait that
 * would close a cycle of threads waiting for each other takes the page over
 * too; and a true cycle of the store (loadblk(a) needs b, loadblk(b) needs
 * a) is refused with -EDEADLK in one thread, as it is in a single thread.
 * Then the same across two handles, a delta chain in one thread,
 * read-ahead nested in a load, re-arming the handler while loads nest,
 * and random dependencies from 4-8 threads (VMPAGE_STRESS_SECONDS, a
 * quarter each; VMPAGE_SEED replays the dependencies; VMPAGE_TEST_FILTER
 * picks tests by name).
 *
 * Every test runs under a watchdog: a deadlock aborts with a message.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "thread-util.h"

#define NPAGES 512

/*
 * The store: block b holds gen_fill(b, 0); loadblk(b) first reads one byte
 * of page dep[b] (if >= 0) through ->map, a mapping of its own handle or
 * of another one, under vmp_guard.  Two loads chosen with meet_arm() wait
 * for each other once (so that both are inside loadblk at the same time).
 * The store with loadblks does the same per block.
 */
struct dstore {
	size_t ps;
	uint64_t n;
	int dep[NPAGES];       /* atomic: page loadblk reads, -1 none */
	char *map;             /* where deps are read: a whole handle */
	bool fail_inner;       /* loadblk fails with a failed read's error */
	unsigned loads[NPAGES]; /* atomic: loadblk (or loadblks) per block */
	int inner[NPAGES];      /* atomic: the dependency read's result */
	unsigned refusals;      /* atomic: dependency reads that got -EDEADLK */
};

static bool sem_wait_secs(sem_t *s, int secs)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	while (sem_timedwait(s, &ts) < 0)
		if (errno != EINTR)
			return false;
	return true;
}

/* Two loads that wait for each other once (the tests run one at a time). */
static struct meeting {
	const struct dstore *store[2];
	uint64_t blk[2];
	bool met[2]; /* atomic */
	sem_t arrived[2];
} meeting;

/* The next loads of block @a of @sa and block @b of @sb meet. */
static void meet_arm(const struct dstore *sa, uint64_t a,
		     const struct dstore *sb, uint64_t b)
{
	meeting = (struct meeting){ { sa, sb }, { a, b }, { false, false } };
	sem_init(&meeting.arrived[0], 0, 0);
	sem_init(&meeting.arrived[1], 0, 0);
}

/* One of them arrives: wait (at most 5 s) for the other. */
static void dstore_meet(const struct dstore *s, uint64_t blk)
{
	for (int i = 0; i < 2; i++) {
		if (meeting.store[i] != s || meeting.blk[i] != blk ||
		    __atomic_exchange_n(&meeting.met[i], true, __ATOMIC_RELAXED))
			continue;
		sem_post(&meeting.arrived[i]);
		if (!sem_wait_secs(&meeting.arrived[1 - i], 5))
			tfail("block %llu: the other load never met it",
			      (unsigned long long)blk);
	}
}

static int dstore_load_one(struct dstore *s, uint64_t blk, void *buf)
{
	int dep = __atomic_load_n(&s->dep[blk], __ATOMIC_RELAXED), rc = 0;
	uint8_t v;

	__atomic_add_fetch(&s->loads[blk], 1, __ATOMIC_RELAXED);
	dstore_meet(s, blk);
	if (dep >= 0) {
		rc = guarded_peek(s->map + (size_t)dep * s->ps, &v);
		__atomic_store_n(&s->inner[blk], rc, __ATOMIC_RELAXED);
		if (rc == -EDEADLK)
			__atomic_add_fetch(&s->refusals, 1, __ATOMIC_RELAXED);
	}
	gen_fill(buf, s->ps, blk, 0);
	return s->fail_inner ? rc : 0;
}

static int dstore_loadblk(void *ctx, uint64_t blk, void *buf)
{
	return dstore_load_one(ctx, blk, buf);
}

static int dstore_loadblks(void *ctx, uint64_t blk, uint64_t n, void *buf)
{
	struct dstore *s = ctx;

	for (uint64_t i = 0; i < n; i++) {
		int rc = dstore_load_one(s, blk + i, (char *)buf + i * s->ps);
		if (rc)
			return rc;
	}
	return 0;
}

static const vmp_store_ops dstore_ops = { .loadblk = dstore_loadblk };
static const vmp_store_ops dstore_batch_ops = {
	.loadblk = dstore_loadblk,
	.loadblks = dstore_loadblks,
};

struct env {
	struct dstore s;
	vmp_ram *ram;
	vmp_fileh *fh;
};

/* A handle of @n pages on the store, nothing depending on anything yet. */
static struct env *env_open(uint64_t n, bool batch, uint64_t limit_pages)
{
	struct env *e = calloc(1, sizeof(*e));
	size_t ps = os_page();

	assert_non_null(e);
	assert_true(n <= NPAGES);
	e->s.ps = ps;
	e->s.n = n;
	for (int i = 0; i < NPAGES; i++)
		e->s.dep[i] = -1;
	assert_ok(vmp_ram_new(&e->ram, limit_pages * ps));
	assert_ok(open_fh_ops(&e->fh, e->ram,
			      batch ? &dstore_batch_ops : &dstore_ops, &e->s,
			      ps, 0));
	e->s.map = map_pages(e->fh, 0, n, PROT_READ);
	return e;
}

static void env_close(struct env *e)
{
	assert_ok(vmp_munmap(e->s.map));
	assert_ok(vmp_fileh_close(e->fh));
	assert_ok(vmp_ram_free(e->ram));
	free(e);
}

/* Every page reads right (loads what is missing, the deps cleared first). */
static void check_all_pages(struct env *e)
{
	for (uint64_t b = 0; b < e->s.n; b++)
		__atomic_store_n(&e->s.dep[b], -1, __ATOMIC_RELAXED);
	for (uint64_t b = 0; b < e->s.n; b++) {
		uint8_t v;
		assert_ok(guarded_peek(e->s.map + b * e->s.ps, &v));
		if (gen_check(e->s.map + b * e->s.ps, e->s.ps, b, 0))
			fail_msg("page %llu does not hold its bytes",
				 (unsigned long long)b);
	}
}

struct reader {
	const char *addr;
	int rc;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t v;

	r->rc = guarded_peek(r->addr, &v);
	return NULL;
}

/* Read @a in thread T and @b in thread U at once; their results. */
static void read_two(const char *a, const char *b, int rc[2])
{
	struct reader rd[2] = { { a, 1 }, { b, 1 } };
	pthread_t tid[2];

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&tid[i], NULL, reader_main,
						&rd[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(tid[i], NULL);
		rc[i] = rd[i].rc;
	}
	assert_no_thread_failure();
}

/*
 * Two sequential readers (each stream has its own read-ahead window): after
 * faults at 0, 1, 2 (the last loads [2, 6)), T's fault on page 6 loads
 * [6, 22) in one run; U's on page 46 loads [46, 62) likewise.  Inside
 * loadblk(6), T reads page 47, which U's run holds; inside loadblk(46), U
 * reads page 11, which T's run holds.
 * Neither may wait for the other: each takes the page it needs over (with
 * loadblk, before its owner started it: every block loads once; with
 * loadblks, whose batch is in progress, the second thread to wait sees the
 * cycle and loads its page itself).
 */
static void cross_readahead(bool batch)
{
	struct env *e = env_open(64, batch, 0);
	size_t ps = e->s.ps;
	char *mt = map_pages(e->fh, 0, 64, PROT_READ);
	char *mu = map_pages(e->fh, 0, 64, PROT_READ);
	int rc[2];

	/* start each stream: faults at 0, 1, 2 and 40, 41, 42 */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(gen_check(mt + i * ps, ps, i, 0), 0);
		assert_int_equal(gen_check(mu + (40 + i) * ps, ps, 40 + i, 0), 0);
	}
	assert_u64(ram_stats(e->ram).readahead_pages, 6);

	e->s.dep[6] = 47;
	e->s.dep[46] = 11;
	meet_arm(&e->s, 6, &e->s, 46);
	read_two(mt + 6 * ps, mu + 46 * ps, rc);
	assert_ok(rc[0]);
	assert_ok(rc[1]);
	assert_ok(e->s.inner[6]);
	assert_ok(e->s.inner[46]);
	if (!batch) {
		/* the runs did get their windows, and nothing loaded twice */
		assert_true(ram_stats(e->ram).readahead_pages >= 6 + 2 * 14);
		for (int b = 0; b < 64; b++)
			if (e->s.loads[b] > 1)
				fail_msg("block %d loaded %u times", b, e->s.loads[b]);
	}
	check_all_pages(e);
	assert_ok(vmp_munmap(mt));
	assert_ok(vmp_munmap(mu));
	env_close(e);
}

static void test_cross_readahead(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(30, "test_cross_readahead");
	cross_readahead(false);
}

static void test_cross_readahead_batch(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(30, "test_cross_readahead_batch");
	cross_readahead(true);
}

/*
 * A delta chain: loadblk(b) reads page b - 1 of its own handle; one thread
 * reads the pages in order, so the read-ahead window holds both.  Reading
 * the previous block of one's own window is not a cycle: no -EDEADLK ever.
 * With loadblk nothing loads twice (the filled blocks are committed when
 * the next one needs them).  With loadblks, the first batch that reads
 * itself is all "in progress": its blocks load again one by one, nested,
 * and from then on the handle's runs go block by block.
 */
static void delta_chain(bool batch)
{
	struct env *e = env_open(256, batch, 0);
	unsigned twice = 0;

	for (int b = 1; b < 256; b++)
		e->s.dep[b] = b - 1;
	for (uint64_t b = 0; b < 256; b++)
		assert_int_equal(gen_check(e->s.map + b * e->s.ps, e->s.ps, b, 0), 0);
	assert_int_equal(e->s.refusals, 0);
	for (int b = 0; b < 256; b++)
		twice += e->s.loads[b] > 1;
	if (twice > (batch ? 4u : 0u))
		fail_msg("%u blocks loaded twice", twice);
	assert_true(ram_stats(e->ram).readahead_pages > 128);
	env_close(e);
}

static void test_delta_chain(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(30, "test_delta_chain");
	delta_chain(false);
	delta_chain(true);
}

/*
 * Read-ahead inside a load is not a dependency.  One thread reads pages 100,
 * 101 and 102 through a mapping of its own; loadblk(100), (101), (102) read
 * pages 10, 11, 12 through the store's mapping, so that the nested fault on
 * 12 continues a stream there and loads [12, 16) ahead.  loadblk(13),
 * read-ahead, reads page 102, whose load is waiting for that very run:
 * 102 does not need 13 (the deps have no cycle), so this must not be
 * -EDEADLK; 102 is loaded once more, nested, and the pages read right.
 */
static void readahead_inside_load(bool batch)
{
	struct env *e = env_open(128, batch, 0);
	size_t ps = e->s.ps;
	char *mt = map_pages(e->fh, 0, 128, PROT_READ);

	e->s.dep[100] = 10;
	e->s.dep[101] = 11;
	e->s.dep[102] = 12;
	e->s.dep[13] = 102;
	for (int b = 100; b < 103; b++)
		assert_int_equal(gen_check(mt + b * ps, ps, b, 0), 0);
	assert_int_equal(e->s.refusals, 0);
	assert_true(e->s.loads[13] >= 1); /* the case did happen */
	check_all_pages(e);
	assert_ok(vmp_munmap(mt));
	env_close(e);
}

static void test_readahead_inside_load(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(30, "test_readahead_inside_load");
	readahead_inside_load(false);
	readahead_inside_load(true);
}

/*
 * A true cycle: loadblk(5) reads page 45 and loadblk(45) reads page 5, in
 * two threads at once.  In one thread this is loadblk touching the page it
 * loads (-EDEADLK); in two it must be the same, never a hang.  A store that
 * goes on after the refused read loads both pages; one that fails with it
 * makes the reads fail with -EDEADLK; either way the pages load afterwards.
 */
static void true_cycle(bool batch, bool fail_inner)
{
	struct env *e = env_open(64, batch, 0);
	size_t ps = e->s.ps;
	int rc[2], refused = 0;

	e->s.fail_inner = fail_inner;
	e->s.dep[5] = 45;
	e->s.dep[45] = 5;
	meet_arm(&e->s, 5, &e->s, 45);
	read_two(e->s.map + 5 * ps, e->s.map + 45 * ps, rc);
	for (int i = 0; i < 2; i++) {
		if (rc[i] != 0 && rc[i] != -EDEADLK)
			fail_msg("read %d: %s, expected 0 or -EDEADLK", i,
				 errname(rc[i]));
		refused += rc[i] == -EDEADLK;
	}
	if (fail_inner)
		assert_true(refused >= 1);
	else
		assert_int_equal(refused, 0);
	assert_true(e->s.refusals >= 1);
	check_all_pages(e);
	env_close(e);
}

static void test_true_cycle(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(30, "test_true_cycle");
	true_cycle(false, false);
	true_cycle(false, true);
	true_cycle(true, false);
	true_cycle(true, true);
}

/*
 * Two handles in two RAMs, each store reading the other's mapping (a store
 * built on a mapped store, both ways): A's loadblk(6) reads B's page 46,
 * whose loadblk reads A's page 6 — a true cycle through two handles, in
 * two threads — and then A's loadblk(6) reads B's page 47, which B's
 * read-ahead holds, while B's loadblk(46) reads A's page 11, which A's
 * holds.  The waits graph spans handles and RAMs: no hang either way.
 */
static void test_cross_handles(void **state)
{
	size_t ps = os_page();
	int rc[2];

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(30, "test_cross_handles");
	for (int round = 0; round < 2; round++) {
		bool cycle = round == 0;
		struct env *a = env_open(64, false, 0), *b = env_open(64, false, 0);
		char *ma = map_pages(a->fh, 0, 64, PROT_READ);
		char *mb = map_pages(b->fh, 0, 64, PROT_READ);
		char *own_a = a->s.map, *own_b = b->s.map;

		a->s.map = own_b; /* each reads the other handle */
		b->s.map = own_a;
		/* start the streams: faults at 0, 1, 2 and 40, 41, 42 */
		for (int i = 0; i < 3 && !cycle; i++) {
			assert_int_equal(gen_check(ma + i * ps, ps, i, 0), 0);
			assert_int_equal(gen_check(mb + (40 + i) * ps, ps, 40 + i,
						   0), 0);
		}
		a->s.dep[6] = cycle ? 46 : 47;
		b->s.dep[46] = cycle ? 6 : 11;
		meet_arm(&a->s, 6, &b->s, 46);
		read_two(ma + 6 * ps, mb + 46 * ps, rc);
		assert_ok(rc[0]);
		assert_ok(rc[1]);
		if (cycle)
			assert_true(a->s.refusals + b->s.refusals >= 1);
		else
			assert_int_equal(a->s.refusals + b->s.refusals, 0);
		a->s.map = own_a;
		b->s.map = own_b;
		check_all_pages(a);
		check_all_pages(b);
		assert_ok(vmp_munmap(ma));
		assert_ok(vmp_munmap(mb));
		env_close(a);
		env_close(b);
	}
}

/*
 * vmp_mmap (and vmp_fault_handler_install) put the fault handler back when
 * the program took SIGSEGV over; while other threads fault, that must never
 * leave a moment in which the handler runs with SIGSEGV blocked, or a
 * loadblk's nested fault kills the process.  One thread re-arms and maps
 * in a loop while another reads pages whose loadblk reads another page.
 * In a child, so that such a death is seen as one.
 */
static bool rearm_stop; /* atomic */

static void *rearm_main(void *arg)
{
	vmp_fileh *fh = arg;
	void *m;

	while (!__atomic_load_n(&rearm_stop, __ATOMIC_RELAXED)) {
		if (vmp_fault_handler_install() ||
		    vmp_mmap(fh, 0, 1, PROT_READ, &m) || vmp_munmap(m))
			break;
	}
	return NULL;
}

static void child_rearm(void *arg)
{
	struct dstore *s = arg;
	vmp_ram *ram;
	vmp_fileh *fh;
	pthread_t tid;

	child_check_rc(vmp_ram_new(&ram, 0), 0);
	child_check_rc(open_fh_ops(&fh, ram, &dstore_ops, s, s->ps, 0), 0);
	child_check_rc(vmp_mmap(fh, 0, s->n, PROT_READ, (void **)&s->map), 0);
	child_check(pthread_create(&tid, NULL, rearm_main, fh) == 0);
	/* up to 3000 rounds, 4 s at most: the child's alarm is 10 s, and a
	 * sanitizer build on a loaded machine is slow */
	uint64_t deadline = now_ns() + 4000000000ull;
	for (int round = 0; round < 3000 && now_ns() < deadline; round++) {
		for (uint64_t b = 0; b < 32; b++)
			child_check(gen_check(s->map + b * s->ps, s->ps, b, 0) == 0);
		child_check_rc(vmp_invalidate(fh, 0, s->n), 0);
	}
	__atomic_store_n(&rearm_stop, true, __ATOMIC_RELAXED);
	pthread_join(tid, NULL);
	child_check(s->refusals == 0);
}

static void test_rearm_while_nested(void **state)
{
	struct dstore *s = calloc(1, sizeof(*s));
	struct child_result res;

	(void)state;
#ifdef TEST_TSAN
	/* TSan runs signal handlers with every signal blocked whatever the
	 * flags (the library unblocks SIGSEGV itself there), so the window
	 * under test does not exist; and it cannot be trusted with threads
	 * in a forked child (it hung there once in CI). */
	free(s);
	skip();
#endif
	assert_non_null(s);
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(60, "test_rearm_while_nested");
	s->ps = os_page();
	s->n = 64;
	for (int b = 0; b < NPAGES; b++)
		s->dep[b] = b < 32 ? b + 32 : -1;
	run_child(child_rearm, s, &res);
	assert_child_exited_ok(&res);
	free(s);
}

/* --- random dependencies, many threads --------------------------------- */

struct rstress {
	struct env *e;
	uint64_t deadline;
	uint64_t seed;
	unsigned nthreads;
	bool cycles;        /* deps may form cycles: -EDEADLK is allowed,
			       and -ELOOP (nested deeper than the library
			       allows) */
	bool limited;       /* a memory limit: -ENOMEM is allowed */
	uint64_t reads, refused, enomem; /* atomic */
};

/* Check page @blk at @addr under vmp_guard (a memory limit may drop it
 * between two accesses): 0, 1 for wrong bytes, or the fault's error. */
struct pcheck {
	const char *addr;
	size_t ps;
	uint64_t blk;
};

static int pcheck_run(void *arg)
{
	const struct pcheck *c = arg;

	return gen_check(c->addr, c->ps, c->blk, 0) ? 1 : 0;
}

static int guarded_check(const char *addr, size_t ps, uint64_t blk)
{
	struct pcheck c = { addr, ps, blk };

	return vmp_guard(pcheck_run, &c);
}

struct rworker {
	struct rstress *rs;
	unsigned idx;
};

static void *rworker_main(void *arg)
{
	struct rworker *w = arg;
	struct rstress *rs = w->rs;
	struct env *e = rs->e;
	size_t ps = e->s.ps;
	struct rng rng;
	/* a mapping of its own: its own read-ahead window */
	char *map = NULL;

	rng_seed(&rng, rs->seed * 31 + w->idx);
	if (vmp_mmap(e->fh, 0, e->s.n, PROT_READ, (void **)&map)) {
		tfail("thread %u: vmp_mmap failed", w->idx);
		return NULL;
	}
	while (now_ns() < rs->deadline && !tfailed()) {
		uint64_t b = rng_below(&rng, e->s.n);
		uint64_t len = rng_below(&rng, 4) ? 1 + rng_below(&rng, 64) : 1;
		int op = (int)rng_below(&rng, 100);

		if (op < 3) { /* drop a range: loads start over there */
			uint64_t n = 1 + rng_below(&rng, 32);
			if (b + n > e->s.n)
				n = e->s.n - b;
			if (vmp_invalidate(e->fh, b, n))
				tfail("vmp_invalidate failed");
			continue;
		}
		for (uint64_t i = b; i < b + len && i < e->s.n; i++) {
			int rc = guarded_check(map + i * ps, ps, i);
			__atomic_add_fetch(&rs->reads, 1, __ATOMIC_RELAXED);
			if ((rc == -EDEADLK || rc == -ELOOP) && rs->cycles) {
				__atomic_add_fetch(&rs->refused, 1, __ATOMIC_RELAXED);
				continue;
			}
			if (rc == -ENOMEM && rs->limited) {
				/* every page of the budget loading */
				__atomic_add_fetch(&rs->enomem, 1, __ATOMIC_RELAXED);
				continue;
			}
			if (rc) {
				tfail("thread %u: page %llu: %s", w->idx,
				      (unsigned long long)i,
				      rc > 0 ? "wrong bytes" : errname(rc));
				break;
			}
		}
	}
	if (vmp_munmap(map))
		tfail("thread %u: vmp_munmap failed", w->idx);
	return NULL;
}

/*
 * @nthreads threads read random runs of pages through mappings of their
 * own, and now and then invalidate a range, for a share of
 * VMPAGE_STRESS_SECONDS; loadblk(b) reads page dep[b].  Without @cycles the
 * deps are acyclic (each page depends on one of lower rank, in a random
 * order of ranks, in chains at most 9 pages long), so every read must
 * succeed with the right bytes; with them, reads may be refused with
 * -EDEADLK (or -ELOOP, a chain nested too deep) but must never hang.
 */
static void rstress_run(const char *name, unsigned nthreads, bool batch,
			bool cycles, uint64_t limit_pages, double share)
{
	struct rstress rs = { .nthreads = nthreads, .cycles = cycles,
			      .limited = limit_pages != 0 };
	struct rworker w[16];
	pthread_t tid[16];
	uint64_t order[NPAGES], depth[NPAGES] = { 0 };
	struct rng rng;
	uint64_t n = NPAGES;

	rs.seed = test_seed(now_ns() ^ (uint64_t)getpid() << 32);
	rng_seed(&rng, rs.seed);
	rs.e = env_open(n, batch, limit_pages);
	rs.e->s.fail_inner = cycles; /* a refused read fails the outer one */
	/* a random order of the pages: page order[i] has rank i */
	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j = rng_below(&rng, i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	/* in rank order, so that a dep's chain is known; at most 8 deep */
	for (uint64_t i = 0; i < n; i++) {
		uint64_t b = order[i], d;
		if (rng_below(&rng, 4) == 0)
			continue; /* a leaf */
		if (cycles) {
			rs.e->s.dep[b] = (int)rng_below(&rng, n);
		} else if (i > 0 && depth[d = order[rng_below(&rng, i)]] < 8) {
			rs.e->s.dep[b] = (int)d;
			depth[b] = depth[d] + 1;
		}
	}
	rs.deadline = now_ns() + (uint64_t)(stress_seconds() * share * 1e9);
	print_message("%s: %u threads, %s, %s, seed %#llx (VMPAGE_SEED)\n",
		      name, nthreads, batch ? "loadblks" : "loadblk",
		      cycles ? "cyclic deps" : "acyclic deps",
		      (unsigned long long)rs.seed);
	assert_true(nthreads <= ARRAY_LEN(w));
	for (unsigned i = 0; i < nthreads; i++) {
		w[i] = (struct rworker){ &rs, i };
		assert_int_equal(pthread_create(&tid[i], NULL, rworker_main,
						&w[i]), 0);
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(tid[i], NULL);
	print_message("%s: %llu reads, %llu refused (-EDEADLK, -ELOOP), %llu -ENOMEM, "
		      "%llu loads taken over\n", name, (unsigned long long)rs.reads,
		      (unsigned long long)rs.refused, (unsigned long long)rs.enomem,
		      (unsigned long long)ram_stats(rs.e->ram).takeovers);
	assert_no_thread_failure();
	if (!cycles) /* no dependency read refused: no false cycle */
		assert_int_equal(rs.e->s.refusals, 0);
	check_all_pages(rs.e);
	env_close(rs.e);
}

#define RSTRESS(fn, nthreads, batch, cycles, limit_pages)                      \
	static void fn(void **state)                                           \
	{                                                                      \
		(void)state;                                                   \
		assert_ok(vmp_fault_handler_install());                        \
		watchdog_arm((unsigned)(stress_seconds() / 4) + 60, #fn);      \
		rstress_run(#fn, nthreads, batch, cycles, limit_pages, 0.25);  \
	}

RSTRESS(rstress_4_threads, 4, false, false, 0)
RSTRESS(rstress_8_threads_batch, 8, true, false, 0)
RSTRESS(rstress_8_threads_limit, 8, false, false, 64)
RSTRESS(rstress_4_threads_cycles, 4, true, true, 0)

#define T(f)                                                                   \
	cmocka_unit_test_setup_teardown(f, thread_test_setup,                  \
					thread_test_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_cross_readahead),
		T(test_cross_readahead_batch),
		T(test_delta_chain),
		T(test_readahead_inside_load),
		T(test_true_cycle),
		T(test_cross_handles),
		T(test_rearm_while_nested),
		T(rstress_4_threads),
		T(rstress_8_threads_batch),
		T(rstress_8_threads_limit),
		T(rstress_4_threads_cycles),
	};

	if (getenv("VMPAGE_TEST_FILTER")) /* e.g. "rstress_8*" */
		cmocka_set_test_filter(getenv("VMPAGE_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
