/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * head.c: a dataset's head object, "NAME/head", the one object whose
 * atomic updates make commits atomic.
 *
 *   xattrs  vmp.version  the newest commit number, 16 hex digits (compared
 *                        as bytes by the commit's cmpxattr: fixed width)
 *           vmp.blksize, vmp.nblocks, vmp.grace   decimal
 *           vmp.id       drawn at creation, 16 hex digits: a dataset
 *                        removed and created again is another one
 *   omap    b<blk>       the block's object tag, le64 (16 hex digits in
 *                        the key: keys sort in block order)
 *           c<version>   the log of that commit: le64 time, tag, nblocks,
 *                        n, then n pairs (blk, old tag)
 *
 * A commit is one rados_write_op: compare vmp.id and vmp.version, set the
 * b keys and the c key, set vmp.version; it happens whole or not at all.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rados-internal.h"

#define X_VERSION "vmp.version"
#define X_BLKSIZE "vmp.blksize"
#define X_NBLOCKS "vmp.nblocks"
#define X_GRACE "vmp.grace"
#define X_ID "vmp.id"
#define PAGE_KEYS 4096 /* omap keys per read */

int name_ok(const char *name)
{
	size_t len;

	if (!name)
		return -EINVAL;
	len = strlen(name);
	if (!len || len > VMP_RADOS_NAME_MAX || strchr(name, '/'))
		return -EINVAL;
	return 0;
}

void head_oid(char *buf, const char *name)
{
	snprintf(buf, OBJ_NAME_MAX, "%s/head", name);
}

void block_oid(char *buf, const char *name, uint64_t blk, uint64_t tag)
{
	snprintf(buf, OBJ_NAME_MAX, "%s/%016" PRIx64 ".%016" PRIx64, name, blk,
		 tag);
}

int block_oid_parse(const char *oid, const char *name, uint64_t *blk,
		    uint64_t *tag)
{
	size_t len = strlen(name);
	char *end;

	if (strncmp(oid, name, len) || oid[len] != '/' ||
	    strlen(oid + len + 1) != 33 || oid[len + 17] != '.')
		return -EINVAL;
	*blk = strtoull(oid + len + 1, &end, 16);
	if (end != oid + len + 17)
		return -EINVAL;
	*tag = strtoull(oid + len + 18, &end, 16);
	return *end ? -EINVAL : 0;
}

static void put_le64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char)(v >> (8 * i));
}

static uint64_t get_le64(const char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)(unsigned char)p[i] << (8 * i);
	return v;
}

static void version_str(char *buf, uint64_t v)
{
	snprintf(buf, 17, "%016" PRIx64, v);
}

/* --- meta ----------------------------------------------------------------- */

static int parse_u64(const char *val, size_t len, int base, uint64_t *out)
{
	char tmp[32], *end;

	if (!len || len >= sizeof(tmp))
		return -EUCLEAN;
	memcpy(tmp, val, len);
	tmp[len] = '\0';
	*out = strtoull(tmp, &end, base);
	return *end ? -EUCLEAN : 0;
}

/* Fill @m from an xattr iterator; -EUCLEAN when one is missing or bad. */
static int meta_from_xattrs(rados_xattrs_iter_t it, struct head_meta *m)
{
	const char *name, *val;
	size_t len;
	unsigned seen = 0;
	int ret = 0;

	m->id = 0;
	while (!ret && rados_getxattrs_next(it, &name, &val, &len) == 0 && name) {
		if (!strcmp(name, X_VERSION) && len == 16) {
			ret = parse_u64(val, len, 16, &m->version);
			seen |= 1;
		} else if (!strcmp(name, X_BLKSIZE)) {
			ret = parse_u64(val, len, 10, &m->blksize);
			seen |= 2;
		} else if (!strcmp(name, X_NBLOCKS)) {
			ret = parse_u64(val, len, 10, &m->nblocks);
			seen |= 4;
		} else if (!strcmp(name, X_GRACE)) {
			ret = parse_u64(val, len, 10, &m->grace_s);
			seen |= 8;
		} else if (!strcmp(name, X_ID) && len == 16) {
			ret = parse_u64(val, len, 16, &m->id);
			seen |= 16;
		}
	}
	if (!ret && (seen & 15) != 15) /* vmp.id: 0 if absent (older heads) */
		ret = -EUCLEAN;
	return ret;
}

