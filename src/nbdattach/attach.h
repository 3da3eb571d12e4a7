/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Attaching one NBD export to a kernel device (attach.c). */
#ifndef NBDATTACH_ATTACH_H
#define NBDATTACH_ATTACH_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "state.h"

struct attach_req {
	const char *uri, *tag, *name, *bitmap;
	bool read_only;
	bool no_monitor;          /* no monitor: the caller watches the device itself, or nobody */
	bool for_run;             /* run's volume: journaled as run's, for as long as run lives */
	unsigned connections;     /* 0: default */
	uint64_t block_size;      /* 0: choose */
	uint64_t timeout, dead_conn_timeout;
	uint64_t max_request;     /* bytes per kernel request (max_sectors_kb), 0: the kernel's */
	/* A snapshot for a backup: read-ahead 0 (reads outside the dirty regions fail) and no
	 * merging of requests (with max_request one granule: no request spans two clusters). */
	bool snapshot;
	int udev_timeout_ms;
	/* Signals to block once the handshake is done (it may hang on a server that never
	 * answers: until then a signal just ends us), from before the claim to the return; the
	 * caller restores its mask. NULL: leave the mask alone. */
	const sigset_t *hold_signals;
};

struct attach_result {
	struct state_rec st;      /* as journaled */
	uint64_t server_flags;
	uint64_t server_max_request; /* the server's largest request (0: no limit) */
	bool unrecognised;        /* udev's rules did not recognise the device */
};

/* Attaches; on failure nothing is left behind and *RET_WHAT (may be NULL) says what failed,
 * in words for "cannot attach 'URI': ...". */
int attach_device(const struct attach_req *req, struct attach_result *ret, const char **ret_what);

#endif
