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

#include "children.h"
#include "claims.h"
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
	const char *uri, *tag, *name, *bitmap;
	bool read_only, json, no_monitor;
	unsigned connections;
	uint64_t block_size, timeout, dead_conn_timeout;
	int udev_timeout_ms;
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
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	uint64_t v;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:", lo, NULL)) != -1) {
		switch (c) {
		case 't': o->tag = optarg; if (!dev_label_valid(optarg)) return usage_bad_label("--tag", optarg); break;
		case 'n': o->name = optarg; if (!dev_label_valid(optarg)) return usage_bad_label("--name", optarg); break;
		case 'r': o->read_only = true; break;
		case 'j': o->json = true; break;
		case 'M': o->no_monitor = true; break;
		case 'C': if (parse_num_opt("--connections", optarg, 1, 16, &v) < 0) return -EINVAL; o->connections = v; break;
		case 'b': if (parse_num_opt("--block-size", optarg, 512, 65536, &v) < 0) return -EINVAL; o->block_size = v; break;
		case 'T': if (parse_num_opt("--timeout", optarg, 0, 86400 * 365, &v) < 0) return -EINVAL; o->timeout = v; break;
		case 'D': if (parse_num_opt("--dead-conn-timeout", optarg, 0, 86400 * 365, &v) < 0) return -EINVAL; o->dead_conn_timeout = v; break;
		case 'U': if (parse_num_opt("--udev-timeout", optarg, 1, 3600, &v) < 0) return -EINVAL; o->udev_timeout_ms = (int)v * 1000; break;
		case 'B':
			if (!*optarg || strlen(optarg) > 200 || strpbrk(optarg, "\n\r\t ")) {
				log_usage("invalid --bitmap name '%s'", optarg);
				return -EINVAL;
			}
			o->bitmap = optarg;
			break;
		case 'h': printf("Usage: nbdattach attach [--tag T] [--name N] [--read-only] [--connections N]\n"
				 "         [--block-size B] [--timeout S] [--dead-conn-timeout S] [--bitmap NAME]\n"
				 "         [--udev-timeout S] [--no-monitor] [--json] URI\nSee nbdattach(8).\n");
			return 1;
		default: return usage_bad_option(argv[optind - 1], c);
		}
	}
	if (optind + 1 != argc) {
		log_usage(optind == argc ? "attach: missing URI" : "attach: too many arguments (one URI expected)");
		return -EINVAL;
	}
	o->uri = argv[optind];
	if (o->name && !o->tag)
		o->tag = "default"; /* the stable link is /dev/nbdattach/TAG/NAME */
	if (o->bitmap && !o->read_only)
		o->read_only = true; /* a bitmap-restricted snapshot is never written through the device */
	return 0;
}

static void print_result(const struct attach_opts *o, const struct state_rec *s, const struct hs_result *hs)
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
	       s->connections, s->read_only ? "true" : "false", hs->server_flags);
}

static void fill_state(const struct attach_opts *o, const struct hs_result *hs, const char *id,
		       uint32_t index, struct state_rec *s)
{
	memset(s, 0, sizeof(*s));
	s->index = index;
	snprintf(s->identifier, sizeof(s->identifier), "%s", id);
	snprintf(s->tag, sizeof(s->tag), "%s", o->tag ? o->tag : "");
	snprintf(s->name, sizeof(s->name), "%s", o->name ? o->name : "");
	snprintf(s->uri, sizeof(s->uri), "%s", o->uri);
	snprintf(s->export_name, sizeof(s->export_name), "%s", hs->export_name);
	snprintf(s->bitmap, sizeof(s->bitmap), "%s", o->bitmap ? o->bitmap : "");
	s->size = hs->size;
	s->block_size = hs->block_size;
	s->connections = hs->n_fds;
	s->read_only = hs->read_only;
	s->pid = getpid();
	s->time = time(NULL);
}

