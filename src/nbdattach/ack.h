/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The provider's acknowledgement lines (nbdattach(8), "PROVIDER PROTOCOL"): untrusted input,
 * parsed strictly by a pure function (fuzzed: tests/fuzz/ack-parse.c). */
#ifndef NBDATTACH_ACK_H
#define NBDATTACH_ACK_H

#include <stddef.h>
#include <stdint.h>

#include "devices.h"

/* Longest line accepted, its LF included; a name (64) and two 20-digit numbers fit. */
#define ACK_LINE_MAX 256

struct ack {
	char name[DEV_LABEL_MAX + 1];
	uint64_t offset, length;
};

/* One line of LEN bytes ending in its LF: exactly NAME SP OFFSET SP LENGTH LF, NAME a label
 * ([A-Za-z0-9][A-Za-z0-9._-]{0,63}), OFFSET and LENGTH plain decimals (no sign, no leading
 * zero) below 2^64. Anything else (a NUL, an empty field, a missing, doubled, leading or
 * trailing space, a tab, a CR, another LF) is -EBADMSG. Ranges are not checked here. */
int ack_parse(const char *line, size_t len, struct ack *ret);

#endif
