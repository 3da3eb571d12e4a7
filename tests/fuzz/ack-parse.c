/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libFuzzer target for the provider's acknowledgement lines (nbdattach run): the provider is
 * untrusted. The grammar is strict, so a line that parses is exactly the canonical
 * "NAME OFFSET LENGTH\n" of what was parsed. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char canon[ACK_LINE_MAX + 1];
	struct ack a;
	int n;

	if (ack_parse((const char *)data, size, &a) < 0)
		return 0;
	if (!dev_label_valid(a.name))
		abort();
	n = snprintf(canon, sizeof(canon), "%s %" PRIu64 " %" PRIu64 "\n", a.name, a.offset, a.length);
	if (n < 0 || (size_t)n != size || memcmp(canon, data, size) != 0)
		abort();
	return 0;
}
