/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * helpers.h: what every libvmpage test shares.
 *
 *  - content: bytes of block b at version v are a pure function
 *    gen_fill(buf, blksize, b, v), so any page can be checked without keeping
 *    a copy of the store;
 *  - struct mock: a store that counts every callback per block, can fail the
 *    n-th loadblk/storeblk/begin/commit with a chosen errno, can sleep or
 *    block in loadblk/storeblk, and keeps stored blocks (in memory, or in a
 *    temporary file that it also offers as ops->base for VMP_OVERLAY);
 *  - crash tests: run a function in a fork()ed child, collect how it died
 *    and what it printed on stderr;
 *  - the process's view: open fds, RssShmem, memfd blocks, kernel mappings.
 *
 * The mock's loadblk runs inside the library's SIGSEGV handler: it never
 * allocates, and its lock is never held by code that touches mapped memory.
 */
#ifndef VMP_TEST_HELPERS_H
#define VMP_TEST_HELPERS_H

#include <errno.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/types.h>

#include <cmocka.h>

#include "vmpage.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define TiB ((uint64_t)1 << 40)

/* The "1 TiB" mappings of the tests.  ThreadSanitizer leaves programs only
 * pieces of about 1.5 TiB of address space, where 1 TiB may not fit: under
 * it they map 64 GiB. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifdef UNDER_TSAN
#define BIG_SPAN (64 * GiB)
#else
#define UNDER_TSAN 0
#define BIG_SPAN TiB
#endif

#define TEST_SKIP 77 /* meson's "skipped" exit code */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Asserts with errno names in the message (cmocka prints ints in hex). */
const char *errname(int err); /* "-EINVAL", "0", "-E?(123)" */
#define assert_rc(expr, want)                                                  \
	do {                                                                   \
		int rc_ = (expr);                                              \
		int want_ = (want);                                            \
		if (rc_ != want_)                                              \
			fail_msg("%s returned %s (%d), expected %s (%d)",     \
				 #expr, errname(rc_), rc_, errname(want_),     \
				 want_);                                       \
	} while (0)
#define assert_ok(expr) assert_rc(expr, 0)
#define assert_u64(got, want)                                                  \
	do {                                                                   \
		uint64_t g_ = (got), w_ = (want);                              \
		if (g_ != w_)                                                  \
			fail_msg("%s is %llu, expected %s = %llu", #got,       \
				 (unsigned long long)g_, #want,                \
				 (unsigned long long)w_);                      \
	} while (0)
#define assert_u64_le(got, bound)                                              \
	do {                                                                   \
		uint64_t g_ = (got), b_ = (bound);                             \
		if (g_ > b_)                                                   \
			fail_msg("%s is %llu, more than %s = %llu", #got,      \
				 (unsigned long long)g_, #bound,               \
				 (unsigned long long)b_);                      \
	} while (0)

/* --- content ------------------------------------------------------------ */

/* Fill @buf (@len bytes, a multiple of 8) with block @blk at @version. */
void gen_fill(void *buf, size_t len, uint64_t blk, uint32_t version);
/* Byte @off of block @blk at @version, for blocks of @blksize bytes. */
uint8_t gen_byte(uint64_t blk, size_t off, uint32_t version);
/* 0 if @buf holds block @blk at @version, else 1 + the first bad offset. */
size_t gen_check(const void *buf, size_t len, uint64_t blk, uint32_t version);

/* A small deterministic PRNG (xorshift64*), for tests and the model. */
struct rng {
	uint64_t s;
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
uint64_t rng_below(struct rng *r, uint64_t n); /* [0, n), n > 0 */
/* The seed from $VMPAGE_SEED, else @fixed. */
uint64_t test_seed(uint64_t fixed);

/* --- mock store --------------------------------------------------------- */

enum mock_flags {
	MOCK_READONLY = 1u << 0, /* no storeblk */
	MOCK_NO_HOOKS = 1u << 1, /* no writeout_begin/commit/abort */
	MOCK_FILE = 1u << 2,     /* blocks live in a temp file; offers base */
	MOCK_NO_BASE = 1u << 3,  /* with MOCK_FILE: do not offer ops->base */
	MOCK_BATCH = 1u << 4,    /* offer ops->loadblks */
};

/* Make the (at)-th call (1-based, counting only calls for block @blk, or
 * all calls when blk < 0) and the (times - 1) calls after it fail with
 * @err (negative).  times == 0 means forever.  at == 0 disables. */
struct mock_fail {
	uint64_t at;
	uint64_t times;
	int err;
	int64_t blk;
	uint64_t seen; /* matching calls so far */
};

/* Per-block record, in an open-addressing table sized at creation. */
struct mock_blk {
	uint64_t blk;      /* UINT64_MAX: free slot */
	uint64_t loads;    /* loadblk calls and loadblks calls covering it,
			      failed ones included */
	uint64_t stores;   /* storeblk calls, failed ones included */
	uint32_t version;  /* content version (mock_change bumps it) */
	void *data;        /* in-memory mock: last stored bytes, or NULL */
};

struct mock;
/* Hook run by loadblk/storeblk after the bytes moved and before returning;
 * its nonzero return becomes the callback's return. */
typedef int (*mock_hook)(struct mock *m, uint64_t blk, void *arg);

struct mock {
	vmp_store *store;  /* ready to pass to vmp_fileh_open(); NULL once
			      mock_store_free() dropped it */
	vmp_store_ops ops; /* what the store was created with */
	size_t blksize;
	uint64_t nblocks;  /* blocks past the end read as zeros */
	unsigned flags;
	int fd;            /* MOCK_FILE: the temp file, else -1 */

