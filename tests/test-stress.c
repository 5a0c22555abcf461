/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-stress.c: 2 to 16 threads doing random reads, writes, prefaults,
 * writeouts, discards, invalidates, reclaims, maps and unmaps on one handle,
 * checked byte-exact against a model, for a bounded time.
 *
 * Time: VMPAGE_STRESS_SECONDS in all (default 3), shared by the
 * configurations below.  Seed: printed; VMPAGE_SEED=<seed> replays each
 * thread's choices (not the interleaving).
 *
 * How the model stays exact under any interleaving
 * ------------------------------------------------
 * Every word ever stored or written is a stamp (thread-util.h): word w of
 * page p with stamp s, self-checking.  The test's own store holds stamp 0
 * at first.  Stamps of a page only grow: pmax[p] is the newest in use.
 *
 *  - Writes: page p < NWRITABLE is written only by thread p % nthreads (its
 *    owner), so the owner knows exactly what each word of its pages shows
 *    (cur[]).  Before writing stamp s it publishes pmax[p] = s.  Pages from
 *    NWRITABLE on are only read (through writable mappings too): they stay
 *    clean, so every change of the store there must become visible.
 *  - Reads: the owner checks its own pages exactly.  Another thread's page
 *    may be being written right now, so a reader checks each word it sees
 *    is a stamp of exactly (p, w), no newer than pmax[p], and no older than
 *    what the word showed at the last quiet point (floor[], below): between
 *    quiet points what a word shows only moves forward.
 *  - Operations that do not change what any page shows run concurrently
 *    with everything: writeout (STORE|MARKSTORED), invalidate of a range
 *    whose store bytes did not change, reclaim, prefault, mmap/munmap,
 *    stats.  They are the races under test.
 *  - Operations that change what pages show run at a quiet point: the
 *    thread takes the test's rwlock for writing (every other operation
 *    holds it for reading), so nothing else runs.  There the test
 *      1. checks every page exactly, and that the handle has no more dirty
 *         pages than the owners may have dirtied (a page only read must
 *         never be dirty: it would hide the store's changes from
 *         vmp_invalidate and be written back by writeout);
 *      2. does one of: a writeout, after which the store must equal the
 *         model exactly (a write lost by an earlier concurrent writeout
 *         shows here); a discard, after which every page shows the store's
 *         bytes (whatever earlier concurrent writeouts stored: read from
 *         the store itself); or a change of store pages that are surely
 *         clean (not written since the last quiet writeout or discard)
 *         followed by vmp_invalidate of a range: those pages must show the
 *         new bytes, the dirty ones in the range keep theirs;
 *      3. sets floor[] to what every word shows now.
 *  - Under a memory limit, accesses run under vmp_guard: -ENOMEM (the
 *    budget full of dirty pages) is an allowed answer, recorded; a write
 *    cut short records how many words it wrote.  Without a limit every
 *    access must succeed.
 */
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "thread-util.h"

#define MAX_THREADS 16
#define NPAGES 64
#define NWRITABLE 48 /* pages [NWRITABLE, NPAGES) are never written */
#define MAX_PRIVATE 3 /* private mappings per thread */
#define LOG_LEN 24    /* operations remembered per thread, for failures */

enum op {
	OP_READ,
	OP_WRITE,
	OP_PREFAULT,
	OP_WRITEOUT,   /* concurrent */
	OP_INVALIDATE, /* concurrent, store unchanged */
	OP_RECLAIM,
	OP_MAP,
	OP_UNMAP,
	OP_STATS,
	OP_QUIET,      /* exclusive: check all, then one of the three below */
	OP_Q_WRITEOUT,
	OP_Q_DISCARD,
	OP_Q_CHANGE,
	OP_MAX
};

static const char *const op_names[OP_MAX] = {
	"read", "write", "prefault", "writeout", "invalidate", "reclaim",
	"mmap", "munmap", "stats", "quiet", "quiet-writeout", "quiet-discard",
	"quiet-change+invalidate",
};

/* --- the test's store: words in memory, under a lock ---------------------- */

