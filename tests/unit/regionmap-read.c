/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libregionmap reader: every malformed map fails with the documented errno, never with 0. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "format.h"
#include "regionmap.h"
#include "unit.h"

#define G 4096u
#define MAXB 4096

struct raw {
	uint8_t b[MAXB];
	size_t len;
};

struct rec { uint64_t off, len; };

/* Build a map byte by byte (no library writer), with a correct trailer and checksum. */
static void build(struct raw *m, uint64_t size, uint32_t flags, const struct rec *recs, size_t n)
{
	const char *ctx = "base:allocation";
	uint64_t total = 0;
	size_t h = rm_hdr_len(strlen(ctx));
	uint8_t *p = m->b;

	memset(m->b, 0, sizeof(m->b));
	memcpy(p, RM_MAGIC, 8);
	rm_put32(p + 8, REGIONMAP_VERSION);
	rm_put32(p + 12, flags);
	rm_put64(p + 16, size);
	rm_put64(p + 24, G);
	rm_put64(p + 32, REGIONMAP_COUNT_UNKNOWN);
	rm_put16(p + 40, (uint16_t)strlen(ctx));
	memcpy(p + 48, ctx, strlen(ctx));
	for (size_t k = 0; k < n; k++) {
		rm_put64(p + h + 16 * k, recs[k].off);
		rm_put64(p + h + 16 * k + 8, recs[k].len);
		total += recs[k].len;
	}
	m->len = h + 16 * n;
	uint32_t crc = ~rm_crc32c_update(~0u, p, m->len);
	p += m->len;
	memcpy(p, RM_TRAILER_MAGIC, 16);
	rm_put64(p + 16, n);
	rm_put64(p + 24, total);
	rm_put32(p + 32, crc);
	m->len += RM_TRAILER;
}

static int memfd_with(const uint8_t *b, size_t len, int seals)
{
	int fd = -1;

	regionmap_memfd_create("t", &fd);
	if (write(fd, b, len) != (ssize_t)len)
		abort();
	lseek(fd, 0, SEEK_SET);
	if (seals)
		fcntl(fd, F_ADD_SEALS, seals);
	return fd;
}

static int iterate(int fd, unsigned mode)
{
	struct regionmap_reader *r;
	uint64_t o, l;
	int e = regionmap_reader_open(fd, mode, &r);

	if (e < 0)
		return e;
	while ((e = regionmap_reader_next(r, &o, &l)) > 0)
		;
	regionmap_reader_free(r);
	return e;
}

/* Whether reading FD in MODE yields exactly the N regions RECS, then a verified end. */
static bool reads_back(int fd, unsigned mode, const struct rec *recs, size_t n)
{
	struct regionmap_reader *r;
	uint64_t o, l;
	size_t k = 0;
	bool same = true;
	int e = regionmap_reader_open(fd, mode, &r);

	if (e < 0)
		return false;
	while ((e = regionmap_reader_next(r, &o, &l)) > 0) {
		same = same && k < n && o == recs[k].off && l == recs[k].len;
		k++;
	}
	regionmap_reader_free(r);
	return e == 0 && same && k == n;
}

/* Read m as a stream; in memfd mode (count patched into the header, sealed) too. */
static int read_stream(const struct raw *m)
{
	int fd = memfd_with(m->b, m->len, 0), e = iterate(fd, REGIONMAP_READ_STREAM);

	close(fd);
	return e;
}

#define ALL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

static int read_memfd(const struct raw *m, uint64_t count, int seals)
{
	struct raw c = *m;
	int fd, e;

	rm_put64(c.b + 32, count);
	fd = memfd_with(c.b, c.len, seals);
	e = iterate(fd, REGIONMAP_READ_MEMFD);
	close(fd);
	return e;
}

static void both(const char *d, const struct raw *m, uint64_t count, int want)
{
	char s[256];

	snprintf(s, sizeof(s), "%s (stream)", d);
	expect_int(s, want, read_stream(m));
	snprintf(s, sizeof(s), "%s (memfd)", d);
	expect_int(s, want, read_memfd(m, count, ALL_SEALS));
}

static const struct rec good[] = { { 0, G }, { 4 * G, 2 * G }, { 10 * G, 6 * G } };

