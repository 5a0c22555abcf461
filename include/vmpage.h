/* SPDX-License-Identifier: GPL-2.0-or-later */
/**
 * @file vmpage.h
 * libvmpage: map a block store into memory lazily, with a transactional
 * change set.
 *
 * A program describes its data as a *store* of fixed-size blocks (two
 * callbacks, loadblk and storeblk), opens a *handle* on it and maps any range
 * of it.  The mapping is plain memory: the first touch of a page faults, the
 * library's SIGSEGV handler loads the block through loadblk and makes the
 * page visible.  Clean pages are dropped, least recently used first, when the
 * handle's memory budget (a vmp_ram) is used up.  Written pages stay in
 * memory as the handle's change set until vmp_writeout() stores them or
 * vmp_discard() throws them away.
 *
 * Conventions: every function returns 0 or a negative errno unless it says
 * otherwise, and a call that fails has changed nothing.  All functions are
 * thread-safe.
 *
 * @par Caveats
 * - A system call that reads into or writes from a page that is not loaded
 *   (read(fd, mapped, n), write(fd, mapped, n)) fails with EFAULT: the kernel
 *   does not raise SIGSEGV for its own copies.  When the range starts with
 *   loaded pages, the call stops at the first page that is not and returns
 *   a short count instead (write(2) of 16 KiB whose first page is loaded
 *   returns 4096).  Call vmp_prefault() on the range first.  With the
 *   userfaultfd mechanism the same holds for a resident page that has no
 *   page-table entry in this mapping (resident before the mapping was
 *   made, deactivated, or swapped out): vmp_prefault() maps it, but the
 *   kernel may take it out again later.
 * - The library installs one process-wide SIGSEGV handler (GNU libsigsegv),
 *   and one for SIGBUS (overlay mappings whose file was cut short, see
 *   VMP_OVERLAY).  Signals that are not for its mappings go to the action
 *   it displaced when it was (re)installed, as if it were not there: a
 *   handler the program or its runtime had before keeps working, and gets
 *   the SIGBUS of a fault that cannot be served (it runs on the faulting
 *   thread's stack: SA_ONSTACK of the displaced action is not honoured).
 *   A program that installs
 *   its own SIGSEGV handler afterwards (or SIGBUS handler, where a RAM
 *   uses userfaultfd: its faults are SIGBUS) must call vmp_handle_fault()
 *   from it, or call vmp_fault_handler_install() again to re-arm ours.
 *   (A program that uses
 *   libsigsegv itself must chain through vmp_handle_fault: libsigsegv has
 *   room for one handler.)  Sanitizers need
 *   ASAN_OPTIONS=handle_segv=0:handle_sigbus=0:allow_user_segv_handler=1.
 * - fork(): the child does not inherit the mappings (they are MADV_DONTFORK:
 *   touching them in the child is an ordinary SIGSEGV) and every call on an
 *   object created before the fork returns -ECHILD in the child (the calls
 *   that take a mapped address, vmp_munmap and vmp_prefault, -EINVAL: the
 *   child has no mappings).  The child may create objects of its own.  The
 *   parent is unaffected.
 * - A fault that cannot be served (loadblk failed, memory budget used up by
 *   dirty pages, kernel mapping limit) prints one line on stderr and raises
 *   SIGBUS in the faulting thread, like a failed read of a kernel file
 *   mapping.  See vmp_guard() and vmp_set_fault_error_handler() to recover.
 *   A fault inside a store callback that cannot be served makes that
 *   callback fail instead (the load or writeout around it fails cleanly
 *   with its error), unless a vmp_guard set inside the callback catches it.
 *   Leaving a failed fault with siglongjmp is safe from vmp_guard (the
 *   supported way), from the fault error handler and from a SIGBUS handler
 *   of the program's, as long as the fault was not taken inside a store
 *   callback: a jump out of a callback abandons the load or writeout that
 *   called it, and leaves it unfinished for good.
 * - Threads: pthread_cancel() never leaves library state behind.
 *   Cancellation is disabled while a library call runs and while a fault is
 *   served, store callbacks included; a cancel that arrives meanwhile acts
 *   at the thread's next cancellation point after that.  (A store whose
 *   callback may block forever should time out by itself.)
 * - Signal handlers run inside a fault as anywhere else (store callbacks
 *   run with the interrupted code's signal mask) but must not touch
 *   libvmpage mappings, nor call the library, if they may interrupt a
 *   library call or a fault: library calls are not async-signal-safe.
 * - valgrind cannot run code that takes these faults on current kernels; use
 *   AddressSanitizer instead.
 *
 * @par Rules for store authors
 * Store callbacks (vmp_store_ops) run in the thread that needs them:
 * loadblk and loadblks inside the fault handler of the thread that touched
 * the page (or inside vmp_prefault), storeblk and the writeout hooks inside
 * vmp_writeout, and for VMP_WRITEBACK handles also inside the fault handler
 * of a thread that needs room (it may have touched another handle's page):
 * the rules for loadblk below then hold for them too.  There:
 * - Context: no library lock is held; the callback may block, allocate, do
 *   I/O, call the library on other handles and touch mappings (other pages
 *   of its own handle too, see loadblk).  It runs with the signal mask of
 *   the code that faulted (SIGSEGV unblocked), with cancellation disabled,
 *   and errno is restored after it.
 * - Locks: a loadblk must not take a lock that a thread may hold while it
 *   touches mapped memory: the faulting thread may be inside printf (stdio
 *   streams lock), inside the program's own critical section, inside
 *   malloc.  If thread A holds such a lock and faults on a page thread B
 *   loads, B's loadblk waiting for the lock deadlocks both.  Log with
 *   write(2), not stdio, and keep the program's locks out of loadblk.
 * - Stack: loads nest (a loadblk touching a mapping faults again), up to 16
 *   deep.  Each level takes the kernel's signal frame (AT_MINSIGSTKSZ,
 *   about 3.4 KiB with AVX-512) plus about 1 KiB of the library's, plus
 *   the callback's own: size small thread stacks for the deepest chain.
 * - Errors: return 0 or a negative errno.  A fault inside a callback that
 *   cannot be served makes the callback fail with its errno (the callback
 *   is abandoned at that point, as vmp_guard abandons its function: hold no
 *   lock of your own while touching mapped memory in a callback).
 * - Lifetime: the store and its ctx live until vmp_store_free() was called
 *   and the last handle on it closed; then release(ctx) runs, once.
 */
