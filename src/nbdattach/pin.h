/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The server's unix socket, pinned. attach records the socket's inode (and birth time) and the
 * uid that created the listening socket; every later connection to the journaled URI (the
 * monitor's and cleanup's probes, discard DEVICE, a run's discards and map) opens the socket=
 * path once, checks that socket, and connects through /proc/self/fd/N to exactly what it
 * checked. Whoever can rename files in the socket's directory can therefore no longer point
 * root's TRIMs at another server's socket, and a server restarted on the same path is not
 * taken for the device's own. */
#ifndef NBDATTACH_PIN_H
#define NBDATTACH_PIN_H

#include <stdbool.h>
#include <stdint.h>

#include "state.h"

struct nbd_handle;

/* A URI to hand libnbd: the caller's, or for nbd+unix:// its socket= rewritten to the pinned
 * descriptor. */
struct pinned_uri {
	int fd;                        /* O_PATH descriptor of the socket, -1 when not unix */
	char uri[STATE_URI_MAX + 32];
	struct server_pin pin;         /* the inode seen (uid unknown until pin_peer) */
};

/* The decoded socket= path of URI's query, read as libnbd reads it (pairs split on '&' or ';',
 * keys and values percent-decoded): -EDESTADDRREQ when there is none, -EINVAL when there are several,
 * -EILSEQ when libnbd could read the query otherwise ('&' mixed with ';', an encoded NUL),
 * -ENAMETOOLONG when it does not fit in CAP bytes. */
int uri_socket_path(const char *uri, char *buf, size_t cap);
/* Opens URI's socket for connecting. With EXPECT (a journaled pin): -ESTALE when the path now
 * leads to another socket (inode, or birth time where kept), or to no socket. -ENXIO when
 * /proc/self/fd does not lead to it (no /proc): then nobody can tell. A URI that is not
 * nbd+unix:// is copied unpinned. */
int pin_open(const char *uri, const struct server_pin *expect, struct pinned_uri *ret);
void pin_close(struct pinned_uri *p);
/* pin_open's failure in words (-ESTALE, -ENXIO, -ENOTSOCK; strerror otherwise). */
const char *pin_strerror(int r);
/* The uid that created the listening socket of H's connection (SO_PEERCRED: for a
 * socket-activated server, its activator's), into PIN; -ESTALE (PIN still set) when EXPECT
 * knows another, -EPROTO when the kernel does not say. */
int pin_peer(struct nbd_handle *h, const struct server_pin *expect, struct server_pin *pin);
/* URI with its socket= value replaced by /proc/self/fd/FD (ours, or a child's descriptor). */
int pin_uri_for_fd(const char *uri, int fd, char *buf, size_t cap);

#endif
