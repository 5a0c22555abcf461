/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * thread-util.h: what the multi-threaded tests (test-threads.c,
 * test-stress.c) share on top of helpers.h.
 *
 *  - stamps: self-validating 64-bit words.  Word w of page p written with
 *    stamp s holds (s << 32) | hash(p, w, s).  A reader that does not know
 *    what the page should hold right now can still check that each word it
 *    sees was written for exactly that page and word, and by which write;
 *    bytes of another page, of another word, zeros or torn words fail.
 *  - ld64/st64: mapped memory that several threads touch at once is read and
 *    written with relaxed atomics, so that the test itself has no data race
 *    (ThreadSanitizer sees none) and the compiler keeps every access.
 *    Relaxed, not release/acquire: TSan performs a release store (or any
 *    stronger atomic) holding its per-thread slot lock; when the store
 *    faults, our SIGSEGV handler calls pthread_rwlock_rdlock, whose TSan
 *    interceptor takes that lock again, and the thread hangs.  Relaxed
 *    atomics and plain accesses fault outside TSan's locks.  (The same holds
 *    for any program run under TSan: no release/acq_rel/seq_cst atomics on
 *    pages that may not be loaded yet.)
 *  - tfail: worker threads must not call cmocka's asserts (they longjmp to
 *    the main thread's stack); they record the first failure here and stop,
 *    and the main thread fails the test with that message after the joins.
 *  - watchdog: a deadlock must fail the test, not hang it: SIGALRM prints
 *    what was running and aborts;
 *  - the cmocka setup and teardown of every such test, guarded_read() and
 *    run_threads().
 */
#ifndef VMP_TEST_THREAD_UTIL_H
#define VMP_TEST_THREAD_UTIL_H

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ld64(const void *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

static inline void st64(void *p, uint64_t v)
{
	__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
}

/* A thread fence; under TSan only a compiler barrier (TSan does not model
 * fences, gcc warns about them there; x86 orders these accesses anyway). */
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#ifdef TEST_TSAN
#define test_fence(order) __atomic_signal_fence(order)
#else
#define test_fence(order) __atomic_thread_fence(order)
#endif

/* --- stamps ----------------------------------------------------------------- */

static inline uint32_t stamp_hash(uint64_t page, uint64_t word, uint32_t s)
{
	uint64_t x = page * 0x9e3779b97f4a7c15ull ^ (word << 40) ^
		     ((uint64_t)s * 0xd1b54a32d192ed03ull) ^ 0x5555;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 32;
	return (uint32_t)x;
}

static inline uint64_t stamp_word(uint64_t page, uint64_t word, uint32_t s)
{
	return ((uint64_t)s << 32) | stamp_hash(page, word, s);
}

/* True if @v is a stamp word of (@page, @word); its stamp in *@s. */
static inline bool stamp_decode(uint64_t v, uint64_t page, uint64_t word,
				uint32_t *s)
{
	*s = (uint32_t)(v >> 32);
	return (uint32_t)v == stamp_hash(page, word, *s);
}

/*
 * The writer of a page publishes the stamp it is about to write (@pmax)
 * before writing any word with it; a reader calls stamp_newest() after it
 * read the words.  The fences pair up: a reader that saw a word with stamp
 * s then reads a pmax >= s.
 */
static inline void stamp_publish(uint32_t *pmax, uint32_t s)
{
	__atomic_store_n(pmax, s, __ATOMIC_RELAXED);
	test_fence(__ATOMIC_RELEASE);
}

static inline uint32_t stamp_newest(const uint32_t *pmax)
{
	test_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(pmax, __ATOMIC_RELAXED);
}

/* --- failures in worker threads ------------------------------------------- */

struct tfail {
	pthread_mutex_t lock;
	int failed; /* atomic */
	char msg[4096];
};

static struct tfail tfail_state = { .lock = PTHREAD_MUTEX_INITIALIZER };

static inline void tfail_reset(void)
{
	__atomic_store_n(&tfail_state.failed, 0, __ATOMIC_SEQ_CST);
	tfail_state.msg[0] = '\0';
}

static inline bool tfailed(void)
{
	return __atomic_load_n(&tfail_state.failed, __ATOMIC_ACQUIRE);
}

/* Record the first failure (later ones are counted in the message). */
static inline void __attribute__((format(printf, 1, 2)))
tfail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&tfail_state.lock);
	if (!tfail_state.failed) {
		va_start(ap, fmt);
		vsnprintf(tfail_state.msg, sizeof(tfail_state.msg), fmt, ap);
		va_end(ap);
		__atomic_store_n(&tfail_state.failed, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&tfail_state.lock);
}

/* Main thread, after joining the workers. */
#define assert_no_thread_failure()                                             \
	do {                                                                   \
		if (tfailed())                                                 \
			fail_msg("%s", tfail_state.msg);                       \
	} while (0)

/* --- watchdog --------------------------------------------------------------- */

static char watchdog_msg[256];

static inline void watchdog_fire(int sig)
{
	(void)sig;
	(void)!write(2, watchdog_msg, strlen(watchdog_msg));
	abort();
}

/* Abort with a message naming @what if not disarmed within @seconds. */
static inline void watchdog_arm(unsigned seconds, const char *what)
{
	struct sigaction sa;

	snprintf(watchdog_msg, sizeof(watchdog_msg),
		 "\nwatchdog: %s did not finish within %u s: deadlock? "
		 "aborting\n", what, seconds);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = watchdog_fire;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds);
}

static inline void watchdog_disarm(void)
{
	alarm(0);
}

/* --- reads, threads, fixtures ------------------------------------------- */

struct rjob {
	const char *addr;
	uint64_t *buf;
	size_t n;
};

static inline int rjob_run(void *arg)
{
	struct rjob *j = arg;

	for (size_t i = 0; i < j->n; i++)
		j->buf[i] = ld64(j->addr + 8 * i);
	return 0;
}

/* Read @n words at @addr into @buf under vmp_guard. */
static inline int guarded_read(const char *addr, uint64_t *buf, size_t n)
{
	struct rjob j = { addr, buf, n };

	return vmp_guard(rjob_run, &j);
}

/* Run @fn(@arg) in @n threads (at most 64) and wait for all of them. */
static inline void run_threads(unsigned n, void *(*fn)(void *), void *arg)
{
	pthread_t tid[64];

	assert_true(n <= ARRAY_LEN(tid));
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_create(&tid[i], NULL, fn, arg), 0);
	for (unsigned i = 0; i < n; i++)
		pthread_join(tid[i], NULL);
}

/* The time a stress test gets in all: VMPAGE_STRESS_SECONDS, default 3. */
static inline double stress_seconds(void)
{
	const char *s = getenv("VMPAGE_STRESS_SECONDS");
	double v = s && *s ? atof(s) : 3.0;

	return v > 0 ? v : 3.0;
}

static int thread_test_fds; /* open fds before the test */

/* cmocka setup and teardown of a threaded test: no failure recorded yet,
 * no watchdog left armed, no fd left open. */
static inline int thread_test_setup(void **state)
{
	(void)state;
	thread_test_fds = count_open_fds();
	tfail_reset();
	return 0;
}

static inline int thread_test_teardown(void **state)
{
	(void)state;
	watchdog_disarm();
	assert_no_fd_leak(thread_test_fds);
	return 0;
}

#endif /* VMP_TEST_THREAD_UTIL_H */
