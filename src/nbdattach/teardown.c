/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "claims.h"
#include "netlink.h"
#include "state.h"
#include "teardown.h"
#include "udev.h"

int teardown_device(uint32_t index, int timeout_ms, int *ret_udev_timedout)
{
	struct udev_wait *w = NULL;
	char sysname[32];
	int r, rw = -EAGAIN;

	snprintf(sysname, sizeof(sysname), "nbd%" PRIu32, index);
	/* Subscribe first: the kernel emits the "change" event inside DISCONNECT's teardown. */
	if (udev_wait_new(&w) < 0)
		w = NULL;
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