static void test_header(void)
{
	struct raw m, c;

	build(&m, 16 * G, 0, good, 3);
	both("well-formed map", &m, 3, 0);
	int fd = memfd_with(m.b, m.len, 0);
	unit_check(reads_back(fd, REGIONMAP_READ_STREAM, good, 3), "well-formed map: the regions written (stream)", "differ");
	close(fd);
	c = m;
	rm_put64(c.b + 32, 3);
	fd = memfd_with(c.b, c.len, ALL_SEALS);
	unit_check(reads_back(fd, REGIONMAP_READ_MEMFD, good, 3), "well-formed map: the regions written (memfd)", "differ");
	close(fd);
	c = m; c.b[0] ^= 1;
	both("bad magic", &c, 3, -EBADMSG);
	c = m; rm_put32(c.b + 8, 2);
	both("bad version", &c, 3, -EPROTONOSUPPORT);
	c = m; rm_put32(c.b + 12, 0x4);
	both("unknown flag", &c, 3, -EINVAL);
	c = m; c.b[45] = 1;
	both("non-zero reserved byte", &c, 3, -EINVAL);
	c = m; rm_put64(c.b + 24, 3000);
	both("bad granularity", &c, 3, -EINVAL);
	c = m; rm_put64(c.b + 16, 0);
	both("zero export size", &c, 3, -EINVAL);
	c = m; c.b[50] = '\t';
	both("non-printable context", &c, 3, -EINVAL);
	c = m; c.b[63] = 'x';
	both("non-zero context padding", &c, 3, -EINVAL);
	expect_int("unsealed memfd", -EPERM, read_memfd(&m, 3, 0));
	expect_int("memfd without F_SEAL_WRITE", -EPERM, read_memfd(&m, 3, ALL_SEALS & ~F_SEAL_WRITE));
	expect_int("memfd without F_SEAL_SEAL", -EPERM, read_memfd(&m, 3, ALL_SEALS & ~F_SEAL_SEAL));
	expect_int("absurd memfd count", -EFBIG, read_memfd(&m, UINT64_MAX / 8, ALL_SEALS));
	expect_int("memfd count larger than the file", -EFBIG, read_memfd(&m, 4, ALL_SEALS));
	expect_int("memfd count smaller than the file", -EBADMSG, read_memfd(&m, 2, ALL_SEALS));
}

static void test_records(void)
{
	struct raw m;
	struct rec r[3];

	memcpy(r, good, sizeof(r));
	r[1].off = 0;
	build(&m, 16 * G, 0, r, 3);
	both("unsorted records", &m, 3, -EDOM);
	memcpy(r, good, sizeof(r));
	r[1].len = 7 * G;
	build(&m, 16 * G, 0, r, 3);
	both("overlapping records", &m, 3, -EDOM);
	memcpy(r, good, sizeof(r));
	r[1].off = G;
	build(&m, 16 * G, 0, r, 3);
	both("touching records", &m, 3, -EDOM);
	memcpy(r, good, sizeof(r));
	r[2].len = 7 * G;
	build(&m, 16 * G, 0, r, 3);
	both("record out of bounds", &m, 3, -ERANGE);
	memcpy(r, good, sizeof(r));
	r[2].off = UINT64_MAX - G + 1;
	r[2].len = 2 * G;
	build(&m, 16 * G, 0, r, 3);
	both("offset+length overflow", &m, 3, -EOVERFLOW);
	memcpy(r, good, sizeof(r));
	r[1].len = 0;
	build(&m, 16 * G, 0, r, 3);
	both("zero-length record", &m, 3, -EINVAL);
	memcpy(r, good, sizeof(r));
	r[1].off += 512;
	build(&m, 16 * G, 0, r, 3);
	both("misaligned record", &m, 3, -EINVAL);
	struct rec tail[] = { { 0, G }, { 2 * G, 3 * G - 100 } };
	build(&m, 5 * G - 100, 0, tail, 2);
	both("unaligned last record ending at export end", &m, 2, 0);
	struct rec half = { 0, 8 * G }, whole = { 0, 16 * G };
	build(&m, 16 * G, REGIONMAP_FLAG_FULL, &half, 1);
	both("full map with a wrong record", &m, 1, -EDOM);
	build(&m, 16 * G, REGIONMAP_FLAG_FULL, &whole, 1);
	both("full map with the whole export", &m, 1, 0);
	build(&m, 16 * G, REGIONMAP_FLAG_FULL, &whole, 0);
	both("full map without its record: -EDOM like any wrong full map", &m, 0, -EDOM);
}

static void test_trailer(void)
{
	struct raw m, c;

	build(&m, 16 * G, 0, good, 3);
	c = m; c.b[c.len - 8] ^= 1;
	both("bad crc", &c, 3, -EBADMSG);
	c = m; c.b[48 + 2] ^= 0x1; /* context 'b' -> 'c': still printable */
	both("header byte changed (crc)", &c, 3, -EBADMSG);
	c = m; c.b[c.len - 20] ^= 1;
	both("bad trailer total", &c, 3, -EBADMSG);
	c = m; c.b[c.len - 30] ^= 1;
	both("bad trailer magic", &c, 3, -EBADMSG);
	c = m; c.b[c.len - 1] = 1;
	both("non-zero trailer reserved", &c, 3, -EBADMSG);
	c = m; c.b[c.len] = 0; c.len++;
	expect_int("data after trailer (stream)", -EBADMSG, read_stream(&c));
	expect_int("data after trailer (memfd)", -EBADMSG, read_memfd(&c, 3, ALL_SEALS));
}

