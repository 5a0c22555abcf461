/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-api-misuse.c: every public call given bad input returns the exact
 * negative errno and changes nothing (issues 2 and 6).
 *
 * "Nothing changed" is checked with a snapshot of everything observable:
 * dirty count, the RAM's figures, the store's callback counts, open fds and
 * the kernel's mappings, plus the out-parameter the call was given.
 *
 * Suite 'unit': no test here faults on mapped memory.  Pages are made
 * readable with vmp_prefault() before they are read, so these tests also
 * run under valgrind.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

#define NPAGES 16
#define SENTINEL ((void *)0x5a5a5a5a5a5a5a5aull)

struct fix {
	int fds;           /* open fds before setup */
	struct mock *m;    /* 16 blocks of the OS page size */
	vmp_ram *ram;
	vmp_fileh *fh;
	char *rw;          /* pages [0, 8) read-write */
	char *ro;          /* pages [8, 16) read-only */
	size_t ps;
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->fds = count_open_fds();
	f->ps = os_page();
	f->m = mock_new(f->ps, NPAGES, 0);
	assert_ok(vmp_ram_new(&f->ram, 0));
	f->fh = open_fh(f->ram, f->m, 0);
	f->rw = map_pages(f->fh, 0, 8, PROT_READ | PROT_WRITE);
	f->ro = map_pages(f->fh, 8, 8, PROT_READ);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	if (f->rw)
		assert_ok(vmp_munmap(f->rw));
	if (f->ro)
		assert_ok(vmp_munmap(f->ro));
	if (f->fh)
		assert_ok(vmp_fileh_close(f->fh));
	assert_ok(vmp_ram_free(f->ram));
	mock_free(f->m);
	assert_no_fd_leak(f->fds);
	free(f);
	return 0;
}

/* --- "no effect" ---------------------------------------------------------- */

struct snap {
	uint64_t dirty;
	struct vmp_stats st;
	uint64_t load_calls, store_calls, begins, releases;
	int fds;
	long maps;
};

static void take(struct fix *f, struct snap *s)
{
	s->dirty = f->fh ? dirty_count(f->fh) : 0;
	s->st = ram_stats(f->ram);
	s->load_calls = f->m->load_calls;
	s->store_calls = f->m->store_calls;
	s->begins = f->m->begins;
	s->releases = f->m->releases;
	s->fds = count_open_fds();
	s->maps = count_kernel_maps();
}

static void assert_unchanged(struct fix *f, const struct snap *a)
{
	struct snap b;

	take(f, &b);
	assert_u64(b.dirty, a->dirty);
	assert_u64(b.st.resident_bytes, a->st.resident_bytes);
	assert_u64(b.st.dirty_bytes, a->st.dirty_bytes);
	assert_u64(b.st.loads, a->st.loads);
	assert_u64(b.st.load_errors, a->st.load_errors);
	assert_u64(b.load_calls, a->load_calls);
	assert_u64(b.store_calls, a->store_calls);
	assert_u64(b.begins, a->begins);
	assert_u64(b.releases, a->releases);
	assert_int_equal(b.fds, a->fds);
	/* (ThreadSanitizer's allocator maps memory of its own at any time) */
	if (b.maps != a->maps && !UNDER_TSAN)
		fail_msg("kernel mappings: %ld now, %ld before (a mapping "
			 "leaked or vanished)",
			 b.maps, a->maps);
}

/* Load page @pg of the read-write mapping (and dirty it with @write) without
 * faulting, and check its bytes. */
static void prefault_and_check(struct fix *f, char *base, uint64_t pg,
			       uint64_t blk, int write)
{
	/* Prefaulted pages do not fault; re-arm anyway, so that a page taken
	 * away behind our back would be served, not reported by cmocka. */
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_prefault(base + pg * f->ps, f->ps, write));
	assert_int_equal(mock_check(f->m, blk, base + pg * f->ps), 0);
}

/* --- vmp_ram -------------------------------------------------------------- */

static void test_ram_new_null(void **state)
{
	(void)state;
	assert_rc(vmp_ram_new(NULL, 0), -EINVAL);
	assert_rc(vmp_ram_new(NULL, 1 << 20), -EINVAL);
}

static void test_ram_calls_null(void **state)
{
	struct vmp_stats st, before;

	(void)state;
	memset(&st, 0xab, sizeof(st));
	before = st;
	assert_rc(vmp_ram_free(NULL), -EINVAL);
	assert_rc(vmp_ram_reclaim(NULL, 4096), -EINVAL);
	assert_rc(vmp_ram_stats(NULL, &st), -EINVAL);
	assert_memory_equal(&st, &before, sizeof(st));
}

