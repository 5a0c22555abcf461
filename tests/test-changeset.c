/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-changeset.c: dirty pages as a transaction (issue 3), one test per
 * promised behaviour, failure paths included.
 *
 * Each test runs twice over a file-backed mock store: as a normal handle
 * ("/normal") and as a VMP_OVERLAY handle ("/overlay"), where clean pages
 * come from the kernel's page cache of the store's file.  Where the modes
 * differ only in what is observable (an overlay handle does not call
 * loadblk for clean pages and does not charge them to the RAM), the test
 * checks load counts and resident bytes in normal mode only.  If the
 * library refuses VMP_OVERLAY (-EINVAL, -EOPNOTSUPP) the overlay runs are
 * skipped.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define NPAGES 64

struct mode {
	const char *name;
	unsigned flags;
};
static const struct mode mode_normal = { "normal", 0 };
static const struct mode mode_overlay = { "overlay", VMP_OVERLAY };

struct fix {
	const struct mode *mode;
	bool overlay;
	bool skip;        /* the library refused VMP_OVERLAY */
	int fds;
	size_t ps;
	struct mock *m;   /* MOCK_FILE, NPAGES blocks */
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;          /* all NPAGES pages, read-write */
};

/* Open a handle of the fixture's mode on @m; NULL if overlay is refused. */
static vmp_fileh *open_mode(struct fix *f, struct mock *m)
{
	vmp_fileh *fh = NULL;
	int rc = vmp_fileh_open(&fh, f->ram, m->store, f->mode->flags);

	if (f->overlay && (rc == -EINVAL || rc == -EOPNOTSUPP))
		return NULL;
	assert_ok(rc);
	return fh;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->mode = *state;
	f->overlay = f->mode->flags & VMP_OVERLAY;
	f->fds = count_open_fds();
	f->ps = os_page();
	f->m = mock_new(f->ps, NPAGES, MOCK_FILE);
	assert_ok(vmp_ram_new(&f->ram, 0));
	f->fh = open_mode(f, f->m);
	if (f->fh)
		f->p = map_pages(f->fh, 0, NPAGES, PROT_READ | PROT_WRITE);
	else
		f->skip = true;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	if (f->p)
		assert_ok(vmp_munmap(f->p));
	if (f->fh)
		assert_ok(vmp_fileh_close(f->fh));
	assert_ok(vmp_ram_free(f->ram));
	mock_free(f->m);
	assert_no_fd_leak(f->fds);
	free(f);
	return 0;
}

/* Start of every test: the fixture, or skip; then re-arm the handler. */
static struct fix *begin(void **state)
{
	struct fix *f = *state;

	if (f->skip) {
		print_message("VMP_OVERLAY not supported: skipped\n");
		skip();
	}
	assert_ok(vmp_fault_handler_install());
	return f;
}

static char *pg(struct fix *f, uint64_t i)
{
	return f->p + i * f->ps;
}

/* Page @i of the mapping holds what the store holds for block @i. */
static void assert_page_is_store(struct fix *f, const char *page, uint64_t i)
{
	if (mock_check(f->m, i, page))
		fail_msg("page %llu differs from the store",
			 (unsigned long long)i);
}

/* Write a pattern over page @i that depends on @i and @salt. */
static void scribble(struct fix *f, uint64_t i, uint8_t salt)
{
	for (size_t off = 0; off < f->ps; off += 64)
		pg(f, i)[off] = (char)(i * 7 + off / 64 + salt);
}

static char *copy_page(struct fix *f, uint64_t i)
{
	char *c = malloc(f->ps);

	assert_non_null(c);
	memcpy(c, pg(f, i), f->ps);
	return c;
}

/* --- first write ---------------------------------------------------------- */

