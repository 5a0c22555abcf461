/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz-api.c: a libFuzzer harness that reads its input as a sequence of
 * libvmpage calls with their arguments (issue 6), and checks every result
 * against a plain model.  Build and run it with .ci/fuzz.
 *
 * Objects (fixed slots, all created and destroyed within one input):
 *   2 RAMs      limits: none, below a page, a few pages, from VMPAGE_MEMLIMIT
 *   5 stores    S0 in-memory, read-write, loadblks, begin/commit hooks (not
 *                  transactional: stored blocks stay stored if commit fails)
 *               S1 in-memory, read-only (storeblk NULL)
 *               S2 in-memory, transactional begin/commit/abort
 *               S3 the built-in file store over a memfd (O_RDWR), wrapped
 *                  so that every call is seen and can be made to fail;
 *                  offers ops->base, so VMP_OVERLAY handles work on it
 *               S4 the built-in file store over the same memfd opened
 *                  O_RDONLY (read-only, base)
 *               S5 in-memory, read-write, loadblks; its blocks that were never
 *                  stored are read, inside loadblk and under its own
 *                  vmp_guard, from an internal read-only mapping (S6, on its
 *                  own RAM of 3 pages): nested faults
 *               The file has no end (2^63 bytes, sparse) unless the first
 *               input byte says it ends after 16 blocks; then base pages
 *               mapped past its end may show zeros even after it grew.
 *               Every store can be told by the input to fail its n-th next
 *               loadblk/loadblks, storeblk, writeout_begin, writeout_commit
 *               or base call with a chosen errno.
 *               Each is a store object of the harness (vmp_store_new; S3 and
 *               S4 each wrap a vmp_file_store_new object) that the input may
 *               free at any time, handles open or not; the next open on the
 *               slot makes a new object once the old one is gone.
 *   3 handles   on any store, normal, VMP_SPILL or VMP_OVERLAY
 *   4 mappings  any page range (huge and overflowing ones included), any prot
 *
 * The model, per store: its bytes (the stores themselves hold them; every
 * storeblk is checked against the model before it counts).  Per handle and
 * page: dirty or clean, and the bytes it may show: a dirty page shows one of
 * its candidate contents (more than one when the base of a write was
 * ambiguous, see below); a clean page shows the store's bytes, or one of its
 * candidates, which are bytes that may still be resident: a zero page
 * mapped by VMP_FAULT_ZERO, a page marked stored without being stored, an
 * older version of the store's bytes (the store changed underneath and the
 * page was not invalidated).  Reclaim is invisible to the model, which is
 * why a clean page may show either.  Every read narrows the candidates to
 * those it matches, and every storeblk tells which one a dirty page holds.
 *
 * Checked: every return code against the documented ones (an injected
 * errno, -ENOMEM only under a memory limit, -EINVAL exactly where the
 * header says), every byte read, storeblk order and bytes (page order, each
 * dirty page once), the hooks' protocol, ops->release exactly once per store
 * object, when both the program freed it and its last handle closed,
 * vmp_fileh_dirty_count and the RAM's dirty bytes after every operation,
 * resident bytes within the limit, and zero resident bytes and no fd leak
 * once everything is closed.  A mismatch prints the recent operations and
 * calls abort(), which libFuzzer reports with the input.
 *
 * Faults: every access to mapped memory runs under vmp_guard(), so a fault
 * the library cannot serve returns its errno.  The first input byte chooses
 * whether libsigsegv's handler (vmp_fault_handler_install) serves faults, or
 * a handler of the harness that chains to vmp_handle_fault() (with or
 * without SA_NODEFER); the chained handler turns a fault outside the
 * mappings into abort(), so that libFuzzer saves the input.  Run with
 * -handle_segv=0; ASan's options are set below (handle_segv=0).
 *
 * FUZZ_VMP_TRACE=1 in the environment prints every operation on stderr.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmpage.h"
/* S3 and S4 call the callbacks of a built-in file store, whose store object
 * is opaque to programs; the harness is built with the library's sources
 * (.ci/fuzz), so it may look inside. */
#include "../../src/internal.h"

/* Sanitizer defaults, so that the binary runs right without environment. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "handle_segv=0:allow_user_segv_handler=1:detect_leaks=1";
}
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NRAM 2
#define NFH 3
#define NMAP 4
#define NSTORE 7 /* S6 is internal: S5 reads it, handles cannot use it */
#define NOPEN 6
#define NBACK 5
#define NESTW 8 /* pages of the internal mapping that S5 reads */
#define MAXC 6       /* candidates per page */
#define CLEAN_MAXC 4 /* a clean page gets invalidated before it has more */
#define MAXENT 256   /* model pages (handle, block) */
#define MAXOPS 256   /* operations per input */
#define MAXBENT 1024 /* changed blocks per in-memory store */
#define NINIT 16     /* the file store's first blocks hold data, the rest 0 */
#define MAGIC 0x5eed
#define FILE_MAX 0x7ffffffffffff000ULL /* the file store's size: no EOF */
#define NLOG (MAXENT + 8)
#define NHLOG 64

static size_t ps;    /* OS page size */
static size_t maxbs; /* largest block size used */
static bool trace_on;

/* --- diagnostics ---------------------------------------------------------- */

static char ring[32][200];
static unsigned nops;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	char *s = ring[nops % 32];
	va_list ap;
	int n = snprintf(s, sizeof(ring[0]), "op %u: ", nops);

	va_start(ap, fmt);
	vsnprintf(s + n, sizeof(ring[0]) - (size_t)n, fmt, ap);
	va_end(ap);
	if (trace_on)
		fprintf(stderr, "fuzz-api: %s\n", s);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	unsigned first = nops >= 31 ? nops - 31 : 0;

	fprintf(stderr, "\nfuzz-api: MISMATCH: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nfuzz-api: the last operations:\n");
	for (unsigned i = first; i <= nops; i++)
		fprintf(stderr, "  %s\n", ring[i % 32]);
	abort();
}

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			fail(__VA_ARGS__);                                     \
	} while (0)
#define CHECK_RC(rc, want, what)                                               \
	do {                                                                   \
		int rc_ = (rc), want_ = (want);                                \
		CHECK(rc_ == want_, "%s returned %d (%s), expected %d (%s)",   \
		      what, rc_, strerrorname_np(-rc_) ? strerrorname_np(-rc_) \
							: "?",                 \
		      want_, strerrorname_np(-want_) ? strerrorname_np(-want_) \
						     : "?");                   \
	} while (0)

static const char *ename(int rc)
{
	const char *s = rc < 0 ? strerrorname_np(-rc) : NULL;

	return s ? s : rc == 0 ? "0" : "?";
}

/* --- input ---------------------------------------------------------------- */

static const uint8_t *in_p;
static size_t in_n, in_i;

static uint8_t u8(void)
{
	return in_i < in_n ? in_p[in_i++] : 0;
}

static uint16_t u16(void)
{
	uint16_t v = u8();
	return (uint16_t)(v | (uint16_t)u8() << 8);
}

static uint32_t u32(void)
{
	uint32_t v = u16();
	return v | (uint32_t)u16() << 16;
}

static uint64_t u64(void)
{
	uint64_t v = u32();
	return v | (uint64_t)u32() << 32;
}