static void test_ram_stats_null_out(void **state)
{
	struct fix *f = *state;
	struct snap s;

	take(f, &s);
	assert_rc(vmp_ram_stats(f->ram, NULL), -EINVAL);
	assert_unchanged(f, &s);
}

static void test_ram_free_busy(void **state)
{
	struct fix *f = *state;
	vmp_fileh *fh2 = open_fh(f->ram, f->m, 0);
	struct snap s;

	prefault_and_check(f, f->rw, 1, 1, 0);
	take(f, &s);
	assert_rc(vmp_ram_free(f->ram), -EBUSY);
	assert_unchanged(f, &s);

	/* Still -EBUSY with one of two handles closed. */
	assert_ok(vmp_fileh_close(fh2));
	assert_rc(vmp_ram_free(f->ram), -EBUSY);
	/* And the RAM still serves its handle. */
	prefault_and_check(f, f->rw, 2, 2, 0);
	/* (read-ahead may have loaded more than the two pages) */
	assert_u64(ram_stats(f->ram).resident_bytes,
		   ram_stats(f->ram).loads * f->ps);
}

/* --- vmp_store_new, vmp_store_free --------------------------------------- */

/* Bad arguments: -EINVAL, *storep left alone, and no release (the ctx is
 * still the caller's). */
static void test_store_new_bad_args(void **state)
{
	struct mock *m = mock_new(os_page(), 4, 0);
	vmp_store_ops no_load = m->ops;
	vmp_store *s = SENTINEL;
	size_t ps = os_page();
	const size_t bad_sizes[] = { 0, 1, ps / 2, ps + 1, 3 * ps, ps * 5,
				     (size_t)2 * GiB, SIZE_MAX };

	(void)state;
	no_load.loadblk = NULL;
	assert_rc(vmp_store_new(NULL, &m->ops, m, ps), -EINVAL);
	assert_rc(vmp_store_new(&s, NULL, m, ps), -EINVAL);
	assert_rc(vmp_store_new(&s, &no_load, m, ps), -EINVAL);
	for (size_t i = 0; i < ARRAY_LEN(bad_sizes); i++) {
		int rc = vmp_store_new(&s, &m->ops, m, bad_sizes[i]);

		if (rc != -EINVAL)
			fail_msg("vmp_store_new(blksize %zu) returned %s, "
				 "expected -EINVAL", bad_sizes[i], errname(rc));
	}
	assert_ptr_equal(s, SENTINEL);
	assert_u64(m->releases, 0);

	/* The bounds themselves are block sizes: 1 GiB is the largest. */
	assert_ok(vmp_store_new(&s, &m->ops, m, 1 * GiB));
	assert_ok(vmp_store_free(s));
	assert_u64(m->releases, 1);
	mock_free(m);
}

static void test_store_free_null(void **state)
{
	(void)state;
	assert_rc(vmp_store_free(NULL), -EINVAL);
}

/* Map @fh, prefault page @pg for writing, check it, change it and commit:
 * the store's callbacks, and their ctx, still serve the handle. */
static void use_handle(struct mock *m, vmp_fileh *fh, uint64_t pg)
{
	char *p = map_pages(fh, 0, 8, PROT_READ | PROT_WRITE);

	assert_ok(vmp_prefault(p + pg * os_page(), os_page(), 1));
	assert_int_equal(mock_check(m, pg, p + pg * os_page()), 0);
	p[pg * os_page()] ^= 1;
	assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE |
				   VMP_WRITEOUT_MARKSTORED));
	assert_int_equal(mock_check(m, pg, p + pg * os_page()), 0);
	assert_ok(vmp_munmap(p));
}

/* ops->release runs exactly once, when both the program freed the store
 * and its last handle closed, whichever comes last; until then the
 * handles work. */