	pthread_mutex_t lock; /* guards everything below but the atomics */
	struct mock_blk *tab;
	size_t tabcap;        /* power of two */
	bool tab_full;        /* a block could not be recorded: counts wrong */

	/* totals (atomic); load_ok counts blocks, from either callback */
	uint64_t load_calls, load_ok, store_calls, store_ok;
	uint64_t batch_calls, batch_blocks; /* loadblks calls, their blocks */
	uint64_t begins, commits, aborts;
	uint64_t releases; /* ops->release calls: 1 once the store is gone */

	/* fail_batch: per loadblks call, its blk is the run's first block */
	struct mock_fail fail_load, fail_store, fail_begin, fail_commit;
	struct mock_fail fail_batch;
	unsigned load_sleep_us; /* sleep in every loadblk */

	mock_hook load_hook, store_hook;
	void *hook_arg;

	/* Writeout event log: 'B'egin, 'S'tore, 'C'ommit, 'A'bort, 'x' for a
	 * failed store, 'c' failed commit, 'b' failed begin. */
	char events[512];
	size_t nevents;
	uint64_t store_order[256]; /* blocks in storeblk order */
	size_t nstore_order;
};

/* An in-memory store of @nblocks blocks of @blksize bytes, every block at
 * version 0 until changed.  Never fails unless told to.  m->store is the
 * library's store object over it (vmp_store_new), owned by the mock. */
struct mock *mock_new(size_t blksize, uint64_t nblocks, unsigned flags);
/* The generated store: 1 TiB of @blksize blocks, read-only, no hooks. */
struct mock *mock_new_generated(size_t blksize);
/* Drop the program's reference to m->store (vmp_store_free) and set it to
 * NULL, keeping the mock and its counts: release runs now if no handle is
 * open on the store, else when the last one closes. */
void mock_store_free(struct mock *m);
/* Free the mock, and its store if mock_store_free() did not.  Fails if the
 * store is not gone then (release never called): a handle still open on it
 * would call release on freed memory. */
void mock_free(struct mock *m);

/* What loadblk would give for @blk now. */
void mock_expected(struct mock *m, uint64_t blk, void *buf);
/* 0 if @buf (blksize bytes) is what the store holds for @blk. */
int mock_check(struct mock *m, uint64_t blk, const void *buf);
/* The store changed underneath: @blk gets the next version of its bytes. */
void mock_change(struct mock *m, uint64_t blk);
uint64_t mock_loads(struct mock *m, uint64_t blk);
uint64_t mock_stores(struct mock *m, uint64_t blk);
/* Set a failure rule (see struct mock_fail) under the mock's lock. */
void mock_set_fail(struct mock *m, struct mock_fail *which, int64_t blk,
		   uint64_t at, uint64_t times, int err);
/* Reset counters, event log and failure settings (not the content). */
void mock_reset_counts(struct mock *m);
/* The event log as a string ("BSSC"). */
const char *mock_events(struct mock *m);

/* A gate: the next loadblk (or storeblk) of @blk posts ->entered after its
 * bytes moved, then waits for ->go (at most 5 s, then sets ->timed_out). */
struct gate {
	int64_t blk;
	bool on_store;     /* gate storeblk instead of loadblk */
	sem_t entered, go;
	bool armed;
	bool timed_out;
};
void gate_init(struct gate *g, int64_t blk, bool on_store);
void gate_destroy(struct gate *g);
/* Install @g as the mock's hook (uses load_hook/store_hook and hook_arg). */
void mock_set_gate(struct mock *m, struct gate *g);
/* Wait (up to 5 s) until the gated call is inside; false on timeout. */
bool gate_wait_entered(struct gate *g);
void gate_open(struct gate *g);

/* --- library objects ---------------------------------------------------- */

/* ram + handle on @m, asserting success. */
vmp_fileh *open_fh(vmp_ram *ram, struct mock *m, unsigned flags);
/* A handle on a store of @ops and @ctx made for it alone: the store is
 * created, the handle opened and the store freed at once, so that it goes
 * (release(ctx) if any) when the handle closes.  The first error of the
 * three calls (-EINVAL for bad @blksize), *@fhp unchanged then.  No
 * assert: for forked children too. */
int open_fh_ops(vmp_fileh **fhp, vmp_ram *ram, const vmp_store_ops *ops,
		void *ctx, size_t blksize, unsigned flags);
void *map_pages(vmp_fileh *fh, uint64_t pgoffset, uint64_t pglen, int prot);
uint64_t dirty_count(const vmp_fileh *fh);
struct vmp_stats ram_stats(vmp_ram *ram);

/* Touch memory the compiler may not elide. */
static inline uint8_t peek(const void *p)
{
	return *(const volatile uint8_t *)p;
}
static inline void poke(void *p, uint8_t v)
{
	*(volatile uint8_t *)p = v;
}

/* An arbitrary address, hidden from the compiler's bounds checks. */
static inline void *bad_address(uintptr_t a)
{
	void *volatile p = (void *)a;

	return p;
}

/* vmp_guard wrappers for single accesses. */
int guarded_peek(const void *p, uint8_t *out);
int guarded_poke(void *p, uint8_t v);

/* A fault error handler (vmp_set_fault_error_handler, arg: a struct
 * fault_seen) that counts its calls, keeps the last error and answers
 * ->answer; VMP_FAULT_RETRY only ->answer_until times, then
 * VMP_FAULT_DEFAULT.  Zeroed, it always answers VMP_FAULT_DEFAULT. */
struct fault_seen {
	int calls;
	int answer_until;
	int answer;
	struct vmp_fault_error last;
};
int record_fault_handler(const struct vmp_fault_error *e, void *arg);

/* --- crash tests -------------------------------------------------------- */

struct child_result {
	int status;        /* from waitpid */
	char err[8192];    /* what the child wrote on stderr */
	size_t errlen;
	char info[1024];   /* what the child wrote with child_info() */
	bool sig_seen;     /* child_catch_sigbus(): the SIGBUS siginfo */
	int sig_code;
	uintptr_t sig_addr;
};
/*
 * Run fn(arg) in a fork()ed child whose stderr goes to a pipe, with
 * SIGSEGV and SIGBUS at their default actions (cmocka's handlers removed,
 * as in a program without cmocka), no core dump, and a 10 s alarm.  The
 * child exits 0 when fn returns.
 */
void run_child(void (*fn)(void *arg), void *arg, struct child_result *r);
/* In the child: fail with a message and exit code 1 if !cond. */
#define child_check(cond)                                                      \
	do {                                                                   \
		if (!(cond))                                                   \
			child_fail(__FILE__, __LINE__, #cond);                 \
	} while (0)
#define child_check_rc(expr, want)                                             \
	do {                                                                   \
		int crc_ = (expr);                                             \
		if (crc_ != (want))                                            \
			child_fail_rc(__FILE__, __LINE__, #expr, crc_, (want));\
	} while (0)
void child_fail(const char *file, int line, const char *what)
	__attribute__((noreturn));
void child_fail_rc(const char *file, int line, const char *what, int got,
		   int want) __attribute__((noreturn));
/* In the child: tell the parent something (struct child_result info). */
void child_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* In the child: install a SIGBUS handler that reports si_addr and si_code
 * to the parent (struct child_result sig_*) and then dies of SIGBUS. */
void child_catch_sigbus(void);
/* Assert the child was killed by @sig (prints its stderr otherwise). */
void assert_child_signaled(const struct child_result *r, int sig);
void assert_child_exited_ok(const struct child_result *r);

/* --- the process's view ------------------------------------------------- */

/* Temp file of @size bytes holding generated blocks of @blksize at version
 * 0 (a partial last block is cut); unlinked, O_RDWR.  Returns the fd. */
int temp_file(uint64_t size, size_t blksize);
int count_open_fds(void);
#define assert_no_fd_leak(before)                                              \
	do {                                                                   \
		int now_ = count_open_fds();                                   \
		if (now_ != (before))                                          \
			fail_msg("fd leak: %d open fds, %d before", now_,      \
				 (before));                                    \
	} while (0)
/*
 * FD_CHECKED(f) defines f__fd, which runs test f and then checks that it
 * left no fd open; FD_TEST(f) registers it under f's name.  The check runs
 * only when f passed, so a failure is not followed by a second, misleading
 * "leak" report.
 */
#define FD_CHECKED(f)                                                          \
	static void f##__fd(void **state)                                      \
	{                                                                      \
		int fds_ = count_open_fds();                                   \
		f(state);                                                      \
		assert_no_fd_leak(fds_);                                       \
	}
#define FD_TEST(f) { #f, f##__fd, NULL, NULL, NULL }
#define FD_TEST_SETUP(f, setup, teardown) { #f, f##__fd, setup, teardown, NULL }
/* A field of /proc/self/status in bytes ("RssShmem", "VmRSS"). */
uint64_t proc_status_bytes(const char *field);
static inline uint64_t rss_shmem(void)
{
	return proc_status_bytes("RssShmem");
}
/* Bytes allocated to the memfds this process has open (st_blocks). */
uint64_t memfd_allocated_bytes(void);
/* Lines of /proc/self/maps: the kernel VMAs in use. */
long count_kernel_maps(void);
long max_map_count(void);
size_t os_page(void);
/* True when running under valgrind (its preload library is loaded). */
bool under_valgrind(void);
/* Run @fn with stderr captured into @buf (NUL-terminated). */
int capture_stderr(int (*fn)(void *arg), void *arg, char *buf, size_t len);

#endif /* VMP_TEST_HELPERS_H */
