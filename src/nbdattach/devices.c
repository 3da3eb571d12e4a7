/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libmount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "devices.h"

DEFINE_CLEANUP(struct libmnt_table *, mnt_unref_table)
DEFINE_CLEANUP(DIR *, closedir)

static bool label_char(char c, bool first)
{
	return isascii(c) && (isalnum(c) || (!first && (c == '.' || c == '_' || c == '-')));
}

bool dev_label_valid(const char *s)
{
	size_t i;

	if (!s || !*s)
		return false;
	for (i = 0; s[i]; i++)
		if (i >= DEV_LABEL_MAX || !label_char(s[i], i == 0))
			return false;
	return true;
}

int dev_identifier_new(const char *tag, const char *name, char ret[DEV_ID_MAX])
{
	uint8_t c[16];
	char hex[33];
	int n;

	if ((tag && !dev_label_valid(tag)) || (name && !dev_label_valid(name)))
		return -EINVAL;
	if (getrandom(c, sizeof(c), 0) != sizeof(c))
		return -EIO;
	for (size_t i = 0; i < sizeof(c); i++)
		snprintf(hex + 2 * i, 3, "%02x", c[i]);
	n = snprintf(ret, DEV_ID_MAX, DEV_ID_PREFIX "%s:%s:%s", tag ? tag : "", name ? name : "", hex);
	return n > 0 && n < DEV_ID_MAX ? 0 : -ENAMETOOLONG;
}

static int copy_label(const char *s, size_t len, char out[DEV_LABEL_MAX + 1])
{
	if (len > DEV_LABEL_MAX)
		return -EINVAL;
	memcpy(out, s, len);
	out[len] = 0;
	return len == 0 || dev_label_valid(out) ? 0 : -EINVAL;
}

int dev_identifier_parse(const char *id, char ret_tag[DEV_LABEL_MAX + 1], char ret_name[DEV_LABEL_MAX + 1])
{
	const char *t, *n, *c;
	char tag[DEV_LABEL_MAX + 1], name[DEV_LABEL_MAX + 1];

	if (!id || strncmp(id, DEV_ID_PREFIX, strlen(DEV_ID_PREFIX)) || strlen(id) >= DEV_ID_MAX)
		return -EINVAL;
	t = id + strlen(DEV_ID_PREFIX);
	n = strchr(t, ':');
	c = n ? strchr(n + 1, ':') : NULL;
	if (!c || strlen(c + 1) != 32 || strspn(c + 1, "0123456789abcdef") != 32)
		return -EINVAL;
	if (copy_label(t, n - t, tag) < 0 || copy_label(n + 1, c - n - 1, name) < 0)
		return -EINVAL;
	memcpy(ret_tag, tag, sizeof(tag));
	memcpy(ret_name, name, sizeof(name));
	return 0;
}

int dev_parse_name(const char *s, uint32_t *ret_index)
{
	uint64_t v;

	if (!strncmp(s, "/dev/", 5))
		s += 5;
	if (strncmp(s, "nbd", 3) || parse_decimal(s + 3, DEV_MAX_INDEX, &v) < 0)
		return -EINVAL;
	*ret_index = (uint32_t)v;
	return 0;
}

