/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * waits.c: threads' tags, and which thread waits for which.
 *
 * A thread that faults on a page another thread is loading waits for that
 * loader.  Loads nest (a loadblk may touch mappings), so a loader can itself
 * wait for a third thread, and so on.  If the chain came back to the
 * waiting thread, nobody would ever wake: so before it sleeps, a thread
 * records "I wait for thread X" here, unless X waits, directly or through
 * others, for it.  Then it does not wait, and loads the page itself
 * (load.c, "taking over").  Every wait is checked against all the waits
 * recorded before it, under one lock, so no cycle can form.  Waiting is
 * the slow path: the lock costs nothing on faults that do not wait.
 *
 * A thread is named by a 16-bit tag, which is also what page->mapper holds
 * (fault.c).  Tags of threads that exit are reused, so that the tags of the
 * threads alive at one time differ (up to 65535 of them; more share tags,
 * which costs them extra faults and can hide a cycle of waits).  A tag is
 * reused only once all were handed out, the longest free first: a page
 * mapped by a thread that exits in the middle of another's fault on it
 * must not look, to that fault, as mapped by itself.
 *
 * Signal context (the fault handler): only a mutex and plain memory.
 */
#include <unistd.h>

#include "fault.h"

#define NTAGS (1u << 16)

/* graph_lock protects all below.  Lock order: after every ram->lock. */
static pthread_mutex_t graph_lock = PTHREAD_MUTEX_INITIALIZER;
static uint16_t waits_for[NTAGS]; /* tag -> tag it waits for, 0 none */
static uint16_t free_tags[NTAGS]; /* tags of threads that exited: a ring */
static unsigned free_first, nfree;
static unsigned next_tag = 1;     /* never handed out yet; 0 means nobody */

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void tag_release(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&graph_lock);
	waits_for[vmp_tls.tag] = 0;
	free_tags[(free_first + nfree++) % NTAGS] = vmp_tls.tag;
	pthread_mutex_unlock(&graph_lock);
	vmp_tls.tag = 0;
}

static void exit_key_init(void)
{
	(void)pthread_key_create(&exit_key, tag_release);
}

static uint16_t tag_alloc(void)
{
	uint16_t tag = 0;

	pthread_once(&exit_key_once, exit_key_init);
	pthread_mutex_lock(&graph_lock);
	if (next_tag < NTAGS) {
		tag = (uint16_t)next_tag++;
	} else if (nfree) {
		tag = free_tags[free_first];
		free_first = (free_first + 1) % NTAGS;
		nfree--;
	}
	pthread_mutex_unlock(&graph_lock);
	if (!tag) /* 65535 threads alive: share one (extra faults, fault.c) */
		return (uint16_t)(1 + (unsigned)gettid() % (NTAGS - 1));
	/* give it back at thread exit (the key needs a value for that) */
	(void)pthread_setspecific(exit_key, (void *)1);
	return tag;
}

uint16_t thread_tag(void)
{
	if (unlikely(!vmp_tls.tag))
		vmp_tls.tag = tag_alloc();
	return vmp_tls.tag;
}

bool wait_begin(uint16_t owner)
{
	uint16_t me = thread_tag(), t = owner;
	bool cycle = false;

	pthread_mutex_lock(&graph_lock);
	/* the recorded waits have no cycle: the chain ends within NTAGS */
	for (unsigned n = 0; t && n < NTAGS; n++, t = waits_for[t]) {
		if (t == me) {
			cycle = true;
			break;
		}
	}
	if (!cycle)
		waits_for[me] = owner;
	pthread_mutex_unlock(&graph_lock);
	return !cycle;
}

void wait_end(void)
{
	pthread_mutex_lock(&graph_lock);
	waits_for[vmp_tls.tag] = 0;
	pthread_mutex_unlock(&graph_lock);
}

void waits_fork_prepare(void)
{
	pthread_mutex_lock(&graph_lock);
}

void waits_fork_parent(void)
{
	pthread_mutex_unlock(&graph_lock);
}

/* The child has one thread, which waits for nobody, and holds the lock
 * (waits_fork_prepare): it can simply let go of it. */
void waits_fork_child(void)
{
	waits_for[vmp_tls.tag] = 0;
	pthread_mutex_unlock(&graph_lock);
}