struct mstore {
	pthread_mutex_t lock;
	size_t ps;
	uint64_t npages;
	uint64_t *data; /* npages * ps bytes */
	uint64_t loads, stores; /* atomic */
};

/* A yield now and then inside the callbacks widens the race windows. */
static __thread uint64_t cb_rng = 0x9e3779b97f4a7c15ull;

static void cb_jitter(void)
{
	cb_rng ^= cb_rng << 13;
	cb_rng ^= cb_rng >> 7;
	cb_rng ^= cb_rng << 17;
	if ((cb_rng & 15) == 0)
		sched_yield();
}

/* Blocks [blk, blk + n): loadblks, read-ahead in one call (configurations
 * with batch loads), and with n = 1 loadblk. */
static int mstore_loads(void *ctx, uint64_t blk, uint64_t n, void *buf)
{
	struct mstore *s = ctx;

	cb_jitter();
	pthread_mutex_lock(&s->lock);
	memcpy(buf, s->data + blk * (s->ps / 8), n * s->ps);
	pthread_mutex_unlock(&s->lock);
	__atomic_add_fetch(&s->loads, n, __ATOMIC_RELAXED);
	cb_jitter();
	return 0;
}

static int mstore_load(void *ctx, uint64_t blk, void *buf)
{
	return mstore_loads(ctx, blk, 1, buf);
}

static int mstore_store(void *ctx, uint64_t blk, const void *buf)
{
	struct mstore *s = ctx;

	cb_jitter();
	pthread_mutex_lock(&s->lock);
	memcpy(s->data + blk * (s->ps / 8), buf, s->ps);
	pthread_mutex_unlock(&s->lock);
	__atomic_add_fetch(&s->stores, 1, __ATOMIC_RELAXED);
	return 0;
}

static const vmp_store_ops mstore_ops = {
	.loadblk = mstore_load,
	.storeblk = mstore_store,
};

static const vmp_store_ops mstore_batch_ops = {
	.loadblk = mstore_load,
	.storeblk = mstore_store,
	.loadblks = mstore_loads,
};

/* --- the run ------------------------------------------------------------ */

struct mapping {
	char *addr;
	uint64_t lo, len;
	int prot;
};

struct logent {
	uint64_t n;
	enum op op;
	uint64_t page, lo, hi;
	int rc;
};

struct stress;

struct worker {
	pthread_t tid;
	struct stress *st;
	unsigned idx;
	struct rng rng;
	struct mapping priv[MAX_PRIVATE];
	unsigned npriv;
	uint64_t *buf;
	struct logent log[LOG_LEN];
	uint64_t nops;
};

struct stress {
	const char *name;
	unsigned nthreads;
	size_t ps, nw;
	uint64_t npages;
	size_t limit;
	uint64_t seed;
	uint64_t deadline;

	struct mstore store;
	vmp_ram *ram;
	vmp_fileh *fh;
	struct mapping shared[2]; /* RW and RO, all pages */

	pthread_rwlock_t quiet;   /* read: any operation; write: quiet point */
	uint32_t *cur;            /* [p * nw + w]: what the word shows */
	uint32_t *floor;          /* cur at the last quiet point */
	uint32_t *pmax;           /* per page, atomic */
	uint8_t *maybe_dirty;     /* per page: written since the last quiet
				     writeout or discard */
	uint64_t counts[OP_MAX];  /* atomic */
	uint64_t enomem;          /* atomic */
	struct worker w[MAX_THREADS];
};

static void log_op(struct worker *wk, enum op op, uint64_t page, uint64_t lo,
		   uint64_t hi, int rc)
{
	struct logent *e = &wk->log[wk->nops % LOG_LEN];

	*e = (struct logent){ wk->nops, op, page, lo, hi, rc };
	wk->nops++;
	__atomic_add_fetch(&wk->st->counts[op], 1, __ATOMIC_RELAXED);
}

