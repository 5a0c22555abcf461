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

/*
 * A run of pages this thread is loading: blocks [base, hi) were made
 * LOADING; [base, lo) are installed already, [lo, cur) are filled in buf,
 * block cur is in the store's hands now.  Only this thread changes it
 * (nested faults included), so its fields need no lock; the pages do.
 */
struct loading_run {
	struct vmp_fileh *fh;
	struct vmp_page **pages; /* pages[i] is block base + i */
	char *buf;               /* block base + i at i * pagesize */
	uint64_t base, lo, cur, hi;
	struct vmp_page to;      /* the state they are installed in */
};

/* Per thread; signal handlers of the thread use it, nothing else. */
struct fault_tls {
	/* one bounce buffer per loadblk nesting level */
	char *bounce[MAX_NEST];
	size_t bounce_size[MAX_NEST];
	struct loading_run *loading[MAX_NEST];
	unsigned nloading;
	struct vmp_vma *serving[MAX_NEST];
	unsigned nserving;
	uint16_t tag; /* this thread's page->mapper tag, 0 until first used */
	bool locked;      /* holds a ram->lock in the fault path */
	bool segv_masked; /* SIGSEGV is blocked here (vmp_prefault, a chained
			     handler, TSan): unblock it around loadblk */
	struct guard *guard;
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

/* This thread's page->mapper tag (never 0). */
uint16_t thread_tag(void);

/* --- load.c --- */
void load_init(void);
/* The run of this thread that holds block @idx of @fh LOADING, or NULL. */
struct loading_run *loading_here(const struct vmp_fileh *fh, uint64_t idx);
/* Load pages from @idx (absent) and map them; 1, or -errno in @fe.
 * ram->lock held, dropped meanwhile. */
int load_pages(struct vmp_vma *v, uint64_t idx, bool zero,
	       struct vmp_fault_error *fe);
/* A loadblk of this thread touched block @idx of its own run @r. */
int run_conflict(struct loading_run *r, uint64_t idx, struct vmp_fault_error *fe);

#endif /* VMP_FAULT_H */
