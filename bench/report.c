/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * report.c: from repetitions to a line: median, spread (min and max), the
 * ratio to the reference (ours / reference, medians of the same run), the
 * target verdict; and the three outputs: an aligned table, CSV, JSON.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, MAP_NORESERVE; meson passes it too */
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "vmpage.h"
#include "bench.h"

static int targets_met, targets_missed;

/* --- statistics, targets ------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of @v[0 .. n) (NAN when n == 0), with min and max. */
static double median_of(const double *v, int n, double *lo, double *hi)
{
	double s[MAX_REPS];

	if (n == 0) {
		*lo = *hi = NAN;
		return NAN;
	}
	memcpy(s, v, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	*lo = s[0];
	*hi = s[n - 1];
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

void metric_finish(struct metric *m)
{
	double lo, hi;

	m->ran = true;
	m->med = median_of(m->v, m->n, &m->lo, &m->hi);
	m->ratio = median_of(m->rv, m->rn, &lo, &hi);
}

static bool usable(const struct metric *m)
{
	return m && m->ran && m->status == REP_OK && m->n > 0;
}

/* Ratio of medians: for the unpaired second reference (kernel mmap). */
static double ratio_to(const struct metric *m, const struct metric *ref)
{
	return usable(m) && usable(ref) && ref->med > 0 ? m->med / ref->med
						      : NAN;
}

/* The ratio to the reference: the median of the paired ratios, each
 * repetition divided by the reference measured just before it. */
static double ratio_main(const struct metric *m)
{
	return usable(m) && m->rn > 0 ? m->ratio : NAN;
}

/* 1 met, 0 missed, -1 no target or nothing to judge */
static int target_state(const struct metric *m)
{
	double x = m->tgt_abs ? (usable(m) ? m->med : NAN) : ratio_main(m);

	if (!m->tgt_op || isnan(x))
		return -1;
	return m->tgt_op == '<' ? x <= m->tgt : x >= m->tgt;
}

/* --- output -------------------------------------------------------------- */

static void fmt_val(char *buf, size_t len, double v)
{
	double a = fabs(v);

	if (isnan(v))
		snprintf(buf, len, "-");
	else if (a >= 1000)
		snprintf(buf, len, "%.0f", v);
	else if (a >= 100)
		snprintf(buf, len, "%.1f", v);
	else if (a >= 10)
		snprintf(buf, len, "%.2f", v);
	else
		snprintf(buf, len, "%.3f", v);
}

/* "<=1.5x ok": the target, and with @verdict whether it is met */
static void fmt_target(char *buf, size_t len, const struct metric *m,
		       bool verdict)
{
	int st = verdict ? target_state(m) : -1;

	if (!m->tgt_op) {
		snprintf(buf, len, verdict ? "-" : "");
		return;
	}
	snprintf(buf, len, "%s%g%s%s", m->tgt_op == '<' ? "<=" : ">=", m->tgt,
		 m->tgt_abs ? "" : "x",
		 st == 1 ? " ok" : st == 0 ? " MISS" : "");
}

/* CSV numbers: full precision, empty when there is none */
static void fmt_csv(char *buf, size_t len, double v)
{
	if (isnan(v))
		buf[0] = 0;
	else
		snprintf(buf, len, "%.6g", v);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void json_num(double v)
{
	if (isnan(v))
		printf("null");
	else
		printf("%.6g", v);
}

static const char *status_name(enum rep_status s)
{
	return s == REP_OK ? "ok" : s == REP_BADSUM ? "bad-checksum" :
	       s == REP_NA ? "n/a" : "error";
}

static void output_table(const struct metric *m)
{
	char med[16], lo[16], hi[16], ratio[16], kr[16], tgt[24], rss[16],
		meta[16];
	bool ok = usable(m);

	fmt_val(med, sizeof(med), ok ? m->med : NAN);
	fmt_val(lo, sizeof(lo), ok ? m->lo : NAN);
	fmt_val(hi, sizeof(hi), ok ? m->hi : NAN);
	fmt_val(ratio, sizeof(ratio), ratio_main(m));
	fmt_val(kr, sizeof(kr), ratio_to(m, m->kref));
	fmt_target(tgt, sizeof(tgt), m, true);
	fmt_val(rss, sizeof(rss), m->rss_mib > 0 ? m->rss_mib : NAN);
	fmt_val(meta, sizeof(meta), m->meta_bpp >= 0 ? m->meta_bpp : NAN);
	printf("%-27s %-9s %9s %9s %9s %2d %7s %-22s %-12s %7s %7s %6s  %s\n",
	       m->name, m->unit, m->status == REP_NA ? "n/a" : med, lo, hi,
	       m->n, ratio, m->ref ? m->ref->name : "-", tgt, kr, rss, meta,
	       m->note);
}

static void output_csv(const struct metric *m)
{
	char med[24], lo[24], hi[24], ratio[24], kr[24], tgt[24], rss[24],
		meta[24];
	bool ok = usable(m);
	int st = target_state(m);

	fmt_csv(med, sizeof(med), ok ? m->med : NAN);
	fmt_csv(lo, sizeof(lo), ok ? m->lo : NAN);
	fmt_csv(hi, sizeof(hi), ok ? m->hi : NAN);
	fmt_csv(ratio, sizeof(ratio), ratio_main(m));
	fmt_csv(kr, sizeof(kr), ratio_to(m, m->kref));
	fmt_target(tgt, sizeof(tgt), m, false);
	fmt_csv(rss, sizeof(rss), m->rss_mib > 0 ? m->rss_mib : NAN);
	fmt_csv(meta, sizeof(meta), m->meta_bpp >= 0 ? m->meta_bpp : NAN);
	printf("%s,%s,%s,%s,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s,\"", m->name,
	       m->unit, med, lo, hi, m->n, m->ref ? m->ref->name : "", ratio,
	       tgt, st == 1 ? "yes" : st == 0 ? "no" : "", kr, rss, meta,
	       status_name(m->status));
	for (const char *p = m->note; *p; p++)
		printf(*p == '"' ? "\"\"" : "%c", *p);
	printf("\"\n");
}

static void output_json(const struct metric *m)
{
	static bool first = true;
	bool ok = usable(m);
	int st = target_state(m);
	char tgt[24];

	fmt_target(tgt, sizeof(tgt), m, false);
	printf("%s\n    {\"name\": ", first ? "" : ",");
	first = false;
	json_str(m->name);
	printf(", \"unit\": ");
	json_str(m->unit);
	printf(", \"higher_is_better\": %s", m->higher ? "true" : "false");
	printf(", \"median\": ");
	json_num(ok ? m->med : NAN);
	printf(", \"min\": ");
	json_num(ok ? m->lo : NAN);
	printf(", \"max\": ");
	json_num(ok ? m->hi : NAN);
	printf(", \"reps\": %d, \"ref\": ", m->n);
	json_str(m->ref ? m->ref->name : "");
	printf(", \"ratio\": ");
	json_num(ratio_main(m));
	printf(", \"target\": ");
	json_str(tgt);
	printf(", \"target_met\": %s, \"vs_kernel\": ",
	       st == 1 ? "true" : st == 0 ? "false" : "null");
	json_num(ratio_to(m, m->kref));
	printf(", \"peak_rss_mib\": ");
	json_num(m->rss_mib > 0 ? m->rss_mib : NAN);
	printf(", \"meta_bytes_per_page\": ");
	json_num(m->meta_bpp >= 0 ? m->meta_bpp : NAN);
	printf(", \"status\": ");
	json_str(status_name(m->status));
	printf(", \"note\": ");
	json_str(m->note);
	printf("}");
}

void report_metric(const struct metric *m)
{
	int st = target_state(m);

	if (st == 1)
		targets_met++;
	else if (st == 0)
		targets_missed++;
	if (opt.out == OUT_TABLE)
		output_table(m);
	else if (opt.out == OUT_CSV)
		output_csv(m);
	else
		output_json(m);
	fflush(stdout);
}

static void cpu_model(char *buf, size_t len)
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(buf, len, "?");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "model name", 10) == 0) {
			char *p = strchr(line, ':');

			if (p) {
				p += 1 + strspn(p + 1, " \t");
				p[strcspn(p, "\n")] = 0;
				snprintf(buf, len, "%s", p);
			}
			break;
		}
	fclose(f);
}

