/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * load.c: loading pages for a fault.  The pages are created LOADING under
 * ram->lock, the lock is dropped, the store fills a per-thread bounce
 * buffer and pwrite() copies it into the handle's memfd, where no mapping
 * can see it yet; then the pages are mapped in every vma, again with the
 * lock dropped (PAGE_MAPPING), and marked LOADED.  pwrite needs no second
 * mapping (which would count twice in RssShmem and need a TLB shootdown to
 * take down).  Sequential faults load a growing window of following pages
 * in one go: one pwrite and one mprotect for the run.
 *
 * Signal context, like fault.c: no malloc, no stdio.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "fault.h"

#define RA_MAX_BYTES ((size_t)2 << 20) /* read-ahead window cap */
#define RA_MAX_PAGES 512

static pthread_key_t bounce_key;
static pthread_once_t bounce_key_once = PTHREAD_ONCE_INIT;

static void bounce_release(void *unused)
{
	for (unsigned i = 0; i < MAX_NEST; i++) {
		os_free(vmp_tls.bounce[i], vmp_tls.bounce_size[i]);
		vmp_tls.bounce[i] = NULL;
		vmp_tls.bounce_size[i] = 0;
	}
}

static void bounce_key_init(void)
{
	(void)pthread_key_create(&bounce_key, bounce_release);
}

void load_init(void)
{
	pthread_once(&bounce_key_once, bounce_key_init);
}

/* The bounce buffer of the current loading level (vmp_tls.nloading - 1): a
 * loadblk that faults on another mapping must not get its own back. */
static char *bounce_get(size_t size)
{
	unsigned level = vmp_tls.nloading - 1;

	if (vmp_tls.bounce_size[level] < size) {
		char *b = os_alloc(size);
		if (!b)
			return NULL;
		os_free(vmp_tls.bounce[level], vmp_tls.bounce_size[level]);
		vmp_tls.bounce[level] = b;
		vmp_tls.bounce_size[level] = size;
		(void)pthread_setspecific(bounce_key, b);
	}
	return vmp_tls.bounce[level];
}

struct loading_run *loading_here(const struct vmp_fileh *fh, uint64_t idx)
{
	for (unsigned i = 0; i < vmp_tls.nloading; i++) {
		struct loading_run *r = vmp_tls.loading[i];
		if (r->fh == fh && idx >= r->lo && idx < r->hi)
			return r;
	}
	return NULL;
}

/* --- loading --- */

/* How many pages to load for a fault at @idx: a window that grows while
 * faults are sequential, cut at the vma end and at the first present page. */
static uint64_t readahead(struct vmp_vma *v, uint64_t idx)
{
	struct vmp_fileh *fh = v->fh;
	uint64_t max = RA_MAX_BYTES >> fh->pageshift, n;

	if ((fh->flags & VMP_NO_READAHEAD) || fh->reads_itself)
		return 1;

	if (fh->ram->limit_bytes && max > (fh->ram->limit_bytes / 8) >> fh->pageshift)
		max = (fh->ram->limit_bytes / 8) >> fh->pageshift;
	if (max > RA_MAX_PAGES)
		max = RA_MAX_PAGES;
	if (max < 1)
		max = 1;
	if (idx == v->ra_next && v->ra_window)
		v->ra_window = v->ra_window * 4 < max ? v->ra_window * 4 : (uint32_t)max;
	else
		v->ra_window = 1;
	for (n = 1; n < v->ra_window && idx + n < v->pgoffset + v->npages; n++)
		if (pagemap_get(&fh->pagemap, idx + n))
			break;
	v->ra_next = idx + n;
	return n;
}

/*
 * Call the store for the run's blocks into its buffer: one loadblks call
 * when the store has it, else loadblk per block.  No lock held.  Returns
 * the end of the blocks filled; *errp says why it stopped short.
 */
static uint64_t run_fill(struct loading_run *r, int *errp)
{
	struct vmp_fileh *fh = r->fh;
	size_t ps = fh_pagesize(fh);
	int err;

	uint64_t end = r->hi;

	r->cur = r->lo;
	if (r->hi - r->lo > 1 && fh->ops.loadblks) {
		if (fh->ops.loadblks(fh->store.ctx, r->lo, r->hi - r->lo,
				     r->buf + (r->lo - r->base) * ps) == 0)
			return r->hi; /* a nested fault may have cut it */
		end = r->lo + 1; /* the faulting block alone says why */
	}
	/* r->hi shrinks if a nested fault gives read-ahead blocks up */
	for (; r->cur < end && r->cur < r->hi; r->cur++) {
		err = fh->ops.loadblk(fh->store.ctx, r->cur,
				      r->buf + (r->cur - r->base) * ps);
		if (err) {
			*errp = err < 0 ? err : -EIO;
			break;
		}
	}
	return r->cur < r->hi ? r->cur : r->hi;
}

