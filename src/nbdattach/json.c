/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdint.h>

#include "json.h"

/* The length of the well-formed UTF-8 sequence at P (1 to 4 bytes), or 0: a stray
 * continuation byte, a truncated sequence, an overlong form, a surrogate, beyond U+10FFFF. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n;
	uint32_t cp, min;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f, min = 0x80;
	else if ((p[0] & 0xf0) == 0xe0)
		n = 3, cp = p[0] & 0x0f, min = 0x800;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07, min = 0x10000;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) /* the NUL terminator stops here too */
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : n;
}

void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x80) {
			/* JSON text is UTF-8: a byte that is not (an export name may be any bytes
			 * in a percent-encoded URI) becomes U+FFFD. */
			size_t n = utf8_len(p);

			if (n)
				fwrite(p, 1, n, f), p += n - 1;
			else
				fputs("\\ufffd", f);
			continue;
		}
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\t': fputs("\\t", f); break;
		case '\r': fputs("\\r", f); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

void json_kv_str(FILE *f, const char *key, const char *value, int first)
{
	if (!first)
		fputs(", ", f);
	json_string(f, key);
	fputs(": ", f);
	json_string(f, value ? value : "");
}
