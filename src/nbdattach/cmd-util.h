/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small helpers shared by the cmd-*.c files: option parsing and the one-line messages. */
#ifndef NBDATTACH_CMD_UTIL_H
#define NBDATTACH_CMD_UTIL_H

#include <stdint.h>

/* Parses a decimal in [MIN, MAX]; prints a usage line and returns -EINVAL otherwise. */
int parse_num_opt(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *ret);
int usage_bad_label(const char *opt, const char *arg);
/* For getopt's '?' / ':' results. */
int usage_bad_option(const char *arg, int c);
/* Prints "cannot attach 'URI': REASON" (with advice for known errors); returns EXIT_FAIL. */
int fail_attach(const char *uri, int err, const char *detail);

#endif
