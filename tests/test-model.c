/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-model.c: thousands of random operations on two handles of one
 * store, checked byte for byte after every step against a plain in-memory
 * model (issue 3).
 *
 * The model: the store's bytes, and for each handle which pages are dirty
 * and their bytes.  A handle shows its dirty bytes, else the store's bytes.
 * That last rule needs clean pages to be current, so whenever the store
 * changes (a commit by one handle, or a change "underneath"), the test
 * invalidates the other handle's pages, as a program must.
 *
 * Operations: read, write, commit (in one call, in two, or store only),
 * discard, invalidate, change underneath, map, unmap, prefault, reclaim,
 * close and reopen a handle.  Runs as normal and VMP_OVERLAY handles, with
 * and without a memory limit (which keeps dirty pages under it).  The store
 * is file-backed and offers loadblks, so read-ahead runs go through it.
 *
 * The seed is printed; VMPAGE_SEED=<n> replays a run.  Each step runs under
 * vmp_guard so that a fault the library cannot serve becomes a report with
 * the seed and the last operations, not a bare SIGBUS.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

#define NPG 24      /* pages in the store */
#define MAXMAP 4    /* mappings per handle */
#define STEPS 2500
#define RING 32     /* operations remembered for the report */

struct variant {
	const char *name;
	unsigned flags;     /* 0 or VMP_OVERLAY */
	uint64_t lim_pages; /* memory limit in pages, 0: none */
	uint64_t seed;
};

struct mapping {
	char *addr;
	uint64_t off, len; /* pages */
	int prot;
};

struct handle {
	vmp_fileh *fh;
	struct mapping maps[MAXMAP];
	int nmaps;
	bool dirty[NPG];
	uint8_t *view; /* NPG pages: the bytes of dirty pages */
};

struct model {
	const struct variant *v;
	uint64_t seed;
	struct rng r;
	uint64_t step;
	size_t ps;
	struct mock *m;
	vmp_ram *ram;
	struct handle h[2];
	uint8_t *store; /* NPG pages: what the store holds */
	uint8_t *buf;   /* one page of scratch */
	char ring[RING][128];
	char failure[512];
};

#define MODEL_MISMATCH 1

/* --- bookkeeping ---------------------------------------------------------- */

