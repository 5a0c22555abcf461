/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-rados.c: libvmpage-rados against a real Ceph cluster.
 *
 * The cluster comes from VMPAGE_RADOS_CONF (a ceph.conf whose [client]
 * section names a keyring) and VMPAGE_RADOS_POOL (default "vmpage"), as
 * `tests/ceph-cluster up DIR` prints them.  Without them, or when the
 * cluster cannot be reached, every test is skipped and says why.
 *
 * Several tests need other processes (two processes on one dataset, a
 * writer killed in its commit, a dead watcher): the test program runs
 * itself again (fork + exec, never a bare fork of a process that has
 * librados threads) as "test-rados --child ROLE DATASET FD...", talking to
 * the parent through pipes.
 *
 * Content: block b at version v is gen_fill(b, v) (helpers.h); version 0
 * is the zeros of a block never written.
 */
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "vmpage-rados.h"

#define BS 4096
#define NBLK 64

static rados_t cluster;
static rados_ioctx_t io;
static char no_cluster[256]; /* why every test skips, or "" */
static char self_exe[4096];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Connect to the test cluster: 0, or -errno and why in @why. */
static int connect_cluster(rados_t *clp, rados_ioctx_t *iop, char *why,
			   size_t len)
{
	const char *conf = getenv("VMPAGE_RADOS_CONF");
	const char *pool = getenv("VMPAGE_RADOS_POOL");
	int ret;

	if (!conf || !*conf) {
		snprintf(why, len, "VMPAGE_RADOS_CONF is not set: no test "
			 "cluster (start one with tests/ceph-cluster up DIR)");
		return -ENOENT;
	}
	if (!pool || !*pool)
		pool = "vmpage";
	if ((ret = rados_create(clp, NULL))) {
		snprintf(why, len, "rados_create: %s", strerror(-ret));
		return ret;
	}
	if ((ret = rados_conf_read_file(*clp, conf)) ||
	    /* a cluster that went away fails loads instead of hanging */
	    (ret = rados_conf_set(*clp, "rados_osd_op_timeout", "5")) ||
	    (ret = rados_conf_set(*clp, "client_mount_timeout", "10")) ||
	    (ret = rados_connect(*clp))) {
		snprintf(why, len, "cannot connect with %s: %s", conf,
			 strerror(-ret));
		rados_shutdown(*clp);
		return ret;
	}
	if ((ret = rados_ioctx_create(*clp, pool, iop))) {
		snprintf(why, len, "pool %s: %s", pool, strerror(-ret));
		rados_shutdown(*clp);
		return ret;
	}
	return 0;
}

static void need_cluster(void)
{
	if (no_cluster[0]) {
		print_message("[  SKIP    ] %s\n", no_cluster);
		skip();
	}
}

/* A fresh dataset name for this test. */
static const char *dsname(const char *what)
{
	static char buf[128];

	snprintf(buf, sizeof(buf), "t%d-%s-%ld", (int)getpid(), what,
		 (long)time(NULL));
	return buf;
}

/* Write block @b at version @v into the mapping @p. */
static void put_block(char *p, uint64_t b, uint32_t v)
{
	gen_fill(p + b * BS, BS, b, v);
}

/* Does the mapping @p show block @b at version @v (0: zeros)? */
static bool has_block(const char *p, uint64_t b, uint32_t v)
{
	if (v == 0) {
		for (size_t i = 0; i < BS; i++)
			if (p[b * BS + i])
				return false;
		return true;
	}
	return gen_check(p + b * BS, BS, b, v) == 0;
}

#define assert_block(p, b, v)                                                 \
	do {                                                                  \
		if (!has_block((p), (b), (v)))                                \
			fail_msg("block %d is not at version %d",            \
				 (int)(b), (int)(v));                         \
	} while (0)

static const unsigned COMMIT = VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED;

struct view {
	vmp_rados *ds;
	vmp_ram *ram;
	char *p;
};

static void view_open(struct view *v, const char *name, unsigned flags)
{
	assert_ok(vmp_ram_new(&v->ram, 0));
	assert_ok(vmp_rados_open(&v->ds, io, name, v->ram, flags));
	assert_ok(vmp_mmap(vmp_rados_fileh(v->ds), 0, NBLK,
			   PROT_READ | PROT_WRITE, (void **)&v->p));
}

static void view_close(struct view *v)
{
	assert_ok(vmp_munmap(v->p));
	assert_ok(vmp_rados_close(v->ds));
	assert_ok(vmp_ram_free(v->ram));
}

static struct vmp_rados_info info_of(vmp_rados *ds)
{
	struct vmp_rados_info in;

	assert_ok(vmp_rados_info(ds, &in));
	return in;
}

/* --- children ------------------------------------------------------------ */

struct child {
	pid_t pid;
	int to, from; /* pipe ends: parent writes to, reads from */
};

/* Run "self --child ROLE NAME TOFD FROMFD" with @env added ("K=V" or NULL). */
static void child_start(struct child *c, const char *role, const char *name,
			const char *env)
{
	int down[2], up[2];
	char a_down[16], a_up[16];

	assert_int_equal(pipe(down), 0);
	assert_int_equal(pipe(up), 0);
	snprintf(a_down, sizeof(a_down), "%d", down[0]);
	snprintf(a_up, sizeof(a_up), "%d", up[1]);
	fflush(stdout);
	fflush(stderr);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		char *argv[] = { self_exe, (char *)"--child", (char *)role,
				 (char *)name, a_down, a_up, NULL };
		if (env)
			putenv((char *)env);
		close(down[1]);
		close(up[0]);
		execv(self_exe, argv);
		_exit(127);
	}
	close(down[0]);
	close(up[1]);
	c->to = down[1];
	c->from = up[0];
}

/* Wait (at most @timeout_s) for a byte from the child: the byte, or -1 at
 * EOF / timeout. */
static int child_recv(struct child *c, double timeout_s)
{
	double end = now_s() + timeout_s;
	char b;

	for (;;) {
		ssize_t n;
		struct timeval tv = { 0, 20000 };
		fd_set rd;

		FD_ZERO(&rd);
		FD_SET(c->from, &rd);
		if (select(c->from + 1, &rd, NULL, NULL, &tv) > 0) {
			n = read(c->from, &b, 1);
			return n == 1 ? (unsigned char)b : -1;
		}
		if (now_s() > end)
			return -1;
	}
}

