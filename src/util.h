/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * util.h: the small things every file uses: an intrusive doubly linked list,
 * branch hints, internal assertions and tracing.
 *
 * vmp_assert() is for the library's own invariants only, never for anything
 * a user or a store can cause: those get a negative errno.
 */
#ifndef VMP_UTIL_H
#define VMP_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"

#define VMP_EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define container_of(ptr, type, member)                                        \
	((type *)((char *)(ptr) - offsetof(type, member)))
/* Tell the CPU we are spinning. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void vmp_internal_bug(const char *file, int line, const char *cond)
	__attribute__((noreturn));

#if VMP_DEBUG_CHECKS >= 1
#define vmp_assert(cond)                                                       \
	do {                                                                   \
		if (unlikely(!(cond)))                                         \
			vmp_internal_bug(__FILE__, __LINE__, #cond);           \
	} while (0)
#else
#define vmp_assert(cond) ((void)0)
#endif

#if VMP_DEBUG_CHECKS >= 2
#define VMP_TRACE(...) fprintf(stderr, "vmpage: trace: " __VA_ARGS__)
#else
#define VMP_TRACE(...) ((void)0)
#endif

/* Intrusive list; a node that is on no list points to itself. */
struct vmp_list {
	struct vmp_list *next, *prev;
};

static inline void list_init(struct vmp_list *l)
{
	l->next = l->prev = l;
}

static inline int list_empty(const struct vmp_list *l)
{
	return l->next == l;
}

static inline void list_insert_between(struct vmp_list *n,
				       struct vmp_list *prev,
				       struct vmp_list *next)
{
	n->prev = prev;
	n->next = next;
	prev->next = n;
	next->prev = n;
}

/* add @n right after @head (at the front) */
static inline void list_add(struct vmp_list *n, struct vmp_list *head)
{
	list_insert_between(n, head, head->next);
}

/* add @n right before @head (at the back) */
static inline void list_add_tail(struct vmp_list *n, struct vmp_list *head)
{
	list_insert_between(n, head->prev, head);
}

static inline void list_del(struct vmp_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

static inline void list_move(struct vmp_list *n, struct vmp_list *head)
{
	list_del(n);
	list_add(n, head);
}

static inline void list_move_tail(struct vmp_list *n, struct vmp_list *head)
{
	list_del(n);
	list_add_tail(n, head);
}

#define list_entry(ptr, type, member) container_of(ptr, type, member)

#define list_for_each_entry(pos, head, member)                                 \
	for (pos = list_entry((head)->next, __typeof__(*pos), member);         \
	     &pos->member != (head);                                           \
	     pos = list_entry(pos->member.next, __typeof__(*pos), member))

#define list_for_each_entry_safe(pos, tmp, head, member)                       \
	for (pos = list_entry((head)->next, __typeof__(*pos), member),         \
	    tmp = list_entry(pos->member.next, __typeof__(*pos), member);      \
	     &pos->member != (head);                                           \
	     pos = tmp, tmp = list_entry(tmp->member.next, __typeof__(*tmp), member))

#endif /* VMP_UTIL_H */
