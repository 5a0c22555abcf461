/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fault.c: the fault path.  libsigsegv calls on_sigsegv() with the fault
 * address; we find the vma, then the page, and either load it, map it back
 * (it was inactive), or make it dirty (a fault on a readable page is a
 * write, see is_write()).
 *
 * Loading is load.c's.  Other threads faulting on a LOADING page wait on a
 * condition variable.  Also here: fault errors (the default SIGBUS, the
 * handle's error handler, vmp_guard) and vmp_prefault.
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

#include "fault.h"

struct guard {
	sigjmp_buf env;
	int err;
	unsigned depth; /* vmp_tls.nloading when the guard was set */
	bool segv_masked; /* vmp_tls.segv_masked then */
	struct guard *prev;
};

__thread struct fault_tls vmp_tls __attribute__((tls_model("initial-exec")));

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
		ret = ram_charge(fh->ram, 0, cost, &what);
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
	case PAGE_LOADING:
		return load_fault_loading(p, fe);
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
	if (vmp_tls.locked)
		return 0; /* a fault inside the fault path: a bug, crash now
			     (the pin stays: we may hold this very lock) */
	fault_lock(ram);
	if (vmp_tls.nserving == MAX_NEST) {
		/* loadblks nested this deep: refuse rather than overflow */
		ret = fail(&fe, VMP_FAULT_RECURSION, -ELOOP);
		goto out;
	}
	vmp_tls.serving[vmp_tls.nserving++] = v;
	ram->stats.faults++;
	for (;;) {
		ret = serve(v, fe.blk, false, zero, &fe);
		if (ret >= 0 || zero)
			break;
		int answer = ask_error_handler(v->fh, &fe);
		/* an overlay page exists only to be written: no zero page */
		if (answer == VMP_FAULT_ZERO && !(v->fh->flags & VMP_OVERLAY))
			zero = true;
		else if (answer != VMP_FAULT_RETRY)
			break;
	}
	vmp_tls.nserving--;
out:
	vma_unpin(v);
	fault_unlock(ram);
	if (ret >= 0)
		return ret;
	vmp_tls.last_error = fe;
	/* a guard set at this loadblk nesting level abandons its function */
	if (vmp_tls.guard && vmp_tls.guard->depth == vmp_tls.nloading) {
		vmp_tls.guard->err = ret;
		siglongjmp(vmp_tls.guard->env, 1);
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

/* ThreadSanitizer runs signal handlers with every signal blocked, whatever
 * SA_NODEFER says: a loadblk must then have SIGSEGV unblocked explicitly. */
#if defined(__SANITIZE_THREAD__)
#define SEGV_BLOCKED_IN_HANDLER true
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SEGV_BLOCKED_IN_HANDLER true
#endif
#endif
#ifndef SEGV_BLOCKED_IN_HANDLER
#define SEGV_BLOCKED_IN_HANDLER false
#endif

static int on_sigsegv(void *fault_address, int serious)
{
	bool masked = vmp_tls.segv_masked;
	int ret;

	vmp_tls.segv_masked = masked || SEGV_BLOCKED_IN_HANDLER;
	ret = fault_serve(fault_address);
	vmp_tls.segv_masked = masked;

	if (ret >= 0)
		return ret;
	report_and_raise_sigbus(&vmp_tls.last_error);
	return 1; /* a SIGBUS handler returned: retry, as the kernel would */
}

/*
 * Our SIGSEGV action: libsigsegv's handler, made SA_NODEFER.  libsigsegv
 * installs it without SA_NODEFER, so we install it through libsigsegv only
 * once, and from then on put the completed action back in one sigaction:
 * a fault taken in between would run with SIGSEGV blocked, and a nested
 * fault in its loadblk would kill the process.
 */
static struct sigaction our_action;
static bool have_action; /* atomic: our_action is set */
static int first_install_error;
static pthread_once_t first_install_once = PTHREAD_ONCE_INIT;

static void first_install(void)
{
	struct sigaction sa;

	if (sigsegv_install_handler(on_sigsegv) < 0 ||
	    sigaction(SIGSEGV, NULL, &sa) != 0) {
		first_install_error = -ENOSYS;
		return;
	}
	/* SA_NODEFER: a loadblk may fault on other mappings (see fault_lock) */
	sa.sa_flags |= SA_NODEFER;
	if (sigaction(SIGSEGV, &sa, NULL) != 0) {
		first_install_error = -ENOSYS;
		return;
	}
	our_action = sa;
	__atomic_store_n(&have_action, true, __ATOMIC_RELEASE);
}

static bool is_ours(const struct sigaction *sa)
{
	return sa->sa_sigaction == our_action.sa_sigaction &&
	       (sa->sa_flags & SA_NODEFER);
}

VMP_EXPORT int vmp_fault_handler_install(void)
{
	struct sigaction cur;

	load_init();
	pthread_once(&first_install_once, first_install);
	if (first_install_error)
		return first_install_error;
	if (sigaction(SIGSEGV, NULL, &cur) == 0 && is_ours(&cur))
		return 0; /* in place already */
	return sigaction(SIGSEGV, &our_action, NULL) == 0 ? 0 : -ENOSYS;
}

void fault_handler_arm(void)
{
	struct sigaction sa;

	/* A handler installed after ours belongs to a program that chains to
	 * vmp_handle_fault() (or will re-arm us): leave it in place. */
	if (__atomic_load_n(&have_action, __ATOMIC_ACQUIRE) &&
	    sigaction(SIGSEGV, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL &&
	    !is_ours(&sa))
		return;
	(void)vmp_fault_handler_install();
}

VMP_EXPORT int vmp_handle_fault(void *addr)
{
	bool masked = vmp_tls.segv_masked;
	sigset_t cur;
	int ret;

	/* called from another SIGSEGV handler: SIGSEGV is likely blocked */
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	vmp_tls.segv_masked = sigismember(&cur, SIGSEGV);
	ret = fault_serve(addr);
	vmp_tls.segv_masked = masked;
	return ret;
}

VMP_EXPORT int vmp_guard(int (*fn)(void *arg), void *arg)
{
	struct guard g;
	int ret;

	if (!fn)
		return -EINVAL;
	g.prev = vmp_tls.guard;
	g.depth = vmp_tls.nloading;
	g.segv_masked = vmp_tls.segv_masked;
	g.err = 0;
	if (sigsetjmp(g.env, 1)) {
		vmp_tls.guard = g.prev;
		vmp_tls.segv_masked = g.segv_masked;
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
	else if (vmp_tls.nserving == MAX_NEST)
		ret = -ELOOP;
	else {
		bool masked = vmp_tls.segv_masked;
		vmp_tls.segv_masked = true;
		vmp_tls.serving[vmp_tls.nserving++] = v;
		ret = prefault_range(v, a, len, write);
		vmp_tls.nserving--;
		vmp_tls.segv_masked = masked;
	}
	vma_unpin(v);
	fault_unlock(ram);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	return ret;
}
