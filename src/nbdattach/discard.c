/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <libnbd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "clock.h"
#include "discard.h"
#include "nbdconn.h"
#include "pin.h"

struct frag {
	uint64_t start, end; /* [start, end) */
};

struct discarder {
	uint64_t size, gran, pending;
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
		a += n;
	}
	return 0;
}

/* The whole granules inside [START, END) that may be trimmed, [*RET_A, *RET_B); false when
 * there are none. A granule that straddles the export end never may. */
static bool inner_granules(const struct discarder *d, uint64_t start, uint64_t end, uint64_t *ret_a,
			   uint64_t *ret_b)
{
	uint64_t g = d->gran, last = d->size & ~(g - 1);

	if (start > UINT64_MAX - (g - 1))
		return false;
	*ret_a = (start + g - 1) & ~(g - 1);
	*ret_b = (end & ~(g - 1)) < last ? end & ~(g - 1) : last;
	return *ret_a < *ret_b;
}

/* Trims the whole granules inside fragment I and keeps only its unaligned ends. */
static int settle(struct discarder *d, size_t i)
{
	struct frag f = d->v[i];
	uint64_t a, b;
	int r;

	if (!inner_granules(d, f.start, f.end, &a, &b))
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
	if (r == -ENOSPC) {
		/* No room to remember its ends (it touches no fragment, or it would have merged):
		 * its own whole granules are trimmed all the same, its ends forgotten. */
		uint64_t a, b;
		int e = inner_granules(d, offset, offset + length, &a, &b) ? trim_range(d, a, b) : 0;

		return e < 0 ? e : r;
	}
	return r < 0 ? r : settle(d, i);
}

uint64_t discarder_pending(const struct discarder *d) { return d->pending; }

void discarder_free(struct discarder *d)
{
	if (!d)
		return;
	free(d->v);
	free(d);
}

/* ---- over NBD ---- */

/* TRIMs are sent with libnbd's asynchronous API: a server that stops answering must never
 * block the caller's event loop (nbd_trim would wait for the reply forever), and closing never
 * waits for the server either (nbd_shutdown would). */

struct trim_cmd {
	int64_t cookie;
	uint64_t length;
};

struct nbd_trimmer {
	struct nbd_handle *h;
	uint64_t size;
	int64_t timeout_ms;
	int error;             /* the first failure: nothing is sent after it */
	int64_t progress_ms;   /* when a reply last came, or the first command went out */
	struct trim_cmd *q;    /* in flight, oldest first */
	size_t n, cap;
	uint64_t trimmed, requests;
};

DEFINE_CLEANUP(struct nbd_handle *, nbd_close)

static int nbd_errno(void)
{
	int e = nbd_get_errno();

	return -(e > 0 ? e : EIO);
}

static int nbd_err(char *why, size_t len, const char *what)
{
	const char *m = nbd_get_error();

	snprintf(why, len, "%s: %s", what, m ? m : "failed");
	return nbd_errno();
}

static int trimmer_fail(struct nbd_trimmer *t, int e)
{
	if (!t->error)
		t->error = e;
	return t->error;
}

/* Connects H to URI; with PIN, only to the socket and the user the device was attached to:
 * no TRIM may reach another server through a swapped path. */
static int connect_pinned(struct nbd_handle *h, const char *uri, const struct server_pin *pin,
			  int64_t timeout_ms, char *why, size_t why_len)
{
	_cleanup_(pin_close) struct pinned_uri p = { .fd = -1 };
	struct server_pin seen;
	int r = pin_open(uri, pin, &p);

	if (r < 0) {
		snprintf(why, why_len, "%s%s", r == -ESTALE ? "" : "cannot connect for discards: ", pin_strerror(r));
		return r;
	}
	r = nbd_connect_within(h, p.uri, timeout_ms);
	if (r == -ETIMEDOUT) {
		snprintf(why, why_len, "cannot connect for discards: the server did not complete the "
			 "handshake in %" PRId64 " s", timeout_ms / 1000);
		return r;
	}
	if (r < 0)
		return nbd_err(why, why_len, "cannot connect for discards");
	r = pin && pin->known ? pin_peer(h, pin, &seen) : 0;
	if (r < 0)
		snprintf(why, why_len, "%s", r == -ESTALE ? "another user's server answers on its socket"
							 : "cannot tell who serves its socket (SO_PEERCRED)");
	return r;
}

int nbd_trimmer_open(const char *uri, const struct server_pin *pin, int64_t timeout_ms,
		     struct nbd_trimmer **ret, char *why, size_t why_len)
{
	_cleanup_(nbd_closep) struct nbd_handle *h = nbd_create();
	struct nbd_trimmer *t;
	int64_t size;
	int r;

	if (!h)
		return nbd_err(why, why_len, "libnbd");
	if (nbd_set_request_structured_replies(h, false) < 0 || nbd_set_uri_allow_local_file(h, false) < 0)
		return nbd_err(why, why_len, "libnbd");
	if (timeout_ms <= 0)
		timeout_ms = NBD_TRIMMER_TIMEOUT_MS;
	/* run's --timeout is the kernel's, up to 49 days: the handshake gets at most the usual. */
	r = connect_pinned(h, uri, pin, timeout_ms < NBD_HANDSHAKE_TIMEOUT_MS ? timeout_ms :
			   NBD_HANDSHAKE_TIMEOUT_MS, why, why_len);
	if (r < 0)
		return r;
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
	t->timeout_ms = timeout_ms;
	*ret = t;
	return 0;
}

