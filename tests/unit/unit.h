/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tiny helpers for C unit tests. Each assertion prints one line on stdout, as tests/run expects:
 *   ok DESCRIPTION
 *   FAIL DESCRIPTION: DETAILS
 * Comment lines start with "# ". main() returns unit_exit(): non-zero if anything failed.
 */
#ifndef UNIT_H
#define UNIT_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int unit_failures;

__attribute__((format(printf, 3, 4), unused))
static bool unit_check(bool cond, const char *desc, const char *fmt, ...)
{
	va_list ap;

	if (cond) {
		printf("ok %s\n", desc);
	} else {
		unit_failures++;
		printf("FAIL %s: ", desc);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		putchar('\n');
	}
	fflush(stdout);
	return cond;
}

/* A check this machine cannot make, with the reason (counted as skipped, never as passed). */
__attribute__((unused))
static void unit_skip(const char *desc, const char *why)
{
	printf("skip %s: %s\n", desc, why);
	fflush(stdout);
}

/* expect_int("desc", expected, actual): errnos print by name-free number and strerror. */
__attribute__((unused))
static bool expect_int(const char *desc, long long expected, long long actual)
{
	return unit_check(expected == actual, desc, "expected %lld (%s), got %lld (%s)", expected,
	                  expected < 0 ? strerror((int)-expected) : "-", actual,
	                  actual < 0 ? strerror((int)-actual) : "-");
}

__attribute__((unused))
static bool expect_u64(const char *desc, uint64_t expected, uint64_t actual)
{
	return unit_check(expected == actual, desc, "expected %" PRIu64 ", got %" PRIu64, expected,
	                  actual);
}

__attribute__((format(printf, 1, 2), unused))
static void unit_comment(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

__attribute__((unused))
static int unit_exit(void)
{
	return unit_failures ? 1 : 0;
}

#endif
