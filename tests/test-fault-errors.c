/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-fault-errors.c: faults that cannot be served (issue 6).
 *
 *  - default: exactly one stderr line and SIGBUS with the faulting address
 *    (in a child process);
 *  - vmp_guard() returns the errno, nests, is per thread;
 *  - the handle's error handler: RETRY, ZERO, DEFAULT;
 *  - a failed load installs nothing: the next access loads again;
 *  - vmp_handle_fault() for programs with their own SIGSEGV handler;
 *  - fork(): the child sees no mapping, its calls on the parent's objects
 *    return -ECHILD, the parent is intact;
 *  - loadblk misbehaving: touching its own page, unmapping its mapping.
 * No dirty page is lost in any of them.
 */
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define NPAGES 16
#define BAD 5 /* the block whose loads fail */

/* Per-block load errors, for tests that need several failing blocks. */
static int fail_errs[NPAGES];

struct fix {
	int fds;
	size_t ps;
	struct mock *m;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p; /* NPAGES pages, read-write */
};

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->fds = count_open_fds();
	f->ps = os_page();
	f->m = mock_new(f->ps, NPAGES, 0);
	assert_ok(vmp_ram_new(&f->ram, 0));
	f->fh = open_fh(f->ram, f->m, 0);
	f->p = map_pages(f->fh, 0, NPAGES, PROT_READ | PROT_WRITE);
	memset(fail_errs, 0, sizeof(fail_errs));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	if (f->p)
		assert_ok(vmp_munmap(f->p));
	assert_ok(vmp_fileh_close(f->fh));
	assert_ok(vmp_ram_free(f->ram));
	mock_free(f->m);
	assert_no_fd_leak(f->fds);
	free(f);
	return 0;
}

static struct fix *begin(void **state)
{
	assert_ok(vmp_fault_handler_install());
	return *state;
}

static char *pg(struct fix *f, uint64_t i)
{
	return f->p + i * f->ps;
}

/*
 * Dirty pages 1 and 11 and return a copy of them for assert_dirty_kept().
 * Not neighbours, and away from BAD: sequential faults make the library
 * read ahead, which would load BAD before the test makes it fail.
 */
static char *dirty_two(struct fix *f)
{
	char *copy = malloc(2 * f->ps);

	assert_non_null(copy);
	memset(pg(f, 1), 'a', 100);
	memset(pg(f, 11) + 50, 'b', 100);
	memcpy(copy, pg(f, 1), f->ps);
	memcpy(copy + f->ps, pg(f, 11), f->ps);
	assert_u64(dirty_count(f->fh), 2);
	return copy;
}

static void assert_dirty_kept(struct fix *f, char *copy)
{
	assert_u64(dirty_count(f->fh), 2);
	assert_memory_equal(pg(f, 1), copy, f->ps);
	assert_memory_equal(pg(f, 11), copy + f->ps, f->ps);
	free(copy);
}

static int ret_value(void *arg)
{
	return (int)(intptr_t)arg;
}

/* --- the default: message and SIGBUS -------------------------------------------- */

/* The one line: "vmpage: <what failed> (<store/handle>, block N): <strerror>" */
static void assert_one_line(const char *err, uint64_t blk, int errnum)
{
	char pat[256];
	regex_t re;
	int nl = 0;

	for (const char *c = err; *c; c++)
		nl += *c == '\n';
	if (nl != 1 || err[strlen(err) - 1] != '\n')
		fail_msg("expected exactly one line on stderr, got:\n%s", err);
	snprintf(pat, sizeof(pat), "^vmpage: .+ \\(.+, block %llu\\): %s\n$",
		 (unsigned long long)blk, strerror(errnum));
	assert_int_equal(regcomp(&re, pat, REG_EXTENDED | REG_NOSUB), 0);
	if (regexec(&re, err, 0, NULL, 0))
		fail_msg("stderr line does not match \"%s\":\n%s", pat, err);
	regfree(&re);
}

