/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * On-disk layout of a region map (regionmap(5)) and helpers shared by the writer and reader.
 * Private to libregionmap (and its unit tests).
 */
#ifndef REGIONMAP_FORMAT_H
#define REGIONMAP_FORMAT_H

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "regionmap.h"

#define RM_MAGIC "RGNMAP\r\n"          /* 8 bytes at offset 0 */
#define RM_MAGIC_LEN 8u
#define RM_HDR_FIXED 48u               /* bytes before the context */
#define RM_OFF_VERSION 8u
#define RM_OFF_FLAGS 12u
#define RM_OFF_SIZE 16u
#define RM_OFF_GRAN 24u
#define RM_OFF_COUNT 32u
#define RM_OFF_CTXLEN 40u
#define RM_OFF_RESERVED 42u            /* 6 zero bytes */
#define RM_RECORD 16u
/* The trailer starts with eight 0xff bytes: a record offset of 2^64-1 can never be valid (its
 * length would overflow), so a sequential reader tells a trailer from a record unambiguously. */
#define RM_TRAILER_MAGIC "\xff\xff\xff\xff\xff\xff\xff\xffRGNMAPTR"
#define RM_TRAILER_MAGIC_LEN 16u
#define RM_TRAILER 40u                 /* magic 16, count 8, total 8, crc 4, reserved 4 */
#define RM_KNOWN_FLAGS REGIONMAP_FLAG_FULL
#define RM_BUFSZ (64u * 1024u)

static inline uint64_t rm_hdr_len(uint64_t ctxlen)
{
	return RM_HDR_FIXED + ((ctxlen + 15u) & ~UINT64_C(15));
}

static inline void rm_put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static inline void rm_put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void rm_put16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline uint64_t rm_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static inline uint32_t rm_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint16_t rm_get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }

static inline bool rm_is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

static inline bool rm_context_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

/* CRC-32C (Castagnoli). rm_crc32c_update works on the raw register: start with ~0u, finish
 * with ~. The _sw/_hw variants are exported for the unit tests; _hw needs SSE4.2. */
uint32_t rm_crc32c_update(uint32_t reg, const void *buf, size_t len);
uint32_t rm_crc32c_sw(uint32_t reg, const void *buf, size_t len);
uint32_t rm_crc32c_hw(uint32_t reg, const void *buf, size_t len);
bool rm_crc32c_have_hw(void);

/* Validation of a record sequence, shared by writer (adds) and reader (records). */
struct rm_check {
	uint64_t export_size, granularity, end, count, total;
	uint32_t flags;
};

static inline void rm_check_init(struct rm_check *c, uint64_t export_size, uint64_t granularity,
                                 uint32_t flags)
{
	*c = (struct rm_check){ .export_size = export_size, .granularity = granularity, .flags = flags };
}

/* Checks shape: zero length/misaligned -EINVAL, overflow -EOVERFLOW, past end -ERANGE.
 * Inline: it runs once per record on maps of millions of records. */
static inline int rm_check_shape(const struct rm_check *c, uint64_t offset, uint64_t length)
{
	uint64_t mask = c->granularity - 1;

	if (length == 0)
		return -EINVAL;
	if (offset > UINT64_MAX - length)
		return -EOVERFLOW;
	if (offset + length > c->export_size)
		return -ERANGE;
	if ((offset & mask) || ((length & mask) && offset + length != c->export_size))
		return -EINVAL;
	return 0;
}

#endif
