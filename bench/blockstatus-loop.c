/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * blockstatus-loop URI CONTEXT: the floor for `nbdattach map` — a bare libnbd block-status loop
 * over the whole export that only counts extents, prints "EXTENTS DIRTY_EXTENTS DIRTY_BYTES".
 * Same request chunk as blockstatus.c (1 MiB-aligned, just under 2^32).
 */
#include <inttypes.h>
#include <stdio.h>

#include <libnbd.h>

#include "cleanup.h"

DEFINE_CLEANUP(struct nbd_handle *, nbd_close)

#define CHUNK (UINT64_C(0xFFF00000))

struct counts {
	uint64_t pos, extents, dirty, bytes;
};

static int count_cb(void *opaque, const char *ctx, uint64_t off, uint32_t *e, size_t n, int *err)
{
	struct counts *c = opaque;

	for (size_t i = 0; i + 1 < n; i += 2) {
		c->extents++;
		if (e[i + 1] & 1)
			c->dirty++, c->bytes += e[i];
		c->pos += e[i];
	}
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_(nbd_closep) struct nbd_handle *nbd = NULL;
	struct counts c = { 0 };
	int64_t size;

	if (argc != 3) {
		fprintf(stderr, "usage: blockstatus-loop URI CONTEXT\n");
		return 2;
	}
	nbd = nbd_create();
	if (!nbd || nbd_add_meta_context(nbd, argv[2]) == -1 || nbd_connect_uri(nbd, argv[1]) == -1 ||
	    (size = nbd_get_size(nbd)) < 0)
		goto err;
	while (c.pos < (uint64_t)size) {
		uint64_t before = c.pos, len = (uint64_t)size - c.pos < CHUNK ? (uint64_t)size - c.pos : CHUNK;
		if (nbd_block_status(nbd, len, c.pos, (nbd_extent_callback){ .callback = count_cb,
							  .user_data = &c }, 0) == -1)
			goto err;
		if (c.pos == before) {
			fprintf(stderr, "blockstatus-loop: no progress\n");
			return 1;
		}
	}
	printf("%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", c.extents, c.dirty, c.bytes);
	nbd_shutdown(nbd, 0);
	return 0;
err:
	fprintf(stderr, "blockstatus-loop: %s\n", nbd_get_error());
	return 1;
}
