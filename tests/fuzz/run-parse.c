/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libFuzzer target for the run journal parser: files under /run/nbdattach/runs are untrusted
 * (cleanup reads those of dead helpers and kills the processes they name). A parsed record
 * names only positive pids, re-serialises and parses back to the same record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run_rec a, b;
	char buf[RUN_FILE_MAX + 1], buf2[RUN_FILE_MAX + 1];
	size_t len, len2;

	if (run_parse((const char *)data, size, &a) < 0)
		return 0;
	if (a.pid <= 0 || a.n_children > RUN_CHILDREN_MAX || !a.step[0])
		abort();
	for (unsigned i = 0; i < a.n_children; i++)
		if (a.children[i].pid <= 0 || a.children[i].pid > INT32_MAX)
			abort();
	if (run_format(&a, buf, sizeof(buf), &len) < 0)
		abort();
	if (run_parse(buf, len, &b) < 0 || run_format(&b, buf2, sizeof(buf2), &len2) < 0 ||
	    len != len2 || memcmp(buf, buf2, len) != 0)
		abort();
	return 0;
}
