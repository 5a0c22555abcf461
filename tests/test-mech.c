/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-mech.c: the fault mechanisms (issue 13).
 *
 *  - VMPAGE_FAULTS and vmp_ram_set_faults(): values, errors, messages;
 *    what VMP_FAULTS_AUTO picked (vmp_ram_faults);
 *  - a first-touch write takes one fault where the CPU says it is a write;
 *  - userfaultfd has no kernel mapping wall: more isolated dirty pages than
 *    the SIGSEGV mechanism can hold, one kernel mapping, and a second pass
 *    over resident pages that takes no fault;
 *  - an overlay handle of a userfaultfd RAM works (it uses SIGSEGV);
 *  - edges found by review: a block larger than an OS page that lost the
 *    entry of one OS page, an instruction fetch from a mapping, a fault
 *    whose access is unknown (vmp_handle_fault) on a page another thread
 *    mapped, a signal handler touching a mapping during a library call.
 *
 * The rest of the suite runs under each mechanism (meson test --setup=uffd).
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* Setup and teardown: no test sees, or leaves, a $VMPAGE_FAULTS. */
static char *saved_faults;

static int setup(void **state)
{
	const char *s = getenv("VMPAGE_FAULTS");

	(void)state;
	saved_faults = s ? strdup(s) : NULL;
	unsetenv("VMPAGE_FAULTS");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (saved_faults)
		setenv("VMPAGE_FAULTS", saved_faults, 1);
	free(saved_faults);
	saved_faults = NULL;
	return 0;
}

/* Can this process use userfaultfd?  Asks the library. */
static bool uffd_here(void)
{
	vmp_ram *ram;
	bool ok;

	assert_ok(vmp_ram_new(&ram, 0));
	ok = vmp_ram_set_faults(ram, VMP_FAULTS_UFFD) == 0;
	assert_ok(vmp_ram_free(ram));
	return ok;
}

static int new_ram(void *arg)
{
	vmp_ram **ramp = arg;

	return vmp_ram_new(ramp, 0);
}

/* vmp_ram_new with VMPAGE_FAULTS=@value: its return, its mechanism in
 * *@faults, its stderr in @err. */
static int ram_with_env(const char *value, int *faults, char *err, size_t len)
{
	vmp_ram *ram = NULL;
	int rc;

	setenv("VMPAGE_FAULTS", value, 1);
	rc = capture_stderr(new_ram, &ram, err, len);
	unsetenv("VMPAGE_FAULTS");
	*faults = 0;
	if (rc == 0) {
		*faults = vmp_ram_faults(ram);
		assert_ok(vmp_ram_free(ram));
	}
	return rc;
}

static void test_faults_env(void **state)
{
	bool uffd = uffd_here();
	int faults;
	char err[512];

	(void)state;
	assert_ok(ram_with_env("", &faults, err, sizeof(err)));
	assert_int_equal(faults, VMP_FAULTS_SIGSEGV);
	assert_ok(ram_with_env("sigsegv", &faults, err, sizeof(err)));
	assert_int_equal(faults, VMP_FAULTS_SIGSEGV);
	assert_string_equal(err, "");
	assert_ok(ram_with_env("auto", &faults, err, sizeof(err)));
	assert_int_equal(faults, uffd ? VMP_FAULTS_UFFD : VMP_FAULTS_SIGSEGV);
	if (uffd) {
		assert_ok(ram_with_env("uffd", &faults, err, sizeof(err)));
		assert_int_equal(faults, VMP_FAULTS_UFFD);
	} else {
		int rc = ram_with_env("uffd", &faults, err, sizeof(err));
		if (rc != -ENOSYS && rc != -EPERM)
			fail_msg("VMPAGE_FAULTS=uffd without userfaultfd: %s",
				 errname(rc));
		assert_non_null(strstr(err, "VMPAGE_FAULTS=uffd"));
	}
	const char *bad[] = { "UFFD", "segv", "uffd ", "1", "auto,uffd" };
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		assert_rc(ram_with_env(bad[i], &faults, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i]))
			fail_msg("VMPAGE_FAULTS=\"%s\": message does not name it: %s",
				 bad[i], err);
	}
}