int parse_decimal(const char *s, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

int read_first_line(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

int dev_read_attr(uint32_t index, const char *attr, char *buf, size_t len)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/block/nbd%" PRIu32 "/%s", index, attr);
	return read_first_line(path, buf, len);
}

bool dev_is_started(uint32_t index)
{
	char buf[32];

	return dev_read_attr(index, "pid", buf, sizeof(buf)) == 0;
}

static int write_attr(uint32_t index, const char *attr, const char *val)
{
	char path[128];
	_cleanup_close_ int fd = -1;
	ssize_t n = (ssize_t)strlen(val);

	snprintf(path, sizeof(path), "/sys/block/nbd%" PRIu32 "/%s", index, attr);
	fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	return write(fd, val, (size_t)n) == n ? 0 : -errno;
}

static int write_num_attr(uint32_t index, const char *attr, uint64_t v)
{
	char val[24];

	snprintf(val, sizeof(val), "%" PRIu64, v);
	return write_attr(index, attr, val);
}

int dev_set_read_ahead(uint32_t index, unsigned kb)
{
	return write_num_attr(index, "queue/read_ahead_kb", kb);
}

static int read_num_attr(uint32_t index, const char *attr, uint32_t *ret)
{
	char buf[24];
	uint64_t v;
	int r = dev_read_attr(index, attr, buf, sizeof(buf));

	if (r < 0)
		return r;
	if (parse_decimal(buf, UINT32_MAX, &v) < 0)
		return -EBADMSG;
	*ret = (uint32_t)v;
	return 0;
}

int dev_get_queue(uint32_t index, uint32_t *ret_read_ahead_kb, uint32_t *ret_max_sectors_kb, uint32_t *ret_nomerges)
{
	int r = read_num_attr(index, "queue/read_ahead_kb", ret_read_ahead_kb);

	if (r >= 0)
		r = read_num_attr(index, "queue/max_sectors_kb", ret_max_sectors_kb);
	return r < 0 ? r : read_num_attr(index, "queue/nomerges", ret_nomerges);
}

int dev_set_nomerges(uint32_t index, unsigned mode)
{
	return write_num_attr(index, "queue/nomerges", mode);
}

int dev_set_max_request(uint32_t index, uint64_t bytes)
{
	return write_num_attr(index, "queue/max_sectors_kb", bytes / 1024);
}

int dev_trigger_change(uint32_t index)
{
	return write_attr(index, "uevent", "change");
}

int dev_module_max_part(void)
{
	char buf[16];
	int r = read_first_line("/sys/module/nbd/parameters/max_part", buf, sizeof(buf));

	return r < 0 ? r : atoi(buf) < 0 ? 0 : atoi(buf);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int list_numbered(DIR *d, int (*parse)(const char *, uint32_t *), uint32_t **ret, size_t *ret_n)
{
	_cleanup_free_ uint32_t *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	while ((de = readdir(d))) {
		uint32_t x;

		if (parse(de->d_name, &x) < 0)
			continue;
		if (n == cap) {
			uint32_t *nv = reallocarray(v, cap ? cap * 2 : 16, sizeof(*v));
			if (!nv)
				return -ENOMEM;
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		v[n++] = x;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_u32);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

int dev_list_indices(uint32_t **ret, size_t *ret_n)
{
	_cleanup_(closedirp) DIR *d = opendir("/sys/block");

	return d ? list_numbered(d, dev_parse_name, ret, ret_n) : -errno;
}

/* Is NAME ("nbd3" or "nbd3p1") mounted? Compares device numbers via libmount's mountinfo. */
static int check_mounted(struct libmnt_table *tb, dev_t devno, const char *name, char *why, size_t len)
{
	struct libmnt_fs *fs = mnt_table_find_devno(tb, devno, MNT_ITER_FORWARD);

	if (!fs)
		return 0;
	snprintf(why, len, "/dev/%s is mounted on %s", name, mnt_fs_get_target(fs));
	return -EBUSY;
}

static int check_swap(const char *name, char *why, size_t len)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/swaps", "re");
	char line[512], dev[300];

	if (!f)
		return 0;
	snprintf(dev, sizeof(dev), "/dev/%s", name);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, dev, strlen(dev)) && (line[strlen(dev)] == ' ' || line[strlen(dev)] == '\t')) {
			snprintf(why, len, "%s is used as swap", dev);
			return -EBUSY;
		}
	return 0;
}

static int check_holders(const char *syspath, const char *name, char *why, size_t len)
{
	char path[512];
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;

	snprintf(path, sizeof(path), "%s/holders", syspath);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			snprintf(why, len, "/dev/%s is held by %s (device-mapper/md)", name, de->d_name);
			return -EBUSY;
		}
	return 0;
}

static int read_devno(const char *syspath, dev_t *ret)
{
	char path[512], buf[32];
	unsigned ma, mi;

	snprintf(path, sizeof(path), "%s/dev", syspath);
	if (read_first_line(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%u:%u", &ma, &mi) != 2)
		return -EIO;
	*ret = makedev(ma, mi);
	return 0;
}

/* One block device (disk or partition) at SYSPATH named NAME. */
static int check_one(struct libmnt_table *tb, const char *syspath, const char *name, char *why, size_t len)
{
	dev_t devno;
	int r = read_devno(syspath, &devno);

	if (r < 0)
		return 0;
	r = check_mounted(tb, devno, name, why, len);
	if (!r)
		r = check_swap(name, why, len);
	if (!r)
		r = check_holders(syspath, name, why, len);
	return r;
}

/* Mounts in other mount namespaces (a provider under unshare -m, a unit with PrivateMounts)
 * are not in our mountinfo, and not every exclusive holder shows in holders/: the kernel's
 * exclusive open fails with EBUSY while anything claims the disk or one of its partitions.
 * Other failures cannot tell, and leave it to the checks above. */
static int check_exclusive(const char *name, char *why, size_t len)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/dev/%s", name);
	fd = open(path, O_RDONLY | O_EXCL | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno != EBUSY)
		return 0;
	snprintf(why, len, "%s is in use (mounted in another mount namespace, or claimed "
		 "exclusively by another program)", name);
	return -EBUSY;
}

int dev_check_unused(uint32_t index, char *why, size_t why_len)
{
	_cleanup_(mnt_unref_tablep) struct libmnt_table *tb = mnt_new_table();
	_cleanup_(closedirp) DIR *d = NULL;
	char sys[64], name[32], sub[512];
	struct dirent *de;
	int r;

	if (!tb)
		return -ENOMEM;
	r = mnt_table_parse_file(tb, "/proc/self/mountinfo");
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "nbd%" PRIu32, index);
	snprintf(sys, sizeof(sys), "/sys/block/%s", name);
	r = check_one(tb, sys, name, why, why_len);
	if (r < 0)
		return r;
	d = opendir(sys);
	if (!d)
		return 0;
	/* Partitions are subdirectories named nbdNpM. */
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, name, strlen(name)) || de->d_name[strlen(name)] != 'p')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", sys, de->d_name);
		r = check_one(tb, sub, de->d_name, why, why_len);
		if (r < 0)
			return r;
	}
	return check_exclusive(name, why, why_len);
}
