/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd-util.h"
#include "commands.h"
#include "log.h"
#include "netlink.h"
#include "pin.h"
#include "state.h"

/* Decimal digits only, no sign, no space, within [MIN, MAX]. */
static bool parse_in_range(const char *arg, uint64_t min, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (*arg < '0' || *arg > '9')
		return false;
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*ret = v;
	return true;
}

int parse_num_opt(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *ret)
{
	if (!parse_in_range(arg, min, max, ret)) {
		log_usage("invalid %s '%s' (expected a number from %llu to %llu)", opt, arg,
			  (unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	return 0;
}

int parse_pow2_opt(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *ret)
{
	uint64_t v;

	if (!parse_in_range(arg, min, max, &v) || (v & (v - 1))) {
		log_usage("invalid %s '%s' (expected a power of two from %llu to %llu)", opt, arg,
			  (unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

uint64_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? (uint64_t)p : 4096;
}

/* The URI is journaled and connected to again later (monitor, cleanup, discard DEVICE), from
 * other directories: a relative socket path would name another socket there. */
static const char *socket_unusable(const char *uri)
{
	char path[4096];
	int r = uri_socket_path(uri, path, sizeof(path));

	if (r == -EINVAL)
		return "the URI has more than one socket= parameter";
	if (r == -EILSEQ)
		return "the URI's query mixes '&' with ';' or holds %00: libnbd could read another socket= in it";
	if (r == -ENAMETOOLONG)
		return "the socket= path is too long";
	if (r == 0 && path[0] != '/')
		return "the socket= path must be absolute";
	if (r == -EDESTADDRREQ && !strncmp(uri, "nbd+unix://", 11))
		return "nbd+unix:// needs ?socket=/ABSOLUTE/PATH";
	return NULL;
}

const char *uri_unsupported(const char *uri)
{
	if (!strncmp(uri, "nbds", 4))
		return "TLS (nbds://) is not supported: the kernel's NBD client cannot speak TLS; "
		       "export over a unix socket or plain nbd:// on a trusted network";
	if (strncmp(uri, "nbd://", 6) && strncmp(uri, "nbd+unix://", 11) && strncmp(uri, "nbd+vsock://", 12))
		return "unsupported URI scheme (expected nbd://, nbd+unix:// or nbd+vsock://)";
	/* Journaled (and copied) at most this long: never cut short into another URI. */
	if (strlen(uri) >= STATE_URI_MAX)
		return "the URI is too long (at most 2047 bytes)";
	return socket_unusable(uri);
}

bool help_asked(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

int usage_bad_uri(const char *cmd, const char *uri)
{
	const char *why = uri_unsupported(uri);

	if (!why)
		return 0;
	/* A log line holds 1 KiB: the reason must not be cut off by a long URI. */
	log_usage("%s: cannot use '%.256s%s': %s", cmd, uri, strlen(uri) > 256 ? "..." : "", why);
	return -EINVAL;
}

int parse_bitmap_opt(const char *opt, const char *arg)
{
	size_t n = strlen(arg);
	bool ok = n > 0 && n <= BITMAP_NAME_MAX;

	for (size_t i = 0; ok && i < n; i++)
		ok = arg[i] >= 0x20 && arg[i] <= 0x7e;
	if (!ok) {
		/* The name itself is not echoed: it may be a kilobyte of terminal escapes. */
		log_usage("invalid %s (expected 1 to %u printable ASCII characters)", opt,
			  BITMAP_NAME_MAX);
		return -EINVAL;
	}
	return 0;
}

int usage_bad_label(const char *opt, const char *arg)
{
	log_usage("invalid %s '%s' (1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)", opt, arg);
	return -EINVAL;
}

int usage_bad_option(const char *arg, int c)
{
	if (c == ':')
		log_usage("option '%s' needs an argument", arg);
	else if (arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9')
		log_usage("invalid argument '%s' (no number here may be negative)", arg);
	else
		log_usage("unknown option '%s' (see nbdattach(8))", arg);
	return -EINVAL;
}

int fail_attach(const char *uri, int err, const char *detail)
{
	if (err == -NBD_NL_ENOFAMILY)
		log_error("cannot attach '%s': nbd kernel module not loaded: run 'modprobe nbd' "
			  "(see modprobe.d/nbdattach.conf)", uri);
	else if (err == -EPERM || err == -EACCES)
		log_error("cannot attach '%s': permission denied (run as root with CAP_SYS_ADMIN)", uri);
	else if (detail && (err == -EEXIST || strstr(detail, strerror(-err))))
		log_error("cannot attach '%s': %s", uri, detail);
	else if (detail)
		log_error("cannot attach '%s': %s (%s)", uri, detail, strerror(-err));
	else
		log_error("cannot attach '%s': %s", uri, strerror(-err));
	return EXIT_FAIL;
}