static void child_send(struct child *c, char b)
{
	assert_int_equal(write(c->to, &b, 1), 1);
}

/* Wait for the child's end; its wait status. */
static int child_wait(struct child *c)
{
	int status;

	close(c->to);
	close(c->from);
	while (waitpid(c->pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	return status;
}

static void assert_exited_ok(int status)
{
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("child: status %#x (exit %d, signal %d)", status,
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* --- in the children ---------------------------------------------------- */

static int cto, cfrom; /* the child's pipe ends */

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "child %s:%d: %s\n", __FILE__,      \
				__LINE__, #cond);                            \
			exit(2);                                             \
		}                                                            \
	} while (0)

static void csend(char b)
{
	CHECK(write(cto, &b, 1) == 1);
}

static char crecv(void)
{
	char b;

	CHECK(read(cfrom, &b, 1) == 1);
	return b;
}

static void cview_open(struct view *v, const char *name)
{
	CHECK(vmp_ram_new(&v->ram, 0) == 0);
	CHECK(vmp_rados_open(&v->ds, io, name, v->ram, 0) == 0);
	CHECK(vmp_mmap(vmp_rados_fileh(v->ds), 0, NBLK, PROT_READ | PROT_WRITE,
		       (void **)&v->p) == 0);
}

static void cview_close(struct view *v)
{
	CHECK(vmp_munmap(v->p) == 0);
	CHECK(vmp_rados_close(v->ds) == 0);
	CHECK(vmp_ram_free(v->ram) == 0);
}

/* Reader: reads block 0 (v1), waits; then block 5 must still be v1 (its
 * snapshot), block 0 too; after sync both are v2. */
static int role_reader(const char *name)
{
	struct view v;

	cview_open(&v, name);
	CHECK(has_block(v.p, 0, 1));
	csend('r');
	CHECK(crecv() == 'c'); /* the parent committed v2 of 0 and 5 */
	CHECK(has_block(v.p, 0, 1));
	CHECK(has_block(v.p, 5, 1));
	CHECK(has_block(v.p, 6, 0));
	CHECK(vmp_rados_sync(v.ds) == 0);
	CHECK(has_block(v.p, 0, 2));
	CHECK(has_block(v.p, 5, 2));
	CHECK(has_block(v.p, 6, 0));
	cview_close(&v);
	return 0;
}

/* The library's test hook (src/rados/rados.c), called at each step of a
 * commit: a writer started with VMPAGE_RADOS_KILL_AT=N dies at step N. */
void vmp_rados_commit_step(int step);
void vmp_rados_commit_step(int step)
{
	const char *at = getenv("VMPAGE_RADOS_KILL_AT");

	if (at && atoi(at) == step)
		raise(SIGKILL);
}

/* Writer: blocks 0..7 at version (the step), commit: killed by the test
 * hook on the way. */
static int role_killed_writer(const char *name)
{
	struct view v;
	uint32_t ver = (uint32_t)atoi(getenv("VMPAGE_RADOS_KILL_AT"));

	cview_open(&v, name);
	for (uint64_t b = 0; b < 8; b++)
		put_block(v.p, b, 10 + ver);
	csend('w');
	(void)vmp_writeout(vmp_rados_fileh(v.ds), COMMIT);
	csend('d'); /* step past the last: not killed */
	cview_close(&v);
	return 0;
}

/* Counter: add 1 to the u64 at byte 0 of block 0, @n times, each a
 * transaction retried on conflict.  Reports its conflicts. */
static int role_counter(const char *name)
{
	struct view v;
	int conflicts = 0;

	cview_open(&v, name);
	CHECK(crecv() == 'g');
	for (int i = 0; i < 20; i++) {
		for (;;) {
			int ret;
			(*(volatile uint64_t *)v.p)++;
			ret = vmp_writeout(vmp_rados_fileh(v.ds), COMMIT);
			if (!ret)
				break;
			CHECK(ret == -EBUSY);
			conflicts++;
			CHECK(vmp_discard(vmp_rados_fileh(v.ds)) == 0);
		}
	}
	csend((char)(conflicts > 100 ? 100 : conflicts));
	cview_close(&v);
	return 0;
}

/* Watcher: opens a view (its watch registered), says so, waits to die. */
static int role_watcher(const char *name)
{
	struct view v;

	cview_open(&v, name);
	csend('w');
	for (;;)
		pause(); /* until the parent kills it */
	return 0;
}

static int child_main(int argc, char **argv)
{
	char why[256];
	int ret;

	if (argc != 6)
		return 2;
	cfrom = atoi(argv[4]);
	cto = atoi(argv[5]);
	if (connect_cluster(&cluster, &io, why, sizeof(why))) {
		fprintf(stderr, "child: %s\n", why);
		return 3;
	}
	if (!strcmp(argv[2], "reader"))
		ret = role_reader(argv[3]);
	else if (!strcmp(argv[2], "killed-writer"))
		ret = role_killed_writer(argv[3]);
	else if (!strcmp(argv[2], "counter"))
		ret = role_counter(argv[3]);
	else if (!strcmp(argv[2], "watcher"))
		ret = role_watcher(argv[3]);
	else
		ret = 2;
	rados_ioctx_destroy(io);
	rados_shutdown(cluster);
	return ret;
}

/* --- tests ---------------------------------------------------------------- */

static void test_datasets(void **state)
{
	const char *name = dsname("ds");
	struct vmp_rados_info in;
	vmp_rados *ds;
	vmp_ram *ram;

	(void)state;
	need_cluster();
	assert_ok(vmp_ram_new(&ram, 0));
	assert_rc(vmp_rados_open(&ds, io, name, ram, 0), -ENOENT);
	assert_rc(vmp_rados_create(io, name, 3000, NBLK, 0), -EINVAL);
	assert_rc(vmp_rados_create(io, name, BS, 0, 0), -EINVAL);
	assert_rc(vmp_rados_create(io, "a/b", BS, NBLK, 0), -EINVAL);
	assert_rc(vmp_rados_create(io, "", BS, NBLK, 0), -EINVAL);
	assert_rc(vmp_rados_create(NULL, name, BS, NBLK, 0), -EINVAL);
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	assert_rc(vmp_rados_create(io, name, BS, NBLK, 60), -EEXIST);
	assert_rc(vmp_rados_open(NULL, io, name, ram, 0), -EINVAL);
	assert_rc(vmp_rados_open(&ds, io, name, ram, 1u << 7), -EINVAL);
	assert_ok(vmp_rados_open(&ds, io, name, ram, VMP_NO_READAHEAD));
	in = info_of(ds);
	assert_u64(in.blksize, BS);
	assert_u64(in.nblocks, NBLK);
	assert_u64(in.version, 0);
	assert_non_null(vmp_rados_fileh(ds));
	assert_null(vmp_rados_fileh(NULL));
	assert_rc(vmp_rados_sync(NULL), -EINVAL);
	assert_rc(vmp_rados_info(NULL, &in), -EINVAL);
	assert_rc(vmp_rados_close(NULL), -EINVAL);
	assert_ok(vmp_rados_sync(ds));
	assert_ok(vmp_rados_close(ds));
	assert_ok(vmp_rados_remove(io, name));
	assert_rc(vmp_rados_remove(io, name), -ENOENT);
	assert_rc(vmp_rados_open(&ds, io, name, ram, 0), -ENOENT);
	assert_ok(vmp_ram_free(ram));
}

/* Commit, then another view reads exactly those bytes; blocks never
 * written read as zeros; read-ahead (loadblks) and single loads agree. */
static void test_roundtrip(void **state)
{
	const char *name = dsname("rt");
	struct view a, b;
	char *q;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	for (uint64_t i = 0; i < 40; i++)
		put_block(a.p, i, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	assert_u64(info_of(a.ds).version, 1);
	assert_u64(dirty_count(vmp_rados_fileh(a.ds)), 0);
	for (uint64_t i = 0; i < 40; i++)
		assert_block(a.p, i, 1);

	view_open(&b, name, 0);
	for (uint64_t i = 0; i < NBLK; i++) /* sequential: read-ahead */
		assert_block(b.p, i, i < 40 ? 1 : 0);
	assert_true(ram_stats(b.ram).readahead_pages > 0);
	/* one page at a time */
	assert_ok(vmp_mmap(vmp_rados_fileh(b.ds), 0, NBLK, PROT_READ,
			   (void **)&q));
	assert_ok(vmp_invalidate(vmp_rados_fileh(b.ds), 0, NBLK));
	for (int64_t i = NBLK - 1; i >= 0; i -= 3)
		assert_block(q, (uint64_t)i, i < 40 ? 1 : 0);
	assert_ok(vmp_munmap(q));
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* A block map larger than one omap read (4096 keys): read in pages, each
 * checked to be of the same commit. */
static void test_large_map(void **state)
{
	const char *name = dsname("big");
	const uint64_t n = 5000;
	struct vmp_rados_info in;
	vmp_rados *ds;
	vmp_ram *ram;
	char *p;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, n, 60));
	assert_ok(vmp_ram_new(&ram, 0));
	assert_ok(vmp_rados_open(&ds, io, name, ram, 0));
	assert_ok(vmp_mmap(vmp_rados_fileh(ds), 0, n, PROT_READ | PROT_WRITE,
			   (void **)&p));
	for (uint64_t b = 0; b < n; b++)
		p[b * BS] = (char)(b % 251 + 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(ds), COMMIT));
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_rados_close(ds));
	assert_ok(vmp_rados_open(&ds, io, name, ram, 0));
	in = info_of(ds);
	assert_u64(in.version, 1);
	assert_ok(vmp_mmap(vmp_rados_fileh(ds), 0, n, PROT_READ, (void **)&p));
	for (uint64_t b = 0; b < n; b += 997)
		assert_int_equal(p[b * BS], (char)(b % 251 + 1));
	assert_int_equal(p[(n - 1) * BS], (char)((n - 1) % 251 + 1));
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_rados_close(ds));
	assert_ok(vmp_ram_free(ram));
	assert_ok(vmp_rados_remove(io, name));
}