#ifndef VMPAGE_H
#define VMPAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMP_VERSION_MAJOR 0
#define VMP_VERSION_MINOR 3
#define VMP_VERSION_PATCH 0

/** True when the header is at least version @p major.@p minor. */
#define VMP_CHECK_VERSION(major, minor)                                        \
	(VMP_VERSION_MAJOR > (major) ||                                        \
	 (VMP_VERSION_MAJOR == (major) && VMP_VERSION_MINOR >= (minor)))

#if defined(__GNUC__)
#define VMP_NODISCARD __attribute__((warn_unused_result))
#else
#define VMP_NODISCARD
#endif

/** A memory budget shared by handles: byte limit, LRU of clean pages. */
typedef struct vmp_ram vmp_ram;
/** One open view of a store: its pagemap, change set and mappings. */
typedef struct vmp_fileh vmp_fileh;
/** A block store: callbacks, their context and the block size; owned by
 *  the program, referenced by the handles open on it. */
typedef struct vmp_store vmp_store;

/**
 * The store's callbacks (see "Rules for store authors" above).
 * vmp_store_new() copies this table.  No library lock is held while any of
 * them runs, so they may block, allocate, do I/O and even touch other
 * libvmpage mappings.  @p ctx is the ctx given to vmp_store_new(), passed
 * through untouched.
 *
 * New members are only ever added at the end, each time with a new
 * version of vmp_store_new (a program built against an older header gets
 * the one that reads only the members it knows).
 */
