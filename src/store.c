/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * store.c: store objects and their lifetime.
 *
 * A store is referenced by the program (from vmp_store_new until
 * vmp_store_free) and by every handle open on it (from vmp_fileh_open until
 * vmp_fileh_close).  ops->release(ctx) runs once, when the last reference
 * goes, with no library lock held.  So a handle can never outlive the
 * store's ctx, and a program that opens a handle on a store it still owns
 * always gets that store, whatever handles came and went before.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool store_blksize_ok(size_t blksize)
{
	return blksize >= os_page_size && (blksize & (blksize - 1)) == 0 &&
	       blksize <= ((size_t)1 << 30);
}

/* Make a store from the first @opsize bytes of *@ops, the rest NULL. */
static int store_new(vmp_store **storep, const vmp_store_ops *ops,
		     size_t opsize, void *ctx, size_t blksize)
{
	struct vmp_store *s;
	int ret;

	if ((ret = vmp_global_init()))
		return ret;
	if (!storep || !ops || !ops->loadblk || !store_blksize_ok(blksize))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	memcpy(&s->ops, ops, opsize);
	s->ctx = ctx;
	s->blksize = blksize;
	s->refs = 1; /* the program's */
	s->fork_gen = vmp_fork_gen;
	*storep = s;
	return 0;
}

/*
 * vmp_store_ops grows at its end, and the program's table is as large as
 * the header it was built against says: each size has its version of
 * vmp_store_new, which reads no more than that.  (.symver, not the
 * attribute: clang 14 lacks it.)
 */
__asm__(".symver vmp_store_new_0_3, vmp_store_new@@VMPAGE_0.3");
VMP_EXPORT int vmp_store_new_0_3(vmp_store **storep, const vmp_store_ops *ops,
				 void *ctx, size_t blksize);
VMP_EXPORT int vmp_store_new_0_3(vmp_store **storep, const vmp_store_ops *ops,
				 void *ctx, size_t blksize)
{
	return store_new(storep, ops, sizeof(*ops), ctx, blksize);
}

/* 0.2's table ended with loadblks. */
__asm__(".symver vmp_store_new_0_2, vmp_store_new@VMPAGE_0.2");
VMP_EXPORT int vmp_store_new_0_2(vmp_store **storep, const vmp_store_ops *ops,
				 void *ctx, size_t blksize);
VMP_EXPORT int vmp_store_new_0_2(vmp_store **storep, const vmp_store_ops *ops,
				 void *ctx, size_t blksize)
{
	return store_new(storep, ops, offsetof(vmp_store_ops, discarded), ctx,
			 blksize);
}

void store_get(struct vmp_store *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void store_put(struct vmp_store *s)
{
	int cancel;

	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL))
		return;
	/* a cancellation point in release (close) must not leak the store */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	if (s->ops.release)
		s->ops.release(s->ctx);
	free(s);
	pthread_setcancelstate(cancel, NULL);
}

VMP_EXPORT int vmp_store_free(vmp_store *store)
{
	int ret;

	if (!store)
		return -EINVAL;
	if ((ret = check_fork(store->fork_gen)))
		return ret;
	store_put(store);
	return 0;
}