static uintptr_t info_addr(const struct child_result *r)
{
	const char *a = strstr(r->info, "ADDR ");
	unsigned long addr = 0;

	if (!a || sscanf(a + 5, "%lx", &addr) != 1)
		fail_msg("child did not report its address; stderr:\n%s",
			 r->err);
	return addr;
}

static void assert_sigbus_at(const struct child_result *r)
{
	uintptr_t want = info_addr(r);

	assert_child_signaled(r, SIGBUS);
	if (!r->sig_seen)
		fail_msg("SIGBUS handler did not run; stderr:\n%s", r->err);
	if (r->sig_addr != want)
		fail_msg("SIGBUS si_addr %#lx (si_code %d), expected the "
			 "faulting address %#lx",
			 (unsigned long)r->sig_addr, r->sig_code,
			 (unsigned long)want);
}

/* In a child: a new mock of NPAGES blocks (*@m), a RAM of @limit bytes
 * (0: none), a handle on the mock (*@fh) and a mapping of all its pages
 * with @prot, returned. */
static char *child_map_all(uint64_t limit, int prot, struct mock **m,
			   vmp_fileh **fh)
{
	vmp_ram *ram;
	char *p = NULL;

	*m = mock_new(os_page(), NPAGES, 0);
	child_check_rc(vmp_ram_new(&ram, limit), 0);
	child_check_rc(vmp_fileh_open(fh, ram, (*m)->store, 0), 0);
	child_check_rc(vmp_mmap(*fh, 0, NPAGES, prot, (void **)&p), 0);
	return p;
}

/* In a child: touch @addr, which must kill the child with SIGBUS (its
 * address and code go to the parent); @what says what survived if not. */
static void child_sigbus_at(char *addr, const char *what)
{
	child_info("ADDR %lx\n", (unsigned long)addr);
	child_catch_sigbus();
	(void)peek(addr);
	child_fail(__FILE__, __LINE__, what);
}

static void child_load_fails(void *arg)
{
	const size_t ps = os_page();
	struct mock *m;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	p = child_map_all(0, PROT_READ | PROT_WRITE, &m, &fh);
	mock_set_fail(m, &m->fail_load, BAD, 1, 0, -EIO);
	p[ps] = 'd'; /* a dirty page, for the record */
	child_sigbus_at(p + BAD * ps + 123, "failed load did not raise SIGBUS");
}

static void test_default_sigbus(void **state)
{
	struct child_result r;

	(void)state;
	run_child(child_load_fails, NULL, &r);
	assert_sigbus_at(&r);
	assert_one_line(r.err, BAD, EIO);
}

static void child_budget_full(void *arg)
{
	const size_t ps = os_page();
	struct mock *m;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	p = child_map_all(4 * ps, PROT_READ | PROT_WRITE, &m, &fh);
	for (int i = 0; i < 4; i++)
		p[i * ps] = 'd';
	child_sigbus_at(p + 9 * ps + 1, "fault past a full budget survived");
}

static void test_default_sigbus_memlimit(void **state)
{
	struct child_result r;

	(void)state;
	run_child(child_budget_full, NULL, &r);
	assert_sigbus_at(&r);
	assert_one_line(r.err, 9, ENOMEM);
}

/* --- vmp_guard -------------------------------------------------------------- */

struct quiet {
	char *addr;
	uint8_t v;
	int rc;
};

static int quiet_peek(void *arg)
{
	struct quiet *a = arg;

	a->rc = guarded_peek(a->addr, &a->v);
	return 0;
}

