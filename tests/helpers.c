/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * helpers.c: content generator, mock store, crash-test runner and process
 * probes shared by the tests.  See helpers.h for what each one promises.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* --- errno names ---------------------------------------------------------- */

const char *errname(int err)
{
	static const struct {
		int e;
		const char *name;
	} names[] = {
		{ EPERM, "-EPERM" },         { ENOENT, "-ENOENT" },
		{ EIO, "-EIO" },             { ENXIO, "-ENXIO" },
		{ EBADF, "-EBADF" },         { ECHILD, "-ECHILD" },
		{ EAGAIN, "-EAGAIN" },       { ENOMEM, "-ENOMEM" },
		{ EFAULT, "-EFAULT" },       { EBUSY, "-EBUSY" },
		{ EEXIST, "-EEXIST" },       { EINVAL, "-EINVAL" },
		{ EMFILE, "-EMFILE" },       { ENOSPC, "-ENOSPC" },
		{ EROFS, "-EROFS" },         { ERANGE, "-ERANGE" },
		{ EDEADLK, "-EDEADLK" },     { ENOSYS, "-ENOSYS" },
		{ EOVERFLOW, "-EOVERFLOW" }, { EOPNOTSUPP, "-EOPNOTSUPP" },
		{ ETIMEDOUT, "-ETIMEDOUT" }, { EINTR, "-EINTR" },
		{ E2BIG, "-E2BIG" },         { EFBIG, "-EFBIG" },
		{ ELOOP, "-ELOOP" },
	};
	static __thread char buf[4][32];
	static __thread unsigned next;
	char *b;

	if (err == 0)
		return "0";
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (-names[i].e == err)
			return names[i].name;
	b = buf[next++ % 4];
	snprintf(b, sizeof(buf[0]), "%s%d", err < 0 ? "-E?" : "+", err);
	return b;
}

/* --- content -------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t gen_word(uint64_t blk, uint64_t word, uint32_t version)
{
	return splitmix64(blk * 0xd1b54a32d192ed03ull ^
			  ((uint64_t)version << 48) ^ word);
}

void gen_fill(void *buf, size_t len, uint64_t blk, uint32_t version)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++)
		w[i] = gen_word(blk, i, version);
}

uint8_t gen_byte(uint64_t blk, size_t off, uint32_t version)
{
	uint64_t w = gen_word(blk, off / 8, version);

	return (uint8_t)(w >> (8 * (off % 8))); /* little-endian, as gen_fill */
}

size_t gen_check(const void *buf, size_t len, uint64_t blk, uint32_t version)
{
	const uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i] != gen_word(blk, i, version)) {
			for (size_t b = 0; b < 8; b++)
				if (((const uint8_t *)buf)[i * 8 + b] !=
				    gen_byte(blk, i * 8 + b, version))
					return i * 8 + b + 1;
		}
	return 0;
}

void rng_seed(struct rng *r, uint64_t seed)
{
	r->s = splitmix64(seed) | 1; /* xorshift must not start at 0 */
}

uint64_t rng_next(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545f4914f6cdd1dull;
}

uint64_t rng_below(struct rng *r, uint64_t n)
{
	return rng_next(r) % n;
}

uint64_t test_seed(uint64_t fixed)
{
	const char *s = getenv("VMPAGE_SEED");

	if (s && *s)
		return strtoull(s, NULL, 0);
	return fixed;
}

/* --- mock store: block table ------------------------------------------------ */

/* A slot is free while used == 0 (calloc'ed table: no initialisation pass,
 * so a table sized for 1 TiB costs only the slots touched). */
struct mock_slot {
	struct mock_blk b;
	bool used;
};

static struct mock_slot *slots(struct mock *m)
{
	return (struct mock_slot *)m->tab;
}

/* The record of @blk, created if needed; NULL when the table is full.
 * m->lock held. */
