/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rados-internal.h: what the files of libvmpage-rados share.  The design is
 * described at the top of rados.c.
 *
 * Lock order: ds->commit_lock, then ds->lock.  Neither is held while a
 * libvmpage call on the view's handle runs, except commit_lock around the
 * vmp_invalidate() calls of a sync point (vmp_invalidate takes the RAM's
 * lock and may wait for a page being mapped, never for commit_lock).
 */
#ifndef VMP_RADOS_INTERNAL_H
#define VMP_RADOS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmpage-rados.h"

#define VMP_EXPORT __attribute__((visibility("default")))

/* Object names: "NAME/head", "NAME/<blk>.<tag>" (16 hex digits each). */
#define OBJ_NAME_MAX (VMP_RADOS_NAME_MAX + 40)

/* --- block map (map.c) ---------------------------------------------------
 * blk -> tag of its object in one snapshot; blocks never written are
 * absent (tag 0: zeros).  Open addressing, linear probing, no deletion (a
 * written block stays written).  Not thread-safe: its owner locks.
 *   n <= cap / 2, cap a power of two (or 0) */
struct blkmap {
	uint64_t *blk; /* BLK_FREE: empty slot */
	uint64_t *tag;
	size_t cap, n;
};
#define BLK_FREE UINT64_MAX

uint64_t blkmap_get(const struct blkmap *m, uint64_t blk);
int blkmap_set(struct blkmap *m, uint64_t blk, uint64_t tag); /* -ENOMEM */
void blkmap_free(struct blkmap *m);
/* Move @src into @dst (which is freed first); @src is left empty. */
void blkmap_move(struct blkmap *dst, struct blkmap *src);

/* --- the head object (head.c) --------------------------------------------- */

struct head_meta {
	uint64_t version; /* commit number */
	uint64_t blksize;
	uint64_t nblocks;
	uint64_t grace_s;
	uint64_t id;      /* drawn at creation: tells a dataset created again
			     under the same name from the one a view reads */
};

/* One commit's log record: the blocks it changed, all to object tag
 * ->tag, and the tags they had before (0: never written). */
struct commit_log {
	uint64_t version;
	uint64_t time;    /* seconds since the epoch, at the committer */
	uint64_t tag;
	uint64_t nblocks; /* the dataset size after it */
	uint64_t n;
	uint64_t *blk;    /* n each */
	uint64_t *oldtag;
};

int name_ok(const char *name);
void head_oid(char *buf, const char *name);
void block_oid(char *buf, const char *name, uint64_t blk, uint64_t tag);
/* Parse "NAME/<blk>.<tag>": 0 and the numbers, or -EINVAL. */
int block_oid_parse(const char *oid, const char *name, uint64_t *blk,
		    uint64_t *tag);

int head_create(rados_ioctx_t io, const char *oid, const struct head_meta *m);
int head_read_meta(rados_ioctx_t io, const char *oid, struct head_meta *m);
/* The block map of the newest state, read consistently (restarted when a
 * commit lands between its pages); *m the meta of that state. */
int head_read_map(rados_ioctx_t io, const char *oid, struct head_meta *m,
		  struct blkmap *map);
/* The logs of commits (after, upto] in order (at most @max, 0: all), and
 * in one atomic read with the first page, the meta (*m).  *nlogs may be
 * fewer than upto - after (logs trimmed): the caller checks.  upto ==
 * UINT64_MAX: up to the newest (m->version).  Free with logs_free(). */
int head_read_logs(rados_ioctx_t io, const char *oid, uint64_t after,
		   uint64_t upto, size_t max, struct head_meta *m,
		   struct commit_log **logs, size_t *nlogs);
void logs_free(struct commit_log *logs, size_t n);
/* The current tags of @n blocks (@blk ascending), in one read with the
 * meta. */
int head_read_tags(rados_ioctx_t io, const char *oid, const uint64_t *blk,
		   size_t n, struct head_meta *m, uint64_t *tags);
/* Commit @log on top of version log->version - 1 of dataset @id: -ECANCELED
 * when the head has another version or id (nothing changed then). */
int head_commit(rados_ioctx_t io, const char *oid, uint64_t id,
		const struct commit_log *log);
/* Delete the block versions superseded by logs older than the grace
 * period (and by commits before @below only), then those logs.  Best
 * effort: returns the number of objects deleted, or a negative errno. */
