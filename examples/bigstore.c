/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bigstore: read a store eight times larger than the memory limit.
 *
 *   VMPAGE_MEMLIMIT=32m bigstore [--pagesize N]
 *
 * The store is generated: its loadblk computes a block's bytes from the
 * block number, so the data exists nowhere but in the mapping.  The program
 * maps the whole store read-only, checksums it sequentially, compares the
 * result with the checksum computed without the library, and prints peak
 * resident memory as the library counts it (vmp_ram_stats) and as the kernel
 * sees it (RssShmem and VmHWM in /proc/self/status).
 *
 * The limit is $VMPAGE_MEMLIMIT, or 32 MiB when it is unset.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vmpage.h>

#define PROG "bigstore"
#define DEFAULT_LIMIT (32ull << 20)
#define SIZE_FACTOR 8
#define NSAMPLES 64 /* how often RssShmem is read during the scan */

#include "common.h" /* fail, parse_size, fmt_bytes, now */

/* --- the generated store ------------------------------------------------ */

/* Word i of the store (counting 64-bit words from the start). */
static uint64_t gen_word(uint64_t i)
{
	i += 0x9e3779b97f4a7c15ull;
	i = (i ^ (i >> 30)) * 0xbf58476d1ce4e5b9ull;
	i = (i ^ (i >> 27)) * 0x94d049bb133111ebull;
	return i ^ (i >> 31);
}

struct gen_store {
	uint64_t blksize;
	uint64_t nblocks;
};

/*
 * Runs inside the fault handler: pure computation, no locks, no stdio.
 * Any error it returned would reach the program as a failed fault.
 */
static int gen_loadblk(void *ctx, uint64_t blk, void *buf)
{
	const struct gen_store *g = ctx;
	uint64_t nwords = g->blksize / 8, base = blk * nwords, i, w;
	unsigned char *p = buf;

	if (blk >= g->nblocks)
		return -ERANGE;
	for (i = 0; i < nwords; i++) {
		w = gen_word(base + i);
		memcpy(p + i * 8, &w, 8);
	}
	return 0;
}

/* No storeblk: the store is read-only. */
static const vmp_store_ops gen_ops = {
	.loadblk = gen_loadblk,
};

/* --- checksum ----------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* One slice of the sequential scan, run under vmp_guard(). */
struct scan {
	const unsigned char *p;
	size_t len;
	uint64_t sum; /* in: running value; out: updated */
};

static int scan_slice(void *arg)
{
	struct scan *sc = arg;
	uint64_t h = sc->sum, w;
	size_t i;

	for (i = 0; i < sc->len; i += 8) {
		memcpy(&w, sc->p + i, 8);
		h = (h ^ w) * FNV_PRIME;
	}
	sc->sum = h;
	return 0;
}

/* The same checksum without the library: the words straight from gen_word. */
static uint64_t expected_sum(uint64_t size)
{
	uint64_t h = FNV_OFFSET, i;

	for (i = 0; i < size / 8; i++)
		h = (h ^ gen_word(i)) * FNV_PRIME;
	return h;
}

/* --- /proc/self/status -------------------------------------------------- */

/*
 * The value of field @key ("RssShmem") of /proc/self/status in bytes, or a
 * negative errno.  open/read only, so it is harmless between mapped accesses.
 */
static int64_t proc_status_bytes(const char *key)
{
	char buf[8192], *p;
	size_t len = 0, klen = strlen(key);
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while (len < sizeof(buf) - 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			n = -errno;
			close(fd);
			return n;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	for (p = buf; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':')
			return (int64_t)strtoll(p + klen + 1, NULL, 10) * 1024;
	}
	return -ENOENT;
}

