/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "devices.h"
#include "state.h"

DEFINE_CLEANUP(DIR *, closedir)

static bool text_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int set_text(char *dst, size_t cap, const char *v)
{
	size_t n = strlen(v);

	if (n >= cap || !text_ok(v, n))
		return -EBADMSG;
	memcpy(dst, v, n + 1);
	return 0;
}

static int set_label(char *dst, const char *v)
{
	if (*v && !dev_label_valid(v))
		return -EBADMSG;
	return set_text(dst, DEV_LABEL_MAX + 1, v);
}

static int set_num(const char *v, uint64_t max, uint64_t *ret)
{
	return parse_decimal(v, max, ret) < 0 ? -EBADMSG : 0;
}

/* What a key of any version looks like: a lower-case letter, then letters, digits and '-'. */
bool state_newer_key_ok(const char *key, const char *value)
{
	size_t n = strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789-");

	return key[0] >= 'a' && key[0] <= 'z' && n <= 32 && !key[n] && text_ok(value, strlen(value));
}

/* One "key=value" line. An unknown key is a newer nbdattach's and is skipped: a downgraded
 * cleanup must not take that entry for garbage and detach its device. SEEN guards against
 * duplicate keys. */
static int parse_line(char *line, struct state_rec *r, unsigned *seen)
{
	static const char *const keys[] = { "index", "identifier", "tag", "name", "uri", "export",
		"bitmap", "size", "block-size", "connections", "read-only", "pid", "time", "owner",
		"saved-read-ahead-kb", "saved-max-sectors-kb", "saved-nomerges", "start", "socket-dev",
		"socket-ino", "server-uid", "socket-btime" };
	char *v = strchr(line, '=');
	uint64_t x = 0;
	unsigned k;
	int e = 0;

	if (!v)
		return -EBADMSG;
	*v++ = 0;
	for (k = 0; k < sizeof(keys) / sizeof(keys[0]) && strcmp(line, keys[k]); k++)
		;
	if (k == sizeof(keys) / sizeof(keys[0])) /* a newer version's: not ours to judge */
		return state_newer_key_ok(line, v) ? 0 : -EBADMSG;
	if (*seen & (1u << k))
		return -EBADMSG;
	*seen |= 1u << k;
	switch (k) {
	case 0: e = set_num(v, DEV_MAX_INDEX, &x); r->index = (uint32_t)x; break;
	case 1: e = set_text(r->identifier, sizeof(r->identifier), v); break;
	case 2: e = set_label(r->tag, v); break;
	case 3: e = set_label(r->name, v); break;
	case 4: e = set_text(r->uri, sizeof(r->uri), v); break;
	case 5: e = set_text(r->export_name, sizeof(r->export_name), v); break;
	case 6: e = set_text(r->bitmap, sizeof(r->bitmap), v); break;
	case 7: e = set_num(v, INT64_MAX, &r->size); break;
	case 8: e = set_num(v, 65536, &r->block_size); break;
	case 9: e = set_num(v, 64, &x); r->connections = (uint32_t)x; break;
	case 10: e = set_num(v, 1, &x); r->read_only = x; break;
	case 11: e = set_num(v, INT32_MAX, &x); r->pid = (int64_t)x; break;
	case 12: e = set_num(v, INT64_MAX, &x); r->time = (int64_t)x; break;
	case 13:
		if (strcmp(v, "attach") && strcmp(v, "attaching") && strcmp(v, "run"))
			return -EBADMSG;
		e = set_text(r->owner, sizeof(r->owner), v);
		break;
	case 14: e = set_num(v, UINT32_MAX, &x); r->saved_read_ahead_kb = (uint32_t)x; break;
	case 15: e = set_num(v, UINT32_MAX, &x); r->saved_max_sectors_kb = (uint32_t)x; break;
	case 16: e = set_num(v, 2, &x); r->saved_nomerges = (uint32_t)x; break;
	case 17: e = set_num(v, UINT64_MAX, &r->start); break;
	case 18: e = set_num(v, UINT64_MAX, &r->server.dev); break;
	case 19: e = set_num(v, UINT64_MAX, &r->server.ino); break;
	case 20: e = set_num(v, UINT32_MAX, &x); r->server.uid = (uint32_t)x; break;
	case 21: e = set_num(v, UINT64_MAX, &r->server.btime); break;
	}
	return e;
}

