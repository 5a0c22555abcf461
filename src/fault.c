/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fault.c: the fault path.  Our SIGSEGV action, on_signal(), notes what
 * the interrupted code had (errno, signal mask) and hands the signal to
 * libsigsegv, which calls on_sigsegv() with the fault address; we find the
 * vma, then the page, and either load it, map it back (it was inactive),
 * or make it dirty (a fault on a readable page is a write, see
 * is_write()).  A fault that is not ours goes to the action ours displaced.
 *
 * Loading is load.c's.  Other threads faulting on a LOADING page wait on a
 * condition variable.  Also here: fault errors (the default SIGBUS, the
 * handle's error handler, vmp_guard), the nesting levels of store
 * callbacks (callback_run, see fault.h) and vmp_prefault.
 *
 * Signal context: this code runs in the SIGSEGV handler of the faulting
 * thread, installed SA_NODEFER so that a loadblk may itself touch other
 * libvmpage mappings (see fault_lock()).  It does not use malloc or stdio;
 * memory comes from mmap.  The fault is synchronous, but the interrupted
 * code may be anywhere, libc included: a printf that holds stdout's lock
 * while it reads a mapped page, say.  So a loadblk must not take a lock
 * that the program may hold while it touches mapped memory (vmpage.h,
 * "Rules for store authors").  Cancellation is disabled while a fault is
 * served, store callbacks included: a thread cancelled in the middle would
 * leave pages LOADING and locks held.
 */
#include <errno.h>
#include <setjmp.h>
#include <sigsegv.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "fault.h"

__thread struct fault_tls vmp_tls __attribute__((tls_model("initial-exec")));

/*
 * The fields of vmp_tls that an entry into the fault path (on_signal,
 * vmp_handle_fault) sets for its fault and puts back when it returns.
 * Code that may not return there gets them put back first: a jump to a
 * guard or a callback frame (which saved them), and the program's own code
 * that may leave with siglongjmp (the fault error handler, a SIGBUS
 * handler), which runs with the entry's outer state.
 */
struct entry_state {
	uint64_t cb_mask;
	uint64_t fault_mask; /* the faulting code's own mask, as it was */
	bool cb_swap;
	uint8_t access;
	siginfo_t *sig_info;
	void *sig_uc;
	const struct entry_state *outer; /* the innermost entry's saved one */
};

static void entry_save(struct entry_state *e)
{
	e->cb_mask = vmp_tls.cb_mask;
	e->fault_mask = vmp_tls.fault_mask;
	e->cb_swap = vmp_tls.cb_swap;
	e->access = vmp_tls.access;
	e->sig_info = vmp_tls.sig_info;
	e->sig_uc = vmp_tls.sig_uc;
	e->outer = vmp_tls.entry_outer;
}

static void entry_restore(const struct entry_state *e)
{
	vmp_tls.cb_mask = e->cb_mask;
	vmp_tls.fault_mask = e->fault_mask;
	vmp_tls.cb_swap = e->cb_swap;
	vmp_tls.access = e->access;
	vmp_tls.sig_info = e->sig_info;
	vmp_tls.sig_uc = e->sig_uc;
	vmp_tls.entry_outer = e->outer;
}

/* An entry begins: save what was into @e, to go back to. */
static void entry_begin(struct entry_state *e)
{
	entry_save(e);
	vmp_tls.entry_outer = e;
}

/* Before the program's own code runs in the middle of an entry. */
static void entry_leave_for_program(void)
{
	if (vmp_tls.entry_outer)
		entry_restore(vmp_tls.entry_outer);
}

struct guard {
	sigjmp_buf env;
	int err;
	unsigned depth; /* vmp_tls.level when the guard was set */
	struct entry_state entry;
	struct guard *prev;
};

struct callback_frame {
	sigjmp_buf env;
	int err;                  /* the failed fault's, when jumped to */
	enum vmp_fault_what what; /* and what failed in it */
	uint64_t fault_mask;      /* and the mask the callback had then */
	int saved_errno;          /* errno before: callbacks leave it */
	unsigned level;
	uint64_t outer_mask; /* the mask around it, if entry.cb_swap */
	struct entry_state entry;
	struct callback_frame *prev;
};

/* --- signal masks as the kernel's 64-bit word (x86-64, arm64 have 64
 *     signals), so that saving one costs 8 bytes of stack, not 128 --- */

#define SIG_BIT(sig) ((uint64_t)1 << ((sig) - 1))
/* the signals faults come as: never blocked in store callbacks */
#define FAULT_BITS (SIG_BIT(SIGSEGV) | SIG_BIT(SIGBUS))

static uint64_t mask_word(const sigset_t *set)
{
	uint64_t w;

	memcpy(&w, set, sizeof(w));
	return w;
}

/* Set the thread's mask to @w; returns the old one. */
static uint64_t mask_set(uint64_t w)
{
	sigset_t set, old;

	sigemptyset(&set);
	memcpy(&set, &w, sizeof(w));
	pthread_sigmask(SIG_SETMASK, &set, &old);
	return mask_word(&old);
}

/* --- nesting levels of store callbacks --- */

int callback_run(int (*fn)(void *arg), void *arg, enum vmp_fault_what *what)
{
	struct callback_frame f;
	int ret;

	f.saved_errno = errno;
	f.prev = vmp_tls.frame;
	f.level = vmp_tls.level;
	entry_save(&f.entry);
	if (f.entry.cb_swap)
		f.outer_mask = mask_set(f.entry.cb_mask);
	if (sigsetjmp(f.env, 0) == 0) {
		vmp_tls.frame = &f;
		vmp_tls.level = f.level + 1;
		vmp_tls.cb_swap = false; /* its mask is the callback's own */
		ret = fn(arg);
	} else {
		ret = f.err; /* a fault inside fn failed: fn is abandoned */
		if (what)
			*what = f.what;
		/* we come from inside its signal handler: put back the mask
		 * fn ran with (below, the one around it) */
		if (!f.entry.cb_swap)
			(void)mask_set(f.fault_mask);
	}
	vmp_tls.frame = f.prev;
	vmp_tls.level = f.level;
	entry_restore(&f.entry);
	if (f.entry.cb_swap)
		(void)mask_set(f.outer_mask);
	errno = f.saved_errno;
	return ret;
}

bool fault_in_progress_on(uintptr_t start)
{
	for (unsigned i = 0; i < vmp_tls.nserving; i++)
		if (vmp_tls.serving[i]->start == start)
			return true;
	return false;
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
		ret = ram_charge(fh->ram, 0, cost, false, &what);
		if (ret)
			return fail(fe, what, ret);
		/* reclaim may have deactivated p meanwhile: let it refault */
		if (p->state != state || p->flags != flags)
			return 1;
	}
	ret = fh_remap_run(fh, p->index, 1, p, to);
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
	struct vmp_page to = { .state = PAGE_DIRTY, .lane = p->lane };
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
 * Is a fault on a page that is mapped readable a write?  Where the entry
 * read the access from the CPU's fault information (vmp_tls.access), it
 * knows.  Otherwise (libsigsegv alone does not say) it is, unless it is a
 * read that trapped while the page was still PROT_NONE and another thread
 * made it readable before we got the lock.  So if this thread itself made
 * the page readable (page->mapper), no stale read of it can be pending: it
 * is a write.  Otherwise this thread claims the page and lets the access
 * retry; a read then goes through, a write faults once more and is
 * recognised.  A thread writing a page that another thread loaded pays
 * that one extra fault.
 */
static bool is_write(struct vmp_page *p, unsigned acc)
{
	if (acc & ACC_KNOWN)
		return acc & ACC_WRITE;
	if (p->mapper == thread_tag())
		return true;
	p->mapper = thread_tag();
	return false;
}

/* A write to @p, which shows read-only: make it writable.  1 or -errno. */
static int make_writable(struct vmp_page *p, struct vmp_fault_error *fe)
{
	if (p->state == PAGE_LOADED)
		return make_dirty(p, fe);
	return (p->flags & PAGE_WP) ? unprotect(p, fe) : 1;
}

/*
 * A lazy mechanism (userfaultfd) faulted on resident page @p: either it has
 * no page-table entry in @v yet (MINOR: map it as it shows), or it is
 * mapped write-protected and this is a write (WP).  An entry that does not
 * know whether the page was present finds out by mapping it.
 */
static int serve_resident_lazy(struct vmp_vma *v, struct vmp_page *p,
			       unsigned acc, struct vmp_fault_error *fe)
{
	bool writable = v->prot & PROT_WRITE;
	bool write = (acc & ACC_KNOWN) && (acc & ACC_WRITE);
	int ret;

	if (!(acc & ACC_KNOWN) || !(acc & ACC_PRESENT)) {
		/* a write makes it writable first: mapped so, in one fault */
		if (write && writable && (ret = make_writable(p, fe)) < 0)
			return ret;
		ret = uffd_map_page(v, (uintptr_t)fe->addr, vma_class(v, p));
		if (ret < 0)
			return fail(fe, VMP_FAULT_MAPLIMIT, ret);
		if (ret == 1) {
			p->mapper = thread_tag(); /* see is_write() */
			return 1;
		}
		if (acc & ACC_KNOWN)
			return 1; /* another thread mapped it: retry */
		/* it was mapped: a write, or a read that raced with the
		 * thread that mapped it (the same question as is_write()) */
		if (!is_write(p, acc))
			return 1;
	} else if (!write) {
		return 1; /* a read of a present page: it was fixed meanwhile */
	}
	return writable ? make_writable(p, fe) : 0;
}

/* Serve a fault at page @idx of @v, access @acc (ACC_*).  ram->lock held
 * (may be dropped and retaken).  1 served, 0 not ours to serve, <0 error
 * in @fe. */
static int serve(struct vmp_vma *v, uint64_t idx, unsigned acc, bool zero,
		 struct vmp_fault_error *fe)
{
	struct vmp_fileh *fh = v->fh;
	struct vmp_page *p = pagemap_get(&fh->pagemap, idx);
	bool writable = v->prot & PROT_WRITE;
	bool lazy = fh->mech->lazy;
	int ret;

	if ((fh->flags & VMP_OVERLAY) && !writable)
		return 0; /* reads never fault there: a write to read-only */
	/* each mechanism has its signal: SIGSEGV on a userfaultfd mapping is
	 * a write to a read-only one, a SIGBUS on an mprotect one not ours */
	if (acc & (ACC_FOREIGN | (lazy ? ACC_SIGSEGV : ACC_SIGBUS)))
		return 0;
	/* with mprotect, a read faults only on PROT_NONE, never present in
	 * the page table: a read of a present page is a protection of the
	 * program's own */
	if (!lazy && (acc & ACC_KNOWN) && (acc & ACC_PRESENT) && !(acc & ACC_WRITE))
		return 0;
	if (!p) {
		ret = load_pages(v, idx, zero, fe);
		/* a write: make it dirty now, not in a second fault */
		if (ret == 1 && (acc & ACC_KNOWN) && (acc & ACC_WRITE) && writable &&
		    (p = pagemap_get(&fh->pagemap, idx)) &&
		    p->state == PAGE_LOADED && !(p->flags & PAGE_INACTIVE))
			ret = make_dirty(p, fe);
		return ret;
	}
	switch (p->state) {
	case PAGE_LOADING:
		return load_fault_loading(p, fe);
	case PAGE_LOADED:
		if (p->flags & PAGE_INACTIVE)
			return reactivate(p, fe);
		__attribute__((fallthrough)); /* a write, or a stale read */
	case PAGE_DIRTY:
		if (p->flags & PAGE_SPILLED)
			return evict_unspill(v, p, fe);
		if (lazy)
			return serve_resident_lazy(v, p, acc, fe);
		if (!is_write(p, acc))
			return 1;
		/* a write to read-only memory: decline, the program crashes
		 * (libsigsegv asks twice; is_write() answers the same) */
		return writable ? make_writable(p, fe) : 0;
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

/*
 * Serve a fault at @addr: 1 served, 0 not ours (or ours, but taken while
 * this thread holds the lock in the fault path: a crash is all that is
 * left), negative errno if it could not be served.  A vmp_guard at this
 * level, or else the callback this fault happened in, gets the error by
 * siglongjmp instead.
 *
 * The handle's error handler is called with nothing held (no lock, no pin,
 * this thread's own cancellation state), so that it may leave with
 * siglongjmp without leaving state behind.
 */
static int fault_serve(void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	struct vmp_fault_error fe = { .addr = addr };
	bool zero = false, counted = false;
	int cancel, ret;

	if (vmp_tls.locked)
		return 0; /* a fault inside the fault path: a bug, crash now */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	for (;;) {
		struct vmp_vma *v = vma_lookup_pin(a);
		vmp_fault_error_fn errfn;
		void *errarg;
		vmp_ram *ram;
		bool overlay;
		int answer;

		if (!v) {
			ret = 0; /* (after an error handler: unmapped since) */
			break;
		}
		ram = v->fh->ram;
		fe.fh = v->fh;
		fe.blk = page_of(v, a);
		fault_lock(ram);
		if (vmp_tls.nserving == MAX_NEST) {
			/* loadblks nested this deep: refuse, not overflow */
			ret = fail(&fe, VMP_FAULT_RECURSION, -ELOOP);
		} else {
			vmp_tls.serving[vmp_tls.nserving++] = v;
			ram->stats.faults += !counted;
			counted = true;
			ret = serve(v, fe.blk, vmp_tls.access, zero, &fe);
			vmp_tls.nserving--;
		}
		errfn = v->fh->errfn;
		errarg = v->fh->errarg;
		overlay = v->fh->flags & VMP_OVERLAY;
		vma_unpin(v);
		if (vmp_tls.room_wait) { /* pin let go: nobody waits for us */
			vmp_tls.room_wait = NULL;
			int err = evict_make_room(ram, &fe);
			if (err < 0)
				ret = err;
		}
		fault_unlock(ram);
		if (ret >= 0 || zero || !errfn)
			break;
		struct entry_state here;
		entry_save(&here);
		entry_leave_for_program();
		pthread_setcancelstate(cancel, NULL);
		answer = errfn(&fe, errarg);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		entry_restore(&here);
		/* an overlay page exists only to be written: no zero page */
		if (answer == VMP_FAULT_ZERO && !overlay)
			zero = true;
		else if (answer != VMP_FAULT_RETRY)
			break;
	}
	pthread_setcancelstate(cancel, NULL);
	if (ret >= 0)
		return ret;
	vmp_tls.last_error = fe;
	/* a guard set at this nesting level abandons its function */
	if (vmp_tls.guard && vmp_tls.guard->depth == vmp_tls.level) {
		vmp_tls.guard->err = ret;
		siglongjmp(vmp_tls.guard->env, 1);
	}
	/* inside a store callback: it fails, the call around it goes on */
	if (vmp_tls.level) {
		vmp_tls.frame->err = ret;
		vmp_tls.frame->what = fe.what;
		vmp_tls.frame->fault_mask = vmp_tls.fault_mask;
		siglongjmp(vmp_tls.frame->env, 1);
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
	case VMP_FAULT_MEMLIMIT: return "memory limit reached with only dirty or loading pages left";
	case VMP_FAULT_MAPLIMIT: return "kernel mapping limit (vm.max_map_count) reached";
	case VMP_FAULT_RECURSION: return "loadblk touched the page it is loading";
	case VMP_FAULT_EVICT: return "dirty pages could not be spilled or written back";
	}
	return "fault failed";
}

/* The default for a fault we cannot serve: one line, then SIGBUS with the
 * address, as the kernel does for a failed read of a file mapping.  Our
 * SIGBUS action passes it on to the one it displaced (on_sigbus). */
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
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	vmp_tls.raising = true;
	syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGBUS, &si);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL); /* delivered here */
	vmp_tls.raising = false;
}

