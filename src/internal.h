/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * internal.h: the library's objects, their invariants and the locking rules.
 *
 * Objects (see DESIGN.md):
 *   vmp_ram    a memory budget; owns the LRU of clean pages and THE lock that
 *              guards the page state of every handle charged to it.
 *   vmp_store  callbacks, ctx, block size; reference-counted (store.c).
 *   vmp_fileh  one open view of a store: pagemap, dirty list, memfds
 *              (lanes), mappings.
 *   vmp_vma    one mapping: an address range reserved PROT_NONE over the
 *              handle's memfd (page i of the store at memfd offset
 *              i*pagesize, in whichever lane holds it).
 *   vmp_page   one resident (or loading) page of a handle.
 *
 * Lock order (outer first):
 *   registry.lock (rwlock, vma.c)  ->  ram->lock  ->  graph_lock (waits.c)
 *                                              ->  pool_lock (bounce.c)
 *                                              ->  map_fork_lock (os.c)
 * No library lock is held while a store callback runs or while page bytes
 * are copied (loadblk, storeblk, pwrite/pread of the memfd).  Public calls
 * block SIGSEGV and SIGBUS while they hold a lock, so a stray fault there kills the
 * program at once instead of deadlocking in the handler; the fault handler
 * runs SA_NODEFER and declines a fault taken while it holds a lock, to the
 * same effect (fault.h, fault_lock()).
 *
 * Mapping invariant (what every vma shows, derived from page state, see
 * vma_class()): in each vma of a handle covering page p,
 *   p absent, LOADING or INACTIVE    -> PROT_NONE (LOADING+MAPPING: on
 *                                       its way to LOADED, or DIRTY)
 *   p LOADED                         -> PROT_READ
 *   p DIRTY and the vma is writable  -> PROT_READ|PROT_WRITE
 *                                       (PROT_READ while write-protected for
 *                                        a writeout: PAGE_WP)
 *   p DIRTY, read-only vma           -> PROT_READ
 * Every state change updates all vmas of the handle before the lock is
 * dropped.  Because of it, a fault on a page that is mapped readable is a
 * write, unless it is a read that trapped just before another thread made
 * the page readable (see fault.c).
 */
#ifndef VMP_INTERNAL_H
#define VMP_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmpage.h"
#include "mech.h"
#include "os.h"
#include "pagemap.h"
#include "util.h"

struct loading_run;

enum page_state {
	PAGE_GONE = 0,    /* dropped; kept only for waiters (page_wait) */
	PAGE_LOADING = 1, /* a thread is in loadblk for it; mapped nowhere */
	PAGE_LOADED,      /* clean; on ram->active or ram->inactive */
	PAGE_DIRTY,       /* changed; on fh->dirty; never reclaimed */
};

enum page_flags {
	PAGE_INACTIVE = 1u << 0,    /* LOADED, protected NONE by the clock
				       sweep to see whether it is used again */
	PAGE_INVALIDATED = 1u << 1, /* LOADING: throw the result away */
	PAGE_WP = 1u << 2,          /* DIRTY, write-protected for a writeout
				       and not written since */
	PAGE_COMMITTING = 1u << 3,  /* LOADING, filled: its loader is writing
				       it into the memfd and mapping it; no
				       other run may take it over (load.c) */
	PAGE_MAPPING = 1u << 4,     /* COMMITTING, bytes in the memfd: the
				       loader is mapping it with ram->lock
				       dropped (or writing it with
				       mech->fill, which maps it as it
				       writes); shows as what it becomes
				       (vma_class) */
	PAGE_SPILLED = 1u << 5,     /* DIRTY, its bytes in fh->spill_fd (at
				       page->spill_slot) and not in memory:
				       on no list, shown PROT_NONE, not
				       charged (evict.c) */
	PAGE_MOVING = 1u << 6,      /* SPILLED: a fault is reading it back
				       with ram->lock dropped; faults on it
				       wait (page_wait_moving) */
};

