/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * transaction: change records of a file in place through a mapping, then
 * roll the change back or commit it, checking the file after each step.
 *
 *   transaction [FILE]
 *
 * The file is seen as an array of 64-byte records.  Writes through a
 * read-write libvmpage mapping stay in the handle's change set (dirty pages
 * in memory) until vmp_writeout() stores them; vmp_discard() throws them
 * away.  The program does three transactions on five records spread over
 * the file and checks the file with pread(2) after each:
 *
 *   1. change, then roll back (vmp_discard): the file never changes;
 *   2. change, then commit (vmp_writeout STORE|MARKSTORED): the file has the
 *      new records and nothing else changed;
 *   3. write the original records back and commit: the file is as before.
 *
 * It tries VMP_OVERLAY first (clean pages mapped straight from the file by
 * the kernel; only the changed pages live in the library's memory) and
 * falls back to the normal mode when vmp_fileh_open refuses it.
 *
 * FILE is changed in place and restored by step 3; only whole pages of it
 * are touched.  Without FILE, a temporary 64 MiB file of text records is
 * used.  The memory limit is $VMPAGE_MEMLIMIT, or none.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmpage.h>

#define PROG "transaction"
#define RECSIZE 64
#define NCHANGE 5
#define TEMP_FILE_SIZE (64ull << 20)
#define IO_CHUNK (1u << 20) /* a multiple of RECSIZE */

#include "common.h" /* fail() */

typedef unsigned char record[RECSIZE];

/* Record @idx as a line of text: "record 000000000042: <what>   ...\n". */
static void make_record(record rec, uint64_t idx, const char *what)
{
	char line[RECSIZE + 64];
	int n = snprintf(line, sizeof(line), "record %012" PRIu64 ": %s", idx,
			 what);

	memset(rec, ' ', RECSIZE);
	memcpy(rec, line, n < RECSIZE - 1 ? (size_t)n : RECSIZE - 1);
	rec[RECSIZE - 1] = '\n';
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the file shrank under us */
		done += (size_t)n;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

/*
 * The file's checksum: the sum of one hash per record (a last partial
 * record padded with zeros).  Being a sum, it can be updated for the
 * records a transaction changes without a copy of the file.
 */
static uint64_t record_hash(uint64_t idx, const unsigned char *rec)
{
	uint64_t h = 0xcbf29ce484222325ull ^ idx;
	size_t i;

	for (i = 0; i < RECSIZE; i++)
		h = (h ^ rec[i]) * 0x100000001b3ull;
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

static int file_sum(int fd, uint64_t size, uint64_t *sum)
{
	unsigned char *buf = malloc(IO_CHUNK + RECSIZE);
	uint64_t off, h = 0;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (off = 0; off < size; off += IO_CHUNK) {
		size_t len =
			size - off < IO_CHUNK ? (size_t)(size - off) : IO_CHUNK;
		size_t i;

		ret = pread_full(fd, buf, len, off);
		if (ret < 0)
			goto out;
		memset(buf + len, 0, RECSIZE); /* pads a partial last record */
		for (i = 0; i < len; i += RECSIZE)
			h += record_hash((off + i) / RECSIZE, buf + i);
	}
	*sum = h;
out:
	free(buf);
	return ret;
}

/* Write an unlinked temporary file of @size bytes of text records. */
static int make_temp_file(uint64_t size, char *path, size_t pathlen)
{
	const char *dir = getenv("TMPDIR");
	unsigned char *buf;
	uint64_t off;
	int fd, ret = 0;

	if (!dir || !*dir)
		dir = "/tmp";
	if ((size_t)snprintf(path, pathlen, "%s/vmpage-txn-XXXXXX", dir) >=
	    pathlen)
		return -ENAMETOOLONG;
	buf = malloc(IO_CHUNK);
	if (!buf)
		return -ENOMEM;
	fd = mkstemp(path);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	if (unlink(path) < 0) {
		ret = -errno;
		goto out;
	}
	for (off = 0; off < size; off += IO_CHUNK) {
		size_t len =
			size - off < IO_CHUNK ? (size_t)(size - off) : IO_CHUNK;
		size_t i;

		for (i = 0; i < len; i += RECSIZE)
			make_record(buf + i, (off + i) / RECSIZE,
				    "original contents");
		ret = pwrite_full(fd, buf, len, off);
		if (ret < 0)
			goto out;
	}
out:
	free(buf);
	if (ret < 0 && fd >= 0)
		close(fd);
	return ret < 0 ? ret : fd;
}

/* Copy records to or from the mapping; run under vmp_guard(). */
struct access {
	unsigned char *map;
	const uint64_t *idx;
	record *recs;
	int to_map;
};

static int copy_records(void *arg)
{
	struct access *a = arg;
	int i;

	for (i = 0; i < NCHANGE; i++) {
		unsigned char *m = a->map + a->idx[i] * RECSIZE;

		if (a->to_map)
			memcpy(m, a->recs[i], RECSIZE);
		else
			memcpy(a->recs[i], m, RECSIZE);
	}
	return 0;
}

/* The state one transaction step checks. */
struct check {
	int fd;
	vmp_fileh *fh;
	unsigned char *map;
	const uint64_t *idx;
	uint64_t size;
};

/*
 * Check that the file (read with pread) holds @file_recs at the changed
 * records and sums to @file_sum over all records, that the mapping shows
 * @map_recs, and that the handle has @dirty dirty pages.  Prints what
 * differs.  0 or a negative errno (-EIO for a mismatch).
 */
static int check(const struct check *c, const char *step, record *file_recs,
		 uint64_t want_sum, record *map_recs, uint64_t want_dirty)
{
	record got[NCHANGE];
	struct access a = { c->map, c->idx, got, 0 };
	uint64_t sum, dirty;
	struct stat sb;
	int i, ret, bad = 0;

	for (i = 0; i < NCHANGE; i++) {
		ret = pread_full(c->fd, got[i], RECSIZE, c->idx[i] * RECSIZE);
		if (ret < 0) {
			fail("pread", ret);
			return ret;
		}
		if (memcmp(got[i], file_recs[i], RECSIZE) != 0) {
			fprintf(stderr,
				PROG ": %s: record %" PRIu64
				     " in the file is wrong\n",
				step, c->idx[i]);
			bad = 1;
		}
	}
	ret = file_sum(c->fd, c->size, &sum);
	if (ret < 0) {
		fail("reading the file", ret);
		return ret;
	}
	if (sum != want_sum) {
		fprintf(stderr, PROG ": %s: the rest of the file changed\n",
			step);
		bad = 1;
	}
	if (fstat(c->fd, &sb) < 0) {
		ret = -errno;
		fail("fstat", ret);
		return ret;
	}
	if ((uint64_t)sb.st_size != c->size) {
		fprintf(stderr, PROG ": %s: the file size changed\n", step);
		bad = 1;
	}

	ret = vmp_guard(copy_records, &a);
	if (ret < 0) {
		fail("reading the mapping", ret);
		return ret;
	}
	for (i = 0; i < NCHANGE; i++) {
		if (memcmp(got[i], map_recs[i], RECSIZE) != 0) {
			fprintf(stderr,
				PROG ": %s: record %" PRIu64
				     " in the mapping is wrong\n",
				step, c->idx[i]);
			bad = 1;
		}
	}

	ret = vmp_fileh_dirty_count(c->fh, &dirty);
	if (ret < 0) {
		fail("vmp_fileh_dirty_count", ret);
		return ret;
	}
	if (dirty != want_dirty) {
		fprintf(stderr,
			PROG ": %s: %" PRIu64 " dirty pages, expected %" PRIu64
			     "\n",
			step, dirty, want_dirty);
		bad = 1;
	}
	return bad ? -EIO : 0;
}

/* Write @recs into the mapping (the first write to a page dirties it). */
static int write_records(const struct check *c, record *recs)
{
	struct access a = { c->map, c->idx, recs, 1 };
	int ret = vmp_guard(copy_records, &a);

	if (ret < 0)
		fail("writing the mapping", ret);
	return ret;
}

static int commit(vmp_fileh *fh)
{
	int ret =
		vmp_writeout(fh, VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED);

	if (ret < 0)
		fail("vmp_writeout", ret);
	return ret;
}

/* Sum of the file after replacing @from by @to at the changed records. */
static uint64_t updated_sum(uint64_t sum, const uint64_t *idx, record *from,
			    record *to)
{
	int i;

	for (i = 0; i < NCHANGE; i++)
		sum += record_hash(idx[i], to[i]) -
		       record_hash(idx[i], from[i]);
	return sum;
}

int main(int argc, char **argv)
{
	uint64_t pagesize = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t size, nrec, npages, orig_sum, new_sum, ndirty, idx[NCHANGE];
	record orig[NCHANGE], txn1[NCHANGE], txn2[NCHANGE];
	const char *file = NULL;
	char path[4096];
	struct check c;
	struct stat sb;
	vmp_ram *ram = NULL;
	vmp_fileh *fh = NULL;
	vmp_store *store = NULL;
	void *addr = NULL;
	int status = EXIT_FAILURE, fd, ret, i;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: " PROG " [FILE]\n"
				"  FILE is changed in place and restored "
				"(default: a temporary 64 MiB file)\n");
		return argc == 2 && strcmp(argv[1], "--help") == 0
			       ? EXIT_SUCCESS
			       : EXIT_FAILURE;
	}
	if (argc == 2) {
		file = argv[1];
		fd = open(file, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return fail(file, -errno);
		snprintf(path, sizeof(path), "%s", file);
	} else {
		fd = make_temp_file(TEMP_FILE_SIZE, path, sizeof(path));
		if (fd < 0)
			return fail("creating a temporary file", fd);
	}
	if (fstat(fd, &sb) < 0) {
		fail(path, -errno);
		goto out_close_fd;
	}
	size = (uint64_t)sb.st_size;
	/*
	 * Records are taken from whole pages only: the file store writes
	 * whole blocks, so a dirtied partial last page would grow the file.
	 */
	nrec = size / pagesize * pagesize / RECSIZE;
	if (!S_ISREG(sb.st_mode) || nrec < 2 * NCHANGE) {
		fprintf(stderr,
			PROG ": %s: not a regular file of at least "
			     "one page (%" PRIu64 " bytes)\n",
			path, pagesize);
		goto out_close_fd;
	}
	/* Five records spread over the file, ascending, distinct. */
	idx[0] = 0;
	idx[1] = nrec / 3;
	idx[2] = nrec / 2;
	idx[3] = 2 * nrec / 3 + 1;
	idx[4] = nrec - 1;
	ndirty = 1;
	for (i = 1; i < NCHANGE; i++)
		if (idx[i] * RECSIZE / pagesize !=
		    idx[i - 1] * RECSIZE / pagesize)
			ndirty++;

	for (i = 0; i < NCHANGE; i++) {
		ret = pread_full(fd, orig[i], RECSIZE, idx[i] * RECSIZE);
		if (ret < 0) {
			fail("pread", ret);
			goto out_close_fd;
		}
		make_record(txn1[i], idx[i], "changed by transaction 1");
		make_record(txn2[i], idx[i], "changed by transaction 2");
	}
	ret = file_sum(fd, size, &orig_sum);
	if (ret < 0) {
		fail("reading the file", ret);
		goto out_close_fd;
	}
	printf("file:   %s (%" PRIu64 " bytes%s), %" PRIu64
	       " records of %d bytes\n",
	       path, size, file ? "" : ", temporary", size / RECSIZE, RECSIZE);
	printf("change: records %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
	       ", %" PRIu64 " (%" PRIu64 " pages of %" PRIu64 " bytes)\n",
	       idx[0], idx[1], idx[2], idx[3], idx[4], ndirty, pagesize);

	/* 0: the limit is $VMPAGE_MEMLIMIT, or none. */
	ret = vmp_ram_new(&ram, 0);
	if (ret < 0) {
		fail("vmp_ram_new", ret);
		goto out_close_fd;
	}
	ret = vmp_file_store_new(&store, fd, (size_t)pagesize);
	if (ret < 0) {
		fail("vmp_file_store_new", ret);
		goto out_free_ram;
	}
	ret = vmp_fileh_open(&fh, ram, store, VMP_OVERLAY);
	if (ret == 0) {
		printf("mode:   VMP_OVERLAY: clean pages are the kernel's "
		       "mapping of the file\n");
	} else {
		printf("mode:   normal (VMP_OVERLAY refused: %s)\n",
		       strerror(-ret));
		/* A failed open changed nothing: try the normal mode. */
		ret = vmp_fileh_open(&fh, ram, store, 0);
		if (ret < 0) {
			fail("vmp_fileh_open", ret);
			goto out_free_store;
		}
	}
	npages = (size + pagesize - 1) / pagesize;
	ret = vmp_mmap(fh, 0, npages, PROT_READ | PROT_WRITE, &addr);
	if (ret < 0) {
		fail("vmp_mmap", ret);
		goto out_close_fh;
	}
	c.fd = fd;
	c.fh = fh;
	c.map = addr;
	c.idx = idx;
	c.size = size;

	/* 1. Change, look, roll back. */
	if (write_records(&c, txn1) < 0 ||
	    check(&c, "1. after the writes", orig, orig_sum, txn1, ndirty) < 0)
		goto out_unmap;
	printf("1. wrote the records: %" PRIu64 " dirty pages, the mapping "
	       "shows the new records, the file is unchanged\n",
	       ndirty);
	ret = vmp_discard(fh);
	if (ret < 0) {
		fail("vmp_discard", ret);
		goto out_unmap;
	}
	if (check(&c, "1. after vmp_discard", orig, orig_sum, orig, 0) < 0)
		goto out_unmap;
	printf("   rolled back (vmp_discard): no dirty pages, the mapping "
	       "shows the file's records again\n");

	/* 2. Change and commit. */
	new_sum = updated_sum(orig_sum, idx, orig, txn2);
	if (write_records(&c, txn2) < 0 || commit(fh) < 0 ||
	    check(&c, "2. after vmp_writeout", txn2, new_sum, txn2, 0) < 0)
		goto out_unmap;
	printf("2. wrote and committed (vmp_writeout STORE|MARKSTORED): the "
	       "file has the new records, nothing else changed\n");

	/* 3. Undo by committing the old bytes. */
	if (write_records(&c, orig) < 0 || commit(fh) < 0 ||
	    check(&c, "3. after restoring", orig, orig_sum, orig, 0) < 0)
		goto out_unmap;
	printf("3. wrote back the original records and committed: the file "
	       "is as it was\n");
	printf("OK\n");
	status = EXIT_SUCCESS;

out_unmap:
	ret = vmp_munmap(addr);
	if (ret < 0)
		status = fail("vmp_munmap", ret);
out_close_fh:
	/* Uncommitted changes, if a step failed, are dropped here. */
	ret = vmp_fileh_close(fh);
	if (ret < 0)
		status = fail("vmp_fileh_close", ret);
out_free_store:
	/* The store is the program's: with no handle left, this releases
	 * it and closes its duplicate of fd. */
	ret = vmp_store_free(store);
	if (ret < 0)
		status = fail("vmp_store_free", ret);
out_free_ram:
	ret = vmp_ram_free(ram);
	if (ret < 0)
		status = fail("vmp_ram_free", ret);
out_close_fd:
	if (close(fd) < 0)
		status = fail("close", -errno);
	return status;
}
