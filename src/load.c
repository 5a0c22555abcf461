/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * load.c: loading pages for a fault.  The pages are created LOADING under
 * ram->lock, the lock is dropped, the store fills a bounce buffer
 * (bounce.c) and pwrite() copies it into the handle's memfd, where no mapping
 * can see it yet; then the pages are mapped in every vma, again with the
 * lock dropped (PAGE_MAPPING), and marked LOADED.  pwrite needs no second
 * mapping (which would count twice in RssShmem and need a TLB shootdown to
 * take down).  Sequential faults load a growing window of following pages
 * in one go (a run): one pwrite and one mprotect for the run.
 *
 * A pwrite holds the memfd's inode lock for its whole copy, so loads in
 * several threads would copy one at a time: each load writes into a lane
 * (a memfd of the handle's, internal.h) that no other load is writing
 * into, its thread's own for large runs (lane_take()).  With userfaultfd
 * the run goes into the memfd by UFFDIO_COPY through the faulting mapping
 * instead (mech->fill), which takes no such lock and maps it there as it
 * writes: its pages are PAGE_MAPPING from then on, as they are visible
 * there.
 *
 * Taking over.  A fault on a page that some run holds LOADING normally
 * waits for it.  But a run's owner may be stuck in a nested fault (its
 * loadblk reads a mapping) that waits, directly or through other threads,
 * for the very thread that now faults.  So the fault does not wait, and
 * loads the page itself in a run of its own, when
 *   - the owner has not handed the block to the store yet (read-ahead not
 *     started: nothing is lost, and the owner then skips it), or
 *   - waiting would close a cycle of waiting threads (waits.c): the owner
 *     may be loading it too, and throws its copy away.
 * A page being written into the memfd and mapped (PAGE_COMMITTING) is
 * never taken: its owner waits for nothing more.  A fault of a thread on
 * its own run's page is nested: ahead of the block in the store's hands it
 * takes the page over, the block itself is -EDEADLK, behind it the filled
 * blocks are committed at once.  So a loadblk that reads other pages, of
 * its handle or any other, never deadlocks; a true cycle (loadblk(a)
 * reads b, loadblk(b) reads a) ends in -EDEADLK in one thread or several.
 *
 * Signal context, like fault.c: no malloc, no stdio.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "fault.h"

#define RA_MAX_BYTES ((size_t)2 << 20) /* read-ahead window cap */
#define RA_MAX_PAGES 512
#define MAX_REMAP_OPS 16 /* mappings of one handle mapped unlocked */
/* Runs of at least this much go into their thread's own lane, so that
 * threads scanning side by side fill memfds of their own and a stream
 * stays in one lane (one kernel VMA); smaller ones into lane 0, which
 * the reservation maps already (an mprotect shows them, not an mmap). */
#define LANE_OWN_BYTES ((size_t)64 << 10)

/*
 * What a run needs beyond a few words: its page pointers and the remap
 * operations that map it.  Kept per thread and load level in memory of its
 * own, not on the stack: loads nest up to MAX_NEST deep on whatever stack
 * the faulting thread has (a small thread stack must do), and every level
 * also pays the kernel's signal frame.  Made at a level's first use, freed
 * at thread exit; a run without one loads a single page.
 */
struct load_scratch {
	struct vmp_page *pages[RA_MAX_PAGES];
	struct remap_op ops[MAX_REMAP_OPS];
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_key_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *unused)
{
	for (unsigned i = 0; i < MAX_NEST; i++) {
		if (vmp_tls.scratch[i])
			bounce_free(vmp_tls.scratch[i], sizeof(struct load_scratch));
		vmp_tls.scratch[i] = NULL;
	}
}

static void scratch_key_init(void)
{
	(void)pthread_key_create(&scratch_key, scratch_release);
}

void load_init(void)
{
	pthread_once(&scratch_key_once, scratch_key_init);
	(void)thread_tag(); /* its first use sets up waits.c outside a handler */
}

/* The scratch of a run starting at this thread's current load level. */
static struct load_scratch *scratch_get(void)
{
	void **slot = &vmp_tls.scratch[vmp_tls.nloading];