/*
 * struct vmp_page: 40 bytes per resident page (plus ~16 in the pagemap).
 * All fields but index and fh are protected by fh->ram->lock.
 */
struct vmp_page {
	uint64_t index;       /* page index in the store (const) */
	struct vmp_fileh *fh; /* owner (const) */
	union {
		struct vmp_list link; /* LOADED: on ram->active, or
					 ram->inactive if PAGE_INACTIVE;
					 DIRTY: on fh->dirty; free: on
					 ram->pool_free */
		struct loading_run *run; /* LOADING: the run loading it */
		uint64_t spill_slot;     /* DIRTY|SPILLED: its bytes are at
					    spill_slot << pageshift */
	};
	uint8_t state;        /* enum page_state */
	uint8_t flags;        /* enum page_flags */
	uint16_t waiters;     /* threads waiting for LOADING to end */
	uint16_t mapper;      /* LOADED, DIRTY: tag of the thread whose fault
				 last made the page readable (see fault.c,
				 is_write()) */
	uint8_t ra_order;     /* the last page of a read-ahead window: log2
				 of its size, else 0 (load.c, readahead()) */
	uint8_t lane;         /* the memfd its bytes are in: fh->lanes[lane]
				 (set when its load writes them) */
};

/* Hashed condition variables for "page no longer LOADING". */
#define RAM_NWAIT 16

/*
 * struct vmp_ram.  Invariants, under ->lock:
 *   used_bytes  == sum over its handles' pages (any state) of pagesize,
 *                  but spilled ones
 *   dirty_bytes == sum over DIRTY pages of pagesize, but spilled ones
 *   spilled_bytes == sum over DIRTY|SPILLED pages of pagesize
 *   loading_bytes == sum over LOADING pages of pagesize
 *   limit_bytes == 0 || used_bytes <= max(limit_bytes, one page)
 *   active   holds the LOADED pages without PAGE_INACTIVE, inactive those
 *            with it; both most recently used (or deactivated) first;
 *   nactive, ninactive are their lengths.
 */
struct vmp_ram {
	pthread_mutex_t lock;
	pthread_cond_t page_cond[RAM_NWAIT]; /* see page_wait() */
	pthread_cond_t unmap_cond;           /* vma->inflight reached 0 */
	pthread_cond_t writeout_cond;        /* fh->writeout_busy cleared */
	pthread_cond_t room_cond;            /* loading_bytes went down, or
						an eviction or writeout
						ended */
	uint64_t limit_bytes;                /* const; 0 = unlimited */
	const struct mech *mech;             /* of its handles (mech.h);
						set while it has none */
	uint64_t used_bytes;
	uint64_t dirty_bytes;
	uint64_t loading_bytes;   /* of LOADING pages: room once loaded */
	uint64_t spilled_bytes;
	unsigned room_waiters;    /* faults waiting for loading_bytes */
	struct vmp_list active;   /* mapped clean pages, via page->link */
	struct vmp_list inactive; /* clean pages protected NONE to test reuse */
	uint64_t nactive, ninactive;
	struct vmp_list filehs; /* via fh->ram_link */
	unsigned nfileh;
	struct vmp_stats stats; /* counters; limit/resident/dirty filled on read */
	struct vmp_list pool_free;  /* free struct vmp_page slots */
	void *pool_chunks;          /* chunk list, see page_alloc() */
	uint64_t pool_bytes;
	unsigned fork_gen;          /* const: vmp_fork_gen at creation */
	/* The background reclaimer (reclaimer.c). */
	pthread_cond_t reclaim_cond; /* wakes it: over 90%, or stop */
	pthread_t reclaimer;
	bool reclaimer_on;           /* the thread exists */
	bool reclaimer_stop;         /* it is asked to end */
	bool reclaimer_resting;      /* its last round freed nothing: charges
					need not wake it */
};

/*
 * struct vmp_store.  All fields const after vmp_store_new, but refs:
 *   refs == (the program has not freed it) + number of handles open on it
 * (atomic); at 0 ops.release(ctx) runs and the struct is freed.
 */
