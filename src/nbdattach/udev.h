/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Waiting for udev to have processed a block device's uevent. The only file that includes
 * libudev. */
#ifndef NBDATTACH_UDEV_H
#define NBDATTACH_UDEV_H

#include <stdint.h>

struct udev_wait;

/* Subscribes to processed block/disk events; call BEFORE the action that emits the event.
 * Also records the kernel's uevent sequence number so older events are ignored. */
int udev_wait_new(struct udev_wait **ret);
#define UDEV_SAW_OURS 0x1u /* our rules recognised the device (NBDATTACH=1) */
#define UDEV_SAW_LINK 0x2u /* ... and had a tag and a name for its stable link, from a record
			    * of IDENTIFIER */

/* Waits (poll, at most TIMEOUT_MS) until udev has processed a "change" event for SYSNAME
 * emitted after udev_wait_new() or after the event the previous wait returned; *RET_SEEN (if
 * not NULL) gets UDEV_SAW_* flags of that event. -ETIMEDOUT on timeout. */
int udev_wait_change(struct udev_wait *w, const char *sysname, const char *identifier,
		     int timeout_ms, unsigned *ret_seen);
void udev_wait_free(struct udev_wait *w);
/* For poll(): readable when processed events are queued. */
int udev_wait_fd(const struct udev_wait *w);
/* Consumes the queued events; returns how many were about SYSNAME (any action). */
int udev_wait_drain(struct udev_wait *w, const char *sysname);

#endif
