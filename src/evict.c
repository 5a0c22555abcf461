/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * evict.c: making room from dirty pages, for the handles that allow it.
 * VMP_SPILL writes them to the handle's spill file and keeps them dirty
 * (spilled: PAGE_SPILLED, on no list, shown PROT_NONE, not charged);
 * VMP_WRITEBACK stores them with storeblk and drops them, clean.
 *
 * The spill file is a log: a batch goes to the next free slots
 * (fh->spill_next), in one write, whatever the pages' indices, and each
 * page remembers its slot (page->spill_slot).  A slot is never reused:
 * a page read back punches its slot, and the file is truncated and
 * started over once nothing is spilled (after a commit or a discard).  So
 * the file holds what is spilled, and its size grows only with the
 * spills of one transaction (by a page each: 4 G spills of 4 KiB pages
 * before ext4's 16 TiB).
 *
 * When.  ram_charge() reclaims clean pages first.  When only dirty pages
 * are left and some may leave, it answers -EAGAIN, and the fault, once it
 * has let go of its vma pin, evicts a batch here (evict_make_room) and
 * faults again.  Only a fault outside store callbacks does (level 0), as
 * for waiting for room: a nested one could be serving the very writeout
 * that pins the pages.
 *
 * Which.  The oldest dirty pages of one handle: fh->dirty keeps pages in
 * the order they became dirty, and a page read back from the spill file
 * goes to its end.  Writes to a dirty page are invisible to us, so this is
 * least recently dirtied, not least recently used; a page written all the
 * time is spilled and read back once per pass through the change set.
 * Handles take turns (ram->filehs is rotated).
 *
 * How.  As a writeout does (fileh.c): the batch is write-protected
 * (PAGE_WP) and pinned (fh->evicting: writeouts, discards and other
 * evictions of the handle wait), its bytes go out with the lock dropped,
 * and only pages still write-protected afterwards leave: a page written
 * meanwhile stays in memory, dirty, with its new bytes.  A failure leaves
 * every page where it was (dirty, in memory) and fails the fault with
 * VMP_FAULT_EVICT.
 *
 * Reading back.  A fault on a spilled page charges a page, marks it
 * PAGE_MOVING (faults on it wait, writeouts and discards wait for
 * fh->nmoving to drop to 0), copies its bytes from the spill file into
 * the memfd with the lock dropped, and maps it dirty.  Its copy in the
 * spill file is punched, so a full disk still takes the page that must
 * leave in its stead; but not during a writeout, which may be reading it:
 * such a stale copy goes when the handle has no spilled page left (the
 * file is truncated), or is overwritten by the page's next spill.
 *
 * Signal context, like fault.c: no malloc, no stdio.
 */
#include <errno.h>
#include <stdlib.h>

#include "fault.h"

/* A batch: a 32nd of the limit (as reclaim of clean pages takes), but at
 * most 64 pages and 8 MiB (its bytes go through one buffer), and at least
 * one page. */
#define EVICT_BATCH 64
#define EVICT_BATCH_BYTES ((uint64_t)8 << 20)

static bool may_evict(const struct vmp_fileh *fh)
{
	return (fh->flags & (VMP_SPILL | VMP_WRITEBACK)) &&
	       fh->ndirty > fh->nspilled;
}

bool evict_possible(const vmp_ram *ram)
{
	const struct vmp_fileh *fh;

	/* a page being read back holds room as a load does: it lands as a
	 * dirty page that may leave, or gives the room back (room_cond) */
	list_for_each_entry(fh, &ram->filehs, ram_link)
		if (may_evict(fh) || fh->nmoving)
			return true;
	return false;
}

/* A handle with dirty pages in memory that may leave now, its turn
 * passed on; NULL if those there are pinned. */
static struct vmp_fileh *pick_handle(vmp_ram *ram)
{
	struct vmp_fileh *fh;

	list_for_each_entry(fh, &ram->filehs, ram_link) {
		if (may_evict(fh) && !fh->writeout_busy && !fh->evicting) {
			list_move_tail(&fh->ram_link, &ram->filehs);
			return fh;
		}
	}
	return NULL;
}

/* The oldest dirty pages of @fh, a batch of up to @bytes, sorted by
 * index. */
static size_t take_oldest(struct vmp_fileh *fh, uint64_t bytes,
			  struct vmp_page **pages)
{
	struct vmp_page *p;
	uint64_t taken = 0;
	size_t n = 0;

	if (bytes > EVICT_BATCH_BYTES)
		bytes = EVICT_BATCH_BYTES;
	list_for_each_entry(p, &fh->dirty, link) {
		if (n == EVICT_BATCH || (n && taken >= bytes))
			break;
		pages[n++] = p;
		taken += fh_pagesize(fh);
	}
	qsort(pages, n, sizeof(*pages), page_cmp_index);
	return n;
}

/* Copy pages[0..n) (sorted) from the memfd, a run of neighbours at a
 * time, into one buffer, and write it to slots [@slot, @slot + n) of the
 * spill file.  No lock held. */
static int spill_write(struct vmp_fileh *fh, struct vmp_page **pages, size_t n,
		       uint64_t slot)
{
	size_t ps = fh_pagesize(fh), i, len, got = 0;
	char *buf = bounce_get(n * ps, &got);
	int ret = buf ? 0 : -ENOMEM;

	for (i = 0; i < n && !ret; i += len) {
		for (len = 1; i + len < n &&
			      pages[i + len]->index == pages[i]->index + len &&
			      pages[i + len]->lane == pages[i]->lane; len++)
			;
		ret = os_pread_zerofill(page_memfd(pages[i]), buf + i * ps, len * ps,
					pages[i]->index << fh->pageshift);
	}
	if (!ret)
		ret = os_pwrite_full(fh->spill_fd, buf, n * ps, slot << fh->pageshift);
	bounce_release(buf, got);
	return ret;
}

/* Spilled: pages[0..n) (sorted, in memory, not written since they were
 * copied to slots[0..n)) leave memory.  ram->lock held. */
static int spill_finish(struct vmp_fileh *fh, struct vmp_page **pages,
			const uint64_t *slots, size_t n)
{
	vmp_ram *ram = fh->ram;
	size_t ps = fh_pagesize(fh), i, j, len;
	int ret;

	for (i = 0; i < n; i += len) {
		struct vmp_page to = { .state = PAGE_DIRTY, .flags = PAGE_SPILLED,
					.lane = pages[i]->lane };
		len = same_state_run(pages, i, n);
		if ((ret = fh_remap_run(fh, pages[i]->index, len, pages[i], &to)))
			return ret; /* the rest stays in memory, dirty */
		(void)os_punch(page_memfd(pages[i]), pages[i]->index << fh->pageshift,
			       len * ps);
		for (j = i; j < i + len; j++) {
			struct vmp_page *p = pages[j];
			p->flags = PAGE_SPILLED;
			list_del(&p->link);
			p->spill_slot = slots[j];
			fh->nspilled++;
			ram->dirty_bytes -= ps;
			ram->spilled_bytes += ps;
			ram_uncharge(ram, ps);
		}
		ram->stats.spill_writes += len;
	}
	return 0;
}

/* Evict a batch of up to @bytes (a page at least) from the handle whose
 * turn it is.  1 done, 0 none may leave now (pinned, or none), or -errno
 * in @fe.  ram->lock held (the fault path's), dropped meanwhile. */
static int evict_batch(vmp_ram *ram, uint64_t bytes, struct vmp_fault_error *fe)
{
	struct vmp_page *pages[EVICT_BATCH];
	uint64_t slots[EVICT_BATCH], slot = 0;
	struct vmp_fileh *fh = pick_handle(ram);
	size_t n, i, k = 0;
	int ret;

	if (!fh)
		return 0;
	n = take_oldest(fh, bytes, pages);
	if (fh->flags & VMP_SPILL) {
		slot = fh->spill_next; /* no other eviction of fh meanwhile */
		fh->spill_next += n;
	}
	if ((ret = write_protect(fh, pages, n)))
		return fail(fe, VMP_FAULT_MAPLIMIT, ret);
	fh->evicting = true;
	fault_unlock(ram);
	if (fh->flags & VMP_SPILL)
		ret = spill_write(fh, pages, n, slot);
	else
		ret = store_pages(fh, pages, NULL, n);
	fault_lock(ram);
	fh->evicting = false;
	pthread_cond_broadcast(&ram->writeout_cond);
	if (ram->room_waiters)
		pthread_cond_broadcast(&ram->room_cond);
	if (ret)
		return fail(fe, VMP_FAULT_EVICT, ret);
	/* only pages not written since leave */
	for (i = 0; i < n; i++) {
		if (pages[i]->flags & PAGE_WP) {
			slots[k] = slot + i;
			pages[k++] = pages[i];
		}
	}
	if (fh->flags & VMP_SPILL) {
		ret = spill_finish(fh, pages, slots, k);
	} else {
		ram->stats.writeback_pages += k;
		ret = fh_drop_pages(fh, pages, k); /* clean now, and cold */
	}
	return ret ? fail(fe, VMP_FAULT_MAPLIMIT, ret) : 1;
}

int evict_make_room(vmp_ram *ram, struct vmp_fault_error *fe)
{
	int ret = evict_batch(ram, ram->limit_bytes / 32, fe);

	if (ret)
		return ret < 0 ? ret : 0;
	/* pinned by a writeout or another eviction, or being loaded: each of
	 * them wakes us when it ends */
	if (ram->loading_bytes || evict_possible(ram)) {
		ram->room_waiters++;
		pthread_cond_wait(&ram->room_cond, &ram->lock);
		ram->room_waiters--;
	}
	return 0;
}

int evict_ahead(vmp_ram *ram, uint64_t bytes)
{
	struct vmp_fault_error fe;

	return evict_batch(ram, bytes, &fe);
}

/* --- reading a spilled page back --- */

int evict_unspill(struct vmp_vma *v, struct vmp_page *p,
		  struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = v->fh;
	vmp_ram *ram = fh->ram;
	size_t ps = fh_pagesize(fh), got = 0;
	uint64_t off = p->index << fh->pageshift;
	uint64_t spill_off = p->spill_slot << fh->pageshift;
	int memfd = page_memfd(p); /* it keeps its lane while spilled */
	struct vmp_page to = *p;
	void *buf;
	long cost;
	int ret;

	if (p->flags & PAGE_MOVING) {
		page_wait_moving(ram, p);
		return 1;
	}
	to.flags &= (uint8_t)~PAGE_SPILLED;
	cost = fh_remap_cost(fh, p->index, 1, p, &to);
	ret = ram_charge(ram, ps, cost, vmp_tls.level == 0, &fe->what);
	if (ret == -EAGAIN) {
		vmp_tls.room_wait = ram;
		return 1;
	}
	if (ret)
		return fail(fe, fe->what, ret);
	p->flags |= PAGE_MOVING;
	fh->nmoving++;
	fault_unlock(ram);
	buf = bounce_get(ps, &got);
	ret = buf ? os_pread_zerofill(fh->spill_fd, buf, ps, spill_off) : -ENOMEM;
	if (!ret)
		ret = os_pwrite_full(memfd, buf, ps, off);
	bounce_release(buf, got);
	fault_lock(ram);
	p->flags &= (uint8_t)~PAGE_MOVING;
	if (--fh->nmoving == 0)
		pthread_cond_broadcast(&ram->writeout_cond);
	if (ram->room_waiters)
		pthread_cond_broadcast(&ram->room_cond);
	page_wake(ram, p);
	/* the write-protection of a writeout in progress stays (to.flags) */
	if (ret) {
		(void)fail(fe, VMP_FAULT_EVICT, ret);
	} else if ((ret = fh_remap_run(fh, p->index, 1, p, &to))) {
		(void)fail(fe, VMP_FAULT_MAPLIMIT, ret);
	}
	if (ret) {
		(void)os_punch(memfd, off, ps);
		ram_uncharge(ram, ps);
		return ret;
	}
	/* its copy in the file is stale now, unless a writeout in progress
	 * reads it (the file is trimmed once nothing is spilled) */
	if (!fh->writeout_busy)
		(void)os_punch(fh->spill_fd, spill_off, ps);
	p->flags = to.flags;
	p->mapper = thread_tag();
	list_add_tail(&p->link, &fh->dirty); /* (over spill_slot) */
	fh->nspilled--;
	ram->spilled_bytes -= ps;
	ram->dirty_bytes += ps;
	ram->stats.spill_reads++;
	return 1;
}
