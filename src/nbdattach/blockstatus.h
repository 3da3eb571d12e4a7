/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block status of an NBD export through libnbd: the only place the map code touches libnbd.
 * libnbd's errors become -errno here, with a phrase for the CLI in blockstatus_error().
 */
#ifndef NBDATTACH_BLOCKSTATUS_H
#define NBDATTACH_BLOCKSTATUS_H

#include <stdint.h>

struct blockstatus;

/* Called for each extent in order from offset 0; returns 0 or -errno (which stops the walk).
 * It runs on a thread of its own (while the caller's thread reads the next reply), one call at
 * a time, and must not use the struct blockstatus. */
typedef int (*blockstatus_fn)(void *opaque, uint64_t offset, uint64_t length, uint32_t flags);

struct server_pin;

/*
 * Connect to uri with structured replies and, if context is not NULL, that meta context.
 * *ret is set even on failure, so the caller can read blockstatus_error(); free it with
 * blockstatus_free(). -ENOENT: the export does not offer the context; -ETIMEDOUT: the server
 * did not complete the handshake in 30 s (nbdconn.h); -ESTALE: SERVER (when not NULL and
 * known) names another uid than the one that created the listening unix socket (pin.h);
 * -EPROTO: the kernel does not say who did.
 */
int blockstatus_connect(const char *uri, const char *context, const struct server_pin *server,
			struct blockstatus **ret);

uint64_t blockstatus_size(const struct blockstatus *bs);

/* The reason for the last failure, or NULL. */
const char *blockstatus_error(const struct blockstatus *bs);

/* Walk the whole export, validating every reply (each within 30 s, else -ETIMEDOUT); -EPROTO
 * on a hostile reply (a second status chunk for the context, an extent past the export, or
 * one other than the reply's last past the request). The last extent may run past the
 * request (NBD spec): FN sees it cut there. */
int blockstatus_walk(struct blockstatus *bs, blockstatus_fn fn, void *opaque);

void blockstatus_free(struct blockstatus *bs);

#endif
