/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdattach status DEVICE. Exit: 0 connected and ours, 3 not connected (or no such device),
 * 4 connected but not nbdattach's, 1 error, 2 usage. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cmd-util.h"
#include "commands.h"
#include "log.h"
#include "ownership.h"

#define EXIT_NOT_CONNECTED 3
#define EXIT_FOREIGN 4

int cmd_status(int argc, char **argv)
{
	struct dev_info i;
	uint32_t index;
	int r;

	if (help_asked(argc, argv))
		return command_help(argv[0]);
	if (argc != 2) {
		log_usage("status: expected exactly one DEVICE");
		return EXIT_USAGE;
	}
	if (dev_parse_name(argv[1], &index) < 0) {
		log_usage("status: '%s' is not an nbd device (expected /dev/nbdN or nbdN)", argv[1]);
		return EXIT_USAGE;
	}
	r = dev_info_get(index, &i);
	if (r < 0 && r != -ENOENT) {
		log_error("cannot read the status of '/dev/nbd%" PRIu32 "': %s", index, strerror(-r));
		return EXIT_FAIL;
	}
	if (r == 0 && i.held_open) {
		printf("/dev/nbd%" PRIu32 ": not connected (detached, still held open by another process; "
		       "freed at its last close)\n", index);
		return EXIT_NOT_CONNECTED;
	}
	if (r < 0 || !i.started) {
		printf("/dev/nbd%" PRIu32 ": not connected\n", index);
		return EXIT_NOT_CONNECTED;
	}
	if (!i.ours) {
		printf("/dev/nbd%" PRIu32 ": connected, foreign\n", index);
		return EXIT_FOREIGN;
	}
	printf("/dev/nbd%" PRIu32 ": connected, nbdattach tag=%s name=%s export=%s\n", index,
	       i.tag[0] ? i.tag : "-", i.name[0] ? i.name : "-", i.have_state ? i.st.export_name : "-");
	return EXIT_OK;
}