/* Fail the run: the message, then the thread's last operations. */
static void __attribute__((format(printf, 2, 3)))
wfail(struct worker *wk, const char *fmt, ...)
{
	char msg[3072];
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	n = (size_t)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n >= sizeof(msg))
		n = sizeof(msg) - 1;
	n += (size_t)snprintf(msg + n, sizeof(msg) - n,
			      "\n  [%s, seed %#llx, thread %u] last operations:",
			      wk->st->name, (unsigned long long)wk->st->seed,
			      wk->idx);
	for (uint64_t i = wk->nops > LOG_LEN ? wk->nops - LOG_LEN : 0;
	     i < wk->nops && n < sizeof(msg); i++) {
		struct logent *e = &wk->log[i % LOG_LEN];
		n += (size_t)snprintf(msg + n, sizeof(msg) - n,
				      "\n    #%llu %s page %llu [%llu,%llu) -> %s",
				      (unsigned long long)e->n, op_names[e->op],
				      (unsigned long long)e->page,
				      (unsigned long long)e->lo,
				      (unsigned long long)e->hi, errname(e->rc));
	}
	tfail("%s", msg);
}

static bool owner_of(const struct stress *st, uint64_t p, unsigned t)
{
	return p < NWRITABLE && p % st->nthreads == t;
}

/* An allowed fault error: -ENOMEM under a memory limit. */
static bool allowed_error(struct stress *st, int rc)
{
	if (rc == -ENOMEM && st->limit) {
		__atomic_add_fetch(&st->enomem, 1, __ATOMIC_RELAXED);
		return true;
	}
	return false;
}

/* A mapping of this thread (shared or private) that shows page @p and,
 * with @rw, is writable. */
static const struct mapping *pick_mapping(struct worker *wk, uint64_t p,
					  bool rw)
{
	struct stress *st = wk->st;
	const struct mapping *c[2 + MAX_PRIVATE];
	unsigned n = 0;

	for (unsigned i = 0; i < 2; i++)
		if (!rw || (st->shared[i].prot & PROT_WRITE))
			c[n++] = &st->shared[i];
	for (unsigned i = 0; i < wk->npriv; i++) {
		const struct mapping *m = &wk->priv[i];
		if (p >= m->lo && p < m->lo + m->len &&
		    (!rw || (m->prot & PROT_WRITE)))
			c[n++] = m;
	}
	return c[rng_below(&wk->rng, n)];
}

static char *addr_of(const struct stress *st, const struct mapping *m,
		     uint64_t p, uint64_t w)
{
	return m->addr + (p - m->lo) * st->ps + 8 * w;
}

/* --- reads and writes ------------------------------------------------------ */

/* Words [lo, hi) of page @p, written with stamp s; ->done counts the words
 * written even if a fault abandons the loop (vmp_guard). */
struct wjob {
	char *addr; /* word lo */
	uint64_t p, lo, hi;
	uint32_t s;
	volatile uint64_t done;
};

static int wjob_run(void *arg)
{
	struct wjob *j = arg;

	for (uint64_t w = j->lo; w < j->hi; w++) {
		st64(j->addr + 8 * (w - j->lo), stamp_word(j->p, w, j->s));
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		j->done = w + 1;
	}
	return 0;
}

/* Check words [lo, hi) of page @p read into buf[0..): exactly cur[] if
 * @exact, else by the rules for another thread's page.  0 or fails. */
static int check_words(struct worker *wk, uint64_t p, uint64_t lo,
		       uint64_t hi, const uint64_t *buf, bool exact,
		       const char *how)
{
	struct stress *st = wk->st;
	uint32_t newest = exact ? 0 : stamp_newest(&st->pmax[p]);

	for (uint64_t w = lo; w < hi; w++) {
		uint64_t v = buf[w - lo];
		/* cur[] of another thread's page is its owner's business */
		uint32_t want = exact ? st->cur[p * st->nw + w] : 0, s;
		bool ok = stamp_decode(v, p, w, &s);

		if (exact ? ok && s == want
			  : ok && s <= newest && s >= st->floor[p * st->nw + w])
			continue;
		if (exact)
			wfail(wk, "%s: page %llu word %llu shows %#llx (%s %u), "
			      "expected stamp %u (%#llx)", how,
			      (unsigned long long)p, (unsigned long long)w,
			      (unsigned long long)v, ok ? "stamp" : "not a stamp, bits",
			      s, want,
			      (unsigned long long)stamp_word(p, w, want));
		else
			wfail(wk, "%s: page %llu word %llu (another thread's) "
			      "shows %#llx (%s %u), expected a stamp in [%u, %u]",
			      how, (unsigned long long)p, (unsigned long long)w,
			      (unsigned long long)v,
			      ok ? "stamp" : "not a stamp, bits", s,
			      st->floor[p * st->nw + w], newest);
		return -1;
	}
	return 0;
}

