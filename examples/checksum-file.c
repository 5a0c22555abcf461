/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * checksum-file: read a file through a libvmpage mapping, under a memory
 * limit smaller than the file, and check the result against plain read(2).
 *
 *   checksum-file [FILE] [--pagesize N] [--limit BYTES]
 *
 * The file is mapped whole through the built-in file store (vmp_file_store_new)
 * and checksummed as plain memory: each page is loaded on first touch, and
 * clean pages are dropped, least recently used first, when the limit is
 * reached.  The program then prints what the library did (vmp_ram_stats)
 * next to the checksum of the same bytes read with read(2), and exits 1 if
 * the two differ.
 *
 * Without FILE it checksums a temporary 64 MiB file that it writes itself.
 * The limit is --limit, else $VMPAGE_MEMLIMIT, else a quarter of the file.
 * Sizes take a k, m, g or t suffix (powers of 1024).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmpage.h>

#define PROG "checksum-file"
#define TEMP_FILE_SIZE (64ull << 20)
#define READ_CHUNK (1u << 20)

#include "common.h" /* fail, parse_size, fmt_bytes, now */

static void usage(FILE *f)
{
	fputs("usage: " PROG " [FILE] [--pagesize N] [--limit BYTES]\n"
	      "  FILE           default: a temporary 64 MiB file\n"
	      "  --pagesize N   a power of two >= the OS page (default)\n"
	      "  --limit BYTES  e.g. 16m (default: $VMPAGE_MEMLIMIT, else a\n"
	      "                 quarter of the file)\n",
	      f);
}

/*
 * The checksum: FNV-1a over the file's 64-bit little-endian words (a last
 * partial word is padded with zeros), then over the file size.  It depends
 * on the order of the words, so a page shown at the wrong place is caught.
 */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* Fold @n bytes into @h.  Only the last chunk may have n % 8 != 0. */
static uint64_t fnv_words(uint64_t h, const unsigned char *p, size_t n)
{
	uint64_t w;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * FNV_PRIME;
	}
	if (i < n) {
		w = 0;
		memcpy(&w, p + i, n - i);
		h = (h ^ w) * FNV_PRIME;
	}
	return h;
}

static uint64_t fnv_final(uint64_t h, uint64_t size)
{
	return (h ^ size) * FNV_PRIME;
}

/* Checksum with read(2), the reference. */
static int checksum_read(int fd, uint64_t size, uint64_t *sum)
{
	unsigned char *buf = malloc(READ_CHUNK);
	uint64_t h = FNV_OFFSET, off = 0;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	if (lseek(fd, 0, SEEK_SET) < 0) {
		ret = -errno;
		goto out;
	}
	for (;;) {
		size_t fill = 0;

		/* Fill the whole chunk so only the last one has a tail. */
		while (fill < READ_CHUNK) {
			ssize_t n = read(fd, buf + fill, READ_CHUNK - fill);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				ret = -errno;
				goto out;
			}
			if (n == 0)
				break;
			fill += (size_t)n;
		}
		h = fnv_words(h, buf, fill);
		off += fill;
		if (fill < READ_CHUNK)
			break;
	}
	if (off != size) {
		fprintf(stderr,
			PROG ": the file changed size while it was read\n");
		ret = -EIO;
		goto out;
	}
	*sum = fnv_final(h, size);
out:
	free(buf);
	return ret;
}

/* Checksum of the mapping, run under vmp_guard(). */
struct scan {
	const unsigned char *addr;
	uint64_t size;
	uint64_t sum;
};