/*
 * Our actions for SIGSEGV and SIGBUS, and the ones they displaced when last
 * installed, to which signals that are not ours go.  A displaced action is
 * published by pointer, each one kept for good: a handler in another
 * thread may be reading an older one.
 */
enum { SEGV, BUS, NSIGNALS };
static const int signal_of[NSIGNALS] = { SIGSEGV, SIGBUS };

struct displaced {
	struct sigaction sa;
	struct displaced *next;
};
static struct displaced *displaced[NSIGNALS]; /* atomic; NULL: default */
static struct displaced *displaced_all;       /* every one; install_lock */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction our_action[NSIGNALS];
static bool have_action; /* atomic: our_action is set */

/* Hand signal @which to the action it would have had without us.  0 if
 * that is the default (the caller lets it kill the process). */
static int chain_displaced(int which, siginfo_t *info, void *uc)
{
	const struct displaced *d =
		__atomic_load_n(&displaced[which], __ATOMIC_ACQUIRE);
	int sig = signal_of[which];
	sigset_t mask;

	if (!d || !info)
		return 0;
	mask = d->sa.sa_mask;
	if (!(d->sa.sa_flags & SA_NODEFER))
		sigaddset(&mask, sig);
	pthread_sigmask(SIG_BLOCK, &mask, NULL); /* sigreturn puts it back */
	if (d->sa.sa_flags & SA_SIGINFO)
		d->sa.sa_sigaction(sig, info, uc);
	else
		d->sa.sa_handler(sig);
	return 1;
}

