/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Generic netlink to the nbd driver: CONNECT (kernel-chosen index), DISCONNECT, STATUS. */
#include <errno.h>
#include <fcntl.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <linux/nbd.h>
#include <linux/nbd-netlink.h>

#ifndef NBD_FLAG_SEND_WRITE_ZEROES
#define NBD_FLAG_SEND_WRITE_ZEROES (1 << 6) /* NBD protocol; linux/nbd.h of 6.1 lacks it */
#endif

#include "cleanup.h"
#include "netlink.h"

DEFINE_CLEANUP(struct nl_sock *, nl_socket_free)
DEFINE_CLEANUP(struct nl_msg *, nlmsg_free)
DEFINE_CLEANUP(struct nl_cb *, nl_cb_put)

/* What one request learnt from the kernel's replies. */
struct reply {
	int kernel_errno;      /* from an NLMSG_ERROR, as the kernel sent it */
	bool have_index;
	uint32_t index;
	bool done;             /* ACK or error seen */
};

/* libnl's -NLE_* to -errno, for failures that are not a kernel reply. */
static int nle_to_errno(int nle)
{
	switch (-nle) {
	case NLE_NOMEM: return -ENOMEM;
	case NLE_OBJ_NOTFOUND: return -NBD_NL_ENOFAMILY;
	case NLE_PERM: return -EPERM;
	case NLE_BUSY: return -EBUSY;
	case NLE_INVAL: return -EINVAL;
	case NLE_AGAIN: return -EAGAIN;
	case NLE_MSGSIZE: return -EMSGSIZE;
	default: return -EIO;
	}
}

static int open_family(struct nl_sock **ret_sk, int *ret_family)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = nl_socket_alloc();
	int r;

	if (!sk)
		return -ENOMEM;
	r = genl_connect(sk); /* libnl opens its sockets SOCK_CLOEXEC */
	if (r < 0)
		return nle_to_errno(r);
	r = genl_ctrl_resolve(sk, "nbd");
	if (r < 0)
		return r == -NLE_OBJ_NOTFOUND ? -NBD_NL_ENOFAMILY : nle_to_errno(r);
	*ret_family = r;
	*ret_sk = TAKE_PTR(sk);
	return 0;
}

static int on_error(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
	struct reply *rp = arg;

	rp->kernel_errno = e->error < 0 ? -e->error : e->error;
	rp->done = true;
	return NL_STOP;
}

static int on_ack(struct nl_msg *msg, void *arg)
{
	struct reply *rp = arg;

	rp->done = true;
	return NL_STOP;
}

/* CONNECT answers with a unicast message carrying NBD_ATTR_INDEX before the ACK. (STATUS is
 * not used: it calls a device "connected" when it merely has a config, for instance when
 * someone holds it open; sysfs `pid` and `backend` tell what we need.) */
static int on_valid(struct nl_msg *msg, void *arg)
{
	struct reply *rp = arg;
	struct nlattr *a[NBD_ATTR_MAX + 1];

	if (genlmsg_parse(nlmsg_hdr(msg), 0, a, NBD_ATTR_MAX, NULL) < 0)
		return NL_SKIP;
	if (a[NBD_ATTR_INDEX] && nla_len(a[NBD_ATTR_INDEX]) >= (int)sizeof(uint32_t)) {
		rp->have_index = true;
		rp->index = nla_get_u32(a[NBD_ATTR_INDEX]);
	}
	return NL_OK;
}

/* Sends MSG and reads replies until the ACK or an error; keeps the kernel's errno. */
static int transact(struct nl_sock *sk, struct nl_msg *msg, struct reply *rp)
{
	_cleanup_(nl_cb_putp) struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
	int r;

	if (!cb)
		return -ENOMEM;
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, rp);
	nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, rp);
	nl_cb_err(cb, NL_CB_CUSTOM, on_error, rp);
	r = nl_send_auto(sk, msg);
	if (r < 0)
		return nle_to_errno(r);
	/* The reply and the ACK are separate datagrams; nl_recvmsgs returns after each. */
	for (unsigned i = 0; !rp->done && i < 64; i++) {
		r = nl_recvmsgs(sk, cb);
		if (rp->kernel_errno)
			return -rp->kernel_errno;
		if (r < 0)
			return nle_to_errno(r);
	}
	return rp->done ? 0 : -EPROTO;
}

