/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-robust.c: what a hostile program does to the library (issue 12).
 *
 *  - thread cancellation while a fault waits, inside loadblk, inside
 *    storeblk and while vmp_munmap waits: nothing is left behind;
 *  - vmp_guard around a commit whose storeblk faults: the writeout fails
 *    cleanly (writeout_abort, handle not busy), with or without a guard;
 *  - a fault that fails inside a loadblk fails that load, so that the
 *    program's own SIGBUS handler may siglongjmp away at the outer level;
 *    siglongjmp out of the fault error handler leaves nothing pinned;
 *  - store callbacks run with the thread's own signal mask, and errno of
 *    the interrupted code survives a fault;
 *  - a SIGSEGV or SIGBUS handler the program had before is chained to;
 *  - an overlay mapping whose file is cut short reads zeros past its end;
 *  - a fault waits for other threads' loads rather than fail for the
 *    memory limit;
 *  - nested loads on a 64 KiB thread stack; load buffers bounded and
 *    counted (vmp_stats.buffer_bytes).
 *
 * Each scenario runs in a forked child (helpers.c run_child): a hang ends
 * with its 10 s alarm, a crash with a signal, and both fail the test.
 */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* --- a store whose every callback the test can steer ------------------- */

struct tstore {
	size_t bs;
	vmp_store *store;
	int64_t hold_blk;    /* loadblk of it (or any storeblk, if
				hold_store) posts entered, then waits for go */
	bool hold_store;
	bool hold_sleeping;  /* wait in nanosleep (a cancellation point) */
	sem_t entered, go;
	int go_flag;         /* atomic, for hold_sleeping */
	int64_t fail_blk;    /* loadblk of it fails with -EIO */
	const char *read_in_store; /* storeblk reads this byte first */
	const char *read_in_load;  /* loadblk reads this byte first */
	int64_t chain_base;  /* loadblk(b > 0) reads page b - 1 at this
				(uintptr_t) address, if set */
	sigset_t load_mask;  /* the mask the last loadblk ran with */
	sigset_t store_mask; /* and the last storeblk */
	uint64_t loads, stores, begins, commits, aborts; /* atomic */
};

static void hold(struct tstore *t)
{
	sem_post(&t->entered);
	if (!t->hold_sleeping) {
		while (sem_wait(&t->go) && errno == EINTR)
			;
		return;
	}
	while (!__atomic_load_n(&t->go_flag, __ATOMIC_ACQUIRE)) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL); /* a cancellation point */
	}
}

static int t_loadblk(void *ctx, uint64_t blk, void *buf)
{
	struct tstore *t = ctx;

	__atomic_add_fetch(&t->loads, 1, __ATOMIC_RELAXED);
	pthread_sigmask(SIG_BLOCK, NULL, &t->load_mask);
	if (t->read_in_load)
		(void)peek(t->read_in_load);
	if (t->chain_base && blk > 0)
		(void)peek((const char *)(uintptr_t)t->chain_base +
			   (blk - 1) * t->bs);
	if ((int64_t)blk == t->fail_blk)
		return -EIO;
	gen_fill(buf, t->bs, blk, 0);
	if ((int64_t)blk == t->hold_blk && !t->hold_store)
		hold(t);
	return 0;
}

static int t_storeblk(void *ctx, uint64_t blk, const void *buf)
{
	struct tstore *t = ctx;

	(void)blk;
	(void)buf;
	pthread_sigmask(SIG_BLOCK, NULL, &t->store_mask);
	if (t->read_in_store)
		(void)peek(t->read_in_store);
	if (t->hold_store)
		hold(t);
	__atomic_add_fetch(&t->stores, 1, __ATOMIC_RELAXED);
	return 0;
}

static int t_begin(void *ctx)
{
	__atomic_add_fetch(&((struct tstore *)ctx)->begins, 1, __ATOMIC_RELAXED);
	return 0;
}

static int t_commit(void *ctx)
{
	__atomic_add_fetch(&((struct tstore *)ctx)->commits, 1, __ATOMIC_RELAXED);
	return 0;
}

static void t_abort(void *ctx)
{
	__atomic_add_fetch(&((struct tstore *)ctx)->aborts, 1, __ATOMIC_RELAXED);
}

static const vmp_store_ops t_ops = {
	.loadblk = t_loadblk,
	.storeblk = t_storeblk,
	.writeout_begin = t_begin,
	.writeout_commit = t_commit,
	.writeout_abort = t_abort,
};

static void tstore_init(struct tstore *t, size_t bs)
{
	memset(t, 0, sizeof(*t));
	t->bs = bs;
	t->hold_blk = -1;
	t->fail_blk = -1;
	sem_init(&t->entered, 0, 0);
	sem_init(&t->go, 0, 0);
	child_check_rc(vmp_store_new(&t->store, &t_ops, t, bs), 0);
}

static void release_hold(struct tstore *t)
{
	__atomic_store_n(&t->go_flag, 1, __ATOMIC_RELEASE);
	sem_post(&t->go);
}