	if (!*slot && (*slot = bounce_alloc(sizeof(struct load_scratch))))
		(void)pthread_setspecific(scratch_key, (void *)1);
	return *slot;
}

/* --- loading --- */

/*
 * How many pages to load for a fault at @idx.  Read-ahead follows each
 * sequential stream by itself, whatever thread or interleaving, as the
 * kernel's context read-ahead does: the pages before the fault say whether
 * it continues a stream, and how far (page->ra_order: the window whose
 * last page it is, also while it loads).  After a window of 2^k pages the
 * next is 4x as large, up to the cap; a page after two resident pages
 * (single loads) starts a stream with 4 pages; any other fault loads its
 * page alone, so random access loads next to nothing it does not touch.
 * The window stops at the vma's
 * end, at the first present page, and where the largest window ends when
 * they are laid end to end from page 0 (2 MiB of the store): so a stream
 * loads aligned windows, and threads that share a scan out in aligned
 * chunks each load their own chunk, instead of the one ahead loading
 * into the next one's while that one waits, and the next one finds the
 * end of a window before its chunk and goes on at full size.  *@order:
 * log2 of the window's size, or of the size it was cut short from there.
 */
static uint64_t readahead(struct vmp_vma *v, uint64_t idx, uint8_t *order)
{
	struct vmp_fileh *fh = v->fh;
	uint64_t max = RA_MAX_BYTES >> fh->pageshift, want = 1, n;
	const struct vmp_page *prev;

	if ((fh->flags & VMP_NO_READAHEAD) || idx == v->pgoffset)
		return 1;
	if (fh->ram->limit_bytes && max > (fh->ram->limit_bytes / 8) >> fh->pageshift)
		max = (fh->ram->limit_bytes / 8) >> fh->pageshift;
	if (max > RA_MAX_PAGES)
		max = RA_MAX_PAGES;
	if (max <= 1) /* a limit of less than 8 pages */
		return 1;
	prev = pagemap_get(&fh->pagemap, idx - 1);
	/* (the end of a window still loading continues its stream: another
	 * thread took the next part of a scan) */
	if (!prev || prev->state == PAGE_GONE ||
	    (prev->state == PAGE_LOADING && !prev->ra_order))
		return 1;
	if (prev->ra_order)
		want = (uint64_t)4 << prev->ra_order;
	else if (idx - 1 > v->pgoffset && pagemap_get(&fh->pagemap, idx - 2))
		want = 4;
	if (want > max)
		want = max;
	*order = (uint8_t)(63 - __builtin_clzll(want));
	if (want > max - idx % max)
		want = max - idx % max;
	for (n = 1; n < want && idx + n < v->pgoffset + v->npages; n++)
		if (pagemap_get(&fh->pagemap, idx + n))
			break;
	if (n < want)
		*order = (uint8_t)(63 - __builtin_clzll(n));
	return n;
}

/* --- filling: the store's calls, no lock held --- */

/* Is block @b still @r's?  Asked only once another run took one over. */
static bool run_owns(struct loading_run *r, uint64_t b)
{
	struct vmp_page **pp = &r->pages[b - r->base];
	vmp_ram *ram = r->fh->ram;
	bool mine;

	if (!*pp)
		return false;
	fault_lock(ram);
	mine = (*pp)->state == PAGE_LOADING && (*pp)->run == r;
	fault_unlock(ram);
	if (!mine)
		*pp = NULL;
	return mine;
}

/*
 * Call the store for the run's blocks into its buffer: one loadblks call
 * (r->batch), else loadblk per block, skipping blocks taken over.  The
 * blocks [r->lo, r->cur) are filled when it returns: the store's error, or
 * 0; and when a fault inside the store abandons it (callback_run).
 *
 * r->next tells other threads which blocks they may still take over.  The
 * owner publishes it before each loadblk and then reads r->takers; a taker
 * counts itself in r->takers and then reads r->next (both sequentially
 * consistent): so either the owner sees the taker and asks under the lock
 * whether the block is still its own, or the taker sees the new r->next
 * and waits instead.  A batch claims its whole window that way, and goes
 * block by block if a block was taken before.  So a block is loaded twice
 * only to break a cycle of waits.
 */