static void test_guard_returns_errno(void **state)
{
	struct fix *f = begin(state);
	char *copy = dirty_two(f);
	struct quiet a = { pg(f, BAD) + 7, 0, 0 };
	struct vmp_stats st0, st;
	char err[1024];

	mock_set_fail(f->m, &f->m->fail_load, BAD, 1, 1, -EIO);
	st0 = ram_stats(f->ram);
	assert_ok(capture_stderr(quiet_peek, &a, err, sizeof(err)));
	assert_rc(a.rc, -EIO);
	/* Recovered faults are the program's business: no message. */
	if (err[0])
		fail_msg("vmp_guard case printed: %s", err);

	/* Nothing installed, nothing lost. */
	st = ram_stats(f->ram);
	assert_u64(st.resident_bytes, st0.resident_bytes);
	assert_u64(st.loads, st0.loads);
	assert_u64(st.load_errors, st0.load_errors + 1);
	assert_dirty_kept(f, copy);

	/* The next access loads again, and works. */
	assert_ok(guarded_peek(a.addr, &a.v));
	assert_int_equal(a.v, gen_byte(BAD, 7, 0));
	assert_u64(mock_loads(f->m, BAD), 2);
	assert_int_equal(gen_check(pg(f, BAD), f->ps, BAD, 0), 0);
}

/* A write fault that fails leaves the page neither loaded nor dirty. */
static void test_guard_write_fault(void **state)
{
	struct fix *f = begin(state);
	char *copy = dirty_two(f);

	mock_set_fail(f->m, &f->m->fail_load, BAD, 1, 1, -ENOSPC);
	assert_rc(guarded_poke(pg(f, BAD) + 1, 'w'), -ENOSPC);
	assert_dirty_kept(f, copy);
	assert_ok(guarded_poke(pg(f, BAD) + 1, 'w'));
	assert_u64(dirty_count(f->fh), 3);
	assert_int_equal(pg(f, BAD)[1], 'w');
	assert_int_equal((uint8_t)pg(f, BAD)[2], gen_byte(BAD, 2, 0));
}

/* prefault reports the load's error, and installs nothing either. */
static void test_prefault_error(void **state)
{
	struct fix *f = begin(state);

	mock_set_fail(f->m, &f->m->fail_load, BAD, 1, 1, -EIO);
	assert_rc(vmp_prefault(pg(f, BAD), f->ps, 0), -EIO);
	assert_u64(ram_stats(f->ram).resident_bytes, 0);
	assert_ok(vmp_prefault(pg(f, BAD), f->ps, 0));
	assert_int_equal(gen_check(pg(f, BAD), f->ps, BAD, 0), 0);
}

static int fail_table_hook(struct mock *m, uint64_t blk, void *arg)
{
	(void)m;
	(void)arg;
	return blk < NPAGES ? fail_errs[blk] : 0;
}

static void fail_blocks(struct fix *f, int bad_err, int b7_err, int b8_err)
{
	memset(fail_errs, 0, sizeof(fail_errs));
	fail_errs[BAD] = bad_err;
	fail_errs[7] = b7_err;
	fail_errs[8] = b8_err;
	f->m->load_hook = fail_table_hook;
}

struct nest {
	struct fix *f;
	int inner_bad, inner_good;
	bool after_fault;
};

static int touch_page(void *arg)
{
	(void)peek(arg);
	return 0;
}

static int outer_fn(void *arg)
{
	struct nest *n = arg;

	n->inner_bad = vmp_guard(touch_page, pg(n->f, BAD));
	n->inner_good = vmp_guard(touch_page, pg(n->f, 6));
	(void)peek(pg(n->f, 7)); /* fails: abandons outer_fn */
	n->after_fault = true;
	return 99;
}

/* Each guard gets the error of its own fault; an inner guard's failure
 * does not abandon the outer function. */