/* Wait up to 5 s for the held callback to be entered. */
static void wait_entered(struct tstore *t)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	while (sem_timedwait(&t->entered, &ts))
		child_check(errno == EINTR);
}

static void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts))
		;
}

/* A handle on @t in @ram, a mapping of @npages pages. */
static char *open_map(vmp_ram *ram, struct tstore *t, unsigned flags,
		      uint64_t npages, vmp_fileh **fhp)
{
	void *p;

	child_check_rc(vmp_fileh_open(fhp, ram, t->store, flags), 0);
	child_check_rc(vmp_mmap(*fhp, 0, npages, PROT_READ | PROT_WRITE, &p), 0);
	return p;
}

static void check_page(const char *p, size_t bs, uint64_t blk)
{
	child_check(gen_check(p, bs, blk, 0) == 0);
}

/* In a child: unmap @p, close @fh, free @store and @ram, all succeeding. */
static void close_all(void *p, vmp_fileh *fh, vmp_store *store, vmp_ram *ram)
{
	child_check_rc(vmp_munmap(p), 0);
	child_check_rc(vmp_fileh_close(fh), 0);
	child_check_rc(vmp_store_free(store), 0);
	child_check_rc(vmp_ram_free(ram), 0);
}

/* A test that runs @fn(@arg) in a child, which must exit 0. */
#define CHILD_TEST(name, fn, arg)                                              \
	static void name(void **state)                                         \
	{                                                                      \
		struct child_result r;                                         \
		(void)state;                                                   \
		run_child(fn, arg, &r);                                        \
		assert_child_exited_ok(&r);                                    \
	}

/* A thread that touches a page and then reaches a cancellation point. */
struct toucher {
	pthread_t th;
	const char *page;
	bool prefault;  /* load page with vmp_prefault, not by touching it */
	void *mapping;  /* or: vmp_munmap this */
	vmp_fileh *fh;  /* or: vmp_writeout this */
	int rc;
	int done;       /* atomic: the library call returned */
};

static void *toucher_main(void *arg)
{
	struct toucher *w = arg;

	if (w->page && w->prefault)
		w->rc = vmp_prefault(w->page, 1, 0);
	else if (w->page)
		(void)peek(w->page);
	else if (w->mapping)
		w->rc = vmp_munmap(w->mapping);
	else
		w->rc = vmp_writeout(w->fh, VMP_WRITEOUT_STORE |
						    VMP_WRITEOUT_MARKSTORED);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	for (;;)
		pthread_testcancel();
	return NULL;
}

static void toucher_start(struct toucher *w)
{
	child_check(pthread_create(&w->th, NULL, toucher_main, w) == 0);
}

/* Join a cancelled toucher: its library call must have finished. */
static void toucher_join_cancelled(struct toucher *w)
{
	void *ret;

	child_check(pthread_join(w->th, &ret) == 0);
	child_check(ret == PTHREAD_CANCELED);
	child_check(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE));
}

/* --- 1. thread cancellation -------------------------------------------- */

/* A thread cancelled while its fault waits for another thread's load. */
static void child_cancel_waiting_fault(void *arg)
{
	size_t ps = os_page();
	struct tstore t;
	struct toucher a = { 0 }, b = { 0 };
	struct vmp_stats st;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	tstore_init(&t, ps);
	t.hold_blk = 0;
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &t, VMP_NO_READAHEAD, 4, &fh);
	a.page = b.page = p;
	toucher_start(&a);
	wait_entered(&t);
	toucher_start(&b);
	do { /* b's fault is counted before it waits */
		msleep(1);
		child_check_rc(vmp_ram_stats(ram, &st), 0);
	} while (st.faults < 2);
	msleep(20);
	child_check(pthread_cancel(b.th) == 0);
	msleep(20);
	release_hold(&t);
	toucher_join_cancelled(&b);
	child_check(pthread_cancel(a.th) == 0);
	toucher_join_cancelled(&a);
	/* the RAM is usable: no lock left held, page 0 loaded once */
	check_page(p, ps, 0);
	check_page(p + ps, ps, 1);
	child_check(__atomic_load_n(&t.loads, __ATOMIC_RELAXED) == 2);
	close_all(p, fh, t.store, ram);
}

/* A thread cancelled inside loadblk, at a cancellation point there. */
static void child_cancel_in_loadblk(void *arg)
{
	size_t ps = os_page();
	struct tstore t;
	struct toucher a = { 0 };
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	tstore_init(&t, ps);
	t.hold_blk = 2;
	t.hold_sleeping = true;
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &t, VMP_NO_READAHEAD, 4, &fh);
	a.page = p + 2 * ps;
	toucher_start(&a);
	wait_entered(&t);
	child_check(pthread_cancel(a.th) == 0);
	msleep(20);
	release_hold(&t);
	toucher_join_cancelled(&a);
	/* the page was installed, not left LOADING */
	check_page(p + 2 * ps, ps, 2);
	child_check(__atomic_load_n(&t.loads, __ATOMIC_RELAXED) == 1);
	close_all(p, fh, t.store, ram);
}

