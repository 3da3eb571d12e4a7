/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Attaching one export, shared by the attach and run commands: negotiate, claim, CONNECT
 * (the kernel picks the device), journal, wait for udev, verify. Any failure after CONNECT
 * disconnects the device again, so nothing half-attached survives an error. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "children.h"
#include "cleanup.h"
#include "claims.h"
#include "devices.h"
#include "fault.h"
#include "handshake.h"
#include "netlink.h"
#include "ownership.h"
#include "runs.h"
#include "teardown.h"
#include "udev.h"

/* Everything the journal will hold, or -ENAMETOOLONG / -EINVAL when some of it cannot be
 * journaled exactly (the monitor and cleanup reconnect to the URI on record). */
static int fill_state(const struct attach_req *o, const struct hs_result *hs, const char *id,
		      uint32_t index, struct state_rec *s)
{
	char buf[STATE_FILE_MAX + 1];
	size_t len;

	memset(s, 0, sizeof(*s));
	s->index = index;
	if (strlen(id) >= sizeof(s->identifier) || strlen(o->uri) >= sizeof(s->uri) ||
	    strlen(hs->export_name) >= sizeof(s->export_name) ||
	    (o->bitmap && strlen(o->bitmap) >= sizeof(s->bitmap)))
		return -ENAMETOOLONG;
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
	s->server = hs->server;
	snprintf(s->owner, sizeof(s->owner), "%s", o->for_run ? "run" : "attaching");
	s->pid = getpid();
	s->time = time(NULL);
	(void)proc_start_time(s->pid, &s->start); /* 0 if unknown: time decides then */
	return state_format(s, buf, sizeof(buf), &len);
}

/* LINK_DEADs seen since before CONNECT: a connection that dies while we attach (a request
 * timed out, the server went away) is reported once, and nobody else is listening yet. */
struct dead_watch {
	struct nbd_nl_events *ev;
	uint32_t *index;
	size_t n, cap;
	bool lost;               /* some were dropped: cannot tell, and the monitor must ask */
};

static void note_dead(void *opaque, uint32_t index)
{
	struct dead_watch *d = opaque;

	if (d->n == d->cap) {
		uint32_t *x = d->cap < 4096 ? realloc(d->index, (d->cap ? 2 * d->cap : 16) * sizeof(*x)) : NULL;

		if (!x) {
			d->lost = true;
			return;
		}
		d->index = x;
		d->cap = d->cap ? 2 * d->cap : 16;
	}
	d->index[d->n++] = index;
}

/* Has the device's connection died since before CONNECT? */
static bool died_while_attaching(struct dead_watch *d, uint32_t index)
{
	if (d->ev && nbd_nl_events_read(d->ev) == -ENOBUFS)
		d->lost = true;
	if (!d->ev || d->lost)
		return false; /* cannot tell: the monitor subscribes itself and asks the server */
	for (size_t k = 0; k < d->n; k++)
		if (d->index[k] == index)
			return true;
	return false;
}

/* The journal entry becomes an attached device's ("attach", outliving us), with its monitor's
 * PID (0: none, --no-monitor): cleanup then asks its server, never judges it by our exit. */
static int hand_over_entry(struct state_rec *s, pid_t pid)
{
	_cleanup_(state_unlock) int lock = -1;
	struct state_rec cur;
	int r;

	s->pid = pid;
	if (!pid || proc_start_time(pid, &s->start) < 0)
		s->start = 0;
	snprintf(s->owner, sizeof(s->owner), "attach");
	/* Only over our own entry: the device may have been detached, and the minor journaled by
	 * another attach, since we last held the lock. */
	r = state_lock(&lock);
	if (r < 0)
		return r;
	if (state_read(s->index, &cur) < 0 || strcmp(cur.identifier, s->identifier))
		return -ESTALE;
	return state_write(s);
}

/* The monitor releases the device when its server dies (the kernel does not); its pid goes
 * into the journal so that cleanup knows it. It takes over our subscription to LINK_DEAD, so
 * that none falls between the two. */