static void test_first_write_dirties(void **state)
{
	struct fix *f = begin(state);
	struct vmp_stats st;

	(void)peek(pg(f, 3));
	assert_u64(dirty_count(f->fh), 0);
	pg(f, 3)[100] ^= 1;
	assert_u64(dirty_count(f->fh), 1);
	pg(f, 3)[100] ^= 1; /* back to the store's bytes, still dirty */
	assert_page_is_store(f, pg(f, 3), 3);

	/* First touch by a write: loaded, then dirtied. */
	pg(f, 5)[9] = 'w';
	assert_u64(dirty_count(f->fh), 2);
	assert_int_equal(pg(f, 5)[9], 'w');
	pg(f, 5)[9] = (char)gen_byte(5, 9, 0);
	assert_page_is_store(f, pg(f, 5), 5);
	pg(f, 5)[10] = 'x';
	assert_u64(dirty_count(f->fh), 2);

	st = ram_stats(f->ram);
	assert_u64(st.dirty_bytes, 2 * f->ps);
	if (!f->overlay) {
		assert_u64(mock_loads(f->m, 3), 1);
		assert_u64(mock_loads(f->m, 5), 1);
		assert_u64(st.resident_bytes, st.loads * f->ps);
	} else {
		assert_u64(st.resident_bytes, 2 * f->ps);
	}
	assert_u64(f->m->store_calls, 0);
}

/* --- writeout ------------------------------------------------------------- */

static void test_writeout_store_once_per_dirty(void **state)
{
	struct fix *f = begin(state);
	const uint64_t dirty[] = { 2, 9, 30 }; /* page order */

	scribble(f, 9, 1);
	scribble(f, 2, 2);
	scribble(f, 30, 3);
	(void)peek(pg(f, 10));
	(void)peek(pg(f, 11));

	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE));
	assert_u64(f->m->store_calls, 3);
	for (size_t i = 0; i < ARRAY_LEN(dirty); i++) {
		assert_u64(mock_stores(f->m, dirty[i]), 1);
		assert_u64(f->m->store_order[i], dirty[i]);
		/* The store got the page's current bytes. */
		assert_page_is_store(f, pg(f, dirty[i]), dirty[i]);
	}
	assert_string_equal(mock_events(f->m), "BSSSC");
	/* STORE alone leaves them dirty. */
	assert_u64(dirty_count(f->fh), 3);

	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_MARKSTORED));
	assert_u64(dirty_count(f->fh), 0);
	assert_u64(ram_stats(f->ram).dirty_bytes, 0);
	assert_u64(f->m->store_calls, 3);

	/* Nothing dirty: nothing stored. */
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_u64(f->m->store_calls, 3);
	assert_u64(dirty_count(f->fh), 0);
}

/* Cost follows the dirty list: 3 dirty pages of a 1 TiB mapping with many
 * clean pages make exactly 3 storeblk calls.  An in-memory store (no base
 * file), so normal mode only. */
static void test_writeout_1tib_three_dirty(void **state)
{
	const size_t ps = os_page();
	const uint64_t npages = BIG_SPAN / ps;
	const uint64_t dirty[] = { 0, npages / 2 + 12345, npages - 1 };
	struct mock *m = mock_new(ps, npages, 0);
	struct timespec t0, t1;
	struct rng r;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	rng_seed(&r, test_seed(3));
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 0, npages, PROT_READ | PROT_WRITE);
	for (int i = 0; i < 500; i++)
		(void)peek(p + rng_below(&r, npages) * ps);
	for (size_t i = 0; i < ARRAY_LEN(dirty); i++)
		p[dirty[i] * ps + 1] = 'D';
	assert_u64(dirty_count(fh), 3);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE |
				   VMP_WRITEOUT_MARKSTORED));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("writeout of 3 dirty pages in 1 TiB: %.3f ms\n",
		      (t1.tv_sec - t0.tv_sec) * 1e3 +
			      (t1.tv_nsec - t0.tv_nsec) / 1e6);
	assert_u64(m->store_calls, 3);
	assert_string_equal(mock_events(m), "BSSSC");
	for (size_t i = 0; i < ARRAY_LEN(dirty); i++) {
		assert_u64(m->store_order[i], dirty[i]);
		assert_int_equal(mock_check(m, dirty[i], p + dirty[i] * ps), 0);
	}
	assert_u64(dirty_count(fh), 0);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* A store without begin/commit/abort writes out all the same. */
