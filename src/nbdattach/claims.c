/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "claims.h"
#include "cleanup.h"
#include "state.h"

#define CLAIM_FILE_MAX 512

static int format(const struct claim *c, char *buf, size_t len)
{
	int n = snprintf(buf, len, "NBDATTACH_ID=%s\nNBDATTACH_TAG=%s\nNBDATTACH_NAME=%s\n",
			 c->identifier, c->tag, c->name);

	return n > 0 && (size_t)n < len ? n : -ENOBUFS;
}

static int set_field(const char *key, const char *v, struct claim *c)
{
	char t[DEV_LABEL_MAX + 1], n[DEV_LABEL_MAX + 1];

	if (!strcmp(key, "NBDATTACH_ID")) {
		if (dev_identifier_parse(v, t, n) < 0)
			return -EBADMSG;
		snprintf(c->identifier, sizeof(c->identifier), "%s", v);
		return 0;
	}
	if (*v && !dev_label_valid(v))
		return -EBADMSG;
	if (!strcmp(key, "NBDATTACH_TAG"))
		snprintf(c->tag, sizeof(c->tag), "%s", v);
	else if (!strcmp(key, "NBDATTACH_NAME"))
		snprintf(c->name, sizeof(c->name), "%s", v);
	else
		return -EBADMSG;
	return 0;
}

int claim_parse(const char *buf, size_t len, struct claim *ret)
{
	struct claim c = { 0 };
	char line[CLAIM_FILE_MAX];
	size_t pos = 0;

	if (len == 0 || len >= CLAIM_FILE_MAX || buf[len - 1] != '\n' || memchr(buf, 0, len))
		return -EBADMSG;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t n = (size_t)(nl - (buf + pos));
		char *eq;

		memcpy(line, buf + pos, n);
		line[n] = 0;
		eq = strchr(line, '=');
		if (!eq)
			return -EBADMSG;
		*eq = 0;
		if (set_field(line, eq + 1, &c) < 0)
			return -EBADMSG;
		pos += n + 1;
	}
	if (!c.identifier[0])
		return -EBADMSG;
	*ret = c;
	return 0;
}

static int write_at(const char *sub, const char *name, const struct claim *c)
{
	char buf[CLAIM_FILE_MAX];
	int n = format(c, buf, sizeof(buf));

	return n < 0 ? n : state_file_write(sub, name, buf, (size_t)n);
}

static int read_at(const char *sub, const char *name, struct claim *ret)
{
	char buf[CLAIM_FILE_MAX];
	size_t n;
	int r = state_file_read(sub, name, buf, sizeof(buf), &n);

	return r < 0 ? r : claim_parse(buf, n, ret);
}

static void pid_name(pid_t pid, char buf[24])
{
	snprintf(buf, 24, "%ld", (long)pid);
}

static void dev_name(uint32_t index, char buf[24])
{
	snprintf(buf, 24, "nbd%" PRIu32, index);
}

int claim_write(pid_t pid, const struct claim *c)
{
	char name[24];

	pid_name(pid, name);
	return write_at("claims", name, c);
}

int claim_commit(pid_t pid, uint32_t index)
{
	_cleanup_close_ int cfd = -1, ufd = -1;
	char from[24], to[24];
	int r = state_open_dir("claims", false, &cfd);

	if (r >= 0)
		r = state_open_dir("udev", true, &ufd);
	if (r < 0)
		return r;
	pid_name(pid, from);
	dev_name(index, to);
	return renameat(cfd, from, ufd, to) < 0 ? -errno : 0;
}

int claim_remove(pid_t pid)
{
	char name[24];

	pid_name(pid, name);
	return state_file_remove("claims", name);
}

int64_t claim_time(pid_t pid)
{
	_cleanup_close_ int dfd = -1;
	struct stat st;
	char name[24];

	pid_name(pid, name);
	if (state_open_dir("claims", false, &dfd) < 0 || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	return (int64_t)st.st_mtim.tv_sec;
}

int claim_read(pid_t pid, struct claim *ret)
{
	char name[24];

	pid_name(pid, name);
	return read_at("claims", name, ret);
}

/* udev/nbdN and released/nbdN: one record per minor in the subdirectory SUB. */
static int minor_read(const char *sub, uint32_t index, struct claim *ret)
{
	char name[24];

	dev_name(index, name);
	return read_at(sub, name, ret);
}

static int minor_remove(const char *sub, uint32_t index)
{
	char name[24];

	dev_name(index, name);
	return state_file_remove(sub, name);
}

static int minor_remove_if(const char *sub, uint32_t index, const char *identifier)
{
	struct claim c;
	int r = minor_read(sub, index, &c);

	if (r == -ENOENT || (r == 0 && strcmp(c.identifier, identifier)))
		return 0;
	return minor_remove(sub, index);
}

int udev_record_read(uint32_t index, struct claim *ret)
{
	return minor_read("udev", index, ret);
}

int udev_record_remove(uint32_t index)
{
	return minor_remove("udev", index);
}

int udev_record_remove_if(uint32_t index, const char *identifier)
{
	return minor_remove_if("udev", index, identifier);
}

int release_record_write(uint32_t index, const char *identifier)
{
	struct claim c = { 0 };
	char name[24];

	if (dev_identifier_parse(identifier, c.tag, c.name) < 0)
		return -EINVAL;
	snprintf(c.identifier, sizeof(c.identifier), "%s", identifier);
	dev_name(index, name);
	return write_at("released", name, &c);
}

int release_record_read(uint32_t index, struct claim *ret)
{
	return minor_read("released", index, ret);
}

int release_record_remove(uint32_t index)
{
	return minor_remove("released", index);
}

int release_record_remove_if(uint32_t index, const char *identifier)
{
	return minor_remove_if("released", index, identifier);
}

static int parse_pid(const char *s, uint32_t *ret)
{
	uint64_t v;

	if (parse_decimal(s, INT32_MAX, &v) < 0 || v == 0)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

int claim_list(uint32_t **ret, size_t *ret_n)
{
	return state_list_dir("claims", parse_pid, ret, ret_n);
}

int udev_record_list(uint32_t **ret, size_t *ret_n)
{
	return state_list_dir("udev", dev_parse_name, ret, ret_n);
}

int release_record_list(uint32_t **ret, size_t *ret_n)
{
	return state_list_dir("released", dev_parse_name, ret, ret_n);
}
