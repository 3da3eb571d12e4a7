/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libnbd connections with a deadline. nbd_connect_uri() polls without one: a server that takes
 * the connection and never greets (qemu-nbd leaves the connections past its --shared clients
 * in the listen backlog) would block the caller for good, and run, whose signals wait while it
 * sets up its volumes, could then only be SIGKILLed.
 */
#ifndef NBDATTACH_NBDCONN_H
#define NBDATTACH_NBDCONN_H

#include <stdint.h>

struct nbd_handle;

/* What attach and map give a server to finish its handshake. */
#define NBD_HANDSHAKE_TIMEOUT_MS 30000

/* Connects H to URI and completes the handshake within TIMEOUT_MS (> 0). 0; -ETIMEDOUT when
 * the time ran out (libnbd's error says nothing then); -EIO when libnbd failed, its error
 * (nbd_get_error(), nbd_get_errno()) saying how. */
int nbd_connect_within(struct nbd_handle *h, const char *uri, int64_t timeout_ms);

/* Closes H without ever waiting for the server: an idle, ready connection gets NBD_CMD_DISC
 * queued (the socket takes it at once), anything else is just closed. nbd_shutdown() would
 * wait for the server to close its end, which a server that stopped answering never does. */
void nbd_close_now(struct nbd_handle *h);

#endif