static void test_writeout_without_hooks(void **state)
{
	struct fix *f = begin(state);
	struct mock *m = mock_new(f->ps, 8, MOCK_FILE | MOCK_NO_HOOKS);
	vmp_fileh *fh = open_mode(f, m);
	char *p = map_pages(fh, 0, 8, PROT_READ | PROT_WRITE);

	p[3 * f->ps] = 'h';
	p[5 * f->ps] = 'i';
	assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE |
				   VMP_WRITEOUT_MARKSTORED));
	assert_string_equal(mock_events(m), "SS");
	assert_int_equal(mock_check(m, 3, p + 3 * f->ps), 0);
	assert_int_equal(mock_check(m, 5, p + 5 * f->ps), 0);
	assert_u64(dirty_count(fh), 0);
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	mock_free(m);
}

/* --- failing writeouts ----------------------------------------------------- */

enum { NFAIL = 5 };
static const uint64_t fail_pages[NFAIL] = { 1, 3, 5, 7, 9 };

struct kept {
	char *copy[NFAIL];
	struct vmp_stats st;
};

/* Dirty the five pages and remember their bytes and the RAM's figures. */
static void dirty_five(struct fix *f, struct kept *k)
{
	for (int i = 0; i < NFAIL; i++) {
		scribble(f, fail_pages[i], (uint8_t)(0x40 + i));
		k->copy[i] = copy_page(f, fail_pages[i]);
	}
	k->st = ram_stats(f->ram);
	assert_u64(dirty_count(f->fh), NFAIL);
}

/* Every page that was dirty is still dirty, with its bytes. */
static void assert_kept(struct fix *f, const struct kept *k)
{
	struct vmp_stats st = ram_stats(f->ram);

	assert_u64(dirty_count(f->fh), NFAIL);
	assert_u64(st.dirty_bytes, k->st.dirty_bytes);
	assert_u64(st.resident_bytes, k->st.resident_bytes);
	for (int i = 0; i < NFAIL; i++)
		if (memcmp(pg(f, fail_pages[i]), k->copy[i], f->ps))
			fail_msg("dirty page %llu lost its bytes",
				 (unsigned long long)fail_pages[i]);
}

/* After the store recovers, a second writeout stores everything. */
static void retry_stores_all(struct fix *f, struct kept *k)
{
	mock_reset_counts(f->m);
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_string_equal(mock_events(f->m), "BSSSSSC");
	assert_u64(dirty_count(f->fh), 0);
	for (int i = 0; i < NFAIL; i++) {
		assert_u64(mock_stores(f->m, fail_pages[i]), 1);
		if (mock_check(f->m, fail_pages[i], k->copy[i]))
			fail_msg("store lacks page %llu after the retry",
				 (unsigned long long)fail_pages[i]);
		free(k->copy[i]);
	}
}

static void test_storeblk_fails_nth(void **state)
{
	struct fix *f = begin(state);
	struct kept k;

	dirty_five(f, &k);
	mock_set_fail(f->m, &f->m->fail_store, -1, 3, 1, -EIO);
	assert_rc(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
					      VMP_WRITEOUT_MARKSTORED),
		  -EIO);
	/* Stopped at the failure, aborted, nothing lost. */
	assert_string_equal(mock_events(f->m), "BSSxA");
	assert_kept(f, &k);

	/* A store that keeps failing: every attempt changes nothing. */
	mock_reset_counts(f->m);
	mock_set_fail(f->m, &f->m->fail_store, -1, 1, 0, -ENOSPC);
	for (int i = 0; i < 3; i++)
		assert_rc(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
						      VMP_WRITEOUT_MARKSTORED),
			  -ENOSPC);
	assert_string_equal(mock_events(f->m), "BxABxABxA");
	assert_kept(f, &k);

	retry_stores_all(f, &k);
}