/* The monitor releases the device when its server dies (the kernel does not); its pid goes
 * into the journal so that cleanup knows it. */
static int start_monitor(const struct attach_opts *o, struct state_rec *s)
{
	char dev[32], dct[24];
	char *argv[] = { "nbdattach", "monitor", "--identifier", s->identifier,
			 "--dead-conn-timeout", dct, dev, NULL };
	pid_t pid;
	int r;

	snprintf(dev, sizeof(dev), "nbd%" PRIu32, s->index);
	snprintf(dct, sizeof(dct), "%" PRIu64, o->dead_conn_timeout);
	r = child_spawn(self_exe(), argv, NULL, NULL, 0, CHILD_SETSID | CHILD_NULL_STDIO, &pid);
	if (r < 0)
		return r;
	s->pid = pid;
	return state_write(s);
}

/* udev's first pass over a new device can miss that it is ours (the rules were not installed,
 * or ran before any of our records were visible) or lack tag and name for the stable link:
 * one more "change" event makes udev run the rules again over what is on record now. */
static int wait_udev(const struct attach_opts *o, struct udev_wait *w, const struct state_rec *s,
		     bool *ret_unrecognised)
{
	unsigned want = UDEV_SAW_OURS | (s->tag[0] && s->name[0] ? UDEV_SAW_LINK : 0), seen = 0;
	char sysname[32];
	int r;

	snprintf(sysname, sizeof(sysname), "nbd%" PRIu32, s->index);
	r = udev_wait_change(w, sysname, o->udev_timeout_ms, &seen);
	if (r < 0 || (seen & want) == want)
		return r;
	r = dev_trigger_change(s->index);
	if (r >= 0)
		r = udev_wait_change(w, sysname, o->udev_timeout_ms, &seen);
	if (r >= 0)
		*ret_unrecognised = (seen & want) != want;
	return r;
}

/* After CONNECT: journal, udev, verification. On failure the caller tears down. */
static int finish_attach(const struct attach_opts *o, struct udev_wait *w, struct state_rec *s,
			 const char **what, bool *ret_unrecognised)
{
	char backend[DEV_ID_MAX + 2];
	int r;

	*what = "cannot record the device in the state journal";
	r = state_write(s);
	if (r < 0)
		return r;
	r = claim_commit(getpid(), s->index);
	if (r < 0)
		return r;
	*what = "udev did not process the new device in time (see --udev-timeout)";
	r = wait_udev(o, w, s, ret_unrecognised);
	if (r < 0)
		return r;
	*what = "the device does not carry our backend identifier";
	r = dev_read_attr(s->index, "backend", backend, sizeof(backend));
	if (r < 0)
		return r;
	if (strcmp(backend, s->identifier))
		return -EBUSY;
	*what = "cannot set read_ahead_kb to 0";
	r = o->bitmap ? dev_set_read_ahead(s->index, 0) : 0;
	if (r < 0 || o->no_monitor)
		return r;
	*what = "cannot start the device's monitor";
	return start_monitor(o, s);
}

static int do_connect(const struct attach_opts *o, struct hs_result *hs, const char *id, uint32_t *ret)
{
	struct nbd_nl_config c = {
		.size = hs->size, .block_size = hs->block_size, .timeout = o->timeout,
		.dead_conn_timeout = o->dead_conn_timeout, .server_flags = hs->server_flags,
		.fds = hs->fds, .n_fds = hs->n_fds, .identifier = id,
	};

	return nbd_nl_connect(&c, ret);
}

/* Termination signals are held from just before CONNECT until the device is either complete or
 * torn down again, so an interrupted attach never leaves a half-attached device behind; a held
 * signal is acted on once the device is gone (and then delivered). */
