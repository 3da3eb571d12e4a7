/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The discard engine: every TRIM whole granules (never a granule straddling the export end),
 * partial granules remembered and merged until complete, exact errno for bad input, bounded
 * memory; a randomised run against a bitmap model; the strict parser of the provider's
 * acknowledgement lines; and the asynchronous NBD trimmer against a real nbdkit, one that
 * answers and one that stops answering (it must time out, never block, and close at once). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ack.h"
#include "discard.h"
#include "handshake.h"
#include "state.h"
#include "unit.h"

#define G 65536u

struct log {
	uint64_t off[4096], len[4096];
	unsigned n;
	bool misaligned, unacked;
	uint64_t gran, size;
	unsigned char *trimmed; /* per granule */
	const unsigned char *acked; /* per byte, when set: a trim may cover only acked bytes */
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
	if (l->acked)
		for (uint64_t b = off; b < off + len && b < l->size; b++)
			if (!l->acked[b])
				l->unacked = true;
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
	expect_int("first byte of a granule", 0, discarder_ack(d, 30 * G, 1));
	expect_int("all but 4 KiB after it", 0, discarder_ack(d, 30 * G + 4097, G - 4097));
	unit_check(l.n == 4, "a granule with a 4 KiB hole is not trimmed", "n=%u", l.n);
	expect_u64("its pieces pending", G - 4096, discarder_pending(d));
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

	uint64_t i, far;

	for (i = 0; r == 0 && i < DISCARD_FRAGMENTS_MAX + 10; i++)
		r = discarder_ack(d, i * 2 * G, 1);
	expect_int("scattered fragments are capped", -ENOSPC, r);
	expect_int("capped at DISCARD_FRAGMENTS_MAX", DISCARD_FRAGMENTS_MAX + 1, i);
	unit_check(l.n == 0, "nothing trimmed of the scattered bytes", "%u trims", l.n);
	/* full: an ack that touches no fragment still has its own whole granules trimmed, and only
	 * those (its unaligned ends are forgotten, never trimmed) */
	far = (i + 10) * 2 * G;
	expect_int("full: an ack elsewhere says ENOSPC", -ENOSPC, discarder_ack(d, far - 4096, 16 * G + 8192));
	unit_check(l.n == 1 && l.off[0] == far && l.len[0] == 16 * G, "full: its whole granules trimmed, only they",
		   "n=%u off=%" PRIu64 " len=%" PRIu64, l.n, l.n ? l.off[0] : 0, l.n ? l.len[0] : 0);
	unit_check(!l.misaligned, "full: no misaligned trim", "one was");
	/* an ack that merges with a remembered fragment needs no room: completing granule 0 trims it */
	expect_int("full: completing a remembered granule", 0, discarder_ack(d, 1, G - 1));
	unit_check(l.n == 2 && l.off[1] == 0 && l.len[1] == G, "full: the completed granule trimmed", "n=%u", l.n);
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
	l.acked = acked;
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
		memset(acked + off, 1, len);
		if (discarder_ack(d, off, len) < 0)
			all_ok = false;
	}
	unit_check(all_ok, "random acks accepted", "an ack failed");
	unit_check(!l.misaligned, "random acks: every trim aligned and before the end", "misaligned");
	unit_check(!l.unacked, "random acks: every trimmed byte acknowledged before its trim", "one was not");
	for (uint64_t g = 0; g < size / G; g++)
		if (!l.trimmed[g])
			all_ok = false;
	unit_check(all_ok, "random acks: every whole granule trimmed", "one was not");
	unit_check(!l.trimmed[size / G], "random acks: the granule at the end untouched", "trimmed");
	free(l.trimmed);
	free(acked);
	discarder_free(d);
}

/* ---- acknowledgement lines ---- */

static void expect_ack_bad(const char *line, size_t len, const char *desc)
{
	struct ack a;

	expect_int(desc, -EBADMSG, ack_parse(line, len, &a));
}