typedef struct vmp_store_ops {
	/**
	 * Fill @p buf (blksize bytes) with block @p blk.  Returns 0 or a
	 * negative errno.  Required.
	 *
	 * Runs in the faulting thread, inside the SIGSEGV handler (or inside
	 * vmp_prefault()).  It must not touch the page being loaded, must
	 * not unmap mappings of its own handle, and must not call
	 * vmp_writeout/vmp_discard on it.  It may read other mappings, and
	 * other pages of its own handle, from any number of threads: a fault
	 * that needs a page another thread's read-ahead holds, or that would
	 * otherwise wait for a thread waiting for it, loads the page itself.
	 * A true cycle (loadblk(a) reads b and loadblk(b) reads a) fails that
	 * read with VMP_FAULT_RECURSION, -EDEADLK, in one thread as in
	 * several: the loadblk making it fails with -EDEADLK, unless a
	 * vmp_guard inside it catches the read.  Breaking a cycle of waits may load a block a second time,
	 * concurrently with its first load, the copy that loses being thrown
	 * away: loadblk must tolerate that (it only reads).
	 */
	int (*loadblk)(void *ctx, uint64_t blk, void *buf);
	/**
	 * Store block @p blk from @p buf (blksize bytes).  Returns 0 or a
	 * negative errno.  NULL: the store is read-only (writeout with
	 * VMP_WRITEOUT_STORE fails with -EROFS).  Called from vmp_writeout(),
	 * and for VMP_WRITEBACK handles from faults that need room.
	 * It and the writeout hooks must not call vmp_writeout or vmp_discard
	 * on the same handle (they would wait for the writeout in progress).
	 */
	int (*storeblk)(void *ctx, uint64_t blk, const void *buf);
	/** Optional: called once before the first storeblk of a writeout. */
	int (*writeout_begin)(void *ctx);
	/** Optional: called after the last storeblk of a writeout succeeded. */
	int (*writeout_commit)(void *ctx);
	/** Optional: called when a writeout fails after writeout_begin. */
	void (*writeout_abort)(void *ctx);
	/**
	 * Optional: called once, when the store is gone: vmp_store_free()
	 * was called and the last handle on it closed, whichever came last.
	 * Release @p ctx here.
	 */
	void (*release)(void *ctx);
	/**
	 * Optional: offer the store's bytes as a file, for VMP_OVERLAY handles.
	 * Set *@p fd to a file descriptor readable with mmap(PROT_READ,
	 * MAP_SHARED) and *@p offset to the byte offset of block 0 (a multiple
	 * of blksize).  The fd must stay open while handles are open; the
	 * library does not close it.  Returns 0 or a negative errno.
	 */
	int (*base)(void *ctx, int *fd, off_t *offset);
	/**
	 * Optional: fill @p buf with the @p n consecutive blocks from @p blk
	 * (n * blksize bytes) in one call; used for read-ahead, where one
	 * large read beats n small ones.  0 or a negative errno; on error the
	 * library loads the faulting block alone with loadblk.  Same context
	 * and rules as loadblk.
	 */
	int (*loadblks)(void *ctx, uint64_t blk, uint64_t n, void *buf);
	/**
	 * Optional: called by vmp_discard() after it dropped the change set,
	 * so that a store that keeps a snapshot per transaction can move to
	 * a newer one (an abort is a transaction boundary).  Runs like the
	 * writeout hooks: in the caller's thread, no library lock held,
	 * other writeouts and discards of the handle waiting; it may call
	 * vmp_invalidate() on the handle (not vmp_writeout/vmp_discard).
	 * Returns 0 or a negative errno, which vmp_discard() returns: the
	 * dirty pages are dropped all the same.
	 */
	int (*discarded)(void *ctx);
} vmp_store_ops;


/** Figures of a vmp_ram, see vmp_ram_stats().  Fields are only ever added
 *  at the end, each time with a new version of vmp_ram_stats (programs
 *  built against an older header get the fields they know). */
struct vmp_stats {
	uint64_t limit_bytes;     /**< budget, 0 = unlimited */
	uint64_t resident_bytes;  /**< page memory held now (clean + dirty) */
	uint64_t dirty_bytes;     /**< of which dirty */
	uint64_t faults;          /**< faults served */
	uint64_t loads;           /**< loadblk calls that succeeded */
	uint64_t reclaimed_pages; /**< clean pages dropped to make room */
	uint64_t load_errors;     /**< loadblk calls that failed */
	uint64_t peak_resident_bytes; /**< highest resident_bytes seen */
	uint64_t readahead_pages; /**< pages loaded ahead of a fault */
	uint64_t metadata_bytes;  /**< library memory for pages and maps */
	uint64_t takeovers;       /**< loads a fault took over from another
				       thread's read-ahead, or to break a
				       cycle of waits (see loadblk) */
	uint64_t buffer_bytes;    /**< process-wide, not this RAM's: the
				       buffers loads fill before their bytes
				       go into page memory, and evictions
				       copy through (in use, and up to
				       16 MiB kept idle for reuse), and per
				       thread page lists; outside the limit */
	/* 0.3 */
	uint64_t spilled_bytes;   /**< dirty bytes in spill files now
				       (VMP_SPILL), not in resident_bytes */
	uint64_t spill_writes;    /**< pages written to spill files */
	uint64_t spill_reads;     /**< spilled pages read back on a fault */
	uint64_t writeback_pages; /**< dirty pages stored to make room
				       (VMP_WRITEBACK) */
};

/* --- memory budget ------------------------------------------------------- */

