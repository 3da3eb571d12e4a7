/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Hand-written JSON output: strings escaped per RFC 8259. */
#ifndef NBDATTACH_JSON_H
#define NBDATTACH_JSON_H

#include <stdio.h>

/* Writes S as a JSON string literal (with quotes). */
void json_string(FILE *f, const char *s);
/* Writes "KEY": "VALUE" preceded by ", " unless FIRST. */
void json_kv_str(FILE *f, const char *key, const char *value, int first);

#endif
