/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * global.c: process-wide state: one-time initialisation, fork() handling,
 * the version, and the helpers that lock with SIGSEGV blocked.
 *
 * fork(): mappings are MADV_DONTFORK, so the child has none.  The child gets
 * a new vmp_fork_gen, which makes every object created before the fork
 * answer -ECHILD there (its locks may be held by threads that do not exist
 * in the child, and its memfds are shared with the parent: using them would
 * corrupt the parent).  The address registry is emptied in the child.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

unsigned vmp_fork_gen;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_error;

static void fork_prepare(void)
{
	registry_fork_prepare();
	waits_fork_prepare();
	bounce_fork_prepare();
	uffd_fork_prepare();
	fault_fork_prepare();
	os_fork_prepare(); /* last: see os.c */
}

static void fork_parent(void)
{
	os_fork_parent();
	fault_fork_parent();
	uffd_fork_parent();
	bounce_fork_parent();
	waits_fork_parent();
	registry_fork_parent();
}

static void fork_child(void)
{
	__atomic_add_fetch(&vmp_fork_gen, 1, __ATOMIC_RELAXED);
	os_fork_child();
	fault_fork_child();
	uffd_fork_child();
	bounce_fork_child();
	waits_fork_child();
	registry_fork_child();
}

static void init_global(void)
{
	long budget;

	init_error = os_init();
	if (init_error)
		return;
	/* Leave an eighth of the kernel's mapping limit, and what the program
	 * uses now, to the rest of the program. */
	budget = os_max_map_count() / 8 * 7 - os_count_maps();
	vmp_kvma_budget = budget > 64 ? budget : 64;
	if (pthread_atfork(fork_prepare, fork_parent, fork_child))
		init_error = -ENOMEM;
}

int vmp_global_init(void)
{
	pthread_once(&init_once, init_global);
	return init_error;
}

void vmp_internal_bug(const char *file, int line, const char *cond)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
			 "vmpage: internal bug: %s:%d: %s\n", file, line, cond);

	if (n > 0)
		(void)!write(STDERR_FILENO, buf, (size_t)n);
	abort();
}

void api_enter(struct api_state *st)
{
	sigset_t faults;

	/* both signals faults come as (SIGBUS: userfaultfd) */
	sigemptyset(&faults);
	sigaddset(&faults, SIGSEGV);
	sigaddset(&faults, SIGBUS);
	pthread_sigmask(SIG_BLOCK, &faults, &st->mask);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &st->cancel);
}

void api_leave(const struct api_state *st)
{
	pthread_setcancelstate(st->cancel, NULL);
	pthread_sigmask(SIG_SETMASK, &st->mask, NULL);
}

void ram_lock_api(vmp_ram *ram, struct api_state *st)
{
	api_enter(st);
	ram_lock(ram);
}

void ram_unlock_api(vmp_ram *ram, const struct api_state *st)
{
	pthread_mutex_unlock(&ram->lock);
	api_leave(st);
}

VMP_EXPORT const char *vmp_version(void)
{
	return VMP_VERSION_STRING;
}
