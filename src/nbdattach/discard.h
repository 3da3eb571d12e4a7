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
 * helper allocate without bound. */
#define DISCARD_FRAGMENTS_MAX (1u << 20)

struct discarder;

/* A function that trims [offset, offset+length); returns 0 or -errno. */
typedef int (*discard_trim_fn)(void *opaque, uint64_t offset, uint64_t length);

/* The pure part (no I/O, unit-tested): SIZE and GRANULARITY (power of two) of the export. */
int discarder_new(uint64_t size, uint64_t granularity, discard_trim_fn trim, void *opaque,
		  struct discarder **ret);
/* Acknowledges [offset, offset+length). -EINVAL zero length or overflow, -ERANGE past the end,
 * -ENOSPC too many fragments, or the trim function's error. */
int discarder_ack(struct discarder *d, uint64_t offset, uint64_t length);
uint64_t discarder_trimmed(const struct discarder *d);   /* bytes trimmed */
uint64_t discarder_requests(const struct discarder *d);  /* TRIM requests sent */
uint64_t discarder_pending(const struct discarder *d);   /* bytes remembered, not trimmed */
void discarder_free(struct discarder *d);

/* Over NBD: a connection to URI (simple replies) whose trim function sends NBD_CMD_TRIM.
 * -EOPNOTSUPP when the export does not accept TRIM. *RET_WHY gets libnbd's words on failure. */
struct nbd_trimmer;
int nbd_trimmer_open(const char *uri, struct nbd_trimmer **ret, char *why, size_t why_len);
int nbd_trimmer_trim(void *trimmer, uint64_t offset, uint64_t length);
uint64_t nbd_trimmer_size(const struct nbd_trimmer *t);
void nbd_trimmer_close(struct nbd_trimmer *t);

#endif
