/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libFuzzer target for the udev claim/record parser: files under /run/nbdattach are untrusted.
 * A parsed record holds only our identifier and valid labels. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "claims.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct claim c;
	char t[DEV_LABEL_MAX + 1], n[DEV_LABEL_MAX + 1];

	if (claim_parse((const char *)data, size, &c) < 0)
		return 0;
	if (dev_identifier_parse(c.identifier, t, n) < 0 || (c.tag[0] && !dev_label_valid(c.tag)) ||
	    (c.name[0] && !dev_label_valid(c.name)))
		abort();
	return 0;
}
