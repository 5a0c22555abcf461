/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rados-demo: one dataset in Ceph RADOS, three processes.
 *
 *   rados-demo [-c CEPH_CONF] [-p POOL] [-i CLIENT_ID]
 *
 * 1. This process creates a dataset of 256 blocks of 4 KiB seen as an
 *    array of 64-byte text records, fills it through a mapping and
 *    commits (vmp_writeout).
 * 2. A second process (this program again, as "reader") opens the dataset,
 *    maps it and reads record 1000.
 * 3. A third process ("writer") changes record 1000 and commits.
 * 4. The reader reads record 1000 again: still the old text (it reads one
 *    committed state until its next sync point); after vmp_rados_sync() it
 *    reads the new one.
 *
 * The cluster: CEPH_CONF (or -c) names a ceph.conf whose keyring the
 * client (client.admin, or -i ID for client.ID) can read; the pool (-p, or
 * VMPAGE_RADOS_POOL, default "vmpage") must exist.  VMPAGE_RADOS_CONF is
 * read too, as the test suite sets it.  Without any, the program says so
 * and exits with 77 ("skipped").
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vmpage-rados.h>

#define PROG "rados-demo"
#define RECSIZE 64
#define BLKSIZE 4096
#define NBLOCKS 256
#define NRECORDS (NBLOCKS * BLKSIZE / RECSIZE)
#define THE_RECORD 1000

#include "common.h" /* fail() */

static const unsigned COMMIT = VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED;

static void make_record(char *rec, unsigned idx, const char *what)
{
	int n = snprintf(rec, RECSIZE, "record %05u: %s", idx, what);

	memset(rec + n, ' ', RECSIZE - (size_t)n - 1);
	rec[RECSIZE - 1] = '\n';
}

/* "record 01000: original" */
static void print_record(const char *who, const char *rec)
{
	int n = RECSIZE - 1;

	while (n > 0 && rec[n - 1] == ' ')
		n--;
	printf("%-8s sees \"%.*s\"\n", who, n, rec);
	fflush(stdout);
}

struct conn {
	rados_t cluster;
	rados_ioctx_t io;
};

static int connect_pool(struct conn *c, const char *conf, const char *id,
			const char *pool)
{
	int ret;

	if ((ret = rados_create(&c->cluster, id)))
		return ret;
	if ((ret = rados_conf_read_file(c->cluster, conf)) ||
	    (ret = rados_connect(c->cluster))) {
		rados_shutdown(c->cluster);
		return ret;
	}
	if ((ret = rados_ioctx_create(c->cluster, pool, &c->io))) {
		rados_shutdown(c->cluster);
		return ret;
	}
	return 0;
}

static void disconnect(struct conn *c)
{
	rados_ioctx_destroy(c->io);
	rados_shutdown(c->cluster);
}

/* A view of @name mapped read-write: *ram, *ds, *p. */
static int open_view(struct conn *c, const char *name, vmp_ram **ram,
		     vmp_rados **ds, char **p)
{
	int ret;

	if ((ret = vmp_ram_new(ram, 0)))
		return ret;
	if ((ret = vmp_rados_open(ds, c->io, name, *ram, 0))) {
		(void)vmp_ram_free(*ram);
		return ret;
	}
	ret = vmp_mmap(vmp_rados_fileh(*ds), 0, NBLOCKS, PROT_READ | PROT_WRITE,
		       (void **)p);
	if (ret) {
		(void)vmp_rados_close(*ds);
		(void)vmp_ram_free(*ram);
	}
	return ret;
}

static int close_view(vmp_ram *ram, vmp_rados *ds, char *p)
{
	int ret = vmp_munmap(p);

	if (!ret)
		ret = vmp_rados_close(ds);
	if (!ret)
		ret = vmp_ram_free(ram);
	return ret;
}

