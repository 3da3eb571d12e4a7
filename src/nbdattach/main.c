/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdattach: attach NBD exports to kernel block devices for backup providers. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "log.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *synopsis;
};

/* Each subcommand adds its line here and its prototype to commands.h. */
static const struct command commands[] = {
	{ "version", cmd_version, "version" },
	{ "attach", cmd_attach, "attach [--tag T] [--name N] [--read-only] [--connections N] [--bitmap NAME] [--json] URI" },
	{ "detach", cmd_detach, "detach DEVICE | --tag T [--name N] [--force]" },
	{ "list", cmd_list, "list [--json]" },
	{ "status", cmd_status, "status DEVICE" },
	{ "run", cmd_run, "run [--tag T] [--map memfd|pipe] [--no-discard] [--grace S] --volume SPEC... -- PROVIDER [ARGS]" },
	{ "discard", cmd_discard, "discard [--granularity G] DEVICE|URI OFFSET LENGTH" },
	{ "cleanup", cmd_cleanup, "cleanup [--device DEVICE]" },
	{ "monitor", cmd_monitor, "monitor DEVICE --identifier ID (started by attach)" },
	{ "map", cmd_map, "map URI [--bitmap NAME|--full] [--format binary|text|nbdinfo] [--output FILE]" },
};

int cmd_version(int argc, char **argv)
{
	if (argc > 1) {
		log_usage("version takes no arguments");
		return EXIT_USAGE;
	}
	printf("nbdattach %s\n", NBDATTACH_VERSION);
	return EXIT_OK;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: nbdattach COMMAND [OPTIONS]\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  nbdattach %s\n", commands[i].synopsis);
	fprintf(f, "\nSee nbdattach(8) for the details.\n");
}

int main(int argc, char **argv)
{
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
