/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * nbdattach cleanup [--device nbdN]: reconcile what /run/nbdattach says with what the kernel
 * has. With --device (what udev runs when one of our devices disconnects) it only removes
 * records of a device that is gone, and never waits for udev (it runs inside udev's worker).
 * Without, it also disconnects our devices that nothing accounts for any more: left by a
 * helper that was killed between CONNECT and its journal entry, or whose server is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "children.h"
#include "claims.h"
#include "cleanup.h"
#include "cmd-util.h"
#include "commands.h"
#include "handshake.h"
#include "log.h"
#include "ownership.h"
#include "runs.h"
#include "teardown.h"

struct cleanup_opts {
	const char *device;
	int udev_timeout_ms;
	int probe_timeout_ms;
};

static bool live(const struct dev_info *i, bool have_dev, const char *identifier)
{
	return have_dev && dev_info_carries(i, identifier);
}

/* Drops the journal entry, udev record and release record of INDEX unless the device they
 * describe is there (for a release record: still held open).
 * Under the state lock: an attach may be connecting this minor and journaling it right now. */
static void forget_if_gone(uint32_t index)
{
	_cleanup_(state_unlock) int lock = -1;
	struct dev_info i;
	struct state_rec st;
	struct claim c;
	bool have_dev;
	int r;

	(void)state_lock(&lock); /* best effort: without it, as before there was one */
	have_dev = dev_info_get(index, &i) == 0;
	r = state_read(index, &st);
	if ((r == 0 && !live(&i, have_dev, st.identifier)) || r == -EBADMSG)
		state_remove(index);
	r = udev_record_read(index, &c);
	if ((r == 0 && !live(&i, have_dev, c.identifier)) || r == -EBADMSG)
		udev_record_remove(index);
	r = release_record_read(index, &c);
	if ((r == 0 && !(have_dev && i.held_open)) || r == -EBADMSG)
		release_record_remove(index);
}

/* Tears down INDEX if it still carries IDENTIFIER (and, with TEARDOWN_IF_UNJOURNALED, still
 * has no journal entry): what was seen before the lock may have changed since. */
static int report_teardown(const struct cleanup_opts *o, uint32_t index, const char *identifier,
			   unsigned flags, const char *why)
{
	bool held = false;
	int r = teardown_device(index, identifier, flags, o->udev_timeout_ms, &held);

	if (r == -ESTALE || r == -EBUSY)
		return 0; /* no longer ours, or accounted for by now */
	if (r < 0) {
		log_error("cannot clean up '/dev/nbd%" PRIu32 "': %s", index, strerror(-r));
		return r;
	}
	printf("/dev/nbd%" PRIu32 ": detached (%s)%s\n", index, why,
	       held ? "; still held open by another process, freed at its last close" : "");
	return 0;
}

/* Is any live helper still attaching the device with IDENTIFIER? */
static bool claimed_by_live_helper(const char *identifier)
{
	_cleanup_free_ uint32_t *pids = NULL;
	size_t n = 0;
	struct claim c;

	if (claim_list(&pids, &n) < 0)
		return true; /* cannot tell: leave it */
	for (size_t k = 0; k < n; k++)
		if (claim_read((pid_t)pids[k], &c) == 0 && !strcmp(c.identifier, identifier) &&
		    helper_alive((pid_t)pids[k], 0, claim_time((pid_t)pids[k])))
			return true;
	return false;
}

/* Claims whose helper died: the device it may have connected is nobody's now, unless it has a
 * journal entry (its helper died after writing it, or was misjudged dead: a claim's liveness
 * rests on wall-clock time), which check_ours judges next. */
static int reap_claims(const struct cleanup_opts *o, const uint32_t *devs, size_t ndevs)
{
	_cleanup_free_ uint32_t *pids = NULL;
	size_t n = 0;
	int rc = 0, r;

	r = claim_list(&pids, &n);
	if (r < 0) {
		log_error("cannot clean up: cannot list '%s/claims': %s", state_base(), state_base_strerror(r));
		return -EIO;
	}
	for (size_t k = 0; k < n; k++) {
		struct claim c;

		if (helper_alive((pid_t)pids[k], 0, claim_time((pid_t)pids[k])))
			continue;
		if (claim_read((pid_t)pids[k], &c) == 0)
			for (size_t d = 0; d < ndevs; d++) {
				struct dev_info i;

				if (dev_info_get(devs[d], &i) == 0 && live(&i, true, c.identifier) &&
				    report_teardown(o, devs[d], c.identifier, TEARDOWN_IF_UNJOURNALED,
						    "its helper died while attaching it") < 0)
					rc = -EIO;
			}
		claim_remove((pid_t)pids[k]);
	}
	return rc;
}

/* One of our devices: keep it while a journal entry or a live helper accounts for it and its
 * server still answers. */
static int check_ours(const struct cleanup_opts *o, const struct dev_info *i)
{
	bool replaced;

	if (!i->have_state) {
		if (claimed_by_live_helper(i->backend))
			return 0;
		return report_teardown(o, i->index, i->backend, TEARDOWN_IF_UNJOURNALED,
				       "no journal entry: left by a killed helper");
	}
	/* "attach": the pid is its monitor's, which may be gone while the device is in use;
	 * "attaching" and "run": the helper's own, and the device is nobody's without it. */
	if (strcmp(i->st.owner, "attach") && !helper_alive((pid_t)i->st.pid, i->st.start, i->st.time))
		return report_teardown(o, i->index, i->backend, 0,
				       !strcmp(i->st.owner, "run") ? "its run was killed" : "its attach was killed");
	if (hs_server_gone(i->st.uri, &i->st.server, o->probe_timeout_ms, &replaced))
		return report_teardown(o, i->index, i->backend, 0, "its server is gone");
	if (replaced)
		log_error("warning: '/dev/nbd%" PRIu32 "' kept: its socket path now leads to another socket "
			  "or server than it was attached to, so whether its own server is gone cannot be told",
			  i->index);
	return 0;
}

/* Kills every process of a dead run: its recorded children and whatever inherited its id. */
static void kill_run_processes(const struct run_rec *rr)
{
	char id[48];

	for (unsigned k = 0; k < rr->n_children; k++)
		run_kill_started((pid_t)rr->children[k].pid, rr->children[k].start);
	snprintf(id, sizeof(id), "%" PRId64 ":%" PRIu64, rr->pid, rr->start);
	run_kill_id(id, NULL, 0);
}

static void reap_runs(void)
{
	_cleanup_free_ uint32_t *pids = NULL;
	size_t n = 0;

	if (run_list(&pids, &n) < 0)
		return;
	for (size_t k = 0; k < n; k++) {
		struct run_rec rr;
		int r = run_read((pid_t)pids[k], &rr);

		if (r == 0 && proc_is((pid_t)rr.pid, rr.start))
			continue; /* still running */
		if (r == 0) {
			kill_run_processes(&rr);
			printf("run %" PRId64 ": killed its processes (the helper died at step %s)\n", rr.pid, rr.step);
		}
		run_remove((pid_t)pids[k]);
	}
}

/* forget_if_gone for every minor that LIST names a record of. */
static void forget_listed(int (*list)(uint32_t **, size_t *))
{
	_cleanup_free_ uint32_t *v = NULL;
	size_t n = 0;

	if (list(&v, &n) == 0)
		for (size_t k = 0; k < n; k++)
			forget_if_gone(v[k]);
}

static int reconcile_all(const struct cleanup_opts *o)
{
	_cleanup_free_ uint32_t *devs = NULL;
	size_t ndevs = 0;
	int rc = 0;

	reap_runs();
	if (dev_list_indices(&devs, &ndevs) < 0)
		ndevs = 0;
	if (reap_claims(o, devs, ndevs) < 0)
		rc = -EIO;
	for (size_t k = 0; k < ndevs; k++) {
		struct dev_info i;

		if (dev_info_get(devs[k], &i) == 0 && i.ours && i.started && check_ours(o, &i) < 0)
			rc = -EIO;
	}
	forget_listed(state_list);
	forget_listed(udev_record_list);
	forget_listed(release_record_list);
	return rc;
}

static int parse_opts(int argc, char **argv, struct cleanup_opts *o)
{
	static const struct option lo[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "udev-timeout", required_argument, NULL, 'U' },
		{ "probe-timeout", required_argument, NULL, 'P' },
		OPT_HELP,
		{ 0 }
	};
	uint64_t v;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o->device = optarg; break;
		case 'U': if (parse_num_opt("--udev-timeout", optarg, 1, 3600, &v) < 0) return -EINVAL; o->udev_timeout_ms = (int)v * 1000; break;
		case 'P': if (parse_num_opt("--probe-timeout", optarg, 1, 600, &v) < 0) return -EINVAL; o->probe_timeout_ms = (int)v * 1000; break;
		case 'h': return PARSE_HELP;
		default: return usage_bad_option(argv[optind - 1], c);
		}
	}
	if (optind < argc) {
		log_usage("cleanup: unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

int cmd_cleanup(int argc, char **argv)
{
	struct cleanup_opts o = { .udev_timeout_ms = UDEV_TIMEOUT_DEFAULT_MS, .probe_timeout_ms = 5000 };
	uint32_t index;
	int r;

	r = parse_opts(argc, argv, &o);
	if (r)
		return r < 0 ? EXIT_USAGE : command_help(argv[0]);
	if (o.device && dev_parse_name(o.device, &index) < 0) {
		log_usage("cleanup: '%s' is not an nbd device (expected /dev/nbdN or nbdN)", o.device);
		return EXIT_USAGE;
	}
	if (geteuid() != 0) {
		log_error("cannot clean up: must be run as root");
		return EXIT_FAIL;
	}
	r = state_check_base();
	if (r < 0) {
		log_error("cannot clean up: state directory '%s': %s", state_base(), state_base_strerror(r));
		return EXIT_FAIL;
	}
	if (o.device) {
		forget_if_gone(index);
		return EXIT_OK;
	}
	return reconcile_all(&o) < 0 ? EXIT_FAIL : EXIT_OK;
}