static void do_read(struct worker *wk)
{
	struct stress *st = wk->st;
	uint64_t p = rng_below(&wk->rng, st->npages);
	const struct mapping *m = pick_mapping(wk, p, false);
	uint64_t lo = rng_below(&wk->rng, 2) ? 0 : rng_below(&wk->rng, st->nw);
	uint64_t hi = lo + 1 + rng_below(&wk->rng, st->nw - lo);
	int rc = guarded_read(addr_of(st, m, p, lo), wk->buf, hi - lo);

	log_op(wk, OP_READ, p, lo, hi, rc);
	if (rc && !allowed_error(st, rc)) {
		wfail(wk, "read of page %llu failed: %s", (unsigned long long)p,
		      errname(rc));
		return;
	}
	if (!rc)
		check_words(wk, p, lo, hi, wk->buf, owner_of(st, p, wk->idx),
			    "read");
}

static void do_write(struct worker *wk)
{
	struct stress *st = wk->st;
	uint64_t per = (NWRITABLE - wk->idx + st->nthreads - 1) / st->nthreads;
	uint64_t p = wk->idx + st->nthreads * rng_below(&wk->rng, per);
	const struct mapping *m = pick_mapping(wk, p, true);
	uint64_t lo = rng_below(&wk->rng, 4) ? rng_below(&wk->rng, st->nw) : 0;
	uint64_t hi = lo + 1 + rng_below(&wk->rng, st->nw - lo);
	struct wjob j = { addr_of(st, m, p, lo), p, lo, hi, 0, lo };
	int rc;

	j.s = __atomic_load_n(&st->pmax[p], __ATOMIC_RELAXED) + 1;
	stamp_publish(&st->pmax[p], j.s);
	st->maybe_dirty[p] = 1;
	rc = vmp_guard(wjob_run, &j);
	log_op(wk, OP_WRITE, p, lo, j.done, rc);
	for (uint64_t w = lo; w < j.done; w++)
		st->cur[p * st->nw + w] = j.s;
	if (rc && !allowed_error(st, rc)) {
		wfail(wk, "write of page %llu failed after %llu words: %s",
		      (unsigned long long)p, (unsigned long long)(j.done - lo),
		      errname(rc));
		return;
	}
	/* read it back now and then, through any mapping */
	if (!rc && rng_below(&wk->rng, 4) == 0) {
		rc = guarded_read(addr_of(st, pick_mapping(wk, p, false), p, 0),
				  wk->buf, st->nw);
		if (rc && !allowed_error(st, rc))
			wfail(wk, "read-back of page %llu failed: %s",
			      (unsigned long long)p, errname(rc));
		else if (!rc)
			check_words(wk, p, 0, st->nw, wk->buf, true, "read-back");
	}
}

static void do_prefault(struct worker *wk)
{
	struct stress *st = wk->st;
	uint64_t p = rng_below(&wk->rng, st->npages);
	bool write = owner_of(st, p, wk->idx) && rng_below(&wk->rng, 2);
	const struct mapping *m = pick_mapping(wk, p, write);
	/* a read prefault may cover several pages of the mapping */
	uint64_t n = write ? 1 : 1 + rng_below(&wk->rng, m->lo + m->len - p);
	int rc;

	if (write)
		st->maybe_dirty[p] = 1;
	rc = vmp_prefault(addr_of(st, m, p, 0), n * st->ps, write);
	log_op(wk, OP_PREFAULT, p, 0, n, rc);
	if (rc && !allowed_error(st, rc))
		wfail(wk, "vmp_prefault(page %llu, %llu pages, write %d): %s",
		      (unsigned long long)p, (unsigned long long)n, write,
		      errname(rc));
}

/* --- concurrent operations that change no page's contents ------------------- */

