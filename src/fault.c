/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fault.c: the fault path.  libsigsegv calls on_sigsegv() with the fault
 * address; we find the vma, then the page, and either load it, map it back
 * (it was inactive), or make it dirty (a fault on a readable page is a
 * write, see is_write()).
 *
 * Loading: the pages are created LOADING under ram->lock, the lock is
 * dropped, loadblk fills a per-thread bounce buffer and pwrite() copies it
 * into the handle's memfd, where no mapping can see it yet; then the pages
 * are mapped in every vma, again with the lock dropped (PAGE_MAPPING), and
 * marked.  pwrite needs no second mapping (which would count twice in
 * RssShmem and need a TLB shootdown to take down).  Other threads faulting
 * on a LOADING page wait on a condition variable.  Sequential faults load a
 * growing window of following pages in one go: one pwrite and one mprotect
 * for the run.
 *
 * Signal context: this code runs in the SIGSEGV handler of the faulting
 * thread, installed SA_NODEFER so that a loadblk may itself touch other
 * libvmpage mappings (see fault_lock()).  It does not use malloc or stdio;
 * memory comes from mmap.  The fault is synchronous, so the thread was
 * running the user's code that touched the page, not inside libc.
 */
#include <errno.h>
#include <setjmp.h>
#include <sigsegv.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define RA_MAX_BYTES ((size_t)2 << 20) /* read-ahead window cap */
#define RA_MAX_PAGES 512
#define MAX_NEST 16 /* nested faults (loadblk touching mappings) */

struct guard {
	sigjmp_buf env;
	int err;
	unsigned depth; /* tls.nloading when the guard was set */
	bool segv_masked; /* tls.segv_masked then */
	struct guard *prev;
};

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

static __thread struct fault_tls {
	/* one bounce buffer per loadblk nesting level */
	char *bounce[MAX_NEST];
	size_t bounce_size[MAX_NEST];
	struct loading_run *loading[MAX_NEST];
	unsigned nloading;
	struct vmp_vma *serving[MAX_NEST];
	unsigned nserving;
	uint16_t tag; /* this thread's page->mapper tag, 0 until first used */
	bool locked;      /* holds a ram->lock in the fault path */
	bool segv_masked; /* in vmp_prefault, which blocks SIGSEGV */
	struct guard *guard;
	struct vmp_fault_error last_error;
} tls __attribute__((tls_model("initial-exec")));

static pthread_key_t bounce_key;
static pthread_once_t bounce_key_once = PTHREAD_ONCE_INIT;

static void bounce_release(void *unused)
{
	for (unsigned i = 0; i < MAX_NEST; i++) {
		os_free(tls.bounce[i], tls.bounce_size[i]);
		tls.bounce[i] = NULL;
		tls.bounce_size[i] = 0;
	}
}

static void bounce_key_init(void)
{
	(void)pthread_key_create(&bounce_key, bounce_release);
}

/* The bounce buffer of the current loading level (tls.nloading - 1): a
 * loadblk that faults on another mapping must not get its own back. */
static char *bounce_get(size_t size)
{
	unsigned level = tls.nloading - 1;

	if (tls.bounce_size[level] < size) {
		char *b = os_alloc(size);
		if (!b)
			return NULL;
		os_free(tls.bounce[level], tls.bounce_size[level]);
		tls.bounce[level] = b;
		tls.bounce_size[level] = size;
		(void)pthread_setspecific(bounce_key, b);
	}
	return tls.bounce[level];
}

static uint16_t thread_tag(void)
{
	static uint16_t next_tag;

	while (!tls.tag) /* 0 means "nobody"; skip it when the counter wraps */
		tls.tag = __atomic_add_fetch(&next_tag, 1, __ATOMIC_RELAXED);
	return tls.tag;
}

bool fault_in_progress_on(uintptr_t start)
{
	for (unsigned i = 0; i < tls.nserving; i++)
		if (tls.serving[i]->start == start)
			return true;
	return false;
}