int head_create(rados_ioctx_t io, const char *oid, const struct head_meta *m)
{
	rados_write_op_t op = rados_create_write_op();
	char ver[17], bs[24], nb[24], gr[24], id[17];
	int ret;

	if (!op)
		return -ENOMEM;
	version_str(ver, m->version);
	snprintf(bs, sizeof(bs), "%" PRIu64, m->blksize);
	snprintf(nb, sizeof(nb), "%" PRIu64, m->nblocks);
	snprintf(gr, sizeof(gr), "%" PRIu64, m->grace_s);
	version_str(id, m->id);
	rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	rados_write_op_setxattr(op, X_VERSION, ver, 16);
	rados_write_op_setxattr(op, X_BLKSIZE, bs, strlen(bs));
	rados_write_op_setxattr(op, X_NBLOCKS, nb, strlen(nb));
	rados_write_op_setxattr(op, X_GRACE, gr, strlen(gr));
	rados_write_op_setxattr(op, X_ID, id, 16);
	ret = rados_write_op_operate2(op, io, oid, NULL, 0);
	rados_release_write_op(op);
	return ret;
}

int head_read_meta(rados_ioctx_t io, const char *oid, struct head_meta *m)
{
	rados_read_op_t op = rados_create_read_op();
	rados_xattrs_iter_t it = NULL;
	int ret, xret = 0;

	if (!op)
		return -ENOMEM;
	rados_read_op_getxattrs(op, &it, &xret);
	ret = rados_read_op_operate(op, io, oid, 0);
	if (!ret)
		ret = xret;
	if (!ret)
		ret = meta_from_xattrs(it, m);
	if (it)
		rados_getxattrs_end(it);
	rados_release_read_op(op);
	return ret;
}

/* --- the block map --------------------------------------------------------- */

static int map_page(rados_ioctx_t io, const char *oid, const char *after,
		    const struct head_meta *want, struct head_meta *m,
		    struct blkmap *map, char *last, unsigned char *more)
{
	rados_read_op_t op = rados_create_read_op();
	rados_xattrs_iter_t xit = NULL;
	rados_omap_iter_t oit = NULL;
	int ret, xret = 0, oret = 0;
	char ver[17];

	if (!op)
		return -ENOMEM;
	if (want) { /* later pages: of the same state, or start again */
		version_str(ver, want->version);
		rados_read_op_cmpxattr(op, X_VERSION, LIBRADOS_CMPXATTR_OP_EQ,
				       ver, 16);
	} else {
		rados_read_op_getxattrs(op, &xit, &xret);
	}
	rados_read_op_omap_get_vals2(op, after, "b", PAGE_KEYS, &oit, more,
				     &oret);
	ret = rados_read_op_operate(op, io, oid, 0);
	/* a comparison that held answers 1, for the whole op and (librados
	 * 16) the values read after it too */
	if (ret > 0)
		ret = 0;
	if (oret > 0)
		oret = 0;
	if (!ret)
		ret = xret ? xret : oret;
	if (!ret && !want)
		ret = meta_from_xattrs(xit, m);
	while (!ret) {
		char *key, *val;
		size_t len;
		uint64_t blk;

		if (rados_omap_get_next(oit, &key, &val, &len) || !key)
			break;
		if (len != 8 || strlen(key) != 17 ||
		    parse_u64(key + 1, 16, 16, &blk))
			ret = -EUCLEAN;
		else
			ret = blkmap_set(map, blk, get_le64(val));
		snprintf(last, 32, "%s", key);
	}
	if (xit)
		rados_getxattrs_end(xit);
	if (oit)
		rados_omap_get_end(oit);
	rados_release_read_op(op);
	return ret;
}

