/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * watch.c: watch/notify on the head object.  After a commit the committer
 * notifies the dataset's watchers with the new commit number; a view's
 * watch records the highest number announced and calls the program's
 * callback.  Notifications are hints, never trusted for correctness: a
 * writer that dies between its commit and its notify sends nothing, and a
 * broken watch misses some.  Sync points read the head itself.
 *
 * A notify waits for every watcher's acknowledgement, and the cluster keeps
 * the watch of a dead client for ~30 s: a synchronous notify would stall a
 * commit that long.  So notifies are asynchronous, with a short timeout;
 * their completions are reaped at the next commit and waited for at close.
 * None is skipped: with a dead watcher each lasts its whole timeout, and a
 * writer that committed often in that time would else never announce its
 * last commits (at most the commits of one timeout are in flight).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rados-internal.h"

#define NOTIFY_TIMEOUT_MS 1000

static uint64_t le64(const char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)(unsigned char)p[i] << (8 * i);
	return v;
}

/* librados thread: a notify arrived. */
static void on_notify(void *arg, uint64_t notify_id, uint64_t cookie,
		      uint64_t notifier_id, void *data, size_t len)
{
	vmp_rados *ds = arg;
	vmp_rados_notify_fn fn;
	void *fnarg;
	uint64_t v, seen;

	(void)notifier_id;
	/* the payload first: it is librados's, read it before answering */
	v = len == 8 ? le64(data) : 0;
	/* then the ack at once: the notifier waits for it */
	(void)rados_notify_ack(ds->io, ds->head, notify_id, cookie, NULL, 0);
	if (!v)
		return;
	seen = __atomic_load_n(&ds->announced, __ATOMIC_RELAXED);
	while (v > seen &&
	       !__atomic_compare_exchange_n(&ds->announced, &seen, v, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	pthread_mutex_lock(&ds->lock);
	fn = ds->notify_fn;
	fnarg = ds->notify_arg;
	pthread_mutex_unlock(&ds->lock);
	if (fn)
		fn(ds, v, fnarg);
}

/* librados thread: the watch broke (connection lost, object moved). */
static void on_watch_error(void *arg, uint64_t cookie, int err)
{
	vmp_rados *ds = arg;

	(void)cookie;
	__atomic_store_n(&ds->watch_err, err ? err : -EIO, __ATOMIC_RELAXED);
}

int watch_start(vmp_rados *ds)
{
	int ret = rados_watch2(ds->io, ds->head, &ds->watch_cookie, on_notify,
			       on_watch_error, ds);

	ds->watching = !ret;
	__atomic_store_n(&ds->watch_err, 0, __ATOMIC_RELAXED);
	return ret;
}

void watch_stop(vmp_rados *ds)
{
	if (!ds->watching)
		return;
	(void)rados_unwatch2(ds->io, ds->watch_cookie);
	/* no callback runs on ds after this */
	(void)rados_watch_flush(rados_ioctx_get_cluster(ds->io));
	ds->watching = false;
}

void watch_check(vmp_rados *ds)
{
	if (ds->watching && !__atomic_load_n(&ds->watch_err, __ATOMIC_RELAXED))
		return;
	watch_stop(ds);
	(void)watch_start(ds); /* a failure is retried at the next sync */
}

/* Release the notifications that finished; with @wait, all of them. */
static void reap(struct notifier *nt, bool wait)
{
	size_t k = 0;

	for (size_t i = 0; i < nt->n; i++) {
		struct notify_op *op = nt->op[i];

		if (!wait && !rados_aio_is_complete(op->c)) {
			nt->op[k++] = op;
			continue;
		}
		rados_aio_wait_for_complete(op->c);
		rados_aio_release(op->c);
		if (op->reply)
			rados_buffer_free(op->reply);
		free(op);
	}
	nt->n = k;
}

void notify_drain(struct notifier *nt)
{
	reap(nt, true);
	free(nt->op);
	nt->op = NULL;
	nt->cap = 0;
}

void notify_send(vmp_rados *ds, uint64_t version)
{
	struct notifier *nt = &ds->nt;
	struct notify_op *op;
	char payload[8];

	reap(nt, false);
	if (nt->n == nt->cap) {
		size_t cap = nt->cap ? 2 * nt->cap : 8;
		struct notify_op **g = realloc(nt->op, cap * sizeof(*g));
		if (!g)
			return; /* a hint: skipped */
		nt->op = g;
		nt->cap = cap;
	}
	for (int i = 0; i < 8; i++)
		payload[i] = (char)(version >> (8 * i));
	if (!(op = calloc(1, sizeof(*op))))
		return;
	if (rados_aio_create_completion2(NULL, NULL, &op->c)) {
		free(op);
		return;
	}
	if (rados_aio_notify(ds->io, ds->head, op->c, payload, 8,
			     NOTIFY_TIMEOUT_MS, &op->reply, &op->reply_len)) {
		rados_aio_release(op->c);
		free(op);
		return;
	}
	nt->op[nt->n++] = op;
}