static void test_ack_parse(void)
{
	static const char nul[] = "d 0 6\0005536\n";
	char longname[128];
	struct ack a = { .offset = 7 };

	expect_int("ack: a plain line", 0, ack_parse("disk0 65536 131072\n", 19, &a));
	unit_check(!strcmp(a.name, "disk0") && a.offset == 65536 && a.length == 131072, "ack: fields",
		   "%s %" PRIu64 " %" PRIu64, a.name, a.offset, a.length);
	expect_int("ack: zero offset, largest numbers", 0,
		   ack_parse("a.b_c-1 0 18446744073709551615\n", 31, &a));
	expect_u64("ack: 2^64-1", UINT64_MAX, a.length);
	expect_ack_bad("d  0 1\n", 7, "ack: doubled space");
	expect_ack_bad(" d 0 1\n", 7, "ack: leading space");
	expect_ack_bad("d 0 1 \n", 7, "ack: trailing space");
	expect_ack_bad("d 0 1 2\n", 8, "ack: a fourth field");
	expect_ack_bad("d 0\n", 4, "ack: two fields");
	expect_ack_bad("d 0 \n", 5, "ack: empty length");
	expect_ack_bad(" 0 1\n", 5, "ack: empty name");
	expect_ack_bad("d\t0 1\n", 6, "ack: tab");
	expect_ack_bad("d 0 1\r\n", 7, "ack: CR");
	expect_ack_bad("d 0 1", 5, "ack: no LF");
	expect_ack_bad("d 0 1\nd 0 1\n", 12, "ack: two lines");
	expect_ack_bad(nul, sizeof(nul) - 1, "ack: embedded NUL");
	expect_ack_bad("d 00 1\n", 7, "ack: leading zero");
	expect_ack_bad("d +1 1\n", 7, "ack: sign");
	expect_ack_bad("d 0 18446744073709551616\n", 25, "ack: 2^64");
	expect_ack_bad("-d 0 1\n", 7, "ack: name not a label");
	snprintf(longname, sizeof(longname), "%065d 0 1\n", 0);
	longname[0] = 'n';
	expect_ack_bad(longname, strlen(longname), "ack: 65-character name");
	expect_int("ack: 64-character name", 0, ack_parse(longname + 1, strlen(longname) - 1, &a));
	unit_check(strlen(a.name) == 64 && a.offset == 0 && a.length == 1, "ack: 64-character name parsed",
		   "%zu %" PRIu64, strlen(a.name), a.length);
	expect_ack_bad("d 1 2\n", 6 - 1, "ack: length short of the LF");
	unit_check(a.offset == 0 && a.length == 1, "ack: failures leave the result alone", "changed");
}

/* ---- the trimmer against nbdkit ---- */

static int64_t ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct server {
	char dir[64], uri[160];
	pid_t pid;
};

/* nbdkit under socket activation (LISTEN_FDS): the socket listens before it even starts, so
 * there is nothing to wait for. */
static bool server_start(struct server *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snprintf(s->dir, sizeof(s->dir), "/tmp/nbdattach-test.XXXXXX");
	if (!mkdtemp(s->dir))
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", s->dir);
	snprintf(s->uri, sizeof(s->uri), "nbd+unix:///?socket=%s", sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0)
		return false;
	s->pid = fork();
	if (s->pid == 0) {
		char pid[24];

		snprintf(pid, sizeof(pid), "%ld", (long)getpid());
		setenv("LISTEN_PID", pid, 1);
		setenv("LISTEN_FDS", "1", 1);
		if (fd != 3 && (dup2(fd, 3) < 0 || close(fd) < 0))
			_exit(127);
		execlp("nbdkit", "nbdkit", "-f", "memory", "16M", (char *)NULL);
		_exit(127);
	}
	close(fd);
	return s->pid > 0;
}

static void server_stop(struct server *s)
{
	char path[96];

	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	snprintf(path, sizeof(path), "%s/sock", s->dir);
	unlink(path);
	rmdir(s->dir);
}

/* What the run loop does: poll the trimmer's descriptor until nothing is in flight. */
static int drive(struct nbd_trimmer *t, int64_t limit_ms)
{
	int64_t end = ms() + limit_ms;

	while (nbd_trimmer_in_flight(t) && ms() < end) {
		struct pollfd p = { .fd = -1 };
		int64_t due = nbd_trimmer_deadline(t), left = due - ms();
		int r;

		p.fd = nbd_trimmer_poll_fd(t, &p.events);
		poll(&p, 1, left < 0 ? 0 : left > 1000 ? 1000 : (int)left);
		r = nbd_trimmer_dispatch(t, p.revents);
		if (r < 0)
			return r;
	}
	return nbd_trimmer_error(t);
}

