/* SPDX-License-Identifier: GPL-2.0-or-later */
/* json_string: valid JSON text for whatever bytes it is given (export names come from URIs). */
#include <stdlib.h>

#include "../../src/nbdattach/json.h"
#include "unit.h"

static void expect(const char *desc, const char *in, const char *want)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	json_string(f, in);
	fclose(f);
	unit_check(buf && !strcmp(buf, want), desc, "got [%s], want [%s]", buf ? buf : "(null)", want);
	free(buf);
}

int main(void)
{
	expect("plain ASCII", "disk-0", "\"disk-0\"");
	expect("quote, backslash, controls", "a\"b\\c\n\t\r\x01\x7f", "\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u007f\"");
	expect("2-, 3- and 4-byte UTF-8 kept", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x92\xbe", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x92\xbe\"");
	expect("stray bytes replaced", "\xff\xfe", "\"\\ufffd\\ufffd\"");
	expect("lone continuation byte", "a\x80z", "\"a\\ufffdz\"");
	expect("truncated sequence at the end", "a\xe2\x82", "\"a\\ufffd\\ufffd\"");
	expect("truncated sequence before ASCII", "\xe2\x82z", "\"\\ufffd\\ufffdz\"");
	expect("overlong encodings", "\xc0\xaf\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
	expect("UTF-16 surrogate", "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");
	expect("beyond U+10FFFF", "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	expect("U+10FFFF itself", "\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");
	return unit_exit();
}