/**
 * Create a memory budget.
 *
 * @param ramp  receives the new RAM; the caller owns it (vmp_ram_free()).
 * @param limit_bytes  the most page memory its handles may hold.  0 takes the
 *        limit from the environment variable VMPAGE_MEMLIMIT ("64m", "2g",
 *        "512k", or plain bytes; the suffix k/m/g/t in either case, may be
 *        followed by "b"), or no limit when the variable is unset or empty.
 *        A limit smaller than one page still allows one page.
 *        The fault mechanism comes from VMPAGE_FAULTS (vmp_ram_set_faults).
 * @return 0, -EINVAL (@p ramp NULL, or VMPAGE_MEMLIMIT or VMPAGE_FAULTS
 *         malformed: a message naming the value goes to stderr), -ENOMEM,
 *         the errors of vmp_ram_set_faults (VMPAGE_FAULTS=uffd where
 *         userfaultfd cannot be used: with a message).
 */
VMP_NODISCARD int vmp_ram_new(vmp_ram **ramp, size_t limit_bytes);

/** Fault mechanisms, see vmp_ram_set_faults(). */
enum vmp_faults {
	/** mprotect and SIGSEGV (GNU libsigsegv): the default.  Each
	 *  isolated resident page splits a kernel mapping into two more, and
	 *  the library keeps 7/8 of vm.max_map_count for itself: at most
	 *  about 28 600 scattered pages (with the default 65530) can be mapped
	 *  at once (the library deactivates clean pages to stay under it: a
	 *  touch faults again) or be dirty (then faults fail,
	 *  VMP_FAULT_MAPLIMIT). */
	VMP_FAULTS_SIGSEGV = 1,
	/** userfaultfd in SIGBUS mode (Linux 6.4): page states live in page
	 *  tables, one kernel mapping per vmp_mmap whatever the pages do;
	 *  faults are SIGBUS, served in the faulting thread like SIGSEGV
	 *  ones.  VMP_OVERLAY handles of such a RAM still use SIGSEGV. */
	VMP_FAULTS_UFFD = 2,
	/** userfaultfd where the kernel offers it, else SIGSEGV. */
	VMP_FAULTS_AUTO = 3,
};

/**
 * Choose how the faults of @p ram's handles are taken (enum vmp_faults).
 * vmp_ram_new() takes the choice from the environment variable
 * VMPAGE_FAULTS ("sigsegv", "uffd" or "auto"; unset or empty: sigsegv);
 * this call overrides it.  Only while no handle is open on @p ram.
 * @return 0; -EINVAL (NULL, unknown value); -EBUSY (handles open);
 *         -ENOSYS (VMP_FAULTS_UFFD: the kernel lacks userfaultfd or its
 *         features, or a seccomp filter forbids it), -EPERM (not allowed
 *         here); -ECHILD.  On error the RAM keeps its mechanism.
 */
int vmp_ram_set_faults(vmp_ram *ram, int faults);

/**
 * The mechanism @p ram's handles use now: VMP_FAULTS_SIGSEGV or
 * VMP_FAULTS_UFFD (what VMP_FAULTS_AUTO picked), or -EINVAL, -ECHILD.
 */
int vmp_ram_faults(vmp_ram *ram);

/**
 * Free a RAM.  @return 0, -EINVAL (NULL), -EBUSY while handles are open on
 * it, -ECHILD in a forked child.
 */
int vmp_ram_free(vmp_ram *ram);

/**
 * Drop at least @p bytes of clean pages, least recently used first, if that
 * many exist (fewer otherwise: that is not an error).  Dirty pages stay.
 * @return 0, -EINVAL (NULL ram), -ECHILD.
 */
int vmp_ram_reclaim(vmp_ram *ram, size_t bytes);

/**
 * Start (@p on nonzero) or stop the RAM's background reclaimer: a thread
 * that, once the RAM holds more than 90% of its limit, drops clean pages
 * (least recently used first) and spills or writes back dirty pages of
 * VMP_SPILL and VMP_WRITEBACK handles until it holds 80%, so that faults
 * rarely have to make room themselves.  Off by default.  The thread blocks
 * every signal but SIGSEGV and SIGBUS; the storeblk and writeout hooks of
 * VMP_WRITEBACK handles run in it too.  An error it meets (a full spill
 * disk, a failing store) is not reported: the fault that then needs the
 * room meets it.  vmp_ram_free() stops it.
 * @return 0 (also when already in that state); -EINVAL (NULL, or @p on for
 *         a RAM without a limit); -EAGAIN (no thread could be made);
 *         -EBUSY (another thread is stopping it); -EDEADLK (stopping it
 *         from a store callback it runs); -ECHILD.
 */
int vmp_ram_set_reclaimer(vmp_ram *ram, int on);

