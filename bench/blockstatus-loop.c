/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blockstatus-loop URI CONTEXT [DEPTH]: the floor for `nbdattach map` — a bare libnbd
 * block-status loop over the whole export that only counts extents, prints
 * "EXTENTS DIRTY_EXTENTS DIRTY_BYTES". Same request chunk as blockstatus.c (1 MiB-aligned,
 * just under 2^32). DEPTH (default 1) requests are kept in flight over consecutive ranges;
 * a reply that stops short of its range is followed by a request for the rest.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <libnbd.h>

#include "cleanup.h"

DEFINE_CLEANUP(struct nbd_handle *, nbd_close)

#define CHUNK (UINT64_C(0xFFF00000))
#define DEPTH_MAX 16

struct req {
	uint64_t off, len, covered;
	int64_t cookie;
};

static uint64_t extents, dirty, bytes;

static int count_cb(void *opaque, const char *ctx, uint64_t off, uint32_t *e, size_t n, int *err)
{
	struct req *r = opaque;

	for (size_t i = 0; i + 1 < n && r->covered < r->len; i += 2) {
		uint64_t len = e[i] < r->len - r->covered ? e[i] : r->len - r->covered;

		extents++;
		if (e[i + 1] & 1)
			dirty++, bytes += len;
		r->covered += len;
	}
	return 0;
}

static int ask(struct nbd_handle *nbd, struct req *r, uint64_t off, uint64_t len)
{
	*r = (struct req){ .off = off, .len = len };
	r->cookie = nbd_aio_block_status(nbd, len, off, (nbd_extent_callback){ .callback = count_cb,
					 .user_data = r }, NBD_NULL_COMPLETION, 0);
	return r->cookie == -1 ? -1 : 0;
}

static int wait_for(struct nbd_handle *nbd, const struct req *r)
{
	int c;

	while ((c = nbd_aio_command_completed(nbd, r->cookie)) == 0)
		if (nbd_poll(nbd, -1) == -1)
			return -1;
	return c == 1 ? 0 : -1;
}

/* ring[head] .. ring[head + count - 1] (mod depth) cover consecutive ranges from the oldest. */
static int walk(struct nbd_handle *nbd, uint64_t size, unsigned depth)
{
	struct req ring[DEPTH_MAX];
	unsigned head = 0, count = 0;
	uint64_t asked = 0, next = 0;

	while (next < size) {
		struct req r;

		for (; count < depth && asked < size; count++) {
			uint64_t len = size - asked < CHUNK ? size - asked : CHUNK;

			if (ask(nbd, &ring[(head + count) % depth], asked, len) == -1)
				return -1;
			asked += len;
		}
		if (wait_for(nbd, &ring[head]) == -1)
			return -1;
		r = ring[head];
		if (r.covered == 0) {
			fprintf(stderr, "blockstatus-loop: no progress\n");
			exit(1);
		}
		head = (head + 1) % depth, count--;
		next = r.off + r.covered;
		if (next < r.off + r.len) {
			head = (head + depth - 1) % depth, count++;
			if (ask(nbd, &ring[head], next, r.off + r.len - next) == -1)
				return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_(nbd_closep) struct nbd_handle *nbd = NULL;
	unsigned depth = argc == 4 ? (unsigned)atoi(argv[3]) : 1;
	int64_t size;

	if (argc < 3 || argc > 4 || depth < 1 || depth > DEPTH_MAX) {
		fprintf(stderr, "usage: blockstatus-loop URI CONTEXT [DEPTH (1-%d)]\n", DEPTH_MAX);
		return 2;
	}
	nbd = nbd_create();
	if (!nbd || nbd_add_meta_context(nbd, argv[2]) == -1 || nbd_connect_uri(nbd, argv[1]) == -1 ||
	    (size = nbd_get_size(nbd)) < 0 || walk(nbd, (uint64_t)size, depth) == -1) {
		fprintf(stderr, "blockstatus-loop: %s\n", nbd_get_error());
		return 1;
	}
	printf("%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", extents, dirty, bytes);
	nbd_shutdown(nbd, 0);
	return 0;
}
