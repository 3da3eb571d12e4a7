/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "claims.h"
#include "ownership.h"

int dev_info_get(uint32_t index, struct dev_info *ret)
{
	struct dev_info *i = ret;
	struct claim c;
	char buf[32];
	int r;

	memset(i, 0, sizeof(*i));
	i->index = index;
	r = dev_read_attr(index, "size", buf, sizeof(buf));
	if (r < 0)
		return r == -ENOENT ? -ENOENT : r;
	i->size_sectors = strtoull(buf, NULL, 10);
	i->started = dev_is_started(index);
	if (dev_read_attr(index, "backend", i->backend, sizeof(i->backend)) < 0)
		i->backend[0] = 0;
	/* The identifier alone decides ownership: a device without it (nbd-client, qemu-nbd -c,
	 * merely held open) is never ours. */
	i->ours = i->started && dev_identifier_parse(i->backend, i->tag, i->name) == 0;
	i->held_open = i->ours && release_record_read(index, &c) == 0 && !strcmp(c.identifier, i->backend);
	if (i->held_open)
		i->started = false;
	i->have_state = state_read(index, &i->st) == 0 && !strcmp(i->st.identifier, i->backend);
	return 0;
}