static void test_set_faults(void **state)
{
	struct mock *m = mock_new(os_page(), 16, 0);
	bool uffd = uffd_here();
	vmp_ram *ram;
	vmp_fileh *fh;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_rc(vmp_ram_set_faults(NULL, VMP_FAULTS_SIGSEGV), -EINVAL);
	assert_rc(vmp_ram_faults(NULL), -EINVAL);
	assert_ok(vmp_ram_new(&ram, 0));
	assert_int_equal(vmp_ram_faults(ram), VMP_FAULTS_SIGSEGV);
	assert_rc(vmp_ram_set_faults(ram, 0), -EINVAL);
	assert_rc(vmp_ram_set_faults(ram, 4), -EINVAL);
	assert_rc(vmp_ram_set_faults(ram, -1), -EINVAL);
	assert_ok(vmp_ram_set_faults(ram, VMP_FAULTS_AUTO));
	assert_int_equal(vmp_ram_faults(ram),
			 uffd ? VMP_FAULTS_UFFD : VMP_FAULTS_SIGSEGV);
	fh = open_fh(ram, m, 0);
	/* the handle uses it, and the RAM keeps it while handles are open */
	assert_rc(vmp_ram_set_faults(ram, VMP_FAULTS_SIGSEGV), -EBUSY);
	{
		char *p = map_pages(fh, 0, 16, PROT_READ | PROT_WRITE);
		assert_int_equal(gen_check(p + 3 * os_page(), os_page(), 3, 0), 0);
		p[5 * os_page()] = 1;
		assert_u64(dirty_count(fh), 1);
		assert_ok(vmp_munmap(p));
	}
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_set_faults(ram, VMP_FAULTS_SIGSEGV));
	assert_int_equal(vmp_ram_faults(ram), VMP_FAULTS_SIGSEGV);
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* A fresh page written first: one fault (x86-64 tells a write apart). */
static void test_first_write_one_fault(void **state)
{
	struct mock *m = mock_new(os_page(), 16, 0);
	int mechs[] = { VMP_FAULTS_SIGSEGV, VMP_FAULTS_UFFD };

	(void)state;
#if !defined(__x86_64__)
	skip();
#endif
	assert_ok(vmp_fault_handler_install());
	for (size_t i = 0; i < ARRAY_LEN(mechs); i++) {
		vmp_ram *ram;
		vmp_fileh *fh;
		char *p;

		assert_ok(vmp_ram_new(&ram, 0));
		if (vmp_ram_set_faults(ram, mechs[i])) {
			assert_ok(vmp_ram_free(ram));
			continue; /* no userfaultfd here */
		}
		fh = open_fh(ram, m, VMP_NO_READAHEAD);
		p = map_pages(fh, 0, 16, PROT_READ | PROT_WRITE);
		poke(p + 7 * os_page() + 5, 42);
		assert_u64(ram_stats(ram).faults, 1);
		assert_u64(dirty_count(fh), 1);
		assert_int_equal(peek(p + 7 * os_page() + 5), 42);
		assert_int_equal(peek(p + 7 * os_page()), gen_byte(7, 0, 0));
		assert_ok(vmp_munmap(p));
		assert_ok(vmp_fileh_close(fh));
		assert_ok(vmp_ram_free(ram));
	}
	mock_free(m);
}

/* More isolated dirty pages than the SIGSEGV mechanism can hold (about
 * 28 600 with vm.max_map_count 65530), and a second pass over the resident
 * pages that takes no fault at all. */
#define WALL_PAGES 40000

