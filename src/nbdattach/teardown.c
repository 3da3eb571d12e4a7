/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/major.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "claims.h"
#include "cleanup.h"
#include "clock.h"
#include "devices.h"
#include "netlink.h"
#include "state.h"
#include "teardown.h"
#include "udev.h"

/* Under the lock: is INDEX still the device we mean to tear down? */
static int still_wanted(uint32_t index, const char *identifier, unsigned flags, char *backend, size_t len)
{
	struct state_rec st;

	if (dev_read_attr(index, "backend", backend, len) < 0)
		backend[0] = 0;
	if (identifier && strcmp(backend, identifier))
		return -ESTALE;
	if ((flags & TEARDOWN_IF_UNJOURNALED) && state_read(index, &st) == 0 && !strcmp(st.identifier, backend))
		return -EBUSY;
	return 0;
}

/* DISCONNECT drops the kernel's own references to the device's configuration, and with the
 * last of them its pid and backend files and its size (Linux's nbd_config_put), all before the
 * netlink reply. Whoever still has the device open holds the rest: until the last close the
 * device looks connected, with no connection behind it, and no "change" uevent comes. A holder
 * that is only closing (a process group just killed) gets a moment; for one that stays, a
 * device of ours gets a record that tells our commands what it is, and a "change" of our own
 * makes udev drop the stable link now and wakes the device's monitor, which has nothing left
 * to watch. (No "change" for another tool's device: stock rules would probe a dead device.) */
#define HOLDER_GRACE_MS 2000

/* Is the device still started with BACKEND? */
static bool still_held(uint32_t index, const char *backend)
{
	char now[DEV_ID_MAX + 2];

	return dev_is_started(index) && dev_read_attr(index, "backend", now, sizeof(now)) == 0 &&
	       !strcmp(now, backend);
}

/* The queue settings the device had before attach changed them, from its journal entry, read
 * while the device still carries BACKEND. */
static bool saved_queue(uint32_t index, const char *backend, struct state_rec *s)
{
	return backend[0] && state_read(index, s) == 0 && s->saved_queue && !strcmp(s->identifier, backend);
}

/* The device, opened read-only: held across DISCONNECT, its configuration, and so the minor,
 * stays ours until we close it, and no CONNECT (another tool's either) can take the minor
 * before its settings are back. -1 when it cannot be opened. */
static int hold_device(uint32_t index)
{
	char path[32];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "/dev/nbd%" PRIu32, index);
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode) || major(st.st_rdev) != NBD_MAJOR)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* After DISCONNECT, puts them back: before it, a reader still holding the device would again
 * have its requests merged and read ahead across clusters while the server still answers.
 * Where the device could not be held, the minor is left alone once someone else's CONNECT has
 * it (no nbdattach's: the lock is ours). */
static void restore_queue(uint32_t index, const char *backend, const struct state_rec *s)
{
	if (dev_is_started(index) && !still_held(index, backend))
		return;
	/* Best effort: a tuning knob that cannot be put back is no reason to fail the detach. */
	(void)dev_set_read_ahead(index, s->saved_read_ahead_kb);
	(void)dev_set_max_request(index, (uint64_t)s->saved_max_sectors_kb * 1024);
	(void)dev_set_nomerges(index, s->saved_nomerges);
}

/* Under the lock, as cleanup removes records of devices it finds released: writes the record
 * of a device of ours still held open. false when it is released after all (or not ours). */
static bool record_held(uint32_t index, const char *backend)
{
	_cleanup_(state_unlock) int lock = -1;

	(void)state_lock(&lock);
	return still_held(index, backend) && release_record_write(index, backend) == 0;
}

/* After a successful DISCONNECT: waits for udev's "change" (the kernel's, or ours for a device
 * of ours held open), giving a closing holder GRACE_MS milliseconds. Returns whether the device
 * is held open. */
static bool await_release(struct udev_wait *w, uint32_t index, const char *backend, int grace_ms,
			  int timeout_ms)
{
	int64_t deadline = now_ms() + (grace_ms < timeout_ms ? grace_ms : timeout_ms);
	char sysname[32];
	bool seen = false;

	snprintf(sysname, sizeof(sysname), "nbd%" PRIu32, index);
	/* Any "change" of the device ends a wait (another teardown's, a udevadm trigger): only the
	 * kernel's state says whether it was the last close's. */
	while (w && dev_is_started(index) && now_ms() < deadline) {
		if (udev_wait_change(w, sysname, NULL, (int)(deadline - now_ms()), NULL) < 0)
			break;
		seen = true;
	}
	if (!dev_is_started(index)) {
		if (w && !seen) /* released at once: the kernel's "change" is still to come */
			(void)udev_wait_change(w, sysname, NULL, timeout_ms, NULL);
		return false;
	}
	if (record_held(index, backend) && dev_trigger_change(index) == 0 && w)
		(void)udev_wait_change(w, sysname, NULL, timeout_ms, NULL);
	return true;
}

int teardown_device(uint32_t index, const char *identifier, unsigned flags, int timeout_ms,
		    bool *ret_held_open)
{
	_cleanup_(state_unlock) int lock = -1;
	struct udev_wait *w = NULL;
	char backend[DEV_ID_MAX + 2];
	struct state_rec saved;
	bool held = false, restore;
	int r, rd, hold;

	r = state_lock(&lock);
	if (r < 0)
		return r;
	r = still_wanted(index, identifier, flags, backend, sizeof(backend));
	if (r < 0)
		return r;
	/* Subscribe first: the kernel emits the "change" event inside DISCONNECT's teardown. */
	if (udev_wait_new(&w) < 0)
		w = NULL;
	restore = saved_queue(index, backend, &saved);
	hold = restore ? hold_device(index) : -1;
	r = rd = nbd_nl_disconnect(index);
	if (rd == 0 && restore)
		restore_queue(index, backend, &saved);
	if (hold >= 0) /* the kernel releases the device here unless someone else holds it */
		close(hold);
	/* Only our own records go, and before the lock does: the next CONNECT may pick this
	 * minor as soon as it is released, and journal it under the same name. */
	if (r == 0 && backend[0]) {
		r = state_remove_if(index, backend);
		if (r == 0)
			r = udev_record_remove_if(index, backend);
	}
	state_unlock(&lock);
	if (rd == 0)
		held = await_release(w, index, backend, flags & TEARDOWN_HOLDER_EXPECTED ? 0 : HOLDER_GRACE_MS,
				     timeout_ms);
	udev_wait_free(w);
	if (r == 0 && ret_held_open)
		*ret_held_open = held;
	return r;
}
