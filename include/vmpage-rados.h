/* SPDX-License-Identifier: GPL-2.0-or-later */
/**
 * @file vmpage-rados.h
 * libvmpage-rados: map a dataset kept in Ceph RADOS, shared by any number of
 * processes on any number of machines, with snapshot isolation and atomic
 * commits.  A library of its own beside libvmpage (pkg-config: vmpage-rados).
 *
 * A *dataset* is a named array of fixed-size blocks in a RADOS pool.  A
 * program opens a *view* of it (vmp_rados_open()), maps the view's handle
 * with vmp_mmap() and reads and writes plain memory.  The view reads one
 * committed state of the dataset, whatever other writers do meanwhile, and
 * moves to the newest committed state only at its sync points:
 *
 * - its own commit: vmp_writeout(fh, VMP_WRITEOUT_STORE |
 *   VMP_WRITEOUT_MARKSTORED) makes all the view's changed blocks visible to
 *   other views at once, or none of them (with no dirty page it calls no
 *   store hook and moves nothing: a read-only transaction ends with
 *   vmp_rados_sync() or vmp_discard());
 * - its abort: vmp_discard(fh);
 * - vmp_rados_sync().
 *
 * There the blocks that others changed since are invalidated (the next
 * touch loads their new bytes); the view's own dirty pages are kept.
 *
 * Concurrent commits: when two views commit changes to the same block
 * concurrently, the first one wins; the other's vmp_writeout() returns
 * -EBUSY (a conflict), its dirty pages stay dirty: it may vmp_discard() and
 * redo its transaction.  Commits that change different blocks both
 * succeed, the later one on top of the earlier (the check is per block:
 * a transaction that read a block another commit changed is not refused,
 * as with snapshot isolation in databases).
 *
 * Space: a block's superseded versions are deleted by later committers
 * once they are older than the dataset's grace period (vmp_rados_create()).
 * A view whose snapshot is older than that may find a version gone: its
 * load fails with -ESTALE (a fault error, VMP_FAULT_LOAD: vmp_guard() and
 * the fault error handler see it), never wrong bytes; a sync moves it on.
 *
 * The program owns the rados_ioctx_t (and its rados_t): it must outlive
 * the views opened with it.  Set rados_osd_op_timeout (e.g. to 30 s) in the
 * cluster's configuration if loads must fail rather than wait while the
 * cluster is unreachable: librados waits for ever by default, and a load
 * waits inside the faulting thread.
 *
 * Conventions: as libvmpage's, every function returns 0 or a negative
 * errno (errors of librados are passed through), and all functions are
 * thread-safe.  Views and datasets are not usable in a fork()ed child.
 */
#ifndef VMPAGE_RADOS_H
#define VMPAGE_RADOS_H

#include <stddef.h>
#include <stdint.h>

#include <rados/librados.h>
#include <vmpage.h>

