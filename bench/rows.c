/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rows.c: the list of jobs and metrics, i.e. the table's lines, in the
 * order they are run and printed, with the reference each ratio is taken
 * against and the targets of issues 5, 7, 8 and 13.  Every reference
 * comes before the lines that use it.
 *
 * Names are GROUP/.../WORKLOAD: floor/, kernel/, gen/ (generated store),
 * file/PS[-lim]/TEMP/ACCESS (file store, -lim = RAM limit of a quarter of
 * the file), cs/ (change set), thr/ (threads), ovl/ (VMP_OVERLAY), meta/,
 * wall/ (the kernel mapping limit), and issue 14's over a 1 GiB mapping:
 * par/ (parallel scans), gather/, big/ (2 MiB blocks), bsearch/.  Library rows run with the SIGSEGV
 * fault mechanism; each has a copy NAME@uffd that runs with userfaultfd
 * (build_uffd below), at the end of the list.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, MAP_NORESERVE; meson passes it too */
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmpage.h"
#include "bench.h"

struct metric metrics[200];
int nmetrics;
struct job jobs[160];
int njobs;

static const char *const U_GBS = "GB/s", *const U_MPS = "Mpages/s",
		  *const U_NSF = "ns/fault", *const U_NSP = "ns/page",
		  *const U_KFS = "kfaults/s", *const U_KBS = "kblocks/s",
		  *const U_B = "bytes", *const U_BPP = "B/page",
		  *const U_NST = "ns/touch", *const U_PG = "pages",
		  *const U_LPP = "loads/pg", *const U_USL = "us/lookup";

static struct job *job_add(job_fn *fn, struct job tmpl)
{
	struct job *j;

	if (njobs == (int)(sizeof(jobs) / sizeof(jobs[0])))
		abort(); /* the array is sized for the list below */
	j = &jobs[njobs++];
	*j = tmpl;
	j->run = fn;
	return j;
}

