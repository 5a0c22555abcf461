/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmpage-rados-bench: libvmpage-rados against plain librados, same run,
 * same cluster, same parallelism (64 operations in flight, what the
 * library keeps in flight).
 *
 *   vmpage-rados-bench [--quick]      (cluster: VMPAGE_RADOS_CONF or
 *                                      CEPH_CONF; pool VMPAGE_RADOS_POOL)
 *
 * Rows:
 *   seq-read      a dataset of 4096 4 KiB blocks read through a fresh
 *                 mapping, front to back (read-ahead: loadblks), vs aio
 *                 reads of the same objects, 64 in flight
 *   rand-touch    one 4 KiB page touched at random (VMP_NO_READAHEAD), vs
 *                 one synchronous rados_read: per touch
 *   commit-N      N changed 4 KiB blocks committed (vmp_writeout), vs N
 *                 rados_aio_write_full of new objects, 64 in flight:
 *                 blocks per second; N = 1000 and 100000 (10000 --quick)
 *   notify-to-invalidate  from another view's notification callback to
 *                 the end of its sync (its page invalidated and loaded
 *                 again at the next touch): median of 20
 *
 * Memstore keeps every object in RAM: the whole run writes ~1 GB there
 * (~100 MB with --quick); its datasets are removed at the end.
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vmpage-rados.h>

#define BS 4096
#define INFLIGHT 64

static rados_t cluster;
static rados_ioctx_t io;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "vmpage-rados-bench: %s: %s (%d)\n", what, strerror(-err), err);
	exit(1);
}

static void row(const char *name, const char *unit, double lib, double raw,
		const char *note)
{
	printf("%-22s %-12s %12.3f %12.3f %8.3f  %s\n", name, unit, lib, raw,
	       raw > 0 ? lib / raw : 0, note);
	fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct view {
	vmp_ram *ram;
	vmp_rados *ds;
	char *p;
};

static void view_open(struct view *v, const char *name, uint64_t n,
		      unsigned flags)
{
	int ret;

	if ((ret = vmp_ram_new(&v->ram, 0)))
		die("vmp_ram_new", ret);
	if ((ret = vmp_rados_open(&v->ds, io, name, v->ram, flags)))
		die("vmp_rados_open", ret);
	if ((ret = vmp_mmap(vmp_rados_fileh(v->ds), 0, n,
			    PROT_READ | PROT_WRITE, (void **)&v->p)))
		die("vmp_mmap", ret);
}

static void view_close(struct view *v)
{
	int ret;

	if ((ret = vmp_munmap(v->p)) || (ret = vmp_rados_close(v->ds)) ||
	    (ret = vmp_ram_free(v->ram)))
		die("close a view", ret);
}

static const unsigned COMMIT = VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED;

/* Every block of @v dirty with some bytes, committed: seconds. */
static double commit_all(struct view *v, uint64_t n, unsigned char salt)
{
	double t0;
	int ret;

	for (uint64_t b = 0; b < n; b++)
		memset(v->p + b * BS, (int)(b + salt), BS);
	t0 = now_s();
	if ((ret = vmp_writeout(vmp_rados_fileh(v->ds), COMMIT)))
		die("commit", ret);
	return now_s() - t0;
}

/* The block objects of dataset @name, as the pool lists them. */
static char **list_objects(const char *name, size_t *np)
{
	rados_list_ctx_t list;
	const char *e;
	size_t n = 0, cap = 0, len = strlen(name);
	char **v = NULL;

	if (rados_nobjects_list_open(io, &list))
		die("list", -EIO);
	while (!rados_nobjects_list_next(list, &e, NULL, NULL)) {
		if (strncmp(e, name, len) || e[len] != '/' || strstr(e, "/head"))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			v = realloc(v, cap * sizeof(*v));
		}
		v[n++] = strdup(e);
	}
	rados_nobjects_list_close(list);
	*np = n;
	return v;
}

/* @n aio operations, INFLIGHT at a time: reads of @oids into @buf, or
 * writes of @buf to new objects "@prefix/<i>".  Seconds. */