/* Copy filled blocks [r->lo, upto) into the memfd.  No lock held. */
static int run_write(struct loading_run *r, uint64_t upto)
{
	struct vmp_fileh *fh = r->fh;

	if (upto <= r->lo)
		return 0;
	return os_pwrite_full(fh->memfd, r->buf + ((r->lo - r->base) << fh->pageshift),
			      (size_t)(upto - r->lo) << fh->pageshift,
			      r->lo << fh->pageshift);
}

/* Forget a LOADING page that will not be installed. */
static void loading_abandon(struct vmp_page *p, bool punch)
{
	struct vmp_fileh *fh = p->fh;

	if (punch)
		(void)os_punch(fh->memfd, p->index << fh->pageshift, fh_pagesize(fh));
	page_drop(p);
}

#define MAX_REMAP_OPS 16 /* mappings of one handle mapped unlocked */

/*
 * Map pages[0..n) (consecutive, filled) in every vma and mark them.
 * ram->lock held, and dropped for the mprotects: other threads' faults go
 * on meanwhile (pages being mapped are PAGE_MAPPING and still LOADING, so
 * faults on them wait, and invalidate waits for them).
 */
static int install_pages(struct vmp_fileh *fh, struct vmp_page **pages,
			 uint64_t n, const struct vmp_page *to)
{
	vmp_ram *ram = fh->ram;
	struct remap_op ops[MAX_REMAP_OPS];
	uint64_t i;
	int nops, ret = 0;

	for (i = 0; i < n; i++)
		pages[i]->flags |= PAGE_MAPPING;
	nops = fh_remap_plan(fh, pages[0]->index, n, &page_absent, to, ops,
			     MAX_REMAP_OPS);
	if (nops >= 0) {
		fault_unlock(ram);
		remap_ops_apply(ops, nops);
		fault_lock(ram);
		ret = remap_ops_finish(ops, nops);
		/* the kernel refused some: take the run down everywhere again
		 * (pages still MAPPING, so this undoes exactly what was done) */
		if (ret)
			(void)fh_remap_run(fh, pages[0]->index, n, pages[0],
					   &page_absent);
	}
	for (i = 0; i < n; i++)
		pages[i]->flags &= (uint8_t)~PAGE_MAPPING;
	if (nops < 0) /* mapped many times over: do it under the lock */
		ret = fh_remap_run(fh, pages[0]->index, n, &page_absent, to);

	for (i = 0; i < n; i++) {
		struct vmp_page *p = pages[i];
		if (ret) {
			loading_abandon(p, true);
			continue;
		}
		p->state = to->state;
		p->flags = to->flags;
		p->mapper = thread_tag();
		if (p->state == PAGE_DIRTY) {
			list_add_tail(&p->link, &fh->dirty);
			fh->ndirty++;
			ram->dirty_bytes += fh_pagesize(fh);
		} else {
			lru_add(ram, p);
		}
		page_wake(ram, p);
	}
	return ret;
}

/*
 * Install the written blocks [r->lo, upto), skipping pages invalidated
 * meanwhile (dropped: their next access loads again).  ram->lock held.
 * Returns the error that kept block r->base from being mapped, else 0.
 */
static int run_install(struct loading_run *r, uint64_t upto)
{
	uint64_t i = r->lo - r->base, end = upto - r->base, j;
	int ret = 0;

	for (; i < end; i = j) {
		if (r->pages[i]->flags & PAGE_INVALIDATED) {
			loading_abandon(r->pages[i], true);
			j = i + 1;
			continue;
		}
		for (j = i + 1; j < end && !(r->pages[j]->flags & PAGE_INVALIDATED); j++)
			;
		int err = install_pages(r->fh, r->pages + i, j - i, &r->to);
		if (err && i == 0)
			ret = err;
	}
	if (upto > r->lo)
		r->lo = upto;
	return ret;
}

/* Abandon the run's blocks [from, r->hi), not installed, and cut it there. */
static void run_cut(struct loading_run *r, uint64_t from, bool punch)
{
	for (uint64_t b = from; b < r->hi; b++)
		loading_abandon(r->pages[b - r->base], punch);
	r->hi = from;
}

/*
 * A loadblk of this thread touched block @idx of its own run @r (a store
 * that reads its own mapping).  A block ahead of the one being loaded is
 * read-ahead: give it up, and the nested fault loads it.  A block behind is
 * filled: install the filled part now.  The block being loaded itself
 * cannot be served.  ram->lock held (dropped to write).
 */