int head_read_map(rados_ioctx_t io, const char *oid, struct head_meta *m,
		  struct blkmap *map)
{
	unsigned char more;
	char last[32];
	int ret;

again:
	blkmap_free(map);
	last[0] = '\0';
	ret = map_page(io, oid, "", NULL, m, map, last, &more);
	while (!ret && more) {
		ret = map_page(io, oid, last, m, m, map, last, &more);
		if (ret == -ECANCELED) /* a commit landed: read it whole */
			goto again;
	}
	if (ret)
		blkmap_free(map);
	return ret;
}

/* --- logs ------------------------------------------------------------------ */

void logs_free(struct commit_log *logs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(logs[i].blk);
		free(logs[i].oldtag);
	}
	free(logs);
}

static int log_decode(const char *key, const char *val, size_t len,
		      struct commit_log *l)
{
	memset(l, 0, sizeof(*l));
	if (strlen(key) != 17 || parse_u64(key + 1, 16, 16, &l->version) ||
	    len < 32)
		return -EUCLEAN;
	l->time = get_le64(val);
	l->tag = get_le64(val + 8);
	l->nblocks = get_le64(val + 16);
	l->n = get_le64(val + 24);
	if (l->n > (len - 32) / 16 || len != 32 + 16 * l->n)
		return -EUCLEAN;
	l->blk = malloc((l->n ? l->n : 1) * sizeof(uint64_t));
	l->oldtag = malloc((l->n ? l->n : 1) * sizeof(uint64_t));
	if (!l->blk || !l->oldtag) {
		free(l->blk);
		free(l->oldtag);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < l->n; i++) {
		l->blk[i] = get_le64(val + 32 + 16 * i);
		l->oldtag[i] = get_le64(val + 40 + 16 * i);
	}
	return 0;
}

static void log_key(char *buf, uint64_t version)
{
	snprintf(buf, 18, "c%016" PRIx64, version);
}

int head_read_logs(rados_ioctx_t io, const char *oid, uint64_t after,
		   uint64_t upto, size_t max, struct head_meta *m,
		   struct commit_log **logsp, size_t *nlogs)
{
	struct commit_log *logs = NULL;
	size_t n = 0, cap = 0;
	char start[18];
	unsigned char more = 1;
	bool first = true;
	int ret = 0;

	log_key(start, after);
	while (!ret && more) {
		rados_read_op_t op = rados_create_read_op();
		rados_xattrs_iter_t xit = NULL;
		rados_omap_iter_t oit = NULL;
		int xret = 0, oret = 0;

		if (!op) {
			ret = -ENOMEM;
			break;
		}
		/* the first page with the meta, atomically: the logs after
		 * are immutable, read when they may */
		if (first)
			rados_read_op_getxattrs(op, &xit, &xret);
		rados_read_op_omap_get_vals2(op, start, "c", 64, &oit, &more,
					     &oret);
		ret = rados_read_op_operate(op, io, oid, 0);
		if (!ret)
			ret = xret ? xret : oret;
		if (!ret && first) {
			ret = meta_from_xattrs(xit, m);
			if (upto == UINT64_MAX)
				upto = m->version;
		}
		first = false;
		while (!ret) {
			char *key, *val;
			size_t len;

			if (rados_omap_get_next(oit, &key, &val, &len) || !key)
				break;
			snprintf(start, sizeof(start), "%s", key);
			if (n == cap) {
				struct commit_log *g;
				cap = cap ? 2 * cap : 16;
				g = realloc(logs, cap * sizeof(*logs));
				if (!g) {
					ret = -ENOMEM;
					break;
				}
				logs = g;
			}
			ret = log_decode(key, val, len, &logs[n]);
			if (ret)
				break;
			if (logs[n].version > upto || (max && n == max)) {
				free(logs[n].blk);
				free(logs[n].oldtag);
				more = 0;
				break;
			}
			n++;
		}
		if (xit)
			rados_getxattrs_end(xit);
		if (oit)
			rados_omap_get_end(oit);
		rados_release_read_op(op);
	}
	if (ret) {
		logs_free(logs, n);
		return ret;
	}
	*logsp = logs;
	*nlogs = n;
	return 0;
}