/* Roles run in their own processes; @to / @from: pipes to the parent. */
static int reader(struct conn *c, const char *name, int to, int from)
{
	vmp_ram *ram;
	vmp_rados *ds;
	char *p, go;
	int ret;

	if ((ret = open_view(c, name, &ram, &ds, &p)))
		return fail("reader: open", ret);
	print_record("reader", p + THE_RECORD * RECSIZE);
	if (write(to, "r", 1) != 1 || read(from, &go, 1) != 1)
		return fail("reader: pipe", -EPIPE);
	/* the writer has committed: this view still reads its snapshot */
	print_record("reader", p + THE_RECORD * RECSIZE);
	if ((ret = vmp_rados_sync(ds)))
		return fail("reader: vmp_rados_sync", ret);
	printf("reader   synced\n");
	print_record("reader", p + THE_RECORD * RECSIZE);
	if (strncmp(p + THE_RECORD * RECSIZE + 14, "changed by the writer", 21))
		return fail("reader: the record did not change", -EIO);
	return close_view(ram, ds, p) ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int writer(struct conn *c, const char *name)
{
	vmp_ram *ram;
	vmp_rados *ds;
	char *p;
	int ret;

	if ((ret = open_view(c, name, &ram, &ds, &p)))
		return fail("writer: open", ret);
	make_record(p + THE_RECORD * RECSIZE, THE_RECORD, "changed by the writer");
	/* -EBUSY here would mean another process changed this block since
	 * we opened: vmp_discard() and redo */
	if ((ret = vmp_writeout(vmp_rados_fileh(ds), COMMIT)))
		return fail("writer: commit", ret);
	printf("writer   committed record %d\n", THE_RECORD);
	return close_view(ram, ds, p) ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Run this program as @role; pipes to and from it in *to, *from. */
static pid_t spawn(const char *self, const char *role, char **args,
		   int *to, int *from)
{
	int down[2], up[2];
	char a_from[16], a_to[16];
	pid_t pid;

	if (pipe(down) || pipe(up))
		return -1;
	snprintf(a_from, sizeof(a_from), "%d", down[0]);
	snprintf(a_to, sizeof(a_to), "%d", up[1]);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* a fresh process, not a copy of one with librados threads */
		char *argv[] = { (char *)self, (char *)"--role", (char *)role,
				 args[0], args[1], args[2], args[3], a_to,
				 a_from, NULL };
		execv(self, argv);
		_exit(127);
	}
	close(down[0]);
	close(up[1]);
	*to = down[1];
	*from = up[0];
	return pid;
}

static int wait_ok(pid_t pid, const char *who)
{
	int status;

	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		fprintf(stderr, PROG ": the %s failed\n", who);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *conf = getenv("CEPH_CONF"), *id = NULL;
	const char *pool = getenv("VMPAGE_RADOS_POOL");
	char name[64], self[4096], *args[4], ch;
	int opt, ret, to, from, wto, wfrom, rc = EXIT_FAILURE;
	struct conn c;
	vmp_ram *ram;
	vmp_rados *ds;
	pid_t rpid, wpid;
	ssize_t n;
	char *p;

	if (argc == 9 && !strcmp(argv[1], "--role")) {
		/* role NAME CONF ID POOL TO FROM ("-": none) */
		id = strcmp(argv[5], "-") ? argv[5] : NULL;
		if ((ret = connect_pool(&c, argv[4], id, argv[6])))
			return fail("connect", ret);
		rc = !strcmp(argv[2], "reader")
			     ? reader(&c, argv[3], atoi(argv[7]), atoi(argv[8]))
			     : writer(&c, argv[3]);
		disconnect(&c);
		return rc;
	}
	if (!conf || !*conf)
		conf = getenv("VMPAGE_RADOS_CONF");
	while ((opt = getopt(argc, argv, "c:p:i:")) != -1) {
		switch (opt) {
		case 'c': conf = optarg; break;
		case 'p': pool = optarg; break;
		case 'i': id = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-c CEPH_CONF] [-p POOL] "
				"[-i CLIENT_ID]\n", argv[0]);
			return 2;
		}
	}
	if (!conf || !*conf) {
		fprintf(stderr, PROG ": no cluster: set CEPH_CONF or give -c "
			"(tests/ceph-cluster up DIR starts a test cluster)\n");
		return 77;
	}
	if (!pool || !*pool)
		pool = "vmpage";
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return fail("/proc/self/exe", -errno);
	self[n] = '\0';
	if ((ret = connect_pool(&c, conf, id, pool)))
		return fail("connect", ret);

	/* 1. create, fill through a mapping, commit */
	snprintf(name, sizeof(name), "rados-demo-%d-%ld", (int)getpid(),
		 (long)time(NULL));
	if ((ret = vmp_rados_create(c.io, name, BLKSIZE, NBLOCKS, 60))) {
		rc = fail("vmp_rados_create", ret);
		goto out_disconnect;
	}
	if ((ret = open_view(&c, name, &ram, &ds, &p))) {
		rc = fail("open", ret);
		goto out_remove;
	}
	for (unsigned i = 0; i < NRECORDS; i++)
		make_record(p + (size_t)i * RECSIZE, i, "original");
	if ((ret = vmp_writeout(vmp_rados_fileh(ds), COMMIT))) {
		rc = fail("commit", ret);
		goto out_close;
	}
	printf("creator  committed %d records in dataset %s\n", NRECORDS, name);

	/* 2. a reader maps it; 3. a writer changes a record; 4. the reader
	 * sees the change after its sync */
	args[0] = name;
	args[1] = (char *)conf;
	args[2] = (char *)(id ? id : "-");
	args[3] = (char *)pool;
	rpid = spawn(self, "reader", args, &to, &from);
	if (rpid < 0 || read(from, &ch, 1) != 1) {
		fprintf(stderr, PROG ": the reader did not start\n");
		goto out_close;
	}
	wpid = spawn(self, "writer", args, &wto, &wfrom);
	if (wpid < 0 || wait_ok(wpid, "writer"))
		goto out_close;
	close(wto);
	close(wfrom);
	if (write(to, "c", 1) != 1 || wait_ok(rpid, "reader"))
		goto out_close;
	close(to);
	close(from);
	rc = EXIT_SUCCESS;
out_close:
	if (close_view(ram, ds, p))
		rc = EXIT_FAILURE;
out_remove:
	if ((ret = vmp_rados_remove(c.io, name)))
		rc = fail("vmp_rados_remove", ret);
out_disconnect:
	disconnect(&c);
	return rc;
}