static struct mock_blk *blk_get(struct mock *m, uint64_t blk, bool create)
{
	size_t mask = m->tabcap - 1;
	size_t i = splitmix64(blk) & mask;

	for (size_t n = 0; n < m->tabcap / 2; n++, i = (i + 1) & mask) {
		struct mock_slot *s = &slots(m)[i];

		if (s->used && s->b.blk == blk)
			return &s->b;
		if (!s->used) {
			if (!create)
				return NULL;
			s->used = true;
			s->b.blk = blk;
			return &s->b;
		}
	}
	if (create)
		m->tab_full = true;
	return NULL;
}

/* Apply @f to a call for @blk: the errno to fail with, or 0.  m->lock held. */
static int fail_hit(struct mock_fail *f, uint64_t blk)
{
	if (f->at == 0)
		return 0;
	if (f->blk >= 0 && (uint64_t)f->blk != blk)
		return 0;
	f->seen++;
	if (f->seen >= f->at && (f->times == 0 || f->seen < f->at + f->times))
		return f->err;
	return 0;
}

static void log_event(struct mock *m, char c)
{
	if (m->nevents + 1 < sizeof(m->events))
		m->events[m->nevents++] = c;
	m->events[m->nevents] = '\0';
}

/* Current bytes of @blk into @buf.  m->lock held; signal-safe (no malloc). */
static void content_locked(struct mock *m, uint64_t blk, void *buf)
{
	struct mock_blk *b;

	if (m->fd >= 0) {
		size_t done = 0;
		off_t off = (off_t)(blk * m->blksize);

		while (done < m->blksize) {
			ssize_t n = pread(m->fd, (char *)buf + done,
					  m->blksize - done, off + (off_t)done);
			if (n <= 0)
				break;
			done += (size_t)n;
		}
		memset((char *)buf + done, 0, m->blksize - done);
		return;
	}
	if (blk >= m->nblocks) {
		memset(buf, 0, m->blksize);
		return;
	}
	b = blk_get(m, blk, false);
	if (b && b->data)
		memcpy(buf, b->data, m->blksize);
	else
		gen_fill(buf, m->blksize, blk, b ? b->version : 0);
}

/* --- mock store: callbacks ---------------------------------------------------- */

static int mock_loadblk(void *ctx, uint64_t blk, void *buf)
{
	struct mock *m = ctx;
	struct mock_blk *b;
	int err;

	__atomic_add_fetch(&m->load_calls, 1, __ATOMIC_SEQ_CST);
	if (m->load_sleep_us)
		usleep(m->load_sleep_us);
	pthread_mutex_lock(&m->lock);
	b = blk_get(m, blk, true);
	if (b)
		b->loads++;
	err = fail_hit(&m->fail_load, blk);
	if (!err)
		content_locked(m, blk, buf);
	pthread_mutex_unlock(&m->lock);
	if (!err && m->load_hook)
		err = m->load_hook(m, blk, m->hook_arg);
	if (!err)
		__atomic_add_fetch(&m->load_ok, 1, __ATOMIC_SEQ_CST);
	return err;
}

static int mock_loadblks(void *ctx, uint64_t blk, uint64_t n, void *buf)
{
	struct mock *m = ctx;
	int err;

	__atomic_add_fetch(&m->batch_calls, 1, __ATOMIC_SEQ_CST);
	if (m->load_sleep_us)
		usleep(m->load_sleep_us);
	pthread_mutex_lock(&m->lock);
	for (uint64_t i = 0; i < n; i++) {
		struct mock_blk *b = blk_get(m, blk + i, true);

		if (b)
			b->loads++;
	}
	err = fail_hit(&m->fail_batch, blk);
	for (uint64_t i = 0; !err && i < n; i++)
		content_locked(m, blk + i, (char *)buf + i * m->blksize);
	pthread_mutex_unlock(&m->lock);
	for (uint64_t i = 0; !err && m->load_hook && i < n; i++)
		err = m->load_hook(m, blk + i, m->hook_arg);
	if (!err) {
		__atomic_add_fetch(&m->batch_blocks, n, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&m->load_ok, n, __ATOMIC_SEQ_CST);
	}
	return err;
}

