/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The volumes of `nbdattach run`: --volume parsing, attach + map + discard connection for each,
 * and release. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach.h"
#include "children.h"
#include "cleanup.h"
#include "cmd-util.h"
#include "commands.h"
#include "fault.h"
#include "log.h"
#include "pin.h"
#include "regionmap.h"
#include "run.h"
#include "teardown.h"

int journal_step(struct run_rec *j, const char *step, const char *name)
{
	int r;

	snprintf(j->step, sizeof(j->step), "%s%s%s", step, name ? ":" : "", name ? name : "");
	r = run_write(j);
	if (r < 0)
		return r;
	fault_point(step, name);
	return 0;
}

/* ---- --volume name=N,bitmap=B|full,granularity=G,connections=C,block-size=S,uri=URI ---- */

static int spec_value(struct volume *v, const char *key, const char *val)
{
	uint64_t x;

	if (!strcmp(key, "name")) {
		if (!dev_label_valid(val))
			return usage_bad_label("volume name", val);
		snprintf(v->name, sizeof(v->name), "%s", val);
	} else if (!strcmp(key, "bitmap")) {
		if (parse_bitmap_opt("volume bitmap name", val) < 0)
			return -EINVAL;
		snprintf(v->bitmap, sizeof(v->bitmap), "%s", strcmp(val, "full") ? val : "");
	} else if (!strcmp(key, "granularity")) {
		/* Requests are capped at one granule, and the kernel's smallest cap is a page. */
		if (parse_pow2_opt("volume granularity", val, page_size(), REGIONMAP_GRANULARITY_MAX, &x) < 0)
			return -EINVAL;
		v->granularity = x;
	} else if (!strcmp(key, "connections")) {
		if (parse_num_opt("volume connections", val, 1, 16, &x) < 0)
			return -EINVAL;
		v->connections = (unsigned)x;
	} else if (!strcmp(key, "block-size")) {
		if (parse_pow2_opt("volume block-size", val, 512, page_size(), &x) < 0)
			return -EINVAL;
		v->block_size = x;
	} else {
		log_usage("unknown volume key '%s' (name, uri, bitmap, granularity, connections, block-size)", key);
		return -EINVAL;
	}
	return 0;
}

