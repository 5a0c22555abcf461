/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * map.c: a view's block map, blk -> tag of the block's object in the
 * view's snapshot.  Only written blocks have an entry, so a sparse dataset
 * of any size costs memory for what was written (16 bytes a block, twice
 * that at worst for the table's slack).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rados-internal.h"

static size_t slot_of(uint64_t blk, size_t cap)
{
	/* Fibonacci hashing: neighbouring blocks spread over the table */
	return (size_t)((blk * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

uint64_t blkmap_get(const struct blkmap *m, uint64_t blk)
{
	size_t i;

	if (!m->cap)
		return 0;
	for (i = slot_of(blk, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->blk[i] == blk)
			return m->tag[i];
		if (m->blk[i] == BLK_FREE)
			return 0;
	}
}

static void put(struct blkmap *m, uint64_t blk, uint64_t tag)
{
	size_t i;

	for (i = slot_of(blk, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->blk[i] == blk) {
			m->tag[i] = tag;
			return;
		}
		if (m->blk[i] == BLK_FREE) {
			m->blk[i] = blk;
			m->tag[i] = tag;
			m->n++;
			return;
		}
	}
}

static int grow(struct blkmap *m)
{
	struct blkmap g = { .cap = m->cap ? 2 * m->cap : 64 };

	g.blk = malloc(g.cap * sizeof(*g.blk));
	g.tag = malloc(g.cap * sizeof(*g.tag));
	if (!g.blk || !g.tag) {
		free(g.blk);
		free(g.tag);
		return -ENOMEM;
	}
	memset(g.blk, 0xff, g.cap * sizeof(*g.blk)); /* BLK_FREE */
	for (size_t i = 0; i < m->cap; i++)
		if (m->blk[i] != BLK_FREE)
			put(&g, m->blk[i], m->tag[i]);
	blkmap_free(m);
	*m = g;
	return 0;
}

int blkmap_set(struct blkmap *m, uint64_t blk, uint64_t tag)
{
	int ret;

	if (blk == BLK_FREE)
		return -EINVAL;
	if ((m->n + 1) * 2 > m->cap && (ret = grow(m)))
		return ret;
	put(m, blk, tag);
	return 0;
}

void blkmap_free(struct blkmap *m)
{
	free(m->blk);
	free(m->tag);
	memset(m, 0, sizeof(*m));
}

void blkmap_move(struct blkmap *dst, struct blkmap *src)
{
	blkmap_free(dst);
	*dst = *src;
	memset(src, 0, sizeof(*src));
}
