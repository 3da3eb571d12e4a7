/* SPDX-License-Identifier: GPL-2.0-or-later */
/* CLOCK_MONOTONIC in milliseconds, for the deadlines of waits and timeouts. */
#ifndef NBDATTACH_CLOCK_H
#define NBDATTACH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
