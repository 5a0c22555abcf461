/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mech_uffd.c: the userfaultfd fault mechanism (mech.h).
 *
 * One userfaultfd per process, in SIGBUS mode: a fault in a registered
 * range raises SIGBUS in the faulting thread (fault.c serves it), no
 * service thread.  A mapping is a MAP_SHARED mapping of the handle's memfd
 * with the mapping's own protection, registered MISSING | WP | MINOR:
 *   - a page not in the memfd faults MISSING: it is loaded (pwrite into the
 *     memfd, then shown);
 *   - a page in the memfd without a page-table entry here faults MINOR: it
 *     is mapped with UFFDIO_CONTINUE, write-protected unless it shows
 *     read-write (a clean page, deactivated by MADV_DONTNEED, or shown
 *     lazily in a second mapping);
 *   - a write to a write-protected page faults WP: it becomes dirty and
 *     UFFDIO_WRITEPROTECT lets writes through.
 * Dropping a page is fallocate(PUNCH_HOLE) (fileh.c), which also takes it
 * out of every page table.  Nothing splits the mapping's kernel VMA.
 *
 * Needs Linux 6.4 (UFFDIO_CONTINUE_MODE_WP on shmem); checked once per
 * process by trying it on a page of its own (uffd_available()).  Creating
 * the userfaultfd with UFFD_USER_MODE_ONLY works without privilege.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1) /* Linux 6.4 */
#endif

#define FEATURES (UFFD_FEATURE_SIGBUS | UFFD_FEATURE_MINOR_SHMEM |            \
		  UFFD_FEATURE_WP_HUGETLBFS_SHMEM)
#define REGISTER_MODES (UFFDIO_REGISTER_MODE_MISSING |                        \
			UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MINOR)

/* uffd_lock guards the two below.  The fault path reads uffd_fd without
 * it: it runs only on mappings of a RAM that chose userfaultfd, after
 * uffd_available() set it (the RAM's lock orders the two). */
static pthread_mutex_t uffd_lock = PTHREAD_MUTEX_INITIALIZER;
static int uffd_fd = -1;
static int uffd_state; /* 0 not tried, 1 usable, -errno not usable */

/* An ioctl on the userfaultfd, retried while the kernel says the address
 * space is changing under it.  0 or -errno; errno kept. */
static int uffd_ioctl(unsigned long req, void *arg)
{
	int saved = errno, ret = 0;

	for (int tries = 0; ioctl(uffd_fd, req, arg) < 0; tries++) {
		if (errno != EAGAIN || tries == 1000) {
			ret = -errno;
			break;
		}
	}
	errno = saved;
	return ret;
}

static int uffd_register(void *addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { (uintptr_t)addr, len },
		.mode = REGISTER_MODES,
	};

	return uffd_ioctl(UFFDIO_REGISTER, &reg);
}

/* Map [addr, addr+len) from the memfd's pages (all of them there).  A
 * call the kernel cut short (EAGAIN: the address space changed) goes on
 * after what it mapped.  0, -EEXIST (a page-table entry was there: the
 * range is mapped up to it), or -errno. */
static int uffd_continue(void *addr, size_t len, bool wp)
{
	char *a = addr;

	for (int tries = 0;; tries++) {
		struct uffdio_continue c = {
			.range = { (uintptr_t)a, len },
			.mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
		};
		int saved = errno, err = 0;

		if (ioctl(uffd_fd, UFFDIO_CONTINUE, &c) < 0)
			err = errno;
		errno = saved;
		if (!err)
			return 0;
		if (err != EAGAIN || tries == 1000)
			return -err;
		if (c.mapped > 0) { /* partly done: the rest */
			a += c.mapped;
			len -= (size_t)c.mapped;
		}
	}
}

static int uffd_protect(void *addr, size_t len, bool wp)
{
	struct uffdio_writeprotect w = {
		.range = { (uintptr_t)addr, len },
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return uffd_ioctl(UFFDIO_WRITEPROTECT, &w);
}

/* Map a page of a memfd through a registered mapping, write-protected, as
 * the mechanism will: only a kernel with all it needs can. */
static int self_test(void)
{
	size_t ps = os_page_size;
	int fd = os_memfd_create("vmpage-uffd-test");
	void *p = NULL;
	int ret;

	if (fd < 0)
		return fd;
	if (!(ret = os_resize(fd, ps)) &&
	    !(ret = os_reserve(fd, 0, ps, PROT_READ | PROT_WRITE, 0, &p)) &&
	    !(ret = uffd_register(p, ps))) {
		char zero = 0;
		ret = os_pwrite_full(fd, &zero, 1, 0);
		if (!ret)
			ret = uffd_continue(p, ps, true);
	}
	if (p)
		os_unmap(p, ps);
	close(fd);
	return ret == -EINVAL ? -ENOSYS : ret;
}

static int uffd_open(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = FEATURES };
	int fd = (int)syscall(SYS_userfaultfd,
			      O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd < 0)
		return errno == EINVAL || errno == ENOSYS ? -ENOSYS : -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0 ||
	    (api.features & FEATURES) != FEATURES) {
		close(fd);
		return -ENOSYS; /* features missing: Linux before 5.19 */
	}
	uffd_fd = fd;
	return 0;
}

