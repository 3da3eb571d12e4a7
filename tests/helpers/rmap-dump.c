/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rmap-dump: read a region map with libregionmap and print it in `nbdattach map --format text`
 * form ("OFFSET LENGTH" lines, then "end COUNT TOTAL"), so tests can compare the two.
 *
 *   rmap-dump [--header] [FILE]                    stream mode (stdin without FILE)
 *   rmap-dump [--header] --spawn-memfd PROG ARGS…  create a sealable memfd, run
 *                                                   PROG ARGS --output-fd 3 with it on fd 3,
 *                                                   then read it in memfd mode (checks seals)
 *
 * --header adds a first line "header SIZE GRANULARITY FLAGS CONTEXT". Any library error prints
 * "rmap-dump: error: …" on stderr and exits 1, and no "end" line is printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "regionmap.h"

extern char **environ;

static int die(const char *what, int err)
{
	fprintf(stderr, "rmap-dump: error: %s: %s (%s)\n", what, regionmap_strerror(err),
		strerror(-err));
	return 1;
}

static int dump(int fd, unsigned mode, bool header)
{
	struct regionmap_reader *r;
	const struct regionmap_info *info;
	uint64_t off, len, count = 0, total = 0;
	int ret;

	ret = regionmap_reader_open(fd, mode, &r);
	if (ret < 0)
		return die("open", ret);
	info = regionmap_reader_info(r);
	if (header)
		printf("header %" PRIu64 " %" PRIu64 " %" PRIu32 " %s\n", info->export_size,
		       info->granularity, info->flags, info->context);
	while ((ret = regionmap_reader_next(r, &off, &len)) == 1) {
		printf("%" PRIu64 " %" PRIu64 "\n", off, len);
		count++;
		total += len;
	}
	regionmap_reader_free(r);
	if (ret < 0) {
		fflush(stdout);
		return die("read", ret);
	}
	printf("end %" PRIu64 " %" PRIu64 "\n", count, total);
	return fflush(stdout) ? 1 : 0;
}

/* Run argv with the memfd as fd 3 plus "--output-fd 3"; dup2 in the child clears CLOEXEC. */
static int spawn_memfd(char **argv, int argc, int *ret_fd)
{
	posix_spawn_file_actions_t fa;
	char **args = calloc((size_t)argc + 3, sizeof *args);
	int fd, status, r;
	pid_t pid;

	if (!args || (r = regionmap_memfd_create("rmap-dump", &fd)) < 0)
		return die("memfd", args ? r : -ENOMEM);
	memcpy(args, argv, (size_t)argc * sizeof *args);
	args[argc] = "--output-fd";
	args[argc + 1] = "3";
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd, 3);
	r = posix_spawnp(&pid, args[0], &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	free(args);
	if (r)
		return die("spawn", -r);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "rmap-dump: error: %s failed\n", argv[0]);
		return 1;
	}
	*ret_fd = fd;
	return 0;
}

int main(int argc, char **argv)
{
	bool header = false;
	int i = 1, fd = STDIN_FILENO;

	if (i < argc && !strcmp(argv[i], "--header"))
		header = true, i++;
	if (i < argc && !strcmp(argv[i], "--spawn-memfd")) {
		if (i + 1 >= argc || spawn_memfd(argv + i + 1, argc - i - 1, &fd))
			return 1;
		return dump(fd, REGIONMAP_READ_MEMFD, header);
	}
	if (i < argc && strcmp(argv[i], "-")) {
		fd = open(argv[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "rmap-dump: error: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
	}
	return dump(fd, REGIONMAP_READ_STREAM, header);
}
