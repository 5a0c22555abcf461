/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pagemap.c: see pagemap.h.  Linear probing with backward-shift deletion,
 * so there are no tombstones and a lookup stops at the first empty slot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PAGEMAP_MIN_CAPACITY 512 /* one OS page of slots */

static size_t slot_of(uint64_t index, size_t capacity)
{
	/* Fibonacci hashing: neighbouring indices spread over the table */
	return (size_t)((index * 0x9E3779B97F4A7C15ull) >> 32) & (capacity - 1);
}

void pagemap_init(struct vmp_pagemap *pm)
{
	memset(pm, 0, sizeof(*pm));
}

void pagemap_destroy(struct vmp_pagemap *pm)
{
	os_free(pm->slots, pm->capacity * sizeof(*pm->slots));
	pagemap_init(pm);
}

struct vmp_page *pagemap_get(const struct vmp_pagemap *pm, uint64_t index)
{
	size_t mask = pm->capacity - 1;
	size_t i;

	if (pm->capacity == 0)
		return NULL;
	for (i = slot_of(index, pm->capacity);; i = (i + 1) & mask) {
		struct vmp_page *p = pm->slots[i];
		if (!p || p->index == index)
			return p;
	}
}

static void insert_slot(struct vmp_page **slots, size_t capacity,
			struct vmp_page *page)
{
	size_t i = slot_of(page->index, capacity);

	while (slots[i])
		i = (i + 1) & (capacity - 1);
	slots[i] = page;
}

static int rehash(struct vmp_pagemap *pm, size_t capacity)
{
	struct vmp_page **slots = os_alloc(capacity * sizeof(*slots));
	size_t i;

	if (!slots)
		return -ENOMEM;
	for (i = 0; i < pm->capacity; i++)
		if (pm->slots[i])
			insert_slot(slots, capacity, pm->slots[i]);
	os_free(pm->slots, pm->capacity * sizeof(*pm->slots));
	pm->slots = slots;
	pm->capacity = capacity;
	return 0;
}

int pagemap_reserve(struct vmp_pagemap *pm, size_t n)
{
	size_t need = pm->count + n;
	size_t capacity = pm->capacity ? pm->capacity : PAGEMAP_MIN_CAPACITY;

	while (need > capacity / 8 * 7)
		capacity *= 2;
	if (capacity == pm->capacity)
		return 0;
	return rehash(pm, capacity);
}

void pagemap_insert(struct vmp_pagemap *pm, struct vmp_page *page)
{
	vmp_assert(pm->count + 1 <= pm->capacity / 8 * 7);
	insert_slot(pm->slots, pm->capacity, page);
	pm->count++;
}

void pagemap_remove(struct vmp_pagemap *pm, struct vmp_page *page)
{
	size_t mask = pm->capacity - 1;
	size_t hole = slot_of(page->index, pm->capacity);
	size_t i;

	while (pm->slots[hole] != page) {
		vmp_assert(pm->slots[hole]);
		hole = (hole + 1) & mask;
	}
	/* Shift back later members of the chain that may move into the hole. */
	for (i = (hole + 1) & mask; pm->slots[i]; i = (i + 1) & mask) {
		size_t home = slot_of(pm->slots[i]->index, pm->capacity);
		/* move if home is not cyclically within (hole, i] */
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			pm->slots[hole] = pm->slots[i];
			hole = i;
		}
	}
	pm->slots[hole] = NULL;
	pm->count--;
	if (pm->capacity > PAGEMAP_MIN_CAPACITY && pm->count < pm->capacity / 16)
		(void)rehash(pm, pm->capacity / 4); /* on failure keep the big one */
}

size_t pagemap_bytes(const struct vmp_pagemap *pm)
{
	return pm->capacity * sizeof(*pm->slots);
}

int page_cmp_index(const void *a, const void *b)
{
	uint64_t x = (*(struct vmp_page *const *)a)->index;
	uint64_t y = (*(struct vmp_page *const *)b)->index;

	return x < y ? -1 : x > y;
}

long pagemap_collect(const struct vmp_pagemap *pm, uint64_t lo, uint64_t hi,
		     struct vmp_page ***pagesp)
{
	struct vmp_page **pages;
	size_t n = 0, i;

	*pagesp = NULL;
	if (pm->count == 0 || lo >= hi)
		return 0;
	pages = malloc(pm->count * sizeof(*pages));
	if (!pages)
		return -ENOMEM;
	if (hi - lo < pm->count) {
		for (uint64_t idx = lo; idx < hi; idx++) {
			struct vmp_page *p = pagemap_get(pm, idx);
			if (p)
				pages[n++] = p;
		}
	} else {
		for (i = 0; i < pm->capacity; i++) {
			struct vmp_page *p = pm->slots[i];
			if (p && p->index >= lo && p->index < hi)
				pages[n++] = p;
		}
		qsort(pages, n, sizeof(*pages), page_cmp_index);
	}
	if (n == 0) {
		free(pages);
		return 0;
	}
	*pagesp = pages;
	return (long)n;
}