static int run_fill(void *arg)
{
	struct loading_run *r = arg;
	struct vmp_fileh *fh = r->fh;
	size_t ps = fh_pagesize(fh);
	uint64_t end = r->hi;
	int err;

	if (r->batch) {
		__atomic_store_n(&r->next, r->hi, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&r->takers, __ATOMIC_SEQ_CST)) {
			r->batch = false; /* a block was taken: go one by one */
		} else if (fh->ops.loadblks(fh->ctx, r->lo, r->hi - r->lo,
					    r->buf + (r->lo - r->base) * ps) == 0) {
			r->loaded = r->hi - r->lo;
			r->cur = r->hi;
			return 0;
		} else {
			r->batch = false;
			end = r->lo + 1; /* the faulting block alone says why */
		}
	}
	for (; r->cur < end; r->cur++) {
		__atomic_store_n(&r->next, r->cur + 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&r->takers, __ATOMIC_SEQ_CST) &&
		    !run_owns(r, r->cur))
			continue;
		err = fh->ops.loadblk(fh->ctx, r->cur,
				      r->buf + (r->cur - r->base) * ps);
		if (err)
			return err < 0 ? err : -EIO;
		r->loaded++;
	}
	return 0;
}

/* Write the run's pages[first, end) that are still its own into the memfd,
 * one pwrite per stretch of them, or through r->fill_vma's mechanism
 * (mech->fill, which maps them there too; r->filled says whether it did
 * them all).  No lock held. */
static int run_write(struct loading_run *r, uint64_t first, uint64_t end)
{
	struct vmp_fileh *fh = r->fh;
	struct vmp_vma *v = r->fill_vma;
	uint64_t i, j;
	int ret;

	for (i = first; i < end; i = j) {
		size_t off = 0, len;

		for (; i < end && !r->pages[i]; i++)
			;
		for (j = i; j < end && r->pages[j]; j++)
			;
		if (j == i)
			continue;
		len = (size_t)(j - i) << fh->pageshift;
		if (v) {
			long done = v->fh->mech->fill(v, r->base + i, j - i,
						      r->buf + (i << fh->pageshift),
						      vma_class(v, &r->to));
			off = done > 0 ? (size_t)done : 0;
		}
		if (off < len)
			r->filled = false;
		if (off < len &&
		    (ret = os_pwrite_full(fh->lanes[r->to.lane],
					  r->buf + (i << fh->pageshift) + off,
					  len - off,
					  ((r->base + i) << fh->pageshift) + off)))
			return ret;
	}
	return 0;
}

/* --- committing: ram->lock held --- */

/* Forget a LOADING page of this thread's that will not be installed. */
static void loading_abandon(struct vmp_page *p, bool punch)
{
	struct vmp_fileh *fh = p->fh;

	if (punch)
		(void)os_punch(page_memfd(p), p->index << fh->pageshift,
			       fh_pagesize(fh));
	p->flags &= (uint8_t)~(PAGE_COMMITTING | PAGE_MAPPING);
	page_drop(p);
}

/*
 * Map pages[0..n) (consecutive, written, COMMITTING) in every vma and mark
 * them (@ops: room for the remap operations, or NULL: under the lock).
 * The lock is dropped while the mechanism maps them: other threads' faults
 * go on meanwhile (pages being mapped are PAGE_MAPPING and still LOADING,
 * so faults on them wait, and invalidate waits for them).
 */
static int install_pages(struct vmp_fileh *fh, struct vmp_page **pages,
			 uint64_t n, const struct vmp_page *to,
			 struct remap_op *ops, struct vmp_vma *shown)
{
	vmp_ram *ram = fh->ram;
	uint64_t i;
	int nops = -ENOSPC, ret = 0;

	for (i = 0; i < n; i++)
		pages[i]->flags |= PAGE_MAPPING;
	if (ops)
		nops = fh_remap_plan(fh, pages[0]->index, n, &page_absent, to,
				     ops, MAX_REMAP_OPS);
	/* the mapping that mech->fill mapped them in shows them already */
	for (int k = 0; shown && k < nops; k++)
		if (ops[k].v == shown) {
			vma_unpin(shown);
			ops[k--] = ops[--nops];
		}
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