/* Two processes: the reader sees nothing new until it syncs, then exactly
 * the committed bytes, including blocks it had not loaded before. */
static void test_two_processes_isolation(void **state)
{
	const char *name = dsname("iso");
	struct child c;
	struct view a;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	put_block(a.p, 0, 1);
	put_block(a.p, 5, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	child_start(&c, "reader", name, NULL);
	assert_int_equal(child_recv(&c, 30), 'r');
	put_block(a.p, 0, 2);
	put_block(a.p, 5, 2);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	child_send(&c, 'c');
	assert_exited_ok(child_wait(&c));
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* Same block, same snapshot: the first commit wins, the second gets
 * -EBUSY and keeps its dirty pages (a retry conflicts again); after
 * vmp_discard it sees the winner's bytes and can redo. */
static void test_conflict(void **state)
{
	const char *name = dsname("cf");
	struct view a, b;
	vmp_fileh *fb;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	view_open(&b, name, 0);
	fb = vmp_rados_fileh(b.ds);
	put_block(a.p, 3, 1);
	put_block(b.p, 3, 2);
	put_block(b.p, 9, 2);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	assert_rc(vmp_writeout(fb, COMMIT), -EBUSY);
	assert_u64(dirty_count(fb), 2);
	assert_block(b.p, 3, 2);
	assert_rc(vmp_writeout(fb, COMMIT), -EBUSY);
	assert_u64(info_of(b.ds).conflicts, 2);
	assert_u64(info_of(b.ds).version, 0);
	assert_rc(vmp_rados_sync(b.ds), -EBUSY); /* dirty pages */
	/* nothing of b's commit is visible: a's block 3, no block 9 */
	assert_ok(vmp_rados_sync(a.ds));
	assert_block(a.p, 3, 1);
	assert_block(a.p, 9, 0);

	assert_ok(vmp_discard(fb));
	assert_u64(info_of(b.ds).version, 1);
	assert_block(b.p, 3, 1);
	put_block(b.p, 3, 3);
	assert_ok(vmp_writeout(fb, COMMIT));
	assert_u64(info_of(b.ds).version, 2);
	assert_ok(vmp_rados_sync(a.ds));
	assert_block(a.p, 3, 3);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* Different blocks, same snapshot: both commits succeed, the second on top
 * of the first; each view then sees both. */
static void test_nonoverlapping(void **state)
{
	const char *name = dsname("no");
	struct view a, b;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	view_open(&b, name, 0);
	assert_block(b.p, 1, 0); /* loaded before a's commit */
	put_block(a.p, 1, 1);
	put_block(b.p, 2, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	assert_block(b.p, 1, 0); /* b's snapshot */
	assert_ok(vmp_writeout(vmp_rados_fileh(b.ds), COMMIT));
	assert_u64(info_of(b.ds).rebases, 1);
	assert_u64(info_of(b.ds).version, 2);
	assert_block(b.p, 1, 1); /* moved to its commit, on top of a's */
	assert_block(b.p, 2, 1);
	assert_block(a.p, 2, 0);
	assert_ok(vmp_rados_sync(a.ds));
	assert_block(a.p, 2, 1);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* vmp_discard is a sync point; the view's own pages loaded in the same
 * transaction keep coming from its snapshot until then. */
static void test_discard_syncs(void **state)
{
	const char *name = dsname("dc");
	struct view a, b;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	view_open(&b, name, VMP_NO_READAHEAD);
	assert_block(b.p, 4, 0);
	put_block(a.p, 4, 1);
	put_block(a.p, 8, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	assert_block(b.p, 4, 0);
	assert_block(b.p, 8, 0); /* not loaded before: still the snapshot */
	put_block(b.p, 20, 5);
	assert_ok(vmp_discard(vmp_rados_fileh(b.ds)));
	assert_block(b.p, 4, 1);
	assert_block(b.p, 8, 1);
	assert_block(b.p, 20, 0);
	assert_true(info_of(b.ds).invalidated >= 2);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

struct toucher {
	const char *p;
	vmp_ram *ram;      /* clean pages dropped after each pass: the */
	volatile bool stop; /* readers keep loads in flight */
	uint64_t touches;
};

static void *touch_loop(void *arg)
{
	struct toucher *t = arg;
	unsigned sum = 0;

	while (!t->stop) {
		for (uint64_t b = 0; b < 16; b++)
			sum += (unsigned char)peek(t->p + b * BS + (t->touches % BS));
		(void)vmp_ram_reclaim(t->ram, 16 * BS);
		__atomic_fetch_add(&t->touches, 1, __ATOMIC_RELAXED);
	}
	return (void *)(uintptr_t)sum;
}

/* Sync points while other threads of the view keep loading its pages:
 * after each sync every page shows the new commit (a load of the old
 * version in flight during the invalidation is not installed). */
static void test_sync_under_loads(void **state)
{
	const char *name = dsname("thr");
	struct toucher t = { 0 };
	int stale = -1, stale_v = 0;
	pthread_t th[2];
	struct view a, b;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	view_open(&b, name, VMP_NO_READAHEAD);
	t.p = b.p;
	t.ram = b.ram;
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, touch_loop, &t), 0);
	for (uint32_t v = 1; v <= 15; v++) {
		for (uint64_t blk = 0; blk < 16; blk++)
			put_block(a.p, blk, v);
		assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
		usleep(2000); /* the old versions are being loaded */
		{
			uint64_t before = t.touches;
			/* the readers' pages were dropped and loaded again */
			while (__atomic_load_n(&t.touches, __ATOMIC_RELAXED) < before + 2)
				usleep(100);
		}
		assert_ok(vmp_rados_sync(b.ds));
		/* the readers may reclaim and reload: any load now reads v */
		for (uint64_t blk = 0; blk < 16 && stale < 0; blk++)
			if (!has_block(b.p, blk, v))
				stale = (int)blk, stale_v = (int)v;
		if (stale >= 0)
			break;
	}
	t.stop = true;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	if (stale >= 0)
		fail_msg("after sync %d, block %d is stale", stale_v, stale);
	print_message("sync under loads: %llu passes of the readers\n",
		      (unsigned long long)t.touches);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* Three processes increment one counter 20 times each, retrying on
 * conflict: no increment is lost, so exactly one of each set of
 * conflicting commits won. */
static void test_concurrent_counter(void **state)
{
	const char *name = dsname("ctr");
	struct child c[3];
	struct view a;
	int conflicts = 0;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	for (int i = 0; i < 3; i++)
		child_start(&c[i], "counter", name, NULL);
	for (int i = 0; i < 3; i++)
		child_send(&c[i], 'g');
	for (int i = 0; i < 3; i++) {
		int r = child_recv(&c[i], 120);
		assert_true(r >= 0);
		conflicts += r;
		assert_exited_ok(child_wait(&c[i]));
	}
	view_open(&a, name, 0);
	assert_u64(*(uint64_t *)a.p, 60);
	assert_u64(info_of(a.ds).version, 60);
	print_message("counter: 60 commits, %d conflicts retried\n", conflicts);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* A writer SIGKILLed at each step of a commit: the dataset shows the old
 * state (steps 1-3) or the whole new one (4-5), never a mix; readers are
 * not stuck and the next commit goes through. */
static void test_killed_writer(void **state)
{
	const char *name = dsname("kill");
	struct view a;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	for (uint64_t b = 0; b < 8; b++)
		put_block(a.p, b, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	for (int step = 1, cur = 1; step <= 5; step++) {
		char env[64];
		struct child c;
		double t0;
		int status;

		snprintf(env, sizeof(env), "VMPAGE_RADOS_KILL_AT=%d", step);
		child_start(&c, "killed-writer", name, env);
		assert_int_equal(child_recv(&c, 30), 'w');
		assert_int_equal(child_recv(&c, 30), -1); /* died */
		status = child_wait(&c);
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
			fail_msg("step %d: the writer was not killed (%#x)",
				 step, status);
		/* killed after its head update: its commit is complete */
		if (step >= 4)
			cur = 10 + step;
		t0 = now_s();
		assert_ok(vmp_rados_sync(a.ds));
		for (uint64_t b = 0; b < 8; b++)
			if (!has_block(a.p, b, (uint32_t)cur))
				fail_msg("step %d: block %d is not at version "
					 "%d: a torn commit", step, (int)b, cur);
		/* the next commit is not blocked by the dead one */
		cur = 100 + step;
		for (uint64_t b = 0; b < 8; b++)
			put_block(a.p, b, (uint32_t)cur);
		assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
		assert_true(now_s() - t0 < 5);
	}
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* A reader SIGKILLed with its watch registered (the cluster keeps a dead
 * watch ~30 s) delays no commit: notifies are asynchronous. */
static void test_dead_watcher(void **state)
{
	const char *name = dsname("dw");
	struct child c;
	struct view a;
	double worst = 0, t0;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	child_start(&c, "watcher", name, NULL);
	assert_int_equal(child_recv(&c, 30), 'w');
	kill(c.pid, SIGKILL);
	(void)child_wait(&c);
	for (uint32_t v = 1; v <= 5; v++) {
		put_block(a.p, 0, v);
		t0 = now_s();
		assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
		if (now_s() - t0 > worst)
			worst = now_s() - t0;
	}
	print_message("dead watcher: slowest of 5 commits %.1f ms\n",
		      worst * 1e3);
	assert_true(worst < 0.5);
	t0 = now_s();
	view_close(&a); /* waits for its notifies: their timeout, 1 s */
	assert_true(now_s() - t0 < 3);
	assert_ok(vmp_rados_remove(io, name));
}

struct seen {
	pthread_mutex_t lock;
	uint64_t version;
	double at;
};

static void on_notify(vmp_rados *ds, uint64_t version, void *arg)
{
	struct seen *s = arg;

	(void)ds;
	pthread_mutex_lock(&s->lock);
	if (!s->version)
		s->at = now_s();
	s->version = version;
	pthread_mutex_unlock(&s->lock);
}

/* A commit is announced to the other views' callbacks. */
static void test_notify(void **state)
{
	const char *name = dsname("nt");
	struct seen s = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };
	struct view a, b;
	double t0, lat;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	view_open(&b, name, 0);
	assert_ok(vmp_rados_set_notify(b.ds, on_notify, &s));
	put_block(a.p, 0, 1);
	t0 = now_s();
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&s.lock);
		lat = s.version ? s.at - t0 : -1;
		pthread_mutex_unlock(&s.lock);
		if (lat >= 0)
			break;
		usleep(10000);
	}
	assert_true(lat >= 0);
	assert_u64(s.version, 1);
	assert_u64(info_of(b.ds).announced, 1);
	print_message("notify: announced %.2f ms after the commit began\n",
		      lat * 1e3);
	assert_ok(vmp_rados_set_notify(b.ds, NULL, NULL));
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

static int read_byte(void *arg)
{
	return peek(arg);
}

/* Grace 0: superseded versions are deleted at the next commit; a view
 * still on the old snapshot gets -ESTALE for them (through vmp_guard),
 * never other bytes, and a sync (a full reload: the logs were trimmed
 * too) brings it back. */
static void test_gc(void **state)
{
	const char *name = dsname("gc");
	struct view a, b;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 0));
	view_open(&a, name, 0);
	put_block(a.p, 0, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	view_open(&b, name, VMP_NO_READAHEAD); /* at v1, nothing loaded */
	for (uint32_t v = 2; v <= 3; v++) {
		put_block(a.p, 0, v);
		assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	}
	assert_true(info_of(a.ds).gc_deleted >= 1);
	assert_rc(vmp_guard(read_byte, b.p), -ESTALE);
	assert_ok(vmp_rados_sync(b.ds));
	assert_u64(info_of(b.ds).version, 3);
	assert_block(b.p, 0, 3);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* Growing: other views see the new size at their next sync point; a
 * commit past the size fails with -EFBIG and keeps its pages dirty. */
static void test_grow(void **state)
{
	const char *name = dsname("gr");
	struct view a, b;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, 8, 60));
	view_open(&a, name, 0);
	view_open(&b, name, 0);
	put_block(a.p, 10, 1);
	assert_rc(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT), -EFBIG);
	assert_u64(dirty_count(vmp_rados_fileh(a.ds)), 1);
	assert_ok(vmp_discard(vmp_rados_fileh(a.ds)));
	assert_rc(vmp_rados_grow(a.ds, 4), -EINVAL);
	assert_ok(vmp_rados_grow(a.ds, 16));
	assert_u64(info_of(a.ds).nblocks, 16);
	put_block(a.p, 10, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	assert_u64(info_of(b.ds).nblocks, 8);
	assert_ok(vmp_rados_sync(b.ds));
	assert_u64(info_of(b.ds).nblocks, 16);
	assert_block(b.p, 10, 1);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* A dataset removed under a view: loads of blocks not resident fail with
 * -ESTALE, commits and syncs with -ENOENT, the dirty pages stay. */
static void test_removed_under_view(void **state)
{
	const char *name = dsname("rm");
	struct view a;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, VMP_NO_READAHEAD);
	put_block(a.p, 0, 1);
	put_block(a.p, 1, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	assert_ok(vmp_invalidate(vmp_rados_fileh(a.ds), 1, 1));
	assert_ok(vmp_rados_remove(io, name));
	assert_block(a.p, 0, 1); /* resident */
	assert_rc(vmp_guard(read_byte, a.p + BS), -ESTALE);
	put_block(a.p, 2, 2);
	assert_rc(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT), -ENOENT);
	assert_u64(dirty_count(vmp_rados_fileh(a.ds)), 1);
	assert_rc(vmp_rados_sync(a.ds), -EBUSY);
	assert_rc(vmp_discard(vmp_rados_fileh(a.ds)), -ENOENT);
	assert_u64(dirty_count(vmp_rados_fileh(a.ds)), 0);
	assert_rc(vmp_rados_sync(a.ds), -ENOENT);
	view_close(&a);
	/* the failed commit's objects were removed: nothing is left */
	assert_rc(vmp_rados_remove(io, name), -ENOENT);
}

/* vmp_rados_remove sweeps the orphans a killed writer left. */
static void test_remove_sweeps_orphans(void **state)
{
	const char *name = dsname("orph");
	char env[] = "VMPAGE_RADOS_KILL_AT=3";
	rados_list_ctx_t list;
	const char *entry;
	struct child c;
	int left = 0;

	(void)state;
	need_cluster();
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	child_start(&c, "killed-writer", name, env);
	assert_int_equal(child_recv(&c, 30), 'w');
	(void)child_wait(&c);
	assert_ok(vmp_rados_remove(io, name));
	assert_ok(rados_nobjects_list_open(io, &list));
	while (!rados_nobjects_list_next(list, &entry, NULL, NULL))
		if (!strncmp(entry, name, strlen(name)))
			left++;
	rados_nobjects_list_close(list);
	assert_int_equal(left, 0);
}

/* A dataset removed and created again under the same name while a view
 * is open on the old one: the view must not take the new dataset for its
 * old one (vmpage-rados.h: after a remove, syncs and commits fail with
 * -ENOENT and loads with -ESTALE).  Here the new dataset reaches the same
 * commit number, and the view's sync says 0 and keeps its old block map:
 * it reads zeros where the new dataset has committed bytes, and its
 * commit, checked against tags of the old dataset, is accepted. */
static void test_recreated_under_view(void **state)
{
	const char *name = dsname("re");
	struct view a, b;
	int rc;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, VMP_NO_READAHEAD);
	put_block(a.p, 0, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT)); /* v1 */
	assert_ok(vmp_rados_remove(io, name));
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&b, name, 0);
	put_block(b.p, 1, 2);
	assert_ok(vmp_writeout(vmp_rados_fileh(b.ds), COMMIT)); /* new v1 */
	rc = vmp_rados_sync(a.ds);
	if (rc == 0) {
		/* then it must show the new dataset's bytes */
		assert_block(a.p, 1, 2);
		assert_block(a.p, 0, 0);
	} else {
		assert_rc(rc, -ENOENT);
	}
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* A commit whose head update reaches the cluster but whose reply comes
 * after rados_osd_op_timeout: librados says -ETIMEDOUT, yet the commit
 * happened.  writeout_abort then removes the block objects the head now
 * names, and every view reads -ESTALE for committed blocks: data lost.
 * (The outcome of such a commit is unknown to its writer; it may be
 * visible, but then whole.)  The replies are delayed with the client's
 * ms_inject_delay_* options (a connection of its own, 1 s op timeout);
 * the delay is random, so a few tries until the block writes came back in
 * time and the head update did not. */
static void test_commit_reply_lost(void **state)
{
	const char *name = dsname("lost");
	rados_t cl2;
	rados_ioctx_t io2;
	struct view a, b;
	bool hit = false;
	int tries, rc = 0;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(rados_create(&cl2, NULL));
	assert_ok(rados_conf_read_file(cl2, getenv("VMPAGE_RADOS_CONF")));
	assert_ok(rados_conf_set(cl2, "rados_osd_op_timeout", "1"));
	assert_ok(rados_conf_set(cl2, "ms_inject_delay_type", "osd"));
	assert_ok(rados_conf_set(cl2, "ms_inject_delay_max", "3"));
	assert_ok(rados_conf_set(cl2, "ms_inject_delay_probability", "0"));
	assert_ok(rados_connect(cl2));
	assert_ok(rados_ioctx_create(cl2, getenv("VMPAGE_RADOS_POOL") ?
				     getenv("VMPAGE_RADOS_POOL") : "vmpage", &io2));
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&b, name, VMP_NO_READAHEAD);
	assert_ok(vmp_ram_new(&a.ram, 0));
	assert_ok(vmp_rados_open(&a.ds, io2, name, a.ram, VMP_NO_READAHEAD));
	assert_ok(vmp_mmap(vmp_rados_fileh(a.ds), 0, NBLK,
			   PROT_READ | PROT_WRITE, (void **)&a.p));
	for (tries = 0; tries < 12 && !hit; tries++) {
		uint64_t before;

		assert_ok(vmp_rados_sync(b.ds));
		before = info_of(b.ds).version;
		put_block(a.p, 0, (uint32_t)(tries + 1));
		assert_ok(rados_conf_set(cl2, "ms_inject_delay_probability", "1"));
		rc = vmp_writeout(vmp_rados_fileh(a.ds), COMMIT);
		assert_ok(rados_conf_set(cl2, "ms_inject_delay_probability", "0"));
		sleep(4); /* the delayed ops and replies land */
		if (!rc) {
			continue;
		}
		assert_ok(vmp_rados_sync(b.ds));
		if (info_of(b.ds).version == before) {
			/* not applied: a clean failure; start again */
			(void)vmp_discard(vmp_rados_fileh(a.ds));
			continue;
		}
		hit = true;
	}
	print_message("commit reply lost: %d tries, last writeout %s\n",
		      tries, errname(rc));
	if (hit) {
		int lr = vmp_guard(read_byte, b.p);
		print_message("the failed commit is visible; block 0 loads "
			      "with %s\n", errname(lr < 0 ? lr : 0));
		/* the block the head now names must be there */
		assert_true(lr >= 0);
		assert_block(b.p, 0, (uint32_t)tries);
	}
	assert_ok(vmp_munmap(a.p));
	(void)vmp_discard(vmp_rados_fileh(a.ds));
	assert_ok(vmp_rados_close(a.ds));
	assert_ok(vmp_ram_free(a.ram));
	view_close(&b);
	rados_ioctx_destroy(io2);
	rados_shutdown(cl2);
	assert_ok(vmp_rados_remove(io, name));
}

struct slow_commit {
	vmp_fileh *fh;
	int rc;
	volatile bool done;
};

static void *slow_commit_thread(void *arg)
{
	struct slow_commit *sc = arg;

	sc->rc = vmp_writeout(sc->fh, COMMIT);
	sc->done = true;
	return NULL;
}

/* A commit rebased over commits whose logs were trimmed (grace 0) ends in
 * a full reload of the map (sync_full), which reads the NEWEST state; when
 * another commit landed after its own meanwhile, the view sets its own
 * blocks back to its own tags (its pages are marked stored with its bytes)
 * while the rest of the map is of the later commit: the next transaction
 * reads a state no commit made.  Here view a (a client whose replies are
 * delayed, so that its window is wide) commits block 0; view c, as soon as
 * it sees that commit, changes blocks 0 and 1 together and commits; a then
 * shows c's block 1 beside its own block 0. */
static void test_commit_sync_full_mixed(void **state)
{
	const char *name = dsname("mix");
	struct slow_commit sc = { 0 };
	rados_t cl2;
	rados_ioctx_t io2;
	struct view a, b, c;
	pthread_t th;
	double t0;
	bool c_done = false;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(rados_create(&cl2, NULL));
	assert_ok(rados_conf_read_file(cl2, getenv("VMPAGE_RADOS_CONF")));
	assert_ok(rados_conf_set(cl2, "ms_inject_delay_type", "osd"));
	assert_ok(rados_conf_set(cl2, "ms_inject_delay_max", "0.3"));
	assert_ok(rados_conf_set(cl2, "ms_inject_delay_probability", "0"));
	assert_ok(rados_connect(cl2));
	assert_ok(rados_ioctx_create(cl2, getenv("VMPAGE_RADOS_POOL") ?
				     getenv("VMPAGE_RADOS_POOL") : "vmpage", &io2));
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 0));
	assert_ok(vmp_ram_new(&a.ram, 0));
	assert_ok(vmp_rados_open(&a.ds, io2, name, a.ram, VMP_NO_READAHEAD));
	assert_ok(vmp_mmap(vmp_rados_fileh(a.ds), 0, NBLK,
			   PROT_READ | PROT_WRITE, (void **)&a.p));
	view_open(&b, name, 0);
	view_open(&c, name, VMP_NO_READAHEAD);
	/* two commits of others: a's commit rebases over both, and the log
	 * of the first is trimmed by the second (grace 0) */
	for (uint32_t v = 1; v <= 2; v++) {
		put_block(b.p, 5, v);
		assert_ok(vmp_writeout(vmp_rados_fileh(b.ds), COMMIT));
	}
	put_block(a.p, 0, 7);
	sc.fh = vmp_rados_fileh(a.ds);
	assert_ok(rados_conf_set(cl2, "ms_inject_delay_probability", "1"));
	assert_int_equal(pthread_create(&th, NULL, slow_commit_thread, &sc), 0);
	t0 = now_s();
	while (!sc.done && now_s() - t0 < 30) {
		assert_ok(vmp_rados_sync(c.ds));
		if (info_of(c.ds).version >= 3 && has_block(c.p, 0, 7)) {
			put_block(c.p, 0, 8);
			put_block(c.p, 1, 8);
			assert_ok(vmp_writeout(vmp_rados_fileh(c.ds), COMMIT));
			c_done = true;
			break;
		}
		usleep(500);
	}
	pthread_join(th, NULL);
	assert_ok(rados_conf_set(cl2, "ms_inject_delay_probability", "0"));
	assert_ok(sc.rc);
	print_message("mixed: c committed in a's window: %s; a at version "
		      "%llu\n", c_done ? "yes" : "no",
		      (unsigned long long)info_of(a.ds).version);
	/* whatever state a reads, it is one commit's: blocks 0 and 1 are
	 * both c's (v4) or block 0 a's and block 1 zeros (v3) */
	if (has_block(a.p, 1, 8))
		assert_block(a.p, 0, 8);
	else
		assert_block(a.p, 0, 7);
	assert_ok(vmp_munmap(a.p));
	assert_ok(vmp_rados_close(a.ds));
	assert_ok(vmp_ram_free(a.ram));
	view_close(&c);
	view_close(&b);
	rados_ioctx_destroy(io2);
	rados_shutdown(cl2);
	assert_ok(vmp_rados_remove(io, name));
}

