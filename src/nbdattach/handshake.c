/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The kernel speaks only simple replies and 28-byte requests, so the connection it gets must
 * have negotiated neither structured replies nor meta contexts. libnbd does the option phase;
 * then the socket is dup'ed out of the handle and the handle closed without nbd_shutdown (which
 * would shutdown(2) the shared socket). */
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <linux/nbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "handshake.h"
#include "nbdconn.h"
#include "pin.h"
#include "state.h"

DEFINE_CLEANUP(struct nbd_handle *, nbd_close)

#define HS_MIN_BLOCK 512u
#define HS_MAX_SERVER_BLOCK (64u << 20)

static char last_error[256];

const char *hs_last_error(void)
{
	return last_error[0] ? last_error : "unknown error";
}

static int fail_nbd(const char *what)
{
	int e = nbd_get_errno();
	const char *m = nbd_get_error();

	snprintf(last_error, sizeof(last_error), "%s: %s", what, m ? m : "failed");
	for (char *p = last_error; *p; p++) /* one-line messages only */
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	return -(e > 0 ? e : EPROTO);
}

static int fail_msg(int err, const char *msg)
{
	snprintf(last_error, sizeof(last_error), "%s", msg);
	return -err;
}

static int fail_pin(int r)
{
	snprintf(last_error, sizeof(last_error), "cannot connect: %s", pin_strerror(r));
	return r;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int open_handle(const char *uri, bool structured, struct nbd_handle **ret)
{
	_cleanup_(nbd_closep) struct nbd_handle *h = nbd_create();

	if (!h)
		return fail_nbd("libnbd");
	if (nbd_set_request_structured_replies(h, structured) < 0 ||
	    nbd_set_uri_allow_tls(h, LIBNBD_TLS_DISABLE) < 0 ||
	    nbd_set_uri_allow_local_file(h, false) < 0)
		return fail_nbd("libnbd");
	*ret = TAKE_PTR(h);
	return 0;
}

/* Block size the device gets: the caller's, else the server's preferred or 4096 when that
 * divides the size, else 512; never below the server's minimum, never above PAGE_SIZE. */
static int choose_block_size(struct nbd_handle *h, uint64_t size, uint64_t want, uint64_t *ret)
{
	long page = sysconf(_SC_PAGESIZE);
	int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	int64_t pref = nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
	uint64_t bs;

	if (min < 0 || pref < 0)
		return fail_nbd("block size");
	if ((min && (!is_pow2(min) || min > HS_MAX_SERVER_BLOCK)) ||
	    (pref && (!is_pow2(pref) || pref > HS_MAX_SERVER_BLOCK)))
		return fail_msg(EPROTO, "server advertises an invalid block size (not a power of two)");
	if ((uint64_t)min > (uint64_t)page)
		return fail_msg(EOPNOTSUPP, "server's minimum block size exceeds the page size");
	bs = want ? want : (pref && (uint64_t)pref <= (uint64_t)page) ? (uint64_t)pref : 4096;
	if (!want && size % bs)
		bs = HS_MIN_BLOCK;
	if (bs < (uint64_t)min)
		bs = min;
	if (!is_pow2(bs) || bs < HS_MIN_BLOCK || bs > (uint64_t)page)
		return fail_msg(EINVAL, "block size must be a power of two from 512 to the page size");
	if (size % bs)
		return fail_msg(EPROTO, "export size is not a multiple of the block size");
	*ret = bs;
	return 0;
}

/* The kernel never looks at the server's maximum block size: its requests go up to
 * max_sectors_kb, which attach lowers to the largest power of two the server takes. The
 * kernel's smallest cap is a page. */
static int max_request(struct nbd_handle *h, uint64_t *ret)
{
	int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
	uint64_t p = 1;

	if (max < 0)
		return fail_nbd("block size");
	*ret = 0;
	if (max == 0 || max >= UINT32_MAX) /* none advertised, or 0xffffffff: no limit */
		return 0;
	while (p * 2 <= (uint64_t)max)
		p *= 2;
	if (p < (uint64_t)sysconf(_SC_PAGESIZE))
		return fail_msg(EOPNOTSUPP, "server's maximum block size is below the page size, the "
				"smallest request limit the kernel takes");
	*ret = p;
	return 0;
}

static int check_export(struct nbd_handle *h, const struct hs_request *req, struct hs_result *res)
{
	int64_t size = nbd_get_size(h);
	int ro = nbd_is_read_only(h);
	int r;

	if (size < 0)
		return fail_nbd("export size");
	if (size == 0)
		return fail_msg(EPROTO, "server reports an export size of 0");
	if (ro < 0)
		return fail_nbd("export flags");
	if (nbd_get_structured_replies_negotiated(h) != 0)
		return fail_msg(EPROTO, "structured replies were negotiated on the kernel's connection");
	r = choose_block_size(h, (uint64_t)size, req->block_size, &res->block_size);
	if (r == 0)
		r = max_request(h, &res->max_request);
	if (r < 0)
		return r;
	res->size = (uint64_t)size;
	res->read_only = req->read_only || ro;
	res->server_flags = NBD_FLAG_HAS_FLAGS;
	if (res->read_only)
		res->server_flags |= NBD_FLAG_READ_ONLY;
	if (nbd_can_flush(h) == 1)
		res->server_flags |= NBD_FLAG_SEND_FLUSH;
	if (nbd_can_fua(h) == 1)
		res->server_flags |= NBD_FLAG_SEND_FUA;
	if (nbd_can_multi_conn(h) == 1)
		res->server_flags |= NBD_FLAG_CAN_MULTI_CONN;
	return 0;
}

/* Dup the socket out of a ready handle, close the handle without shutdown, make it blocking. */
static int take_socket(struct nbd_handle **hp, int *ret_fd)
{
	int fd = nbd_aio_get_fd(*hp), nfd, fl;

	if (fd < 0)
		return fail_nbd("socket");
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (nfd < 0)
		return fail_msg(errno, "cannot duplicate the NBD socket");
	nbd_close(*hp);
	*hp = NULL;
	fl = fcntl(nfd, F_GETFL);
	if (fl < 0 || fcntl(nfd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = errno;
		close(nfd);
		return fail_msg(e, "cannot make the NBD socket blocking");
	}
	*ret_fd = nfd;
	return 0;
}

static int connect_within(struct nbd_handle *h, const char *uri)
{
	int r = nbd_connect_within(h, uri, NBD_HANDSHAKE_TIMEOUT_MS);

	if (r == -ETIMEDOUT) {
		snprintf(last_error, sizeof(last_error), "cannot connect: the server did not complete "
			 "the handshake in %d s", NBD_HANDSHAKE_TIMEOUT_MS / 1000);
		return r;
	}
	return r < 0 ? fail_nbd("cannot connect") : 0;
}

static int connect_one(const char *uri, struct nbd_handle **ret)
{
	_cleanup_(nbd_closep) struct nbd_handle *h = NULL;
	int r = open_handle(uri, false, &h);

	if (r < 0)
		return r;
	r = connect_within(h, uri);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(h);
	return 0;
}

static int check_bitmap(const char *uri, const char *bitmap)
{
	_cleanup_(nbd_closep) struct nbd_handle *h = NULL;
	char ctx[sizeof(BITMAP_PREFIX) + BITMAP_NAME_MAX];
	int r = open_handle(uri, true, &h);

	if (r < 0)
		return r;
	snprintf(ctx, sizeof(ctx), BITMAP_PREFIX "%s", bitmap);
	if (nbd_add_meta_context(h, ctx) < 0)
		return fail_nbd("meta context");
	r = connect_within(h, uri);
	if (r < 0)
		return r;
	r = nbd_can_meta_context(h, ctx);
	if (r < 0)
		return fail_nbd("meta context");
	if (r == 0) {
		/* A name may be a kilobyte long: the line names its start. */
		snprintf(last_error, sizeof(last_error), "export does not offer dirty bitmap '%.64s%s'",
			 bitmap, strlen(bitmap) > 64 ? "..." : "");
		return -ENOENT;
	}
	nbd_close_now(TAKE_PTR(h));
	return 0;
}

/* One connection unless the caller asks for more. Several are only allowed when the server
 * advertises multi-conn, and even then they are not the default: with qemu-nbd 7.2, devices
 * attached concurrently with two connections each sometimes never get an answer to the
 * partition-scan reads udev triggers (nbd-client -C 2 shows the same hang; one connection per
 * device, nbdkit and qemu-storage-daemon do not). */
static int pick_connections(struct nbd_handle *h, unsigned want, unsigned *ret)
{
	bool multi = nbd_can_multi_conn(h) == 1;

	if (want > HS_MAX_CONNECTIONS)
		return fail_msg(EINVAL, "too many connections (at most 16)");
	if (want > 1 && !multi)
		return fail_msg(EOPNOTSUPP, "server does not advertise multi-conn: use --connections 1");
	*ret = want ? want : 1;
	return 0;
}

static int more_connections(const char *uri, struct hs_result *res, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		_cleanup_(nbd_closep) struct nbd_handle *h = NULL;
		struct server_pin seen;
		int r = connect_one(uri, &h);

		if (r < 0)
			return r;
		if (nbd_get_size(h) != (int64_t)res->size)
			return fail_msg(EPROTO, "server changed the export size between connections");
		if (res->server.known && pin_peer(h, &res->server, &seen) < 0)
			return fail_msg(EPROTO, "another user's server answered the next connection");
		r = take_socket(&h, &res->fds[res->n_fds]);
		if (r < 0)
			return r;
		res->n_fds++;
	}
	return 0;
}

/* URI is the pinned one; PIN what pin_open saw, completed with the listener's uid. */
static int negotiate(const struct hs_request *req, const char *uri, struct server_pin *pin,
		     struct hs_result *res)
{
	_cleanup_(nbd_closep) struct nbd_handle *h = NULL;
	const char *name;
	unsigned n;
	int r;

	r = connect_one(uri, &h);
	if (r < 0)
		return r;
	if (pin->known && pin_peer(h, NULL, pin) < 0)
		return fail_msg(EPROTO, "cannot tell who the server is (SO_PEERCRED)");
	res->server = *pin;
	r = check_export(h, req, res);
	if (r < 0)
		return r;
	r = pick_connections(h, req->connections, &n);
	if (r < 0)
		return r;
	name = nbd_get_export_name(h);
	snprintf(res->export_name, sizeof(res->export_name), "%s", name ? name : "");
	free((char *)name);
	r = take_socket(&h, &res->fds[0]);
	if (r < 0)
		return r;
	res->n_fds = 1;
	return more_connections(uri, res, n);
}

int hs_negotiate(const struct hs_request *req, struct hs_result *ret)
{
	_cleanup_(pin_close) struct pinned_uri p = { .fd = -1 };
	struct hs_result res = { 0 };
	int r;

	last_error[0] = 0;
	/* One inode for every connection: the socket cannot be swapped between them. */
	r = pin_open(req->uri, NULL, &p);
	if (r < 0)
		return fail_pin(r);
	if (req->bitmap)
		r = check_bitmap(p.uri, req->bitmap);
	if (r == 0)
		r = negotiate(req, p.uri, &p.pin, &res);
	if (r < 0) {
		hs_result_close(&res);
		return r;
	}
	*ret = res;
	return 0;
}

void hs_result_close(struct hs_result *res)
{
	for (unsigned i = 0; i < res->n_fds; i++)
		if (res->fds[i] >= 0)
			close(res->fds[i]);
	res->n_fds = 0;
}

/* Whether a failure to open the socket says the server is gone: nothing (or no socket) at the
 * path. Anything else (no /proc, no memory, a URI an older version journaled) cannot tell. */
static bool open_says_gone(int r)
{
	return r == -ENOENT || r == -ENOTDIR || r == -ENOTSOCK;
}

/* Whether libnbd's failure says the server is gone, rather than busy (a full listen backlog
 * fails a non-blocking connect with EAGAIN) or us short of something. */
static bool nbd_says_gone(void)
{
	int e = nbd_get_errno();

	return e != EAGAIN && e != EINTR && e != ENOMEM && e != ENOBUFS && e != EMFILE && e != ENFILE;
}

bool hs_server_gone(const char *uri, const struct server_pin *pin, int timeout_ms, bool *ret_replaced)
{
	_cleanup_(nbd_closep) struct nbd_handle *h = NULL;
	_cleanup_(pin_close) struct pinned_uri p = { .fd = -1 };
	int64_t deadline = now_ms() + timeout_ms;
	struct server_pin seen;
	int r;

	if (ret_replaced)
		*ret_replaced = false;
	/* Another socket on the path (re-created, renamed over) or another user's server: whether
	 * the device's own server still runs cannot be told from here, so it is not gone. */
	r = pin_open(uri, pin, &p);
	if (r == -ESTALE && ret_replaced)
		*ret_replaced = true;
	if (r < 0)
		return open_says_gone(r);
	if (open_handle(p.uri, false, &h) < 0)
		return false; /* cannot tell */
	/* libnbd 1.14 fails a name lookup here with errno 0 (a resolver restarting, say): that
	 * cannot tell either. */
	if (nbd_aio_connect_uri(h, p.uri) < 0)
		return nbd_get_errno() != 0 && nbd_says_gone();
	while (!nbd_aio_is_ready(h)) {
		int64_t left = deadline - now_ms();

		if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h))
			return true;
		if (left <= 0)
			return false; /* slow is not gone */
		if (nbd_poll(h, (int)left) < 0)
			return nbd_says_gone();
	}
	if (pin && pin->known && pin_peer(h, pin, &seen) == -ESTALE && ret_replaced)
		*ret_replaced = true;
	nbd_close_now(TAKE_PTR(h));
	return false;
}
