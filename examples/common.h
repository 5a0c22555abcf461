/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * common.h: the small helpers the example programs share, none of them
 * about libvmpage itself: error messages, size arguments, byte counts and
 * a clock.
 *
 * Include it after defining PROG (the program's name, for messages) and
 * _POSIX_C_SOURCE.
 */
#ifndef VMPAGE_EXAMPLES_COMMON_H
#define VMPAGE_EXAMPLES_COMMON_H

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef PROG
#error "define PROG before including common.h"
#endif

/* Print "PROG: what: strerror(-err)" and return EXIT_FAILURE. */
static inline int fail(const char *what, int err)
{
	fprintf(stderr, PROG ": %s: %s\n", what, strerror(-err));
	return EXIT_FAILURE;
}

/* Parse "123", "64k", "16m", "2g" (powers of 1024).  0 or -EINVAL. */
static inline int parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "kmgt";
	const char *u;
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end && (u = strchr(units, tolower((unsigned char)*end)))) {
		shift = 10 * (unsigned)(u - units + 1);
		end++;
	}
	if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* @n bytes as "123 B", "1.5 MiB" and so on. */
static inline void fmt_bytes(uint64_t n, char buf[32])
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = -1;

	if (n < 1024) {
		snprintf(buf, 32, "%" PRIu64 " B", n);
		return;
	}
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, 32, "%.1f %s", v, unit[u]);
}

/* Seconds on the monotonic clock. */
static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif /* VMPAGE_EXAMPLES_COMMON_H */
