/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * librows.c: the rows that go through libvmpage.  Each repetition makes a
 * fresh RAM, handle and mapping, runs one of the access loops of data.c (or
 * the change-set steps) under vmp_guard(), so that a fault the library
 * cannot serve becomes an error in the table instead of a SIGBUS, and checks
 * the bytes.  Each row runs with the fault mechanism of its job (j->faults:
 * SIGSEGV, or userfaultfd for the "@uffd" copies).
 *
 * Two stores:
 *   file store       vmp_file_store_new() on the test file (pread/pwrite)
 *   generated store  loadblk computes the data (no I/O; optionally spins
 *                    ~20 us first, like a decompressor); storeblk only sums
 *                    what it is given, so a writeout's bytes are checked and
 *                    its cost is the library's own.
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

#include "vmpage.h"
#include "bench.h"

double g_spin_iters;

/* --- the generated store ------------------------------------------------- */

static int gen_load(void *ctx, uint64_t blk, void *buf)
{
	struct gen *g = ctx;

	if (g->spin) {
		uint64_t x = spin_work(g->spin);

		__asm__ volatile("" : : "r"(x)); /* keep the work */
	}
	if (g->sorted) {
		uint64_t *w = buf, first = blk * (g->blksize / 8);

		for (size_t i = 0; i < g->blksize / 8; i++)
			w[i] = first + i;
	} else {
		data_fill(buf, blk * (g->blksize / 8), g->blksize);
	}
	return 0;
}

static int gen_store(void *ctx, uint64_t blk, const void *buf)
{
	struct gen *g = ctx;

	(void)blk;
	atomic_fetch_add(&g->stored_sum, sum_words(buf, g->blksize / 8));
	atomic_fetch_add(&g->stored_blocks, 1);
	return 0;
}

static const vmp_store_ops gen_ops = {
	.loadblk = gen_load,
	.storeblk = gen_store,
};

vmp_store *gen_store_new(struct gen *g, struct rep *r)
{
	vmp_store *st;
	int e = vmp_store_new(&st, &gen_ops, g, g->blksize);

	if (e < 0) {
		rep_fail(r, REP_ERROR, "vmp_store_new: %s", strerror(-e));
		return NULL;
	}
	return st;
}

/* --- RAM + handle + mapping ---------------------------------------------- */

bool lib_open(struct libmap *m, vmp_store *st, size_t ps,
		     uint64_t limit, unsigned flags, int faults,
		     uint64_t npages, int prot, struct rep *r)
{
	int e;

	if (!faults)
		faults = VMP_FAULTS_SIGSEGV;

	memset(m, 0, sizeof(*m));
	m->ps = ps;
	/* The floors replaced the SIGSEGV action for a while: re-arm ours. */
	vmp_fault_handler_install();
	e = vmp_ram_new(&m->ram, limit);
	if (e < 0) {
		rep_fail(r, REP_ERROR, "vmp_ram_new: %s", strerror(-e));
		vmp_store_free(st);
		return false;
	}
	/* explicit for SIGSEGV too: VMPAGE_FAULTS must not change a row */
	e = vmp_ram_set_faults(m->ram, faults);
	if (e == 0 && vmp_ram_faults(m->ram) != faults)
		e = -EPROTO; /* not the mechanism asked for: a library bug */
	if (e < 0) {
		if (e == -ENOSYS || e == -EPERM)
			rep_fail(r, REP_NA, "userfaultfd not usable here: %s",
				 strerror(-e));
		else
			rep_fail(r, REP_ERROR, "vmp_ram_set_faults(%d): %s",
				 faults, strerror(-e));
		vmp_ram_free(m->ram);
		vmp_store_free(st);
		return false;
	}
	e = vmp_fileh_open(&m->fh, m->ram, st, flags);
	vmp_store_free(st);
	if (e < 0) {
		/* An overlay the library cannot give is "n/a", not a failure. */
		rep_fail(r, (flags & VMP_OVERLAY) ? REP_NA : REP_ERROR,
			 "vmp_fileh_open%s: %s",
			 (flags & VMP_OVERLAY) ? "(VMP_OVERLAY)" : "",
			 strerror(-e));
		vmp_ram_free(m->ram);
		return false;
	}
	e = vmp_mmap(m->fh, 0, npages, prot, &m->addr);
	if (e < 0) {
		rep_fail(r, REP_ERROR, "vmp_mmap of %llu pages: %s",
			 (unsigned long long)npages, strerror(-e));
		vmp_fileh_close(m->fh);
		vmp_ram_free(m->ram);
		return false;
	}
	return true;
}