static int start_monitor(const struct attach_req *o, struct state_rec *s, const struct dead_watch *dw)
{
	char dev[32], dct[24];
	char *argv[10] = { "nbdattach", "monitor", "--identifier", s->identifier,
			   "--dead-conn-timeout", dct };
	bool hand_over = dw->ev && !dw->lost;
	struct child_fd fd = { .from = hand_over ? nbd_nl_events_fd(dw->ev) : -1, .to = 3 };
	size_t n = 6;
	pid_t pid;
	int r;

	snprintf(dev, sizeof(dev), "nbd%" PRIu32, s->index);
	snprintf(dct, sizeof(dct), "%" PRIu64, o->dead_conn_timeout);
	if (hand_over) {
		argv[n++] = "--events-fd";
		argv[n++] = "3";
	}
	argv[n++] = dev;
	argv[n] = NULL;
	r = child_spawn(self_exe(), argv, NULL, hand_over ? &fd : NULL, hand_over ? 1 : 0,
			CHILD_SETSID | CHILD_NULL_STDIO, &pid);
	if (r < 0)
		return r;
	return hand_over_entry(s, pid);
}

/* udev's first pass over a new device can miss that it is ours (the rules were not installed,
 * or ran before any of our records were visible) or lack tag and name for the stable link:
 * one more "change" event makes udev run the rules again over what is on record now. */
static int wait_udev(const struct attach_req *o, struct udev_wait *w, const struct state_rec *s,
		     bool *ret_unrecognised)
{
	unsigned want = UDEV_SAW_OURS | (s->tag[0] && s->name[0] ? UDEV_SAW_LINK : 0), seen = 0;
	char sysname[32];
	int r;

	snprintf(sysname, sizeof(sysname), "nbd%" PRIu32, s->index);
	r = udev_wait_change(w, sysname, s->identifier, o->udev_timeout_ms, &seen);
	if (r < 0 || (seen & want) == want)
		return r;
	r = dev_trigger_change(s->index);
	if (r >= 0)
		r = udev_wait_change(w, sysname, s->identifier, o->udev_timeout_ms, &seen);
	if (r >= 0)
		*ret_unrecognised = (seen & want) != want;
	return r;
}

/* After CONNECT: journal, queue settings, udev, verification. On failure the caller tears
 * down. The queue settings are the minor's previous user's until we change them here (udev's
 * rules leave them alone), journaled first so that detach and cleanup can put them back, and
 * changed before udev's pass so that nothing reads the device with them unset. */
static int finish_attach(const struct attach_req *o, struct udev_wait *w, struct dead_watch *dw, int *lock,
			 struct attach_result *res, const char **what)
{
	struct state_rec *s = &res->st;
	char backend[DEV_ID_MAX + 2];
	uint64_t cap = o->max_request;
	int r;

	*what = "cannot read the device's queue settings";
	if (o->snapshot || o->max_request || res->server_max_request) {
		r = dev_get_queue(s->index, &s->saved_read_ahead_kb, &s->saved_max_sectors_kb, &s->saved_nomerges);
		if (r < 0)
			return r;
		s->saved_queue = true;
	}
	/* Never more than the server takes; below that, what the caller asked, else the kernel's. */
	if (res->server_max_request &&
	    (cap ? cap : (uint64_t)s->saved_max_sectors_kb * 1024) > res->server_max_request)
		cap = res->server_max_request;
	*what = "cannot record the device in the state journal";
	r = state_write(s);
	if (r < 0)
		return r;
	*what = "cannot set read_ahead_kb to 0";
	r = o->snapshot ? dev_set_read_ahead(s->index, 0) : 0;
	if (r < 0)
		return r;
	*what = "cannot set nomerges to 2";
	r = o->snapshot ? dev_set_nomerges(s->index, 2) : 0;
	if (r < 0)
		return r;
	*what = "cannot set max_sectors_kb";
	r = cap ? dev_set_max_request(s->index, cap) : 0;
	if (r < 0)
		return r;
	*what = "cannot record the device in the state journal";
	r = claim_commit(getpid(), s->index);
	if (r < 0)
		return r;
	state_unlock(lock); /* on record: others may look at it and tear it down from now on */
	fault_point("journaled", o->name);
	*what = "udev did not process the new device in time (see --udev-timeout)";
	r = wait_udev(o, w, s, &res->unrecognised);
	if (r < 0)
		return r;
	*what = "the device does not carry our backend identifier";
	r = dev_read_attr(s->index, "backend", backend, sizeof(backend));
	if (r < 0)
		return r;
	if (strcmp(backend, s->identifier))
		return -EBUSY;
	*what = "its connection died while attaching (a request timed out, or the server went away)";
	if (died_while_attaching(dw, s->index))
		return -ENOTCONN;
	if (o->for_run)
		return 0;
	*what = "cannot record the device in the state journal";
	if (o->no_monitor)
		return hand_over_entry(s, 0);
	*what = "cannot start the device's monitor";
	return start_monitor(o, s, dw);
}