static void do_concurrent(struct worker *wk, enum op op)
{
	struct stress *st = wk->st;
	uint64_t p = rng_below(&wk->rng, st->npages);
	uint64_t n = 1 + rng_below(&wk->rng, st->npages - p);
	struct vmp_stats s;
	uint64_t nd;
	int rc = 0;

	switch (op) {
	case OP_WRITEOUT:
		rc = vmp_writeout(st->fh, VMP_WRITEOUT_STORE |
						  VMP_WRITEOUT_MARKSTORED);
		break;
	case OP_INVALIDATE:
		rc = vmp_invalidate(st->fh, p, n);
		break;
	case OP_RECLAIM:
		rc = vmp_ram_reclaim(st->ram, n * st->ps);
		break;
	case OP_STATS:
		if ((rc = vmp_ram_stats(st->ram, &s)) ||
		    (rc = vmp_fileh_dirty_count(st->fh, &nd)))
			break;
		if (s.dirty_bytes > s.resident_bytes ||
		    (st->limit && s.resident_bytes > st->limit) ||
		    s.resident_bytes > st->npages * st->ps)
			wfail(wk, "stats: resident %llu, dirty %llu, limit %zu",
			      (unsigned long long)s.resident_bytes,
			      (unsigned long long)s.dirty_bytes, st->limit);
		if (nd > st->npages)
			wfail(wk, "dirty count %llu > %llu pages",
			      (unsigned long long)nd,
			      (unsigned long long)st->npages);
		break;
	default:
		break;
	}
	log_op(wk, op, p, p, p + n, rc);
	if (rc)
		wfail(wk, "%s: %s", op_names[op], errname(rc));
}

static void do_map(struct worker *wk)
{
	struct stress *st = wk->st;
	struct mapping *m;
	uint64_t lo, len;
	int prot, rc;

	if (wk->npriv == MAX_PRIVATE)
		return;
	lo = rng_below(&wk->rng, st->npages);
	len = 1 + rng_below(&wk->rng, st->npages - lo);
	prot = rng_below(&wk->rng, 2) ? PROT_READ : PROT_READ | PROT_WRITE;
	m = &wk->priv[wk->npriv];
	rc = vmp_mmap(st->fh, lo, len, prot, (void **)&m->addr);
	log_op(wk, OP_MAP, lo, lo, lo + len, rc);
	if (rc) {
		wfail(wk, "vmp_mmap(%llu, %llu): %s", (unsigned long long)lo,
		      (unsigned long long)len, errname(rc));
		return;
	}
	m->lo = lo;
	m->len = len;
	m->prot = prot;
	wk->npriv++;
}

static void do_unmap(struct worker *wk)
{
	struct mapping *m;
	unsigned i;
	int rc;

	if (!wk->npriv)
		return;
	i = (unsigned)rng_below(&wk->rng, wk->npriv);
	m = &wk->priv[i];
	rc = vmp_munmap(m->addr);
	log_op(wk, OP_UNMAP, m->lo, m->lo, m->lo + m->len, rc);
	if (rc)
		wfail(wk, "vmp_munmap: %s", errname(rc));
	*m = wk->priv[--wk->npriv];
}

/* --- quiet points ---------------------------------------------------------- */

/* Every page exactly as the model says, through the shared RO mapping. */
static int check_all(struct worker *wk, uint64_t lo, uint64_t hi,
		     const char *how)
{
	struct stress *st = wk->st;

	for (uint64_t p = lo; p < hi; p++) {
		int rc = guarded_read(addr_of(st, &st->shared[1], p, 0),
				      wk->buf, st->nw);

		if (rc) {
			wfail(wk, "%s: read of page %llu failed: %s", how,
			      (unsigned long long)p, errname(rc));
			return -1;
		}
		if (check_words(wk, p, 0, st->nw, wk->buf, true, how))
			return -1;
	}
	return 0;
}

static uint64_t count_maybe_dirty(const struct stress *st)
{
	uint64_t n = 0;

	for (uint64_t p = 0; p < st->npages; p++)
		n += st->maybe_dirty[p];
	return n;
}