static void expect_probe(const char *desc, const char *uri, const struct server_pin *pin, bool want_replaced)
{
	bool replaced = !want_replaced;
	bool gone = hs_server_gone(uri, pin, 2000, &replaced);

	unit_check(!gone && replaced == want_replaced, desc, "gone %d replaced %d", gone, replaced);
}

/* A device's journaled server (pin.h): its socket's inode and the uid listening on it (ours:
 * the socket was bound here). Anything else gets no TRIM and counts as the server gone. */
static void test_pinned(const struct server *s)
{
	struct server_pin good = { .known = true, .uid = getuid() }, bad;
	struct nbd_trimmer *t = NULL;
	char path[96], why[256] = "";
	struct statx st;

	snprintf(path, sizeof(path), "%s/sock", s->dir);
	if (!unit_check(statx(AT_FDCWD, path, 0, STATX_INO | STATX_BTIME, &st) == 0, "pinned: the socket is there",
			"%s", strerror(errno)))
		return;
	good.dev = makedev(st.stx_dev_major, st.stx_dev_minor);
	good.ino = st.stx_ino;
	if (st.stx_mask & STATX_BTIME)
		good.btime = (uint64_t)st.stx_btime.tv_sec * 1000000000u + st.stx_btime.tv_nsec;
	expect_int("pinned: the same socket and user", 0, nbd_trimmer_open(s->uri, &good, 300, &t, why, sizeof(why)));
	nbd_trimmer_close(t);
	t = NULL;
	bad = good;
	bad.uid++;
	expect_int("pinned: another user's server is refused", -ESTALE,
		   nbd_trimmer_open(s->uri, &bad, 300, &t, why, sizeof(why)));
	unit_check(strstr(why, "another user's server") != NULL, "pinned: ... and says so", "[%s]", why);
	bad = good;
	bad.ino++;
	expect_int("pinned: another socket is refused", -ESTALE, nbd_trimmer_open(s->uri, &bad, 300, &t, why, sizeof(why)));
	unit_check(strstr(why, "another socket") != NULL, "pinned: ... and says so", "[%s]", why);
	expect_probe("probe: the pinned server is there", s->uri, &good, false);
	expect_probe("probe: unpinned, the server is there", s->uri, NULL, false);
	expect_probe("probe: another socket on the path is not gone but replaced", s->uri, &bad, true);
	bad = good;
	bad.uid++;
	expect_probe("probe: another user's server is not gone but replaced", s->uri, &bad, true);
	if (!good.btime) {
		unit_skip("probe: another birth time", "the filesystem keeps no birth time");
		return;
	}
	bad = good;
	bad.btime++;
	expect_probe("probe: another birth time (a reused inode number) is not gone but replaced", s->uri, &bad, true);
	bad.btime = 0; /* none kept: not compared */
	expect_probe("probe: a birth time where none was kept is not compared", s->uri, &bad, false);
}

/* A server too busy to take another connection (its listen backlog full: a non-blocking connect
 * fails with EAGAIN) is not gone; a socket nobody listens on any more is. */
static void test_busy_probe(void)
{
	char dir[] = "/tmp/nbdattach-test.XXXXXX", uri[160];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int l = -1, c[16], n = 0, e = 0;

	if (!unit_check(mkdtemp(dir) != NULL, "probe: temporary directory", "%s", strerror(errno)))
		return;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/busy.sock", dir);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sa.sun_path);
	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!unit_check(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(l, 0) == 0,
			"probe: a listener with no backlog", "%s", strerror(errno)))
		goto out;
	for (; n < 16 && !e; n++) {
		c[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (connect(c[n], (struct sockaddr *)&sa, sizeof(sa)) < 0)
			e = errno;
	}
	if (unit_check(e == EAGAIN, "probe: its backlog filled (a connect says EAGAIN)", "%s", strerror(e)))
		unit_check(!hs_server_gone(uri, NULL, 1000, NULL), "probe: a server with a full backlog is busy, not gone",
			   "taken for gone");
	close(l);
	l = -1;
	unit_check(hs_server_gone(uri, NULL, 1000, NULL), "probe: a socket nobody listens on is gone (the control)",
		   "not gone");
	/* a name that does not resolve (now) says nothing of the server behind it */
	unit_check(!hs_server_gone("nbd://no-such-host.invalid/", NULL, 1000, NULL),
		   "probe: a failed name lookup is not a gone server", "taken for gone");
	while (n > 0)
		close(c[--n]);
out:
	if (l >= 0)
		close(l);
	unlink(sa.sun_path);
	rmdir(dir);
}