struct vmp_store {
	vmp_store_ops ops;
	void *ctx;
	size_t blksize;
	unsigned refs;
	unsigned fork_gen;
};

/*
 * struct vmp_fileh.  All mutable fields under ram->lock.
 *   ndirty == length of dirty list + nspilled (DIRTY|SPILLED pages)
 *   writeout_busy: a vmp_writeout() is storing pages (dirty pages pinned),
 *             or vmp_discard() runs the store's discarded hook
 *   evicting: an eviction is spilling or writing back pages (evict.c:
 *             resident dirty pages pinned, as by a writeout)
 *   nmoving == number of PAGE_MOVING pages (read back from the spill file)
 * A writeout, discard or eviction starts only with none of the three
 * going on (writeout_wait), so each sees the pages stay put.
 */
#define FH_LANES 8

struct vmp_fileh {
	vmp_ram *ram;             /* const */
	const struct mech *mech;  /* const: ram->mech, or mprotect (overlay) */
	struct vmp_store *store;  /* const; a reference held */
	vmp_store_ops ops;        /* const: store->ops, one load nearer */
	void *ctx;                /* const: store->ctx */
	unsigned flags;           /* const: VMP_OVERLAY, VMP_NO_READAHEAD */
	unsigned pageshift;       /* const: log2(store.blksize) */
	/*
	 * Lanes: the memfds that hold the pages, page i at offset
	 * i << pageshift of the one its page->lane names.  A pwrite into a
	 * memfd holds the file's inode lock for its whole copy, so loads of
	 * one handle in several threads would copy one at a time; each
	 * writes into a lane no other load is writing into (load.c,
	 * lane_take()).  Lane 0 is made at open and backs every reservation
	 * and every page that shows nothing; the others on first use.  Only
	 * the mprotect mechanism has more than one: userfaultfd fills
	 * without the inode lock, and overlay pages are the base file's.
	 */
	int lanes[FH_LANES];      /* -1 until made; ram->lock (a lane is made
				     before any page names it) */
	unsigned lane_writers[FH_LANES]; /* loads writing into each; ram->lock */
	unsigned nlanes;          /* lanes to choose from: FH_LANES, or 1;
				     ram->lock (1 for good once one cannot
				     be made: out of file descriptors) */
	int base_fd;              /* const, VMP_OVERLAY: the store's file */
	uint64_t base_off;        /* const, VMP_OVERLAY: offset of block 0 */
	uint64_t memfd_size;      /* grown by vmp_mmap */
	struct vmp_pagemap pagemap;
	struct vmp_list dirty;    /* DIRTY pages in memory via page->link,
				     in the order they became dirty */
	uint64_t ndirty;          /* and spilled ones */
	uint64_t nspilled;
	int spill_fd;             /* VMP_SPILL: the spill file, else -1 */
	uint64_t spill_next;      /* its next free slot (evict.c) */
	unsigned nmoving;
	struct vmp_list vmas;     /* via vma->fh_link */
	unsigned nvma;
	bool writeout_busy;
	bool evicting;
	bool reads_itself;        /* a loadblk of it read it: no loadblks
				     batches any more (load.c) */
	vmp_fault_error_fn errfn;
	void *errarg;
	struct vmp_list ram_link; /* on ram->filehs */
};

/* The memfd that holds @p's bytes. */
static inline int page_memfd(const struct vmp_page *p)
{
	return p->fh->lanes[p->lane];
}

/* struct vmp_vma.  start/end/pgoffset/npages/fh/prot are const. */
struct vmp_vma {
	uintptr_t start, end;     /* reserved address range */
	uint64_t pgoffset;        /* first page index shown */
	uint64_t npages;
	struct vmp_fileh *fh;
	int prot;                 /* PROT_READ or PROT_READ|PROT_WRITE */
	struct vmp_list fh_link;  /* on fh->vmas; ram->lock */
	unsigned inflight;        /* faults past lookup; ram->lock (atomic inc) */
	long kvmas;               /* its kernel VMAs, see vma.c; ram->lock */
};