/* Writeout at a quiet point: the store must then be the model. */
static void quiet_writeout(struct worker *wk)
{
	struct stress *st = wk->st;
	int rc = vmp_writeout(st->fh, VMP_WRITEOUT_STORE |
					      VMP_WRITEOUT_MARKSTORED);
	uint64_t nd = dirty_count(st->fh);

	log_op(wk, OP_Q_WRITEOUT, 0, 0, st->npages, rc);
	if (rc || nd) {
		wfail(wk, "quiet writeout: %s, %llu pages still dirty",
		      errname(rc), (unsigned long long)nd);
		return;
	}
	pthread_mutex_lock(&st->store.lock);
	for (uint64_t p = 0; p < st->npages; p++)
		for (uint64_t w = 0; w < st->nw; w++) {
			uint32_t want = st->cur[p * st->nw + w];
			uint64_t v = st->store.data[p * st->nw + w];
			uint32_t s;
			bool ok = stamp_decode(v, p, w, &s);

			if (ok && s == want)
				continue;
			pthread_mutex_unlock(&st->store.lock);
			wfail(wk, "after a quiet writeout the store's page %llu "
			      "word %llu is %#llx (%s %u), the mapping shows "
			      "stamp %u: a write was lost (marked clean without "
			      "being stored)", (unsigned long long)p,
			      (unsigned long long)w, (unsigned long long)v,
			      ok ? "stamp" : "not a stamp, bits", s, want);
			return;
		}
	pthread_mutex_unlock(&st->store.lock);
	memset(st->maybe_dirty, 0, st->npages);
}

/* Discard at a quiet point: every page must then show the store's bytes. */
static void quiet_discard(struct worker *wk)
{
	struct stress *st = wk->st;
	int rc = vmp_discard(st->fh);
	uint64_t nd = dirty_count(st->fh);

	log_op(wk, OP_Q_DISCARD, 0, 0, st->npages, rc);
	if (rc || nd) {
		wfail(wk, "discard: %s, %llu pages still dirty", errname(rc),
		      (unsigned long long)nd);
		return;
	}
	pthread_mutex_lock(&st->store.lock);
	for (uint64_t p = 0; p < st->npages; p++)
		for (uint64_t w = 0; w < st->nw; w++) {
			uint64_t v = st->store.data[p * st->nw + w];
			uint32_t s;

			if (!stamp_decode(v, p, w, &s) || s > st->pmax[p]) {
				pthread_mutex_unlock(&st->store.lock);
				wfail(wk, "the store's page %llu word %llu is "
				      "%#llx: never written there",
				      (unsigned long long)p,
				      (unsigned long long)w,
				      (unsigned long long)v);
				return;
			}
			st->cur[p * st->nw + w] = s;
		}
	pthread_mutex_unlock(&st->store.lock);
	memset(st->maybe_dirty, 0, st->npages);
	check_all(wk, 0, st->npages, "after discard");
}

/* The store changes pages that are surely clean in a range, then
 * vmp_invalidate(range): those show the new bytes, the others theirs. */
static void quiet_change(struct worker *wk)
{
	struct stress *st = wk->st;
	uint64_t lo = rng_below(&wk->rng, st->npages);
	uint64_t n = 1 + rng_below(&wk->rng, st->npages - lo);
	int rc;

	pthread_mutex_lock(&st->store.lock);
	for (uint64_t p = lo; p < lo + n; p++) {
		uint32_t s;

		if (st->maybe_dirty[p])
			continue;
		s = ++st->pmax[p];
		for (uint64_t w = 0; w < st->nw; w++) {
			st->store.data[p * st->nw + w] = stamp_word(p, w, s);
			st->cur[p * st->nw + w] = s;
		}
	}
	pthread_mutex_unlock(&st->store.lock);
	rc = vmp_invalidate(st->fh, lo, n);
	log_op(wk, OP_Q_CHANGE, lo, lo, lo + n, rc);
	if (rc) {
		wfail(wk, "vmp_invalidate: %s", errname(rc));
		return;
	}
	check_all(wk, lo, lo + n, "after the store changed and vmp_invalidate");
}

