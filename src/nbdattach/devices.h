/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbd devices as sysfs, libmount and /proc/swaps see them; the backend identifier that marks a
 * device as nbdattach's. */
#ifndef NBDATTACH_DEVICES_H
#define NBDATTACH_DEVICES_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEV_ID_PREFIX "nbdattach:"
/* "nbdattach:" + tag(64) + ":" + name(64) + ":" + cookie(32) fits; the kernel stores the
 * string as given and prints it in sysfs, keep it well under a page. */
#define DEV_ID_MAX 192
#define DEV_LABEL_MAX 64
#define DEV_MAX_INDEX 1048575u

/* [A-Za-z0-9][A-Za-z0-9._-]{0,63} */
bool dev_label_valid(const char *s);
/* "nbdattach:TAG:NAME:COOKIE" with a fresh random 128-bit cookie. */
int dev_identifier_new(const char *tag, const char *name, char ret[DEV_ID_MAX]);
/* Splits an identifier; tag/name empty when absent. -EINVAL if not one of ours. */
int dev_identifier_parse(const char *id, char ret_tag[DEV_LABEL_MAX + 1], char ret_name[DEV_LABEL_MAX + 1]);

/* A plain decimal number (no sign, space or leading zero) up to MAX; -EINVAL otherwise. */
int parse_decimal(const char *s, uint64_t max, uint64_t *ret);
/* The first line of a small file (sysfs, procfs) into BUF, NUL-terminated, newline dropped. */
int read_first_line(const char *path, char *buf, size_t len);
/* Names in directory D that PARSE accepts, as numbers, sorted (*ret malloc'ed). */
int list_numbered(DIR *d, int (*parse)(const char *, uint32_t *), uint32_t **ret, size_t *ret_n);

/* "/dev/nbdN" or "nbdN" -> N. */
int dev_parse_name(const char *s, uint32_t *ret_index);
/* Reads /sys/block/nbdN/ATTR (first line, newline stripped); -ENOENT when absent. */
int dev_read_attr(uint32_t index, const char *attr, char *buf, size_t len);
/* Whether /sys/block/nbdN/pid exists (the device is started). */
bool dev_is_started(uint32_t index);
int dev_set_read_ahead(uint32_t index, unsigned kb);
/* queue/read_ahead_kb, queue/max_sectors_kb and queue/nomerges, as attach finds them. */
int dev_get_queue(uint32_t index, uint32_t *ret_read_ahead_kb, uint32_t *ret_max_sectors_kb, uint32_t *ret_nomerges);
/* queue/nomerges: 0 merge, 1 only simple merges, 2 never merge requests. */
int dev_set_nomerges(uint32_t index, unsigned mode);
/* Largest request the kernel sends (queue/max_sectors_kb), in bytes (a multiple of 1024). */
int dev_set_max_request(uint32_t index, uint64_t bytes);
/* Asks the kernel to emit a "change" uevent for the device (so udev runs its rules again). */
int dev_trigger_change(uint32_t index);
/* The nbd module's max_part parameter (0: no partition scanning), or -errno. */
int dev_module_max_part(void);
/* Lists nbd indices the kernel has (sorted); *ret is malloc'ed. */
int dev_list_indices(uint32_t **ret, size_t *ret_n);
/* -EBUSY with a human description (mountpoint, swap, holder) when the device or one of its
 * partitions is in use; 0 when free. */
int dev_check_unused(uint32_t index, char *why, size_t why_len);

#endif
