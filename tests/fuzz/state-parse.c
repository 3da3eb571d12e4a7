/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libFuzzer target for the state journal parser: files under /run/nbdattach are untrusted.
 * A parsed record must re-serialise and parse back to the same record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state_rec a, b;
	char buf[STATE_FILE_MAX + 1], buf2[STATE_FILE_MAX + 1];
	size_t len, len2;

	if (state_parse((const char *)data, size, &a) < 0)
		return 0;
	if (state_format(&a, buf, sizeof(buf), &len) < 0)
		abort();
	if (state_parse(buf, len, &b) < 0 || state_format(&b, buf2, sizeof(buf2), &len2) < 0 ||
	    len != len2 || memcmp(buf, buf2, len) != 0)
		abort();
	return 0;
}