/* The run of this thread that holds block @idx of @fh LOADING, or NULL. */
static struct loading_run *loading_here(const struct vmp_fileh *fh, uint64_t idx)
{
	for (unsigned i = 0; i < tls.nloading; i++) {
		struct loading_run *r = tls.loading[i];
		if (r->fh == fh && idx >= r->lo && idx < r->hi)
			return r;
	}
	return NULL;
}

/*
 * The fault path's locking.  SIGSEGV is not blocked in our handler (it is
 * installed SA_NODEFER, so that a loadblk may touch other mappings without
 * two sigprocmask calls per fault); instead a fault that arrives while this
 * thread holds the lock here is declined (see fault_serve), which crashes
 * the program at once instead of deadlocking it, as blocking would.
 */
static void fault_lock(vmp_ram *ram)
{
	ram_lock(ram);
	tls.locked = true;
}

static void fault_unlock(vmp_ram *ram)
{
	tls.locked = false;
	pthread_mutex_unlock(&ram->lock);
}

static int fail(struct vmp_fault_error *fe, enum vmp_fault_what what, int err)
{
	fe->what = what;
	fe->err = err;
	return err;
}

/* --- loading --- */

/* How many pages to load for a fault at @idx: a window that grows while
 * faults are sequential, cut at the vma end and at the first present page. */
