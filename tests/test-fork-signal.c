/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-fork-signal.c: fork() in one thread while another, making a
 * mapping, takes a signal whose handler touches a libvmpage mapping.
 *
 * Making a mapping (mmap, then MADV_DONTFORK) holds a lock that fork()
 * takes too, so that no child inherits a mapping made in between (see
 * src/os.c).  fork()'s prepare handlers take the library's other locks
 * first, among them the one a fault needs to find its mapping: so a
 * signal handler that faulted while its thread held the mapping lock
 * would wait for fork(), which waits for it.  The library blocks signals
 * while it holds that lock; the handler runs once the mapping is made.
 *
 * The window between the two calls is made wide by defining madvise() here
 * (the library's calls come to it): the first MADV_DONTFORK of the armed
 * vmp_mmap starts the forking thread, gives it time to get into fork(),
 * and raises SIGUSR1 in the mapping thread.  Its own binary, for that.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "thread-util.h"

static int armed;         /* atomic: the next MADV_DONTFORK starts it */
static int handled;       /* atomic: the handler ran */
static int forked;        /* atomic: fork() returned in the parent */
static char *touch_map;   /* a mapping the handler reads */
static pthread_t forker;

static void *forker_main(void *arg)
{
	pid_t pid;

	(void)arg;
	pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	__atomic_store_n(&forked, 1, __ATOMIC_RELEASE);
	return NULL;
}

int madvise(void *addr, size_t len, int advice)
{
	if (advice == MADV_DONTFORK &&
	    __atomic_exchange_n(&armed, 0, __ATOMIC_ACQ_REL)) {
		if (pthread_create(&forker, NULL, forker_main, NULL) == 0) {
			usleep(200 * 1000); /* the forker: into fork() */
			raise(SIGUSR1);
		}
	}
	return (int)syscall(SYS_madvise, addr, len, advice);
}

static void on_usr1(int sig)
{
	(void)sig;
	(void)peek(touch_map + 3 * os_page()); /* absent: a library fault */
	__atomic_store_n(&handled, 1, __ATOMIC_RELEASE);
}

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static void test_fork_while_mapping_and_signal(void **state)
{
#ifdef UNDER_TSAN
	/* TSan runs its own madvise() calls and defers signals to its own
	 * safe points: neither the window nor the signal is what it tests */
	(void)state;
	print_message("not under ThreadSanitizer\n");
	skip();
#endif
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 64, MOCK_READONLY | MOCK_NO_HOOKS);
	struct sigaction sa = { .sa_handler = on_usr1 }, old;
	vmp_ram *ram;
	vmp_fileh *fh;
	void *second;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	watchdog_arm(20, "test_fork_while_mapping_and_signal");
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	touch_map = map_pages(fh, 0, 16, PROT_READ);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);

	__atomic_store_n(&armed, 1, __ATOMIC_RELEASE);
	assert_ok(vmp_mmap(fh, 16, 16, PROT_READ, &second));
	assert_int_equal(pthread_join(forker, NULL), 0);
	assert_int_equal(__atomic_load_n(&handled, __ATOMIC_ACQUIRE), 1);
	assert_int_equal(__atomic_load_n(&forked, __ATOMIC_ACQUIRE), 1);
	assert_int_equal(gen_check(touch_map + 3 * ps, ps, 3, 0), 0);

	assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
	assert_ok(vmp_munmap(second));
	assert_ok(vmp_munmap(touch_map));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
	watchdog_disarm();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fork_while_mapping_and_signal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