/* Keep @buf as the stored bytes of @blk.  m->lock held. */
static int keep_locked(struct mock *m, struct mock_blk *b, uint64_t blk,
		       const void *buf)
{
	if (m->fd >= 0) {
		off_t off = (off_t)(blk * m->blksize);

		if (pwrite(m->fd, buf, m->blksize, off) != (ssize_t)m->blksize)
			return -EIO;
		return 0;
	}
	if (!b)
		return -ENOMEM;
	if (!b->data) {
		b->data = malloc(m->blksize);
		if (!b->data)
			return -ENOMEM;
	}
	memcpy(b->data, buf, m->blksize);
	return 0;
}

static int mock_storeblk(void *ctx, uint64_t blk, const void *buf)
{
	struct mock *m = ctx;
	struct mock_blk *b;
	int err;

	__atomic_add_fetch(&m->store_calls, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&m->lock);
	b = blk_get(m, blk, true);
	if (b)
		b->stores++;
	err = fail_hit(&m->fail_store, blk);
	if (!err)
		err = keep_locked(m, b, blk, buf);
	log_event(m, err ? 'x' : 'S');
	if (m->nstore_order < ARRAY_LEN(m->store_order))
		m->store_order[m->nstore_order++] = blk;
	pthread_mutex_unlock(&m->lock);
	if (!err && m->store_hook)
		err = m->store_hook(m, blk, m->hook_arg);
	if (!err)
		__atomic_add_fetch(&m->store_ok, 1, __ATOMIC_SEQ_CST);
	return err;
}

static int mock_begin(void *ctx)
{
	struct mock *m = ctx;
	int err;

	pthread_mutex_lock(&m->lock);
	m->begins++;
	err = fail_hit(&m->fail_begin, 0);
	log_event(m, err ? 'b' : 'B');
	pthread_mutex_unlock(&m->lock);
	return err;
}

static int mock_commit(void *ctx)
{
	struct mock *m = ctx;
	int err;

	pthread_mutex_lock(&m->lock);
	m->commits++;
	err = fail_hit(&m->fail_commit, 0);
	log_event(m, err ? 'c' : 'C');
	pthread_mutex_unlock(&m->lock);
	return err;
}

static void mock_abort(void *ctx)
{
	struct mock *m = ctx;

	pthread_mutex_lock(&m->lock);
	m->aborts++;
	log_event(m, 'A');
	pthread_mutex_unlock(&m->lock);
}

static void mock_release(void *ctx)
{
	struct mock *m = ctx;

	__atomic_add_fetch(&m->releases, 1, __ATOMIC_SEQ_CST);
}

static int mock_base(void *ctx, int *fd, off_t *offset)
{
	struct mock *m = ctx;

	*fd = m->fd;
	*offset = 0;
	return 0;
}

/* --- mock store: life ----------------------------------------------------- */

static size_t table_size(uint64_t nblocks)
{
	size_t cap = 64;

	/* Tests record at most a few hundred thousand blocks; a 1 TiB store
	 * gets 2^20 slots, calloc'ed, so only touched slots cost memory. */
	while (cap < (1u << 20) && cap < 2 * nblocks)
		cap *= 2;
	return cap;
}

struct mock *mock_new(size_t blksize, uint64_t nblocks, unsigned flags)
{
	struct mock *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->blksize = blksize;
	m->nblocks = nblocks;
	m->flags = flags;
	m->fd = -1;
	m->tabcap = table_size(nblocks);
	m->tab = calloc(m->tabcap, sizeof(struct mock_slot));
	assert_non_null(m->tab);
	pthread_mutex_init(&m->lock, NULL);
	if (flags & MOCK_FILE)
		m->fd = temp_file(nblocks * blksize, blksize);