static void note(struct model *md, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note(struct model *md, const char *fmt, ...)
{
	char *s = md->ring[md->step % RING];
	va_list ap;
	int n = snprintf(s, sizeof(md->ring[0]), "step %llu: ",
			 (unsigned long long)md->step);

	va_start(ap, fmt);
	vsnprintf(s + n, sizeof(md->ring[0]) - (size_t)n, fmt, ap);
	va_end(ap);
}

static int mismatch(struct model *md, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int mismatch(struct model *md, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(md->failure, sizeof(md->failure), fmt, ap);
	va_end(ap);
	return MODEL_MISMATCH;
}

/* A library call that must succeed, inside a step. */
#define CALL(md, expr)                                                         \
	do {                                                                   \
		int rc_ = (expr);                                              \
		if (rc_)                                                       \
			return mismatch(md, "%s returned %s", #expr,           \
					errname(rc_));                         \
	} while (0)

static uint8_t *page_of(struct model *md, uint8_t *base, uint64_t i)
{
	return base + i * md->ps;
}

/* What handle @h must show for page @i. */
static const uint8_t *expected(struct model *md, struct handle *h, uint64_t i)
{
	return h->dirty[i] ? page_of(md, h->view, i) : page_of(md, md->store, i);
}

static uint64_t ndirty(const struct handle *h)
{
	uint64_t n = 0;

	for (int i = 0; i < NPG; i++)
		n += h->dirty[i];
	return n;
}

/* Dirty pages allowed in total: under a limit, leave room for clean ones. */
static uint64_t dirty_cap(struct model *md)
{
	return md->v->lim_pages ? md->v->lim_pages - 4 : NPG * 2;
}

static bool may_dirty(struct model *md, struct handle *h, uint64_t i)
{
	return h->dirty[i] || ndirty(&md->h[0]) + ndirty(&md->h[1]) <
				      dirty_cap(md);
}

/* Page @i of @h becomes dirty in the model. */
static void model_dirty(struct model *md, struct handle *h, uint64_t i)
{
	if (!h->dirty[i]) {
		memcpy(page_of(md, h->view, i), page_of(md, md->store, i),
		       md->ps);
		h->dirty[i] = true;
	}
}

/* --- checks --------------------------------------------------------------- */

static int check_mapping(struct model *md, int hi, int mi)
{
	struct handle *h = &md->h[hi];
	struct mapping *mp = &h->maps[mi];

	for (uint64_t j = 0; j < mp->len; j++) {
		const uint8_t *want = expected(md, h, mp->off + j);
		const uint8_t *got = (uint8_t *)mp->addr + j * md->ps;

		if (memcmp(got, want, md->ps) == 0)
			continue;
		for (size_t b = 0; b < md->ps; b++)
			if (got[b] != want[b])
				return mismatch(md,
						"handle %d mapping %d (pages "
						"%llu+%llu) page %llu byte %zu:"
						" %#x, model says %#x (%s)",
						hi, mi,
						(unsigned long long)mp->off,
						(unsigned long long)mp->len,
						(unsigned long long)(mp->off + j),
						b, got[b], want[b],
						h->dirty[mp->off + j] ? "dirty"
								      : "clean");
	}
	return 0;
}

static int check_all(struct model *md)
{
	for (int hi = 0; hi < 2; hi++) {
		struct handle *h = &md->h[hi];
		uint64_t n = UINT64_MAX;

		CALL(md, vmp_fileh_dirty_count(h->fh, &n));
		if (n != ndirty(h))
			return mismatch(md, "handle %d: %llu dirty pages, "
					"model says %llu", hi,
					(unsigned long long)n,
					(unsigned long long)ndirty(h));
		for (int mi = 0; mi < h->nmaps; mi++)
			if (check_mapping(md, hi, mi))
				return MODEL_MISMATCH;
	}
	if (md->v->lim_pages) {
		struct vmp_stats st;

		CALL(md, vmp_ram_stats(md->ram, &st));
		if (st.resident_bytes > md->v->lim_pages * md->ps)
			return mismatch(md, "resident %llu over the limit",
					(unsigned long long)st.resident_bytes);
	}
	/* The store itself, now and then (pread of the file). */
	if (md->step % 64 == 0)
		for (uint64_t i = 0; i < NPG; i++) {
			mock_expected(md->m, i, md->buf);
			if (memcmp(md->buf, page_of(md, md->store, i), md->ps))
				return mismatch(md, "store block %llu differs "
						"from the model",
						(unsigned long long)i);
		}
	return 0;
}

/* --- operations ----------------------------------------------------------- */

static struct mapping *pick_map(struct model *md, struct handle *h, bool rw)
{
	int start = (int)rng_below(&md->r, (uint64_t)h->nmaps);

	for (int k = 0; k < h->nmaps; k++) {
		struct mapping *mp = &h->maps[(start + k) % h->nmaps];

		if (!rw || (mp->prot & PROT_WRITE))
			return mp;
	}
	return NULL;
}

static int op_read(struct model *md, int hi)
{
	struct handle *h = &md->h[hi];
	struct mapping *mp = pick_map(md, h, false);
	uint64_t j;
	size_t off, len;

	if (!mp)
		return mismatch(md, "handle %d has no mapping", hi);
	j = rng_below(&md->r, mp->len);
	off = (size_t)rng_below(&md->r, md->ps);
	len = 1 + (size_t)rng_below(&md->r, md->ps - off);

	note(md, "read h%d pg %llu off %zu len %zu", hi,
	     (unsigned long long)(mp->off + j), off, len);
	memcpy(md->buf, mp->addr + j * md->ps + off, len);
	if (memcmp(md->buf, expected(md, h, mp->off + j) + off, len))
		return mismatch(md, "read of handle %d page %llu differs", hi,
				(unsigned long long)(mp->off + j));
	return 0;
}

static int op_commit(struct model *md, int hi, int how);

static int op_write(struct model *md, int hi)
{
	struct handle *h = &md->h[hi];
	struct mapping *mp = pick_map(md, h, true);
	uint64_t j, i;
	size_t off, len;

	if (!mp)
		return op_read(md, hi);
	j = rng_below(&md->r, mp->len);
	i = mp->off + j;
	if (!may_dirty(md, h, i))
		return op_commit(md, hi, 0);
	off = (size_t)rng_below(&md->r, md->ps);
	len = 1 + (size_t)rng_below(&md->r, md->ps - off < 256 ? md->ps - off
								 : 256);
	for (size_t b = 0; b < len; b++)
		md->buf[b] = (uint8_t)rng_next(&md->r);
	note(md, "write h%d pg %llu off %zu len %zu", hi,
	     (unsigned long long)i, off, len);
	memcpy(mp->addr + j * md->ps + off, md->buf, len);
	model_dirty(md, h, i);
	memcpy(page_of(md, h->view, i) + off, md->buf, len);
	return 0;
}

/* The other handle's clean pages must follow the store: invalidate them. */
static int sync_other(struct model *md, int hi)
{
	CALL(md, vmp_invalidate(md->h[!hi].fh, 0, NPG));
	return 0;
}

/* how: 0 STORE|MARKSTORED, 1 STORE then MARKSTORED, 2 STORE only. */
static int op_commit(struct model *md, int hi, int how)
{
	struct handle *h = &md->h[hi];
	static const char *const names[] = { "commit", "store+markstored",
					     "store only" };

	note(md, "%s h%d (%llu dirty)", names[how], hi,
	     (unsigned long long)ndirty(h));
	if (how == 0) {
		CALL(md, vmp_writeout(h->fh, VMP_WRITEOUT_STORE |
						     VMP_WRITEOUT_MARKSTORED));
	} else {
		CALL(md, vmp_writeout(h->fh, VMP_WRITEOUT_STORE));
		if (how == 1)
			CALL(md, vmp_writeout(h->fh, VMP_WRITEOUT_MARKSTORED));
	}
	for (uint64_t i = 0; i < NPG; i++) {
		if (!h->dirty[i])
			continue;
		memcpy(page_of(md, md->store, i), page_of(md, h->view, i),
		       md->ps);
		if (how != 2)
			h->dirty[i] = false;
	}
	return sync_other(md, hi);
}

static int op_discard(struct model *md, int hi)
{
	note(md, "discard h%d", hi);
	CALL(md, vmp_discard(md->h[hi].fh));
	memset(md->h[hi].dirty, 0, sizeof(md->h[hi].dirty));
	return 0;
}

static int op_invalidate(struct model *md, int hi)
{
	uint64_t off = rng_below(&md->r, NPG + 4);
	uint64_t len = 1 + rng_below(&md->r, NPG);

	note(md, "invalidate h%d %llu+%llu", hi, (unsigned long long)off,
	     (unsigned long long)len);
	CALL(md, vmp_invalidate(md->h[hi].fh, off, len));
	return 0;
}

/* The store changes underneath; both handles are told. */
static int op_change(struct model *md)
{
	uint64_t b = rng_below(&md->r, NPG);

	note(md, "change block %llu underneath", (unsigned long long)b);
	mock_change(md->m, b);
	mock_expected(md->m, b, page_of(md, md->store, b));
	CALL(md, vmp_invalidate(md->h[0].fh, b, 1));
	CALL(md, vmp_invalidate(md->h[1].fh, b, 1));
	return 0;
}

static int map_one(struct model *md, int hi, uint64_t off, uint64_t len,
		   int prot)
{
	struct handle *h = &md->h[hi];
	struct mapping *mp = &h->maps[h->nmaps];
	void *addr = NULL;

	CALL(md, vmp_mmap(h->fh, off, len, prot, &addr));
	mp->addr = addr;
	mp->off = off;
	mp->len = len;
	mp->prot = prot;
	h->nmaps++;
	return 0;
}

static int op_map(struct model *md, int hi)
{
	uint64_t off = rng_below(&md->r, NPG);
	uint64_t len = 1 + rng_below(&md->r, NPG - off);
	int prot = rng_below(&md->r, 3) ? PROT_READ | PROT_WRITE : PROT_READ;

	if (md->h[hi].nmaps == MAXMAP)
		return op_read(md, hi);
	note(md, "map h%d %llu+%llu %s", hi, (unsigned long long)off,
	     (unsigned long long)len, prot & PROT_WRITE ? "rw" : "r");
	return map_one(md, hi, off, len, prot);
}

static int unmap_at(struct model *md, int hi, int mi)
{
	struct handle *h = &md->h[hi];

	CALL(md, vmp_munmap(h->maps[mi].addr));
	h->maps[mi] = h->maps[--h->nmaps];
	return 0;
}

static int op_unmap(struct model *md, int hi)
{
	int mi;

	if (md->h[hi].nmaps < 2) /* keep one, reads need it */
		return op_map(md, hi);
	mi = (int)rng_below(&md->r, (uint64_t)md->h[hi].nmaps);
	note(md, "unmap h%d mapping %d", hi, mi);
	return unmap_at(md, hi, mi);
}

static int op_reopen(struct model *md, int hi)
{
	struct handle *h = &md->h[hi];

	note(md, "close and reopen h%d (%llu dirty dropped)", hi,
	     (unsigned long long)ndirty(h));
	while (h->nmaps)
		if (unmap_at(md, hi, 0))
			return MODEL_MISMATCH;
	CALL(md, vmp_fileh_close(h->fh));
	h->fh = NULL;
	memset(h->dirty, 0, sizeof(h->dirty));
	CALL(md, vmp_fileh_open(&h->fh, md->ram, md->m->store,
				md->v->flags));
	return map_one(md, hi, 0, NPG, PROT_READ | PROT_WRITE);
}

static int op_prefault(struct model *md, int hi)
{
	struct handle *h = &md->h[hi];
	struct mapping *mp = pick_map(md, h, false);
	uint64_t j, k;
	int write;

	if (!mp)
		return mismatch(md, "handle %d has no mapping", hi);
	j = rng_below(&md->r, mp->len);
	k = 1 + rng_below(&md->r, mp->len - j < 4 ? mp->len - j : 4);
	write = (mp->prot & PROT_WRITE) && rng_below(&md->r, 2);

	for (uint64_t i = mp->off + j; write && i < mp->off + j + k; i++)
		if (!may_dirty(md, h, i) || ndirty(&md->h[0]) +
							   ndirty(&md->h[1]) +
							   k >=
						   dirty_cap(md))
			write = 0;
	note(md, "prefault h%d %llu+%llu%s", hi,
	     (unsigned long long)(mp->off + j), (unsigned long long)k,
	     write ? " write" : "");
	CALL(md, vmp_prefault(mp->addr + j * md->ps, k * md->ps, write));
	for (uint64_t i = mp->off + j; write && i < mp->off + j + k; i++)
		model_dirty(md, h, i);
	return 0;
}

static int op_reclaim(struct model *md)
{
	size_t bytes = (size_t)rng_below(&md->r, 2 * NPG * md->ps);

	note(md, "reclaim %zu", bytes);
	CALL(md, vmp_ram_reclaim(md->ram, bytes));
	return 0;
}

static int do_op(struct model *md)
{
	int hi = (int)rng_below(&md->r, 2);
	uint64_t x = rng_below(&md->r, 100);

	if (x < 30)
		return op_read(md, hi);
	if (x < 60)
		return op_write(md, hi);
	if (x < 65)
		return op_commit(md, hi, 0);
	if (x < 67)
		return op_commit(md, hi, 1);
	if (x < 69)
		return op_commit(md, hi, 2);
	if (x < 73)
		return op_discard(md, hi);
	if (x < 78)
		return op_invalidate(md, hi);
	if (x < 81)
		return op_change(md);
	if (x < 86)
		return op_map(md, hi);
	if (x < 90)
		return op_unmap(md, hi);
	if (x < 91)
		return op_reopen(md, hi);
	if (x < 96)
		return op_prefault(md, hi);
	return op_reclaim(md);
}

static int step_fn(void *arg)
{
	struct model *md = arg;
	int rc = do_op(md);

	return rc ? rc : check_all(md);
}

/* --- the run -------------------------------------------------------------- */

static void report(struct model *md, int rc)
{
	print_message("model %s: last operations:\n", md->v->name);
	for (uint64_t s = md->step >= RING ? md->step - RING + 1 : 0;
	     s <= md->step; s++)
		print_message("  %s\n", md->ring[s % RING]);
	if (rc < 0)
		snprintf(md->failure, sizeof(md->failure),
			 "a fault could not be served: %s", errname(rc));
	fail_msg("model %s, seed %llu (replay: VMPAGE_SEED=%llu), step %llu: "
		 "%s",
		 md->v->name, (unsigned long long)md->seed,
		 (unsigned long long)md->seed, (unsigned long long)md->step,
		 md->failure);
}

static void model_free(struct model *md)
{
	for (int hi = 0; hi < 2; hi++) {
		struct handle *h = &md->h[hi];

		while (h->nmaps)
			assert_ok(vmp_munmap(h->maps[--h->nmaps].addr));
		if (h->fh)
			assert_ok(vmp_fileh_close(h->fh));
		free(h->view);
	}
	assert_ok(vmp_ram_free(md->ram));
	mock_free(md->m);
	free(md->store);
	free(md->buf);
	free(md);
}

static void run_model(void **state)
{
	const struct variant *v = *state;
	struct model *md = calloc(1, sizeof(*md));
	int fds = count_open_fds();

	assert_non_null(md);
	assert_ok(vmp_fault_handler_install());
	md->v = v;
	md->ps = os_page();
	md->seed = test_seed(v->seed);
	rng_seed(&md->r, md->seed);
	print_message("model %s: seed %llu\n", v->name,
		      (unsigned long long)md->seed);
	md->m = mock_new(md->ps, NPG, MOCK_FILE | MOCK_BATCH);
	md->store = malloc(NPG * md->ps);
	md->buf = malloc(md->ps);
	assert_non_null(md->store);
	assert_non_null(md->buf);
	for (uint64_t i = 0; i < NPG; i++)
		mock_expected(md->m, i, page_of(md, md->store, i));
	assert_ok(vmp_ram_new(&md->ram, v->lim_pages * md->ps));

	for (int hi = 0; hi < 2; hi++) {
		int rc = vmp_fileh_open(&md->h[hi].fh, md->ram, md->m->store,
					v->flags);

		if ((v->flags & VMP_OVERLAY) &&
		    (rc == -EINVAL || rc == -EOPNOTSUPP)) {
			model_free(md);
			print_message("VMP_OVERLAY not supported: skipped\n");
			skip();
		}
		assert_ok(rc);
		md->h[hi].view = malloc(NPG * md->ps);
		assert_non_null(md->h[hi].view);
		assert_ok(map_one(md, hi, 0, NPG, PROT_READ | PROT_WRITE));
	}

	for (md->step = 0; md->step < STEPS; md->step++) {
		int rc = vmp_guard(step_fn, md);

		if (rc)
			report(md, rc);
	}
	model_free(md);
	assert_no_fd_leak(fds);
}

static const struct variant normal = { "normal", 0, 0, 1001 };
static const struct variant overlay = { "overlay", VMP_OVERLAY, 0, 1002 };
static const struct variant normal_lim = { "normal+limit", 0, 12, 1003 };
static const struct variant overlay_lim = { "overlay+limit", VMP_OVERLAY, 12,
					    1004 };

#define VARIANT(v) { "model/" #v, run_model, NULL, NULL, (void *)&v }

int main(void)
{
	const struct CMUnitTest tests[] = {
		VARIANT(normal),
		VARIANT(overlay),
		VARIANT(normal_lim),
		VARIANT(overlay_lim),
	};

	if (vmp_fault_handler_install() == -ENOSYS)
		return TEST_SKIP; /* libsigsegv cannot catch faults here */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
