/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fault.h: what the fault path's two files share: the per-thread state
 * (fault.c serves faults, load.c loads pages for them) and the locking of
 * the fault path.
 */
#ifndef VMP_FAULT_H
#define VMP_FAULT_H

#include "internal.h"

#define MAX_NEST 16 /* nested faults (loadblk touching mappings) */

struct guard;
struct callback_frame;
struct entry_state;

/*
 * A run of pages a thread is loading (load.c), on that thread's stack:
 * blocks [base, hi) were made LOADING; [base, lo) are committed already,
 * [lo, cur) are filled in buf, block cur is in the store's hands now.
 * Its arrays live in the thread's scratch for its level (load.c).
 * Each page it holds points to it (page->run).  Only its thread changes
 * these fields, so they need no lock, except the two that other threads
 * read (next and takers: atomic, see run_fill()); the pages are under
 * ram->lock.
 */
struct loading_run {
	struct vmp_fileh *fh;
	struct vmp_page **pages; /* pages[i] is block base + i; NULL once
				    known not to be this run's any more */
	struct remap_op *ops;    /* room to map it unlocked, or NULL */
	char *buf;               /* block base + i at i * pagesize */
	uint64_t base, lo, cur, hi;
	uint64_t loaded;         /* blocks the store filled */
	bool batch;              /* one loadblks call for the window */
	uint64_t next;           /* atomic: the store has not been asked for
				    blocks from here on: others may take
				    them over */
	unsigned takers;         /* atomic: others took (or are about to
				    take) blocks over: check each block */
	const struct fault_tls *thread; /* the loading thread's */
	uint16_t owner;          /* its tag, for waits.c */
	struct vmp_page to;      /* the state they are installed in */
	uint8_t ra_order;        /* the read-ahead window's (readahead()) */
	struct vmp_vma *fill_vma; /* the faulting mapping (pinned), where its
				     mechanism has a fill(): the run's pages
				     go into the memfd through it; else NULL */
	bool filled;             /* fill() did every page written so far:
				    fill_vma shows them already */
};

/* What a fault path entry knows of the access that faulted. */
enum {
	ACC_KNOWN = 1u << 0,   /* the CPU said read or write, present or not */
	ACC_WRITE = 1u << 1,
	ACC_PRESENT = 1u << 2, /* a page-table entry was there (protection) */
	ACC_SIGSEGV = 1u << 3, /* it came as SIGSEGV */
	ACC_SIGBUS = 1u << 4,  /* it came as SIGBUS (userfaultfd) */
	ACC_FOREIGN = 1u << 5, /* a kind of fault no page state explains */
};

/*
 * Per thread; the thread's own fault path uses it, nothing else.
 *
 * Nesting levels.  A store callback (loadblk from a fault or vmp_prefault,
 * storeblk and the writeout hooks from vmp_writeout) runs one level above
 * its caller: @level counts the callbacks in progress on this thread.  A
 * fault that fails inside a callback, and that no vmp_guard set at that
 * level catches, makes the callback fail with its error (callback_run):
 * so a fault never abandons a library call halfway, whatever the program
 * does with the error, and no store can wedge a load or a writeout by
 * touching a page that cannot be loaded.
 */
struct fault_tls {
	struct loading_run *loading[MAX_NEST]; /* loads in progress, outermost
						  first (load.c) */
	unsigned nloading;
	struct vmp_vma *serving[MAX_NEST];
	unsigned nserving;
	unsigned level;   /* store callbacks in progress (see above) */
	struct callback_frame *frame; /* the innermost one's */
	struct guard *guard;          /* the innermost vmp_guard */
	void *scratch[MAX_NEST];      /* per load level, see load.c */
	uint16_t tag; /* this thread's page->mapper tag, 0 until first used */
	uint8_t lane; /* 1 + the lane its large loads prefer, 0 until the
			 first (load.c, lane_take()) */
	bool locked;  /* holds a ram->lock in the fault path */
	vmp_ram *room_wait; /* make room there (evict_make_room), then fault
			       again (ram_charge said so, the entry does it) */
	bool raising; /* report_and_raise_sigbus() is sending its SIGBUS */
	/* The signal mask store callbacks run with: the mask of the code the
	 * fault interrupted (callbacks are the program's code), less SIGSEGV
	 * (they may touch other mappings).  @cb_swap: the mask now is
	 * another, so callback_run sets this one around each callback. */
	uint64_t cb_mask;
	uint64_t fault_mask; /* the mask of the code that faulted (entry) */
	bool cb_swap;
	/* What the entry knows of the faulting access (ACC_*). */
	uint8_t access;
	/* The signal being served, for chaining to the displaced action. */
	siginfo_t *sig_info;
	void *sig_uc;
	const struct entry_state *entry_outer; /* see fault.c */
	struct vmp_fault_error last_error;
};
extern __thread struct fault_tls vmp_tls __attribute__((tls_model("initial-exec")));

/*
 * The fault path's locking.  SIGSEGV is not blocked in our handler (it is
 * installed SA_NODEFER, so that a loadblk may touch other mappings without
 * two sigprocmask calls per fault); instead a fault that arrives while this
 * thread holds the lock here is declined (see fault_serve), which crashes
 * the program at once instead of deadlocking it, as blocking would.
 */
static inline void fault_lock(vmp_ram *ram)
{
	ram_lock(ram);
	vmp_tls.locked = true;
}

static inline void fault_unlock(vmp_ram *ram)
{
	vmp_tls.locked = false;
	pthread_mutex_unlock(&ram->lock);
}

static inline int fail(struct vmp_fault_error *fe, enum vmp_fault_what what, int err)
{
	fe->what = what;
	fe->err = err;
	return err;
}

/* --- waits.c --- */
/* This thread's tag (never 0): page->mapper, loading_run->owner. */
uint16_t thread_tag(void);
/* Record that this thread is about to wait for thread @owner; false, and
 * nothing recorded, if @owner waits for this thread (directly or through
 * others): the wait would never end. */
bool wait_begin(uint16_t owner);
void wait_end(void);

/* --- load.c --- */
void load_init(void);
/* Load pages from @idx (absent) and map them; 1 (also when the room is
 * held by others' loads: see vmp_tls.room_wait), or -errno in @fe.
 * ram->lock held, dropped meanwhile. */
int load_pages(struct vmp_vma *v, uint64_t idx, bool zero,
	       struct vmp_fault_error *fe);
/* A fault on LOADING page @p: wait for its loader, or take it over; 1
 * (fault again), or -errno in @fe.  ram->lock held, dropped meanwhile. */
int load_fault_loading(struct vmp_page *p, struct vmp_fault_error *fe);

/* --- evict.c --- */
/* A fault found the room held (ram_charge gave -EAGAIN): make some by
 * spilling or writing back dirty pages, or else wait for loads, evictions
 * and writeouts in progress.  0 (fault again), or -errno in @fe.  ram->lock
 * held, dropped meanwhile; the caller holds no pin. */
int evict_make_room(vmp_ram *ram, struct vmp_fault_error *fe);
/* A fault on spilled page @p (of @v): read it back from the spill file.
 * 1 (fault again), or -errno in @fe.  ram->lock held, dropped meanwhile. */
int evict_unspill(struct vmp_vma *v, struct vmp_page *p,
		  struct vmp_fault_error *fe);

#endif /* VMP_FAULT_H */
