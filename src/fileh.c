/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fileh.c: handles: open and close, and the change set: writeout, discard,
 * invalidate.
 *
 * Writeout and concurrent writers: each dirty page is write-protected
 * (PAGE_WP, mapped read-only) before its bytes are read for storeblk.  A
 * write that lands afterwards faults, clears PAGE_WP and maps the page
 * writable again; MARKSTORED then turns only the pages that still carry
 * PAGE_WP clean, so a page written during the writeout stays dirty with its
 * new bytes.  While a writeout stores pages (fh->writeout_busy, no lock
 * held), discard and other writeouts of the handle wait for it, so the
 * pages it holds stay put.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* What a page that is not there looks like to vma_class(). */
const struct vmp_page page_absent = { .state = PAGE_GONE };

/* --- dropping pages --- */

void page_drop(struct vmp_page *p)
{
	struct vmp_fileh *fh = p->fh;
	vmp_ram *ram = fh->ram;
	size_t ps = fh_pagesize(fh);

	pagemap_remove(&fh->pagemap, p);
	if (p->state == PAGE_LOADED) {
		lru_remove(ram, p);
	} else if (p->state == PAGE_DIRTY) {
		fh->ndirty--;
		if (p->flags & PAGE_SPILLED) { /* on no list */
			fh->nspilled--;
			ram->spilled_bytes -= ps;
			ps = 0; /* not charged */
		} else {
			list_del(&p->link);
			ram->dirty_bytes -= ps;
		}
	} else { /* LOADING pages are on no list */
		ram_loading_done(ram, ps);
	}
	ram_uncharge(ram, ps);
	p->state = PAGE_GONE;
	page_wake(ram, p);
	if (!p->waiters)
		page_free(ram, p);
}

size_t same_state_run(struct vmp_page **pages, size_t i, size_t n)
{
	size_t j = i + 1;

	while (j < n && pages[j]->index == pages[j - 1]->index + 1 &&
	       pages[j]->state == pages[i]->state &&
	       pages[j]->flags == pages[i]->flags &&
	       pages[j]->lane == pages[i]->lane)
		j++;
	return j - i;
}

int fh_drop_pages(struct vmp_fileh *fh, struct vmp_page **pages, size_t n)
{
	size_t i, j, len;
	int ret;

	for (i = 0; i < n; i += len) {
		uint64_t idx = pages[i]->index;
		len = same_state_run(pages, i, n);
		ret = fh_remap_run(fh, idx, len, pages[i], &page_absent);
		if (ret)
			return ret;
		/* (spilled pages leave their slots to spill_trim()) */
		(void)os_punch(page_memfd(pages[i]), idx << fh->pageshift,
			       (uint64_t)len << fh->pageshift);
		for (j = i; j < i + len; j++)
			page_drop(pages[j]);
	}
	return 0;
}

/* Lock the RAM of @fh for a public call: -EINVAL (NULL), -ECHILD, or 0
 * with the lock held and SIGSEGV blocked. */
static int fh_lock_api(const vmp_fileh *fh, struct api_state *saved)
{
	int ret;

	if (!fh)
		return -EINVAL;
	if ((ret = check_fork(fh->ram->fork_gen)))
		return ret;
	ram_lock_api(fh->ram, saved);
	return 0;
}

/* --- open / close --- */

static bool flags_ok(unsigned flags, const vmp_store_ops *ops)
{
	unsigned evict = flags & (VMP_SPILL | VMP_WRITEBACK);

	if (flags & ~(unsigned)(VMP_OVERLAY | VMP_NO_READAHEAD | VMP_SPILL |
				VMP_WRITEBACK))
		return false;
	if ((flags & VMP_OVERLAY) && !ops->base)
		return false;
	/* overlay pages show the base file when not in memory, which a
	 * spilled page must not, and its writeback is the kernel's to do */
	if (evict && ((flags & VMP_OVERLAY) || evict == (VMP_SPILL | VMP_WRITEBACK)))
		return false;
	return !(flags & VMP_WRITEBACK) || ops->storeblk;
}

/* A new spill file in $TMPDIR, or /tmp: an fd or -errno. */
static int spill_create_default(void)
{
	const char *dir = getenv("TMPDIR");
	int cancel, fd;

	/* open(2) is a cancellation point, and the handle is half built */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	fd = os_tmpfile(dir && *dir ? dir : "/tmp");
	pthread_setcancelstate(cancel, NULL);
	return fd;
}