static uint64_t readahead(struct vmp_vma *v, uint64_t idx)
{
	struct vmp_fileh *fh = v->fh;
	uint64_t max = RA_MAX_BYTES >> fh->pageshift, n;

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
		ret = remap_ops_finish(ops, nops, 0);
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
static int run_conflict(struct loading_run *r, uint64_t idx,
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
static int load_pages(struct vmp_vma *v, uint64_t idx, bool zero,
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
	int err = 0, ret;

	r.to.state = overlay ? PAGE_DIRTY : PAGE_LOADED;
	r.to.flags = zero ? PAGE_ZERO : 0;
	if (tls.nloading == MAX_NEST)
		return fail(fe, VMP_FAULT_RECURSION, -ELOOP);
	made = run_begin(&r, idx, n, fe);
	if (made < 0)
		return (int)made;

	tls.loading[tls.nloading++] = &r;
	fault_unlock(ram);
	r.buf = bounce_get((size_t)made << fh->pageshift);
	if (!r.buf) {
		err = -ENOMEM;
		filled = r.lo;
	} else if (zero) {
		memset(r.buf, 0, (size_t)made << fh->pageshift);
		filled = r.hi;
	} else if (tls.segv_masked) {
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
		filled = r.lo;
	}
	fault_lock(ram);
	tls.nloading--;

	ram->stats.loads += filled - r.base;
	ram->stats.load_errors += err != 0;
	if (filled > r.base + 1)
		ram->stats.readahead_pages += filled - r.base - 1;
	ret = run_install(&r, filled);
	run_cut(&r, filled, false);
	if (filled == r.base)
		return fail(fe, VMP_FAULT_LOAD, err);
	return ret ? fail(fe, VMP_FAULT_MAPLIMIT, ret) : 1;
}

/* --- faults on resident pages --- */

/* Move @p to state/flags of @to in every vma; kernel VMA budget first. */
static int remap(struct vmp_page *p, const struct vmp_page *to,
		 struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = p->fh;
	long cost = fh_remap_cost(fh, p->index, 1, p, to);
	enum vmp_fault_what what;
	uint8_t state = p->state, flags = p->flags;
	int ret;

	if (cost > 0) {
		ret = ram_charge(fh->ram, 0, cost, &what);
		if (ret)
			return fail(fe, what, ret);
		/* the clock may have deactivated p meanwhile: let it refault */
		if (p->state != state || p->flags != flags)
			return 1;
	}
	ret = fh_remap_page(fh, p, to);
	if (ret)
		return fail(fe, VMP_FAULT_MAPLIMIT, ret);
	return 0;
}

/* Clear @flag of @p and show the result in every vma; 0 or remap()'s. */
static int remap_clear_flag(struct vmp_page *p, uint8_t flag,
			    struct vmp_fault_error *fe)
{
	struct vmp_page to = *p;
	int ret;

	to.flags &= (uint8_t)~flag;
	ret = remap(p, &to, fe);
	if (!ret)
		p->flags = to.flags;
	return ret;
}

static int reactivate(struct vmp_page *p, struct vmp_fault_error *fe)
{
	int ret = remap_clear_flag(p, PAGE_INACTIVE, fe);

	if (ret)
		return ret;
	p->mapper = thread_tag();
	lru_reactivated(p->fh->ram, p);
	return 1;
}

static int make_dirty(struct vmp_page *p, struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = p->fh;
	vmp_ram *ram = fh->ram;
	struct vmp_page to = { .state = PAGE_DIRTY };
	int ret = remap(p, &to, fe);

	if (ret)
		return ret;
	lru_remove(ram, p);
	list_add_tail(&p->link, &fh->dirty);
	fh->ndirty++;
	ram->dirty_bytes += fh_pagesize(fh);
	p->state = PAGE_DIRTY;
	p->flags = 0;
	return 1;
}

/* A write to a page write-protected for a writeout: it is dirty again. */
static int unprotect(struct vmp_page *p, struct vmp_fault_error *fe)
{
	int ret = remap_clear_flag(p, PAGE_WP, fe);

	return ret ? ret : 1;
}

/*
 * Is a fault on a page that is mapped readable a write?  libsigsegv does not
 * say.  It is, unless it is a read that trapped while the page was still
 * PROT_NONE and another thread made it readable before we got the lock.  So
 * if this thread itself made the page readable (page->mapper), no stale
 * read of it can be pending: it is a write.  Otherwise this thread claims
 * the page and lets the access retry; a read then goes through, a write
 * faults once more and is recognised.  A thread writing a page that another
 * thread loaded pays that one extra fault.
 */
static bool is_write(struct vmp_page *p, bool write_known)
{
	if (write_known || p->mapper == thread_tag())
		return true;
	p->mapper = thread_tag();
	return false;
}

/* Serve a fault at @addr (page @idx of @v).  ram->lock held (may be dropped
 * and retaken).  1 served, 0 not ours to serve, <0 error in @fe. */
static int serve(struct vmp_vma *v, uint64_t idx, bool write, bool zero,
		 struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = v->fh;
	struct vmp_page *p = pagemap_get(&fh->pagemap, idx);
	bool writable = v->prot & PROT_WRITE;

	if ((fh->flags & VMP_OVERLAY) && !writable)
		return 0; /* reads never fault there: a write to read-only */
	if (!p)
		return load_pages(v, idx, zero, fe);
	switch (p->state) {
	case PAGE_LOADING: {
		struct loading_run *mine = loading_here(fh, idx);
		if (mine)
			return run_conflict(mine, idx, fe);
		page_wait(fh->ram, p);
		return 1;
	}
	case PAGE_LOADED:
		if (p->flags & PAGE_INACTIVE)
			return reactivate(p, fe);
		if (!is_write(p, write))
			return 1;
		/* a write to read-only memory: decline, the program crashes
		 * (libsigsegv asks twice; is_write() answers the same) */
		return writable ? make_dirty(p, fe) : 0;
	case PAGE_DIRTY:
		if (!is_write(p, write))
			return 1;
		if (!writable)
			return 0;
		return (p->flags & PAGE_WP) ? unprotect(p, fe) : 1;
	default:
		vmp_assert(!"page state");
		return 1;
	}
}

static uint64_t page_of(const struct vmp_vma *v, uintptr_t addr)
{
	return v->pgoffset + ((addr - v->start) >> v->fh->pageshift);
}

/* --- the fault entry, errors and guards --- */

/* Ask the handle's error handler; ram->lock held, dropped for the call. */
static int ask_error_handler(struct vmp_fileh *fh, const struct vmp_fault_error *fe)
{
	vmp_fault_error_fn fn = fh->errfn;
	void *arg = fh->errarg;
	int answer;

	if (!fn)
		return VMP_FAULT_DEFAULT;
	fault_unlock(fh->ram);
	answer = fn(fe, arg);
	fault_lock(fh->ram);
	return answer;
}

static int fault_serve(void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	struct vmp_fault_error fe = { .addr = addr };
	struct vmp_vma *v = vma_lookup_pin(a);
	vmp_ram *ram;
	bool zero = false;
	int ret;

	if (!v)
		return 0;
	ram = v->fh->ram;
	fe.fh = v->fh;
	fe.blk = page_of(v, a);
	if (tls.locked) {
		/* a fault inside the fault path itself: a bug, crash now */
		ram_lock(ram);
		vma_unpin(v);
		pthread_mutex_unlock(&ram->lock);
		return 0;
	}
	fault_lock(ram);
	if (tls.nserving == MAX_NEST) {
		/* loadblks nested this deep: refuse rather than overflow */
		ret = fail(&fe, VMP_FAULT_RECURSION, -ELOOP);
		goto out;
	}
	tls.serving[tls.nserving++] = v;
	ram->stats.faults++;
	for (;;) {
		ret = serve(v, fe.blk, false, zero, &fe);
		if (ret >= 0 || zero)
			break;
		int answer = ask_error_handler(v->fh, &fe);
		if (answer == VMP_FAULT_ZERO)
			zero = true;
		else if (answer != VMP_FAULT_RETRY)
			break;
	}
	tls.nserving--;
out:
	vma_unpin(v);
	fault_unlock(ram);
	if (ret >= 0)
		return ret;
	tls.last_error = fe;
	/* a guard set at this loadblk nesting level abandons its function */
	if (tls.guard && tls.guard->depth == tls.nloading) {
		tls.guard->err = ret;
		siglongjmp(tls.guard->env, 1);
	}
	return ret;
}

/* Append @s to the buffer at *pos (signal-safe formatting). */
static void put_str(char *buf, size_t size, size_t *pos, const char *s)
{
	while (*s && *pos + 1 < size)
		buf[(*pos)++] = *s++;
	buf[*pos] = 0;
}

static void put_num(char *buf, size_t size, size_t *pos, uint64_t x, unsigned base)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[x % base];
		x /= base;
	} while (x);
	while (n > 0 && *pos + 1 < size)
		buf[(*pos)++] = tmp[--n];
	buf[*pos] = 0;
}

