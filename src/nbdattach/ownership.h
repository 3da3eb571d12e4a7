/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What nbdattach knows about one nbd device: kernel state, backend identifier, journal. */
#ifndef NBDATTACH_OWNERSHIP_H
#define NBDATTACH_OWNERSHIP_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "devices.h"
#include "state.h"

struct dev_info {
	uint32_t index;
	bool started;            /* /sys/block/nbdN/pid exists, and not held_open */
	/* Ours, detached while another process held it open: the kernel keeps pid, backend and
	 * size until the last close, but the device has no connection any more. */
	bool held_open;
	bool ours;               /* backend identifier is nbdattach's (started or held_open) */
	bool have_state;         /* journal record matches the identifier */
	char backend[DEV_ID_MAX + 2];
	char tag[DEV_LABEL_MAX + 1], name[DEV_LABEL_MAX + 1];
	uint64_t size_sectors;
	struct state_rec st;
};

/* Fills INFO for device INDEX; -ENOENT when the kernel has no such device. */
int dev_info_get(uint32_t index, struct dev_info *ret);

/* Is the device connected and carrying IDENTIFIER (so that a record naming it is live)? */
static inline bool dev_info_carries(const struct dev_info *i, const char *identifier)
{
	return i->started && !strcmp(i->backend, identifier);
}

#endif