static void test_truncation(void)
{
	struct raw m, c;
	int bad_stream = 0, bad_memfd = 0;
	size_t first = 0;

	build(&m, 16 * G, 0, good, 3);
	for (size_t n = 0; n < m.len; n++) {
		c = m;
		c.len = n;
		if (read_stream(&c) != -ENODATA && !bad_stream++)
			first = n;
		if (read_memfd(&c, 3, ALL_SEALS) >= 0)
			bad_memfd++;
	}
	unit_check(!bad_stream, "stream truncated at every byte: -ENODATA", "%d lengths wrong, first %zu", bad_stream, first);
	unit_check(!bad_memfd, "memfd truncated at every byte: an error, never 0", "%d lengths accepted", bad_memfd);
}

/* Stream mode shows no record count before the trailer proved it, even one in the header. */
static void test_stream_count(void)
{
	struct regionmap_reader *r;
	struct raw m, c;
	uint64_t n, t;
	int fd, e;

	build(&m, 16 * G, 0, good, 3);
	c = m;
	rm_put64(c.b + 32, 3); /* a memfd-form file read as a stream: the header has the count */
	fd = memfd_with(c.b, c.len, 0);
	expect_int("stream with a header count: open", 0, regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r));
	expect_u64("stream: count unknown after open", REGIONMAP_COUNT_UNKNOWN, regionmap_reader_info(r)->count);
	expect_int("stream: first record", 1, regionmap_reader_next(r, &n, &t));
	expect_u64("stream: count unknown before the trailer", REGIONMAP_COUNT_UNKNOWN, regionmap_reader_info(r)->count);
	while ((e = regionmap_reader_next(r, &n, &t)) > 0)
		;
	expect_int("stream: verified end", 0, e);
	expect_u64("stream: count known after the trailer", 3, regionmap_reader_info(r)->count);
	expect_u64("stream: total known after the trailer", 9 * G, regionmap_reader_info(r)->total);
	regionmap_reader_free(r);
	close(fd);

	rm_put64(c.b + 32, 1000); /* a lying header count */
	fd = memfd_with(c.b, c.len, 0);
	expect_int("stream with a lying header count: open", 0, regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r));
	expect_u64("stream: lying count not shown", REGIONMAP_COUNT_UNKNOWN, regionmap_reader_info(r)->count);
	while ((e = regionmap_reader_next(r, &n, &t)) > 0)
		;
	expect_int("stream: lying header count fails at the trailer", -EBADMSG, e);
	expect_u64("stream: count still unknown after the failure", REGIONMAP_COUNT_UNKNOWN, regionmap_reader_info(r)->count);
	regionmap_reader_free(r);
	close(fd);

	rm_put64(c.b + 32, 3);
	fd = memfd_with(c.b, c.len, ALL_SEALS);
	expect_int("memfd: open", 0, regionmap_reader_open(fd, REGIONMAP_READ_MEMFD, &r));
	expect_u64("memfd: count known at open", 3, regionmap_reader_info(r)->count);
	regionmap_reader_free(r);
	close(fd);
}

/* The errnos regionmap.h and libregionmap(3) document for open. */
static void test_open_errors(void)
{
	struct regionmap_reader *r = NULL;
	struct raw m, c;
	int fd;

	build(&m, 16 * G, 0, good, 0);
	expect_int("open fd -1", -EINVAL, regionmap_reader_open(-1, REGIONMAP_READ_STREAM, &r));
	fd = memfd_with(m.b, m.len, 0);
	expect_int("open unknown mode", -EINVAL, regionmap_reader_open(fd, 2, &r));
	close(fd);
	fd = memfd_with(m.b, 0, 0);
	expect_int("stream: empty input ends inside the header", -ENODATA, regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r));
	close(fd);
	fd = memfd_with(m.b, 20, 0);
	expect_int("stream: input ends inside the fixed header", -ENODATA, regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r));
	close(fd);
	fd = memfd_with(m.b, 50, 0);
	expect_int("stream: input ends inside the context", -ENODATA, regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r));
	close(fd);
	c = m;
	rm_put64(c.b + 32, 0);
	fd = memfd_with(c.b, 20, ALL_SEALS);
	expect_int("memfd: shorter than the fixed header", -ENODATA, regionmap_reader_open(fd, REGIONMAP_READ_MEMFD, &r));
	close(fd);
	fd = memfd_with(c.b, m.len - 1, ALL_SEALS);
	expect_int("memfd: header but shorter than header + trailer", -ENODATA, regionmap_reader_open(fd, REGIONMAP_READ_MEMFD, &r));
	close(fd);
	/* a descriptor that is not open: the system call's errno, in both modes */
	fd = memfd_with(m.b, m.len, ALL_SEALS);
	close(fd);
	expect_int("stream: closed descriptor", -EBADF, regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r));
	expect_int("memfd: closed descriptor", -EBADF, regionmap_reader_open(fd, REGIONMAP_READ_MEMFD, &r));
	unit_check(r == NULL, "open leaves ret untouched on failure", "r=%p", (void *)r);
}

int main(void)
{
	test_header();
	test_records();
	test_trailer();
	test_truncation();
	test_stream_count();
	test_open_errors();
	expect_int("strerror knows truncation", 0, strcmp(regionmap_strerror(-ENODATA), "map truncated before trailer"));
	return unit_exit();
}
