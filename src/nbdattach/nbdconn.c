/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <limits.h>

#include <libnbd.h>

#include "clock.h"
#include "nbdconn.h"

int nbd_connect_within(struct nbd_handle *h, const char *uri, int64_t timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	if (nbd_aio_connect_uri(h, uri) < 0)
		return -EIO;
	while (!nbd_aio_is_ready(h)) {
		int64_t left = deadline - now_ms();

		/* The state machine records why it died in the nbd_poll() that killed it. */
		if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h))
			return -EIO;
		if (left <= 0)
			return -ETIMEDOUT;
		if (nbd_poll(h, left < INT_MAX ? (int)left : INT_MAX) < 0)
			return -EIO;
	}
	return 0;
}

void nbd_close_now(struct nbd_handle *h)
{
	if (!h)
		return;
	if (nbd_aio_is_ready(h) == 1 && nbd_aio_in_flight(h) == 0)
		(void)nbd_aio_disconnect(h, 0);
	nbd_close(h);
}
