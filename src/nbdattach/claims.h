/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What udev reads about our devices (udev/60-nbdattach.rules), next to the journal:
 *   claims/PID  written by the helper (PID) before NBD_CMD_CONNECT. Linux 6.1 creates the
 *               device's `backend` file only after the first "change" uevent, but `pid` (the
 *               connecting process) already exists then, so udev recognises the device by it.
 *   udev/nbdN   the same record once the kernel has said which device it picked (renamed).
 * Both hold NBDATTACH_ID, NBDATTACH_TAG and NBDATTACH_NAME lines for udev's IMPORT{file};
 * values are validated labels and our identifier, so they need no quoting.
 *   released/nbdN  the same lines, for a device detach disconnected while another process
 *               still held it open: the kernel keeps its pid, backend and size until the last
 *               close, so only this record tells it from a connected device. The udev rule's
 *               cleanup --device removes it when the last close finally releases the minor.
 */
#ifndef NBDATTACH_CLAIMS_H
#define NBDATTACH_CLAIMS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "devices.h"

struct claim {
	char identifier[DEV_ID_MAX];
	char tag[DEV_LABEL_MAX + 1], name[DEV_LABEL_MAX + 1];
};

/* Writes claims/PID atomically. */
int claim_write(pid_t pid, const struct claim *c);
/* Renames claims/PID to udev/nbdINDEX. */
int claim_commit(pid_t pid, uint32_t index);
int claim_remove(pid_t pid);
/* Reads claims/PID; -ENOENT when absent, -EBADMSG when malformed. */
int claim_read(pid_t pid, struct claim *ret);
/* When claims/PID was written (wall-clock seconds), -1 if unknown. */
int64_t claim_time(pid_t pid);
/* PIDs with a claim (malloc'ed, sorted). */
int claim_list(uint32_t **ret, size_t *ret_n);
/* Reads / removes udev/nbdINDEX. */
int udev_record_read(uint32_t index, struct claim *ret);
int udev_record_remove(uint32_t index);
/* Removes the udev record of INDEX only if it is IDENTIFIER's (or unreadable). */
int udev_record_remove_if(uint32_t index, const char *identifier);
/* Indices with a udev record (malloc'ed, sorted). */
int udev_record_list(uint32_t **ret, size_t *ret_n);

/* Writes, reads, removes (only IDENTIFIER's or an unreadable one: _if) and lists
 * released/nbdINDEX. */
int release_record_write(uint32_t index, const char *identifier);
int release_record_read(uint32_t index, struct claim *ret);
int release_record_remove(uint32_t index);
int release_record_remove_if(uint32_t index, const char *identifier);
int release_record_list(uint32_t **ret, size_t *ret_n);
/* Parses a record's bytes (exported for the unit tests and the fuzzer). */
int claim_parse(const char *buf, size_t len, struct claim *ret);

#endif
