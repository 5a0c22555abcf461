/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vma.c: mappings.  Reserving and releasing address ranges, the registry
 * that maps a fault address to its vma, and keeping what each vma shows in
 * line with page state (the mapping invariant of internal.h).
 *
 * The registry is a sorted array under a rwlock: a fault holds the read
 * side only for the binary search and pins the vma (vma->inflight) before
 * letting go, so faulting threads never wait for each other here, and
 * vmp_munmap() waits for pinned faults before it releases the range (or a
 * late mprotect could hit whatever is mapped there next).
 *
 * Kernel VMA accounting: pages of one vma sit at contiguous memfd offsets,
 * so the kernel merges neighbours with equal protection into one VMA.  A
 * vma costs 1 + (number of protection changes between neighbouring pages)
 * kernel VMAs; fh_remap_run() keeps that count exact from the classes of
 * the two pages around each run it changes, and vmp_kvma_used sums it, so
 * faults can reclaim before the kernel's vm.max_map_count is reached.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

long vmp_kvma_used;
long vmp_kvma_budget = 65530;

static struct {
	pthread_rwlock_t lock;
	struct vmp_vma **vmas; /* sorted by start */
	size_t n, cap;
} registry = { .lock = PTHREAD_RWLOCK_INITIALIZER };

void registry_fork_prepare(void)
{
	pthread_rwlock_wrlock(&registry.lock);
}

void registry_fork_parent(void)
{
	pthread_rwlock_unlock(&registry.lock);
}

void registry_fork_child(void)
{
	/* The child has none of the mappings: forget them (their structs stay
	 * on the parent's handles, which the child cannot close). */
	pthread_rwlock_init(&registry.lock, NULL);
	free(registry.vmas);
	registry.vmas = NULL;
	registry.n = registry.cap = 0;
	vmp_kvma_used = 0;
}

