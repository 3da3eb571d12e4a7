/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdattach detach DEVICE | --tag T [--name N] [--force]: only our devices (by backend
 * identifier), never one that is mounted, swapped on or held. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "claims.h"
#include "cmd-util.h"
#include "commands.h"
#include "log.h"
#include "netlink.h"
#include "ownership.h"
#include "teardown.h"

struct detach_opts {
	const char *device, *tag, *name;
	bool force;
	int udev_timeout_ms;
};

static int parse_opts(int argc, char **argv, struct detach_opts *o)
{
	static const struct option lo[] = {
		{ "tag", required_argument, NULL, 't' },
		{ "name", required_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'f' },
		{ "udev-timeout", required_argument, NULL, 'U' },
		OPT_HELP,
		{ 0 }
	};
	uint64_t v;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 't': o->tag = optarg; if (!dev_label_valid(optarg)) return usage_bad_label("--tag", optarg); break;
		case 'n': o->name = optarg; if (!dev_label_valid(optarg)) return usage_bad_label("--name", optarg); break;
		case 'f': o->force = true; break;
		case 'U': if (parse_num_opt("--udev-timeout", optarg, 1, 3600, &v) < 0) return -EINVAL; o->udev_timeout_ms = (int)v * 1000; break;
		case 'h': return PARSE_HELP;
		default: return usage_bad_option(argv[optind - 1], c);
		}
	}
	if (optind < argc)
		o->device = argv[optind++];
	if (optind < argc || (!o->device == !o->tag) || (o->name && !o->tag)) {
		log_usage("detach: give either DEVICE or --tag TAG [--name NAME]");
		return -EINVAL;
	}
	return 0;
}

static int detach_one(const struct detach_opts *o, uint32_t index)
{
	struct dev_info i;
	char why[512];
	bool held = false;
	int r = dev_info_get(index, &i);

	if (r < 0) {
		log_error("cannot detach '/dev/nbd%" PRIu32 "': no such device", index);
		return EXIT_FAIL;
	}
	if (i.held_open) {
		log_error("cannot detach '/dev/nbd%" PRIu32 "': already detached; another process still "
			  "holds it open, and the kernel frees it at the last close", index);
		return EXIT_FAIL;
	}
	if (!i.started) {
		_cleanup_(state_unlock) int lock = -1;

		/* A stale record, unless an attach has connected the minor since we looked. */
		(void)state_lock(&lock);
		if (dev_info_get(index, &i) == 0 && !i.started) {
			state_remove(index);
			udev_record_remove(index);
		}
		log_error("cannot detach '/dev/nbd%" PRIu32 "': not connected", index);
		return EXIT_FAIL;
	}
	if (!i.ours && !o->force) {
		log_error("cannot detach '/dev/nbd%" PRIu32 "': not attached by nbdattach (backend '%s'); "
			  "use its own tool, or --force", index, i.backend);
		return EXIT_FAIL;
	}
	r = dev_check_unused(index, why, sizeof(why));
	if (r == -EBUSY) {
		log_error("cannot detach '/dev/nbd%" PRIu32 "': %s; stop using it first", index, why);
		return EXIT_FAIL;
	}
	if (r < 0) {
		log_error("cannot detach '/dev/nbd%" PRIu32 "': cannot tell whether it is in use: %s",
			  index, strerror(-r));
		return EXIT_FAIL;
	}
	/* Only while it carries the backend checked (--force on a foreign device: its tool's, maybe
	 * none): a minor detached meanwhile and taken by an attach is that attach's. */
	r = teardown_device(index, i.backend, 0, o->udev_timeout_ms, &held);
	if (r == -ESTALE) {
		log_error("cannot detach '/dev/nbd%" PRIu32 "': it was detached and reused meanwhile", index);
		return EXIT_FAIL;
	}
	if (r < 0) {
		log_error("cannot detach '/dev/nbd%" PRIu32 "': %s", index, strerror(-r));
		return EXIT_FAIL;
	}
	/* Detached all the same: its I/O fails from now on. Say why the minor stays busy. */
	if (held)
		log_error("warning: detached '/dev/nbd%" PRIu32 "', but another process still holds it open: "
			  "the kernel frees it at the last close", index);
	return EXIT_OK;
}

static int detach_by_tag(const struct detach_opts *o)
{
	_cleanup_free_ uint32_t *v = NULL;
	size_t n = 0, hits = 0;
	int r = dev_list_indices(&v, &n), rc = EXIT_OK;

	if (r < 0) {
		log_error("cannot detach --tag '%s': cannot list nbd devices: %s", o->tag, strerror(-r));
		return EXIT_FAIL;
	}
	for (size_t k = 0; k < n; k++) {
		struct dev_info i;

		if (dev_info_get(v[k], &i) < 0 || !i.ours || i.held_open || strcmp(i.tag, o->tag) ||
		    (o->name && strcmp(i.name, o->name)))
			continue;
		hits++;
		if (detach_one(o, v[k]) != EXIT_OK)
			rc = EXIT_FAIL;
	}
	if (!hits) {
		log_error("cannot detach --tag '%s'%s%s: no such device attached", o->tag,
			  o->name ? " --name " : "", o->name ? o->name : "");
		return EXIT_FAIL;
	}
	return rc;
}

int cmd_detach(int argc, char **argv)
{
	struct detach_opts o = { .udev_timeout_ms = UDEV_TIMEOUT_DEFAULT_MS };
	uint32_t index;
	int r;

	r = parse_opts(argc, argv, &o);
	if (r)
		return r < 0 ? EXIT_USAGE : command_help(argv[0]);
	if (o.device && dev_parse_name(o.device, &index) < 0) {
		log_usage("detach: '%s' is not an nbd device (expected /dev/nbdN or nbdN)", o.device);
		return EXIT_USAGE;
	}
	if (geteuid() != 0) {
		log_error("cannot detach '%s': must be run as root", o.device ? o.device : o.tag);
		return EXIT_FAIL;
	}
	if (nbd_nl_probe() == -NBD_NL_ENOFAMILY) {
		log_error("cannot detach '%s': nbd kernel module not loaded", o.device ? o.device : o.tag);
		return EXIT_FAIL;
	}
	return o.device ? detach_one(&o, index) : detach_by_tag(&o);
}