static void test_guard_nests(void **state)
{
	struct fix *f = begin(state);
	struct nest n = { f, 1, 1, false };

	fail_blocks(f, -EIO, -ENOSPC, 0);
	assert_rc(vmp_guard(outer_fn, &n), -ENOSPC);
	assert_rc(n.inner_bad, -EIO);
	assert_rc(n.inner_good, 0);
	assert_false(n.after_fault);
	assert_int_equal(gen_check(pg(f, 6), f->ps, 6, 0), 0);

	/* Guards are unwound: a new one behaves, and so do plain accesses. */
	f->m->load_hook = NULL;
	assert_rc(vmp_guard(touch_page, pg(f, 7)), 0);
	assert_rc(vmp_guard(ret_value, (void *)(intptr_t)-3), -3);
	assert_int_equal(gen_check(pg(f, BAD), f->ps, BAD, 0), 0);
}

struct guard_thread {
	char *addr;
	int want;
	int wrong; /* guards that returned something else */
};

static void *guard_thread_main(void *arg)
{
	struct guard_thread *g = arg;

	for (int i = 0; i < 200; i++)
		if (guarded_peek(g->addr, NULL) != g->want)
			g->wrong++;
	return NULL;
}

static void test_guard_per_thread(void **state)
{
	struct fix *f = begin(state);
	struct guard_thread g[3] = {
		{ pg(f, BAD), -EIO, 0 },
		{ pg(f, 8), -ENOSPC, 0 },
		{ pg(f, 3), 0, 0 },
	};
	pthread_t t[3];

	fail_blocks(f, -EIO, 0, -ENOSPC);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, guard_thread_main,
						&g[i]), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 0; i < 3; i++)
		if (g[i].wrong)
			fail_msg("thread %d: %d of 200 guards did not return "
				 "%s", i, g[i].wrong, errname(g[i].want));
	f->m->load_hook = NULL;
}

/* --- the error handler ------------------------------------------------------- */

static void assert_error_is(const struct vmp_fault_error *e, void *addr,
			    vmp_fileh *fh, uint64_t blk, int err,
			    enum vmp_fault_what what)
{
	assert_ptr_equal(e->addr, addr);
	assert_ptr_equal(e->fh, fh);
	assert_u64(e->blk, blk);
	assert_rc(e->err, err);
	assert_int_equal(e->what, what);
}

static void test_handler_retry(void **state)
{
	struct fix *f = begin(state);
	struct fault_seen s = { 0, 5, VMP_FAULT_RETRY, { 0 } };
	char *copy = dirty_two(f);
	uint8_t v = 0;

	assert_ok(vmp_set_fault_error_handler(f->fh, record_fault_handler, &s));
	mock_set_fail(f->m, &f->m->fail_load, BAD, 1, 2, -EIO);
	assert_ok(guarded_peek(pg(f, BAD) + 17, &v));
	assert_int_equal(v, gen_byte(BAD, 17, 0));
	assert_int_equal(s.calls, 2);
	assert_error_is(&s.last, pg(f, BAD) + 17, f->fh, BAD, -EIO,
			VMP_FAULT_LOAD);
	assert_u64(mock_loads(f->m, BAD), 3);
	assert_dirty_kept(f, copy);

	/* Retrying a load that keeps failing ends with DEFAULT: the guard. */
	s.calls = 0;
	mock_set_fail(f->m, &f->m->fail_load, 9, 1, 0, -EIO);
	assert_rc(guarded_peek(pg(f, 9), NULL), -EIO);
	assert_int_equal(s.calls, s.answer_until + 1);
	assert_ok(vmp_set_fault_error_handler(f->fh, NULL, NULL));
}