/* Grace 1 s: a view still on the superseded snapshot may load the old
 * version for 1 s after the commit that superseded it.  Commit times are
 * whole seconds (time(NULL)) and the collector deletes a version once
 * time + grace <= now: a version superseded at x.95 s is deleted at the
 * next commit after (x+1).0 s, kept 0.05 s instead of 1 s. */
static void test_gc_grace_kept(void **state)
{
	const char *name = dsname("grace");
	struct timespec ts;
	struct view a, b;
	double t_sup;
	int rc;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 1));
	view_open(&a, name, 0);
	put_block(a.p, 0, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	view_open(&b, name, VMP_NO_READAHEAD); /* at v1, nothing loaded */
	/* just before a second begins */
	do {
		clock_gettime(CLOCK_REALTIME, &ts);
		usleep(1000);
	} while (ts.tv_nsec < 900000000L);
	put_block(a.p, 0, 2);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT)); /* supersedes */
	t_sup = now_s();
	usleep(200000);
	put_block(a.p, 1, 3);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT)); /* collects */
	rc = vmp_guard(read_byte, b.p);
	print_message("grace 1 s: the old version loads with %s %.2f s after "
		      "it was superseded\n", errname(rc < 0 ? rc : 0),
		      now_s() - t_sup);
	assert_true(now_s() - t_sup < 1.0); /* still within the grace */
	assert_true(rc >= 0);
	assert_block(b.p, 0, 1);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* A dead watcher (the cluster keeps its watch ~30 s) makes each notify
 * last its whole timeout (1 s); a writer that commits more than 8 times
 * in that second then sends no notification at all for its later commits
 * (notify_send skips when 8 are in flight), so the live views never hear
 * of its last commit: their notify callback and info().announced stay
 * behind for good, not for a moment. */
