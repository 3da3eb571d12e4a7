/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: feed arbitrary bytes to the region map reader, once as a sealed memfd
 * (REGIONMAP_READ_MEMFD) and once as a stream. The stream side reads from an unsealed memfd in
 * STREAM mode: a pipe would deadlock on inputs larger than the pipe buffer.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "regionmap.h"

static int memfd_of(const uint8_t *data, size_t size, bool seal)
{
	int fd;

	if (regionmap_memfd_create("fuzz", &fd) < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	if (lseek(fd, 0, SEEK_SET) < 0)
		abort();
	if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		abort();
	return fd;
}

static void consume(int fd, unsigned mode)
{
	struct regionmap_reader *r;
	const struct regionmap_info *info;
	uint64_t off, len, n = 0, total = 0;
	int e;

	if (regionmap_reader_open(fd, mode, &r) < 0)
		return;
	info = regionmap_reader_info(r);
	while ((e = regionmap_reader_next(r, &off, &len)) > 0) {
		/* A stream shows no count, not even the header's, before the trailer is verified. */
		if (mode == REGIONMAP_READ_STREAM && info->count != REGIONMAP_COUNT_UNKNOWN)
			abort();
		n++;
		total += len;
	}
	/* A verified end means the trailer matched what we were handed. */
	if (e == 0 && (total != info->total || n != info->count ||
		       (info->flags & REGIONMAP_FLAG_FULL && n != 1)))
		abort();
	if (e < 0 && mode == REGIONMAP_READ_STREAM && info->count != REGIONMAP_COUNT_UNKNOWN)
		abort();
	if (mode == REGIONMAP_READ_MEMFD && e == 0 && n > 0 && regionmap_reader_get(r, n - 1, &off, &len) < 0)
		abort();
	(void)regionmap_strerror(e);
	regionmap_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_of(data, size, true);

	consume(fd, REGIONMAP_READ_MEMFD);
	close(fd);
	fd = memfd_of(data, size, false);
	consume(fd, REGIONMAP_READ_STREAM);
	close(fd);
	return 0;
}
