/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * nbdattach run [OPTIONS] --volume SPEC... -- PROVIDER [ARGS]: the main job. Attaches every
 * volume as one transaction (any failure releases all), produces each region map, spawns the
 * provider with the devices, maps and an acknowledgement pipe (described in NBDATTACH_RUN),
 * discards what it acknowledges (aligned), forwards termination signals, releases a volume
 * whose server dies, detaches everything and exits with the provider's status. Every step is
 * journaled first (runs/PID), so `nbdattach cleanup` can finish what a killed helper left.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ack.h"
#include "children.h"
#include "cleanup.h"
#include "clock.h"
#include "cmd-util.h"
#include "commands.h"
#include "devices.h"
#include "handshake.h"
#include "json.h"
#include "log.h"
#include "netlink.h"
#include "run.h"
#include "teardown.h"

#define ACK_LINES_PER_TURN 64   /* then signals, the provider's exit and TRIM replies get a turn */
#define ACK_DRAIN_MAX (1 << 20) /* bytes read after the provider exited (a pipe holds less) */

struct run {
	struct run_opts o;
	struct run_rec journal;
	char run_id[48];
	int sfd;                     /* signalfd: SIGINT, SIGTERM, SIGHUP, SIGQUIT */
	struct nbd_nl_events *ev;
	pid_t provider;
	int provider_pidfd, provider_status;
	bool provider_done;
	int ack_rd;
	char ack_buf[ACK_LINE_MAX];
	size_t ack_len;
	bool ack_broken;
	size_t ack_drained;          /* bytes read after the provider exited */
	int64_t kill_at_ms;          /* SIGKILL for the provider after a forwarded signal */
	int64_t release_at_ms;       /* detach, if the provider outlives that SIGKILL */
	bool stuck;                  /* it did: its volumes are being detached */
	bool interrupted;            /* a termination signal came: no waiting for TRIMs */
	bool helper_failed;          /* 125 when the provider exits 0 */
	bool fatal;                  /* 125 whatever the provider's status */
};

/* ---- options ---- */

static int parse_opt(struct run_opts *o, int c, const char *arg)
{
	uint64_t v;

	switch (c) {
	case 'v':
		if (o->n == RUN_VOLUMES_MAX) {
			log_usage("run: at most %d volumes", RUN_VOLUMES_MAX);
			return -EINVAL;
		}
		return volume_parse(arg, &o->vol[o->n++]);
	case 't':
		if (!dev_label_valid(arg))
			return usage_bad_label("--tag", arg);
		o->tag = arg;
		return 0;
	case 'm':
		if (strcmp(arg, "memfd") && strcmp(arg, "pipe")) {
			log_usage("invalid --map '%s' (expected memfd or pipe)", arg);
			return -EINVAL;
		}
		o->transport = strcmp(arg, "memfd") ? MAP_PIPE : MAP_MEMFD;
		return 0;
	case 'N': o->discard = false; return 0;
	case 'g': if (parse_num_opt("--grace", arg, 0, 3600, &v) < 0) return -EINVAL; o->grace_s = v; return 0;
	case 'T': return parse_num_opt("--timeout", arg, 0, TIMEOUT_MAX_S, &o->timeout);
	case 'D': return parse_num_opt("--dead-conn-timeout", arg, 0, 86400 * 365, &o->dead_conn_timeout);
	case 'U': if (parse_num_opt("--udev-timeout", arg, 1, 3600, &v) < 0) return -EINVAL; o->udev_timeout_ms = (int)v * 1000; return 0;
	}
	return -EINVAL;
}

static int check_names(const struct run_opts *o)
{
	for (unsigned i = 0; i < o->n; i++)
		for (unsigned k = 0; k < i; k++)
			if (!strcmp(o->vol[i].name, o->vol[k].name)) {
				log_usage("run: two volumes named '%s'", o->vol[i].name);
				return -EINVAL;
			}
	return 0;
}

