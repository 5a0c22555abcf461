/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmpage-bench: libvmpage against the kernel's mmap and the bare mechanisms,
 * all in one run, side by side.
 *
 * This file owns the options, the setup (test file, random order, spin
 * calibration) and the repetitions of each job.  Lines are printed as soon
 * as their job is done: the list (rows.c) puts references first.  A wrong
 * checksum or a library error makes the exit status 1; a missed target does
 * not (it is a finding, not a failure).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, MAP_NORESERVE; meson passes it too */
#endif
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "vmpage.h"
#include "bench.h"

struct opts opt = {
	.size = 256 * MiB,
	.reps = 5,
	.min_reps = 3,
	.job_budget = 2.0,
	.cap = 1.0,
	.ntouch = 8192,
	.out = OUT_TABLE,
};

/* Random touches split a floor mapping into up to 2 kernel VMAs per page;
 * stay well under vm.max_map_count (65530). */
#define MAX_TOUCH 30000

static bool failed; /* a wrong sum or an error: exit 1 */
int g_uffd_err;

void rep_fail(struct rep *r, enum rep_status st, const char *fmt, ...)
{
	va_list ap;

	if (r->status != REP_OK)
		return; /* keep the first reason */
	r->status = st;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
}

/* --- running ------------------------------------------------------------- */