double lib_meta_bpp(const struct libmap *m)
{
	struct vmp_stats st;
	uint64_t pages;

	if (vmp_ram_stats(m->ram, &st) < 0)
		return -1;
	pages = st.resident_bytes / m->ps;
	return pages ? (double)st.metadata_bytes / (double)pages : -1;
}

void lib_close(struct libmap *m, struct rep *r)
{
	int e1 = vmp_munmap(m->addr);
	int e2 = vmp_fileh_close(m->fh);
	int e3 = vmp_ram_free(m->ram);

	if ((e1 < 0 || e2 < 0 || e3 < 0) && r->status == REP_OK)
		rep_fail(r, REP_ERROR, "teardown: munmap %d, close %d, free %d",
			 e1, e2, e3);
}

/* Run one access loop under vmp_guard and check it. */
static bool lib_access(struct access *a, struct rep *r)
{
	int e = vmp_guard(access_run, a);

	if (e < 0) {
		rep_fail(r, REP_ERROR, "fault not served: %s", strerror(-e));
		return false;
	}
	if (!access_check(a, r->msg, sizeof(r->msg))) {
		r->status = REP_BADSUM;
		return false;
	}
	r->capped = a->capped;
	return true;
}

/* Run @a over the mapping of @m (lib_access), note the metadata cost and
 * close @m.  True if the loop ran and its bytes were right. */
static bool lib_access_close(struct libmap *m, struct access *a, struct rep *r)
{
	bool ok;

	a->base = m->addr;
	ok = lib_access(a, r);
	r->meta_bpp = lib_meta_bpp(m);
	lib_close(m, r);
	return ok;
}

/* --- file store rows, overlay rows --------------------------------------- */

void job_file(const struct job *j, struct rep *r)
{
	struct access a = {
		.nbytes = g_size, .kind = j->acc, .perm = g_perm,
		.ntouch = g_ntouch, .cap = opt.cap,
	};
	struct libmap m;
	vmp_store *st;
	int e = vmp_file_store_new(&st, g_fd, j->ps);

	if (e < 0) {
		rep_fail(r, REP_ERROR, "vmp_file_store_new: %s", strerror(-e));
		return;
	}
	if (!lib_open(&m, st, j->ps, j->limit ? g_size / 4 : 0,
		      j->overlay ? VMP_OVERLAY : 0, j->faults, g_size / j->ps,
		      PROT_READ, r))
		return;
	if (lib_access_close(&m, &a, r))
		r->val[0] = access_rate(&a);
}

/* --- generated store rows ------------------------------------------------ */

void job_gen_fault(const struct job *j, struct rep *r)
{
	struct gen g = { .blksize = OS_PAGE };
	vmp_store *st = gen_store_new(&g, r);
	struct access a = {
		.kind = ACC_RAND, .perm = g_perm, .ntouch = g_ntouch,
		.cap = opt.cap,
	};
	struct libmap m;

	if (!st || !lib_open(&m, st, g.blksize, 0, 0, j->faults, g_npages,
			     PROT_READ, r))
		return;
	if (lib_access_close(&m, &a, r))
		r->val[0] = a.secs * 1e9 / (double)a.done;
}

void job_gen_seq(const struct job *j, struct rep *r)
{
	struct gen g = { .blksize = j->ps };
	vmp_store *st = gen_store_new(&g, r);
	struct access a = { .nbytes = g_size, .kind = ACC_SEQ, .cap = opt.cap };
	struct libmap m;

	if (!st || !lib_open(&m, st, g.blksize, 0, 0, j->faults, g_size / j->ps,
			     PROT_READ, r))
		return;
	if (lib_access_close(&m, &a, r))
		r->val[0] = access_rate(&a);
}

/* --- threads ------------------------------------------------------------- */

