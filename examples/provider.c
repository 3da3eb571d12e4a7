/* SPDX-License-Identifier: MIT */
/*
 * A minimal backup provider for `nbdattach run`, in C with libregionmap.
 *
 *   nbdattach run --volume name=drive0,bitmap=b0,uri=... -- provider OUTDIR
 *
 * For every volume described in NBDATTACH_RUN it reads the region map from its descriptor,
 * reads exactly those regions from the device with O_DIRECT, writes them at the same offsets
 * into OUTDIR/NAME.img (sparse) and lists them in OUTDIR/NAME.map ("OFFSET LENGTH" lines and an
 * "end COUNT TOTAL" line), and acknowledges each region on the acknowledgement descriptor so
 * that nbdattach can discard it. With PROVIDER_NO_ACK=1 it acknowledges nothing; with
 * PROVIDER_ACK_CHUNK=N it acknowledges in pieces of N bytes (to exercise partial granules).
 * Any error exits non-zero: a backup that is not complete must not look complete.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "regionmap.h"

#define BUF_SIZE (4u << 20)

struct volume {
	char name[128], device[128], transport[16];
	int map_fd;
};

/* nbdattach writes flat JSON with "key": value pairs; find KEY's value in OBJ (up to END). */
static const char *value_of(const char *obj, const char *end, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = strstr(obj, pat);
	return p && p < end ? p + strlen(pat) : NULL;
}

static int get_str(const char *obj, const char *end, const char *key, char *buf, size_t len)
{
	const char *v = value_of(obj, end, key), *q;

	if (!v || *v != '"' || !(q = strchr(v + 1, '"')) || (size_t)(q - v - 1) >= len)
		return -1;
	memcpy(buf, v + 1, (size_t)(q - v - 1));
	buf[q - v - 1] = 0;
	return 0;
}

static int get_int(const char *obj, const char *end, const char *key, long *ret)
{
	const char *v = value_of(obj, end, key);

	return v ? (*ret = strtol(v, NULL, 10), 0) : -1;
}

