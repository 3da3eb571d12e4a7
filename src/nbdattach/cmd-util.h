/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small helpers shared by the cmd-*.c files: option parsing and the one-line messages. */
#ifndef NBDATTACH_CMD_UTIL_H
#define NBDATTACH_CMD_UTIL_H

#include <stdbool.h>
#include <stdint.h>

/* Parses a decimal in [MIN, MAX]; prints a usage line and returns -EINVAL otherwise. */
int parse_num_opt(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *ret);
/* NULL for a URI the helper takes, else why not: the kernel's NBD client cannot do TLS, and
 * every URI may end up on a device. */
const char *uri_unsupported(const char *uri);
/* 0 for a URI the helper takes, else prints "CMD: cannot use 'URI': why" and returns -EINVAL. */
int usage_bad_uri(const char *cmd, const char *uri);
/* The same, and a power of two. */
int parse_pow2_opt(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *ret);
/* The kernel's page size: nbd's largest block size and smallest request cap. */
uint64_t page_size(void);
/* Linux 6.1 keeps the request timeout in jiffies in an unsigned int (nbd_set_cmd_timeout):
 * more seconds than this would wrap around at HZ=1000. */
#define TIMEOUT_MAX_S 4294967u
/* The largest request nbd lets max_sectors_kb allow (its max_hw_sectors, 65536 sectors). */
#define MAX_REQUEST_MAX (32u << 20)
/* A bitmap name: 1 to BITMAP_NAME_MAX printable ASCII characters, as a region map's context
 * must be (the journal and the text forms are line-oriented, JSON output needs valid text);
 * prints a usage line and returns -EINVAL otherwise. */
int parse_bitmap_opt(const char *opt, const char *arg);
int usage_bad_label(const char *opt, const char *arg);
/* For getopt's '?' / ':' results. */
int usage_bad_option(const char *arg, int c);
/* Every command takes --help (-h) as an option of its own, so that "-h" given as an option's
 * value (a bitmap may be named "-h") is that value; a parser returns PARSE_HELP for it and its
 * command returns command_help(). */
#define OPT_HELP { "help", no_argument, NULL, 'h' }
#define PARSE_HELP 1
/* For the commands without option values (list, status, version): --help or -h anywhere. */
bool help_asked(int argc, char **argv);
/* Prints "cannot attach 'URI': REASON" (with advice for known errors); returns EXIT_FAIL. */
int fail_attach(const char *uri, int err, const char *detail);

#endif