static const uint64_t special[] = {
	0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 255, 256, 4095, 4096, 65535,
	(1ull << 20), (1ull << 31), (1ull << 32), (1ull << 40) - 1, (1ull << 40),
	(1ull << 50) - 2, (1ull << 50) - 1, (1ull << 50), (1ull << 51) - 2,
	(1ull << 51) - 1, (1ull << 51), (1ull << 52) - 1, (1ull << 52),
	(uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX - 1, UINT64_MAX,
	UINT64_MAX / 4096, UINT64_MAX / 8192, (1ull << 27), (1ull << 30),
};
#define NSPECIAL (sizeof(special) / sizeof(special[0]))

/* A page offset: mostly small, sometimes huge or at a boundary. */
static uint64_t sel_pgoff(void)
{
	uint8_t s = u8();

	switch (s >> 5) {
	case 4: return u8();
	case 5: return special[u8() % NSPECIAL];
	case 6: return special[u8() % NSPECIAL] - (s & 7);
	case 7: return u64();
	default: return s & 31;
	}
}

/* A page count: mostly 1..8, sometimes huge, 0 or overflowing. */
static uint64_t sel_pglen(void)
{
	uint8_t s = u8();

	switch (s >> 5) {
	case 5: return u8();
	case 6: return special[u8() % NSPECIAL] - (s & 1);
	case 7: return (s & 16) ? u64() : special[u8() % NSPECIAL];
	default: return 1 + (s & 7);
	}
}

static const int errtab[] = { -EIO, -ENOMEM, -EAGAIN, -ENOSPC,
			      -EINTR, -ENXIO, 1, -EDQUOT };
#define NERR (sizeof(errtab) / sizeof(errtab[0]))

static int norm_err(int e)
{
	return e > 0 ? -EIO : e;
}

/* --- content -------------------------------------------------------------- */

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void pattern(uint8_t *buf, size_t len, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t x = splitmix(a * 0x100000001b3ull ^ splitmix(b) ^ (c << 17));

	for (size_t i = 0; i < len; i += 8) {
		uint64_t z = splitmix(x + i);
		memcpy(buf + i, &z, 8);
	}
}

static uint8_t zeros[1 << 16];

/* --- stores --------------------------------------------------------------- */

struct bent {
	uint64_t blk;
	uint8_t *data;
};

/* What a store holds: S0..S2 have one each, S3 and S4 share one file. */
struct backing {
	size_t bs;
	int fd; /* memfd for the file stores, else -1 */
	struct bent *tab;
	size_t n;
	uint32_t version;
};

struct inj {
	uint32_t at, times; /* fail calls at .. at+times-1 (times 0: all) */
	int err;
	uint64_t calls;
};

struct store {
	const char *name;
	int back;
	bool file, ro, txn, hooks, base, nested;
	vmp_store_ops ops;
	vmp_store *st;   /* the program's store object; NULL once freed */
	int fd;
	vmp_store *inner; /* the built-in file store (S3, S4), while st's
			     object lives */
	int nopen;        /* handles open on st's object (or the freed one) */
	unsigned created, releases; /* store objects made, released */
	struct inj load, store, begin, commit, basei;
	uint32_t loadmask; /* errtab indices injected into loads */
	bool in_txn;
};

static struct backing backs[NBACK];
static struct store stores[NSTORE];

static void back_get(const struct backing *b, uint64_t blk, uint8_t *buf)
{
	if (b->fd >= 0) {
		size_t done = 0;
		while (done < b->bs) {
			ssize_t n = pread(b->fd, buf + done, b->bs - done,
					  (off_t)(blk * b->bs + done));
			if (n < 0 && errno == EINTR)
				continue;
			CHECK(n >= 0, "pread of the file store: %s", strerror(errno));
			if (n == 0) {
				memset(buf + done, 0, b->bs - done);
				break;
			}
			done += (size_t)n;
		}
		return;
	}
	for (size_t i = 0; i < b->n; i++)
		if (b->tab[i].blk == blk) {
			memcpy(buf, b->tab[i].data, b->bs);
			return;
		}
	pattern(buf, b->bs, (uint64_t)(b - backs), b == &backs[4] ? blk % NESTW : blk, 0);
}

/* In-memory backings only (the file is written by the file store). */
static void back_set(struct backing *b, uint64_t blk, const uint8_t *buf)
{
	size_t i;

	if (b->fd >= 0) {
		CHECK(pwrite(b->fd, buf, b->bs, (off_t)(blk * b->bs)) == (ssize_t)b->bs,
		      "pwrite of the file store: %s", strerror(errno));
		return;
	}
	for (i = 0; i < b->n; i++)
		if (b->tab[i].blk == blk)
			break;
	if (i == b->n) {
		CHECK(b->n < MAXBENT, "harness: backing table full");
		b->tab[i].blk = blk;
		b->tab[i].data = malloc(b->bs);
		CHECK(b->tab[i].data, "harness: out of memory");
		b->n++;
	}
	memcpy(b->tab[i].data, buf, b->bs);
}

static int inj_check(struct inj *j)
{
	uint64_t c;

	if (!j->err)
		return 0;
	c = j->calls++;
	if (c >= j->at && (j->times == 0 || c < (uint64_t)j->at + j->times))
		return j->err;
	return 0;
}

/* The writeout in progress: what the store was asked to do. */
struct slog {
	uint64_t blk;
	int rc;
	uint8_t *oldb, *newb;
};
static struct slog slog[NLOG];
static size_t nslog;
static bool in_writeout;
static int writer_store = -1;
static int wo_first_err;
static unsigned wo_begins, wo_commits, wo_aborts;
static bool wo_committed;

static void wo_err(int e)
{
	if (!wo_first_err)
		wo_first_err = norm_err(e);
}

/* The internal objects behind S5. */
static vmp_ram *iram;
static vmp_fileh *ifh;
static uint8_t *imap;

/* Is @a inside the internal mapping (not for the operations to touch)? */
static bool internal_addr(const void *a)
{
	return (uintptr_t)a >= (uintptr_t)imap &&
	       (uintptr_t)a - (uintptr_t)imap < NESTW * backs[4].bs;
}

static int acc_fn(void *arg);
struct acc {
	uint8_t *addr;
	uint8_t *buf;
	size_t len;
	bool write;
	int nest;
};

/* S5: a block never stored is read from the internal mapping, with a
 * guard of this loadblk's own (the outer access's guard cannot catch it). */
static int nested_get(struct store *s, uint64_t blk, uint8_t *buf)
{
	struct backing *b = &backs[s->back];
	struct acc a = { imap + (blk % NESTW) * b->bs, buf, b->bs, false, 0 };
	int rc;

	for (size_t i = 0; i < b->n; i++)
		if (b->tab[i].blk == blk) {
			memcpy(buf, b->tab[i].data, b->bs);
			return 0;
		}
	rc = vmp_guard(acc_fn, &a);
	if (rc == MAGIC)
		return 0;
	CHECK(rc < 0, "nested vmp_guard returned %d", rc);
	return rc;
}

static int st_loadblk(void *ctx, uint64_t blk, void *buf)
{
	struct store *s = ctx;
	int e = inj_check(&s->load);

	if (e)
		return e;
	if (s->file)
		return s->inner->ops.loadblk(s->inner->ctx, blk, buf);
	if (s->nested)
		return nested_get(s, blk, buf);
	if (s == &stores[6]) /* internal: never changes */
		pattern(buf, backs[4].bs, 4, blk % NESTW, 0);
	else
		back_get(&backs[s->back], blk, buf);
	return 0;
}

static int st_loadblks(void *ctx, uint64_t blk, uint64_t n, void *buf)
{
	struct store *s = ctx;
	size_t bs = backs[s->back].bs;
	int e = inj_check(&s->load);

	CHECK(n >= 2 && n <= 4096, "loadblks of %llu blocks", (unsigned long long)n);
	if (e)
		return e;
	if (s->file)
		return s->inner->ops.loadblks(s->inner->ctx, blk, n, buf);
	for (uint64_t i = 0; i < n; i++) {
		if (s->nested) {
			if ((e = nested_get(s, blk + i, (uint8_t *)buf + i * bs)))
				return e;
		} else {
			back_get(&backs[s->back], blk + i, (uint8_t *)buf + i * bs);
		}
	}
	return 0;
}

static int st_storeblk(void *ctx, uint64_t blk, const void *buf)
{
	struct store *s = ctx;
	struct backing *b = &backs[s->back];
	struct slog *l;
	int e;

	CHECK(in_writeout && writer_store == s - stores,
	      "%s: storeblk(%llu) outside a writeout of its handle", s->name,
	      (unsigned long long)blk);
	CHECK(!s->hooks || s->in_txn, "%s: storeblk(%llu) without writeout_begin",
	      s->name, (unsigned long long)blk);
	CHECK(nslog < NLOG, "%s: too many storeblk calls", s->name);
	l = &slog[nslog++];
	l->blk = blk;
	back_get(b, blk, l->oldb);
	memcpy(l->newb, buf, b->bs);
	e = inj_check(&s->store);
	if (!e && s->file)
		e = s->inner->ops.storeblk(s->inner->ctx, blk, buf);
	else if (!e && !s->txn)
		back_set(b, blk, buf);
	l->rc = e;
	if (e)
		wo_err(e);
	return e;
}

static int st_begin(void *ctx)
{
	struct store *s = ctx;
	int e;

	CHECK(in_writeout && writer_store == s - stores && !s->in_txn && !wo_begins,
	      "%s: writeout_begin out of place", s->name);
	wo_begins++;
	CHECK(nslog == 0, "%s: writeout_begin after storeblk", s->name);
	e = inj_check(&s->begin);
	if (e)
		wo_err(e);
	else
		s->in_txn = true;
	return e;
}

static int st_commit(void *ctx)
{
	struct store *s = ctx;
	int e;

	CHECK(in_writeout && writer_store == s - stores && s->in_txn && !wo_commits,
	      "%s: writeout_commit out of place", s->name);
	wo_commits++;
	for (size_t i = 0; i < nslog; i++)
		CHECK(slog[i].rc == 0, "%s: writeout_commit after a failed storeblk",
		      s->name);
	e = inj_check(&s->commit);
	if (e) {
		wo_err(e);
		return e;
	}
	if (s->txn)
		for (size_t i = 0; i < nslog; i++)
			back_set(&backs[s->back], slog[i].blk, slog[i].newb);
	wo_committed = true;
	s->in_txn = false;
	return 0;
}

static void st_abort(void *ctx)
{
	struct store *s = ctx;

	CHECK(in_writeout && writer_store == s - stores && s->in_txn && !wo_aborts,
	      "%s: writeout_abort out of place (begun: %d)", s->name, s->in_txn);
	wo_aborts++;
	s->in_txn = false;
}

static void st_release(void *ctx)
{
	struct store *s = ctx;

	/* (whether it is released at the right call, the callers check) */
	s->releases++;
	CHECK(s->releases <= s->created, "%s: %u releases of %u store objects",
	      s->name, s->releases, s->created);
	CHECK(!s->st, "%s: released while the program holds it", s->name);
	if (s->inner) {
		/* no handle ever held it: it goes now */
		CHECK_RC(vmp_store_free(s->inner), 0, "vmp_store_free (file store)");
		s->inner = NULL;
	}
}

static unsigned base_calls;
static int base_rc;

static int st_base(void *ctx, int *fd, off_t *off)
{
	struct store *s = ctx;
	int e = inj_check(&s->basei);

	base_calls++;
	base_rc = e ? e : s->inner->ops.base(s->inner->ctx, fd, off);
	return base_rc;
}

/* A new store object for slot @s, whose last one is gone; for S3/S4 over a
 * new built-in file store. */
static void store_new(struct store *s)
{
	size_t bs = backs[s->back].bs;
	int rc;

	CHECK(!s->st && !s->nopen && s->releases == s->created,
	      "%s: a new store object while the last one lives", s->name);
	if (s->file) {
		rc = vmp_file_store_new(&s->inner, s->fd, bs);
		CHECK_RC(rc, 0, "vmp_file_store_new");
		CHECK(s->inner->ops.loadblk && s->inner->ops.loadblks &&
			      s->inner->ops.base && s->inner->ops.release &&
			      !s->inner->ops.storeblk == s->ro,
		      "vmp_file_store_new: unexpected ops for a %s fd",
		      s->ro ? "read-only" : "read-write");
	}
	rc = vmp_store_new(&s->st, &s->ops, s, bs);
	CHECK_RC(rc, 0, "vmp_store_new");
	s->created++;
}

/* --- the library's objects and the model ---------------------------------- */

struct rslot {
	vmp_ram *ram;
	bool live;
	uint64_t limit;
};

enum { H_NONE, H_DEFAULT, H_RETRY, H_ZERO, H_RETRY_ZERO, H_NMODES };

struct hslot {
	vmp_fileh *fh;
	bool live;
	int store, ram;
	bool overlay;
	size_t bs;
	int mode;
	uint64_t ndirty;
};

struct mslot {
	bool live;
	uint8_t *addr;
	uint64_t pgoff, npages;
	int prot, fh;
};

/* A model page: handle @h, block @blk. */
struct ment {
	int h;
	uint64_t blk;
	bool dirty;
	int nc;
	uint8_t *c[MAXC];
};

static struct rslot rs[NRAM];
static struct hslot hs[NFH];
static struct mslot ms[NMAP];
static struct ment ents[MAXENT];
static size_t nents;
static bool chain_mode, chain_nodefer;
static bool file_eof; /* the file store's file ends after NINIT blocks */
static uint8_t *last_gone; /* the start of the last mapping unmapped */

static struct backing *hback(int h)
{
	return &backs[stores[hs[h].store].back];
}

static struct ment *mfind(int h, uint64_t blk, bool create)
{
	for (size_t i = 0; i < nents; i++)
		if (ents[i].h == h && ents[i].blk == blk)
			return &ents[i];
	if (!create || nents == MAXENT)
		return NULL;
	memset(&ents[nents], 0, sizeof(ents[0]));
	ents[nents].h = h;
	ents[nents].blk = blk;
	return &ents[nents++];
}

static void cand_clear(struct ment *e)
{
	for (int i = 0; i < e->nc; i++)
		free(e->c[i]);
	e->nc = 0;
}

static void cand_add(struct ment *e, const uint8_t *bytes, size_t bs)
{
	for (int i = 0; i < e->nc; i++)
		if (!memcmp(e->c[i], bytes, bs))
			return;
	CHECK(e->nc < MAXC, "harness: too many candidates");
	e->c[e->nc] = malloc(bs);
	CHECK(e->c[e->nc], "harness: out of memory");
	memcpy(e->c[e->nc++], bytes, bs);
}

/* Keep the candidates whose bytes [off, off+len) are @got. */
static void cand_keep(struct ment *e, size_t off, const uint8_t *got, size_t len)
{
	int k = 0;

	for (int i = 0; i < e->nc; i++) {
		if (!memcmp(e->c[i] + off, got, len))
			e->c[k++] = e->c[i];
		else
			free(e->c[i]);
	}
	e->nc = k;
}

static void set_dirty(struct ment *e, bool d)
{
	if (e->dirty != d)
		hs[e->h].ndirty += d ? 1 : (uint64_t)-1;
	e->dirty = d;
}

static void ment_remove_handle(int h)
{
	size_t k = 0;

	for (size_t i = 0; i < nents; i++) {
		if (ents[i].h == h)
			cand_clear(&ents[i]);
		else
			ents[k++] = ents[i];
	}
	nents = k;
}

static void reinstall_chain(void);

/* Drop block @blk of handle @h if clean (vmp_invalidate, checked). */
static void invalidate_one(int h, uint64_t blk)
{
	int rc = vmp_invalidate(hs[h].fh, blk, 1);

	CHECK_RC(rc, 0, "vmp_invalidate (harness, one page)");
	struct ment *e = mfind(h, blk, false);
	if (e && !e->dirty)
		cand_clear(e);
}

/* Make room for one more candidate on a clean page. */
static struct ment *clean_room(int h, uint64_t blk)
{
	struct ment *e = mfind(h, blk, true);

	if (!e) {
		invalidate_one(h, blk);
		return NULL;
	}
	if (!e->dirty && e->nc >= CLEAN_MAXC)
		invalidate_one(h, blk);
	return e;
}

/* Block @blk of backing @b changed from @old: a clean page of a normal
 * handle may still show @old until it is dropped. */
static void store_changed(int b, uint64_t blk, const uint8_t *old)
{
	uint8_t cur[1 << 14];

	back_get(&backs[b], blk, cur);
	if (!memcmp(cur, old, backs[b].bs))
		return;
	for (int h = 0; h < NFH; h++) {
		if (!hs[h].live || hs[h].overlay || stores[hs[h].store].back != b)
			continue;
		struct ment *e = mfind(h, blk, false);
		if (e && e->dirty)
			continue;
		e = clean_room(h, blk);
		if (e)
			cand_add(e, old, backs[b].bs);
	}
}

/* --- checks after every operation ----------------------------------------- */

static void check_handle(int h)
{
	uint64_t n = UINT64_MAX;
	int rc = vmp_fileh_dirty_count(hs[h].fh, &n);

	CHECK_RC(rc, 0, "vmp_fileh_dirty_count");
	CHECK(n == hs[h].ndirty, "handle %d: vmp_fileh_dirty_count says %llu, model %llu",
	      h, (unsigned long long)n, (unsigned long long)hs[h].ndirty);
}

static void check_ram(int r, bool empty)
{
	struct vmp_stats st;
	uint64_t dirty = 0, page = 0;
	int rc;

	memset(&st, 0xa5, sizeof(st));
	rc = vmp_ram_stats(rs[r].ram, &st);
	CHECK_RC(rc, 0, "vmp_ram_stats");
	for (int h = 0; h < NFH; h++)
		if (hs[h].live && hs[h].ram == r) {
			dirty += hs[h].ndirty * hs[h].bs;
			page = hs[h].bs > page ? hs[h].bs : page;
		}
	CHECK(st.limit_bytes == rs[r].limit, "ram %d: limit_bytes %llu, set %llu", r,
	      (unsigned long long)st.limit_bytes, (unsigned long long)rs[r].limit);
	/* (VMP_SPILL handles: dirty pages in memory, and spilled ones) */
	CHECK(st.dirty_bytes + st.spilled_bytes == dirty,
	      "ram %d: dirty_bytes %llu + spilled_bytes %llu, model %llu", r,
	      (unsigned long long)st.dirty_bytes,
	      (unsigned long long)st.spilled_bytes, (unsigned long long)dirty);
	CHECK(st.resident_bytes >= st.dirty_bytes, "ram %d: resident %llu < dirty %llu",
	      r, (unsigned long long)st.resident_bytes,
	      (unsigned long long)st.dirty_bytes);
	/* "A limit smaller than one page still allows one page." */
	if (rs[r].limit)
		CHECK(st.resident_bytes <= (rs[r].limit > page ? rs[r].limit : page),
		      "ram %d: resident %llu over the limit %llu", r,
		      (unsigned long long)st.resident_bytes,
		      (unsigned long long)rs[r].limit);
	CHECK(st.peak_resident_bytes >= st.resident_bytes, "ram %d: peak < resident", r);
	if (empty)
		CHECK(st.resident_bytes == 0 && st.dirty_bytes == 0 &&
		      st.spilled_bytes == 0,
		      "ram %d: %llu bytes resident (%llu dirty) with no handle open", r,
		      (unsigned long long)st.resident_bytes,
		      (unsigned long long)st.dirty_bytes);
}

static void check_all(void)
{
	for (int h = 0; h < NFH; h++)
		if (hs[h].live)
			check_handle(h);
	for (int r = 0; r < NRAM; r++)
		if (rs[r].live)
			check_ram(r, false);
}

/* --- fault handling ------------------------------------------------------- */

/* The access in progress, for the error handler's checks. */
static volatile bool acc_active, in_prefault;
static int acc_h;
static uint64_t acc_blk;
static uint8_t *acc_lo, *acc_hi;
static unsigned acc_calls;
struct hlog {
	int h;
	uint64_t blk;
	int answer, err, what;
};
static struct hlog hlog[NHLOG];
static unsigned nhlog;

static bool ram_limited(int h)
{
	return rs[hs[h].ram].limit != 0;
}

/* Was @rc injected into the loads of handle @h's store? */
static bool load_err_ok(int h, int rc)
{
	const struct store *s = &stores[hs[h].store];
	uint32_t mask = s->loadmask | (s->nested ? stores[6].loadmask : 0);

	for (unsigned i = 0; i < NERR; i++)
		if ((mask & (1u << i)) && norm_err(errtab[i]) == rc)
			return true;
	return false;
}

/* May an access of handle @h fail with @rc? */
static bool access_err_ok(int h, int rc)
{
	return (rc == -ENOMEM && ram_limited(h)) || load_err_ok(h, rc);
}

static int err_handler(const struct vmp_fault_error *e, void *arg)
{
	struct hslot *h = arg;
	int hi = (int)(h - hs), answer;

	CHECK(!in_prefault, "fault error handler called from vmp_prefault");
	CHECK(acc_active, "fault error handler called outside an access");
	CHECK(hi == acc_h && e->fh == h->fh, "fault error handler: wrong handle");
	CHECK(e->blk == acc_blk, "fault error handler: block %llu, accessing %llu",
	      (unsigned long long)e->blk, (unsigned long long)acc_blk);
	CHECK((uint8_t *)e->addr >= acc_lo && (uint8_t *)e->addr < acc_hi,
	      "fault error handler: address %p outside the access [%p, %p)", e->addr,
	      (void *)acc_lo, (void *)acc_hi);
	CHECK(e->err < 0, "fault error handler: err %d", e->err);
	switch (e->what) {
	case VMP_FAULT_LOAD:
		CHECK(load_err_ok(hi, e->err),
		      "fault error handler: load error %d (%s) not injected", e->err,
		      ename(e->err));
		break;
	case VMP_FAULT_MEMLIMIT:
		CHECK(e->err == -ENOMEM && ram_limited(hi),
		      "fault error handler: MEMLIMIT %d without a limit", e->err);
		break;
	default:
		fail("fault error handler: what=%d err=%d (%s)", e->what, e->err,
		     ename(e->err));
	}
	switch (h->mode) {
	case H_RETRY: answer = acc_calls == 0 ? VMP_FAULT_RETRY : VMP_FAULT_DEFAULT; break;
	case H_ZERO: answer = VMP_FAULT_ZERO; break;
	case H_RETRY_ZERO: answer = acc_calls == 0 ? VMP_FAULT_RETRY : VMP_FAULT_ZERO; break;
	default: answer = VMP_FAULT_DEFAULT; break;
	}
	acc_calls++;
	CHECK(acc_calls < 8, "fault error handler called %u times for one access", acc_calls);
	if (nhlog < NHLOG)
		hlog[nhlog++] = (struct hlog){ hi, e->blk, answer, e->err, e->what };
	return answer;
}

static bool zero_answered(int h, uint64_t blk)
{
	for (unsigned i = 0; i < nhlog; i++)
		if (hlog[i].h == h && hlog[i].blk == blk && hlog[i].answer == VMP_FAULT_ZERO)
			return true;
	return false;
}

static void chain_segv(int sig, siginfo_t *si, void *uc)
{
	static const char msg[] = "fuzz-api: SIGSEGV not served by vmp_handle_fault\n";
	int rc = vmp_handle_fault(si->si_addr);

	(void)sig;
	(void)uc;
	if (rc == 1)
		return;
	(void)!write(2, msg, sizeof(msg) - 1);
	abort();
}

static void reinstall_chain(void)
{
	struct sigaction sa;

	if (!chain_mode)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = chain_segv;
	sa.sa_flags = SA_SIGINFO | (chain_nodefer ? SA_NODEFER : 0);
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction");
}

static int acc_fn(void *arg)
{
	struct acc *a = arg;

	if (a->nest > 0) {
		a->nest--;
		return vmp_guard(acc_fn, a);
	}
	if (a->write)
		memcpy(a->addr, a->buf, a->len);
	else
		memcpy(a->buf, a->addr, a->len);
	return MAGIC;
}

/* Access [addr, addr+len) of one page (block @blk of handle @h) under
 * vmp_guard; MAGIC, or the fault's errno. */
static int guarded(int h, uint64_t blk, uint8_t *addr, size_t len, uint8_t *buf,
		   bool write, int nest)
{
	struct acc a = { addr, buf, len, write, nest };
	int rc;

	nhlog = 0;
	acc_calls = 0;
	acc_h = h;
	acc_blk = blk;
	acc_lo = addr;
	acc_hi = addr + len;
	acc_active = true;
	rc = vmp_guard(acc_fn, &a);
	acc_active = false;
	return rc;
}

/* --- operations ----------------------------------------------------------- */

static const char *const env_limits[] = { "", "8k", "16KB", "3m", "20480" };
static const uint64_t env_values[] = { 0, 8192, 16384, 3 << 20, 20480 };

static void op_ram_new(void)
{
	int r = u8() % NRAM;
	uint8_t sel = u8();
	uint64_t limit;
	const char *env = NULL;
	int rc;

	if (rs[r].live)
		return;
	switch (sel % 10) {
	case 0: limit = 0; break;
	case 1: limit = 1; break;
	case 2: limit = ps; break;
	case 3: limit = 2 * ps; break;
	case 4: limit = 3 * ps; break;
	case 5: limit = 4 * ps + 17; break;
	case 6: limit = 8 * ps; break;
	case 7: limit = 32 * ps; break;
	default:
		limit = 0;
		env = env_limits[(sel / 10) % 5];
	}
	note("vmp_ram_new(ram %d, %llu%s%s)", r, (unsigned long long)limit,
	     env ? ", VMPAGE_MEMLIMIT=" : "", env ? env : "");
	if (env)
		setenv("VMPAGE_MEMLIMIT", env, 1);
	rc = vmp_ram_new(&rs[r].ram, limit);
	if (env)
		unsetenv("VMPAGE_MEMLIMIT");
	reinstall_chain();
	CHECK_RC(rc, 0, "vmp_ram_new");
	rs[r].live = true;
	rs[r].limit = env ? env_values[(sel / 10) % 5] : limit;
}

static void op_ram_free(void)
{
	int r = u8() % NRAM, want = 0, rc;

	if (!rs[r].live)
		return;
	for (int h = 0; h < NFH; h++)
		if (hs[h].live && hs[h].ram == r)
			want = -EBUSY;
	note("vmp_ram_free(ram %d)", r);
	if (!want)
		check_ram(r, true);
	rc = vmp_ram_free(rs[r].ram);
	CHECK_RC(rc, want, "vmp_ram_free");
	if (!rc)
		rs[r].live = false;
}

static void op_ram_reclaim(void)
{
	int r = u8() % NRAM, rc;
	static const size_t amounts[] = { 0, 1, 4096, 16384, 1 << 20, SIZE_MAX };
	size_t n = amounts[u8() % 6];

	struct vmp_stats a, b;

	if (!rs[r].live)
		return;
	note("vmp_ram_reclaim(ram %d, %zu)", r, n);
	CHECK_RC(vmp_ram_stats(rs[r].ram, &a), 0, "vmp_ram_stats");
	rc = vmp_ram_reclaim(rs[r].ram, n);
	CHECK_RC(rc, 0, "vmp_ram_reclaim");
	CHECK_RC(vmp_ram_stats(rs[r].ram, &b), 0, "vmp_ram_stats");
	/* "Drop at least @bytes of clean pages ... if that many exist" */
	uint64_t clean_a = a.resident_bytes - a.dirty_bytes;
	uint64_t clean_b = b.resident_bytes - b.dirty_bytes;
	uint64_t want = n < clean_a ? n : clean_a;
	CHECK(b.dirty_bytes == a.dirty_bytes && clean_b <= clean_a - want,
	      "vmp_ram_reclaim(%zu): clean bytes %llu -> %llu, dirty %llu -> %llu",
	      n, (unsigned long long)clean_a, (unsigned long long)clean_b,
	      (unsigned long long)a.dirty_bytes, (unsigned long long)b.dirty_bytes);
}

static void op_fh_open(void)
{
	int h = u8() % NFH, r = u8() % NRAM, si = u8() % NOPEN;
	uint8_t fsel = u8(), csel = u8();
	struct store *s = &stores[si];
	unsigned flags;
	int want = 0, rc;

	if (hs[h].live || !rs[r].live)
		return;
	switch (fsel % 8) {
	case 3: flags = VMP_SPILL; break; /* the same bytes; faults fail less */
	case 4: case 5: flags = VMP_OVERLAY; break;
	case 6: flags = (fsel & 8) ? VMP_NO_READAHEAD : 1u << 4; break;
	case 7: flags = 0x80000000u | fsel; break;
	default: flags = 0;
	}
	if (csel % 16 >= 11) {
		/* a store that vmp_store_new refuses: no object, no release */
		vmp_store_ops ops = s->ops;
		size_t bs = backs[s->back].bs;
		vmp_store *bad = NULL;
		unsigned rel = s->releases;

		switch (csel % 16) {
		case 11: bs = 0; break;
		case 12: bs = ps / 2; break;
		case 13: bs = 3 * ps; break;
		case 14: bs = (size_t)1 << 31; break;
		default: ops.loadblk = NULL;
		}
		note("vmp_store_new(%s, blksize %zu%s)", s->name, bs,
		     ops.loadblk ? "" : ", no loadblk");
		rc = vmp_store_new(&bad, &ops, s, bs);
		CHECK_RC(rc, -EINVAL, "vmp_store_new");
		CHECK(!bad && s->releases == rel,
		      "vmp_store_new failed but made a store or released one");
		return;
	}
	if (!s->st) {
		if (s->nopen)
			return; /* freed: the program may not open it again */
		note("a new store object for %s (%u before)", s->name, s->created);
		store_new(s);
	}
	if (flags & ~(unsigned)(VMP_OVERLAY | VMP_NO_READAHEAD | VMP_SPILL))
		want = -EINVAL;
	else if ((flags & VMP_OVERLAY) && !s->base)
		want = -EINVAL;
	note("vmp_fileh_open(fh %d, ram %d, %s, flags %#x)", h, r, s->name,
	     flags);
	base_calls = 0;
	base_rc = 0;
	rc = vmp_fileh_open(&hs[h].fh, rs[r].ram, s->st, flags);
	reinstall_chain();
	CHECK(base_calls <= (!want && (flags & VMP_OVERLAY)),
	      "vmp_fileh_open: ops->base called %u times", base_calls);
	if (base_calls)
		want = base_rc; /* the error of ops->base */
	CHECK_RC(rc, want, "vmp_fileh_open");
	if (rc)
		return;
	hs[h] = (struct hslot){ hs[h].fh, true, si, r, !!(flags & VMP_OVERLAY),
				backs[s->back].bs, H_NONE, 0 };
	s->nopen++;
}

/* After a handle of @s closed (with @rel releases before): the store is
 * released iff that was its last handle and the program freed it. */
static void check_close_released(const struct store *s, unsigned rel)
{
	CHECK(s->releases == rel + (s->nopen == 0 && !s->st),
	      "%s: %u release calls on closing a handle, %d handles left open, "
	      "the store %s", s->name, s->releases - rel, s->nopen,
	      s->st ? "held by the program" : "freed");
}

static void op_fh_close(void)
{
	int h = u8() % NFH, want = 0, rc;
	struct store *s;
	unsigned rel;

	if (!hs[h].live)
		return;
	s = &stores[hs[h].store];
	for (int m = 0; m < NMAP; m++)
		if (ms[m].live && ms[m].fh == h)
			want = -EBUSY;
	note("vmp_fileh_close(fh %d)", h);
	rel = s->releases;
	rc = vmp_fileh_close(hs[h].fh);
	CHECK_RC(rc, want, "vmp_fileh_close");
	if (rc) {
		CHECK(s->releases == rel, "%s: released while a handle is open", s->name);
		return;
	}
	hs[h].live = false;
	ment_remove_handle(h);
	s->nopen--;
	check_close_released(s, rel);
}

/* The program frees its store object of a slot; handles may be open. */
static void op_store_free(void)
{
	struct store *s = &stores[u8() % NSTORE];
	vmp_store *st = s->st;
	unsigned rel = s->releases;

	if (!st) {
		note("vmp_store_free(NULL)");
		CHECK_RC(vmp_store_free(NULL), -EINVAL, "vmp_store_free(NULL)");
		return;
	}
	note("vmp_store_free(%s), %d handles open", s->name, s->nopen);
	s->st = NULL; /* before the call: release may run inside it */
	CHECK_RC(vmp_store_free(st), 0, "vmp_store_free");
	CHECK(s->releases == rel + (s->nopen == 0),
	      "%s: %u release calls on freeing the store, %d handles open",
	      s->name, s->releases - rel, s->nopen);
}

static bool bad_prot(int prot)
{
	return prot != PROT_READ && prot != (PROT_READ | PROT_WRITE);
}

/* -EINVAL must (2), may (1) or must not (0) be the answer for this range. */
static int range_einval(uint64_t off, uint64_t len, size_t bs)
{
	unsigned shift = (unsigned)__builtin_ctzll(bs);
	uint64_t end = off + len;

	if (len == 0 || end < off || end > (UINT64_MAX >> shift))
		return 2;
	if (end > ((uint64_t)INT64_MAX >> shift) || len > (SIZE_MAX >> shift))
		return 1;
	return 0;
}

static void do_munmap(int m)
{
	int rc;

	note("vmp_munmap(map %d = %p)", m, (void *)ms[m].addr);
	rc = vmp_munmap(ms[m].addr);
	CHECK_RC(rc, 0, "vmp_munmap");
	ms[m].live = false;
}

static void op_mmap(void)
{
	int m = u8() % NMAP, h = u8() % NFH;
	uint64_t off = sel_pgoff(), len = sel_pglen();
	uint8_t psel = u8();
	int prot, rc, inval;
	void *addr = NULL;

	if (!hs[h].live)
		return;
	switch (psel % 8) {
	case 0: case 1: case 2: prot = PROT_READ | PROT_WRITE; break;
	case 3: case 4: prot = PROT_READ; break;
	case 5: prot = PROT_WRITE; break;
	case 6: prot = PROT_NONE; break;
	default: prot = psel; break;
	}
	if (ms[m].live)
		do_munmap(m);
	inval = bad_prot(prot) ? 2 : range_einval(off, len, hs[h].bs);
	note("vmp_mmap(map %d, fh %d, pgoffset %llu, pglen %llu, prot %#x)", m, h,
	     (unsigned long long)off, (unsigned long long)len, prot);
	rc = vmp_mmap(hs[h].fh, off, len, prot, &addr);
	reinstall_chain();
	if (inval == 2)
		CHECK_RC(rc, -EINVAL, "vmp_mmap");
	else if (inval == 0 && len <= ((uint64_t)1 << 30) / hs[h].bs)
		CHECK_RC(rc, 0, "vmp_mmap (a range under 1 GiB)");
	else
		CHECK(rc == 0 || rc == -ENOMEM || (inval && rc == -EINVAL),
		      "vmp_mmap returned %d (%s)", rc, ename(rc));
	if (rc)
		return;
	CHECK(addr && ((uintptr_t)addr & (ps - 1)) == 0, "vmp_mmap: address %p", addr);
	for (int i = 0; i < NMAP; i++)
		CHECK(!ms[i].live ||
			      (uintptr_t)ms[i].addr + ms[i].npages * hs[ms[i].fh].bs <=
				      (uintptr_t)addr ||
			      (uintptr_t)addr + len * hs[h].bs <= (uintptr_t)ms[i].addr,
		      "vmp_mmap: %p overlaps mapping %d", addr, i);
	ms[m] = (struct mslot){ true, addr, off, len, prot, h };
}

static void op_munmap(void)
{
	int m = u8() % NMAP, kind = u8() % 8, want = -EINVAL, rc, hit = -1;
	uint8_t local;
	uint8_t *a;

	if (kind < 4) {
		if (ms[m].live) {
			do_munmap(m);
			last_gone = NULL;
		}
		return;
	}
	switch (kind) {
	case 4: a = ms[m].live ? ms[m].addr + hs[ms[m].fh].bs : NULL; break;
	case 5: a = ms[m].live ? ms[m].addr + 1 : NULL; break;
	case 6: a = &local; break;
	default:
		a = ms[m].live ? ms[m].addr + ms[m].npages * hs[ms[m].fh].bs : last_gone;
		break;
	}
	if (!a || internal_addr(a))
		return;
	for (int i = 0; i < NMAP; i++)
		if (ms[i].live && ms[i].addr == a) {
			hit = i;
			want = 0;
		}
	note("vmp_munmap(%p, kind %d): expect %d", (void *)a, kind, want);
	rc = vmp_munmap(a);
	CHECK_RC(rc, want, "vmp_munmap (foreign or unaligned address)");
	if (hit >= 0) {
		ms[hit].live = false;
		last_gone = a;
	}
}

/* A page of mapping @m: anywhere in a small one, near either end or at a
 * random place of a big one. */
static uint64_t pick_page(const struct mslot *m, uint32_t sel)
{
	if (m->npages <= 64 || !(sel & 0x80000000u))
		return (uint64_t)(sel & 0x7fffffffu) % (m->npages < 64 ? m->npages : 64);
	if (sel & 0x40000000u)
		return m->npages - 1 - (sel & 7) % m->npages;
	return ((uint64_t)sel * 0x9e3779b97f4a7c15ull) % m->npages;
}

/* The model's view of reading @len bytes at @off of block @blk of @h. */
static void observe(int h, uint64_t blk, size_t off, const uint8_t *got, size_t len,
		    const char *how)
{
	size_t bs = hs[h].bs;
	uint8_t st[1 << 14];
	struct ment *e = mfind(h, blk, false);
	bool sok;

	back_get(hback(h), blk, st);
	sok = !memcmp(st + off, got, len);
	if (e && !e->dirty && sok) {
		cand_keep(e, off, got, len);
		return;
	}
	if (!e && sok)
		return;
	if ((!e || !e->dirty) && hs[h].overlay && file_eof &&
	    !memcmp(got, zeros, len)) {
		/* base pages past the end of the file show zeros until they
		 * are mapped again, even after the file grew */
		if (e)
			cand_keep(e, off, got, len);
		return;
	}
	if (e) {
		int before = e->nc;
		uint8_t *first = before ? e->c[0] : NULL;
		size_t bad = 0;
		if (first)
			while (bad < len && first[off + bad] == got[bad])
				bad++;
		cand_keep(e, off, got, len);
		if (e->nc)
			return;
		fail("%s: handle %d (%s%s) block %llu bytes [%zu, %zu): %s page, "
		     "none of its %d candidate contents matches%s (first difference "
		     "from candidate 0 at byte %zu: got %#x, expected %#x; the store "
		     "has %#x there)",
		     how, h, stores[hs[h].store].name, hs[h].overlay ? ", overlay" : "",
		     (unsigned long long)blk, off, off + len,
		     e->dirty ? "dirty" : "clean", before,
		     e->dirty ? "" : " nor the store's bytes", off + bad,
		     bad < len ? got[bad] : 0, first && bad < len ? first[off + bad] : 0,
		     bad < len ? st[off + bad] : 0);
	}
	size_t bad = 0;
	while (bad < len && st[off + bad] == got[bad])
		bad++;
	(void)bs;
	fail("%s: handle %d (%s%s) block %llu bytes [%zu, %zu): clean page shows "
	     "other bytes than the store (byte %zu: got %#x, store %#x%s)",
	     how, h, stores[hs[h].store].name, hs[h].overlay ? ", overlay" : "",
	     (unsigned long long)blk, off, off + len, off + bad, got[bad], st[off + bad],
	     got[bad] == 0 ? "; a zero page?" : "");
}

/* Read [off, off+len) of page @pg of mapping @m and check it. */
static void read_page(int m, uint64_t pg, size_t off, size_t len, int nest)
{
	struct mslot *mp = &ms[m];
	int h = mp->fh;
	size_t bs = hs[h].bs;
	uint64_t blk = mp->pgoff + pg;
	uint8_t buf[1 << 14];
	int rc;

	note("read map %d page %llu (fh %d block %llu) [%zu, +%zu)%s", m,
	     (unsigned long long)pg, h, (unsigned long long)blk, off, len,
	     nest ? " nested guard" : "");
	memset(buf, 0xee, len);
	rc = guarded(h, blk, mp->addr + pg * bs + off, len, buf, false, nest);
	if (rc != MAGIC) {
		CHECK(rc < 0 && access_err_ok(h, rc),
		      "read: vmp_guard returned %d (%s)", rc, ename(rc));
		if (zero_answered(h, blk) && !hs[h].overlay) {
			struct ment *e = mfind(h, blk, false);
			if (!e || !e->dirty) {
				e = clean_room(h, blk);
				if (e)
					cand_add(e, zeros, bs);
			}
		}
		return;
	}
	if (zero_answered(h, blk)) {
		struct ment *e = mfind(h, blk, false);
		CHECK(!hs[h].overlay, "read of an overlay page faulted");
		if (!e || !e->dirty) {
			e = clean_room(h, blk);
			if (e)
				cand_add(e, zeros, bs);
		}
	}
	observe(h, blk, off, buf, len, "read");
}

static void op_read(void)
{
	int m = u8() % NMAP;
	uint32_t sel = u32();
	uint16_t o = u16(), l = u16();
	uint8_t nest = u8();
	size_t bs, off, len;

	if (!ms[m].live)
		return;
	bs = hs[ms[m].fh].bs;
	off = o % bs;
	len = 1 + l % (bs - off);
	if (l & 0x8000) { /* whole page */
		off = 0;
		len = bs;
	}
	read_page(m, pick_page(&ms[m], sel), off, len, nest % 8 == 7 ? 1 + nest % 3 : 0);
}

static void op_read_map(void)
{
	int m = u8() % NMAP;

	if (!ms[m].live)
		return;
	for (uint64_t pg = 0; pg < ms[m].npages && pg < 8; pg++)
		read_page(m, pg, 0, hs[ms[m].fh].bs, 0);
}

/* Write [off, off+len) of page @pg of mapping @m (writable) and model it. */
static void write_page(int m, uint64_t pg, size_t off, size_t len, uint64_t seed,
		       int nest)
{
	struct mslot *mp = &ms[m];
	int h = mp->fh;
	size_t bs = hs[h].bs;
	uint64_t blk = mp->pgoff + pg;
	uint8_t buf[1 << 14], tmp[1 << 14];
	struct ment *e;
	int rc;

	if (!(mp->prot & PROT_WRITE))
		return;
	e = mfind(h, blk, true);
	if (!e)
		return; /* model full */
	if (!e->dirty && e->nc >= CLEAN_MAXC)
		invalidate_one(h, blk);
	pattern(buf, (len + 7) & ~(size_t)7, seed, blk, off);
	note("write map %d page %llu (fh %d block %llu) [%zu, +%zu)%s", m,
	     (unsigned long long)pg, h, (unsigned long long)blk, off, len,
	     nest ? " nested guard" : "");
	rc = guarded(h, blk, mp->addr + pg * bs + off, len, buf, true, nest);
	e = mfind(h, blk, false);
	if (rc != MAGIC) {
		CHECK(rc < 0 && access_err_ok(h, rc),
		      "write: vmp_guard returned %d (%s)", rc, ename(rc));
		if (zero_answered(h, blk) && !hs[h].overlay && !e->dirty &&
		    (e = clean_room(h, blk)))
			cand_add(e, zeros, bs);
		return;
	}
	if (e->dirty) {
		for (int i = 0; i < e->nc; i++)
			memcpy(e->c[i] + off, buf, len);
		return;
	}
	if (zero_answered(h, blk)) {
		cand_clear(e);
		memcpy(tmp, zeros, bs);
		memcpy(tmp + off, buf, len);
		cand_add(e, tmp, bs);
	} else {
		for (int i = 0; i < e->nc; i++)
			memcpy(e->c[i] + off, buf, len);
		back_get(hback(h), blk, tmp);
		memcpy(tmp + off, buf, len);
		cand_add(e, tmp, bs);
	}
	set_dirty(e, true);
}

static void op_write(void)
{
	int m = u8() % NMAP;
	uint32_t sel = u32();
	uint16_t o = u16(), l = u16();
	uint8_t seed = u8(), nest = u8();
	size_t bs, off, len;

	if (!ms[m].live)
		return;
	bs = hs[ms[m].fh].bs;
	off = o % bs;
	len = 1 + l % (bs - off);
	if (l & 0x8000) {
		off = 0;
		len = bs;
	}
	write_page(m, pick_page(&ms[m], sel), off, len, seed | (uint64_t)nops << 8,
		   nest % 8 == 7 ? 1 + nest % 3 : 0);
}

static void op_write_pages(void)
{
	int m = u8() % NMAP;
	uint32_t sel = u32();
	uint8_t n = u8(), seed = u8();

	if (!ms[m].live)
		return;
	uint64_t pg = pick_page(&ms[m], sel);
	for (unsigned i = 0; i < 1u + n % 4 && pg + i < ms[m].npages; i++)
		write_page(m, pg + i, 0, hs[ms[m].fh].bs, seed + i + ((uint64_t)nops << 8), 0);
}

static void op_prefault(void)
{
	int m = u8() % NMAP, kind = u8() % 8;
	uint32_t sel = u32();
	uint16_t o = u16();
	uint8_t np = u8();
	bool write = u8() & 1;
	struct mslot *mp = &ms[m];
	uint8_t local[16], *a;
	size_t len, bs;
	int want = -EINVAL, hit = -1, rc;

	if (!mp->live && kind != 6)
		return;
	bs = mp->live ? hs[mp->fh].bs : ps;
	switch (kind) {
	case 5: a = mp->addr + o % (mp->npages * bs); len = 0; break;
	case 6: a = local; len = 1 + np; break;
	case 7: a = mp->addr + o % (mp->npages * bs); len = SIZE_MAX - np; break;
	default:
		a = mp->addr + pick_page(mp, sel) * bs + o % bs;
		len = 1 + (size_t)(np & 3) * bs + (size_t)(np >> 2) * 67 % bs;
	}
	if (internal_addr(a))
		return;
	for (int i = 0; i < NMAP; i++) {
		struct mslot *x = &ms[i];
		uintptr_t ua = (uintptr_t)a, start = (uintptr_t)x->addr;
		uintptr_t end = start + (uintptr_t)(x->npages * hs[x->fh].bs);
		if (x->live && ua >= start && ua < end && len && ua + len >= ua &&
		    ua + len <= end && (!write || (x->prot & PROT_WRITE))) {
			hit = i;
			want = 0;
		}
	}
	note("vmp_prefault(%p, %zu, %d) kind %d: map %d, expect %d", (void *)a, len,
	     write, kind, hit, want);
	if (hit < 0) {
		in_prefault = true;
		rc = vmp_prefault(a, len, write);
		in_prefault = false;
		CHECK_RC(rc, -EINVAL, "vmp_prefault");
		return;
	}
	mp = &ms[hit];
	int h = mp->fh;
	uint64_t first = mp->pgoff + (uint64_t)(a - mp->addr) / bs;
	uint64_t last = mp->pgoff + ((uintptr_t)a + len - 1 - (uintptr_t)mp->addr) / bs;
	uint64_t before = hs[h].ndirty, clean = 0, after = UINT64_MAX;

	if (write) {
		if (nents + (last - first + 1) > MAXENT)
			return;
		for (uint64_t b = first; b <= last; b++) {
			struct ment *e = mfind(h, b, true);
			if (!e->dirty && e->nc >= CLEAN_MAXC)
				invalidate_one(h, b);
			clean += !e->dirty;
		}
	}
	in_prefault = true;
	rc = vmp_prefault(a, len, write);
	in_prefault = false;
	CHECK(rc == 0 || (rc < 0 && access_err_ok(h, rc)),
	      "vmp_prefault returned %d (%s)", rc, ename(rc));
	if (!write)
		return;
	CHECK_RC(vmp_fileh_dirty_count(hs[h].fh, &after), 0, "vmp_fileh_dirty_count");
	CHECK(after >= before && after - before <= clean,
	      "vmp_prefault(write): dirty pages %llu -> %llu, %llu clean pages in range",
	      (unsigned long long)before, (unsigned long long)after,
	      (unsigned long long)clean);
	CHECK(rc != 0 || after - before == clean,
	      "vmp_prefault(write) succeeded but made %llu of %llu clean pages dirty",
	      (unsigned long long)(after - before), (unsigned long long)clean);
	uint64_t k = after - before;
	for (uint64_t b = first; b <= last && k; b++) {
		struct ment *e = mfind(h, b, false);
		uint8_t st[1 << 14];
		if (e->dirty)
			continue;
		back_get(hback(h), b, st);
		cand_add(e, st, hs[h].bs);
		set_dirty(e, true);
		k--;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void op_writeout(void)
{
	int h = u8() % NFH;
	uint8_t fs = u8();
	static const unsigned ftab[16] = { 0, 3, 3, 3, 3, 1, 1, 1, 2, 2, 2, 4, 7,
					   0x103, ~0u, 3 };
	unsigned flags = ftab[fs % 16];
	struct store *s;
	uint64_t dl[MAXENT];
	size_t nd = 0;
	int rc, want = 0;

	if (!hs[h].live)
		return;
	s = &stores[hs[h].store];
	for (size_t i = 0; i < nents; i++)
		if (ents[i].h == h && ents[i].dirty)
			dl[nd++] = ents[i].blk;
	qsort(dl, nd, sizeof(dl[0]), cmp_u64);
	if (!flags || (flags & ~3u))
		want = -EINVAL;
	else if ((flags & VMP_WRITEOUT_STORE) && s->ro)
		want = -EROFS;
	note("vmp_writeout(fh %d, %s, flags %#x): %zu dirty", h, s->name, flags, nd);

	nslog = 0;
	wo_first_err = 0;
	wo_begins = wo_commits = wo_aborts = 0;
	wo_committed = false;
	writer_store = hs[h].store;
	in_writeout = true;
	rc = vmp_writeout(hs[h].fh, flags);
	in_writeout = false;
	writer_store = -1;

	if (want || !(flags & VMP_WRITEOUT_STORE) || nd == 0) {
		CHECK_RC(rc, want, "vmp_writeout");
		CHECK(nslog == 0 && !wo_begins && !wo_commits && !wo_aborts,
		      "vmp_writeout: store callbacks called (%zu storeblk)", nslog);
	} else {
		CHECK_RC(rc, wo_first_err, "vmp_writeout (STORE)");
		CHECK(nslog <= nd, "vmp_writeout: %zu storeblk calls, %zu dirty pages",
		      nslog, nd);
		for (size_t i = 0; i < nslog; i++) {
			CHECK(slog[i].blk == dl[i],
			      "vmp_writeout: storeblk call %zu is block %llu, expected "
			      "block %llu (dirty pages in page order)", i,
			      (unsigned long long)slog[i].blk, (unsigned long long)dl[i]);
			struct ment *e = mfind(h, slog[i].blk, false);
			int before = e->nc;
			cand_keep(e, 0, slog[i].newb, hs[h].bs);
			CHECK(e->nc, "vmp_writeout: storeblk(%llu) got bytes that the page "
			      "never held (%d candidates)", (unsigned long long)slog[i].blk,
			      before);
		}
		if (!rc) {
			CHECK(nslog == nd, "vmp_writeout: %zu storeblk calls for %zu dirty "
			      "pages", nslog, nd);
			if (s->hooks)
				CHECK(wo_begins == 1 && wo_commits == 1 && !wo_aborts,
				      "vmp_writeout: hooks begin %u commit %u abort %u",
				      wo_begins, wo_commits, wo_aborts);
		} else if (s->hooks) {
			CHECK(wo_begins == 1, "vmp_writeout: no writeout_begin");
		}
		if (s->txn)
			CHECK(!s->in_txn, "%s: writeout ended inside a transaction "
			      "(no commit, no abort)", s->name);
		s->in_txn = false;
		/* what reached the store */
		for (size_t i = 0; i < nslog; i++)
			if (slog[i].rc == 0 && (!s->txn || wo_committed))
				store_changed(s->back, slog[i].blk, slog[i].oldb);
	}
	if (rc || !(flags & VMP_WRITEOUT_MARKSTORED))
		return;
	for (size_t i = 0; i < nents; i++) {
		struct ment *e = &ents[i];
		if (e->h != h || !e->dirty)
			continue;
		set_dirty(e, false);
		if (hs[h].overlay) {
			cand_clear(e);
		} else {
			uint8_t st[1 << 14];
			back_get(hback(h), e->blk, st);
			int k = 0;
			for (int j = 0; j < e->nc; j++) {
				if (memcmp(e->c[j], st, hs[h].bs))
					e->c[k++] = e->c[j];
				else
					free(e->c[j]);
			}
			e->nc = k;
		}
	}
}

static void op_discard(void)
{
	int h = u8() % NFH, rc;

	if (!hs[h].live)
		return;
	note("vmp_discard(fh %d)", h);
	rc = vmp_discard(hs[h].fh);
	CHECK_RC(rc, 0, "vmp_discard");
	for (size_t i = 0; i < nents; i++)
		if (ents[i].h == h && ents[i].dirty) {
			set_dirty(&ents[i], false);
			cand_clear(&ents[i]);
		}
}

static void op_invalidate(void)
{
	int h = u8() % NFH, rc, inval;
	uint64_t off = sel_pgoff(), len = sel_pglen();

	if (!hs[h].live)
		return;
	inval = range_einval(off, len, hs[h].bs);
	note("vmp_invalidate(fh %d, %llu, %llu)", h, (unsigned long long)off,
	     (unsigned long long)len);
	rc = vmp_invalidate(hs[h].fh, off, len);
	if (inval == 2)
		CHECK_RC(rc, -EINVAL, "vmp_invalidate");
	else if (inval == 0)
		CHECK_RC(rc, 0, "vmp_invalidate");
	else
		CHECK(rc == 0 || rc == -EINVAL, "vmp_invalidate returned %d (%s)", rc,
		      ename(rc));
	if (rc)
		return;
	for (size_t i = 0; i < nents; i++)
		if (ents[i].h == h && !ents[i].dirty && ents[i].blk >= off &&
		    ents[i].blk - off < len)
			cand_clear(&ents[i]);
}

static void op_set_handler(void)
{
	int h = u8() % NFH, mode = u8() % H_NMODES, rc;

	if (!hs[h].live)
		return;
	note("vmp_set_fault_error_handler(fh %d, mode %d)", h, mode);
	rc = vmp_set_fault_error_handler(hs[h].fh, mode == H_NONE ? NULL : err_handler,
					 &hs[h]);
	CHECK_RC(rc, 0, "vmp_set_fault_error_handler");
	hs[h].mode = mode;
}

static void op_inject(bool load)
{
	int si = u8() % NSTORE, which = load ? 0 : 1 + u8() % 4;
	uint8_t at = u8(), times = u8(), es = u8();
	struct store *s = &stores[si];
	struct inj *j;
	int err = errtab[es % NERR];

	switch (which) {
	case 0: j = &s->load; break;
	case 1: j = &s->store; break;
	case 2: j = &s->begin; break;
	case 3: j = &s->commit; break;
	default:
		j = &s->basei;
		err = err > 0 ? -EIO : err; /* base errors are errnos */
	}
	if (es >= 0xf0)
		err = 0; /* off */
	*j = (struct inj){ at % 8, times % 4, err, 0 };
	if (which == 0 && err)
		for (unsigned i = 0; i < NERR; i++)
			if (errtab[i] == err)
				s->loadmask |= 1u << i;
	note("inject %s %s: calls %u..+%u fail with %d", s->name,
	     (const char *[]){ "load", "store", "begin", "commit", "base" }[which],
	     j->at, j->times, err);
}

/* The store changes underneath (a program writing its file directly). */
static void op_change(void)
{
	int b = u8() % NBACK;
	uint8_t sel = u8();
	struct backing *bk = &backs[b];
	uint64_t blk = sel < 200 ? sel % 24 : special[sel % NSPECIAL];
	uint8_t old[1 << 14], nw[1 << 14];

	if (blk > ((uint64_t)INT64_MAX >> __builtin_ctzll(bk->bs)) - 2)
		return;
	note("change store %d block %llu underneath", b, (unsigned long long)blk);
	back_get(bk, blk, old);
	pattern(nw, bk->bs, (uint64_t)b, blk, ++bk->version);
	back_set(bk, blk, nw);
	store_changed(b, blk, old);
}

static void op_misc(void)
{
	int kind = u8() % 6, rc;
	uint8_t local;

	switch (kind) {
	case 0: {
		char v[32];
		snprintf(v, sizeof(v), "%d.%d.%d", VMP_VERSION_MAJOR, VMP_VERSION_MINOR,
			 VMP_VERSION_PATCH);
		note("vmp_version()");
		CHECK(!strcmp(vmp_version(), v), "vmp_version() is %s, header %s",
		      vmp_version(), v);
		break;
	}
	case 1:
		note("vmp_handle_fault(foreign address)");
		rc = vmp_handle_fault(&local);
		CHECK_RC(rc, 0, "vmp_handle_fault(stack address)");
		rc = vmp_handle_fault(zeros + 4096);
		CHECK_RC(rc, 0, "vmp_handle_fault(data address)");
		break;
	case 2: {
		vmp_store *st = NULL;
		int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		int afd = open("/dev/null", O_RDWR | O_APPEND | O_CLOEXEC);
		note("vmp_file_store_new(bad arguments)");
		CHECK_RC(vmp_file_store_new(NULL, backs[3].fd, ps), -EINVAL,
			 "vmp_file_store_new(NULL)");
		CHECK_RC(vmp_file_store_new(&st, -1, ps), -EINVAL,
			 "vmp_file_store_new(fd -1)");
		CHECK_RC(vmp_file_store_new(&st, backs[3].fd, 1000), -EINVAL,
			 "vmp_file_store_new(blksize 1000)");
		CHECK_RC(vmp_file_store_new(&st, backs[3].fd, ps / 2), -EINVAL,
			 "vmp_file_store_new(blksize half a page)");
		if (fd >= 0) {
			CHECK_RC(vmp_file_store_new(&st, fd, ps), -EBADF,
				 "vmp_file_store_new(write-only fd)");
			close(fd);
		}
		if (afd >= 0) {
			CHECK_RC(vmp_file_store_new(&st, afd, ps), -EINVAL,
				 "vmp_file_store_new(O_APPEND fd)");
			close(afd);
		}
		CHECK(!st, "a failed vmp_file_store_new set *storep");
		/* never opened: freeing it releases it (the fd count at the
		 * end of the input sees its duplicate of the fd closed) */
		rc = vmp_file_store_new(&st, backs[3].fd, 2 * ps);
		CHECK_RC(rc, 0, "vmp_file_store_new");
		CHECK_RC(vmp_store_free(st), 0, "vmp_store_free");
		break;
	}
	case 3:
		note("vmp_fault_handler_install()");
		CHECK_RC(vmp_fault_handler_install(), 0, "vmp_fault_handler_install");
		reinstall_chain();
		break;
	case 4: {
		int r = u8() % NRAM;
		if (rs[r].live) {
			note("vmp_ram_stats(ram %d)", r);
			check_ram(r, false);
		}
		break;
	}
	default: {
		int h = u8() % NFH;
		if (hs[h].live) {
			note("vmp_fileh_dirty_count(fh %d)", h);
			check_handle(h);
		}
	}
	}
}

/* --- per input ------------------------------------------------------------ */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void setup(uint8_t cfg)
{
	static const char *const names[NSTORE] = { "S0 mem-rw", "S1 mem-ro",
						   "S2 mem-txn", "S3 file-rw",
						   "S4 file-ro", "S5 nested",
						   "S6 internal" };
	static const int back_of[NSTORE] = { 0, 1, 2, 3, 3, 4, 4 };
	char path[64];

	chain_mode = cfg & 1;
	chain_nodefer = cfg & 2;
	file_eof = cfg & 0x40;
	for (int b = 0; b < NBACK; b++) {
		backs[b].bs = (cfg >> (b < 4 ? 2 + b : 7)) & 1 ? 2 * ps : ps;
		backs[b].n = 0;
		backs[b].fd = -1;
		backs[b].version = 0;
	}
	/* the file: no end (reads past what was written are zeros), and the
	 * first blocks hold data */
	backs[3].fd = memfd_create("fuzz-store", MFD_CLOEXEC);
	CHECK(backs[3].fd >= 0, "memfd_create: %s", strerror(errno));
	CHECK(ftruncate(backs[3].fd, (off_t)(file_eof ? NINIT * backs[3].bs : FILE_MAX)) == 0,
	      "ftruncate: %s", strerror(errno));
	for (uint64_t blk = 0; blk < NINIT; blk++) {
		uint8_t buf[1 << 14];
		pattern(buf, backs[3].bs, 3, blk, 0);
		back_set(&backs[3], blk, buf);
	}
	for (int i = 0; i < NSTORE; i++) {
		struct store *s = &stores[i];
		memset(s, 0, sizeof(*s));
		s->name = names[i];
		s->back = back_of[i];
		s->file = i == 3 || i == 4;
		s->nested = i == 5;
		s->ro = i == 1 || i == 4 || i == 6;
		s->txn = i == 2;
		s->hooks = i == 0 || i == 2;
		s->base = s->file;
		s->fd = -1;
		s->ops.loadblk = st_loadblk;
		s->ops.loadblks = (i == 0 || s->file || s->nested) ? st_loadblks : NULL;
		s->ops.storeblk = s->ro ? NULL : st_storeblk;
		s->ops.writeout_begin = s->hooks ? st_begin : NULL;
		s->ops.writeout_commit = s->hooks ? st_commit : NULL;
		s->ops.writeout_abort = s->txn ? st_abort : NULL;
		s->ops.release = st_release;
		s->ops.base = s->base ? st_base : NULL;
	}
	stores[3].fd = backs[3].fd;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", backs[3].fd);
	stores[4].fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(stores[4].fd >= 0, "open %s: %s", path, strerror(errno));
	for (int i = 0; i < NSTORE; i++)
		store_new(&stores[i]);
	memset(rs, 0, sizeof(rs));
	memset(hs, 0, sizeof(hs));
	memset(ms, 0, sizeof(ms));
	nents = 0;
	last_gone = NULL;
	/* S5's source: a read-only mapping on a RAM of its own */
	CHECK_RC(vmp_ram_new(&iram, 3 * backs[4].bs), 0, "vmp_ram_new (internal)");
	CHECK_RC(vmp_fileh_open(&ifh, iram, stores[6].st, 0), 0,
		 "vmp_fileh_open (internal)");
	stores[6].nopen = 1;
	CHECK_RC(vmp_mmap(ifh, 0, NESTW, PROT_READ, (void **)&imap), 0,
		 "vmp_mmap (internal)");
	if (chain_mode)
		reinstall_chain();
	else
		CHECK_RC(vmp_fault_handler_install(), 0, "vmp_fault_handler_install");
}

static void teardown(void)
{
	for (int m = 0; m < NMAP; m++)
		if (ms[m].live)
			do_munmap(m);
	for (int h = 0; h < NFH; h++) {
		if (!hs[h].live)
			continue;
		struct store *s = &stores[hs[h].store];
		unsigned rel = s->releases;
		note("vmp_fileh_close(fh %d) at the end", h);
		CHECK_RC(vmp_fileh_close(hs[h].fh), 0, "vmp_fileh_close");
		hs[h].live = false;
		ment_remove_handle(h);
		s->nopen--;
		check_close_released(s, rel);
	}
	for (int r = 0; r < NRAM; r++) {
		if (!rs[r].live)
			continue;
		note("vmp_ram_free(ram %d) at the end", r);
		check_ram(r, true);
		CHECK_RC(vmp_ram_free(rs[r].ram), 0, "vmp_ram_free");
		rs[r].live = false;
	}
	{
		struct vmp_stats st;
		unsigned rel = stores[6].releases;
		CHECK_RC(vmp_munmap(imap), 0, "vmp_munmap (internal)");
		CHECK_RC(vmp_fileh_close(ifh), 0, "vmp_fileh_close (internal)");
		stores[6].nopen = 0;
		check_close_released(&stores[6], rel);
		CHECK_RC(vmp_ram_stats(iram, &st), 0, "vmp_ram_stats (internal)");
		CHECK(st.resident_bytes == 0 && st.dirty_bytes == 0 &&
			      st.peak_resident_bytes <= 3 * backs[4].bs,
		      "internal ram: resident %llu, peak %llu",
		      (unsigned long long)st.resident_bytes,
		      (unsigned long long)st.peak_resident_bytes);
		CHECK_RC(vmp_ram_free(iram), 0, "vmp_ram_free (internal)");
	}
	/* No handle is left: freeing a store releases it now, and every
	 * store object made was released exactly once. */
	for (int i = 0; i < NSTORE; i++) {
		struct store *s = &stores[i];
		vmp_store *st = s->st;
		unsigned rel = s->releases;

		if (st) {
			note("vmp_store_free(%s) at the end", s->name);
			s->st = NULL;
			CHECK_RC(vmp_store_free(st), 0, "vmp_store_free");
			CHECK(s->releases == rel + 1, "%s: %u release calls on "
			      "freeing a store without handles", s->name,
			      s->releases - rel);
		}
		CHECK(s->releases == s->created && !s->inner,
		      "%s: %u store objects made, %u released", s->name,
		      s->created, s->releases);
	}
	for (int b = 0; b < NBACK; b++) {
		for (size_t i = 0; i < backs[b].n; i++)
			free(backs[b].tab[i].data);
		backs[b].n = 0;
	}
	close(stores[4].fd);
	close(backs[3].fd);
	backs[3].fd = -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ps = (size_t)sysconf(_SC_PAGESIZE);
	maxbs = 2 * ps;
	trace_on = getenv("FUZZ_VMP_TRACE") && *getenv("FUZZ_VMP_TRACE") == '1';
	unsetenv("VMPAGE_MEMLIMIT");
	for (size_t i = 0; i < NLOG; i++) {
		slog[i].oldb = malloc(maxbs);
		slog[i].newb = malloc(maxbs);
		if (!slog[i].oldb || !slog[i].newb)
			abort();
	}
	for (int b = 0; b < NBACK; b++) {
		backs[b].tab = calloc(MAXBENT, sizeof(struct bent));
		if (!backs[b].tab)
			abort();
	}
	if (maxbs > (1 << 13) || vmp_fault_handler_install() != 0) {
		fprintf(stderr, "fuzz-api: page size %zu or no fault handler\n", ps);
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fds;

	if (size < 1)
		return 0;
	in_p = data;
	in_n = size;
	in_i = 1;
	nops = 0;
	fds = count_fds();
	setup(data[0]);
	note("setup cfg %#x: %s handler, block sizes %zu %zu %zu %zu, file %s", data[0],
	     chain_mode ? (chain_nodefer ? "chained (SA_NODEFER)" : "chained")
			: "libsigsegv", backs[0].bs, backs[1].bs, backs[2].bs,
	     backs[3].bs, file_eof ? "with an end" : "without end");
	while (in_i < in_n && nops < MAXOPS) {
		uint8_t op = u8();
		nops++;
		switch (op % 24) {
		case 0: op_ram_new(); break;
		case 1: op_ram_free(); break;
		case 2: op_ram_reclaim(); break;
		case 3: op_fh_open(); break;
		case 4: op_fh_close(); break;
		case 5: op_mmap(); break;
		case 6: op_munmap(); break;
		case 7: case 8: op_read(); break;
		case 9: case 10: op_write(); break;
		case 11: op_write_pages(); break;
		case 12: op_read_map(); break;
		case 13: op_prefault(); break;
		case 14: op_writeout(); break;
		case 15: op_discard(); break;
		case 16: op_invalidate(); break;
		case 17: op_set_handler(); break;
		case 18: op_inject(true); break;
		case 19: op_inject(false); break;
		case 20: op_change(); break;
		case 21: op_misc(); break;
		case 22: op_fh_open(); break;
		default: op_store_free(); break;
		}
		check_all();
	}
	nops++;
	teardown();
	CHECK(count_fds() == fds, "fd leak: %d open fds, %d before the input",
	      count_fds(), fds);
	return 0;
}
