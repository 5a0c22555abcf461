/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * os.h: the only door to the kernel's memory calls (mmap, mprotect,
 * fallocate, memfd_create, madvise) and to page-sized file I/O.
 *
 * Contract: addresses, offsets and lengths are multiples of the OS page
 * size; every function returns 0 (or a value) on success and a negative
 * errno on failure, and is safe to call from the fault handler (plain
 * system calls, no allocation, errno preserved).
 */
#ifndef VMP_OS_H
#define VMP_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

extern size_t os_page_size;

int os_init(void);
int os_memfd_create(const char *name);
int os_resize(int fd, uint64_t size);
/* A new file in directory @dir that no name reaches (O_TMPFILE, else
 * created and unlinked at once), read-write, close-on-exec: an fd or
 * -errno.  Not for the fault handler. */
int os_tmpfile(const char *dir);
/* Reserve @len bytes showing @fd from @off with @prot, MAP_SHARED, not
 * inherited by fork(), at an address congruent to @congruent modulo 2 MiB
 * when @len holds 2 MiB (so that huge pages can be mapped whole).  Returns
 * the address in *addrp. */
/* fork(): no mapping is being made while it runs (os.c) */
void os_fork_prepare(void);
void os_fork_parent(void);
void os_fork_child(void);
int os_reserve(int fd, uint64_t off, size_t len, int prot, uint64_t congruent,
	       void **addrp);
/* Drop the page-table entries of [addr, addr+len) (the pages stay). */
int os_dontneed(void *addr, size_t len);
/* Map @fd at @off over [addr, addr+len) with @prot (MAP_FIXED). */
int os_map_fixed(void *addr, size_t len, int prot, int fd, uint64_t off);
/* Map read-only zeros over [addr, addr+len) (MAP_FIXED, no memory used). */
int os_map_zero_fixed(void *addr, size_t len);
int os_file_size(int fd, uint64_t *size);
int os_unmap(void *addr, size_t len);
int os_protect(void *addr, size_t len, int prot);
/* Give the memory of [off, off+len) of @fd back to the kernel. */
int os_punch(int fd, uint64_t off, uint64_t len);
int os_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Reads up to @len bytes; bytes past the end of the file read as zeros. */
int os_pread_zerofill(int fd, void *buf, size_t len, uint64_t off);
/* Anonymous private memory, for buffers and metadata. */
void *os_alloc(size_t len);
void os_free(void *addr, size_t len);
/* vm.max_map_count and the number of mappings the process has now. */
long os_max_map_count(void);
long os_count_maps(void);

#endif /* VMP_OS_H */