static int scan_mapping(void *arg)
{
	struct scan *sc = arg;

	sc->sum =
		fnv_final(fnv_words(FNV_OFFSET, sc->addr, sc->size), sc->size);
	return 0;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * Create an unlinked temporary file of @size bytes of pseudo-random data
 * in $TMPDIR (default /tmp).  Returns the fd or a negative errno.
 */
static int make_temp_file(uint64_t size, char *path, size_t pathlen)
{
	const char *dir = getenv("TMPDIR");
	uint64_t buf[4096], off = 0;
	int fd, ret;

	if (!dir || !*dir)
		dir = "/tmp";
	if ((size_t)snprintf(path, pathlen, "%s/vmpage-demo-XXXXXX", dir) >=
	    pathlen)
		return -ENAMETOOLONG;
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	/* Nobody else needs the name: the file goes away when fd closes. */
	if (unlink(path) < 0) {
		ret = -errno;
		goto err;
	}
	while (off < size) {
		size_t len = sizeof(buf), done = 0;
		size_t i;

		if (len > size - off)
			len = (size_t)(size - off);
		for (i = 0; i < sizeof(buf) / 8; i++)
			buf[i] = splitmix64(off / 8 + i);
		while (done < len) {
			ssize_t n = write(fd, (char *)buf + done, len - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				ret = -errno;
				goto err;
			}
			done += (size_t)n;
		}
		off += len;
	}
	return fd;
err:
	close(fd);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pagesize", required_argument, NULL, 'p' },
		{ "limit", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t pagesize = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t limit = 0, size, npages, ref_sum = 0, max_resident;
	const char *file = NULL, *limit_from;
	char path[4096], b1[32], b2[32], b3[32];
	struct vmp_stats st;
	vmp_ram *ram = NULL;
	vmp_fileh *fh = NULL;
	vmp_store *store = NULL;
	struct scan sc;
	struct stat sb;
	void *addr = NULL;
	double t0, t_map, t_read;
	int status = EXIT_FAILURE, fd, opt, ret;

	while ((opt = getopt_long(argc, argv, "p:l:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (parse_size(optarg, &pagesize) < 0 ||
			    pagesize == 0) {
				fprintf(stderr, PROG ": bad --pagesize '%s'\n",
					optarg);
				return EXIT_FAILURE;
			}
			break;
		case 'l':
			if (parse_size(optarg, &limit) < 0 || limit == 0 ||
			    (size_t)limit != limit) {
				fprintf(stderr, PROG ": bad --limit '%s'\n",
					optarg);
				return EXIT_FAILURE;
			}
			break;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return EXIT_FAILURE;
		}
	}
	if (argc - optind > 1) {
		usage(stderr);
		return EXIT_FAILURE;
	}
	if (optind < argc)
		file = argv[optind];

	if (file) {
		fd = open(file, O_RDONLY | O_CLOEXEC);
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
	if (!S_ISREG(sb.st_mode) || sb.st_size == 0) {
		fprintf(stderr, PROG ": %s: not a regular file, or empty\n",
			path);
		goto out_close_fd;
	}
	size = (uint64_t)sb.st_size;

	/*
	 * The budget: vmp_ram_new(…, 0) reads $VMPAGE_MEMLIMIT itself (and
	 * rejects a malformed value with -EINVAL).
	 */
	if (limit) {
		limit_from = "--limit";
	} else if (getenv("VMPAGE_MEMLIMIT") && *getenv("VMPAGE_MEMLIMIT")) {
		limit_from = "$VMPAGE_MEMLIMIT";
	} else {
		limit = size / 4 > pagesize ? size / 4 : pagesize;
		limit_from = "a quarter of the file";
	}
	ret = vmp_ram_new(&ram, (size_t)limit);
	if (ret < 0) {
		fail("vmp_ram_new", ret);
		goto out_close_fd;
	}

	/* A read-only fd is fine: we only read, storeblk is never called. */
	ret = vmp_file_store_new(&store, fd, (size_t)pagesize);
	if (ret < 0) {
		fail("vmp_file_store_new", ret);
		goto out_free_ram;
	}
	ret = vmp_fileh_open(&fh, ram, store, 0);
	/* The handle holds the store (and the store its own duplicate of
	 * fd) until it closes: ours is not needed any more. */
	vmp_store_free(store);
	if (ret < 0) {
		fail("vmp_fileh_open", ret);
		goto out_free_ram;
	}
	npages = (size + pagesize - 1) / pagesize;
	ret = vmp_mmap(fh, 0, npages, PROT_READ, &addr);
	if (ret < 0) {
		fail("vmp_mmap", ret);
		goto out_close_fh;
	}

	/*
	 * Plain memory reads from here on.  vmp_guard turns a fault the
	 * library cannot serve (an I/O error in loadblk, say) into an error
	 * return instead of SIGBUS.
	 */
	sc.addr = addr;
	sc.size = size;
	t0 = now();
	ret = vmp_guard(scan_mapping, &sc);
	t_map = now() - t0;
	if (ret < 0) {
		fail("reading the mapping", ret);
		goto out_unmap;
	}
	ret = vmp_ram_stats(ram, &st);
	if (ret < 0) {
		fail("vmp_ram_stats", ret);
		goto out_unmap;
	}

	t0 = now();
	ret = checksum_read(fd, size, &ref_sum);
	t_read = now() - t0;
	if (ret < 0) {
		fail("read", ret);
		goto out_unmap;
	}

	fmt_bytes(size, b1);
	printf("file:      %s (%s%s)\n", path, b1,
	       file ? "" : ", temporary, already unlinked");
	printf("libvmpage: %s, page size %" PRIu64 " bytes, %" PRIu64
	       " pages\n",
	       vmp_version(), pagesize, npages);
	fmt_bytes(st.limit_bytes, b1);
	printf("limit:     %s (from %s)%s\n", st.limit_bytes ? b1 : "none",
	       limit_from,
	       st.limit_bytes && st.limit_bytes < size
		       ? ", smaller than the file"
		       : ", NOT smaller than the file");
	printf("mapped:    checksum %016" PRIx64 " in %.3f s (%.0f MiB/s)\n",
	       sc.sum, t_map,
	       (double)size / (1 << 20) / (t_map > 0 ? t_map : 1e-9));
	printf("           faults %" PRIu64 ", loads %" PRIu64
	       ", read-ahead pages %" PRIu64 ", reclaimed pages %" PRIu64
	       ", load errors %" PRIu64 "\n",
	       st.faults, st.loads, st.readahead_pages, st.reclaimed_pages,
	       st.load_errors);
	fmt_bytes(st.peak_resident_bytes, b1);
	fmt_bytes(st.resident_bytes, b2);
	fmt_bytes(st.metadata_bytes, b3);
	printf("           peak resident %s, resident now %s, metadata %s\n",
	       b1, b2, b3);
	printf("read(2):   checksum %016" PRIx64 " in %.3f s (%.0f MiB/s)\n",
	       ref_sum, t_read,
	       (double)size / (1 << 20) / (t_read > 0 ? t_read : 1e-9));

	status = EXIT_SUCCESS;
	if (sc.sum != ref_sum) {
		fprintf(stderr, PROG ": MISMATCH: the mapping and read(2) "
				     "give different checksums\n");
		status = EXIT_FAILURE;
	}
	/* The library's promise: at most the limit (and at least a page). */
	max_resident = st.limit_bytes > pagesize ? st.limit_bytes : pagesize;
	if (st.limit_bytes && st.peak_resident_bytes > max_resident) {
		fprintf(stderr,
			PROG ": peak resident memory exceeded the limit\n");
		status = EXIT_FAILURE;
	}
	if (status == EXIT_SUCCESS)
		printf("OK: checksums match\n");

out_unmap:
	ret = vmp_munmap(addr);
	if (ret < 0)
		status = fail("vmp_munmap", ret);
out_close_fh:
	ret = vmp_fileh_close(fh);
	if (ret < 0)
		status = fail("vmp_fileh_close", ret);
out_free_ram:
	ret = vmp_ram_free(ram);
	if (ret < 0)
		status = fail("vmp_ram_free", ret);
out_close_fd:
	if (close(fd) < 0)
		status = fail("close", -errno);
	return status;
}
