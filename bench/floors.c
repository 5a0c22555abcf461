/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * floors.c: the references every libvmpage row is compared with, measured in
 * the same run:
 *
 *   fault floor (a)  the least a SIGSEGV-based loader can do per 4 KiB page:
 *                    a plain sigaction handler computes the page's bytes,
 *                    pwrites them into a fresh page of a memfd and mprotects
 *                    the page readable.  No lookup, no locks, no bookkeeping.
 *   copy floor (b)   the least a copying loader can do on a sequential read:
 *                    pread a block of the file into a bounce buffer, pwrite it
 *                    into a fresh memfd, mprotect it readable, sum it.
 *   kernel mmap      the kernel's own file mapping of the test file.
 *   kernel 2nd pass  kernel mmap of a 4 GiB memfd (the memory libvmpage's
 *                    pages live in), the wall rows' random pages written
 *                    once, then read again: the reference of the
 *                    wall/second-pass rows, a pass with no fault at all.
 *   cpu              the spinning store's ~20 us computation alone, in N
 *                    threads: how far this machine's CPUs scale at all.
 *
 * The floors install their own SIGSEGV action for one repetition and put the
 * previous one (libvmpage's, once it is installed) back afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, MAP_NORESERVE; meson passes it too */
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

/* The fault floor's region, read by its signal handler. */
static struct {
	char *base;
	size_t len;
	int memfd;
} ff;

static void ff_die(const char *what)
{
	static const char pre[] = "vmpage-bench: fault floor: ";

	/* signal context: write(2) only */
	if (write(2, pre, sizeof(pre) - 1) < 0 ||
	    write(2, what, strlen(what)) < 0 || write(2, "\n", 1) < 0) {
		/* nothing more to say */
	}
	_exit(2);
}

static void ff_handler(int sig, siginfo_t *si, void *uc)
{
	/* One bounce page per thread: threads fault in parallel. */
	static __thread uint64_t buf[WORDS_PER_OS_PAGE];
	char *addr = si->si_addr;
	int saved = errno;
	size_t pg;

	(void)sig;
	(void)uc;
	if (addr < ff.base || addr >= ff.base + ff.len) {
		/* not ours: fault again with the default action, and crash */
		signal(SIGSEGV, SIG_DFL);
		errno = saved;
		return;
	}
	pg = (size_t)(addr - ff.base) / OS_PAGE;
	data_fill(buf, pg * WORDS_PER_OS_PAGE, OS_PAGE);
	if (pwrite(ff.memfd, buf, OS_PAGE, (off_t)(pg * OS_PAGE)) != OS_PAGE)
		ff_die("pwrite into the memfd failed");
	/* Random order splits the mapping into many kernel VMAs; opt.ntouch
	 * is bounded so that this stays under vm.max_map_count. */
	if (mprotect(ff.base + pg * OS_PAGE, OS_PAGE, PROT_READ) != 0)
		ff_die("mprotect failed (too many kernel VMAs?)");
	errno = saved;
}

/* A fresh memfd of @len bytes and a PROT_NONE shared mapping of it. */
static int memfd_region(size_t len, int *fdp, char **basep)
{
	int fd = memfd_create("vmpage-bench-floor", MFD_CLOEXEC);
	void *p;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) != 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	p = mmap(NULL, len, PROT_NONE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED) {
		int e = -errno;

		close(fd);
		return e;
	}
	*fdp = fd;
	*basep = p;
	return 0;
}

/* Fault floor (a): random first touches of ntouch 4 KiB pages, in the main
 * thread (threads == 0, ns per fault) or split over N threads (faults/s). */
void job_floor_fault(const struct job *j, struct rep *r)
{
	struct access a[64];
	struct sigaction sa, old;
	int n = j->threads, e;
	double secs;

	e = memfd_region(g_size, &ff.memfd, &ff.base);
	if (e < 0) {
		rep_fail(r, REP_ERROR, "memfd region: %s", strerror(-e));
		return;
	}
	ff.len = g_size;
	access_split(a, n ? n : 1, (const uint64_t *)ff.base, g_perm, g_ntouch);

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = ff_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	secs = access_parallel(a, n, false, NULL);
	sigaction(SIGSEGV, &old, NULL);

	for (int i = 0; i < (n ? n : 1); i++)
		if (!access_check(&a[i], r->msg, sizeof(r->msg)))
			r->status = REP_BADSUM;
	if (n == 0)
		r->val[0] = secs * 1e9 / (double)g_ntouch;
	else
		r->val[0] = (double)g_ntouch / secs / 1e3;
	munmap(ff.base, ff.len);
	close(ff.memfd);
	ff.base = NULL;
	ff.len = 0;
}

/* Copy floor (b): the whole file, block after block, through a bounce
 * buffer into a fresh memfd that is mapped readable and summed. */