void report_header(void)
{
	struct utsname u;
	char cpu[128];

	uname(&u);
	cpu_model(cpu, sizeof(cpu));
	switch (opt.out) {
	case OUT_TABLE:
		printf("vmpage-bench: libvmpage %s; Linux %s %s, %ld CPUs, %s\n"
		       "file %llu MiB on %s; up to %d reps per row (at least "
		       "%d); %zu random touches; ~20 us loadblk = %.0f steps\n"
		       "faults: SIGSEGV, and userfaultfd in the rows @uffd "
		       "(%s%s%s); wall: %zu random pages of a %llu GiB store, "
		       "up to %llu dirty\n"
		       "ratio = ours / ref, each repetition paired with a run of "
		       "ref just before it, median of the pairs (ns: lower is "
		       "better; rates, pages: higher)\nvs-kern = median / "
		       "median of kernel mmap of the same work (not paired)\n\n",
		       vmp_version(), u.release, u.machine,
		       sysconf(_SC_NPROCESSORS_ONLN), cpu,
		       (unsigned long long)(g_size / MiB), g_fsname, opt.reps,
		       opt.min_reps, g_ntouch, g_spin_iters,
		       g_uffd_err ? "NOT usable here: " : "usable",
		       g_uffd_err ? strerror(-g_uffd_err) : "",
		       g_uffd_err ? ", those rows are n/a" : "", g_wall_touches,
		       (unsigned long long)(WALL_PAGES * OS_PAGE / GiB),
		       (unsigned long long)g_wall_dirty);
		printf("%-27s %-9s %9s %9s %9s %2s %7s %-22s %-12s %7s %7s %6s"
		       "  %s\n", "row", "unit", "median", "min", "max", "n",
		       "ratio", "ref", "target", "vs-kern", "rss-MiB",
		       "meta/pg", "note");
		break;
	case OUT_CSV:
		printf("row,unit,median,min,max,reps,ref,ratio,target,"
		       "target_met,vs_kernel,peak_rss_mib,meta_bytes_per_page,"
		       "status,note\n");
		break;
	case OUT_JSON:
		printf("{\n  \"library_version\": ");
		json_str(vmp_version());
		printf(",\n  \"kernel\": ");
		json_str(u.release);
		printf(",\n  \"cpus\": %ld,\n  \"cpu\": ",
		       sysconf(_SC_NPROCESSORS_ONLN));
		json_str(cpu);
		printf(",\n  \"userfaultfd\": %s",
		       g_uffd_err ? "false" : "true");
		printf(",\n  \"file_bytes\": %llu,\n  \"file_system\": ",
		       (unsigned long long)g_size);
		json_str(g_fsname);
		printf(",\n  \"max_reps\": %d,\n  \"random_touches\": %zu,\n"
		       "  \"wall_touches\": %zu,\n  \"wall_dirty_max\": %llu,\n"
		       "  \"rows\": [", opt.reps, g_ntouch, g_wall_touches,
		       (unsigned long long)g_wall_dirty);
		break;
	}
	fflush(stdout);
}

void report_footer(double secs, bool failed)
{
	double peak = process_peak_rss_mib();

	switch (opt.out) {
	case OUT_TABLE:
		printf("\ntargets: %d met, %d missed; checksums and library "
		       "calls: %s; process peak RSS (getrusage) %.0f MiB; "
		       "%.0f s\n", targets_met, targets_missed,
		       failed ? "FAILED (see notes)" : "all correct", peak,
		       secs);
		break;
	case OUT_CSV:
		fprintf(stderr, "targets: %d met, %d missed; %s; peak RSS "
			"%.0f MiB; %.0f s\n", targets_met, targets_missed,
			failed ? "FAILED" : "ok", peak, secs);
		break;
	case OUT_JSON:
		printf("\n  ],\n  \"targets_met\": %d,\n  \"targets_missed\": "
		       "%d,\n  \"failed\": %s,\n  \"peak_rss_mib\": %.1f,\n"
		       "  \"seconds\": %.1f\n}\n", targets_met, targets_missed,
		       failed ? "true" : "false", peak, secs);
		break;
	}
}

