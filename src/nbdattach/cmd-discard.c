/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdattach discard [--granularity G] DEVICE|URI OFFSET LENGTH: for orchestrators that drive
 * providers themselves. The range is shrunk inward to whole granules (QEMU 7.2 aborts on an
 * unaligned TRIM) and trimmed over a connection of its own; nothing is remembered between
 * calls, so the caller merges partial granules itself. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd-util.h"
#include "commands.h"
#include "devices.h"
#include "discard.h"
#include "log.h"
#include "ownership.h"
#include "regionmap.h"
#include "state.h"

/* TARGET's URI, and for a device the server it was attached to (PIN). */
static int resolve(const char *target, char *uri, size_t len, struct server_pin *pin)
{
	struct dev_info info;
	uint32_t index;
	int r;

	if (dev_parse_name(target, &index) < 0) { /* a URI cmd_discard has checked */
		snprintf(uri, len, "%s", target);
		return 0;
	}
	/* Only a live record: a stale one (its helper killed, the device detached behind its
	 * back) names a URI that may by now serve another backup's snapshot. Checked without the
	 * state lock, so a detach racing with this call still gets its TRIM: the caller asked
	 * for it while the device was its. */
	r = dev_info_get(index, &info);
	if (r < 0 || !info.have_state || !dev_info_carries(&info, info.st.identifier)) {
		log_error("cannot discard on '%s': not attached by nbdattach", target);
		return r < 0 ? r : -ENOENT;
	}
	snprintf(uri, len, "%s", info.st.uri);
	*pin = info.st.server;
	return 0;
}

/* One command waits here, so a few TRIMs in flight at a time are plenty (a range of the whole
 * export is split into up to size / 2 GiB of them). */
static int trim_bounded(void *trimmer, uint64_t offset, uint64_t length)
{
	if (nbd_trimmer_in_flight(trimmer) >= 16) {
		int r = nbd_trimmer_flush(trimmer);

		if (r < 0)
			return r;
	}
	return nbd_trimmer_trim(trimmer, offset, length);
}

static int discard(const char *target, uint64_t gran, uint64_t off, uint64_t len)
{
	char uri[STATE_URI_MAX], why[256] = "";
	struct server_pin pin = { 0 };
	struct nbd_trimmer *t = NULL;
	struct discarder *d = NULL;
	int r = resolve(target, uri, sizeof(uri), &pin);

	if (r < 0)
		return EXIT_FAIL;
	r = nbd_trimmer_open(uri, &pin, 0, &t, why, sizeof(why));
	if (r == 0)
		r = discarder_new(nbd_trimmer_size(t), gran, trim_bounded, t, &d);
	if (r == 0)
		r = discarder_ack(d, off, len);
	if (r == 0)
		r = nbd_trimmer_flush(t);
	if (r == 0)
		printf("discarded %" PRIu64 " bytes in %" PRIu64 " requests; %" PRIu64
		       " bytes not in whole %" PRIu64 "-byte granules left\n",
		       nbd_trimmer_trimmed(t), nbd_trimmer_requests(t), discarder_pending(d), gran);
	else if (r == -ERANGE)
		log_error("cannot discard on '%s': range past the end of the export", target);
	else if (r == -ETIMEDOUT && !why[0]) /* why: the handshake's */
		log_error("cannot discard on '%s': the server did not answer a TRIM within %d s", target,
			  NBD_TRIMMER_TIMEOUT_MS / 1000);
	else
		log_error("cannot discard on '%s': %s", target, why[0] ? why : strerror(-r));
	discarder_free(d);
	nbd_trimmer_close(t);
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}

int cmd_discard(int argc, char **argv)
{
	static const struct option lo[] = { { "granularity", required_argument, NULL, 'g' }, OPT_HELP, { 0 } };
	uint64_t gran = 65536, off, len;
	const char *target;
	uint32_t index;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		if (c == 'h')
			return command_help(argv[0]);
		if (c != 'g')
			return usage_bad_option(argv[optind - 1], c), EXIT_USAGE;
		if (parse_pow2_opt("--granularity", optarg, 512, REGIONMAP_GRANULARITY_MAX, &gran) < 0)
			return EXIT_USAGE;
	}
	if (optind + 3 != argc) {
		log_usage("discard: expected DEVICE|URI OFFSET LENGTH");
		return EXIT_USAGE;
	}
	if (parse_num_opt("OFFSET", argv[optind + 1], 0, UINT64_MAX, &off) < 0 ||
	    parse_num_opt("LENGTH", argv[optind + 2], 1, UINT64_MAX, &len) < 0)
		return EXIT_USAGE;
	if (len > UINT64_MAX - off) {
		log_usage("discard: OFFSET + LENGTH is beyond 2^64 bytes");
		return EXIT_USAGE;
	}
	target = argv[optind];
	if (dev_parse_name(target, &index) < 0) {
		if (!strncmp(target, "/dev/", 5) || (!strncmp(target, "nbd", 3) && isdigit((unsigned char)target[3]))) {
			log_usage("discard: '%s' is not an nbd device (expected /dev/nbdN or nbdN)", target);
			return EXIT_USAGE;
		}
		if (usage_bad_uri("discard", target) < 0)
			return EXIT_USAGE;
	}
	return discard(target, gran, off, len);
}