	m->ops.loadblk = mock_loadblk;
	if (flags & MOCK_BATCH)
		m->ops.loadblks = mock_loadblks;
	if (!(flags & MOCK_READONLY))
		m->ops.storeblk = mock_storeblk;
	if (!(flags & MOCK_NO_HOOKS)) {
		m->ops.writeout_begin = mock_begin;
		m->ops.writeout_commit = mock_commit;
		m->ops.writeout_abort = mock_abort;
	}
	m->ops.release = mock_release;
	if ((flags & MOCK_FILE) && !(flags & MOCK_NO_BASE))
		m->ops.base = mock_base;
	assert_ok(vmp_store_new(&m->store, &m->ops, m, blksize));
	return m;
}

struct mock *mock_new_generated(size_t blksize)
{
	return mock_new(blksize, BIG_SPAN / blksize, MOCK_READONLY | MOCK_NO_HOOKS);
}

void mock_store_free(struct mock *m)
{
	assert_non_null(m->store);
	assert_ok(vmp_store_free(m->store));
	m->store = NULL;
}

void mock_free(struct mock *m)
{
	if (!m)
		return;
	if (m->store)
		mock_store_free(m);
	/* Not freed then (fail_msg leaves): a handle still open on the store
	 * would call release on freed memory when it closes. */
	if (m->releases == 0)
		fail_msg("mock_free: the store was not released: a handle is "
			 "still open on it");
	for (size_t i = 0; i < m->tabcap; i++)
		if (slots(m)[i].used)
			free(slots(m)[i].b.data);
	free(m->tab);
	if (m->fd >= 0)
		close(m->fd);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void mock_expected(struct mock *m, uint64_t blk, void *buf)
{
	pthread_mutex_lock(&m->lock);
	content_locked(m, blk, buf);
	pthread_mutex_unlock(&m->lock);
}

int mock_check(struct mock *m, uint64_t blk, const void *buf)
{
	void *want = malloc(m->blksize);
	int diff;

	assert_non_null(want);
	mock_expected(m, blk, want);
	diff = memcmp(want, buf, m->blksize);
	free(want);
	return diff;
}

void mock_change(struct mock *m, uint64_t blk)
{
	struct mock_blk *b;

	pthread_mutex_lock(&m->lock);
	b = blk_get(m, blk, true);
	assert_non_null(b);
	b->version++;
	free(b->data);
	b->data = NULL;
	if (m->fd >= 0) {
		void *buf = malloc(m->blksize);

		assert_non_null(buf);
		gen_fill(buf, m->blksize, blk, b->version);
		assert_true(pwrite(m->fd, buf, m->blksize,
				   (off_t)(blk * m->blksize)) ==
			    (ssize_t)m->blksize);
		free(buf);
	}
	pthread_mutex_unlock(&m->lock);
}

uint64_t mock_loads(struct mock *m, uint64_t blk)
{
	struct mock_blk *b;
	uint64_t n;

	pthread_mutex_lock(&m->lock);
	b = blk_get(m, blk, false);
	n = b ? b->loads : 0;
	pthread_mutex_unlock(&m->lock);
	return n;
}

uint64_t mock_stores(struct mock *m, uint64_t blk)
{
	struct mock_blk *b;
	uint64_t n;

	pthread_mutex_lock(&m->lock);
	b = blk_get(m, blk, false);
	n = b ? b->stores : 0;
	pthread_mutex_unlock(&m->lock);
	return n;
}

void mock_set_fail(struct mock *m, struct mock_fail *which, int64_t blk,
		   uint64_t at, uint64_t times, int err)
{
	pthread_mutex_lock(&m->lock);
	which->blk = blk;
	which->at = at;
	which->times = times;
	which->err = err;
	which->seen = 0;
	pthread_mutex_unlock(&m->lock);
}

void mock_reset_counts(struct mock *m)
{
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->tabcap; i++)
		if (slots(m)[i].used)
			slots(m)[i].b.loads = slots(m)[i].b.stores = 0;
	m->load_calls = m->load_ok = m->store_calls = m->store_ok = 0;
	m->batch_calls = m->batch_blocks = 0;
	memset(&m->fail_batch, 0, sizeof(m->fail_batch));
	m->begins = m->commits = m->aborts = 0;
	memset(&m->fail_load, 0, sizeof(m->fail_load));
	memset(&m->fail_store, 0, sizeof(m->fail_store));
	memset(&m->fail_begin, 0, sizeof(m->fail_begin));
	memset(&m->fail_commit, 0, sizeof(m->fail_commit));
	m->nevents = 0;
	m->events[0] = '\0';
	m->nstore_order = 0;
	pthread_mutex_unlock(&m->lock);
}

