/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "blockstatus.h"
#include "cleanup.h"
#include "clock.h"
#include "nbdconn.h"
#include "pin.h"

DEFINE_CLEANUP(struct nbd_handle *, nbd_close)

/* nbd_block_status takes at most 2^32-1 bytes; a 1 MiB-aligned chunk just under that keeps
 * request boundaries aligned to every granularity up to 1 MiB, and QEMU answers each with at
 * most 131072 extents anyway, so a bigger chunk only means fewer round trips. */
#define CHUNK (UINT64_C(0xFFF00000))

/* How long the server may take over one reply: QEMU answers from the bitmap in memory. */
#define BLOCKSTATUS_TIMEOUT_MS 30000

struct blockstatus {
	struct nbd_handle *nbd;
	char *context;
	uint64_t size;
	char why[256];
};

/* The extents of one reply, copied out of libnbd's callback. */
struct batch {
	uint32_t *e;    /* length, flags pairs */
	size_t n, cap;  /* in uint32_t */
	uint64_t start; /* offset of the first extent */
};

/*
 * Replies are validated and copied on the calling thread, and handed in order to a consumer
 * thread that runs FN: while FN works through one reply, the calling thread is already
 * reading the next, so the server never waits for us. Two batches: one being filled, one
 * being consumed.
 */
struct pipeline {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct batch slot[2];
	unsigned head, count; /* slot[head] is the oldest of COUNT queued batches */
	bool done;            /* no more batches */
	int err;              /* FN's first error; later batches are dropped */
	blockstatus_fn fn;
	void *opaque;
};

struct walk {
	struct blockstatus *bs;
	uint64_t req_off, req_len, next; /* next: where the next extent must start */
	bool seen;                       /* this reply already had our context's chunk */
	struct pipeline *p;
	int err;
};

static int fail(struct blockstatus *bs, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct blockstatus *bs, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(bs->why, sizeof bs->why, fmt, ap);
	va_end(ap);
	return err;
}

/* libnbd reports errors as a thread-local message plus errno; errno may be 0 (e.g. protocol). */
static int nbd_fail(struct blockstatus *bs, int fallback)
{
	int err = nbd_get_errno();
	const char *msg = nbd_get_error();

	fail(bs, 0, "%s", msg ? msg : "unknown libnbd error");
	return -(err > 0 ? err : fallback);
}

int blockstatus_connect(const char *uri, const char *context, const struct server_pin *server,
			struct blockstatus **ret)
{
	_cleanup_(nbd_closep) struct nbd_handle *nbd = NULL;
	struct blockstatus *bs;
	int64_t size;
	int r;

	bs = calloc(1, sizeof *bs);
	if (!bs)
		return -ENOMEM;
	*ret = bs;   /* the caller frees it even on failure so it can read blockstatus_error() */
	nbd = nbd_create();
	if (!nbd)
		return nbd_fail(bs, ENOMEM);
	/* Block status needs structured replies; libnbd requests them by default but say so. */
	if (nbd_set_request_structured_replies(nbd, true) == -1)
		return nbd_fail(bs, EIO);
	if (context) {
		bs->context = strdup(context);
		if (!bs->context)
			return -ENOMEM;
		if (nbd_add_meta_context(nbd, context) == -1)
			return nbd_fail(bs, EIO);
	}
	r = nbd_connect_within(nbd, uri, NBD_HANDSHAKE_TIMEOUT_MS);
	if (r == -ETIMEDOUT)
		return fail(bs, r, "the server did not complete the handshake in %d s",
			    NBD_HANDSHAKE_TIMEOUT_MS / 1000);
	if (r < 0)
		return nbd_fail(bs, ECONNREFUSED);
	if (server && server->known) {
		struct server_pin seen = { 0 };
		r = pin_peer(nbd, server, &seen);

		if (r == -ESTALE)
			return fail(bs, r, "the server's socket was created by uid %u, not uid %u", seen.uid,
				    server->uid);
		if (r < 0)
			return fail(bs, r, "cannot tell who created the server's socket (SO_PEERCRED)");
	}
	/* QEMU silently drops an unknown bitmap from the negotiated contexts; only this tells. */
	if (context && nbd_can_meta_context(nbd, context) != 1)
		return fail(bs, -ENOENT, "export does not offer meta context '%.82s%s'", context,
			    strlen(context) > 82 ? "..." : "");
	size = nbd_get_size(nbd);
	if (size < 0)
		return nbd_fail(bs, EIO);
	bs->size = (uint64_t)size;
	bs->nbd = TAKE_PTR(nbd);
	return 0;
}