/* Index of the first vma with start > addr.  Registry lock held. */
static size_t registry_upper(uintptr_t addr)
{
	size_t lo = 0, hi = registry.n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (registry.vmas[mid]->start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct vmp_vma *vma_lookup_pin(uintptr_t addr)
{
	struct vmp_vma *v = NULL;
	size_t i;

	pthread_rwlock_rdlock(&registry.lock);
	i = registry_upper(addr);
	if (i > 0 && addr < registry.vmas[i - 1]->end) {
		v = registry.vmas[i - 1];
		__atomic_add_fetch(&v->inflight, 1, __ATOMIC_ACQUIRE);
	}
	pthread_rwlock_unlock(&registry.lock);
	return v;
}

void vma_unpin(struct vmp_vma *v)
{
	if (__atomic_sub_fetch(&v->inflight, 1, __ATOMIC_RELEASE) == 0)
		pthread_cond_broadcast(&v->fh->ram->unmap_cond);
}

/* The write side, for public calls (see api_enter). */
static void registry_wrlock(struct api_state *saved)
{
	api_enter(saved);
	pthread_rwlock_wrlock(&registry.lock);
}

static void registry_wrunlock(const struct api_state *saved)
{
	pthread_rwlock_unlock(&registry.lock);
	api_leave(saved);
}

static int registry_insert(struct vmp_vma *v)
{
	size_t i;

	if (registry.n == registry.cap) {
		size_t cap = registry.cap ? registry.cap * 2 : 16;
		void *p = realloc(registry.vmas, cap * sizeof(*registry.vmas));
		if (!p)
			return -ENOMEM;
		registry.vmas = p;
		registry.cap = cap;
	}
	i = registry_upper(v->start);
	memmove(registry.vmas + i + 1, registry.vmas + i,
		(registry.n - i) * sizeof(*registry.vmas));
	registry.vmas[i] = v;
	registry.n++;
	return 0;
}

/* Remove the vma starting at @addr; NULL if there is none. */
static struct vmp_vma *registry_remove(uintptr_t addr)
{
	size_t i = registry_upper(addr);
	struct vmp_vma *v;

	if (i == 0 || registry.vmas[i - 1]->start != addr)
		return NULL;
	v = registry.vmas[i - 1];
	memmove(registry.vmas + i - 1, registry.vmas + i,
		(registry.n - i) * sizeof(*registry.vmas));
	registry.n--;
	return v;
}

/* --- what a vma shows --- */

enum vma_class vma_class(const struct vmp_vma *v, const struct vmp_page *p)
{
	bool overlay = v->fh->flags & VMP_OVERLAY;

	if (p && p->state == PAGE_LOADING && (p->flags & PAGE_MAPPING)) {
		/* being mapped outside the lock: count it as what it becomes */
		if (!overlay)
			return CLASS_R;
		return (v->prot & PROT_WRITE) ? CLASS_RW : CLASS_R;
	}
	if (!p || p->state == PAGE_LOADING || p->state == PAGE_GONE)
		return overlay ? CLASS_BASE : CLASS_NONE;
	if (p->state == PAGE_LOADED)
		return (p->flags & PAGE_INACTIVE) ? CLASS_NONE : CLASS_R;
	if (p->flags & PAGE_SPILLED)
		return CLASS_NONE; /* not in memory (never overlay) */
	if ((v->prot & PROT_WRITE) && !(p->flags & PAGE_WP))
		return CLASS_RW;
	return CLASS_R;
}

/* Does a page of class @c show its bytes, from its lane's memfd? */
static bool shows_bytes(enum vma_class c)
{
	return c == CLASS_R || c == CLASS_RW;
}

/* Pages that show nothing show lane 0, the reservation, even those still
 * in memory (inactive, spilled): so they merge with their neighbours, and
 * deactivating a page frees its kernel VMA whatever its lane. */
struct shown vma_shown(const struct vmp_vma *v, const struct vmp_page *p)
{
	enum vma_class c = vma_class(v, p);

	return (struct shown){ (uint8_t)c, shows_bytes(c) ? p->lane : 0 };
}

/* What pages in the state of @from show in @v, and will show in the state
 * of @to.  A page keeps its lane from load to drop: a state it moves to
 * names the same one. */
static void shown_change(const struct vmp_vma *v, const struct vmp_page *from,
			 const struct vmp_page *to, struct shown *old,
			 struct shown *new)
{
	*old = vma_shown(v, from);
	*new = vma_shown(v, to);
	vmp_assert(!shows_bytes(old->cls) || !shows_bytes(new->cls) ||
		   old->lane == new->lane);
}

/* What page @idx shows in @v; false outside the vma. */
static bool shown_at(const struct vmp_vma *v, uint64_t idx, struct shown *s)
{
	if (idx < v->pgoffset || idx >= v->pgoffset + v->npages)
		return false;
	*s = vma_shown(v, pagemap_get(&v->fh->pagemap, idx));
	return true;
}

/* Change of v's kernel VMA count when pages [idx, idx+n) go from showing
 * @old to @new (always 0 when the mechanism does not split VMAs). */
static long boundary_delta(const struct vmp_vma *v, uint64_t idx, uint64_t n,
			   struct shown old, struct shown new)
{
	struct shown side;
	long d = 0;

	if (!v->fh->mech->counts_kvmas)
		return 0;
	if (idx > v->pgoffset && shown_at(v, idx - 1, &side))
		d += !shown_eq(new, side) - !shown_eq(old, side);
	if (shown_at(v, idx + n, &side))
		d += !shown_eq(new, side) - !shown_eq(old, side);
	return d;
}

int vma_overlay_sigbus(struct vmp_vma *v, uintptr_t addr)
{
	struct vmp_fileh *fh = v->fh;
	uint64_t idx = v->pgoffset + ((addr - v->start) >> fh->pageshift);
	uint64_t n = 0, end = v->pgoffset + v->npages, size, off;

	if (pagemap_get(&fh->pagemap, idx))
		return 1; /* written meanwhile: the memfd's page now */
	off = fh->base_off + (v->pgoffset << fh->pageshift) +
	      ((addr - v->start) & ~(uintptr_t)(os_page_size - 1));
	if (os_file_size(fh->base_fd, &size) ||
	    off < ((size + os_page_size - 1) & ~(uint64_t)(os_page_size - 1)))
		return 0; /* inside the file: an I/O error, not ours */
	while (n < 512 && idx + n < end && !pagemap_get(&fh->pagemap, idx + n))
		n++;
	return map_base(fh, vma_page_addr(v, idx), idx, n) ? 0 : 1;
}

static int apply(const struct vmp_vma *v, uint64_t idx, uint64_t n,
		 struct shown old, struct shown new)
{
	return v->fh->mech->show(v, idx, n, old, new);
}

/* Clip [idx, idx+n) to @v; false if they do not meet. */
static bool clip(const struct vmp_vma *v, uint64_t *idx, uint64_t *n)
{
	uint64_t lo = *idx > v->pgoffset ? *idx : v->pgoffset;
	uint64_t hi = *idx + *n < v->pgoffset + v->npages ? *idx + *n
							 : v->pgoffset + v->npages;

	if (lo >= hi)
		return false;
	*idx = lo;
	*n = hi - lo;
	return true;
}

/* Add @d to @v's kernel VMA count and the process total. */
static void account(struct vmp_vma *v, long d)
{
	v->kvmas += d;
	__atomic_add_fetch(&vmp_kvma_used, d, __ATOMIC_RELAXED);
}

long fh_remap_cost(struct vmp_fileh *fh, uint64_t idx, uint64_t n,
		   const struct vmp_page *from, const struct vmp_page *to)
{
	struct vmp_vma *v;
	long cost = 0;

	list_for_each_entry(v, &fh->vmas, fh_link) {
		uint64_t a = idx, len = n;
		struct shown old, new;
		shown_change(v, from, to, &old, &new);
		if (!shown_eq(old, new) && clip(v, &a, &len))
			cost += boundary_delta(v, a, len, old, new);
	}
	return cost;
}

int fh_remap_run(struct vmp_fileh *fh, uint64_t idx, uint64_t n,
		 const struct vmp_page *from, const struct vmp_page *to)
{
	struct vmp_vma *v, *done;
	int ret = 0;

	list_for_each_entry(v, &fh->vmas, fh_link) {
		uint64_t a = idx, len = n;
		struct shown old, new;
		long d;
		shown_change(v, from, to, &old, &new);
		if (shown_eq(old, new) || !clip(v, &a, &len))
			continue;
		d = boundary_delta(v, a, len, old, new);
		ret = apply(v, a, len, old, new);
		if (ret)
			goto rollback;
		account(v, d);
	}
	return 0;

rollback:
	/* put back the vmas already changed, so the invariant holds again */
	list_for_each_entry(done, &fh->vmas, fh_link) {
		uint64_t a = idx, len = n;
		struct shown old, new;
		shown_change(done, from, to, &old, &new);
		if (done == v)
			break;
		if (shown_eq(old, new) || !clip(done, &a, &len))
			continue;
		long d = boundary_delta(done, a, len, new, old);
		if (apply(done, a, len, new, old) == 0)
			account(done, d);
	}
	return ret;
}

/* Forget planned ops that were not applied: their counts, their pins. */
static void plan_cancel(struct remap_op *ops, int n)
{
	for (int i = 0; i < n; i++) {
		account(ops[i].v, boundary_delta(ops[i].v, ops[i].idx, ops[i].n,
						 ops[i].new, ops[i].old));
		vma_unpin(ops[i].v);
	}
}

int fh_remap_plan(struct vmp_fileh *fh, uint64_t idx, uint64_t n,
		  const struct vmp_page *from, const struct vmp_page *to,
		  struct remap_op *ops, int max)
{
	struct vmp_vma *v;
	int k = 0;

	list_for_each_entry(v, &fh->vmas, fh_link) {
		uint64_t a = idx, len = n;
		struct shown old, new;
		shown_change(v, from, to, &old, &new);
		if (shown_eq(old, new) || !clip(v, &a, &len))
			continue;
		if (k == max) {
			plan_cancel(ops, k);
			return -ENOSPC;
		}
		account(v, boundary_delta(v, a, len, old, new));
		__atomic_add_fetch(&v->inflight, 1, __ATOMIC_ACQUIRE);
		ops[k++] = (struct remap_op){ v, a, len, old, new, 0 };
	}
	return k;
}

void remap_ops_apply(struct remap_op *ops, int n)
{
	for (int i = 0; i < n; i++)
		ops[i].err = apply(ops[i].v, ops[i].idx, ops[i].n, ops[i].old,
				   ops[i].new);
}

int remap_ops_finish(struct remap_op *ops, int n)
{
	int err = 0;

	for (int i = 0; i < n; i++) {
		if (!err)
			err = ops[i].err;
		vma_unpin(ops[i].v);
	}
	return err;
}

/* --- public calls --- */

/* How many kernel VMAs @v takes when it shows pages[0..n) (sorted, all
 * in its range) and nothing else: one, plus one per change of what
 * neighbours show. */
static long count_kvmas(const struct vmp_vma *v, struct vmp_page **pages,
			long n)
{
	struct shown none = vma_shown(v, NULL), prev = none;
	uint64_t next = v->pgoffset;  /* the index after the last one seen */
	long changes = 0;

	if (!v->fh->mech->counts_kvmas)
		return 1;
	for (long i = 0; i < n; i++) {
		struct shown s = vma_shown(v, pages[i]);
		bool first = pages[i]->index == v->pgoffset;
		if (pages[i]->index != next) { /* a gap, which shows none */
			changes += !shown_eq(prev, none);
			prev = none;
		}
		changes += !first && !shown_eq(s, prev);
		prev = s;
		next = pages[i]->index + 1;
	}
	if (next != v->pgoffset + v->npages)
		changes += !shown_eq(prev, none);
	return 1 + changes;
}

/* Show the pages of @fh already resident in @v's range, which a new vma
 * shows as none: one call per run of neighbours that show the same (a lazy
 * mechanism shows them on their faults).  Then set its kernel VMA count.
 * ram->lock held. */
static int vma_show_resident(struct vmp_vma *v)
{
	struct vmp_page **pages;
	long n = pagemap_collect(&v->fh->pagemap, v->pgoffset,
				 v->pgoffset + v->npages, &pages);
	struct shown none = vma_shown(v, NULL);
	long i, j;
	int ret = 0;

	if (n < 0)
		return (int)n;
	for (i = 0; i < n && !ret && !v->fh->mech->lazy; i = j) {
		struct shown s = vma_shown(v, pages[i]);
		for (j = i + 1; j < n && pages[j]->index == pages[j - 1]->index + 1 &&
				shown_eq(vma_shown(v, pages[j]), s); j++)
			;
		if (!shown_eq(s, none))
			ret = apply(v, pages[i]->index, (uint64_t)(j - i), none, s);
	}
	if (!ret)
		account(v, count_kvmas(v, pages, n) - v->kvmas);
	free(pages);
	return ret;
}

int fh_check_range(const struct vmp_fileh *fh, uint64_t pgoffset, uint64_t pglen)
{
	uint64_t end = pgoffset + pglen;

	if (pglen == 0 || end < pgoffset)
		return -EINVAL;
	/* byte offsets must fit off_t and the length size_t */
	if (end > ((uint64_t)INT64_MAX >> fh->pageshift) ||
	    pglen > (SIZE_MAX >> fh->pageshift))
		return -EINVAL;
	return 0;
}

/*
 * Expensive check: @v, taken off its handle (so nothing changes what it
 * shows now) and still mapped, took @kvmas kernel VMAs by the count the
 * budget relies on: the kernel's own count, from /proc/self/maps.  (Not
 * for overlay handles: their zero pages past the file's end are not
 * counted.)
 */
static void check_kvmas(const struct vmp_vma *v, long kvmas)
{
#if VMP_DEBUG_CHECKS >= 3
	FILE *f;
	char line[512];
	long n = 0;

	if (!v->fh->mech->counts_kvmas || (v->fh->flags & VMP_OVERLAY) ||
	    !(f = fopen("/proc/self/maps", "re")))
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo < v->end &&
		    hi > v->start)
			n++;
	}
	fclose(f);
	vmp_assert(n == kvmas);
#else
	(void)v;
	(void)kvmas;
#endif
}

