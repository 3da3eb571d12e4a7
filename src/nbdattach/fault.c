/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

void fault_point(const char *step, const char *name)
{
	const char *want = getenv("NBDATTACH_FAULT");
	char here[160];

	if (!want || !*want)
		return;
	snprintf(here, sizeof(here), "%s%s%s", step, name ? ":" : "", name ? name : "");
	if (strcmp(want, here))
		return;
	/* NBDATTACH_FAULT_SIGNAL=STOP pauses there instead, for a test to act and SIGCONT. */
	want = getenv("NBDATTACH_FAULT_SIGNAL");
	raise(want && !strcmp(want, "STOP") ? SIGSTOP : SIGKILL);
}
