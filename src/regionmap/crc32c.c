/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CRC-32C: SSE4.2 crc32 instruction where the CPU has it, slicing-by-8 tables otherwise. */
#include <pthread.h>

#include "format.h"

#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];
static bool use_hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Filled on first use, not by a constructor: a program linked with the static library may
 * write or read maps from constructors of its own that run before one of ours would, and
 * would checksum with empty tables (a constant CRC that any tampered map could carry). */
static void crc32c_fill(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
		table[0][i] = c;
	}
	for (unsigned i = 0; i < 256; i++)
		for (unsigned t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
#if defined(__x86_64__)
	__builtin_cpu_init();
	use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static void crc32c_init(void)
{
	pthread_once(&once, crc32c_fill);
}

bool rm_crc32c_have_hw(void)
{
	crc32c_init();
	return use_hw;
}

uint32_t rm_crc32c_sw(uint32_t reg, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc32c_init();

	for (; len >= 8; len -= 8, p += 8) {
		uint32_t lo = reg ^ rm_get32(p), hi = rm_get32(p + 4);
		reg = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
		      table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
		      table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		      table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
	}
	while (len--)
		reg = (reg >> 8) ^ table[0][(reg ^ *p++) & 0xff];
	return reg;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t rm_crc32c_hw(uint32_t reg, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t r = reg;

	for (; len >= 8; len -= 8, p += 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		r = __builtin_ia32_crc32di(r, v);
	}
	reg = (uint32_t)r;
	while (len--)
		reg = __builtin_ia32_crc32qi(reg, *p++);
	return reg;
}
#else
uint32_t rm_crc32c_hw(uint32_t reg, const void *buf, size_t len)
{
	return rm_crc32c_sw(reg, buf, len);
}
#endif

uint32_t rm_crc32c_update(uint32_t reg, const void *buf, size_t len)
{
	return rm_crc32c_have_hw() ? rm_crc32c_hw(reg, buf, len) : rm_crc32c_sw(reg, buf, len);
}