const char *mock_events(struct mock *m)
{
	return m->events;
}

/* --- gates ---------------------------------------------------------------- */

void gate_init(struct gate *g, int64_t blk, bool on_store)
{
	memset(g, 0, sizeof(*g));
	g->blk = blk;
	g->on_store = on_store;
	sem_init(&g->entered, 0, 0);
	sem_init(&g->go, 0, 0);
	g->armed = true;
}

void gate_destroy(struct gate *g)
{
	sem_destroy(&g->entered);
	sem_destroy(&g->go);
}

static bool sem_wait_5s(sem_t *s)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	while (sem_timedwait(s, &ts) < 0)
		if (errno != EINTR)
			return false;
	return true;
}

static int gate_hook(struct mock *m, uint64_t blk, void *arg)
{
	struct gate *g = arg;
	bool armed = true;

	(void)m;
	if ((int64_t)blk != g->blk)
		return 0;
	if (!__atomic_compare_exchange_n(&g->armed, &armed, false, false,
					 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return 0;
	sem_post(&g->entered);
	if (!sem_wait_5s(&g->go))
		__atomic_store_n(&g->timed_out, true, __ATOMIC_SEQ_CST);
	return 0;
}

void mock_set_gate(struct mock *m, struct gate *g)
{
	m->hook_arg = g;
	if (g->on_store)
		m->store_hook = gate_hook;
	else
		m->load_hook = gate_hook;
}

bool gate_wait_entered(struct gate *g)
{
	return sem_wait_5s(&g->entered);
}

void gate_open(struct gate *g)
{
	sem_post(&g->go);
}

/* --- library objects ------------------------------------------------------ */

vmp_fileh *open_fh(vmp_ram *ram, struct mock *m, unsigned flags)
{
	vmp_fileh *fh = NULL;

	assert_ok(vmp_fileh_open(&fh, ram, m->store, flags));
	assert_non_null(fh);
	return fh;
}

int open_fh_ops(vmp_fileh **fhp, vmp_ram *ram, const vmp_store_ops *ops,
		void *ctx, size_t blksize, unsigned flags)
{
	vmp_store *store;
	int rc = vmp_store_new(&store, ops, ctx, blksize), free_rc;

	if (rc)
		return rc;
	rc = vmp_fileh_open(fhp, ram, store, flags);
	/* The handle holds a reference of its own; after a failed open this
	 * one was the last. */
	free_rc = vmp_store_free(store);
	return rc ? rc : free_rc;
}

void *map_pages(vmp_fileh *fh, uint64_t pgoffset, uint64_t pglen, int prot)
{
	void *addr = NULL;

	assert_ok(vmp_mmap(fh, pgoffset, pglen, prot, &addr));
	assert_non_null(addr);
	return addr;
}

uint64_t dirty_count(const vmp_fileh *fh)
{
	uint64_t n = UINT64_MAX;

	assert_ok(vmp_fileh_dirty_count(fh, &n));
	return n;
}

struct vmp_stats ram_stats(vmp_ram *ram)
{
	struct vmp_stats st;

	memset(&st, 0xff, sizeof(st));
	assert_ok(vmp_ram_stats(ram, &st));
	return st;
}

struct access {
	void *p;
	uint8_t v;
};

static int do_peek(void *arg)
{
	struct access *a = arg;

	a->v = peek(a->p);
	return 0;
}

static int do_poke(void *arg)
{
	struct access *a = arg;

	poke(a->p, a->v);
	return 0;
}

int guarded_peek(const void *p, uint8_t *out)
{
	struct access a = { (void *)p, 0 };
	int rc = vmp_guard(do_peek, &a);

	if (rc == 0 && out)
		*out = a.v;
	return rc;
}

int guarded_poke(void *p, uint8_t v)
{
	struct access a = { p, v };

	return vmp_guard(do_poke, &a);
}

int record_fault_handler(const struct vmp_fault_error *e, void *arg)
{
	struct fault_seen *s = arg;

	s->calls++;
	s->last = *e;
	if (s->answer == VMP_FAULT_RETRY && s->calls > s->answer_until)
		return VMP_FAULT_DEFAULT;
	return s->answer;
}

/* --- crash tests ---------------------------------------------------------- */

static int child_info_fd = -1; /* the child's end of the info pipe */

static void write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

void child_fail(const char *file, int line, const char *what)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "child: %s:%d: check failed: %s\n",
			 file, line, what);

	write_all(2, buf, (size_t)n);
	_exit(1);
}