static void test_dead_watcher_live_notified(void **state)
{
	const char *name = dsname("dwn");
	struct child c;
	struct view a, b;
	double t0;
	uint64_t last;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	view_open(&b, name, 0);
	child_start(&c, "watcher", name, NULL);
	assert_int_equal(child_recv(&c, 30), 'w');
	kill(c.pid, SIGKILL);
	(void)child_wait(&c);
	for (uint32_t v = 1; v <= 12; v++) {
		put_block(a.p, 0, v);
		assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	}
	last = info_of(a.ds).version;
	t0 = now_s();
	while (info_of(b.ds).announced < last && now_s() - t0 < 5)
		usleep(10000);
	print_message("dead watcher: the live view heard of commit %llu of "
		      "%llu (%.1f s)\n",
		      (unsigned long long)info_of(b.ds).announced,
		      (unsigned long long)last, now_s() - t0);
	assert_u64(info_of(b.ds).announced, last);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

/* tests/ceph-cluster freeze|thaw: 0 or why not in @why. */
static int cluster_cmd(const char *cmd, char *why, size_t len)
{
	const char *script = getenv("VMPAGE_CEPH_CLUSTER");
	const char *dir = getenv("VMPAGE_RADOS_DIR");
	char line[8192];

	if (!script || !dir) {
		snprintf(why, len, "VMPAGE_RADOS_DIR or VMPAGE_CEPH_CLUSTER not "
			 "set: cannot stop the cluster (not started by "
			 "tests/ceph-cluster)");
		return -1;
	}
	snprintf(line, sizeof(line), "'%s' %s '%s'", script, cmd, dir);
	if (system(line) != 0) {
		snprintf(why, len, "tests/ceph-cluster %s failed", cmd);
		return -1;
	}
	return 0;
}

static int thaw_cluster(void **state)
{
	char why[256];

	(void)state;
	(void)cluster_cmd("thaw", why, sizeof(why));
	return 0;
}

/* The cluster stops answering under a mapping: loads fail through the
 * fault error path after rados_osd_op_timeout (5 s here), vmp_guard
 * catches them, a commit fails and keeps its dirty pages; once it is back
 * the view works again and the commit goes through. */
static void test_cluster_gone(void **state)
{
	const char *name = dsname("gone");
	struct view a, b;
	char why[256];
	double t0, t_load, t_commit;
	int rc, rc2;

	(void)state;
	need_cluster();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_rados_create(io, name, BS, NBLK, 60));
	view_open(&a, name, 0);
	for (uint64_t i = 0; i < 4; i++)
		put_block(a.p, i, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	view_open(&b, name, VMP_NO_READAHEAD);
	assert_block(b.p, 0, 1);
	put_block(a.p, 4, 2);
	if (cluster_cmd("freeze", why, sizeof(why))) {
		print_message("[  SKIP    ] %s\n", why);
		view_close(&b);
		view_close(&a);
		assert_ok(vmp_rados_remove(io, name));
		skip();
	}
	/* nothing between freeze and thaw may fail the test: cmocka skips
	 * the teardown of a test a signal ended */
	(void)rados_wait_for_latest_osdmap(cluster); /* the pause flag */
	t0 = now_s();
	rc = vmp_guard(read_byte, b.p + BS);
	t_load = now_s() - t0;
	t0 = now_s();
	rc2 = vmp_writeout(vmp_rados_fileh(a.ds), COMMIT);
	t_commit = now_s() - t0;
	assert_int_equal(cluster_cmd("thaw", why, sizeof(why)), 0);
	(void)rados_wait_for_latest_osdmap(cluster);

	print_message("cluster gone: load failed with %s after %.1f s, "
		      "commit with %s after %.1f s\n", errname(rc), t_load,
		      errname(rc2), t_commit);
	assert_true(rc < 0);
	assert_true(rc2 < 0);
	assert_u64(dirty_count(vmp_rados_fileh(a.ds)), 1);
	assert_block(a.p, 4, 2);
	assert_block(b.p, 0, 1); /* loaded before: still there */
	/* back: the same view loads again (the OSD may take a moment) */
	t0 = now_s();
	while ((rc = vmp_guard(read_byte, b.p + BS)) < 0 && now_s() - t0 < 30)
		usleep(100000);
	assert_true(rc >= 0); /* the byte read */
	print_message("cluster back: first load %.1f s after the thaw\n",
		      now_s() - t0);
	assert_block(b.p, 1, 1);
	assert_ok(vmp_writeout(vmp_rados_fileh(a.ds), COMMIT));
	assert_ok(vmp_rados_sync(b.ds));
	assert_block(b.p, 4, 2);
	view_close(&b);
	view_close(&a);
	assert_ok(vmp_rados_remove(io, name));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_datasets),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_large_map),
		cmocka_unit_test(test_two_processes_isolation),
		cmocka_unit_test(test_conflict),
		cmocka_unit_test(test_nonoverlapping),
		cmocka_unit_test(test_discard_syncs),
		cmocka_unit_test(test_sync_under_loads),
		cmocka_unit_test(test_concurrent_counter),
		cmocka_unit_test(test_killed_writer),
		cmocka_unit_test(test_dead_watcher),
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_gc),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_removed_under_view),
		cmocka_unit_test(test_remove_sweeps_orphans),
		cmocka_unit_test(test_recreated_under_view),
		cmocka_unit_test(test_commit_reply_lost),
		cmocka_unit_test(test_commit_sync_full_mixed),
		cmocka_unit_test(test_gc_grace_kept),
		cmocka_unit_test(test_dead_watcher_live_notified),
		cmocka_unit_test_teardown(test_cluster_gone, thaw_cluster),
	};
	ssize_t n;
	int ret;

	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		return 1;
	self_exe[n] = '\0';
	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child_main(argc, argv);
	if (vmp_fault_handler_install() == -ENOSYS)
		return TEST_SKIP;
	if (connect_cluster(&cluster, &io, no_cluster, sizeof(no_cluster)) == 0)
		no_cluster[0] = '\0';
	if (getenv("VMPAGE_TEST_FILTER")) /* e.g. "test_gc" */
		cmocka_set_test_filter(getenv("VMPAGE_TEST_FILTER"));
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	if (no_cluster[0])
		return ret ? ret : TEST_SKIP; /* meson says SKIP, not OK */
	rados_ioctx_destroy(io);
	rados_shutdown(cluster);
	return ret;
}