/** Read the RAM's figures into @p st.  @return 0, -EINVAL, -ECHILD. */
int vmp_ram_stats(vmp_ram *ram, struct vmp_stats *st);

/* --- stores -------------------------------------------------------------- */

/**
 * Create a store from callbacks.
 *
 * The store copies *@p ops; @p ctx stays the program's until the store is
 * gone, when ops->release(ctx) is called (if set).  The program owns the
 * store and frees it with vmp_store_free(); each handle opened on it holds
 * a reference of its own, so the store, and ctx, live until both happened:
 * the program freed it and the last handle on it closed.  Any number of
 * handles may be opened on one store, one after another or at once.
 *
 * @param storep  receives the store.
 * @param ops     callbacks; loadblk is required.
 * @param ctx     passed to every callback.
 * @param blksize block size in bytes: a power of two, at least the OS page
 *        size and at most 1 GiB; it is the page size of the handles.
 * @return 0, -EINVAL (NULL @p storep or @p ops, no loadblk, bad
 *         @p blksize), -ENOMEM.  On error ops->release is not called.
 */
VMP_NODISCARD int vmp_store_new(vmp_store **storep, const vmp_store_ops *ops,
				void *ctx, size_t blksize);

/**
 * Free a store: drop the program's reference.  If no handle is open on it
 * the store is gone now (ops->release(ctx) is called before this returns);
 * otherwise when the last of its handles closes.  Do not use @p store
 * after this call (open no more handles on it).
 * @return 0, -EINVAL (NULL), -ECHILD (a store of the parent, in a forked
 *         child: nothing is released there).
 */
int vmp_store_free(vmp_store *store);

/**
 * The built-in file store: block b is bytes [b * blksize, (b + 1) * blksize)
 * of the file @p fd refers to, read with pread and written with pwrite.
 *
 * The store keeps a duplicate of @p fd (close-on-exec) and closes it when
 * the store is gone: the program may close @p fd at once.  A file opened
 * read-only makes a read-only store (no storeblk).  It offers the file as
 * the base of VMP_OVERLAY handles.
 *
 * Sizes: reads past the end of the file give zeros.  A writeout never
 * changes the file's size because of those zeros: the bytes of a block
 * past the end of the file are written only up to its last non-zero byte,
 * so the file grows exactly as far as the program wrote non-zero bytes past
 * its end, and not at all otherwise (the rest reads as zeros anyway).
 *
 * @return 0, -EINVAL (NULL @p storep, @p fd < 0, bad @p blksize, a file
 *         opened O_APPEND), -EBADF (@p fd not open for reading), -EMFILE,
 *         -ENOMEM.
 */
VMP_NODISCARD int vmp_file_store_new(vmp_store **storep, int fd,
				     size_t blksize);

/* --- handles ------------------------------------------------------------- */

/** vmp_fileh_open() flags. */
enum vmp_fileh_flags {
	/** Map clean pages straight from the store's base file (kernel page
	 *  cache, read at kernel speed, not charged to the RAM); only dirty
	 *  pages live in the handle's memory.  Needs ops->base.  Pages past
	 *  the end of the file read as zeros, as the file store reads them,
	 *  also when the file is cut short while mapped (instead of the
	 *  kernel's SIGBUS); such pages keep showing zeros until mapped again
	 *  (vmp_munmap + vmp_mmap) even if the file grows back.  Writing past
	 *  the end is as for the file store (vmp_file_store_new). */
	VMP_OVERLAY = 1u << 0,
	/** Load only the page a fault asks for, never the following ones:
	 *  for random access, where read-ahead would load pages nobody
	 *  reads. */
	VMP_NO_READAHEAD = 1u << 1,
	/** Change sets larger than memory, still transactional.  When a
	 *  fault needs room and only dirty pages are left to drop, the least
	 *  recently dirtied pages of such handles are written to the handle's
	 *  spill file (unlinked, see vmp_fileh_set_spill_dir()) and leave
	 *  memory; touching one reads it back from there, dirty.  Spilled
	 *  pages are dirty pages in every respect: vmp_fileh_dirty_count()
	 *  counts them, vmp_writeout() stores them (reading them from the
	 *  spill file, in page order with the others, inside the same
	 *  writeout_begin/commit), vmp_discard() drops them and frees their
	 *  file space, vmp_invalidate() keeps them.  A spill write that fails
	 *  (ENOSPC, EIO) fails the fault that needed the room
	 *  (VMP_FAULT_EVICT) and loses nothing: the pages stay in memory.
	 *  Not with VMP_OVERLAY or VMP_WRITEBACK. */
	VMP_SPILL = 1u << 2,
	/** Kernel-like read-write mapping, not transactional.  When a fault
	 *  needs room and only dirty pages are left to drop, the least
	 *  recently dirtied pages of such handles are stored with storeblk
	 *  (sorted by block, bracketed by writeout_begin and writeout_commit
	 *  as in vmp_writeout) and dropped, clean.  So vmp_discard() drops
	 *  only the changes not written back yet, and the store may hold
	 *  part of a change set before vmp_writeout(); a page written while
	 *  it is being written back may reach the store torn (it stays dirty
	 *  with its new bytes, stored whole next time), as with kernel
	 *  MAP_SHARED.  A store that fails
	 *  fails the fault that needed the room (VMP_FAULT_EVICT); its pages
	 *  stay dirty.  Needs ops->storeblk.  Not with VMP_OVERLAY or
	 *  VMP_SPILL. */
	VMP_WRITEBACK = 1u << 3,
};