int uffd_available(void)
{
	int saved = errno, ret;

	pthread_mutex_lock(&uffd_lock);
	if (!uffd_state) {
		ret = uffd_open();
		if (!ret && (ret = self_test())) {
			close(uffd_fd);
			uffd_fd = -1;
		}
		uffd_state = ret ? ret : 1;
	}
	ret = uffd_state < 0 ? uffd_state : 0;
	pthread_mutex_unlock(&uffd_lock);
	errno = saved;
	return ret;
}

void uffd_fork_prepare(void)
{
	pthread_mutex_lock(&uffd_lock);
}

void uffd_fork_parent(void)
{
	pthread_mutex_unlock(&uffd_lock);
}

/* The child of a fork() has no registrations and must not use the
 * parent's userfaultfd (it belongs to the parent's address space): it
 * makes its own if it needs one. */
void uffd_fork_child(void)
{
	if (uffd_fd >= 0)
		close(uffd_fd);
	uffd_fd = -1;
	uffd_state = 0;
	pthread_mutex_unlock(&uffd_lock);
}

static int uffd_reserve(struct vmp_vma *v)
{
	struct vmp_fileh *fh = v->fh;
	size_t len = v->end;
	void *addr;
	uint64_t off = v->pgoffset << fh->pageshift;
	int ret = os_reserve(fh->lanes[0], off, len, v->prot, off, &addr);

	if (ret)
		return ret;
	if ((ret = uffd_register(addr, len))) {
		os_unmap(addr, len);
		return ret;
	}
	v->start = (uintptr_t)addr;
	v->end = v->start + len;
	return 0;
}

/* Map [addr, addr+len) OS page by OS page, those not mapped yet, then
 * give them all the protection @wp asks: a page mapped already keeps the
 * one it had otherwise. */
static int continue_each(char *addr, size_t len, bool wp)
{
	for (size_t off = 0; off < len; off += os_page_size) {
		int ret = uffd_continue(addr + off, os_page_size, wp);
		if (ret && ret != -EEXIST)
			return ret;
	}
	return uffd_protect(addr, len, wp);
}

static int uffd_show(const struct vmp_vma *v, uint64_t idx, uint64_t n,
		     struct shown old, struct shown new)
{
	enum vma_class oldc = old.cls, newc = new.cls;
	void *addr = vma_page_addr(v, idx);
	size_t len = (size_t)n << v->fh->pageshift;
	int ret;

	switch (newc) {
	case CLASS_NONE:
		return os_dontneed(addr, len);
	case CLASS_R:
	case CLASS_RW:
		if (oldc != CLASS_NONE) /* mapped here, or to be on a fault */
			return uffd_protect(addr, len, newc == CLASS_R);
		/* newly readable: map them here now, the faulting mapping
		 * among them (some may be mapped already: one by one then) */
		ret = uffd_continue(addr, len, newc == CLASS_R);
		return ret == -EEXIST ? continue_each(addr, len, newc == CLASS_R)
				      : ret;
	case CLASS_BASE:
		break;
	}
	vmp_assert(!"overlay handles use the mprotect mechanism");
	return -EINVAL;
}

/*
 * Loads: UFFDIO_COPY puts the bytes into the memfd and maps them in @v, as
 * pwrite() and UFFDIO_CONTINUE do, but without the memfd's inode lock,
 * which every pwrite into one file holds for its whole copy (shmem's
 * write_iter): so loads of one handle in several threads copy in parallel
 * (a page at a time, under the mapping's lock for reading).  A page
 * already in the memfd stops it (EEXIST): the caller writes the rest.
 */
static long uffd_fill(const struct vmp_vma *v, uint64_t idx, uint64_t n,
		      const void *buf, enum vma_class c)
{
	size_t len = (size_t)n << v->fh->pageshift, done = 0;
	uintptr_t dst = (uintptr_t)vma_page_addr(v, idx);
	int saved = errno;

	for (int tries = 0; done < len && tries < 1000; tries++) {
		struct uffdio_copy cp = {
			.dst = dst + done,
			.src = (uintptr_t)buf + done,
			.len = len - done,
			.mode = c == CLASS_R ? UFFDIO_COPY_MODE_WP : 0,
		};

		if (ioctl(uffd_fd, UFFDIO_COPY, &cp) == 0) {
			done = len;
			break;
		}
		if (cp.copy > 0) /* partly done (EAGAIN): the rest */
			done += (size_t)cp.copy;
		if (errno != EAGAIN)
			break;
	}
	errno = saved;
	/* whole OS pages only: a block is either all there or not */
	return (long)(done & ~(((size_t)1 << v->fh->pageshift) - 1));
}

int uffd_map_page(const struct vmp_vma *v, uintptr_t addr, enum vma_class c)
{
	/* the OS page that faulted: others of the block may be mapped (a
	 * block larger than an OS page loses its entries one by one) */
	void *page = (void *)(addr & ~(uintptr_t)(os_page_size - 1));
	int ret = uffd_continue(page, os_page_size, c != CLASS_RW);

	(void)v;
	return ret == -EEXIST ? 0 : ret ? ret : 1;
}

const struct mech mech_uffd = {
	.name = "uffd",
	.faults = VMP_FAULTS_UFFD,
	.counts_kvmas = false,
	.lazy = true,
	.reserve = uffd_reserve,
	.show = uffd_show,
	.fill = uffd_fill,
};
