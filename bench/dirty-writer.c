/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dirty-writer URI STRIDE: dirty every other STRIDE bytes of a writable export (offsets 0,
 * 2*STRIDE, 4*STRIDE, ...), so a dirty bitmap of granularity STRIDE alternates dirty/clean.
 * Each granule gets one pipelined, payload-free WRITE_ZEROES (QEMU marks the bitmap for zero
 * writes like for data writes), or a 512-byte write when the server cannot zero.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "cleanup.h"

DEFINE_CLEANUP(struct nbd_handle *, nbd_close)

#define IN_FLIGHT 64

static int die(const char *what)
{
	fprintf(stderr, "dirty-writer: %s: %s\n", what, nbd_get_error());
	return 1;
}

/* Keep at most IN_FLIGHT commands queued: issue one, then drain completions as needed. */
static int issue(struct nbd_handle *nbd, uint64_t off, uint64_t stride, int zero)
{
	static char buf[512];

	while (nbd_aio_in_flight(nbd) >= IN_FLIGHT)
		if (nbd_poll(nbd, -1) == -1)
			return -1;
	if (zero)
		return nbd_aio_zero(nbd, stride, off, NBD_NULL_COMPLETION, 0) == -1 ? -1 : 0;
	return nbd_aio_pwrite(nbd, buf, sizeof buf, off, NBD_NULL_COMPLETION, 0) == -1 ? -1 : 0;
}

int main(int argc, char **argv)
{
	_cleanup_(nbd_closep) struct nbd_handle *nbd = NULL;
	uint64_t stride, size;
	int zero;

	if (argc != 3 || !(stride = strtoull(argv[2], NULL, 10))) {
		fprintf(stderr, "usage: dirty-writer URI STRIDE\n");
		return 2;
	}
	nbd = nbd_create();
	if (!nbd || nbd_connect_uri(nbd, argv[1]) == -1)
		return die("connect");
	size = (uint64_t)nbd_get_size(nbd);
	zero = nbd_can_zero(nbd) == 1;
	for (uint64_t off = 0; off < size; off += 2 * stride)
		if (issue(nbd, off, size - off < stride ? size - off : stride, zero) == -1)
			return die("write");
	while (nbd_aio_in_flight(nbd) > 0)
		if (nbd_poll(nbd, -1) == -1)
			return die("poll");
	if (nbd_flush(nbd, 0) == -1 && nbd_can_flush(nbd) == 1)
		return die("flush");
	nbd_shutdown(nbd, 0);
	return 0;
}