static void test_handler_zero(void **state)
{
	struct fix *f = begin(state);
	struct fault_seen s = { 0, 0, VMP_FAULT_ZERO, { 0 } };
	char *zeros = calloc(1, f->ps);

	assert_non_null(zeros);
	assert_ok(vmp_set_fault_error_handler(f->fh, record_fault_handler, &s));
	mock_set_fail(f->m, &f->m->fail_load, BAD, 1, 0, -EIO);
	assert_ok(guarded_peek(pg(f, BAD) + 3, NULL));
	assert_memory_equal(pg(f, BAD), zeros, f->ps);
	assert_int_equal(s.calls, 1);
	assert_error_is(&s.last, pg(f, BAD) + 3, f->fh, BAD, -EIO,
			VMP_FAULT_LOAD);
	/* Clean, and mapped: reading again asks nobody. */
	assert_u64(dirty_count(f->fh), 0);
	assert_memory_equal(pg(f, BAD), zeros, f->ps);
	assert_int_equal(s.calls, 1);

	/* The store recovers; invalidating the zero page loads the bytes. */
	f->m->fail_load.at = 0;
	assert_ok(vmp_invalidate(f->fh, BAD, 1));
	assert_int_equal(gen_check(pg(f, BAD), f->ps, BAD, 0), 0);
	assert_ok(vmp_set_fault_error_handler(f->fh, NULL, NULL));
	free(zeros);
}

static void test_handler_default(void **state)
{
	struct fix *f = begin(state);
	struct fault_seen s = { 0, 0, VMP_FAULT_DEFAULT, { 0 } };
	char *copy = dirty_two(f);

	assert_ok(vmp_set_fault_error_handler(f->fh, record_fault_handler, &s));
	mock_set_fail(f->m, &f->m->fail_load, BAD, 1, 0, -EIO);
	assert_rc(guarded_peek(pg(f, BAD), NULL), -EIO);
	assert_int_equal(s.calls, 1);

	/* Cleared: the guard alone. */
	assert_ok(vmp_set_fault_error_handler(f->fh, NULL, NULL));
	assert_rc(guarded_peek(pg(f, BAD), NULL), -EIO);
	assert_int_equal(s.calls, 1);
	assert_dirty_kept(f, copy);
}

static int child_handler(const struct vmp_fault_error *e, void *arg)
{
	(void)arg;
	child_info("HANDLER blk %llu err %d\n", (unsigned long long)e->blk,
		   e->err);
	return VMP_FAULT_DEFAULT;
}

static void child_handler_default(void *arg)
{
	const size_t ps = os_page();
	struct mock *m;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	p = child_map_all(0, PROT_READ, &m, &fh);
	child_check_rc(vmp_set_fault_error_handler(fh, child_handler, NULL), 0);
	mock_set_fail(m, &m->fail_load, BAD, 1, 0, -EIO);
	child_sigbus_at(p + BAD * ps, "DEFAULT answer did not raise SIGBUS");
}

static void test_handler_default_unguarded(void **state)
{
	struct child_result r;
	char want[64];

	(void)state;
	run_child(child_handler_default, NULL, &r);
	assert_sigbus_at(&r);
	snprintf(want, sizeof(want), "HANDLER blk %d err %d\n", BAD, -EIO);
	if (!strstr(r.info, want))
		fail_msg("handler not called before the SIGBUS: %s", r.info);
	assert_one_line(r.err, BAD, EIO);
}

/* --- vmp_handle_fault --------------------------------------------------------- */

static void test_handle_fault_direct(void **state)
{
	struct fix *f = begin(state);
	int local = 0;
	uint64_t faults;

	assert_rc(vmp_handle_fault(&local), 0);
	assert_rc(vmp_handle_fault(f), 0);
	assert_rc(vmp_handle_fault(f->p - 1), 0);
	assert_rc(vmp_handle_fault(f->p + NPAGES * f->ps), 0);
	assert_u64(f->m->load_calls, 0);

	assert_rc(vmp_handle_fault(pg(f, 3) + 5), 1);
	/* Served: loaded and mapped, reading does not fault. */
	assert_u64(mock_loads(f->m, 3), 1);
	faults = ram_stats(f->ram).faults;
	assert_int_equal(gen_check(pg(f, 3), f->ps, 3, 0), 0);
	assert_u64(ram_stats(f->ram).faults, faults);
}