void job_threads(const struct job *j, struct rep *r)
{
	struct gen g = { .blksize = OS_PAGE };
	vmp_store *st;
	struct access a[64];
	struct libmap m;
	int n = j->threads, e = 0;
	double secs;

	g.spin = j->spin ? (uint64_t)(g_spin_iters + 0.5) : 0;
	st = gen_store_new(&g, r);
	if (!st || !lib_open(&m, st, g.blksize, 0, 0, j->faults, g_npages,
			     PROT_READ, r))
		return;
	access_split(a, n, m.addr, g_perm, g_ntouch);
	secs = access_parallel(a, n, true, &e);
	if (e < 0) {
		rep_fail(r, REP_ERROR, "fault not served: %s", strerror(-e));
	} else {
		for (int i = 0; i < n; i++)
			if (!access_check(&a[i], r->msg, sizeof(r->msg)))
				r->status = REP_BADSUM;
		r->val[0] = (double)g_ntouch / secs / 1e3;
	}
	r->meta_bpp = lib_meta_bpp(&m);
	lib_close(&m, r);
}

/* --- change set ---------------------------------------------------------- */

#define CS_FLIP 0xA5A5A5A5A5A5A5A5ull

/* One pass of the change-set steps over pages perm[0 .. n). */
struct cs_pass {
	uint64_t *base;
	const uint32_t *perm;
	uint64_t n;
	size_t ps;
	bool flip;        /* write data ^ CS_FLIP, else the data itself */
	uint64_t sum;     /* cs_read: what it read */
};

/* The word of page @p that the change-set steps write and check. */
static uint64_t cs_word(uint64_t p, size_t ps)
{
	uint64_t words = ps / 8;

	return p * words + ((p * 0x9E37u) & (words - 1));
}

static int cs_write(void *arg)
{
	struct cs_pass *c = arg;

	for (uint64_t i = 0; i < c->n; i++) {
		uint64_t w = cs_word(c->perm[i], c->ps);

		c->base[w] = data_word(w) ^ (c->flip ? CS_FLIP : 0);
	}
	return 0;
}

static int cs_read(void *arg)
{
	struct cs_pass *c = arg;

	c->sum = 0;
	for (uint64_t i = 0; i < c->n; i++)
		c->sum += c->base[cs_word(c->perm[i], c->ps)];
	return 0;
}

/* Sum of the words the steps touch, as data (flip false) or flipped. */
static uint64_t cs_want(const struct cs_pass *c, bool flip)
{
	uint64_t s = 0;

	for (uint64_t i = 0; i < c->n; i++) {
		uint64_t w = cs_word(c->perm[i], c->ps);

		s += data_word(w) ^ (flip ? CS_FLIP : 0);
	}
	return s;
}

/* Sum of those words as the file holds them (the overlay's store). */
static uint64_t cs_file_sum(int fd, const struct cs_pass *c)
{
	uint64_t s = 0, v;

	for (uint64_t i = 0; i < c->n; i++) {
		uint64_t w = cs_word(c->perm[i], c->ps);

		if (pread(fd, &v, 8, (off_t)(w * 8)) != 8)
			return ~s; /* surely wrong */
		s += v;
	}
	return s;
}

/* Time @fn(arg) under vmp_guard; ns per page into *ns. */
static bool cs_timed(int (*fn)(void *), struct cs_pass *c, double *ns,
		     struct rep *r, const char *what)
{
	double t = now();
	int e = vmp_guard(fn, c);

	t = now() - t;
	if (e < 0) {
		rep_fail(r, REP_ERROR, "%s: fault not served: %s", what,
			 strerror(-e));
		return false;
	}
	*ns = t * 1e9 / (double)c->n;
	return true;
}

static bool cs_dirty_is(vmp_fileh *fh, uint64_t want, struct rep *r,
			const char *after)
{
	uint64_t n = ~0ull;
	int e = vmp_fileh_dirty_count(fh, &n);

	if (e == 0 && n == want)
		return true;
	rep_fail(r, REP_ERROR, "after %s: %llu dirty pages (err %d), want %llu",
		 after, (unsigned long long)n, e, (unsigned long long)want);
	return false;
}