static const char *what_failed(enum vmp_fault_what what)
{
	switch (what) {
	case VMP_FAULT_LOAD: return "load failed";
	case VMP_FAULT_MEMLIMIT: return "memory limit reached with only dirty pages left";
	case VMP_FAULT_MAPLIMIT: return "kernel mapping limit (vm.max_map_count) reached";
	case VMP_FAULT_RECURSION: return "loadblk touched the page it is loading";
	}
	return "fault failed";
}

/* The default for a fault we cannot serve: one line, then SIGBUS with the
 * address, as the kernel does for a failed read of a file mapping. */
static void report_and_raise_sigbus(const struct vmp_fault_error *fe)
{
	char line[256];
	size_t pos = 0;
	const char *reason = strerrordesc_np(-fe->err);
	struct sigaction sa;
	siginfo_t si;
	sigset_t bus;

	put_str(line, sizeof(line), &pos, "vmpage: ");
	put_str(line, sizeof(line), &pos, what_failed(fe->what));
	put_str(line, sizeof(line), &pos, " (handle 0x");
	put_num(line, sizeof(line), &pos, (uintptr_t)fe->fh, 16);
	put_str(line, sizeof(line), &pos, ", block ");
	put_num(line, sizeof(line), &pos, fe->blk, 10);
	put_str(line, sizeof(line), &pos, "): ");
	put_str(line, sizeof(line), &pos, reason ? reason : "unknown error");
	put_str(line, sizeof(line), &pos, "\n");
	(void)!write(STDERR_FILENO, line, pos);

	/* like the kernel's forced signals: an ignored SIGBUS kills anyway */
	if (sigaction(SIGBUS, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) {
		sa.sa_handler = SIG_DFL;
		sigaction(SIGBUS, &sa, NULL);
	}
	memset(&si, 0, sizeof(si));
	si.si_signo = SIGBUS;
	si.si_code = BUS_ADRERR;
	si.si_addr = fe->addr;
	syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGBUS, &si);
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL); /* delivered here */
}

