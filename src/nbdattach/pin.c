/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "pin.h"

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decodes [P, END) into DST (CAP bytes with the NUL); false if it does not fit. */
static bool decode(const char *p, const char *end, char *dst, size_t cap)
{
	size_t n = 0;

	for (; p < end; p++) {
		char c = *p;

		if (c == '%' && end - p > 2 && hex_digit(p[1]) >= 0 && hex_digit(p[2]) >= 0) {
			c = (char)(hex_digit(p[1]) << 4 | hex_digit(p[2]));
			p += 2;
		}
		if (n + 1 >= cap)
			return false;
		dst[n++] = c;
	}
	dst[n] = 0;
	return true;
}

/* URI's query as libxml2 delimits it: after the first '?' that comes before any '#', up to the
 * next '#'. */
static const char *query_of(const char *uri, const char **ret_end)
{
	size_t n = strcspn(uri, "?#");

	if (uri[n] != '?')
		return NULL;
	*ret_end = uri + n + 1 + strcspn(uri + n + 1, "#");
	return uri + n + 1;
}

/* libnbd splits on '&' while one remains, else on ';', and compares decoded keys up to a NUL:
 * a query that mixes the two, or holds an encoded NUL, could name a socket= we do not see. */
static bool query_ambiguous(const char *q, const char *end)
{
	if (memchr(q, '&', end - q) && memchr(q, ';', end - q))
		return true;
	for (const char *p = q; p + 2 < end; p++)
		if (p[0] == '%' && p[1] == '0' && p[2] == '0')
			return true;
	return false;
}

/* The socket= values of URI's query (a bare "socket" is one, empty): how many, and where the
 * last one's encoded text lies; -EILSEQ when the query is ambiguous. */
static int find_socket(const char *uri, const char **ret_begin, const char **ret_end)
{
	const char *end = NULL, *q = query_of(uri, &end);
	int count = 0;

	if (q && query_ambiguous(q, end))
		return -EILSEQ;
	while (q && q < end) {
		size_t n = strcspn(q, "&;#");
		const char *eq = memchr(q, '=', n), *kend = eq ? eq : q + n;
		char key[8];

		if (decode(q, kend, key, sizeof(key)) && !strcmp(key, "socket")) {
			*ret_begin = eq ? eq + 1 : q + n;
			*ret_end = q + n;
			count++;
		}
		q += n;
		if (q < end)
			q++;
	}
	return count;
}

int uri_socket_path(const char *uri, char *buf, size_t cap)
{
	const char *b = NULL, *e = NULL;
	int n = find_socket(uri, &b, &e);

	if (n < 0)
		return n;
	if (n == 0)
		return -EDESTADDRREQ;
	if (n > 1)
		return -EINVAL;
	return decode(b, e, buf, cap) ? 0 : -ENAMETOOLONG;
}

/* URI with its one socket= value replaced by VALUE (as is). */
static int replace_socket(const char *uri, const char *value, char *buf, size_t cap)
{
	const char *b = NULL, *e = NULL;
	int n;

	if (find_socket(uri, &b, &e) != 1)
		return -EINVAL;
	n = snprintf(buf, cap, "%.*s%s%s", (int)(b - uri), uri, value, e);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* Checked by reading it back. */
int pin_uri_for_fd(const char *uri, int fd, char *buf, size_t cap)
{
	char want[32], got[32];
	int r;

	snprintf(want, sizeof(want), "/proc/self/fd/%d", fd);
	r = replace_socket(uri, want, buf, cap);
	if (r == 0 && (uri_socket_path(buf, got, sizeof(got)) < 0 || strcmp(got, want)))
		r = -EINVAL;
	return r;
}

/* The socket's identity: its inode, and its birth time where the filesystem keeps one (ext4
 * hands a freed inode number to the next file at once; the birth time tells them apart). */
static int identify(int dirfd, const char *path, int flags, struct server_pin *ret)
{
	struct statx stx;

	if (statx(dirfd, path, flags, STATX_TYPE | STATX_INO | STATX_BTIME, &stx) < 0)
		return -errno;
	if (!S_ISSOCK(stx.stx_mode))
		return -ENOTSOCK;
	*ret = (struct server_pin){ .known = true, .dev = makedev(stx.stx_dev_major, stx.stx_dev_minor),
				    .ino = stx.stx_ino };
	if ((stx.stx_mask & STATX_BTIME) && stx.stx_btime.tv_sec > 0)
		ret->btime = (uint64_t)stx.stx_btime.tv_sec * 1000000000u + stx.stx_btime.tv_nsec;
	return 0;
}

static bool same_socket(const struct server_pin *a, const struct server_pin *b)
{
	return a->dev == b->dev && a->ino == b->ino && (!a->btime || !b->btime || a->btime == b->btime);
}

int pin_open(const char *uri, const struct server_pin *expect, struct pinned_uri *ret)
{
	_cleanup_close_ int fd = -1;
	struct server_pin seen, via;
	char path[4096], proc[32];
	int r;

	ret->fd = -1;
	ret->pin = (struct server_pin){ 0 };
	if (strncmp(uri, "nbd+unix://", 11)) {
		r = snprintf(ret->uri, sizeof(ret->uri), "%s", uri);
		return (size_t)r >= sizeof(ret->uri) ? -ENAMETOOLONG : 0;
	}
	r = uri_socket_path(uri, path, sizeof(path));
	if (r < 0 && expect && !expect->known && r != -ENAMETOOLONG) {
		/* An entry from before pinning, whose URI is now refused: connect as it did then. */
		snprintf(ret->uri, sizeof(ret->uri), "%s", uri);
		return 0;
	}
	if (r < 0)
		return r;
	/* The last component may be a symlink: what counts is the inode it leads to now. */
	fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = identify(fd, "", AT_EMPTY_PATH, &seen);
	if (r == -ENOTSOCK && expect && expect->known)
		return -ESTALE;
	if (r < 0)
		return r;
	if (expect && expect->known && !same_socket(&seen, expect))
		return -ESTALE;
	/* libnbd connects by path: through /proc, to exactly this inode, or not at all. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (identify(AT_FDCWD, proc, 0, &via) < 0 || !same_socket(&via, &seen))
		return -ENXIO;
	r = pin_uri_for_fd(uri, fd, ret->uri, sizeof(ret->uri));
	if (r < 0)
		return r;
	ret->fd = TAKE_FD(fd);
	ret->pin = seen;
	return 0;
}

const char *pin_strerror(int r)
{
	return r == -ESTALE   ? "its socket path now leads to another socket than it was attached to"
	       : r == -ENXIO  ? "/proc/self/fd does not lead to the socket (is /proc mounted?)"
	       : r == -ENOTSOCK ? "socket= does not name a socket"
				: strerror(-r);
}

void pin_close(struct pinned_uri *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

int pin_peer(struct nbd_handle *h, const struct server_pin *expect, struct server_pin *pin)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd = nbd_aio_get_fd(h);

	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -EPROTO;
	pin->uid = cred.uid;
	return expect && expect->known && cred.uid != expect->uid ? -ESTALE : 0;
}
