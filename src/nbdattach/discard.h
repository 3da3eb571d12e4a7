/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Discarding backed-up ranges of a fleecing export, never unaligned: QEMU 7.2 aborts the whole
 * process (hbitmap_reset assertion) on a TRIM that is not aligned to the copy-before-write
 * cluster, which is the bitmap granularity. Each acknowledged range is shrunk inward to whole
 * granules and trimmed over the helper's own libnbd connection; what is left over at either
 * end is remembered, merged with later neighbours, and trimmed once a whole granule is done.
 * A granule that straddles the export end is never trimmed.
 */
#ifndef NBDATTACH_DISCARD_H
#define NBDATTACH_DISCARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Cap on remembered partial fragments: a provider acking scattered bytes cannot make the
 * helper allocate without bound, nor spend without bound: they are a sorted array, and an
 * ack landing in front of them all moves them all (1 MiB at this cap; a provider acking
 * scattered pieces of granules in descending order costs well under a second of CPU in all,
 * where a million fragments cost minutes). Legitimate providers leave a handful. */
#define DISCARD_FRAGMENTS_MAX (1u << 16)

struct discarder;

/* A function that trims [offset, offset+length); returns 0 or -errno. */
typedef int (*discard_trim_fn)(void *opaque, uint64_t offset, uint64_t length);

/* The pure part (no I/O, unit-tested): SIZE and GRANULARITY (power of two) of the export. */
int discarder_new(uint64_t size, uint64_t granularity, discard_trim_fn trim, void *opaque,
		  struct discarder **ret);
/* Acknowledges [offset, offset+length). -EINVAL zero length or overflow, -ERANGE past the end,
 * -ENOSPC too many fragments (the range's own whole granules are trimmed still, its unaligned
 * ends forgotten), or the trim function's error. */
int discarder_ack(struct discarder *d, uint64_t offset, uint64_t length);
uint64_t discarder_pending(const struct discarder *d);   /* bytes remembered, not trimmed */
void discarder_free(struct discarder *d);

/* Over NBD: a connection to URI (simple replies) whose trim function queues NBD_CMD_TRIM with
 * libnbd's asynchronous API and never waits for the server. -EOPNOTSUPP when the export does
 * not accept TRIM; with PIN (a device's journaled server, or NULL), -ESTALE when URI's socket
 * is another than the device's (pin.h). WHY gets the reason in words on failure.
 *
 * The caller polls nbd_trimmer_poll_fd() and passes what it saw to nbd_trimmer_dispatch(), or
 * waits with nbd_trimmer_flush(). The first failure (a TRIM the server refused, the connection
 * lost, no reply within TIMEOUT_MS of the last progress: -ETIMEDOUT) sticks: every later call
 * returns it and nothing more is sent. */
#define NBD_TRIMMER_TIMEOUT_MS 30000   /* when TIMEOUT_MS is 0 */
#define NBD_TRIMMER_QUEUE_MAX 65536    /* TRIMs in flight at most (then -ENOBUFS) */
struct nbd_trimmer;
struct server_pin;
int nbd_trimmer_open(const char *uri, const struct server_pin *pin, int64_t timeout_ms,
		     struct nbd_trimmer **ret, char *why, size_t why_len);
/* A discard_trim_fn: queues one TRIM; 0, or the trimmer's failure. */
int nbd_trimmer_trim(void *trimmer, uint64_t offset, uint64_t length);
/* The descriptor to poll and its events while TRIMs are in flight; -1 when there is none. */
int nbd_trimmer_poll_fd(const struct nbd_trimmer *t, short *ret_events);
/* Handles REVENTS (0 is fine: just checks the timeout), retires answered TRIMs; 0 or the
 * trimmer's failure. */
int nbd_trimmer_dispatch(struct nbd_trimmer *t, short revents);
/* CLOCK_MONOTONIC milliseconds by which the server must answer something, -1 when nothing is
 * in flight. */
int64_t nbd_trimmer_deadline(const struct nbd_trimmer *t);
size_t nbd_trimmer_in_flight(const struct nbd_trimmer *t);
int nbd_trimmer_error(const struct nbd_trimmer *t);
/* Blocks until every TRIM is answered; 0 or the trimmer's failure. */
int nbd_trimmer_flush(struct nbd_trimmer *t);
uint64_t nbd_trimmer_size(const struct nbd_trimmer *t);
uint64_t nbd_trimmer_trimmed(const struct nbd_trimmer *t);  /* bytes the server confirmed */
uint64_t nbd_trimmer_requests(const struct nbd_trimmer *t); /* TRIMs the server confirmed */
/* Closes without ever waiting for the server. */
void nbd_trimmer_close(struct nbd_trimmer *t);

#endif