static int parse_args(int argc, char **argv, struct run_opts *o)
{
	static const struct option lo[] = {
		{ "volume", required_argument, NULL, 'v' },
		{ "tag", required_argument, NULL, 't' },
		{ "map", required_argument, NULL, 'm' },
		{ "no-discard", no_argument, NULL, 'N' },
		{ "grace", required_argument, NULL, 'g' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "dead-conn-timeout", required_argument, NULL, 'D' },
		{ "udev-timeout", required_argument, NULL, 'U' },
		OPT_HELP,
		{ 0 }
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", lo, NULL)) != -1) {
		if (c == '?' || c == ':')
			return usage_bad_option(argv[optind - 1], c);
		if (c == 'h')
			return PARSE_HELP;
		if (parse_opt(o, c, optarg) < 0)
			return -EINVAL;
	}
	if (optind >= argc || strcmp(argv[optind - 1], "--") || !o->n) {
		log_usage(!o->n ? "run: no --volume given" : "run: expected -- PROVIDER [ARGS] after the options");
		return -EINVAL;
	}
	o->provider = argv + optind;
	return check_names(o);
}

/* ---- the provider's description (NBDATTACH_RUN) ---- */

static void describe_volume(FILE *f, const struct run_opts *o, const struct volume *v, unsigned i)
{
	fprintf(f, "%s{", i ? ", " : "");
	json_kv_str(f, "name", v->name, 1);
	fprintf(f, ", \"device\": \"/dev/nbd%" PRIu32 "\"", v->st.index);
	fprintf(f, ", \"link\": \"/dev/nbdattach/%s/%s\"", o->tag, v->name);
	fprintf(f, ", \"size\": %" PRIu64 ", \"block_size\": %" PRIu64 ", \"granularity\": %" PRIu64,
		v->st.size, v->st.block_size, v->granularity);
	json_kv_str(f, "bitmap", v->bitmap, 0);
	fprintf(f, ", \"full\": %s, \"map_fd\": %u", v->bitmap[0] ? "false" : "true", RUN_FD_MAP0 + i);
	fprintf(f, ", \"map_transport\": \"%s\"", o->transport == MAP_MEMFD ? "memfd" : "pipe");
	if (v->map_counted)
		fprintf(f, ", \"map_regions\": %" PRIu64 ", \"map_bytes\": %" PRIu64, v->map_count, v->map_total);
	fprintf(f, ", \"discard\": %s}", v->disc ? "true" : "false");
}

static char *describe(const struct run *run)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "NBDATTACH_RUN={\"version\": 1");
	json_kv_str(f, "tag", run->o.tag, 0);
	fprintf(f, ", \"ack_fd\": %d, \"volumes\": [", RUN_FD_ACK);
	for (unsigned i = 0; i < run->o.n; i++)
		describe_volume(f, &run->o, &run->o.vol[i], i);
	fprintf(f, "]}");
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

extern char **environ;

/* Our environment plus NBDATTACH_RUN and NBDATTACH_RUN_ID (ours replace inherited ones). The
 * id comes first, where a look at the start of /proc/PID/environ (ps e) finds it. */
static char **provider_env(const struct run *run, char **ret_desc, char **ret_id)
{
	size_t n = 0, k = 0;
	char **envp;

	*ret_desc = describe(run);
	if (!*ret_desc || asprintf(ret_id, "NBDATTACH_RUN_ID=%s", run->run_id) < 0)
		return NULL;
	while (environ[n])
		n++;
	envp = calloc(n + 3, sizeof(*envp));
	if (!envp)
		return NULL;
	envp[k++] = *ret_id;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "NBDATTACH_RUN=", 14) && strncmp(environ[i], "NBDATTACH_RUN_ID=", 17) &&
		    strncmp(environ[i], "NBDATTACH_FAULT=", 16))
			envp[k++] = environ[i];
	envp[k++] = *ret_desc;
	return envp;
}

/* ---- spawning ---- */