/* libsigsegv's handler: asks twice (serious 0, then 1) about a fault that
 * we decline; chain the second time only. */
static int on_sigsegv(void *fault_address, int serious)
{
	int ret = fault_serve(fault_address);

	if (ret > 0)
		return 1;
	if (ret == 0) {
		siginfo_t *info = vmp_tls.sig_info;
		void *uc = vmp_tls.sig_uc;
		if (!serious || vmp_tls.locked)
			return 0;
		entry_leave_for_program(); /* its handler may siglongjmp */
		return chain_displaced(SEGV, info, uc);
	}
	entry_leave_for_program(); /* its SIGBUS handler may siglongjmp */
	report_and_raise_sigbus(&vmp_tls.last_error);
	return 1; /* a SIGBUS handler returned: retry, as the kernel would */
}

/* libsigsegv's own SIGSEGV action, which on_signal() calls. */
static void (*libsigsegv_action)(int, siginfo_t *, void *);

/*
 * An entry from a signal: note what the interrupted code had and the
 * fault handlers do not pass on.  The signal mask, which store callbacks
 * run with (our sa_mask, libsigsegv's, blocks SIGINT, SIGALRM, SIGTERM and
 * more while the library keeps its books, not while a store works); the
 * access, from the CPU's page-fault error code where we can read it (x86-64:
 * bit 0 a page was present, bit 1 a write); the siginfo and context, for
 * chaining.
 */