/* A thread cancelled inside storeblk, during vmp_writeout. */
static void child_cancel_in_storeblk(void *arg)
{
	size_t ps = os_page();
	struct tstore t;
	struct toucher a = { 0 };
	uint64_t ndirty;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	tstore_init(&t, ps);
	t.hold_store = true;
	t.hold_sleeping = true;
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &t, 0, 4, &fh);
	poke(p, 1);
	poke(p + 3 * ps, 2);
	a.fh = fh;
	toucher_start(&a);
	wait_entered(&t);
	child_check(pthread_cancel(a.th) == 0);
	msleep(20);
	release_hold(&t);
	toucher_join_cancelled(&a);
	child_check_rc(a.rc, 0);
	child_check(t.begins == 1 && t.stores == 2 && t.commits == 1 &&
		    t.aborts == 0);
	child_check_rc(vmp_fileh_dirty_count(fh, &ndirty), 0);
	child_check(ndirty == 0);
	child_check_rc(vmp_discard(fh), 0); /* no writeout left busy */
	close_all(p, fh, t.store, ram);
}

/* A thread cancelled while vmp_munmap waits for a fault in flight. */
static void child_cancel_munmap(void *arg)
{
	size_t ps = os_page();
	struct tstore t;
	struct toucher a = { 0 }, b = { 0 };
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p, *q;

	(void)arg;
	tstore_init(&t, ps);
	t.hold_blk = 1;
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &t, VMP_NO_READAHEAD, 4, &fh);
	/* (a touch would retry its access after the unmap: a crash) */
	a.page = p + ps;
	a.prefault = true;
	toucher_start(&a);
	wait_entered(&t);
	b.mapping = p;
	toucher_start(&b);
	msleep(30); /* b waits for a's fault to leave the mapping */
	child_check(!__atomic_load_n(&b.done, __ATOMIC_ACQUIRE));
	child_check(pthread_cancel(b.th) == 0);
	msleep(20);
	release_hold(&t);
	toucher_join_cancelled(&b);
	child_check_rc(b.rc, 0);
	child_check(pthread_cancel(a.th) == 0);
	toucher_join_cancelled(&a);
	child_check_rc(a.rc, 0);
	child_check_rc(vmp_munmap(p), -EINVAL); /* gone already */
	/* the handle and its RAM work on */
	child_check_rc(vmp_mmap(fh, 0, 4, PROT_READ, (void **)&q), 0);
	check_page(q + ps, ps, 1);
	check_page(q + 3 * ps, ps, 3);
	close_all(q, fh, t.store, ram);
}

CHILD_TEST(test_cancel_waiting_fault, child_cancel_waiting_fault, NULL)

CHILD_TEST(test_cancel_in_loadblk, child_cancel_in_loadblk, NULL)

CHILD_TEST(test_cancel_in_storeblk, child_cancel_in_storeblk, NULL)

CHILD_TEST(test_cancel_munmap, child_cancel_munmap, NULL)

/* --- 3, 8. faults that fail inside store callbacks ---------------------- */

struct commit_arg {
	vmp_fileh *fh;
};

static int commit_fn(void *arg)
{
	struct commit_arg *c = arg;

	return vmp_writeout(c->fh, VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED);
}

/* A storeblk reads a page that cannot be loaded: the writeout fails with
 * that error, aborts, and leaves the handle ready for another writeout;
 * under vmp_guard or not. */
static void child_guard_commit(void *arg)
{
	bool guarded = arg != NULL;
	size_t ps = os_page();
	struct tstore t, bad;
	struct commit_arg c;
	sigset_t before, after;
	uint64_t ndirty;
	vmp_ram *ram;
	vmp_fileh *fh, *badfh;
	char *p, *q;
	int rc;

	tstore_init(&t, ps);
	tstore_init(&bad, ps);
	bad.fail_blk = 0;
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &t, 0, 4, &fh);
	q = open_map(ram, &bad, 0, 1, &badfh);
	poke(p, 7);
	poke(p + 2 * ps, 8);
	t.read_in_store = q;
	c.fh = fh;
	pthread_sigmask(SIG_BLOCK, NULL, &before);
	rc = guarded ? vmp_guard(commit_fn, &c) : commit_fn(&c);
	child_check_rc(rc, -EIO);
	/* the signal mask is the caller's again */
	pthread_sigmask(SIG_BLOCK, NULL, &after);
	for (int sig = 1; sig < 32; sig++)
		child_check(sigismember(&before, sig) == sigismember(&after, sig));
	child_check(t.begins == 1 && t.aborts == 1 && t.commits == 0);
	child_check_rc(vmp_fileh_dirty_count(fh, &ndirty), 0);
	child_check(ndirty == 2);
	child_check(peek(p) == 7 && peek(p + 2 * ps) == 8);
	/* not busy: a second writeout, with a store that works, goes through */
	t.read_in_store = NULL;
	child_check_rc(guarded ? vmp_guard(commit_fn, &c) : commit_fn(&c), 0);
	child_check(t.begins == 2 && t.commits == 1 && t.stores == 2);
	child_check_rc(vmp_fileh_dirty_count(fh, &ndirty), 0);
	child_check(ndirty == 0);
	child_check_rc(vmp_munmap(q), 0);
	child_check_rc(vmp_munmap(p), 0);
	child_check_rc(vmp_fileh_close(badfh), 0);
	child_check_rc(vmp_fileh_close(fh), 0);
	child_check_rc(vmp_store_free(bad.store), 0);
	child_check_rc(vmp_store_free(t.store), 0);
	child_check_rc(vmp_ram_free(ram), 0);
}