static int parse_env(struct volume *vols, int max, int *ret_n, int *ret_ack)
{
	const char *env = getenv("NBDATTACH_RUN"), *p;
	long ack, fd;
	int n = 0;

	if (!env || get_int(env, env + strlen(env), "ack_fd", &ack) < 0 || !(p = strstr(env, "\"volumes\": [")))
		return -1;
	while ((p = strchr(p, '{')) && n < max) {
		const char *end = strchr(p, '}');
		struct volume *v = &vols[n];

		if (!end || get_str(p, end, "name", v->name, sizeof(v->name)) < 0 ||
		    get_str(p, end, "device", v->device, sizeof(v->device)) < 0 ||
		    get_str(p, end, "map_transport", v->transport, sizeof(v->transport)) < 0 ||
		    get_int(p, end, "map_fd", &fd) < 0)
			return -1;
		v->map_fd = (int)fd;
		n++;
		p = end;
	}
	*ret_n = n;
	*ret_ack = (int)ack;
	return 0;
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = EIO;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Like write_all, at file offset off, with pwrite or (reading) pread: a short pwrite is a disk
 * that filled up half-way (the next call fails with the reason), a short pread reached the
 * end of the device. Neither is the whole region, so neither may be acknowledged.
 */
static int pio_all(int fd, char *buf, size_t len, off_t off, bool writing)
{
	while (len) {
		ssize_t n = writing ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = writing ? EIO : ENODATA;
		if (n <= 0)
			return -1;
		buf += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

static int ack(int fd, const char *name, uint64_t off, uint64_t len)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "%s %" PRIu64 " %" PRIu64 "\n", name, off, len);

	return write_all(fd, line, (size_t)n);
}

static int acks(int fd, const char *name, uint64_t off, uint64_t len)
{
	const char *c = getenv("PROVIDER_ACK_CHUNK");
	uint64_t chunk = c ? strtoull(c, NULL, 10) : 0;

	if (getenv("PROVIDER_NO_ACK"))
		return 0;
	if (!chunk)
		return ack(fd, name, off, len);
	for (uint64_t done = 0; done < len; done += chunk)
		if (ack(fd, name, off + done, len - done < chunk ? len - done : chunk) < 0)
			return -1;
	return 0;
}

/* Copies [off, off+len) from the device into the image: all of it, or fails. */
static int copy_region(int dev, int img, char *buf, uint64_t off, uint64_t len, uint64_t *bytes)
{
	while (len) {
		size_t n = len < BUF_SIZE ? (size_t)len : BUF_SIZE;

		if (pio_all(dev, buf, n, (off_t)off, false) < 0 || pio_all(img, buf, n, (off_t)off, true) < 0)
			return -1;
		*bytes += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int backup_volume(const struct volume *v, const char *outdir, int ack_fd, char *buf)
{
	unsigned mode = strcmp(v->transport, "memfd") ? REGIONMAP_READ_STREAM : REGIONMAP_READ_MEMFD;
	struct regionmap_reader *r = NULL;
	uint64_t off, len, bytes = 0, n = 0;
	char path[4096], line[64];
	int dev = -1, img = -1, map = -1, e;
	FILE *mapf = NULL;

	e = regionmap_reader_open(v->map_fd, mode, &r);
	if (e < 0) {
		fprintf(stderr, "provider: %s: map: %s\n", v->name, regionmap_strerror(e));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s.img", outdir, v->name);
	img = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	snprintf(path, sizeof(path), "%s/%s.map", outdir, v->name);
	map = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	mapf = map >= 0 ? fdopen(map, "w") : NULL;
	dev = open(v->device, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (img < 0 || !mapf || dev < 0 || ftruncate(img, (off_t)regionmap_reader_info(r)->export_size) < 0) {
		fprintf(stderr, "provider: %s: cannot open device or output: %s\n", v->name, strerror(errno));
		e = -1;
		goto out;
	}
	while ((e = regionmap_reader_next(r, &off, &len)) > 0) {
		if (copy_region(dev, img, buf, off, len, &bytes) < 0 || acks(ack_fd, v->name, off, len) < 0) {
			fprintf(stderr, "provider: %s: region %" PRIu64 "+%" PRIu64 ": %s\n", v->name, off, len,
				strerror(errno));
			e = -1;
			goto out;
		}
		fprintf(mapf, "%" PRIu64 " %" PRIu64 "\n", off, len);
		n++;
	}
	if (e < 0) {
		fprintf(stderr, "provider: %s: map: %s\n", v->name, regionmap_strerror(e));
		goto out;
	}
	snprintf(line, sizeof(line), "end %" PRIu64 " %" PRIu64 "\n", n, bytes);
	fputs(line, mapf);
	if (fflush(mapf) != 0 || fsync(img) < 0) {
		fprintf(stderr, "provider: %s: cannot write the backup: %s\n", v->name, strerror(errno));
		e = -1;
		goto out;
	}
	printf("provider: %s: %" PRIu64 " regions, %" PRIu64 " bytes read from %s\n", v->name, n, bytes, v->device);
out:
	if (mapf && fclose(mapf) != 0)
		e = -1;
	if (img >= 0)
		close(img);
	if (dev >= 0)
		close(dev);
	regionmap_reader_free(r);
	return e < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct volume vols[16];
	int n = 0, ack_fd = -1, rc = 0;
	char *buf;

	if (argc != 2) {
		fprintf(stderr, "usage: provider OUTDIR (run by nbdattach run)\n");
		return 2;
	}
	if (parse_env(vols, 16, &n, &ack_fd) < 0) {
		fprintf(stderr, "provider: NBDATTACH_RUN missing or malformed\n");
		return 2;
	}
	if (posix_memalign((void **)&buf, 4096, BUF_SIZE) != 0)
		return 1;
	for (int i = 0; i < n; i++)
		if (backup_volume(&vols[i], argv[1], ack_fd, buf) < 0)
			rc = 1;
	free(buf);
	return rc;
}