static void test_commit_fails(void **state)
{
	struct fix *f = begin(state);
	struct kept k;

	dirty_five(f, &k);
	mock_set_fail(f->m, &f->m->fail_commit, -1, 1, 1, -ENOSPC);
	assert_rc(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
					      VMP_WRITEOUT_MARKSTORED),
		  -ENOSPC);
	/* The header: abort "called when a writeout fails after
	 * writeout_begin" - a failed commit is such a failure. */
	assert_string_equal(mock_events(f->m), "BSSSSScA");
	assert_kept(f, &k);
	retry_stores_all(f, &k);
}

static void test_begin_fails(void **state)
{
	struct fix *f = begin(state);
	struct kept k;

	dirty_five(f, &k);
	mock_set_fail(f->m, &f->m->fail_begin, -1, 1, 1, -EAGAIN);
	assert_rc(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
					      VMP_WRITEOUT_MARKSTORED),
		  -EAGAIN);
	assert_u64(f->m->store_calls, 0);
	assert_kept(f, &k);
	retry_stores_all(f, &k);
}

/* --- read-only store --------------------------------------------------------- */

static void test_readonly_store_erofs(void **state)
{
	struct fix *f = begin(state);
	struct mock *m = mock_new(f->ps, 8, MOCK_FILE | MOCK_READONLY);
	vmp_fileh *fh = open_mode(f, m);
	char *p = map_pages(fh, 0, 8, PROT_READ | PROT_WRITE); /* allowed */
	struct vmp_stats st;

	p[2 * f->ps + 3] = 'r';
	assert_u64(dirty_count(fh), 1);
	st = ram_stats(f->ram);
	assert_rc(vmp_writeout(fh, VMP_WRITEOUT_STORE), -EROFS);
	assert_rc(vmp_writeout(fh, VMP_WRITEOUT_STORE |
					   VMP_WRITEOUT_MARKSTORED),
		  -EROFS);
	assert_u64(dirty_count(fh), 1);
	assert_u64(ram_stats(f->ram).dirty_bytes, st.dirty_bytes);
	assert_int_equal(p[2 * f->ps + 3], 'r');
	assert_string_equal(mock_events(m), "");

	/* Discard works. */
	assert_ok(vmp_discard(fh));
	assert_u64(dirty_count(fh), 0);
	assert_int_equal(mock_check(m, 2, p + 2 * f->ps), 0);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	mock_free(m);
}

/* --- markstored ------------------------------------------------------------ */

static void test_markstored_write_protects(void **state)
{
	struct fix *f = begin(state);
	char *q = map_pages(f->fh, 0, NPAGES, PROT_READ | PROT_WRITE);

	pg(f, 4)[0] = 'a';
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_u64(dirty_count(f->fh), 0);

	/* The next write, through either mapping, is seen. */
	pg(f, 4)[1] = 'b';
	assert_u64(dirty_count(f->fh), 1);
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_u64(dirty_count(f->fh), 0);
	q[4 * f->ps + 2] = 'c';
	assert_u64(dirty_count(f->fh), 1);
	assert_int_equal(pg(f, 4)[2], 'c');
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_u64(mock_stores(f->m, 4), 3);
	assert_page_is_store(f, pg(f, 4), 4);

	/* Clean again: reading does not reload. */
	if (!f->overlay)
		assert_u64(mock_loads(f->m, 4), 1);
	assert_ok(vmp_munmap(q));
}

/* --- discard --------------------------------------------------------------- */