static void entry_from_signal(int sig, siginfo_t *info, void *uc)
{
	unsigned acc = sig == SIGBUS ? ACC_SIGBUS : ACC_SIGSEGV;

#if defined(__x86_64__)
	long err = ((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR];
	acc |= ACC_KNOWN | ((err & 2) ? ACC_WRITE : 0) | ((err & 1) ? ACC_PRESENT : 0);
	/* an instruction fetch (bit 4) or a protection key (bit 5): never a
	 * page state of ours, the program crashes as it would without us */
	if (err & ((1 << 4) | (1 << 5)))
		acc |= ACC_FOREIGN;
#endif
	vmp_tls.fault_mask = mask_word(&((ucontext_t *)uc)->uc_sigmask);
	vmp_tls.cb_mask = vmp_tls.fault_mask & ~FAULT_BITS;
	vmp_tls.cb_swap = true; /* the handler's mask adds sa_mask */
	vmp_tls.access = (uint8_t)acc;
	vmp_tls.sig_info = info;
	vmp_tls.sig_uc = uc;
}

/* Our SIGSEGV action, around libsigsegv's.  errno is restored on return:
 * a loadblk's failing system call must not change it under the program. */
static void on_signal(int sig, siginfo_t *info, void *uc)
{
	int saved_errno = errno;
	struct entry_state outer;

	entry_begin(&outer);
	vmp_tls.raising = false; /* a raise left by siglongjmp is over */
	entry_from_signal(sig, info, uc);
	libsigsegv_action(sig, info, uc);
	entry_restore(&outer);
	errno = saved_errno;
}

/*
 * A SIGBUS in an overlay mapping: its base file was cut short under it, and
 * the kernel has no page for the mapping.  Show what the file store reads
 * there, zeros (and the file's bytes again where it has grown back), for
 * the clean pages from there on.  True if served (see vma_overlay_sigbus).
 */
static bool serve_overlay_sigbus(void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	struct vmp_vma *v;
	vmp_ram *ram;
	int ret = 0;

	if (vmp_tls.locked || !(v = vma_lookup_pin(a)))
		return false;
	ram = v->fh->ram;
	fault_lock(ram);
	if (v->fh->flags & VMP_OVERLAY) /* (const: could be read unlocked) */
		ret = vma_overlay_sigbus(v, a);
	vma_unpin(v);
	fault_unlock(ram);
	return ret > 0;
}

/*
 * Our SIGBUS action: faults of userfaultfd mappings, overlay pages past
 * their file's end; else the SIGBUS goes where it would have gone without
 * us (report_and_raise_sigbus's too: the program's SIGBUS handler, or
 * death).  Installed SA_NODEFER, as the SIGSEGV one: a loadblk may fault on
 * another userfaultfd mapping.
 */
static void on_sigbus(int sig, siginfo_t *info, void *uc)
{
	int saved_errno = errno;
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	bool raised = vmp_tls.raising; /* ours, from report_and_raise_sigbus */
	struct entry_state outer;
	int ret = 0;

	vmp_tls.raising = false;
	if (!raised && info->si_code == BUS_ADRERR) {
		entry_begin(&outer);
		entry_from_signal(sig, info, uc);
		ret = serve_overlay_sigbus(info->si_addr) ? 1 :
							     fault_serve(info->si_addr);
		if (ret < 0) {
			entry_leave_for_program(); /* its handler may siglongjmp */
			report_and_raise_sigbus(&vmp_tls.last_error);
			ret = 1; /* a SIGBUS handler returned: retry */
		}
		entry_restore(&outer);
	}
	if (!ret && (vmp_tls.locked || !chain_displaced(BUS, info, uc))) {
		/* the default: die of this very signal */
		sigaction(SIGBUS, &dfl, NULL);
		syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGBUS, info);
	}
	errno = saved_errno;
}

