/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* The socket= values of URI's query: how many, and where the last one's encoded text lies. */
static unsigned find_socket(const char *uri, const char **ret_begin, const char **ret_end)
{
	const char *q = strchr(uri, '?');
	unsigned count = 0;

	for (q = q ? q + 1 : NULL; q && *q && *q != '#';) {
		size_t n = strcspn(q, "&;#");
		const char *eq = memchr(q, '=', n);
		char key[8];

		if (eq && decode(q, eq, key, sizeof(key)) && !strcmp(key, "socket")) {
			*ret_begin = eq + 1;
			*ret_end = q + n;
			count++;
		}
		q += n;
		if (*q == '&' || *q == ';')
			q++;
	}
	return count;
}

int uri_socket_path(const char *uri, char *buf, size_t cap)
{
	const char *b = NULL, *e = NULL;
	unsigned n = find_socket(uri, &b, &e);

	if (n == 0)
		return -ENOENT;
	if (n > 1)
		return -EINVAL;
	return decode(b, e, buf, cap) ? 0 : -ENAMETOOLONG;
}

static int rewrite(const char *uri, int fd, char *buf, size_t cap)
{
	const char *b = NULL, *e = NULL;
	int n;

	if (find_socket(uri, &b, &e) != 1)
		return -EINVAL;
	n = snprintf(buf, cap, "%.*s/proc/self/fd/%d%s", (int)(b - uri), uri, fd, e);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int pin_uri_for_fd(const char *uri, int fd, char *buf, size_t cap)
{
	return rewrite(uri, fd, buf, cap);
}

static bool same_inode(const struct stat *st, const struct server_pin *expect)
{
	return !expect || !expect->known || (st->st_dev == expect->dev && st->st_ino == expect->ino);
}

int pin_open(const char *uri, const struct server_pin *expect, struct pinned_uri *ret)
{
	_cleanup_close_ int fd = -1;
	char path[4096];
	struct stat st;
	int r;

	ret->fd = -1;
	ret->pin = (struct server_pin){ 0 };
	if (strncmp(uri, "nbd+unix://", 11)) {
		r = snprintf(ret->uri, sizeof(ret->uri), "%s", uri);
		return (size_t)r >= sizeof(ret->uri) ? -ENAMETOOLONG : 0;
	}
	r = uri_socket_path(uri, path, sizeof(path));
	if (r < 0)
		return r;
	/* The last component may be a symlink: what counts is the inode it leads to now. */
	fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return expect && expect->known ? -ESTALE : -ENOTSOCK;
	if (!same_inode(&st, expect))
		return -ESTALE;
	r = rewrite(uri, fd, ret->uri, sizeof(ret->uri));
	if (r < 0)
		return r;
	ret->fd = TAKE_FD(fd);
	ret->pin = (struct server_pin){ .known = true, .dev = st.st_dev, .ino = st.st_ino };
	return 0;
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
	if (expect && expect->known && cred.uid != expect->uid)
		return -ESTALE;
	pin->uid = cred.uid;
	return 0;
}
