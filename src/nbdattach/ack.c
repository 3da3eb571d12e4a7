/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>

#include "ack.h"

int ack_parse(const char *line, size_t len, struct ack *ret)
{
	char buf[ACK_LINE_MAX];
	char *off, *length;
	struct ack a;

	if (len < 2 || len > ACK_LINE_MAX || line[len - 1] != '\n' || memchr(line, 0, len) ||
	    memchr(line, '\n', len - 1))
		return -EBADMSG;
	memcpy(buf, line, len - 1);
	buf[len - 1] = 0;
	off = strchr(buf, ' ');
	if (!off)
		return -EBADMSG;
	*off++ = 0;
	length = strchr(off, ' ');
	if (!length)
		return -EBADMSG;
	*length++ = 0;
	/* parse_decimal refuses empty fields and any space, sign or leading zero left in them. */
	if (!dev_label_valid(buf) || parse_decimal(off, UINT64_MAX, &a.offset) < 0 ||
	    parse_decimal(length, UINT64_MAX, &a.length) < 0)
		return -EBADMSG;
	memcpy(a.name, buf, strlen(buf) + 1);
	*ret = a;
	return 0;
}