static void do_quiet(struct worker *wk)
{
	struct stress *st = wk->st;
	uint64_t nd, maybe;
	unsigned what;

	pthread_rwlock_wrlock(&st->quiet);
	log_op(wk, OP_QUIET, 0, 0, st->npages, 0);
	nd = dirty_count(st->fh);
	maybe = count_maybe_dirty(st);
	if (nd > maybe) {
		wfail(wk, "%llu pages are dirty, but only %llu were written or "
		      "prefaulted for writing since the last quiet writeout or "
		      "discard: a read made a page dirty",
		      (unsigned long long)nd, (unsigned long long)maybe);
		goto out;
	}
	/* keep room under the limit for faults: commit when half is dirty,
	 * before reading every page (which needs room for clean pages) */
	if (st->limit && 2 * nd * st->ps > st->limit)
		what = 0;
	else if (check_all(wk, 0, st->npages, "quiet check"))
		goto out;
	else
		what = (unsigned)rng_below(&wk->rng, 3);
	switch (what) {
	case 0:
		quiet_writeout(wk);
		break;
	case 1:
		quiet_discard(wk);
		break;
	default:
		quiet_change(wk);
		break;
	}
	memcpy(st->floor, st->cur, st->npages * st->nw * sizeof(*st->cur));
out:
	pthread_rwlock_unlock(&st->quiet);
}

/* --- threads and configurations ---------------------------------------------- */

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct stress *st = wk->st;

	wk->buf = malloc(st->ps);
	while (!tfailed() && now_ns() < st->deadline) {
		uint64_t r = rng_below(&wk->rng, 1000);

		if (r < 6) {
			do_quiet(wk);
			continue;
		}
		pthread_rwlock_rdlock(&st->quiet);
		if (r < 400)
			do_read(wk);
		else if (r < 750)
			do_write(wk);
		else if (r < 800)
			do_prefault(wk);
		else if (r < 830)
			do_concurrent(wk, OP_WRITEOUT);
		else if (r < 870)
			do_concurrent(wk, OP_INVALIDATE);
		else if (r < 900)
			do_concurrent(wk, OP_RECLAIM);
		else if (r < 940)
			do_map(wk);
		else if (r < 980)
			do_unmap(wk);
		else
			do_concurrent(wk, OP_STATS);
		pthread_rwlock_unlock(&st->quiet);
	}
	while (wk->npriv)
		do_unmap(wk);
	free(wk->buf);
	return NULL;
}