/* Time a writeout (STORE|MARKSTORED) or a discard; ns per page into *ns. */
static bool cs_timed_call(vmp_fileh *fh, bool writeout, struct cs_pass *c,
			  double *ns, struct rep *r)
{
	double t = now();
	int e = writeout ? vmp_writeout(fh, VMP_WRITEOUT_STORE |
					       VMP_WRITEOUT_MARKSTORED)
			 : vmp_discard(fh);

	t = now() - t;
	if (e < 0) {
		rep_fail(r, REP_ERROR, "%s: %s",
			 writeout ? "vmp_writeout" : "vmp_discard",
			 strerror(-e));
		return false;
	}
	*ns = t * 1e9 / (double)c->n;
	return true;
}

/* After the writeout: the store holds exactly the written bytes.  The
 * generated store summed every block it was given; the overlay's file is
 * read back. */
static bool cs_check_stored(struct gen *g, int fd, const struct cs_pass *c,
			    struct rep *r)
{
	uint64_t flipped = cs_want(c, true), got;
	uint64_t want = data_sum(0, c->n * c->ps / 8) - cs_want(c, false) +
			flipped;

	if (fd < 0 && (g->stored_blocks != c->n || g->stored_sum != want)) {
		rep_fail(r, REP_BADSUM, "writeout stored %llu blocks, sum "
			 "%#llx; want %llu, %#llx",
			 (unsigned long long)g->stored_blocks,
			 (unsigned long long)g->stored_sum,
			 (unsigned long long)c->n, (unsigned long long)want);
		return false;
	}
	if (fd >= 0 && (got = cs_file_sum(fd, c)) != flipped) {
		rep_fail(r, REP_BADSUM, "file after writeout: sum %#llx, "
			 "want %#llx", (unsigned long long)got,
			 (unsigned long long)flipped);
		return false;
	}
	return true;
}

/* After the discard the mapping shows the store's bytes again: the data
 * for the generated store, the committed (flipped) words for the file. */
static void cs_check_discarded(int fd, struct cs_pass *c, struct rep *r)
{
	uint64_t want = cs_want(c, fd >= 0);

	if (vmp_guard(cs_read, c) < 0)
		rep_fail(r, REP_ERROR, "read after discard: fault not served");
	else if (c->sum != want)
		rep_fail(r, REP_BADSUM, "after discard: sum %#llx, want %#llx",
			 (unsigned long long)c->sum, (unsigned long long)want);
}

/* The four steps on an open mapping; @fd >= 0 for the overlay's file.
 * With VMP_WRITEBACK pages leave the change set under pressure: they are
 * not all dirty after the first writes, but each is stored once. */
static void cs_steps(struct libmap *m, struct gen *g, int fd, struct cs_pass *c,
		     bool writeback, struct rep *r)
{
	/* 1. first-touch writes: load + write fault per page */
	c->flip = true;
	if (!cs_timed(cs_write, c, &r->val[0], r, "first write") ||
	    (!writeback && !cs_dirty_is(m->fh, c->n, r, "first writes")))
		return;
	r->meta_bpp = lib_meta_bpp(m);
	/* 2. commit */
	if (!cs_timed_call(m->fh, true, c, &r->val[1], r) ||
	    !cs_dirty_is(m->fh, 0, r, "writeout") ||
	    !cs_check_stored(g, fd, c, r))
		return;
	/* 3. write again on clean, mapped pages: one write fault each */
	c->flip = false;
	if (!cs_timed(cs_write, c, &r->val[2], r, "re-dirty") ||
	    (!writeback && !cs_dirty_is(m->fh, c->n, r, "re-dirty")))
		return;
	/* 4. abort */
	if (!cs_timed_call(m->fh, false, c, &r->val[3], r) ||
	    !cs_dirty_is(m->fh, 0, r, "discard"))
		return;
	cs_check_discarded(fd, c, r);
}