int head_read_tags(rados_ioctx_t io, const char *oid, const uint64_t *blk,
		   size_t n, struct head_meta *m, uint64_t *tags)
{
	rados_read_op_t op = rados_create_read_op();
	rados_xattrs_iter_t xit = NULL;
	rados_omap_iter_t oit = NULL;
	char *keybuf = malloc(n * 18 + 1);
	char **keys = malloc((n ? n : 1) * sizeof(*keys));
	int ret = -ENOMEM, xret = 0, oret = 0;

	if (!op || !keybuf || !keys)
		goto out;
	for (size_t i = 0; i < n; i++) {
		keys[i] = keybuf + 18 * i;
		snprintf(keys[i], 18, "b%016" PRIx64, blk[i]);
		tags[i] = 0;
	}
	rados_read_op_getxattrs(op, &xit, &xret);
	rados_read_op_omap_get_vals_by_keys(op, (char const *const *)keys, n,
					    &oit, &oret);
	ret = rados_read_op_operate(op, io, oid, 0);
	if (!ret)
		ret = xret ? xret : oret;
	if (!ret)
		ret = meta_from_xattrs(xit, m);
	while (!ret) {
		char *key, *val;
		size_t len;
		uint64_t b;

		if (rados_omap_get_next(oit, &key, &val, &len) || !key)
			break;
		if (len != 8 || strlen(key) != 17 ||
		    parse_u64(key + 1, 16, 16, &b)) {
			ret = -EUCLEAN;
			break;
		}
		/* blk[] ascends (storeblk's order): a commit of 100 000
		 * blocks must not take 10^10 steps here */
		size_t lo = 0, hi = n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (blk[mid] < b)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < n && blk[lo] == b)
			tags[lo] = get_le64(val);
	}
out:
	if (xit)
		rados_getxattrs_end(xit);
	if (oit)
		rados_omap_get_end(oit);
	if (op)
		rados_release_read_op(op);
	free(keys);
	free(keybuf);
	return ret;
}

/* --- commit ---------------------------------------------------------------- */

int head_commit(rados_ioctx_t io, const char *oid, uint64_t id,
		const struct commit_log *log)
{
	size_t n = log->n, i, loglen = 32 + 16 * n;
	rados_write_op_t op = rados_create_write_op();
	char **keys = malloc((n + 1) * sizeof(*keys));
	char **vals = malloc((n + 1) * sizeof(*vals));
	size_t *klen = malloc((n + 1) * sizeof(*klen));
	size_t *vlen = malloc((n + 1) * sizeof(*vlen));
	char *keybuf = malloc((n + 1) * 18);
	char *valbuf = malloc(8 * n + loglen);
	char oldver[17], newver[17], nb[24], idstr[17];
	char *rec;
	int ret = -ENOMEM;

	if (!op || !keys || !vals || !klen || !vlen || !keybuf || !valbuf)
		goto out;
	rec = valbuf + 8 * n;
	put_le64(rec, log->time);
	put_le64(rec + 8, log->tag);
	put_le64(rec + 16, log->nblocks);
	put_le64(rec + 24, n);
	for (i = 0; i < n; i++) {
		keys[i] = keybuf + 18 * i;
		klen[i] = 17;
		snprintf(keys[i], 18, "b%016" PRIx64, log->blk[i]);
		vals[i] = valbuf + 8 * i;
		vlen[i] = 8;
		put_le64(vals[i], log->tag);
		put_le64(rec + 32 + 16 * i, log->blk[i]);
		put_le64(rec + 40 + 16 * i, log->oldtag[i]);
	}
	keys[n] = keybuf + 18 * n;
	klen[n] = 17;
	log_key(keys[n], log->version);
	vals[n] = rec;
	vlen[n] = loglen;
	version_str(oldver, log->version - 1);
	version_str(newver, log->version);
	snprintf(nb, sizeof(nb), "%" PRIu64, log->nblocks);
	version_str(idstr, id);
	if (id) /* 0: a head made before vmp.id */
		rados_write_op_cmpxattr(op, X_ID, LIBRADOS_CMPXATTR_OP_EQ,
					idstr, 16);
	rados_write_op_cmpxattr(op, X_VERSION, LIBRADOS_CMPXATTR_OP_EQ, oldver,
				16);
	rados_write_op_omap_set2(op, (char const *const *)keys,
				 (char const *const *)vals, klen, vlen, n + 1);
	rados_write_op_setxattr(op, X_NBLOCKS, nb, strlen(nb));
	rados_write_op_setxattr(op, X_VERSION, newver, 16);
	ret = rados_write_op_operate2(op, io, oid, NULL, 0);
out:
	if (op)
		rados_release_write_op(op);
	free(keys);
	free(vals);
	free(klen);
	free(vlen);
	free(keybuf);
	free(valbuf);
	return ret;
}