/* --- globals, fork ------------------------------------------------------ */
extern unsigned vmp_fork_gen; /* bumped in the child after fork() */
int vmp_global_init(void);    /* once; os, fork hooks, map budget */
/* 0, or -ECHILD if @gen is from before a fork (we are the child). */
static inline int check_fork(unsigned gen)
{
	return likely(gen == __atomic_load_n(&vmp_fork_gen, __ATOMIC_RELAXED))
		       ? 0
		       : -ECHILD;
}

/*
 * Lock @ram.  Critical sections are short bookkeeping, and a waiter put to
 * sleep costs a cross-CPU wake-up of tens of microseconds, more than the
 * section itself: so spin on trylock a little first, but not for long, for
 * the holder may have been preempted (more threads than CPUs).
 */
static inline void ram_lock(vmp_ram *ram)
{
	for (int i = 0; i < 200; i++) {
		if (pthread_mutex_trylock(&ram->lock) == 0)
			return;
		cpu_relax();
	}
	pthread_mutex_lock(&ram->lock);
}

/*
 * What a public call changes on its thread while it holds a library lock,
 * and puts back: SIGSEGV and SIGBUS blocked (a stray fault there, a signal
 * handler's touching a mapping, say, kills the program at once instead of
 * deadlocking in the fault handler) and cancellation disabled
 * (pthread_cond_wait, pread and pwrite are cancellation points: a thread
 * cancelled there would leave the lock held or pages half loaded).
 */
struct api_state {
	sigset_t mask;
	int cancel;
};
void api_enter(struct api_state *st);
void api_leave(const struct api_state *st);
/* Lock @ram for a public call: api_enter, then the lock. */
void ram_lock_api(vmp_ram *ram, struct api_state *st);
void ram_unlock_api(vmp_ram *ram, const struct api_state *st);

static inline size_t fh_pagesize(const struct vmp_fileh *fh)
{
	return (size_t)1 << fh->pageshift;
}

/* The address of page @idx in @v (inside its range). */
static inline void *vma_page_addr(const struct vmp_vma *v, uint64_t idx)
{
	return (void *)(v->start + ((idx - v->pgoffset) << v->fh->pageshift));
}

/* --- ram.c -------------------------------------------------------------- */
struct vmp_page *page_alloc(vmp_ram *ram, struct vmp_fileh *fh, uint64_t idx);
void page_free(vmp_ram *ram, struct vmp_page *page);
/* Make room for @bytes more resident bytes and @kvmas more kernel VMAs,
 * reclaiming clean pages as needed, then charge @bytes.  -ENOMEM when the
 * budget holds only dirty pages (*what says which budget).  With
 * @may_wait, when other threads' loads hold the room, or dirty pages may
 * leave (VMP_SPILL, VMP_WRITEBACK), -EAGAIN, nothing charged: the caller
 * lets go of what it holds, calls evict_make_room() (without dropping the
 * lock in between) and looks at its page again. */
int ram_charge(vmp_ram *ram, uint64_t bytes, long kvmas, bool may_wait,
	       enum vmp_fault_what *what);
void ram_uncharge(vmp_ram *ram, uint64_t bytes);
/* @bytes of LOADING pages became LOADED, DIRTY or were dropped. */
void ram_loading_done(vmp_ram *ram, uint64_t bytes);
/* Drop clean pages, least recently used first, until @bytes are freed or
 * none is left; returns the bytes freed. */
uint64_t ram_reclaim_bytes(vmp_ram *ram, uint64_t bytes);
/* The LRU: a new clean page, one leaving it, one touched again. */
void lru_add(vmp_ram *ram, struct vmp_page *p);
void lru_remove(vmp_ram *ram, struct vmp_page *p);
void lru_reactivated(vmp_ram *ram, struct vmp_page *p);
/* Wait until @page is no longer LOADING, or another run took it over
 * (drops and retakes ram->lock). */