static void test_store_release_once(void **state)
{
	struct mock *m;
	vmp_ram *ram;
	vmp_fileh *a, *b, *c;

	(void)state;
	assert_ok(vmp_ram_new(&ram, 0));

	/* Freed before its handle closes. */
	m = mock_new(os_page(), 8, 0);
	a = open_fh(ram, m, 0);
	mock_store_free(m);
	assert_u64(m->releases, 0);
	use_handle(m, a, 1);
	assert_u64(m->releases, 0);
	assert_ok(vmp_fileh_close(a));
	assert_u64(m->releases, 1);
	mock_free(m);

	/* Freed after. */
	m = mock_new(os_page(), 8, 0);
	a = open_fh(ram, m, 0);
	use_handle(m, a, 2);
	assert_ok(vmp_fileh_close(a));
	assert_u64(m->releases, 0);
	mock_store_free(m);
	assert_u64(m->releases, 1);
	mock_free(m);

	/* Several handles, freed between their closes. */
	m = mock_new(os_page(), 8, 0);
	a = open_fh(ram, m, 0);
	b = open_fh(ram, m, 0);
	c = open_fh(ram, m, 0);
	assert_ok(vmp_fileh_close(b));
	mock_store_free(m);
	assert_ok(vmp_fileh_close(a));
	assert_u64(m->releases, 0);
	use_handle(m, c, 3);
	assert_ok(vmp_fileh_close(c));
	assert_u64(m->releases, 1);
	mock_free(m);

	/* Never opened: at once. */
	m = mock_new(os_page(), 8, 0);
	mock_store_free(m);
	assert_u64(m->releases, 1);
	mock_free(m);

	assert_ok(vmp_ram_free(ram));
}

/* In a forked child the parent's store is not the child's: -ECHILD from
 * vmp_store_free and from vmp_fileh_open (on a RAM of the child), and
 * nothing released; a store of the child's own works. */
static void child_parent_store(void *arg)
{
	struct mock *m = arg;
	vmp_fileh *fh = SENTINEL;
	vmp_store *own;
	vmp_ram *ram;

	child_check_rc(vmp_ram_new(&ram, 0), 0);
	child_check_rc(vmp_fileh_open(&fh, ram, m->store, 0), -ECHILD);
	child_check(fh == SENTINEL);
	child_check_rc(vmp_store_free(m->store), -ECHILD);
	child_check(m->releases == 0);

	child_check_rc(vmp_store_new(&own, &m->ops, m, os_page()), 0);
	child_check_rc(vmp_fileh_open(&fh, ram, own, 0), 0);
	child_check_rc(vmp_fileh_close(fh), 0);
	child_check_rc(vmp_store_free(own), 0);
	child_check(m->releases == 1);
	child_check_rc(vmp_ram_free(ram), 0);
}

