/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One entry point per subcommand, one file per subcommand (cmd-*.c). */
#ifndef NBDATTACH_COMMANDS_H
#define NBDATTACH_COMMANDS_H

/* Exit statuses (documented in nbdattach(8)). */
#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* Each returns an exit status; argv[0] is the subcommand name. */
int cmd_version(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_detach(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_cleanup(int argc, char **argv);
int cmd_monitor(int argc, char **argv);

#endif