/*
 * Change set: n pages (as many bytes as the random rows touch), dirtied by
 * first-touch writes in random order, written out (STORE|MARKSTORED),
 * dirtied again, discarded.  Generated store, or with j->overlay a file
 * store on a file of its own (the writeout changes it) opened VMP_OVERLAY.
 * With j->evict the RAM holds a quarter of the set: VMP_SPILL spills
 * (to $TMPDIR), VMP_WRITEBACK stores pages under pressure; j->reclaimer
 * has the background reclaimer do it ahead of the faults.
 */
void job_changeset(const struct job *j, struct rep *r)
{
	uint64_t n = g_ntouch * OS_PAGE / j->ps;
	struct gen g = { .blksize = j->ps };
	struct cs_pass c = { .ps = j->ps };
	uint32_t *perm;
	struct libmap m;
	vmp_store *st;
	int fd = -1, e;

	if (n == 0)
		n = 1;
	perm = malloc(n * sizeof(*perm));
	if (!perm) {
		rep_fail(r, REP_ERROR, "out of memory");
		return;
	}
	shuffle(perm, n, 0xC5 + j->ps);
	if (j->overlay) {
		fd = file_create(n * j->ps, "cs");
		e = fd < 0 ? fd : vmp_file_store_new(&st, fd, j->ps);
		if (e < 0) {
			rep_fail(r, REP_ERROR, "change-set file store: %s",
				 strerror(-e));
			goto out;
		}
	} else if (!(st = gen_store_new(&g, r))) {
		goto out;
	}
	if (!lib_open(&m, st, j->ps, j->evict ? n * j->ps / 4 : 0,
		      (j->overlay ? VMP_OVERLAY : 0) | j->evict, j->faults,
		      n, PROT_READ | PROT_WRITE, r))
		goto out;
	if (j->reclaimer && (e = vmp_ram_set_reclaimer(m.ram, 1)) < 0) {
		rep_fail(r, REP_ERROR, "vmp_ram_set_reclaimer: %s", strerror(-e));
		lib_close(&m, r);
		goto out;
	}
	c.base = m.addr;
	c.perm = perm;
	c.n = n;
	cs_steps(&m, &g, fd, &c, j->evict == VMP_WRITEBACK, r);
	lib_close(&m, r);
out:
	if (fd >= 0)
		close(fd);
	free(perm);
}

/* --- metadata ------------------------------------------------------------ */

/*
 * Metadata: a 64 GiB mapping with nothing touched (should cost next to
 * nothing), then ntouch random first touches inside it (bytes per resident
 * page).
 */
void job_meta(const struct job *j, struct rep *r)
{
	const uint64_t map_pages = 64 * GiB / OS_PAGE;
	struct gen g = { .blksize = OS_PAGE };
	vmp_store *st = gen_store_new(&g, r);
	struct access a = { .kind = ACC_RAND, .perm = g_perm,
			    .ntouch = g_ntouch };
	struct vmp_stats s;
	struct libmap m;

	if (!st || !lib_open(&m, st, g.blksize, 0, 0, j->faults, map_pages,
			     PROT_READ, r))
		return;
	if (vmp_ram_stats(m.ram, &s) < 0) {
		rep_fail(r, REP_ERROR, "vmp_ram_stats failed");
		goto out;
	}
	r->val[0] = (double)s.metadata_bytes;
	a.base = m.addr;
	if (lib_access(&a, r))
		r->val[1] = r->meta_bpp = lib_meta_bpp(&m);
out:
	lib_close(&m, r);
}

/* --- the kernel mapping wall --------------------------------------------- */

/*
 * wall/second-pass: a 4 GiB generated store mapped read-only without
 * read-ahead or limit; g_wall_touches distinct random pages touched once
 * (untimed), then again in another random order (timed): ns per touch.
 * With SIGSEGV each scattered mapped page costs two kernel VMAs, and the
 * library deactivates clean pages to stay under 7/8 of vm.max_map_count:
 * about 28 600 of the 200 000 stay mapped, and the second pass, each of
 * its faults deactivating the oldest, finds almost none of them (in the
 * first pass's order it would find none at all).  With userfaultfd no
 * touch of the second pass should fault.  The note tells its faults.
 */
