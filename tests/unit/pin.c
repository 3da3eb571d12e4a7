/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The socket= path as libnbd reads it, and the URI rewritten to a pinned descriptor. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/nbdattach/pin.h"
#include "unit.h"

static void expect_path(const char *desc, const char *uri, int want_r, const char *want)
{
	char buf[64] = "";
	int r = uri_socket_path(uri, buf, sizeof(buf));

	unit_check(r == want_r && (r < 0 || !strcmp(buf, want)), desc, "got %d [%s], want %d [%s]", r, buf,
		   want_r, want ? want : "");
}

static void expect_rewrite(const char *desc, const char *uri, const char *want)
{
	char buf[128] = "";
	int r = pin_uri_for_fd(uri, 4, buf, sizeof(buf));

	unit_check(r == 0 && !strcmp(buf, want), desc, "got %d [%s], want [%s]", r, buf, want);
}

static void test_paths(void)
{
	char longv[128];

	expect_path("plain", "nbd+unix:///d?socket=/run/s.sock", 0, "/run/s.sock");
	expect_path("percent-decoded key and value", "nbd+unix:///?sock%65t=%2Frun%2Fs", 0, "/run/s");
	expect_path("';' separates pairs", "nbd+unix:///?tls=off;socket=/a", 0, "/a");
	expect_path("a fragment ends the query", "nbd+unix:///?socket=/a#socket=/b", 0, "/a");
	expect_path("none", "nbd+unix:///d", -EDESTADDRREQ, NULL);
	expect_path("a key that merely starts so", "nbd+unix:///?sockets=/a", -EDESTADDRREQ, NULL);
	expect_path("two of them", "nbd+unix:///?socket=/a&socket=/a", -EINVAL, NULL);
	expect_path("two, one encoded", "nbd+unix:///?socket=/a;%73ocket=/b", -EINVAL, NULL);
	expect_path("a bare key counts (libnbd: empty value)", "nbd+unix:///?socket=/a&socket", -EINVAL, NULL);
	expect_path("a bare key alone is an empty path", "nbd+unix:///?socket", 0, "");
	/* libnbd compares decoded keys up to a NUL: socket%00x is its socket= */
	expect_path("an encoded NUL is refused", "nbd+unix:///?socket=/a&socket%00x=/b", -EILSEQ, NULL);
	/* libnbd splits on '&' while one remains: in /x;y=1&z=2 its socket is "/x;y=1" */
	expect_path("'&' mixed with ';' is refused", "nbd+unix:///?socket=/x;y=1&z=2", -EILSEQ, NULL);
	expect_path("a '?' inside the fragment starts no query", "nbd+unix:///d#f?socket=/a", -EDESTADDRREQ, NULL);
	snprintf(longv, sizeof(longv), "nbd+unix:///?socket=/%0100d", 0);
	expect_path("longer than the buffer", longv, -ENAMETOOLONG, NULL);
	expect_rewrite("value replaced, the rest kept", "nbd+unix:///d?a=1&socket=/x%20y&b=2",
		       "nbd+unix:///d?a=1&socket=/proc/self/fd/4&b=2");
	expect_rewrite("value at the end", "nbd+unix:///?socket=/x", "nbd+unix:///?socket=/proc/self/fd/4");
}

/* Without /proc, libnbd could not connect through the descriptor: -ENXIO, never another path. */
static void test_no_proc(const char *uri)
{
	pid_t pid = fork();
	int st = 0;

	if (pid == 0) {
		struct pinned_uri p = { .fd = -1 };

		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("none", "/proc", "tmpfs", 0, NULL) < 0)
			_exit(77);
		_exit(pin_open(uri, NULL, &p) == -ENXIO ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		unit_skip("no /proc: -ENXIO", "cannot mount over /proc in a private mount namespace here");
	else
		unit_check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "no /proc: -ENXIO", "status %d", st);
}

/* pin_open against a real listening socket, a symlink to it, and a regular file. */
static void test_open(void)
{
	char dir[] = "/tmp/nbdattach-pin.XXXXXX", uri[160], luri[160], furi[160], path[96];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pinned_uri p = { .fd = -1 }, q = { .fd = -1 };
	struct server_pin other;
	struct stat st;
	int fd;

	if (!unit_check(mkdtemp(dir) != NULL, "temporary directory", "%s", strerror(errno)))
		return;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", dir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!unit_check(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0,
			"listening socket", "%s", strerror(errno)))
		return;
	stat(sa.sun_path, &st);
	snprintf(uri, sizeof(uri), "nbd+unix:///e?socket=%s", sa.sun_path);
	expect_int("pin_open", 0, pin_open(uri, NULL, &p));
	unit_check(p.fd >= 0 && p.pin.known && p.pin.ino == st.st_ino && p.pin.dev == st.st_dev,
		   "the socket's inode is pinned", "fd %d known %d", p.fd, p.pin.known);
	snprintf(path, sizeof(path), "nbd+unix:///e?socket=/proc/self/fd/%d", p.fd);
	unit_check(!strcmp(p.uri, path), "URI through the descriptor", "[%s]", p.uri);
	expect_int("same inode again", 0, pin_open(uri, &p.pin, &q));
	pin_close(&q);
	snprintf(path, sizeof(path), "%s/link", dir);
	symlink(sa.sun_path, path);
	snprintf(luri, sizeof(luri), "nbd+unix:///e?socket=%s", path);
	expect_int("a symlink to the same socket is that socket", 0, pin_open(luri, &p.pin, &q));
	pin_close(&q);
	other = p.pin;
	other.ino++;
	expect_int("another inode: -ESTALE", -ESTALE, pin_open(uri, &other, &q));
	snprintf(path, sizeof(path), "%s/file", dir);
	close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	snprintf(furi, sizeof(furi), "nbd+unix:///e?socket=%s", path);
	expect_int("not a socket: -ENOTSOCK", -ENOTSOCK, pin_open(furi, NULL, &q));
	expect_int("not a socket where one was pinned: -ESTALE", -ESTALE, pin_open(furi, &p.pin, &q));
	other = p.pin;
	if (other.btime) {
		other.btime++;
		expect_int("another birth time (a reused inode number): -ESTALE", -ESTALE, pin_open(uri, &other, &q));
	} else {
		unit_skip("another birth time: -ESTALE", "the filesystem keeps no birth time");
	}
	test_no_proc(uri);
	expect_int("TCP: copied, unpinned", 0, pin_open("nbd://localhost/e", NULL, &q));
	unit_check(q.fd < 0 && !q.pin.known && !strcmp(q.uri, "nbd://localhost/e"), "TCP unpinned", "[%s]", q.uri);
	pin_close(&p);
	close(fd);
	unlink(path);
	snprintf(path, sizeof(path), "%s/link", dir);
	unlink(path);
	unlink(sa.sun_path);
	rmdir(dir);
}

int main(void)
{
	test_paths();
	test_open();
	return unit_exit();
}
