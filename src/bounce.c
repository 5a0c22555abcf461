/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bounce.c: the buffers that store callbacks fill (load.c) before the bytes
 * go into a handle's memfd.
 *
 * One process-wide pool rather than buffers per thread: a buffer is held
 * only while a load runs, so memory in use is bounded by the loads in
 * flight, and idle buffers are kept (fresh memory costs a kernel fault per
 * page to fill, reused memory does not) only up to POOL_KEEP bytes; the
 * rest is unmapped as soon as its load ends.  bounce_bytes counts all of
 * it, in use and idle, for vmp_ram_stats().
 *
 * Signal context (the fault path): a mutex, plain memory and mmap.  Lock
 * order: pool_lock after any ram->lock.
 */
#include "internal.h"

#define POOL_SLOTS 16
#define POOL_KEEP ((size_t)16 << 20) /* idle bytes kept for reuse */

/* pool_lock protects the idle slots; bounce_bytes is atomic. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	void *buf;
	size_t size;
} idle[POOL_SLOTS];
static unsigned nidle;
static size_t idle_bytes;
static uint64_t bounce_bytes;

static size_t round_to_page(size_t n)
{
	return (n + os_page_size - 1) & ~(os_page_size - 1);
}

void *bounce_get(size_t size, size_t *got)
{
	unsigned best = POOL_SLOTS;
	void *buf = NULL;

	size = round_to_page(size);
	pthread_mutex_lock(&pool_lock);
	/* the smallest idle buffer that fits */
	for (unsigned i = 0; i < nidle; i++)
		if (idle[i].size >= size &&
		    (best == POOL_SLOTS || idle[i].size < idle[best].size))
			best = i;
	if (best < POOL_SLOTS) {
		buf = idle[best].buf;
		size = idle[best].size;
		idle_bytes -= size;
		idle[best] = idle[--nidle];
	}
	pthread_mutex_unlock(&pool_lock);
	if (!buf && !(buf = bounce_alloc(size)))
		return NULL;
	*got = size;
	return buf;
}

bool bounce_put(void *buf, size_t size)
{
	bool kept = false;

	pthread_mutex_lock(&pool_lock);
	if (nidle < POOL_SLOTS && idle_bytes + size <= POOL_KEEP) {
		idle[nidle].buf = buf;
		idle[nidle++].size = size;
		idle_bytes += size;
		kept = true;
	}
	pthread_mutex_unlock(&pool_lock);
	return kept;
}

/* Counted whole pages, as mmap gives them (also load.c's scratch). */
void *bounce_alloc(size_t size)
{
	void *p = os_alloc(size);

	if (p)
		__atomic_add_fetch(&bounce_bytes, round_to_page(size),
				   __ATOMIC_RELAXED);
	return p;
}

void bounce_release(void *buf, size_t size)
{
	if (buf && !bounce_put(buf, size))
		bounce_free(buf, size);
}

void bounce_free(void *buf, size_t size)
{
	os_free(buf, size);
	__atomic_sub_fetch(&bounce_bytes, round_to_page(size), __ATOMIC_RELAXED);
}

uint64_t bounce_total(void)
{
	return __atomic_load_n(&bounce_bytes, __ATOMIC_RELAXED);
}

void bounce_fork_prepare(void)
{
	pthread_mutex_lock(&pool_lock);
}

void bounce_fork_parent(void)
{
	pthread_mutex_unlock(&pool_lock);
}

void bounce_fork_child(void)
{
	pthread_mutex_unlock(&pool_lock);
}
