/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Disconnecting a device and waiting for udev, shared by attach's rollback and detach. */
#ifndef NBDATTACH_TEARDOWN_H
#define NBDATTACH_TEARDOWN_H

#include <stdbool.h>
#include <stdint.h>

#define UDEV_TIMEOUT_DEFAULT_MS 30000

/* Flags of teardown_device. */
#define TEARDOWN_IF_UNJOURNALED 1u /* only while no journal entry accounts for the device */
#define TEARDOWN_HOLDER_EXPECTED 2u /* its user still has it open: no grace for a last close */

/* Under the state lock: checks that device INDEX still carries IDENTIFIER (NULL: whatever it
 * carries), DISCONNECTs it (held open meanwhile, so that its queue settings are put back before
 * the minor can be reused) and removes the records that are its own; then waits for udev to
 * process the change (at most TIMEOUT_MS, after up to 2 s for a holder that is closing).
 * -ESTALE: the device is no longer IDENTIFIER's, -EBUSY: TEARDOWN_IF_UNJOURNALED and a journal
 * entry names it now; nothing was done in either case. Otherwise the disconnect's error; the
 * udev wait timing out is not an error (the device is disconnected either way). On success,
 * *ret_held_open (if non-NULL) says whether another process still holds the device open, so
 * that the kernel keeps it until the last close (ours then gets a released/ record). */
int teardown_device(uint32_t index, const char *identifier, unsigned flags, int timeout_ms,
		    bool *ret_held_open);

#endif
