/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rados.c: views of datasets in Ceph RADOS (vmpage-rados.h): the store
 * callbacks, sync points and commits.
 *
 * Design.
 *
 * A dataset NAME is a head object and block objects (head.c, blocks.c):
 *
 *   NAME/head          xattrs: version (the newest commit number), blksize,
 *                      nblocks, grace; omap: b<blk> -> tag of the block's
 *                      current object, c<version> -> that commit's log
 *                      (the blocks it changed and their previous tags)
 *   NAME/<blk>.<tag>   one version of a block, written once, never changed
 *
 * Snapshot.  A view keeps the block map of one commit (map.c): loads read
 * the objects its tags name, so every load of a transaction comes from
 * that commit whatever others do.  A sync point moves it to a later commit
 * by reading, in one atomic read of the head, the version and the logs
 * after its own; the blocks those logs name are invalidated in the handle
 * (vmp_invalidate: clean pages dropped, dirty ones kept).  When the logs
 * it needs were trimmed, it reloads the whole map and invalidates the
 * blocks whose tags differ.
 *
 * Commit.  vmp_writeout calls writeout_begin, storeblk for each dirty page,
 * writeout_commit.  Begin takes commit_lock and draws a random 64-bit tag;
 * each storeblk writes NAME/<blk>.<tag> (asynchronously, up to 64 in
 * flight): new objects nobody references yet.  Commit waits for them, then
 * updates the head in ONE write op: compare the version with the view's
 * snapshot version S, set the b keys of the blocks to the tag, add the log
 * c<S+1>, set the version to S+1.  Either all of that happens or none:
 * other views see the whole commit or nothing of it.  A writer killed at
 * any step before that op leaves only unreferenced objects (orphans: the
 * next vmp_rados_remove() sweeps them), after it a complete commit.
 *
 * Conflicts.  The compare fails (-ECANCELED) when another commit landed
 * since S.  The committer then reads the head's version V and the current
 * tags of its blocks (one atomic read): if one differs from its
 * snapshot's, another commit changed a block it changed too, and the
 * commit fails with -EBUSY (first committer wins; its objects are removed
 * by writeout_abort, its dirty pages stay dirty).  Otherwise nothing it
 * wrote was touched: it retries on top of V ("rebase").  Then the view
 * moves to its own commit exactly (sync_to(S'+1), not beyond: its pages,
 * marked stored by vmp_writeout after the hook returns, must match the
 * snapshot), invalidating what the commits in between changed.
 *
 * Invalidation from inside the hooks: vmp_invalidate does not wait for
 * the writeout in progress (writeout_busy), and the dirty pages being
 * committed are still dirty then, so they are kept; MARKSTORED makes them
 * clean afterwards, with the bytes just committed.  vmp_discard's
 * discarded hook moves the view the same way after an abort.
 *
 * Notify.  After a commit the committer notifies the head's watchers
 * (watch.c), asynchronously: a dead watcher never delays it.
 *
 * Space.  Each commit's log keeps the tags it superseded.  After a
 * successful commit, the committer deletes the superseded objects of logs
 * older than the grace period, then those logs (head_gc).  A view older
 * than that may find an object gone: -ESTALE at load, never other bytes.
 *
 * Test hook: a program that defines vmp_rados_commit_step() has it
 * called at each step of a commit: 1 after begin, 2 after the first block
 * write was issued, 3 with every block written, 4 after the head was
 * updated, 5 after the notify.  The tests kill a writer there.  The
 * library only refers to it, weakly: in other programs it is not defined
 * and nothing is called (no environment variable of a production library
 * can make a program kill itself).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "rados-internal.h"

extern void vmp_rados_commit_step(int step)
	__attribute__((weak, visibility("default")));

static void commit_step(int step)
{
	if (vmp_rados_commit_step)
		vmp_rados_commit_step(step);
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* --- loads ------------------------------------------------------------------
 * Run inside the fault handler of the faulting thread: ds->lock only
 * around the map lookup, never across I/O. */

static int load_range(vmp_rados *ds, uint64_t blk, uint64_t n, void *buf)
{
	uint64_t stack_tags[64], *tags = stack_tags;
	uint64_t i, nblocks;
	int ret;

	if (n > 64 && !(tags = malloc(n * sizeof(*tags))))
		return -ENOMEM;
	pthread_mutex_lock(&ds->lock);
	nblocks = ds->nblocks;
	for (i = 0; i < n; i++)
		tags[i] = blk + i < nblocks ? blkmap_get(&ds->map, blk + i) : 0;
	pthread_mutex_unlock(&ds->lock);
	/* past the end: zeros, as a file reads */
	ret = blocks_read(ds->io, ds->name, ds->blksize, blk, n, tags, buf);
	if (tags != stack_tags)
		free(tags);
	return ret;
}

static int ds_loadblk(void *ctx, uint64_t blk, void *buf)
{
	return load_range(ctx, blk, 1, buf);
}

static int ds_loadblks(void *ctx, uint64_t blk, uint64_t n, void *buf)
{
	return load_range(ctx, blk, n, buf);
}

/* --- sync points ------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Invalidate the pages of @n blocks (in any order, repeats allowed): one
 * vmp_invalidate per run of neighbours.  Sorts @blk. */
static int invalidate(vmp_rados *ds, uint64_t *blk, size_t n)
{
	size_t i, j;
	int ret = 0;

	qsort(blk, n, sizeof(*blk), cmp_u64);
	for (i = 0; i < n; i = j) {
		int r;
		for (j = i + 1; j < n && blk[j] <= blk[j - 1] + 1; j++)
			;
		r = vmp_invalidate(ds->fh, blk[i], blk[j - 1] - blk[i] + 1);
		if (r && !ret)
			ret = r;
	}
	count(&ds->invalidated, n);
	return ret;
}

/* Reload the whole map of the newest state; invalidate what differs. */
static int sync_full(vmp_rados *ds)
{
	struct blkmap map = { 0 };
	struct head_meta m;
	uint64_t *changed = NULL;
	size_t nchanged = 0;
	int ret;

	ret = head_read_map(ds->io, ds->head, &m, &map);
	if (!ret && m.id != ds->id) /* removed, and created again */
		ret = -ENOENT;
	if (ret) {
		blkmap_free(&map);
		return ret;
	}
	changed = malloc((map.n ? map.n : 1) * sizeof(*changed));
	if (!changed) {
		blkmap_free(&map);
		return -ENOMEM;
	}
	pthread_mutex_lock(&ds->lock);
	for (size_t i = 0; i < map.cap; i++)
		if (map.blk[i] != BLK_FREE &&
		    blkmap_get(&ds->map, map.blk[i]) != map.tag[i])
			changed[nchanged++] = map.blk[i];
	blkmap_move(&ds->map, &map);
	ds->version = m.version;
	ds->nblocks = m.nblocks;
	pthread_mutex_unlock(&ds->lock);
	ds->need_full = false;
	ret = invalidate(ds, changed, nchanged);
	free(changed);
	return ret;
}

int sync_to(vmp_rados *ds, uint64_t upto)
{
	struct commit_log *logs;
	struct head_meta m;
	uint64_t from = ds->version, *changed = NULL;
	size_t nlogs, nchanged = 0, i;
	int ret, inval;

	watch_check(ds);
	if (ds->need_full)
		return sync_full(ds);
	ret = head_read_logs(ds->io, ds->head, from, upto, 0, &m, &logs, &nlogs);
	if (ret)
		return ret;
	if (m.id != ds->id) { /* removed, and created again */
		logs_free(logs, nlogs);
		return -ENOENT;
	}
	if (upto == UINT64_MAX)
		upto = m.version;
	if (upto == from) {
		logs_free(logs, nlogs);
		return 0;
	}
	/* the logs must be exactly from+1 .. upto; else they were trimmed */
	if (nlogs != upto - from || logs[0].version != from + 1 ||
	    logs[nlogs - 1].version != upto) {
		logs_free(logs, nlogs);
		return sync_full(ds);
	}
	for (i = 0; i < nlogs; i++)
		nchanged += logs[i].n;
	changed = malloc((nchanged ? nchanged : 1) * sizeof(*changed));
	if (!changed) {
		logs_free(logs, nlogs);
		return -ENOMEM;
	}
	nchanged = 0;
	pthread_mutex_lock(&ds->lock);
	for (i = 0; i < nlogs && !ret; i++) {
		/* our own commit's blocks are our dirty pages: kept anyway */
		bool ours = logs[i].tag == ds->w.tag && ds->w.n;
		for (uint64_t j = 0; j < logs[i].n && !ret; j++) {
			ret = blkmap_set(&ds->map, logs[i].blk[j], logs[i].tag);
			if (!ours)
				changed[nchanged++] = logs[i].blk[j];
		}
	}
	if (!ret) {
		ds->version = upto;
		ds->nblocks = logs[nlogs - 1].nblocks;
	}
	pthread_mutex_unlock(&ds->lock);
	if (ret) /* the map is half moved: mend it at the next sync */
		ds->need_full = true;
	else
		count(&ds->syncs, 1);
	/* what changed is invalidated even if the map could not follow:
	 * those pages reload at the next sync's snapshot */
	inval = invalidate(ds, changed, nchanged);
	if (!ret)
		ret = inval;
	free(changed);
	logs_free(logs, nlogs);
	return ret;
}

VMP_EXPORT int vmp_rados_sync(vmp_rados *ds)
{
	uint64_t dirty;
	int ret;

	if (!ds)
		return -EINVAL;
	pthread_mutex_lock(&ds->commit_lock);
	ret = vmp_fileh_dirty_count(ds->fh, &dirty);
	if (!ret && dirty)
		ret = -EBUSY;
	if (!ret)
		ret = sync_to(ds, UINT64_MAX);
	pthread_mutex_unlock(&ds->commit_lock);
	return ret;
}

static int ds_discarded(void *ctx)
{
	vmp_rados *ds = ctx;
	int ret;

	pthread_mutex_lock(&ds->commit_lock);
	ret = sync_to(ds, UINT64_MAX);
	pthread_mutex_unlock(&ds->commit_lock);
	return ret;
}

/* --- commits ------------------------------------------------------------------ */

static int ds_writeout_begin(void *ctx)
{
	vmp_rados *ds = ctx;
	uint64_t tag = 0;

	pthread_mutex_lock(&ds->commit_lock);
	while (!tag) /* 0 means "never written" */
		if (getrandom(&tag, sizeof(tag), 0) != sizeof(tag)) {
			pthread_mutex_unlock(&ds->commit_lock);
			return -EIO;
		}
	writer_init(&ds->w, ds->io, ds->name, ds->blksize, tag);
	ds->base = ds->version;
	commit_step(1);
	return 0;
}

static int ds_storeblk(void *ctx, uint64_t blk, const void *buf)
{
	vmp_rados *ds = ctx;
	int ret;

	pthread_mutex_lock(&ds->lock);
	ret = blk >= ds->nblocks ? -EFBIG : 0;
	pthread_mutex_unlock(&ds->lock);
	if (!ret)
		ret = writer_put(&ds->w, blk, buf);
	if (ds->w.n == 1)
		commit_step(2);
	return ret;
}

/* The head moved since our snapshot: may we commit on top of it?  0 and
 * *@version = the head's version when none of our blocks changed. */
static int check_rebase(vmp_rados *ds, struct commit_log *log,
			uint64_t *version)
{
	struct head_meta m;
	uint64_t *now = malloc((log->n ? log->n : 1) * sizeof(*now));
	int ret;

	if (!now)
		return -ENOMEM;
	ret = head_read_tags(ds->io, ds->head, log->blk, log->n, &m, now);
	if (!ret && m.id != ds->id) /* removed, and created again */
		ret = -ENOENT;
	for (size_t i = 0; !ret && i < log->n; i++)
		if (now[i] != log->oldtag[i])
			ret = -EBUSY;
	if (!ret) {
		*version = m.version;
		log->nblocks = m.nblocks > log->nblocks ? m.nblocks : log->nblocks;
	}
	free(now);
	return ret;
}

/* A full reload (sync_full) reads the newest state, which may be past the
 * view's own commit @version: a later commit may have changed its blocks,
 * whose pages are about to be marked stored with the view's bytes.  Take
 * the commits after @version back out of the map with their logs (the tags
 * they replaced), so that the view is exactly at its commit.  commit_lock
 * held. */
static int back_to(vmp_rados *ds, uint64_t version, uint64_t nblocks)
{
	struct commit_log *logs;
	struct head_meta m;
	uint64_t from = ds->version, *blk;
	size_t nlogs, n = 0, i;
	int ret, inval;

	if (from <= version)
		return 0;
	ret = head_read_logs(ds->io, ds->head, version, from, 0, &m, &logs,
			     &nlogs);
	if (ret)
		return ret;
	if (m.id != ds->id || nlogs != from - version ||
	    logs[0].version != version + 1 || logs[nlogs - 1].version != from) {
		logs_free(logs, nlogs); /* trimmed: the next sync reloads */
		return -ESTALE;
	}
	for (i = 0; i < nlogs; i++)
		n += logs[i].n;
	if (!(blk = malloc((n ? n : 1) * sizeof(*blk)))) {
		logs_free(logs, nlogs);
		return -ENOMEM;
	}
	n = 0;
	pthread_mutex_lock(&ds->lock);
	for (i = nlogs; i-- > 0 && !ret;)
		for (uint64_t j = 0; j < logs[i].n && !ret; j++) {
			ret = blkmap_set(&ds->map, logs[i].blk[j],
					 logs[i].oldtag[j]);
			blk[n++] = logs[i].blk[j];
		}
	if (!ret) {
		ds->version = version;
		ds->nblocks = nblocks;
	}
	pthread_mutex_unlock(&ds->lock);
	/* loaded at the later state meanwhile: load again */
	inval = invalidate(ds, blk, n);
	free(blk);
	logs_free(logs, nlogs);
	return ret ? ret : inval;
}

static int ds_writeout_commit(void *ctx)
{
	vmp_rados *ds = ctx;
	struct commit_log log = { 0 };
	uint64_t version = ds->base;
	bool unknown = false;
	int ret, tries;

	ret = writer_wait(&ds->w);
	if (ret)
		return ret; /* writeout_abort follows */
	commit_step(3);
	log.tag = ds->w.tag;
	log.n = ds->w.n;
	log.blk = ds->w.blk;
	log.oldtag = malloc((log.n ? log.n : 1) * sizeof(uint64_t));
	if (!log.oldtag)
		return -ENOMEM;
	pthread_mutex_lock(&ds->lock);
	for (size_t i = 0; i < log.n; i++)
		log.oldtag[i] = blkmap_get(&ds->map, log.blk[i]);
	log.nblocks = ds->nblocks;
	pthread_mutex_unlock(&ds->lock);
	for (tries = 0; tries < 100; tries++) {
		log.version = version + 1;
		log.time = (uint64_t)time(NULL);
		ret = head_commit(ds->io, ds->head, ds->id, &log);
		/* an error of the op itself (a timeout, a lost connection)
		 * does not say it was not applied: the head may name our
		 * objects now.  Only a failed compare (-ECANCELED), a missing
		 * head or our own allocation say so. */
		unknown = ret && ret != -ECANCELED && ret != -ENOENT &&
			  ret != -ENOMEM;
		if (ret != -ECANCELED)
			break;
		ret = check_rebase(ds, &log, &version);
		if (ret)
			break;
		count(&ds->rebases, 1);
		ret = -EAGAIN; /* if the tries run out */
	}
	free(log.oldtag);
	if (ret == -EBUSY)
		count(&ds->conflicts, 1);
	if (unknown)
		ds->w.n = 0; /* abort keeps the objects: vmp_rados_remove() sweeps
				them if they are orphans */
	if (ret)
		return ret;
	/* committed: from here on nothing may fail the writeout */
	count(&ds->commits, 1);
	commit_step(4);
	if (sync_to(ds, log.version))
		ds->need_full = true; /* moved at the next sync point */
	else if (back_to(ds, log.version, log.nblocks))
		ds->need_full = true;
	/* our blocks, whatever that sync did: we know their tags */
	pthread_mutex_lock(&ds->lock);
	for (size_t i = 0; i < ds->w.n; i++)
		if (blkmap_set(&ds->map, ds->w.blk[i], ds->w.tag))
			ds->need_full = true;
	/* A full reload (the logs since our snapshot were trimmed, or an
	 * earlier sync failed) may have moved past our commit: our blocks
	 * then show our bytes where a later commit may have changed them.
	 * The next sync point reloads and compares every tag. */
	if (ds->version != log.version)
		ds->need_full = true;
	pthread_mutex_unlock(&ds->lock);
	notify_send(ds, log.version);
	commit_step(5);
	long gc = head_gc(ds->io, ds->name, ds->head, log.version, ds->grace_s);
	if (gc > 0)
		count(&ds->gc_deleted, (uint64_t)gc);
	writer_free(&ds->w);
	pthread_mutex_unlock(&ds->commit_lock);
	return 0;
}

static void ds_writeout_abort(void *ctx)
{
	vmp_rados *ds = ctx;

	/* nobody references what we wrote: remove it */
	writer_remove(&ds->w);
	writer_free(&ds->w);
	/* The view keeps its snapshot: its dirty pages were made from it, so
	 * a retry of the same commit conflicts again (it must not overwrite
	 * what it has not seen); vmp_discard() moves it on. */
	pthread_mutex_unlock(&ds->commit_lock);
}

static const vmp_store_ops ds_ops = {
	.loadblk = ds_loadblk,
	.loadblks = ds_loadblks,
	.storeblk = ds_storeblk,
	.writeout_begin = ds_writeout_begin,
	.writeout_commit = ds_writeout_commit,
	.writeout_abort = ds_writeout_abort,
	.discarded = ds_discarded,
};

/* --- datasets ------------------------------------------------------------------- */

static int blksize_ok(size_t blksize)
{
	return blksize >= 4096 && blksize <= (16u << 20) &&
	       !(blksize & (blksize - 1));
}

VMP_EXPORT int vmp_rados_create(rados_ioctx_t io, const char *name,
				size_t blksize, uint64_t nblocks,
				unsigned grace_s)
{
	struct head_meta m = { .version = 0, .blksize = blksize,
			       .nblocks = nblocks, .grace_s = grace_s };
	char oid[OBJ_NAME_MAX];

	if (!io || name_ok(name) || !blksize_ok(blksize) || !nblocks ||
	    nblocks > (UINT64_MAX >> 1) / blksize)
		return -EINVAL;
	while (!m.id) /* 0 means "none" (heads made before vmp.id) */
		if (getrandom(&m.id, sizeof(m.id), 0) != sizeof(m.id))
			return -EIO;
	head_oid(oid, name);
	return head_create(io, oid, &m);
}

VMP_EXPORT int vmp_rados_remove(rados_ioctx_t io, const char *name)
{
	rados_list_ctx_t list;
	char oid[OBJ_NAME_MAX];
	char **oids = NULL;
	size_t n = 0, cap = 0, len;
	long rem;
	int ret;

	if (!io || name_ok(name))
		return -EINVAL;
	head_oid(oid, name);
	ret = rados_remove(io, oid);
	if (ret && ret != -ENOENT)
		return ret;
	/* the head went first: nothing can commit into the dataset now;
	 * then sweep everything named NAME/ (orphans too) */
	len = strlen(name);
	if ((rem = rados_nobjects_list_open(io, &list)))
		return (int)rem;
	for (;;) {
		const char *entry;
		int r = rados_nobjects_list_next(list, &entry, NULL, NULL);
		if (r == -ENOENT)
			break;
		if (r) {
			rem = r;
			break;
		}
		if (strncmp(entry, name, len) || entry[len] != '/')
			continue;
		if (n == cap) {
			char **g;
			cap = cap ? 2 * cap : 64;
			if (!(g = realloc(oids, cap * sizeof(*g)))) {
				rem = -ENOMEM;
				break;
			}
			oids = g;
		}
		if (!(oids[n] = strdup(entry))) {
			rem = -ENOMEM;
			break;
		}
		n++;
	}
	rados_nobjects_list_close(list);
	if (!rem)
		rem = objects_remove(io, oids, n);
	for (size_t i = 0; i < n; i++)
		free(oids[i]);
	free(oids);
	if (rem < 0)
		return (int)rem;
	return ret == -ENOENT && !n ? -ENOENT : 0;
}

/* --- views ---------------------------------------------------------------------- */

VMP_EXPORT int vmp_rados_open(vmp_rados **dsp, rados_ioctx_t io,
			      const char *name, vmp_ram *ram, unsigned flags)
{
	vmp_rados *ds;
	vmp_store *store;
	struct head_meta m;
	int ret;

	if (!dsp || !io || !ram || name_ok(name) || (flags & ~VMP_NO_READAHEAD))
		return -EINVAL;
	ds = calloc(1, sizeof(*ds));
	if (!ds)
		return -ENOMEM;
	ds->io = io;
	strcpy(ds->name, name);
	head_oid(ds->head, name);
	pthread_mutex_init(&ds->lock, NULL);
	pthread_mutex_init(&ds->commit_lock, NULL);
	/* the watch first: a commit after the map was read is announced */
	ret = watch_start(ds);
	if (ret)
		goto err;
	ret = head_read_map(io, ds->head, &m, &ds->map);
	if (ret)
		goto err_watch;
	if (!blksize_ok(m.blksize)) {
		ret = -EUCLEAN;
		goto err_map;
	}
	ds->blksize = m.blksize;
	ds->grace_s = m.grace_s;
	ds->id = m.id;
	ds->version = m.version;
	ds->nblocks = m.nblocks;
	ret = vmp_store_new(&store, &ds_ops, ds, ds->blksize);
	if (ret)
		goto err_map;
	ret = vmp_fileh_open(&ds->fh, ram, store, flags);
	/* the handle holds the store from now on; ds outlives the handle */
	(void)vmp_store_free(store);
	if (ret)
		goto err_map;
	*dsp = ds;
	return 0;
err_map:
	blkmap_free(&ds->map);
err_watch:
	watch_stop(ds);
err:
	pthread_mutex_destroy(&ds->lock);
	pthread_mutex_destroy(&ds->commit_lock);
	free(ds);
	return ret;
}

VMP_EXPORT vmp_fileh *vmp_rados_fileh(vmp_rados *ds)
{
	return ds ? ds->fh : NULL;
}

VMP_EXPORT int vmp_rados_grow(vmp_rados *ds, uint64_t nblocks)
{
	struct commit_log log = { 0 };
	struct head_meta m;
	uint64_t dirty;
	int ret;

	if (!ds || nblocks > (UINT64_MAX >> 1) / ds->blksize)
		return -EINVAL;
	pthread_mutex_lock(&ds->commit_lock);
	ret = vmp_fileh_dirty_count(ds->fh, &dirty);
	if (!ret && dirty)
		ret = -EBUSY;
	while (!ret) {
		ret = head_read_meta(ds->io, ds->head, &m);
		if (!ret && m.id != ds->id) /* removed, and created again */
			ret = -ENOENT;
		if (ret)
			break;
		if (nblocks < m.nblocks) {
			ret = -EINVAL;
			break;
		}
		if (nblocks == m.nblocks)
			break;
		/* a commit that changes no block */
		log.version = m.version + 1;
		log.time = (uint64_t)time(NULL);
		log.nblocks = nblocks;
		ret = head_commit(ds->io, ds->head, ds->id, &log);
		if (ret == -ECANCELED)
			ret = 0; /* another commit came first: again */
		else if (!ret)
			break;
	}
	if (!ret)
		ret = sync_to(ds, UINT64_MAX);
	pthread_mutex_unlock(&ds->commit_lock);
	return ret;
}

VMP_EXPORT int vmp_rados_info(vmp_rados *ds, struct vmp_rados_info *info)
{
	if (!ds || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->blksize = ds->blksize;
	pthread_mutex_lock(&ds->lock);
	info->nblocks = ds->nblocks;
	info->version = ds->version;
	pthread_mutex_unlock(&ds->lock);
	info->announced = __atomic_load_n(&ds->announced, __ATOMIC_RELAXED);
	info->commits = __atomic_load_n(&ds->commits, __ATOMIC_RELAXED);
	info->conflicts = __atomic_load_n(&ds->conflicts, __ATOMIC_RELAXED);
	info->rebases = __atomic_load_n(&ds->rebases, __ATOMIC_RELAXED);
	info->syncs = __atomic_load_n(&ds->syncs, __ATOMIC_RELAXED);
	info->invalidated = __atomic_load_n(&ds->invalidated, __ATOMIC_RELAXED);
	info->gc_deleted = __atomic_load_n(&ds->gc_deleted, __ATOMIC_RELAXED);
	return 0;
}

VMP_EXPORT int vmp_rados_set_notify(vmp_rados *ds, vmp_rados_notify_fn fn,
				    void *arg)
{
	if (!ds)
		return -EINVAL;
	pthread_mutex_lock(&ds->lock);
	ds->notify_fn = fn;
	ds->notify_arg = arg;
	pthread_mutex_unlock(&ds->lock);
	return 0;
}

VMP_EXPORT int vmp_rados_close(vmp_rados *ds)
{
	int ret;

	if (!ds)
		return -EINVAL;
	ret = vmp_fileh_close(ds->fh);
	if (ret)
		return ret;
	watch_stop(ds);
	notify_drain(&ds->nt);
	blkmap_free(&ds->map);
	pthread_mutex_destroy(&ds->lock);
	pthread_mutex_destroy(&ds->commit_lock);
	free(ds);
	return 0;
}