/* *RET_IN_SPAWN: the error is the spawn's (126/127), not the helper's (125). */
static int spawn_provider(struct run *run, int ack_wr, bool *ret_in_spawn)
{
	struct child_fd fds[1 + RUN_VOLUMES_MAX];
	_cleanup_free_ char *desc = NULL, *id = NULL;
	_cleanup_free_ char **envp = provider_env(run, &desc, &id);
	uint64_t start = 0;
	int r;

	if (!envp)
		return -ENOMEM;
	fds[0] = (struct child_fd){ .from = ack_wr, .to = RUN_FD_ACK };
	for (unsigned i = 0; i < run->o.n; i++)
		fds[1 + i] = (struct child_fd){ .from = run->o.vol[i].map_fd, .to = RUN_FD_MAP0 + (int)i };
	/* Its own session and process group: signals reach the provider's children too. */
	r = child_spawn_ex(run->o.provider[0], run->o.provider, envp, fds, 1 + run->o.n,
			   CHILD_SETSID | CHILD_SEARCH_PATH, &run->provider, ret_in_spawn);
	if (r < 0)
		return r;
	proc_start_time(run->provider, &start);
	if (run->journal.n_children < RUN_CHILDREN_MAX)
		run->journal.children[run->journal.n_children++] = (struct run_child){ .pid = run->provider, .start = start };
	run_write(&run->journal);
	r = child_pidfd(run->provider, &run->provider_pidfd);
	if (r < 0) { /* untracked, it must not outlive us with the devices gone */
		kill(-run->provider, SIGKILL);
		child_reap(run->provider, &run->provider_status);
	}
	return r;
}

/* ---- acknowledgements: "NAME OFFSET LENGTH\n" ---- */

static struct volume *volume_named(struct run *run, const char *name)
{
	for (unsigned i = 0; i < run->o.n; i++)
		if (!strcmp(run->o.vol[i].name, name))
			return &run->o.vol[i];
	return NULL;
}

static int ack_line(struct run *run, const char *line, size_t len)
{
	struct ack a;
	struct volume *v;

	if (ack_parse(line, len, &a) < 0 || !(v = volume_named(run, a.name)))
		return -EBADMSG;
	return volume_ack(v, a.offset, a.length) < 0 ? -EBADMSG : 0;
}

/* A provider that breaks the protocol gets no more discards (discarding less is safe). */
static void ack_broken(struct run *run, const char *why)
{
	if (!run->ack_broken)
		log_error("warning: provider sent %s on the acknowledgement pipe: no more discards", why);
	run->ack_broken = true;
}

static size_t trims_in_flight(const struct run *run, size_t *ret_max)
{
	size_t sum = 0, max = 0;

	for (unsigned i = 0; i < run->o.n; i++) {
		size_t n = volume_trims_in_flight(&run->o.vol[i]);

		sum += n;
		max = n > max ? n : max;
	}
	if (ret_max)
		*ret_max = max;
	return sum;
}

/* Acknowledgements are read while no volume has RUN_TRIMS_BUSY TRIMs in flight. */
static bool ack_wanted(const struct run *run)
{
	size_t max;

	if (run->ack_rd < 0)
		return false;
	trims_in_flight(run, &max);
	return max < RUN_TRIMS_BUSY;
}

/* Whether to read without waiting for the pipe: a whole line is buffered, or the provider is
 * gone and what the pipe holds is all there is to wait for. */
static bool ack_ready(const struct run *run)
{
	return ack_wanted(run) && (run->provider_done || memchr(run->ack_buf, '\n', run->ack_len));
}

static void ack_close(struct run *run)
{
	if (run->ack_len)
		ack_broken(run, "an incomplete last line");
	close(run->ack_rd);
	run->ack_rd = -1;
	run->ack_len = 0;
}

/* Handles one buffered line, if there is a whole one. */
static bool ack_take_line(struct run *run)
{
	char *nl = memchr(run->ack_buf, '\n', run->ack_len);
	size_t n;

	if (!nl)
		return false;
	n = (size_t)(nl - run->ack_buf) + 1;
	if (!run->ack_broken && ack_line(run, run->ack_buf, n) < 0)
		ack_broken(run, "a malformed line");
	memmove(run->ack_buf, run->ack_buf + n, run->ack_len - n);
	run->ack_len -= n;
	return true;
}

/* Reads more; false when there is nothing now. The pipe is closed at its end, and once the
 * provider is gone also when it is empty (a stray holder of its write end must not keep the
 * run waiting) or has given ACK_DRAIN_MAX bytes. */
