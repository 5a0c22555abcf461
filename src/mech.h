/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mech.h: how a page's state reaches the MMU: the fault mechanisms.
 *
 * The rest of the library keeps page states (internal.h) and derives from
 * them the class each page shows in each mapping (vma_class(): none, read,
 * read-write, or the overlay's base file).  A mechanism makes a mapping
 * show a class, and delivers the faults that ask for a page:
 *
 *   mprotect (mech_mprotect.c)  the mapping is a PROT_NONE reservation of
 *       the handle's memfd; a class is a protection, set with mprotect on
 *       every change, over the memfd of the page's lane (internal.h,
 *       struct vmp_fileh).  Faults are SIGSEGV (libsigsegv).  Every
 *       isolated page splits a kernel VMA, so the library counts them
 *       against vm.max_map_count (vma.c).  Overlay handles always use it.
 *   userfaultfd (mech_uffd.c)  the mapping is a plain read(-write) mapping
 *       of the memfd registered with a userfaultfd (MISSING | WP | MINOR,
 *       SIGBUS mode: the faulting thread serves its own fault).  A class is
 *       a page-table state: no entry (a MINOR or MISSING fault), write-
 *       protected, or writable.  A loaded page is mapped in every
 *       mapping at once; one that loses its entry (deactivated, swapped
 *       out, or resident before a mapping was made) is mapped again where
 *       it faults (MINOR).  One kernel VMA per mapping.
 */
#ifndef VMP_MECH_H
#define VMP_MECH_H

#include <stdbool.h>
#include <stdint.h>

struct vmp_vma;
struct vmp_fileh;

/* Protection classes a page can show in a vma (vma_class()). */
enum vma_class { CLASS_NONE, CLASS_R, CLASS_RW, CLASS_BASE };

/* What a page shows in a vma: its class, and the lane (the handle's memfd)
 * mapped there, 0 where it shows nothing (vma_shown()). */
struct shown {
	uint8_t cls; /* enum vma_class */
	uint8_t lane;
};

static inline bool shown_eq(struct shown a, struct shown b)
{
	return a.cls == b.cls && a.lane == b.lane;
}

struct mech {
	const char *name;
	int faults;        /* VMP_FAULTS_SIGSEGV or VMP_FAULTS_UFFD */
	bool counts_kvmas; /* its classes split kernel VMAs: keep count */
	bool lazy;         /* a class need not show until the page faults */
	/* Reserve the address range of @v (v->end holds its length until
	 * then) over v->fh's memfd from page v->pgoffset, every page showing
	 * CLASS_NONE (or the base file, overlay), not inherited by fork().
	 * Sets v->start, v->end.  0 or -errno. */
	int (*reserve)(struct vmp_vma *v);
	/* Pages [idx, idx+n) of @v showed @old: show @new.  0 or -errno.
	 * No lock need be held (the caller keeps the pages from changing). */
	int (*show)(const struct vmp_vma *v, uint64_t idx, uint64_t n,
		    struct shown old, struct shown new);
	/* Optional: put the bytes of pages [idx, idx+n) of @v (absent from
	 * the memfd, LOADING) at @buf into the memfd and show them as @c in
	 * @v, in one step, as far as it can: returns the bytes done from the
	 * start (the caller writes the rest, and then @v shows nothing of
	 * them for it), or -errno with nothing done.  No lock held. */
	long (*fill)(const struct vmp_vma *v, uint64_t idx, uint64_t n,
		     const void *buf, enum vma_class c);
};

extern const struct mech mech_mprotect;
extern const struct mech mech_uffd;

/* userfaultfd: 0 if this process can use it (the kernel has the features,
 * the syscall is allowed), else -errno (-ENOSYS, -EPERM, -EINVAL). */
int uffd_available(void);
/* Map the OS page at @addr of @v as @c where the fault found no page-table
 * entry (a MINOR fault).  1 mapped, 0 it was mapped already (so the fault
 * was a write-protect one), -errno. */
int uffd_map_page(const struct vmp_vma *v, uintptr_t addr, enum vma_class c);
void uffd_fork_prepare(void);
void uffd_fork_parent(void);
void uffd_fork_child(void);

/* Overlay (mech_mprotect.c): show the base file for pages [idx, idx+n) of
 * @fh at @addr, zeros past its end.  0 or -errno. */
int map_base(const struct vmp_fileh *fh, void *addr, uint64_t idx, uint64_t n);

#endif /* VMP_MECH_H */