int main(int argc, char **argv)
{
	uint64_t pagesize = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t size, expected, slice, off, max_resident;
	const char *env = getenv("VMPAGE_MEMLIMIT");
	int64_t shmem, shmem_peak = -1, hwm;
	char b1[32], b2[32], b3[32];
	struct gen_store gen;
	struct vmp_stats st;
	struct scan sc;
	vmp_ram *ram = NULL;
	vmp_fileh *fh = NULL;
	vmp_store *store = NULL;
	void *addr = NULL;
	double t0, t_map, t_exp;
	int status = EXIT_FAILURE, ret;

	if (argc == 3 && strcmp(argv[1], "--pagesize") == 0) {
		if (parse_size(argv[2], &pagesize) < 0 || pagesize == 0) {
			fprintf(stderr, PROG ": bad --pagesize '%s'\n",
				argv[2]);
			return EXIT_FAILURE;
		}
	} else if (argc != 1) {
		fprintf(stderr, "usage: [VMPAGE_MEMLIMIT=32m] " PROG
				" [--pagesize N]\n");
		return EXIT_FAILURE;
	}

	/* 0: the library takes the limit from $VMPAGE_MEMLIMIT. */
	ret = vmp_ram_new(&ram, env && *env ? 0 : DEFAULT_LIMIT);
	if (ret < 0)
		return fail("vmp_ram_new", ret);
	ret = vmp_ram_stats(ram, &st);
	if (ret < 0) {
		fail("vmp_ram_stats", ret);
		goto out_free_ram;
	}
	if (st.limit_bytes == 0) {
		fprintf(stderr,
			PROG ": VMPAGE_MEMLIMIT='%s' sets no limit; "
			     "give a size such as 32m\n",
			env);
		goto out_free_ram;
	}

	gen.blksize = pagesize;
	gen.nblocks = (SIZE_FACTOR * st.limit_bytes + pagesize - 1) / pagesize;
	size = gen.nblocks * pagesize;
	if ((size_t)size != size) {
		fprintf(stderr,
			PROG ": store too large for the address space\n");
		goto out_free_ram;
	}
	/* Bad page sizes are caught here: -EINVAL. */
	ret = vmp_store_new(&store, &gen_ops, &gen, (size_t)pagesize);
	if (ret < 0) {
		fail("vmp_store_new", ret);
		goto out_free_ram;
	}
	ret = vmp_fileh_open(&fh, ram, store, 0);
	if (ret < 0) {
		fail("vmp_fileh_open", ret);
		goto out_free_store;
	}
	ret = vmp_mmap(fh, 0, gen.nblocks, PROT_READ, &addr);
	if (ret < 0) {
		fail("vmp_mmap", ret);
		goto out_close_fh;
	}

	/*
	 * Scan in NSAMPLES slices, each under vmp_guard (a failed load becomes
	 * an error return, not SIGBUS), reading the kernel's figure between
	 * slices.
	 */
	slice = (size / NSAMPLES + pagesize - 1) / pagesize * pagesize;
	sc.sum = FNV_OFFSET;
	t0 = now();
	for (off = 0; off < size; off += slice) {
		sc.p = (const unsigned char *)addr + off;
		sc.len = (size_t)(size - off < slice ? size - off : slice);
		ret = vmp_guard(scan_slice, &sc);
		if (ret < 0) {
			fail("reading the mapping", ret);
			goto out_unmap;
		}
		shmem = proc_status_bytes("RssShmem");
		if (shmem > shmem_peak)
			shmem_peak = shmem;
	}
	t_map = now() - t0;

	ret = vmp_ram_stats(ram, &st);
	if (ret < 0) {
		fail("vmp_ram_stats", ret);
		goto out_unmap;
	}
	shmem = proc_status_bytes("RssShmem");
	hwm = proc_status_bytes("VmHWM");

	t0 = now();
	expected = expected_sum(size);
	t_exp = now() - t0;

	fmt_bytes(size, b1);
	fmt_bytes(st.limit_bytes, b2);
	printf("store:     %s generated, %" PRIu64 " pages of %" PRIu64
	       " bytes: %dx the limit\n",
	       b1, gen.nblocks, pagesize, SIZE_FACTOR);
	printf("limit:     %s (%s)\n", b2,
	       env && *env ? "from $VMPAGE_MEMLIMIT"
			   : "default; set VMPAGE_MEMLIMIT to change it");
	printf("mapped:    checksum %016" PRIx64 " in %.3f s\n", sc.sum, t_map);
	printf("expected:  checksum %016" PRIx64 " in %.3f s (no library)\n",
	       expected, t_exp);
	printf("library:   faults %" PRIu64 ", loads %" PRIu64
	       ", read-ahead pages %" PRIu64 ", reclaimed pages %" PRIu64 "\n",
	       st.faults, st.loads, st.readahead_pages, st.reclaimed_pages);
	fmt_bytes(st.peak_resident_bytes, b1);
	fmt_bytes(st.resident_bytes, b3);
	printf("           peak resident %s (limit %s), resident now %s\n", b1,
	       b2, b3);
	if (shmem_peak >= 0 && shmem >= 0 && hwm >= 0) {
		fmt_bytes((uint64_t)shmem_peak, b1);
		fmt_bytes((uint64_t)shmem, b2);
		fmt_bytes((uint64_t)hwm, b3);
		printf("kernel:    RssShmem peak %s (of %d samples), now %s; "
		       "VmHWM %s (whole process)\n",
		       b1, NSAMPLES, b2, b3);
	} else {
		printf("kernel:    /proc/self/status unreadable\n");
	}

	status = EXIT_SUCCESS;
	if (sc.sum != expected) {
		fprintf(stderr, PROG ": MISMATCH: the mapping's checksum is "
				     "not the expected one\n");
		status = EXIT_FAILURE;
	}
	max_resident = st.limit_bytes > pagesize ? st.limit_bytes : pagesize;
	if (st.peak_resident_bytes > max_resident) {
		fprintf(stderr,
			PROG ": peak resident memory exceeded the limit\n");
		status = EXIT_FAILURE;
	}
	if (shmem_peak > (int64_t)max_resident)
		fprintf(stderr,
			PROG ": note: the kernel saw more shared memory "
			     "than the limit\n");
	if (status == EXIT_SUCCESS)
		printf("OK: checksum matches\n");

out_unmap:
	ret = vmp_munmap(addr);
	if (ret < 0)
		status = fail("vmp_munmap", ret);
out_close_fh:
	ret = vmp_fileh_close(fh);
	if (ret < 0)
		status = fail("vmp_fileh_close", ret);
out_free_store:
	/* The store is ours; gen, its context, lives on the stack until
	 * the end of main anyway (gen_ops has no release). */
	ret = vmp_store_free(store);
	if (ret < 0)
		status = fail("vmp_store_free", ret);
out_free_ram:
	ret = vmp_ram_free(ram);
	if (ret < 0)
		status = fail("vmp_ram_free", ret);
	return status;
}
