/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * nbdattach monitor DEVICE --identifier ID [--dead-conn-timeout S]: started by attach, one per
 * device. The kernel keeps a netlink-connected device after its server dies (it only sends
 * NBD_CMD_LINK_DEAD on its multicast group and fails new I/O), so someone has to release it:
 * on LINK_DEAD, once --dead-conn-timeout has passed, this disconnects the device and removes
 * its records. It exits as soon as the device is no longer the one it watches (detached by
 * anyone), and never holds the device open.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cmd-util.h"
#include "commands.h"
#include "handshake.h"
#include "log.h"
#include "netlink.h"
#include "ownership.h"
#include "teardown.h"
#include "udev.h"

struct monitor {
	uint32_t index;
	const char *identifier;
	uint64_t dead_conn_timeout;
	int udev_timeout_ms;
	int events_fd;           /* attach's subscription to LINK_DEAD, handed over */
	bool dead;
	char sysname[32];
};

static void on_link_dead(void *opaque, uint32_t index)
{
	struct monitor *m = opaque;

	if (index == m->index)
		m->dead = true;
}

static bool still_ours(const struct monitor *m)
{
	struct dev_info i;

	return dev_info_get(m->index, &i) == 0 && i.started && i.size_sectors > 0 &&
	       !strcmp(i.backend, m->identifier);
}

/* A death between attach and our subscription, or while events were being dropped, sent its
 * LINK_DEAD to nobody: ask the server. */
static bool server_gone(const struct monitor *m)
{
	struct dev_info i;

	return dev_info_get(m->index, &i) == 0 && i.have_state && hs_server_gone(i.st.uri, &i.st.server, 5000, NULL);
}

static int watch(struct monitor *m, struct nbd_nl_events *ev, struct udev_wait *uw)
{
	struct pollfd p[2] = {
		{ .fd = nbd_nl_events_fd(ev), .events = POLLIN },
		{ .fd = udev_wait_fd(uw), .events = POLLIN },
	};
	int64_t deadline = -1;

	for (;;) {
		int64_t left;
		int timeout, r;

		if (m->dead && deadline < 0)
			deadline = now_ms() + (int64_t)m->dead_conn_timeout * 1000;
		if (m->dead && now_ms() >= deadline)
			return still_ours(m) ? teardown_device(m->index, m->identifier, 0, m->udev_timeout_ms, NULL) : 0;
		/* At most a minute per wait: a deadline weeks away would overflow an int. */
		left = deadline - now_ms();
		timeout = deadline < 0 ? -1 : left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
		if (poll(p, 2, timeout) < 0 && errno != EINTR)
			return -errno;
		r = nbd_nl_events_read(ev);
		if (r == -ENOBUFS && !m->dead && server_gone(m))
			m->dead = true;
		else if (r < 0 && r != -ENOBUFS)
			return -EIO;
		if (udev_wait_drain(uw, m->sysname) > 0 && !still_ours(m))
			return 0; /* detached (by anyone): nothing left to watch */
	}
}

static int monitor(struct monitor *m)
{
	struct nbd_nl_events *ev = NULL;
	struct udev_wait *uw = NULL;
	/* attach's own subscription, from before CONNECT: every LINK_DEAD since is queued on it.
	 * Started by hand, we subscribe now and ask the server about what came before. */
	int r = m->events_fd >= 0 ? nbd_nl_events_adopt(m->events_fd, on_link_dead, m, &ev)
				  : nbd_nl_events_open(on_link_dead, m, &ev);

	if (r >= 0)
		r = udev_wait_new(&uw);
	if (r >= 0 && still_ours(m)) {
		if (m->events_fd < 0 && server_gone(m))
			m->dead = true;
		r = watch(m, ev, uw);
	}
	udev_wait_free(uw);
	nbd_nl_events_free(ev);
	if (r < 0) /* to nobody when attach started us (stdio on /dev/null); by hand, to the user */
		log_error("cannot monitor '/dev/%s': %s", m->sysname,
			  r == -NBD_NL_ENOFAMILY ? "nbd kernel module not loaded" : strerror(-r));
	return r;
}

int cmd_monitor(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "identifier", required_argument, NULL, 'i' },
		{ "dead-conn-timeout", required_argument, NULL, 'D' },
		{ "events-fd", required_argument, NULL, 'E' },
		OPT_HELP,
		{ 0 }
	};
	struct monitor m = { .udev_timeout_ms = UDEV_TIMEOUT_DEFAULT_MS, .events_fd = -1 };
	uint64_t v;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case 'h': return command_help(argv[0]);
		case 'i': m.identifier = optarg; break;
		case 'D': if (parse_num_opt("--dead-conn-timeout", optarg, 0, 86400 * 365, &v) < 0) return EXIT_USAGE; m.dead_conn_timeout = v; break;
		case 'E': if (parse_num_opt("--events-fd", optarg, 3, INT32_MAX, &v) < 0) return EXIT_USAGE; m.events_fd = (int)v; break;
		default: usage_bad_option(argv[optind - 1], c); return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !m.identifier || dev_parse_name(argv[optind], &m.index) < 0) {
		log_usage("monitor: expected DEVICE --identifier ID");
		return EXIT_USAGE;
	}
	snprintf(m.sysname, sizeof(m.sysname), "nbd%" PRIu32, m.index);
	/* It lives as long as the device: it must not keep its caller's directory (a mount point
	 * of the caller's) busy all that time. */
	if (chdir("/") < 0)
		return EXIT_FAIL;
	return monitor(&m) < 0 ? EXIT_FAIL : EXIT_OK;
}