static void test_discard(void **state)
{
	struct fix *f = begin(state);
	struct vmp_stats st;

	for (uint64_t i = 10; i < 13; i++)
		(void)peek(pg(f, i));
	pg(f, 1)[0] ^= 0x11;
	pg(f, 2)[5] ^= 0x22;
	st = ram_stats(f->ram);

	assert_ok(vmp_discard(f->fh));
	assert_u64(dirty_count(f->fh), 0);
	assert_u64(ram_stats(f->ram).dirty_bytes, 0);
	assert_u64(ram_stats(f->ram).resident_bytes,
		   st.resident_bytes - 2 * f->ps);
	assert_u64(f->m->store_calls, 0);

	/* The next read loads the store's bytes; clean pages stayed. */
	assert_page_is_store(f, pg(f, 1), 1);
	assert_page_is_store(f, pg(f, 2), 2);
	for (uint64_t i = 10; i < 13; i++)
		assert_page_is_store(f, pg(f, i), i);
	if (!f->overlay) {
		assert_u64(mock_loads(f->m, 1), 2);
		assert_u64(mock_loads(f->m, 2), 2);
		for (uint64_t i = 10; i < 13; i++)
			assert_u64(mock_loads(f->m, i), 1);
	}
	/* Nothing dirty: still fine. */
	assert_ok(vmp_discard(f->fh));
}

/* The discarded hook: runs after the change set is dropped, may
 * invalidate pages of its handle, and its error is vmp_discard's. */
struct disc {
	vmp_fileh *fh;
	unsigned version;   /* block 1's bytes: this byte, whole block */
	int calls;
	uint64_t dirty_seen;
	int ret;            /* what the hook returns */
};

static int disc_loadblk(void *ctx, uint64_t blk, void *buf)
{
	struct disc *d = ctx;

	memset(buf, blk == 1 ? (int)d->version : (int)blk, os_page());
	return 0;
}

static int disc_storeblk(void *ctx, uint64_t blk, const void *buf)
{
	(void)ctx, (void)blk, (void)buf;
	return 0;
}

static int disc_discarded(void *ctx)
{
	struct disc *d = ctx;

	d->calls++;
	assert_ok(vmp_fileh_dirty_count(d->fh, &d->dirty_seen));
	/* a newer snapshot: block 1 changed */
	d->version++;
	assert_ok(vmp_invalidate(d->fh, 1, 1));
	return d->ret;
}

static void test_discarded_hook(void **state)
{
	static const vmp_store_ops ops = {
		.loadblk = disc_loadblk,
		.storeblk = disc_storeblk,
		.discarded = disc_discarded,
	};
	struct disc d = { .version = 'a' };
	size_t ps = os_page();
	vmp_ram *ram;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	assert_ok(open_fh_ops(&d.fh, ram, &ops, &d, ps, 0));
	p = map_pages(d.fh, 0, 4, PROT_READ | PROT_WRITE);
	assert_int_equal(peek(p + ps), 'a');
	assert_int_equal(peek(p + 2 * ps), 2);
	p[0] = 'x';
	p[2 * ps] = 'y';

	assert_ok(vmp_discard(d.fh));
	assert_int_equal(d.calls, 1);
	assert_u64(d.dirty_seen, 0); /* dropped before the hook ran */
	assert_int_equal(peek(p), 0);
	assert_int_equal(peek(p + 2 * ps), 2);
	assert_int_equal(peek(p + ps), 'b'); /* invalidated by the hook */

	/* Its error is returned; the change set is gone all the same. */
	d.ret = -EIO;
	p[3 * ps] = 'z';
	assert_rc(vmp_discard(d.fh), -EIO);
	assert_int_equal(d.calls, 2);
	assert_u64(dirty_count(d.fh), 0);
	assert_int_equal(peek(p + 3 * ps), 3);
	assert_int_equal(peek(p + ps), 'c');

	/* A writeout does not call it. */
	d.ret = 0;
	p[0] = 'w';
	assert_ok(vmp_writeout(d.fh, VMP_WRITEOUT_STORE |
				     VMP_WRITEOUT_MARKSTORED));
	assert_int_equal(d.calls, 2);
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(d.fh));
	assert_ok(vmp_ram_free(ram));
}