uint64_t blockstatus_size(const struct blockstatus *bs) { return bs->size; }

const char *blockstatus_error(const struct blockstatus *bs)
{
	return bs && bs->why[0] ? bs->why : NULL;
}

/* Validate one reply before handing anything on: a hostile or buggy server must not make us
 * loop forever (no progress) or publish extents outside what was asked. libnbd 1.14 passes
 * extents through unchecked, and silently drops chunks for context ids it never negotiated
 * (those then show up here as "no progress"). The NBD protocol lets the final extent of a
 * reply, and only that one, run past the requested range when the server happens to know
 * more; QEMU never does it, other servers may. *ret_last is the final extent's length cut at
 * the request end: the next request starts there. */
static int check_reply(struct walk *w, const char *ctx, const uint32_t *e, size_t n,
		       uint32_t *ret_last)
{
	uint64_t end = w->req_off + w->req_len, pos = w->next;

	if (strcmp(ctx, w->bs->context))
		return fail(w->bs, -EPROTO, "server replied for unrequested context '%s'", ctx);
	if (w->seen)
		return fail(w->bs, -EPROTO, "server sent a second block status chunk for '%s' in "
			    "one reply", ctx);
	if (n == 0 || n % 2)
		return fail(w->bs, -EPROTO, "server sent a malformed block status reply");
	for (size_t i = 0; i < n; i += 2) {
		if (e[i] == 0)
			return fail(w->bs, -EPROTO, "server sent a zero-length extent at %" PRIu64, pos);
		if (e[i] > w->bs->size - pos)
			return fail(w->bs, -EPROTO, "server sent an extent past the export end (%"
				    PRIu64 "+%" PRIu32 ")", pos, e[i]);
		/* Only the final one may run past the request, and only one that starts in it. */
		if (pos == end || (e[i] > end - pos && i + 2 < n))
			return fail(w->bs, -EPROTO, "server sent an extent past the request (%"
				    PRIu64 "+%" PRIu32 ")", pos, e[i]);
		pos += e[i];
	}
	*ret_last = pos > end ? (uint32_t)(e[n - 2] - (pos - end)) : e[n - 2];
	return 0;
}