static void test_guard_around_commit(void **state)
{
	struct child_result r;

	(void)state;
	run_child(child_guard_commit, (void *)1, &r);
	assert_child_exited_ok(&r);
	run_child(child_guard_commit, NULL, &r);
	assert_child_exited_ok(&r);
}

static sigjmp_buf escape;

static void escape_on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(escape, 1);
}

/* A loadblk reads a page whose load fails.  The outer load fails with its
 * error; the program's SIGBUS handler leaves with siglongjmp; the page it
 * faulted on is not left LOADING: touching it again loads it. */
static void child_nested_failure(void *arg)
{
	size_t ps = os_page();
	struct tstore outer, inner;
	struct sigaction sa = { .sa_handler = escape_on_sigbus };
	struct vmp_stats st;
	vmp_ram *ram;
	vmp_fileh *ofh, *ifh;
	char *p, *q;
	uint8_t v;

	(void)arg;
	tstore_init(&outer, ps);
	tstore_init(&inner, ps);
	inner.fail_blk = 0;
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &outer, VMP_NO_READAHEAD, 2, &ofh);
	q = open_map(ram, &inner, VMP_NO_READAHEAD, 1, &ifh);
	outer.read_in_load = q;

	/* under a guard: the inner error, the page left clean */
	child_check_rc(guarded_peek(p, &v), -EIO);
	/* without: SIGBUS at the outer page, then siglongjmp out of it */
	sigemptyset(&sa.sa_mask);
	child_check(sigaction(SIGBUS, &sa, NULL) == 0);
	/* the library's in front, passing on the SIGBUS it does not serve */
	child_check_rc(vmp_fault_handler_install(), 0);
	if (sigsetjmp(escape, 1) == 0) {
		(void)peek(p + ps);
		child_fail(__FILE__, __LINE__, "no SIGBUS");
	}
	/* now the inner store works: both pages load */
	inner.fail_blk = -1;
	check_page(p, ps, 0);
	check_page(p + ps, ps, 1);
	child_check_rc(vmp_ram_stats(ram, &st), 0);
	child_check(st.load_errors == 4); /* inner, outer, twice */
	child_check_rc(vmp_munmap(q), 0);
	child_check_rc(vmp_munmap(p), 0);
	child_check_rc(vmp_fileh_close(ifh), 0);
	child_check_rc(vmp_fileh_close(ofh), 0);
	child_check_rc(vmp_store_free(inner.store), 0);
	child_check_rc(vmp_store_free(outer.store), 0);
	child_check_rc(vmp_ram_free(ram), 0);
}

CHILD_TEST(test_nested_failure_fails_the_load, child_nested_failure, NULL)

static int escape_from_error_handler(const struct vmp_fault_error *e, void *arg)
{
	(void)e;
	(void)arg;
	siglongjmp(escape, 1);
}

static void *munmap_main(void *arg)
{
	return (void *)(intptr_t)vmp_munmap(arg);
}

/* siglongjmp out of the error handler leaves the mapping unpinned: it can
 * be unmapped, from this thread and from another. */
static void child_error_handler_escape(void *arg)
{
	size_t ps = os_page();
	struct tstore t;
	vmp_ram *ram;
	vmp_fileh *fh;
	pthread_t th;
	void *ret;
	char *p, *q;

	(void)arg;
	tstore_init(&t, ps);
	t.fail_blk = 1;
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &t, VMP_NO_READAHEAD, 2, &fh);
	child_check_rc(vmp_mmap(fh, 0, 2, PROT_READ, (void **)&q), 0);
	child_check_rc(vmp_set_fault_error_handler(fh, escape_from_error_handler,
						   NULL), 0);
	if (sigsetjmp(escape, 1) == 0) {
		(void)peek(p + ps);
		child_fail(__FILE__, __LINE__, "error handler not called");
	}
	if (sigsetjmp(escape, 1) == 0) {
		(void)peek(q + ps);
		child_fail(__FILE__, __LINE__, "error handler not called");
	}
	child_check_rc(vmp_munmap(p), 0);
	child_check(pthread_create(&th, NULL, munmap_main, q) == 0);
	child_check(pthread_join(th, &ret) == 0);
	child_check((intptr_t)ret == 0);
	child_check_rc(vmp_fileh_close(fh), 0);
	child_check_rc(vmp_store_free(t.store), 0);
	child_check_rc(vmp_ram_free(ram), 0);
}