void child_fail_rc(const char *file, int line, const char *what, int got,
		   int want)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf),
			 "child: %s:%d: %s returned %s, expected %s\n", file,
			 line, what, errname(got), errname(want));

	write_all(2, buf, (size_t)n);
	_exit(1);
}

void child_info(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	if (n > 0)
		write_all(child_info_fd, buf, (size_t)n);
}

/* Format @v in hex by hand: this runs in a signal handler. */
static size_t fmt_hex(char *out, uint64_t v)
{
	char tmp[17];
	size_t n = 0, i = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	while (n)
		out[i++] = tmp[--n];
	return i;
}

static void sigbus_reporter(int sig, siginfo_t *si, void *uc)
{
	char buf[64] = "SIGBUS ";
	size_t n = 7;

	(void)uc;
	n += fmt_hex(buf + n, (uint64_t)(uint32_t)si->si_code);
	buf[n++] = ' ';
	n += fmt_hex(buf + n, (uintptr_t)si->si_addr);
	buf[n++] = '\n';
	write_all(child_info_fd, buf, n);
	/* Die of the same signal, as a program without this handler would:
	 * it is blocked now, so it is delivered when the handler returns. */
	signal(sig, SIG_DFL);
	raise(sig);
}

void child_catch_sigbus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sigbus_reporter;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	/* the library's in front again (userfaultfd faults are SIGBUS too);
	 * it passes the reporter the SIGBUS it does not serve */
	(void)vmp_fault_handler_install();
}

static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	char sink[4096];

	for (;;) {
		ssize_t n;

		if (len + 1 < cap)
			n = read(fd, buf + len, cap - 1 - len);
		else
			n = read(fd, sink, sizeof(sink)); /* drain the rest */
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (len + 1 < cap)
			len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

void run_child(void (*fn)(void *arg), void *arg, struct child_result *r)
{
	int errp[2], infop[2];
	pid_t pid;

	memset(r, 0, sizeof(*r));
	assert_int_equal(pipe2(errp, O_CLOEXEC), 0);
	assert_int_equal(pipe2(infop, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };

		close(errp[0]);
		close(infop[0]);
		dup2(errp[1], 2);
		child_info_fd = infop[1];
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		setrlimit(RLIMIT_CORE, &no_core);
		alarm(10); /* a hang must not hang the test suite */
		fn(arg);
		_exit(0);
	}
	close(errp[1]);
	close(infop[1]);
	r->errlen = read_all(errp[0], r->err, sizeof(r->err));
	read_all(infop[0], r->info, sizeof(r->info));
	close(errp[0]);
	close(infop[0]);
	while (waitpid(pid, &r->status, 0) < 0)
		assert_int_equal(errno, EINTR);
	if (strstr(r->info, "SIGBUS ")) {
		unsigned long code = 0, addr = 0;

		if (sscanf(strstr(r->info, "SIGBUS ") + 7, "%lx %lx", &code,
			   &addr) == 2) {
			r->sig_seen = true;
			r->sig_code = (int)code;
			r->sig_addr = addr;
		}
	}
}

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with %d", WEXITSTATUS(status));
	else
		snprintf(buf, len, "status %#x", status);
}