/* --- garbage collection ------------------------------------------------------ */

long head_gc(rados_ioctx_t io, const char *name, const char *oid,
	     uint64_t below, uint64_t grace_s)
{
	struct commit_log *logs;
	struct head_meta m;
	size_t nlogs, nuse, nobj = 0, k = 0;
	char **oids = NULL, **keys = NULL, *buf = NULL;
	uint64_t now = (uint64_t)time(NULL);
	long ret;

	/* the oldest few logs; commits are numbered from 1 */
	/* a little per commit: bounded work */
	ret = head_read_logs(io, oid, 0, below - 1, 16, &m, &logs, &nlogs);
	if (ret)
		return ret;
	nuse = nlogs;
	/* times are whole seconds: a log of second t was written before
	 * t + 1, so it is older than the grace only from t + 1 + grace on
	 * (grace 0: at once, the next commit after its own) */
	while (k < nuse &&
	       logs[k].time + grace_s + (grace_s != 0) <= now)
		nobj += logs[k++].n;
	if (!k)
		goto out;
	oids = malloc((nobj ? nobj : 1) * sizeof(*oids));
	keys = malloc(k * sizeof(*keys));
	buf = malloc(nobj * OBJ_NAME_MAX + k * 18);
	ret = -ENOMEM;
	if (!oids || !keys || !buf)
		goto out;
	nobj = 0;
	for (size_t i = 0; i < k; i++) {
		for (uint64_t j = 0; j < logs[i].n; j++) {
			if (!logs[i].oldtag[j])
				continue; /* the block was zeros */
			oids[nobj] = buf + OBJ_NAME_MAX * nobj;
			block_oid(oids[nobj], name, logs[i].blk[j],
				  logs[i].oldtag[j]);
			nobj++;
		}
	}
	ret = objects_remove(io, oids, nobj);
	if (ret >= 0) {
		/* the objects first, the logs after: a GC that dies between
		 * leaves logs whose objects are gone, which the next one
		 * finds gone (ENOENT) and drops */
		rados_write_op_t op = rados_create_write_op();
		long deleted = ret;

		ret = -ENOMEM;
		if (op) {
			for (size_t i = 0; i < k; i++) {
				keys[i] = buf + OBJ_NAME_MAX * nobj + 18 * i;
				log_key(keys[i], logs[i].version);
			}
			rados_write_op_assert_exists(op);
			rados_write_op_omap_rm_keys(op, (char const *const *)keys, k);
			ret = rados_write_op_operate2(op, io, oid, NULL, 0);
			rados_release_write_op(op);
			if (!ret)
				ret = deleted;
		}
	}
out:
	free(oids);
	free(keys);
	free(buf);
	logs_free(logs, nlogs);
	return ret;
}
