/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * store_file.c: the built-in store over a file descriptor.  Block b is the
 * bytes [b * blksize, (b + 1) * blksize) of the file; reads past its end
 * give zeros.  It offers the file as the base of VMP_OVERLAY handles.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/uio.h>

#include "internal.h"

struct file_store {
	int fd;
	unsigned shift; /* log2(blksize) */
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

static int file_storeblk(void *ctx, uint64_t blk, const void *buf)
{
	struct file_store *fs = ctx;

	return os_pwrite_full(fs->fd, buf, (size_t)1 << fs->shift,
			      blk << fs->shift);
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
	free(ctx);
}

static const vmp_store_ops file_ops_rw = {
	.loadblk = file_loadblk,
	.loadblks = file_loadblks,
	.storeblk = file_storeblk,
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

VMP_EXPORT int vmp_file_store(vmp_store *store, int fd, size_t blksize)
{
	struct file_store *fs;
	int mode, ret;

	if (!store || fd < 0)
		return -EINVAL;
	if ((ret = vmp_global_init()))
		return ret;
	if (blksize < os_page_size || (blksize & (blksize - 1)) ||
	    blksize > ((size_t)1 << 30))
		return -EINVAL;
	mode = fcntl(fd, F_GETFL);
	if (mode < 0 || (mode & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	if (mode & O_APPEND)
		return -EINVAL; /* pwrite would append, not write in place */
	fs = malloc(sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->fd = fd;
	fs->shift = (unsigned)__builtin_ctzll(blksize);
	store->ops = (mode & O_ACCMODE) == O_RDWR ? &file_ops_rw : &file_ops_ro;
	store->ctx = fs;
	store->blksize = blksize;
	return 0;
}