/* vmp_invalidate from inside writeout_commit (what a store that moves
 * its snapshot at each commit does): it does not wait for the writeout in
 * progress; the pages being committed are still dirty, so they are kept
 * and then marked stored with their bytes; other clean pages are
 * dropped. */
static int inval_commit(void *ctx)
{
	struct disc *d = ctx;

	d->calls++;
	d->version++; /* the store's block 1 changed meanwhile */
	assert_ok(vmp_fileh_dirty_count(d->fh, &d->dirty_seen));
	assert_ok(vmp_invalidate(d->fh, 0, 4));
	return 0;
}

static void test_invalidate_in_writeout_commit(void **state)
{
	static const vmp_store_ops ops = {
		.loadblk = disc_loadblk,
		.storeblk = disc_storeblk,
		.writeout_commit = inval_commit,
	};
	struct disc d = { .version = 'a' };
	size_t ps = os_page();
	vmp_ram *ram;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	assert_ok(open_fh_ops(&d.fh, ram, &ops, &d, ps, 0));
	p = map_pages(d.fh, 0, 4, PROT_READ | PROT_WRITE);
	assert_int_equal(peek(p + ps), 'a');
	p[2 * ps] = 'w';
	assert_ok(vmp_writeout(d.fh, VMP_WRITEOUT_STORE |
				     VMP_WRITEOUT_MARKSTORED));
	assert_int_equal(d.calls, 1);
	assert_u64(d.dirty_seen, 1);       /* still dirty inside the hook */
	assert_u64(dirty_count(d.fh), 0);  /* stored afterwards */
	assert_int_equal(peek(p + 2 * ps), 'w'); /* kept, not reloaded */
	assert_int_equal(peek(p + ps), 'b');     /* dropped, reloaded */
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(d.fh));
	assert_ok(vmp_ram_free(ram));
}

/* --- invalidate ------------------------------------------------------------ */

static void test_invalidate(void **state)
{
	struct fix *f = begin(state);
	uint64_t resident;
	char *old6;

	for (uint64_t i = 0; i < 8; i++)
		(void)peek(pg(f, i));
	pg(f, 6)[0] = 'u';
	mock_change(f->m, 3);
	mock_change(f->m, 4);
	mock_change(f->m, 6);
	if (!f->overlay) /* the cached bytes until invalidated */
		assert_int_equal(gen_check(pg(f, 3), f->ps, 3, 0), 0);
	resident = ram_stats(f->ram).resident_bytes;

	assert_ok(vmp_invalidate(f->fh, 3, 4)); /* pages 3, 4, 5, 6 */
	if (!f->overlay)
		assert_u64(ram_stats(f->ram).resident_bytes,
			   resident - 3 * f->ps);
	assert_int_equal(gen_check(pg(f, 3), f->ps, 3, 1), 0);
	assert_int_equal(gen_check(pg(f, 4), f->ps, 4, 1), 0);
	assert_int_equal(gen_check(pg(f, 5), f->ps, 5, 0), 0);
	assert_int_equal(gen_check(pg(f, 7), f->ps, 7, 0), 0);
	if (!f->overlay) {
		assert_u64(mock_loads(f->m, 3), 2);
		assert_u64(mock_loads(f->m, 5), 2);
		assert_u64(mock_loads(f->m, 7), 1);
	}
	/* The dirty page is the user's: kept, with its old bytes. */
	assert_u64(dirty_count(f->fh), 1);
	assert_int_equal(pg(f, 6)[0], 'u');
	old6 = copy_page(f, 6);
	old6[0] = (char)gen_byte(6, 0, 0);
	assert_int_equal(gen_check(old6, f->ps, 6, 0), 0);
	free(old6);
	/* Ranges with nothing loaded, or past the mapping, are fine. */
	assert_ok(vmp_invalidate(f->fh, 40, 10));
	assert_ok(vmp_invalidate(f->fh, 1000000, 1));
}

struct reader {
	const char *src;
	char *dst;
	size_t len;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	memcpy(r->dst, r->src, r->len);
	return NULL;
}