/*
 * Take @v off its handle, once no fault or loader holds it pinned (they
 * may be about to change its protections); returns the kernel VMAs it
 * took.  ram->lock held.
 */
static long vma_unlink(struct vmp_vma *v)
{
	vmp_ram *ram = v->fh->ram;
	long kvmas;

	while (__atomic_load_n(&v->inflight, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&ram->unmap_cond, &ram->lock);
	kvmas = v->kvmas;
	list_del(&v->fh_link);
	v->fh->nvma--;
	account(v, -kvmas);
	return kvmas;
}

VMP_EXPORT int vmp_mmap(vmp_fileh *fh, uint64_t pgoffset, uint64_t pglen,
			int prot, void **addrp)
{
	struct vmp_vma *v;
	struct api_state saved;
	uint64_t end_bytes;
	int ret;

	if (!fh || !addrp ||
	    (prot != PROT_READ && prot != (PROT_READ | PROT_WRITE)))
		return -EINVAL;
	if ((ret = check_fork(fh->ram->fork_gen)) || (ret = fh_check_range(fh, pgoffset, pglen)))
		return ret;
	fault_handler_arm();
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->fh = fh;
	v->prot = prot;
	v->pgoffset = pgoffset;
	v->npages = pglen;
	v->end = (uintptr_t)(pglen << fh->pageshift); /* length until reserved */
	list_init(&v->fh_link);

	end_bytes = (pgoffset + pglen) << fh->pageshift;
	ram_lock_api(fh->ram, &saved);
	if (end_bytes > fh->memfd_size) {
		ret = os_resize(fh->lanes[0], end_bytes); /* the others grow
							     as pages go in */
		if (!ret)
			fh->memfd_size = end_bytes;
	}
	ram_unlock_api(fh->ram, &saved);
	if (ret || (ret = fh->mech->reserve(v)))
		goto out_free;

	ram_lock_api(fh->ram, &saved);
	list_add_tail(&v->fh_link, &fh->vmas);
	fh->nvma++;
	account(v, 1); /* the reservation itself */
	ret = vma_show_resident(v);
	if (ret)
		vma_unlink(v);
	ram_unlock_api(fh->ram, &saved);
	if (ret)
		goto out_unmap;

	registry_wrlock(&saved);
	ret = registry_insert(v);
	registry_wrunlock(&saved);
	if (ret)
		goto out_unlink;
	*addrp = (void *)v->start;
	return 0;

out_unlink:
	ram_lock_api(fh->ram, &saved);
	vma_unlink(v);
	ram_unlock_api(fh->ram, &saved);
out_unmap:
	os_unmap((void *)v->start, v->end - v->start);
out_free:
	free(v);
	return ret;
}

VMP_EXPORT int vmp_munmap(void *addr)
{
	struct vmp_vma *v;
	vmp_ram *ram;
	struct api_state saved;

	if (!addr)
		return -EINVAL;
	if (fault_in_progress_on((uintptr_t)addr))
		return -EDEADLK;
	registry_wrlock(&saved);
	v = registry_remove((uintptr_t)addr);
	registry_wrunlock(&saved);
	if (!v)
		return -EINVAL;

	ram = v->fh->ram;
	ram_lock_api(ram, &saved);
	check_kvmas(v, vma_unlink(v));
	ram_unlock_api(ram, &saved);

	os_unmap((void *)v->start, v->end - v->start);
	free(v);
	return 0;
}