/**
 * Open a handle (a change set) on a store.
 *
 * The handle holds a reference to @p store until it closes (see
 * vmp_store_free()).  Several handles may be open on one store; they do
 * not see each other's uncommitted writes.
 *
 * Its pages live in a memfd, a file descriptor of the process's (and a
 * VMP_SPILL handle holds one more, its spill file).
 * With the SIGSEGV mechanism, threads
 * that load runs of 64 KiB or more into one handle at the same time load
 * into memfds of their own, so a handle may hold up to 7 more; where the
 * process has none left, it goes on with those it has.
 *
 * @param fhp   receives the handle.
 * @param ram   the budget its pages are charged to.
 * @param store the store, from vmp_store_new() or vmp_file_store_new().
 * @param flags 0, or VMP_OVERLAY and/or VMP_NO_READAHEAD; or VMP_SPILL or
 *        VMP_WRITEBACK (each alone, or with VMP_NO_READAHEAD).
 * @return 0, -EINVAL (NULL argument, unknown flag or a combination not
 *         allowed, VMP_OVERLAY without ops->base, VMP_WRITEBACK without
 *         ops->storeblk), the error of ops->base, VMP_SPILL: the error
 *         of creating the spill file in $TMPDIR (or /tmp), -ENOMEM,
 *         -EMFILE, -ECHILD (@p ram or @p store from before a fork()).
 */
VMP_NODISCARD int vmp_fileh_open(vmp_fileh **fhp, vmp_ram *ram,
				 vmp_store *store, unsigned flags);

/**
 * Close a handle.  Its uncommitted changes (dirty pages) are dropped: call
 * vmp_writeout() first to keep them.  It drops its reference to the store
 * (ops->release runs now if the store was freed and this was its last
 * handle).
 * @return 0, -EINVAL (NULL), -EBUSY while it has mappings or a writeout of
 *         it runs in another thread, -ENOMEM, -ECHILD.
 */
int vmp_fileh_close(vmp_fileh *fh);

/**
 * Put a VMP_SPILL handle's spill file in directory @p dir instead of
 * $TMPDIR (or /tmp when TMPDIR is unset): a file system with room for the
 * largest change set expected, ideally not tmpfs (whose pages are memory
 * too).  The file is created now, unlinked (O_TMPFILE where the file
 * system has it), close-on-exec, mode 0600; the one it replaces is
 * closed.  Only while nothing of the handle is spilled.
 * @return 0, -EINVAL (NULL, not a VMP_SPILL handle), -EBUSY (pages are
 *         spilled, or a writeout runs), the error of creating the file
 *         (-ENOENT, -EACCES, -ENOTDIR, -EROFS, ...), -ECHILD.
 */
int vmp_fileh_set_spill_dir(vmp_fileh *fh, const char *dir);

/** Number of dirty pages of @p fh, in *@p npages.
 *  @return 0, -EINVAL, -ECHILD. */
int vmp_fileh_dirty_count(const vmp_fileh *fh, uint64_t *npages);

/* --- mappings ------------------------------------------------------------ */

/**
 * Map pages [@p pgoffset, @p pgoffset + @p pglen) of the store.
 *
 * Nothing is loaded now: each page is loaded on first touch.  Several
 * mappings of one handle, overlapping or not, show the same bytes.
 *
 * @param prot  PROT_READ (writes crash as on any read-only memory) or
 *              PROT_READ | PROT_WRITE (the first write to a page makes it
 *              dirty).
 * @param addrp receives the address; pass it to vmp_munmap().
 * @return 0, -EINVAL (NULL, pglen 0, other prot bits, range overflows the
 *         64-bit byte offset), -ENOMEM (address space), -ECHILD.
 */
