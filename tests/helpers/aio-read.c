/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * aio-read DEVICE OFFSET SIZE COUNT: COUNT contiguous O_DIRECT reads of SIZE bytes from OFFSET,
 * submitted in one io_submit, so that the block layer may merge them into one request (it
 * plugs a batch of more than two); prints the first byte of each read in hex, one line. This
 * is how a provider with asynchronous I/O reads, and what a cap on the request size alone does
 * not keep from spanning two granules.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/aio_abi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_READS 64

int main(int argc, char **argv)
{
	struct iocb cb[MAX_READS], *cbp[MAX_READS];
	struct io_event ev[MAX_READS];
	aio_context_t ctx = 0;
	unsigned long long off, size, n;
	unsigned char *buf;
	int fd, done = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: aio-read DEVICE OFFSET SIZE COUNT\n");
		return 2;
	}
	off = strtoull(argv[2], NULL, 0), size = strtoull(argv[3], NULL, 0), n = strtoull(argv[4], NULL, 0);
	if (!size || size % 512 || size > (1u << 20) || !n || n > MAX_READS) {
		fprintf(stderr, "aio-read: SIZE a multiple of 512 up to 1 MiB, COUNT 1 to %d\n", MAX_READS);
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0 || posix_memalign((void **)&buf, 4096, size * n) || syscall(SYS_io_setup, (long)n, &ctx) < 0) {
		fprintf(stderr, "aio-read: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	memset(cb, 0, sizeof(cb));
	for (unsigned long long k = 0; k < n; k++) {
		cb[k].aio_fildes = (uint32_t)fd;
		cb[k].aio_lio_opcode = IOCB_CMD_PREAD;
		cb[k].aio_buf = (uint64_t)(uintptr_t)(buf + k * size);
		cb[k].aio_nbytes = size;
		cb[k].aio_offset = (int64_t)(off + k * size);
		cbp[k] = &cb[k];
	}
	if (syscall(SYS_io_submit, ctx, (long)n, cbp) != (long)n) {
		fprintf(stderr, "aio-read: io_submit: %s\n", strerror(errno));
		return 1;
	}
	while (done < (int)n) {
		long got = syscall(SYS_io_getevents, ctx, 1L, (long)n, ev, NULL);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			fprintf(stderr, "aio-read: io_getevents: %s\n", strerror(errno));
			return 1;
		}
		for (long i = 0; i < got; i++)
			if ((long long)ev[i].res != (long long)size) {
				fprintf(stderr, "aio-read: read failed: %s\n",
					(long long)ev[i].res < 0 ? strerror((int)-(long long)ev[i].res) : "short read");
				return 1;
			}
		done += (int)got;
	}
	for (unsigned long long k = 0; k < n; k++)
		printf("%s%02x", k ? " " : "", buf[k * size]);
	putchar('\n');
	return 0;
}