static void hold_signals(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigprocmask(SIG_BLOCK, &set, old);
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

static int attach_connected(const struct attach_opts *o, struct udev_wait *w, struct state_rec *s,
			    const struct hs_result *hs)
{
	const char *what = NULL;
	bool unrecognised = false;
	int r = finish_attach(o, w, s, &what, &unrecognised);

	if (r == 0 && signal_held()) {
		r = -EINTR;
		what = "interrupted by a signal";
	}
	if (r < 0) {
		teardown_device(s->index, o->udev_timeout_ms, NULL);
		claim_remove(getpid());
		return fail_attach(o->uri, r, what);
	}
	if (unrecognised)
		log_error("warning: udev did not recognise /dev/nbd%" PRIu32 " as nbdattach's: the host "
			  "may probe it; install 60-nbdattach.rules (make install) and reload udev", s->index);
	warn_partition_scan();
	print_result(o, s, hs);
	return EXIT_OK;
}

/* Before CONNECT, so that udev recognises the device on its very first event. */
static int write_claim(const struct attach_opts *o, const char *id)
{
	struct claim c = { 0 };

	snprintf(c.identifier, sizeof(c.identifier), "%s", id);
	snprintf(c.tag, sizeof(c.tag), "%s", o->tag ? o->tag : "");
	snprintf(c.name, sizeof(c.name), "%s", o->name ? o->name : "");
	return claim_write(getpid(), &c);
}

static int attach(const struct attach_opts *o)
{
	struct hs_request req = { .uri = o->uri, .connections = o->connections, .block_size = o->block_size,
				  .read_only = o->read_only, .bitmap = o->bitmap };
	struct hs_result hs = { 0 };
	struct udev_wait *w = NULL;
	struct state_rec s;
	uint32_t index = 0;
	char id[DEV_ID_MAX];
	sigset_t old;
	int r;

	r = nbd_nl_probe();
	if (r < 0)
		return fail_attach(o->uri, r, NULL);
	r = hs_negotiate(&req, &hs);
	if (r < 0)
		return fail_attach(o->uri, r, hs_last_error());
	hold_signals(&old);
	r = dev_identifier_new(o->tag, o->name, id);
	if (r >= 0)
		r = write_claim(o, id);
	if (r >= 0)
		r = udev_wait_new(&w);
	if (r >= 0)
		r = do_connect(o, &hs, id, &index);
	hs_result_close(&hs); /* the kernel holds its own references now */
	if (r < 0) {
		claim_remove(getpid());
		udev_wait_free(w);
		r = fail_attach(o->uri, r, r == -EBUSY ? "no free nbd device" : "kernel refused CONNECT");
		sigprocmask(SIG_SETMASK, &old, NULL);
		return r;
	}
	fill_state(o, &hs, id, index, &s);
	r = attach_connected(o, w, &s, &hs);
	udev_wait_free(w);
	fflush(stdout);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return r;
}

int cmd_attach(int argc, char **argv)
{
	struct attach_opts o = { .udev_timeout_ms = UDEV_TIMEOUT_DEFAULT_MS };
	int r = parse_opts(argc, argv, &o);

	if (r == 1)
		return EXIT_OK;
	if (r < 0)
		return EXIT_USAGE;
	if (!strncmp(o.uri, "nbds", 4)) {
		log_error("cannot attach '%s': TLS (nbds://) is not supported: the kernel's NBD client "
			  "cannot speak TLS; export over a unix socket or plain nbd:// on a trusted network", o.uri);
		return EXIT_FAIL;
	}
	if (strncmp(o.uri, "nbd://", 6) && strncmp(o.uri, "nbd+unix://", 11) && strncmp(o.uri, "nbd+vsock://", 12)) {
		log_usage("attach: '%s' is not an NBD URI (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)", o.uri);
		return EXIT_USAGE;
	}
	if (geteuid() != 0) {
		log_error("cannot attach '%s': must be run as root (needs CAP_SYS_ADMIN for the nbd netlink interface)", o.uri);
		return EXIT_FAIL;
	}
	return attach(&o);
}