#ifdef __cplusplus
extern "C" {
#endif

/** An open view of a dataset: one store, one handle, one snapshot. */
typedef struct vmp_rados vmp_rados;

/** The longest dataset name, in bytes. */
#define VMP_RADOS_NAME_MAX 200

/**
 * Create a dataset of @p nblocks zero-filled blocks of @p blksize bytes.
 * It costs one object; blocks take space only once written.
 *
 * @param io        a connected I/O context of the pool (the caller's).
 * @param name      1 to VMP_RADOS_NAME_MAX bytes, no '/'.
 * @param blksize   a power of two, from the OS page size to 16 MiB; it is
 *                  the page size of the views' mappings.
 * @param nblocks   the size in blocks, at least 1 (vmp_rados_grow()).
 * @param grace_s   seconds a superseded block version is kept for views
 *                  that still read an older snapshot (0: deleted at the
 *                  next commit after its own).
 * @return 0; -EINVAL (bad argument); -EEXIST (a dataset of that name
 *         exists); librados errors.
 */
int vmp_rados_create(rados_ioctx_t io, const char *name, size_t blksize,
		     uint64_t nblocks, unsigned grace_s);

/**
 * Remove a dataset: its head object first (views open on it then fail to
 * commit and sync with -ENOENT, their loads with -ESTALE), then every object
 * of the dataset the pool lists, including the orphans of writers that died
 * in a commit.  Lists the whole pool: it takes time on large pools.
 * @return 0; -EINVAL; -ENOENT (no such dataset); librados errors (what
 *         was removed stays removed; calling again finishes the job).
 */
int vmp_rados_remove(rados_ioctx_t io, const char *name);

/**
 * Open a view of dataset @p name, at its newest committed state.
 *
 * The view owns a libvmpage store and one handle on it, whose pages are
 * charged to @p ram (vmp_rados_fileh()).  It registers a watch on the
 * dataset, to learn of others' commits (vmp_rados_info()).
 *
 * @param dsp   receives the view; the caller owns it (vmp_rados_close()).
 * @param io    the pool's I/O context: it must outlive the view.
 * @param ram   the memory budget of the view's pages.
 * @param flags 0, or VMP_NO_READAHEAD (passed to vmp_fileh_open()).
 * @return 0; -EINVAL (NULL argument, bad name, unknown flag); -ENOENT (no
 *         such dataset); -EUCLEAN (its head object is not one of ours);
 *         -ENOMEM; the errors of vmp_fileh_open() and librados.
 */
int vmp_rados_open(vmp_rados **dsp, rados_ioctx_t io, const char *name,
		   vmp_ram *ram, unsigned flags);

/**
 * The view's handle: map it with vmp_mmap(), commit with vmp_writeout(),
 * abort with vmp_discard().  Owned by the view (do not close it); NULL if
 * @p ds is NULL.  Commits: vmp_writeout() returns -EBUSY on a conflict (see
 * above), -EFBIG if a dirty page lies past the dataset's size, -ENOENT if
 * the dataset was removed, and librados errors; on any error the dirty
 * pages stay dirty and nothing of the commit is visible to others, except
 * after a librados error of the head update itself (-ETIMEDOUT with
 * rados_osd_op_timeout, a lost connection): the cluster may have applied
 * it, so the commit may be visible, whole (its block objects are kept; a
 * retry then conflicts with it, and vmp_discard() shows it).
 */
vmp_fileh *vmp_rados_fileh(vmp_rados *ds);

/**
 * Move the view to the newest committed state, and invalidate the blocks
 * others changed since its snapshot.  A transaction boundary: the view
 * must have no uncommitted changes.  Waits for a commit of the view in
 * progress in another thread.  Other threads reading the view while it
 * syncs may see blocks of both states until it returns (the new map is
 * in place before the changed blocks' pages are dropped): sync where
 * the program's transactions end, not under its readers.
 * @return 0; -EINVAL (NULL); -EBUSY (the view has dirty pages: commit or
 *         discard them first); -ENOENT (the dataset was removed);
 *         librados errors (the view keeps its snapshot).
 */
int vmp_rados_sync(vmp_rados *ds);

/**
 * Grow the dataset to @p nblocks blocks (new blocks read as zeros): a
 * commit of its own, which other views see at their next sync point.  The
 * view itself moves to the newest state, as at vmp_rados_sync().
 * @return 0; -EINVAL (NULL, smaller than now); -EBUSY (dirty pages, as
 *         for vmp_rados_sync()); -ENOENT; librados errors.
 */
int vmp_rados_grow(vmp_rados *ds, uint64_t nblocks);

/** What vmp_rados_info() reports. */
struct vmp_rados_info {
	size_t blksize;       /**< block size (page size of the mappings) */
	uint64_t nblocks;     /**< dataset size at the view's snapshot */
	uint64_t version;     /**< the commit the view reads (0: created) */
	uint64_t announced;   /**< highest commit that a notification
				   announced (0: none) */
	uint64_t commits;     /**< commits of this view */
	uint64_t conflicts;   /**< its commits refused with -EBUSY */
	uint64_t rebases;     /**< its commits retried on top of another
				   view's non-overlapping commit */
	uint64_t syncs;       /**< sync points that moved the view */
	uint64_t invalidated; /**< blocks invalidated at its sync points */
	uint64_t gc_deleted;  /**< superseded block versions it deleted */
};

/**
 * Read the view's figures into @p info.
 * @return 0, -EINVAL (NULL).
 */
int vmp_rados_info(vmp_rados *ds, struct vmp_rados_info *info);

/**
 * Called (from a librados thread) when a notification announces commit
 * @p version of the view's dataset: the program may then sync.  It must not
 * block for long and must not call vmp_rados_* or vmp_* functions on the
 * view (set a flag, write to a pipe).
 */
typedef void (*vmp_rados_notify_fn)(vmp_rados *ds, uint64_t version,
				    void *arg);

/**
 * Set (or with @p fn NULL, clear) the view's notification callback.
 * Notifications are hints: a writer that dies between its commit and its
 * notification sends none, and a view whose watch broke misses some; sync
 * points always read the dataset's head.
 * @return 0, -EINVAL (NULL @p ds).
 */
int vmp_rados_set_notify(vmp_rados *ds, vmp_rados_notify_fn fn, void *arg);

/**
 * Close a view: its uncommitted changes are dropped, its watch removed.
 * Waits (at most about a second) for the notifications its commits sent.
 * @return 0; -EINVAL (NULL); -EBUSY (the handle still has mappings, or a
 *         writeout of it runs: nothing was closed).
 */
int vmp_rados_close(vmp_rados *ds);

#ifdef __cplusplus
}
#endif

#endif /* VMPAGE_RADOS_H */