void job_wall_second_pass(const struct job *j, struct rep *r)
{
	const uint32_t *perm = wall_perm(0);
	struct gen g = { .blksize = OS_PAGE };
	struct access a = { .kind = ACC_RAND, .perm = perm,
			    .ntouch = g_wall_touches };
	struct vmp_stats s0, s1;
	struct libmap m;
	vmp_store *st;

	if (!perm) {
		rep_fail(r, REP_ERROR, "out of memory");
		return;
	}
	if (!(st = gen_store_new(&g, r)) ||
	    !lib_open(&m, st, OS_PAGE, 0, VMP_NO_READAHEAD, j->faults,
		      WALL_PAGES, PROT_READ, r))
		return;
	a.base = m.addr;
	if (lib_access(&a, r) && vmp_ram_stats(m.ram, &s0) == 0 &&
	    (a.perm = wall_perm(1), lib_access(&a, r)) &&
	    vmp_ram_stats(m.ram, &s1) == 0) {
		r->val[0] = a.secs * 1e9 / (double)a.done;
		snprintf(r->info, sizeof(r->info), "2nd pass: %llu faults, "
			 "%.0f MiB resident",
			 (unsigned long long)(s1.faults - s0.faults),
			 (double)s1.resident_bytes / MiB);
	} else if (r->status == REP_OK) {
		rep_fail(r, REP_ERROR, "vmp_ram_stats failed");
	}
	r->meta_bpp = lib_meta_bpp(&m);
	lib_close(&m, r);
}

/* Pages [0, max) of the dirty pass are store pages 0, 2, 4, ... */
static uint64_t dirty_word(uint64_t i)
{
	return touch_word(2 * i);
}

struct dirty_pass {
	volatile uint64_t *base;  /* volatile: done is counted in order */
	uint64_t max;
	volatile uint64_t done;   /* pages written, read after a failure */
	uint64_t sum;             /* dirty_read: what it read */
	enum vmp_fault_what what; /* the fault that failed, 0: none */
	int err;
};

static int dirty_write(void *arg)
{
	struct dirty_pass *d = arg;

	for (uint64_t i = d->done; i < d->max; i++) {
		uint64_t w = dirty_word(i);

		d->base[w] = data_word(w) ^ CS_FLIP;
		d->done = i + 1;
	}
	return 0;
}

/* Read back the written words (no fault: they are dirty, mapped). */
static int dirty_read(void *arg)
{
	struct dirty_pass *d = arg;

	d->sum = 0;
	for (uint64_t i = 0; i < d->done; i++)
		d->sum += d->base[dirty_word(i)];
	return 0;
}

/* After the discard: 256 of the pages, spread, read as the store has them. */
static int dirty_sample(void *arg)
{
	struct dirty_pass *d = arg;
	uint64_t step = d->done / 256 ? d->done / 256 : 1;

	d->sum = 0;
	for (uint64_t i = 0; i < d->done; i += step)
		d->sum += d->base[dirty_word(i)];
	return 0;
}

static uint64_t dirty_want(const struct dirty_pass *d, uint64_t step,
			   uint64_t flip)
{
	uint64_t s = 0;

	for (uint64_t i = 0; i < d->done; i += step)
		s += data_word(dirty_word(i)) ^ flip;
	return s;
}

static int dirty_on_error(const struct vmp_fault_error *e, void *arg)
{
	struct dirty_pass *d = arg;

	d->what = e->what;
	d->err = e->err;
	return VMP_FAULT_DEFAULT; /* vmp_guard returns the error */
}

/* The dirty pass's checks and its discard; false with the reason in @r. */
static bool dirty_check_discard(struct libmap *m, struct dirty_pass *d,
				struct rep *r, double *discard_ns, int *tries)
{
	uint64_t step = d->done / 256 ? d->done / 256 : 1, n = ~0ull;
	int e;
	double t;

