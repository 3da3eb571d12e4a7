/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdattach attach [options] URI: negotiate, CONNECT (kernel picks the device), wait for udev,
 * verify, journal, print. Any failure after CONNECT disconnects the device again. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "cmd-util.h"
#include "commands.h"
#include "devices.h"
#include "handshake.h"
#include "json.h"
#include "log.h"
#include "netlink.h"
#include "state.h"
#include "teardown.h"
#include "udev.h"

struct attach_opts {
	struct attach_req req;
	bool json;
};

static int parse_opts(int argc, char **argv, struct attach_opts *o)
{
	static const struct option lo[] = {
		{ "tag", required_argument, NULL, 't' },
		{ "name", required_argument, NULL, 'n' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "connections", required_argument, NULL, 'C' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "dead-conn-timeout", required_argument, NULL, 'D' },
		{ "bitmap", required_argument, NULL, 'B' },
		{ "udev-timeout", required_argument, NULL, 'U' },
		{ "json", no_argument, NULL, 'j' },
		{ "no-monitor", no_argument, NULL, 'M' },
		{ "max-request", required_argument, NULL, 'R' },
		OPT_HELP,
		{ 0 }
	};
	uint64_t v;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 't': o->req.tag = optarg; if (!dev_label_valid(optarg)) return usage_bad_label("--tag", optarg); break;
		case 'n': o->req.name = optarg; if (!dev_label_valid(optarg)) return usage_bad_label("--name", optarg); break;
		case 'r': o->req.read_only = true; break;
		case 'j': o->json = true; break;
		case 'M': o->req.no_monitor = true; break;
		case 'R':
			if (parse_pow2_opt("--max-request", optarg, page_size(), MAX_REQUEST_MAX, &v) < 0)
				return -EINVAL;
			o->req.max_request = v;
			break;
		case 'C': if (parse_num_opt("--connections", optarg, 1, 16, &v) < 0) return -EINVAL; o->req.connections = v; break;
		case 'b': if (parse_pow2_opt("--block-size", optarg, 512, page_size(), &v) < 0) return -EINVAL; o->req.block_size = v; break;
		case 'T': if (parse_num_opt("--timeout", optarg, 0, TIMEOUT_MAX_S, &v) < 0) return -EINVAL; o->req.timeout = v; break;
		case 'D': if (parse_num_opt("--dead-conn-timeout", optarg, 0, 86400 * 365, &v) < 0) return -EINVAL; o->req.dead_conn_timeout = v; break;
		case 'U': if (parse_num_opt("--udev-timeout", optarg, 1, 3600, &v) < 0) return -EINVAL; o->req.udev_timeout_ms = (int)v * 1000; break;
		case 'B':
			if (parse_bitmap_opt("--bitmap name", optarg) < 0)
				return -EINVAL;
			o->req.bitmap = optarg;
			break;
		case 'h': return PARSE_HELP;
		default: return usage_bad_option(argv[optind - 1], c);
		}
	}
	if (optind + 1 != argc) {
		log_usage(optind == argc ? "attach: missing URI" : "attach: too many arguments (one URI expected)");
		return -EINVAL;
	}
	o->req.uri = argv[optind];
	if (o->req.name && !o->req.tag)
		o->req.tag = "default"; /* the stable link is /dev/nbdattach/TAG/NAME */
	if (o->req.bitmap && !o->req.read_only)
		o->req.read_only = true; /* a bitmap-restricted snapshot is never written through the device */
	/* QEMU 7.2's snapshot-access answers a simple-reply read that spans a cluster already
	 * copied to the fleecing image and one not copied with the guest's new data for the copied
	 * one: the kernel must never send a request larger than a cluster (64 KiB by default). */
	if (o->req.bitmap && !o->req.max_request)
		o->req.max_request = 65536;
	/* The cap bounds a request's size, not where it starts: merged requests would still
	 * span two clusters. */
	o->req.snapshot = o->req.bitmap != NULL;
	return 0;
}