/* vmp_handle_fault on a failing page, with stderr captured. */
static int handle_fault_bad(void *arg)
{
	return vmp_handle_fault(arg);
}

static void test_handle_fault_error(void **state)
{
	struct fix *f = begin(state);
	char err[1024];
	int rc;

	mock_set_fail(f->m, &f->m->fail_load, BAD, 1, 1, -EIO);
	rc = capture_stderr(handle_fault_bad, pg(f, BAD) + 9, err, sizeof(err));
	assert_rc(rc, -EIO);
	if (err[0])
		fail_msg("vmp_handle_fault printed: %s", err);
	assert_u64(ram_stats(f->ram).resident_bytes, 0);
	/* Next time it loads. */
	assert_rc(vmp_handle_fault(pg(f, BAD) + 9), 1);
	assert_int_equal(gen_check(pg(f, BAD), f->ps, BAD, 0), 0);
}

/* A program's own SIGSEGV (and SIGBUS: the userfaultfd mechanism's
 * faults) handler, chaining to the library. */
static sigjmp_buf chain_jmp;
static volatile int chain_calls, chain_rc;

static void chaining_handler(int sig, siginfo_t *si, void *uc)
{
	int rc = vmp_handle_fault(si->si_addr);

	(void)sig;
	(void)uc;
	chain_calls++;
	if (rc == 1)
		return; /* served: the access is retried */
	chain_rc = rc;
	siglongjmp(chain_jmp, 1);
}

static void test_own_handler_chains(void **state)
{
	struct fix *f = begin(state);
	struct sigaction sa, old, oldbus;
	int before;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = chaining_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);
	assert_int_equal(sigaction(SIGBUS, &sa, &oldbus), 0);
	chain_calls = 0;

	/* Reads and writes work through the program's handler (pages apart
	 * from each other and from BAD: no read-ahead). */
	assert_int_equal(gen_check(pg(f, 3), f->ps, 3, 0), 0);
	pg(f, 9)[0] = 'c';
	assert_u64(dirty_count(f->fh), 1);
	assert_true(chain_calls >= 2);

	/* An error comes back to the program's handler. */
	mock_set_fail(f->m, &f->m->fail_load, BAD, 1, 1, -EIO);
	before = chain_calls;
	if (sigsetjmp(chain_jmp, 1) == 0) {
		(void)peek(pg(f, BAD));
		fail_msg("a failing load returned to the program");
	}
	assert_int_equal(chain_calls, before + 1);
	assert_rc(chain_rc, -EIO);

	/* A foreign address: 0, nothing done. */
	if (sigsetjmp(chain_jmp, 1) == 0) {
		(void)peek(bad_address(8));
		fail_msg("read of address 8 returned");
	}
	assert_rc(chain_rc, 0);

	assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
	assert_int_equal(sigaction(SIGBUS, &oldbus, NULL), 0);
	assert_ok(vmp_fault_handler_install());
	assert_int_equal(gen_check(pg(f, BAD), f->ps, BAD, 0), 0);
}

/* --- fork ----------------------------------------------------------------- */

struct parent_objs {
	struct mock *m;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;
};