int state_parse(const char *buf, size_t len, struct state_rec *ret)
{
	struct state_rec r = { 0 };
	char line[STATE_URI_MAX + 32];
	unsigned seen = 0, queue, server;
	size_t pos = 0;

	if (len > STATE_FILE_MAX || len == 0 || buf[len - 1] != '\n')
		return -EBADMSG;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t n = nl - (buf + pos);
		int e;

		if (n >= sizeof(line) || memchr(buf + pos, 0, n))
			return -EBADMSG;
		memcpy(line, buf + pos, n);
		line[n] = 0;
		e = parse_line(line, &r, &seen);
		if (e < 0)
			return e;
		pos += n + 1;
	}
	/* index, identifier, size, block-size are required; the identifier must be ours; saved
	 * queue settings come as a pair (saved-nomerges only with it), the server's socket as a
	 * triple (its birth time only with it). */
	if ((seen & 0x183) != 0x183 || dev_identifier_parse(r.identifier, (char[65]){0}, (char[65]){0}) < 0)
		return -EBADMSG;
	queue = (seen >> 14) & 3;
	if ((queue != 0 && queue != 3) || ((seen >> 16 & 1) && queue != 3))
		return -EBADMSG;
	r.saved_queue = queue == 3;
	server = (seen >> 18) & 15; /* socket-btime only with the triple */
	if (server != 0 && server != 7 && server != 15)
		return -EBADMSG;
	r.server.known = server != 0;
	if (!r.owner[0]) /* as state_format writes it */
		snprintf(r.owner, sizeof(r.owner), "attach");
	*ret = r;
	return 0;
}

int state_format(const struct state_rec *r, char *buf, size_t len, size_t *ret_len)
{
	const char *owner = r->owner[0] ? r->owner : "attach";
	const char *const text[] = { r->identifier, r->tag, r->name, r->uri, r->export_name, r->bitmap, owner };
	int n;

	/* What state_parse would refuse is never written: a newline in an export name must not
	 * turn into a key of its own. */
	for (size_t k = 0; k < sizeof(text) / sizeof(text[0]); k++)
		if (!text_ok(text[k], strlen(text[k])))
			return -EINVAL;
	n = snprintf(buf, len,
		     "index=%" PRIu32 "\nidentifier=%s\ntag=%s\nname=%s\nuri=%s\nexport=%s\nbitmap=%s\n"
		     "size=%" PRIu64 "\nblock-size=%" PRIu64 "\nconnections=%" PRIu32 "\nread-only=%d\n"
		     "pid=%" PRId64 "\ntime=%" PRId64 "\nstart=%" PRIu64 "\nowner=%s\n",
		     r->index, r->identifier, r->tag, r->name, r->uri, r->export_name, r->bitmap,
		     r->size, r->block_size, r->connections, r->read_only ? 1 : 0, r->pid, r->time, r->start,
		     owner);
	if (n >= 0 && (size_t)n < len && r->saved_queue)
		n += snprintf(buf + n, len - (size_t)n,
			      "saved-read-ahead-kb=%" PRIu32 "\nsaved-max-sectors-kb=%" PRIu32
			      "\nsaved-nomerges=%" PRIu32 "\n",
			      r->saved_read_ahead_kb, r->saved_max_sectors_kb, r->saved_nomerges);
	if (n >= 0 && (size_t)n < len && r->server.known)
		n += snprintf(buf + n, len - (size_t)n,
			      "socket-dev=%" PRIu64 "\nsocket-ino=%" PRIu64 "\nserver-uid=%" PRIu32 "\n",
			      r->server.dev, r->server.ino, r->server.uid);
	if (n >= 0 && (size_t)n < len && r->server.known && r->server.btime)
		n += snprintf(buf + n, len - (size_t)n, "socket-btime=%" PRIu64 "\n", r->server.btime);
	if (n < 0 || (size_t)n >= len || (size_t)n > STATE_FILE_MAX)
		return -ENOBUFS;
	*ret_len = (size_t)n;
	return 0;
}

/* Opens (creating) DIR below PARENT_FD (or the absolute path when PARENT_FD < 0): a real
 * directory, owned by us, not group/world accessible. */