	if (!ret)
		ram_loading_done(ram, n << fh->pageshift);
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

/* Keep of pages[first, end) those still this run's and wanted, marked
 * COMMITTING (nobody takes them over now); NULL the others. */
static void run_claim(struct loading_run *r, uint64_t first, uint64_t end)
{
	for (uint64_t i = first; i < end; i++) {
		struct vmp_page *p = r->pages[i];
		if (!p)
			continue;
		if (p->state != PAGE_LOADING || p->run != r) {
			r->pages[i] = NULL; /* taken over */
		} else if (p->flags & PAGE_INVALIDATED) {
			loading_abandon(p, false);
			r->pages[i] = NULL;
		} else {
			/* written by mech->fill, it shows in r->fill_vma as
			 * soon as it is written: so it is "being mapped"
			 * from now on (vmp_invalidate waits for it) */
			p->flags |= PAGE_COMMITTING |
				    (r->fill_vma ? PAGE_MAPPING : 0);
		}
	}
}

/* Map the written pages[first, end), each stretch of them in one go, but
 * drop those invalidated meanwhile.  Returns the error that kept block
 * r->base from being mapped, else 0. */
static int run_install(struct loading_run *r, uint64_t first, uint64_t end)
{
	uint64_t i, j;
	int ret = 0;

	for (i = first; i < end; i = j) {
		struct vmp_page *p = r->pages[i];
		j = i + 1;
		if (!p)
			continue;
		if (p->flags & PAGE_INVALIDATED) {
			loading_abandon(p, true);
			continue;
		}
		for (; j < end && r->pages[j] &&
		       !(r->pages[j]->flags & PAGE_INVALIDATED); j++)
			;
		int err = install_pages(r->fh, r->pages + i, j - i, &r->to,
					r->ops, r->filled ? r->fill_vma : NULL);
		if (err && i == 0)
			ret = err;
	}
	return ret;
}

/*
 * The lane for a load of @n pages to write into.  A large run: its
 * thread's, unless another load is writing there now, else one that none
 * is; threads take their lanes in turn as they first load a large run (the
 * first takes lane 0, and threads that start loading together differ).  A
 * small one: lane 0, even while others write there, for their copies are
 * short, and showing a page of another lane costs an mmap and a
 * madvise where lane 0 needs one mprotect (with 8 threads faulting at
 * random on 2 CPUs, sending them elsewhere ran 0.71x as fast as not).
 * Made on first use (lane 0 if that fails; out of file descriptors, the
 * handle makes no more).
 * Counted in fh->lane_writers until lane_put().  ram->lock held.
 */
static unsigned lane_take(struct vmp_fileh *fh, uint64_t n)
{
	static unsigned next_lane;
	unsigned lane = 0;

	if ((n << fh->pageshift) >= LANE_OWN_BYTES && fh->nlanes > 1) {
		unsigned want;
		if (!vmp_tls.lane)
			vmp_tls.lane = (uint8_t)(1 + __atomic_fetch_add(
				&next_lane, 1, __ATOMIC_RELAXED) % FH_LANES);
		want = lane = (vmp_tls.lane - 1u) % fh->nlanes;
		for (unsigned k = 0; k < fh->nlanes; k++) {
			unsigned l = (want + k) % fh->nlanes;
			if (!fh->lane_writers[l]) {
				lane = l;
				break;
			}
		}
	}
	if (fh->lanes[lane] < 0) {
		int fd = os_memfd_create("vmpage");
		if (fd == -EMFILE || fd == -ENFILE)
			fh->nlanes = 1; /* out of file descriptors: no more */
		if (fd < 0) {
			lane = 0;
		} else {
			fh->lanes[lane] = fd;
		}
	}
	fh->lane_writers[lane]++;
	return lane;
}

static void lane_put(struct vmp_fileh *fh, unsigned lane)
{
	fh->lane_writers[lane]--;
}

/*
 * Commit the filled blocks [r->lo, upto): claim, write into a lane (the
 * lock dropped) and map them.  Returns the error that kept block r->base
 * from being installed (in @fe), else 0.
 */
static int run_commit(struct loading_run *r, uint64_t upto,
		      struct vmp_fault_error *fe)
{
	vmp_ram *ram = r->fh->ram;
	uint64_t first = r->lo - r->base, end = upto - r->base;
	int ret;