static int do_connect(const struct attach_req *o, struct hs_result *hs, const char *id, uint32_t *ret)
{
	struct nbd_nl_config c = {
		.size = hs->size, .block_size = hs->block_size, .timeout = o->timeout,
		.dead_conn_timeout = o->dead_conn_timeout, .server_flags = hs->server_flags,
		.fds = hs->fds, .n_fds = hs->n_fds, .identifier = id,
	};

	return nbd_nl_connect(&c, ret);
}

/* Before CONNECT, so that udev recognises the device on its very first event. */
static int write_claim(const struct attach_req *o, const char *id)
{
	struct claim c = { 0 };

	snprintf(c.identifier, sizeof(c.identifier), "%s", id);
	snprintf(c.tag, sizeof(c.tag), "%s", o->tag ? o->tag : "");
	snprintf(c.name, sizeof(c.name), "%s", o->name ? o->name : "");
	return claim_write(getpid(), &c);
}

/* Records udev would read for the wrong device, removed under the lock before CONNECT:
 * - claims of helpers that died while attaching (SIGKILL between claim and CONNECT): udev would
 *   take a device connected by a process reusing such a pid for ours on its first event (their
 *   devices, if any, are unjournaled and left to cleanup);
 * - udev records of devices no longer connected with their identifier (detached behind our
 *   back): the kernel's first event for the minor we are about to get comes before our record
 *   replaces it, and udev would give our device the old tag and name. */
static void forget_stale_records(void)
{
	_cleanup_free_ uint32_t *pids = NULL, *devs = NULL;
	struct dev_info i;
	struct claim c;
	size_t n = 0;

	if (claim_list(&pids, &n) == 0)
		for (size_t k = 0; k < n; k++)
			if ((pid_t)pids[k] != getpid() &&
			    !helper_alive((pid_t)pids[k], 0, claim_time((pid_t)pids[k])))
				claim_remove((pid_t)pids[k]);
	if (udev_record_list(&devs, &n) == 0)
		for (size_t k = 0; k < n; k++)
			if (udev_record_read(devs[k], &c) < 0 || dev_info_get(devs[k], &i) < 0 ||
			    !dev_info_carries(&i, c.identifier))
				udev_record_remove(devs[k]);
}

/* Under the lock: -EEXIST when a connected, journaled device of ours already carries TAG/NAME (a
 * killed run's device, not cleaned up yet): the stable link /dev/nbdattach/TAG/NAME would name
 * two devices, and udev could point it at the old snapshot. One being torn down (its entry
 * already removed) does not count. */
static int check_name_free(const char *tag, const char *name, const char **what)
{
	static char msg[2 * DEV_LABEL_MAX + 160];
	_cleanup_free_ uint32_t *devs = NULL;
	size_t n = 0;

	if (!name || dev_list_indices(&devs, &n) < 0)
		return 0;
	for (size_t k = 0; k < n; k++) {
		struct dev_info i;

		if (dev_info_get(devs[k], &i) == 0 && i.ours && i.started && i.have_state && !strcmp(i.tag, tag) &&
		    !strcmp(i.name, name)) {
			snprintf(msg, sizeof(msg), "'%s/%s' is already attached as /dev/nbd%" PRIu32
				 " (detach it, or run 'nbdattach cleanup' if its helper was killed)",
				 tag, name, devs[k]);
			*what = msg;
			return -EEXIST;
		}
	}
	return 0;
}

/* After a failed CONNECT, under the lock: a device that carries ID was connected all the same
 * (the kernel's answer lost on the way), and nothing else will ever know it is ours. */
static void disconnect_unreported(const char *id)
{
	_cleanup_free_ uint32_t *v = NULL;
	char backend[DEV_ID_MAX + 2];
	size_t n = 0;

	if (dev_list_indices(&v, &n) < 0)
		return;
	for (size_t k = 0; k < n; k++)
		if (dev_read_attr(v[k], "backend", backend, sizeof(backend)) == 0 && !strcmp(backend, id))
			(void)nbd_nl_disconnect(v[k]);
}

