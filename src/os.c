/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * os.c: thin wrappers over the kernel's memory calls; see os.h for the
 * contract.  Each converts errno into a negative return and leaves errno as
 * it was, because the fault handler must not change the interrupted code's
 * errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os.h"
#include "util.h"

size_t os_page_size;

int os_init(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	if (ps <= 0)
		return -EINVAL;
	os_page_size = (size_t)ps;
	return 0;
}

/* Run a system call expression; on failure return -errno, keeping errno. */
#define OS_CALL(expr)                                                          \
	do {                                                                   \
		int saved_errno_ = errno;                                      \
		int ret_ = 0;                                                  \
		if ((expr) < 0)                                                \
			ret_ = -errno;                                         \
		errno = saved_errno_;                                          \
		return ret_;                                                   \
	} while (0)

int os_memfd_create(const char *name)
{
	int saved = errno;
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		fd = -errno;
	errno = saved;
	return fd;
}

int os_resize(int fd, uint64_t size)
{
	OS_CALL(ftruncate(fd, (off_t)size));
}

int os_tmpfile(const char *dir)
{
	char path[PATH_MAX];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	/* file systems without O_TMPFILE say so in more than one way */
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return -errno;
	if (snprintf(path, sizeof(path), "%s/vmpage-spill.XXXXXX", dir) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	(void)unlink(path);
	return fd;
}

/* The kernel maps a 2 MiB folio (a file's large page-cache folio, shmem's
 * huge page) with one PMD only where address and file offset agree modulo
 * 2 MiB; a plain mmap gives no such address. */
#define HUGE_ALIGN ((uintptr_t)2 << 20)

/* Map @fd at an address congruent to @congruent modulo HUGE_ALIGN: find a
 * hole HUGE_ALIGN larger, map there, give back the rest.  MAP_FAILED if it
 * cannot (the caller then maps anywhere). */
static void *map_congruent(int fd, uint64_t off, size_t len, int prot,
			   uint64_t congruent)
{
	size_t span = len + HUGE_ALIGN;
	void *hole = mmap(NULL, span, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t h = (uintptr_t)hole, a;
	void *p;

	if (hole == MAP_FAILED)
		return MAP_FAILED;
	a = h + (((uintptr_t)congruent - h) & (HUGE_ALIGN - 1));
	p = mmap((void *)a, len, prot, MAP_SHARED | MAP_FIXED | MAP_NORESERVE,
		 fd, (off_t)off);
	if (p == MAP_FAILED) {
		munmap(hole, span);
		return MAP_FAILED;
	}
	if (a > h)
		munmap(hole, a - h);
	if (h + span > a + len)
		munmap((void *)(a + len), h + span - (a + len));
	return p;
}

/*
 * Every mapping the library makes is MADV_DONTFORK, so that a child of
 * fork() gets none of them: not the handles' memory, nor ranges it would
 * take for free.  But that is a second call after the mmap, and a fork in
 * between would give the child the mapping.  So making one holds this lock
 * for reading, and fork() takes it for writing, after every other lock of
 * the library's (nothing else is taken while it is held).  With signals
 * blocked: a handler that touched a mapping would wait, in the fault path,
 * for a lock that a fork() in another thread holds while it waits for
 * this one.  So no thread takes it twice, and it can prefer the writer:
 * threads that keep mapping do not starve fork().
 */
static pthread_rwlock_t map_fork_lock =
	PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

void os_fork_prepare(void)
{
	pthread_rwlock_wrlock(&map_fork_lock);
}

void os_fork_parent(void)
{
	pthread_rwlock_unlock(&map_fork_lock);
}

void os_fork_child(void)
{
	/* (the child's thread cannot unlock the parent thread's write lock) */
	pthread_rwlockattr_t attr;

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&map_fork_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
}

/* Around the making of a mapping; @saved keeps the signal mask (not
 * inlined: the TSan suppressions of tests/tsan.supp name them). */
static __attribute__((noinline)) void map_fork_guard(sigset_t *saved)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, saved);
	pthread_rwlock_rdlock(&map_fork_lock);
}