	if (upto <= r->lo)
		return 0;
	r->lo = upto;
	run_claim(r, first, end);
	r->to.lane = (uint8_t)lane_take(r->fh, end - first);
	for (uint64_t i = first; i < end; i++)
		if (r->pages[i])
			r->pages[i]->lane = r->to.lane;
	fault_unlock(ram);
	ret = run_write(r, first, end);
	fault_lock(ram);
	lane_put(r->fh, r->to.lane);
	if (ret) { /* part may be written: punch it */
		bool base = first == 0 && r->pages[0];
		for (uint64_t i = first; i < end; i++)
			if (r->pages[i])
				loading_abandon(r->pages[i], true);
		return base ? fail(fe, VMP_FAULT_LOAD, ret) : 0;
	}
	ret = run_install(r, first, end);
	return ret ? fail(fe, VMP_FAULT_MAPLIMIT, ret) : 0;
}

/* Abandon the run's blocks from @from on: never filled. */
static void run_cut(struct loading_run *r, uint64_t from)
{
	for (uint64_t b = from; b < r->hi; b++) {
		struct vmp_page *p = r->pages[b - r->base];
		if (p && p->state == PAGE_LOADING && p->run == r)
			loading_abandon(p, false);
	}
	r->hi = from;
}

/* --- a run from start to end --- */

/*
 * Fill, write and map run @r, made for a fault on block r->base.  ram->lock
 * held, and dropped while loading.  1, or -errno in @fe.
 */
static int load_run(struct loading_run *r, bool zero, struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = r->fh;
	vmp_ram *ram = fh->ram;
	size_t bytes = (size_t)(r->hi - r->base) << fh->pageshift, bufsize = 0;
	enum vmp_fault_what what = VMP_FAULT_LOAD; /* or a nested fault's */
	uint64_t filled;
	int err = 0, ret;

	vmp_tls.loading[vmp_tls.nloading++] = r;
	fault_unlock(ram);
	r->buf = bounce_get(bytes, &bufsize);
	r->cur = r->lo;
	if (!r->buf) {
		err = -ENOMEM;
		filled = r->lo;
	} else if (zero) {
		memset(r->buf, 0, bytes);
		filled = r->hi;
	} else {
		err = callback_run(run_fill, r, &what);
		filled = r->cur;
	}
	fault_lock(ram);

	ram->stats.loads += r->loaded;
	ram->stats.load_errors += err != 0;
	if (r->loaded > 1)
		ram->stats.readahead_pages += r->loaded - 1;
	if (filled == r->base) {
		/* the faulting block failed: say so, unless it went to
		 * another run meanwhile (whose load then decides) */
		bool mine = r->pages[0] && r->pages[0]->state == PAGE_LOADING &&
			    r->pages[0]->run == r;
		run_cut(r, filled);
		ret = mine ? fail(fe, what, err) : 1;
	} else {
		ret = run_commit(r, filled, fe);
		run_cut(r, filled);
		ret = ret ? ret : 1;
	}
	/* only now: the commit used the level's scratch, and a fault nested
	 * meanwhile (a signal handler's) must not take it */
	vmp_tls.nloading--;
	if (r->buf && !bounce_put(r->buf, bufsize)) {
		fault_unlock(ram);
		bounce_free(r->buf, bufsize);
		fault_lock(ram);
	}
	return ret;
}

/* Make @n pages from @idx (absent) LOADING in @r, charged to the RAM.
 * ram->lock held.  Returns the count made, or -errno (-EAGAIN: none made,
 * the loads of others hold the room: vmp_tls.room_wait says where to wait
 * for them before faulting again). */
static long run_begin(struct loading_run *r, uint64_t idx, uint64_t n,
		      struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = r->fh;
	vmp_ram *ram = fh->ram;
	uint64_t i, window = n;
	int ret;

	for (;;) {
		/* (as if into lane 0: another one may cost a VMA or two
		 * more, well inside the budget's headroom) */
		long cost = fh_remap_cost(fh, idx, n, &page_absent, &r->to);
		/* wait for others' loads to free room, for the page asked for
		 * only, and never inside a store callback: a thread that waits
		 * for room holds no load, no writeout (and, see fault_serve,
		 * no pin), so all loads can finish */
		bool may_wait = n == 1 && vmp_tls.level == 0;
		ret = ram_charge(ram, n << fh->pageshift, cost, may_wait,
				 &fe->what);
		if (!ret || n == 1)
			break;
		n = 1; /* too tight for read-ahead: just the page asked for */
	}
	if (ret == -EAGAIN) {
		vmp_tls.room_wait = ram;
		return ret;
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
		p->run = r;
		/* the window, on its last page only: the fault after it
		 * continues the stream (readahead()) */
		p->ra_order = i + 1 == n && n == window ? r->ra_order : 0;
		pagemap_insert(&fh->pagemap, p);
		r->pages[i] = p;
	}
	ram->loading_bytes += i << fh->pageshift;
	r->base = r->lo = r->cur = idx;
	r->hi = idx + i;
	r->next = idx + 1; /* the faulting block is as good as started */
	/* a store reading its handle would find its batch all "in progress" */
	r->batch = i > 1 && fh->ops.loadblks && !fh->reads_itself;
	return (long)i;
}

static void run_init(struct loading_run *r, struct vmp_fileh *fh,
		     struct vmp_page **pages, struct remap_op *ops)
{
	memset(r, 0, sizeof(*r));
	r->fh = fh;
	r->pages = pages;
	r->ops = ops;
	r->thread = &vmp_tls;
	r->owner = thread_tag();
	/* overlay handles load a page only to write it: it comes in DIRTY */
	r->to.state = (fh->flags & VMP_OVERLAY) ? PAGE_DIRTY : PAGE_LOADED;
}

int load_pages(struct vmp_vma *v, uint64_t idx, bool zero,
	       struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = v->fh;
	struct load_scratch *scratch;
	struct vmp_page *one;
	struct loading_run r;
	bool overlay = fh->flags & VMP_OVERLAY;
	long made;

	if (vmp_tls.nloading == MAX_NEST)
		return fail(fe, VMP_FAULT_RECURSION, -ELOOP);
	scratch = scratch_get();
	if (scratch)
		run_init(&r, fh, scratch->pages, scratch->ops);
	else
		run_init(&r, fh, &one, NULL);
	/* pinned by the fault for as long as the run */
	if (fh->mech->fill && !overlay) {
		r.fill_vma = v;
		r.filled = true;
	}
	made = run_begin(&r, idx,
			 (overlay || zero || !scratch) ? 1 :
			 readahead(v, idx, &r.ra_order), fe);
	if (made == -EAGAIN)
		return 1;
	if (made < 0)
		return (int)made;
	return load_run(&r, zero, fe);
}

/* --- taking over --- */

/* Tell @r's owner to ask, before each block, whether it is still its own. */
static void count_taker(struct loading_run *r)
{
	__atomic_add_fetch(&r->takers, 1, __ATOMIC_SEQ_CST);
}

static void uncount_taker(struct loading_run *r)
{
	__atomic_sub_fetch(&r->takers, 1, __ATOMIC_SEQ_CST);
}

/* Can this fault load LOADING page @p in a run of its own: nesting depth,
 * and room for the kernel mapping it may split.  0 or -errno in @fe;
 * nothing changed.  ram->lock held. */
static int take_check(const struct vmp_page *p, struct vmp_fault_error *fe)
{
	struct vmp_page to = { .state = (p->fh->flags & VMP_OVERLAY) ?
						PAGE_DIRTY : PAGE_LOADED };
	long cost = fh_remap_cost(p->fh, p->index, 1, &page_absent, &to);
	enum vmp_fault_what what;
	int ret;

	if (vmp_tls.nloading == MAX_NEST)
		return fail(fe, VMP_FAULT_RECURSION, -ELOOP);
	if ((ret = ram_charge(p->fh->ram, 0, cost, false, &what)))
		return fail(fe, what, ret);
	return 0;
}

/* Load @p, LOADING in another run (or an outer one of ours), in a run of
 * this fault's own.  The caller checked take_check() and counted itself a
 * taker of p's run.  The store's bytes, even for a fault whose error
 * handler asked for zeros: someone else's load was under way.  ram->lock
 * held.  1, or -errno in @fe. */
static int take_over(struct vmp_page *p, struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = p->fh;
	struct load_scratch *scratch = scratch_get();
	struct loading_run r;

	run_init(&r, fh, &p, scratch ? scratch->ops : NULL);
	fh->ram->stats.takeovers++;
	p->run = &r;
	p->flags &= (uint8_t)~PAGE_INVALIDATED; /* a load that starts after it */
	page_wake(fh->ram, p); /* its waiters look again: another owner now */
	r.base = r.lo = r.cur = p->index;
	r.hi = r.next = p->index + 1;
	return load_run(&r, false, fe);
}

/*
 * Is a load nested in @r (of this thread) loading a block that nobody
 * asked for: read-ahead, or part of a batch?  Then r's block, whose load
 * waits for it, need not depend on it.
 */
static bool readahead_inside(const struct loading_run *r)
{
	unsigned i = 0;

	while (i < vmp_tls.nloading && vmp_tls.loading[i] != r)
		i++;
	for (i++; i < vmp_tls.nloading; i++) {
		const struct loading_run *in = vmp_tls.loading[i];
		if (in->batch || in->cur != in->base)
			return true;
	}
	return false;
}

/*
 * A fault of this thread on its own run @r's LOADING page @p: the run's
 * loadblk (or a nested one) read it, so the handle reads itself: its runs
 * will go block by block from now on (below).  A block not started, or in
 * a loadblks batch, is loaded now in a nested run; filled ones are
 * committed at once.  The block in the store's hands is -EDEADLK (its
 * loadblk needs itself), unless a read-ahead block nested in between asks
 * for it: then it is loaded again, nested, and the first copy dropped.
 */
static int own_run_fault(struct loading_run *r, struct vmp_page *p,
			 struct vmp_fault_error *fe)
{
	int ret;

