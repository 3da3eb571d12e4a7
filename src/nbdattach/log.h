/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The CLI reports each failure once, on one line, prefixed "nbdattach: ". Only cmd-*.c and
 * main.c print; the other files return -errno and leave wording to their caller. */
#ifndef NBDATTACH_LOG_H
#define NBDATTACH_LOG_H

#define NBDATTACH_VERSION "0.1.0"

/* "nbdattach: MESSAGE" on stderr. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, for usage errors (exit status 2 follows). */
void log_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