static int queue_grow(struct nbd_trimmer *t)
{
	size_t cap = t->cap ? t->cap * 2 : 16;
	struct trim_cmd *nq = reallocarray(t->q, cap, sizeof(*nq));

	if (!nq)
		return -ENOMEM;
	t->q = nq;
	t->cap = cap;
	return 0;
}

int nbd_trimmer_trim(void *trimmer, uint64_t offset, uint64_t length)
{
	struct nbd_trimmer *t = trimmer;
	int64_t c;

	if (t->error)
		return t->error;
	if (t->n >= NBD_TRIMMER_QUEUE_MAX)
		return trimmer_fail(t, -ENOBUFS);
	if (t->n == t->cap && queue_grow(t) < 0)
		return trimmer_fail(t, -ENOMEM);
	c = nbd_aio_trim(t->h, length, offset, NBD_NULL_COMPLETION, 0);
	if (c < 0)
		return trimmer_fail(t, nbd_errno());
	if (t->n == 0)
		t->progress_ms = now_ms();
	t->q[t->n++] = (struct trim_cmd){ .cookie = c, .length = length };
	return 0;
}

/* Retires what the server has answered; the first failed TRIM fails the trimmer. */
static void retire(struct nbd_trimmer *t)
{
	size_t k = 0;

	for (size_t i = 0; i < t->n; i++) {
		int r = nbd_aio_command_completed(t->h, (uint64_t)t->q[i].cookie);

		if (r == 0) {
			t->q[k++] = t->q[i];
			continue;
		}
		t->progress_ms = now_ms();
		if (r < 0) {
			trimmer_fail(t, nbd_errno());
		} else {
			t->trimmed += t->q[i].length;
			t->requests++;
		}
	}
	t->n = k;
}

int nbd_trimmer_poll_fd(const struct nbd_trimmer *t, short *ret_events)
{
	unsigned dir;
	int fd;

	if (t->error || !t->n)
		return -1;
	fd = nbd_aio_get_fd(t->h);
	if (fd < 0)
		return -1; /* dead: nbd_trimmer_dispatch() says so */
	dir = nbd_aio_get_direction(t->h);
	*ret_events = (short)((dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
			      (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0));
	return fd;
}

int nbd_trimmer_dispatch(struct nbd_trimmer *t, short revents)
{
	int r = 0;

	if (t->error || !t->n)
		return t->error;
	/* An event for a direction libnbd does not wait for is left alone (its state machine
	 * rejects it); a hang-up or error shows in whichever direction it waits for. */
	if ((revents & (POLLIN | POLLHUP | POLLERR)) && (nbd_aio_get_direction(t->h) & LIBNBD_AIO_DIRECTION_READ))
		r = nbd_aio_notify_read(t->h);
	if (r == 0 && (revents & (POLLOUT | POLLHUP | POLLERR)) &&
	    (nbd_aio_get_direction(t->h) & LIBNBD_AIO_DIRECTION_WRITE))
		r = nbd_aio_notify_write(t->h);
	if (r < 0)
		trimmer_fail(t, nbd_errno());
	retire(t);
	if (!t->error && t->n && (nbd_aio_is_dead(t->h) == 1 || nbd_aio_is_closed(t->h) == 1))
		trimmer_fail(t, -ENOTCONN);
	if (!t->error && t->n && now_ms() >= t->progress_ms + t->timeout_ms)
		trimmer_fail(t, -ETIMEDOUT);
	return t->error;
}

int64_t nbd_trimmer_deadline(const struct nbd_trimmer *t)
{
	return t->error || !t->n ? -1 : t->progress_ms + t->timeout_ms;
}

size_t nbd_trimmer_in_flight(const struct nbd_trimmer *t)
{
	return t->error ? 0 : t->n;
}

int nbd_trimmer_error(const struct nbd_trimmer *t)
{
	return t->error;
}

int nbd_trimmer_flush(struct nbd_trimmer *t)
{
	while (!t->error && t->n) {
		int64_t left = t->progress_ms + t->timeout_ms - now_ms();

		if (left <= 0)
			return trimmer_fail(t, -ETIMEDOUT);
		if (nbd_poll(t->h, left > INT_MAX ? INT_MAX : (int)left) < 0 && nbd_get_errno() != EINTR)
			trimmer_fail(t, nbd_errno());
		retire(t);
		if (!t->error && t->n && nbd_aio_is_dead(t->h) == 1)
			trimmer_fail(t, -ENOTCONN);
	}
	return t->error;
}

uint64_t nbd_trimmer_size(const struct nbd_trimmer *t) { return t->size; }
uint64_t nbd_trimmer_trimmed(const struct nbd_trimmer *t) { return t->trimmed; }
uint64_t nbd_trimmer_requests(const struct nbd_trimmer *t) { return t->requests; }

void nbd_trimmer_close(struct nbd_trimmer *t)
{
	if (!t)
		return;
	/* A failed trimmer's connection is just closed. */
	if (t->error)
		nbd_close(t->h);
	else
		nbd_close_now(t->h);
	free(t->q);
	free(t);
}