static void test_no_vma_wall(void **state)
{
	size_t ps = os_page();
	struct mock *m;
	vmp_ram *ram;
	vmp_fileh *fh;
	long maps_before;
	uint64_t faults;
	char *p;

	(void)state;
	if (!uffd_here())
		skip();
	m = mock_new(ps, 2 * WALL_PAGES, MOCK_NO_HOOKS);
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	assert_ok(vmp_ram_set_faults(ram, VMP_FAULTS_UFFD));
	fh = open_fh(ram, m, VMP_NO_READAHEAD);
	maps_before = count_kernel_maps();
	p = map_pages(fh, 0, 2 * WALL_PAGES, PROT_READ | PROT_WRITE);
	for (uint64_t i = 0; i < WALL_PAGES; i++)
		(void)peek(p + 2 * i * ps);
	faults = ram_stats(ram).faults;
	for (uint64_t i = 0; i < WALL_PAGES; i++)
		if (peek(p + 2 * i * ps + 1) != gen_byte(2 * i, 1, 0))
			fail_msg("page %llu: wrong bytes", (unsigned long long)(2 * i));
	assert_u64(ram_stats(ram).faults, faults); /* all mapped still */
	for (uint64_t i = 0; i < WALL_PAGES; i++)
		poke(p + 2 * i * ps + 3, (uint8_t)(i | 1));
	assert_u64(dirty_count(fh), WALL_PAGES);
	/* the mapping, a few buffers (and under ThreadSanitizer, its own
	 * allocator's mappings): nothing like one per page */
	assert_u64_le(count_kernel_maps(), maps_before + 64);
	assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED));
	assert_u64(dirty_count(fh), 0);
	for (uint64_t i = 0; i < WALL_PAGES; i += 997) {
		uint8_t buf[4096];
		assert_true(ps <= sizeof(buf));
		memcpy(buf, p + 2 * i * ps, ps);
		assert_int_equal(buf[3], (uint8_t)(i | 1));
		assert_int_equal(mock_stores(m, 2 * i), 1);
	}
	/* dirty them again, then throw the change away */
	for (uint64_t i = 0; i < WALL_PAGES; i++)
		poke(p + 2 * i * ps + 3, 0xee);
	assert_ok(vmp_discard(fh));
	assert_int_equal(peek(p + 3), 1); /* the stored bytes again */
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* Overlay handles of a userfaultfd RAM take their faults through SIGSEGV
 * (write-protect works on memfd pages, not on the base file's). */
static void test_overlay_in_uffd_ram(void **state)
{
	struct mock *m = mock_new(os_page(), 8, MOCK_FILE);
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	if (!uffd_here())
		skip();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	assert_ok(vmp_ram_set_faults(ram, VMP_FAULTS_UFFD));
	fh = open_fh(ram, m, VMP_OVERLAY);
	p = map_pages(fh, 0, 8, PROT_READ | PROT_WRITE);
	assert_int_equal(gen_check(p + 2 * os_page(), os_page(), 2, 0), 0);
	p[4 * os_page()] = 9;
	assert_u64(dirty_count(fh), 1);
	assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED));
	assert_int_equal(peek(p + 4 * os_page()), 9);
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* A RAM with mechanism @faults, or NULL if it cannot be had here. */
static vmp_ram *ram_with(int faults)
{
	vmp_ram *ram;

	if (vmp_ram_new(&ram, 0))
		return NULL;
	if (vmp_ram_set_faults(ram, faults)) {
		(void)vmp_ram_free(ram);
		return NULL;
	}
	return ram;
}

static const int mechs[] = { VMP_FAULTS_SIGSEGV, VMP_FAULTS_UFFD };

/* A 16 KiB block whose second OS page lost its page-table entry (swap-out
 * or memory-cgroup reclaim do that; MADV_DONTNEED here): reading it maps
 * that OS page, it does not loop on the others, mapped already. */
static void child_big_block_partly_unmapped(void *arg)
{
	size_t ps = os_page(), bs = 4 * ps;
	struct mock *m = mock_new(bs, 8, 0);
	vmp_ram *ram = ram_with((int)(intptr_t)arg);
	vmp_fileh *fh;
	char *p;

	if (!ram)
		return;
	child_check_rc(vmp_fileh_open(&fh, ram, m->store, VMP_NO_READAHEAD), 0);
	child_check_rc(vmp_mmap(fh, 0, 8, PROT_READ, (void **)&p), 0);
	child_check(gen_check(p + bs, bs, 1, 0) == 0);
	child_check(madvise(p + bs + ps, ps, MADV_DONTNEED) == 0);
	child_check(gen_check(p + bs, bs, 1, 0) == 0);
	child_check_rc(vmp_prefault(p + bs, bs, 0), 0);
	child_check_rc(vmp_munmap(p), 0);
	child_check_rc(vmp_fileh_close(fh), 0);
	child_check_rc(vmp_ram_free(ram), 0);
}

static void test_big_block_partly_unmapped(void **state)
{
	struct child_result r;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(mechs); i++) {
		run_child(child_big_block_partly_unmapped,
			  (void *)(intptr_t)mechs[i], &r);
		assert_child_exited_ok(&r);
	}
}

/* Jumping into a mapping (no PROT_EXEC) crashes, as without the library:
 * an instruction fetch is no page state of ours. */