void page_wait(vmp_ram *ram, struct vmp_page *page);
/* Wait until @page is no longer PAGE_MOVING (drops and retakes ram->lock). */
void page_wait_moving(vmp_ram *ram, struct vmp_page *page);
void page_wake(vmp_ram *ram, struct vmp_page *page);

/* Is there a handle whose dirty pages may leave memory (evict.c)? */
bool evict_possible(const vmp_ram *ram);
/* Spill or write back up to @bytes of dirty pages ahead of need: 1 done, 0
 * none may leave now, -errno.  ram->lock held, dropped meanwhile. */
int evict_ahead(vmp_ram *ram, uint64_t bytes);

/* --- reclaimer.c ------------------------------------------------------- */
/* Wake the background reclaimer if @ram is over its high watermark. */
void reclaimer_poke(vmp_ram *ram);
/* Stop it and wait for it to end (no lock held): 0, or -EDEADLK called
 * from the reclaimer itself. */
int reclaimer_stop(vmp_ram *ram);

/* --- vma.c -------------------------------------------------------------- */
enum vma_class vma_class(const struct vmp_vma *v, const struct vmp_page *p);
/* What @p shows in @v as the kernel sees it: its class and the lane mapped
 * there (neighbours that show the same are one kernel VMA). */
struct shown vma_shown(const struct vmp_vma *v, const struct vmp_page *p);
/* Pages [idx, idx+n) of fh are in the state of @from (state and flags):
 * show them in every vma as a page in the state of @to shows, and account
 * the kernel VMAs.  Returns 0 or -errno (the vma that failed is unchanged,
 * the ones before it are put back). */
int fh_remap_run(struct vmp_fileh *fh, uint64_t idx, uint64_t n,
		 const struct vmp_page *from, const struct vmp_page *to);
/*
 * The same in three steps, so that the mprotects run without ram->lock:
 * fh_remap_plan (locked) accounts the change and pins each vma that needs
 * one, filling @ops (at most @max, else -ENOSPC and nothing done);
 * remap_ops_apply (unlocked) changes the protections; remap_ops_finish
 * (locked) unpins and returns the first error.  The count then assumes
 * every vma changed: after an error, the caller moves the pages on to a
 * state that every vma can show (fh_remap_run), which puts vmas and count
 * right whichever ops failed, and also covers vmas mapped meanwhile.  The
 * pages must not change state in between: the caller marks them
 * (PAGE_MAPPING).
 */
struct remap_op {
	struct vmp_vma *v;
	uint64_t idx, n;
	struct shown old, new;
	int err;
};
int fh_remap_plan(struct vmp_fileh *fh, uint64_t idx, uint64_t n,
		  const struct vmp_page *from, const struct vmp_page *to,
		  struct remap_op *ops, int max);
void remap_ops_apply(struct remap_op *ops, int n);
int remap_ops_finish(struct remap_op *ops, int n);
/* Kernel VMAs the remap would add (may be negative). */
long fh_remap_cost(struct vmp_fileh *fh, uint64_t idx, uint64_t n,
		   const struct vmp_page *from, const struct vmp_page *to);
/* -EINVAL unless [pgoffset, pgoffset+pglen) is non-empty and its byte
 * offsets fit off_t and its length size_t. */
int fh_check_range(const struct vmp_fileh *fh, uint64_t pgoffset, uint64_t pglen);
/* VMP_OVERLAY: a SIGBUS at @addr of @v.  1 if served: its OS page is past
 * the end of the base file (cut short since it was mapped), and the clean
 * pages from there on (up to the next resident one) show the file again,
 * zeros past its end; or the page was written meanwhile (retry).  0 if the
 * SIGBUS is not a short file's (an I/O error of the file).  ram->lock
 * held. */
