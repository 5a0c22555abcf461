/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ram.c: the memory budget: limit and accounting, the page allocator, the
 * LRU of clean pages and its reclaim, and the waiting for loads.
 *
 * Recency without a fault per access: a loaded page is mapped readable and
 * its accesses are invisible to us.  So clean pages live on two lists, as
 * in the kernel: new and touched pages on ram->active; once the RAM is half
 * full, the oldest active pages are protected PROT_NONE and moved to
 * ram->inactive (keeping their memory) until it holds a third of the clean
 * pages.  Touching an inactive page costs one minor fault that maps it back
 * and moves it to the active head; reclaim drops pages from the inactive
 * tail, which have gone untouched for a whole pass through that list.  A
 * hot set therefore survives a stream of cold pages; each cold page costs
 * one extra mprotect (batched over runs of neighbours), each hot page one
 * fault per pass.
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define POOL_CHUNK (16 * 1024)
#define RECLAIM_BATCH 64

/* --- the page allocator: fixed-size slots carved from mmap'ed chunks,
 *     because the fault handler allocates and must not call malloc --- */

struct pool_chunk {
	struct pool_chunk *next;
};

struct vmp_page *page_alloc(vmp_ram *ram, struct vmp_fileh *fh, uint64_t idx)
{
	struct vmp_page *p;

	if (list_empty(&ram->pool_free)) {
		struct pool_chunk *c = os_alloc(POOL_CHUNK);
		char *slot;
		if (!c)
			return NULL;
		c->next = ram->pool_chunks;
		ram->pool_chunks = c;
		ram->pool_bytes += POOL_CHUNK;
		for (slot = (char *)(c + 1);
		     slot + sizeof(*p) <= (char *)c + POOL_CHUNK;
		     slot += sizeof(*p))
			list_add_tail(&((struct vmp_page *)slot)->link,
				      &ram->pool_free);
	}
	p = list_entry(ram->pool_free.next, struct vmp_page, link);
	list_del(&p->link);
	memset(p, 0, sizeof(*p));
	list_init(&p->link);
	p->index = idx;
	p->fh = fh;
	return p;
}

void page_free(vmp_ram *ram, struct vmp_page *page)
{
	vmp_assert(page->waiters == 0);
	list_add(&page->link, &ram->pool_free);
}

static void pool_destroy(vmp_ram *ram)
{
	struct pool_chunk *c = ram->pool_chunks;

	while (c) {
		struct pool_chunk *next = c->next;
		os_free(c, POOL_CHUNK);
		c = next;
	}
}

/* --- waiting for a page being loaded by another thread --- */

static pthread_cond_t *page_cond(vmp_ram *ram, const struct vmp_page *page)
{
	return &ram->page_cond[((uintptr_t)page / sizeof(*page)) % RAM_NWAIT];
}

void page_wait(vmp_ram *ram, struct vmp_page *page)
{
	const struct loading_run *run = page->run;

	page->waiters++;
	while (page->state == PAGE_LOADING && page->run == run)
		pthread_cond_wait(page_cond(ram, page), &ram->lock);
	page->waiters--;
	/* the loader gave up on it and left the freeing to the last waiter */
	if (page->state == PAGE_GONE && page->waiters == 0)
		page_free(ram, page);
}

void page_wait_moving(vmp_ram *ram, struct vmp_page *page)
{
	page->waiters++;
	while (page->flags & PAGE_MOVING)
		pthread_cond_wait(page_cond(ram, page), &ram->lock);
	page->waiters--;
	/* dropped meanwhile (a discard), the freeing left to the last waiter */
	if (page->state == PAGE_GONE && page->waiters == 0)
		page_free(ram, page);
}

void page_wake(vmp_ram *ram, struct vmp_page *page)
{
	if (page->waiters)
		pthread_cond_broadcast(page_cond(ram, page));
}

/* --- the LRU --- */

void lru_add(vmp_ram *ram, struct vmp_page *p)
{
	list_add(&p->link, &ram->active);
	ram->nactive++;
}

void lru_remove(vmp_ram *ram, struct vmp_page *p)
{
	list_del(&p->link);
	if (p->flags & PAGE_INACTIVE)
		ram->ninactive--;
	else
		ram->nactive--;
}

