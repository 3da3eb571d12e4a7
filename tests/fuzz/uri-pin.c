/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libFuzzer target for the reading of socket= in an nbd+unix:// URI (pin.h): attach pins the
 * socket it names and every later connection goes through the pinned descriptor, so a URI whose
 * socket= we read otherwise than libnbd, or whose rewrite changes anything but that value, would
 * connect unpinned. Invariants: a URI is rewritten only when exactly one unambiguous socket= was
 * read, and it then succeeds for an absolute path; it reads back as the descriptor's path, and differs from
 * the URI in one contiguous range only, which decodes to the path that was read. And libnbd
 * itself (its connect(2) interposed here: nothing is ever connected) goes to the path we read
 * for a URI we read one in, and to the descriptor alone for the rewrite. */
#include <errno.h>
#include <libnbd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "pin.h"

#define FUZZ_URI_MAX 4096
#define FD_PATH "/proc/self/fd/7"

static int hex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Whether [P, P+N) percent-decodes to WANT. */
static int decodes_to(const char *p, size_t n, const char *want)
{
	size_t i = 0, k = 0;

	for (; i < n; i++, k++) {
		char c = p[i];

		if (c == '%' && n - i > 2 && hex(p[i + 1]) >= 0 && hex(p[i + 2]) >= 0) {
			c = (char)(hex(p[i + 1]) << 4 | hex(p[i + 2]));
			i += 2;
		}
		if (want[k] != c)
			return 0;
	}
	return want[k] == 0;
}

/* Whether OUT is URI with one contiguous range [b, e) replaced by FD_PATH, where that range
 * decodes to PATH (when PATH is not NULL). */
static int is_splice(const char *uri, const char *out, const char *path)
{
	size_t lu = strlen(uri), lo = strlen(out), lf = strlen(FD_PATH);

	if (lo < lf)
		return 0;
	for (size_t b = 0; b <= lo - lf && b <= lu; b++) {
		size_t tail = lo - b - lf;

		if (b > 0 && uri[b - 1] != out[b - 1])
			break;
		if (memcmp(out + b, FD_PATH, lf) || tail > lu - b || memcmp(uri + lu - tail, out + b + lf, tail))
			continue;
		if (!path || decodes_to(uri + b, lu - tail - b, path))
			return 1;
	}
	return 0;
}

static char connected[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
static int connects;

/* libnbd's connect(2): records the unix socket path it was given, and fails. */
int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	size_t off = offsetof(struct sockaddr_un, sun_path), n;

	(void)fd;
	connects++;
	connected[0] = 0;
	if (sa->sa_family == AF_UNIX && len > off) {
		n = strnlen(((const struct sockaddr_un *)sa)->sun_path, len - off);
		n = n < sizeof(connected) - 1 ? n : sizeof(connected) - 1;
		memcpy(connected, ((const struct sockaddr_un *)sa)->sun_path, n);
		connected[n] = 0;
	}
	errno = ECONNREFUSED;
	return -1;
}

/* The unix socket path libnbd tries for URI (set up as the helper sets it up), or NULL. */
static const char *libnbd_path(const char *uri)
{
	struct nbd_handle *h;

	if (strncmp(uri, "nbd+unix://", 11))
		return NULL; /* no TCP (name lookups) or vsock here */
	h = nbd_create();
	if (!h || nbd_set_uri_allow_tls(h, LIBNBD_TLS_DISABLE) < 0 || nbd_set_uri_allow_local_file(h, false) < 0)
		abort();
	connects = 0;
	(void)nbd_connect_uri(h, uri);
	nbd_close(h);
	return connects ? connected : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *via;
	static char uri[FUZZ_URI_MAX + 1], path[FUZZ_URI_MAX + 1], out[2 * FUZZ_URI_MAX], back[64];
	int r, w;

	if (size > FUZZ_URI_MAX)
		return 0;
	memcpy(uri, data, size);
	uri[size] = 0;
	r = uri_socket_path(uri, path, sizeof(path));
	w = pin_uri_for_fd(uri, 7, out, sizeof(out));
	if (r != 0 && r != -EDESTADDRREQ && r != -EINVAL && r != -EILSEQ && r != -ENAMETOOLONG)
		abort();
	/* nothing to pin (none, several, ambiguous): never a rewritten URI */
	if (r < 0 && r != -ENAMETOOLONG && w == 0)
		abort();
	/* an absolute path (the only kind commands accept) is always rewritten: OUT holds twice URI */
	if (r == 0 && path[0] == '/' && w < 0)
		abort();
	/* libnbd reads the path we read (or tries none) */
	if (r == 0 && (via = libnbd_path(uri)) && strcmp(via, path))
		abort();
	if (w < 0)
		return 0;
	/* the rewrite reads back as the descriptor and differs only where socket='s value was */
	if (uri_socket_path(out, back, sizeof(back)) != 0 || strcmp(back, FD_PATH))
		abort();
	if (!is_splice(uri, out, r == 0 ? path : NULL))
		abort();
	/* and connects the rewrite to the descriptor or to nothing */
	if ((via = libnbd_path(out)) && strcmp(via, FD_PATH))
		abort();
	return 0;
}