static int open_base(struct vmp_fileh *fh)
{
	int fd = -1, cancel;
	off_t off = 0;
	int ret;

	/* a store callback: cancellation disabled, as for all of them */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	ret = fh->ops.base(fh->ctx, &fd, &off);
	pthread_setcancelstate(cancel, NULL);

	if (ret)
		return ret < 0 ? ret : -EINVAL;
	if (fd < 0 || off < 0 || ((uint64_t)off & (fh_pagesize(fh) - 1)))
		return -EINVAL;
	fh->base_fd = fd;
	fh->base_off = (uint64_t)off;
	return 0;
}

VMP_EXPORT int vmp_fileh_open(vmp_fileh **fhp, vmp_ram *ram,
			      vmp_store *store, unsigned flags)
{
	struct vmp_fileh *fh;
	struct api_state saved;
	int ret;

	if ((ret = vmp_global_init()))
		return ret;
	if (!fhp || !ram || !store)
		return -EINVAL;
	if ((ret = check_fork(ram->fork_gen)) ||
	    (ret = check_fork(store->fork_gen)))
		return ret;
	if (!flags_ok(flags, &store->ops))
		return -EINVAL;
	fh = calloc(1, sizeof(*fh));
	if (!fh)
		return -ENOMEM;
	fh->ram = ram;
	fh->store = store;
	fh->ops = store->ops;
	fh->ctx = store->ctx;
	fh->flags = flags;
	fh->pageshift = (unsigned)__builtin_ctzll(store->blksize);
	fh->base_fd = -1;
	fh->spill_fd = -1;
	pagemap_init(&fh->pagemap);
	list_init(&fh->dirty);
	list_init(&fh->vmas);
	if ((flags & VMP_OVERLAY) && (ret = open_base(fh)))
		goto out_free;
	if ((flags & VMP_SPILL) && (fh->spill_fd = spill_create_default()) < 0) {
		ret = fh->spill_fd;
		goto out_free;
	}
	memset(fh->lanes, -1, sizeof(fh->lanes));
	fh->nlanes = 1;
	fh->lanes[0] = os_memfd_create("vmpage");
	if (fh->lanes[0] < 0) {
		ret = fh->lanes[0];
		goto out_free;
	}
	store_get(store);
	ram_lock_api(ram, &saved);
	/* overlay pages are the base file's: write-protect does not apply */
	fh->mech = (flags & VMP_OVERLAY) ? &mech_mprotect : ram->mech;
	if (fh->mech == &mech_mprotect && !(flags & VMP_OVERLAY))
		fh->nlanes = FH_LANES;
	list_add_tail(&fh->ram_link, &ram->filehs);
	ram->nfileh++;
	ram_unlock_api(ram, &saved);
	fault_handler_arm();
	*fhp = fh;
	return 0;

out_free:
	if (fh->spill_fd >= 0) {
		int cancel; /* close(2) too */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
		close(fh->spill_fd);
		pthread_setcancelstate(cancel, NULL);
	}
	free(fh);
	return ret;
}

VMP_EXPORT int vmp_fileh_close(vmp_fileh *fh)
{
	struct vmp_page **pages;
	vmp_ram *ram;
	struct api_state saved;
	long n;
	int ret;

	if ((ret = fh_lock_api(fh, &saved)))
		return ret;
	ram = fh->ram;
	if (fh->nvma || fh->writeout_busy) {
		ram_unlock_api(ram, &saved);
		return -EBUSY;
	}
	while (fh->evicting) /* another handle's fault makes room */
		pthread_cond_wait(&ram->writeout_cond, &ram->lock);
	/* no vma: no fault can be loading, every page just goes */
	n = pagemap_collect(&fh->pagemap, 0, UINT64_MAX, &pages);
	if (n < 0) {
		ram_unlock_api(ram, &saved);
		return (int)n;
	}
	fh_drop_pages(fh, pages, (size_t)n);
	free(pages);
	list_del(&fh->ram_link);
	ram->nfileh--;
	pthread_mutex_unlock(&ram->lock);

	/* the handle is gone: finish with cancellation still disabled (close
	 * is a cancellation point) */
	pagemap_destroy(&fh->pagemap);
	for (unsigned i = 0; i < FH_LANES; i++)
		if (fh->lanes[i] >= 0)
			close(fh->lanes[i]);
	if (fh->spill_fd >= 0)
		close(fh->spill_fd);
	store_put(fh->store);
	free(fh);
	api_leave(&saved);
	return 0;
}