int run_conflict(struct loading_run *r, uint64_t idx,
			struct vmp_fault_error *fe)
{
	int ret;

	if (idx > r->cur) {
		run_cut(r, idx, false);
		return 1;
	}
	if (idx == r->cur)
		return fail(fe, VMP_FAULT_RECURSION, -EDEADLK);
	fault_unlock(r->fh->ram);
	ret = run_write(r, r->cur);
	fault_lock(r->fh->ram);
	if (ret)
		return fail(fe, VMP_FAULT_LOAD, ret);
	ret = run_install(r, r->cur);
	return ret ? fail(fe, VMP_FAULT_MAPLIMIT, ret) : 1;
}

/* Make @n pages from @idx (absent) LOADING in @r, charged to the RAM.
 * ram->lock held.  Returns the count made, or -errno. */
static long run_begin(struct loading_run *r, uint64_t idx, uint64_t n,
		      struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = r->fh;
	vmp_ram *ram = fh->ram;
	uint64_t i;
	int ret;

	for (;;) {
		long cost = fh_remap_cost(fh, idx, n, &page_absent, &r->to);
		ret = ram_charge(ram, n << fh->pageshift, cost, &fe->what);
		if (!ret || n == 1)
			break;
		n = 1; /* too tight for read-ahead: just the page asked for */
	}
	if (ret)
		return fail(fe, fe->what, ret);
	if (pagemap_reserve(&fh->pagemap, n)) {
		ram_uncharge(ram, n << fh->pageshift);
		return fail(fe, VMP_FAULT_MEMLIMIT, -ENOMEM);
	}
	for (i = 0; i < n; i++) {
		struct vmp_page *p = page_alloc(ram, fh, idx + i);
		if (!p) {
			ram_uncharge(ram, (n - i) << fh->pageshift);
			if (i == 0)
				return fail(fe, VMP_FAULT_MEMLIMIT, -ENOMEM);
			break;
		}
		p->state = PAGE_LOADING;
		pagemap_insert(&fh->pagemap, p);
		r->pages[i] = p;
	}
	r->base = r->lo = r->cur = idx;
	r->hi = idx + i;
	return (long)i;
}

/*
 * Load pages from @idx (absent), map them, return 1.  ram->lock held, and
 * dropped while loading.  Overlay handles load a page only to write it: it
 * comes in DIRTY.
 */
int load_pages(struct vmp_vma *v, uint64_t idx, bool zero,
		      struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = v->fh;
	vmp_ram *ram = fh->ram;
	struct vmp_page *pages[RA_MAX_PAGES];
	struct loading_run r = { .fh = fh, .pages = pages };
	bool overlay = fh->flags & VMP_OVERLAY;
	uint64_t n = (overlay || zero) ? 1 : readahead(v, idx), filled;
	sigset_t segv, saved;
	long made;
	bool write_failed = false;
	int err = 0, ret;

	r.to.state = overlay ? PAGE_DIRTY : PAGE_LOADED;
	if (vmp_tls.nloading == MAX_NEST)
		return fail(fe, VMP_FAULT_RECURSION, -ELOOP);
	made = run_begin(&r, idx, n, fe);
	if (made < 0)
		return (int)made;

	vmp_tls.loading[vmp_tls.nloading++] = &r;
	fault_unlock(ram);
	r.buf = bounce_get((size_t)made << fh->pageshift);
	if (!r.buf) {
		err = -ENOMEM;
		filled = r.lo;
	} else if (zero) {
		memset(r.buf, 0, (size_t)made << fh->pageshift);
		filled = r.hi;
	} else if (vmp_tls.segv_masked) {
		/* the store may touch other mappings: let their faults in */
		sigemptyset(&segv);
		sigaddset(&segv, SIGSEGV);
		pthread_sigmask(SIG_UNBLOCK, &segv, &saved);
		filled = run_fill(&r, &err);
		pthread_sigmask(SIG_SETMASK, &saved, NULL);
	} else {
		filled = run_fill(&r, &err);
	}
	if (filled > r.lo && (ret = run_write(&r, filled))) {
		err = ret;
		write_failed = true; /* part may be written: punch it */
		filled = r.lo;
	}
	fault_lock(ram);
	vmp_tls.nloading--;

	ram->stats.loads += filled - r.base;
	ram->stats.load_errors += err != 0;
	if (filled > r.base + 1)
		ram->stats.readahead_pages += filled - r.base - 1;
	ret = run_install(&r, filled);
	run_cut(&r, filled, write_failed);
	if (filled == r.base)
		return fail(fe, VMP_FAULT_LOAD, err);
	return ret ? fail(fe, VMP_FAULT_MAPLIMIT, ret) : 1;
}