static void *consume(void *arg)
{
	struct pipeline *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct batch *b;
		int r = 0;

		while (!p->count && !p->done)
			pthread_cond_wait(&p->cond, &p->lock);
		if (!p->count)
			break;
		b = &p->slot[p->head];
		if (!p->err) {
			uint64_t pos = b->start;

			pthread_mutex_unlock(&p->lock); /* the batch is ours until we dequeue it */
			for (size_t i = 0; r == 0 && i < b->n; i += 2) {
				r = p->fn(p->opaque, pos, b->e[i], b->e[i + 1]);
				pos += b->e[i];
			}
			pthread_mutex_lock(&p->lock);
			if (r < 0)
				p->err = r;
		}
		p->head ^= 1;
		p->count--;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Queues a copy of a validated reply, its final extent cut to LAST; FN's error, if it failed
 * on an earlier one. */
static int enqueue(struct pipeline *p, uint64_t start, const uint32_t *e, size_t n, uint32_t last)
{
	struct batch *b;
	int r;

	pthread_mutex_lock(&p->lock);
	while (p->count == 2 && !p->err)
		pthread_cond_wait(&p->cond, &p->lock);
	r = p->err;
	/* The free slot is only ever touched here until it is queued. */
	b = &p->slot[(p->head + p->count) & 1];
	pthread_mutex_unlock(&p->lock);
	if (r < 0)
		return r;
	if (n > b->cap) {
		uint32_t *x = realloc(b->e, n * sizeof(*x));

		if (!x)
			return -ENOMEM;
		b->e = x, b->cap = n;
	}
	memcpy(b->e, e, n * sizeof(*e));
	b->e[n - 2] = last;
	b->n = n, b->start = start;
	pthread_mutex_lock(&p->lock);
	p->count++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* libnbd calls this once per block status chunk of the reply. */
static int extent_cb(void *user_data, const char *ctx, uint64_t offset, uint32_t *e,
		     size_t n, int *error)
{
	struct walk *w = user_data;
	uint32_t last = 0;

	if (w->err)
		return -1;
	if (offset != w->req_off) {
		w->err = fail(w->bs, -EPROTO, "server replied for the wrong offset");
		goto out;
	}
	/* The protocol allows one block status chunk per context in a successful reply: a
	 * second one is no continuation, refuse it. */
	w->err = check_reply(w, ctx, e, n, &last);
	if (!w->err)
		w->err = enqueue(w->p, w->next, e, n, last);
	if (!w->err) {
		w->seen = true;
		for (size_t i = 0; i + 2 < n; i += 2)
			w->next += e[i];
		w->next += last;
	}
out:
	if (w->err)
		*error = -w->err;
	return w->err ? -1 : 0;
}

/* One block status request and its reply, within BLOCKSTATUS_TIMEOUT_MS: nbd_block_status()
 * would wait for good on a server that stopped answering, and run, which maps in its own
 * process while its signals wait, could then only be SIGKILLed. The request stays in flight
 * after a timeout: blockstatus_free() then closes without waiting for it. */
static int request(struct walk *w)
{
	struct nbd_handle *nbd = w->bs->nbd;
	int64_t deadline = now_ms() + BLOCKSTATUS_TIMEOUT_MS, cookie;
	int r;

	cookie = nbd_aio_block_status(nbd, w->req_len, w->req_off, (nbd_extent_callback){
			.callback = extent_cb, .user_data = w }, NBD_NULL_COMPLETION, 0);
	if (cookie == -1)
		return nbd_fail(w->bs, EIO);
	while ((r = nbd_aio_command_completed(nbd, cookie)) == 0) {
		int64_t left = deadline - now_ms();

		if (w->err) /* a refused chunk: its reason, not a timeout, whatever comes after */
			return w->err;
		if (left <= 0)
			return fail(w->bs, -ETIMEDOUT, "the server did not answer a block status request "
				    "within %d s", BLOCKSTATUS_TIMEOUT_MS / 1000);
		if (nbd_poll(nbd, (int)left) == -1)
			return nbd_fail(w->bs, EIO);
	}
	return r == -1 && !w->err ? nbd_fail(w->bs, EIO) : 0;
}

static int walk_chunk(struct walk *w)
{
	uint64_t start = w->next;
	int r;

	w->req_off = start;
	w->seen = false;
	w->req_len = w->bs->size - start < CHUNK ? w->bs->size - start : CHUNK;
	r = request(w);
	if (w->err)
		return w->err;
	if (r < 0)
		return r;
	if (w->next == start)
		return fail(w->bs, -EPROTO, "server returned no extents for the bitmap at offset %"
			    PRIu64 " (no progress)", start);
	return 0;
}

int blockstatus_walk(struct blockstatus *bs, blockstatus_fn fn, void *opaque)
{
	struct pipeline p = { .fn = fn, .opaque = opaque };
	struct walk w = { .bs = bs, .p = &p };
	pthread_t consumer;
	int r = 0;

	if (!bs->context)
		return -EINVAL;
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cond, NULL);
	r = -pthread_create(&consumer, NULL, consume, &p);
	if (r == 0) {
		while (r == 0 && w.next < bs->size)
			r = walk_chunk(&w);
		pthread_mutex_lock(&p.lock);
		p.done = true;
		pthread_cond_broadcast(&p.cond);
		pthread_mutex_unlock(&p.lock);
		pthread_join(consumer, NULL);
		/* FN's error comes first: the walk may have stopped only because of it. */
		if (p.err < 0)
			r = p.err;
	}
	free(p.slot[0].e);
	free(p.slot[1].e);
	pthread_cond_destroy(&p.cond);
	pthread_mutex_destroy(&p.lock);
	return r;
}

void blockstatus_free(struct blockstatus *bs)
{
	if (!bs)
		return;
	nbd_close_now(bs->nbd); /* never waits: the server may be one that stopped answering */
	free(bs->context);
	free(bs);
}