/* A page invalidated while it loads is not installed with the stale bytes:
 * the faulting access ends up with the new ones, loaded again. */
static void test_invalidate_while_loading(void **state)
{
	struct fix *f = begin(state);
	struct reader rd = { pg(f, 9), NULL, f->ps };
	struct gate g;
	pthread_t t;

	if (f->overlay) /* clean pages are not loaded through loadblk */
		skip();
	rd.dst = malloc(f->ps);
	assert_non_null(rd.dst);
	gate_init(&g, 9, false);
	mock_set_gate(f->m, &g);
	assert_int_equal(pthread_create(&t, NULL, reader_main, &rd), 0);
	assert_true(gate_wait_entered(&g)); /* loadblk(9) has the old bytes */
	mock_change(f->m, 9);
	assert_ok(vmp_invalidate(f->fh, 9, 1));
	gate_open(&g);
	assert_int_equal(pthread_join(t, NULL), 0);

	if (g.timed_out)
		fail_msg("vmp_invalidate waited for the load it invalidated");
	assert_int_equal(gen_check(rd.dst, f->ps, 9, 1), 0);
	assert_int_equal(gen_check(pg(f, 9), f->ps, 9, 1), 0);
	assert_u64(mock_loads(f->m, 9), 2);
	f->m->load_hook = NULL;
	gate_destroy(&g);
	free(rd.dst);
}

/* --- visibility ------------------------------------------------------------ */

static void test_two_mappings_see_writes(void **state)
{
	struct fix *f = begin(state);
	char *q = map_pages(f->fh, 0, NPAGES, PROT_READ | PROT_WRITE);
	char *r = map_pages(f->fh, 8, 8, PROT_READ);

	pg(f, 9)[1] = 'p';
	assert_int_equal(q[9 * f->ps + 1], 'p');
	assert_int_equal(r[f->ps + 1], 'p');
	q[10 * f->ps + 2] = 'q';
	assert_int_equal(pg(f, 10)[2], 'q');
	assert_int_equal(r[2 * f->ps + 2], 'q');
	assert_u64(dirty_count(f->fh), 2);
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_page_is_store(f, q + 9 * f->ps, 9);
	assert_page_is_store(f, r + 2 * f->ps, 10);
	assert_ok(vmp_munmap(q));
	assert_ok(vmp_munmap(r));
}

static void test_two_handles_isolation(void **state)
{
	struct fix *f = begin(state);
	vmp_fileh *fh2 = open_mode(f, f->m);
	char *p2 = map_pages(fh2, 0, NPAGES, PROT_READ | PROT_WRITE);

	pg(f, 4)[0] = '1';
	assert_page_is_store(f, p2 + 4 * f->ps, 4);
	assert_u64(dirty_count(fh2), 0);
	p2[4 * f->ps] = '2';
	assert_int_equal(pg(f, 4)[0], '1');
	assert_u64(dirty_count(f->fh), 1);
	assert_u64(dirty_count(fh2), 1);

	assert_ok(vmp_discard(f->fh));
	assert_page_is_store(f, pg(f, 4), 4);
	assert_int_equal(p2[4 * f->ps], '2');

	assert_ok(vmp_munmap(p2));
	assert_ok(vmp_fileh_close(fh2));
}

static void test_commit_then_invalidate_visible(void **state)
{
	struct fix *f = begin(state);
	vmp_fileh *fh2 = open_mode(f, f->m);
	char *p2 = map_pages(fh2, 0, NPAGES, PROT_READ);
	char *mine;

	(void)peek(p2 + 4 * f->ps); /* cached in fh2 */
	scribble(f, 4, 9);
	mine = copy_page(f, 4);
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_ok(vmp_invalidate(fh2, 4, 1));
	assert_memory_equal(p2 + 4 * f->ps, mine, f->ps);

	free(mine);
	assert_ok(vmp_munmap(p2));
	assert_ok(vmp_fileh_close(fh2));
}

