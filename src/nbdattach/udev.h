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
/* Waits (poll, at most TIMEOUT_MS) until udev has processed a "change" event for SYSNAME
 * emitted after udev_wait_new(). -ETIMEDOUT on timeout. */
int udev_wait_change(struct udev_wait *w, const char *sysname, int timeout_ms);
void udev_wait_free(struct udev_wait *w);

#endif