/* @p was inactive, a fault mapped it again and cleared PAGE_INACTIVE. */
void lru_reactivated(vmp_ram *ram, struct vmp_page *p)
{
	list_move(&p->link, &ram->active);
	ram->ninactive--;
	ram->nactive++;
}

/* --- reclaim --- */

static int cmp_fh_index(const void *a, const void *b)
{
	const struct vmp_page *x = *(struct vmp_page *const *)a;
	const struct vmp_page *y = *(struct vmp_page *const *)b;

	if (x->fh != y->fh)
		return (uintptr_t)x->fh < (uintptr_t)y->fh ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Length of the run of pages[i..] of one handle with consecutive indices. */
static size_t run_length(struct vmp_page **pages, size_t i, size_t n)
{
	size_t j = i + 1;

	while (j < n && pages[j]->fh == pages[i]->fh &&
	       pages[j]->index == pages[j - 1]->index + 1 &&
	       pages[j]->lane == pages[i]->lane)
		j++;
	return j - i;
}

/* Take up to RECLAIM_BATCH pages, and no more than @bytes of them, from the
 * tail of @list, sorted by handle and index so that neighbours form runs. */
static size_t take_tail(struct vmp_list *list, uint64_t bytes,
			struct vmp_page **pages)
{
	size_t n = 0;
	uint64_t taken = 0;
	struct vmp_list *pos;

	for (pos = list->prev; pos != list && n < RECLAIM_BATCH && taken < bytes;
	     pos = pos->prev) {
		pages[n] = list_entry(pos, struct vmp_page, link);
		taken += fh_pagesize(pages[n++]->fh);
	}
	qsort(pages, n, sizeof(*pages), cmp_fh_index);
	return n;
}

/*
 * Move a batch from the tail of the active list to the inactive list,
 * protecting the pages NONE (one mprotect per run of neighbours).  A run
 * the kernel refuses to split goes back to the active head unchanged.
 */
static void deactivate_batch(vmp_ram *ram)
{
	struct vmp_page *pages[RECLAIM_BATCH];
	size_t n = take_tail(&ram->active, UINT64_MAX, pages), i, j, len;

	for (i = 0; i < n; i += len) {
		struct vmp_page to = *pages[i];
		len = run_length(pages, i, n);
		to.flags |= PAGE_INACTIVE;
		int ret = fh_remap_run(pages[i]->fh, pages[i]->index, len,
				       pages[i], &to);
		for (j = i; j < i + len; j++) {
			if (ret) {
				list_move(&pages[j]->link, &ram->active);
				continue;
			}
			lru_remove(ram, pages[j]);
			pages[j]->flags |= PAGE_INACTIVE;
			list_add(&pages[j]->link, &ram->inactive);
			ram->ninactive++;
		}
	}
}

/* Drop a batch (up to @bytes) from the inactive tail; returns bytes freed. */
static uint64_t drop_batch(vmp_ram *ram, uint64_t bytes)
{
	struct vmp_page *pages[RECLAIM_BATCH];
	size_t n = take_tail(&ram->inactive, bytes, pages), i, len;
	uint64_t freed = 0;

	for (i = 0; i < n; i += len) {
		len = run_length(pages, i, n);
		freed += (uint64_t)len << pages[i]->fh->pageshift;
		fh_drop_pages(pages[i]->fh, pages + i, len); /* NONE already */
	}
	ram->stats.reclaimed_pages += n;
	return freed;
}

/*
 * Keep a third of the clean pages inactive once the RAM is half full, so
 * that pages get a probation period to show they are used before they
 * reach the inactive tail.  Moves at most @max pages: a fault that only
 * tops the list up does a bounded share; reclaim restores it whole, or
 * its drops (a read-ahead window's worth at a time) would drain the list
 * faster than faults refill it, and then take active pages with no
 * probation at all: a hot set, untouched by faults while it is mapped,
 * sits at the active tail.
 */
static void refill_inactive(vmp_ram *ram, uint64_t max)
{
	uint64_t moved = 0;

	if (!ram->limit_bytes || ram->used_bytes < ram->limit_bytes / 2)
		return;
	while (ram->nactive && ram->ninactive * 2 < ram->nactive &&
	       moved < max) {
		uint64_t before = ram->nactive;
		deactivate_batch(ram);
		if (ram->nactive == before)
			break; /* the kernel refused: try again later */
		moved += before - ram->nactive;
	}
}

static bool over_kvma(long want)
{
	return want && __atomic_load_n(&vmp_kvma_used, __ATOMIC_RELAXED) + want >
			       vmp_kvma_budget;
}

/*
 * Drop inactive pages until @bytes are freed, deactivating more only when
 * none is left (those then get no probation: the RAM is short of memory
 * and the active list is all we have).  Then top up the inactive list.
 */
uint64_t ram_reclaim_bytes(vmp_ram *ram, uint64_t bytes)
{
	uint64_t freed = 0;

	refill_inactive(ram, UINT64_MAX);

	while (freed < bytes && (ram->ninactive || ram->nactive)) {
		if (!ram->ninactive) {
			uint64_t before = ram->nactive;
			deactivate_batch(ram);
			if (ram->nactive == before)
				break;
		}
		freed += drop_batch(ram, bytes - freed);
	}
	refill_inactive(ram, UINT64_MAX);
	return freed;
}

/* Deactivate clean pages (a NONE page merges with its neighbours) until
 * @kvmas more kernel VMAs fit. */
static void reclaim_kvmas(vmp_ram *ram, long kvmas)
{
	uint64_t budget = ram->nactive;

	while (over_kvma(kvmas) && ram->nactive && budget) {
		uint64_t before = ram->nactive;
		deactivate_batch(ram);
		if (ram->nactive == before)
			break;
		budget -= before - ram->nactive < budget ? before - ram->nactive : budget;
	}
}

static bool over_limit(const vmp_ram *ram, uint64_t bytes)
{
	return ram->limit_bytes && ram->used_bytes &&
	       ram->used_bytes + bytes > ram->limit_bytes;
}

int ram_charge(vmp_ram *ram, uint64_t bytes, long kvmas, bool may_wait,
	       enum vmp_fault_what *what)
{
	uint64_t limit = ram->limit_bytes;

	if (bytes && !over_limit(ram, bytes))
		refill_inactive(ram, 4 * RECLAIM_BATCH);
	while (over_limit(ram, bytes)) {
		uint64_t need = ram->used_bytes + bytes - limit;
		/* reclaim in batches: a 32th of the limit at least */
		uint64_t batch = limit / 32;
		ram_reclaim_bytes(ram, need > batch ? need : batch);
		if (!over_limit(ram, bytes))
			break;
		/* Left: dirty pages, and pages other threads are loading,
		 * which become clean (or dirty) once loaded.  Only dirty ones
		 * that may not leave memory make a fault fail. */
		if (!may_wait || (!ram->loading_bytes && !evict_possible(ram))) {
			*what = VMP_FAULT_MEMLIMIT;
			return -ENOMEM;
		}
		return -EAGAIN; /* evict_make_room(), then look again */
	}
	if (over_kvma(kvmas)) {
		reclaim_kvmas(ram, kvmas);
		if (over_kvma(kvmas)) {
			*what = VMP_FAULT_MAPLIMIT;
			return -ENOMEM;
		}
	}
	ram->used_bytes += bytes;
	if (ram->used_bytes > ram->stats.peak_resident_bytes)
		ram->stats.peak_resident_bytes = ram->used_bytes;
	if (ram->reclaimer_on)
		reclaimer_poke(ram);
	return 0;
}

void ram_uncharge(vmp_ram *ram, uint64_t bytes)
{
	vmp_assert(ram->used_bytes >= bytes);
	ram->used_bytes -= bytes;
}

void ram_loading_done(vmp_ram *ram, uint64_t bytes)
{
	vmp_assert(ram->loading_bytes >= bytes);
	ram->loading_bytes -= bytes;
	if (ram->room_waiters)
		pthread_cond_broadcast(&ram->room_cond);
}

/* --- public calls --- */

/* Parse "64m", "2g", "512k", "4096" (case-insensitive, optional 'b'). */
static int parse_memlimit(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (tolower((unsigned char)*end)) {
	case 'k': shift = 10; end++; break;
	case 'm': shift = 20; end++; break;
	case 'g': shift = 30; end++; break;
	case 't': shift = 40; end++; break;
	default: break;
	}
	if (shift && tolower((unsigned char)*end) == 'b')
		end++;
	while (isspace((unsigned char)*end))
		end++;
	if (*end || (v << shift) >> shift != v)
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int limit_from_env(uint64_t *limit)
{
	const char *s = getenv("VMPAGE_MEMLIMIT");

	*limit = 0;
	if (!s || !*s)
		return 0;
	if (parse_memlimit(s, limit) < 0) {
		fprintf(stderr,
			"vmpage: client bug: VMPAGE_MEMLIMIT=\"%s\" is not a size "
			"(use bytes or a k/m/g suffix, e.g. 512m)\n", s);
		return -EINVAL;
	}
	return 0;
}

/* The mechanism for @faults (enum vmp_faults), or -errno. */
static int pick_mech(int faults, const struct mech **mech)
{
	int ret;

	switch (faults) {
	case VMP_FAULTS_SIGSEGV:
		*mech = &mech_mprotect;
		return 0;
	case VMP_FAULTS_UFFD:
		if ((ret = uffd_available()))
			return ret;
		*mech = &mech_uffd;
		return 0;
	case VMP_FAULTS_AUTO:
		*mech = uffd_available() ? &mech_mprotect : &mech_uffd;
		return 0;
	}
	return -EINVAL;
}

static int mech_from_env(const struct mech **mech)
{
	static const char *const names[] = { [VMP_FAULTS_SIGSEGV] = "sigsegv",
					     [VMP_FAULTS_UFFD] = "uffd",
					     [VMP_FAULTS_AUTO] = "auto" };
	const char *s = getenv("VMPAGE_FAULTS");
	int faults = 0, ret;

	*mech = &mech_mprotect;
	if (!s || !*s)
		return 0;
	for (int i = 1; i < (int)ARRAY_SIZE(names); i++)
		if (!strcmp(s, names[i]))
			faults = i;
	if (!faults) {
		fprintf(stderr, "vmpage: client bug: VMPAGE_FAULTS=\"%s\" is not "
			"one of sigsegv, uffd, auto\n", s);
		return -EINVAL;
	}
	ret = pick_mech(faults, mech);
	if (ret)
		fprintf(stderr, "vmpage: VMPAGE_FAULTS=%s: userfaultfd cannot be "
			"used here: %s\n", s, strerror(-ret));
	return ret;
}

VMP_EXPORT int vmp_ram_new(vmp_ram **ramp, size_t limit_bytes)
{
	const struct mech *mech;
	vmp_ram *ram;
	uint64_t limit = limit_bytes;
	int ret, i;

	if (!ramp)
		return -EINVAL;
	ret = vmp_global_init();
	if (ret)
		return ret;
	if (!limit && (ret = limit_from_env(&limit)))
		return ret;
	if ((ret = mech_from_env(&mech)))
		return ret;
	ram = calloc(1, sizeof(*ram));
	if (!ram)
		return -ENOMEM;
	ram->mech = mech;
	pthread_mutex_init(&ram->lock, NULL);
	for (i = 0; i < RAM_NWAIT; i++)
		pthread_cond_init(&ram->page_cond[i], NULL);
	pthread_cond_init(&ram->unmap_cond, NULL);
	pthread_cond_init(&ram->writeout_cond, NULL);
	pthread_cond_init(&ram->room_cond, NULL);
	pthread_cond_init(&ram->reclaim_cond, NULL);
	ram->limit_bytes = limit;
	list_init(&ram->active);
	list_init(&ram->inactive);
	list_init(&ram->filehs);
	list_init(&ram->pool_free);
	ram->fork_gen = vmp_fork_gen;
	fault_handler_arm();
	*ramp = ram;
	return 0;
}

VMP_EXPORT int vmp_ram_free(vmp_ram *ram)
{
	struct api_state saved;
	int ret, i;

	if (!ram)
		return -EINVAL;
	if ((ret = check_fork(ram->fork_gen)))
		return ret;
	ram_lock_api(ram, &saved);
	ret = ram->nfileh ? -EBUSY : 0;
	ram_unlock_api(ram, &saved);
	if (ret)
		return ret;
	(void)reclaimer_stop(ram); /* (not from its callbacks: handles are open) */
	pool_destroy(ram);
	for (i = 0; i < RAM_NWAIT; i++)
		pthread_cond_destroy(&ram->page_cond[i]);
	pthread_cond_destroy(&ram->unmap_cond);
	pthread_cond_destroy(&ram->writeout_cond);
	pthread_cond_destroy(&ram->room_cond);
	pthread_cond_destroy(&ram->reclaim_cond);
	pthread_mutex_destroy(&ram->lock);
	free(ram);
	return 0;
}

VMP_EXPORT int vmp_ram_set_faults(vmp_ram *ram, int faults)
{
	const struct mech *mech;
	struct api_state saved;
	int ret;

	if (!ram)
		return -EINVAL;
	if ((ret = check_fork(ram->fork_gen)) || (ret = pick_mech(faults, &mech)))
		return ret;
	ram_lock_api(ram, &saved);
	if (ram->nfileh)
		ret = -EBUSY;
	else
		__atomic_store_n(&ram->mech, mech, __ATOMIC_RELAXED);
	ram_unlock_api(ram, &saved);
	return ret;
}

VMP_EXPORT int vmp_ram_faults(vmp_ram *ram)
{
	int ret;

	if (!ram)
		return -EINVAL;
	if ((ret = check_fork(ram->fork_gen)))
		return ret;
	return __atomic_load_n(&ram->mech, __ATOMIC_RELAXED)->faults;
}

VMP_EXPORT int vmp_ram_reclaim(vmp_ram *ram, size_t bytes)
{
	struct api_state saved;
	int ret;

	if (!ram)
		return -EINVAL;
	if ((ret = check_fork(ram->fork_gen)))
		return ret;
	ram_lock_api(ram, &saved);
	ram_reclaim_bytes(ram, bytes);
	ram_unlock_api(ram, &saved);
	return 0;
}

/* vmp_ram_stats@@VMPAGE_0.3: struct vmp_stats as of 0.3.  (.symver, not
 * the attribute: clang 14 lacks it.) */
__asm__(".symver vmp_ram_stats_0_3, vmp_ram_stats@@VMPAGE_0.3");
VMP_EXPORT int vmp_ram_stats_0_3(vmp_ram *ram, struct vmp_stats *st);
VMP_EXPORT int vmp_ram_stats_0_3(vmp_ram *ram, struct vmp_stats *st)
{
	struct vmp_fileh *fh;
	struct api_state saved;
	int ret;

	if (!ram || !st)
		return -EINVAL;
	if ((ret = check_fork(ram->fork_gen)))
		return ret;
	ram_lock_api(ram, &saved);
	*st = ram->stats;
	st->limit_bytes = ram->limit_bytes;
	st->resident_bytes = ram->used_bytes;
	st->dirty_bytes = ram->dirty_bytes;
	st->metadata_bytes = ram->pool_bytes;
	st->buffer_bytes = bounce_total();
	st->spilled_bytes = ram->spilled_bytes;
	list_for_each_entry(fh, &ram->filehs, ram_link)
		st->metadata_bytes += pagemap_bytes(&fh->pagemap);
	ram_unlock_api(ram, &saved);
	return 0;
}

/* vmp_ram_stats@VMPAGE_0.1: programs built before 0.3 pass a smaller
 * struct (0.2's ended with buffer_bytes, but its vmp_ram_stats kept this
 * version): fill what both older layouts have. */
__asm__(".symver vmp_ram_stats_0_1, vmp_ram_stats@VMPAGE_0.1");
VMP_EXPORT int vmp_ram_stats_0_1(vmp_ram *ram, struct vmp_stats *st);
VMP_EXPORT int vmp_ram_stats_0_1(vmp_ram *ram, struct vmp_stats *st)
{
	struct vmp_stats all;
	int ret;

	if (!st)
		return -EINVAL;
	ret = vmp_ram_stats_0_3(ram, &all);
	if (!ret)
		memcpy(st, &all, offsetof(struct vmp_stats, buffer_bytes));
	return ret;
}
