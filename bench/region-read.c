/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Benchmark reader: reads the regions of a text map ("OFFSET LENGTH" lines, "end ..." last)
 * from PATH with O_DIRECT in BUFSIZE pieces, as a backup provider would, and prints the bytes
 * read and the seconds taken.  Usage: region-read PATH MAP [BUFSIZE] */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	size_t bufsize = argc > 3 ? strtoull(argv[3], NULL, 10) : 4u << 20;
	uint64_t off, len, total = 0;
	struct timespec a, b;
	char line[128];
	FILE *map;
	void *buf;
	int fd;

	if (argc < 3 || !(map = fopen(argv[2], "re")) || posix_memalign(&buf, 4096, bufsize))
		return 2;
	fd = open(argv[1], O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	while (fgets(line, sizeof(line), map) && sscanf(line, "%" SCNu64 " %" SCNu64, &off, &len) == 2) {
		while (len) {
			size_t n = len < bufsize ? len : bufsize;

			if (pread(fd, buf, n, (off_t)off) != (ssize_t)n) {
				perror("pread");
				return 1;
			}
			off += n;
			len -= n;
			total += n;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%" PRIu64 " %.3f\n", total, (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