static void test_trimmer(void)
{
	struct server s = { .pid = 0 };
	struct nbd_trimmer *t = NULL, *t2 = NULL;
	char why[256] = "";
	int64_t t0;
	int r, st;

	if (system("command -v nbdkit >/dev/null 2>&1") != 0) {
		printf("skip trimmer against nbdkit: nbdkit not installed\n");
		return;
	}
	if (!unit_check(server_start(&s), "nbdkit starts", "failed")) {
		server_stop(&s);
		return;
	}
	r = nbd_trimmer_open(s.uri, NULL, 300, &t, why, sizeof(why));
	if (!expect_int("trimmer connects", 0, r)) {
		unit_comment("%s", why);
		server_stop(&s);
		return;
	}
	expect_int("trim queued", 0, nbd_trimmer_trim(t, 0, G));
	expect_int("second trim queued", 0, nbd_trimmer_trim(t, 4 * G, 2 * G));
	expect_int("both answered through poll and dispatch", 0, drive(t, 5000));
	expect_u64("bytes the server confirmed", 3 * G, nbd_trimmer_trimmed(t));
	expect_u64("TRIMs the server confirmed", 2, nbd_trimmer_requests(t));
	r = nbd_trimmer_trim(t, 16 << 20, G);
	if (r == 0)
		r = drive(t, 5000);
	unit_check(r < 0 && nbd_trimmer_trim(t, 0, G) == r, "a TRIM past the end fails the trimmer for good",
		   "%d", r);
	nbd_trimmer_close(t);

	test_pinned(&s);
	expect_int("trimmer connects again", 0, nbd_trimmer_open(s.uri, NULL, 300, &t, why, sizeof(why)));
	expect_int("a second trimmer connects", 0, nbd_trimmer_open(s.uri, NULL, 300, &t2, why, sizeof(why)));
	kill(s.pid, SIGSTOP); /* the server stops answering */
	waitpid(s.pid, &st, WUNTRACED);
	t0 = ms();
	expect_int("trim queued to a hung server without waiting", 0, nbd_trimmer_trim(t, 0, G));
	unit_check(ms() - t0 < 200, "queueing does not wait for the server", "%" PRId64 " ms", ms() - t0);
	expect_int("hung server: -ETIMEDOUT", -ETIMEDOUT, drive(t, 5000));
	unit_check(ms() - t0 < 2000, "hung server: noticed after the 300 ms timeout", "%" PRId64 " ms", ms() - t0);
	expect_int("hung server: the failure sticks", -ETIMEDOUT, nbd_trimmer_trim(t, G, G));
	t0 = ms();
	nbd_trimmer_close(t);
	unit_check(ms() - t0 < 200, "hung server: close does not wait for it", "%" PRId64 " ms", ms() - t0);

	expect_int("flush: trim queued", 0, nbd_trimmer_trim(t2, 0, G));
	t0 = ms();
	expect_int("flush: hung server times out", -ETIMEDOUT, nbd_trimmer_flush(t2));
	unit_check(ms() - t0 < 2000, "flush: within the timeout", "%" PRId64 " ms", ms() - t0);
	nbd_trimmer_close(t2);
	kill(s.pid, SIGCONT);
	server_stop(&s);
}

int main(void)
{
	test_basic();
	test_tail();
	test_bounded();
	test_random();
	test_ack_parse();
	test_trimmer();
	test_busy_probe();
	return unit_exit();
}
