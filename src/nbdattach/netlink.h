/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The kernel's generic-netlink NBD interface (drivers/block/nbd.c). The only file that
 * includes libnl. All functions return 0 or -errno; the kernel's own errno is kept. */
#ifndef NBDATTACH_NETLINK_H
#define NBDATTACH_NETLINK_H

#include <stdbool.h>
#include <stdint.h>

/* Returned when the "nbd" generic netlink family is not registered (module not loaded). */
#define NBD_NL_ENOFAMILY ENOPKG

struct nbd_nl_config {
	uint64_t size;              /* bytes, > 0 */
	uint64_t block_size;        /* power of two, 512..PAGE_SIZE */
	uint64_t timeout;           /* seconds, 0 = never */
	uint64_t dead_conn_timeout; /* seconds */
	uint64_t server_flags;      /* NBD_FLAG_* as negotiated; TRIM/WRITE_ZEROES removed here */
	const int *fds;             /* connected, blocking sockets */
	unsigned n_fds;
	const char *identifier;     /* BACKEND_IDENTIFIER */
};

/* Checks that the nbd family exists. */
int nbd_nl_probe(void);
/* CONNECT without an index; the kernel picks a free device. */
int nbd_nl_connect(const struct nbd_nl_config *c, uint32_t *ret_index);
/* DISCONNECT device INDEX. */
int nbd_nl_disconnect(uint32_t index);

/* The nbd multicast group: NBD_CMD_LINK_DEAD tells that a connection of device INDEX died
 * (the server went away or a request timed out); the kernel keeps the device until someone
 * sends DISCONNECT or a RECONFIGURE brings a new socket. */
typedef void (*nbd_nl_link_dead_fn)(void *opaque, uint32_t index);
struct nbd_nl_events;
int nbd_nl_events_open(nbd_nl_link_dead_fn fn, void *opaque, struct nbd_nl_events **ret);
/* The same over FD, a socket subscribed by nbd_nl_events_open() in another process (handed
 * over, so that no event falls between two subscriptions); FD is closed with the events. */
int nbd_nl_events_adopt(int fd, nbd_nl_link_dead_fn fn, void *opaque, struct nbd_nl_events **ret);
/* Non-blocking socket to poll for POLLIN. */
int nbd_nl_events_fd(const struct nbd_nl_events *e);
/* Handles every pending message, calling the callback for each LINK_DEAD; -ENOBUFS when the
 * kernel dropped events (the socket stays usable: the caller must find out what it missed). */
int nbd_nl_events_read(struct nbd_nl_events *e);
void nbd_nl_events_free(struct nbd_nl_events *e);

#endif