int vma_overlay_sigbus(struct vmp_vma *v, uintptr_t addr);
/* Find the vma holding @addr and pin it (vma->inflight++). */
struct vmp_vma *vma_lookup_pin(uintptr_t addr);
void vma_unpin(struct vmp_vma *v); /* ram->lock held */
extern long vmp_kvma_used;   /* kernel VMAs our vmas take now (atomic) */
extern long vmp_kvma_budget; /* const after init: how many they may take */
void registry_fork_prepare(void);
void registry_fork_parent(void);
void registry_fork_child(void);

/* --- bounce.c ----------------------------------------------------------- */
/* A buffer of at least @size bytes for a load (*got: its size), or NULL.
 * Give it back with bounce_put(buf, *got): false if the pool is full, and
 * the caller then frees it with bounce_free (outside its locks: munmap). */
void *bounce_get(size_t size, size_t *got);
bool bounce_put(void *buf, size_t size);
/* Buffers of the fault path outside the pool, counted with it. */
void *bounce_alloc(size_t size);
void bounce_free(void *buf, size_t size);
/* bounce_put, else bounce_free (no lock of ours held); NULL is nothing. */
void bounce_release(void *buf, size_t size);
uint64_t bounce_total(void); /* bytes of all of them */
void bounce_fork_prepare(void);
void bounce_fork_parent(void);
void bounce_fork_child(void);

/* --- waits.c ------------------------------------------------------------ */
void waits_fork_prepare(void);
void waits_fork_parent(void);
void waits_fork_child(void);

/* --- store.c ------------------------------------------------------------ */
bool store_blksize_ok(size_t blksize);
void store_get(struct vmp_store *s);
void store_put(struct vmp_store *s); /* no lock held: may call release */

/* --- fileh.c ------------------------------------------------------------ */
/* Forget a page whose vmas no longer show it: pagemap, lists, accounting.
 * The caller punches its memory. */
void page_drop(struct vmp_page *p);
/* Drop the pages[0..n) (sorted by index, any state but LOADING): unmap them
 * from every vma, punch their memory, forget them.  Runs of neighbours
 * with equal state take one mprotect and one fallocate each. */
int fh_drop_pages(struct vmp_fileh *fh, struct vmp_page **pages, size_t n);
/* Length of the run of pages[i..n) with consecutive indices and the state
 * and flags of pages[i]. */
size_t same_state_run(struct vmp_page **pages, size_t i, size_t n);
/* Write-protect dirty pages[0..n) (sorted) for a store: PAGE_WP. */
int write_protect(struct vmp_fileh *fh, struct vmp_page **pages, size_t n);
/* Call the store for pages[0..n) (sorted, write-protected and pinned),
 * bracketed by its writeout hooks; each page's bytes come from the memfd,
 * or where @spill_slot[i] is not SPILL_NONE from that slot of the spill
 * file.  No lock held. */
#define SPILL_NONE UINT64_MAX
int store_pages(struct vmp_fileh *fh, struct vmp_page **pages,
		const uint64_t *spill_slot, size_t n);
/* Wait until no writeout, eviction or read-back of @fh runs (ram->lock). */
void writeout_wait(struct vmp_fileh *fh);

/* --- fileh.c / fault.c -------------------------------------------------- */
/*
 * Run a store callback, fn(arg), one nesting level above the caller (see
 * fault.h), with the signal mask of the code the fault interrupted.  A
 * fault inside it that cannot be served, and that no vmp_guard set inside
 * it catches, abandons fn as a guard would: callback_run then returns that
 * fault's negative errno, and sets *@what (if not NULL) to what failed in
 * it.  Otherwise fn's value.
 */
int callback_run(int (*fn)(void *arg), void *arg, enum vmp_fault_what *what);
extern const struct vmp_page page_absent; /* how a missing page shows */
/* Install the SIGSEGV handler, unless the program has put its own in place
 * of ours since (it chains to vmp_handle_fault, or re-arms us itself). */
void fault_handler_arm(void);
void fault_fork_prepare(void);
void fault_fork_parent(void);
void fault_fork_child(void);
/* True if this thread is serving a fault on the vma starting at @start. */
bool fault_in_progress_on(uintptr_t start);

#endif /* VMP_INTERNAL_H */