VMP_NODISCARD int vmp_mmap(vmp_fileh *fh, uint64_t pgoffset, uint64_t pglen,
			   int prot, void **addrp);

/**
 * Unmap a mapping.  The handle keeps its pages and its changes.  Waits for
 * faults in progress on the mapping to finish (cancellation is disabled
 * meanwhile).
 * @return 0, -EINVAL (@p addr is not the start of a libvmpage mapping),
 *         -EDEADLK (called from a loadblk serving a fault on this mapping).
 */
int vmp_munmap(void *addr);

/**
 * Load the pages covering [@p addr, @p addr + @p len) now, and with
 * @p write make them dirty, as touching them would.  Use it before passing
 * mapped memory to a system call (read(2) into an unloaded page fails with
 * EFAULT).  Under a memory limit, pages prefaulted early may be reclaimed
 * again before use if the range exceeds the limit.  Unlike other calls, a
 * prefault that fails midway leaves the pages before the failing one loaded
 * (and with @p write, dirty): as many as touching them would have.  No fault
 * error handler or guard is involved: the error is returned.
 * @return 0, -EINVAL (range not inside one mapping, write on a read-only
 *         mapping), the fault's error (loadblk's errno, -ENOMEM; -ELOOP
 *         or -EDEADLK called from a loadblk nested too deep or loading a
 *         page of the range).
 */
int vmp_prefault(const void *addr, size_t len, int write);

/* --- change set ---------------------------------------------------------- */

/** vmp_writeout() flags. */
enum {
	/** call storeblk for every dirty page */
	VMP_WRITEOUT_STORE = 1,
	/** mark dirty pages clean (and write-protect them again) */
	VMP_WRITEOUT_MARKSTORED = 2,
};

/**
 * Write the change set out, and/or mark it stored.  STORE|MARKSTORED is the
 * normal commit.
 *
 * STORE calls storeblk once per dirty page, in page order, bracketed by
 * writeout_begin and writeout_commit (writeout_abort on failure).  Each page
 * is write-protected before its bytes are stored: a write from another
 * thread during the writeout dirties it again, so it stays dirty after
 * MARKSTORED and no write is lost.  Cost is proportional to the dirty pages.
 *
 * @return 0; -EINVAL (NULL, no flag or unknown flags); -EROFS (STORE on a store
 *         without storeblk); the error of writeout_begin, storeblk or
 *         writeout_commit, in which case every page that was dirty is still
 *         dirty with its bytes and the call can be repeated; -ENOMEM (no
 *         memory, or the kernel refused to write-protect pages: those stay
 *         dirty); -ECHILD.  With VMP_OVERLAY, a failure to map the file back
 *         after a successful STORE is returned too: the file has the bytes,
 *         pages not yet mapped back stay dirty.
 */
int vmp_writeout(vmp_fileh *fh, unsigned flags);

/**
 * Throw the change set away: every dirty page is dropped, and its next
 * access loads the store's bytes.  Clean pages stay.  Then the store's
 * discarded hook, if set, runs.
 * @return 0, -EINVAL, -ECHILD, -ENOMEM (no memory, or the kernel refused a
 *         mapping change near vm.max_map_count: the pages dropped so far
 *         stay dropped, the rest stay dirty; call again); the error of
 *         ops->discarded (the change set is dropped all the same).
 */
int vmp_discard(vmp_fileh *fh);

/**
 * The store changed underneath: drop the clean pages in [@p pgoffset,
 * @p pgoffset + @p pglen) so that the next access loads them again.  A page
 * being loaded now is not installed; its next access loads again.  Dirty
 * pages in the range are kept (they are the user's changes; vmp_discard()
 * drops them).  In VMP_OVERLAY handles clean pages are the kernel's page
 * cache, which is always current, so only loads in progress are affected.
 * @return 0, -EINVAL (NULL, pglen 0, range overflows), -ECHILD, -ENOMEM (as
 *         for vmp_discard).
 */
int vmp_invalidate(vmp_fileh *fh, uint64_t pgoffset, uint64_t pglen);

/* --- fault errors -------------------------------------------------------- */