static bool ack_fill(struct run *run)
{
	ssize_t n;

	if (run->ack_len == sizeof(run->ack_buf)) {
		ack_broken(run, "an overlong line");
		run->ack_len = 0;
	}
	do
		n = read(run->ack_rd, run->ack_buf + run->ack_len, sizeof(run->ack_buf) - run->ack_len);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		run->ack_len += (size_t)n;
		if (run->provider_done && (run->ack_drained += (size_t)n) > ACK_DRAIN_MAX) {
			ack_broken(run, "more than 1 MiB after exiting");
			ack_close(run);
			return false;
		}
		return true;
	}
	if (n == 0 || errno != EAGAIN || run->provider_done)
		ack_close(run);
	return false;
}

/* At most ACK_LINES_PER_TURN lines and as many reads a turn (a provider streaming bytes
 * without a newline must not keep the loop here), none while TRIMs pile up. */
static void ack_read(struct run *run)
{
	unsigned lines = 0, reads = 0;

	while (lines < ACK_LINES_PER_TURN && reads < ACK_LINES_PER_TURN && ack_wanted(run)) {
		if (ack_take_line(run))
			lines++;
		else if (reads++, !ack_fill(run))
			return;
	}
}

/* ---- events ---- */

static void on_link_dead(void *opaque, uint32_t index)
{
	struct run *run = opaque;

	for (unsigned i = 0; i < run->o.n; i++) {
		struct volume *v = &run->o.vol[i];

		if (v->attached && v->st.index == index && !v->dead) {
			v->dead = true;
			v->dead_since_ms = now_ms();
		}
	}
}

/* Events were dropped (the socket's buffer overran): a LINK_DEAD among them would never come
 * again, so ask each volume's server whether it is still there. */
static void read_link_events(struct run *run)
{
	if (nbd_nl_events_read(run->ev) != -ENOBUFS)
		return;
	for (unsigned i = 0; i < run->o.n; i++) {
		struct volume *v = &run->o.vol[i];

		if (v->attached && !v->dead && hs_server_gone(v->uri, &v->st.server, 5000, NULL))
			on_link_dead(run, v->st.index);
	}
}

static void forward_signal(struct run *run, int sig)
{
	run->interrupted = true;
	if (run->provider_done)
		return;
	kill(-run->provider, sig);
	if (run->kill_at_ms < 0)
		run->kill_at_ms = now_ms() + (int64_t)run->o.grace_s * 1000;
}