static void note_add(struct metric *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void note_add(struct metric *m, const char *fmt, ...)
{
	size_t len = strlen(m->note);
	va_list ap;

	if (len && len + 2 < sizeof(m->note)) {
		strcat(m->note, "; ");
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(m->note + len, sizeof(m->note) - len, fmt, ap);
	va_end(ap);
}

/* Put the test file in the page cache state the job asks for (untimed). */
static double prepare_cache(const struct job *j)
{
	if (j->temp == T_HOT)
		cache_hot(g_fd, g_size);
	else if (j->temp == T_COLD)
		return cache_cold(g_fd, g_size);
	return 0;
}

static void report_failure(const struct job *j, const struct rep *r,
			   const char *which)
{
	failed = true;
	fprintf(stderr, "vmpage-bench: %s%s: %s%s\n", j->m[0]->name, which,
		r->status == REP_BADSUM ? "wrong checksum: " : "", r->msg);
}

/* The job whose values the ratios of @j divide by (all its metrics refer
 * to one job, or to none). */
static struct job *pair_job(const struct job *j)
{
	for (int i = 0; i < j->nm; i++)
		if (j->m[i]->ref && j->m[i]->ref->job != j)
			return j->m[i]->ref->job;
	return NULL;
}

/* @m's reference's value in the paired repetition @pr of job @pj */
static double paired_value(const struct metric *m, const struct job *pj,
			   const struct rep *pr)
{
	for (int k = 0; pr->status == REP_OK && k < pj->nm; k++)
		if (pj->m[k] == m->ref)
			return pr->val[k];
	return NAN;
}

static void record_rep(struct job *j, const struct rep *r,
		       const struct job *pj, const struct rep *pr)
{
	for (int i = 0; i < j->nm; i++) {
		struct metric *m = j->m[i];
		double ref = pj ? paired_value(m, pj, pr) : NAN;

		if (r->status == REP_OK) {
			if (ref > 0)
				m->rv[m->rn++] = r->val[i] / ref;
			m->v[m->n++] = r->val[i];
			m->capped |= r->capped;
			if (m->n == 1 && r->info[0]) /* the first one's */
				note_add(m, "%s", r->info);
			if (r->meta_bpp >= 0)
				m->meta_bpp = r->meta_bpp;
		} else {
			m->status = r->status;
			note_add(m, "%s%s%s",
				 r->status == REP_BADSUM ? "CHECKSUM WRONG: " :
				 r->status == REP_NA ? "n/a (error: " : "error: ",
				 r->msg, r->status == REP_NA ? ")" : "");
		}
	}
	if (r->status == REP_BADSUM || r->status == REP_ERROR)
		report_failure(j, r, "");
	if (pj && (pr->status == REP_BADSUM || pr->status == REP_ERROR))
		report_failure(pj, pr, " (paired run)");
}

/* One repetition of @j, from the cache state it asks for; its peak RSS. */
static double run_rep(struct job *j, struct rep *r, double *left)
{
	*left = fmax(*left, prepare_cache(j));
	peak_rss_reset();
	j->run(j, r);
	return peak_rss_mib();
}

/*
 * Repeat @j.  Each repetition is paired with a run of the job its ratios
 * refer to, back to back, so that both see the same machine: other load on
 * these VMs drifts by 2x and more over a run.  The order alternates (AB BA)
 * so that neither always runs right after the other's teardown.
 */
static void run_job(struct job *j)
{
	struct job *pj = pair_job(j);
	double t0 = now(), rss = 0, left = 0, ignored = 0;
	int reps = j->reps && j->reps < opt.reps ? j->reps : opt.reps;
	int min_reps = j->min_reps ? j->min_reps : opt.min_reps;

	for (int rep = 0; rep < reps; rep++) {
		struct rep r = { .meta_bpp = -1 }, pr = { .meta_bpp = -1 };

		if (rep >= min_reps && now() - t0 >= opt.job_budget)
			break;
		if (pj && rep % 2 == 0)
			run_rep(pj, &pr, &ignored);
		rss = fmax(rss, run_rep(j, &r, &left));
		if (pj && rep % 2 == 1)
			run_rep(pj, &pr, &ignored);
		record_rep(j, &r, pj, &pr);
		if (opt.verbose && r.status == REP_OK)
			fprintf(stderr, "vmpage-bench: %-22s rep %d: %.4g%s\n",
				j->m[0]->name, rep, r.val[0],
				pj && pr.status == REP_OK ? " (paired)" : "");
		if (r.status != REP_OK)
			break;
	}
	for (int i = 0; i < j->nm; i++) {
		struct metric *m = j->m[i];

		m->rss_mib = rss;
		if (left > 10)
			note_add(m, "not cold: %.0f%% of the file stayed "
				 "cached", left);
		if (m->capped)
			note_add(m, "partial: a repetition hit the %.1f s cap",
				 opt.cap);
		metric_finish(m);
		report_metric(m);
	}
	if (opt.verbose)
		fprintf(stderr, "vmpage-bench: %-22s %d reps, %.2f s\n",
			j->m[0]->name, j->m[0]->n, now() - t0);
}

/* --- options, setup ------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"usage: vmpage-bench [options]\n"
"  --size=BYTES    test file size, k/m/g suffix (default 256m)\n"
"  --reps=N        repetitions per row, at most (default 5)\n"
"  --touches=N     random page touches per repetition (default 8192, <= %d)\n"
"  --cap=SECS      stop one repetition's loop after SECS (default 1)\n"
"  --budget=SECS   no new repetition of a row after SECS, once 3 ran "
"(default 2)\n"
"  --quick         smoke run: 32m, 3 reps, 2048 touches, wall rows 60000\n"
"  --only=A,B      rows whose name contains A or B (and their references)\n"
"  --list          print the row names and exit\n"
"  --csv, --json   machine-readable output instead of the table\n"
"  --verbose       each row's repetitions and time on stderr\n"
"Rows ending in @uffd run with the userfaultfd fault mechanism, the others\n"
"with SIGSEGV.  The test file goes to $TMPDIR, else /var/tmp.\n"
"VMPAGE_MEMLIMIT and VMPAGE_FAULTS are ignored.\n",
		MAX_TOUCH);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	switch (*end) {
	case 'k': case 'K': v *= KiB; break;
	case 'm': case 'M': v *= MiB; break;
	case 'g': case 'G': v *= GiB; break;
	case 0: break;
	default: return 0;
	}
	return v > 0 ? (uint64_t)v : 0;
}

static void parse_args(int argc, char **argv)
{
	enum { O_SIZE = 256, O_REPS, O_TOUCH, O_CAP, O_BUDGET, O_ONLY,
	       O_CSV, O_JSON, O_QUICK, O_LIST, O_VERBOSE, O_HELP };
	static const struct option lo[] = {
		{ "size", required_argument, 0, O_SIZE },
		{ "reps", required_argument, 0, O_REPS },
		{ "touches", required_argument, 0, O_TOUCH },
		{ "cap", required_argument, 0, O_CAP },
		{ "budget", required_argument, 0, O_BUDGET },
		{ "only", required_argument, 0, O_ONLY },
		{ "csv", no_argument, 0, O_CSV },
		{ "json", no_argument, 0, O_JSON },
		{ "quick", no_argument, 0, O_QUICK },
		{ "list", no_argument, 0, O_LIST },
		{ "verbose", no_argument, 0, O_VERBOSE },
		{ "help", no_argument, 0, O_HELP },
		{ 0, 0, 0, 0 },
	};
	bool list = false;
	int c;

	/* --quick first, so that explicit options given with it win */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--quick") == 0) {
			opt.quick = true;
			opt.size = 32 * MiB;
			opt.reps = 3;
			opt.min_reps = 2;
			opt.job_budget = 0.3;
			opt.cap = 0.25;
			opt.ntouch = 2048;
			g_wall_touches = 60000;
			g_wall_dirty = 60000;
		}
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_SIZE: opt.size = parse_size(optarg); break;
		case O_REPS: opt.reps = atoi(optarg); break;
		case O_TOUCH: opt.ntouch = (size_t)atol(optarg); break;
		case O_CAP: opt.cap = atof(optarg); break;
		case O_BUDGET: opt.job_budget = atof(optarg); break;
		case O_ONLY: opt.only = optarg; break;
		case O_CSV: opt.out = OUT_CSV; break;
		case O_JSON: opt.out = OUT_JSON; break;
		case O_QUICK: break;
		case O_LIST: list = true; break;
		case O_VERBOSE: opt.verbose = true; break;
		case O_HELP: usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc || opt.size < 8 * MiB || opt.reps < 1 ||
	    opt.reps > MAX_REPS || opt.ntouch < 1 || opt.ntouch > MAX_TOUCH) {
		fprintf(stderr, "vmpage-bench: bad arguments (size >= 8m, "
			"1 <= reps <= %d, 1 <= touches <= %d)\n", MAX_REPS,
			MAX_TOUCH);
		usage(stderr);
		exit(2);
	}
	/* whole 2 MiB pages, and a quarter-file limit of whole 2 MiB pages */
	opt.size = (opt.size + 8 * MiB - 1) / (8 * MiB) * (8 * MiB);
	if (opt.min_reps > opt.reps)
		opt.min_reps = opt.reps;
	if (list) {
		rows_build();
		for (int i = 0; i < nmetrics; i++)
			printf("%s\n", metrics[i].name);
		exit(0);
	}
}