/** What failed in a fault that could not be served. */
enum vmp_fault_what {
	VMP_FAULT_LOAD = 1,    /**< loadblk returned an error */
	VMP_FAULT_MEMLIMIT,    /**< the RAM limit is used up by pages that
				    cannot be dropped: dirty ones, and ones
				    other threads are loading */
	VMP_FAULT_MAPLIMIT,    /**< the kernel refused a mapping (VMA limit;
				    with userfaultfd, a failed ioctl) */
	VMP_FAULT_RECURSION,   /**< loadblk touched the page it is loading
				    (-EDEADLK: also a cycle of loads), or
				    loads nested more than 16 deep (-ELOOP) */
	VMP_FAULT_EVICT,       /**< dirty pages could not leave memory to
				    make room: the spill file's error
				    (VMP_SPILL: -ENOSPC, -EIO), or
				    storeblk's or a writeout hook's
				    (VMP_WRITEBACK); also a spilled page
				    that could not be read back */
};

/** Describes a fault that could not be served. */
struct vmp_fault_error {
	void *addr;               /**< the faulting address */
	vmp_fileh *fh;            /**< the handle */
	uint64_t blk;             /**< the block (page index in the store) */
	int err;                  /**< negative errno */
	enum vmp_fault_what what; /**< what failed */
};

/** Answers of a vmp_fault_error_fn. */
enum {
	VMP_FAULT_DEFAULT = 0, /**< go on: vmp_guard, else message + SIGBUS */
	VMP_FAULT_RETRY,       /**< try the load again now */
	VMP_FAULT_ZERO,        /**< map a page of zeros, clean: mapped
				    read-only like any clean page, a write
				    dirties it (and a writeout stores it).
				    Overlay handles treat it as DEFAULT: their
				    pages exist only to be written */
};

/**
 * Called in the faulting thread, inside the signal handler, when a fault on
 * the handle cannot be served; no library lock is held, the mapping is not
 * pinned, and the thread's cancellation state is its own: it may leave
 * with siglongjmp (unless the fault happened inside a store callback, see
 * the caveats).
 */
typedef int (*vmp_fault_error_fn)(const struct vmp_fault_error *e, void *arg);

/**
 * Set (or with @p fn NULL, clear) the handle's fault error handler.
 * @return 0, -EINVAL (NULL fh), -ECHILD.
 */
int vmp_set_fault_error_handler(vmp_fileh *fh, vmp_fault_error_fn fn,
				void *arg);

/**
 * Run fn(arg).  If a fault inside it cannot be served (and the handle's
 * error handler answered VMP_FAULT_DEFAULT), fn is abandoned with siglongjmp
 * and vmp_guard returns that negative errno; otherwise it returns fn's
 * return value.  Guards nest and are per thread.  fn must be written so that
 * abandoning it midway is safe (no locks of its own held across accesses to
 * mapped memory).  A guard never abandons a library call: it catches the
 * faults of its own nesting level only.  A fault that fails inside a store
 * callback (a loadblk reading another mapping, a storeblk reading a
 * mapping during vmp_writeout) is caught by a guard set inside that
 * callback, or else makes the callback fail with its errno: the load or
 * the writeout around it then fails cleanly, and a guard around that sees
 * its error (vmp_writeout returns it).  fn must end by returning or by
 * such a failed fault: a siglongjmp of the program's own out of fn (from
 * the fault error handler, say) leaves the guard set, and a later failed
 * fault would jump into its dead frame.
 * @return fn's value, the fault's -errno, -EINVAL (NULL).
 */
int vmp_guard(int (*fn)(void *arg), void *arg);

/**
 * Serve a fault at @p addr, for programs with their own SIGSEGV handler
 * (and SIGBUS handler, with the userfaultfd mechanism, whose faults are
 * SIGBUS): call it first from that handler.
 * @return 1: the fault was ours and is served, return from the handler;
 *         0: @p addr is not in a libvmpage mapping, nothing was done;
 *         negative errno: ours, but it could not be served (the handle's
 *         error handler and vmp_guard have had their chance; no message
 *         was printed and no SIGBUS raised).  Inside a store callback such
 *         a fault makes the callback fail instead (see vmp_guard): it does
 *         not return.
 */
int vmp_handle_fault(void *addr);

/**
 * (Re)install the library's SIGSEGV and SIGBUS handlers.  vmp_ram_new,
 * vmp_fileh_open and vmp_mmap install them too, except over a handler that
 * a program put in place of the library's since (that program chains to
 * vmp_handle_fault(), and keeps its handler).  Call this after something
 * else replaced the actions without chaining (a test framework, say).  The
 * actions replaced get the signals that are not the library's.
 * @return 0, -ENOSYS (libsigsegv cannot catch faults here).
 */
int vmp_fault_handler_install(void);

/* --- misc ---------------------------------------------------------------- */

/** The version of the library loaded at run time, "major.minor.patch". */
const char *vmp_version(void);

#ifdef __cplusplus
}
#endif

#endif /* VMPAGE_H */
