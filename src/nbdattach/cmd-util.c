/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmd-util.h"
#include "commands.h"
#include "log.h"
#include "netlink.h"

int parse_num_opt(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (*arg < '0' || *arg > '9')
		errno = EINVAL;
	else
		v = strtoull(arg, &end, 10);
	if (errno || *end || v < min || v > max) {
		log_usage("invalid %s '%s' (expected a number from %llu to %llu)", opt, arg,
			  (unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	*ret = v;
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
	else if (detail && strstr(detail, strerror(-err)))
		log_error("cannot attach '%s': %s", uri, detail);
	else if (detail)
		log_error("cannot attach '%s': %s (%s)", uri, detail, strerror(-err));
	else
		log_error("cannot attach '%s': %s", uri, strerror(-err));
	return EXIT_FAIL;
}