VMP_EXPORT int vmp_fileh_set_spill_dir(vmp_fileh *fh, const char *dir)
{
	struct api_state saved;
	int fd, ret;

	if (!fh || !dir || !(fh->flags & VMP_SPILL))
		return -EINVAL;
	if ((ret = check_fork(fh->ram->fork_gen)))
		return ret;
	if ((fd = os_tmpfile(dir)) < 0)
		return fd;
	ram_lock_api(fh->ram, &saved);
	if (fh->nspilled || fh->writeout_busy || fh->evicting) {
		ret = -EBUSY;
	} else {
		int old = fh->spill_fd;
		fh->spill_fd = fd;
		fh->spill_next = 0;
		fd = old;
	}
	ram_unlock_api(fh->ram, &saved);
	close(fd); /* the old file, or the new one on -EBUSY */
	return ret;
}

VMP_EXPORT int vmp_fileh_dirty_count(const vmp_fileh *fh, uint64_t *npages)
{
	struct api_state saved;
	int ret;

	if (!npages)
		return -EINVAL;
	if ((ret = fh_lock_api(fh, &saved)))
		return ret;
	*npages = fh->ndirty;
	ram_unlock_api(fh->ram, &saved);
	return 0;
}

VMP_EXPORT int vmp_set_fault_error_handler(vmp_fileh *fh, vmp_fault_error_fn fn,
					   void *arg)
{
	struct api_state saved;
	int ret;

	if ((ret = fh_lock_api(fh, &saved)))
		return ret;
	fh->errfn = fn;
	fh->errarg = arg;
	ram_unlock_api(fh->ram, &saved);
	return 0;
}

/* --- the change set --- */

/* A writeout of @fh (or a discard's hook) is over: wake the writeouts,
 * discards and closes that wait for it, and the faults waiting for room
 * (its pages may be evicted now). */
static void writeout_done(struct vmp_fileh *fh)
{
	fh->writeout_busy = false;
	pthread_cond_broadcast(&fh->ram->writeout_cond);
	if (fh->ram->room_waiters)
		pthread_cond_broadcast(&fh->ram->room_cond);
}

void writeout_wait(struct vmp_fileh *fh)
{
	while (fh->writeout_busy || fh->evicting || fh->nmoving)
		pthread_cond_wait(&fh->ram->writeout_cond, &fh->ram->lock);
}

/* Add the spilled pages of @fh to pages[n..]: they are on no list, so
 * the pagemap is searched (its resident pages too: at most the limit's).
 * The new count, or -ENOMEM. */
static long collect_spilled(struct vmp_fileh *fh, struct vmp_page **pages,
			    long n)
{
	struct vmp_page **all;
	long nall = pagemap_collect(&fh->pagemap, 0, UINT64_MAX, &all), i;

	if (nall < 0)
		return nall;
	for (i = 0; i < nall; i++)
		if (all[i]->flags & PAGE_SPILLED)
			pages[n++] = all[i];
	free(all);
	return n;
}

/*
 * The dirty pages of @fh sorted by index, or -ENOMEM.  One malloc'ed
 * block: *@pagesp, then (if @spill_slot) per page its slot in the spill
 * file if it is spilled now, else SPILL_NONE (ram->lock held: it cannot
 * change unnoticed).
 */
static long collect_dirty(struct vmp_fileh *fh, struct vmp_page ***pagesp,
			  uint64_t **spill_slot)
{
	struct vmp_page **pages, *p;
	long n = 0, i;

	*pagesp = NULL;
	if (!fh->ndirty)
		return 0;
	pages = malloc(fh->ndirty * (sizeof(*pages) + sizeof(uint64_t)));
	if (!pages)
		return -ENOMEM;
	list_for_each_entry(p, &fh->dirty, link)
		pages[n++] = p;
	if (fh->nspilled && (n = collect_spilled(fh, pages, n)) < 0) {
		free(pages);
		return n;
	}
	qsort(pages, (size_t)n, sizeof(*pages), page_cmp_index);
	if (spill_slot) {
		*spill_slot = (uint64_t *)(pages + n);
		for (i = 0; i < n; i++)
			(*spill_slot)[i] = (pages[i]->flags & PAGE_SPILLED)
						   ? pages[i]->spill_slot
						   : SPILL_NONE;
	}
	*pagesp = pages;
	return n;
}

