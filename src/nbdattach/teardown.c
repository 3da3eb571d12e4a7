/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "claims.h"
#include "devices.h"
#include "netlink.h"
#include "state.h"
#include "teardown.h"
#include "udev.h"

/* Puts back the queue settings attach changed, while the device is still connected to us:
 * once disconnected, the minor may already belong to someone else's next CONNECT. */
static void restore_queue(uint32_t index)
{
	struct state_rec s;
	char backend[DEV_ID_MAX + 2];

	if (state_read(index, &s) < 0 || !s.saved_queue ||
	    dev_read_attr(index, "backend", backend, sizeof(backend)) < 0 || strcmp(backend, s.identifier))
		return;
	/* Best effort: failing to restore a tuning knob must not keep the device attached. */
	(void)dev_set_read_ahead(index, s.saved_read_ahead_kb);
	(void)dev_set_max_request(index, (uint64_t)s.saved_max_sectors_kb * 1024);
}

int teardown_device(uint32_t index, int timeout_ms, int *ret_udev_timedout)
{
	struct udev_wait *w = NULL;
	char sysname[32];
	int r, rw = -EAGAIN;

	snprintf(sysname, sizeof(sysname), "nbd%" PRIu32, index);
	/* Subscribe first: the kernel emits the "change" event inside DISCONNECT's teardown. */
	if (udev_wait_new(&w) < 0)
		w = NULL;
	restore_queue(index);
	r = nbd_nl_disconnect(index);
	if (r == 0 && w)
		rw = udev_wait_change(w, sysname, timeout_ms, NULL);
	udev_wait_free(w);
	if (r == 0)
		r = state_remove(index);
	if (r == 0)
		r = udev_record_remove(index);
	if (ret_udev_timedout)
		*ret_udev_timedout = r == 0 && rw < 0;
	return r;
}