CHILD_TEST(test_error_handler_escape, child_error_handler_escape, NULL)

/* --- 4, 5. the signal mask and errno of the interrupted code ------------ */

static volatile int usr1_seen; /* written by a signal handler */

static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen++;
}

static const int async_signals[] = { SIGINT,  SIGTERM, SIGALRM, SIGCHLD,
				     SIGUSR2, SIGPROF, SIGHUP,  SIGQUIT };

static void check_load_mask(const struct tstore *t, bool usr1_blocked)
{
	for (size_t i = 0; i < ARRAY_LEN(async_signals); i++)
		child_check(!sigismember(&t->load_mask, async_signals[i]));
	child_check(!sigismember(&t->load_mask, SIGSEGV));
	child_check(sigismember(&t->load_mask, SIGUSR1) == usr1_blocked);
}

static void child_signal_mask(void *arg)
{
	size_t ps = os_page();
	struct tstore t;
	sigset_t usr1;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	tstore_init(&t, ps);
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &t, VMP_NO_READAHEAD, 4, &fh);
	(void)peek(p); /* from a fault */
	check_load_mask(&t, false);
	child_check_rc(vmp_prefault(p + ps, ps, 0), 0);
	check_load_mask(&t, false);
	/* a signal the thread blocks stays blocked in its loads */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	(void)peek(p + 2 * ps);
	check_load_mask(&t, true);
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	close_all(p, fh, t.store, ram);
}

CHILD_TEST(test_callbacks_signal_mask, child_signal_mask, NULL)

/* A loadblk that makes a failing system call. */
static int errno_loadblk(void *ctx, uint64_t blk, void *buf)
{
	(void)ctx;
	(void)!close(-1); /* EBADF */
	raise(SIGUSR1);   /* delivered here, in the load (see on_usr1) */
	gen_fill(buf, os_page(), blk, 0);
	return 0;
}

static void test_errno_and_signal_in_load(void **state)
{
	static const vmp_store_ops ops = { .loadblk = errno_loadblk };
	size_t ps = os_page();
	struct sigaction sa = { .sa_handler = on_usr1 }, old;
	vmp_store *store;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;
	int seen;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	assert_ok(vmp_store_new(&store, &ops, NULL, ps));
	assert_ok(vmp_ram_new(&ram, 0));
	assert_ok(vmp_fileh_open(&fh, ram, store, VMP_NO_READAHEAD));
	assert_ok(vmp_mmap(fh, 0, 2, PROT_READ, (void **)&p));
	usr1_seen = 0;
	errno = 12345;
	__asm__ volatile("" ::: "memory"); /* errno is set before the fault */
	seen = peek(p + ps);
	__asm__ volatile("" ::: "memory");
	assert_int_equal(errno, 12345);
	assert_int_equal(seen, gen_byte(1, 0, 0));
	assert_int_equal(usr1_seen, 1);
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_store_free(store));
	assert_ok(vmp_ram_free(ram));
	assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
}

/* --- 6. the program's own SIGSEGV handler, installed before ------------- */

static char *guard_page;
static volatile int program_faults; /* written by a signal handler */

static volatile bool probe_jumps; /* program_segv leaves by siglongjmp */

static void program_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	program_faults++;
	if (probe_jumps)
		siglongjmp(escape, 1);
	if ((char *)si->si_addr == guard_page)
		mprotect(guard_page, os_page(), PROT_READ | PROT_WRITE);
}

static void ignore_segv(int sig)
{
	(void)sig;
}