static void test_store_fork_child(void **state)
{
	struct mock *m = mock_new(os_page(), 8, 0);
	struct child_result r;
	vmp_ram *ram;
	vmp_fileh *fh;

	(void)state;
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	run_child(child_parent_store, m, &r);
	assert_child_exited_ok(&r);
	/* The parent's store and handle are as they were. */
	assert_u64(m->releases, 0);
	use_handle(m, fh, 4);
	assert_ok(vmp_fileh_close(fh));
	assert_u64(m->releases, 0);
	mock_store_free(m);
	assert_u64(m->releases, 1);
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* --- vmp_fileh_open ------------------------------------------------------- */

/* Open must fail with @want, leave *fhp alone, register nothing with the RAM
 * (so vmp_ram_free succeeds) and never call release. */
static void expect_open_fails(vmp_ram *ram, vmp_store *store,
			      unsigned flags, int want, const char *what)
{
	vmp_fileh *fh = SENTINEL;
	int fds = count_open_fds();
	int rc = vmp_fileh_open(&fh, ram, store, flags);

	if (rc != want)
		fail_msg("vmp_fileh_open(%s) returned %s, expected %s", what,
			 errname(rc), errname(want));
	if (fh != SENTINEL)
		fail_msg("vmp_fileh_open(%s) failed but changed *fhp to %p",
			 what, (void *)fh);
	assert_no_fd_leak(fds);
}

/* (A store's bad callbacks and block sizes are refused by vmp_store_new,
 * see test_store_new_bad_args.) */
static void test_fileh_open_bad_args(void **state)
{
	struct mock *m = mock_new(os_page(), 4, 0);
	vmp_ram *ram;
	vmp_fileh *fh = SENTINEL;
	const unsigned bad_flags[] = { 1u << 4, 1u << 7, 1u << 31, ~0u,
				       VMP_OVERLAY | VMP_WRITEBACK,
				       VMP_OVERLAY | VMP_SPILL,
				       VMP_SPILL | VMP_WRITEBACK };

	(void)state;
	assert_ok(vmp_ram_new(&ram, 0));

	assert_rc(vmp_fileh_open(NULL, ram, m->store, 0), -EINVAL);
	assert_rc(vmp_fileh_open(&fh, NULL, m->store, 0), -EINVAL);
	assert_ptr_equal(fh, SENTINEL);
	expect_open_fails(ram, NULL, 0, -EINVAL, "store NULL");

	for (size_t i = 0; i < ARRAY_LEN(bad_flags); i++) {
		char what[64];

		snprintf(what, sizeof(what), "flags %#x", bad_flags[i]);
		expect_open_fails(ram, m->store, bad_flags[i], -EINVAL, what);
	}
	/* An in-memory store has no ops->base. */
	expect_open_fails(ram, m->store, VMP_OVERLAY, -EINVAL,
			  "VMP_OVERLAY without base");

	assert_u64(m->releases, 0);
	assert_ok(vmp_ram_free(ram)); /* no handle was registered */
	mock_free(m);
}

static int base_fails(void *ctx, int *fd, off_t *off)
{
	(void)ctx;
	(void)fd;
	(void)off;
	return -EIO;
}

static void test_fileh_open_base_error(void **state)
{
	struct mock *m = mock_new(os_page(), 4, MOCK_FILE);
	vmp_store_ops ops = m->ops;
	vmp_store *s;
	vmp_ram *ram;

	(void)state;
	/* The mock's own store first: the count is this store's alone. */
	mock_store_free(m);
	assert_u64(m->releases, 1);
	ops.base = base_fails;
	assert_ok(vmp_store_new(&s, &ops, m, os_page()));
	assert_ok(vmp_ram_new(&ram, 0));
	expect_open_fails(ram, s, VMP_OVERLAY, -EIO, "base fails");
	/* The failed open kept no reference and dropped none: the
	 * program's is the last. */
	assert_u64(m->releases, 1);
	assert_ok(vmp_store_free(s));
	assert_u64(m->releases, 2);
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* A handle of a 2 MiB-page store is fine.  Its close does not release the
 * store while the program holds it; the release counts of the other tests
 * rely on this. */
static void test_fileh_release_once(void **state)
{
	struct mock *m = mock_new(2 * MiB, 4, 0);
	vmp_ram *ram;
	vmp_fileh *a, *b;

	(void)state;
	assert_ok(vmp_ram_new(&ram, 0));
	a = open_fh(ram, m, 0);
	b = open_fh(ram, m, 0);
	assert_ok(vmp_fileh_close(a));
	assert_u64(m->releases, 0);
	assert_ok(vmp_fileh_close(b));
	assert_u64(m->releases, 0);
	mock_store_free(m);
	assert_u64(m->releases, 1);
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* --- vmp_fileh_close, dirty_count ------------------------------------------- */

static void test_fileh_close_null(void **state)
{
	(void)state;
	assert_rc(vmp_fileh_close(NULL), -EINVAL);
}

static void test_fileh_close_busy(void **state)
{
	struct fix *f = *state;
	struct snap s;

	prefault_and_check(f, f->rw, 2, 2, 1);
	f->rw[2 * f->ps + 5] = 'x';
	take(f, &s);
	assert_rc(vmp_fileh_close(f->fh), -EBUSY);
	assert_unchanged(f, &s);
	assert_int_equal(f->rw[2 * f->ps + 5], 'x');

	/* Still busy with one mapping left; the change survives. */
	assert_ok(vmp_munmap(f->rw));
	f->rw = NULL;
	assert_rc(vmp_fileh_close(f->fh), -EBUSY);
	assert_u64(dirty_count(f->fh), 1);
	assert_u64(f->m->releases, 0);
}

static void test_dirty_count_null(void **state)
{
	struct fix *f = *state;
	uint64_t n = 12345;

	assert_rc(vmp_fileh_dirty_count(NULL, &n), -EINVAL);
	assert_u64(n, 12345);
	assert_rc(vmp_fileh_dirty_count(f->fh, NULL), -EINVAL);
}

/* --- vmp_mmap ------------------------------------------------------------- */

struct mmap_case {
	uint64_t pgoffset, pglen;
	int prot;
	int want;
	const char *what;
};

static void expect_mmap_fails(struct fix *f, vmp_fileh *fh,
			      const struct mmap_case *c)
{
	void *addr = SENTINEL;
	struct snap s;
	int rc;

	take(f, &s);
	rc = vmp_mmap(fh, c->pgoffset, c->pglen, c->prot, &addr);
	if (rc != c->want)
		fail_msg("vmp_mmap(%s) returned %s, expected %s", c->what,
			 errname(rc), errname(c->want));
	if (addr != SENTINEL)
		fail_msg("vmp_mmap(%s) failed but set *addrp to %p", c->what,
			 addr);
	assert_unchanged(f, &s);
}

static void test_mmap_bad_args(void **state)
{
	struct fix *f = *state;
	const int rw = PROT_READ | PROT_WRITE;
	/* The OS page is 4 KiB here: 2^52 pages are 2^64 bytes. */
	const uint64_t wrap_pages = ((uint64_t)1 << 63) / f->ps * 2;
	const struct mmap_case cases[] = {
		{ 0, 0, PROT_READ, -EINVAL, "pglen 0" },
		{ 0, 1, 0, -EINVAL, "PROT_NONE" },
		{ 0, 1, PROT_WRITE, -EINVAL, "PROT_WRITE alone" },
		{ 0, 1, PROT_EXEC, -EINVAL, "PROT_EXEC" },
		{ 0, 1, PROT_READ | PROT_EXEC, -EINVAL, "PROT_READ|EXEC" },
		{ 0, 1, rw | PROT_EXEC, -EINVAL, "PROT_READ|WRITE|EXEC" },
		{ 0, 1, PROT_READ | 0x100, -EINVAL, "unknown prot bit" },
		{ 0, 1, -1, -EINVAL, "prot -1" },
		{ UINT64_MAX, 1, PROT_READ, -EINVAL, "pgoffset+pglen = 2^64" },
		{ UINT64_MAX, 2, PROT_READ, -EINVAL, "pgoffset+pglen wraps" },
		{ 1, UINT64_MAX, PROT_READ, -EINVAL, "pglen UINT64_MAX" },
		{ 0, wrap_pages, PROT_READ, -EINVAL, "pglen*pagesize = 2^64" },
		{ 0, wrap_pages + 1, rw, -EINVAL, "pglen*pagesize wraps" },
		{ wrap_pages - 1, 2, PROT_READ, -EINVAL,
		  "end byte offset wraps" },
		{ wrap_pages, 1, PROT_READ, -EINVAL, "pgoffset*pagesize = 2^64" },
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		expect_mmap_fails(f, f->fh, &cases[i]);
	{
		void *addr = SENTINEL;

		assert_rc(vmp_mmap(NULL, 0, 1, PROT_READ, &addr), -EINVAL);
		assert_ptr_equal(addr, SENTINEL);
		assert_rc(vmp_mmap(f->fh, 0, 1, PROT_READ, NULL), -EINVAL);
	}
}

/* A 2 MiB page overflows 64 bits at 2^43 pages. */
static void test_mmap_overflow_big_pages(void **state)
{
	struct fix *f = *state;
	struct mock *m = mock_new(2 * MiB, 4, 0);
	vmp_fileh *fh = open_fh(f->ram, m, 0);
	const uint64_t wrap = (uint64_t)1 << 43;
	const struct mmap_case cases[] = {
		{ 0, wrap, PROT_READ, -EINVAL, "2M: pglen*pagesize = 2^64" },
		{ wrap - 1, 1, PROT_READ, -EINVAL, "2M: end = 2^64" },
		{ 5, wrap - 4, PROT_READ, -EINVAL, "2M: end wraps" },
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		expect_mmap_fails(f, fh, &cases[i]);
	assert_ok(vmp_fileh_close(fh)); /* no mapping was left behind */
	mock_free(m);
}

/* A range that fits 64 bits but not the address space: -ENOMEM. */
static void test_mmap_too_big(void **state)
{
	struct fix *f = *state;
	const struct mmap_case cases[] = {
		{ 0, ((uint64_t)1 << 60) / f->ps, PROT_READ, -ENOMEM,
		  "2^60 bytes" },
		{ 7, ((uint64_t)1 << 62) / f->ps, PROT_READ | PROT_WRITE,
		  -ENOMEM, "2^62 bytes" },
	};

	/* valgrind's own address-space manager refuses such sizes with
	 * EINVAL before the kernel sees them. */
	if (under_valgrind())
		skip();
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		expect_mmap_fails(f, f->fh, &cases[i]);
}

/* --- vmp_munmap ----------------------------------------------------------- */

static void test_munmap_foreign(void **state)
{
	struct fix *f = *state;
	char *heap = malloc(64);
	int local;
	void *plain = mmap(NULL, f->ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
			   -1, 0);
	void *bad[] = { NULL, heap, &local, plain, (void *)test_ram_new_null,
			f->rw + f->ps, f->rw + 1, f->ro + 7 * f->ps,
			f->rw + 8 * f->ps /* one past the end */ };
	struct snap s;

	assert_true(plain != MAP_FAILED);
	/* One past the end may be where the kernel put the other mapping. */
	if (bad[ARRAY_LEN(bad) - 1] == (void *)f->ro)
		bad[ARRAY_LEN(bad) - 1] = f->ro + 1;
	take(f, &s);
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int rc = vmp_munmap(bad[i]);

		if (rc != -EINVAL)
			fail_msg("vmp_munmap(bad[%zu] = %p) returned %s, "
				 "expected -EINVAL", i, bad[i], errname(rc));
	}
	assert_unchanged(f, &s);
	/* The mappings are intact. */
	prefault_and_check(f, f->rw, 3, 3, 0);
	prefault_and_check(f, f->ro, 7, 15, 0);
	munmap(plain, f->ps);
	free(heap);
}

static void test_munmap_twice(void **state)
{
	struct fix *f = *state;
	struct snap s;

	assert_ok(vmp_munmap(f->ro));
	take(f, &s);
	assert_rc(vmp_munmap(f->ro), -EINVAL);
	assert_unchanged(f, &s);
	f->ro = NULL;
}

/* --- vmp_prefault --------------------------------------------------------- */

static void test_prefault_bad(void **state)
{
	struct fix *f = *state;
	char local[64];
	struct snap s;

	take(f, &s);
	assert_rc(vmp_prefault(NULL, f->ps, 0), -EINVAL);
	assert_rc(vmp_prefault(local, sizeof(local), 0), -EINVAL);
	/* Half inside: nothing may be loaded before the range is refused. */
	assert_rc(vmp_prefault(f->rw + 7 * f->ps, 2 * f->ps, 0), -EINVAL);
	assert_rc(vmp_prefault(f->rw - f->ps, 2 * f->ps, 1), -EINVAL);
	assert_rc(vmp_prefault(f->rw, SIZE_MAX, 0), -EINVAL);
	assert_rc(vmp_prefault(f->rw + f->ps, SIZE_MAX - f->ps / 2, 1),
		  -EINVAL);
	/* Write on a read-only mapping. */
	assert_rc(vmp_prefault(f->ro, f->ps, 1), -EINVAL);
	assert_unchanged(f, &s);
	assert_u64(f->m->load_calls, 0);
}

/* --- change set calls ----------------------------------------------------- */

static void dirty_two(struct fix *f)
{
	prefault_and_check(f, f->rw, 1, 1, 1);
	prefault_and_check(f, f->rw, 4, 4, 1);
	f->rw[f->ps + 1] = 'a';
	f->rw[4 * f->ps + 1] = 'b';
	assert_u64(dirty_count(f->fh), 2);
}

static void test_writeout_bad(void **state)
{
	struct fix *f = *state;
	const unsigned bad[] = { 0, 4, 8, VMP_WRITEOUT_STORE | 4,
				 VMP_WRITEOUT_MARKSTORED | (1u << 31), ~0u };
	struct snap s;

	dirty_two(f);
	take(f, &s);
	assert_rc(vmp_writeout(NULL, VMP_WRITEOUT_STORE), -EINVAL);
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int rc = vmp_writeout(f->fh, bad[i]);

		if (rc != -EINVAL)
			fail_msg("vmp_writeout(flags %#x) returned %s, "
				 "expected -EINVAL", bad[i], errname(rc));
	}
	assert_unchanged(f, &s);
	assert_string_equal(mock_events(f->m), "");
	assert_int_equal(f->rw[f->ps + 1], 'a');
	assert_int_equal(f->rw[4 * f->ps + 1], 'b');
}

static void test_discard_null(void **state)
{
	struct fix *f = *state;
	struct snap s;

	dirty_two(f);
	take(f, &s);
	assert_rc(vmp_discard(NULL), -EINVAL);
	assert_unchanged(f, &s);
}

static void test_invalidate_bad(void **state)
{
	struct fix *f = *state;
	const uint64_t wrap_pages = ((uint64_t)1 << 63) / f->ps * 2;
	struct snap s;

	prefault_and_check(f, f->rw, 0, 0, 0);
	prefault_and_check(f, f->rw, 6, 6, 0);
	dirty_two(f);
	take(f, &s);
	assert_rc(vmp_invalidate(NULL, 0, 1), -EINVAL);
	assert_rc(vmp_invalidate(f->fh, 0, 0), -EINVAL);
	assert_rc(vmp_invalidate(f->fh, UINT64_MAX, 2), -EINVAL);
	assert_rc(vmp_invalidate(f->fh, 1, UINT64_MAX), -EINVAL);
	assert_rc(vmp_invalidate(f->fh, 0, wrap_pages), -EINVAL);
	assert_rc(vmp_invalidate(f->fh, wrap_pages - 1, 2), -EINVAL);
	assert_unchanged(f, &s);
	/* The clean pages are still loaded: no reload. */
	prefault_and_check(f, f->rw, 0, 0, 0);
	prefault_and_check(f, f->rw, 6, 6, 0);
	assert_u64(f->m->load_calls, s.load_calls);
}

/* --- fault error API ------------------------------------------------------ */

static int never_called(const struct vmp_fault_error *e, void *arg)
{
	(void)e;
	(void)arg;
	fail_msg("fault error handler called");
	return VMP_FAULT_DEFAULT;
}

static void test_set_fault_error_handler_null(void **state)
{
	struct fix *f = *state;

	assert_rc(vmp_set_fault_error_handler(NULL, never_called, NULL),
		  -EINVAL);
	assert_rc(vmp_set_fault_error_handler(NULL, NULL, NULL), -EINVAL);
	assert_ok(vmp_set_fault_error_handler(f->fh, never_called, f));
	assert_ok(vmp_set_fault_error_handler(f->fh, NULL, NULL));
}

static int ret_arg(void *arg)
{
	return (int)(intptr_t)arg;
}

static void test_guard_plain(void **state)
{
	(void)state;
	assert_rc(vmp_guard(NULL, NULL), -EINVAL);
	/* Without a fault, vmp_guard is fn's value, whatever it is. */
	assert_rc(vmp_guard(ret_arg, (void *)42), 42);
	assert_rc(vmp_guard(ret_arg, (void *)(intptr_t)-EIO), -EIO);
	assert_rc(vmp_guard(ret_arg, (void *)0), 0);
}

static void test_handle_fault_foreign(void **state)
{
	int local;
	char *heap = malloc(16);

	(void)state;
	assert_rc(vmp_handle_fault(NULL), 0);
	assert_rc(vmp_handle_fault(&local), 0);
	assert_rc(vmp_handle_fault(heap), 0);
	free(heap);
}

/* --- misc ----------------------------------------------------------------- */

static void test_version(void **state)
{
	char want[32];

	(void)state;
	snprintf(want, sizeof(want), "%d.%d.%d", VMP_VERSION_MAJOR,
		 VMP_VERSION_MINOR, VMP_VERSION_PATCH);
	assert_non_null(vmp_version());
	assert_string_equal(vmp_version(), want);
	assert_true(VMP_CHECK_VERSION(0, 0));
	assert_true(VMP_CHECK_VERSION(VMP_VERSION_MAJOR, VMP_VERSION_MINOR));
	assert_false(VMP_CHECK_VERSION(VMP_VERSION_MAJOR,
				       VMP_VERSION_MINOR + 1));
	assert_false(VMP_CHECK_VERSION(VMP_VERSION_MAJOR + 1, 0));
}

static void test_handler_install(void **state)
{
	(void)state;
	/* Re-arming is always allowed (cmocka replaces the handler). */
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_fault_handler_install());
}

/* Many objects created and freed: no fd, and every store released. */
static void test_create_free_cycle(void **state)
{
	int fds = count_open_fds();
	struct mock *m = mock_new(os_page(), 8, 0);

	(void)state;
	for (int i = 0; i < 50; i++) {
		vmp_ram *ram;
		vmp_fileh *fh;
		void *p;

		/* Limits from 3 pages: the 3 pages prefaulted for writing
		 * must fit. */
		assert_ok(vmp_ram_new(&ram, (size_t)(i + 3) * os_page()));
		fh = open_fh(ram, m, 0);
		p = map_pages(fh, (uint64_t)i, 3, PROT_READ | PROT_WRITE);
		assert_ok(vmp_prefault(p, 3 * os_page(), i & 1));
		assert_ok(vmp_munmap(p));
		assert_ok(vmp_fileh_close(fh));
		assert_ok(vmp_ram_free(ram));
	}
	/* The program still holds the store: 50 closes released nothing. */
	assert_u64(m->releases, 0);
	mock_store_free(m);
	assert_u64(m->releases, 1);
	mock_free(m);
	assert_no_fd_leak(fds);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* --- programs built against older headers ------------------------------- */

/* A program built before 0.3 gets vmp_ram_stats@VMPAGE_0.1, which fills
 * no more than the fields that version knew. */
static void test_stats_old_version(void **state)
{
	typedef int (*stats_fn)(vmp_ram *, struct vmp_stats *);
	void *lib = dlopen("libvmpage.so.0", RTLD_NOW | RTLD_NOLOAD);
	stats_fn old;
	struct vmp_stats st;
	vmp_ram *ram;

	(void)state;
	assert_non_null(lib);
	old = (stats_fn)dlvsym(lib, "vmp_ram_stats", "VMPAGE_0.1");
	assert_non_null(old);
	assert_ok(vmp_ram_new(&ram, 12345 * os_page()));
	memset(&st, 0xa5, sizeof(st));
	assert_ok(old(ram, &st));
	assert_u64(st.limit_bytes, 12345 * os_page());
	assert_u64(st.buffer_bytes, 0xa5a5a5a5a5a5a5a5ull); /* untouched */
	assert_u64(st.writeback_pages, 0xa5a5a5a5a5a5a5a5ull);
	assert_ok(vmp_ram_free(ram));
	dlclose(lib);
}

/* A program built against 0.2 gets vmp_store_new@VMPAGE_0.2, which reads
 * its table only up to loadblks: what lies after it is not a hook. */
static int hook_past_the_table(void *ctx)
{
	(void)ctx;
	fail_msg("a hook read from past the end of a 0.2 table was called");
	return 0;
}

static int zero_loadblk(void *ctx, uint64_t blk, void *buf)
{
	(void)ctx;
	(void)blk;
	memset(buf, 0, os_page());
	return 0;
}

static void test_store_new_old_version(void **state)
{
	typedef int (*store_new_fn)(vmp_store **, const vmp_store_ops *, void *,
				    size_t);
	void *lib = dlopen("libvmpage.so.0", RTLD_NOW | RTLD_NOLOAD);
	union {
		vmp_store_ops ops;
		int (*slot[sizeof(vmp_store_ops) / sizeof(void (*)(void))])(void *);
	} table;
	size_t first_new = offsetof(vmp_store_ops, discarded) / sizeof(table.slot[0]);
	store_new_fn old;
	vmp_store *store;
	vmp_ram *ram;
	vmp_fileh *fh;

	(void)state;
	assert_non_null(lib);
	old = (store_new_fn)dlvsym(lib, "vmp_store_new", "VMPAGE_0.2");
	assert_non_null(old);
	memset(&table, 0, sizeof(table));
	table.ops.loadblk = zero_loadblk;
	/* what a 0.2 program's memory holds past its table: anything */
	for (size_t i = first_new; i < ARRAY_LEN(table.slot); i++)
		table.slot[i] = hook_past_the_table;
	assert_ok(old(&store, &table.ops, NULL, os_page()));
	assert_ok(vmp_ram_new(&ram, 0));
	assert_ok(vmp_fileh_open(&fh, ram, store, 0));
	assert_ok(vmp_discard(fh)); /* would call ops.discarded */
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_store_free(store));
	assert_ok(vmp_ram_free(ram));
	dlclose(lib);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ram_new_null),
		cmocka_unit_test(test_stats_old_version),
		cmocka_unit_test(test_store_new_old_version),
		cmocka_unit_test(test_ram_calls_null),
		T(test_ram_stats_null_out),
		T(test_ram_free_busy),
		cmocka_unit_test(test_store_new_bad_args),
		cmocka_unit_test(test_store_free_null),
		cmocka_unit_test(test_store_release_once),
		cmocka_unit_test(test_store_fork_child),
		cmocka_unit_test(test_fileh_open_bad_args),
		cmocka_unit_test(test_fileh_open_base_error),
		cmocka_unit_test(test_fileh_release_once),
		cmocka_unit_test(test_fileh_close_null),
		T(test_fileh_close_busy),
		T(test_dirty_count_null),
		T(test_mmap_bad_args),
		T(test_mmap_overflow_big_pages),
		T(test_mmap_too_big),
		T(test_munmap_foreign),
		T(test_munmap_twice),
		T(test_prefault_bad),
		T(test_writeout_bad),
		T(test_discard_null),
		T(test_invalidate_bad),
		T(test_set_fault_error_handler_null),
		cmocka_unit_test(test_guard_plain),
		cmocka_unit_test(test_handle_fault_foreign),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_handler_install),
		cmocka_unit_test(test_create_free_cycle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