/*
 * Installing.  libsigsegv installs its action without SA_NODEFER, so we
 * install through libsigsegv only once, then put our completed actions in
 * place with one sigaction each time: a fault taken in between would run
 * with SIGSEGV blocked, and a nested fault in its loadblk would kill the
 * process.
 */
/* Our handler function, maybe put back by something that saved it with
 * signal() and lost its flags on the way (cmocka does, around each test). */
static bool is_our_function(int which, const struct sigaction *sa)
{
	return sa->sa_sigaction == our_action[which].sa_sigaction;
}

static bool is_ours(int which, const struct sigaction *sa)
{
	const int flags = SA_SIGINFO | SA_NODEFER;

	return is_our_function(which, sa) &&
	       (sa->sa_flags & flags) == (our_action[which].sa_flags & flags);
}

/* Remember @sa as the action ours displaces.  install_lock held. */
static void set_displaced(int which, const struct sigaction *sa)
{
	struct displaced *d = __atomic_load_n(&displaced[which], __ATOMIC_RELAXED);

	if (sa->sa_handler == SIG_DFL || sa->sa_handler == SIG_IGN ||
	    ((sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == libsigsegv_action)) {
		d = NULL; /* the default (a fault kills), or libsigsegv's own:
			     its handler is ours now */
	} else if (!d || d->sa.sa_handler != sa->sa_handler) {
		/* (a new one per handler, not per flags and mask: a test
		 * framework re-installs the same handler for every test) */
		d = malloc(sizeof(*d));
		if (!d)
			return; /* keep the one we had */
		d->sa = *sa;
		d->next = displaced_all;
		displaced_all = d;
	}
	__atomic_store_n(&displaced[which], d, __ATOMIC_RELEASE);
}

/* The first install, through libsigsegv, to learn its action; the one
 * before is put back for install_one() to displace.  install_lock held. */
static int first_install(void)
{
	struct sigaction sa, before;

	memset(&before, 0, sizeof(before)); /* the kernel fills 8 mask bytes */
	memset(&sa, 0, sizeof(sa));
	if (sigaction(SIGSEGV, NULL, &before) != 0 ||
	    sigsegv_install_handler(on_sigsegv) < 0 ||
	    sigaction(SIGSEGV, NULL, &sa) != 0 || !(sa.sa_flags & SA_SIGINFO) ||
	    sigaction(SIGSEGV, &before, NULL) != 0)
		return -ENOSYS;
	libsigsegv_action = sa.sa_sigaction;
	sa.sa_sigaction = on_signal;
	/* SA_NODEFER: a loadblk may fault on other mappings (see fault_lock) */
	sa.sa_flags |= SA_NODEFER;
	our_action[SEGV] = sa;
	sa.sa_sigaction = on_sigbus;
	our_action[BUS] = sa;
	__atomic_store_n(&have_action, true, __ATOMIC_RELEASE);
	return 0;
}

/* Put ours in place of signal @which's action, unless @keep_foreign and a
 * handler not ours is there.  install_lock held. */
static int install_one(int which, bool keep_foreign)
{
	struct sigaction cur;

	memset(&cur, 0, sizeof(cur)); /* the kernel fills 8 mask bytes */
	if (sigaction(signal_of[which], NULL, &cur) != 0)
		return -ENOSYS;
	if (is_ours(which, &cur))
		return 0;
	if (!is_our_function(which, &cur)) {
		/* A handler installed after ours belongs to a program that
		 * chains to vmp_handle_fault() (or will re-arm us): leave it in
		 * place. */
		if (keep_foreign && cur.sa_handler != SIG_DFL)
			return 0;
		set_displaced(which, &cur);
	} /* else ours, damaged: mend it, displacing nothing */
	return sigaction(signal_of[which], &our_action[which], NULL) ? -ENOSYS : 0;
}

static int install(bool keep_foreign)
{
	int ret = 0;

	load_init();
	pthread_mutex_lock(&install_lock);
	if (!__atomic_load_n(&have_action, __ATOMIC_RELAXED)) {
		keep_foreign = false; /* the first time, ours displace all */
		ret = first_install();
	}
	for (int i = 0; i < NSIGNALS && !ret; i++)
		ret = install_one(i, keep_foreign);
	pthread_mutex_unlock(&install_lock);
	return ret;
}

/* fork(): a thread of the parent may be installing; the child has one
 * thread, which holds install_lock (prepare took it) and lets go of it. */
void fault_fork_prepare(void)
{
	pthread_mutex_lock(&install_lock);
}

void fault_fork_parent(void)
{
	pthread_mutex_unlock(&install_lock);
}

void fault_fork_child(void)
{
	pthread_mutex_unlock(&install_lock);
}

VMP_EXPORT int vmp_fault_handler_install(void)
{
	return install(false);
}

void fault_handler_arm(void)
{
	(void)install(true);
}

VMP_EXPORT int vmp_handle_fault(void *addr)
{
	int saved_errno = errno;
	struct entry_state outer;
	sigset_t cur;
	int ret;

	entry_begin(&outer);
	/* called from another SIGSEGV handler: SIGSEGV is likely blocked */
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	vmp_tls.fault_mask = mask_word(&cur);
	vmp_tls.cb_mask = mask_word(&cur) & ~FAULT_BITS;
	vmp_tls.cb_swap = mask_word(&cur) != vmp_tls.cb_mask;
	vmp_tls.access = 0; /* nothing known, not even the signal */
	vmp_tls.sig_info = NULL; /* the caller chains, not us */
	vmp_tls.sig_uc = NULL;
	ret = fault_serve(addr);
	entry_restore(&outer);
	errno = saved_errno;
	return ret;
}

VMP_EXPORT int vmp_guard(int (*fn)(void *arg), void *arg)
{
	struct guard g;
	int ret;

	if (!fn)
		return -EINVAL;
	g.prev = vmp_tls.guard;
	g.depth = vmp_tls.level;
	entry_save(&g.entry);
	g.err = 0;
	if (sigsetjmp(g.env, 1)) {
		vmp_tls.guard = g.prev;
		entry_restore(&g.entry);
		return g.err;
	}
	vmp_tls.guard = &g;
	ret = fn(arg);
	vmp_tls.guard = g.prev;
	return ret;
}

/* --- prefault --- */

static bool prefault_done(const struct vmp_vma *v, const struct vmp_page *p,
			  int write)
{
	if (v->fh->flags & VMP_OVERLAY)
		return !write || (p && p->state == PAGE_DIRTY && !(p->flags & PAGE_WP));
	if (!p || p->state == PAGE_LOADING || (p->flags & PAGE_SPILLED))
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

	/* as a fault on a page not mapped here, from the right signal */
	unsigned acc = ACC_KNOWN | (write ? ACC_WRITE : 0) |
		       (fh->mech->lazy ? ACC_SIGBUS : ACC_SIGSEGV);
	struct vmp_page *p;

	for (; idx <= last && ret >= 0; idx++) {
		fe.addr = vma_page_addr(v, idx);
		while (!prefault_done(v, (p = pagemap_get(&fh->pagemap, idx)),
				      write)) {
			ret = serve(v, idx, acc, false, &fe);
			if (ret <= 0) {
				ret = ret ? ret : -EFAULT;
				break;
			}
			if (vmp_tls.room_wait) { /* (pinned: see vmp_prefault) */
				vmp_tls.room_wait = NULL;
				if ((ret = evict_make_room(fh->ram, &fe)) < 0)
					break;
			}
		}
		/* with userfaultfd a resident page may lack its entry here
		 * (a system call would get EFAULT): map each OS page now */
		for (size_t off = 0; ret >= 0 && fh->mech->lazy && p &&
				     off < fh_pagesize(fh);
		     off += os_page_size)
			if ((ret = uffd_map_page(v, (uintptr_t)fe.addr + off,
						 vma_class(v, p))) > 0)
				ret = 0;
	}
	return ret < 0 ? ret : 0;
}

VMP_EXPORT int vmp_prefault(const void *addr, size_t len, int write)
{
	uintptr_t a = (uintptr_t)addr;
	struct entry_state outer;
	struct api_state saved;
	struct vmp_vma *v;
	vmp_ram *ram;
	int ret;

	if (!addr || !len || a + len < a)
		return -EINVAL;
	api_enter(&saved);
	v = vma_lookup_pin(a);
	if (!v) {
		api_leave(&saved);
		return -EINVAL;
	}
	ram = v->fh->ram;
	fault_lock(ram);
	if (a + len > v->end || (write && !(v->prot & PROT_WRITE))) {
		ret = -EINVAL;
	} else if (vmp_tls.nserving == MAX_NEST) {
		ret = -ELOOP;
	} else {
		/* loadblk gets the caller's mask, SIGSEGV unblocked */
		entry_save(&outer);
		vmp_tls.cb_mask = mask_word(&saved.mask) & ~FAULT_BITS;
		vmp_tls.cb_swap = true;
		vmp_tls.serving[vmp_tls.nserving++] = v;
		ret = prefault_range(v, a, len, write);
		vmp_tls.nserving--;
		entry_restore(&outer);
	}
	vma_unpin(v);
	fault_unlock(ram);
	api_leave(&saved);
	return ret;
}