	if (vmp_fileh_dirty_count(m->fh, &n) < 0 || n != d->done) {
		rep_fail(r, REP_ERROR, "%llu pages written, %llu dirty",
			 (unsigned long long)d->done, (unsigned long long)n);
		return false;
	}
	if ((e = vmp_guard(dirty_read, d)) < 0) {
		rep_fail(r, REP_ERROR, "reading the dirty pages: %s",
			 strerror(-e));
		return false;
	}
	if (d->sum != dirty_want(d, 1, CS_FLIP)) {
		rep_fail(r, REP_BADSUM, "dirty pages read back %#llx, want "
			 "%#llx", (unsigned long long)d->sum,
			 (unsigned long long)dirty_want(d, 1, CS_FLIP));
		return false;
	}
	/* vmp_discard may stop short near vm.max_map_count: "call again"
	 * (documented; noted, not an error) */
	t = now();
	*tries = 1;
	while ((e = vmp_discard(m->fh)) == -ENOMEM && *tries < 4)
		(*tries)++;
	*discard_ns = (now() - t) * 1e9 / (double)(d->done ? d->done : 1);
	if (e < 0 || vmp_fileh_dirty_count(m->fh, &n) < 0 || n != 0) {
		rep_fail(r, REP_ERROR, "vmp_discard: %s, %llu pages still "
			 "dirty", strerror(-e), (unsigned long long)n);
		return false;
	}
	if ((e = vmp_guard(dirty_sample, d)) < 0) {
		rep_fail(r, REP_ERROR, "reading after the discard: %s",
			 strerror(-e));
		return false;
	}
	if (d->sum != dirty_want(d, step, 0)) {
		rep_fail(r, REP_BADSUM, "after the discard: %#llx, want %#llx",
			 (unsigned long long)d->sum,
			 (unsigned long long)dirty_want(d, step, 0));
		return false;
	}
	return r->status == REP_OK;
}

/*
 * wall/dirty-max: one word written in every other page of a mapping of
 * 2 * g_wall_dirty pages (generated store, no read-ahead, no limit), in
 * order, under vmp_guard, until a fault fails or g_wall_dirty pages are
 * dirty: the number of isolated dirty pages held.  With SIGSEGV each one
 * splits a kernel VMA and the kernel's vm.max_map_count stops it: that
 * failure (VMP_FAULT_MAPLIMIT) is the measured result, not an error; any
 * other failure is.  Then the pages are read back, discarded, and a sample
 * read again as the store has them.
 */
void job_wall_dirty_max(const struct job *j, struct rep *r)
{
	struct gen g = { .blksize = OS_PAGE };
	struct dirty_pass d = { .max = g_wall_dirty };
	double t, discard_ns = 0;
	struct libmap m;
	vmp_store *st;
	int e, tries = 0;
	size_t len;

	if (!(st = gen_store_new(&g, r)) ||
	    !lib_open(&m, st, OS_PAGE, 0, VMP_NO_READAHEAD, j->faults,
		      2 * g_wall_dirty, PROT_READ | PROT_WRITE, r))
		return;
	d.base = m.addr;
	e = vmp_set_fault_error_handler(m.fh, dirty_on_error, &d);
	if (e < 0) {
		rep_fail(r, REP_ERROR, "vmp_set_fault_error_handler: %s",
			 strerror(-e));
		goto out;
	}
	t = now();
	e = vmp_guard(dirty_write, &d);
	t = now() - t;
	if (e < 0 && d.what != VMP_FAULT_MAPLIMIT) {
		rep_fail(r, REP_ERROR, "page %llu: fault not served (what %d): "
			 "%s", (unsigned long long)d.done, (int)d.what,
			 strerror(-e));
		goto out;
	}
	r->meta_bpp = lib_meta_bpp(&m); /* while the pages are resident */
	if (!dirty_check_discard(&m, &d, r, &discard_ns, &tries))
		goto out;
	r->val[0] = (double)d.done;
	if (e < 0)
		snprintf(r->info, sizeof(r->info), "stopped by "
			 "VMP_FAULT_MAPLIMIT (%s); ", strerror(-d.err));
	else
		snprintf(r->info, sizeof(r->info), "no failure; ");
	len = strlen(r->info);
	snprintf(r->info + len, sizeof(r->info) - len, "%.1f us per first "
		 "write, discard %.0f ns/page",
		 t * 1e6 / (double)(d.done ? d.done : 1), discard_ns);
	if (tries > 1) {
		len = strlen(r->info);
		snprintf(r->info + len, sizeof(r->info) - len, " (%d "
			 "vmp_discard calls: -ENOMEM)", tries);
	}
out:
	lib_close(&m, r);
}
