/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target: the validation of NBD block-status replies in blockstatus.c (a hostile
 * server's input), driven through blockstatus_walk() with libnbd replaced by stubs that play
 * the fuzz input as replies.
 *
 * Input: 8 bytes little-endian export size (taken modulo 2^40, plus 1), then per request:
 *   1 byte  chunks in this reply (low 2 bits: 0..3)
 *   per chunk: 1 byte flags (bit 0: another context's name, bit 1: wrong offset),
 *              1 byte descriptor words N (0..31; odd is malformed), N x 4 bytes little-endian
 * Input running out is a server that died (the request fails).
 *
 * Checked on everything the walk hands on: extents are contiguous from 0, non-empty, inside
 * the export and never past the end of a request made; a successful walk covers the export and
 * never had a reply with two chunks for its context.
 */
#include <endian.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blockstatus.c"

#define CTX "qemu:dirty-bitmap:x"

static const uint8_t *in;
static size_t in_left;
static uint64_t export_size;
static _Atomic uint64_t req_end_max; /* read by the consumer thread */
static uint64_t seen_next;           /* consumer thread only (one FN call at a time) */
static bool saw_second_chunk;        /* a reply carried two chunks for our context */

static bool take(void *p, size_t n)
{
	if (in_left < n)
		return false;
	memcpy(p, in, n);
	in += n, in_left -= n;
	return true;
}

/* ---- libnbd stubs (the prototypes come from <libnbd.h>) ---- */

struct nbd_handle { int unused; };
static struct nbd_handle the_handle;

struct nbd_handle *nbd_create(void) { return &the_handle; }
void nbd_close(struct nbd_handle *h) { (void)h; }
const char *nbd_get_error(void) { return "stub: server went away"; }
int nbd_get_errno(void) { return ECONNRESET; }
int nbd_set_request_structured_replies(struct nbd_handle *h, bool r) { (void)h, (void)r; return 0; }
int nbd_add_meta_context(struct nbd_handle *h, const char *n) { (void)h, (void)n; return 0; }
int nbd_connect_within(struct nbd_handle *h, const char *u, int64_t t) { (void)h, (void)u, (void)t; return 0; }
int nbd_can_meta_context(struct nbd_handle *h, const char *n) { (void)h, (void)n; return 1; }
int64_t nbd_get_size(struct nbd_handle *h) { (void)h; return (int64_t)export_size; }
void nbd_close_now(struct nbd_handle *h) { (void)h; }
/* not reached: the walk is fuzzed without a pinned server */
int pin_peer(struct nbd_handle *h, const struct server_pin *e, struct server_pin *p) { (void)h, (void)e, (void)p; abort(); }

static int play_reply(uint64_t count, uint64_t offset, nbd_extent_callback cb);
static int64_t cookies;   /* the last one handed out */
static int last_result;   /* its reply: 1 fine, -1 failed */

/* The reply comes at once (the server is the input): played before the request returns. */
int64_t nbd_aio_block_status(struct nbd_handle *h, uint64_t count, uint64_t offset,
			     nbd_extent_callback cb, nbd_completion_callback done, uint32_t flags)
{
	(void)h, (void)done, (void)flags;
	last_result = play_reply(count, offset, cb) == 0 ? 1 : -1;
	return ++cookies;
}

int nbd_aio_command_completed(struct nbd_handle *h, uint64_t cookie)
{
	(void)h;
	if ((int64_t)cookie != cookies)
		abort(); /* only the request just made may be asked about */
	return last_result;
}

int nbd_poll(struct nbd_handle *h, int timeout) { (void)h, (void)timeout; abort(); }

/* One reply: play the chunks the input describes through the callback, as libnbd would. */
static int play_reply(uint64_t count, uint64_t offset, nbd_extent_callback cb)
{
	uint8_t nchunks;
	unsigned ours = 0;
	bool failed = false;

	if (count == 0 || count > UINT32_MAX || offset + count > export_size)
		abort(); /* the walk must only ask for valid ranges */
	if (offset + count > atomic_load(&req_end_max))
		atomic_store(&req_end_max, offset + count);
	if (!take(&nchunks, 1))
		return -1;
	for (unsigned c = 0; c < (nchunks & 3u); c++) {
		uint8_t cf, nw;
		uint32_t e[31];
		int error = 0;

		if (!take(&cf, 1) || !take(&nw, 1))
			return -1;
		nw &= 31;
		if (!take(e, nw * sizeof(*e)))
			return -1;
		for (unsigned i = 0; i < nw; i++)
			e[i] = le32toh(e[i]);
		if (!(cf & 1) && ++ours == 2)
			saw_second_chunk = true;
		if (cb.callback(cb.user_data, cf & 1 ? "base:allocation" : CTX,
				cf & 2 ? offset + 1 : offset, e, nw, &error) == -1)
			failed = true;
	}
	return failed ? -1 : 0;
}

/* ---- the consumer ---- */

static int check_extent(void *opaque, uint64_t off, uint64_t len, uint32_t flags)
{
	(void)opaque, (void)flags;
	if (off != seen_next || len == 0 || len > export_size - off ||
	    off + len > atomic_load(&req_end_max))
		abort();
	seen_next = off + len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blockstatus *bs = NULL;
	uint64_t v;
	int r;

	if (size < 8)
		return 0;
	memcpy(&v, data, 8);
	export_size = le64toh(v) % (UINT64_C(1) << 40) + 1;
	in = data + 8, in_left = size - 8;
	atomic_store(&req_end_max, 0);
	seen_next = 0;
	saw_second_chunk = false;
	if (blockstatus_connect("nbd+unix:///?socket=/fuzz", CTX, NULL, &bs) < 0)
		abort();
	r = blockstatus_walk(bs, check_extent, NULL);
	if (r == 0 && (seen_next != export_size || saw_second_chunk))
		abort(); /* NBD spec: exactly one status chunk per context in a reply */
	if (r < 0 && !blockstatus_error(bs))
		abort(); /* every failure has a reason for the one error line */
	blockstatus_free(bs);
	return 0;
}