long head_gc(rados_ioctx_t io, const char *name, const char *oid,
	     uint64_t below, uint64_t grace_s);

/* --- block objects (blocks.c) --------------------------------------------- */

/* Read blocks [blk, blk + n) of @tags into @buf (n * blksize bytes), up to
 * 64 in flight; tag 0 gives zeros.  A missing object gives -ESTALE. */
int blocks_read(rados_ioctx_t io, const char *name, size_t blksize,
		uint64_t blk, uint64_t n, const uint64_t *tags, void *buf);

/* A pipeline of block writes, at most WRITES_IN_FLIGHT in flight. */
#define WRITES_IN_FLIGHT 64
struct writer {
	rados_ioctx_t io;
	const char *name;
	size_t blksize;
	uint64_t tag;
	rados_completion_t ring[WRITES_IN_FLIGHT];
	size_t head, inflight;
	int err;          /* first error of a finished write */
	uint64_t *blk;    /* blocks written (or being written) */
	size_t n, cap;
};
void writer_init(struct writer *w, rados_ioctx_t io, const char *name,
		 size_t blksize, uint64_t tag);
int writer_put(struct writer *w, uint64_t blk, const void *buf);
/* Wait for every write in flight: 0 or the first error. */
int writer_wait(struct writer *w);
/* Remove the objects written (the orphans of a failed commit); best effort. */
void writer_remove(struct writer *w);
void writer_free(struct writer *w);

/* Remove objects by name, up to 64 in flight; ENOENT is success.  Returns
 * how many existed, or the first other error. */
long objects_remove(rados_ioctx_t io, char **oids, size_t n);

/* --- watch and notify (watch.c) -------------------------------------------- */

/* A notification in flight.  Heap-allocated: librados keeps the address
 * of ->reply until it completes. */
struct notify_op {
	rados_completion_t c;
	char *reply;
	size_t reply_len;
};
struct notifier {
	struct notify_op **op; /* as many as are in flight */
	size_t n, cap;
};
int watch_start(vmp_rados *ds);
void watch_stop(vmp_rados *ds);
/* Re-register the watch if it broke (called at sync points). */
void watch_check(vmp_rados *ds);
/* Announce commit @version; never waits for watchers. */
void notify_send(vmp_rados *ds, uint64_t version);
/* Wait for the notifications in flight (bounded by their timeout); frees
 * the notifier's array. */
void notify_drain(struct notifier *nt);

/* --- the view (rados.c) ---------------------------------------------------- */

/*
 * struct vmp_rados.
 *   map and (version, nblocks) describe one committed state: the snapshot
 *   every load reads;
 *   while a commit runs (writeout_begin .. commit/abort), commit_lock is
 *   held and w describes it.
 */
struct vmp_rados {
	rados_ioctx_t io;              /* const, the program's */
	char name[VMP_RADOS_NAME_MAX + 1]; /* const */
	char head[OBJ_NAME_MAX];       /* const: head object's name */
	size_t blksize;                /* const */
	uint64_t grace_s;              /* const */
	uint64_t id;                   /* const: the dataset's (head_meta) */
	vmp_fileh *fh;                 /* const once open */

	pthread_mutex_t commit_lock;   /* serialises commits and syncs */
	/* protected by commit_lock: */
	struct writer w;               /* the commit in progress */
	uint64_t base;                 /* its snapshot version */
	bool need_full;                /* next sync: reload the whole map */
	struct notifier nt;

	pthread_mutex_t lock;          /* protects the snapshot: */
	struct blkmap map;
	uint64_t version;
	uint64_t nblocks;
	vmp_rados_notify_fn notify_fn;
	void *notify_arg;

	/* watch: registered by watch_start, cookie const while set */
	uint64_t watch_cookie;
	bool watching;
	int watch_err;                 /* atomic: set by the error callback */
	uint64_t announced;            /* atomic */

	/* figures, atomic */
	uint64_t commits, conflicts, rebases, syncs, invalidated, gc_deleted;
};

/* Move to version @upto (UINT64_MAX: the newest), invalidating what
 * changed.  commit_lock held. */
int sync_to(vmp_rados *ds, uint64_t upto);

#endif /* VMP_RADOS_INTERNAL_H */
