/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A libudev monitor on the "udev" netlink group only reports events udev has finished
 * processing (rules run, database written), which is what "ready for I/O" means here. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libudev.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "devices.h"
#include "udev.h"

struct udev_wait {
	struct udev *udev;
	struct udev_monitor *mon;
	uint64_t seqnum;        /* kernel uevent seqnum before the action */
};

DEFINE_CLEANUP(struct udev_device *, udev_device_unref)

static int read_seqnum(uint64_t *ret)
{
	char buf[32];
	int r = read_first_line("/sys/kernel/uevent_seqnum", buf, sizeof(buf));

	if (r < 0)
		return r;
	return sscanf(buf, "%" SCNu64, ret) == 1 ? 0 : -EIO;
}

void udev_wait_free(struct udev_wait *w)
{
	if (!w)
		return;
	if (w->mon)
		udev_monitor_unref(w->mon);
	if (w->udev)
		udev_unref(w->udev);
	free(w);
}

int udev_wait_new(struct udev_wait **ret)
{
	struct udev_wait *w = calloc(1, sizeof(*w));
	int r = -ENOMEM;

	if (!w)
		return -ENOMEM;
	w->udev = udev_new();
	if (!w->udev)
		goto fail;
	w->mon = udev_monitor_new_from_netlink(w->udev, "udev");
	if (!w->mon)
		goto fail;
	r = udev_monitor_filter_add_match_subsystem_devtype(w->mon, "block", "disk");
	if (r >= 0)
		r = udev_monitor_enable_receiving(w->mon);
	if (r >= 0) /* best effort: many parallel attaches must not overflow the socket */
		(void)udev_monitor_set_receive_buffer_size(w->mon, 4 << 20);
	if (r >= 0)
		r = read_seqnum(&w->seqnum);
	if (r < 0)
		goto fail;
	*ret = w;
	return 0;
fail:
	udev_wait_free(w);
	return r < 0 ? r : -ENOMEM;
}

static bool is_wanted(struct udev_wait *w, struct udev_device *d, const char *sysname)
{
	const char *action = udev_device_get_action(d);
	const char *name = udev_device_get_sysname(d);

	return action && name && !strcmp(action, "change") && !strcmp(name, sysname) &&
	       udev_device_get_seqnum(d) > w->seqnum;
}

static bool prop_set(struct udev_device *d, const char *key)
{
	const char *v = udev_device_get_property_value(d, key);

	return v && *v;
}

/* What our rules (udev/60-nbdattach.rules) made of the event. The tag and name count only
 * when they come from IDENTIFIER's record: the rules import whatever record the minor has. */
static unsigned seen_of(struct udev_device *d, const char *identifier)
{
	unsigned seen = 0;
	const char *v = udev_device_get_property_value(d, "NBDATTACH");
	const char *id = udev_device_get_property_value(d, "NBDATTACH_ID");

	if (v && !strcmp(v, "1"))
		seen |= UDEV_SAW_OURS;
	if (prop_set(d, "NBDATTACH_TAG") && prop_set(d, "NBDATTACH_NAME") &&
	    (!identifier || (id && !strcmp(id, identifier))))
		seen |= UDEV_SAW_LINK;
	return seen;
}

int udev_wait_change(struct udev_wait *w, const char *sysname, const char *identifier,
		     int timeout_ms, unsigned *ret_seen)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd p = { .fd = udev_monitor_get_fd(w->mon), .events = POLLIN };

	for (;;) {
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		for (;;) {
			_cleanup_(udev_device_unrefp) struct udev_device *d = udev_monitor_receive_device(w->mon);

			if (!d)
				break;
			if (!is_wanted(w, d, sysname))
				continue;
			/* A later wait on the same subscription wants a newer event. */
			w->seqnum = udev_device_get_seqnum(d);
			if (ret_seen)
				*ret_seen = seen_of(d, identifier);
			return 0;
		}
	}
}

int udev_wait_fd(const struct udev_wait *w)
{
	return udev_monitor_get_fd(w->mon);
}

int udev_wait_drain(struct udev_wait *w, const char *sysname)
{
	int n = 0;

	for (;;) {
		_cleanup_(udev_device_unrefp) struct udev_device *d = udev_monitor_receive_device(w->mon);
		const char *name;

		if (!d)
			return n;
		name = udev_device_get_sysname(d);
		if (name && !strcmp(name, sysname) && udev_device_get_seqnum(d) > w->seqnum)
			n++;
	}
}