void job_floor_copy(const struct job *j, struct rep *r)
{
	size_t ps = j->ps;
	uint64_t s = 0, off;
	char *base, *bounce;
	int memfd, e;
	double t0, secs;
	bool capped = false;

	e = memfd_region(g_size, &memfd, &base);
	if (e < 0) {
		rep_fail(r, REP_ERROR, "memfd region: %s", strerror(-e));
		return;
	}
	bounce = aligned_alloc(OS_PAGE, ps);
	if (!bounce) {
		rep_fail(r, REP_ERROR, "out of memory");
		goto out;
	}
	memset(bounce, 0, ps); /* the bounce buffer is reused: make it hot */

	t0 = now();
	for (off = 0; off < g_size; off += ps) {
		if (pread(g_fd, bounce, ps, (off_t)off) != (ssize_t)ps ||
		    pwrite(memfd, bounce, ps, (off_t)off) != (ssize_t)ps ||
		    mprotect(base + off, ps, PROT_READ) != 0) {
			rep_fail(r, REP_ERROR, "copy at %llu: %s",
				 (unsigned long long)off, strerror(errno));
			goto out;
		}
		s += sum_words((const uint64_t *)(base + off), ps / 8);
		if (opt.cap > 0 && now() - t0 > opt.cap) {
			off += ps;
			capped = off < g_size;
			break;
		}
	}
	secs = now() - t0;
	if (off > g_size)
		off = g_size;
	if (s != data_sum(0, off / 8))
		rep_fail(r, REP_BADSUM, "copy floor sum %#llx, want %#llx",
			 (unsigned long long)s,
			 (unsigned long long)data_sum(0, off / 8));
	r->val[0] = (double)off / secs / 1e9;
	r->capped = capped;
out:
	free(bounce);
	munmap(base, g_size);
	close(memfd);
}

/* Kernel mmap of the test file: the reference for every file row. */
void job_kernel(const struct job *j, struct rep *r)
{
	struct access a = {
		.nbytes = g_size, .kind = j->acc, .perm = g_perm,
		.ntouch = g_ntouch, .cap = opt.cap,
	};
	void *p = mmap(NULL, g_size, PROT_READ, MAP_SHARED, g_fd, 0);

	if (p == MAP_FAILED) {
		rep_fail(r, REP_ERROR, "mmap of the file: %s", strerror(errno));
		return;
	}
	a.base = p;
	access_run(&a);
	if (!access_check(&a, r->msg, sizeof(r->msg)))
		r->status = REP_BADSUM;
	r->val[0] = access_rate(&a);
	r->capped = a.capped;
	munmap(p, g_size);
}

/* The spinning store's computation alone, in N threads: the ceiling for
 * thr/spin/N.  (On a VM whose vCPUs share a host CPU it does not scale.) */
void job_cpu(const struct job *j, struct rep *r)
{
	struct access a[64];
	int n = j->threads;
	double secs;

	access_split(a, n, NULL, g_perm, g_ntouch);
	for (int i = 0; i < n; i++) {
		a[i].kind = ACC_CPU;
		a[i].spin = (uint64_t)(g_spin_iters + 0.5);
	}
	secs = access_parallel(a, n, false, NULL);
	r->val[0] = (double)g_ntouch / secs / 1e3;
}

/*
 * kernel/second-pass: a 4 GiB memfd mapped shared, the wall rows' random
 * pages written once (untimed: each gets its touch word, so the second pass
 * has a sum to check), then read in the second pass's order (timed): ns per
 * touch of a resident, mapped page, TLB and cache misses only.
 */
void job_kernel_wall(const struct job *j, struct rep *r)
{
	const uint32_t *perm = wall_perm(0);
	const size_t len = WALL_PAGES * OS_PAGE;
	struct access a = { .kind = ACC_RAND, .perm = wall_perm(1),
			    .ntouch = g_wall_touches };
	int fd = memfd_create("vmpage-bench-wall", MFD_CLOEXEC);
	uint64_t *p;

	(void)j;
	if (!perm || fd < 0 || ftruncate(fd, (off_t)len) != 0) {
		rep_fail(r, REP_ERROR, "4 GiB memfd: %s",
			 perm ? strerror(errno) : "out of memory");
		goto out;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		 fd, 0);
	if (p == MAP_FAILED) {
		rep_fail(r, REP_ERROR, "mmap of the memfd: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < g_wall_touches; i++) {
		uint64_t w = touch_word(perm[i]);

		p[w] = data_word(w);
	}
	a.base = p;
	access_run(&a);
	if (!access_check(&a, r->msg, sizeof(r->msg)))
		r->status = REP_BADSUM;
	r->val[0] = a.secs * 1e9 / (double)a.done;
	munmap(p, len);
out:
	if (fd >= 0)
		close(fd);
}