static int open_private_dir(int parent_fd, const char *path, bool create, int *ret_fd)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	int at = parent_fd >= 0 ? parent_fd : AT_FDCWD;

	if (create && mkdirat(at, path, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(at, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP || errno == ENOTDIR ? -ENOTDIR : -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_uid != geteuid() || (st.st_mode & 077))
		return -EPERM;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

const char *state_base(void)
{
	const char *base = getenv("NBDATTACH_STATE_DIR");

	return base && *base ? base : STATE_DIR_DEFAULT;
}

static int open_base(bool create, int *ret_fd)
{
	const char *base = state_base();

	if (base[0] != '/')
		return -EINVAL;
	return open_private_dir(-1, base, create, ret_fd);
}

int state_check_base(void)
{
	_cleanup_close_ int fd = -1;
	int r = open_base(false, &fd);

	return r == -ENOENT ? 0 : r;
}

const char *state_base_strerror(int err)
{
	switch (err) {
	case -EINVAL: return "not an absolute path";
	case -ENOTDIR: return "not a directory, or a symbolic link";
	case -EPERM: return "not owned by this user, or open to group or others";
	default: return strerror(-err);
	}
}

int state_open_dir(const char *sub, bool create, int *ret_fd)
{
	_cleanup_close_ int top = -1;
	int r = open_base(create, &top);

	if (r < 0)
		return r;
	return open_private_dir(top, sub, create, ret_fd);
}

int state_lock(int *ret_fd)
{
	_cleanup_close_ int fd = -1;
	int r = open_base(true, &fd);

	if (r < 0)
		return r;
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return -errno;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

void state_unlock(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void file_name(uint32_t index, char buf[32])
{
	snprintf(buf, 32, "nbd%" PRIu32, index);
}

int state_file_write(const char *sub, const char *name, const char *buf, size_t len)
{
	_cleanup_close_ int dfd = -1, fd = -1;
	char tmp[96];
	int r = state_open_dir(sub, true, &dfd);

	if (r < 0)
		return r;
	/* A name only this process uses (the directory is root's alone): one left by a killed
	 * process that had our pid is removed, then O_EXCL. */
	snprintf(tmp, sizeof(tmp), ".%s.%ld.tmp", name, (long)getpid());
	(void)unlinkat(dfd, tmp, 0);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	errno = 0; /* a short write sets none: a full /run, as the next write would say */
	if (write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0 || renameat(dfd, tmp, dfd, name) < 0) {
		r = errno ? -errno : -ENOSPC;
		unlinkat(dfd, tmp, 0);
		return r;
	}
	return 0;
}

int state_file_read(const char *sub, const char *name, char *buf, size_t cap, size_t *ret_len)
{
	_cleanup_close_ int dfd = -1, fd = -1;
	struct stat st;
	ssize_t n;
	int r = state_open_dir(sub, false, &dfd);

	if (r < 0)
		return r;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
		return -EBADMSG;
	n = read(fd, buf, cap);
	if (n < 0)
		return -errno;
	*ret_len = (size_t)n;
	return 0;
}

int state_file_remove(const char *sub, const char *name)
{
	_cleanup_close_ int dfd = -1;
	int r = state_open_dir(sub, false, &dfd);

	if (r < 0)
		return r == -ENOENT ? 0 : r;
	return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
}

int state_write(const struct state_rec *rec)
{
	char buf[STATE_FILE_MAX + 1], name[32];
	size_t len;
	int r = state_format(rec, buf, sizeof(buf), &len);

	if (r < 0)
		return r;
	file_name(rec->index, name);
	return state_file_write("devices", name, buf, len);
}

int state_read(uint32_t index, struct state_rec *ret)
{
	char buf[STATE_FILE_MAX + 1], name[32];
	size_t n;
	int r;

	file_name(index, name);
	r = state_file_read("devices", name, buf, sizeof(buf), &n);
	if (r == 0)
		r = state_parse(buf, n, ret);
	if (r == 0 && ret->index != index)
		return -EBADMSG;
	return r;
}

int state_remove(uint32_t index)
{
	char name[32];

	file_name(index, name);
	return state_file_remove("devices", name);
}

int state_remove_if(uint32_t index, const char *identifier)
{
	struct state_rec st;
	int r = state_read(index, &st);

	if (r == -ENOENT || (r == 0 && strcmp(st.identifier, identifier)))
		return 0; /* none, or someone else's by now */
	return state_remove(index);
}

int state_list_dir(const char *sub, int (*parse)(const char *, uint32_t *), uint32_t **ret, size_t *ret_n)
{
	_cleanup_close_ int dfd = -1;
	_cleanup_(closedirp) DIR *d = NULL;
	int r = state_open_dir(sub, false, &dfd);

	*ret = NULL;
	*ret_n = 0;
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	d = fdopendir(TAKE_FD(dfd));
	return d ? list_numbered(d, parse, ret, ret_n) : -errno;
}

int state_list(uint32_t **ret, size_t *ret_n)
{
	return state_list_dir("devices", dev_parse_name, ret, ret_n);
}
