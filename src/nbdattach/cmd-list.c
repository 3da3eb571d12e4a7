/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdattach list [--json]: every nbd device the kernel has, connected or not, ours or not. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "cmd-util.h"
#include "commands.h"
#include "json.h"
#include "log.h"
#include "ownership.h"

static const char *owner_of(const struct dev_info *i)
{
	return i->ours ? "nbdattach" : i->started ? "foreign" : "-";
}

static const char *state_of(const struct dev_info *i)
{
	return i->started ? "connected" : i->held_open ? "held-open" : "disconnected";
}

static void print_text(const struct dev_info *i)
{
	printf("/dev/nbd%-4" PRIu32 " %-12s %-9s %-12s %-12s %s\n", i->index,
	       state_of(i), owner_of(i),
	       i->ours && i->tag[0] ? i->tag : "-", i->ours && i->name[0] ? i->name : "-",
	       i->have_state ? i->st.export_name : "-");
}

static void print_json(const struct dev_info *i, bool first)
{
	printf("%s{\"device\": \"/dev/nbd%" PRIu32 "\", \"index\": %" PRIu32 ", \"connected\": %s, "
	       "\"held_open\": %s, \"size\": %" PRIu64, first ? "" : ", ", i->index, i->index,
	       i->started ? "true" : "false", i->held_open ? "true" : "false", i->size_sectors * 512);
	json_kv_str(stdout, "owner", owner_of(i), 0);
	json_kv_str(stdout, "backend", i->backend, 0);
	json_kv_str(stdout, "tag", i->ours ? i->tag : "", 0);
	json_kv_str(stdout, "name", i->ours ? i->name : "", 0);
	json_kv_str(stdout, "export", i->have_state ? i->st.export_name : "", 0);
	json_kv_str(stdout, "uri", i->have_state ? i->st.uri : "", 0);
	json_kv_str(stdout, "bitmap", i->have_state ? i->st.bitmap : "", 0);
	printf("}");
}

int cmd_list(int argc, char **argv)
{
	_cleanup_free_ uint32_t *v = NULL;
	size_t n = 0;
	bool json = false, first = true;
	int r;

	if (help_asked(argc, argv))
		return command_help(argv[0]);
	if (argc == 2 && !strcmp(argv[1], "--json"))
		json = true;
	else if (argc != 1) {
		log_usage("list: unexpected argument '%s' (only --json)", argv[1]);
		return EXIT_USAGE;
	}
	r = dev_list_indices(&v, &n);
	if (r < 0) { /* no nbd devices is an empty list; this is /sys/block itself failing */
		log_error("cannot list nbd devices: %s", strerror(-r));
		return EXIT_FAIL;
	}
	if (json)
		printf("[");
	for (size_t k = 0; k < n; k++) {
		struct dev_info i;

		if (dev_info_get(v[k], &i) < 0)
			continue;
		if (json)
			print_json(&i, first);
		else
			print_text(&i);
		first = false;
	}
	if (json)
		printf("]\n");
	return EXIT_OK;
}
