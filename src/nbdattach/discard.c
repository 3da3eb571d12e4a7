/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "discard.h"

struct frag {
	uint64_t start, end; /* [start, end) */
};

struct discarder {
	uint64_t size, gran, trimmed, requests, pending;
	discard_trim_fn trim;
	void *opaque;
	struct frag *v; /* sorted, disjoint, not touching */
	size_t n, cap;
};

int discarder_new(uint64_t size, uint64_t granularity, discard_trim_fn trim, void *opaque,
		  struct discarder **ret)
{
	struct discarder *d;

	if (!size || !granularity || (granularity & (granularity - 1)) || !trim)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*d = (struct discarder){ .size = size, .gran = granularity, .trim = trim, .opaque = opaque };
	*ret = d;
	return 0;
}

/* First fragment whose end is >= START (a fragment touching START merges with it). */
static size_t lower_bound(const struct discarder *d, uint64_t start)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (d->v[mid].end < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int grow(struct discarder *d)
{
	struct frag *nv;
	size_t cap = d->cap ? d->cap * 2 : 16;

	if (d->n >= DISCARD_FRAGMENTS_MAX)
		return -ENOSPC;
	nv = reallocarray(d->v, cap, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	d->v = nv;
	d->cap = cap;
	return 0;
}

/* Merges [start, end) into the set; returns the index of the merged fragment. */
static int insert(struct discarder *d, uint64_t start, uint64_t end, size_t *ret_i)
{
	size_t i = lower_bound(d, start), j = i;
	uint64_t s = start, e = end, covered = 0;

	while (j < d->n && d->v[j].start <= end) {
		s = d->v[j].start < s ? d->v[j].start : s;
		e = d->v[j].end > e ? d->v[j].end : e;
		covered += d->v[j].end - d->v[j].start;
		j++;
	}
	if (j == i) {
		if (d->n == d->cap) {
			int r = grow(d);
			if (r < 0)
				return r;
		}
		memmove(d->v + i + 1, d->v + i, (d->n - i) * sizeof(*d->v));
		d->n++;
	} else if (j > i + 1) {
		memmove(d->v + i + 1, d->v + j, (d->n - j) * sizeof(*d->v));
		d->n -= j - i - 1;
	}
	d->v[i] = (struct frag){ s, e };
	d->pending += (e - s) - covered;
	*ret_i = i;
	return 0;
}

static void remove_at(struct discarder *d, size_t i)
{
	memmove(d->v + i, d->v + i + 1, (d->n - i - 1) * sizeof(*d->v));
	d->n--;
}

/* NBD lengths are 32-bit: trim in granule-aligned pieces below 4 GiB. */
static int trim_range(struct discarder *d, uint64_t a, uint64_t b)
{
	uint64_t piece = (UINT64_C(1) << 31) & ~(d->gran - 1);

	if (!piece)
		piece = d->gran;
	while (a < b) {
		uint64_t n = b - a < piece ? b - a : piece;
		int r = d->trim(d->opaque, a, n);

		if (r < 0)
			return r;
		d->requests++;
		d->trimmed += n;
		a += n;
	}
	return 0;
}

/* Trims the whole granules inside fragment I and keeps only its unaligned ends. */
static int settle(struct discarder *d, size_t i)
{
	struct frag f = d->v[i];
	uint64_t g = d->gran, last = d->size & ~(g - 1); /* a granule past `last` straddles the end */
	uint64_t a = (f.start + g - 1) & ~(g - 1), b = f.end & ~(g - 1);
	int r;

	if (f.start > UINT64_MAX - (g - 1))
		return 0;
	if (b > last)
		b = last;
	if (a >= b)
		return 0;
	r = trim_range(d, a, b);
	if (r < 0)
		return r;
	d->pending -= b - a;
	if (f.start < a && b < f.end) {
		int e;
		size_t k;

		d->v[i].end = a;
		d->pending -= f.end - b; /* insert() counts it again */
		e = insert(d, b, f.end, &k);
		return e;
	}
	if (f.start < a)
		d->v[i].end = a;
	else if (b < f.end)
		d->v[i].start = b;
	else
		remove_at(d, i);
	return 0;
}

int discarder_ack(struct discarder *d, uint64_t offset, uint64_t length)
{
	size_t i;
	int r;

	if (!length || offset > UINT64_MAX - length)
		return -EINVAL;
	if (offset + length > d->size)
		return -ERANGE;
	r = insert(d, offset, offset + length, &i);
	return r < 0 ? r : settle(d, i);
}

uint64_t discarder_trimmed(const struct discarder *d) { return d->trimmed; }
uint64_t discarder_requests(const struct discarder *d) { return d->requests; }
uint64_t discarder_pending(const struct discarder *d) { return d->pending; }

void discarder_free(struct discarder *d)
{
	if (!d)
		return;
	free(d->v);
	free(d);
}

/* ---- over NBD ---- */

struct nbd_trimmer {
	struct nbd_handle *h;
	uint64_t size;
};

DEFINE_CLEANUP(struct nbd_handle *, nbd_close)

static int nbd_err(char *why, size_t len, const char *what)
{
	const char *m = nbd_get_error();
	int e = nbd_get_errno();

	snprintf(why, len, "%s: %s", what, m ? m : "failed");
	return -(e > 0 ? e : EIO);
}

int nbd_trimmer_open(const char *uri, struct nbd_trimmer **ret, char *why, size_t why_len)
{
	_cleanup_(nbd_closep) struct nbd_handle *h = nbd_create();
	struct nbd_trimmer *t;
	int64_t size;

	if (!h)
		return nbd_err(why, why_len, "libnbd");
	if (nbd_set_request_structured_replies(h, false) < 0 || nbd_set_uri_allow_local_file(h, false) < 0 ||
	    nbd_connect_uri(h, uri) < 0)
		return nbd_err(why, why_len, "cannot connect for discards");
	size = nbd_get_size(h);
	if (size <= 0)
		return nbd_err(why, why_len, "export size");
	if (nbd_can_trim(h) != 1 || nbd_is_read_only(h) == 1) {
		snprintf(why, why_len, "the export does not accept discards (not writable or no TRIM)");
		return -EOPNOTSUPP;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->h = TAKE_PTR(h);
	t->size = (uint64_t)size;
	*ret = t;
	return 0;
}

int nbd_trimmer_trim(void *trimmer, uint64_t offset, uint64_t length)
{
	struct nbd_trimmer *t = trimmer;

	if (nbd_trim(t->h, length, offset, 0) < 0) {
		int e = nbd_get_errno();
		return -(e > 0 ? e : EIO);
	}
	return 0;
}

uint64_t nbd_trimmer_size(const struct nbd_trimmer *t)
{
	return t->size;
}

void nbd_trimmer_close(struct nbd_trimmer *t)
{
	if (!t)
		return;
	nbd_shutdown(t->h, 0);
	nbd_close(t->h);
	free(t);
}