static double raw_aio(char **oids, const char *prefix, size_t n, char *buf,
		      bool write)
{
	rados_completion_t c[INFLIGHT];
	size_t head = 0, inflight = 0, i = 0;
	char oid[256];
	double t0 = now_s();

	while (i < n || inflight) {
		if (i < n && inflight < INFLIGHT) {
			size_t slot = (head + inflight) % INFLIGHT;
			rados_aio_create_completion2(NULL, NULL, &c[slot]);
			if (write) {
				snprintf(oid, sizeof(oid), "%s/%zu", prefix, i);
				rados_aio_write_full(io, oid, c[slot], buf, BS);
			} else {
				rados_aio_read(io, oids[i], c[slot],
					       buf + (i % 512) * BS, BS, 0);
			}
			i++;
			inflight++;
			continue;
		}
		rados_aio_wait_for_complete(c[head]);
		if (rados_aio_get_return_value(c[head]) < 0)
			die("raw aio", rados_aio_get_return_value(c[head]));
		rados_aio_release(c[head]);
		head = (head + 1) % INFLIGHT;
		inflight--;
	}
	return now_s() - t0;
}

static void remove_raw(const char *prefix, size_t n)
{
	rados_completion_t c[INFLIGHT];
	size_t head = 0, inflight = 0, i = 0;
	char oid[256];

	while (i < n || inflight) {
		if (i < n && inflight < INFLIGHT) {
			size_t slot = (head + inflight) % INFLIGHT;
			snprintf(oid, sizeof(oid), "%s/%zu", prefix, i++);
			rados_aio_create_completion2(NULL, NULL, &c[slot]);
			rados_aio_remove(io, oid, c[slot]);
			inflight++;
			continue;
		}
		rados_aio_wait_for_complete(c[head]);
		rados_aio_release(c[head]);
		head = (head + 1) % INFLIGHT;
		inflight--;
	}
}