/* Write-protect dirty pages (PAGE_WP) in runs; spilled ones, not mapped,
 * only get the flag (it stays when they are read back). */
int write_protect(struct vmp_fileh *fh, struct vmp_page **pages, size_t n)
{
	size_t i, j, len;

	for (i = 0; i < n; i += len) {
		struct vmp_page to = *pages[i];
		len = same_state_run(pages, i, n);
		if (pages[i]->flags & PAGE_WP)
			continue;
		to.flags |= PAGE_WP;
		int ret = fh_remap_run(fh, pages[i]->index, len, pages[i], &to);
		if (ret)
			return ret;
		for (j = i; j < i + len; j++)
			pages[j]->flags |= PAGE_WP;
	}
	return 0;
}

/* The store's writeout calls, each run by callback_run (its own nesting
 * level: a fault inside that cannot be served fails the call). */
struct store_call {
	struct vmp_fileh *fh;
	uint64_t blk;
	const void *buf;
};

static int call_begin(void *arg)
{
	struct store_call *c = arg;

	return c->fh->ops.writeout_begin(c->fh->ctx);
}

static int call_storeblk(void *arg)
{
	struct store_call *c = arg;

	return c->fh->ops.storeblk(c->fh->ctx, c->blk, c->buf);
}

static int call_commit(void *arg)
{
	struct store_call *c = arg;

	return c->fh->ops.writeout_commit(c->fh->ctx);
}

static int call_abort(void *arg)
{
	struct store_call *c = arg;

	c->fh->ops.writeout_abort(c->fh->ctx);
	return 0;
}

static int call_discarded(void *arg)
{
	struct store_call *c = arg;

	return c->fh->ops.discarded(c->fh->ctx);
}

/* Bytes come from the memfd (or the spill file), not from a mapping:
 * pages pinned by writeout_busy or evicting; in a buffer of the pool,
 * for an eviction calls this in the fault handler. */
int store_pages(struct vmp_fileh *fh, struct vmp_page **pages,
		const uint64_t *spill_slot, size_t n)
{
	const vmp_store_ops *ops = &fh->ops;
	size_t ps = fh_pagesize(fh), got = 0;
	void *buf = bounce_get(ps, &got);
	struct store_call c = { fh, 0, buf };
	int ret;
	size_t i;

	if (!buf)
		return -ENOMEM;
	ret = ops->writeout_begin ? callback_run(call_begin, &c, NULL) : 0;
	if (ret)
		goto out;
	for (i = 0; i < n && !ret; i++) {
		bool spilled = spill_slot && spill_slot[i] != SPILL_NONE;
		c.blk = pages[i]->index;
		ret = os_pread_zerofill(spilled ? fh->spill_fd : page_memfd(pages[i]),
					buf, ps,
					(spilled ? spill_slot[i] : c.blk)
						<< fh->pageshift);
		if (!ret)
			ret = callback_run(call_storeblk, &c, NULL);
	}
	if (!ret && ops->writeout_commit)
		ret = callback_run(call_commit, &c, NULL);
	/* begun and not committed: let the store roll back */
	if (ret && ops->writeout_abort)
		(void)callback_run(call_abort, &c, NULL);
out:
	bounce_release(buf, got);
	return ret > 0 ? -EIO : ret;
}

/* No page spilled any more: free the file's space (slots of pages that
 * left are only punched when read back, see evict.c) and start it over. */
static void spill_trim(struct vmp_fileh *fh)
{
	if (fh->spill_fd >= 0 && !fh->nspilled && fh->spill_next) {
		(void)os_resize(fh->spill_fd, 0);
		fh->spill_next = 0;
	}
}

/* Pages still write-protected were not written since: they are clean now. */
static int mark_stored(struct vmp_fileh *fh, struct vmp_page **pages, size_t n)
{
	vmp_ram *ram = fh->ram;
	size_t ps = fh_pagesize(fh), i, k = 0;

	for (i = 0; i < n; i++) {
		struct vmp_page *p = pages[i];
		if (p->state != PAGE_DIRTY || !(p->flags & PAGE_WP))
			continue;
		if (fh->flags & VMP_OVERLAY || (p->flags & PAGE_SPILLED)) {
			/* clean overlay pages are the file's; spilled ones
			 * the store's, and not in memory anyway */
			pages[k++] = p;
			continue;
		}
		/* DIRTY+WP and LOADED show the same: no mprotect needed */
		list_del(&p->link);
		fh->ndirty--;
		ram->dirty_bytes -= ps;
		p->state = PAGE_LOADED;
		p->flags = 0;
		lru_add(ram, p);
	}
	return k ? fh_drop_pages(fh, pages, k) : 0;
}