static int on_sigsegv(void *fault_address, int serious)
{
	int ret = fault_serve(fault_address);

	if (ret >= 0)
		return ret;
	report_and_raise_sigbus(&tls.last_error);
	return 1; /* a SIGBUS handler returned: retry, as the kernel would */
}

VMP_EXPORT int vmp_fault_handler_install(void)
{
	struct sigaction sa;

	pthread_once(&bounce_key_once, bounce_key_init);
	if (sigsegv_install_handler(on_sigsegv) < 0)
		return -ENOSYS;
	/* SA_NODEFER: a loadblk may fault on other mappings (see fault_lock) */
	if (sigaction(SIGSEGV, NULL, &sa) == 0 && !(sa.sa_flags & SA_NODEFER)) {
		sa.sa_flags |= SA_NODEFER;
		sigaction(SIGSEGV, &sa, NULL);
	}
	return 0;
}

VMP_EXPORT int vmp_handle_fault(void *addr)
{
	bool masked = tls.segv_masked;
	sigset_t cur;
	int ret;

	/* called from another SIGSEGV handler: SIGSEGV is likely blocked */
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	tls.segv_masked = sigismember(&cur, SIGSEGV);
	ret = fault_serve(addr);
	tls.segv_masked = masked;
	return ret;
}

VMP_EXPORT int vmp_guard(int (*fn)(void *arg), void *arg)
{
	struct guard g;
	int ret;

	if (!fn)
		return -EINVAL;
	g.prev = tls.guard;
	g.depth = tls.nloading;
	g.segv_masked = tls.segv_masked;
	g.err = 0;
	if (sigsetjmp(g.env, 1)) {
		tls.guard = g.prev;
		tls.segv_masked = g.segv_masked;
		return g.err;
	}
	tls.guard = &g;
	ret = fn(arg);
	tls.guard = g.prev;
	return ret;
}

/* --- prefault --- */

static bool prefault_done(const struct vmp_vma *v, const struct vmp_page *p,
			  int write)
{
	if (v->fh->flags & VMP_OVERLAY)
		return !write || (p && p->state == PAGE_DIRTY && !(p->flags & PAGE_WP));
	if (!p || p->state == PAGE_LOADING)
		return false;
	if (write)
		return p->state == PAGE_DIRTY && !(p->flags & PAGE_WP);
	return p->state == PAGE_DIRTY || !(p->flags & PAGE_INACTIVE);
}

static int prefault_range(struct vmp_vma *v, uintptr_t a, size_t len, int write)
{
	struct vmp_fileh *fh = v->fh;
	uint64_t idx = page_of(v, a), last = page_of(v, a + len - 1);
	struct vmp_fault_error fe;
	int ret = 0;

	for (; idx <= last && ret >= 0; idx++) {
		while (!prefault_done(v, pagemap_get(&fh->pagemap, idx), write)) {
			ret = serve(v, idx, write, false, &fe);
			if (ret <= 0) {
				ret = ret ? ret : -EFAULT;
				break;
			}
		}
	}
	return ret < 0 ? ret : 0;
}

VMP_EXPORT int vmp_prefault(const void *addr, size_t len, int write)
{
	uintptr_t a = (uintptr_t)addr;
	struct vmp_vma *v;
	vmp_ram *ram;
	sigset_t saved, segv;
	int ret;

	if (!addr || !len || a + len < a)
		return -EINVAL;
	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	pthread_sigmask(SIG_BLOCK, &segv, &saved);
	v = vma_lookup_pin(a);
	if (!v) {
		pthread_sigmask(SIG_SETMASK, &saved, NULL);
		return -EINVAL;
	}
	ram = v->fh->ram;
	fault_lock(ram);
	if (a + len > v->end || (write && !(v->prot & PROT_WRITE)))
		ret = -EINVAL;
	else if (tls.nserving == MAX_NEST)
		ret = -ELOOP;
	else {
		bool masked = tls.segv_masked;
		tls.segv_masked = true;
		tls.serving[tls.nserving++] = v;
		ret = prefault_range(v, a, len, write);
		tls.nserving--;
		tls.segv_masked = masked;
	}
	vma_unpin(v);
	fault_unlock(ram);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	return ret;
}