static struct metric *metric_add(struct job *j, const char *unit,
				 const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static struct metric *metric_add(struct job *j, const char *unit,
				 const char *fmt, ...)
{
	struct metric *m;
	va_list ap;

	if (nmetrics == (int)(sizeof(metrics) / sizeof(metrics[0])))
		abort(); /* the array is sized for the list below */
	m = &metrics[nmetrics++];

	va_start(ap, fmt);
	vsnprintf(m->name, sizeof(m->name), fmt, ap);
	va_end(ap);
	m->unit = unit;
	m->higher = unit == U_GBS || unit == U_MPS || unit == U_KFS ||
		    unit == U_KBS || unit == U_PG;
	m->job = j;
	m->meta_bpp = -1;
	j->m[j->nm++] = m;
	return m;
}

/* ratio to @ref, with a target on it (op 0: none) */
static void metric_ref(struct metric *m, const char *ref, char op, double tgt)
{
	snprintf(m->ref_name, sizeof(m->ref_name), "%s", ref);
	m->tgt_op = op;
	m->tgt = tgt;
}

/* an absolute target on the median itself (e.g. ns per page) */
static void metric_target(struct metric *m, char op, double tgt)
{
	m->tgt_op = op;
	m->tgt = tgt;
	m->tgt_abs = true;
}

static const char *ps_name(size_t ps)
{
	return ps == 4 * KiB ? "4k" : ps == 64 * KiB ? "64k" : "2m";
}

static const char *temp_name(enum temp t)
{
	return t == T_HOT ? "hot" : "cold";
}

static const char *acc_name(enum access_kind a)
{
	return a == ACC_SEQ ? "seq" : "rand";
}

static const char *acc_unit(enum access_kind a)
{
	return a == ACC_SEQ ? U_GBS : U_MPS;
}

/* --- the list ------------------------------------------------------------ */

static const size_t page_sizes[] = { 4 * KiB, 64 * KiB, 2 * MiB };
static const enum temp temps[] = { T_HOT, T_COLD };
static const enum access_kind accs[] = { ACC_SEQ, ACC_RAND };
static const int thread_counts[] = { 1, 2, 4, 8 };

static void build_floors_and_kernel(void)
{
	struct job *j;

	j = job_add(job_floor_fault, (struct job){ .ps = 4 * KiB });
	metric_add(j, U_NSF, "floor/fault-4k");
	for (int i = 0; i < 3; i++) {
		j = job_add(job_floor_copy, (struct job){ .ps = page_sizes[i],
							 .temp = T_HOT });
		metric_add(j, U_GBS, "floor/copy-%s", ps_name(page_sizes[i]));
	}
	for (int t = 0; t < 2; t++)
		for (int a = 0; a < 2; a++) {
			j = job_add(job_kernel, (struct job){
					.temp = temps[t], .acc = accs[a] });
			metric_add(j, acc_unit(accs[a]), "kernel/%s/%s",
				   temp_name(temps[t]), acc_name(accs[a]));
		}
	/* the wall/second-pass reference: a memfd, not the test file */
	j = job_add(job_kernel_wall, (struct job){ .ps = 4 * KiB });
	metric_add(j, U_NST, "kernel/second-pass");
}

static void build_gen(void)
{
	struct metric *m;
	struct job *j;
	char ref[40];

	j = job_add(job_gen_fault, (struct job){ .ps = 4 * KiB });
	m = metric_add(j, U_NSF, "gen/fault-4k");
	metric_ref(m, "floor/fault-4k", '<', 1.5);
	for (int i = 0; i < 3; i++) {
		j = job_add(job_gen_seq, (struct job){ .ps = page_sizes[i] });
		m = metric_add(j, U_GBS, "gen/seq-%s", ps_name(page_sizes[i]));
		snprintf(ref, sizeof(ref), "floor/copy-%s",
			 ps_name(page_sizes[i]));
		metric_ref(m, ref, '>', 0.8);
	}
}

/* One file-store line and its references and targets (issue 7). */
static void build_file_one(size_t ps, bool limit, enum temp t,
			   enum access_kind a)
{
	struct job *j = job_add(job_file, (struct job){
			.ps = ps, .limit = limit, .temp = t, .acc = a });
	struct metric *m;
	char kref[40], ref[40];

	m = metric_add(j, acc_unit(a), "file/%s%s/%s/%s", ps_name(ps),
		       limit ? "-lim" : "", temp_name(t), acc_name(a));
	snprintf(kref, sizeof(kref), "kernel/%s/%s", temp_name(t), acc_name(a));
	snprintf(m->kref_name, sizeof(m->kref_name), "%s", kref);
	if (t == T_HOT && a == ACC_SEQ) {
		/* hot sequential: at least 0.8x the copy floor (no limit) */
		snprintf(ref, sizeof(ref), "floor/copy-%s", ps_name(ps));
		metric_ref(m, ref, limit ? 0 : '>', 0.8);
	} else {
		/* cold 4 KiB: at least 0.7x kernel mmap (no limit) */
		bool tgt = t == T_COLD && ps == 4 * KiB && !limit;

		metric_ref(m, kref, tgt ? '>' : 0, 0.7);
	}
}

static void build_file(void)
{
	for (int p = 0; p < 3; p++)
		for (int l = 0; l < 2; l++)
			for (int t = 0; t < 2; t++)
				for (int a = 0; a < 2; a++)
					build_file_one(page_sizes[p], l, temps[t],
						       accs[a]);
}

static const char *const cs_steps[4] = { "first-write", "writeout",
					 "redirty", "discard" };

static void build_changeset(const char *prefix, size_t ps, bool overlay)
{
	struct job *j = job_add(job_changeset,
				(struct job){ .ps = ps, .overlay = overlay });
	bool k4 = ps == 4 * KiB && !overlay;
	struct metric *m;
	char ref[40];

	for (int s = 0; s < 4; s++) {
		m = metric_add(j, U_NSP, "%s/%s/%s", prefix, ps_name(ps),
			       cs_steps[s]);
		if (overlay) {
			/* next to the same step without overlay */
			snprintf(ref, sizeof(ref), "cs/4k/%s", cs_steps[s]);
			metric_ref(m, ref, 0, 0);
		} else if (s == 0 && k4) {
			/* a 4 KiB first write against the 4 KiB fault floor */
			metric_ref(m, "floor/fault-4k", '<', 1.5);
		} else if (k4 && (s == 1 || s == 3)) {
			metric_target(m, '<', 4000); /* 4 us per page */
		}
	}
}

/*
 * Change sets 4x the memory limit: VMP_SPILL next to the same steps held in
 * memory (first write: at most 2x), VMP_WRITEBACK next to the spill rows
 * (kernel mmap writing 4x its page cache budget is not comparable here),
 * and VMP_SPILL with the background reclaimer next to it without.
 */
static void build_evict(const char *prefix, unsigned evict, bool reclaimer,
			const char *ref_prefix)
{
	struct job *j = job_add(job_changeset,
				(struct job){ .ps = 4 * KiB, .evict = evict,
					      .reclaimer = reclaimer });
	struct metric *m;
	char ref[40];

	for (int s = 0; s < 4; s++) {
		m = metric_add(j, U_NSP, "%s/4k/%s", prefix, cs_steps[s]);
		snprintf(ref, sizeof(ref), "%s/4k/%s", ref_prefix, cs_steps[s]);
		if (evict == VMP_SPILL && !reclaimer && s == 0)
			metric_ref(m, ref, '<', 2.0);
		else
			metric_ref(m, ref, 0, 0);
	}
}

static void build_threads(void)
{
	struct metric *m;
	struct job *j;
	char ref[40];

	for (int i = 0; i < 4; i++) {
		j = job_add(job_floor_fault,
			    (struct job){ .ps = 4 * KiB,
					  .threads = thread_counts[i] });
		metric_add(j, U_KFS, "thr/bare/%d", thread_counts[i]);
	}
	for (int i = 0; i < 4; i++) {
		j = job_add(job_threads,
			    (struct job){ .threads = thread_counts[i] });
		m = metric_add(j, U_KFS, "thr/gen/%d", thread_counts[i]);
		snprintf(ref, sizeof(ref), "thr/bare/%d", thread_counts[i]);
		metric_ref(m, ref, '>', 0.9);
	}
	for (int i = 0; i < 4; i++) {
		j = job_add(job_cpu, (struct job){ .threads = thread_counts[i] });
		m = metric_add(j, U_KBS, "thr/cpu/%d", thread_counts[i]);
		if (thread_counts[i] > 1)
			metric_ref(m, "thr/cpu/1", 0, 0);
	}
	for (int i = 0; i < 4; i++) {
		j = job_add(job_threads, (struct job){
				.threads = thread_counts[i], .spin = true });
		m = metric_add(j, U_KFS, "thr/spin/%d", thread_counts[i]);
		if (thread_counts[i] > 1)
			metric_ref(m, "thr/spin/1",
				   thread_counts[i] == 2 ? '>' : 0, 1.7);
	}
}

static void build_overlay(void)
{
	struct metric *m;
	struct job *j;
	char ref[40];

	for (int t = 0; t < 2; t++)
		for (int a = 0; a < 2; a++) {
			j = job_add(job_file, (struct job){
					.ps = 4 * KiB, .temp = temps[t],
					.acc = accs[a], .overlay = true });
			m = metric_add(j, acc_unit(accs[a]), "ovl/%s/%s",
				       temp_name(temps[t]), acc_name(accs[a]));
			snprintf(ref, sizeof(ref), "kernel/%s/%s",
				 temp_name(temps[t]), acc_name(accs[a]));
			metric_ref(m, ref, '>', 0.9);
		}
	build_changeset("ovl", 4 * KiB, true);
}

static void build_meta(void)
{
	struct job *j = job_add(job_meta, (struct job){ .ps = 4 * KiB });
	struct metric *m;

	metric_add(j, U_B, "meta/untouched-64g");
	m = metric_add(j, U_BPP, "meta/per-page");
	metric_target(m, '<', 64);
}

/* The kernel mapping wall of the SIGSEGV mechanism (issue 13). */
static void build_wall(void)
{
	struct metric *m;
	struct job *j;

	j = job_add(job_wall_second_pass, (struct job){ .ps = 4 * KiB });
	m = metric_add(j, U_NST, "wall/second-pass");
	metric_ref(m, "kernel/second-pass", 0, 0);
	/* a count, the same each time, and 20 s with userfaultfd: once */
	j = job_add(job_wall_dirty_max, (struct job){ .ps = 4 * KiB,
						      .reps = 1 });
	metric_add(j, U_PG, "wall/dirty-max");
}

/*
 * Issue 14: programs over a mapping four times the test file (1 GiB).
 * par/: an OpenMP parallel sum, 1, 2, 4 threads, each N-thread row
 * against 1 thread of its kind (paired), with the target of at least 1.7x
 * for the library's; vs-kern: against kernel mmap with as many threads.
 */
static const int par_threads[] = { 1, 2, 4 };

static void build_par_one(const char *what, struct job tmpl, job_fn *fn,
			  const char *unit, bool target)
{
	char ref[40], kref[40];

	snprintf(ref, sizeof(ref), "par/%s/1", what);
	for (int i = 0; i < 3; i++) {
		struct job *j;
		struct metric *m;

		tmpl.threads = par_threads[i];
		j = job_add(fn, tmpl);
		m = metric_add(j, unit, "par/%s/%d", what, par_threads[i]);
		if (par_threads[i] > 1)
			metric_ref(m, ref, target ? '>' : 0, 1.7);
		if (fn == job_par_lib) {
			snprintf(kref, sizeof(kref), "par/kernel/%d",
				 par_threads[i]);
			snprintf(m->kref_name, sizeof(m->kref_name), "%s",
				 kref);
		}
	}
}

static void build_scans(void)
{
	struct metric *m;
	struct job *j;

	build_par_one("cpu", (struct job){ .reps = 3 }, job_par_cpu, U_MPS,
		      false);
	build_par_one("kernel", (struct job){ .reps = 3 }, job_par_kernel,
		      U_GBS, false);
	build_par_one("floor", (struct job){ .reps = 3 }, job_par_floor,
		      U_GBS, false);
	build_par_one("floor-sep", (struct job){ .reps = 3, .sep_fds = true },
		      job_par_floor, U_GBS, false);
	for (int f = 0; f < 2; f++)
		for (int d = 0; d < 2; d++) {
			char what[24];

			snprintf(what, sizeof(what), "%s/%s",
				 f ? "file" : "gen", d ? "dyn" : "static");
			build_par_one(what, (struct job){
					.ps = 4 * KiB, .dynamic = d, .reps = 3,
					.temp = f ? T_HOT : T_NONE },
				      job_par_lib, U_GBS, true);
		}
	j = job_add(job_gather, (struct job){ .ps = 4 * KiB, .reps = 3 });
	m = metric_add(j, U_LPP, "gather/gen");
	metric_target(m, '<', 1.1);

	/* 2 MiB blocks: at least 5 rounds, for the spread */
	j = job_add(job_big_copy, (struct job){ .ps = 2 * MiB, .min_reps = 5 });
	metric_add(j, U_GBS, "big/copy-2m");
	j = job_add(job_big_seq, (struct job){ .ps = 2 * MiB, .min_reps = 5 });
	m = metric_add(j, U_GBS, "big/seq-2m");
	metric_ref(m, "big/copy-2m", '>', 0.8);
	snprintf(m->kref_name, sizeof(m->kref_name), "par/kernel/1");

	j = job_add(job_bsearch_mem, (struct job){ .ps = 4 * KiB });
	metric_add(j, U_USL, "bsearch/memory");
	j = job_add(job_bsearch_lib, (struct job){ .ps = 4 * KiB, .reps = 3 });
	m = metric_add(j, U_USL, "bsearch/gen-lim");
	metric_ref(m, "bsearch/memory", 0, 0);
}

static struct metric *metric_find(const char *name)
{
	for (int i = 0; i < nmetrics; i++)
		if (strcmp(metrics[i].name, name) == 0)
			return &metrics[i];
	return NULL;
}

/* Rows that go through libvmpage and can run with either mechanism.
 * Overlay rows (ovl/) cannot: VMP_OVERLAY handles always use SIGSEGV, so
 * an ovl/...@uffd row would measure the same thing again; they have no
 * copy. */
static bool uffd_copies(const struct job *j)
{
	return !j->overlay &&
	       (j->run == job_gen_fault || j->run == job_gen_seq ||
		j->run == job_file || j->run == job_changeset ||
		j->run == job_threads || j->run == job_meta ||
		j->run == job_wall_second_pass ||
		j->run == job_wall_dirty_max || j->run == job_par_lib ||
		j->run == job_gather || j->run == job_big_seq ||
		j->run == job_bsearch_lib);
}

/*
 * The @uffd copy of metric @m, in job @j.  Its ratio is to:
 *   - the copy of @m's reference, when that is a library row too (threads:
 *     N threads against one thread of the same mechanism), with its target;
 *   - the kernel, for wall/second-pass (the point of that row);
 *   - else @m itself, its SIGSEGV twin: ratio = uffd / sigsegv.  A target
 *     on the ratio to a floor does not carry over; one on the value does.
 * and the issue 13 targets: random first touch at most 0.7x and first-
 * touch write at most 0.5x of SIGSEGV; two threads at least 1.8x one.
 */
static void build_uffd_metric(struct job *j, const struct metric *m)
{
	struct metric *c = metric_add(j, m->unit, "%s@uffd", m->name);
	const struct metric *ref = metric_find(m->ref_name);
	char name[40];

	snprintf(c->kref_name, sizeof(c->kref_name), "%s", m->kref_name);
	if (ref && uffd_copies(ref->job)) {
		snprintf(name, sizeof(name), "%.34s@uffd", m->ref_name);
		metric_ref(c, name, m->tgt_op, m->tgt);
		c->tgt_abs = m->tgt_abs;
	} else if (strcmp(m->ref_name, "kernel/second-pass") == 0) {
		metric_ref(c, m->ref_name, 0, 0);
	} else {
		metric_ref(c, m->name, 0, 0);
		if (m->tgt_abs)
			metric_target(c, m->tgt_op, m->tgt);
	}
	if (strcmp(m->name, "gen/fault-4k") == 0)
		metric_ref(c, m->name, '<', 0.7);
	else if (strcmp(m->name, "cs/4k/first-write") == 0)
		metric_ref(c, m->name, '<', 0.5);
	else if (strncmp(m->name, "thr/gen/", 8) == 0 && j->threads > 1)
		metric_ref(c, "thr/gen/1@uffd", j->threads == 2 ? '>' : 0,
			   1.8);
}

static void build_uffd(void)
{
	int n = njobs;

	for (int i = 0; i < n; i++) {
		struct job *j = &jobs[i], *c;

		if (!uffd_copies(j))
			continue;
		c = job_add(j->run, *j);
		c->faults = VMP_FAULTS_UFFD;
		c->nm = 0;
		for (int k = 0; k < j->nm; k++)
			build_uffd_metric(c, j->m[k]);
	}
}

void rows_build(void)
{
	build_floors_and_kernel();
	build_gen();
	build_file();
	build_changeset("cs", 4 * KiB, false);
	build_changeset("cs", 64 * KiB, false);
	build_evict("cs-spill", VMP_SPILL, false, "cs");
	build_evict("cs-writeback", VMP_WRITEBACK, false, "cs-spill");
	build_evict("cs-spill-bg", VMP_SPILL, true, "cs-spill");
	build_threads();
	build_overlay();
	build_meta();
	build_wall();
	build_scans();
	build_uffd();
	for (int i = 0; i < nmetrics; i++) {
		metrics[i].ref = metric_find(metrics[i].ref_name);
		metrics[i].kref = metric_find(metrics[i].kref_name);
	}
}

/* --only: a comma-separated list of substrings of metric names. */
static bool name_selected(const char *name)
{
	const char *p = opt.only;

	if (!p || !*p)
		return true;
	while (*p) {
		size_t n = strcspn(p, ",");
		char tok[64];

		snprintf(tok, sizeof(tok), "%.*s", (int)n, p);
		if (n && strstr(name, tok))
			return true;
		p += n + (p[n] == ',');
	}
	return false;
}

void rows_select(void)
{
	bool more = true;

	for (int i = 0; i < nmetrics; i++)
		if (name_selected(metrics[i].name))
			metrics[i].job->run_it = true;
	while (more) {
		more = false;
		for (int i = 0; i < nmetrics; i++) {
			struct metric *m = &metrics[i];
			struct metric *r[2] = { m->ref, m->kref };

			if (!m->job->run_it)
				continue;
			for (int k = 0; k < 2; k++)
				if (r[k] && !r[k]->job->run_it) {
					r[k]->job->run_it = true;
					more = true;
				}
		}
	}
}

