/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One entry point per subcommand, one file per subcommand (cmd-*.c). */
#ifndef NBDATTACH_COMMANDS_H
#define NBDATTACH_COMMANDS_H

#include <stdint.h>

/* Exit statuses (documented in nbdattach(8)). */
#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* Each returns an exit status; argv[0] is the subcommand name. */
int command_help(const char *name);
int cmd_version(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_detach(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_cleanup(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_discard(int argc, char **argv);

struct server_pin;

/* The binary region map of URI (BITMAP NULL: a full map) written to FD, sealed when FD is a
 * memfd (cmd-map.c; used by run). Connects to CONNECT (URI through its pinned socket, pin.h)
 * and, when SERVER is known, only to a server listening as SERVER's uid; prints its own
 * one-line error, naming URI. */
int map_binary(const char *uri, const char *connect, const struct server_pin *server, const char *bitmap,
	       uint64_t granularity, int fd, uint64_t *ret_count, uint64_t *ret_total);

#endif