static void stress_run(const char *name, unsigned nthreads, size_t limit_pages,
		       bool batch, double share)
{
	const size_t ps = os_page();
	uint64_t nwords = NPAGES * ps / 8;
	double secs = stress_seconds() * share;
	pthread_rwlockattr_t attr;
	struct stress *st = calloc(1, sizeof(*st));
	int rc;

	assert_non_null(st);
	st->name = name;
	st->nthreads = nthreads;
	st->ps = ps;
	st->nw = ps / 8;
	st->npages = NPAGES;
	st->limit = limit_pages * ps;
	st->seed = test_seed(now_ns() ^ (uint64_t)getpid() << 32);
	print_message("%s: %u threads, %s, %s, %.2f s, seed %#llx "
		      "(VMPAGE_SEED=%#llx to replay the choices)\n",
		      name, nthreads, limit_pages ? "memory limit" : "no limit",
		      batch ? "loadblks" : "loadblk", secs,
		      (unsigned long long)st->seed, (unsigned long long)st->seed);

	pthread_mutex_init(&st->store.lock, NULL);
	st->store.ps = ps;
	st->store.npages = NPAGES;
	st->store.data = malloc(nwords * 8);
	for (uint64_t p = 0; p < NPAGES; p++)
		for (uint64_t w = 0; w < st->nw; w++)
			st->store.data[p * st->nw + w] = stamp_word(p, w, 0);
	st->cur = calloc(nwords, sizeof(*st->cur));
	st->floor = calloc(nwords, sizeof(*st->floor));
	st->pmax = calloc(NPAGES, sizeof(*st->pmax));
	st->maybe_dirty = calloc(NPAGES, 1);
	pthread_rwlockattr_init(&attr);
	/* quiet points must not starve behind a stream of readers */
	pthread_rwlockattr_setkind_np(&attr,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&st->quiet, &attr);
	pthread_rwlockattr_destroy(&attr);

	assert_ok(vmp_ram_new(&st->ram, st->limit));
	assert_ok(open_fh_ops(&st->fh, st->ram,
			      batch ? &mstore_batch_ops : &mstore_ops,
			      &st->store, ps, 0));
	st->shared[0] = (struct mapping){ NULL, 0, NPAGES, PROT_READ | PROT_WRITE };
	st->shared[1] = (struct mapping){ NULL, 0, NPAGES, PROT_READ };
	for (int i = 0; i < 2; i++)
		st->shared[i].addr = map_pages(st->fh, 0, NPAGES,
					       st->shared[i].prot);

	st->deadline = now_ns() + (uint64_t)(secs * 1e9);
	for (unsigned i = 0; i < nthreads; i++) {
		st->w[i].st = st;
		st->w[i].idx = i;
		rng_seed(&st->w[i].rng, st->seed * 31 + i);
		rc = pthread_create(&st->w[i].tid, NULL, worker_main, &st->w[i]);
		assert_int_equal(rc, 0);
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(st->w[i].tid, NULL);
	assert_no_thread_failure();

	/* Quiet for good: everything exact, then commit, then the store. */
	{
		struct worker *wk = &st->w[0];
		uint64_t nd = dirty_count(st->fh);

		wk->buf = malloc(ps);
		assert_u64_le(nd, count_maybe_dirty(st));
		check_all(wk, 0, NPAGES, "final check");
		quiet_writeout(wk);
		free(wk->buf);
		assert_no_thread_failure();
	}
	{
		uint64_t total = 0;
		char line[1024];
		size_t n = 0;

		for (int op = 0; op < OP_MAX; op++) {
			total += st->counts[op];
			n += (size_t)snprintf(line + n, sizeof(line) - n,
					      " %s %llu", op_names[op],
					      (unsigned long long)st->counts[op]);
		}
		print_message("%s: %llu operations:%s; -ENOMEM %llu; "
			      "loadblk %llu, storeblk %llu\n", name,
			      (unsigned long long)total, line,
			      (unsigned long long)st->enomem,
			      (unsigned long long)st->store.loads,
			      (unsigned long long)st->store.stores);
		assert_true(st->counts[OP_READ] > 0 && st->counts[OP_WRITE] > 0);
	}

	for (int i = 0; i < 2; i++)
		assert_ok(vmp_munmap(st->shared[i].addr));
	assert_ok(vmp_fileh_close(st->fh));
	assert_ok(vmp_ram_free(st->ram));
	pthread_rwlock_destroy(&st->quiet);
	pthread_mutex_destroy(&st->store.lock);
	free(st->store.data);
	free(st->cur);
	free(st->floor);
	free(st->pmax);
	free(st->maybe_dirty);
	free(st);
}

/* --- the configurations -------------------------------------------------------- */

/* Each configuration gets a sixth of VMPAGE_STRESS_SECONDS.  Half of them
 * give the store a loadblks (read-ahead in one call). */
#define STRESS(fn, nthreads, limit_pages, batch)                               \
	static void fn(void **state)                                           \
	{                                                                      \
		(void)state;                                                   \
		assert_ok(vmp_fault_handler_install());                        \
		watchdog_arm((unsigned)(stress_seconds() / 6) + 120, #fn);     \
		stress_run(#fn, nthreads, limit_pages, batch, 1.0 / 6);        \
	}

STRESS(stress_2_threads, 2, 0, false)
STRESS(stress_4_threads_limit, 4, 40, true)
STRESS(stress_8_threads, 8, 0, true)
STRESS(stress_8_threads_limit, 8, 40, false)
STRESS(stress_16_threads, 16, 0, false)
STRESS(stress_16_threads_limit, 16, 40, true)

#define T(f)                                                                   \
	cmocka_unit_test_setup_teardown(f, thread_test_setup,                  \
					thread_test_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(stress_2_threads),
		T(stress_4_threads_limit),
		T(stress_8_threads),
		T(stress_8_threads_limit),
		T(stress_16_threads),
		T(stress_16_threads_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
