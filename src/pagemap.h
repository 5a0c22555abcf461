/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pagemap.h: a handle's sparse map from page index to struct vmp_page.
 *
 * An open-addressing hash table with linear probing, so memory is
 * proportional to the pages present, whatever the size of the store: a 1 TiB
 * store with three pages loaded holds a table of a few hundred slots.
 *
 * Invariants: pm->count == number of non-NULL slots;
 *             pm->count <= 7/8 pm->capacity (grown before that: linear
 *             probing with Fibonacci hashing stays short at that load);
 *             every page sits in the probe chain that starts at its hash.
 * Locking: the owner's lock (ram->lock, see internal.h).  Tables are
 * allocated with mmap, never malloc, because the fault handler inserts.
 */
#ifndef VMP_PAGEMAP_H
#define VMP_PAGEMAP_H

#include <stddef.h>
#include <stdint.h>

struct vmp_page;

struct vmp_pagemap {
	struct vmp_page **slots; /* capacity entries, NULL = empty */
	size_t capacity;         /* a power of two, or 0 before first insert */
	size_t count;
};

void pagemap_init(struct vmp_pagemap *pm);
void pagemap_destroy(struct vmp_pagemap *pm);
struct vmp_page *pagemap_get(const struct vmp_pagemap *pm, uint64_t index);
/* Make room for @n more pages, so that as many inserts cannot fail. */
int pagemap_reserve(struct vmp_pagemap *pm, size_t n);
/* Insert a page whose index is not present; room must be reserved. */
void pagemap_insert(struct vmp_pagemap *pm, struct vmp_page *page);
void pagemap_remove(struct vmp_pagemap *pm, struct vmp_page *page);
/* Bytes of table memory. */
size_t pagemap_bytes(const struct vmp_pagemap *pm);
/*
 * Collect the pages with index in [lo, hi), sorted by index, into a new
 * malloc'ed array (*pagesp, freed by the caller; NULL when none).
 * Not for the fault path.  Returns the count or -ENOMEM.
 */
long pagemap_collect(const struct vmp_pagemap *pm, uint64_t lo, uint64_t hi,
		     struct vmp_page ***pagesp);

/* qsort comparator of struct vmp_page pointers by index */
int page_cmp_index(const void *a, const void *b);

#endif /* VMP_PAGEMAP_H */