static void child_chain(void *arg)
{
	size_t ps = os_page();
	struct sigaction sa = { .sa_sigaction = program_segv,
				.sa_flags = SA_SIGINFO };
	struct tstore t;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	guard_page = mmap(NULL, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	child_check(guard_page != MAP_FAILED);
	sigemptyset(&sa.sa_mask);
	child_check(sigaction(SIGSEGV, &sa, NULL) == 0);
	/* the library comes in after the program's handler */
	tstore_init(&t, ps);
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	p = open_map(ram, &t, 0, 2, &fh);
	check_page(p + ps, ps, 1);     /* ours: served */
	child_check(program_faults == 0);
	poke(guard_page, 5);           /* not ours: the program's handler */
	child_check(program_faults == 1 && peek(guard_page) == 5);

	/* a probe: the program's handler leaves by siglongjmp; then a
	 * writeout's storeblk runs with the caller's mask, not a stale one */
	probe_jumps = true;
	if (sigsetjmp(escape, 1) == 0)
		(void)peek(bad_address(16));
	probe_jumps = false;
	child_check(program_faults == 2);
	{
		sigset_t usr2;
		sigemptyset(&usr2);
		sigaddset(&usr2, SIGUSR2);
		pthread_sigmask(SIG_BLOCK, &usr2, NULL);
		poke(p, 1);
		t.hold_store = false;
		child_check_rc(vmp_writeout(fh, VMP_WRITEOUT_STORE), 0);
		child_check(sigismember(&t.store_mask, SIGUSR2));
		child_check(!sigismember(&t.store_mask, SIGINT));
		pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
	}

	/* saved with signal() and put back: ours loses its flags on the way;
	 * the library mends it and still chains to the program's */
	{
		void (*old)(int) = signal(SIGSEGV, ignore_segv);
		signal(SIGSEGV, old);
	}
	{
		char *q;
		child_check_rc(vmp_mmap(fh, 5, 1, PROT_READ, (void **)&q), 0);
		check_page(q, ps, 5); /* a fault served: vmp_mmap mended it */
		child_check_rc(vmp_munmap(q), 0);
	}
	guard_page[0] = 0;
	child_check(mprotect(guard_page, ps, PROT_NONE) == 0);
	poke(guard_page, 6);
	child_check(program_faults == 3 && peek(guard_page) == 6);
	close_all(p, fh, t.store, ram);
}

/* The library must be new to the process: run the child as a fresh
 * program (main() below), not as a fork of one that used it already. */
static void exec_self(void *scenario)
{
	execl("/proc/self/exe", "test-robust", "--child", (char *)scenario,
	      (char *)NULL);
	child_fail(__FILE__, __LINE__, "execl");
}

CHILD_TEST(test_chain_to_previous_handler, exec_self, "chain")

/* --- 12. overlay over a file cut short ---------------------------------- */

/* Overlay pages past the end of the file read zeros, also inside the
 * block the file ends in and after the file was cut short while mapped. */
static void child_overlay_truncated(void *arg)
{
	size_t bs = (size_t)(uintptr_t)arg, ps = os_page();
	int fd = temp_file(4 * bs, bs);
	vmp_store *store;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;
	uint8_t v;

	child_check_rc(vmp_file_store_new(&store, fd, bs), 0);
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	child_check_rc(vmp_fileh_open(&fh, ram, store, VMP_OVERLAY), 0);
	child_check_rc(vmp_mmap(fh, 0, 4, PROT_READ | PROT_WRITE, (void **)&p), 0);
	check_page(p + 3 * bs, bs, 3);
	poke(p + 2 * bs, 9); /* a dirty page is the handle's, not the file's */
	child_check(ftruncate(fd, bs + 100) == 0);
	/* past the end: zeros, as the file store reads them; no SIGBUS */
	child_check(peek(p + 3 * bs) == 0 && peek(p + 4 * bs - 1) == 0);
	child_check_rc(guarded_peek(p + 3 * bs + 7, &v), 0);
	child_check(v == 0);
	child_check(peek(p + 2 * bs) == 9);
	child_check(peek(p + bs + 99) == gen_byte(1, 99, 0));
	child_check(peek(p + bs + 100) == 0);      /* the kernel's zeros */
	child_check(peek(p + 2 * bs - 1) == 0);    /* an OS page past the end */
	if (bs > ps)
		child_check(peek(p + bs + ps + 5) == 0);
	child_check_rc(vmp_munmap(p), 0);
	/* mapped anew over the short file: the same */
	child_check_rc(vmp_mmap(fh, 0, 4, PROT_READ, (void **)&p), 0);
	child_check(peek(p + bs + 99) == gen_byte(1, 99, 0));
	child_check(peek(p + 2 * bs - 1) == 0 && peek(p + 3 * bs) == 0);
	close_all(p, fh, store, ram);
	close(fd);
}

static void test_overlay_file_truncated(void **state)
{
	struct child_result r;

	(void)state;
	run_child(child_overlay_truncated, (void *)(uintptr_t)os_page(), &r);
	assert_child_exited_ok(&r);
	run_child(child_overlay_truncated, (void *)(uintptr_t)(64 * KiB), &r);
	assert_child_exited_ok(&r);
}

static volatile void *bus_addr;

static void program_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_addr = si->si_addr;
	siglongjmp(escape, 1);
}

/* A SIGBUS handler the program had before: it still gets the SIGBUS of its
 * own file mappings, and the library's SIGBUS of failed faults. */