int volume_parse(const char *spec, struct volume *v)
{
	/* Room for the longest of everything: name, bitmap name, a journaled URI, the numbers. */
	char buf[4096];
	char *p = buf;

	_Static_assert(sizeof(buf) > 128 + DEV_LABEL_MAX + BITMAP_NAME_MAX + STATE_URI_MAX,
		       "a --volume spec holds every key at its longest");

	*v = (struct volume){ .granularity = 65536, .map_fd = -1, .map_pidfd = -1 };
	if (strlen(spec) >= sizeof(buf)) {
		log_usage("--volume spec too long (at most %zu bytes)", sizeof(buf) - 1);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	while (p && *p) {
		char *eq = strchr(p, '='), *comma;

		if (!eq) {
			log_usage("invalid --volume '%s' (expected KEY=VALUE,...,uri=URI)", spec);
			return -EINVAL;
		}
		*eq = 0;
		if (!strcmp(p, "uri")) { /* the URI is last and may hold commas */
			const char *why;

			v->uri = spec + (eq + 1 - buf);
			if ((why = uri_unsupported(v->uri))) {
				log_usage("invalid --volume '%s': %s", spec, why);
				return -EINVAL;
			}
			break;
		}
		comma = strchr(eq + 1, ',');
		if (comma)
			*comma = 0;
		if (spec_value(v, p, eq + 1) < 0)
			return -EINVAL;
		p = comma ? comma + 1 : NULL;
	}
	if (!v->uri || !*v->uri || !v->name[0]) {
		log_usage("invalid --volume '%s' (name= and uri= are required, uri= last)", spec);
		return -EINVAL;
	}
	return 0;
}

/* ---- setup ---- */

static int attach_volume(const struct run_opts *o, struct volume *v)
{
	struct attach_req req = {
		.uri = v->uri, .tag = o->tag, .name = v->name, .bitmap = v->bitmap[0] ? v->bitmap : NULL,
		.read_only = true, .no_monitor = true, .for_run = true, .connections = v->connections,
		.block_size = v->block_size, .timeout = o->timeout,
		.dead_conn_timeout = o->dead_conn_timeout, .udev_timeout_ms = o->udev_timeout_ms,
		/* QEMU 7.2's snapshot-access answers a simple-reply read spanning a cluster already
		 * copied to the fleecing image and one not yet copied with the guest's new data: one
		 * granule (the copy-before-write cluster) per request at most, within nbd's 32 MiB. */
		.max_request = v->granularity < MAX_REQUEST_MAX ? v->granularity : MAX_REQUEST_MAX,
		/* ... and merging off, else the block layer merges a provider's neighbouring reads
		 * into one request (within the cap) across two clusters. Full maps read snapshots too. */
		.snapshot = true,
	};
	struct attach_result res;
	const char *what = NULL;
	int r = attach_device(&req, &res, &what);

	if (r < 0) {
		fail_attach(v->uri, r, what);
		return r;
	}
	v->st = res.st;
	v->attached = true;
	return 0;
}

/* The map comes from the socket the volume was attached to (pin.h): opened here, and
 * connected to through the descriptor, in this process or the map writer. */
static int pin_volume(struct volume *v, struct pinned_uri *ret)
{
	int r = pin_open(v->uri, &v->st.server, ret);

	if (r < 0)
		log_error("cannot map volume '%s': %s", v->name, pin_strerror(r));
	return r;
}

/* Memfd transport: the whole map, sealed, before the provider starts. PINNED: the volume's
 * URI through its pinned socket. */
static int map_memfd(struct volume *v, const char *pinned)
{
	char name[96];
	int fd, r;

	snprintf(name, sizeof(name), "nbdattach-map-%s", v->name);
	r = regionmap_memfd_create(name, &fd);
	if (r < 0) {
		log_error("cannot map volume '%s': %s", v->name, strerror(-r));
		return r;
	}
	r = map_binary(v->uri, pinned, &v->st.server, v->bitmap[0] ? v->bitmap : NULL, v->granularity, fd,
		       &v->map_count, &v->map_total);
	if (r < 0) {
		close(fd);
		return r;
	}
	v->map_counted = true;
	v->map_fd = fd;
	return 0;
}

/* Pipe transport: a writer child (nbdattach map) streams the map while the provider reads it;
 * constant memory at both ends whatever the map's size. */
static int map_pipe(struct volume *v, const struct pinned_uri *pin, struct run_rec *j, const char *run_id)
{
	char gran[24], uid[24], env[128];
	char *argv[] = { "nbdattach", "map", "--granularity", gran, "--output-fd", "3", NULL, NULL, NULL, NULL,
			 NULL, NULL, NULL, NULL, NULL };
	int n = 6;
	char *envp[] = { env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	int p[2], r;
	struct child_fd fds[] = { { .to = 3 }, { .from = STDERR_FILENO, .to = 2 }, { .from = pin->fd, .to = 4 } };

	snprintf(gran, sizeof(gran), "%" PRIu64, v->granularity);
	snprintf(env, sizeof(env), "NBDATTACH_RUN_ID=%s", run_id);
	/* The writer connects through the pinned socket, its descriptor 4, to the attach's server. */
	if (pin->fd >= 0)
		argv[n++] = "--socket-fd", argv[n++] = "4";
	if (v->bitmap[0])
		argv[n++] = "--bitmap", argv[n++] = v->bitmap;
	else
		argv[n++] = "--full";
	if (v->st.server.known) {
		snprintf(uid, sizeof(uid), "%" PRIu32, v->st.server.uid);
		argv[n++] = "--server-uid", argv[n++] = uid;
	}
	argv[n] = (char *)v->uri;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	fds[0].from = p[1];
	/* A session of its own: a terminal's Ctrl-C reaches the helper (which decides), not the
	 * writer directly. */
	r = child_spawn(self_exe(), argv, envp, fds, pin->fd >= 0 ? 3 : 2, CHILD_SETSID | CHILD_NULL_STDIO,
			&v->map_pid);
	close(p[1]);
	if (r == 0)
		r = child_pidfd(v->map_pid, &v->map_pidfd);
	if (r < 0 && v->map_pid) { /* untracked: not yet reaped, so its pid is still its own */
		kill(v->map_pid, SIGKILL);
		child_reap(v->map_pid, &v->map_status);
		v->map_pid = 0;
	}
	if (r == 0 && j->n_children < RUN_CHILDREN_MAX) {
		uint64_t start = 0;

		proc_start_time(v->map_pid, &start);
		j->children[j->n_children++] = (struct run_child){ .pid = v->map_pid, .start = start };
		r = run_write(j);
	}
	if (r < 0) {
		close(p[0]);
		log_error("cannot map volume '%s': cannot start the map writer: %s", v->name, strerror(-r));
		return r;
	}
	v->map_fd = p[0];
	return 0;
}

static void open_discards(const struct run_opts *o, struct volume *v)
{
	char why[256] = "";
	int r;

	if (!o->discard)
		return;
	/* The server must answer a TRIM within --timeout (NBD_TRIMMER_TIMEOUT_MS when 0). */
	r = nbd_trimmer_open(v->uri, &v->st.server, (int64_t)o->timeout * 1000, &v->trimmer, why, sizeof(why));
	if (r == 0)
		r = discarder_new(v->st.size, v->granularity, nbd_trimmer_trim, v->trimmer, &v->disc);
	if (r < 0) {
		log_error("warning: volume '%s': backed-up ranges will not be discarded: %s", v->name,
			  why[0] ? why : strerror(-r));
		nbd_trimmer_close(v->trimmer);
		v->trimmer = NULL;
	}
}

static int map_volume(const struct run_opts *o, struct volume *v, struct run_rec *journal, const char *run_id)
{
	_cleanup_(pin_close) struct pinned_uri pin = { .fd = -1 };
	int r = pin_volume(v, &pin);

	if (r == 0)
		r = o->transport == MAP_MEMFD ? map_memfd(v, pin.uri) : map_pipe(v, &pin, journal, run_id);
	return r;
}

int volume_setup(const struct run_opts *o, struct volume *v, struct run_rec *journal, const char *run_id)
{
	int r = journal_step(journal, "attach", v->name);

	if (r == 0)
		r = attach_volume(o, v);
	if (r == 0)
		r = journal_step(journal, "map", v->name);
	if (r == 0)
		r = map_volume(o, v, journal, run_id);
	if (r == 0)
		open_discards(o, v);
	return r;
}

/* ---- discards ---- */

static void keep_counts(struct volume *v)
{
	if (!v->trimmer)
		return;
	v->trimmed = nbd_trimmer_trimmed(v->trimmer);
	v->trim_requests = nbd_trimmer_requests(v->trimmer);
}

void volume_close_discards(struct volume *v)
{
	keep_counts(v);
	discarder_free(v->disc);
	nbd_trimmer_close(v->trimmer);
	v->disc = NULL;
	v->trimmer = NULL;
}

/* Discarding less is always safe: a failing connection ends this volume's discards only. */
static void stop_discards(struct volume *v, int err)
{
	log_error("warning: volume '%s': no more discards: %s", v->name,
		  err == -ETIMEDOUT ? "the server did not answer a TRIM in time" : strerror(-err));
	volume_close_discards(v);
}

int volume_ack(struct volume *v, uint64_t offset, uint64_t length)
{
	int r;

	if (!v->disc)
		return 0;
	r = discarder_ack(v->disc, offset, length);
	if (r == -EINVAL || r == -ERANGE)
		return r;
	if (nbd_trimmer_error(v->trimmer) < 0)
		stop_discards(v, nbd_trimmer_error(v->trimmer));
	else if (r == -ENOSPC) {
		if (!v->fragments_warned) /* once: a provider may send a million */
			log_error("warning: volume '%s': too many partly acknowledged granules to remember: "
				  "the unaligned ends of further acknowledgements may not be discarded", v->name);
		v->fragments_warned = true;
	} else if (r < 0) { /* -ENOMEM: this range stays, the next may go */
		log_error("warning: volume '%s': discard failed: %s", v->name, strerror(-r));
	}
	return 0;
}

int volume_trim_pollfd(const struct volume *v, struct pollfd *ret)
{
	short events = 0;
	int fd = v->trimmer ? nbd_trimmer_poll_fd(v->trimmer, &events) : -1;

	if (fd < 0)
		return -1;
	*ret = (struct pollfd){ .fd = fd, .events = events };
	return 0;
}

void volume_trim_dispatch(struct volume *v, short revents)
{
	int r;

	if (!v->trimmer || !nbd_trimmer_in_flight(v->trimmer))
		return;
	r = nbd_trimmer_dispatch(v->trimmer, revents);
	if (r < 0)
		stop_discards(v, r);
}

int64_t volume_trim_deadline(const struct volume *v)
{
	return v->trimmer ? nbd_trimmer_deadline(v->trimmer) : -1;
}

size_t volume_trims_in_flight(const struct volume *v)
{
	return v->trimmer ? nbd_trimmer_in_flight(v->trimmer) : 0;
}

/* ---- release ---- */

static void report_map_writer(const struct volume *v)
{
	int st = v->map_status;

	if (WIFSIGNALED(st))
		log_error("volume '%s': the map writer was killed by signal %d (%s)", v->name, WTERMSIG(st),
			  WTERMSIG(st) == SIGPIPE ? "the provider closed the map before its end"
						  : strsignal(WTERMSIG(st)));
	else
		log_error("volume '%s': the map writer failed (exit status %d)", v->name,
			  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Done or not, nobody reads its pipe any more. Only the SIGTERM sent here to a writer still
 * running is an expected end; a crash, the OOM killer's SIGKILL, anyone else's signal or a
 * non-zero exit means the provider may have got a map without its trailer. */
static void reap_map_writer(struct volume *v)
{
	bool termed = false;

	if (!v->map_pid)
		return;
	if (!child_exited(v->map_pidfd))
		termed = child_signal(v->map_pidfd, SIGTERM) == 0;
	if (child_reap(v->map_pid, &v->map_status) < 0)
		v->map_status = 255 << 8;
	v->map_failed = !(WIFEXITED(v->map_status) && WEXITSTATUS(v->map_status) == 0) &&
			!(termed && WIFSIGNALED(v->map_status) && WTERMSIG(v->map_status) == SIGTERM);
	if (v->map_failed)
		report_map_writer(v);
	close(v->map_pidfd);
	v->map_pidfd = -1;
	v->map_pid = 0;
}

int volume_release(const struct run_opts *o, struct volume *v, bool in_use)
{
	int r = 0;

	reap_map_writer(v);
	if (v->map_fd >= 0)
		close(v->map_fd);
	v->map_fd = -1;
	if (v->attached && !v->released) {
		bool held = false;

		r = teardown_device(v->st.index, v->st.identifier, in_use ? TEARDOWN_HOLDER_EXPECTED : 0,
				    o->udev_timeout_ms, &held);
		if (r == -ESTALE) /* detached by someone else meanwhile, the minor maybe reused */
			r = 0;
		if (r < 0)
			log_error("cannot detach volume '%s' (/dev/nbd%" PRIu32 "): %s", v->name, v->st.index,
				  strerror(-r));
		else
			v->released = true;
		/* Not ours to kill: with the provider gone, it is outside the run's process group. */
		if (held && !in_use)
			log_error("warning: detached volume '%s' (/dev/nbd%" PRIu32 "), but a process outside the run "
				  "still holds it open: the kernel frees it at the last close", v->name, v->st.index);
	}
	return r;
}