static void bench_seq_and_rand(const char *name)
{
	const uint64_t n = 4096;
	struct view w, r;
	char **oids, *buf = malloc(512 * BS);
	size_t nobj;
	volatile unsigned sum = 0;
	double t_lib, t_raw, t0;
	int ret;

	if ((ret = vmp_rados_create(io, name, BS, n, 3600)))
		die("create", ret);
	view_open(&w, name, n, 0);
	commit_all(&w, n, 1);
	view_close(&w);
	oids = list_objects(name, &nobj);

	/* seq-read: best of 3, each with a fresh view (nothing cached) */
	t_lib = t_raw = 1e9;
	for (int rep = 0; rep < 3; rep++) {
		view_open(&r, name, n, 0);
		t0 = now_s();
		for (uint64_t b = 0; b < n; b++)
			sum += (unsigned char)r.p[b * BS];
		t0 = now_s() - t0;
		t_lib = t0 < t_lib ? t0 : t_lib;
		view_close(&r);
		t0 = raw_aio(oids, NULL, nobj, buf, false);
		t_raw = t0 < t_raw ? t0 : t_raw;
	}
	row("seq-read", "MiB/s", n * BS / t_lib / (1 << 20),
	    nobj * BS / t_raw / (1 << 20), "best of 3; 16 MiB; raw: aio, 64 in flight");

	/* rand-touch: 2000 touches of distinct random pages, per touch */
	{
		const int touches = 2000;
		uint64_t *order = malloc(n * sizeof(*order));
		double lib_us, raw_us;

		for (uint64_t i = 0; i < n; i++)
			order[i] = i;
		srand(42);
		for (uint64_t i = n - 1; i > 0; i--) {
			uint64_t j = (uint64_t)rand() % (i + 1), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		view_open(&r, name, n, VMP_NO_READAHEAD);
		t0 = now_s();
		for (int i = 0; i < touches; i++)
			sum += (unsigned char)r.p[order[i] * BS];
		lib_us = (now_s() - t0) / touches * 1e6;
		view_close(&r);
		t0 = now_s();
		for (int i = 0; i < touches; i++)
			if (rados_read(io, oids[order[i] % nobj], buf, BS, 0) < 0)
				die("rados_read", -EIO);
		raw_us = (now_s() - t0) / touches * 1e6;
		row("rand-touch", "us/touch", lib_us, raw_us,
		    "2000 distinct pages; raw: rados_read");
		free(order);
	}
	for (size_t i = 0; i < nobj; i++)
		free(oids[i]);
	free(oids);
	free(buf);
	if ((ret = vmp_rados_remove(io, name)))
		die("remove", ret);
	(void)sum;
}

static void bench_commit(const char *name, uint64_t n)
{
	char rowname[32], prefix[128], note[128];
	char *buf = calloc(1, BS);
	struct view v;
	double t_lib, t_raw;
	int ret;

	/* raw first: the OSD's memory grows for whichever runs first */
	snprintf(prefix, sizeof(prefix), "%s-raw", name);
	t_raw = raw_aio(NULL, prefix, n, buf, true);
	remove_raw(prefix, n);
	if ((ret = vmp_rados_create(io, name, BS, n, 3600)))
		die("create", ret);
	view_open(&v, name, n, 0);
	t_lib = commit_all(&v, n, 7);
	view_close(&v);
	if ((ret = vmp_rados_remove(io, name))) /* memstore: RAM */
		die("remove", ret);
	snprintf(rowname, sizeof(rowname), "commit-%" PRIu64, n);
	snprintf(note, sizeof(note), "commit %.2f s, raw writes %.2f s",
		 t_lib, t_raw);
	row(rowname, "kblocks/s", n / t_lib / 1e3, n / t_raw / 1e3, note);
	free(buf);
}

struct notified {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t version;
	double at;
};

static void on_notify(vmp_rados *ds, uint64_t version, void *arg)
{
	struct notified *s = arg;

	(void)ds;
	pthread_mutex_lock(&s->lock);
	s->version = version;
	s->at = now_s();
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void bench_notify(const char *name)
{
	struct notified s = { PTHREAD_MUTEX_INITIALIZER,
			      PTHREAD_COND_INITIALIZER, 0, 0 };
	double to_notify[20], to_inval[20];
	char note[128];
	struct view a, b;
	int ret;

	if ((ret = vmp_rados_create(io, name, BS, 16, 3600)))
		die("create", ret);
	view_open(&a, name, 16, 0);
	view_open(&b, name, 16, 0);
	if ((ret = vmp_rados_set_notify(b.ds, on_notify, &s)))
		die("set_notify", ret);
	for (int i = 0; i < 20; i++) {
		double t_end, t_note;
		uint64_t want = (uint64_t)i + 1;

		(void)*(volatile char *)b.p; /* loaded: to be invalidated */
		a.p[0] = (char)i;
		if ((ret = vmp_writeout(vmp_rados_fileh(a.ds), COMMIT)))
			die("commit", ret);
		t_end = now_s();
		pthread_mutex_lock(&s.lock);
		while (s.version < want)
			pthread_cond_wait(&s.cond, &s.lock);
		t_note = s.at;
		pthread_mutex_unlock(&s.lock);
		if ((ret = vmp_rados_sync(b.ds)))
			die("sync", ret);
		to_notify[i] = (t_end - t_note) * 1e3;
		to_inval[i] = (now_s() - t_note) * 1e3;
		if (b.p[0] != (char)i)
			die("the invalidated page", -EIO);
	}
	qsort(to_notify, 20, sizeof(double), cmp_double);
	qsort(to_inval, 20, sizeof(double), cmp_double);
	snprintf(note, sizeof(note), "medians of 20; the notification came "
		 "%.3f ms before the commit returned", to_notify[10]);
	row("notify-to-invalidate", "ms", to_inval[10], 0, note);
	view_close(&b);
	view_close(&a);
	if ((ret = vmp_rados_remove(io, name)))
		die("remove", ret);
}

int main(int argc, char **argv)
{
	const char *conf = getenv("VMPAGE_RADOS_CONF");
	const char *pool = getenv("VMPAGE_RADOS_POOL");
	bool quick = argc > 1 && !strcmp(argv[1], "--quick");
	char name[64];
	int ret;

	if (!conf || !*conf)
		conf = getenv("CEPH_CONF");
	if (!conf || !*conf) {
		fprintf(stderr, "vmpage-rados-bench: set VMPAGE_RADOS_CONF or "
			"CEPH_CONF (tests/ceph-cluster up DIR)\n");
		return 77;
	}
	if ((ret = rados_create(&cluster, NULL)) ||
	    (ret = rados_conf_read_file(cluster, conf)) ||
	    (ret = rados_connect(cluster)) ||
	    (ret = rados_ioctx_create(cluster, pool && *pool ? pool : "vmpage",
				      &io)))
		die("connect", ret);
	if ((ret = vmp_fault_handler_install()))
		die("vmp_fault_handler_install", ret);
	printf("%-22s %-12s %12s %12s %8s  %s\n", "row", "unit", "library",
	       "librados", "ratio", "note");
	snprintf(name, sizeof(name), "bench-%d-seq", (int)getpid());
	bench_seq_and_rand(name);
	snprintf(name, sizeof(name), "bench-%d-c1", (int)getpid());
	bench_commit(name, 1000);
	snprintf(name, sizeof(name), "bench-%d-c2", (int)getpid());
	bench_commit(name, quick ? 10000 : 100000);
	snprintf(name, sizeof(name), "bench-%d-nt", (int)getpid());
	bench_notify(name);
	rados_ioctx_destroy(io);
	rados_shutdown(cluster);
	return 0;
}