VMP_EXPORT int vmp_writeout(vmp_fileh *fh, unsigned flags)
{
	struct vmp_page **pages = NULL;
	uint64_t *spill_slot = NULL;
	struct api_state saved;
	long n;
	int ret;

	if (!fh || !flags ||
	    (flags & ~(unsigned)(VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED)))
		return -EINVAL;
	if ((flags & VMP_WRITEOUT_STORE) && !fh->ops.storeblk)
		return -EROFS;
	if ((ret = fh_lock_api(fh, &saved)))
		return ret;
	writeout_wait(fh);
	n = collect_dirty(fh, &pages, &spill_slot);
	if (n <= 0) {
		ret = (int)n;
		goto out_unlock;
	}
	if ((ret = write_protect(fh, pages, (size_t)n)))
		goto out_unlock;
	if (flags & VMP_WRITEOUT_STORE) {
		/* the store runs with the caller's mask (SIGSEGV unblocked: it
		 * may read mappings), cancellation still disabled */
		int cancel;
		fh->writeout_busy = true;
		ram_unlock_api(fh->ram, &saved);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
		ret = store_pages(fh, pages, spill_slot, (size_t)n);
		pthread_setcancelstate(cancel, NULL);
		ram_lock_api(fh->ram, &saved);
		/* pages read back from the spill file meanwhile land first
		 * (still pinned: no eviction takes them in between) */
		while (fh->nmoving)
			pthread_cond_wait(&fh->ram->writeout_cond, &fh->ram->lock);
		writeout_done(fh);
	}
	if (!ret && (flags & VMP_WRITEOUT_MARKSTORED))
		ret = mark_stored(fh, pages, (size_t)n);
	spill_trim(fh);
out_unlock:
	ram_unlock_api(fh->ram, &saved);
	free(pages);
	return ret;
}

VMP_EXPORT int vmp_discard(vmp_fileh *fh)
{
	struct vmp_page **pages;
	struct api_state saved;
	long n;
	int ret;

	if ((ret = fh_lock_api(fh, &saved)))
		return ret;
	writeout_wait(fh);
	n = collect_dirty(fh, &pages, NULL);
	ret = n < 0 ? (int)n : fh_drop_pages(fh, pages, (size_t)n);
	spill_trim(fh);
	if (!ret && fh->ops.discarded) {
		/* as a writeout's hooks run: no lock held, other writeouts,
		 * discards, evictions of the handle (and its close) wait */
		struct store_call c = { fh, 0, NULL };
		int cancel;
		fh->writeout_busy = true;
		ram_unlock_api(fh->ram, &saved);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
		ret = callback_run(call_discarded, &c, NULL);
		pthread_setcancelstate(cancel, NULL);
		ram_lock_api(fh->ram, &saved);
		writeout_done(fh);
		if (ret > 0)
			ret = -EIO;
	}
	ram_unlock_api(fh->ram, &saved);
	free(pages);
	return ret;
}

VMP_EXPORT int vmp_invalidate(vmp_fileh *fh, uint64_t pgoffset, uint64_t pglen)
{
	struct vmp_page **pages;
	struct api_state saved;
	long n, i, k = 0;
	int ret;

	if (fh && (ret = fh_check_range(fh, pgoffset, pglen)))
		return ret;
	if ((ret = fh_lock_api(fh, &saved)))
		return ret;
again:
	n = pagemap_collect(&fh->pagemap, pgoffset, pgoffset + pglen, &pages);
	for (i = 0; i < n; i++) {
		/* a loaded page being mapped: let it land, then drop it */
		if (pages[i]->state == PAGE_LOADING &&
		    (pages[i]->flags & PAGE_MAPPING)) {
			struct vmp_page *p = pages[i];
			free(pages);
			page_wait(fh->ram, p);
			goto again;
		}
	}
	for (i = 0; i < n; i++) {
		if (pages[i]->state == PAGE_LOADING)
			pages[i]->flags |= PAGE_INVALIDATED;
		else if (pages[i]->state == PAGE_LOADED)
			pages[k++] = pages[i];
	}
	ret = n < 0 ? (int)n : fh_drop_pages(fh, pages, (size_t)k);
	ram_unlock_api(fh->ram, &saved);
	free(pages);
	return ret;
}