static void child_sigbus_chained(void *arg)
{
	size_t ps = os_page();
	struct sigaction sa = { .sa_sigaction = program_sigbus,
				.sa_flags = SA_SIGINFO };
	int fd = temp_file(2 * ps, ps);
	struct tstore t;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *file, *p;

	(void)arg;
	sigemptyset(&sa.sa_mask);
	child_check(sigaction(SIGBUS, &sa, NULL) == 0);
	tstore_init(&t, ps);
	t.fail_blk = 1;
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	child_check_rc(vmp_fault_handler_install(), 0);
	p = open_map(ram, &t, VMP_NO_READAHEAD, 2, &fh);
	file = mmap(NULL, 2 * ps, PROT_READ, MAP_SHARED, fd, 0);
	child_check(file != MAP_FAILED);
	child_check(ftruncate(fd, ps) == 0);
	if (sigsetjmp(escape, 1) == 0) {
		(void)peek(file + ps); /* not ours */
		child_fail(__FILE__, __LINE__, "no SIGBUS");
	}
	child_check(bus_addr == file + ps);
	if (sigsetjmp(escape, 1) == 0) {
		(void)peek(p + ps); /* ours, failed */
		child_fail(__FILE__, __LINE__, "no SIGBUS");
	}
	child_check(bus_addr == p + ps);
	munmap(file, 2 * ps);
	/* the escape left nothing behind: an overlay cut short still reads
	 * zeros, no SIGBUS for the program */
	{
		vmp_store *fs;
		vmp_fileh *ofh;
		char *o;
		child_check(ftruncate(fd, 2 * ps) == 0);
		child_check_rc(vmp_file_store_new(&fs, fd, ps), 0);
		child_check_rc(vmp_fileh_open(&ofh, ram, fs, VMP_OVERLAY), 0);
		child_check_rc(vmp_mmap(ofh, 0, 2, PROT_READ, (void **)&o), 0);
		child_check(ftruncate(fd, ps) == 0);
		if (sigsetjmp(escape, 1) == 0)
			child_check(peek(o + ps) == 0);
		else
			child_fail(__FILE__, __LINE__, "SIGBUS reached the program");
		child_check_rc(vmp_munmap(o), 0);
		child_check_rc(vmp_fileh_close(ofh), 0);
		child_check_rc(vmp_store_free(fs), 0);
	}
	close(fd);
	close_all(p, fh, t.store, ram);
}

CHILD_TEST(test_sigbus_chained, child_sigbus_chained, NULL)

/* --- 7. the memory limit and loads in flight ---------------------------- */

static void *release_later(void *arg)
{
	msleep(50);
	release_hold(arg);
	return NULL;
}

/* The budget (one page) is held by another thread's load: wait for it. */
static void child_wait_for_loads(void *arg)
{
	size_t ps = os_page();
	struct tstore t;
	struct toucher a = { 0 };
	pthread_t rel;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;
	uint8_t v;

	(void)arg;
	tstore_init(&t, ps);
	t.hold_blk = 0;
	child_check_rc(vmp_ram_new(&ram, ps), 0);
	p = open_map(ram, &t, VMP_NO_READAHEAD, 2, &fh);
	a.page = p;
	toucher_start(&a);
	wait_entered(&t);
	t.hold_blk = -1;
	/* the load of page 0 ends while page 1's fault is on its way */
	child_check(pthread_create(&rel, NULL, release_later, &t) == 0);
	child_check_rc(guarded_peek(p + ps, &v), 0);
	child_check(pthread_join(rel, NULL) == 0);
	child_check(v == gen_byte(1, 0, 0));
	child_check(pthread_cancel(a.th) == 0);
	toucher_join_cancelled(&a);
	/* dirty pages still make it fail */
	poke(p + ps, 1);
	child_check_rc(guarded_peek(p, &v), -ENOMEM);
	close_all(p, fh, t.store, ram);
}

CHILD_TEST(test_memlimit_waits_for_loads, child_wait_for_loads, NULL)

/* The case: 16 threads reading 2 MiB blocks under 16 MiB. */
#define BIG_BS (2 * MiB)
#define READERS 16

static int slow_big_loadblk(void *ctx, uint64_t blk, void *buf)
{
	(void)ctx;
	msleep(2);
	memset(buf, (int)(blk & 0xff), BIG_BS);
	return 0;
}

struct reader {
	pthread_t th;
	char *p;
	unsigned first;
	int rc;
};

static int read_blocks(void *arg)
{
	struct reader *r = arg;

	for (unsigned i = 0; i < 4; i++) {
		uint64_t b = r->first + i * READERS;
		if (peek(r->p + b * BIG_BS + 12345) != (uint8_t)b)
			return -EBADMSG;
	}
	return 0;
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	r->rc = vmp_guard(read_blocks, r);
	return NULL;
}

static void test_many_readers_small_limit(void **state)
{
	static const vmp_store_ops ops = { .loadblk = slow_big_loadblk };
	struct reader rd[READERS];
	vmp_store *store;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_store_new(&store, &ops, NULL, BIG_BS));
	assert_ok(vmp_ram_new(&ram, 16 * MiB));
	assert_ok(vmp_fileh_open(&fh, ram, store, 0));
	assert_ok(vmp_mmap(fh, 0, 4 * READERS, PROT_READ, (void **)&p));
	for (unsigned i = 0; i < READERS; i++) {
		rd[i] = (struct reader){ .p = p, .first = i };
		assert_int_equal(pthread_create(&rd[i].th, NULL, reader_main,
						&rd[i]), 0);
	}
	for (unsigned i = 0; i < READERS; i++) {
		assert_int_equal(pthread_join(rd[i].th, NULL), 0);
		assert_rc(rd[i].rc, 0);
	}
	assert_u64_le(ram_stats(ram).peak_resident_bytes, 16 * MiB);
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_store_free(store));
	assert_ok(vmp_ram_free(ram));
}

