/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The discard engine: every TRIM whole granules (never a granule straddling the export end),
 * partial granules remembered and merged until complete, exact errno for bad input, bounded
 * memory; and a randomised run against a bitmap model. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "discard.h"
#include "unit.h"

#define G 65536u

struct log {
	uint64_t off[4096], len[4096];
	unsigned n;
	bool misaligned;
	uint64_t gran, size;
	unsigned char *trimmed; /* per granule */
};

static int record(void *opaque, uint64_t off, uint64_t len)
{
	struct log *l = opaque;

	if (off % l->gran || len % l->gran || len == 0 || off + len > (l->size & ~(l->gran - 1)))
		l->misaligned = true;
	if (l->n < 4096) {
		l->off[l->n] = off;
		l->len[l->n] = len;
	}
	l->n++;
	if (l->trimmed)
		for (uint64_t g = off / l->gran; g < (off + len) / l->gran; g++)
			l->trimmed[g] = 1;
	return 0;
}

static struct discarder *mk(struct log *l, uint64_t size)
{
	struct discarder *d = NULL;

	memset(l, 0, sizeof(*l));
	l->gran = G;
	l->size = size;
	expect_int("discarder_new", 0, discarder_new(size, G, record, l, &d));
	return d;
}

static void test_basic(void)
{
	struct log l;
	struct discarder *d = mk(&l, 100 * G);

	expect_int("aligned ack", 0, discarder_ack(d, 2 * G, 3 * G));
	unit_check(l.n == 1 && l.off[0] == 2 * G && l.len[0] == 3 * G, "aligned ack trims as is", "n=%u", l.n);
	expect_int("1-byte ack", 0, discarder_ack(d, 10 * G, 1));
	expect_int("4 KiB ack", 0, discarder_ack(d, 10 * G + 1, 4095));
	unit_check(l.n == 1, "partial granule not trimmed yet", "n=%u", l.n);
	expect_u64("pending bytes", 4096, discarder_pending(d));
	expect_int("rest of the granule", 0, discarder_ack(d, 10 * G + 4096, G - 4096));
	unit_check(l.n == 2 && l.off[1] == 10 * G && l.len[1] == G, "granule trimmed once complete", "n=%u", l.n);
	expect_u64("nothing pending", 0, discarder_pending(d));
	expect_int("straddling ack", 0, discarder_ack(d, 20 * G + 100, G));
	unit_check(l.n == 2, "straddling two granules trims nothing", "n=%u", l.n);
	expect_int("head of the first", 0, discarder_ack(d, 20 * G, 100));
	unit_check(l.n == 3 && l.off[2] == 20 * G && l.len[2] == G, "first granule completes", "n=%u", l.n);
	expect_int("tail of the second", 0, discarder_ack(d, 21 * G + 100, G - 100));
	unit_check(l.n == 4 && l.off[3] == 21 * G && l.len[3] == G, "second granule completes", "n=%u", l.n);
	expect_int("zero length", -EINVAL, discarder_ack(d, 0, 0));
	expect_int("overflow", -EINVAL, discarder_ack(d, UINT64_MAX, 2));
	expect_int("past the end", -ERANGE, discarder_ack(d, 99 * G, 2 * G));
	unit_check(!l.misaligned, "no misaligned trim", "one was");
	discarder_free(d);
}

static void test_tail(void)
{
	struct log l;
	struct discarder *d = mk(&l, 10 * G + 4096);

	expect_int("ack to the unaligned end", 0, discarder_ack(d, 9 * G, G + 4096));
	unit_check(l.n == 1 && l.off[0] == 9 * G && l.len[0] == G, "granule straddling the end is never trimmed",
		   "n=%u", l.n);
	unit_check(!l.misaligned, "no misaligned trim at the end", "one was");
	discarder_free(d);
}

static void test_bounded(void)
{
	struct log l;
	struct discarder *d = mk(&l, UINT64_C(1) << 40);
	int r = 0;

	for (uint64_t i = 0; r == 0 && i < DISCARD_FRAGMENTS_MAX + 10; i++)
		r = discarder_ack(d, i * 2 * G, 1);
	expect_int("scattered fragments are capped", -ENOSPC, r);
	discarder_free(d);
}

/* Random acks of random pieces, in random order, until everything is acknowledged: exactly
 * the whole granules below the last aligned end are trimmed, each aligned. */
static void test_random(void)
{
	const uint64_t size = 200 * G + 12345;
	unsigned char *acked = calloc(size, 1);
	struct log l;
	struct discarder *d = mk(&l, size);
	unsigned seed = 12345;
	bool all_ok = true;

	l.trimmed = calloc(size / G + 1, 1);
	for (unsigned round = 0; round < 20000; round++) {
		uint64_t off = (uint64_t)rand_r(&seed) % size, len = 1 + (uint64_t)rand_r(&seed) % (3 * G);

		if (off + len > size)
			len = size - off;
		memset(acked + off, 1, len);
		if (discarder_ack(d, off, len) < 0)
			all_ok = false;
	}
	for (uint64_t off = 0; off < size; off += 4093) { /* fill the holes */
		uint64_t len = off + 4093 > size ? size - off : 4093;
		if (discarder_ack(d, off, len) < 0)
			all_ok = false;
	}
	unit_check(all_ok, "random acks accepted", "an ack failed");
	unit_check(!l.misaligned, "random acks: every trim aligned and before the end", "misaligned");
	for (uint64_t g = 0; g < size / G; g++)
		if (!l.trimmed[g])
			all_ok = false;
	unit_check(all_ok, "random acks: every whole granule trimmed", "one was not");
	unit_check(!l.trimmed[size / G], "random acks: the granule at the end untouched", "trimmed");
	free(l.trimmed);
	free(acked);
	discarder_free(d);
}

int main(void)
{
	test_basic();
	test_tail();
	test_bounded();
	test_random();
	return unit_exit();
}