/* Before 5.14 the driver skips NBD_ATTR_BACKEND_IDENTIFIER without an error, and the kernel
 * creates the backend file inside CONNECT: without it, nothing (not even our own rollback,
 * which disconnects only a device carrying our identifier) could tell the device is ours.
 * Under the lock, right after CONNECT: disconnect it by index. */
static int check_identifier(uint32_t index, const char *id)
{
	char backend[DEV_ID_MAX + 2];

	if (dev_read_attr(index, "backend", backend, sizeof(backend)) == 0 && !strcmp(backend, id))
		return 0;
	(void)nbd_nl_disconnect(index);
	return -EOPNOTSUPP;
}

static int connected(const struct attach_req *o, struct udev_wait *w, struct dead_watch *dw, int *lock,
		     struct attach_result *res,
		     const char **what)
{
	int r = finish_attach(o, w, dw, lock, res, what);

	if (r < 0) {
		state_unlock(lock);
		teardown_device(res->st.index, res->st.identifier, 0, o->udev_timeout_ms, NULL);
		claim_remove(getpid());
	}
	return r;
}

int attach_device(const struct attach_req *o, struct attach_result *ret, const char **ret_what)
{
	struct hs_request req = { .uri = o->uri, .connections = o->connections, .block_size = o->block_size,
				  .read_only = o->read_only, .bitmap = o->bitmap };
	struct hs_result hs = { 0 };
	struct attach_result res = { 0 };
	struct udev_wait *w = NULL;
	uint32_t index = 0;
	char id[DEV_ID_MAX];
	struct dead_watch dw = { 0 };
	int r, lock = -1;

	*ret_what = NULL;
	r = nbd_nl_probe();
	if (r < 0)
		return r;
	r = hs_negotiate(&req, &hs);
	if (r < 0) {
		*ret_what = hs_last_error();
		return r;
	}
	if (o->hold_signals)
		sigprocmask(SIG_BLOCK, o->hold_signals, NULL);
	r = dev_identifier_new(o->tag, o->name, id);
	if (r >= 0 && (r = fill_state(o, &hs, id, 0, &res.st)) < 0)
		*ret_what = "the URI, export or bitmap name is too long or has control characters";
	if (r >= 0 && (r = write_claim(o, id)) < 0)
		*ret_what = "cannot write its claim in the state directory";
	if (r >= 0)
		r = udev_wait_new(&w);
	if (r >= 0 && nbd_nl_events_open(note_dead, &dw, &dw.ev) < 0)
		dw.ev = NULL; /* cannot tell then: the monitor asks the server itself */
	if (r >= 0 && (r = state_lock(&lock)) < 0)
		*ret_what = "cannot lock the state directory";
	if (r >= 0)
		forget_stale_records();
	if (r >= 0)
		r = check_name_free(o->tag, o->name, ret_what);
	/* LINK_DEADs so far were other devices', or the previous user's of the minor CONNECT may
	 * pick: only those after CONNECT count. (An overrun so far dropped only such.) */
	if (r >= 0 && dw.ev) {
		int e = -ENOBUFS;

		for (int k = 0; k < 4 && e == -ENOBUFS; k++)
			e = nbd_nl_events_read(dw.ev);
		dw.n = 0;
		dw.lost = e < 0; /* still overrunning, or unreadable: cannot tell */
	}
	fault_point("connect", o->name);
	if (r >= 0 && (r = do_connect(o, &hs, id, &index)) < 0) {
		*ret_what = r == -EBUSY ? "no free nbd device" : "kernel refused CONNECT";
		disconnect_unreported(id);
	}
	if (r >= 0 && (r = check_identifier(index, id)) < 0)
		*ret_what = "the kernel's nbd driver ignores backend identifiers (Linux 5.14 or later needed)";
	hs_result_close(&hs); /* the kernel holds its own references now */
	fault_point("connected", o->name);
	if (r < 0) {
		state_unlock(&lock);
		claim_remove(getpid());
		udev_wait_free(w);
		nbd_nl_events_free(dw.ev);
		return r;
	}
	res.st.index = index;
	res.server_flags = hs.server_flags;
	res.server_max_request = hs.max_request;
	r = connected(o, w, &dw, &lock, &res, ret_what);
	udev_wait_free(w);
	nbd_nl_events_free(dw.ev);
	free(dw.index);
	if (r == 0)
		*ret = res;
	return r;
}