/* --- 10, 11. stacks and buffers ----------------------------------------- */

#define CHAIN 8
/* A sanitizer's frames are several times larger than ours: the test is
 * about the library's own use of the stack, so give them room. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SMALL_STACK (256 * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SMALL_STACK (256 * 1024)
#endif
#endif
#ifndef SMALL_STACK
#define SMALL_STACK (64 * 1024)
#endif

struct chain_arg {
	char *p;
	size_t ps;
	int ok;
};

static void *chain_main(void *arg)
{
	struct chain_arg *c = arg;

	c->ok = gen_check(c->p + CHAIN * c->ps, c->ps, CHAIN, 0) == 0;
	return NULL;
}

/* loadblk(b) reads page b - 1: a fault on page 8 nests 8 loads deep, on a
 * thread with a 64 KiB stack. */
static void child_small_stack(void *arg)
{
	size_t ps = os_page();
	struct tstore t;
	struct chain_arg c = { .ps = ps };
	pthread_attr_t attr;
	pthread_t th;
	vmp_ram *ram;
	vmp_fileh *fh;

	(void)arg;
	tstore_init(&t, ps);
	child_check_rc(vmp_ram_new(&ram, 0), 0);
	c.p = open_map(ram, &t, VMP_NO_READAHEAD, CHAIN + 1, &fh);
	t.chain_base = (int64_t)(uintptr_t)c.p;
	pthread_attr_init(&attr);
	child_check(pthread_attr_setstacksize(&attr, SMALL_STACK) == 0);
	child_check(pthread_create(&th, &attr, chain_main, &c) == 0);
	child_check(pthread_join(th, NULL) == 0);
	child_check(c.ok);
	child_check(t.loads == CHAIN + 1);
	close_all(c.p, fh, t.store, ram);
}

CHILD_TEST(test_nested_loads_small_stack, child_small_stack, NULL)

#define HUGE_BS (16 * MiB)
#define LOADERS 8

static int huge_loadblk(void *ctx, uint64_t blk, void *buf)
{
	(void)ctx;
	memset(buf, (int)(blk & 0xff), 4096);
	return 0;
}

static void *huge_main(void *arg)
{
	return (void *)(uintptr_t)peek(arg);
}

/* 8 threads load 16 MiB blocks: the buffers they filled do not stay. */
static void test_load_buffers_bounded(void **state)
{
	static const vmp_store_ops ops = { .loadblk = huge_loadblk };
	pthread_t th[LOADERS];
	vmp_store *store;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_store_new(&store, &ops, NULL, HUGE_BS));
	assert_ok(vmp_ram_new(&ram, 256 * MiB));
	assert_ok(vmp_fileh_open(&fh, ram, store, 0));
	assert_ok(vmp_mmap(fh, 0, LOADERS, PROT_READ, (void **)&p));
	for (unsigned i = 0; i < LOADERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, huge_main,
						p + i * HUGE_BS), 0);
	for (unsigned i = 0; i < LOADERS; i++) {
		void *v;
		assert_int_equal(pthread_join(th[i], &v), 0);
		assert_u64((uintptr_t)v, i);
	}
	/* at most what the pool keeps (16 MiB), and the threads are gone */
	assert_u64_le(ram_stats(ram).buffer_bytes, 16 * MiB);
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_store_free(store));
	assert_ok(vmp_ram_free(ram));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_waiting_fault),
		cmocka_unit_test(test_cancel_in_loadblk),
		cmocka_unit_test(test_cancel_in_storeblk),
		cmocka_unit_test(test_cancel_munmap),
		cmocka_unit_test(test_guard_around_commit),
		cmocka_unit_test(test_nested_failure_fails_the_load),
		cmocka_unit_test(test_error_handler_escape),
		cmocka_unit_test(test_callbacks_signal_mask),
		cmocka_unit_test(test_errno_and_signal_in_load),
		cmocka_unit_test(test_chain_to_previous_handler),
		cmocka_unit_test(test_overlay_file_truncated),
		cmocka_unit_test(test_sigbus_chained),
		cmocka_unit_test(test_memlimit_waits_for_loads),
		cmocka_unit_test(test_many_readers_small_limit),
		cmocka_unit_test(test_nested_loads_small_stack),
		cmocka_unit_test(test_load_buffers_bounded),
	};

	if (argc == 3 && !strcmp(argv[1], "--child") && !strcmp(argv[2], "chain")) {
		child_chain(NULL);
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