void assert_child_signaled(const struct child_result *r, int sig)
{
	char how[128];

	if (WIFSIGNALED(r->status) && WTERMSIG(r->status) == sig)
		return;
	describe_status(r->status, how, sizeof(how));
	fail_msg("child %s, expected to die of signal %d (%s); its stderr:\n%s",
		 how, sig, strsignal(sig), r->err);
}

void assert_child_exited_ok(const struct child_result *r)
{
	char how[128];

	if (WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0)
		return;
	describe_status(r->status, how, sizeof(how));
	fail_msg("child %s, expected exit 0; its stderr:\n%s", how, r->err);
}

/* --- the process's view --------------------------------------------------- */

int temp_file(uint64_t size, size_t blksize)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	char *buf;
	int fd;

	snprintf(path, sizeof(path), "%s/vmpage-test-XXXXXX",
		 dir && *dir ? dir : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	assert_true(fd >= 0);
	unlink(path);
	buf = malloc(blksize);
	assert_non_null(buf);
	for (uint64_t b = 0; b * blksize < size; b++) {
		uint64_t n = size - b * blksize;

		if (n > blksize)
			n = blksize;
		gen_fill(buf, blksize, b, 0);
		assert_true(pwrite(fd, buf, n, (off_t)(b * blksize)) ==
			    (ssize_t)n);
	}
	free(buf);
	return fd;
}

int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[300], target[64];
		ssize_t len;
		if (e->d_name[0] == '.')
			continue;
		/* the library's one userfaultfd lives as long as the process */
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len > 0 && (target[len] = 0, strstr(target, "[userfaultfd]")))
			continue;
		n++;
	}
	closedir(d);
	return n - 1; /* the directory's own fd */
}

uint64_t proc_status_bytes(const char *field)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	size_t flen = strlen(field);
	uint64_t kb = UINT64_MAX;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			kb = strtoull(line + flen + 1, NULL, 10);
			break;
		}
	fclose(f);
	if (kb == UINT64_MAX)
		fail_msg("no %s in /proc/self/status", field);
	return kb * 1024;
}

uint64_t memfd_allocated_bytes(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	uint64_t total = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[64], link[256];
		ssize_t n;
		struct stat st;
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, "/memfd:", 7) == 0 && fstat(fd, &st) == 0)
			total += (uint64_t)st.st_blocks * 512;
	}
	closedir(d);
	return total;
}

long count_kernel_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	long n = 0;
	int c;

	assert_non_null(f);
	while ((c = getc(f)) != EOF)
		if (c == '\n')
			n++;
	fclose(f);
	return n;
}

long max_map_count(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	long n = 65530;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = 65530;
		fclose(f);
	}
	return n;
}

size_t os_page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

bool under_valgrind(void)
{
	const char *pre = getenv("LD_PRELOAD");

	return pre && strstr(pre, "vgpreload");
}

int capture_stderr(int (*fn)(void *arg), void *arg, char *buf, size_t len)
{
	FILE *tmp = tmpfile();
	int saved, rc;
	size_t n;

	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), 2) == 2);
	rc = fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, len - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
	return rc;
}