static void print_result(const struct attach_opts *o, const struct state_rec *s, uint64_t server_flags)
{
	if (!o->json) {
		printf("/dev/nbd%" PRIu32 "\n", s->index);
		return;
	}
	printf("{\"device\": \"/dev/nbd%" PRIu32 "\", \"index\": %" PRIu32 ", \"size\": %" PRIu64
	       ", \"block_size\": %" PRIu64, s->index, s->index, s->size, s->block_size);
	json_kv_str(stdout, "export", s->export_name, 0);
	json_kv_str(stdout, "tag", s->tag, 0);
	json_kv_str(stdout, "name", s->name, 0);
	json_kv_str(stdout, "identifier", s->identifier, 0);
	json_kv_str(stdout, "bitmap", s->bitmap, 0);
	printf(", \"connections\": %" PRIu32 ", \"read_only\": %s, \"flags\": %" PRIu64 "}\n",
	       s->connections, s->read_only ? "true" : "false", server_flags);
}

/* The caller learns its device only from this output: a device it was never told about would
 * be nobody's, so when the output cannot be written (a closed pipe, a full disk) the device is
 * torn down again and attach fails. */
static int report(const struct attach_opts *o, const struct attach_result *res)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	int err = 0;

	sigaction(SIGPIPE, &ign, &old); /* EPIPE instead of dying with the device attached */
	print_result(o, &res->st, res->server_flags);
	if (fflush(stdout) == EOF || ferror(stdout))
		err = errno ? errno : EIO;
	sigaction(SIGPIPE, &old, NULL);
	if (!err)
		return EXIT_OK;
	teardown_device(res->st.index, res->st.identifier, 0, o->req.udev_timeout_ms, NULL);
	log_error("cannot attach '%s': cannot write the device's name to standard output: %s",
		  o->req.uri, strerror(err));
	return EXIT_FAIL;
}

/* Termination signals are held from the end of the handshake (before it, a signal just ends us:
 * nothing exists yet) until the device is either complete or torn down again, so an interrupted
 * attach never leaves a half-attached device behind; a held signal is acted on once the device
 * is gone (and then delivered). */
static void held_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGQUIT);
}

static bool signal_held(void)
{
	sigset_t p;

	return sigpending(&p) == 0 && (sigismember(&p, SIGINT) == 1 || sigismember(&p, SIGTERM) == 1 ||
				       sigismember(&p, SIGHUP) == 1 || sigismember(&p, SIGQUIT) == 1);
}

/* Partition scanning is a module-wide switch the kernel applies on udev's first open, before
 * any rule runs: only max_part=0 keeps the kernel itself from reading a guest's disk. */
static void warn_partition_scan(void)
{
	int mp = dev_module_max_part();

	if (mp > 0)
		log_error("warning: the nbd module scans partitions (max_part=%d): the kernel reads the "
			  "guest's partition table; load it with max_part=0 (see modprobe.d/nbdattach.conf)", mp);
}

static int attach(struct attach_opts *o)
{
	struct attach_result res;
	const char *what = NULL;
	sigset_t old, hold;
	int r;

	held_signals(&hold);
	sigprocmask(SIG_SETMASK, NULL, &old);
	o->req.hold_signals = &hold;
	r = attach_device(&o->req, &res, &what);
	if (r == 0 && signal_held()) {
		teardown_device(res.st.index, res.st.identifier, 0, o->req.udev_timeout_ms, NULL);
		r = -EINTR;
		what = "interrupted by a signal";
	}
	if (r < 0) {
		r = fail_attach(o->req.uri, r, what);
		sigprocmask(SIG_SETMASK, &old, NULL);
		return r;
	}
	if (res.unrecognised)
		log_error("warning: udev did not recognise /dev/nbd%" PRIu32 " as nbdattach's: the host "
			  "may probe it; install 60-nbdattach.rules (make install) and reload udev", res.st.index);
	warn_partition_scan();
	r = report(o, &res);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return r;
}

int cmd_attach(int argc, char **argv)
{
	struct attach_opts o = { .req.udev_timeout_ms = UDEV_TIMEOUT_DEFAULT_MS };
	int r = parse_opts(argc, argv, &o);

	if (r)
		return r < 0 ? EXIT_USAGE : command_help(argv[0]);
	if (usage_bad_uri("attach", o.req.uri) < 0)
		return EXIT_USAGE;
	if (geteuid() != 0) {
		log_error("cannot attach '%s': must be run as root (needs CAP_SYS_ADMIN for the nbd netlink interface)", o.req.uri);
		return EXIT_FAIL;
	}
	return attach(&o);
}