static void child_calls_echild(void *arg)
{
	struct parent_objs *o = arg;
	struct vmp_stats st;
	uint64_t n;
	void *addr;
	vmp_fileh *fh;
	int rc;

	child_check_rc(vmp_ram_stats(o->ram, &st), -ECHILD);
	child_check_rc(vmp_ram_reclaim(o->ram, 4096), -ECHILD);
	child_check_rc(vmp_fileh_open(&fh, o->ram, o->m->store, 0), -ECHILD);
	child_check_rc(vmp_store_free(o->m->store), -ECHILD);
	child_check_rc(vmp_fileh_dirty_count(o->fh, &n), -ECHILD);
	child_check_rc(vmp_mmap(o->fh, 0, 1, PROT_READ, &addr), -ECHILD);
	child_check_rc(vmp_writeout(o->fh, VMP_WRITEOUT_STORE), -ECHILD);
	child_check_rc(vmp_discard(o->fh), -ECHILD);
	child_check_rc(vmp_invalidate(o->fh, 0, 1), -ECHILD);
	child_check_rc(vmp_set_fault_error_handler(o->fh, NULL, NULL),
		       -ECHILD);
	child_check_rc(vmp_fileh_close(o->fh), -ECHILD);
	child_check_rc(vmp_ram_free(o->ram), -ECHILD);
	/* Address-based calls: the parent's mapping is not the child's. */
	rc = vmp_prefault(o->p, 4096, 0);
	child_check(rc == -ECHILD || rc == -EINVAL);
	rc = vmp_munmap(o->p);
	child_check(rc == -ECHILD || rc == -EINVAL);
	child_check_rc(vmp_handle_fault(o->p + 4096), 0);

	/* The child's own objects work. */
	{
		struct mock *m = mock_new(os_page(), 4, 0);
		vmp_ram *ram;
		char *p = NULL;

		child_check_rc(vmp_ram_new(&ram, 0), 0);
		child_check_rc(vmp_fileh_open(&fh, ram, m->store, 0), 0);
		child_check_rc(vmp_mmap(fh, 0, 4, PROT_READ | PROT_WRITE,
					(void **)&p), 0);
		child_check(gen_check(p + os_page(), os_page(), 1, 0) == 0);
		p[0] = 'k';
		child_check_rc(vmp_writeout(fh, VMP_WRITEOUT_STORE |
						    VMP_WRITEOUT_MARKSTORED), 0);
		child_check(m->store_calls == 1);
		child_check_rc(vmp_munmap(p), 0);
		child_check_rc(vmp_fileh_close(fh), 0);
		child_check_rc(vmp_ram_free(ram), 0);
	}
}

static void child_touch_loaded(void *arg)
{
	struct parent_objs *o = arg;

	(void)vmp_fault_handler_install();
	(void)peek(o->p + os_page()); /* loaded and dirty in the parent */
	child_fail(__FILE__, __LINE__, "parent's mapping readable in child");
}

static void child_touch_unloaded(void *arg)
{
	struct parent_objs *o = arg;

	(void)vmp_fault_handler_install();
	poke(o->p + 9 * os_page(), 1);
	child_fail(__FILE__, __LINE__, "parent's mapping writable in child");
}

static void test_fork(void **state)
{
	struct fix *f = begin(state);
	struct parent_objs o = { f->m, f->ram, f->fh, f->p };
	struct vmp_stats st;
	struct child_result r;
	char *copy = dirty_two(f);

	(void)peek(pg(f, 3));
	st = ram_stats(f->ram);

	run_child(child_calls_echild, &o, &r);
	assert_child_exited_ok(&r);
	run_child(child_touch_loaded, &o, &r);
	assert_child_signaled(&r, SIGSEGV);
	assert_int_equal(r.errlen, 0);
	run_child(child_touch_unloaded, &o, &r);
	assert_child_signaled(&r, SIGSEGV);
	assert_int_equal(r.errlen, 0);

	/* The parent is intact and goes on. */
	assert_dirty_kept(f, copy);
	assert_u64(ram_stats(f->ram).resident_bytes, st.resident_bytes);
	assert_int_equal(gen_check(pg(f, 3), f->ps, 3, 0), 0);
	pg(f, 9)[0] = 'p';
	assert_ok(vmp_writeout(f->fh, VMP_WRITEOUT_STORE |
				      VMP_WRITEOUT_MARKSTORED));
	assert_u64(f->m->store_calls, 3);
	assert_u64(dirty_count(f->fh), 0);
}

/* --- loadblk misbehaving ---------------------------------------------------- */

static int touch_own_page(struct mock *m, uint64_t blk, void *arg)
{
	(void)m;
	(void)blk;
	(void)peek(arg); /* the page being loaded */
	return 0;
}

