/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * store_file.c: the built-in store over a file descriptor.  Block b is the
 * bytes [b * blksize, (b + 1) * blksize) of the file; reads past its end
 * give zeros.  It offers the file as the base of VMP_OVERLAY handles.
 *
 * The file's size is the program's, not the block size's: the last block
 * of a file is usually partial, its tail past the end reads as zeros, and
 * writing those zeros back would grow the file at every commit.  So a block
 * reaching past the end of the file is written only up to its last
 * non-zero byte (or to the end of the file, whichever is further).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

struct file_store {
	int fd;         /* our own duplicate, closed at release */
	unsigned shift; /* log2(blksize) */
	uint64_t size;  /* atomic: the file is at least this long: read at
			   each writeout_begin, raised by our writes (a file
			   grown by others since only costs an fstat) */
};

/*
 * Read blocks as the kernel's own file mapping would.  When the bytes are in
 * the page cache, one non-blocking read gets them.  When they are not, ask
 * the kernel to read ahead, asynchronously, what a fault on a kernel mapping
 * would: the read-around window of a single block, or the next run after a
 * read-ahead run, so that the disk works while the program reads.
 */
#define READ_AROUND ((uint64_t)128 << 10) /* the kernel's read_ahead_kb */

static int file_read(struct file_store *fs, void *buf, uint64_t off, size_t len)
{
	struct iovec iov = { buf, len };
	int saved = errno;
	ssize_t n = preadv2(fs->fd, &iov, 1, (off_t)off, RWF_NOWAIT);

	errno = saved;
	if (n == (ssize_t)len)
		return 0;
	if (len < READ_AROUND)
		(void)posix_fadvise(fs->fd, (off_t)(off & ~(READ_AROUND - 1)),
				    (off_t)READ_AROUND, POSIX_FADV_WILLNEED);
	else
		(void)posix_fadvise(fs->fd, (off_t)off, (off_t)(2 * len),
				    POSIX_FADV_WILLNEED);
	return os_pread_zerofill(fs->fd, buf, len, off);
}

static int file_loadblk(void *ctx, uint64_t blk, void *buf)
{
	struct file_store *fs = ctx;

	return file_read(fs, buf, blk << fs->shift, (size_t)1 << fs->shift);
}

static int file_loadblks(void *ctx, uint64_t blk, uint64_t n, void *buf)
{
	struct file_store *fs = ctx;

	return file_read(fs, buf, blk << fs->shift, (size_t)n << fs->shift);
}

/* Length of @buf[0, len) without its trailing zero bytes. */
static size_t nonzero_len(const char *buf, size_t len)
{
	while (len >= sizeof(uint64_t)) {
		uint64_t w;
		memcpy(&w, buf + len - sizeof(w), sizeof(w));
		if (w)
			break;
		len -= sizeof(w);
	}
	while (len && !buf[len - 1])
		len--;
	return len;
}

static int file_storeblk(void *ctx, uint64_t blk, const void *buf)
{
	struct file_store *fs = ctx;
	size_t len = (size_t)1 << fs->shift;
	uint64_t off = blk << fs->shift, size, end;
	int ret;

	if (off + len > __atomic_load_n(&fs->size, __ATOMIC_RELAXED)) {
		if ((ret = os_file_size(fs->fd, &size)))
			return ret;
		/* keep the bytes in the file; past its end, the non-zero ones */
		end = size > off ? size - off : 0;
		if (end < len) {
			size_t nz = nonzero_len(buf, len);
			len = nz > end ? nz : (size_t)end;
		}
		if (!len)
			return 0;
	}
	ret = os_pwrite_full(fs->fd, buf, len, off);
	if (ret)
		return ret;
	/* the file is now at least this long */
	end = off + len;
	size = __atomic_load_n(&fs->size, __ATOMIC_RELAXED);
	while (size < end && !__atomic_compare_exchange_n(&fs->size, &size, end,
							  false, __ATOMIC_RELAXED,
							  __ATOMIC_RELAXED))
		;
	return 0;
}

/* A writeout begins: the program may have cut the file short since. */
static int file_writeout_begin(void *ctx)
{
	struct file_store *fs = ctx;
	uint64_t size;
	int ret = os_file_size(fs->fd, &size);

	if (!ret)
		__atomic_store_n(&fs->size, size, __ATOMIC_RELAXED);
	return ret;
}

static int file_base(void *ctx, int *fd, off_t *offset)
{
	struct file_store *fs = ctx;

	*fd = fs->fd;
	*offset = 0;
	return 0;
}

static void file_release(void *ctx)
{
	struct file_store *fs = ctx;

	close(fs->fd);
	free(fs);
}

static const vmp_store_ops file_ops_rw = {
	.loadblk = file_loadblk,
	.loadblks = file_loadblks,
	.storeblk = file_storeblk,
	.writeout_begin = file_writeout_begin,
	.release = file_release,
	.base = file_base,
};

/* a file opened read-only is a read-only store */
static const vmp_store_ops file_ops_ro = {
	.loadblk = file_loadblk,
	.loadblks = file_loadblks,
	.release = file_release,
	.base = file_base,
};

VMP_EXPORT int vmp_file_store_new(vmp_store **storep, int fd, size_t blksize)
{
	struct file_store *fs;
	int mode, ret;

	if (!storep || fd < 0)
		return -EINVAL;
	if ((ret = vmp_global_init()))
		return ret;
	if (!store_blksize_ok(blksize))
		return -EINVAL;
	mode = fcntl(fd, F_GETFL);
	if (mode < 0 || (mode & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	if (mode & O_APPEND)
		return -EINVAL; /* pwrite would append, not write in place */
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->shift = (unsigned)__builtin_ctzll(blksize);
	fs->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (fs->fd < 0) {
		ret = -errno;
		free(fs);
		return ret;
	}
	ret = vmp_store_new(storep,
			    (mode & O_ACCMODE) == O_RDWR ? &file_ops_rw : &file_ops_ro,
			    fs, blksize);
	if (ret)
		file_release(fs);
	return ret;
}
