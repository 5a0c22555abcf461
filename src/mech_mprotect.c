/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mech_mprotect.c: the mprotect fault mechanism (mech.h).  A mapping is a
 * PROT_NONE, MAP_SHARED reservation of the handle's memfd (lane 0) at the
 * matching offset; a page's class is its protection, and a page of
 * another lane has that lane's memfd mapped over it (mmap MAP_FIXED) while
 * it shows its bytes.  So neighbours in one class and lane merge into one
 * kernel VMA, and every isolated page splits one (vma.c counts them).
 * Faults arrive as SIGSEGV (fault.c).  Overlay handles map the base file
 * over clean pages and the memfd over written ones.
 */
#include <sys/mman.h>

#include "internal.h"

static const int class_prot[] = {
	[CLASS_NONE] = PROT_NONE,
	[CLASS_R] = PROT_READ,
	[CLASS_RW] = PROT_READ | PROT_WRITE,
	[CLASS_BASE] = PROT_READ,
};

/*
 * Show the base file for pages [idx, idx+n) at @addr.  OS pages wholly past
 * its end would raise SIGBUS in a kernel mapping (also inside a block the
 * file ends in, when blocks are larger than OS pages); they show zeros
 * instead, as the file store reads them, until they are mapped again.
 */
int map_base(const struct vmp_fileh *fh, void *addr, uint64_t idx, uint64_t n)
{
	uint64_t size, start = fh->base_off + (idx << fh->pageshift);
	size_t len = (size_t)n << fh->pageshift, in_file = 0;
	int ret = os_file_size(fh->base_fd, &size);

	if (ret)
		return ret;
	if (size > start) {
		/* the OS pages that hold at least one byte of the file */
		uint64_t bytes = (size - start + os_page_size - 1) &
				 ~(uint64_t)(os_page_size - 1);
		in_file = bytes < len ? (size_t)bytes : len;
	}
	if (in_file &&
	    (ret = os_map_fixed(addr, in_file, PROT_READ, fh->base_fd, start)))
		return ret;
	if (in_file < len)
		ret = os_map_zero_fixed((char *)addr + in_file, len - in_file);
	return ret;
}

static int mprotect_reserve(struct vmp_vma *v)
{
	struct vmp_fileh *fh = v->fh;
	size_t len = v->end;
	void *addr;
	uint64_t off = v->pgoffset << fh->pageshift;
	/* huge pages line up with the file clean pages come from */
	int ret = os_reserve(fh->lanes[0], off, len, PROT_NONE,
			     (fh->flags & VMP_OVERLAY) ? fh->base_off + off : off,
			     &addr);

	if (ret)
		return ret;
	v->start = (uintptr_t)addr;
	v->end = v->start + len;
	/* overlay: every page shows the base file until it is written */
	if ((fh->flags & VMP_OVERLAY) &&
	    (ret = map_base(fh, addr, v->pgoffset, v->npages)))
		os_unmap(addr, len);
	return ret;
}

static int mprotect_show(const struct vmp_vma *v, uint64_t idx, uint64_t n,
			 struct shown old, struct shown new)
{
	struct vmp_fileh *fh = v->fh;
	void *addr = vma_page_addr(v, idx);
	size_t len = (size_t)n << fh->pageshift;

	if (new.cls == CLASS_BASE)
		return map_base(fh, addr, idx, n);
	if (old.cls == CLASS_BASE || old.lane != new.lane)
		return os_map_fixed(addr, len, class_prot[new.cls],
				    fh->lanes[new.lane], idx << fh->pageshift);
	return os_protect(addr, len, class_prot[new.cls]);
}

const struct mech mech_mprotect = {
	.name = "sigsegv",
	.faults = VMP_FAULTS_SIGSEGV,
	.counts_kvmas = true,
	.lazy = false,
	.reserve = mprotect_reserve,
	.show = mprotect_show,
};