static int new_request(int family, uint8_t cmd, struct nl_msg **ret)
{
	_cleanup_(nlmsg_freep) struct nl_msg *msg = nlmsg_alloc();

	if (!msg)
		return -ENOMEM;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, NLM_F_ACK, cmd, 0))
		return -EMSGSIZE;
	*ret = TAKE_PTR(msg);
	return 0;
}

static int put_sockets(struct nl_msg *msg, const int *fds, unsigned n)
{
	struct nlattr *socks = nla_nest_start(msg, NBD_ATTR_SOCKETS);

	if (!socks)
		return -EMSGSIZE;
	for (unsigned i = 0; i < n; i++) {
		struct nlattr *item = nla_nest_start(msg, NBD_SOCK_ITEM);

		if (!item || nla_put_u32(msg, NBD_SOCK_FD, (uint32_t)fds[i]) < 0)
			return -EMSGSIZE;
		nla_nest_end(msg, item);
	}
	nla_nest_end(msg, socks);
	return 0;
}

/* Client flags: no DISCONNECT_ON_CLOSE (udev's own open/close would tear the device down).
 * No DESTROY_ON_DISCONNECT either: a destroyed minor is removed under udev's feet while its
 * "remove" event and any late opener race the next CONNECT; keeping it lets the kernel hand
 * the same free minor to the next attach instead of growing the minor space, and keeps
 * detach's wait to the one "change" event every disconnect emits. */
static int put_connect_attrs(struct nl_msg *msg, const struct nbd_nl_config *c)
{
	/* Discards go through nbdattach, aligned: QEMU 7.2 aborts on an unaligned TRIM, and the
	 * kernel would forward whatever a filesystem or blkdiscard sends. */
	uint64_t sflags = c->server_flags & ~(uint64_t)(NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES);

	if (nla_put_u64(msg, NBD_ATTR_SIZE_BYTES, c->size) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_BLOCK_SIZE_BYTES, c->block_size) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_TIMEOUT, c->timeout) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_DEAD_CONN_TIMEOUT, c->dead_conn_timeout) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_SERVER_FLAGS, sflags) < 0 ||
	    nla_put_u64(msg, NBD_ATTR_CLIENT_FLAGS, 0) < 0 ||
	    nla_put_string(msg, NBD_ATTR_BACKEND_IDENTIFIER, c->identifier) < 0)
		return -EMSGSIZE;
	return put_sockets(msg, c->fds, c->n_fds);
}

int nbd_nl_probe(void)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	int family;

	return open_family(&sk, &family);
}

int nbd_nl_connect(const struct nbd_nl_config *c, uint32_t *ret_index)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(nlmsg_freep) struct nl_msg *msg = NULL;
	struct reply rp = { 0 };
	int family, r;

	if (!c || !c->n_fds || !c->identifier || !c->size || !ret_index)
		return -EINVAL;
	r = open_family(&sk, &family);
	if (r < 0)
		return r;
	r = new_request(family, NBD_CMD_CONNECT, &msg);
	if (r < 0)
		return r;
	r = put_connect_attrs(msg, c);
	if (r < 0)
		return r;
	r = transact(sk, msg, &rp);
	if (r < 0)
		return r; /* the kernel may have connected it all the same: attach looks */
	if (!rp.have_index)
		return -EPROTO; /* connected but unknown device: cannot happen on 4.12+ */
	*ret_index = rp.index;
	return 0;
}

int nbd_nl_disconnect(uint32_t index)
{
	_cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
	_cleanup_(nlmsg_freep) struct nl_msg *msg = NULL;
	struct reply rp = { 0 };
	int family, r;

	r = open_family(&sk, &family);
	if (r < 0)
		return r;
	r = new_request(family, NBD_CMD_DISCONNECT, &msg);
	if (r < 0)
		return r;
	if (nla_put_u32(msg, NBD_ATTR_INDEX, index) < 0)
		return -EMSGSIZE;
	return transact(sk, msg, &rp);
}