static void test_close_drops_changes(void **state)
{
	struct fix *f = begin(state);

	pg(f, 1)[0] ^= 1;
	pg(f, 2)[0] ^= 1;
	assert_ok(vmp_munmap(f->p));
	f->p = NULL;
	assert_ok(vmp_fileh_close(f->fh));
	f->fh = NULL;
	assert_u64(f->m->store_calls, 0);
	assert_u64(ram_stats(f->ram).dirty_bytes, 0);
	assert_u64(ram_stats(f->ram).resident_bytes, 0);

	f->fh = open_mode(f, f->m);
	f->p = map_pages(f->fh, 0, NPAGES, PROT_READ | PROT_WRITE);
	assert_int_equal(gen_check(pg(f, 1), f->ps, 1, 0), 0);
	assert_int_equal(gen_check(pg(f, 2), f->ps, 2, 0), 0);
	assert_u64(dirty_count(f->fh), 0);
}

/* --- writes during a writeout ------------------------------------------------- */

struct writer {
	vmp_fileh *fh;
	int rc;
};

static void *writeout_main(void *arg)
{
	struct writer *w = arg;

	w->rc = vmp_writeout(w->fh, VMP_WRITEOUT_STORE |
				    VMP_WRITEOUT_MARKSTORED);
	return NULL;
}

/* A write to a page whose bytes were just stored dirties it again: it is
 * still dirty after MARKSTORED, and the write does not wait for the
 * writeout to finish. */
static void test_write_during_writeout(void **state)
{
	struct fix *f = begin(state);
	struct writer w = { f->fh, 1 };
	struct gate g;
	pthread_t t;
	char *old3;

	pg(f, 3)[0] = 'o';
	pg(f, 5)[0] = 'o';
	old3 = copy_page(f, 3);
	gate_init(&g, 3, true);
	mock_set_gate(f->m, &g);
	assert_int_equal(pthread_create(&t, NULL, writeout_main, &w), 0);
	assert_true(gate_wait_entered(&g)); /* block 3 stored, writeout on */
	pg(f, 3)[0] = 'N';
	gate_open(&g);
	assert_int_equal(pthread_join(t, NULL), 0);

	if (g.timed_out)
		fail_msg("the write waited for the writeout to finish");
	assert_ok(w.rc);
	assert_int_equal(pg(f, 3)[0], 'N');
	assert_u64(dirty_count(f->fh), 1);
	assert_int_equal(mock_check(f->m, 3, old3), 0);
	assert_page_is_store(f, pg(f, 5), 5);

	f->m->store_hook = NULL;
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_page_is_store(f, pg(f, 3), 3);
	assert_u64(dirty_count(f->fh), 0);
	gate_destroy(&g);
	free(old3);
}

#define BOTH(f)                                                                \
	{ #f "/normal", f, setup, teardown, (void *)&mode_normal },           \
	{ #f "/overlay", f, setup, teardown, (void *)&mode_overlay }

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_first_write_dirties),
		BOTH(test_writeout_store_once_per_dirty),
		cmocka_unit_test(test_writeout_1tib_three_dirty),
		BOTH(test_writeout_without_hooks),
		BOTH(test_storeblk_fails_nth),
		BOTH(test_commit_fails),
		BOTH(test_begin_fails),
		BOTH(test_readonly_store_erofs),
		BOTH(test_markstored_write_protects),
		BOTH(test_discard),
		cmocka_unit_test(test_discarded_hook),
		cmocka_unit_test(test_invalidate_in_writeout_commit),
		BOTH(test_invalidate),
		BOTH(test_invalidate_while_loading),
		BOTH(test_two_mappings_see_writes),
		BOTH(test_two_handles_isolation),
		BOTH(test_commit_then_invalidate_visible),
		BOTH(test_close_drops_changes),
		BOTH(test_write_during_writeout),
	};

	if (vmp_fault_handler_install() == -ENOSYS)
		return TEST_SKIP; /* libsigsegv cannot catch faults here */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
