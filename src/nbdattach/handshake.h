/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Negotiation with the NBD server through libnbd, then handing the raw socket(s) over. */
#ifndef NBDATTACH_HANDSHAKE_H
#define NBDATTACH_HANDSHAKE_H

#include <stdbool.h>
#include <stdint.h>

#include "state.h"

#define HS_MAX_CONNECTIONS 16

struct hs_request {
	const char *uri;
	unsigned connections;   /* 0 = default */
	uint64_t block_size;    /* 0 = choose */
	bool read_only;
	const char *bitmap;     /* NULL or the dirty bitmap name */
};

struct hs_result {
	uint64_t size;
	uint64_t block_size;
	uint64_t server_flags;  /* NBD_FLAG_* (transmission flags) */
	bool read_only;
	uint64_t max_request;   /* largest request the server takes, a power of two; 0: no limit */
	unsigned n_fds;
	int fds[HS_MAX_CONNECTIONS];
	char export_name[256];
	struct server_pin server; /* the socket connected to, for the journal */
};

/* Why the handshake failed, in words, for the CLI (libnbd's message, trimmed). */
const char *hs_last_error(void);
/* Connects, validates and detaches the sockets. On failure nothing stays open. */
int hs_negotiate(const struct hs_request *req, struct hs_result *ret);
void hs_result_close(struct hs_result *res);
/* True when a fresh connection to URI fails within TIMEOUT_MS (refused, no socket, export
 * gone); a server that is merely slow to answer is not gone. With PIN (journaled), a path that
 * now leads to another socket or another user's server is not the device's server either way:
 * not gone, and *RET_REPLACED (may be NULL) says so. */
bool hs_server_gone(const char *uri, const struct server_pin *pin, int timeout_ms, bool *ret_replaced);

#endif