struct nbd_nl_events {
	struct nl_sock *sk;
	nbd_nl_link_dead_fn fn;
	void *opaque;
};

static int on_event(struct nl_msg *msg, void *arg)
{
	struct nbd_nl_events *e = arg;
	struct genlmsghdr *g = nlmsg_data(nlmsg_hdr(msg));
	struct nlattr *a[NBD_ATTR_MAX + 1];

	if (g->cmd != NBD_CMD_LINK_DEAD || genlmsg_parse(nlmsg_hdr(msg), 0, a, NBD_ATTR_MAX, NULL) < 0 ||
	    !a[NBD_ATTR_INDEX] || nla_len(a[NBD_ATTR_INDEX]) < (int)sizeof(uint32_t))
		return NL_SKIP;
	if (e->fn)
		e->fn(e->opaque, nla_get_u32(a[NBD_ATTR_INDEX]));
	return NL_OK;
}

void nbd_nl_events_free(struct nbd_nl_events *e)
{
	if (!e)
		return;
	nl_socket_free(e->sk);
	free(e);
}

/* A subscribed socket (FD >= 0: adopted, already subscribed; else a new one) as events. */
static int events_new(int fd, nbd_nl_link_dead_fn fn, void *opaque, struct nbd_nl_events **ret)
{
	struct nbd_nl_events *e = calloc(1, sizeof(*e));
	int r, grp;

	if (!e)
		return -ENOMEM;
	e->fn = fn;
	e->opaque = opaque;
	e->sk = nl_socket_alloc();
	if (!e->sk) {
		free(e);
		return -ENOMEM;
	}
	nl_socket_disable_seq_check(e->sk); /* multicast messages carry no sequence of ours */
	if (fd >= 0) {
		r = nl_socket_set_fd(e->sk, NETLINK_GENERIC, fd); /* closed with the socket from now */
	} else {
		r = genl_connect(e->sk);
		if (r >= 0) {
			grp = genl_ctrl_resolve_grp(e->sk, "nbd", "nbd_mc_group");
			r = grp < 0 ? grp : nl_socket_add_membership(e->sk, grp);
		}
		/* Room for many LINK_DEADs at once (every device of a dead server); an overrun is
		 * still reported, as -ENOBUFS from nbd_nl_events_read(). */
		if (r >= 0)
			(void)nl_socket_set_buffer_size(e->sk, 1 << 20, 0);
	}
	if (r >= 0)
		r = nl_socket_set_nonblocking(e->sk);
	if (r >= 0)
		r = nl_socket_modify_cb(e->sk, NL_CB_VALID, NL_CB_CUSTOM, on_event, e);
	if (r < 0) {
		nbd_nl_events_free(e);
		return r == -NLE_OBJ_NOTFOUND ? -NBD_NL_ENOFAMILY : nle_to_errno(r);
	}
	*ret = e;
	return 0;
}

int nbd_nl_events_open(nbd_nl_link_dead_fn fn, void *opaque, struct nbd_nl_events **ret)
{
	return events_new(-1, fn, opaque, ret);
}

int nbd_nl_events_adopt(int fd, nbd_nl_link_dead_fn fn, void *opaque, struct nbd_nl_events **ret)
{
	if (fd < 0)
		return -EBADF;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) /* inherited open across exec; ours alone from now */
		return -errno;
	return events_new(fd, fn, opaque, ret);
}

int nbd_nl_events_fd(const struct nbd_nl_events *e)
{
	return nl_socket_get_fd(e->sk);
}

int nbd_nl_events_read(struct nbd_nl_events *e)
{
	for (;;) {
		int r = nl_recvmsgs_default(e->sk);

		if (r == -NLE_AGAIN)
			return 0;
		/* libnl reports the socket's ENOBUFS (events dropped: the receive buffer overran,
		 * likely when many links die at once) as NLE_NOMEM; the socket stays usable. */
		if (r == -NLE_NOMEM)
			return -ENOBUFS;
		if (r < 0)
			return nle_to_errno(r);
	}
}
