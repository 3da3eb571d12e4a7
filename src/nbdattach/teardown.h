/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Disconnecting a device and waiting for udev, shared by attach's rollback and detach. */
#ifndef NBDATTACH_TEARDOWN_H
#define NBDATTACH_TEARDOWN_H

#include <stdint.h>

#define UDEV_TIMEOUT_DEFAULT_MS 30000

/* DISCONNECT, wait (at most TIMEOUT_MS) for udev to process the change, remove the state file.
 * Returns the disconnect's error; the udev wait timing out is not an error (the device is
 * disconnected either way) but is reported through *ret_udev_timedout if non-NULL. */
int teardown_device(uint32_t index, int timeout_ms, int *ret_udev_timedout);

#endif