static void read_signals(struct run *run)
{
	struct signalfd_siginfo si;

	while (read(run->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		forward_signal(run, (int)si.ssi_signo);
}

/* Whatever the provider started that left its process group (setsid, a daemon) still carries
 * our run id: killed too, but for our map writers (reaped, and judged, at release). */
static void kill_strays(const struct run *run)
{
	pid_t spare[RUN_VOLUMES_MAX];
	size_t n = 0;

	for (unsigned i = 0; i < run->o.n; i++)
		if (run->o.vol[i].map_pid > 0)
			spare[n++] = run->o.vol[i].map_pid;
	run_kill_id(run->run_id, spare, n);
}

/* The provider, its process group's leader, exited (or must go). Until it is reaped its zombie
 * keeps the group id from being reused, so whatever is left of the group (members that ignored
 * a forwarded signal, background jobs) is killed first, and then what left the group: nothing
 * of the provider outlives the run. */
static void provider_exited(struct run *run)
{
	kill(-run->provider, SIGKILL);
	if (child_reap(run->provider, &run->provider_status) < 0)
		run->provider_status = 255 << 8;
	kill_strays(run);
	run->provider_done = true;
	run->kill_at_ms = -1;
	run->release_at_ms = -1;
	close(run->provider_pidfd);
	run->provider_pidfd = -1;
}

/* A volume whose server died: once --dead-conn-timeout has passed, DISCONNECT it, so that
 * the provider's reads fail with EIO instead of hanging. */
static int64_t release_dead(struct run *run)
{
	int64_t next = -1;

	for (unsigned i = 0; i < run->o.n; i++) {
		struct volume *v = &run->o.vol[i];
		int64_t due = v->dead_since_ms + (int64_t)run->o.dead_conn_timeout * 1000;

		if (!v->dead || v->released)
			continue;
		if (now_ms() >= due) {
			log_error("volume '%s': the server went away: releasing /dev/nbd%" PRIu32, v->name, v->st.index);
			run->helper_failed = true;
			volume_close_discards(v);
			journal_step(&run->journal, "detach", v->name);
			volume_release(&run->o, v, true);
		} else if (next < 0 || due < next) {
			next = due;
		}
	}
	return next;
}

static int64_t earliest(int64_t a, int64_t b)
{
	return a < 0 ? b : b < 0 || a < b ? a : b;
}

static int poll_timeout(const struct run *run, int64_t due)
{
	int64_t now = now_ms();

	if (ack_ready(run))
		return 0;
	due = earliest(due, earliest(run->kill_at_ms, run->release_at_ms));
	for (unsigned i = 0; i < run->o.n; i++)
		due = earliest(due, volume_trim_deadline(&run->o.vol[i]));
	if (due < 0)
		return -1;
	/* --dead-conn-timeout may be up to a year: more milliseconds than poll's int holds. */
	return due <= now ? 0 : due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

enum { P_SIG, P_PROVIDER, P_ACK, P_NL, P_TRIM0, P_MAX = P_TRIM0 + RUN_VOLUMES_MAX };

static nfds_t fill_poll(const struct run *run, struct pollfd *p)
{
	p[P_SIG] = (struct pollfd){ .fd = run->sfd, .events = POLLIN };
	p[P_PROVIDER] = (struct pollfd){ .fd = run->provider_done ? -1 : run->provider_pidfd, .events = POLLIN };
	p[P_ACK] = (struct pollfd){ .fd = ack_wanted(run) ? run->ack_rd : -1, .events = POLLIN };
	p[P_NL] = (struct pollfd){ .fd = run->provider_done ? -1 : nbd_nl_events_fd(run->ev), .events = POLLIN };
	for (unsigned i = 0; i < run->o.n; i++)
		if (volume_trim_pollfd(&run->o.vol[i], &p[P_TRIM0 + i]) < 0)
			p[P_TRIM0 + i] = (struct pollfd){ .fd = -1 };
	return P_TRIM0 + run->o.n;
}

static void dispatch(struct run *run, const struct pollfd *p)
{
	if (p[P_SIG].revents)
		read_signals(run);
	if (p[P_NL].revents)
		read_link_events(run);
	for (unsigned i = 0; i < run->o.n; i++) /* also when not reported: the trim timeout */
		volume_trim_dispatch(&run->o.vol[i], p[P_TRIM0 + i].revents);
	if (p[P_ACK].revents || ack_ready(run))
		ack_read(run);
	if (p[P_PROVIDER].revents)
		provider_exited(run);
}

/* A provider that outlives its SIGKILL by the grace period (at least a second) waits in I/O
 * that its server does not answer (a live connection with --timeout 0 never times out, and an
 * O_DIRECT read cannot be killed): its volumes are detached, which fails that I/O, so that the
 * provider can die and the signal end the run. */
static void release_stuck(struct run *run)
{
	bool left = false;

	if (!run->stuck)
		log_error("the provider outlived SIGKILL by %" PRIu64 " s (waiting for its server?): detaching "
			  "its volumes", run->o.grace_s ? run->o.grace_s : 1);
	run->stuck = true;
	run->helper_failed = true;
	run->release_at_ms = -1;
	for (unsigned i = 0; i < run->o.n; i++) {
		struct volume *v = &run->o.vol[i];

		volume_close_discards(v);
		if (v->attached && !v->released)
			journal_step(&run->journal, "detach", v->name);
		if (volume_release(&run->o, v, true) < 0)
			left = true;
	}
	if (left) /* a failed detach is tried again, once a second */
		run->release_at_ms = now_ms() + 1000;
}

static void wait_provider(struct run *run)
{
	while (!run->provider_done) {
		struct pollfd p[P_MAX];
		int64_t dead_due = release_dead(run);
		nfds_t n;

		if (run->kill_at_ms >= 0 && now_ms() >= run->kill_at_ms) {
			kill(-run->provider, SIGKILL);
			run->kill_at_ms = -1;
			/* armed once: further signals (a second Ctrl-C) do not put it off */
			if (run->release_at_ms < 0 && !run->stuck)
				run->release_at_ms = now_ms() + (int64_t)(run->o.grace_s ? run->o.grace_s : 1) * 1000;
		}
		if (run->release_at_ms >= 0 && now_ms() >= run->release_at_ms)
			release_stuck(run);
		n = fill_poll(run, p);
		if (poll(p, n, poll_timeout(run, dead_due)) < 0) {
			if (errno == EINTR)
				continue;
			/* Blind from here on: the provider must not go on with devices nobody watches.
			 * It is reaped once they are detached (its reads may wait for them). */
			log_error("cannot run: poll failed: %s: killing the provider", strerror(errno));
			run->fatal = true;
			kill(-run->provider, SIGKILL);
			return;
		}
		dispatch(run, p);
	}
}

/* After the provider and the devices are gone: its last acknowledgements are read and trimmed,
 * and TRIMs in flight are waited for (each reply within the trim timeout), unless a signal
 * asked the helper to hurry. */
static void finish_discards(struct run *run)
{
	while (!run->interrupted && (run->ack_rd >= 0 || trims_in_flight(run, NULL))) {
		struct pollfd p[P_MAX];
		nfds_t n = fill_poll(run, p);

		if (poll(p, n, poll_timeout(run, -1)) < 0 && errno != EINTR) {
			log_error("warning: poll failed: %s: no more discards", strerror(errno));
			break;
		}
		dispatch(run, p);
	}
	if (run->ack_rd >= 0) {
		close(run->ack_rd);
		run->ack_rd = -1;
	}
}

/* ---- the run ---- */

/* Detaches every volume, each journaled first; map writers are reaped on the way. */
static void release_volumes(struct run *run)
{
	for (unsigned i = 0; i < run->o.n; i++) {
		struct volume *v = &run->o.vol[i];

		if (v->attached && !v->released)
			journal_step(&run->journal, "detach", v->name);
		if (volume_release(&run->o, v, false) < 0)
			run->helper_failed = true;
		if (v->map_failed)
			run->helper_failed = true; /* the provider may have got a map without its trailer */
	}
}

static void close_discards(struct run *run)
{
	for (unsigned i = 0; i < run->o.n; i++)
		volume_close_discards(&run->o.vol[i]);
}

static void report(const struct run *run)
{
	for (unsigned i = 0; i < run->o.n; i++) {
		const struct volume *v = &run->o.vol[i];

		if (!v->attached)
			continue;
		fprintf(stderr, "nbdattach: volume '%s' /dev/nbd%" PRIu32 ": ", v->name, v->st.index);
		if (v->map_counted)
			fprintf(stderr, "map %" PRIu64 " regions %" PRIu64 " bytes, ", v->map_count, v->map_total);
		fprintf(stderr, "discarded %" PRIu64 " bytes in %" PRIu64 " requests\n", v->trimmed, v->trim_requests);
	}
}

static int setup_signals(struct run *run)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	run->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return run->sfd < 0 ? -errno : 0;
}

/* A termination signal during setup: roll back and report it as the status. */
static int pending_signal(struct run *run)
{
	struct signalfd_siginfo si;

	return read(run->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) ? (int)si.ssi_signo : 0;
}

static int setup_volumes(struct run *run)
{
	for (unsigned i = 0; i < run->o.n; i++) {
		int sig, r = volume_setup(&run->o, &run->o.vol[i], &run->journal, run->run_id);

		if (r < 0)
			return EXIT_RUN_HELPER;
		sig = pending_signal(run);
		if (sig) {
			log_error("run interrupted by signal %d while attaching: releasing everything", sig);
			return 128 + sig;
		}
	}
	return 0;
}

static int start(struct run *run)
{
	bool in_spawn = false;
	int p[2], r;

	if (pipe2(p, O_CLOEXEC) < 0) {
		log_error("cannot run: cannot create the acknowledgement pipe: %s", strerror(errno));
		return EXIT_RUN_HELPER;
	}
	run->ack_rd = p[0];
	fcntl(run->ack_rd, F_SETFL, O_NONBLOCK);
	r = journal_step(&run->journal, "spawn", NULL);
	if (r == 0)
		r = spawn_provider(run, p[1], &in_spawn);
	close(p[1]);
	for (unsigned i = 0; i < run->o.n; i++) { /* the provider has its own copies now */
		close(run->o.vol[i].map_fd);
		run->o.vol[i].map_fd = -1;
	}
	if (r < 0) {
		log_error("cannot run '%s': %s", run->o.provider[0], strerror(-r));
		if (!in_spawn)
			return EXIT_RUN_HELPER;
		return r == -ENOENT || r == -ENOTDIR ? EXIT_RUN_NOT_FOUND : EXIT_RUN_CANNOT_EXEC;
	}
	journal_step(&run->journal, "wait", NULL);
	return 0;
}

static int exit_status(const struct run *run)
{
	int code = child_exit_code(run->provider_status);

	if (run->fatal)
		return EXIT_RUN_HELPER;
	return code == 0 && run->helper_failed ? EXIT_RUN_HELPER : code;
}

static int run_main(struct run *run)
{
	int rc = setup_signals(run) < 0 ? EXIT_RUN_HELPER : 0, r;

	if (rc == 0 && (r = nbd_nl_events_open(on_link_dead, run, &run->ev)) < 0) {
		if (r == -NBD_NL_ENOFAMILY)
			log_error("cannot run: nbd kernel module not loaded: run 'modprobe nbd' (see modprobe.d/nbdattach.conf)");
		else
			log_error("cannot run: cannot subscribe to the nbd netlink events: %s", strerror(-r));
		rc = EXIT_RUN_HELPER;
	}
	if (rc == 0 && journal_step(&run->journal, "begin", NULL) < 0) {
		log_error("cannot run: cannot write the run journal");
		rc = EXIT_RUN_HELPER;
	}
	if (rc == 0)
		rc = setup_volumes(run);
	if (rc == 0)
		rc = start(run);
	if (rc == 0)
		wait_provider(run);
	/* The devices first: they are not kept waiting for TRIMs (over connections of our own). */
	release_volumes(run);
	if (rc == 0 && !run->provider_done)
		provider_exited(run);
	if (rc == 0)
		finish_discards(run);
	close_discards(run);
	if (run->ack_rd >= 0)
		close(run->ack_rd);
	if (rc == 0) {
		report(run);
		rc = exit_status(run);
	}
	journal_step(&run->journal, "end", NULL);
	run_remove(getpid());
	nbd_nl_events_free(run->ev);
	return rc;
}

static void init_run(struct run *run)
{
	uint64_t start = 0;

	proc_start_time(getpid(), &start);
	*run = (struct run){ .o = { .transport = MAP_MEMFD, .discard = true, .grace_s = 10,
				    .udev_timeout_ms = UDEV_TIMEOUT_DEFAULT_MS },
			     .sfd = -1, .provider_pidfd = -1, .ack_rd = -1, .kill_at_ms = -1,
			     .release_at_ms = -1 };
	run->journal.pid = getpid();
	run->journal.start = start;
	snprintf(run->run_id, sizeof(run->run_id), "%ld:%" PRIu64, (long)getpid(), start);
}

int cmd_run(int argc, char **argv)
{
	_cleanup_free_ struct run *run = calloc(1, sizeof(*run));
	int r;

	if (!run) {
		log_error("cannot run: out of memory");
		return EXIT_RUN_HELPER;
	}
	init_run(run);
	/* A usage error is the helper's too: 2 could be the provider's own status. */
	r = parse_args(argc, argv, &run->o);
	if (r)
		return r < 0 ? EXIT_RUN_HELPER : command_help(argv[0]);
	if (!run->o.tag) {
		snprintf(run->o.tag_buf, sizeof(run->o.tag_buf), "run-%ld", (long)getpid());
		run->o.tag = run->o.tag_buf;
	}
	if (geteuid() != 0) {
		log_error("cannot run: must be run as root (needs CAP_SYS_ADMIN for the nbd netlink interface)");
		return EXIT_RUN_HELPER;
	}
	return run_main(run);
}