static void fs_name(const char *dir)
{
	struct statfs s;

	if (statfs(dir, &s) != 0)
		return;
	switch ((unsigned long)s.f_type) {
	case 0xEF53: snprintf(g_fsname, sizeof(g_fsname), "ext4"); break;
	case 0x01021994: snprintf(g_fsname, sizeof(g_fsname), "tmpfs"); break;
	case 0x58465342: snprintf(g_fsname, sizeof(g_fsname), "xfs"); break;
	case 0x9123683E: snprintf(g_fsname, sizeof(g_fsname), "btrfs"); break;
	case 0x794C7630: snprintf(g_fsname, sizeof(g_fsname), "overlayfs"); break;
	default:
		snprintf(g_fsname, sizeof(g_fsname), "0x%lx",
			 (unsigned long)s.f_type);
	}
}

/* Can a RAM use userfaultfd here?  0 or the error (the @uffd rows then
 * say "n/a" each). */
static int uffd_probe(void)
{
	vmp_ram *ram;
	int e = vmp_ram_new(&ram, 0);

	if (e < 0)
		return e;
	e = vmp_ram_set_faults(ram, VMP_FAULTS_UFFD);
	vmp_ram_free(ram);
	return e;
}

static void setup(void)
{
	if (getenv("VMPAGE_MEMLIMIT")) {
		/* "no limit" rows must mean no limit */
		fprintf(stderr, "vmpage-bench: ignoring VMPAGE_MEMLIMIT\n");
		unsetenv("VMPAGE_MEMLIMIT");
	}
	if (getenv("VMPAGE_FAULTS")) {
		/* each row sets its mechanism itself */
		fprintf(stderr, "vmpage-bench: ignoring VMPAGE_FAULTS\n");
		unsetenv("VMPAGE_FAULTS");
	}
	fs_name(tmp_dir());
	g_size = opt.size;
	g_big_size = 4 * opt.size;
	g_npages = g_size / OS_PAGE;
	g_ntouch = opt.ntouch < g_npages ? opt.ntouch : g_npages;
	g_perm = malloc(g_npages * sizeof(*g_perm));
	if (!g_perm) {
		fprintf(stderr, "vmpage-bench: out of memory\n");
		exit(2);
	}
	shuffle(g_perm, g_npages, 42);
	g_spin_iters = 20 * spin_calibrate();
	g_uffd_err = uffd_probe();
	g_fd = file_create(g_size, "data");
	if (g_fd < 0) {
		fprintf(stderr, "vmpage-bench: cannot create the test file in "
			"%s: %s\n", tmp_dir(), strerror(-g_fd));
		exit(2);
	}
}

int main(int argc, char **argv)
{
	double t0 = now();

	parse_args(argc, argv);
	rows_build();
	rows_select();
	setup();
	report_header();
	for (int i = 0; i < njobs; i++)
		if (jobs[i].run_it)
			run_job(&jobs[i]);
	report_footer(now() - t0, failed);
	close(g_fd);
	free(g_perm);
	return failed ? 1 : 0;
}
