/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdattach: attach NBD exports to kernel block devices for backup providers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd-util.h"
#include "commands.h"
#include "devices.h"
#include "log.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *synopsis;
};

/* Each subcommand adds its line here and its prototype to commands.h. */
static const struct command commands[] = {
	{ "run", cmd_run, "run [--tag TAG] [--map memfd|pipe] [--no-discard] [--grace S] [--timeout S]\n"
			  "        [--dead-conn-timeout S] [--udev-timeout S] --volume SPEC... -- PROVIDER [ARGS]\n"
			  "        SPEC: name=NAME[,bitmap=NAME|full][,granularity=G][,connections=N]\n"
			  "              [,block-size=B],uri=URI" },
	{ "attach", cmd_attach, "attach [--tag TAG] [--name NAME] [--read-only] [--connections N]\n"
				"        [--block-size B] [--timeout S] [--dead-conn-timeout S] [--bitmap NAME]\n"
				"        [--udev-timeout S] [--max-request BYTES] [--no-monitor] [--json] URI" },
	{ "detach", cmd_detach, "detach [--force] [--udev-timeout S] DEVICE | --tag TAG [--name NAME]" },
	{ "list", cmd_list, "list [--json]" },
	{ "status", cmd_status, "status DEVICE" },
	{ "map", cmd_map, "map URI [--bitmap NAME|--full] [--format binary|text|nbdinfo]\n"
			  "        [--granularity BYTES] [--output FILE|--output-fd N] [--server-uid UID]\n"
			  "        [--socket-fd N]" },
	{ "discard", cmd_discard, "discard [--granularity G] DEVICE|URI OFFSET LENGTH" },
	{ "cleanup", cmd_cleanup, "cleanup [--device DEVICE] [--udev-timeout S] [--probe-timeout S]" },
	{ "monitor", cmd_monitor, "monitor [--dead-conn-timeout S] [--events-fd FD] --identifier ID DEVICE (started by attach)" },
	{ "version", cmd_version, "version" },
};

int cmd_version(int argc, char **argv)
{
	if (help_asked(argc, argv))
		return command_help("version"); /* argv[0] may be "--version" */
	if (argc > 1) {
		log_usage("version takes no arguments");
		return EXIT_USAGE;
	}
	printf("nbdattach %s\n", NBDATTACH_VERSION);
	return EXIT_OK;
}

int command_help(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(name, commands[i].name))
			printf("Usage: nbdattach %s\nSee nbdattach(8).\n", commands[i].synopsis);
	return EXIT_OK;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: nbdattach COMMAND [OPTIONS]\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  nbdattach %s\n", commands[i].synopsis);
	fprintf(f, "\nSee nbdattach(8) for the details.\n");
}

/* Descriptors a caller leaves open are its own business, never a provider's, map writer's or
 * monitor's: every inherited one from 3 up becomes close-on-exec (our children get exactly the
 * descriptors we hand them; `map --output-fd N` writes to N itself). */
static void cloexec_inherited(void)
{
	struct dirent *de;
	DIR *d;

	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	d = opendir("/proc/self/fd"); /* before Linux 5.11 */
	if (!d)
		return;
	while ((de = readdir(d))) {
		uint64_t fd;
		int flags;

		if (parse_decimal(de->d_name, INT32_MAX, &fd) < 0 || fd < 3 || (int)fd == dirfd(d))
			continue;
		flags = fcntl((int)fd, F_GETFD);
		if (flags >= 0 && !(flags & FD_CLOEXEC))
			fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	/* An inherited SIGCHLD = SIG_IGN would have the kernel reap our children behind our back
	 * (waitpid: ECHILD, a provider's status lost; pidfd_open: ESRCH; their pids free for reuse
	 * while we still name them). */
	signal(SIGCHLD, SIG_DFL);
	/* A caller that closed stdin, stdout or stderr would hand their numbers to the first files
	 * we open (a state file written to as stderr, a memfd dup2'ed over): /dev/null takes them. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
			return EXIT_FAIL;
	cloexec_inherited();
	if (argc < 2) {
		log_usage("missing command (try 'nbdattach --help')");
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	log_usage("unknown command '%s' (try 'nbdattach --help')", argv[1]);
	return EXIT_USAGE;
}