static void child_exec_mapping(void *arg)
{
	struct mock *m = mock_new(os_page(), 8, 0);
	vmp_ram *ram = ram_with((int)(intptr_t)arg);
	vmp_fileh *fh;
	char *p;

	if (!ram) {
		raise(SIGSEGV); /* what the test expects of the others */
		return;
	}
	child_check_rc(vmp_fileh_open(&fh, ram, m->store, 0), 0);
	child_check_rc(vmp_mmap(fh, 0, 8, PROT_READ, (void **)&p), 0);
	(void)peek(p + os_page()); /* loaded, mapped readable */
	((void (*)(void))(uintptr_t)(p + os_page()))();
	child_fail(__FILE__, __LINE__, "executed a mapped page");
}

static void test_exec_crashes(void **state)
{
	struct child_result r;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(mechs); i++) {
		run_child(child_exec_mapping, (void *)(intptr_t)mechs[i], &r);
		assert_child_signaled(&r, SIGSEGV);
	}
}

static void *read_page(void *arg)
{
	return (void *)(uintptr_t)peek(arg);
}

/* vmp_handle_fault knows nothing of the access: for a page another thread
 * mapped meanwhile it must not guess "a write" and dirty it. */
static void test_unknown_access_not_dirty(void **state)
{
	struct mock *m = mock_new(os_page(), 8, 0);

	(void)state;
	assert_ok(vmp_fault_handler_install());
	for (size_t i = 0; i < ARRAY_LEN(mechs); i++) {
		vmp_ram *ram = ram_with(mechs[i]);
		vmp_fileh *fh;
		pthread_t th;
		char *p;

		if (!ram)
			continue;
		fh = open_fh(ram, m, VMP_NO_READAHEAD);
		p = map_pages(fh, 0, 8, PROT_READ | PROT_WRITE);
		assert_int_equal(pthread_create(&th, NULL, read_page, p), 0);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_rc(vmp_handle_fault(p), 1); /* as a stale read would */
		assert_u64(dirty_count(fh), 0);
		assert_ok(vmp_munmap(p));
		assert_ok(vmp_fileh_close(fh));
		assert_ok(vmp_ram_free(ram));
	}
	mock_free(m);
}

/* A signal handler that touches a mapping while the thread is inside a
 * library call holding its lock: the program dies of the fault (library
 * calls are not async-signal-safe), it does not hang. */
static char *alarm_page;

static void touch_on_alarm(int sig)
{
	(void)sig;
	(void)peek(alarm_page);
}

static void child_signal_during_call(void *arg)
{
	struct mock *m = mock_new(os_page(), 64, 0);
	vmp_ram *ram = ram_with((int)(intptr_t)arg);
	struct itimerval it = { { 0, 200 }, { 0, 200 } };
	struct sigaction sa = { .sa_handler = touch_on_alarm };
	vmp_fileh *fh;

	if (!ram)
		return;
	child_check_rc(vmp_fileh_open(&fh, ram, m->store, 0), 0);
	child_check_rc(vmp_mmap(fh, 0, 64, PROT_READ, (void **)&alarm_page), 0);
	sigemptyset(&sa.sa_mask);
	child_check(sigaction(SIGPROF, &sa, NULL) == 0);
	child_check(setitimer(ITIMER_PROF, &it, NULL) == 0);
	for (int i = 0; i < 200000; i++) {
		struct vmp_stats st;
		child_check_rc(vmp_ram_stats(ram, &st), 0);
		if (i % 64 == 0) /* let it go again, so the next touch faults */
			child_check_rc(vmp_invalidate(fh, 0, 64), 0);
	}
}

static void test_signal_during_call(void **state)
{
	struct child_result r;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(mechs); i++) {
		run_child(child_signal_during_call, (void *)(intptr_t)mechs[i], &r);
		/* dead of the fault, or lucky: never a hang (SIGALRM) */
		if (WIFSIGNALED(r.status) && WTERMSIG(r.status) != SIGSEGV &&
		    WTERMSIG(r.status) != SIGBUS)
			fail_msg("child killed by signal %d", WTERMSIG(r.status));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_faults_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_write_one_fault, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_no_vma_wall, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlay_in_uffd_ram, setup,
						teardown),
		cmocka_unit_test(test_big_block_partly_unmapped),
		cmocka_unit_test(test_exec_crashes),
		cmocka_unit_test(test_unknown_access_not_dirty),
		cmocka_unit_test(test_signal_during_call),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
