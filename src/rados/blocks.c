/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blocks.c: block objects.  Each version of a block is an object of its
 * own, "NAME/<blk>.<tag>", written once and never changed: a view that
 * knows a tag reads exactly the bytes committed under it, or finds the
 * object gone (-ESTALE), never another version's bytes.  Many reads and
 * writes are kept in flight with librados aio: one block's round trip is
 * ~0.2-0.3 ms, far more than its bytes' transfer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rados-internal.h"

#define READS_IN_FLIGHT 64

int blocks_read(rados_ioctx_t io, const char *name, size_t blksize,
		uint64_t blk, uint64_t n, const uint64_t *tags, void *buf)
{
	rados_completion_t c[READS_IN_FLIGHT];
	uint64_t idx[READS_IN_FLIGHT];
	size_t inflight = 0, head = 0;
	char oid[OBJ_NAME_MAX];
	uint64_t i = 0;
	int ret = 0;

	while (i < n || inflight) {
		if (i < n && inflight < READS_IN_FLIGHT && !ret) {
			char *dst = (char *)buf + i * blksize;
			size_t slot = (head + inflight) % READS_IN_FLIGHT;
			int r;

			if (!tags[i]) {
				memset(dst, 0, blksize);
				i++;
				continue;
			}
			block_oid(oid, name, blk + i, tags[i]);
			r = rados_aio_create_completion2(NULL, NULL, &c[slot]);
			if (!r) {
				r = rados_aio_read(io, oid, c[slot], dst,
						   blksize, 0);
				if (r)
					rados_aio_release(c[slot]);
			}
			if (r) {
				ret = r;
				continue;
			}
			idx[slot] = i++;
			inflight++;
			continue;
		}
		if (!inflight)
			break; /* an error stopped the issuing */
		/* the oldest one */
		rados_aio_wait_for_complete(c[head]);
		int r = rados_aio_get_return_value(c[head]);
		rados_aio_release(c[head]);
		if (r == -ENOENT)
			r = -ESTALE; /* superseded and collected */
		if (r >= 0 && (size_t)r < blksize) /* not ours to write short */
			memset((char *)buf + idx[head] * blksize + r, 0,
			       blksize - (size_t)r);
		if (r < 0 && !ret)
			ret = r;
		head = (head + 1) % READS_IN_FLIGHT;
		inflight--;
	}
	return ret;
}

void writer_init(struct writer *w, rados_ioctx_t io, const char *name,
		 size_t blksize, uint64_t tag)
{
	memset(w, 0, sizeof(*w));
	w->io = io;
	w->name = name;
	w->blksize = blksize;
	w->tag = tag;
}

/* Reap the oldest write in flight. */
static void reap_one(struct writer *w)
{
	rados_completion_t c = w->ring[w->head];
	int r;

	rados_aio_wait_for_complete(c);
	r = rados_aio_get_return_value(c);
	rados_aio_release(c);
	if (r < 0 && !w->err)
		w->err = r;
	w->head = (w->head + 1) % WRITES_IN_FLIGHT;
	w->inflight--;
}

int writer_put(struct writer *w, uint64_t blk, const void *buf)
{
	char oid[OBJ_NAME_MAX];
	rados_completion_t *c;
	int ret;

	if (w->err)
		return w->err;
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 256;
		uint64_t *g = realloc(w->blk, cap * sizeof(*g));
		if (!g)
			return -ENOMEM;
		w->blk = g;
		w->cap = cap;
	}
	if (w->inflight == WRITES_IN_FLIGHT)
		reap_one(w);
	if (w->err)
		return w->err;
	block_oid(oid, w->name, blk, w->tag);
	c = &w->ring[(w->head + w->inflight) % WRITES_IN_FLIGHT];
	if ((ret = rados_aio_create_completion2(NULL, NULL, c)))
		return ret;
	/* librados copies buf before returning: the caller may reuse it */
	ret = rados_aio_write_full(w->io, oid, *c, buf, w->blksize);
	if (ret) {
		rados_aio_release(*c);
		return ret;
	}
	/* recorded once issued: a failed commit removes what may exist */
	w->blk[w->n++] = blk;
	w->inflight++;
	return 0;
}

int writer_wait(struct writer *w)
{
	while (w->inflight)
		reap_one(w);
	return w->err;
}

long objects_remove(rados_ioctx_t io, char **oids, size_t n)
{
	rados_completion_t c[WRITES_IN_FLIGHT];
	size_t i = 0, head = 0, inflight = 0;
	long existed = 0;
	int ret = 0;

	while (i < n || inflight) {
		if (i < n && inflight < WRITES_IN_FLIGHT && !ret) {
			size_t slot = (head + inflight) % WRITES_IN_FLIGHT;
			int r = rados_aio_create_completion2(NULL, NULL, &c[slot]);
			if (!r) {
				r = rados_aio_remove(io, oids[i], c[slot]);
				if (r)
					rados_aio_release(c[slot]);
			}
			i++;
			if (r)
				ret = r;
			else
				inflight++;
			continue;
		}
		if (!inflight)
			break;
		rados_aio_wait_for_complete(c[head]);
		int r = rados_aio_get_return_value(c[head]);
		rados_aio_release(c[head]);
		if (r == 0)
			existed++;
		else if (r != -ENOENT && !ret)
			ret = r;
		head = (head + 1) % WRITES_IN_FLIGHT;
		inflight--;
	}
	return ret ? ret : existed;
}

void writer_remove(struct writer *w)
{
	char **oids = malloc((w->n ? w->n : 1) * sizeof(*oids));
	char *buf = malloc((w->n ? w->n : 1) * OBJ_NAME_MAX);

	(void)writer_wait(w);
	if (oids && buf) {
		for (size_t i = 0; i < w->n; i++) {
			oids[i] = buf + i * OBJ_NAME_MAX;
			block_oid(oids[i], w->name, w->blk[i], w->tag);
		}
		(void)objects_remove(w->io, oids, w->n);
	}
	/* else: orphans stay, until vmp_rados_remove() sweeps them */
	free(oids);
	free(buf);
	w->n = 0;
}

void writer_free(struct writer *w)
{
	(void)writer_wait(w);
	free(w->blk);
	w->blk = NULL;
	w->n = w->cap = 0;
}
