/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * store_file.c: the built-in store over a file descriptor.  Block b is the
 * bytes [b * blksize, (b + 1) * blksize) of the file; reads past its end
 * give zeros.  It offers the file as the base of VMP_OVERLAY handles.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

#include "internal.h"

struct file_store {
	int fd;
	unsigned shift; /* log2(blksize) */
};

static int file_loadblk(void *ctx, uint64_t blk, void *buf)
{
	struct file_store *fs = ctx;

	return os_pread_zerofill(fs->fd, buf, (size_t)1 << fs->shift,
				 blk << fs->shift);
}

static int file_loadblks(void *ctx, uint64_t blk, uint64_t n, void *buf)
{
	struct file_store *fs = ctx;

	return os_pread_zerofill(fs->fd, buf, (size_t)n << fs->shift,
				 blk << fs->shift);
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