static __attribute__((noinline)) void map_fork_unguard(const sigset_t *saved)
{
	pthread_rwlock_unlock(&map_fork_lock);
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

int os_reserve(int fd, uint64_t off, size_t len, int prot, uint64_t congruent,
	       void **addrp)
{
	int saved = errno;
	sigset_t mask;
	void *p = MAP_FAILED;
	int ret = 0;

	map_fork_guard(&mask);
	if (len >= HUGE_ALIGN)
		p = map_congruent(fd, off, len, prot, congruent);
	if (p == MAP_FAILED)
		p = mmap(NULL, len, prot, MAP_SHARED | MAP_NORESERVE, fd,
			 (off_t)off);
	if (p == MAP_FAILED) {
		ret = -errno;
	} else if (madvise(p, len, MADV_DONTFORK) < 0) {
		ret = -errno;
		munmap(p, len);
	} else {
		*addrp = p;
	}
	map_fork_unguard(&mask);
	errno = saved;
	return ret;
}

int os_dontneed(void *addr, size_t len)
{
	OS_CALL(madvise(addr, len, MADV_DONTNEED));
}

/*
 * ThreadSanitizer takes mmap() for a write of the whole range, and so every
 * read of a page in another thread before the library maps a memfd over it
 * for a race (a page dropped while others read it: it shows PROT_NONE from
 * then on, and their next read faults).  To the program it is what mprotect
 * is, which TSan does not see: so in such a build call the kernel directly.
 */
#if defined(__SANITIZE_THREAD__)
#define OS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OS_TSAN 1
#endif
#endif
#ifdef OS_TSAN
#include <sys/syscall.h>
#define os_mmap(a, l, p, f, fd, o)                                             \
	((void *)syscall(SYS_mmap, a, l, p, f, fd, o))
#else
#define os_mmap mmap
#endif

int os_map_fixed(void *addr, size_t len, int prot, int fd, uint64_t off)
{
	int saved = errno;
	sigset_t mask;
	int ret = 0;

	map_fork_guard(&mask);
	if (os_mmap(addr, len, prot, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd,
		    (off_t)off) == MAP_FAILED)
		ret = -errno;
	else if (madvise(addr, len, MADV_DONTFORK) < 0)
		ret = -errno;
	map_fork_unguard(&mask);
	errno = saved;
	return ret;
}

int os_map_zero_fixed(void *addr, size_t len)
{
	int saved = errno;
	sigset_t mask;
	int ret = 0;

	map_fork_guard(&mask);
	if (mmap(addr, len, PROT_READ,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
		 0) == MAP_FAILED)
		ret = -errno;
	else if (madvise(addr, len, MADV_DONTFORK) < 0)
		ret = -errno;
	map_fork_unguard(&mask);
	errno = saved;
	return ret;
}

int os_file_size(int fd, uint64_t *size)
{
	struct stat st;
	int saved = errno;
	int ret = 0;

	if (fstat(fd, &st) < 0)
		ret = -errno;
	else
		*size = (uint64_t)st.st_size;
	errno = saved;
	return ret;
}

int os_unmap(void *addr, size_t len)
{
	OS_CALL(munmap(addr, len));
}

int os_protect(void *addr, size_t len, int prot)
{
	OS_CALL(mprotect(addr, len, prot));
}

int os_punch(int fd, uint64_t off, uint64_t len)
{
	OS_CALL(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)off, (off_t)len));
}

int os_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	int saved = errno;
	int ret = 0;

	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			break;
		}
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	errno = saved;
	return ret;
}

int os_pread_zerofill(int fd, void *buf, size_t len, uint64_t off)
{
	int saved = errno;
	int ret = 0;

	while (len > 0) {
		ssize_t n = pread(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (n == 0) {
			memset(buf, 0, len);
			break;
		}
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	errno = saved;
	return ret;
}

void *os_alloc(size_t len)
{
	int saved = errno;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	errno = saved;
	return p == MAP_FAILED ? NULL : p;
}

void os_free(void *addr, size_t len)
{
	int saved = errno;

	if (addr)
		munmap(addr, len);
	errno = saved;
}

long os_max_map_count(void)
{
	long n = 65530; /* the kernel's default */
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = 65530;
		fclose(f);
	}
	return n;
}

long os_count_maps(void)
{
	long n = 0;
	int c;
	FILE *f = fopen("/proc/self/maps", "re");

	if (!f)
		return 0;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}