static int child_record_handler(const struct vmp_fault_error *e, void *arg)
{
	(void)arg;
	child_info("HANDLER what %d err %d blk %llu\n", (int)e->what, e->err,
		   (unsigned long long)e->blk);
	return VMP_FAULT_DEFAULT;
}

static void child_recursion(void *arg)
{
	const size_t ps = os_page();
	struct mock *m;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	p = child_map_all(0, PROT_READ, &m, &fh);
	child_check_rc(vmp_set_fault_error_handler(fh, child_record_handler,
						   NULL), 0);
	m->hook_arg = p + 2 * ps;
	m->load_hook = touch_own_page;
	child_info("GUARD %d\n", guarded_peek(p + 2 * ps, NULL));
	/* Recovered: the page is not stuck, a well-behaved load works. */
	m->load_hook = NULL;
	child_check_rc(guarded_peek(p + 2 * ps, NULL), 0);
	child_check(gen_check(p + 2 * ps, ps, 2, 0) == 0);
}

/*
 * loadblk breaks its contract by touching the page it loads.  Either way is
 * acceptable, but never a hang: the error (VMP_FAULT_RECURSION) reaches the
 * guard, or the program dies of SIGBUS with the one-line message.  The
 * handler hears of it in both cases.
 */
static void test_loadblk_touches_own_page(void **state)
{
	struct child_result r;
	char want[64];

	(void)state;
	run_child(child_recursion, NULL, &r);
	snprintf(want, sizeof(want), "HANDLER what %d ", VMP_FAULT_RECURSION);
	if (!strstr(r.info, want))
		fail_msg("error handler not told of the recursion; child "
			 "said: %s; stderr: %s", r.info, r.err);
	if (WIFSIGNALED(r.status)) {
		assert_child_signaled(&r, SIGBUS);
		assert_one_line(r.err, 2, EDEADLK);
		print_message("recursion ended in SIGBUS: %s", r.err);
	} else {
		assert_child_exited_ok(&r);
		assert_true(strstr(r.info, "GUARD -") != NULL);
	}
}

static int munmap_rc;

static int unmap_in_load(struct mock *m, uint64_t blk, void *arg)
{
	(void)m;
	(void)blk;
	munmap_rc = vmp_munmap(arg);
	return 0;
}

static void child_munmap_in_load(void *arg)
{
	const size_t ps = os_page();
	struct mock *m;
	vmp_fileh *fh;
	char *p;

	(void)arg;
	p = child_map_all(0, PROT_READ, &m, &fh);
	m->hook_arg = p;
	m->load_hook = unmap_in_load;
	child_check(peek(p + 3 * ps) == gen_byte(3, 0, 0));
	child_check_rc(munmap_rc, -EDEADLK);
	m->load_hook = NULL;
	child_check_rc(vmp_munmap(p), 0);
}

static void test_munmap_from_loadblk(void **state)
{
	struct child_result r;

	(void)state;
	run_child(child_munmap_in_load, NULL, &r);
	assert_child_exited_ok(&r);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_sigbus),
		cmocka_unit_test(test_default_sigbus_memlimit),
		T(test_guard_returns_errno),
		T(test_guard_write_fault),
		T(test_prefault_error),
		T(test_guard_nests),
		T(test_guard_per_thread),
		T(test_handler_retry),
		T(test_handler_zero),
		T(test_handler_default),
		cmocka_unit_test(test_handler_default_unguarded),
		T(test_handle_fault_direct),
		T(test_handle_fault_error),
		T(test_own_handler_chains),
		T(test_fork),
		cmocka_unit_test(test_loadblk_touches_own_page),
		cmocka_unit_test(test_munmap_from_loadblk),
	};

	if (vmp_fault_handler_install() == -ENOSYS)
		return TEST_SKIP; /* libsigsegv cannot catch faults here */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