	r->fh->reads_itself = true;
	if (p->flags & PAGE_COMMITTING) /* a signal handler interrupted it */
		return fail(fe, VMP_FAULT_RECURSION, -EDEADLK);
	if (p->index > r->cur || r->batch ||
	    (p->index == r->cur && readahead_inside(r))) {
		if ((ret = take_check(p, fe)))
			return ret;
		count_taker(r);
		return take_over(p, fe);
	}
	if (p->index == r->cur)
		return fail(fe, VMP_FAULT_RECURSION, -EDEADLK);
	(void)run_commit(r, r->cur, fe); /* the access then sees it */
	return 1;
}

int load_fault_loading(struct vmp_page *p, struct vmp_fault_error *fe)
{
	vmp_ram *ram = p->fh->ram;
	struct loading_run *r = p->run;
	int ret;

	if (r->thread == &vmp_tls)
		return own_run_fault(r, p, fe);
	if (p->flags & PAGE_COMMITTING) {
		page_wait(ram, p); /* its owner is mapping it: a moment */
		return 1;
	}
	/* not started: take it if we can (count first: see run_fill()) */
	count_taker(r);
	if (p->index >= __atomic_load_n(&r->next, __ATOMIC_SEQ_CST) &&
	    take_check(p, fe) == 0)
		return take_over(p, fe);
	uncount_taker(r);
	if (wait_begin(r->owner)) {
		page_wait(ram, p);
		wait_end();
		return 1;
	}
	/* the owner waits for us: we must load it, or fail */
	if ((ret = take_check(p, fe)))
		return ret;
	count_taker(r);
	return take_over(p, fe);
}
