/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * reclaimer.c: the background reclaimer of a RAM (vmp_ram_set_reclaimer).
 *
 * Without it, a fault that finds the RAM full makes the room itself:
 * drops clean pages, or spills or writes back dirty ones (evict.c), and the
 * program waits for that.  With it, a thread of the RAM does the same
 * ahead of need, as a kernel's page daemon does: woken by a charge that
 * takes the RAM over its high watermark (90% of the limit), it frees down
 * to the low one (80%), then sleeps.  Faults then mostly find room; the
 * work moves to the other CPU where there is one.
 *
 * A round that frees nothing (only dirty pages left, and none of them may
 * leave) would be repeated by every charge: the thread rests instead for
 * a while (reclaimer_resting, charges do not wake it), so that it never
 * spins.  It runs with ram->lock held but while it moves bytes, like the
 * fault path (fault_lock), and with every signal blocked but SIGSEGV and
 * SIGBUS: a writeback storeblk that it calls may touch a mapping.
 */
#include <errno.h>
#include <signal.h>
#include <time.h>

#include "fault.h"

#define REST_NS (20 * 1000 * 1000) /* after a round that freed nothing */

static uint64_t high_mark(const vmp_ram *ram)
{
	return ram->limit_bytes - ram->limit_bytes / 10;
}

static uint64_t low_mark(const vmp_ram *ram)
{
	return ram->limit_bytes - ram->limit_bytes / 5;
}

void reclaimer_poke(vmp_ram *ram)
{
	if (!ram->reclaimer_resting && ram->used_bytes > high_mark(ram))
		pthread_cond_signal(&ram->reclaim_cond);
}

/* Free down to the low mark: clean pages first, then dirty ones that may
 * leave.  True if it got there. */
static bool reclaim_round(vmp_ram *ram)
{
	uint64_t low = low_mark(ram);

	if (ram->used_bytes > low)
		ram_reclaim_bytes(ram, ram->used_bytes - low);
	while (ram->used_bytes > low && !ram->reclaimer_stop) {
		/* a batch at a time: the lock is dropped in between */
		uint64_t want = ram->used_bytes - low;
		if (want > ram->limit_bytes / 32)
			want = ram->limit_bytes / 32;
		if (evict_ahead(ram, want) <= 0)
			return false;
	}
	return true;
}

static void rest(vmp_ram *ram)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += REST_NS;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	ram->reclaimer_resting = true;
	while (!ram->reclaimer_stop &&
	       pthread_cond_timedwait(&ram->reclaim_cond, &ram->lock, &until) !=
		       ETIMEDOUT)
		;
	ram->reclaimer_resting = false;
}

static void *reclaimer_main(void *arg)
{
	vmp_ram *ram = arg;
	sigset_t mask;

	sigfillset(&mask);
	sigdelset(&mask, SIGSEGV);
	sigdelset(&mask, SIGBUS);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);

	fault_lock(ram);
	while (!ram->reclaimer_stop) {
		if (ram->used_bytes <= high_mark(ram)) {
			pthread_cond_wait(&ram->reclaim_cond, &ram->lock);
			continue;
		}
		if (!reclaim_round(ram))
			rest(ram);
	}
	fault_unlock(ram);
	return NULL;
}

static int reclaimer_start(vmp_ram *ram)
{
	int ret = 0;

	pthread_mutex_lock(&ram->lock);
	if (ram->reclaimer_on) {
		ret = ram->reclaimer_stop ? -EBUSY : 0; /* being stopped */
	} else {
		/* it sets its own signal mask first thing */
		ret = -pthread_create(&ram->reclaimer, NULL, reclaimer_main, ram);
		ram->reclaimer_on = ret == 0;
	}
	pthread_mutex_unlock(&ram->lock);
	return ret;
}

int reclaimer_stop(vmp_ram *ram)
{
	pthread_t thread;

	pthread_mutex_lock(&ram->lock);
	if (!ram->reclaimer_on || ram->reclaimer_stop) {
		pthread_mutex_unlock(&ram->lock);
		return 0; /* off, or another thread stops it */
	}
	if (pthread_equal(ram->reclaimer, pthread_self())) {
		pthread_mutex_unlock(&ram->lock);
		return -EDEADLK; /* from a store callback it runs */
	}
	ram->reclaimer_stop = true;
	thread = ram->reclaimer;
	pthread_cond_signal(&ram->reclaim_cond);
	pthread_mutex_unlock(&ram->lock);
	pthread_join(thread, NULL);
	pthread_mutex_lock(&ram->lock);
	ram->reclaimer_on = false;
	ram->reclaimer_stop = false;
	pthread_mutex_unlock(&ram->lock);
	return 0;
}

VMP_EXPORT int vmp_ram_set_reclaimer(vmp_ram *ram, int on)
{
	struct api_state saved;
	int ret;

	if (!ram)
		return -EINVAL;
	if ((ret = check_fork(ram->fork_gen)))
		return ret;
	if (on && !ram->limit_bytes)
		return -EINVAL;
	api_enter(&saved);
	ret = on ? reclaimer_start(ram) : reclaimer_stop(ram);
	api_leave(&saved);
	return ret;
}
